//! The share XML reader (`xml::parse_document`, `xml::decode`). Attributes
//! that decode are encoded again (with renditions) and decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::xml;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = xml::parse_document(text);
    let Ok(attrs) = xml::decode(text) else {
        return;
    };
    if let Ok(doc) = xml::encode(&attrs, true) {
        let again = xml::decode(&doc).expect("an encoded XML share decodes");
        assert_eq!(again, attrs, "attributes changed through XML");
    }
});
