//! The configuration file. Every value has a default (embedded), so
//! `sharecast serve` runs without a file; `docs/sharecast.example.toml` lists
//! every key with its default and meaning.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sharecast_api::GatewayConfig;
use sharecast_ingest::IngestConfig;
use sharecast_resume::outbound::OutboundConfig;
use sharecast_share::{ShareConfig, SmsConfig};

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
    /// Live viewers (RTSP and HLS) need a playback token for the session
    /// unless it was shared publicly (docs/live.md). Default true.
    pub playback_tokens: bool,
    /// Lifetime of issued playback tokens, s. Default 86400 (one day).
    pub playback_token_ttl_secs: u64,
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
            playback_tokens: true,
            playback_token_ttl_secs: 86_400,
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

/// One extra rendition of the ladder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionConfig {
    /// Name; the file is `<name>.mp4` (letters, digits, `_`, `-`).
    pub name: String,
    /// Shorter side of the picture, pixels (never upscaled).
    pub short_side: u32,
    /// H.264 video bitrate, kbit/s.
    pub video_kbps: u32,
    /// AAC bitrate when the audio must be encoded (Opus input), bit/s.
    pub audio_bps: u32,
    /// x264 speed preset.
    pub x264_preset: String,
}

/// Transcoder settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeConfig {
    /// How often the index at the front of the recorded MP4 is rewritten,
    /// ms: a crash loses at most this much. Default 1000.
    pub fragment_duration_ms: u32,
    /// Longest recording, ms (room for the index is reserved for it).
    /// Default 3 600 000.
    pub max_duration_ms: u64,
    /// Media held back at the start to line tracks up, ms. Default 500.
    pub start_window_ms: u32,
    /// Finished files up to this size get the reserved index room removed,
    /// bytes. Default 32 MiB; 0 = never.
    pub compact_max_bytes: u64,
    /// How long renditions may take after the phone stopped, ms. Default 3 600 000.
    pub rendition_timeout_ms: u64,
    /// Extra renditions besides the source. Default: one 480p H.264 + AAC
    /// compatibility rendition. Empty (`renditions = []`): source only.
    pub renditions: Vec<RenditionConfig>,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        let t = sharecast_transcoder::TranscoderConfig::default();
        Self {
            fragment_duration_ms: t.fragment_duration_ms,
            max_duration_ms: t.max_duration_ms,
            start_window_ms: t.start_window_ms,
            compact_max_bytes: t.compact_max_bytes,
            rendition_timeout_ms: t.rendition_timeout_ms,
            renditions: t
                .renditions
                .into_iter()
                .map(|r| RenditionConfig {
                    name: r.name,
                    short_side: r.short_side,
                    video_kbps: r.video_kbps,
                    audio_bps: r.audio_bps,
                    x264_preset: r.x264_preset,
                })
                .collect(),
        }
    }
}

impl TranscodeConfig {
    /// The transcoder crate's configuration.
    pub fn to_transcoder(&self) -> sharecast_transcoder::TranscoderConfig {
        sharecast_transcoder::TranscoderConfig {
            fragment_duration_ms: self.fragment_duration_ms,
            max_duration_ms: self.max_duration_ms,
            start_window_ms: self.start_window_ms,
            compact_max_bytes: self.compact_max_bytes,
            rendition_timeout_ms: self.rendition_timeout_ms,
            renditions: self
                .renditions
                .iter()
                .map(|r| sharecast_transcoder::RenditionSpec {
                    name: r.name.clone(),
                    short_side: r.short_side,
                    video_kbps: r.video_kbps,
                    audio_bps: r.audio_bps,
                    x264_preset: r.x264_preset.clone(),
                })
                .collect(),
            ..sharecast_transcoder::TranscoderConfig::default()
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
    pub resume: sharecast_resume::ResumeConfig,
    /// Share links and the share page.
    pub share: ShareConfig,
    /// SMS / WAP Push gateway for share messages.
    pub sms: SmsConfig,
    /// Admin dashboard and API.
    pub admin: AdminConfig,
    /// Requests the server makes to addresses it was given (hand-off push
    /// and pull, fetches of other platforms' videos), and redirects to
    /// other platforms.
    pub outbound: OutboundConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            ingest: IngestConfig::default(),
            http: GatewayConfig::default(),
            live: LiveConfig::default(),
            transcoder: TranscodeConfig::default(),
            resume: Default::default(),
            share: ShareConfig::default(),
            sms: SmsConfig::default(),
            admin: AdminConfig::default(),
            outbound: OutboundConfig::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `a.b.c = value` leaf of a TOML value, as dotted paths.
    fn leaves(prefix: &str, v: &toml::Value, out: &mut Vec<(String, toml::Value)>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&path, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }

    /// `docs/sharecast.example.toml` is the documentation of the settings:
    /// it sets every key, each to its embedded default.
    #[test]
    fn the_example_file_sets_every_key_to_its_default() {
        let example: toml::Value =
            toml::from_str(include_str!("../docs/sharecast.example.toml")).unwrap();
        let defaults = toml::Value::try_from(Config::default()).unwrap();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        leaves("", &defaults, &mut want);
        leaves("", &example, &mut got);
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, _)| !got.iter().any(|(g, _)| g == k))
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        let differ: Vec<_> = got
            .iter()
            .filter_map(|(k, v)| {
                let d = want.iter().find(|(w, _)| w == k)?;
                (&d.1 != v).then(|| format!("{k}: example {v}, default {}", d.1))
            })
            .collect();
        assert!(
            missing.is_empty() && differ.is_empty(),
            "keys missing from the example: {missing:?}\nvalues other than the default: {differ:?}"
        );
    }
}
