//! Share messages end to end: video attributes to SMS-SUBMIT PDUs in any
//! [`ShareFormat`], and a reassembled SMS payload back to attributes,
//! recognising the format by port and content.
//!
//! | format | carried as | recognised by |
//! | --- | --- | --- |
//! | `tlv` | 8-bit SMS to port [`SHARECAST_PORT`] | destination port |
//! | `xml` | text SMS (GSM 7-bit or UCS-2) | text starts with `<` |
//! | `text` | text SMS (GSM 7-bit or UCS-2) | link then `§key=value` fields |
//! | `wap-si` | WSP Push, SI WBXML, port 2948 | port 2948 + `application/vnd.wap.sic` |
//! | `wap-sl` | WSP Push, SL WBXML, port 2948 | port 2948 + `application/vnd.wap.slc` |
//! | `wap-video` | WSP Push, video WBXML, port 2948 | port 2948 + [`VIDEO_WBXML_CONTENT_TYPE`] |

use std::fmt;
use std::str::FromStr;

use crate::attributes::VideoAttributes;

use super::error::{DecodeError, EncodeError, ErrorKind, Layer};
use super::segment::{self, Content, SegmentOptions, SubmitOptions};
use super::si::ServiceIndication;
use super::sl::ServiceLoading;
use super::sms::{Address, Body, UserData};
use super::wsp::{self, ApplicationId, ContentType, PushPdu};
use super::{gsm7, text, tlv, ucs2, video_wbxml, wbxml, xml, SHARECAST_PORT};

/// Content type of the WBXML video document in a WAP Push.
pub const VIDEO_WBXML_CONTENT_TYPE: &str = "application/vnd.sharecast.video+wbxml";
/// Content type of the XML video document in a WAP Push (accepted on
/// decode).
pub const VIDEO_XML_CONTENT_TYPE: &str = "application/vnd.sharecast.video+xml";
/// X-Wap-Application-Id of video-document pushes.
pub(crate) const VIDEO_PUSH_APPLICATION_ID: &str = "urn:sharecast:push:video";

/// The share-message formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareFormat {
    /// Sharecast TLV, 8-bit SMS to [`SHARECAST_PORT`].
    Tlv,
    /// XML video document as a text SMS.
    Xml,
    /// Delimited text SMS.
    Text,
    /// WAP Push Service Indication.
    WapSi,
    /// WAP Push Service Loading.
    WapSl,
    /// WAP Push of the WBXML video document.
    WapVideo,
}

impl ShareFormat {
    /// Every format.
    pub const ALL: [ShareFormat; 6] = [
        Self::Tlv,
        Self::Xml,
        Self::Text,
        Self::WapSi,
        Self::WapSl,
        Self::WapVideo,
    ];

    /// The name used on the command line and in docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tlv => "tlv",
            Self::Xml => "xml",
            Self::Text => "text",
            Self::WapSi => "wap-si",
            Self::WapSl => "wap-sl",
            Self::WapVideo => "wap-video",
        }
    }
}

impl fmt::Display for ShareFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ShareFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown format {s:?} (one of: {})",
                    Self::ALL.map(ShareFormat::name).join(", ")
                )
            })
    }
}

/// Options for encoding a share message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOptions {
    /// Carry renditions (TLV, XML, WBXML video); off by default so that a
    /// typical share fits one SMS.
    pub include_renditions: bool,
    /// Concatenation reference (only used when more than one SMS is needed).
    pub reference: u16,
    /// Use 16-bit concatenation references.
    pub wide_reference: bool,
    /// WSP transaction id of WAP Pushes.
    pub transaction_id: u8,
    /// WBXML version octet (default 1.3).
    pub wbxml_version: u8,
    /// SMS-SUBMIT options (SMSC, message reference, ...).
    pub submit: SubmitOptions,
}

impl Default for MessageOptions {
    fn default() -> Self {
        Self {
            include_renditions: false,
            reference: 0,
            wide_reference: false,
            transaction_id: 0,
            wbxml_version: wbxml::VERSION_1_3,
            submit: SubmitOptions::default(),
        }
    }
}

/// A payload ready for segmentation: the content and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Text or 8-bit data.
    pub content: Content,
    /// (destination, source) application ports.
    pub ports: Option<(u16, u16)>,
}

/// The WSP push PDU carrying a share as SI, SL or the video document.
pub fn encode_wap_push(
    attrs: &VideoAttributes,
    format: ShareFormat,
    opts: &MessageOptions,
) -> Result<Vec<u8>, EncodeError> {
    let (content_type, application_id, body) = match format {
        ShareFormat::WapSi => (
            ContentType::WellKnown(wsp::CT_SIC),
            ApplicationId::Code(wsp::APP_ID_WML_UA),
            ServiceIndication::from_attributes(attrs)?.encode_wbxml(opts.wbxml_version)?,
        ),
        ShareFormat::WapSl => (
            ContentType::WellKnown(wsp::CT_SLC),
            ApplicationId::Code(wsp::APP_ID_WML_UA),
            ServiceLoading::from_attributes(attrs)?.encode_wbxml(opts.wbxml_version)?,
        ),
        ShareFormat::WapVideo => (
            ContentType::Text(VIDEO_WBXML_CONTENT_TYPE.to_owned()),
            ApplicationId::Uri(VIDEO_PUSH_APPLICATION_ID.to_owned()),
            video_wbxml::encode(attrs, opts.include_renditions, opts.wbxml_version)?,
        ),
        other => {
            return Err(EncodeError::invalid(
                "format",
                format!("{other} is not a WAP Push format"),
            ))
        }
    };
    PushPdu {
        transaction_id: opts.transaction_id,
        content_type,
        application_id: Some(application_id),
        other_headers: Vec::new(),
        body,
    }
    .encode()
}

/// The payload of a share in `format`.
pub fn encode_payload(
    attrs: &VideoAttributes,
    format: ShareFormat,
    opts: &MessageOptions,
) -> Result<Payload, EncodeError> {
    Ok(match format {
        ShareFormat::Tlv => Payload {
            content: Content::Binary(tlv::encode(
                attrs,
                &tlv::TlvOptions {
                    include_renditions: opts.include_renditions,
                },
            )?),
            ports: Some((SHARECAST_PORT, SHARECAST_PORT)),
        },
        ShareFormat::Xml => Payload {
            content: Content::Text(xml::encode(attrs, opts.include_renditions)?),
            ports: None,
        },
        ShareFormat::Text => Payload {
            content: Content::Text(text::encode(attrs)?),
            ports: None,
        },
        ShareFormat::WapSi | ShareFormat::WapSl | ShareFormat::WapVideo => Payload {
            content: Content::Binary(encode_wap_push(attrs, format, opts)?),
            ports: Some((wsp::WAP_PUSH_PORT, wsp::WAP_PUSH_SOURCE_PORT)),
        },
    })
}

/// The user data of the SMS (one, or several concatenated) of a share.
pub fn encode_user_data(
    attrs: &VideoAttributes,
    format: ShareFormat,
    opts: &MessageOptions,
) -> Result<Vec<UserData>, EncodeError> {
    let p = encode_payload(attrs, format, opts)?;
    segment::segment(
        &p.content,
        &SegmentOptions {
            ports: p.ports,
            reference: opts.reference,
            wide_reference: opts.wide_reference,
        },
    )
}

/// The SMS-SUBMIT PDUs (PDU-mode layout, SMSC field first) of a share.
pub fn encode_submit_pdus(
    attrs: &VideoAttributes,
    format: ShareFormat,
    destination: &Address,
    opts: &MessageOptions,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let parts = encode_user_data(attrs, format, opts)?;
    segment::submit_pdus(destination, parts, &opts.submit)
}

/// A reassembled SMS payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assembled {
    /// Text (from GSM 7-bit or UCS-2).
    Text(String),
    /// 8-bit data.
    Binary(Vec<u8>),
}

/// Join the bodies of the parts of one message (in order) and decode text.
/// Every part must use the same alphabet. GSM 7-bit and UCS-2 are decoded
/// after joining, so an escape or surrogate pair split by another sender's
/// encoder still decodes.
pub fn assemble(bodies: &[&Body]) -> Result<Assembled, DecodeError> {
    let Some(first) = bodies.first() else {
        return Ok(Assembled::Binary(Vec::new()));
    };
    let alphabet = first.alphabet();
    let mut joined = Vec::new();
    for (i, b) in bodies.iter().enumerate() {
        if b.alphabet() != alphabet {
            return Err(DecodeError::invalid(
                Layer::Message,
                i,
                format!(
                    "part {} is {:?} but part 1 is {alphabet:?}",
                    i + 1,
                    b.alphabet()
                ),
            ));
        }
        joined.extend_from_slice(b.as_bytes());
    }
    Ok(match first {
        Body::Gsm7(_) => Assembled::Text(gsm7::decode(&joined)?),
        Body::Ucs2(_) => Assembled::Text(ucs2::decode(&joined)?),
        Body::EightBit(_) => Assembled::Binary(joined),
    })
}

/// A decoded share.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedShare {
    /// The format it came in.
    pub format: ShareFormat,
    /// The attributes.
    pub attributes: VideoAttributes,
}

/// Decode a WSP push PDU carrying SI, SL, or the video document.
/// Offsets count from the transaction id.
pub fn decode_wap_push(bytes: &[u8]) -> Result<DecodedShare, DecodeError> {
    let pdu = wsp::decode(bytes)?;
    let body_at = bytes.len() - pdu.body.len();
    let ct = &pdu.content_type;
    let shift = |e: DecodeError| e.shifted(body_at);
    if ct.is("application/vnd.wap.sic") {
        let si = ServiceIndication::decode_wbxml(&pdu.body).map_err(shift)?;
        return Ok(DecodedShare {
            format: ShareFormat::WapSi,
            attributes: si.to_attributes(),
        });
    }
    if ct.is("application/vnd.wap.slc") {
        let sl = ServiceLoading::decode_wbxml(&pdu.body).map_err(shift)?;
        return Ok(DecodedShare {
            format: ShareFormat::WapSl,
            attributes: sl.to_attributes(),
        });
    }
    if ct.is(VIDEO_WBXML_CONTENT_TYPE) {
        return Ok(DecodedShare {
            format: ShareFormat::WapVideo,
            attributes: video_wbxml::decode(&pdu.body).map_err(shift)?,
        });
    }
    if ct.is(VIDEO_XML_CONTENT_TYPE) {
        let text = std::str::from_utf8(&pdu.body).map_err(|e| {
            DecodeError::invalid(Layer::Xml, body_at + e.valid_up_to(), "UTF-8 in XML body")
        })?;
        return Ok(DecodedShare {
            format: ShareFormat::Xml,
            attributes: xml::decode(text).map_err(shift)?,
        });
    }
    Err(DecodeError::unsupported(
        Layer::Wsp,
        2,
        format!(
            "push content type {}",
            ct.media_type().unwrap_or_else(|| format!("{ct:?}"))
        ),
    ))
}

fn decode_text(t: &str) -> Result<DecodedShare, DecodeError> {
    if t.trim_start().starts_with('<') {
        return Ok(DecodedShare {
            format: ShareFormat::Xml,
            attributes: xml::decode(t)?,
        });
    }
    if text::looks_like(t) {
        return Ok(DecodedShare {
            format: ShareFormat::Text,
            attributes: text::decode(t)?,
        });
    }
    Err(DecodeError::new(
        Layer::Message,
        0,
        ErrorKind::Unsupported(
            "text that is neither a Sharecast XML document nor a §-delimited share".into(),
        ),
    ))
}

/// Recognise and decode a reassembled payload by its destination port and
/// content: TLV on [`SHARECAST_PORT`], WAP Push on 2948, and text (XML or
/// delimited) or TLV-looking 8-bit data without ports. Offsets count from
/// the start of the reassembled payload.
pub fn decode_payload(
    ports: Option<(u16, u16)>,
    payload: &Assembled,
) -> Result<DecodedShare, DecodeError> {
    match (ports, payload) {
        (Some((wsp::WAP_PUSH_PORT, _)), Assembled::Binary(b)) => decode_wap_push(b),
        (Some((SHARECAST_PORT, _)), Assembled::Binary(b)) => Ok(DecodedShare {
            format: ShareFormat::Tlv,
            attributes: tlv::decode(b)?,
        }),
        (Some((p, _)), Assembled::Text(_)) if p == wsp::WAP_PUSH_PORT || p == SHARECAST_PORT => {
            Err(DecodeError::invalid(
                Layer::Message,
                0,
                format!("text user data on port {p}, which carries 8-bit data"),
            ))
        }
        (Some((p, _)), _) => Err(DecodeError::unsupported(
            Layer::Message,
            0,
            format!("application port {p}"),
        )),
        (None, Assembled::Text(t)) => decode_text(t),
        (None, Assembled::Binary(b)) => {
            if b.first().is_some_and(|v| v >> 4 == tlv::MAGIC) {
                return Ok(DecodedShare {
                    format: ShareFormat::Tlv,
                    attributes: tlv::decode(b)?,
                });
            }
            match std::str::from_utf8(b) {
                Ok(t) => decode_text(t),
                Err(_) => Err(DecodeError::unsupported(
                    Layer::Message,
                    0,
                    "8-bit data without a port that is not a Sharecast TLV",
                )),
            }
        }
    }
}
