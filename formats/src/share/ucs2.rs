//! UCS-2 text for SMS (TS 23.038 §6.2.3; DCS alphabet `10`).
//!
//! Encoded as UTF-16 big-endian, so characters outside the Basic
//! Multilingual Plane travel as surrogate pairs, as handsets do today. An
//! unpaired surrogate decodes to U+FFFD.

use super::error::{DecodeError, ErrorKind, Layer};

/// Encode text as UTF-16BE octets.
pub fn encode(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// Decode UTF-16BE octets. Errors on an odd number of octets.
pub fn decode(octets: &[u8]) -> Result<String, DecodeError> {
    if octets.len() % 2 != 0 {
        return Err(DecodeError::new(
            Layer::Ucs2,
            octets.len() - 1,
            ErrorKind::BadLength(format!(
                "UCS-2 text has an odd number of octets ({})",
                octets.len()
            )),
        ));
    }
    let units: Vec<u16> = octets
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}

/// Whether the UTF-16 code unit is a high (leading) surrogate.
pub(crate) fn is_high_surrogate(unit: u16) -> bool {
    (0xD800..0xDC00).contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_round_trip() {
        let t = "分享视频：海边";
        let b = encode(t);
        assert_eq!(&b[..2], &[0x52, 0x06]);
        assert_eq!(decode(&b).unwrap(), t);
    }

    #[test]
    fn astral_chars_use_surrogates() {
        let b = encode("🎬");
        assert_eq!(b, vec![0xD8, 0x3C, 0xDF, 0xAC]);
        assert_eq!(decode(&b).unwrap(), "🎬");
        assert_eq!(decode(&b[..2]).unwrap(), "\u{FFFD}");
        assert!(decode(&b[..3]).is_err());
    }
}
