//! The display rotation of a video track: the transformation matrix of its
//! track header (`moov/trak/tkhd`), found in a `moov` box and made for a
//! rotation.
//!
//! Matrices, as ISO/IEC 14496-12 `{a, b, u, c, d, v, x, y, w}` with `a b c d
//! x y` in 16.16 and `u v w` in 2.30 fixed point, for a coded picture of
//! `W` x `H`, rotated clockwise for display (what QuickTime, ffmpeg and
//! qtdemux write and read):
//!
//! | rotation | a | b | c | d | x | y | qtdemux tag | ffprobe `rotation` |
//! | --- | --- | --- | --- | --- | --- | --- | --- | --- |
//! | 0 | 1 | 0 | 0 | 1 | 0 | 0 | (none) | (none) |
//! | 90 | 0 | 1 | -1 | 0 | H | 0 | `rotate-90` | -90 |
//! | 180 | -1 | 0 | 0 | -1 | W | H | `rotate-180` | 180 |
//! | 270 | 0 | -1 | 1 | 0 | 0 | W | `rotate-270` | 90 |
//!
//! The matrix is a fixed 36-byte field, so a file's rotation can be changed
//! by a 36-byte write at [`VideoTkhd::matrix_at`]: no box changes size.

use super::boxes::{children, read_u32, BoxRef, Mp4Error};

const ONE: i32 = 0x0001_0000;
const W_ONE: i32 = 0x4000_0000;

/// The identity matrix: no rotation.
pub(crate) const IDENTITY: [i32; 9] = [ONE, 0, 0, 0, ONE, 0, 0, 0, W_ONE];

/// A video track's header, as found in a `moov` box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTkhd {
    /// Offset of the 36-byte matrix from the start of the `moov` box.
    pub matrix_at: usize,
    /// The matrix.
    pub matrix: [i32; 9],
    /// Track width, whole pixels (16.16 in the box).
    pub width: u32,
    /// Track height, whole pixels (16.16 in the box).
    pub height: u32,
}

/// The matrix that shows a `width` x `height` picture rotated `rotation`
/// degrees clockwise (0, 90, 180 or 270).
pub fn matrix_for(rotation: u32, width: u32, height: u32) -> Result<[i32; 9], Mp4Error> {
    let px = |v: u32| i32::try_from(v.min(0x7fff)).unwrap_or(0) << 16;
    let (a, b, c, d, x, y) = match rotation {
        0 => (ONE, 0, 0, ONE, 0, 0),
        90 => (0, ONE, -ONE, 0, px(height), 0),
        180 => (-ONE, 0, 0, -ONE, px(width), px(height)),
        270 => (0, -ONE, ONE, 0, 0, px(width)),
        other => return Err(Mp4Error::BadRotation(other)),
    };
    Ok([a, b, 0, c, d, 0, x, y, W_ONE])
}

/// The rotation a matrix stands for, degrees clockwise; `None` for a
/// matrix that mirrors, scales or turns by another angle.
pub fn rotation_of(m: &[i32; 9]) -> Option<u32> {
    if m[2] != 0 || m[5] != 0 || m[8] != W_ONE {
        return None;
    }
    match (m[0], m[1], m[3], m[4]) {
        (ONE, 0, 0, ONE) => Some(0),
        (0, ONE, c, 0) if c == -ONE => Some(90),
        (a, 0, 0, d) if a == -ONE && d == -ONE => Some(180),
        (0, b, ONE, 0) if b == -ONE => Some(270),
        _ => None,
    }
}

/// The 36 bytes of a matrix as stored in a track header.
pub fn matrix_bytes(m: &[i32; 9]) -> [u8; 36] {
    let mut out = [0u8; 36];
    for (chunk, v) in out.chunks_exact_mut(4).zip(m) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Whether a track's boxes hold a media handler of type `vide`.
fn is_video_track(moov: &[u8], trak_boxes: &[BoxRef]) -> Result<bool, Mp4Error> {
    for mdia in trak_boxes.iter().filter(|b| &b.kind == b"mdia") {
        let video = children(moov, mdia.body(), mdia.end)?
            .iter()
            .filter(|b| &b.kind == b"hdlr")
            // FullBox header (4), pre_defined (4), handler_type.
            .any(|b| moov.get(b.body() + 8..b.body() + 12) == Some(b"vide".as_slice()));
        if video {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Reads the matrix and size of a track header box.
fn read_tkhd(moov: &[u8], tkhd: &BoxRef) -> Result<VideoTkhd, Mp4Error> {
    let body = tkhd.body();
    let version = *moov.get(body).ok_or(Mp4Error::Malformed {
        what: "empty tkhd",
        at: tkhd.start as u64,
    })?;
    // After version/flags: times, track id, reserved, duration (20 or
    // 32 bytes), reserved (8), layer, group, volume, reserved (8).
    let matrix_at = body + 4 + if version == 1 { 32 } else { 20 } + 8 + 8;
    if matrix_at + 36 + 8 > tkhd.end {
        return Err(Mp4Error::Malformed {
            what: "tkhd too short for its version",
            at: tkhd.start as u64,
        });
    }
    let mut matrix = [0i32; 9];
    for (i, m) in matrix.iter_mut().enumerate() {
        *m = read_u32(moov, matrix_at + 4 * i)? as i32;
    }
    Ok(VideoTkhd {
        matrix_at,
        matrix,
        width: read_u32(moov, matrix_at + 36)? >> 16,
        height: read_u32(moov, matrix_at + 40)? >> 16,
    })
}

/// The header of the first video track (`hdlr` type `vide`) in `moov`, the
/// bytes of a whole `moov` box; `None` without a video track.
pub fn video_tkhd(moov: &[u8]) -> Result<Option<VideoTkhd>, Mp4Error> {
    let header = if read_u32(moov, 0)? == 1 { 16 } else { 8 };
    for trak in children(moov, header, moov.len())? {
        if &trak.kind != b"trak" {
            continue;
        }
        let boxes = children(moov, trak.body(), trak.end)?;
        if !is_video_track(moov, &boxes)? {
            continue;
        }
        let tkhd = boxes
            .iter()
            .find(|b| &b.kind == b"tkhd")
            .ok_or(Mp4Error::Missing("tkhd"))?;
        return read_tkhd(moov, tkhd).map(Some);
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rotation_round_trips_through_its_matrix() {
        for r in [0, 90, 180, 270] {
            let m = matrix_for(r, 640, 360).unwrap();
            assert_eq!(rotation_of(&m), Some(r));
        }
        assert_eq!(matrix_for(0, 640, 360), Ok(IDENTITY));
        assert_eq!(matrix_for(45, 640, 360), Err(Mp4Error::BadRotation(45)));
        // A horizontal mirror is not a rotation.
        let mirror = [-ONE, 0, 0, 0, ONE, 0, 640 << 16, 0, W_ONE];
        assert_eq!(rotation_of(&mirror), None);
    }

    #[test]
    fn matrix_bytes_are_big_endian_in_order() {
        let bytes = matrix_bytes(&matrix_for(90, 640, 360).unwrap());
        assert_eq!(&bytes[..8], &[0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(&bytes[12..16], &(-ONE).to_be_bytes());
        assert_eq!(&bytes[24..28], &(360i32 << 16).to_be_bytes());
        assert_eq!(&bytes[32..], &W_ONE.to_be_bytes());
    }

    #[test]
    fn garbage_is_an_error_or_no_track_never_a_panic() {
        for bytes in [
            &b""[..],
            b"\x00\x00\x00\x08moov",
            b"\x00\x00\x00\x10moov\x00\x00\x00\x09trak",
            b"\x00\x00\x00\x14moov\x00\x00\x00\x0ctrak\x00\x00\x00\x04",
            b"\xff\xff\xff\xffmoov",
        ] {
            let _ = video_tkhd(bytes);
        }
        assert_eq!(video_tkhd(b"\x00\x00\x00\x08moov"), Ok(None));
        assert!(video_tkhd(b"\x00\x00\x00\x10moov\x00\x00\x00\x09trak").is_err());
    }
}
