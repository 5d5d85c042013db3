//! Box primitives shared by every MP4 writer and reader here: the box header
//! (size, type, 64-bit sizes), full boxes (version and flags), and the
//! big-endian integers boxes are made of.

/// Why MP4 bytes could not be read or rewritten. Offsets are bytes from the
/// start of the buffer given (for a file, from the start of the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mp4Error {
    /// A box header, or a field, runs past the end of the bytes.
    #[error("truncated box or field at byte {at}")]
    Truncated {
        /// Where the missing bytes were expected.
        at: u64,
    },
    /// A box's size is below its header's or runs past its parent.
    #[error(
        "box {} at byte {at} has a bad size {size}",
        String::from_utf8_lossy(kind)
    )]
    BadSize {
        /// The box type.
        kind: [u8; 4],
        /// Where the box starts.
        at: u64,
        /// The size it claims.
        size: u64,
    },
    /// A box the operation needs is not there.
    #[error("no {0} box")]
    Missing(&'static str),
    /// A box's content does not fit its type.
    #[error("{what} at byte {at}")]
    Malformed {
        /// What is wrong.
        what: &'static str,
        /// Where the box starts.
        at: u64,
    },
    /// A chunk offset points outside the media data.
    #[error("chunk offset {offset} outside mdat {start}..{end}")]
    OffsetOutsideMdat {
        /// The chunk offset.
        offset: u64,
        /// Start of `mdat`.
        start: u64,
        /// End of `mdat`.
        end: u64,
    },
    /// A rotation other than a quarter turn.
    #[error("rotation {0} is not 0, 90, 180 or 270")]
    BadRotation(u32),
}

/// The header of one box: its type, its whole size and its header's length
/// (8, or 16 with a 64-bit size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    /// The box type (`moov`, `trak`, …).
    pub kind: [u8; 4],
    /// Size of the whole box, header included.
    pub size: u64,
    /// Length of the header: 8, or 16 for a 64-bit size.
    pub header_len: u64,
}

impl BoxHeader {
    /// Reads the header of the box that starts `bytes` (at least its first
    /// 16 bytes, or all that is left of its parent). `available` is how many
    /// bytes the parent has from there on (a size of 0 means all of them);
    /// `at` is where the box starts, for errors. `Ok(None)` when fewer than
    /// 8 bytes are left: there is no further box.
    pub fn parse(bytes: &[u8], at: u64, available: u64) -> Result<Option<BoxHeader>, Mp4Error> {
        if available < 8 {
            return Ok(None);
        }
        let head = bytes.get(..8).ok_or(Mp4Error::Truncated { at })?;
        let size32 = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = [head[4], head[5], head[6], head[7]];
        let (size, header_len) = match size32 {
            0 => (available, 8),
            1 => {
                let large = read_u64(bytes, 8).map_err(|_| Mp4Error::Truncated { at })?;
                (large, 16)
            }
            n => (u64::from(n), 8),
        };
        if size < header_len || size > available {
            return Err(Mp4Error::BadSize { kind, at, size });
        }
        Ok(Some(BoxHeader {
            kind,
            size,
            header_len,
        }))
    }
}

/// A box inside a buffer: where it starts and ends, its header length and
/// type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BoxRef {
    /// Offset of the box's first byte.
    pub(crate) start: usize,
    /// Offset just past its last byte.
    pub(crate) end: usize,
    /// Length of its header (its body starts at `start + header`).
    pub(crate) header: usize,
    /// The box type.
    pub(crate) kind: [u8; 4],
}

impl BoxRef {
    /// Offset of the box's body.
    pub(crate) fn body(&self) -> usize {
        self.start + self.header
    }
}

/// The boxes in `data[from..to]`, in order. Fewer than 8 bytes left at the
/// end are not a box and are passed over.
pub(crate) fn children(data: &[u8], from: usize, to: usize) -> Result<Vec<BoxRef>, Mp4Error> {
    let to = to.min(data.len());
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        let Some(h) = BoxHeader::parse(&data[pos..to], pos as u64, (to - pos) as u64)? else {
            break;
        };
        let too_large = || Mp4Error::BadSize {
            kind: h.kind,
            at: pos as u64,
            size: h.size,
        };
        let size = usize::try_from(h.size).map_err(|_| too_large())?;
        let end = pos.checked_add(size).ok_or_else(too_large)?;
        out.push(BoxRef {
            start: pos,
            end,
            header: h.header_len as usize,
            kind: h.kind,
        });
        pos = end;
    }
    Ok(out)
}

/// Like [`children`], but the boxes must cover `data[from..to]` exactly:
/// trailing bytes that are not a box are an error.
pub(crate) fn children_exact(data: &[u8], from: usize, to: usize) -> Result<Vec<BoxRef>, Mp4Error> {
    let boxes = children(data, from, to)?;
    let covered = boxes.last().map_or(from, |b| b.end);
    if covered != to {
        return Err(Mp4Error::Truncated { at: covered as u64 });
    }
    Ok(boxes)
}

/// A big-endian `u32` at `at`.
pub(crate) fn read_u32(data: &[u8], at: usize) -> Result<u32, Mp4Error> {
    data.get(at..at.saturating_add(4))
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(Mp4Error::Truncated { at: at as u64 })
}

/// A big-endian `u64` at `at`.
pub(crate) fn read_u64(data: &[u8], at: usize) -> Result<u64, Mp4Error> {
    data.get(at..at.saturating_add(8))
        .and_then(|s| s.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(Mp4Error::Truncated { at: at as u64 })
}

/// Appends one box: size, type, then whatever `body` appends.
pub(crate) fn write_box(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends a full box: a box whose body starts with a version and 24 bits of
/// flags.
pub(crate) fn write_full_box(
    out: &mut Vec<u8>,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(out, kind, |o| {
        o.push(version);
        o.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(o);
    })
}

/// Appends a big-endian `u16`.
pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian `u32`.
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a big-endian `u64`.
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_and_full_boxes_carry_their_size_type_version_and_flags() {
        let mut out = Vec::new();
        write_box(&mut out, b"moov", |o| {
            write_full_box(o, b"mvhd", 1, 0x00_0203, |o| {
                put_u16(o, 0x0405);
                put_u32(o, 0x0607_0809);
                put_u64(o, 0x0a0b_0c0d_0e0f_1011);
            });
        });
        assert_eq!(
            out,
            [
                &[0, 0, 0, 34][..],
                b"moov",
                &[0, 0, 0, 26],
                b"mvhd",
                &[1, 0, 2, 3, 4, 5, 6, 7, 8, 9],
                &[0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11],
            ]
            .concat()
        );
        let top = children(&out, 0, out.len()).unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!((&top[0].kind, top[0].header, top[0].end), (b"moov", 8, 34));
        let inner = children(&out, top[0].body(), top[0].end).unwrap();
        assert_eq!((&inner[0].kind, inner[0].start), (b"mvhd", 8));
    }

    #[test]
    fn headers_with_64_bit_and_open_ended_sizes() {
        let mut large = vec![0, 0, 0, 1];
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&20u64.to_be_bytes());
        large.extend_from_slice(&[7; 4]);
        let h = BoxHeader::parse(&large, 0, 20).unwrap().unwrap();
        assert_eq!((h.kind, h.size, h.header_len), (*b"mdat", 20, 16));
        // Size 0: the box runs to the end of its parent.
        let h = BoxHeader::parse(b"\0\0\0\0free", 0, 100).unwrap().unwrap();
        assert_eq!(h.size, 100);
        assert_eq!(BoxHeader::parse(b"\0\0\0", 0, 3), Ok(None));
        assert_eq!(
            BoxHeader::parse(b"\0\0\0\x01mdat\0\0", 5, 40),
            Err(Mp4Error::Truncated { at: 5 })
        );
    }

    #[test]
    fn bad_sizes_are_errors_that_name_the_byte() {
        let data = [&[0, 0, 0, 8][..], b"free", &[0, 0, 0, 9], b"moov"].concat();
        assert_eq!(
            children(&data, 0, data.len()),
            Err(Mp4Error::BadSize {
                kind: *b"moov",
                at: 8,
                size: 9
            })
        );
        assert!(children(b"\0\0\0\x04free", 0, 8).is_err());
        // Trailing bytes: passed over by `children`, refused by
        // `children_exact`.
        let trailing = [&[0, 0, 0, 8][..], b"free", &[1, 2, 3]].concat();
        assert_eq!(children(&trailing, 0, trailing.len()).unwrap().len(), 1);
        assert_eq!(
            children_exact(&trailing, 0, trailing.len()),
            Err(Mp4Error::Truncated { at: 8 })
        );
    }
}
