//! The display rotation of an MP4 file's video track, read and written in
//! place in the file.
//!
//! mp4mux in GStreamer 1.22 ignores the `image-orientation` tag and always
//! writes the identity matrix, so the transcoder writes the rotation itself
//! once a file is final: the matrix is a fixed 36-byte field, so this is a
//! 36-byte write at a known offset (no box changes size, nothing else moves).
//! The matrices and the parsing of the index are I/O-free, in
//! [`sharecast_formats::mp4::matrix`]; this module reads the index (`moov`)
//! from the file and writes the 36 bytes back.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use sharecast_formats::mp4::matrix::{matrix_bytes, matrix_for, rotation_of, video_tkhd};
use sharecast_formats::mp4::BoxHeader;

/// Largest `moov` box read (the index of a long recording is a few MB).
const MAX_MOOV_BYTES: u64 = 256 * 1024 * 1024;

/// Reads the `moov` box: its absolute offset and bytes; `None` when the
/// file has no index (yet).
fn read_moov(file: &mut File) -> anyhow::Result<Option<(u64, Vec<u8>)>> {
    let len = file.metadata().context("reading the file's size")?.len();
    let mut pos = 0u64;
    loop {
        file.seek(SeekFrom::Start(pos))?;
        let mut head = [0u8; 16];
        let n = usize::try_from((len - pos).min(16)).unwrap_or(16);
        file.read_exact(&mut head[..n])?;
        let Some(h) = BoxHeader::parse(&head[..n], pos, len - pos)? else {
            return Ok(None);
        };
        if &h.kind == b"moov" {
            if h.size > MAX_MOOV_BYTES {
                bail!("moov of {} bytes is larger than {MAX_MOOV_BYTES}", h.size);
            }
            let mut moov =
                vec![0u8; usize::try_from(h.size).map_err(|_| anyhow!("moov too large"))?];
            file.seek(SeekFrom::Start(pos))?;
            file.read_exact(&mut moov)?;
            return Ok(Some((pos, moov)));
        }
        pos += h.size;
    }
}

/// Opens `path` and reads its index; an error without one.
fn open_moov(path: &Path, write: bool) -> anyhow::Result<(File, u64, Vec<u8>)> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(write)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let (at, moov) = read_moov(&mut file)
        .with_context(|| format!("reading {}", path.display()))?
        .ok_or_else(|| anyhow!("reading {}: no moov box", path.display()))?;
    Ok((file, at, moov))
}

/// Reads the display rotation of the file's video track, degrees
/// clockwise; 0 without a video track. An error for a matrix that is not a
/// plain rotation (mirrored or scaled).
pub(crate) fn read_rotation(path: &Path) -> anyhow::Result<u32> {
    let (_, _, moov) = open_moov(path, false)?;
    match video_tkhd(&moov).with_context(|| format!("parsing {}", path.display()))? {
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
pub(crate) fn index_has_video(path: &Path) -> anyhow::Result<Option<bool>> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let Some((_, moov)) =
        read_moov(&mut file).with_context(|| format!("reading {}", path.display()))?
    else {
        return Ok(None);
    };
    let tkhd = video_tkhd(&moov).with_context(|| format!("parsing {}", path.display()))?;
    Ok(Some(tkhd.is_some()))
}

/// Writes the display rotation (degrees clockwise) into the file's video
/// track matrix, in place. Returns `false` (file untouched) when the file
/// has no video track.
pub(crate) fn write_rotation(path: &Path, rotation: u32) -> anyhow::Result<bool> {
    let (mut file, at, moov) = open_moov(path, true)?;
    let Some(t) = video_tkhd(&moov).with_context(|| format!("parsing {}", path.display()))? else {
        return Ok(false);
    };
    let matrix = matrix_for(rotation, t.width, t.height)?;
    if matrix == t.matrix {
        return Ok(true);
    }
    file.seek(SeekFrom::Start(at + t.matrix_at as u64))?;
    file.write_all(&matrix_bytes(&matrix))
        .with_context(|| format!("writing the matrix of {}", path.display()))?;
    file.sync_data()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

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
