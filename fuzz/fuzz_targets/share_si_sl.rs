//! Service Indication and Service Loading documents
//! (`ServiceIndication::decode_wbxml`, `ServiceLoading::decode_wbxml`). A
//! document that decodes is encoded again and decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::si::ServiceIndication;
use sharecast_formats::share::sl::ServiceLoading;
use sharecast_formats::share::wbxml;

fuzz_target!(|data: &[u8]| {
    if let Ok(si) = ServiceIndication::decode_wbxml(data) {
        let _ = si.to_attributes();
        if let Ok(bytes) = si.encode_wbxml(wbxml::VERSION_1_3) {
            let again = ServiceIndication::decode_wbxml(&bytes).expect("an encoded SI decodes");
            assert_eq!(again, si, "SI changed through encode/decode");
        }
    }
    if let Ok(sl) = ServiceLoading::decode_wbxml(data) {
        let _ = sl.to_attributes();
        if let Ok(bytes) = sl.encode_wbxml(wbxml::VERSION_1_3) {
            let again = ServiceLoading::decode_wbxml(&bytes).expect("an encoded SL decodes");
            assert_eq!(again, sl, "SL changed through encode/decode");
        }
    }
});
