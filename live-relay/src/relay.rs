//! [`LiveRelay`], the crate's front door: it starts the RTSP server, mounts
//! a publisher per live stream (RTSP and HLS), hands the HTTP server the HLS
//! and heartbeat handlers, and answers for viewers, streams and metrics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sharecast_formats::media::TrackInfo;
use sharecast_transcoder::caps::check_tracks;

use crate::hls::{self, HlsStream, LiveStart, LiveStartError};
use crate::metrics::{ReasonLabel, Rejections, RelayCollector};
use crate::publisher::{self, LivePublisher, Stage, Stream};
use crate::rtsp::{mount_path, RtspServer};
use crate::viewers::ViewerTracker;
use crate::{http, lock, vod, LiveRelayConfig};
use sharecast_formats::status::{LiveStreamSnapshot, ViewerEvent, ViewerSnapshot};

/// Decides whether a playback token opens a stream: `(session_id, token)`.
pub type Authorizer = Arc<dyn Fn(&str, Option<&str>) -> bool + Send + Sync>;

/// State shared by the RTSP side, the HLS routes and the publishers.
pub(crate) struct Shared {
    pub(crate) hls: Mutex<HashMap<String, Arc<HlsStream>>>,
    pub(crate) tracker: Arc<ViewerTracker>,
    pub(crate) rejected: Rejections,
    pub(crate) authorizer: Mutex<Option<Authorizer>>,
    pub(crate) hls_segments_served: Counter,
    /// LL-HLS partial segments served.
    pub(crate) hls_parts_served: Counter,
    pub(crate) frames: Counter,
}

impl Shared {
    fn new(cfg: &LiveRelayConfig) -> Shared {
        Shared {
            hls: Mutex::default(),
            tracker: Arc::new(ViewerTracker::new(
                std::time::Duration::from_secs(cfg.viewer_timeout_secs.max(1)),
                cfg.recent_viewer_events,
            )),
            rejected: Rejections::default(),
            authorizer: Mutex::default(),
            hls_segments_served: Counter::default(),
            hls_parts_served: Counter::default(),
            frames: Counter::default(),
        }
    }

    /// Counts a refused request by reason.
    pub(crate) fn reject(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Reaps heartbeat viewers and drops ended HLS streams past their keep
    /// time.
    pub(crate) fn housekeep(&self) {
        self.tracker.reap();
        let mut expired = Vec::new();
        lock(&self.hls).retain(|id, s| {
            let keep = !s.expired();
            if !keep {
                expired.push(id.clone());
            }
            keep
        });
        for id in expired {
            self.tracker.unregister_content(&id);
        }
    }
}

/// The live relay: the RTSP server, the live streams being published and
/// their viewers. Dropping it stops the server and disconnects viewers.
pub struct LiveRelay {
    cfg: LiveRelayConfig,
    rtsp: RtspServer,
    published: Arc<Mutex<HashSet<String>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LiveRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRelay")
            .field("bind", &self.cfg.bind)
            .field("port", &self.rtsp.port())
            .finish_non_exhaustive()
    }
}

/// Refuses a session id that cannot be part of an RTSP path.
fn check_session_id(session_id: &str) -> anyhow::Result<()> {
    if session_id.is_empty()
        || !session_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("session id {session_id:?} is not usable in an RTSP path");
    }
    Ok(())
}

impl LiveRelay {
    /// Starts the RTSP server on its own thread.
    pub fn start(cfg: LiveRelayConfig) -> anyhow::Result<LiveRelay> {
        let shared = Arc::new(Shared::new(&cfg));
        let rtsp = RtspServer::start(&cfg, &shared)?;
        Ok(LiveRelay {
            cfg,
            rtsp,
            published: Arc::default(),
            shared,
        })
    }

    /// The handlers of HLS playlists and segments (`/live/{id}/…`), the
    /// player page and viewer heartbeats
    /// (`POST /api/v1/live/{id}/heartbeat`), for the HTTP server's route
    /// table.
    pub fn http_routes(&self) -> http::LiveRoutes {
        http::routes(self.shared.clone())
    }

    /// Viewer events from now on (the bookmark feature subscribes here).
    pub fn viewer_events(&self) -> tokio::sync::broadcast::Receiver<ViewerEvent> {
        self.shared.tracker.subscribe()
    }

    /// Current viewers, all protocols.
    pub fn viewers(&self) -> Vec<ViewerSnapshot> {
        self.shared.tracker.snapshot()
    }

    /// Recent viewer events, oldest first.
    pub fn recent_viewer_events(&self) -> Vec<ViewerEvent> {
        self.shared.tracker.recent_events()
    }

    /// Kicks a viewer (closes an RTSP connection, refuses an HLS page's
    /// heartbeats). False when unknown.
    pub fn kick_viewer(&self, viewer_id: &str) -> bool {
        self.shared.tracker.kick(viewer_id)
    }

    /// Sets the playback-token check for RTSP, HLS and heartbeats (default:
    /// open).
    pub fn set_authorizer(&self, auth: Option<Authorizer>) {
        *lock(&self.shared.authorizer) = auth;
    }

    /// Where a player resuming `session_id` at content position
    /// `position_ms` starts in its HLS stream; `None` when the relay has no
    /// HLS stream for it (never live, or ended longer ago than the keep time).
    pub fn live_start(
        &self,
        session_id: &str,
        position_ms: u64,
    ) -> Option<Result<LiveStart, LiveStartError>> {
        let stream = lock(&self.shared.hls).get(session_id).cloned()?;
        Some(stream.live_start(position_ms))
    }

    /// Mounts a recording as seekable RTSP VOD (`/vod/{id}`); returns its
    /// path.
    pub fn mount_vod(
        &self,
        id: &str,
        file: &std::path::Path,
        codecs: &[String],
    ) -> anyhow::Result<String> {
        vod::mount(self.rtsp.mounts(), id, file, codecs)
    }

    /// Tells HLS players that the recording of an ended session is ready.
    pub fn set_vod_ready(&self, session_id: &str) {
        if let Some(s) = lock(&self.shared.hls).get(session_id) {
            s.set_vod_ready();
        }
    }

    /// Live streams (and ended ones still served) with their viewers.
    pub fn streams(&self) -> Vec<LiveStreamSnapshot> {
        let viewers = self.shared.tracker.snapshot();
        let published = lock(&self.published).clone();
        let mut out: Vec<LiveStreamSnapshot> = lock(&self.shared.hls)
            .values()
            .map(|s| {
                let mut by = BTreeMap::new();
                for v in viewers.iter().filter(|v| v.content_id == s.session_id) {
                    *by.entry(v.protocol.as_str()).or_insert(0) += 1;
                }
                LiveStreamSnapshot {
                    session_id: s.session_id.clone(),
                    state: if published.contains(&s.session_id) {
                        "live".into()
                    } else {
                        "ended".into()
                    },
                    hls_segments: s.segments_made.load(Ordering::Relaxed),
                    viewers: by,
                }
            })
            .collect();
        out.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        out
    }

    /// Registers the relay's families (`live_…`, under the registry's
    /// prefix): streams, frames, HLS segments, viewers and refusals.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(RelayCollector {
            shared: self.shared.clone(),
            published: self.published.clone(),
        }));
    }

    /// The port the server is bound to (the real one when configured with 0).
    pub fn rtsp_port(&self) -> u16 {
        self.rtsp.port()
    }

    /// Starts the live stream of a session at `/live/{session_id}`, without
    /// a known capture wall clock (the publish time stands in for it).
    pub fn publish(&self, session_id: &str, tracks: &[TrackInfo]) -> anyhow::Result<LivePublisher> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        self.publish_at(session_id, tracks, now)
    }

    /// Starts the live stream of a session (RTSP mount and HLS);
    /// `anchor_unix_us` is the wall clock of capture timestamp 0.
    pub fn publish_at(
        &self,
        session_id: &str,
        tracks: &[TrackInfo],
        anchor_unix_us: i64,
    ) -> anyhow::Result<LivePublisher> {
        self.publish_mount(session_id, None, tracks, anchor_unix_us)
    }

    /// Starts the live stream of one extra rendition of a session (encoded
    /// by the transcoder while the phone uploads): RTSP at
    /// `/live/{session_id}/{rendition}`, HLS as a variant of the session's
    /// multivariant playlist (`/live/{session_id}/{rendition}/index.m3u8`).
    /// The same playback token opens it.
    pub fn publish_rendition(
        &self,
        session_id: &str,
        rendition: &str,
        tracks: &[TrackInfo],
        anchor_unix_us: i64,
    ) -> anyhow::Result<LivePublisher> {
        let valid = !rendition.is_empty()
            && rendition.len() <= 32
            && rendition != hls::LIVE_RENDITION
            && rendition
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && !rendition.starts_with("stream=");
        if !valid {
            bail!("rendition name {rendition:?} is not usable in a live path");
        }
        self.publish_mount(session_id, Some(rendition), tracks, anchor_unix_us)
    }

    /// Marks a stream as published; an error if it already is.
    fn claim(&self, published_key: &str) -> anyhow::Result<()> {
        let mut published = lock(&self.published);
        if published.contains(published_key) {
            bail!("{published_key} is already published");
        }
        published.insert(published_key.to_string());
        Ok(())
    }

    /// The HLS side of a new stream, registered: the session's stream, or a
    /// variant of it for a rendition. `None` for tracks HLS cannot carry.
    fn hls_stream(
        &self,
        session_id: &str,
        rendition: Option<&str>,
        tracks: &[TrackInfo],
        anchor_unix_us: i64,
    ) -> Option<Arc<HlsStream>> {
        let vod_url = format!("/vod/{session_id}/{}", sharecast_transcoder::SOURCE_FILE);
        let stream = HlsStream::new(session_id, tracks, anchor_unix_us, self.cfg.hls(), vod_url)
            .map(Arc::new)?;
        let mut streams = lock(&self.shared.hls);
        match rendition {
            None => {
                streams.insert(session_id.to_string(), stream.clone());
            }
            Some(r) => {
                // A variant of the session's playlist, if it has one.
                if let Some(parent) = streams.get(session_id) {
                    parent.add_rendition(r, stream.clone());
                }
            }
        }
        Some(stream)
    }

    fn publish_mount(
        &self,
        session_id: &str,
        rendition: Option<&str>,
        tracks: &[TrackInfo],
        anchor_unix_us: i64,
    ) -> anyhow::Result<LivePublisher> {
        check_session_id(session_id)?;
        check_tracks(tracks).map_err(|e| anyhow!(e))?;
        let launch = publisher::launch_line(tracks)?;
        let (path, published_key) = match rendition {
            None => (mount_path(session_id), session_id.to_string()),
            Some(r) => (
                format!("{}/{r}", mount_path(session_id)),
                format!("{session_id}/{r}"),
            ),
        };
        self.claim(&published_key)?;
        let hls = self.hls_stream(session_id, rendition, tracks, anchor_unix_us);
        let stage = Stage {
            shared: self.shared.clone(),
            mounts: self.rtsp.mounts().clone(),
            published: Arc::downgrade(&self.published),
            max_gop_bytes: self.cfg.max_gop_bytes,
            max_queued_bytes: self.cfg.max_queued_bytes,
            capture_clock_sei: self.cfg.capture_clock_sei,
        };
        let stream = Stream {
            session_id: session_id.to_string(),
            path,
            published_key,
            tracks: tracks.to_vec(),
            anchor_unix_us,
            hls,
            position: match rendition {
                None => self.shared.tracker.register_content(session_id),
                Some(_) => Arc::default(),
            },
        };
        Ok(LivePublisher::mount(stage, stream, &launch))
    }

    /// How many RTSP clients are currently playing the session's stream.
    pub fn viewer_count(&self, session_id: &str) -> usize {
        self.rtsp.viewer_count(session_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_session_ids_and_codecs() {
        let relay = LiveRelay::start(LiveRelayConfig {
            bind: "127.0.0.1".into(),
            rtsp_port: 0,
            ..LiveRelayConfig::default()
        })
        .unwrap();
        assert_ne!(relay.rtsp_port(), 0);
        let vp8 = TrackInfo {
            id: 0,
            codec: "vp8".into(),
            codec_data: vec![],
            width: Some(320),
            height: Some(240),
            framerate: None,
            sample_rate: None,
            channels: None,
            rotation: 0,
        };
        assert!(relay.publish("../x", std::slice::from_ref(&vp8)).is_err());
        let err = relay.publish("s1", &[vp8]).unwrap_err();
        assert!(format!("{err:#}").contains("vp8"));
        assert_eq!(relay.viewer_count("s1"), 0);
    }
}
