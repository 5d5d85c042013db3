//! PDUs as a modem or an SMSC hands them over, in hexadecimal text
//! (`sms::parse_hex`), then decoded with the SMSC field told apart
//! automatically.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::sms::{decode_pdu, parse_hex, SmscField};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(bytes) = parse_hex(text) else {
        return;
    };
    assert_eq!(hex_len(text), bytes.len() * 2);
    let _ = decode_pdu(&bytes, SmscField::Auto);
});

/// Hex digits in `text`.
fn hex_len(text: &str) -> usize {
    text.chars().filter(char::is_ascii_hexdigit).count()
}
