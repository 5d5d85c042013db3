//! Wiring of the admin dashboard and API: the admin token, and the closures
//! through which the admin routes see ingest sessions, live streams and
//! viewers without knowing media internals.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sharecast_api::admin::{Admin, AdminSources, AdminStream, ListFn};
use sharecast_api::{PlaybackTokens, Store};
use sharecast_ingest::IngestServer;
use sharecast_live_relay::{LiveRelay, ViewerEvent, ViewerSnapshot};
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
    let sessions = {
        let ingest = ingest.clone();
        Arc::new(move || ingest.sessions())
    };
    let (streams, viewers, viewer_events) = relay_sources(relay, tokens);
    let jobs = {
        let resume = resume.clone();
        Arc::new(move || resume.jobs())
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

/// What the admin sees of the live relay: each stream with links that open
/// it (a fresh playback token when one is needed), the viewers and their
/// recent events (user tokens masked).
fn relay_sources(
    relay: &Arc<LiveRelay>,
    tokens: &PlaybackTokens,
) -> (
    ListFn<AdminStream>,
    ListFn<ViewerSnapshot>,
    ListFn<ViewerEvent>,
) {
    let streams = {
        let (relay, tokens) = (relay.clone(), tokens.clone());
        Arc::new(move || {
            let streams = relay.streams().into_iter().map(|stream| {
                let id = &stream.session_id;
                let q = tokens.query(id);
                AdminStream {
                    watch_path: format!("/watch/{id}{q}"),
                    hls_path: format!("/live/{id}/index.m3u8{q}"),
                    stream,
                }
            });
            streams.collect()
        })
    };
    let viewers = {
        let relay = relay.clone();
        Arc::new(move || {
            let mut viewers = relay.viewers();
            viewers.iter_mut().for_each(|v| mask_user(&mut v.user));
            viewers
        })
    };
    let viewer_events = {
        let relay = relay.clone();
        Arc::new(move || {
            let mut events = relay.recent_viewer_events();
            for event in &mut events {
                let (ViewerEvent::Vanished(end)
                | ViewerEvent::Left(end)
                | ViewerEvent::Kicked(end)) = event;
                mask_user(&mut end.user);
            }
            events
        })
    };
    (streams, viewers, viewer_events)
}

/// Players identify with their user token (`user`); admins see only its
/// first and last characters.
fn mask_user(user: &mut Option<String>) {
    let Some(u) = user else { return };
    if u.starts_with("su_") && u.len() > 10 {
        let tail: Vec<char> = u.chars().rev().take(4).collect();
        *u = format!("su_…{}", tail.iter().rev().collect::<String>());
    }
}

#[cfg(test)]
mod tests {
    use super::mask_user;

    #[test]
    fn user_tokens_are_masked_to_their_ends_other_names_kept() {
        let masked = |u: Option<&str>| {
            let mut u = u.map(str::to_string);
            mask_user(&mut u);
            u
        };
        assert_eq!(
            masked(Some("su_0123456789abcdef")).as_deref(),
            Some("su_…cdef")
        );
        // Multi-byte characters at the end are not cut in two.
        assert_eq!(masked(Some("su_12345678éèêë")).as_deref(), Some("su_…éèêë"));
        assert_eq!(masked(Some("bob")).as_deref(), Some("bob"));
        assert_eq!(masked(Some("su_short")).as_deref(), Some("su_short"));
        assert_eq!(masked(None), None);
    }
}
