//! The display rotation of an MP4 file's video track: the transformation
//! matrix of its track header (`moov/trak/tkhd`), read and written in place.
//!
//! mp4mux in GStreamer 1.22 ignores the `image-orientation` tag and always
//! writes the identity matrix, so the transcoder writes the rotation itself
//! once a file is final: the matrix is a fixed 36-byte field, so this is a
//! 36-byte write at a known offset (no box changes size, nothing else moves).
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

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context};

/// Largest `moov` box read (the index of a long recording is a few MB).
const MAX_MOOV_BYTES: u64 = 256 * 1024 * 1024;
const ONE: i32 = 0x0001_0000;
const W_ONE: i32 = 0x4000_0000;

/// Where a video track's matrix sits in the file, and the track's size.
struct VideoTkhd {
    /// Absolute file offset of the 36-byte matrix.
    matrix_at: u64,
    matrix: [i32; 9],
    /// Track width and height (16.16 in the file), whole pixels.
    width: u32,
    height: u32,
}

fn be32(b: &[u8], at: usize) -> anyhow::Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| anyhow!("truncated box at {at}"))
}

/// A box inside a buffer: `(start, end, header_len, kind)`.
type Child = (usize, usize, usize, [u8; 4]);

/// The boxes in `data[from..to]`.
fn children(data: &[u8], from: usize, to: usize) -> anyhow::Result<Vec<Child>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos + 8 <= to {
        let size32 = be32(data, pos)?;
        let kind = [data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]];
        let (size, header) = match size32 {
            0 => (to - pos, 8),
            1 => {
                let hi = u64::from(be32(data, pos + 8)?);
                let lo = u64::from(be32(data, pos + 12)?);
                let size =
                    usize::try_from((hi << 32) | lo).map_err(|_| anyhow!("box too large"))?;
                (size, 16)
            }
            n => (n as usize, 8),
        };
        if size < header || pos.checked_add(size).is_none_or(|end| end > to) {
            bail!(
                "box {} at {pos} has a bad size {size}",
                String::from_utf8_lossy(&kind)
            );
        }
        out.push((pos, pos + size, header, kind));
        pos += size;
    }
    Ok(out)
}

/// Reads the `moov` box: its absolute offset and bytes.
fn read_moov(file: &mut File) -> anyhow::Result<(u64, Vec<u8>)> {
    let len = file.metadata().context("reading the file's size")?.len();
    let mut pos = 0u64;
    while pos + 8 <= len {
        file.seek(SeekFrom::Start(pos))?;
        let mut head = [0u8; 16];
        let n = usize::try_from((len - pos).min(16)).unwrap_or(8);
        file.read_exact(&mut head[..n])?;
        let size32 = u64::from(be32(&head, 0)?);
        let size = match size32 {
            0 => len - pos,
            1 if n >= 16 => u64::from_be_bytes([
                head[8], head[9], head[10], head[11], head[12], head[13], head[14], head[15],
            ]),
            1 => bail!("truncated large box header at {pos}"),
            s => s,
        };
        if size < 8 || pos.checked_add(size).is_none_or(|end| end > len) {
            bail!("top-level box at {pos} has a bad size {size}");
        }
        if &head[4..8] == b"moov" {
            if size > MAX_MOOV_BYTES {
                bail!("moov of {size} bytes is larger than {MAX_MOOV_BYTES}");
            }
            let mut moov = vec![0u8; usize::try_from(size).map_err(|_| anyhow!("moov too large"))?];
            file.seek(SeekFrom::Start(pos))?;
            file.read_exact(&mut moov)?;
            return Ok((pos, moov));
        }
        pos += size;
    }
    bail!(NO_MOOV)
}

const NO_MOOV: &str = "no moov box";

/// The first video track's header (`hdlr` type `vide`), or `None` without
/// a video track.
fn video_tkhd(moov_at: u64, moov: &[u8]) -> anyhow::Result<Option<VideoTkhd>> {
    let header = if be32(moov, 0)? == 1 { 16 } else { 8 };
    for (start, end, h, kind) in children(moov, header, moov.len())? {
        if &kind != b"trak" {
            continue;
        }
        let boxes = children(moov, start + h, end)?;
        let is_video = boxes.iter().filter(|b| &b.3 == b"mdia").try_fold(
            false,
            |found, mdia| -> anyhow::Result<bool> {
                if found {
                    return Ok(true);
                }
                Ok(children(moov, mdia.0 + mdia.2, mdia.1)?
                    .iter()
                    .filter(|b| &b.3 == b"hdlr")
                    // FullBox header (4), pre_defined (4), handler_type.
                    .any(|b| moov.get(b.0 + b.2 + 8..b.0 + b.2 + 12) == Some(b"vide".as_slice())))
            },
        )?;
        if !is_video {
            continue;
        }
        let Some(tkhd) = boxes.iter().find(|b| &b.3 == b"tkhd") else {
            bail!("video track without tkhd");
        };
        let body = tkhd.0 + tkhd.2;
        let version = *moov.get(body).ok_or_else(|| anyhow!("empty tkhd"))?;
        // After version/flags: times, track id, reserved, duration (20 or
        // 32 bytes), reserved (8), layer, group, volume, reserved (8).
        let matrix_off = body + 4 + if version == 1 { 32 } else { 20 } + 8 + 8;
        if matrix_off + 36 + 8 > tkhd.1 {
            bail!("tkhd version {version} too short");
        }
        let mut matrix = [0i32; 9];
        for (i, m) in matrix.iter_mut().enumerate() {
            *m = be32(moov, matrix_off + 4 * i)? as i32;
        }
        return Ok(Some(VideoTkhd {
            matrix_at: moov_at + matrix_off as u64,
            matrix,
            width: be32(moov, matrix_off + 36)? >> 16,
            height: be32(moov, matrix_off + 40)? >> 16,
        }));
    }
    Ok(None)
}

/// The matrix that shows a `width` x `height` picture rotated `rotation`
/// degrees clockwise (0, 90, 180 or 270).
pub fn matrix_for(rotation: u32, width: u32, height: u32) -> anyhow::Result<[i32; 9]> {
    let px = |v: u32| i32::try_from(v.min(0x7fff)).unwrap_or(0) << 16;
    let (a, b, c, d, x, y) = match rotation {
        0 => (ONE, 0, 0, ONE, 0, 0),
        90 => (0, ONE, -ONE, 0, px(height), 0),
        180 => (-ONE, 0, 0, -ONE, px(width), px(height)),
        270 => (0, -ONE, ONE, 0, 0, px(width)),
        other => bail!("rotation {other} is not 0, 90, 180 or 270"),
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

/// Reads the display rotation of the file's video track, degrees
/// clockwise; 0 without a video track. An error for a matrix that is not a
/// plain rotation (mirrored or scaled).
pub fn read_rotation(path: &Path) -> anyhow::Result<u32> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (at, moov) = read_moov(&mut file).with_context(|| format!("reading {}", path.display()))?;
    match video_tkhd(at, &moov).with_context(|| format!("parsing {}", path.display()))? {
        None => Ok(0),
        Some(t) => rotation_of(&t.matrix).ok_or_else(|| {
            anyhow!(
                "{}: video track matrix {:?} is not a plain rotation",
                path.display(),
                t.matrix
            )
        }),
    }
}

/// Whether the file's index lists a video track: `Ok(None)` when the file
/// has no index (`moov`) yet, as a recording in its first fragment.
pub fn index_has_video(path: &Path) -> anyhow::Result<Option<bool>> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (at, moov) = match read_moov(&mut file) {
        Ok(found) => found,
        Err(e) if e.to_string() == NO_MOOV => return Ok(None),
        Err(e) => return Err(e.context(format!("reading {}", path.display()))),
    };
    Ok(Some(video_tkhd(at, &moov)?.is_some()))
}

/// Writes the display rotation (degrees clockwise) into the file's video
/// track matrix, in place. Returns `false` (file untouched) when the file
/// has no video track.
pub fn write_rotation(path: &Path, rotation: u32) -> anyhow::Result<bool> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let (at, moov) = read_moov(&mut file).with_context(|| format!("reading {}", path.display()))?;
    let Some(t) = video_tkhd(at, &moov).with_context(|| format!("parsing {}", path.display()))?
    else {
        return Ok(false);
    };
    let matrix = matrix_for(rotation, t.width, t.height)?;
    if matrix == t.matrix {
        return Ok(true);
    }
    let bytes: Vec<u8> = matrix.iter().flat_map(|v| v.to_be_bytes()).collect();
    file.seek(SeekFrom::Start(t.matrix_at))?;
    file.write_all(&bytes)
        .with_context(|| format!("writing the matrix of {}", path.display()))?;
    file.sync_data()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(true)
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
        assert!(matrix_for(45, 640, 360).is_err());
        // A horizontal mirror is not a rotation.
        let mirror = [-ONE, 0, 0, 0, ONE, 0, 640 << 16, 0, W_ONE];
        assert_eq!(rotation_of(&mirror), None);
    }

    #[test]
    fn rotation_is_written_in_place_and_read_back() {
        let src = crate::testing::fixture(crate::testing::H264_AAC).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        std::fs::copy(&src, &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert_eq!(read_rotation(&path).unwrap(), 0);
        assert!(write_rotation(&path, 90).unwrap());
        assert_eq!(read_rotation(&path).unwrap(), 90);
        let after = std::fs::read(&path).unwrap();
        assert_eq!(before.len(), after.len());
        let changed = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert!(changed > 0 && changed <= 36, "{changed} bytes changed");
        assert!(write_rotation(&path, 0).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn audio_only_files_have_no_rotation() {
        let src = crate::testing::fixture(crate::testing::AUDIO_ONLY).unwrap();
        assert_eq!(read_rotation(&src).unwrap(), 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.m4a");
        std::fs::copy(&src, &path).unwrap();
        assert!(!write_rotation(&path, 90).unwrap());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.mp4");
        for bytes in [
            &b""[..],
            b"\x00\x00\x00\x08moov",
            b"\x00\x00\x00\x10moov\x00\x00\x00\x09trak",
            b"\xff\xff\xff\xffmoov",
        ] {
            std::fs::write(&path, bytes).unwrap();
            let _ = read_rotation(&path);
            let _ = write_rotation(&path, 90);
        }
        std::fs::write(&path, b"\x00\x00\x00\x08free").unwrap();
        assert!(read_rotation(&path).is_err());
    }
}
