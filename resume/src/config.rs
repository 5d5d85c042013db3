//! `[resume]`: the resume service's settings, with their defaults.

use serde::{Deserialize, Serialize};

/// Resume configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeConfig {
    /// History records older than this are purged, seconds. Default 30 days.
    pub history_max_age_secs: u64,
    /// Lifetime of a suspend state and of the signed links to it, seconds.
    /// Default 1 hour.
    pub handoff_ttl_secs: u64,
    /// Lifetime of a resume token, seconds. Default 30 days.
    pub resume_token_ttl_secs: u64,
    /// Preferred shorter side of an on-demand rendition (made when no
    /// rendition suits a terminal), pixels; smaller when the terminal type
    /// needs it, never upscaled. Default 480.
    pub transcode_short_side: u32,
    /// On-demand transcodes encoding at once. Default 1.
    pub transcode_max_concurrent: usize,
    /// On-demand transcodes queued or running; more are refused (503
    /// `transcode_busy`). Default 16.
    pub transcode_max_pending: usize,
    /// Fetch another platform's video when none of its renditions suits the
    /// terminal, and transcode it here (its address must be http or
    /// https). When off, such a hand-off is recorded `needs_transcode`.
    /// Default true.
    pub fetch_remote: bool,
    /// Largest video fetched from another platform, bytes; a larger one
    /// fails the fetch (`fetch_failed`). Default 2 GiB.
    pub fetch_max_bytes: u64,
    /// Longest fetch of another platform's video (connect, headers and the
    /// whole body), seconds. Default 600. Which platforms are fetched from
    /// is the outbound policy's (`[outbound]`).
    pub fetch_timeout_secs: u64,
    /// Wrong hand-off codes one client address may try in a minute
    /// (`GET /api/v1/handoff/by-code/{code}`); more are answered 429
    /// `too_many_attempts` until the minute is over. Default 10.
    pub code_attempts_per_minute: u32,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        Self {
            history_max_age_secs: 30 * 24 * 3600,
            handoff_ttl_secs: 3600,
            resume_token_ttl_secs: 30 * 24 * 3600,
            transcode_short_side: 480,
            transcode_max_concurrent: 1,
            transcode_max_pending: 16,
            fetch_remote: true,
            fetch_max_bytes: 2 << 30,
            fetch_timeout_secs: 600,
            code_attempts_per_minute: 10,
        }
    }
}
