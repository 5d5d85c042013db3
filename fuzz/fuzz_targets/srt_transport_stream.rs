//! The SRT publisher's MPEG transport stream: demuxer, PES packets into
//! decoder configurations and access units, configurations into tracks
//! (`sharecast_ingest::fuzzing::srt_transport_stream`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sharecast_ingest::fuzzing::srt_transport_stream(data);
});
