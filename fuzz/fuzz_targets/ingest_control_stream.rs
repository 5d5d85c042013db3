//! The control stream reader (`ControlDecoder::decode_next`, `finish`) on
//! a stream cut into pieces: the first byte is the piece size, the rest the
//! stream. However it is cut, it reads the same messages and the same
//! first error as when the stream arrives whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sharecast_formats::ingest::{Control, ControlDecoder, DecodeError};

/// The messages read and how the stream ended.
fn read(stream: &[u8], piece: usize) -> (Vec<Control>, Result<(), DecodeError>) {
    let mut reader = ControlDecoder::new();
    let mut out = Vec::new();
    for part in stream.chunks(piece) {
        reader.push(part);
        loop {
            match reader.decode_next() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Err(e)),
            }
        }
    }
    let end = reader.finish();
    (out, end)
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else {
        return;
    };
    let whole = read(stream, stream.len().max(1));
    let cut = read(stream, usize::from(piece).max(1));
    assert_eq!(whole, cut, "the cut changed what the stream reads as");
});
