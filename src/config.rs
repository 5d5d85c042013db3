//! The configuration file. Every value has a default (embedded), so
//! `sharecast serve` runs without a file; `docs/sharecast.example.toml` lists
//! every key with its default and meaning.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sharecast_ingest::IngestConfig;
use sharecast_share_gateway::GatewayConfig;

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
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            bind: "0.0.0.0".into(),
            rtsp_port: 8554,
            public_host: String::new(),
        }
    }
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
