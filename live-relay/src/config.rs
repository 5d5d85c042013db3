//! Settings of the live relay: the `[live]` table of the configuration
//! file, keys as they are written there, each with its default.

use serde::{Deserialize, Serialize};

use crate::hls::HlsConfig;

/// Default of [`LiveRelayConfig::bind`].
pub const DEFAULT_BIND: &str = "0.0.0.0";
/// Default of [`LiveRelayConfig::rtsp_port`].
pub const DEFAULT_RTSP_PORT: u16 = 8554;
/// Default of [`LiveRelayConfig::viewer_timeout_secs`].
pub const DEFAULT_VIEWER_TIMEOUT_SECS: u64 = 5;
/// Default of [`LiveRelayConfig::rtsp_session_timeout_secs`].
pub const DEFAULT_RTSP_SESSION_TIMEOUT_SECS: u64 = 15;
/// Default of [`LiveRelayConfig::hls_segment_ms`].
pub const DEFAULT_HLS_SEGMENT_MS: u32 = 1000;
/// Default of [`LiveRelayConfig::hls_part_target_ms`].
pub const DEFAULT_HLS_PART_TARGET_MS: u32 = 200;
/// Default of [`LiveRelayConfig::hls_window_segments`].
pub const DEFAULT_HLS_WINDOW_SEGMENTS: usize = 6;
/// Default of [`LiveRelayConfig::hls_keep_ended_secs`].
pub const DEFAULT_HLS_KEEP_ENDED_SECS: u64 = 600;
/// Default of [`LiveRelayConfig::playback_token_ttl_secs`].
pub const DEFAULT_PLAYBACK_TOKEN_TTL_SECS: u64 = 86_400;
/// Default of [`LiveRelayConfig::max_gop_bytes`].
pub const DEFAULT_MAX_GOP_BYTES: usize = 8 * 1024 * 1024;
/// Default of [`LiveRelayConfig::max_queued_bytes`].
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 4 * 1024 * 1024;
/// Default of [`LiveRelayConfig::recent_viewer_events`].
pub const DEFAULT_RECENT_VIEWER_EVENTS: usize = 500;

/// Settings of the live relay; every value has a documented default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveRelayConfig {
    /// Address the RTSP server listens on.
    pub bind: String,
    /// RTSP port; 0 picks a free port (see [`crate::LiveRelay::rtsp_port`]).
    pub rtsp_port: u16,
    /// Host name put in RTSP URLs. Empty: the host of `http.public_url`.
    pub public_host: String,
    /// A heartbeat viewer without a heartbeat for this long, or an RTSP
    /// viewer without activity for this long, has vanished, s.
    pub viewer_timeout_secs: u64,
    /// RTSP session timeout, s: a viewer whose session sees no RTSP request
    /// and no RTCP receiver report for this long (UDP) has vanished. RTCP
    /// reports come about every 5 s, hence the margin.
    pub rtsp_session_timeout_secs: u64,
    /// Shortest live HLS segment, ms (cut at the next keyframe).
    pub hls_segment_ms: u32,
    /// Longest LL-HLS partial segment, ms (cut on any video frame; at most
    /// `hls_segment_ms`).
    pub hls_part_target_ms: u32,
    /// Segments listed in a live HLS playlist.
    pub hls_window_segments: usize,
    /// How long an ended stream's HLS playlists stay served, s.
    pub hls_keep_ended_secs: u64,
    /// Stamp the capture wall clock as an SEI into every H.264/H.265 access
    /// unit sent over RTSP.
    pub capture_clock_sei: bool,
    /// Live viewers (RTSP and HLS) need a playback token for the session
    /// unless it was shared publicly (`docs/live.md`).
    pub playback_tokens: bool,
    /// Lifetime of issued playback tokens, s.
    pub playback_token_ttl_secs: u64,
    /// Most bytes of frames kept to start new viewers on the last keyframe;
    /// a longer GOP is not cached and new viewers wait for the next one.
    pub max_gop_bytes: usize,
    /// Bytes that may wait in one viewer pipeline's input queue before the
    /// oldest are dropped.
    pub max_queued_bytes: u64,
    /// Viewer events kept for the admin API.
    pub recent_viewer_events: usize,
}

impl Default for LiveRelayConfig {
    fn default() -> Self {
        LiveRelayConfig {
            bind: DEFAULT_BIND.to_string(),
            rtsp_port: DEFAULT_RTSP_PORT,
            public_host: String::new(),
            viewer_timeout_secs: DEFAULT_VIEWER_TIMEOUT_SECS,
            rtsp_session_timeout_secs: DEFAULT_RTSP_SESSION_TIMEOUT_SECS,
            hls_segment_ms: DEFAULT_HLS_SEGMENT_MS,
            hls_part_target_ms: DEFAULT_HLS_PART_TARGET_MS,
            hls_window_segments: DEFAULT_HLS_WINDOW_SEGMENTS,
            hls_keep_ended_secs: DEFAULT_HLS_KEEP_ENDED_SECS,
            capture_clock_sei: true,
            playback_tokens: true,
            playback_token_ttl_secs: DEFAULT_PLAYBACK_TOKEN_TTL_SECS,
            max_gop_bytes: DEFAULT_MAX_GOP_BYTES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            recent_viewer_events: DEFAULT_RECENT_VIEWER_EVENTS,
        }
    }
}

impl LiveRelayConfig {
    /// The HLS segmenter's settings.
    pub fn hls(&self) -> HlsConfig {
        HlsConfig {
            segment_target_ms: self.hls_segment_ms,
            part_target_ms: self.hls_part_target_ms,
            window_segments: self.hls_window_segments,
            keep_ended_secs: self.hls_keep_ended_secs,
        }
    }
}
