//! Compaction of a short finished recording: drops the room reserved for the
//! index at the front of the file (mp4mux robust muxing keeps two copies of
//! it, about 8 MB for one hour) by moving `mdat` forward and patching the
//! chunk offsets (`stco` / `co64`). Only done below a size limit, so its cost
//! at the end of a session stays bounded whatever the recording's length.
//!
//! The box surgery is I/O-free, in [`sharecast_formats::mp4::compact`]; this
//! module reads the file and replaces it atomically.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Rewrites `path` without its top-level `free` boxes if it is at most
/// `max_bytes` long. Returns the bytes saved (0 when nothing was done). The
/// file is replaced atomically (temporary file + rename).
pub(crate) fn compact(path: &Path, max_bytes: u64) -> anyhow::Result<u64> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading metadata of {}", path.display()))?
        .len();
    if len > max_bytes {
        return Ok(0);
    }
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Some(out) = sharecast_formats::mp4::compact::compact(&data)
        .with_context(|| format!("compacting {}", path.display()))?
    else {
        return Ok(0);
    };
    let tmp = path.with_extension("mp4.compact");
    {
        let mut f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&out)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("moving {} to {}", tmp.display(), path.display()))?;
    Ok((data.len() - out.len()) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file side only (the box surgery is tested in `formats`): a file
    /// over the limit, a file without free room and a file that does not
    /// parse are all left exactly as they were.
    #[test]
    fn files_it_cannot_or_need_not_compact_are_left_untouched() {
        let src = crate::testing::fixture(crate::testing::H264_AAC).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        std::fs::copy(&src, &path).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert_eq!(compact(&path, 10).unwrap(), 0);
        assert_eq!(compact(&path, 1 << 30).unwrap(), 0);
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let garbage = dir.path().join("g.mp4");
        std::fs::write(&garbage, [0xffu8; 100]).unwrap();
        assert!(compact(&garbage, 1 << 20).is_err());
        assert_eq!(std::fs::read(&garbage).unwrap(), [0xffu8; 100]);
        assert!(!garbage.with_extension("mp4.compact").exists());
    }
}
