//! Capture wall clock carried in the live video: an SEI "user data
//! unregistered" message inserted in every H.264/H.265 access unit of the
//! RTSP path, so a test client can compute capture-to-display delay.
//!
//! Payload: the 16-byte UUID `SHARECASTCLOCK!!` then the capture wall clock as
//! an 8-byte big-endian count of microseconds since the Unix epoch (the
//! session's `anchor_unix_us` + the frame's PTS). The NAL goes right before
//! the first slice of the access unit; emulation prevention is applied.

use bytes::Bytes;

/// UUID identifying the Sharecast capture-clock SEI
/// (`5348-4152-4543-4153-54434c4f434b2121`, "SHARECASTCLOCK!!").
pub(crate) const CAPTURE_CLOCK_UUID: [u8; 16] = *b"SHARECASTCLOCK!!";

/// Which NAL syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NalSyntax {
    /// H.264: 1-byte NAL header.
    H264,
    /// H.265: 2-byte NAL header.
    H265,
}

/// NAL length-prefix size from an avcC (byte 4) or hvcC (byte 21) record.
pub(crate) fn length_size(syntax: NalSyntax, codec_data: &[u8]) -> usize {
    let b = match syntax {
        NalSyntax::H264 => codec_data.get(4),
        NalSyntax::H265 => codec_data.get(21),
    };
    b.map(|b| usize::from(b & 3) + 1).unwrap_or(4)
}

fn sei_nal(syntax: NalSyntax, capture_unix_us: i64) -> Vec<u8> {
    let mut rbsp = vec![5u8, 24];
    rbsp.extend_from_slice(&CAPTURE_CLOCK_UUID);
    rbsp.extend_from_slice(&capture_unix_us.to_be_bytes());
    rbsp.push(0x80);
    let mut nal = match syntax {
        NalSyntax::H264 => vec![0x06],
        NalSyntax::H265 => vec![39 << 1, 0x01],
    };
    let mut zeros = 0;
    for b in rbsp {
        if zeros >= 2 && b <= 3 {
            nal.push(3);
            zeros = 0;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        nal.push(b);
    }
    nal
}

fn is_vcl(syntax: NalSyntax, header: u8) -> bool {
    match syntax {
        NalSyntax::H264 => matches!(header & 0x1f, 1..=5),
        NalSyntax::H265 => (header >> 1) & 0x3f < 32,
    }
}

/// Returns the access unit with the capture-clock SEI inserted before its
/// first slice, or `None` when the AU does not parse (it is then sent as is).
pub(crate) fn insert_capture_clock(
    syntax: NalSyntax,
    length_size: usize,
    au: &[u8],
    capture_unix_us: i64,
) -> Option<Bytes> {
    if !(1..=4).contains(&length_size) {
        return None;
    }
    let mut pos = 0;
    let mut insert_at = None;
    while pos < au.len() {
        let len_bytes = au.get(pos..pos + length_size)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let start = pos + length_size;
        let header = *au.get(start)?;
        if start + len > au.len() || len == 0 {
            return None;
        }
        if insert_at.is_none() && is_vcl(syntax, header) {
            insert_at = Some(pos);
        }
        pos = start + len;
    }
    let at = insert_at?;
    let nal = sei_nal(syntax, capture_unix_us);
    let mut out = Vec::with_capacity(au.len() + nal.len() + length_size);
    out.extend_from_slice(&au[..at]);
    out.extend_from_slice(&(nal.len() as u32).to_be_bytes()[4 - length_size..]);
    out.extend_from_slice(&nal);
    out.extend_from_slice(&au[at..]);
    Some(Bytes::from(out))
}

/// Finds the capture clock in an access unit (length-prefixed or Annex B is
/// not needed: this scans for the UUID), for test clients.
pub fn find_capture_clock(au: &[u8]) -> Option<i64> {
    let i = au
        .windows(CAPTURE_CLOCK_UUID.len())
        .position(|w| w == CAPTURE_CLOCK_UUID)?;
    // Undo emulation prevention in the 8 bytes that follow (at most a few
    // inserted 0x03 bytes).
    let mut out = Vec::with_capacity(8);
    let mut zeros = 0;
    for &b in au.get(i + 16..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
        if out.len() == 8 {
            return Some(i64::from_be_bytes(out.try_into().ok()?));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_before_first_slice_and_round_trips() {
        // AUD (9), SPS (7), IDR slice (5), 4-byte lengths.
        let mut au = Vec::new();
        for nal in [&[0x09u8, 0xf0][..], &[0x67, 1, 2, 3], &[0x65, 9, 9, 9, 9]] {
            au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            au.extend_from_slice(nal);
        }
        // A timestamp full of zero bytes exercises emulation prevention.
        let t = 0x0000_0001_0000_0000i64;
        let out = insert_capture_clock(NalSyntax::H264, 4, &au, t).unwrap();
        assert_eq!(find_capture_clock(&out), Some(t));
        // The SEI NAL sits right after SPS, before the slice.
        let sei_at = 4 + 2 + 4 + 4;
        assert_eq!(out[sei_at + 4], 0x06);
        assert!(out.ends_with(&[0x00, 0x00, 0x00, 0x05, 0x65, 9, 9, 9, 9]));
        let sei = &out[sei_at + 4..sei_at + 4 + out[sei_at + 3] as usize];
        assert!(!sei.windows(3).any(|w| w == [0, 0, 0] || w == [0, 0, 1]));
        // Garbage is left alone.
        assert!(insert_capture_clock(NalSyntax::H264, 4, &[0, 0, 0, 9, 1], t).is_none());
        let t2 = 1_700_000_000_123_456i64;
        let out = insert_capture_clock(NalSyntax::H265, 4, &[0, 0, 0, 2, 0x02, 0x01], t2).unwrap();
        assert_eq!(find_capture_clock(&out), Some(t2));
    }
}
