//! Ingest protocol v1: the messages a phone and the ingest server exchange
//! over QUIC. Specified in `docs/ingest-protocol.md`; this module is the
//! reference implementation, with no I/O.
//!
//! - The **control stream** (the first bidirectional stream, opened by the
//!   client) carries control messages: a 1-byte type, a 4-byte big-endian
//!   payload length, then a UTF-8 JSON payload. [`ControlDecoder`] turns a byte
//!   stream into [`Control`] messages; [`Control::encode`] does the reverse.
//! - **Frame streams** (unidirectional, opened by the client) carry frame
//!   records: a fixed 36-byte header followed by the frame bytes.
//!   [`FrameDecoder`] turns a byte stream into [`MediaFrame`]s;
//!   [`encode_frame`] does the reverse.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::attributes::VideoAttributes;
use crate::media::{MediaFrame, TrackInfo};

/// ALPN protocol id negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"sharecast/1";
/// Protocol version carried in HELLO.
pub const VERSION: u32 = 1;
/// Size of a control message header (type + length).
pub(crate) const CONTROL_HEADER_LEN: usize = 5;
/// Largest control payload accepted (64 KiB).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 64 * 1024;
/// Size of a frame record header.
pub const FRAME_HEADER_LEN: usize = 36;
/// First byte of every frame record.
pub(crate) const FRAME_RECORD_TYPE: u8 = 0x46; // 'F'
/// Frame flag: the frame is a keyframe (decoding can start here).
pub(crate) const FLAG_KEYFRAME: u8 = 0x01;
/// Largest track id.
pub const MAX_TRACK_ID: u8 = 15;
/// Most tracks one HELLO may declare (ids are 0..=[`MAX_TRACK_ID`], unique).
pub const MAX_TRACKS: usize = MAX_TRACK_ID as usize + 1;
/// Longest codec name in a track description, bytes (the known names are
/// four letters; anything longer is refused before it is looked at).
pub const MAX_CODEC_NAME_BYTES: usize = 16;
/// Longest `resume.session_id` and `resume.secret`, bytes (servers issue 32
/// hex digits for each).
pub const MAX_RESUME_FIELD_BYTES: usize = 128;

/// Error codes, sent in ERROR messages and as the QUIC application close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u16)]
pub enum ErrorCode {
    /// No error: the session ended normally.
    Ok = 0,
    /// HELLO carried a version the server does not speak.
    UnsupportedVersion = 1,
    /// The device token is missing, unknown or revoked.
    Unauthorized = 2,
    /// A track uses a codec the server does not accept, or lacks codec data.
    UnsupportedCodec = 3,
    /// A control message or frame record could not be parsed.
    BadMessage = 4,
    /// A frame is larger than the server's `max_frame_bytes`.
    FrameTooLarge = 5,
    /// A frame names a track that HELLO did not declare.
    UnknownTrack = 6,
    /// A frame's decode timestamp is earlier than the previous frame's.
    NonMonotonicTimestamp = 7,
    /// The device already has `max_sessions_per_device` sessions open.
    SessionLimit = 8,
    /// RESUME named a session the server does not know (or already ended).
    UnknownSession = 9,
    /// RESUME carried the wrong resume secret.
    BadResumeSecret = 10,
    /// Too many failed authentications: the token is backing off, or the
    /// address is penalised and the token (or resume secret) was wrong.
    RateLimited = 11,
    /// The session's ingest bitrate is above `max_bitrate_bps`.
    BitrateExceeded = 12,
    /// The session is longer than `max_session_secs`.
    SessionTooLong = 13,
    /// The client stopped sending in the middle of a frame or a message.
    Stalled = 14,
    /// The server failed; the session's accepted frames are kept.
    Internal = 15,
    /// The server is shutting down; resume later.
    ShuttingDown = 16,
    /// END was received but frames it announced never arrived.
    MissingFrames = 17,
    /// The server's disk is full: the frames it could not journal were not
    /// acknowledged. Keep them and resume later; the session stays open.
    StorageFull = 18,
}

impl ErrorCode {
    /// Numeric value on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Stable snake_case name, used in logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Ok => "ok",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnsupportedCodec => "unsupported_codec",
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownTrack => "unknown_track",
            ErrorCode::NonMonotonicTimestamp => "non_monotonic_timestamp",
            ErrorCode::SessionLimit => "session_limit",
            ErrorCode::UnknownSession => "unknown_session",
            ErrorCode::BadResumeSecret => "bad_resume_secret",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BitrateExceeded => "bitrate_exceeded",
            ErrorCode::SessionTooLong => "session_too_long",
            ErrorCode::Stalled => "stalled",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::MissingFrames => "missing_frames",
            ErrorCode::StorageFull => "storage_full",
        }
    }

    /// Whether a server that refuses a phone's input with this code also
    /// ends the phone's session: the codes whose client action is "stop"
    /// (section 7 of the protocol). Such a session is finalised with the
    /// frames already acknowledged and cannot be resumed. `stalled`,
    /// `internal`, `shutting_down`, `missing_frames` and `storage_full`
    /// leave the session open for a resume, as do `ok` and `rate_limited`.
    pub fn ends_session(self) -> bool {
        !matches!(
            self,
            ErrorCode::Ok
                | ErrorCode::Stalled
                | ErrorCode::Internal
                | ErrorCode::ShuttingDown
                | ErrorCode::MissingFrames
                | ErrorCode::RateLimited
                | ErrorCode::StorageFull
        )
    }

    /// Map a wire value back to a code.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        use ErrorCode::*;
        const ALL: [ErrorCode; 19] = [
            Ok,
            UnsupportedVersion,
            Unauthorized,
            UnsupportedCodec,
            BadMessage,
            FrameTooLarge,
            UnknownTrack,
            NonMonotonicTimestamp,
            SessionLimit,
            UnknownSession,
            BadResumeSecret,
            RateLimited,
            BitrateExceeded,
            SessionTooLong,
            Stalled,
            Internal,
            ShuttingDown,
            MissingFrames,
            StorageFull,
        ];
        ALL.into_iter().find(|c| c.as_u16() == v)
    }
}

/// Resume request inside HELLO.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// Session id from the first WELCOME.
    pub session_id: String,
    /// Resume secret from the first WELCOME.
    pub secret: String,
}

/// HELLO (client → server, type 0x01): opens or resumes a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version, [`VERSION`].
    pub version: u32,
    /// Device token from `sharecast device add`.
    pub token: String,
    /// Tracks of the session (ignored on resume).
    #[serde(default)]
    pub tracks: Vec<TrackInfo>,
    /// Wall-clock time (Unix epoch, microseconds) of capture timestamp 0.
    #[serde(default)]
    pub anchor_unix_us: i64,
    /// Present when resuming an existing session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
    /// Free-form client name and version, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Optional title for the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Bounds on the fields of HELLO (docs/ingest-protocol.md, section 4.1). A
/// server refuses a HELLO outside them with `bad_message` naming the field,
/// its value (or size) and the bound, before it authenticates the token or
/// opens anything. Configurable as `[ingest.hello]`; the defaults are the
/// bounds the protocol document states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HelloLimits {
    /// Longest `token`, bytes. Default 256.
    pub max_token_bytes: usize,
    /// Longest `title`, characters (Unicode scalar values). Default 256.
    pub max_title_chars: usize,
    /// Longest `client`, characters. Default 128.
    pub max_client_chars: usize,
    /// Largest `codec_data` of a track, bytes (after hex decoding). Default
    /// 4096.
    pub max_codec_data_bytes: usize,
    /// Largest video `width` and `height`, pixels each. Default 8192 (8K
    /// UHD is 7680 x 4320).
    pub max_video_dimension: u32,
    /// Highest video `framerate` (`num / den`), frames per second. Default
    /// 1000 (phones film slow motion at up to 960).
    pub max_frame_rate: u32,
    /// Highest audio `sample_rate`, Hz. Default 192 000.
    pub max_sample_rate_hz: u32,
    /// Most audio `channels`. Default 8.
    pub max_channels: u32,
}

impl Default for HelloLimits {
    fn default() -> Self {
        Self {
            max_token_bytes: 256,
            max_title_chars: 256,
            max_client_chars: 128,
            max_codec_data_bytes: 4096,
            max_video_dimension: 8192,
            max_frame_rate: 1000,
            max_sample_rate_hz: 192_000,
            max_channels: 8,
        }
    }
}

/// Why a HELLO is outside [`HelloLimits`] or otherwise malformed: the field
/// (a stable name, used as a metrics label) and a message for the phone and
/// the log. Answered with [`ErrorCode::BadMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRefusal {
    /// `token`, `title`, `client`, `resume`, `tracks`, `track_id`, `codec`,
    /// `codec_data`, `dimensions`, `framerate`, `sample_rate`, `channels`
    /// or `rotation`.
    pub field: &'static str,
    /// What is wrong, naming the value (or its size) and the bound.
    pub message: String,
}

/// Every field name a [`HelloRefusal`] may carry, for metrics.
pub const HELLO_FIELDS: [&str; 13] = [
    "token",
    "title",
    "client",
    "resume",
    "tracks",
    "track_id",
    "codec",
    "codec_data",
    "dimensions",
    "framerate",
    "sample_rate",
    "channels",
    "rotation",
];

fn refuse(field: &'static str, message: String) -> Result<(), HelloRefusal> {
    Err(HelloRefusal { field, message })
}

/// Refuses `what` (named as the phone is told it, such as `token` or
/// `track 0: codec name`) when it is longer than `max` `unit`s.
fn at_most(
    field: &'static str,
    what: &str,
    len: usize,
    max: usize,
    unit: &str,
) -> Result<(), HelloRefusal> {
    if len > max {
        return refuse(
            field,
            format!("{what} of {len} {unit} is longer than the limit of {max} {unit}"),
        );
    }
    Ok(())
}

/// A value that must lie in `1..=max` when present; `describe` says what is
/// wrong with it.
fn in_one_to(
    field: &'static str,
    value: Option<u32>,
    max: u32,
    describe: impl Fn(u32) -> String,
) -> Result<(), HelloRefusal> {
    match value {
        Some(v) if v == 0 || v > max => refuse(field, describe(v)),
        _ => Ok(()),
    }
}

/// A free text of the phone's (title, client name): at most `max_chars`
/// characters and no control characters (C0 and C1: line breaks, escapes).
fn check_text(
    field: &'static str,
    what: &str,
    text: Option<&str>,
    max_chars: usize,
) -> Result<(), HelloRefusal> {
    let Some(text) = text else {
        return Ok(());
    };
    at_most(field, what, text.chars().count(), max_chars, "characters")?;
    match text.chars().find(|c| c.is_control()) {
        Some(c) => refuse(
            field,
            format!("{what} contains the control character U+{:04X}", c as u32),
        ),
        None => Ok(()),
    }
}

impl Hello {
    /// Check every field against `limits` and the protocol's fixed bounds
    /// (at most [`MAX_TRACKS`] tracks with unique ids up to
    /// [`MAX_TRACK_ID`], codec names up to [`MAX_CODEC_NAME_BYTES`], resume
    /// fields up to [`MAX_RESUME_FIELD_BYTES`], a rotation of a right
    /// angle). Pure: the server calls it before anything else. It does not
    /// decide whether a codec is supported (`unsupported_codec`) or the
    /// version is spoken (`unsupported_version`).
    pub fn check(&self, limits: &HelloLimits) -> Result<(), HelloRefusal> {
        let token = self.token.len();
        at_most("token", "token", token, limits.max_token_bytes, "bytes")?;
        let (title, client) = (self.title.as_deref(), self.client.as_deref());
        check_text("title", "title", title, limits.max_title_chars)?;
        check_text("client", "client name", client, limits.max_client_chars)?;
        if let Some(r) = &self.resume {
            for (name, v) in [("session_id", &r.session_id), ("secret", &r.secret)] {
                let what = format!("resume.{name}");
                at_most("resume", &what, v.len(), MAX_RESUME_FIELD_BYTES, "bytes")?;
            }
        }
        self.check_tracks(limits)
    }

    /// At most [`MAX_TRACKS`] tracks, ids unique and up to
    /// [`MAX_TRACK_ID`], each within its bounds.
    fn check_tracks(&self, limits: &HelloLimits) -> Result<(), HelloRefusal> {
        if self.tracks.len() > MAX_TRACKS {
            return refuse(
                "tracks",
                format!(
                    "HELLO declares {} tracks; at most {MAX_TRACKS} are allowed",
                    self.tracks.len()
                ),
            );
        }
        let mut seen = 0u32;
        for t in &self.tracks {
            if t.id > MAX_TRACK_ID || seen & (1 << t.id) != 0 {
                return refuse(
                    "track_id",
                    format!("track id {} is duplicated or above {MAX_TRACK_ID}", t.id),
                );
            }
            seen |= 1 << t.id;
            check_track(t, limits)?;
        }
        Ok(())
    }
}

fn check_track(t: &TrackInfo, limits: &HelloLimits) -> Result<(), HelloRefusal> {
    let id = t.id;
    let what = format!("track {id}: codec name");
    at_most("codec", &what, t.codec.len(), MAX_CODEC_NAME_BYTES, "bytes")?;
    if t.codec_data.len() > limits.max_codec_data_bytes {
        return refuse(
            "codec_data",
            format!(
                "track {id}: codec_data of {} bytes is larger than the limit of {} bytes",
                t.codec_data.len(),
                limits.max_codec_data_bytes
            ),
        );
    }
    let max = limits.max_video_dimension;
    for (name, v) in [("width", t.width), ("height", t.height)] {
        in_one_to("dimensions", v, max, |v| {
            format!("track {id}: {name} {v} is outside 1..={max} pixels")
        })?;
    }
    if let Some((num, den)) = t.framerate {
        if num == 0
            || den == 0
            || u64::from(num) > u64::from(limits.max_frame_rate) * u64::from(den)
        {
            return refuse(
                "framerate",
                format!(
                    "track {id}: frame rate {num}/{den} is not a positive rate of at most {} frames per second",
                    limits.max_frame_rate
                ),
            );
        }
    }
    let max = limits.max_sample_rate_hz;
    in_one_to("sample_rate", t.sample_rate, max, |rate| {
        format!("track {id}: sample rate {rate} Hz is outside 1..={max} Hz")
    })?;
    let max = limits.max_channels;
    in_one_to("channels", t.channels, max, |ch| {
        format!("track {id}: {ch} channels is outside 1..={max}")
    })?;
    t.check_rotation()
        .or_else(|message| refuse("rotation", message))
}

/// Server limits, announced in WELCOME so the client can respect them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Limits {
    /// Largest frame accepted, bytes.
    pub max_frame_bytes: u32,
    /// Highest average ingest bitrate accepted, bits per second.
    pub max_bitrate_bps: u64,
    /// Longest session, seconds.
    pub max_session_secs: u64,
}

/// WELCOME (server → client, type 0x02): the session is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Session id.
    pub session_id: String,
    /// Secret to present when resuming.
    pub resume_secret: String,
    /// True when this connection resumed an existing session.
    pub resumed: bool,
    /// Per track: the lowest sequence number the server does not yet hold
    /// durably. Every frame below it is durable; resend from here.
    pub next_seq: BTreeMap<u8, u64>,
    /// Per track: ranges `[start, end)` of durable frames above `next_seq`
    /// (frames that arrived ahead of a gap). Do not resend these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<u8, Vec<(u64, u64)>>,
    /// Server limits.
    pub limits: Limits,
    /// Where viewers can watch the live stream.
    #[serde(default)]
    pub live_urls: Vec<String>,
    /// Whether the server takes REPORT messages (0x08) on this session.
    /// Absent (false) from servers that do not: a client must not send
    /// REPORT to them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reports: bool,
}

/// ACK (server → client, type 0x03): cumulative, durable acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Per track: every frame with a lower sequence number is durable.
    pub next_seq: BTreeMap<u8, u64>,
    /// Per track: ranges `[start, end)` of durable frames above `next_seq`
    /// (selective acknowledgement of frames that arrived ahead of a gap).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<u8, Vec<(u64, u64)>>,
}

impl Ack {
    /// Whether frame `seq` of `track` is acknowledged by this ACK.
    pub fn covers(&self, track: u8, seq: u64) -> bool {
        covers(&self.next_seq, &self.held, track, seq)
    }
}

/// Whether `next_seq` and `held` (as in ACK and WELCOME) cover a frame.
pub fn covers(
    next_seq: &BTreeMap<u8, u64>,
    held: &BTreeMap<u8, Vec<(u64, u64)>>,
    track: u8,
    seq: u64,
) -> bool {
    if seq < next_seq.get(&track).copied().unwrap_or(0) {
        return true;
    }
    held.get(&track)
        .is_some_and(|r| r.iter().any(|(a, b)| (*a..*b).contains(&seq)))
}

/// END (client → server, type 0x04): the recording stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Per track: how many frames the client sent in total.
    pub frame_count: BTreeMap<u8, u64>,
}

/// FINISHED (server → client, type 0x05): outputs exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// The video attribute data of the produced outputs.
    pub attributes: VideoAttributes,
}

/// ERROR (either direction, type 0x06).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorMsg {
    /// Numeric [`ErrorCode`].
    pub code: u16,
    /// Human-readable explanation.
    pub message: String,
    /// With `rate_limited`: milliseconds to wait before trying again.
    /// Optional (absent otherwise, and from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// STATS (server → client, type 0x07): what the server observes, sent about
/// once a second; the client uses it for bitrate advice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Stats {
    /// Bits per second the server received over the last window.
    pub received_bps: u64,
    /// Frames the server holds but has not yet made durable.
    pub pending_frames: u64,
}

/// REPORT (client → server, type 0x08, only to a server whose WELCOME
/// says `reports`): what the phone sees, about once a second, for the
/// admin's charts. Unknown fields are ignored; every field is optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Report {
    /// The encoder bitrate the client currently advises, bit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advised_bps: Option<u64>,
    /// Bytes of frames the client holds that the server has not
    /// acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_bytes: Option<u64>,
    /// Frames the client holds that the server has not acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_frames: Option<u64>,
}

/// A control message.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// 0x01
    Hello(Hello),
    /// 0x02
    Welcome(Welcome),
    /// 0x03
    Ack(Ack),
    /// 0x04
    End(End),
    /// 0x05
    Finished(Finished),
    /// 0x06
    Error(ErrorMsg),
    /// 0x07
    Stats(Stats),
    /// 0x08
    Report(Report),
}

/// What went wrong decoding a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A control message type byte that v1 does not define.
    #[error("unknown control message type 0x{0:02x} at byte 0")]
    UnknownType(u8),
    /// A control payload longer than the limit (64 KiB).
    #[error("control payload of {0} bytes exceeds the limit of {MAX_CONTROL_PAYLOAD}")]
    ControlTooLarge(u32),
    /// The JSON payload does not match the message type.
    #[error("bad {kind} payload at byte {offset}: {detail}")]
    BadPayload {
        /// Message name.
        kind: &'static str,
        /// Byte offset of the problem within the payload (from the JSON parser).
        offset: usize,
        /// Parser message.
        detail: String,
    },
    /// A frame record does not start with its type octet, `F` (0x46).
    #[error("frame record starts with 0x{0:02x}, expected 0x46")]
    BadRecordType(u8),
    /// A frame record's reserved byte or unknown flag bits are set.
    #[error("frame record has reserved bits set (flags 0x{flags:02x}, reserved 0x{reserved:02x})")]
    ReservedBits {
        /// Flags byte.
        flags: u8,
        /// Reserved byte.
        reserved: u8,
    },
    /// A frame record announces more bytes than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced length.
        len: u32,
        /// Limit.
        max: u32,
    },
    /// A track id above [`MAX_TRACK_ID`].
    #[error("track id {0} is above the maximum of 15")]
    BadTrack(u8),
    /// The stream ended in the middle of a message.
    #[error("stream ended {have} bytes into a {need}-byte message")]
    Truncated {
        /// Bytes received of the message.
        have: usize,
        /// Bytes the message needs.
        need: usize,
    },
}

impl DecodeError {
    /// The error code a server answers this decoding error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::BadTrack(_) => ErrorCode::UnknownTrack,
            DecodeError::Truncated { .. } => ErrorCode::Stalled,
            _ => ErrorCode::BadMessage,
        }
    }
}

impl Control {
    /// The type byte of this message.
    pub fn type_byte(&self) -> u8 {
        match self {
            Control::Hello(_) => 0x01,
            Control::Welcome(_) => 0x02,
            Control::Ack(_) => 0x03,
            Control::End(_) => 0x04,
            Control::Finished(_) => 0x05,
            Control::Error(_) => 0x06,
            Control::Stats(_) => 0x07,
            Control::Report(_) => 0x08,
        }
    }

    /// Encode to header + JSON payload.
    pub fn encode(&self) -> Vec<u8> {
        let payload = match self {
            Control::Hello(m) => serde_json::to_vec(m),
            Control::Welcome(m) => serde_json::to_vec(m),
            Control::Ack(m) => serde_json::to_vec(m),
            Control::End(m) => serde_json::to_vec(m),
            Control::Finished(m) => serde_json::to_vec(m),
            Control::Error(m) => serde_json::to_vec(m),
            Control::Stats(m) => serde_json::to_vec(m),
            Control::Report(m) => serde_json::to_vec(m),
        }
        // Serialising these plain structs to JSON cannot fail: no maps with
        // non-string keys other than u8 (serialised as strings), no floats
        // that are NaN in practice; fall back to an empty object regardless.
        .unwrap_or_else(|_| b"{}".to_vec());
        let mut out = Vec::with_capacity(CONTROL_HEADER_LEN + payload.len());
        out.push(self.type_byte());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Decode one message from its type byte and payload.
    pub fn decode(ty: u8, payload: &[u8]) -> Result<Control, DecodeError> {
        fn parse<T: for<'de> Deserialize<'de>>(
            kind: &'static str,
            p: &[u8],
        ) -> Result<T, DecodeError> {
            serde_json::from_slice(p).map_err(|e| {
                // serde_json reports line/column; payloads are single-line,
                // so the column is the byte offset + 1 on line 1.
                let offset = if e.line() <= 1 {
                    e.column().saturating_sub(1)
                } else {
                    0
                };
                DecodeError::BadPayload {
                    kind,
                    offset,
                    detail: e.to_string(),
                }
            })
        }
        Ok(match ty {
            0x01 => Control::Hello(parse("HELLO", payload)?),
            0x02 => Control::Welcome(parse("WELCOME", payload)?),
            0x03 => Control::Ack(parse("ACK", payload)?),
            0x04 => Control::End(parse("END", payload)?),
            0x05 => Control::Finished(parse("FINISHED", payload)?),
            0x06 => Control::Error(parse("ERROR", payload)?),
            0x07 => Control::Stats(parse("STATS", payload)?),
            0x08 => Control::Report(parse("REPORT", payload)?),
            other => return Err(DecodeError::UnknownType(other)),
        })
    }
}

/// Incremental decoder of the control stream.
#[derive(Debug, Default)]
pub struct ControlDecoder {
    buf: BytesMut,
}

impl ControlDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Take the next complete message, `Ok(None)` if more bytes are needed.
    pub fn decode_next(&mut self) -> Result<Option<Control>, DecodeError> {
        if self.buf.len() < CONTROL_HEADER_LEN {
            return Ok(None);
        }
        let ty = self.buf[0];
        if !(0x01..=0x08).contains(&ty) {
            return Err(DecodeError::UnknownType(ty));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if len as usize > MAX_CONTROL_PAYLOAD {
            return Err(DecodeError::ControlTooLarge(len));
        }
        let total = CONTROL_HEADER_LEN + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let msg = self.buf.split_to(total);
        Control::decode(ty, &msg[CONTROL_HEADER_LEN..]).map(Some)
    }

    /// Call when the stream ended: an error if a message was cut short.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let need = if self.buf.len() >= CONTROL_HEADER_LEN {
            CONTROL_HEADER_LEN
                + u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize
        } else {
            CONTROL_HEADER_LEN
        };
        Err(DecodeError::Truncated {
            have: self.buf.len(),
            need,
        })
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

/// Encode one frame record (header + data).
///
/// Layout (all integers big-endian):
/// `0x46 | track u8 | flags u8 | reserved u8 | seq u64 | pts_us i64 |
/// dts_us i64 | duration_us u32 | length u32 | data[length]`.
pub fn encode_frame(frame: &MediaFrame) -> Bytes {
    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + frame.data.len());
    encode_frame_header(frame, &mut out);
    out.extend_from_slice(&frame.data);
    out.freeze()
}

/// Encode only the 36-byte header of a frame record.
pub fn encode_frame_header(frame: &MediaFrame, out: &mut BytesMut) {
    out.put_u8(FRAME_RECORD_TYPE);
    out.put_u8(frame.track);
    out.put_u8(if frame.keyframe { FLAG_KEYFRAME } else { 0 });
    out.put_u8(0);
    out.put_u64(frame.seq);
    out.put_i64(frame.pts_us);
    out.put_i64(frame.dts_us);
    out.put_u32(frame.duration_us);
    out.put_u32(frame.data.len() as u32);
}

/// Parsed frame record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Track id.
    pub track: u8,
    /// Keyframe flag.
    pub keyframe: bool,
    /// Sequence number.
    pub seq: u64,
    /// Presentation timestamp, µs.
    pub pts_us: i64,
    /// Decode timestamp, µs.
    pub dts_us: i64,
    /// Duration, µs.
    pub duration_us: u32,
    /// Data length.
    pub len: u32,
}

/// Parse a 36-byte frame header, checking the record type, reserved bits,
/// track id range and the size limit.
pub fn decode_frame_header(b: &[u8], max_frame_bytes: u32) -> Result<FrameHeader, DecodeError> {
    if b.len() < FRAME_HEADER_LEN {
        return Err(DecodeError::Truncated {
            have: b.len(),
            need: FRAME_HEADER_LEN,
        });
    }
    let mut c = &b[..FRAME_HEADER_LEN];
    let ty = c.get_u8();
    if ty != FRAME_RECORD_TYPE {
        return Err(DecodeError::BadRecordType(ty));
    }
    let track = c.get_u8();
    let flags = c.get_u8();
    let reserved = c.get_u8();
    if flags & !FLAG_KEYFRAME != 0 || reserved != 0 {
        return Err(DecodeError::ReservedBits { flags, reserved });
    }
    if track > MAX_TRACK_ID {
        return Err(DecodeError::BadTrack(track));
    }
    let seq = c.get_u64();
    let pts_us = c.get_i64();
    let dts_us = c.get_i64();
    let duration_us = c.get_u32();
    let len = c.get_u32();
    if len > max_frame_bytes {
        return Err(DecodeError::FrameTooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    Ok(FrameHeader {
        track,
        keyframe: flags & FLAG_KEYFRAME != 0,
        seq,
        pts_us,
        dts_us,
        duration_us,
        len,
    })
}

/// Incremental decoder of a frame stream.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    header: Option<FrameHeader>,
    max_frame_bytes: u32,
}

impl FrameDecoder {
    /// A decoder that rejects frames above `max_frame_bytes`.
    pub fn new(max_frame_bytes: u32) -> Self {
        Self {
            buf: BytesMut::new(),
            header: None,
            max_frame_bytes,
        }
    }

    /// Feed received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Take the next complete frame, `Ok(None)` if more bytes are needed. The
    /// header is checked as soon as its 36 bytes are in, so an oversized frame
    /// is refused before its body is received.
    pub fn decode_next(&mut self) -> Result<Option<MediaFrame>, DecodeError> {
        let header = match self.header {
            Some(h) => h,
            None => {
                if self.buf.len() < FRAME_HEADER_LEN {
                    return Ok(None);
                }
                let h = decode_frame_header(&self.buf, self.max_frame_bytes)?;
                self.buf.advance(FRAME_HEADER_LEN);
                self.header = Some(h);
                h
            }
        };
        if self.buf.len() < header.len as usize {
            return Ok(None);
        }
        self.header = None;
        let data = self.buf.split_to(header.len as usize).freeze();
        Ok(Some(MediaFrame {
            track: header.track,
            seq: header.seq,
            pts_us: header.pts_us,
            dts_us: header.dts_us,
            duration_us: header.duration_us,
            keyframe: header.keyframe,
            data,
        }))
    }

    /// Call when the stream ended: an error if a record was cut short.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.header {
            Some(h) => Err(DecodeError::Truncated {
                have: FRAME_HEADER_LEN + self.buf.len(),
                need: FRAME_HEADER_LEN + h.len as usize,
            }),
            None if !self.buf.is_empty() => Err(DecodeError::Truncated {
                have: self.buf.len(),
                need: FRAME_HEADER_LEN,
            }),
            None => Ok(()),
        }
    }

    /// True when no partial record is buffered.
    pub fn is_idle(&self) -> bool {
        self.header.is_none() && self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use proptest::prelude::*;

    fn frame(seq: u64) -> MediaFrame {
        MediaFrame {
            track: 1,
            seq,
            pts_us: 33_333 * seq as i64,
            dts_us: 33_333 * seq as i64 - 10,
            duration_us: 33_333,
            keyframe: seq % 30 == 0,
            data: Bytes::from(vec![seq as u8; 100 + seq as usize]),
        }
    }

    #[test]
    fn frame_round_trip_byte_by_byte() {
        let mut wire = Vec::new();
        for s in 0..5 {
            wire.extend_from_slice(&encode_frame(&frame(s)));
        }
        let mut d = FrameDecoder::new(1 << 20);
        let mut got = Vec::new();
        for b in wire {
            d.push(&[b]);
            while let Some(f) = d.decode_next().unwrap() {
                got.push(f);
            }
        }
        d.finish().unwrap();
        assert_eq!(got, (0..5).map(frame).collect::<Vec<_>>());
    }

    #[test]
    fn frame_header_layout_matches_spec_example() {
        // docs/ingest-protocol.md, "Frame record" example.
        let f = MediaFrame {
            track: 0,
            seq: 1,
            pts_us: 33_333,
            dts_us: 33_333,
            duration_us: 33_333,
            keyframe: true,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        };
        assert_eq!(
            hex::encode(encode_frame(&f)),
            "46000100\
             0000000000000001\
             0000000000008235\
             0000000000008235\
             00008235\
             00000005\
             0000000165"
        );
    }

    #[test]
    fn oversized_frame_refused_from_header() {
        let mut d = FrameDecoder::new(50);
        d.push(&encode_frame(&frame(1))[..FRAME_HEADER_LEN]);
        assert_eq!(
            d.decode_next(),
            Err(DecodeError::FrameTooLarge { len: 101, max: 50 })
        );
    }

    #[test]
    fn garbage_and_reserved_bits_rejected() {
        let mut d = FrameDecoder::new(1000);
        d.push(&[0x47; 40]);
        assert_eq!(d.decode_next(), Err(DecodeError::BadRecordType(0x47)));
        let mut w = encode_frame(&frame(1)).to_vec();
        w[3] = 1;
        let mut d = FrameDecoder::new(1000);
        d.push(&w);
        assert!(matches!(
            d.decode_next(),
            Err(DecodeError::ReservedBits { .. })
        ));
        let mut w = encode_frame(&frame(1)).to_vec();
        w[1] = 16;
        let mut d = FrameDecoder::new(1000);
        d.push(&w);
        assert_eq!(d.decode_next(), Err(DecodeError::BadTrack(16)));
    }

    #[test]
    fn truncated_frame_reported_at_finish() {
        let w = encode_frame(&frame(3));
        let mut d = FrameDecoder::new(1000);
        d.push(&w[..50]);
        assert_eq!(d.decode_next(), Ok(None));
        assert_eq!(
            d.finish(),
            Err(DecodeError::Truncated {
                have: 50,
                need: FRAME_HEADER_LEN + 103
            })
        );
    }

    /// The HELLO examples of docs/ingest-protocol.md, byte for byte: the
    /// optional `rotation` is omitted at 0 (v1 bytes unchanged) and sent
    /// otherwise; a HELLO without it decodes as rotation 0.
    #[test]
    fn hello_examples_match_the_spec() {
        let doc = include_str!("../../docs/ingest-protocol.md");
        let section = &doc[doc.find("### 4.1 HELLO").unwrap()..doc.find("### 4.2").unwrap()];
        let examples: Vec<(Vec<u8>, &str)> = section
            .split("```")
            .skip(1)
            .step_by(2)
            .map(|block| {
                let mut lines = block.trim().lines();
                let header = hex::decode(lines.next().unwrap().replace(' ', "")).unwrap();
                (header, lines.next().unwrap())
            })
            .collect();
        assert_eq!(examples.len(), 3, "new, rotated, resume");
        let mut rotations = Vec::new();
        for (header, json) in &examples {
            let mut wire = header.clone();
            wire.extend_from_slice(json.as_bytes());
            let mut d = ControlDecoder::new();
            d.push(&wire);
            let Some(Control::Hello(hello)) = d.decode_next().unwrap() else {
                panic!("not a HELLO: {json}");
            };
            d.finish().unwrap();
            assert_eq!(Control::Hello(hello.clone()).encode(), wire, "{json}");
            rotations.push(hello.tracks.iter().map(|t| t.rotation).collect::<Vec<_>>());
        }
        assert_eq!(rotations, [vec![0, 0], vec![90, 0], vec![]]);
    }

    /// The WELCOME and ERROR examples of docs/ingest-protocol.md decode
    /// and re-encode byte for byte (ids of 128 bits, `retry_after_ms`).
    #[test]
    fn welcome_and_error_examples_match_the_spec() {
        let doc = include_str!("../../docs/ingest-protocol.md");
        let blocks = |from: &str, to: &str| -> Vec<Vec<u8>> {
            doc[doc.find(from).unwrap()..doc.find(to).unwrap()]
                .split("```")
                .skip(1)
                .step_by(2)
                .map(|block| {
                    let mut lines = block.trim().lines();
                    let mut wire = hex::decode(lines.next().unwrap().replace(' ', "")).unwrap();
                    wire.extend_from_slice(lines.next().unwrap().as_bytes());
                    wire
                })
                .collect()
        };
        let mut seen = Vec::new();
        for wire in blocks("### 4.2 WELCOME", "### 4.3")
            .into_iter()
            .chain(blocks("### 4.6 ERROR", "### 4.7"))
        {
            let mut d = ControlDecoder::new();
            d.push(&wire);
            let m = d.decode_next().unwrap().unwrap();
            d.finish().unwrap();
            assert_eq!(m.encode(), wire, "{m:?}");
            seen.push(m);
        }
        let Control::Welcome(w) = &seen[0] else {
            panic!("{:?}", seen[0])
        };
        assert_eq!((w.session_id.len(), w.resume_secret.len()), (32, 32));
        let Control::Error(e) = &seen[2] else {
            panic!("{:?}", seen[2])
        };
        assert_eq!(
            (e.code, e.retry_after_ms),
            (ErrorCode::RateLimited.as_u16(), Some(30_000))
        );
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn control_round_trip() {
        let msgs = vec![
            Control::Hello(Hello {
                version: 1,
                token: "sc_abc".into(),
                tracks: vec![TrackInfo {
                    rotation: 90,
                    ..TrackInfo::video(0, Codec::H264, vec![1, 2, 3], (640, 360), (30, 1))
                }],
                anchor_unix_us: 1_700_000_000_000_000,
                resume: None,
                client: Some("test".into()),
                title: None,
            }),
            Control::Ack(Ack {
                next_seq: [(0, 10), (1, 20)].into_iter().collect(),
                held: [(0, vec![(15, 18)])].into_iter().collect(),
            }),
            Control::End(End {
                frame_count: [(0, 90)].into_iter().collect(),
            }),
            Control::Error(ErrorMsg {
                code: 2,
                message: "nope".into(),
                retry_after_ms: None,
            }),
            Control::Error(ErrorMsg {
                code: 11,
                message: "wait".into(),
                retry_after_ms: Some(30_000),
            }),
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend_from_slice(&m.encode());
        }
        let mut d = ControlDecoder::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(7) {
            d.push(chunk);
            while let Some(m) = d.decode_next().unwrap() {
                got.push(m);
            }
        }
        d.finish().unwrap();
        assert_eq!(got, msgs);
    }

    fn hello() -> Hello {
        Hello {
            version: 1,
            token: "sc_abc".into(),
            tracks: vec![
                TrackInfo::video(0, Codec::H264, vec![1, 0x64, 0, 0x1f], (640, 360), (30, 1)),
                TrackInfo::audio(1, Codec::Aac, vec![0x11, 0x90], 48_000, 2),
            ],
            anchor_unix_us: 0,
            resume: None,
            client: Some("test/1".into()),
            title: Some("a walk".into()),
        }
    }

    /// Each bound of HELLO: a value at the bound passes, one past it is
    /// refused naming the field, the value and the bound.
    #[test]
    fn every_hello_bound_is_enforced_at_its_edge() {
        type Edit = fn(&mut Hello, usize);
        let l = HelloLimits::default();
        let cases: [(&str, usize, Edit, &str); 14] = [
            (
                "token",
                l.max_token_bytes,
                |h, n| h.token = "t".repeat(n),
                "bytes",
            ),
            (
                "title",
                l.max_title_chars,
                |h, n| h.title = Some("é".repeat(n)),
                "characters",
            ),
            (
                "client",
                l.max_client_chars,
                |h, n| h.client = Some("ü".repeat(n)),
                "characters",
            ),
            (
                "resume",
                MAX_RESUME_FIELD_BYTES,
                |h, n| {
                    h.resume = Some(Resume {
                        session_id: "a".repeat(n),
                        secret: "b".into(),
                    })
                },
                "resume.session_id",
            ),
            (
                "resume",
                MAX_RESUME_FIELD_BYTES,
                |h, n| {
                    h.resume = Some(Resume {
                        session_id: "a".into(),
                        secret: "b".repeat(n),
                    })
                },
                "resume.secret",
            ),
            (
                "tracks",
                MAX_TRACKS,
                |h, n| {
                    let t = h.tracks[1].clone();
                    h.tracks = (0..n)
                        .map(|i| TrackInfo {
                            id: (i % 256) as u8,
                            ..t.clone()
                        })
                        .collect();
                },
                "tracks",
            ),
            (
                "codec",
                MAX_CODEC_NAME_BYTES,
                |h, n| h.tracks[0].codec = "x".repeat(n),
                "codec name",
            ),
            (
                "codec_data",
                l.max_codec_data_bytes,
                |h, n| h.tracks[0].codec_data = vec![1; n],
                "codec_data",
            ),
            (
                "dimensions",
                l.max_video_dimension as usize,
                |h, n| h.tracks[0].width = Some(n as u32),
                "width",
            ),
            (
                "dimensions",
                l.max_video_dimension as usize,
                |h, n| h.tracks[0].height = Some(n as u32),
                "height",
            ),
            (
                "framerate",
                l.max_frame_rate as usize,
                |h, n| h.tracks[0].framerate = Some((2 * n as u32, 2)),
                "frame rate",
            ),
            (
                "sample_rate",
                l.max_sample_rate_hz as usize,
                |h, n| h.tracks[1].sample_rate = Some(n as u32),
                "sample rate",
            ),
            (
                "channels",
                l.max_channels as usize,
                |h, n| h.tracks[1].channels = Some(n as u32),
                "channels",
            ),
            (
                "track_id",
                MAX_TRACK_ID as usize,
                |h, n| h.tracks[1].id = n as u8,
                "track id",
            ),
        ];
        for (field, bound, edit, words) in cases {
            let mut at = hello();
            edit(&mut at, bound);
            assert_eq!(at.check(&l), Ok(()), "{field} at its bound {bound}");
            let mut over = hello();
            edit(&mut over, bound + 1);
            let r = over.check(&l).expect_err(field);
            assert_eq!(r.field, field, "{r:?}");
            assert!(HELLO_FIELDS.contains(&r.field), "{r:?}");
            assert!(r.message.contains(words), "{field}: {}", r.message);
            if field != "track_id" && field != "tracks" {
                assert!(
                    r.message.contains(&bound.to_string()),
                    "{field}: the message names the bound: {}",
                    r.message
                );
            }
        }
    }

    /// The finding of the security review: a 2^31 x 2^31 picture and a 60 KB
    /// title, and the other values that are not sizes at all.
    #[test]
    fn absurd_hello_values_are_refused() {
        let l = HelloLimits::default();
        let mut h = hello();
        h.tracks[0].width = Some(1 << 31);
        h.tracks[0].height = Some(1 << 31);
        assert_eq!(h.check(&l).unwrap_err().field, "dimensions");
        let mut h = hello();
        h.title = Some("x".repeat(60_000));
        assert_eq!(h.check(&l).unwrap_err().field, "title");
        for (edit, field) in [
            (
                (|h: &mut Hello| h.tracks[0].width = Some(0)) as fn(&mut Hello),
                "dimensions",
            ),
            (|h| h.tracks[0].framerate = Some((30, 0)), "framerate"),
            (|h| h.tracks[0].framerate = Some((0, 1)), "framerate"),
            (|h| h.tracks[0].framerate = Some((u32::MAX, 1)), "framerate"),
            (|h| h.tracks[1].sample_rate = Some(0), "sample_rate"),
            (|h| h.tracks[1].channels = Some(0), "channels"),
            (|h| h.tracks[0].rotation = 45, "rotation"),
            (|h| h.tracks[1].id = 0, "track_id"),
            (|h| h.title = Some("two\nlines".into()), "title"),
            (|h| h.client = Some("esc\u{1b}[31m".into()), "client"),
        ] {
            let mut h = hello();
            edit(&mut h);
            assert_eq!(h.check(&l).map_err(|r| r.field), Err(field), "{h:?}");
        }
        // A resume HELLO carries no tracks; a plain one passes as it is.
        let mut h = hello();
        h.tracks.clear();
        h.resume = Some(Resume {
            session_id: "0".repeat(32),
            secret: "1".repeat(32),
        });
        assert_eq!(h.check(&l), Ok(()));
        assert_eq!(hello().check(&l), Ok(()));
    }

    #[test]
    fn only_stop_codes_end_a_session() {
        let resumable = [
            ErrorCode::Ok,
            ErrorCode::Stalled,
            ErrorCode::Internal,
            ErrorCode::ShuttingDown,
            ErrorCode::MissingFrames,
            ErrorCode::RateLimited,
            ErrorCode::StorageFull,
        ];
        assert_eq!(ErrorCode::from_u16(19), None);
        for v in 0..=18 {
            let c = ErrorCode::from_u16(v).unwrap();
            assert_eq!(c.ends_session(), !resumable.contains(&c), "{}", c.name());
        }
    }

    #[test]
    fn ack_example_bytes() {
        // docs/ingest-protocol.md, "ACK" example.
        let a = Control::Ack(Ack {
            next_seq: [(0, 31), (1, 47)].into_iter().collect(),
            held: Default::default(),
        });
        let enc = a.encode();
        assert_eq!(&enc[..5], &[0x03, 0, 0, 0, 0x1c]);
        assert_eq!(&enc[5..], br#"{"next_seq":{"0":31,"1":47}}"#);
    }

    #[test]
    fn ack_with_held_ranges_example_bytes() {
        // docs/ingest-protocol.md, "ACK" example with held ranges.
        let a = Control::Ack(Ack {
            next_seq: [(0, 31), (1, 47)].into_iter().collect(),
            held: [(0, vec![(40, 45), (50, 51)])].into_iter().collect(),
        });
        let enc = a.encode();
        assert_eq!(&enc[..5], &[0x03, 0, 0, 0, 0x3b]);
        assert_eq!(
            &enc[5..],
            br#"{"next_seq":{"0":31,"1":47},"held":{"0":[[40,45],[50,51]]}}"#
        );
        let Control::Ack(a) = a else { unreachable!() };
        assert!(a.covers(0, 30) && a.covers(0, 44) && a.covers(0, 50));
        assert!(!a.covers(0, 31) && !a.covers(0, 45) && !a.covers(0, 51) && !a.covers(2, 0));
    }

    #[test]
    fn report_round_trips_and_welcome_says_whether_it_is_taken() {
        let r = Control::Report(Report {
            advised_bps: Some(1_500_000),
            backlog_bytes: Some(40_000),
            backlog_frames: Some(3),
        });
        let enc = r.encode();
        assert_eq!(enc[0], 0x08);
        assert_eq!(
            &enc[5..],
            br#"{"advised_bps":1500000,"backlog_bytes":40000,"backlog_frames":3}"#
        );
        let mut d = ControlDecoder::new();
        d.push(&enc);
        assert_eq!(d.decode_next(), Ok(Some(r)));
        // Every field is optional, unknown ones are ignored.
        let mut d = ControlDecoder::new();
        d.push(&[0x08, 0, 0, 0, 8]);
        d.push(br#"{"x":1} "#);
        assert_eq!(
            d.decode_next(),
            Ok(Some(Control::Report(Report::default())))
        );
        // A WELCOME without `reports` (an older server) means false, and
        // false is not written.
        let w = br#"{"session_id":"s","resume_secret":"r","resumed":false,"next_seq":{},"limits":{"max_frame_bytes":1,"max_bitrate_bps":1,"max_session_secs":1}}"#;
        let mut welcome: Welcome = serde_json::from_slice(w).expect("welcome");
        assert!(!welcome.reports);
        assert!(
            !String::from_utf8_lossy(&Control::Welcome(welcome.clone()).encode())
                .contains("reports")
        );
        welcome.reports = true;
        assert!(String::from_utf8_lossy(&Control::Welcome(welcome).encode())
            .contains(r#""reports":true"#));
    }

    #[test]
    fn control_errors() {
        let mut d = ControlDecoder::new();
        d.push(&[0x09, 0, 0, 0, 0]);
        assert_eq!(d.decode_next(), Err(DecodeError::UnknownType(9)));
        let mut d = ControlDecoder::new();
        d.push(&[0x01, 0x00, 0x10, 0x00, 0x01]);
        assert!(matches!(
            d.decode_next(),
            Err(DecodeError::ControlTooLarge(_))
        ));
        let mut d = ControlDecoder::new();
        d.push(&[0x01, 0, 0, 0, 2, b'{', b'}']);
        assert!(matches!(
            d.decode_next(),
            Err(DecodeError::BadPayload { kind: "HELLO", .. })
        ));
        for code in 0..=18 {
            assert_eq!(ErrorCode::from_u16(code).map(|c| c.as_u16()), Some(code));
        }
        assert_eq!(ErrorCode::from_u16(19), None);
    }

    /// Takes up to ten messages from a decoder, stopping at the first that
    /// is incomplete or wrong.
    fn decode_some<T>(mut next: impl FnMut() -> Result<Option<T>, DecodeError>) {
        for _ in 0..10 {
            if !matches!(next(), Ok(Some(_))) {
                break;
            }
        }
    }

    proptest! {
        #[test]
        fn control_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = ControlDecoder::new();
            d.push(&data);
            decode_some(|| d.decode_next());
            let _ = d.finish();
        }

        #[test]
        fn frame_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300), max in 0u32..200) {
            let mut d = FrameDecoder::new(max);
            d.push(&data);
            decode_some(|| d.decode_next());
            let _ = d.finish();
        }

        #[test]
        fn decoded_frames_reencode_to_their_bytes(mut data in proptest::collection::vec(any::<u8>(), 0..400), seqs in proptest::collection::vec(0u64..50, 0..4)) {
            // Valid records followed by arbitrary bytes.
            let mut wire = Vec::new();
            for s in &seqs {
                wire.extend_from_slice(&encode_frame(&frame(*s)));
            }
            wire.append(&mut data);
            let mut d = FrameDecoder::new(1 << 20);
            d.push(&wire);
            let mut consumed = Vec::new();
            while let Ok(Some(f)) = d.decode_next() {
                consumed.extend_from_slice(&encode_frame(&f));
            }
            prop_assert!(wire.starts_with(&consumed));
            prop_assert!(consumed.len() >= seqs.iter().map(|s| FRAME_HEADER_LEN + 100 + *s as usize).sum::<usize>());
        }

        #[test]
        fn frame_truncations_are_errors_not_panics(seq in 0u64..1000, cut in 0usize..200) {
            let w = encode_frame(&frame(seq));
            let cut = cut.min(w.len());
            let mut d = FrameDecoder::new(1 << 20);
            d.push(&w[..cut]);
            let r = d.decode_next();
            if cut == w.len() {
                prop_assert_eq!(r, Ok(Some(frame(seq))));
            } else {
                prop_assert_eq!(r, Ok(None));
                prop_assert!(cut == 0 || d.finish().is_err());
            }
        }
    }
}
