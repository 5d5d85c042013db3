//! One control message (`Control::decode`: the type byte, then the JSON
//! payload). A message that decodes is encoded again and read back through
//! the control stream reader: the same message, but for floating-point
//! frame rates, which serde_json (without its `float_roundtrip` feature)
//! may read back a unit in the last place off (docs/reliability.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{Control, ControlDecoder};

/// `a`'s frame rates taken from `b` where they differ in the last places.
fn rates_from(a: &mut VideoAttributes, b: &VideoAttributes) {
    let close = |x: f64, y: f64| x == y || (x - y).abs() <= y.abs() * 1e-15;
    if close(a.frame_rate, b.frame_rate) {
        a.frame_rate = b.frame_rate;
    }
    for (ra, rb) in a.renditions.iter_mut().zip(&b.renditions) {
        if close(ra.frame_rate, rb.frame_rate) {
            ra.frame_rate = rb.frame_rate;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&ty, payload)) = data.split_first() else {
        return;
    };
    let Ok(msg) = Control::decode(ty, payload) else {
        return;
    };
    let mut reader = ControlDecoder::new();
    reader.push(&msg.encode());
    let mut again = reader
        .decode_next()
        .expect("an encoded message decodes")
        .expect("an encoded message is complete");
    if let (Control::Finished(a), Control::Finished(b)) = (&mut again, &msg) {
        rates_from(&mut a.attributes, &b.attributes);
    }
    assert_eq!(again, msg, "control message changed through encode/decode");
    assert_eq!(reader.buffered(), 0);
    reader.finish().expect("nothing left after one message");
});
