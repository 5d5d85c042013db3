//! Settings of the live relay.

use crate::hls::HlsConfig;

/// Settings of the live relay; every value has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRelayConfig {
    /// Address the RTSP server listens on (default "0.0.0.0").
    pub bind: String,
    /// RTSP port (default 8554; 0 picks a free port, see
    /// [`crate::LiveRelay::rtsp_port`]).
    pub rtsp_port: u16,
    /// Most bytes of frames kept to start new viewers on the last keyframe
    /// (default 8 MiB); a longer GOP is not cached and new viewers wait for
    /// the next keyframe.
    pub max_gop_bytes: usize,
    /// Bytes that may wait in one viewer pipeline's input queue before the
    /// oldest are dropped (default 4 MiB).
    pub max_queued_bytes: u64,
    /// HLS segmenting.
    pub hls: HlsConfig,
    /// A heartbeat viewer without a heartbeat for this long, or an RTSP
    /// session without activity for this long, has vanished (default 5 s).
    pub viewer_timeout_secs: u64,
    /// RTSP session timeout, s (default 15): a viewer whose session sees
    /// no RTSP request and no RTCP receiver report for this long (UDP) has
    /// vanished. RTCP reports come about every 5 s, hence the margin.
    pub rtsp_session_timeout_secs: u64,
    /// Viewer events kept for the admin API (default 500).
    pub recent_viewer_events: usize,
    /// Insert the capture wall clock as an SEI into every H.264/H.265 access
    /// unit sent over RTSP (default true).
    pub capture_clock_sei: bool,
}

impl Default for LiveRelayConfig {
    fn default() -> Self {
        LiveRelayConfig {
            bind: "0.0.0.0".to_string(),
            rtsp_port: 8554,
            max_gop_bytes: 8 * 1024 * 1024,
            max_queued_bytes: 4 * 1024 * 1024,
            hls: HlsConfig::default(),
            viewer_timeout_secs: 5,
            rtsp_session_timeout_secs: 15,
            recent_viewer_events: 500,
            capture_clock_sei: true,
        }
    }
}
