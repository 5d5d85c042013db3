//! The share TLV decoder (`tlv::decode`). Attributes that decode are
//! encoded again (with renditions) and decode to the same attributes, but
//! for frame rates: the decoder takes any numerator/denominator, the encoder
//! sends milli-fps, n/1001 or micro-fps (docs/share-messages.md), so a rate
//! comes back within a micro-fps, and the second trip changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::tlv;
use sharecast_fuzz::frame_rates_from;

fuzz_target!(|data: &[u8]| {
    let Ok(attrs) = tlv::decode(data) else {
        return;
    };
    let opts = tlv::TlvOptions {
        include_renditions: true,
    };
    let Ok(bytes) = tlv::encode(&attrs, &opts) else {
        return;
    };
    let once = tlv::decode(&bytes).expect("an encoded TLV decodes");
    let mut close_once = once.clone();
    frame_rates_from(&mut close_once, &attrs, |x, y| {
        (x - y).abs() <= 1e-6_f64.max(y.abs() * 1e-9)
    });
    assert_eq!(close_once, attrs, "attributes changed through TLV");
    let twice = tlv::decode(&tlv::encode(&once, &opts).expect("encodes again")).expect("decodes");
    assert_eq!(
        twice, once,
        "a second trip through TLV changed the attributes"
    );
});
