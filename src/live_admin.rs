//! Wiring of the admin dashboard and API: the admin token, and the closures
//! through which the admin routes see ingest sessions, live streams and
//! viewers without knowing media internals.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sharecast_api::admin::{Admin, AdminSources};
use sharecast_api::{PlaybackTokens, Store};
use sharecast_ingest::IngestServer;
use sharecast_live_relay::LiveRelay;
use sharecast_resume::ResumeService;

use crate::config::Config;

/// Where a generated admin token is kept.
pub(crate) fn token_path(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("admin-token")
}

/// The admin token: `admin.token` from the configuration, else the one in
/// `<data_dir>/admin-token`, generated (random, 128 bits) at first start.
pub(crate) fn admin_token(cfg: &Config) -> Result<String> {
    if !cfg.admin.token.is_empty() {
        return Ok(cfg.admin.token.clone());
    }
    stored_secret(&token_path(cfg), "adm_")
}

/// The key inbound SMS callbacks carry: `sms.inbound_key`, else the one in
/// `<data_dir>/sms-inbound-key`, generated (random, 128 bits) at first start.
pub(crate) fn sms_inbound_key(cfg: &Config) -> Result<String> {
    if !cfg.sms.inbound_key.is_empty() {
        return Ok(cfg.sms.inbound_key.clone());
    }
    stored_secret(&cfg.data_dir.join("sms-inbound-key"), "")
}

/// A secret kept in `path` (owner-only), made at first use: `prefix` and 32
/// random hex digits.
fn stored_secret(path: &std::path::Path, prefix: &str) -> Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a secret")?;
    let token = format!("{prefix}{}", hex::encode(bytes));
    crate::secure::write_private(path, token.as_bytes())?;
    Ok(token)
}

/// The admin routes over the running components.
pub(crate) fn admin(
    store: &Store,
    ingest: &Arc<IngestServer>,
    relay: &Arc<LiveRelay>,
    tokens: &PlaybackTokens,
    resume: &ResumeService,
) -> Admin {
    let to_json = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
    let sessions = {
        let ingest = ingest.clone();
        Arc::new(move || to_json(serde_json::to_value(ingest.sessions())))
    };
    // Each stream with a player link that opens it (a fresh playback token
    // when one is needed).
    let streams = {
        let (relay, tokens) = (relay.clone(), tokens.clone());
        Arc::new(move || {
            let mut v = to_json(serde_json::to_value(relay.streams()));
            if let Some(list) = v.as_array_mut() {
                for s in list {
                    let id = s["session_id"].as_str().unwrap_or_default().to_string();
                    let q = tokens.query(&id);
                    s["watch_path"] = format!("/watch/{id}{q}").into();
                    s["hls_path"] = format!("/live/{id}/index.m3u8{q}").into();
                }
            }
            v
        })
    };
    let viewers = {
        let relay = relay.clone();
        Arc::new(move || mask_tokens(to_json(serde_json::to_value(relay.viewers()))))
    };
    let viewer_events = {
        let relay = relay.clone();
        Arc::new(move || mask_tokens(to_json(serde_json::to_value(relay.recent_viewer_events()))))
    };
    let jobs = {
        let resume = resume.clone();
        Arc::new(move || to_json(serde_json::to_value(resume.jobs())))
    };
    let end_session = {
        let ingest = ingest.clone();
        Arc::new(move |id: &str| {
            if !ingest.has_session(id) {
                return false;
            }
            let (ingest, id) = (ingest.clone(), id.to_string());
            tokio::spawn(async move {
                if !ingest.end_session(&id).await {
                    tracing::warn!(session = %id, "admin: session ended before it could be ended");
                }
            });
            true
        })
    };
    let kick_viewer = {
        let relay = relay.clone();
        Arc::new(move |id: &str| relay.kick_viewer(id))
    };
    let admin = Admin::new(AdminSources {
        sessions,
        streams,
        viewers,
        viewer_events,
        jobs,
        end_session,
        kick_viewer,
        store: store.clone(),
        refresh: Duration::from_secs(1),
    });
    admin.spawn_sampler();
    admin
}

/// Players identify with their user token (`user`); admins see only its
/// first and last characters.
fn mask_tokens(mut v: serde_json::Value) -> serde_json::Value {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "user" {
                        if let Some(s) = x.as_str() {
                            if s.starts_with("su_") && s.len() > 10 {
                                *x =
                                    serde_json::Value::String(format!("su_…{}", &s[s.len() - 4..]));
                            }
                        }
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}
