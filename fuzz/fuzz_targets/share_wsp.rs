//! The WSP push PDU decoder (`wsp::decode`). A PDU that decodes is
//! encoded again and decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::wsp;

fuzz_target!(|data: &[u8]| {
    let Ok(pdu) = wsp::decode(data) else {
        return;
    };
    let _ = pdu.content_type.media_type();
    if let Ok(bytes) = pdu.encode() {
        let again = wsp::decode(&bytes).expect("an encoded push PDU decodes");
        assert_eq!(again, pdu, "push PDU changed through encode/decode");
    }
});
