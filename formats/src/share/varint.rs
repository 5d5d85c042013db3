//! Variable-length integers.
//!
//! - [`write_leb128`] / [`read_leb128`]: little-endian base-128 (low group
//!   first), used by the Sharecast TLV for numbers. Decoding is strict: no
//!   redundant trailing zero groups, at most 10 bytes, no overflow.
//! - [`write_uintvar`] / [`read_uintvar`]: the WSP `uintvar` (WAP-230 §8.1.2),
//!   which is also WBXML's `mb_u_int32` (WAP-192 §5.1): big-endian base-128
//!   (high group first), continuation bit 0x80, at most 5 octets for 32 bits.
//!   Redundant leading 0x80 groups are tolerated (other implementations emit
//!   them), values above `u32::MAX` are not.

use super::error::{DecodeError, ErrorKind, Reader};

/// Append `v` as LEB128.
pub fn write_leb128(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Read a strict LEB128 `u64`.
pub fn read_leb128(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let start = r.pos();
    let mut v: u64 = 0;
    for i in 0..10u32 {
        let b = r.u8("varint")?;
        let group = u64::from(b & 0x7F);
        if i == 9 && group > 1 {
            return Err(r.error_at(
                start,
                ErrorKind::Overlong("varint does not fit in 64 bits".into()),
            ));
        }
        v |= group << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && group == 0 {
                return Err(r.error_at(
                    start,
                    ErrorKind::Overlong("varint has a redundant zero group".into()),
                ));
            }
            return Ok(v);
        }
    }
    Err(r.error_at(
        start,
        ErrorKind::Overlong("varint longer than 10 bytes".into()),
    ))
}

/// Append `v` as a WSP uintvar / WBXML mb_u_int32.
pub fn write_uintvar(out: &mut Vec<u8>, v: u32) {
    let mut groups = [0u8; 5];
    let mut n = 0;
    let mut x = v;
    loop {
        groups[n] = (x & 0x7F) as u8;
        n += 1;
        x >>= 7;
        if x == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        let cont = if i > 0 { 0x80 } else { 0 };
        out.push(groups[i] | cont);
    }
}

/// Read a WSP uintvar / WBXML mb_u_int32 (at most 5 octets, fits in `u32`).
pub fn read_uintvar(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let start = r.pos();
    let mut v: u64 = 0;
    for _ in 0..5 {
        let b = r.u8("uintvar")?;
        v = (v << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            return u32::try_from(v).map_err(|_| {
                r.error_at(start, ErrorKind::Overlong("uintvar exceeds 32 bits".into()))
            });
        }
    }
    Err(r.error_at(
        start,
        ErrorKind::Overlong("uintvar longer than 5 octets".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::share::error::Layer;

    fn uv(v: u32) -> Vec<u8> {
        let mut o = Vec::new();
        write_uintvar(&mut o, v);
        o
    }

    /// WAP-230 (WSP) §8.1.2 "Variable Length Unsigned Integers": the
    /// specification's example encodes 0x87A5 as the octets 0x82 0x8F 0x25.
    #[test]
    fn uintvar_matches_wsp_spec_example() {
        assert_eq!(uv(0x87A5), vec![0x82, 0x8F, 0x25]);
        let mut r = Reader::new(&[0x82, 0x8F, 0x25], Layer::Wsp);
        assert_eq!(read_uintvar(&mut r).ok(), Some(0x87A5));
    }

    #[test]
    fn uintvar_edges() {
        assert_eq!(uv(0), vec![0]);
        assert_eq!(uv(0x7F), vec![0x7F]);
        assert_eq!(uv(0x80), vec![0x81, 0x00]);
        assert_eq!(uv(u32::MAX), vec![0x8F, 0xFF, 0xFF, 0xFF, 0x7F]);
        let mut r = Reader::new(&[0x90, 0x80, 0x80, 0x80, 0x00], Layer::Wsp);
        assert!(read_uintvar(&mut r).is_err());
        let mut r = Reader::new(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], Layer::Wsp);
        assert!(read_uintvar(&mut r).is_err());
        let mut r = Reader::new(&[0x81], Layer::Wsp);
        assert!(read_uintvar(&mut r).is_err());
    }

    #[test]
    fn leb128_round_trip_and_strictness() {
        for (v, len) in [
            (0u64, 1),
            (1, 1),
            (127, 1),
            (128, 2),
            (300, 2),
            (1 << 35, 6),
            (u64::MAX, 10),
        ] {
            let mut o = Vec::new();
            write_leb128(&mut o, v);
            assert_eq!(o.len(), len);
            let mut r = Reader::new(&o, Layer::Tlv);
            assert_eq!(read_leb128(&mut r).ok(), Some(v));
            assert!(r.is_empty());
        }
        // 300 = AC 02
        let mut o = Vec::new();
        write_leb128(&mut o, 300);
        assert_eq!(o, vec![0xAC, 0x02]);
        // Redundant zero group.
        let mut r = Reader::new(&[0x80, 0x00], Layer::Tlv);
        assert!(matches!(
            read_leb128(&mut r).map_err(|e| e.kind),
            Err(ErrorKind::Overlong(_))
        ));
        // Overflow.
        let overflow: Vec<u8> = [0xFF; 9].iter().copied().chain([0x02]).collect();
        let mut r = Reader::new(&overflow, Layer::Tlv);
        assert!(read_leb128(&mut r).is_err());
    }
}
