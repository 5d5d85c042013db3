//! Errors shared by every share-message codec, and the bounds-checked byte
//! reader the decoders are built on.
//!
//! Decoders never panic: every read goes through [`Reader`], which turns a
//! short buffer into [`ErrorKind::Truncated`] with the offset where the
//! missing bytes were expected.

use std::fmt;

/// Which layer of a share message an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// Sharecast TLV payload.
    Tlv,
    /// Sharecast video-attribute XML.
    Xml,
    /// Delimited text message.
    Text,
    /// GSM 7-bit default alphabet (TS 23.038).
    Gsm7,
    /// UCS-2 / UTF-16BE text.
    Ucs2,
    /// SMS TPDU (TS 23.040).
    Sms,
    /// SMS user data header.
    Udh,
    /// WSP push PDU (WAP-230).
    Wsp,
    /// WBXML document (WAP-192).
    Wbxml,
    /// Service Indication (WAP-167).
    Si,
    /// Service Loading (WAP-168).
    Sl,
    /// The video-attribute document (XML or WBXML form).
    Video,
    /// Recognising which share format a payload is.
    Message,
    /// Hexadecimal text (command line, captures).
    Hex,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Layer::Tlv => "TLV",
            Layer::Xml => "XML",
            Layer::Text => "delimited text",
            Layer::Gsm7 => "GSM 7-bit text",
            Layer::Ucs2 => "UCS-2 text",
            Layer::Sms => "SMS PDU",
            Layer::Udh => "user data header",
            Layer::Wsp => "WSP push PDU",
            Layer::Wbxml => "WBXML",
            Layer::Si => "Service Indication",
            Layer::Sl => "Service Loading",
            Layer::Video => "video document",
            Layer::Message => "share message",
            Layer::Hex => "hex",
        };
        f.write_str(s)
    }
}

/// What is wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The input ends before a field it announces.
    #[error("truncated: {what} needs {needed} more byte(s)")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// How many bytes are missing.
        needed: usize,
    },
    /// The first byte is not the expected magic number.
    #[error("bad magic {found:#04x}: {expected}")]
    BadMagic {
        /// The byte found.
        found: u8,
        /// What was expected.
        expected: &'static str,
    },
    /// A version this decoder does not speak.
    #[error("unsupported version {found}: {expected}")]
    BadVersion {
        /// The version found.
        found: u32,
        /// The versions this decoder speaks.
        expected: &'static str,
    },
    /// A length field disagrees with the data.
    #[error("wrong length: {0}")]
    BadLength(String),
    /// A number or length encoded in more bytes than needed, or too large.
    #[error("overlong encoding: {0}")]
    Overlong(String),
    /// A field holds a value outside its range or syntax.
    #[error("invalid {0}")]
    Invalid(String),
    /// A valid construct this implementation does not support.
    #[error("unsupported {0}")]
    Unsupported(String),
    /// Bytes left over after a complete structure.
    #[error("{0} unexpected trailing byte(s)")]
    Trailing(usize),
    /// A single-valued field appears twice.
    #[error("duplicate {0}")]
    Duplicate(String),
}

/// A decoding error: the layer, the byte offset (relative to the start of
/// that layer's input, see each decoder) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{layer}: {kind} at byte {offset}")]
pub struct DecodeError {
    /// Layer the error was found in.
    pub layer: Layer,
    /// Byte offset of the offending field in the layer's input.
    pub offset: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl DecodeError {
    /// Build an error.
    pub fn new(layer: Layer, offset: usize, kind: ErrorKind) -> Self {
        Self {
            layer,
            offset,
            kind,
        }
    }

    /// Shorthand for [`ErrorKind::Invalid`].
    pub fn invalid(layer: Layer, offset: usize, what: impl Into<String>) -> Self {
        Self::new(layer, offset, ErrorKind::Invalid(what.into()))
    }

    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(layer: Layer, offset: usize, what: impl Into<String>) -> Self {
        Self::new(layer, offset, ErrorKind::Unsupported(what.into()))
    }

    /// Shift the offset by `base` (used when an inner buffer is a slice of
    /// an outer one, so the offset points into the outer buffer).
    #[must_use]
    pub fn shifted(mut self, base: usize) -> Self {
        self.offset = self.offset.saturating_add(base);
        self
    }
}

/// An encoding error: the attributes cannot be expressed in the chosen
/// format (a field too long, a character not allowed, too many parts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A field does not fit its length field.
    #[error("{field} is too long: {len} bytes, at most {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// A field holds a value the format cannot carry.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The payload needs more than 255 concatenated SMS.
    #[error("message needs {parts} SMS parts, at most 255 are possible")]
    TooManyParts {
        /// Parts needed.
        parts: usize,
    },
}

impl EncodeError {
    /// Shorthand for [`EncodeError::Invalid`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Bounds-checked reader over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    layer: Layer,
}

impl<'a> Reader<'a> {
    /// Read `buf`, reporting errors in `layer`.
    pub fn new(buf: &'a [u8], layer: Layer) -> Self {
        Self { buf, pos: 0, layer }
    }

    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The layer errors are reported in.
    pub fn layer(&self) -> Layer {
        self.layer
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Look at the next byte without consuming it.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Read one byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                Ok(*b)
            }
            None => Err(self.truncated(what, 1)),
        }
    }

    /// Read a big-endian u16.
    pub(crate) fn u16_be(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Read `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.buf.get(self.pos..end)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.truncated(what, n - self.remaining().min(n))),
        }
    }

    /// Read the rest of the buffer.
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        let r = self.rest();
        self.pos = self.buf.len();
        r
    }

    /// Read bytes up to a NUL terminator (consumed, not returned).
    pub(crate) fn cstr(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let rest = self.rest();
        match rest.iter().position(|&b| b == 0) {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(DecodeError::new(
                self.layer,
                self.buf.len(),
                ErrorKind::Truncated { what, needed: 1 },
            )),
        }
    }

    /// Error unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error_here(ErrorKind::Trailing(self.remaining())))
        }
    }

    /// A truncation error at the current offset.
    pub(crate) fn truncated(&self, what: &'static str, needed: usize) -> DecodeError {
        DecodeError::new(
            self.layer,
            self.pos,
            ErrorKind::Truncated {
                what,
                needed: needed.max(1),
            },
        )
    }

    /// An error at the current offset.
    pub(crate) fn error_here(&self, kind: ErrorKind) -> DecodeError {
        DecodeError::new(self.layer, self.pos, kind)
    }

    /// An error at `offset`.
    pub(crate) fn error_at(&self, offset: usize, kind: ErrorKind) -> DecodeError {
        DecodeError::new(self.layer, offset, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_offsets() {
        let mut r = Reader::new(&[1, 2, 3], Layer::Tlv);
        assert_eq!(r.u8("a").ok(), Some(1));
        let e = r.take(5, "value").unwrap_err();
        assert_eq!(e.offset, 1);
        assert_eq!(
            e.kind,
            ErrorKind::Truncated {
                what: "value",
                needed: 3
            }
        );
        assert_eq!(
            e.to_string(),
            "TLV: truncated: value needs 3 more byte(s) at byte 1"
        );
    }

    #[test]
    fn cstr_needs_terminator() {
        let mut r = Reader::new(b"ab\0cd", Layer::Wsp);
        assert_eq!(r.cstr("s").ok(), Some(&b"ab"[..]));
        assert!(r.cstr("s").is_err());
    }
}
