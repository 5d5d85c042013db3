//! A WAP Push as received (`message::decode_wap_push`: the WSP PDU, then
//! SI, SL or the video document by content type).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::share::message::decode_wap_push;

fuzz_target!(|data: &[u8]| {
    let _ = decode_wap_push(data);
});
