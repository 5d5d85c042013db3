//! The plain-text share decoder (`text::decode`, `text::looks_like`).
//! Attributes that decode are encoded again and decode the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::text;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text::looks_like(s);
    let Ok(attrs) = text::decode(s) else {
        return;
    };
    if let Ok(again) = text::encode(&attrs) {
        let back = text::decode(&again).expect("an encoded text share decodes");
        assert_eq!(back, attrs, "attributes changed through text");
    }
});
