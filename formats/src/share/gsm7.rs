//! The GSM 7-bit default alphabet and its extension table (3GPP TS 23.038
//! §6.2.1 and §6.2.1.1), and septet packing (TS 23.038 §6.1.2.1.1).
//!
//! Text is first mapped to *septets* (values 0..=127); a character from the
//! extension table takes two septets, the escape 0x1B followed by its code.
//! Septets are then packed little-end first into octets, optionally starting
//! after some fill bits so that they begin on a septet boundary after a user
//! data header (TS 23.040 §9.2.3.24).

use super::error::{DecodeError, ErrorKind, Layer};

/// The escape septet that introduces an extension-table character.
pub(crate) const ESCAPE: u8 = 0x1B;

/// The basic table, indexed by septet. Index 0x1B is the escape and never
/// produced as a character.
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// The extension table (after an escape): (septet, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The septet(s) for `c`: one for the basic table, two (escape + code) for
/// the extension table, `None` when `c` is not in the alphabet.
pub(crate) fn char_to_septets(c: char) -> Option<(u8, Option<u8>)> {
    if c == '\u{1B}' {
        return None;
    }
    if let Some(i) = BASIC.iter().position(|&b| b == c) {
        return Some((i as u8, None));
    }
    EXTENSION
        .iter()
        .find(|(_, e)| *e == c)
        .map(|(s, _)| (ESCAPE, Some(*s)))
}

/// Number of septets `text` needs, or `None` if it is not encodable.
pub(crate) fn septet_len(text: &str) -> Option<usize> {
    text.chars().try_fold(0usize, |n, c| {
        char_to_septets(c).map(|(_, ext)| n + if ext.is_some() { 2 } else { 1 })
    })
}

/// Map `text` to septets. Errors name the first character (by char index)
/// outside the alphabet.
pub fn encode(text: &str) -> Result<Vec<u8>, (usize, char)> {
    let mut out = Vec::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        match char_to_septets(c) {
            Some((s, None)) => out.push(s),
            Some((s, Some(e))) => {
                out.push(s);
                out.push(e);
            }
            None => return Err((i, c)),
        }
    }
    Ok(out)
}

/// Map septets back to text.
///
/// Follows TS 23.038 §6.2.1.1 for codes without an extension character: an
/// escape followed by an undefined code shows the basic-table character of
/// that code; a double escape (reserved for another extension table) and a
/// lone trailing escape show a space. Errors only on values above 0x7F.
pub fn decode(septets: &[u8]) -> Result<String, DecodeError> {
    let mut out = String::with_capacity(septets.len());
    let mut i = 0;
    while i < septets.len() {
        let s = septets[i];
        if s > 0x7F {
            return Err(DecodeError::invalid(
                Layer::Gsm7,
                i,
                format!("septet value {s:#04x}"),
            ));
        }
        if s == ESCAPE {
            match septets.get(i + 1) {
                Some(&n) if n > 0x7F => {
                    return Err(DecodeError::invalid(
                        Layer::Gsm7,
                        i + 1,
                        format!("septet value {n:#04x}"),
                    ))
                }
                Some(&ESCAPE) | None => out.push(' '),
                Some(&n) => match EXTENSION.iter().find(|(k, _)| *k == n) {
                    Some((_, c)) => out.push(*c),
                    None => out.push(BASIC[usize::from(n)]),
                },
            }
            i += 2;
        } else {
            out.push(BASIC[usize::from(s)]);
            i += 1;
        }
    }
    Ok(out)
}

/// Pack septets into octets, starting after `fill_bits` (0..=6) zero bits.
pub fn pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let fill = usize::from(fill_bits.min(6));
    let total_bits = fill + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    for (i, &s) in septets.iter().enumerate() {
        let bit = fill + i * 7;
        let byte = bit / 8;
        let shift = bit % 8;
        let v = u16::from(s & 0x7F) << shift;
        out[byte] |= (v & 0xFF) as u8;
        if v > 0xFF {
            if let Some(next) = out.get_mut(byte + 1) {
                *next |= (v >> 8) as u8;
            }
        }
    }
    out
}

/// Unpack `count` septets from `octets`, skipping `fill_bits` (0..=6) first.
pub fn unpack(octets: &[u8], fill_bits: u8, count: usize) -> Result<Vec<u8>, DecodeError> {
    let fill = usize::from(fill_bits.min(6));
    let needed_bits = fill + count * 7;
    let needed = needed_bits.div_ceil(8);
    if octets.len() < needed {
        return Err(DecodeError::new(
            Layer::Gsm7,
            octets.len(),
            ErrorKind::Truncated {
                what: "packed septets",
                needed: needed - octets.len(),
            },
        ));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let bit = fill + i * 7;
        let byte = bit / 8;
        let shift = bit % 8;
        let lo = u16::from(octets[byte]);
        let hi = u16::from(octets.get(byte + 1).copied().unwrap_or(0));
        let v = ((lo | (hi << 8)) >> shift) & 0x7F;
        out.push(v as u8);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_basic_char_round_trips() {
        for (i, c) in BASIC.iter().enumerate() {
            if i == 0x1B {
                continue;
            }
            assert_eq!(char_to_septets(*c), Some((i as u8, None)), "{c:?}");
        }
        let all: String = BASIC.iter().filter(|c| **c != '\u{1B}').collect();
        let septets = encode(&all).unwrap();
        assert_eq!(decode(&septets).unwrap(), all);
    }

    #[test]
    fn extension_chars_take_two_septets() {
        let s = "€[]{}^~|\\\u{0C}";
        let septets = encode(s).unwrap();
        assert_eq!(septets.len(), 20);
        assert_eq!(&septets[..2], &[0x1B, 0x65]);
        assert_eq!(decode(&septets).unwrap(), s);
        assert_eq!(septet_len(s), Some(20));
    }

    #[test]
    fn undefined_escapes_follow_23038() {
        // ESC + 'A' (undefined in the extension table) shows 'A'.
        assert_eq!(decode(&[0x1B, 0x41]).unwrap(), "A");
        assert_eq!(decode(&[0x1B, 0x1B, 0x41]).unwrap(), " A");
        assert_eq!(decode(&[0x41, 0x1B]).unwrap(), "A ");
        assert!(decode(&[0x80]).is_err());
    }

    #[test]
    fn unencodable_chars_are_reported() {
        assert_eq!(encode("ab中"), Err((2, '中')));
        assert_eq!(septet_len("\u{1B}"), None);
        assert_eq!(septet_len("中"), None);
    }

    /// TS 23.038 §6.1.2.1.1 packing, checked with the classic published
    /// example: "hellohello" packs to E8 32 9B FD 46 97 D9 EC 37.
    #[test]
    fn hellohello_packs_to_published_octets() {
        let septets = encode("hellohello").unwrap();
        let packed = pack(&septets, 0);
        assert_eq!(hex::encode_upper(&packed), "E8329BFD4697D9EC37");
        assert_eq!(unpack(&packed, 0, 10).unwrap(), septets);
    }

    #[test]
    fn fill_bits_round_trip() {
        let septets = encode("Sharecast fill bit test €").unwrap();
        for fill in 0..=6 {
            let packed = pack(&septets, fill);
            assert_eq!(unpack(&packed, fill, septets.len()).unwrap(), septets);
            assert_eq!(packed[0] & ((1u8 << fill) - 1), 0);
        }
        assert!(unpack(&[0xE8], 0, 3).is_err());
    }
}
