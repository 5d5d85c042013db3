//! Every share-message decoder on arbitrary bytes: none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::sms::UserDataHeader;
use sharecast_formats::share::{
    decode_payload, decode_pdu, decode_wap_push, si, sl, text, tlv, video_wbxml, wsp, xml,
    Assembled, SmscField, SHARECAST_PORT,
};

fuzz_target!(|data: &[u8]| {
    let _ = decode_pdu(data, SmscField::Auto);
    let _ = UserDataHeader::decode(data);
    let _ = tlv::decode(data);
    let _ = wsp::decode(data);
    let _ = decode_wap_push(data);
    let _ = si::ServiceIndication::decode_wbxml(data);
    let _ = sl::ServiceLoading::decode_wbxml(data);
    let _ = video_wbxml::decode(data);
    let _ = decode_payload(
        Some((SHARECAST_PORT, SHARECAST_PORT)),
        &Assembled::Binary(data.to_vec()),
    );
    let s = String::from_utf8_lossy(data);
    let _ = xml::decode(&s);
    let _ = text::decode(&s);
    let _ = decode_payload(None, &Assembled::Text(s.into_owned()));
});
