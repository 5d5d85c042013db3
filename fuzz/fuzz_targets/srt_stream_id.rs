//! An SRT caller's stream id (`sharecast_ingest::fuzzing::srt_stream_id`):
//! the key it names is a part of it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(id) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(key) = sharecast_ingest::fuzzing::srt_stream_id(id) {
        assert!(!key.is_empty() && id.contains(key));
    }
});
