//! UCS-2 / UTF-16 (`ucs2::decode`). Valid UTF-16 encodes back to the same
//! octets; an unpaired surrogate becomes U+FFFD (documented), and decoding
//! is then stable: the text encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::ucs2;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = ucs2::decode(data) else {
        return;
    };
    let units = data
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    if char::decode_utf16(units).all(|c| c.is_ok()) {
        assert_eq!(
            ucs2::encode(&text),
            data,
            "UCS-2 changed through decode/encode"
        );
    } else {
        assert_eq!(ucs2::decode(&ucs2::encode(&text)).ok(), Some(text));
    }
});
