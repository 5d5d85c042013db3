//! The configuration file. Every value has a default (embedded), so
//! `sharecast serve` runs without a file; `docs/sharecast.example.toml` lists
//! every key with its default and meaning.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sharecast_ingest::IngestConfig;
use sharecast_share_gateway::{GatewayConfig, ShareConfig, SmsConfig};

/// Live relay (RTSP) settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveConfig {
    /// Address the RTSP server binds. Default `0.0.0.0`.
    pub bind: String,
    /// RTSP TCP port. Default 8554. 0 picks a free port.
    pub rtsp_port: u16,
    /// Host name put in RTSP URLs. Empty: the host of `http.public_url`.
    pub public_host: String,
    /// A viewer without a heartbeat (HLS) or RTSP activity for this long has
    /// vanished, s. Default 5.
    pub viewer_timeout_secs: u64,
    /// RTSP session timeout, s: a UDP viewer with no RTSP request and no
    /// RTCP report for this long has vanished. Default 15.
    pub rtsp_session_timeout_secs: u64,
    /// Shortest live HLS segment, ms (cut at the next keyframe). Default 1000.
    pub hls_segment_ms: u32,
    /// Segments listed in a live HLS playlist. Default 6.
    pub hls_window_segments: usize,
    /// How long an ended stream's HLS playlist stays served, s. Default 600.
    pub hls_keep_ended_secs: u64,
    /// Stamp the capture wall clock into RTSP video as an SEI. Default true.
    pub capture_clock_sei: bool,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0".into(),
            rtsp_port: 8554,
            public_host: String::new(),
            viewer_timeout_secs: 5,
            rtsp_session_timeout_secs: 15,
            hls_segment_ms: 1000,
            hls_window_segments: 6,
            hls_keep_ended_secs: 600,
            capture_clock_sei: true,
        }
    }
}

/// Admin dashboard and API settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Token for `/admin` and `/api/v1/admin/` (`Authorization: Bearer`).
    /// Empty (default): generated at first start into
    /// `<data_dir>/admin-token` and printed by `serve`.
    pub token: String,
}

/// Transcoder settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// Fragment duration of the recorded MP4, ms. Default 1000.
    pub fragment_duration_ms: u32,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            fragment_duration_ms: 1000,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where journals, recordings, TLS material and the database live.
    /// Default `./data`.
    pub data_dir: PathBuf,
    /// QUIC ingest.
    pub ingest: IngestConfig,
    /// HTTP API, VOD files, metrics.
    pub http: GatewayConfig,
    /// Live relay.
    pub live: LiveConfig,
    /// Transcoder.
    pub transcoder: TranscodeConfig,
    /// History, resume tokens and cross-platform hand-off.
    pub resume: sharecast_share_gateway::resume::ResumeConfig,
    /// Share links and the share page.
    pub share: ShareConfig,
    /// SMS / WAP Push gateway for share messages.
    pub sms: SmsConfig,
    /// Admin dashboard and API.
    pub admin: AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            ingest: IngestConfig::default(),
            http: GatewayConfig {
                public_url: String::new(),
                ..GatewayConfig::default()
            },
            live: LiveConfig::default(),
            transcoder: TranscodeConfig::default(),
            resume: Default::default(),
            share: ShareConfig::default(),
            sms: SmsConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

impl Config {
    /// Load a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))
            }
        }
    }
}
