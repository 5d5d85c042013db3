//! The share TLV decoder (`tlv::decode`). Attributes that decode are
//! encoded again (with renditions) and decode to the same attributes, but
//! for frame rates: the decoder takes any numerator/denominator, the encoder
//! sends milli-fps, n/1001 or micro-fps (docs/share-messages.md), so a rate
//! comes back within a micro-fps, and the second trip changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::tlv;

/// `a` with its frame rates taken from `b` once they are within a
/// micro-fps (or a billionth) of each other.
fn rates_from(mut a: VideoAttributes, b: &VideoAttributes) -> VideoAttributes {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-6_f64.max(y.abs() * 1e-9);
    if close(a.frame_rate, b.frame_rate) {
        a.frame_rate = b.frame_rate;
    }
    for (ra, rb) in a.renditions.iter_mut().zip(&b.renditions) {
        if close(ra.frame_rate, rb.frame_rate) {
            ra.frame_rate = rb.frame_rate;
        }
    }
    a
}

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
    assert_eq!(
        rates_from(once.clone(), &attrs),
        attrs,
        "attributes changed through TLV"
    );
    let twice = tlv::decode(&tlv::encode(&once, &opts).expect("encodes again")).expect("decodes");
    assert_eq!(
        twice, once,
        "a second trip through TLV changed the attributes"
    );
});
