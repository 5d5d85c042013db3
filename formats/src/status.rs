//! What the ingest and the live relay report of themselves, as the HTTP
//! API hands it out: a session's state (`GET /api/v1/sessions`, the admin),
//! the live streams and their viewers, viewer events, and the heartbeats a
//! player page posts. Plain data with its JSON shape (described in the
//! OpenAPI document with the `openapi` feature); the crates that fill it
//! re-export it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A point-in-time view of one session, for the admin API.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct SessionSnapshot {
    /// Session id.
    pub id: String,
    /// Device id.
    pub device_id: String,
    /// Device name.
    pub device_name: String,
    /// connected, suspended, stopped (by an error; being finalised),
    /// finishing, finished, failed.
    pub state: &'static str,
    /// Start time, Unix ms.
    pub started_unix_ms: u64,
    /// Seconds since start.
    pub age_secs: f64,
    /// Unique frames received.
    pub frames: u64,
    /// Unique bytes received.
    pub bytes: u64,
    /// Times the phone resumed the session.
    pub resumes: u64,
    /// Codecs of the tracks.
    pub codecs: Vec<String>,
    /// Video width and height, if any.
    pub width: Option<u32>,
    /// Video height.
    pub height: Option<u32>,
    /// Smoothed RTT of the current connection, ms.
    pub rtt_ms: Option<f64>,
    /// Frames received but not yet durable.
    pub backlog_frames: u64,
    /// Average ingest bitrate by capture time, bit/s.
    pub ingest_bitrate_bps: u64,
    /// Video frames per second of capture time.
    pub frame_rate: f64,
    /// Capture-to-arrival delay of the newest live frame, ms.
    pub live_delay_ms: Option<i64>,
    /// Largest capture-to-arrival delay of a live frame, ms.
    pub max_live_delay_ms: Option<i64>,
    /// Bytes of the frames made durable (acknowledged to the phone).
    pub durable_bytes: u64,
    /// The encoder bitrate the phone advises, from its last REPORT, bit/s.
    pub advised_bitrate_bps: Option<u64>,
    /// Bytes the phone holds unacknowledged, from its last REPORT.
    pub phone_backlog_bytes: Option<u64>,
}

/// One live stream, for the admin API.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct LiveStreamSnapshot {
    /// Session id.
    pub session_id: String,
    /// `live` or `ended`.
    pub state: String,
    /// HLS segments made so far.
    pub hls_segments: u64,
    /// Viewers by protocol.
    pub viewers: BTreeMap<&'static str, usize>,
}

/// How a viewer watches.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// RTSP (RTP over UDP or interleaved TCP).
    Rtsp,
    /// HLS in a browser or phone, tracked by heartbeats.
    Hls,
    /// The recording, after the live stream ended (heartbeats continue).
    Vod,
}

impl Protocol {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Rtsp => "rtsp",
            Protocol::Hls => "hls",
            Protocol::Vod => "vod",
        }
    }
}

/// The end of one viewing.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ViewerEnd {
    /// Viewer id (`rtsp-{session}` for RTSP, the page's id for HLS).
    pub viewer_id: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Content (live session / asset) id.
    pub content_id: String,
    /// User, when the player said who it is.
    pub user: Option<String>,
    /// Playback position in the content, ms of capture time (the same
    /// timeline as the VOD file).
    pub position_ms: u64,
    /// When the end was detected, Unix ms.
    pub at_unix_ms: u64,
    /// The playback token the viewer presented (what its access proved);
    /// never shown.
    #[serde(skip)]
    pub playback_token: Option<String>,
}

/// Something that happened to a viewer.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ViewerEvent {
    /// Abnormal interruption: heartbeats or the RTSP session timed out, or
    /// the connection closed without TEARDOWN.
    Vanished(ViewerEnd),
    /// Normal end (RTSP TEARDOWN, page closed with a final heartbeat).
    Left(ViewerEnd),
    /// An admin kicked the viewer.
    Kicked(ViewerEnd),
}

impl ViewerEvent {
    /// The details.
    pub fn end(&self) -> &ViewerEnd {
        match self {
            ViewerEvent::Vanished(e) | ViewerEvent::Left(e) | ViewerEvent::Kicked(e) => e,
        }
    }

    /// "vanished", "left" or "kicked".
    pub fn kind(&self) -> &'static str {
        match self {
            ViewerEvent::Vanished(_) => "vanished",
            ViewerEvent::Left(_) => "left",
            ViewerEvent::Kicked(_) => "kicked",
        }
    }
}

/// A current viewer, as shown by the admin API.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ViewerSnapshot {
    /// Viewer id.
    pub viewer_id: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Content id.
    pub content_id: String,
    /// User, if known.
    pub user: Option<String>,
    /// Position, ms.
    pub position_ms: u64,
    /// Player state the page reported ("playing", "waiting", …).
    pub state: Option<String>,
    /// Start, Unix ms.
    pub started_unix_ms: u64,
    /// Last heartbeat / activity, Unix ms.
    pub last_seen_unix_ms: u64,
    /// Remote address, when known.
    pub remote: Option<String>,
}

/// Body of `POST /api/v1/live/{id}/heartbeat`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// Stable id of the player instance: 1-64 of `[A-Za-z0-9._-]`.
    pub viewer_id: String,
    /// Current position in the content, ms of capture time.
    pub position_ms: u64,
    /// Who watches (a user token or name), at most 128 bytes.
    #[serde(default)]
    pub user: Option<String>,
    /// `hls` (live, the default) or `vod` (the recording).
    #[serde(default)]
    pub protocol: Option<String>,
    /// Player state (`playing`, `waiting`, …), at most 32 bytes.
    #[serde(default)]
    pub state: Option<String>,
    /// The page is closing: the viewing ends as `left`.
    #[serde(default)]
    pub leaving: bool,
}

/// Answer of `POST /api/v1/live/{id}/heartbeat`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct HeartbeatAnswer {
    /// Always true: the heartbeat was taken.
    pub ok: bool,
    /// The viewer vanishes after this long without a heartbeat, ms.
    pub timeout_ms: u64,
}
