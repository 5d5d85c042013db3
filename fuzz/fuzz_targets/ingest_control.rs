//! One control message (`Control::decode`: the type byte, then the JSON
//! payload). A message that decodes is encoded again and read back through
//! the control stream reader: the same message, but for floating-point
//! frame rates, which serde_json (without its `float_roundtrip` feature)
//! may read back a unit in the last place off (docs/reliability.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::ingest::{Control, ControlDecoder};
use sharecast_fuzz::frame_rates_from;

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
        frame_rates_from(&mut a.attributes, &b.attributes, |x, y| {
            x == y || (x - y).abs() <= y.abs() * 1e-15
        });
    }
    assert_eq!(again, msg, "control message changed through encode/decode");
    assert_eq!(reader.buffered(), 0);
    reader.finish().expect("nothing left after one message");
});
