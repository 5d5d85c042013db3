//! SMS PDUs (`sms::decode_pdu`) with and without the SMSC field, and
//! either. A PDU that decodes is encoded again (PDU-mode layout, SMSC field
//! first) and decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::sms::{decode_pdu, SmsPdu, SmscField};

fuzz_target!(|data: &[u8]| {
    let _ = decode_pdu(data, SmscField::Absent);
    let _ = decode_pdu(data, SmscField::Auto);
    let Ok(pdu) = decode_pdu(data, SmscField::Present) else {
        return;
    };
    let encoded = match &pdu {
        SmsPdu::Deliver(d) => d.encode(),
        SmsPdu::Submit(s) => s.encode(),
    };
    if let Ok(bytes) = encoded {
        let again = decode_pdu(&bytes, SmscField::Present).expect("an encoded PDU decodes");
        assert_eq!(again, pdu, "PDU changed through encode/decode");
    }
    if let Ok(text) = pdu.user_data().body.text() {
        let _ = text.len();
    }
});
