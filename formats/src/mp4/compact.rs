//! Compaction of a finished MP4: drops the top-level `free` / `skip` boxes
//! (the room a muxer reserved for the index at the front of the file) by
//! moving `mdat` forward and patching the chunk offsets (`stco` / `co64`).
//!
//! Pure box surgery on bytes: the output has the same boxes as the input in
//! the same order, minus top-level `free` / `skip` boxes.

use super::boxes::{children_exact, read_u32, read_u64, BoxRef, Mp4Error};

/// Less free room than this is left alone: not worth a copy of the file.
const MIN_FREE_BYTES: usize = 4096;

fn is_free(b: &BoxRef) -> bool {
    &b.kind == b"free" || &b.kind == b"skip"
}

/// Subtracts `delta` from every entry of one chunk offset box (`stco` with
/// 32-bit entries, `co64` with 64-bit ones), in place. Returns how many.
fn patch_chunk_offsets(
    moov: &mut [u8],
    b: &BoxRef,
    delta: u64,
    mdat: (u64, u64),
) -> Result<usize, Mp4Error> {
    let wide = &b.kind == b"co64";
    let body = b.body();
    let malformed = |what| Mp4Error::Malformed {
        what,
        at: b.start as u64,
    };
    if b.end - body < 8 {
        return Err(malformed("short chunk offset box"));
    }
    let count = read_u32(moov, body + 4)? as usize;
    let width = if wide { 8 } else { 4 };
    if count.saturating_mul(width).saturating_add(body + 8) > b.end {
        return Err(malformed("chunk offset table overruns its box"));
    }
    for i in 0..count {
        let at = body + 8 + i * width;
        let old = if wide {
            read_u64(moov, at)?
        } else {
            u64::from(read_u32(moov, at)?)
        };
        if old < mdat.0 || old >= mdat.1 {
            return Err(Mp4Error::OffsetOutsideMdat {
                offset: old,
                start: mdat.0,
                end: mdat.1,
            });
        }
        let new = old - delta;
        if wide {
            moov[at..at + 8].copy_from_slice(&new.to_be_bytes());
        } else {
            let new = u32::try_from(new).map_err(|_| malformed("chunk offset overflow"))?;
            moov[at..at + 4].copy_from_slice(&new.to_be_bytes());
        }
    }
    Ok(count)
}

/// Subtracts `delta` from every chunk offset in `moov[from..to]` (in place),
/// walking down to the sample tables. Returns how many were patched.
fn patch_offsets(
    moov: &mut [u8],
    from: usize,
    to: usize,
    delta: u64,
    mdat: (u64, u64),
) -> Result<usize, Mp4Error> {
    let mut patched = 0;
    for b in children_exact(moov, from, to)? {
        match &b.kind {
            b"trak" | b"mdia" | b"minf" | b"stbl" => {
                patched += patch_offsets(moov, b.body(), b.end, delta, mdat)?;
            }
            b"stco" | b"co64" => patched += patch_chunk_offsets(moov, &b, delta, mdat)?,
            _ => {}
        }
    }
    Ok(patched)
}

/// The file without its top-level `free` / `skip` boxes, chunk offsets
/// patched; `None` when there is nothing worth removing (less than 4 KiB of
/// free room, more than one `mdat`, or the index after the media), so the
/// file stays as it is.
pub fn compact(data: &[u8]) -> Result<Option<Vec<u8>>, Mp4Error> {
    let top = children_exact(data, 0, data.len())?;
    let free: usize = top
        .iter()
        .filter(|b| is_free(b))
        .map(|b| b.end - b.start)
        .sum();
    let find = |kind: &'static str| {
        top.iter()
            .position(|b| b.kind == kind.as_bytes())
            .ok_or(Mp4Error::Missing(kind))
    };
    let moov = find("moov")?;
    let mdat = find("mdat")?;
    let mdats = top.iter().filter(|b| &b.kind == b"mdat").count();
    if mdats != 1 || moov > mdat || free < MIN_FREE_BYTES {
        return Ok(None);
    }
    // Everything before mdat that is not free moves forward by the free
    // bytes before mdat; mdat moves by exactly that much.
    let removed_before_mdat: usize = top[..mdat]
        .iter()
        .filter(|b| is_free(b))
        .map(|b| b.end - b.start)
        .sum();
    let mdat_range = (top[mdat].start as u64, top[mdat].end as u64);
    let mut out = Vec::with_capacity(data.len() - free);
    for (i, b) in top.iter().enumerate() {
        if is_free(b) {
            continue;
        }
        let start = out.len();
        out.extend_from_slice(&data[b.start..b.end]);
        if i == moov {
            let moov_bytes = &mut out[start..];
            let (header, size) = (b.header, moov_bytes.len());
            let delta = removed_before_mdat as u64;
            if patch_offsets(moov_bytes, header, size, delta, mdat_range)? == 0 {
                return Err(Mp4Error::Malformed {
                    what: "no chunk offsets in moov",
                    at: b.start as u64,
                });
            }
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mp4::boxes::write_box;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        write_box(&mut v, kind, |o| o.extend_from_slice(body));
        v
    }

    /// `ftyp`, 5000 bytes of `free`, a `moov` whose one `stco` entry points
    /// at the media, and `mdat`.
    fn file_with_free_room() -> Vec<u8> {
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0");
        let free = bx(b"free", &[0u8; 5000]);
        let moov_len = 8 + 8 + 8 + 8 + 8 + 8 + 12; // moov>trak>mdia>minf>stbl>stco(1 entry)
        let mdat_at = (ftyp.len() + free.len() + moov_len) as u32;
        let mut stco_body = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stco_body.extend_from_slice(&(mdat_at + 8).to_be_bytes());
        let stbl = bx(b"stbl", &bx(b"stco", &stco_body));
        let moov = bx(b"moov", &bx(b"trak", &bx(b"mdia", &bx(b"minf", &stbl))));
        assert_eq!(moov.len(), moov_len);
        [ftyp, free, moov, bx(b"mdat", b"MEDIA")].concat()
    }

    #[test]
    fn removes_free_room_and_patches_chunk_offsets() {
        let file = file_with_free_room();
        let out = compact(&file).unwrap().unwrap();
        assert_eq!(out.len(), file.len() - 5008);
        let new_mdat = out.len() - 13;
        assert_eq!(&out[new_mdat + 4..new_mdat + 8], b"mdat");
        let off = u32::from_be_bytes(out[new_mdat - 4..new_mdat].try_into().unwrap());
        assert_eq!(
            off as usize,
            new_mdat + 8,
            "chunk offset points at the media"
        );
        assert_eq!(&out[off as usize..off as usize + 5], b"MEDIA");
        // Already compact: nothing left to do.
        assert_eq!(compact(&out), Ok(None));
    }

    #[test]
    fn offsets_outside_the_media_are_refused() {
        let mut file = file_with_free_room();
        let entry = file.len() - 13 - 4;
        file[entry..entry + 4].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(
            compact(&file),
            Err(Mp4Error::OffsetOutsideMdat { offset: 3, .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            vec![0xffu8; 100],
            vec![0, 0, 0, 1, b'f', b'r', b'e', b'e'],
            vec![0, 0, 0, 9],
            [vec![0, 0, 0, 1], b"free".to_vec(), vec![0xff; 8]].concat(),
            bx(b"moov", &[0, 0, 0, 2, b's', b't', b'c', b'o']),
            [
                bx(b"free", &[0; 5000]),
                bx(b"moov", &bx(b"stco", &[0xff; 8])),
                bx(b"mdat", b""),
            ]
            .concat(),
        ] {
            assert!(compact(&bytes).is_err(), "{bytes:?}");
        }
    }
}
