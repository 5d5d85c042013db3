//! Splitting a payload into SMS user data, concatenated when it does not fit
//! one message (TS 23.040 §9.2.3.24.1), and writing the SMS-SUBMIT PDUs.
//!
//! A payload that fits one SMS together with its port element is sent
//! without a concatenation element. Otherwise every part carries the same
//! header (ports first, then the concatenation element) and as much of the
//! payload as fits:
//!
//! | body | header | per part |
//! | --- | --- | --- |
//! | 8-bit | ports + 8-bit concat (12 octets) | 128 octets |
//! | 8-bit | ports + 16-bit concat (13 octets) | 127 octets |
//! | GSM 7-bit | 8-bit concat (6 octets) | 153 septets |
//! | GSM 7-bit | 16-bit concat (7 octets) | 152 septets |
//! | UCS-2 | 8-bit concat (6 octets) | 134 octets (67 UTF-16 units) |
//!
//! An escape and the extension character after it, and the two halves of a
//! UTF-16 surrogate pair, are never split across parts.

use super::error::EncodeError;
use super::gsm7;
use super::sms::{
    Address, Body, InformationElement, SmsSubmit, UserData, UserDataHeader, Validity,
    MAX_USER_DATA_OCTETS, MAX_USER_DATA_SEPTETS,
};
use super::ucs2;

/// What to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Text: GSM 7-bit when every character allows it, else UCS-2.
    Text(String),
    /// 8-bit data.
    Binary(Vec<u8>),
}

impl Content {
    /// The coded body.
    pub(crate) fn to_body(&self) -> Body {
        match self {
            Self::Text(t) => Body::from_text(t),
            Self::Binary(b) => Body::EightBit(b.clone()),
        }
    }
}

/// How to address and concatenate the parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentOptions {
    /// (destination, source) application ports, sent as a 16-bit port
    /// element (IEI 0x05) in every part.
    pub ports: Option<(u16, u16)>,
    /// Concatenation reference; only the low 8 bits are used unless
    /// `wide_reference`.
    pub reference: u16,
    /// Use the 16-bit reference element (IEI 0x08) instead of IEI 0x00.
    pub wide_reference: bool,
}

fn header(opts: &SegmentOptions, concat: Option<(u8, u8)>) -> Option<UserDataHeader> {
    let mut elements = Vec::new();
    if let Some((destination, source)) = opts.ports {
        elements.push(InformationElement::Ports {
            destination,
            source,
            wide: true,
        });
    }
    if let Some((total, sequence)) = concat {
        elements.push(InformationElement::Concat {
            reference: if opts.wide_reference {
                opts.reference
            } else {
                opts.reference & 0xFF
            },
            total,
            sequence,
            wide: opts.wide_reference,
        });
    }
    if elements.is_empty() {
        None
    } else {
        Some(UserDataHeader { elements })
    }
}

/// Split `content` into the user data of one or more SMS.
pub fn segment(content: &Content, opts: &SegmentOptions) -> Result<Vec<UserData>, EncodeError> {
    let body = content.to_body();
    let single = UserData {
        header: header(opts, None),
        body: body.clone(),
    };
    if single.encode().is_ok() {
        return Ok(vec![single]);
    }
    // Header length (with UDHL) is the same for every part.
    let h = header(opts, Some((1, 1)))
        .map(|h| h.encode())
        .transpose()?
        .map_or(0, |b| b.len());
    let chunks: Vec<Body> = match &body {
        Body::Gsm7(septets) => {
            let cap = MAX_USER_DATA_SEPTETS - (h * 8).div_ceil(7);
            split_units(septets, cap, 1, |s, end| {
                // Do not end a part on an escape that starts a pair.
                end > 0 && is_pair_start(s, end - 1)
            })
            .into_iter()
            .map(Body::Gsm7)
            .collect()
        }
        Body::Ucs2(octets) => {
            let cap = (MAX_USER_DATA_OCTETS - h) & !1;
            split_units(octets, cap, 2, |s, end| {
                end >= 2 && ucs2::is_high_surrogate(u16::from_be_bytes([s[end - 2], s[end - 1]]))
            })
            .into_iter()
            .map(Body::Ucs2)
            .collect()
        }
        Body::EightBit(b) => split_units(b, MAX_USER_DATA_OCTETS - h, 1, |_, _| false)
            .into_iter()
            .map(Body::EightBit)
            .collect(),
    };
    let total = u8::try_from(chunks.len()).map_err(|_| EncodeError::TooManyParts {
        parts: chunks.len(),
    })?;
    Ok(chunks
        .into_iter()
        .enumerate()
        .map(|(i, body)| UserData {
            header: header(opts, Some((total, i as u8 + 1))),
            body,
        })
        .collect())
}

/// Whether septet `i` is an escape that starts an escape pair (counting
/// from the start, since an escape may itself follow an escape).
fn is_pair_start(septets: &[u8], i: usize) -> bool {
    let mut j = 0;
    while j < septets.len() {
        if septets[j] == gsm7::ESCAPE {
            if j == i {
                return true;
            }
            j += 2;
        } else {
            j += 1;
        }
        if j > i {
            return false;
        }
    }
    false
}

/// Split into chunks of at most `cap`, backing a chunk's end off by one
/// `unit` (1 septet, 2 UCS-2 octets) when `bad_end(whole, end)` says the end
/// falls inside an indivisible pair.
fn split_units(
    data: &[u8],
    cap: usize,
    unit: usize,
    bad_end: impl Fn(&[u8], usize) -> bool,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = 0;
    let cap = cap.max(2 * unit);
    while start < data.len() {
        let mut end = (start + cap).min(data.len());
        if end < data.len() && bad_end(data, end) {
            end -= unit;
        }
        out.push(data[start..end].to_vec());
        start = end;
    }
    out
}

/// Options for the SMS-SUBMIT PDUs of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubmitOptions {
    /// Service centre; `None` writes the `00` "use the default" field.
    pub smsc: Option<Address>,
    /// TP-MR of the first part; later parts count up (wrapping).
    pub message_ref: u8,
    /// TP-SRR.
    pub status_report_request: bool,
    /// TP-VP.
    pub validity: Validity,
}

/// Encode parts as SMS-SUBMIT PDUs to `destination`.
pub(crate) fn submit_pdus(
    destination: &Address,
    parts: Vec<UserData>,
    opts: &SubmitOptions,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    parts
        .into_iter()
        .enumerate()
        .map(|(i, ud)| {
            let mut s = SmsSubmit::new(destination.clone(), ud);
            s.smsc = opts.smsc.clone();
            s.message_ref = opts.message_ref.wrapping_add(i as u8);
            s.status_report_request = opts.status_report_request;
            s.validity = opts.validity;
            s.encode()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(ports: bool) -> SegmentOptions {
        SegmentOptions {
            ports: ports.then_some((16029, 16029)),
            reference: 0x1234,
            wide_reference: false,
        }
    }

    #[test]
    fn short_payload_is_one_part_without_concat() {
        let parts = segment(&Content::Binary(vec![1; 133]), &opts(true)).unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].concat().is_none());
        assert_eq!(parts[0].ports(), Some((16029, 16029)));
        let (udl, _) = parts[0].encode().unwrap();
        assert_eq!(udl, 140);
    }

    #[test]
    fn long_binary_splits_at_128() {
        let parts = segment(&Content::Binary(vec![7; 300]), &opts(true)).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].body.as_bytes().len(), 128);
        assert_eq!(parts[2].body.as_bytes().len(), 44);
        let c = parts[2].concat().unwrap();
        assert_eq!(
            (c.reference, c.total, c.sequence, c.wide),
            (0x34, 3, 3, false)
        );
    }

    #[test]
    fn gsm7_splits_at_153_and_keeps_escapes_whole() {
        let text = "a".repeat(152) + "€" + &"b".repeat(10);
        let parts = segment(&Content::Text(text), &opts(false)).unwrap();
        assert_eq!(parts.len(), 2);
        // 152 'a' fit, the escape pair would straddle 153, so it moves.
        assert_eq!(parts[0].body.as_bytes().len(), 152);
        assert_eq!(parts[1].body.as_bytes()[..2], [0x1B, 0x65]);
        let plain = segment(&Content::Text("x".repeat(160)), &opts(false)).unwrap();
        assert_eq!(plain.len(), 1);
        let over = segment(&Content::Text("x".repeat(161)), &opts(false)).unwrap();
        assert_eq!(over.len(), 2);
        assert_eq!(over[0].body.as_bytes().len(), 153);
    }

    #[test]
    fn ucs2_splits_at_67_units_and_keeps_surrogates_whole() {
        // 66 + 2 + 3 = 71 UTF-16 units: more than the 70 of one SMS.
        let text = "中".repeat(66) + "🎬" + "文文文";
        let parts = segment(&Content::Text(text), &opts(false)).unwrap();
        assert_eq!(parts.len(), 2);
        // 67 units fit a part, but the 67th is a high surrogate: it moves.
        assert_eq!(parts[0].body.as_bytes().len(), 132);
        assert_eq!(parts[1].body.as_bytes().len(), 10);
        let one = segment(&Content::Text("中".repeat(70)), &opts(false)).unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn too_many_parts_is_an_error() {
        let r = segment(&Content::Binary(vec![0; 128 * 256]), &opts(true));
        assert!(matches!(r, Err(EncodeError::TooManyParts { .. })));
    }
}
