//! The configuration file. Every value has a default (embedded), so
//! `sharecast serve` runs without a file; `docs/sharecast.example.toml` lists
//! every key with its default and meaning.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sharecast_api::{AdminConfig, GatewayConfig};
use sharecast_ingest::IngestConfig;
use sharecast_live_relay::LiveRelayConfig;
use sharecast_resume::outbound::OutboundConfig;
use sharecast_resume::webhooks::WebhooksConfig;
use sharecast_share::{ShareConfig, SmsConfig};
use sharecast_store::StoreConfig;
use sharecast_transcoder::TranscoderConfig;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where journals, recordings, TLS material and the database live.
    /// Default `./data`.
    pub data_dir: PathBuf,
    /// The metadata database: SQLite in `data_dir` (default) or PostgreSQL.
    pub store: StoreConfig,
    /// QUIC ingest.
    pub ingest: IngestConfig,
    /// HTTP API, VOD files, metrics.
    pub http: GatewayConfig,
    /// Live relay.
    pub live: LiveRelayConfig,
    /// Transcoder.
    pub transcoder: TranscoderConfig,
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
    /// Delivery of webhook events (retries, polling).
    pub webhooks: WebhooksConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            store: StoreConfig::default(),
            ingest: IngestConfig::default(),
            http: GatewayConfig::default(),
            live: LiveRelayConfig::default(),
            transcoder: TranscoderConfig::default(),
            resume: Default::default(),
            share: ShareConfig::default(),
            sms: SmsConfig::default(),
            admin: AdminConfig::default(),
            outbound: OutboundConfig::default(),
            webhooks: WebhooksConfig::default(),
        }
    }
}

impl Config {
    /// Load a TOML file, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        Self::load_with(path, &[])
    }

    /// Load a TOML file (or the defaults), then set each `(dotted.key,
    /// value)` of `overrides` as if the file said so: command-line flags
    /// are keys of the file, checked by the same rules.
    pub fn load_with(path: Option<&Path>, overrides: &[(&str, toml::Value)]) -> Result<Config> {
        let mut doc = match path {
            None => toml::Table::new(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config {}", p.display()))?
            }
        };
        for (key, value) in overrides {
            set_key(&mut doc, key, value.clone())?;
        }
        let what = path.map_or("the defaults".to_string(), |p| p.display().to_string());
        toml::Value::Table(doc)
            .try_into()
            .with_context(|| format!("config {what} with the command-line settings"))
    }
}

/// Sets `dotted.key` in a TOML table, making the tables on the way.
fn set_key(doc: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().context("empty configuration key")?;
    let mut table = doc;
    for part in parts {
        table = table
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("configuration key {key}: {part} is not a table"))?;
    }
    table.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_settings_are_keys_of_the_file() {
        let cfg = Config::load_with(
            None,
            &[
                ("http.listen", "127.0.0.1:0".into()),
                ("live.rtsp_port", toml::Value::Integer(0)),
                ("data_dir", "elsewhere".into()),
            ],
        )
        .unwrap();
        assert_eq!(cfg.http.listen, "127.0.0.1:0");
        assert_eq!(cfg.live.rtsp_port, 0);
        assert_eq!(cfg.data_dir, PathBuf::from("elsewhere"));
        assert_eq!(cfg.ingest.listen, IngestConfig::default().listen);
        let bad = Config::load_with(None, &[("live.rtsp_port", "many".into())]).unwrap_err();
        assert!(format!("{bad:#}").contains("rtsp_port"), "{bad:#}");
        let unknown = Config::load_with(None, &[("live.no_such_key", true.into())]).unwrap_err();
        assert!(
            format!("{unknown:#}").contains("no_such_key"),
            "{unknown:#}"
        );
    }

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
