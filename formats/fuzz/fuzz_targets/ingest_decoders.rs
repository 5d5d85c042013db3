//! Every ingest-protocol decoder on arbitrary bytes, split at an arbitrary
//! point: control messages, frame records (with a small and a large frame
//! limit) and the frame header alone. None may panic; a frame decoded must
//! re-encode to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::ingest::{decode_frame_header, encode_frame, ControlDecoder, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let split = data.first().copied().unwrap_or(0) as usize % (data.len() + 1);
    let (a, b) = data.split_at(split);

    let mut c = ControlDecoder::new();
    c.push(a);
    c.push(b);
    while let Ok(Some(m)) = c.decode_next() {
        let _ = m.encode();
    }
    let _ = c.finish();

    for limit in [64u32, 1 << 20] {
        let mut f = FrameDecoder::new(limit);
        f.push(a);
        let mut consumed = Vec::new();
        let mut fed_b = false;
        loop {
            match f.decode_next() {
                Ok(Some(frame)) => consumed.extend_from_slice(&encode_frame(&frame)),
                Ok(None) if !fed_b => {
                    f.push(b);
                    fed_b = true;
                }
                _ => break,
            }
        }
        // Decoded frames re-encode to exactly the bytes they were read from.
        assert!(data.starts_with(&consumed));
        let _ = f.finish();
    }
    let _ = decode_frame_header(data, 1 << 20);
});
