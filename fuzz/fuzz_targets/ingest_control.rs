//! One control message (`Control::decode`: the type byte, then the JSON
//! payload). A message that decodes is encoded again and read back through
//! the control stream reader: the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::ingest::{Control, ControlDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&ty, payload)) = data.split_first() else {
        return;
    };
    let Ok(msg) = Control::decode(ty, payload) else {
        return;
    };
    let mut reader = ControlDecoder::new();
    reader.push(&msg.encode());
    let again = reader
        .decode_next()
        .expect("an encoded message decodes")
        .expect("an encoded message is complete");
    assert_eq!(again, msg, "control message changed through encode/decode");
    assert_eq!(reader.buffered(), 0);
    reader.finish().expect("nothing left after one message");
});
