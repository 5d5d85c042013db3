//! A reassembled SMS payload recognised and decoded by its port and content
//! (`message::decode_payload`). The first byte picks the port (none, the
//! Sharecast port, the WAP Push port, another) and text or 8-bit data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::message::{decode_payload, Assembled};
use sharecast_formats::share::{wsp, SHARECAST_PORT};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let ports = match pick & 0x03 {
        0 => None,
        1 => Some((SHARECAST_PORT, SHARECAST_PORT)),
        2 => Some((wsp::WAP_PUSH_PORT, wsp::WAP_PUSH_SOURCE_PORT)),
        _ => Some((9999, 9999)),
    };
    let payload = if pick & 0x04 != 0 {
        match std::str::from_utf8(body) {
            Ok(t) => Assembled::Text(t.to_owned()),
            Err(_) => return,
        }
    } else {
        Assembled::Binary(body.to_vec())
    };
    let _ = decode_payload(ports, &payload);
});
