//! Compaction of a short finished recording: drops the room reserved for the
//! index at the front of the file (mp4mux robust muxing keeps two copies of
//! it, about 8 MB for one hour) by moving `mdat` forward and patching the
//! chunk offsets (`stco` / `co64`). Only done below a size limit, so its cost
//! at the end of a session stays bounded whatever the recording's length.
//!
//! Pure box surgery on bytes: the output has the same boxes as the input in
//! the same order, minus top-level `free` / `skip` boxes.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context};

struct BoxRef {
    start: usize,
    end: usize,
    kind: [u8; 4],
    header: usize,
}

fn boxes(data: &[u8], from: usize, to: usize) -> anyhow::Result<Vec<BoxRef>> {
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        if to - pos < 8 {
            bail!("truncated box header at {pos}");
        }
        let size32 = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let kind = [data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]];
        let (size, header) = match size32 {
            0 => (to - pos, 8),
            1 => {
                if to - pos < 16 {
                    bail!("truncated large box header at {pos}");
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[pos + 8..pos + 16]);
                (
                    usize::try_from(u64::from_be_bytes(b)).map_err(|_| anyhow!("box too large"))?,
                    16,
                )
            }
            n => (n as usize, 8),
        };
        if size < header || pos.checked_add(size).is_none_or(|end| end > to) {
            bail!(
                "box {} at {pos} has a bad size {size}",
                String::from_utf8_lossy(&kind)
            );
        }
        out.push(BoxRef {
            start: pos,
            end: pos + size,
            kind,
            header,
        });
        pos += size;
    }
    Ok(out)
}

/// Subtracts `delta` from every chunk offset inside `moov` (in place).
fn patch_offsets(
    moov: &mut [u8],
    from: usize,
    to: usize,
    delta: u64,
    mdat: (u64, u64),
) -> anyhow::Result<usize> {
    let mut patched = 0;
    for b in boxes(moov, from, to)? {
        match &b.kind {
            b"trak" | b"mdia" | b"minf" | b"stbl" => {
                patched += patch_offsets(moov, b.start + b.header, b.end, delta, mdat)?;
            }
            b"stco" | b"co64" => {
                let wide = &b.kind == b"co64";
                let body = b.start + b.header;
                if b.end - body < 8 {
                    bail!("short chunk offset box");
                }
                let count = u32::from_be_bytes([
                    moov[body + 4],
                    moov[body + 5],
                    moov[body + 6],
                    moov[body + 7],
                ]) as usize;
                let width = if wide { 8 } else { 4 };
                if body + 8 + count * width > b.end {
                    bail!("chunk offset table overruns its box");
                }
                for i in 0..count {
                    let at = body + 8 + i * width;
                    let old = if wide {
                        let mut x = [0u8; 8];
                        x.copy_from_slice(&moov[at..at + 8]);
                        u64::from_be_bytes(x)
                    } else {
                        u64::from(u32::from_be_bytes([
                            moov[at],
                            moov[at + 1],
                            moov[at + 2],
                            moov[at + 3],
                        ]))
                    };
                    if old < mdat.0 || old >= mdat.1 {
                        bail!("chunk offset {old} outside mdat {mdat:?}");
                    }
                    let new = old - delta;
                    if wide {
                        moov[at..at + 8].copy_from_slice(&new.to_be_bytes());
                    } else {
                        let new = u32::try_from(new).map_err(|_| anyhow!("offset overflow"))?;
                        moov[at..at + 4].copy_from_slice(&new.to_be_bytes());
                    }
                    patched += 1;
                }
            }
            _ => {}
        }
    }
    Ok(patched)
}

/// Rewrites `path` without its top-level `free` boxes if it is at most
/// `max_bytes` long. Returns the bytes saved (0 when nothing was done). The
/// file is replaced atomically (temporary file + rename).
pub fn compact(path: &Path, max_bytes: u64) -> anyhow::Result<u64> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading metadata of {}", path.display()))?
        .len();
    if len > max_bytes {
        return Ok(0);
    }
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let top = boxes(&data, 0, data.len())?;
    let free: usize = top
        .iter()
        .filter(|b| &b.kind == b"free" || &b.kind == b"skip")
        .map(|b| b.end - b.start)
        .sum();
    let moov = top
        .iter()
        .position(|b| &b.kind == b"moov")
        .ok_or_else(|| anyhow!("no moov box"))?;
    let mdat = top
        .iter()
        .position(|b| &b.kind == b"mdat")
        .ok_or_else(|| anyhow!("no mdat box"))?;
    if top.iter().filter(|b| &b.kind == b"mdat").count() != 1 || moov > mdat || free < 4096 {
        return Ok(0);
    }
    // Everything before mdat that is not free moves forward by the free
    // bytes before mdat; mdat moves by exactly that much.
    let removed_before_mdat: usize = top[..mdat]
        .iter()
        .filter(|b| &b.kind == b"free" || &b.kind == b"skip")
        .map(|b| b.end - b.start)
        .sum();
    let mut out = Vec::with_capacity(data.len() - free);
    for (i, b) in top.iter().enumerate() {
        if &b.kind == b"free" || &b.kind == b"skip" {
            continue;
        }
        if i == moov {
            let mut moov_bytes = data[b.start..b.end].to_vec();
            let size = moov_bytes.len();
            let header = b.header;
            let patched = patch_offsets(
                &mut moov_bytes,
                header,
                size,
                removed_before_mdat as u64,
                (top[mdat].start as u64, top[mdat].end as u64),
            )?;
            if patched == 0 {
                bail!("no chunk offsets found in moov");
            }
            out.extend_from_slice(&moov_bytes);
        } else {
            out.extend_from_slice(&data[b.start..b.end]);
        }
    }
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
    Ok(free as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = u32::try_from(body.len() + 8)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn removes_free_room_and_patches_chunk_offsets() {
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0");
        let free = bx(b"free", &[0u8; 5000]);
        let mdat_at = (ftyp.len() + free.len()) as u32;
        let moov_len = 8 + 8 + 8 + 8 + 8 + 8 + 12; // moov>trak>mdia>minf>stbl>stco(1 entry)
        let mdat_at = mdat_at + moov_len as u32;
        let mut stco_body = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stco_body.extend_from_slice(&(mdat_at + 8).to_be_bytes());
        let moov = bx(
            b"moov",
            &bx(
                b"trak",
                &bx(
                    b"mdia",
                    &bx(b"minf", &bx(b"stbl", &bx(b"stco", &stco_body))),
                ),
            ),
        );
        assert_eq!(moov.len(), moov_len);
        let mdat = bx(b"mdat", b"MEDIA");
        let file: Vec<u8> = [ftyp.clone(), free, moov, mdat.clone()].concat();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        std::fs::write(&path, &file).unwrap();
        assert_eq!(compact(&path, 1 << 20).unwrap(), 5008);
        let out = std::fs::read(&path).unwrap();
        assert_eq!(out.len(), file.len() - 5008);
        let new_mdat = out.len() - mdat.len();
        assert_eq!(&out[new_mdat + 4..new_mdat + 8], b"mdat");
        let off = u32::from_be_bytes(out[new_mdat - 4..new_mdat].try_into().unwrap());
        assert_eq!(
            off as usize,
            new_mdat + 8,
            "chunk offset points at the media"
        );
        assert_eq!(&out[off as usize..off as usize + 5], b"MEDIA");
        // Over the limit: untouched.
        assert_eq!(compact(&path, 10).unwrap(), 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.mp4");
        for bytes in [
            vec![0xffu8; 100],
            vec![0, 0, 0, 1, b'f', b'r', b'e', b'e'],
            vec![0, 0, 0, 9],
            [vec![0, 0, 0, 1], b"free".to_vec(), vec![0xff; 8]].concat(),
            bx(b"moov", &[0, 0, 0, 2, b's', b't', b'c', b'o']),
        ] {
            std::fs::write(&path, &bytes).unwrap();
            let _ = compact(&path, 1 << 20);
        }
    }
}
