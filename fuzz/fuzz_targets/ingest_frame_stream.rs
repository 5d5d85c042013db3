//! Frame records: `decode_frame_header` on the input, and the frame stream
//! reader (`FrameDecoder::decode_next`, `finish`) on the input cut into
//! pieces (first byte: piece size; the next two: the frame size limit in
//! KiB). Every frame read encodes back to exactly the bytes it was read
//! from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::ingest::{decode_frame_header, encode_frame, FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let [piece, l0, l1, stream @ ..] = data else {
        return;
    };
    let max = u32::from(u16::from_be_bytes([*l0, *l1])) * 1024;
    if let Ok(h) = decode_frame_header(stream, max) {
        assert!(h.len <= max && h.track <= 15);
    }
    let mut reader = FrameDecoder::new(max);
    let mut at = 0;
    for part in stream.chunks(usize::from(*piece).max(1)) {
        reader.push(part);
        loop {
            match reader.decode_next() {
                Ok(Some(frame)) => {
                    let bytes = encode_frame(&frame);
                    assert_eq!(&stream[at..at + bytes.len()], &bytes[..]);
                    at += bytes.len();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(reader.finish().is_ok(), at == stream.len());
    assert_eq!(reader.is_idle(), at == stream.len());
});
