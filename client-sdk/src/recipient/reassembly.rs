//! Reassembly of concatenated SMS and decoding of share messages (see the
//! [module documentation](super) for the rules): PDUs in any order in,
//! [`ReceivedShare`]s out, the time passed in.

use std::collections::BTreeMap;
use std::fmt;

use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::sms::{Alphabet, Body, Timestamp, UserData};
use sharecast_formats::share::{
    assemble, decode_payload, decode_pdu, parse_hex, Address, DecodeError, Layer, ShareFormat,
    SmscField,
};

use super::links::{check_links, LinkError};

/// Limits of the reassembler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// How long to wait for the missing parts of a message, counted from
    /// its first part (default 5 minutes).
    pub timeout_ms: u64,
    /// Most incomplete messages held at once (default 64); beyond it the
    /// oldest is dropped.
    pub max_pending: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 5 * 60 * 1000,
            max_pending: 64,
        }
    }
}

/// A share message received in full.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedShare {
    /// Who sent it (SMS-DELIVER) or who it is for (SMS-SUBMIT).
    pub peer: Address,
    /// Service-centre timestamp of the first part (SMS-DELIVER only).
    pub timestamp: Option<Timestamp>,
    /// The format it came in.
    pub format: ShareFormat,
    /// The video attributes.
    pub attributes: VideoAttributes,
    /// How many SMS it took.
    pub parts: u8,
}

/// What happened to one pushed PDU.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// The message is complete and decoded.
    Complete(Box<ReceivedShare>),
    /// A part was stored; the message still misses parts.
    Pending {
        /// The peer.
        peer: String,
        /// Concatenation reference.
        reference: u16,
        /// Parts held so far.
        received: u8,
        /// Parts in the message.
        total: u8,
    },
    /// This part was already held; the first copy is kept.
    Duplicate {
        /// The peer.
        peer: String,
        /// Concatenation reference.
        reference: u16,
        /// The repeated part number.
        sequence: u8,
        /// Whether it is byte-for-byte the part already held.
        identical: bool,
    },
}

/// Why an incomplete message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its parts did not all arrive within the timeout.
    Timeout,
    /// Too many incomplete messages; it was the oldest.
    Evicted,
}

/// An incomplete message that was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The peer.
    pub peer: String,
    /// Concatenation reference.
    pub reference: u16,
    /// Parts in the message.
    pub total: u8,
    /// Part numbers that arrived.
    pub received: Vec<u8>,
    /// Part numbers that never arrived.
    pub missing: Vec<u8>,
    /// When the first part arrived.
    pub first_seen_ms: u64,
    /// Why it was dropped.
    pub reason: DropReason,
}

impl fmt::Display for Expired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "message {} from {} ({} parts): part(s) {:?} missing ({})",
            self.reference,
            self.peer,
            self.total,
            self.missing,
            match self.reason {
                DropReason::Timeout => "timed out",
                DropReason::Evicted => "evicted: too many incomplete messages",
            }
        )
    }
}

/// Errors of the recipient side.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecipientError {
    /// The hex text is not hex.
    #[error("bad hex: {0}")]
    Hex(DecodeError),
    /// The PDU is not a valid SMS-DELIVER or SMS-SUBMIT.
    #[error("bad SMS PDU: {0}")]
    Pdu(DecodeError),
    /// A part's alphabet differs from the earlier parts of its message.
    #[error("part {sequence} of message {reference} from {peer} is {found:?} but earlier parts are {expected:?}")]
    MixedAlphabets {
        /// The peer.
        peer: String,
        /// Concatenation reference.
        reference: u16,
        /// The offending part.
        sequence: u8,
        /// Alphabet of the earlier parts.
        expected: Alphabet,
        /// Alphabet of this part.
        found: Alphabet,
    },
    /// The message is complete but is not a share message this recipient
    /// can read.
    #[error("message from {peer} ({parts} part(s)) is not a readable share: {error}")]
    Payload {
        /// The peer.
        peer: String,
        /// How many SMS it took.
        parts: u8,
        /// What is wrong, with the offset in the reassembled payload.
        error: DecodeError,
    },
    /// The message decodes but carries no link a recipient could open.
    #[error("message from {peer} carries no link to the video (no share page, VOD or live URL)")]
    NoLink {
        /// The peer (empty for a WAP Push body given alone).
        peer: String,
    },
    /// The message carries a link a recipient must not be offered.
    #[error("message from {peer} carries an unsafe link: {error}")]
    UnsafeLink {
        /// The peer (empty for a WAP Push body given alone).
        peer: String,
        /// Which link and why.
        error: LinkError,
    },
}

impl RecipientError {
    fn from_links(peer: &str, e: LinkError) -> Self {
        match e {
            LinkError::NoLink => RecipientError::NoLink {
                peer: peer.to_owned(),
            },
            other => RecipientError::UnsafeLink {
                peer: peer.to_owned(),
                error: other,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    peer: String,
    reference: u16,
    wide: bool,
    total: u8,
    port: Option<u16>,
}

#[derive(Debug, Clone)]
struct Pending {
    peer: Address,
    timestamp: Option<Timestamp>,
    ports: Option<(u16, u16)>,
    alphabet: Alphabet,
    parts: Vec<Option<Body>>,
    first_seen_ms: u64,
}

impl Pending {
    fn received(&self) -> Vec<u8> {
        (1..=self.parts.len())
            .filter(|i| self.parts[i - 1].is_some())
            .map(|i| i as u8)
            .collect()
    }

    fn missing(&self) -> Vec<u8> {
        (1..=self.parts.len())
            .filter(|i| self.parts[i - 1].is_none())
            .map(|i| i as u8)
            .collect()
    }

    fn expired(&self, key: &Key, reason: DropReason) -> Expired {
        Expired {
            peer: key.peer.clone(),
            reference: key.reference,
            total: key.total,
            received: self.received(),
            missing: self.missing(),
            first_seen_ms: self.first_seen_ms,
            reason,
        }
    }
}

/// Reassembles concatenated SMS and decodes share messages. See the module
/// documentation for the rules.
#[derive(Debug, Clone, Default)]
pub struct Reassembler {
    config: ReassemblyConfig,
    pending: BTreeMap<Key, Pending>,
    /// Messages completed within the last `timeout_ms`: their parts, and
    /// when they completed.
    completed: BTreeMap<Key, (Vec<Body>, u64)>,
    /// Single-SMS messages received within the last `timeout_ms`.
    singles: Vec<(Single, u64)>,
    dropped: Vec<Expired>,
}

/// What identifies a single-SMS message for duplicate detection.
#[derive(Debug, Clone, PartialEq)]
struct Single {
    peer: String,
    timestamp: Option<Timestamp>,
    ports: Option<(u16, u16)>,
    body: Body,
}

impl Reassembler {
    /// A reassembler with the given limits.
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            pending: BTreeMap::new(),
            completed: BTreeMap::new(),
            singles: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Number of incomplete messages held.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest incomplete message times out, if any: call
    /// [`Reassembler::expire`] then.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.pending
            .values()
            .map(|p| p.first_seen_ms.saturating_add(self.config.timeout_ms))
            .min()
    }

    /// Drop the messages that timed out by `now_ms` and return them, with
    /// any dropped earlier (by eviction, or by a timeout noticed during
    /// [`Reassembler::push_pdu`]).
    pub fn expire(&mut self, now_ms: u64) -> Vec<Expired> {
        self.collect_timeouts(now_ms);
        std::mem::take(&mut self.dropped)
    }

    fn collect_timeouts(&mut self, now_ms: u64) {
        let timeout = self.config.timeout_ms;
        let due: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, p)| now_ms >= p.first_seen_ms.saturating_add(timeout))
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            if let Some(p) = self.pending.remove(&k) {
                self.dropped.push(p.expired(&k, DropReason::Timeout));
            }
        }
        self.completed
            .retain(|_, (_, done)| now_ms < done.saturating_add(timeout));
        self.singles
            .retain(|(_, seen)| now_ms < seen.saturating_add(timeout));
    }

    /// Push one PDU given as hexadecimal text (whitespace ignored).
    pub fn push_hex(&mut self, hex: &str, now_ms: u64) -> Result<PushOutcome, RecipientError> {
        let bytes = parse_hex(hex).map_err(RecipientError::Hex)?;
        self.push_pdu(&bytes, now_ms)
    }

    /// Push one SMS-DELIVER (as a phone receives it) or SMS-SUBMIT (as a
    /// gateway capture shows it), with or without the leading SMSC field.
    pub fn push_pdu(&mut self, pdu: &[u8], now_ms: u64) -> Result<PushOutcome, RecipientError> {
        let sms = decode_pdu(pdu, SmscField::Auto).map_err(RecipientError::Pdu)?;
        let peer = sms.peer().clone();
        let timestamp = sms.timestamp();
        let user_data = sms.user_data().clone();
        self.push_user_data(peer, timestamp, user_data, now_ms)
    }

    /// Push the user data of one SMS received by other means (e.g. from a
    /// modem that already parsed the PDU).
    pub fn push_user_data(
        &mut self,
        peer: Address,
        timestamp: Option<Timestamp>,
        user_data: UserData,
        now_ms: u64,
    ) -> Result<PushOutcome, RecipientError> {
        self.collect_timeouts(now_ms);
        let ports = user_data.ports();
        let Some(c) = user_data.concat().filter(|c| c.total > 1) else {
            return self.push_single(peer, timestamp, ports, user_data.body, now_ms);
        };
        if c.sequence == 0 || c.sequence > c.total {
            // Decoded PDUs never get here; hand-built user data might.
            return Err(RecipientError::Pdu(DecodeError::invalid(
                Layer::Udh,
                0,
                format!("concatenation part {} of {}", c.sequence, c.total),
            )));
        }
        let key = Key {
            peer: peer.to_string(),
            reference: c.reference,
            wide: c.wide,
            total: c.total,
            port: ports.map(|(d, _)| d),
        };
        let body = user_data.body;
        let alphabet = body.alphabet();
        let repeat = self.open_pending(&key, c.sequence, &body, || Pending {
            peer: peer.clone(),
            timestamp,
            ports,
            alphabet,
            parts: vec![None; usize::from(c.total)],
            first_seen_ms: now_ms,
        });
        if let Some(repeat) = repeat {
            return Ok(repeat);
        }
        let Some(entry) = self.pending.get_mut(&key) else {
            // Just inserted; unreachable in practice, but never panic.
            return finish(peer, timestamp, ports, &[&body]);
        };
        if entry.alphabet != alphabet {
            return Err(RecipientError::MixedAlphabets {
                peer: key.peer,
                reference: key.reference,
                sequence: c.sequence,
                expected: entry.alphabet,
                found: alphabet,
            });
        }
        let slot = usize::from(c.sequence) - 1;
        if let Some(existing) = &entry.parts[slot] {
            return Ok(PushOutcome::Duplicate {
                identical: *existing == body,
                peer: key.peer,
                reference: key.reference,
                sequence: c.sequence,
            });
        }
        entry.parts[slot] = Some(body);
        if entry.parts.iter().any(Option::is_none) {
            return Ok(PushOutcome::Pending {
                received: entry.parts.iter().filter(|p| p.is_some()).count() as u8,
                total: c.total,
                peer: key.peer,
                reference: key.reference,
            });
        }
        self.complete(key, now_ms)
            .unwrap_or_else(|| finish(peer, timestamp, ports, &[]))
    }

    /// A message in one SMS: decoded at once, unless the same SMS came
    /// within the timeout (then it is a duplicate).
    fn push_single(
        &mut self,
        peer: Address,
        timestamp: Option<Timestamp>,
        ports: Option<(u16, u16)>,
        body: Body,
        now_ms: u64,
    ) -> Result<PushOutcome, RecipientError> {
        let single = Single {
            peer: peer.to_string(),
            timestamp,
            ports,
            body,
        };
        if self.singles.iter().any(|(s, _)| *s == single) {
            return Ok(PushOutcome::Duplicate {
                peer: single.peer,
                reference: 0,
                sequence: 1,
                identical: true,
            });
        }
        let outcome = finish(peer, timestamp, ports, &[&single.body]);
        if self.singles.len() >= self.config.max_pending.max(1) {
            self.singles.remove(0);
        }
        self.singles.push((single, now_ms));
        outcome
    }

    /// Make sure a message is pending under `key` (made by `new` when it is
    /// not), unless part `sequence` repeats a message completed under the
    /// same key: then the duplicate outcome. A different part under a
    /// completed key means the sender's reference wrapped round to a new
    /// message.
    fn open_pending(
        &mut self,
        key: &Key,
        sequence: u8,
        body: &Body,
        new: impl FnOnce() -> Pending,
    ) -> Option<PushOutcome> {
        if self.pending.contains_key(key) {
            return None;
        }
        if let Some((parts, _)) = self.completed.get(key) {
            if parts.get(usize::from(sequence) - 1) == Some(body) {
                return Some(PushOutcome::Duplicate {
                    identical: true,
                    peer: key.peer.clone(),
                    reference: key.reference,
                    sequence,
                });
            }
            // Different content under a completed message's key: the
            // sender's reference wrapped round to a new message.
            self.completed.remove(key);
        }
        self.make_room();
        self.pending.insert(key.clone(), new());
        None
    }

    /// Decode the message pending under `key`, whose parts are all in, and
    /// remember it as completed (`None` when nothing is pending there).
    fn complete(&mut self, key: Key, now_ms: u64) -> Option<Result<PushOutcome, RecipientError>> {
        let done = self.pending.remove(&key)?;
        let bodies: Vec<Body> = done.parts.into_iter().flatten().collect();
        let outcome = finish(
            done.peer,
            done.timestamp,
            done.ports,
            &bodies.iter().collect::<Vec<_>>(),
        );
        self.remember_completed(key, bodies, now_ms);
        Some(outcome)
    }

    /// Keep a completed message's parts for `timeout_ms`, at most
    /// `max_pending` messages (the oldest is forgotten first).
    fn remember_completed(&mut self, key: Key, parts: Vec<Body>, now_ms: u64) {
        while self.completed.len() >= self.config.max_pending.max(1) {
            let oldest = self
                .completed
                .iter()
                .min_by_key(|(_, (_, done))| *done)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    self.completed.remove(&k);
                }
                None => break,
            }
        }
        self.completed.insert(key, (parts, now_ms));
    }

    fn make_room(&mut self) {
        while self.pending.len() >= self.config.max_pending.max(1) {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.first_seen_ms)
                .map(|(k, _)| k.clone());
            match oldest.and_then(|k| self.pending.remove(&k).map(|p| (k, p))) {
                Some((k, p)) => self.dropped.push(p.expired(&k, DropReason::Evicted)),
                None => break,
            }
        }
    }
}

fn finish(
    peer: Address,
    timestamp: Option<Timestamp>,
    ports: Option<(u16, u16)>,
    bodies: &[&Body],
) -> Result<PushOutcome, RecipientError> {
    let parts = bodies.len().min(255) as u8;
    let payload_error = |peer: &Address, error| RecipientError::Payload {
        peer: peer.to_string(),
        parts,
        error,
    };
    let payload = assemble(bodies).map_err(|e| payload_error(&peer, e))?;
    let share = decode_payload(ports, &payload).map_err(|e| payload_error(&peer, e))?;
    check_links(&share.attributes).map_err(|e| RecipientError::from_links(&peer.to_string(), e))?;
    Ok(PushOutcome::Complete(Box::new(ReceivedShare {
        peer,
        timestamp,
        format: share.format,
        attributes: share.attributes,
        parts,
    })))
}

/// Decode the body of a WAP Push as Android's `WAP_PUSH_DELIVER` intent
/// gives it (the `data` extra, with the content type from its
/// `mimeType`): a Service Indication (`application/vnd.wap.sic`), a Service
/// Loading (`application/vnd.wap.slc`) or the Sharecast video document
/// (WBXML or XML). The same link rules apply as to SMS.
pub fn decode_wap_body(
    content_type: &str,
    body: &[u8],
) -> Result<sharecast_formats::share::DecodedShare, RecipientError> {
    use sharecast_formats::share::message::{VIDEO_WBXML_CONTENT_TYPE, VIDEO_XML_CONTENT_TYPE};
    use sharecast_formats::share::DecodedShare;
    use sharecast_formats::share::{si::ServiceIndication, sl::ServiceLoading, video_wbxml, xml};
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let err = |error| RecipientError::Payload {
        peer: String::new(),
        parts: 1,
        error,
    };
    let share = match media.as_str() {
        "application/vnd.wap.sic" => DecodedShare {
            format: ShareFormat::WapSi,
            attributes: ServiceIndication::decode_wbxml(body)
                .map_err(err)?
                .to_attributes(),
        },
        "application/vnd.wap.slc" => DecodedShare {
            format: ShareFormat::WapSl,
            attributes: ServiceLoading::decode_wbxml(body)
                .map_err(err)?
                .to_attributes(),
        },
        m if m == VIDEO_WBXML_CONTENT_TYPE => DecodedShare {
            format: ShareFormat::WapVideo,
            attributes: video_wbxml::decode(body).map_err(err)?,
        },
        m if m == VIDEO_XML_CONTENT_TYPE => {
            let text = std::str::from_utf8(body).map_err(|e| {
                err(DecodeError::invalid(
                    Layer::Xml,
                    e.valid_up_to(),
                    "UTF-8 in XML body",
                ))
            })?;
            DecodedShare {
                format: ShareFormat::Xml,
                attributes: xml::decode(text).map_err(err)?,
            }
        }
        other => {
            return Err(err(DecodeError::unsupported(
                Layer::Wsp,
                0,
                format!("push content type {other:?}"),
            )))
        }
    };
    check_links(&share.attributes).map_err(|e| RecipientError::from_links("", e))?;
    Ok(share)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sharecast_formats::share::sms::{Body, SmsDeliver, SmsSubmit};
    use sharecast_formats::share::{encode_user_data, MessageOptions};

    use crate::recipient::testing::attrs;

    /// Enough renditions that every format needs three or more SMS.
    fn long_attrs() -> VideoAttributes {
        let mut a = attrs();
        for n in ["360p", "240p", "160p"] {
            let mut r = a.renditions[0].clone();
            r.name = n.into();
            r.url = format!("https://sc.example/vod/k3v9x2/{n}.mp4");
            a.renditions.push(r);
        }
        a
    }

    fn deliver_pdus(
        a: &VideoAttributes,
        format: ShareFormat,
        from: &str,
        reference: u16,
    ) -> Vec<Vec<u8>> {
        let opts = MessageOptions {
            include_renditions: true,
            reference,
            ..Default::default()
        };
        encode_user_data(a, format, &opts)
            .unwrap()
            .into_iter()
            .map(|ud| {
                SmsDeliver::new(
                    Address::parse(from).unwrap(),
                    Timestamp::from_unix(1_700_000_000, 0),
                    ud,
                )
                .encode()
                .unwrap()
            })
            .collect()
    }

    fn complete(o: PushOutcome) -> ReceivedShare {
        match o {
            PushOutcome::Complete(s) => *s,
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn out_of_order_parts_reassemble() {
        let pdus = deliver_pdus(&long_attrs(), ShareFormat::Tlv, "+8613800138000", 0x21);
        assert!(pdus.len() >= 3, "{}", pdus.len());
        let mut r = Reassembler::default();
        let n = pdus.len();
        for (i, p) in pdus.iter().rev().enumerate() {
            let o = r.push_pdu(p, i as u64).unwrap();
            if i + 1 < n {
                assert!(
                    matches!(o, PushOutcome::Pending { received, .. } if usize::from(received) == i + 1),
                    "{o:?}"
                );
            } else {
                let s = complete(o);
                assert_eq!(s.attributes, long_attrs());
                assert_eq!(s.format, ShareFormat::Tlv);
                assert_eq!(s.parts as usize, n);
                assert_eq!(s.peer.to_string(), "+8613800138000");
                assert!(s.timestamp.is_some());
            }
        }
        assert_eq!(r.pending_count(), 0);
    }

    #[test]
    fn duplicates_are_reported_and_ignored() {
        let pdus = deliver_pdus(&long_attrs(), ShareFormat::WapVideo, "+8613800138000", 5);
        assert!(pdus.len() >= 3, "{}", pdus.len());
        let mut r = Reassembler::default();
        r.push_pdu(&pdus[0], 0).unwrap();
        let d = r.push_pdu(&pdus[0], 1).unwrap();
        assert!(
            matches!(
                d,
                PushOutcome::Duplicate {
                    sequence: 1,
                    identical: true,
                    ..
                }
            ),
            "{d:?}"
        );
        // Same part number, different content: kept the first.
        // Same length title, so the same number of parts (same key).
        let mut other = long_attrs();
        other.title = Some("Other walk".into());
        let clash = deliver_pdus(&other, ShareFormat::WapVideo, "+8613800138000", 5);
        assert_eq!(clash.len(), pdus.len());
        let d = r.push_pdu(&clash[0], 2).unwrap();
        assert!(
            matches!(
                d,
                PushOutcome::Duplicate {
                    identical: false,
                    ..
                }
            ),
            "{d:?}"
        );
        let mut last = None;
        for p in &pdus[1..] {
            last = Some(r.push_pdu(p, 3).unwrap());
        }
        let s = complete(last.unwrap());
        assert_eq!(s.format, ShareFormat::WapVideo);
        assert_eq!(s.attributes.title.as_deref(), Some("Beach walk"));
    }

    #[test]
    fn a_part_sent_again_after_completion_is_a_duplicate() {
        let pdus = deliver_pdus(&long_attrs(), ShareFormat::Tlv, "+8613800138000", 0x44);
        assert!(pdus.len() >= 2, "{}", pdus.len());
        let cfg = ReassemblyConfig {
            timeout_ms: 1000,
            max_pending: 8,
        };
        let mut r = Reassembler::new(cfg);
        let mut last = None;
        for p in &pdus {
            last = Some(r.push_pdu(p, 0).unwrap());
        }
        complete(last.unwrap());
        // The service centre sends the last part again: a duplicate, and
        // nothing is left waiting for the other parts.
        let again = r.push_pdu(pdus.last().unwrap(), 500).unwrap();
        assert!(
            matches!(
                again,
                PushOutcome::Duplicate {
                    identical: true,
                    reference: 0x44,
                    ..
                }
            ),
            "{again:?}"
        );
        assert_eq!(r.pending_count(), 0);
        assert!(r.expire(5000).is_empty(), "no spurious incomplete message");
        // Once the completed message is forgotten, the same part starts a
        // new message.
        let late = r.push_pdu(&pdus[0], 6000).unwrap();
        assert!(
            matches!(late, PushOutcome::Pending { received: 1, .. }),
            "{late:?}"
        );
        // A different message under the same reference is a new message.
        let mut r = Reassembler::new(cfg);
        for p in &pdus {
            r.push_pdu(p, 0).unwrap();
        }
        let mut other = long_attrs();
        other.title = Some("Other walk".into());
        let next = deliver_pdus(&other, ShareFormat::Tlv, "+8613800138000", 0x44);
        assert_eq!(next.len(), pdus.len());
        let mut last = None;
        for p in &next {
            last = Some(r.push_pdu(p, 10).unwrap());
        }
        assert_eq!(
            complete(last.unwrap()).attributes.title.as_deref(),
            Some("Other walk")
        );
    }

    #[test]
    fn a_single_sms_received_twice_is_a_duplicate() {
        let pdus = deliver_pdus(&attrs(), ShareFormat::WapSi, "+8613800138000", 3);
        assert_eq!(pdus.len(), 1);
        let cfg = ReassemblyConfig {
            timeout_ms: 1000,
            max_pending: 8,
        };
        let mut r = Reassembler::new(cfg);
        complete(r.push_pdu(&pdus[0], 0).unwrap());
        let again = r.push_pdu(&pdus[0], 999).unwrap();
        assert!(
            matches!(
                again,
                PushOutcome::Duplicate {
                    sequence: 1,
                    reference: 0,
                    identical: true,
                    ..
                }
            ),
            "{again:?}"
        );
        // After the timeout it is a new message.
        complete(r.push_pdu(&pdus[0], 1000).unwrap());
        // The same share from another sender is not a duplicate.
        let other = deliver_pdus(&attrs(), ShareFormat::WapSi, "+8613800000009", 3);
        complete(r.push_pdu(&other[0], 1001).unwrap());
        // Nor is the same share sent again later (another service-centre
        // timestamp).
        let ud = encode_user_data(&attrs(), ShareFormat::WapSi, &MessageOptions::default())
            .unwrap()
            .remove(0);
        let resent = SmsDeliver::new(
            Address::parse("+8613800138000").unwrap(),
            Timestamp::from_unix(1_700_000_060, 0),
            ud,
        )
        .encode()
        .unwrap();
        complete(r.push_pdu(&resent, 1002).unwrap());
    }

    #[test]
    fn missing_part_times_out_and_is_dropped() {
        let pdus = deliver_pdus(&long_attrs(), ShareFormat::Tlv, "+8613800138000", 9);
        assert!(pdus.len() >= 3, "{}", pdus.len());
        let cfg = ReassemblyConfig {
            timeout_ms: 1000,
            max_pending: 8,
        };
        let mut r = Reassembler::new(cfg);
        r.push_pdu(&pdus[0], 100).unwrap();
        r.push_pdu(&pdus[2], 500).unwrap();
        assert_eq!(r.next_deadline_ms(), Some(1100));
        assert!(r.expire(1099).is_empty());
        let dropped = r.expire(1100);
        assert_eq!(dropped.len(), 1);
        let e = &dropped[0];
        assert_eq!(e.reason, DropReason::Timeout);
        assert_eq!(e.reference, 9);
        assert_eq!(e.received, vec![1, 3]);
        assert!(e.missing.contains(&2));
        assert!(e.to_string().contains("missing"), "{e}");
        assert_eq!(r.pending_count(), 0);
        // The late part starts a new, incomplete message.
        let o = r.push_pdu(&pdus[1], 1200).unwrap();
        assert!(
            matches!(o, PushOutcome::Pending { received: 1, .. }),
            "{o:?}"
        );
        // A timeout noticed while pushing is reported by the next expire().
        r.push_pdu(&pdus[0], 5000).unwrap();
        let dropped = r.expire(5000);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].received, vec![2]);
    }

    #[test]
    fn same_reference_from_two_senders_does_not_mix() {
        let mut b = long_attrs();
        b.title = Some("From B".into());
        let pa = deliver_pdus(&long_attrs(), ShareFormat::Tlv, "+8613800000001", 77);
        let pb = deliver_pdus(&b, ShareFormat::Tlv, "+8613800000002", 77);
        assert_eq!(pa.len(), pb.len());
        let mut r = Reassembler::default();
        let mut done = Vec::new();
        for (x, y) in pa.iter().zip(pb.iter().rev()) {
            for p in [x, y] {
                if let PushOutcome::Complete(s) = r.push_pdu(p, 0).unwrap() {
                    done.push(*s);
                }
            }
        }
        assert_eq!(done.len(), 2);
        let by = |peer: &str| done.iter().find(|s| s.peer.to_string() == peer).unwrap();
        assert_eq!(
            by("+8613800000001").attributes.title.as_deref(),
            Some("Beach walk")
        );
        assert_eq!(
            by("+8613800000002").attributes.title.as_deref(),
            Some("From B")
        );
    }

    #[test]
    fn submit_captures_and_hex_are_accepted() {
        let to = Address::parse("+8613912345678").unwrap();
        let opts = MessageOptions::default();
        let hexes: Vec<String> =
            sharecast_formats::share::encode_submit_pdus(&attrs(), ShareFormat::Text, &to, &opts)
                .unwrap()
                .iter()
                .map(hex::encode_upper)
                .collect();
        let mut r = Reassembler::default();
        let mut last = None;
        for h in &hexes {
            last = Some(r.push_hex(h, 0).unwrap());
        }
        let s = complete(last.unwrap());
        assert_eq!(s.format, ShareFormat::Text);
        assert_eq!(s.peer, to);
        assert!(matches!(r.push_hex("zz", 0), Err(RecipientError::Hex(_))));
        assert!(matches!(r.push_hex("0011", 0), Err(RecipientError::Pdu(_))));
    }

    #[test]
    fn every_format_decodes_with_format_recognised() {
        for f in ShareFormat::ALL {
            let mut r = Reassembler::default();
            let mut last = None;
            for p in deliver_pdus(&attrs(), f, "+8613800138000", 3) {
                last = Some(r.push_pdu(&p, 0).unwrap());
            }
            assert_eq!(complete(last.unwrap()).format, f);
        }
    }

    #[test]
    fn eviction_and_bad_payloads() {
        let mut r = Reassembler::new(ReassemblyConfig {
            timeout_ms: 60_000,
            max_pending: 2,
        });
        for (i, from) in ["+1001", "+1002", "+1003"].iter().enumerate() {
            let pdus = deliver_pdus(&attrs(), ShareFormat::Tlv, from, 1);
            r.push_pdu(&pdus[0], i as u64).unwrap();
        }
        assert_eq!(r.pending_count(), 2);
        let dropped = r.expire(10);
        assert_eq!(dropped.len(), 1);
        assert_eq!(dropped[0].peer, "+1001");
        assert_eq!(dropped[0].reason, DropReason::Evicted);

        // Garbage on the Sharecast port: a payload error naming the offset.
        let ud = UserData {
            header: Some(sharecast_formats::share::sms::UserDataHeader {
                elements: vec![sharecast_formats::share::sms::InformationElement::Ports {
                    destination: sharecast_formats::share::SHARECAST_PORT,
                    source: sharecast_formats::share::SHARECAST_PORT,
                    wide: true,
                }],
            }),
            body: Body::EightBit(vec![0xC1, 0x03, 0x09, b'x']),
        };
        let pdu = SmsSubmit::new(Address::parse("+1").unwrap(), ud)
            .encode()
            .unwrap();
        match r.push_pdu(&pdu, 0) {
            Err(RecipientError::Payload { error, .. }) => assert_eq!(error.offset, 3),
            other => panic!("{other:?}"),
        }
        // Plain chat is not a share.
        let chat = SmsSubmit::new(
            Address::parse("+1").unwrap(),
            UserData {
                header: None,
                body: Body::from_text("see you at 8"),
            },
        )
        .encode()
        .unwrap();
        assert!(matches!(
            r.push_pdu(&chat, 0),
            Err(RecipientError::Payload { .. })
        ));
    }

    #[test]
    fn mixed_alphabets_are_refused() {
        let hdr = |seq| {
            Some(sharecast_formats::share::sms::UserDataHeader {
                elements: vec![sharecast_formats::share::sms::InformationElement::Concat {
                    reference: 4,
                    total: 2,
                    sequence: seq,
                    wide: false,
                }],
            })
        };
        let mut r = Reassembler::default();
        let peer = Address::parse("+1").unwrap();
        r.push_user_data(
            peer.clone(),
            None,
            UserData {
                header: hdr(1),
                body: Body::from_text("abc"),
            },
            0,
        )
        .unwrap();
        let e = r
            .push_user_data(
                peer,
                None,
                UserData {
                    header: hdr(2),
                    body: Body::from_text("中"),
                },
                0,
            )
            .unwrap_err();
        assert!(matches!(e, RecipientError::MixedAlphabets { .. }), "{e}");
        // Hand-built user data with an impossible part number.
        let bad = r.push_user_data(
            Address::parse("+2").unwrap(),
            None,
            UserData {
                header: hdr(3),
                body: Body::from_text("x"),
            },
            0,
        );
        assert!(matches!(bad, Err(RecipientError::Pdu(_))));
    }

    /// A single SMS on `port` carrying `payload` (8-bit data).
    fn binary_sms(port: u16, payload: Vec<u8>) -> Vec<u8> {
        let ud = UserData {
            header: Some(sharecast_formats::share::sms::UserDataHeader {
                elements: vec![sharecast_formats::share::sms::InformationElement::Ports {
                    destination: port,
                    source: port,
                    wide: true,
                }],
            }),
            body: Body::EightBit(payload),
        };
        SmsDeliver::new(
            Address::parse("+8613800138000").unwrap(),
            Timestamp::from_unix(1_700_000_000, 0),
            ud,
        )
        .encode()
        .unwrap()
    }

    fn refused(pdus: &[Vec<u8>]) -> RecipientError {
        let mut r = Reassembler::default();
        let mut last = None;
        for p in pdus {
            last = Some(r.push_pdu(p, 0));
        }
        match last.unwrap() {
            Err(e) => e,
            Ok(o) => panic!("accepted: {o:?}"),
        }
    }

    #[test]
    fn a_message_without_a_link_is_refused() {
        // A Sharecast TLV of only its version octet (0xC1): no id, no URL.
        let e = refused(&[binary_sms(
            sharecast_formats::share::SHARECAST_PORT,
            vec![0xC1],
        )]);
        assert!(matches!(e, RecipientError::NoLink { .. }), "{e}");
        assert!(e.to_string().contains("no link"), "{e}");
        // A WAP Push SI without href.
        let si = sharecast_formats::share::si::ServiceIndication {
            text: "Watch this".into(),
            ..Default::default()
        };
        let push = sharecast_formats::share::wsp::PushPdu {
            transaction_id: 0,
            content_type: sharecast_formats::share::wsp::ContentType::WellKnown(
                sharecast_formats::share::wsp::CT_SIC,
            ),
            application_id: None,
            other_headers: Vec::new(),
            body: si
                .encode_wbxml(sharecast_formats::share::wbxml::VERSION_1_3)
                .unwrap(),
        }
        .encode()
        .unwrap();
        let e = refused(&[binary_sms(
            sharecast_formats::share::wsp::WAP_PUSH_PORT,
            push,
        )]);
        assert!(matches!(e, RecipientError::NoLink { .. }), "{e}");
        // The same as a WAP Push body given alone.
        let body = si
            .encode_wbxml(sharecast_formats::share::wbxml::VERSION_1_3)
            .unwrap();
        assert!(matches!(
            decode_wap_body("application/vnd.wap.sic", &body),
            Err(RecipientError::NoLink { .. })
        ));
    }

    #[test]
    fn unsafe_links_are_refused_in_every_format() {
        for (field, url) in [
            ("share_url", "javascript:alert(document.cookie)"),
            ("share_url", "file:///data/data/app/secret"),
            ("vod_url", "file:///sdcard/x.mp4"),
            ("live_urls", "javascript:alert(1)"),
        ] {
            for f in ShareFormat::ALL {
                let mut a = attrs();
                match field {
                    "share_url" => a.share_url = Some(url.into()),
                    "vod_url" => {
                        a.share_url = None;
                        a.vod_url = Some(url.into())
                    }
                    _ => {
                        a.share_url = None;
                        a.vod_url = None;
                        a.live_urls = vec![url.into()];
                    }
                }
                let opts = MessageOptions {
                    include_renditions: true,
                    ..Default::default()
                };
                let Ok(uds) = encode_user_data(&a, f, &opts) else {
                    // The encoder refuses it (a URL it cannot carry).
                    continue;
                };
                let pdus: Vec<Vec<u8>> = uds
                    .into_iter()
                    .map(|ud| {
                        SmsDeliver::new(
                            Address::parse("+8613800138000").unwrap(),
                            Timestamp::from_unix(1_700_000_000, 0),
                            ud,
                        )
                        .encode()
                        .unwrap()
                    })
                    .collect();
                let mut r = Reassembler::default();
                let mut last = None;
                for p in &pdus {
                    last = Some(r.push_pdu(p, 0));
                }
                match last.unwrap() {
                    Err(RecipientError::UnsafeLink { error, .. }) => {
                        assert!(
                            error.to_string().contains("not allowed"),
                            "{f} {url}: {error}"
                        )
                    }
                    // Formats that do not carry this field at all (SL has
                    // only one URL) give no link instead; the text format
                    // does not even recognise a share without a web link.
                    Err(RecipientError::NoLink { .. }) => {}
                    Err(RecipientError::Payload { .. }) if f == ShareFormat::Text => {}
                    other => panic!("{f} {field}={url}: {other:?}"),
                }
            }
        }
        // A WAP Push SL body with a javascript: href.
        let sl = sharecast_formats::share::sl::ServiceLoading {
            href: "javascript:alert(1)".into(),
            action: None,
        };
        let body = sl
            .encode_wbxml(sharecast_formats::share::wbxml::VERSION_1_3)
            .unwrap();
        assert!(matches!(
            decode_wap_body("application/vnd.wap.slc", &body),
            Err(RecipientError::UnsafeLink { .. })
        ));
    }

    #[test]
    fn wap_bodies_decode_as_android_delivers_them() {
        use sharecast_formats::share::{encode_wap_push, wsp};
        for f in [
            ShareFormat::WapSi,
            ShareFormat::WapSl,
            ShareFormat::WapVideo,
        ] {
            let pdu = encode_wap_push(&attrs(), f, &MessageOptions::default()).unwrap();
            let push = wsp::decode(&pdu).unwrap();
            let ct = push.content_type.media_type().unwrap();
            let share = decode_wap_body(&ct, &push.body).unwrap();
            assert_eq!(share.format, f);
            assert_eq!(share.attributes.share_url, attrs().share_url);
        }
        assert!(matches!(
            decode_wap_body("text/plain", b"hi"),
            Err(RecipientError::Payload { .. })
        ));
        assert!(decode_wap_body("application/vnd.wap.sic", &[0xFF, 0]).is_err());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

            #[test]
            fn random_pdus_never_panic(b in prop::collection::vec(any::<u8>(), 0..200), now in 0u64..10_000_000) {
                let mut r = Reassembler::default();
                let _ = r.push_pdu(&b, now);
                let _ = r.push_hex(&String::from_utf8_lossy(&b), now);
                let _ = r.expire(now);
            }

            #[test]
            fn any_order_with_duplicates_completes(
                order in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle(),
                dups in prop::collection::vec(0..12usize, 0..6),
                fmt in prop::sample::select(ShareFormat::ALL.to_vec()),
            ) {
                let pdus = deliver_pdus(&long_attrs(), fmt, "+8613800138000", 0x55);
                let n = pdus.len();
                // Every part once, in a random order, then some repeated at
                // random places.
                let mut seq: Vec<usize> = order.into_iter().filter(|i| *i < n).collect();
                for i in 0..n {
                    if !seq.contains(&i) {
                        seq.push(i);
                    }
                }
                for d in dups {
                    seq.insert(d % (seq.len() + 1), d % n);
                }
                let mut r = Reassembler::default();
                let mut complete = 0;
                let mut seen = vec![false; n];
                for i in seq {
                    match r.push_pdu(&pdus[i], 0).unwrap() {
                        PushOutcome::Complete(s) => {
                            complete += 1;
                            prop_assert_eq!(s.format, fmt);
                            prop_assert_eq!(s.attributes.share_url, long_attrs().share_url);
                        }
                        PushOutcome::Duplicate { identical, .. } => {
                            prop_assert!(identical);
                            prop_assert!(seen[i]);
                        }
                        PushOutcome::Pending { .. } => {}
                    }
                    seen[i] = true;
                }
                prop_assert!(complete >= 1);
            }
        }
    }
}
