//! The RTMP publisher's FLV tag bodies and sequence headers
//! (`sharecast_ingest::fuzzing::rtmp_flv_tag`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sharecast_ingest::fuzzing::rtmp_flv_tag(data);
});
