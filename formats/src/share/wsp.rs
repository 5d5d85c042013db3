//! The connectionless WSP Push PDU (WAP-230-WSP §8.2.4.1) and the header
//! encodings it needs (§8.4).
//!
//! ```text
//! TID (1) | PDU type 0x06 (1) | HeadersLen (uintvar) | ContentType | Headers | Data
//! ```
//!
//! `HeadersLen` counts the content type and the headers. The content type
//! is a well-known short integer (`0xAE` = `application/vnd.wap.sic`,
//! WAP-230 Appendix A Table 40), a text string, or the general form with a
//! length and parameters (parameters are skipped on decode). Of the headers,
//! `X-Wap-Application-Id` (well-known field 0x2F, written `0xAF`) is decoded;
//! the others are kept as raw encoded bytes.
//!
//! Offsets in decode errors count bytes from the transaction id.

use super::error::{DecodeError, EncodeError, ErrorKind, Layer, Reader};
use super::varint::{read_uintvar, write_uintvar};

/// PDU type Push.
pub(crate) const PDU_PUSH: u8 = 0x06;
/// PDU type ConfirmedPush (connection-oriented only; not accepted here).
pub(crate) const PDU_CONFIRMED_PUSH: u8 = 0x07;
/// WDP port of the connectionless push application (WAP-259-WDP Appendix B).
pub const WAP_PUSH_PORT: u16 = 2948;
/// Source port used for pushes (the WSP/WTP gateway port).
pub const WAP_PUSH_SOURCE_PORT: u16 = 9200;
/// Well-known header field X-Wap-Application-Id (WAP-230 Table 39).
pub(crate) const FIELD_X_WAP_APPLICATION_ID: u8 = 0x2F;
/// Push application id `x-wap-application:wml.ua` (OMNA registry), used
/// for SI and SL.
pub(crate) const APP_ID_WML_UA: u32 = 0x02;

/// Content type `application/vnd.wap.sic` (WAP-230 Table 40).
pub const CT_SIC: u8 = 0x2E;
/// Content type `application/vnd.wap.slc`.
pub const CT_SLC: u8 = 0x30;

/// Well-known content types this crate names (WAP-230 Appendix A Table 40).
const WELL_KNOWN_TYPES: &[(u8, &str)] = &[
    (0x00, "*/*"),
    (0x01, "text/*"),
    (0x02, "text/html"),
    (0x03, "text/plain"),
    (0x08, "text/vnd.wap.wml"),
    (0x14, "application/vnd.wap.wmlc"),
    (0x27, "application/xml"),
    (0x28, "text/xml"),
    (0x29, "application/vnd.wap.wbxml"),
    (0x2D, "text/vnd.wap.si"),
    (0x2E, "application/vnd.wap.sic"),
    (0x2F, "text/vnd.wap.sl"),
    (0x30, "application/vnd.wap.slc"),
    (0x31, "text/vnd.wap.co"),
    (0x32, "application/vnd.wap.coc"),
    (0x3E, "application/vnd.wap.mms-message"),
];

/// A content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentType {
    /// A well-known assigned number (0..=0x7F).
    WellKnown(u8),
    /// A media type as text.
    Text(String),
}

impl ContentType {
    /// The media type as text, when known.
    pub fn media_type(&self) -> Option<String> {
        match self {
            Self::WellKnown(c) => WELL_KNOWN_TYPES
                .iter()
                .find(|(k, _)| k == c)
                .map(|(_, n)| (*n).to_owned()),
            Self::Text(t) => Some(t.to_ascii_lowercase()),
        }
    }

    /// Whether this is `name` (either form).
    pub fn is(&self, name: &str) -> bool {
        self.media_type()
            .is_some_and(|m| m.eq_ignore_ascii_case(name))
    }
}

/// The push application the PDU is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplicationId {
    /// A registered code (e.g. 0x02, `x-wap-application:wml.ua`).
    Code(u32),
    /// A URI.
    Uri(String),
}

/// A connectionless push PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPdu {
    /// Transaction id.
    pub transaction_id: u8,
    /// Content type of the data.
    pub content_type: ContentType,
    /// X-Wap-Application-Id, if present.
    pub application_id: Option<ApplicationId>,
    /// Other headers, encoded, kept as they were.
    pub other_headers: Vec<u8>,
    /// The pushed content.
    pub body: Vec<u8>,
}

fn write_text(out: &mut Vec<u8>, s: &str, field: &'static str) -> Result<(), EncodeError> {
    if s.as_bytes().contains(&0) {
        return Err(EncodeError::invalid(field, "text contains NUL"));
    }
    // A text that is empty or starts with 0x7F or a control character is
    // quoted too: the reader takes a leading 0x7F for the Quote, and a
    // value that starts below 0x20 for a length or an integer.
    if !s
        .as_bytes()
        .first()
        .is_some_and(|b| (0x20..0x7F).contains(b))
    {
        out.push(0x7F); // Quote
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
    Ok(())
}

fn write_integer(out: &mut Vec<u8>, v: u32) {
    if v < 0x80 {
        out.push(0x80 | v as u8);
    } else {
        let b = v.to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        out.push((4 - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
}

impl PushPdu {
    /// Encode the PDU.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut headers = Vec::new();
        match &self.content_type {
            ContentType::WellKnown(c) if *c < 0x80 => headers.push(0x80 | c),
            ContentType::WellKnown(c) => {
                return Err(EncodeError::invalid(
                    "content type",
                    format!("well-known value {c:#04x} above 0x7F"),
                ))
            }
            ContentType::Text(t) => {
                if t.is_empty() || !t.is_ascii() || t.as_bytes()[0] < 0x20 {
                    return Err(EncodeError::invalid(
                        "content type",
                        format!("{t:?} is not a media type"),
                    ));
                }
                write_text(&mut headers, t, "content type")?;
            }
        }
        if let Some(app) = &self.application_id {
            headers.push(0x80 | FIELD_X_WAP_APPLICATION_ID);
            match app {
                ApplicationId::Code(c) => write_integer(&mut headers, *c),
                ApplicationId::Uri(u) => write_text(&mut headers, u, "application id")?,
            }
        }
        headers.extend_from_slice(&self.other_headers);
        let len = u32::try_from(headers.len()).map_err(|_| EncodeError::TooLong {
            field: "WSP headers",
            len: headers.len(),
            max: u32::MAX as usize,
        })?;
        let mut out = vec![self.transaction_id, PDU_PUSH];
        write_uintvar(&mut out, len);
        out.extend_from_slice(&headers);
        out.extend_from_slice(&self.body);
        Ok(out)
    }
}

fn read_text(r: &mut Reader<'_>, what: &'static str) -> Result<String, DecodeError> {
    let at = r.pos();
    let mut raw = r.cstr(what)?;
    if raw.first() == Some(&0x7F) {
        raw = &raw[1..];
    }
    String::from_utf8(raw.to_vec())
        .map_err(|_| r.error_at(at, ErrorKind::Invalid(format!("UTF-8 in {what}"))))
}

/// Read an Integer-value (short or long integer) up to 32 bits.
fn read_integer(r: &mut Reader<'_>, what: &'static str) -> Result<u32, DecodeError> {
    let at = r.pos();
    let b = r.u8(what)?;
    if b >= 0x80 {
        return Ok(u32::from(b & 0x7F));
    }
    if b == 0 || b > 30 {
        return Err(r.error_at(
            at,
            ErrorKind::Invalid(format!("{what}: integer form {b:#04x}")),
        ));
    }
    if b > 4 {
        return Err(r.error_at(
            at,
            ErrorKind::Unsupported(format!("{what}: {b}-octet integer (at most 4)")),
        ));
    }
    let bytes = r.take(usize::from(b), what)?;
    Ok(bytes.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x)))
}

/// Skip one header value in its general encoding (WAP-230 §8.4.1.2).
fn skip_value(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    let b = r.peek().ok_or_else(|| r.truncated("header value", 1))?;
    match b {
        0..=30 => {
            r.u8("length")?;
            r.take(usize::from(b), "header value")?;
        }
        31 => {
            r.u8("length quote")?;
            let len = read_uintvar(r)?;
            r.take(len as usize, "header value")?;
        }
        32..=127 => {
            r.cstr("header text value")?;
        }
        _ => {
            r.u8("header value")?;
        }
    }
    Ok(())
}

fn read_content_type(r: &mut Reader<'_>) -> Result<ContentType, DecodeError> {
    let at = r.pos();
    let b = r.peek().ok_or_else(|| r.truncated("content type", 1))?;
    match b {
        0x80..=0xFF => {
            r.u8("content type")?;
            Ok(ContentType::WellKnown(b & 0x7F))
        }
        0x20..=0x7F => Ok(ContentType::Text(read_text(r, "content type")?)),
        _ => {
            // Content-general-form = Value-length Media-type *Parameter
            r.u8("content type length")?;
            let len = if b == 31 {
                read_uintvar(r)? as usize
            } else {
                usize::from(b)
            };
            let value_at = r.pos();
            let value = r.take(len, "content type value")?;
            let mut v = Reader::new(value, r.layer());
            let first = v
                .peek()
                .ok_or_else(|| r.error_at(at, ErrorKind::BadLength("empty content type".into())))?;
            let ct = if first >= 0x80 || (1..=30).contains(&first) {
                let code = read_integer(&mut v, "content type").map_err(|e| e.shifted(value_at))?;
                let code = u8::try_from(code)
                    .ok()
                    .filter(|c| *c < 0x80)
                    .ok_or_else(|| {
                        r.error_at(
                            value_at,
                            ErrorKind::Unsupported(format!("content type number {code:#x}")),
                        )
                    })?;
                ContentType::WellKnown(code)
            } else {
                ContentType::Text(
                    read_text(&mut v, "content type").map_err(|e| e.shifted(value_at))?,
                )
            };
            // Parameters (e.g. charset) are skipped.
            Ok(ct)
        }
    }
}

/// The X-Wap-Application-Id value: a URI, or a registered code.
fn read_application_id(h: &mut Reader<'_>) -> Result<ApplicationId, DecodeError> {
    let next = h.peek().ok_or_else(|| h.truncated("application id", 1))?;
    Ok(if (0x20..0x80).contains(&next) {
        ApplicationId::Uri(read_text(h, "application id")?)
    } else {
        ApplicationId::Code(read_integer(h, "application id")?)
    })
}

/// The push headers: the content type, the application id if any, and the
/// other headers, encoded, as they were. Offsets are from the start of the
/// headers.
fn read_headers(
    headers: &[u8],
) -> Result<(ContentType, Option<ApplicationId>, Vec<u8>), DecodeError> {
    let mut h = Reader::new(headers, Layer::Wsp);
    let content_type = read_content_type(&mut h)?;
    let mut application_id = None;
    let mut other_headers = Vec::new();
    while !h.is_empty() {
        let start = h.pos();
        let b = h.u8("header field")?;
        match b {
            // Shift-delimiter + page, or a short-cut shift: code page changes
            // are kept with the other headers.
            0x7F => {
                h.u8("code page")?;
            }
            0x01..=0x1F => {}
            0x80..=0xFF if b & 0x7F == FIELD_X_WAP_APPLICATION_ID => {
                application_id = Some(read_application_id(&mut h)?);
                continue;
            }
            0x80..=0xFF => skip_value(&mut h)?,
            0x00 => {
                return Err(DecodeError::invalid(
                    Layer::Wsp,
                    start,
                    "header field name 0x00",
                ))
            }
            // Application header: Token-text name, Text-string value.
            _ => {
                h.cstr("header name")?;
                h.cstr("header value")?;
            }
        }
        other_headers.extend_from_slice(&headers[start..h.pos()]);
    }
    Ok((content_type, application_id, other_headers))
}

/// Decode a connectionless push PDU.
pub fn decode(bytes: &[u8]) -> Result<PushPdu, DecodeError> {
    let mut r = Reader::new(bytes, Layer::Wsp);
    let transaction_id = r.u8("transaction id")?;
    let type_at = r.pos();
    let pdu_type = r.u8("PDU type")?;
    if pdu_type != PDU_PUSH {
        return Err(r.error_at(
            type_at,
            if pdu_type == PDU_CONFIRMED_PUSH {
                ErrorKind::Unsupported("ConfirmedPush in connectionless mode".into())
            } else {
                ErrorKind::Invalid(format!("PDU type {pdu_type:#04x}, expected Push (0x06)"))
            },
        ));
    }
    let len_at = r.pos();
    let len = read_uintvar(&mut r)? as usize;
    if len > r.remaining() {
        return Err(r.error_at(
            len_at,
            ErrorKind::BadLength(format!(
                "headers length {len} but only {} octets follow",
                r.remaining()
            )),
        ));
    }
    let headers_at = r.pos();
    let headers = r.take(len, "headers")?;
    let body = r.take_rest().to_vec();

    let (content_type, application_id, other_headers) =
        read_headers(headers).map_err(|e| e.shifted(headers_at))?;
    Ok(PushPdu {
        transaction_id,
        content_type,
        application_id,
        other_headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/, target share_wsp): a content type whose
    /// text starts with 0x7F was written without the Quote, so the reader
    /// took its first character for the Quote and lost it.
    #[test]
    fn text_starting_with_the_quote_octet_keeps_it() {
        let pdu = PushPdu {
            transaction_id: 0x27,
            content_type: ContentType::Text("\u{7f}\u{7f}x".into()),
            application_id: None,
            other_headers: Vec::new(),
            body: vec![0x10],
        };
        assert_eq!(decode(&pdu.encode().unwrap()).unwrap(), pdu);
        // Also found by fuzzing: an application id that starts with a
        // control character was read back as a length.
        let pdu = PushPdu {
            application_id: Some(ApplicationId::Uri("\u{b}\u{7f}x".into())),
            ..pdu
        };
        assert_eq!(decode(&pdu.encode().unwrap()).unwrap(), pdu);
        // And an empty one was read back as the integer form 0x00.
        let pdu = PushPdu {
            application_id: Some(ApplicationId::Uri(String::new())),
            ..pdu
        };
        assert_eq!(decode(&pdu.encode().unwrap()).unwrap(), pdu);
    }

    /// The PDU Kannel's PPG and many gateways send for an SI: TID 0x01,
    /// Push, headers length 4, content type in the general form
    /// (`03 AE 81 EA`: length 3, application/vnd.wap.sic, charset=utf-8).
    #[test]
    fn general_form_content_type_with_charset() {
        let pdu = [0x01, 0x06, 0x04, 0x03, 0xAE, 0x81, 0xEA, 0x02, 0x05];
        let p = decode(&pdu).unwrap();
        assert_eq!(p.transaction_id, 1);
        assert_eq!(p.content_type, ContentType::WellKnown(CT_SIC));
        assert!(p.content_type.is("application/vnd.wap.sic"));
        assert_eq!(p.body, vec![0x02, 0x05]);
    }

    #[test]
    fn application_id_and_text_types_round_trip() {
        for (ct, app) in [
            (
                ContentType::WellKnown(CT_SLC),
                ApplicationId::Code(APP_ID_WML_UA),
            ),
            (
                ContentType::Text("application/vnd.sharecast.video+wbxml".into()),
                ApplicationId::Uri("urn:sharecast:push:video".into()),
            ),
            (ContentType::WellKnown(CT_SIC), ApplicationId::Code(0x9000)),
        ] {
            let p = PushPdu {
                transaction_id: 7,
                content_type: ct,
                application_id: Some(app),
                other_headers: vec![0x8D, 0x8A], // Content-Length: 10
                body: b"body".to_vec(),
            };
            let b = p.encode().unwrap();
            assert_eq!(decode(&b).unwrap(), p);
        }
        let p = PushPdu {
            transaction_id: 0,
            content_type: ContentType::WellKnown(CT_SIC),
            application_id: Some(ApplicationId::Code(APP_ID_WML_UA)),
            other_headers: Vec::new(),
            body: Vec::new(),
        };
        assert_eq!(
            p.encode().unwrap(),
            vec![0x00, 0x06, 0x03, 0xAE, 0xAF, 0x82]
        );
    }

    #[test]
    fn rejects_bad_pdus() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0x01, 0x07, 0x00]).is_err());
        assert!(decode(&[0x01, 0x40, 0x00]).is_err());
        let e = decode(&[0x01, 0x06, 0x05, 0xAE]).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::BadLength(_)));
        assert_eq!(e.offset, 2);
        // Text content type without terminator.
        assert!(decode(&[0x01, 0x06, 0x02, b'a', b'b']).is_err());
    }
}
