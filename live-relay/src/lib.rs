//! Serves live streams to viewers: RTSP through gst-rtsp-server, and tracks
//! who is watching.
//!
//! While a phone uploads, ingest pushes each session's frames into a
//! [`LivePublisher`]; viewers open `rtsp://HOST:PORT/live/{session_id}` (RTP
//! over UDP or interleaved over the RTSP TCP connection, as the client asks).
//!
//! - One [`LiveRelay`] per process: an `RTSPServer` attached to a GLib main
//!   context that a dedicated thread runs.
//! - [`LiveRelay::publish`] mounts `/live/{session_id}` with a **shared** media
//!   factory: all viewers of a session share one media pipeline,
//!   `appsrc name=src{i} ! {h264,h265,aac,opus}parse ! rtp…pay name=pay{i}`
//!   per track. When a media is configured its appsrcs are registered with
//!   the publisher, which then feeds every current media.
//!
//! **Live timestamps.** Frames carry capture timestamps (microseconds on the
//! phone's clock). Each media has its own running time (its pipeline clock
//! minus its base time). When the publisher starts feeding a media it picks
//! one offset, `running time now − pts of the newest frame`, and adds it to
//! the PTS and DTS of every frame of every track it feeds that media; audio
//! and video therefore stay aligned exactly as captured, and the newest frame
//! goes out immediately. A media starts on a video keyframe: the publisher
//! keeps the current GOP (frames since the last keyframe, all tracks) and
//! replays it first, so a new viewer can decode at once; those older frames
//! are late by construction and are sent straight away. The offset is raised
//! if needed so that no timestamp is negative. A viewer who joins a media
//! that is already running (the media is shared) gets the stream from that
//! moment; the payloaders repeat SPS/PPS (VPS) with every keyframe, so its
//! decoder starts at the next keyframe.
//!
//! Dropping a publisher (or [`LivePublisher::end`]) sends EOS to its medias
//! and removes the mount.
//!
//! **HLS.** The same frames also feed an fMP4 segmenter per session
//! ([`hls`], [`sharecast_formats::mp4::fmp4`]); [`LiveRelay::http_routes`] hands the server the
//! handlers of the playlists and segments under `/live/{id}/` and of the
//! viewer heartbeats.
//!
//! **Viewers.** [`viewers::ViewerTracker`] follows every RTSP session and
//! HLS player; [`LiveRelay::viewer_events`] yields
//! [`ViewerEvent::Vanished`] once per viewer that disappeared.
//!
//! **Glass-to-glass.** With the capture anchor given to
//! [`LiveRelay::publish_at`], every H.264/H.265 access unit on the RTSP path
//! carries an SEI with its capture wall clock ([`sei`]), and HLS playlists
//! carry `#EXT-X-PROGRAM-DATE-TIME`.

pub mod hls;
mod http;
pub mod sei;
pub mod viewers;
pub mod vod;

pub use hls::{HlsConfig, LiveStart, LiveStartError};
pub use http::LiveRoutes;
pub use viewers::{Protocol, ViewerEnd, ViewerEvent, ViewerSnapshot, ViewerTracker};

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;

use anyhow::{anyhow, bail, Context};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use sharecast_formats::media::{Codec, FrameSink, MediaFrame, TrackInfo};
use sharecast_transcoder::caps::{caps_for_track, check_tracks, parser_for_track};

/// Settings of the live relay; every value has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRelayConfig {
    /// Address the RTSP server listens on (default "0.0.0.0").
    pub bind: String,
    /// RTSP port (default 8554; 0 picks a free port, see
    /// [`LiveRelay::rtsp_port`]).
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

/// Mount path of a session's live stream.
pub fn mount_path(session_id: &str) -> String {
    format!("/live/{session_id}")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who is playing what: (client, RTSP session id) → mount path.
type Viewers = Arc<Mutex<HashMap<(usize, String), String>>>;

/// Decides whether a playback token opens a stream: `(session_id, token)`.
pub type Authorizer = Arc<dyn Fn(&str, Option<&str>) -> bool + Send + Sync>;

/// State shared by the RTSP side, the HLS routes and the publishers.
pub(crate) struct Shared {
    pub(crate) hls: Mutex<HashMap<String, Arc<hls::HlsStream>>>,
    pub(crate) tracker: Arc<ViewerTracker>,
    pub(crate) rejected: Mutex<BTreeMap<&'static str, u64>>,
    pub(crate) authorizer: Mutex<Option<Authorizer>>,
    pub(crate) hls_segments_served: AtomicU64,
    pub(crate) frames: AtomicU64,
}

/// One live stream, for the admin API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LiveStreamSnapshot {
    /// Session id.
    pub session_id: String,
    /// `live` or `ended`.
    pub state: String,
    /// HLS segments made so far.
    pub hls_segments: u64,
    /// Viewers by protocol.
    pub viewers: BTreeMap<&'static str, usize>,
}

/// The RTSP server. Dropping it stops the server and disconnects viewers.
pub struct LiveRelay {
    cfg: LiveRelayConfig,
    server: rtsp::RTSPServer,
    mounts: rtsp::RTSPMountPoints,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    source: Option<glib::SourceId>,
    port: u16,
    viewers: Viewers,
    published: Arc<Mutex<std::collections::HashSet<String>>>,
    shared: Arc<Shared>,
    housekeeping: Option<glib::SourceId>,
}

impl std::fmt::Debug for LiveRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRelay")
            .field("bind", &self.cfg.bind)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// The mount path a request URI addresses ("/live/x" for
/// "rtsp://h:p/live/x/stream=0").
fn mount_of_uri(uri: &str) -> Option<String> {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let path = &rest[rest.find('/')?..];
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    match (parts.next(), parts.next()) {
        (Some("live"), Some(id)) => Some(mount_path(id)),
        _ => None,
    }
}

fn request_key(client: &rtsp::RTSPClient, ctx: &rtsp::RTSPContext) -> Option<(usize, String)> {
    let session = ctx.session()?.sessionid()?.to_string();
    Some((client.as_ptr() as usize, session))
}

/// Viewer id of an RTSP session.
fn rtsp_viewer_id(session: &str) -> String {
    format!("rtsp-{session}")
}

/// A query parameter of a request URI.
fn query_param(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        // Clients append the control path ("stream=0") to a base URL that
        // carried the query: "token=abc/stream=0".
        (k == name)
            .then(|| v.split('/').next().unwrap_or(v).to_string())
            .filter(|v| !v.is_empty() && v.len() <= 128)
    })
}

/// The `token` query parameter of a request URI (the playback token).
fn query_token(uri: &str) -> Option<String> {
    query_param(uri, "token")
}

/// Checks the playback token of every DESCRIBE, SETUP and PLAY against the
/// authorizer ([`LiveRelay::set_authorizer`]); a refused request gets
/// `401 Unauthorized` and is counted as `unauthorized`. Clients build SETUP
/// and PLAY URLs from the content base, which drops the query, so a mount
/// whose token was accepted on a connection stays open on that connection.
fn guard_requests(server: &rtsp::RTSPServer, shared: &Arc<Shared>) {
    let shared = shared.clone();
    server.connect_client_connected(move |_, client| {
        // Mounts this connection presented a valid token for.
        let opened: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let check = |shared: Arc<Shared>, opened: Arc<Mutex<std::collections::HashSet<String>>>| {
            move |_: &rtsp::RTSPClient, ctx: &rtsp::RTSPContext| -> rtsp::gst_rtsp::RTSPStatusCode {
                let Some(auth) = lock(&shared.authorizer).clone() else {
                    return rtsp::gst_rtsp::RTSPStatusCode::Ok;
                };
                let uri = ctx.uri().map(|u| u.request_uri().to_string()).unwrap_or_default();
                // Unknown mounts are answered 404 by the server itself.
                let Some(mount) = mount_of_uri(&uri) else {
                    return rtsp::gst_rtsp::RTSPStatusCode::Ok;
                };
                let id = mount.trim_start_matches("/live/");
                let token = query_token(&uri);
                if token.is_none() && lock(&opened).contains(&mount) {
                    return rtsp::gst_rtsp::RTSPStatusCode::Ok;
                }
                if auth(id, token.as_deref()) {
                    lock(&opened).insert(mount);
                    rtsp::gst_rtsp::RTSPStatusCode::Ok
                } else {
                    shared.reject("unauthorized");
                    tracing::info!(mount = %mount, "RTSP request without a valid playback token refused");
                    rtsp::gst_rtsp::RTSPStatusCode::Unauthorized
                }
            }
        };
        client.connect_pre_describe_request(check(shared.clone(), opened.clone()));
        client.connect_pre_setup_request(check(shared.clone(), opened.clone()));
        client.connect_pre_play_request(check(shared.clone(), opened));
    });
}

/// Who a viewer says it is and what opened the stream to it: the `user`
/// and `token` query parameters, by mount.
type ViewerIds = Arc<Mutex<HashMap<String, (Option<String>, Option<String>)>>>;

/// Remembers the `user` and `token` query parameters of DESCRIBE and SETUP
/// requests, by mount.
fn remember_viewer_users(client: &rtsp::RTSPClient, users: &ViewerIds) {
    let remember = |users: ViewerIds| {
        move |_: &rtsp::RTSPClient, ctx: &rtsp::RTSPContext| {
            let uri = ctx
                .uri()
                .map(|u| u.request_uri().to_string())
                .unwrap_or_default();
            if let Some(mount) = mount_of_uri(&uri) {
                let mut users = lock(&users);
                let entry = users.entry(mount).or_default();
                if let Some(user) = query_param(&uri, "user") {
                    entry.0 = Some(user);
                }
                if let Some(token) = query_token(&uri) {
                    entry.1 = Some(token);
                }
            }
        }
    };
    client.connect_describe_request(remember(users.clone()));
    client.connect_setup_request(remember(users.clone()));
}

fn track_viewers(
    server: &rtsp::RTSPServer,
    viewers: &Viewers,
    tracker: &Arc<ViewerTracker>,
    context: &glib::MainContext,
    timeout_secs: u32,
) {
    let viewers = viewers.clone();
    let tracker = tracker.clone();
    let context = context.clone();
    server.connect_client_connected(move |_, client| {
        client.connect_new_session(move |_, session| {
            session.set_timeout(timeout_secs);
        });
        // Who the viewer says it is (`?user=` on the URL it DESCRIBEd or SET
        // UP: its user token), by mount, for this connection: the PLAY URL
        // is built from the content base, without the query.
        let users: ViewerIds = Arc::default();
        remember_viewer_users(client, &users);
        let (v, t, ctx) = (viewers.clone(), tracker.clone(), context.clone());
        client.connect_play_request(move |client, rctx| {
            let mount = rctx.uri().and_then(|u| mount_of_uri(&u.request_uri()));
            if let (Some(key), Some(mount)) = (request_key(client, rctx), mount) {
                tracing::info!(mount = %mount, session = %key.1, "viewer playing");
                let content = mount.trim_start_matches("/live/").to_string();
                let remote = None;
                let (user, token) = lock(&users).get(&mount).cloned().unwrap_or_default();
                let weak = client.downgrade();
                let ctx = ctx.clone();
                let closer: viewers::Closer = Box::new(move || {
                    let weak = weak.clone();
                    ctx.invoke(move || {
                        if let Some(c) = weak.upgrade() {
                            c.close();
                        }
                    });
                });
                t.rtsp_started(
                    &rtsp_viewer_id(&key.1),
                    &content,
                    remote,
                    user,
                    token,
                    Some(closer),
                );
                lock(&v).insert(key, mount);
            }
        });
        let v = viewers.clone();
        client.connect_pause_request(move |client, ctx| {
            if let Some(key) = request_key(client, ctx) {
                lock(&v).remove(&key);
            }
        });
        let (v, t) = (viewers.clone(), tracker.clone());
        client.connect_teardown_request(move |client, ctx| {
            if let Some(key) = request_key(client, ctx) {
                t.end(&rtsp_viewer_id(&key.1), viewers::Ending::Left);
                if let Some(mount) = lock(&v).remove(&key) {
                    tracing::info!(mount = %mount, session = %key.1, "viewer left");
                }
            }
        });
        let (v, t) = (viewers.clone(), tracker.clone());
        client.connect_closed(move |client| {
            let id = client.as_ptr() as usize;
            let mut gone = Vec::new();
            lock(&v).retain(|(c, s), _| {
                if *c == id {
                    gone.push(s.clone());
                }
                *c != id
            });
            // Closed without TEARDOWN: the viewer vanished.
            for s in gone {
                t.end(&rtsp_viewer_id(&s), viewers::Ending::Vanished);
            }
        });
    });
}

impl LiveRelay {
    /// Starts the RTSP server on its own thread.
    pub fn start(cfg: LiveRelayConfig) -> anyhow::Result<LiveRelay> {
        gst::init().context("initialising GStreamer")?;
        let server = rtsp::RTSPServer::new();
        server.set_address(&cfg.bind);
        server.set_service(&cfg.rtsp_port.to_string());
        let mounts = server
            .mount_points()
            .ok_or_else(|| anyhow!("RTSP server without mount points"))?;
        let viewers: Viewers = Arc::default();
        let tracker = Arc::new(ViewerTracker::new(
            std::time::Duration::from_secs(cfg.viewer_timeout_secs.max(1)),
            cfg.recent_viewer_events,
        ));
        let shared = Arc::new(Shared {
            hls: Mutex::default(),
            tracker: tracker.clone(),
            rejected: Mutex::default(),
            authorizer: Mutex::default(),
            hls_segments_served: AtomicU64::new(0),
            frames: AtomicU64::new(0),
        });

        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let timeout_secs = u32::try_from(cfg.rtsp_session_timeout_secs.max(1)).unwrap_or(u32::MAX);
        track_viewers(&server, &viewers, &tracker, &context, timeout_secs);
        guard_requests(&server, &shared);
        // Sessions that time out (UDP viewers that vanished) are vanished
        // viewers too.
        let pool = server
            .session_pool()
            .ok_or_else(|| anyhow!("RTSP server without a session pool"))?;
        {
            let (v, t) = (viewers.clone(), tracker.clone());
            pool.connect_session_removed(move |_, session| {
                if let Some(id) = session.sessionid() {
                    lock(&v).retain(|(_, s), _| s.as_str() != id.as_str());
                    t.end(&rtsp_viewer_id(&id), viewers::Ending::Vanished);
                }
            });
        }
        // Housekeeping twice a second: expire RTSP sessions, reap heartbeat
        // viewers, drop ended HLS streams past their keep time.
        let housekeeping = {
            let shared = shared.clone();
            let source = glib::timeout_source_new(
                std::time::Duration::from_millis(500),
                Some("live-housekeeping"),
                glib::Priority::DEFAULT,
                move || {
                    pool.cleanup();
                    shared.tracker.reap();
                    let mut expired = Vec::new();
                    lock(&shared.hls).retain(|id, s| {
                        let keep = !s.expired();
                        if !keep {
                            expired.push(id.clone());
                        }
                        keep
                    });
                    for id in expired {
                        shared.tracker.unregister_content(&id);
                    }
                    glib::ControlFlow::Continue
                },
            );
            source.attach(Some(&context))
        };
        let source = server
            .attach(Some(&context))
            .with_context(|| format!("listening for RTSP on {}:{}", cfg.bind, cfg.rtsp_port))?;
        let port = u16::try_from(server.bound_port())
            .map_err(|_| anyhow!("RTSP server is not bound to a port"))?;
        let thread = {
            let main_loop = main_loop.clone();
            let context = context.clone();
            std::thread::Builder::new()
                .name("rtsp-server".into())
                .spawn(move || {
                    let result = context.with_thread_default(|| main_loop.run());
                    if result.is_err() {
                        tracing::error!("RTSP main context is owned by another thread");
                    }
                })
                .context("spawning the RTSP server thread")?
        };
        tracing::info!(bind = %cfg.bind, port, "RTSP server listening");
        Ok(LiveRelay {
            cfg,
            server,
            mounts,
            context,
            main_loop,
            thread: Some(thread),
            source: Some(source),
            port,
            viewers,
            published: Arc::default(),
            shared,
            housekeeping: Some(housekeeping),
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

    /// The viewer tracker.
    pub fn tracker(&self) -> Arc<ViewerTracker> {
        self.shared.tracker.clone()
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

    /// Sets the playback-token check for HLS and heartbeats (default: open).
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

    /// Mounts a recording as seekable RTSP VOD ([`vod`]); returns its path.
    pub fn mount_vod(
        &self,
        id: &str,
        file: &std::path::Path,
        codecs: &[String],
    ) -> anyhow::Result<String> {
        vod::mount(&self.mounts, id, file, codecs)
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

    /// Prometheus text for the relay.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let (published, renditions) = {
            let p = lock(&self.published);
            let renditions = p.iter().filter(|k| k.contains('/')).count();
            (p.len() - renditions, renditions)
        };
        let segments: u64 = lock(&self.shared.hls)
            .values()
            .map(|s| s.segments_made.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(out, "# HELP sharecast_live_streams Live streams being published\n# TYPE sharecast_live_streams gauge\nsharecast_live_streams {published}");
        let _ = writeln!(out, "# HELP sharecast_live_rendition_streams Live streams of extra renditions being published\n# TYPE sharecast_live_rendition_streams gauge\nsharecast_live_rendition_streams {renditions}");
        let _ = writeln!(out, "# HELP sharecast_live_frames_total Frames fed to live streams\n# TYPE sharecast_live_frames_total counter\nsharecast_live_frames_total {}", self.shared.frames.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP sharecast_live_hls_segments Live HLS segments made by the streams currently held\n# TYPE sharecast_live_hls_segments gauge\nsharecast_live_hls_segments {segments}");
        let _ = writeln!(out, "# HELP sharecast_live_hls_segments_served_total HLS segments served\n# TYPE sharecast_live_hls_segments_served_total counter\nsharecast_live_hls_segments_served_total {}", self.shared.hls_segments_served.load(Ordering::Relaxed));
        self.shared.tracker.render_metrics(out);
        http::render_rejected(&lock(&self.shared.rejected), out);
    }

    /// The port the server is bound to (the real one when configured with 0).
    pub fn rtsp_port(&self) -> u16 {
        self.port
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

    fn publish_mount(
        &self,
        session_id: &str,
        rendition: Option<&str>,
        tracks: &[TrackInfo],
        anchor_unix_us: i64,
    ) -> anyhow::Result<LivePublisher> {
        if session_id.is_empty()
            || !session_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!("session id {session_id:?} is not usable in an RTSP path");
        }
        check_tracks(tracks).map_err(|e| anyhow!(e))?;
        let mut launch = String::from("(");
        for (i, t) in tracks.iter().enumerate() {
            let (pay, extra) = match t.codec() {
                Some(Codec::H264) => ("rtph264pay", " config-interval=-1"),
                Some(Codec::H265) => ("rtph265pay", " config-interval=-1"),
                Some(Codec::Aac) => ("rtpmp4gpay", ""),
                Some(Codec::Opus) => ("rtpopuspay", ""),
                None => bail!("track {}: unsupported codec {:?}", t.id, t.codec),
            };
            let parser = parser_for_track(t)?;
            // Caps are checked here, set on the appsrc when a media is made.
            caps_for_track(t)?;
            launch.push_str(&format!(
                " appsrc name=src{i} ! {parser} ! {pay} name=pay{i} pt={}{extra}",
                96 + i
            ));
        }
        launch.push_str(" )");

        let (path, published_key) = match rendition {
            None => (mount_path(session_id), session_id.to_string()),
            Some(r) => (
                format!("{}/{r}", mount_path(session_id)),
                format!("{session_id}/{r}"),
            ),
        };
        {
            let mut published = lock(&self.published);
            if published.contains(&published_key) {
                bail!("{published_key} is already published");
            }
            published.insert(published_key.clone());
        }
        let hls = hls::HlsStream::new(
            session_id,
            tracks,
            anchor_unix_us,
            self.cfg.hls.clone(),
            format!("/vod/{session_id}/{}", sharecast_transcoder::SOURCE_FILE),
        )
        .map(Arc::new);
        if let Some(h) = &hls {
            match rendition {
                None => {
                    lock(&self.shared.hls).insert(session_id.to_string(), h.clone());
                }
                Some(r) => {
                    // A variant of the session's playlist, if it has one.
                    if let Some(parent) = lock(&self.shared.hls).get(session_id) {
                        parent.add_rendition(r, h.clone());
                    }
                }
            }
        }
        let sei = if self.cfg.capture_clock_sei {
            tracks.iter().find_map(|t| match t.codec() {
                Some(Codec::H264) => Some((
                    t.id,
                    sei::NalSyntax::H264,
                    sei::length_size(sei::NalSyntax::H264, &t.codec_data),
                )),
                Some(Codec::H265) => Some((
                    t.id,
                    sei::NalSyntax::H265,
                    sei::length_size(sei::NalSyntax::H265, &t.codec_data),
                )),
                _ => None,
            })
        } else {
            None
        };
        let inner = Arc::new(PublisherInner {
            hls,
            sei,
            anchor_unix_us,
            position: match rendition {
                None => self.shared.tracker.register_content(session_id),
                Some(_) => Arc::default(),
            },
            published_key,
            shared: self.shared.clone(),
            session_id: session_id.to_string(),
            path: path.clone(),
            tracks: tracks.to_vec(),
            has_video: tracks
                .iter()
                .any(|t| t.codec().is_some_and(|c| c.is_video())),
            max_gop_bytes: self.cfg.max_gop_bytes,
            max_queued_bytes: self.cfg.max_queued_bytes,
            state: Mutex::new(PublisherState::default()),
            ended: AtomicBool::new(false),
            mounts: self.mounts.clone(),
            published: Arc::downgrade(&self.published),
        });

        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&launch);
        factory.set_shared(true);
        let weak = Arc::downgrade(&inner);
        factory.connect_media_configure(move |_, media| {
            if let Some(inner) = weak.upgrade() {
                if let Err(e) = inner.configure(media, &Arc::downgrade(&inner)) {
                    tracing::error!(session = %inner.session_id, "cannot configure live media: {e:#}");
                }
            }
        });
        self.mounts.add_factory(&path, factory);
        tracing::info!(session = %session_id, mount = %path, launch = %launch, "live stream mounted");
        Ok(LivePublisher { inner })
    }

    /// How many RTSP clients are currently playing the session's stream.
    pub fn viewer_count(&self, session_id: &str) -> usize {
        let mount = mount_path(session_id);
        lock(&self.viewers)
            .values()
            .filter(|m| **m == mount)
            .count()
    }
}

impl Drop for LiveRelay {
    fn drop(&mut self) {
        // Disconnect everyone, stop listening, stop the thread.
        self.server
            .client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
        for id in [self.source.take(), self.housekeeping.take()]
            .into_iter()
            .flatten()
        {
            if let Some(source) = self.context.find_source_by_id(&id) {
                source.destroy();
            }
        }
        // Quit from inside the loop: a quit() issued before the thread has
        // entered run() would be lost.
        let main_loop = self.main_loop.clone();
        glib::idle_source_new(Some("rtsp-quit"), glib::Priority::DEFAULT, move || {
            main_loop.quit();
            glib::ControlFlow::Break
        })
        .attach(Some(&self.context));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Frames kept to start new viewers, and the medias being fed.
#[derive(Default)]
struct PublisherState {
    /// Frames since the last video keyframe (all tracks), in arrival order.
    gop: Vec<MediaFrame>,
    gop_bytes: usize,
    /// Whether `gop` starts with a keyframe (false after an overflow).
    gop_valid: bool,
    feeds: Vec<Feed>,
}

/// One media (one viewer pipeline shared by all viewers of the session).
struct Feed {
    media: glib::WeakRef<rtsp::RTSPMedia>,
    srcs: HashMap<u8, gst_app::AppSrc>,
    /// Nanoseconds added to frame timestamps, once started.
    offset_ns: Option<i64>,
}

struct PublisherInner {
    hls: Option<Arc<hls::HlsStream>>,
    /// Video track, syntax and NAL length size for the capture-clock SEI.
    sei: Option<(u8, sei::NalSyntax, usize)>,
    anchor_unix_us: i64,
    /// Newest capture position, ms.
    position: Arc<AtomicI64>,
    shared: Arc<Shared>,
    session_id: String,
    path: String,
    tracks: Vec<TrackInfo>,
    has_video: bool,
    max_gop_bytes: usize,
    max_queued_bytes: u64,
    state: Mutex<PublisherState>,
    ended: AtomicBool,
    mounts: rtsp::RTSPMountPoints,
    published: Weak<Mutex<std::collections::HashSet<String>>>,
    /// Key in `published`: the session id, or `{session id}/{rendition}`.
    published_key: String,
}

fn is_video_keyframe(inner: &PublisherInner, frame: &MediaFrame) -> bool {
    frame.keyframe
        && inner
            .tracks
            .iter()
            .any(|t| t.id == frame.track && t.codec().is_some_and(|c| c.is_video()))
}

impl PublisherInner {
    /// Called when gst-rtsp-server has built a media for the mount.
    fn configure(
        &self,
        media: &rtsp::RTSPMedia,
        weak: &Weak<PublisherInner>,
    ) -> anyhow::Result<()> {
        let bin = media
            .element()
            .downcast::<gst::Bin>()
            .map_err(|_| anyhow!("media element is not a bin"))?;
        // The media's running time is the system clock itself: base time 0,
        // never moved. gst-rtsp-server prepares a live media (PLAYING until
        // every stream has caps), pauses it, and plays it on the client's
        // PLAY; a pipeline normally stops its running time while paused, so
        // every frame timed before the pause would go out that much later.
        // And a fresh running time near 0 would leave no room below "now"
        // for the replayed GOP, whose timestamps would then have to be
        // raised by up to a GOP (a delay of that much for the whole stream).
        if let Some(pipeline) = bin
            .parent()
            .and_then(|p| p.downcast::<gst::Pipeline>().ok())
        {
            pipeline.use_clock(Some(&gst::SystemClock::obtain()));
            pipeline.set_start_time(gst::ClockTime::NONE);
            pipeline.set_base_time(gst::ClockTime::ZERO);
        }
        let mut srcs = HashMap::new();
        for (i, t) in self.tracks.iter().enumerate() {
            let appsrc = bin
                .by_name(&format!("src{i}"))
                .ok_or_else(|| anyhow!("no src{i} in the media"))?
                .downcast::<gst_app::AppSrc>()
                .map_err(|_| anyhow!("src{i} is not an appsrc"))?;
            appsrc.set_caps(Some(&caps_for_track(t)?));
            appsrc.set_format(gst::Format::Time);
            appsrc.set_is_live(true);
            appsrc.set_do_timestamp(false);
            appsrc.set_block(false);
            appsrc.set_max_bytes(self.max_queued_bytes);
            appsrc.set_leaky_type(gst_app::AppLeakyType::Downstream);
            srcs.insert(t.id, appsrc);
        }
        let weak = weak.clone();
        media.connect_unprepared(move |media| {
            if let Some(inner) = weak.upgrade() {
                lock(&inner.state)
                    .feeds
                    .retain(|f| f.media.upgrade().is_some_and(|m| m != *media));
                tracing::debug!(session = %inner.session_id, "live media unprepared");
            }
        });
        let mut state = lock(&self.state);
        if self.ended.load(Ordering::SeqCst) {
            for src in srcs.values() {
                let _ = src.end_of_stream();
            }
            return Ok(());
        }
        state.feeds.push(Feed {
            media: media.downgrade(),
            srcs,
            offset_ns: None,
        });
        tracing::info!(session = %self.session_id, "live media configured");
        Ok(())
    }

    fn push(&self, frame: &MediaFrame) {
        if self.ended.load(Ordering::SeqCst) {
            return;
        }
        if !self.tracks.iter().any(|t| t.id == frame.track) {
            tracing::warn!(session = %self.session_id, track = frame.track, "live frame for unknown track");
            return;
        }
        self.shared.frames.fetch_add(1, Ordering::Relaxed);
        self.position
            .fetch_max(frame.pts_us / 1000, Ordering::Relaxed);
        if let Some(h) = &self.hls {
            h.push(frame);
        }
        let with_clock;
        let frame = match self.sei {
            Some((track, syntax, len)) if track == frame.track => {
                match sei::insert_capture_clock(
                    syntax,
                    len,
                    &frame.data,
                    self.anchor_unix_us.saturating_add(frame.pts_us),
                ) {
                    Some(data) => {
                        with_clock = MediaFrame {
                            data,
                            ..frame.clone()
                        };
                        &with_clock
                    }
                    None => frame,
                }
            }
            _ => frame,
        };
        let mut state = lock(&self.state);
        let state = &mut *state;
        // Keep the current GOP for viewers that join later.
        if self.has_video {
            if is_video_keyframe(self, frame) {
                state.gop.clear();
                state.gop_bytes = 0;
                state.gop_valid = true;
            }
            if state.gop_valid {
                state.gop_bytes += frame.data.len();
                if state.gop_bytes > self.max_gop_bytes {
                    state.gop.clear();
                    state.gop_bytes = 0;
                    state.gop_valid = false;
                } else {
                    state.gop.push(frame.clone());
                }
            }
        }
        let gop = &state.gop;
        let gop_valid = state.gop_valid;
        state.feeds.retain_mut(|feed| {
            let Some(offset) = feed.offset_ns else {
                return self.start_feed(feed, frame, gop, gop_valid);
            };
            self.feed_frame(feed, frame, offset)
        });
    }

    /// Starts feeding a media once its pipeline runs: replays the GOP (or
    /// starts with this frame) with one offset for all tracks. Returns whether
    /// the media is still alive.
    fn start_feed(
        &self,
        feed: &mut Feed,
        frame: &MediaFrame,
        gop: &[MediaFrame],
        gop_valid: bool,
    ) -> bool {
        let Some(first) = feed.srcs.values().next() else {
            return false;
        };
        let Some(now) = playing_running_time(first) else {
            // Not playing yet; frames are kept in the GOP meanwhile.
            return feed.media.upgrade().is_some();
        };
        let frames: &[MediaFrame] = if self.has_video {
            if !gop_valid || gop.is_empty() {
                return true; // wait for a keyframe
            }
            gop
        } else {
            std::slice::from_ref(frame)
        };
        let now_ns = i64::try_from(now.nseconds()).unwrap_or(i64::MAX);
        let min_ts_ns = frames
            .iter()
            .map(|f| f.pts_us.min(f.dts_us).saturating_mul(1000))
            .min()
            .unwrap_or(0);
        // The newest capture time known now, over every track: a track that
        // arrives later than its capture time (audio behind its encoder's
        // look-ahead) must not hold the others back, so the offset follows
        // the earliest-arriving track and late frames go out on arrival.
        let newest_us = frames
            .iter()
            .map(|f| f.pts_us)
            .chain(std::iter::once(frame.pts_us))
            .max()
            .unwrap_or(frame.pts_us);
        let offset = now_ns
            .saturating_sub(newest_us.saturating_mul(1000))
            .max(min_ts_ns.saturating_neg());
        feed.offset_ns = Some(offset);
        tracing::info!(
            session = %self.session_id,
            replayed = frames.len(),
            offset_ns = offset,
            "live media starts"
        );
        frames.iter().all(|f| self.feed_frame(feed, f, offset))
    }

    /// Pushes one frame into a media; false when the media has stopped.
    fn feed_frame(&self, feed: &Feed, frame: &MediaFrame, offset_ns: i64) -> bool {
        let Some(src) = feed.srcs.get(&frame.track) else {
            return true;
        };
        let to_clock = |us: i64| {
            u64::try_from(us.saturating_mul(1000).saturating_add(offset_ns))
                .ok()
                .map(gst::ClockTime::from_nseconds)
        };
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(to_clock(frame.pts_us));
            b.set_dts(to_clock(frame.dts_us));
            if frame.duration_us > 0 {
                b.set_duration(gst::ClockTime::from_useconds(u64::from(frame.duration_us)));
            }
            if !frame.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        match src.push_buffer(buffer) {
            Ok(_) => true,
            Err(flow) => {
                tracing::debug!(session = %self.session_id, ?flow, "live media stopped accepting frames");
                false
            }
        }
    }

    fn end(&self) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        self.mounts.remove_factory(&self.path);
        let mut state = lock(&self.state);
        for feed in state.feeds.drain(..) {
            for src in feed.srcs.values() {
                let _ = src.end_of_stream();
            }
        }
        state.gop.clear();
        if let Some(h) = &self.hls {
            h.end();
        }
        if let Some(published) = self.published.upgrade() {
            lock(&published).remove(&self.published_key);
        }
        tracing::info!(session = %self.session_id, mount = %self.path, "live stream ended");
    }
}

/// The running time of an element of a playing pipeline; `None` before it
/// plays. Only a playing element has its base time: while its pipeline goes
/// to PLAYING it may already have a clock but still a base time of 0, and
/// "running time" would then be the clock's whole uptime, which would
/// schedule every frame hours ahead (a viewer that never gets a picture).
fn playing_running_time(element: &impl IsA<gst::Element>) -> Option<gst::ClockTime> {
    // The top-level pipeline's base time, which a playing element has too.
    let mut top: gst::Element = element.clone().upcast();
    while let Some(parent) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
        top = parent;
    }
    let playing = element.current_state() == gst::State::Playing
        && element.clock().is_some()
        && element.base_time() == top.base_time();
    element.current_running_time().filter(|_| playing)
}

/// Feeds one session's frames to its live viewers. Dropping it ends the
/// stream.
pub struct LivePublisher {
    inner: Arc<PublisherInner>,
}

impl std::fmt::Debug for LivePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePublisher")
            .field("session_id", &self.inner.session_id)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl LivePublisher {
    /// The mount path, `/live/{session_id}`.
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// Forwards a frame to every current viewer pipeline. Never blocks on
    /// the network: a viewer pipeline that falls behind drops its oldest
    /// queued frames.
    pub fn push(&self, frame: &MediaFrame) {
        self.inner.push(frame);
    }

    /// Ends the stream: EOS to the viewers, mount removed.
    pub fn end(self) {
        self.inner.end();
    }
}

impl FrameSink for LivePublisher {
    fn push(&self, frame: &MediaFrame) {
        self.inner.push(frame);
    }
}

impl Drop for LivePublisher {
    fn drop(&mut self) {
        self.inner.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window in which a media's element has a clock but not yet its
    /// pipeline's base time (the pipeline is on its way to PLAYING) gives no
    /// running time, so a feed never starts hours ahead of the clock.
    #[test]
    fn running_time_needs_a_playing_element_with_its_base_time() {
        gst::init().unwrap();
        let pipeline = gst::parse::launch("appsrc name=src is-live=true ! fakesink sync=false")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let src = pipeline.by_name("src").unwrap();
        assert_eq!(playing_running_time(&src), None);
        // A clock, but not yet the base time its pipeline chose: the raw
        // running time is the clock's uptime.
        pipeline.set_base_time(gst::ClockTime::from_seconds(1));
        src.set_clock(Some(&gst::SystemClock::obtain())).unwrap();
        assert!(src.current_running_time().is_some());
        assert_eq!(playing_running_time(&src), None);
        src.set_clock(gst::Clock::NONE).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while src.current_state() != gst::State::Playing && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let now = playing_running_time(&src).expect("running time once playing");
        assert!(now < gst::ClockTime::from_seconds(10), "running time {now}");
        pipeline.set_state(gst::State::Null).unwrap();
    }

    #[test]
    fn tokens_of_request_uris() {
        let q = |u: &str| query_token(u);
        assert_eq!(q("rtsp://h/live/a?token=abc").as_deref(), Some("abc"));
        assert_eq!(q("rtsp://h/live/a?x=1&token=abc").as_deref(), Some("abc"));
        assert_eq!(
            q("rtsp://h/live/a?token=abc/stream=0").as_deref(),
            Some("abc")
        );
        assert_eq!(q("rtsp://h/live/a"), None);
        assert_eq!(q("rtsp://h/live/a?tok=abc"), None);
        assert_eq!(q("rtsp://h/live/a?token="), None);
        assert_eq!(
            query_param("rtsp://h/live/a?token=t&user=su_x/stream=1", "user").as_deref(),
            Some("su_x")
        );
        assert_eq!(
            mount_of_uri("rtsp://h/live/a?token=abc/stream=0").as_deref(),
            Some("/live/a")
        );
    }

    #[test]
    fn mount_of_request_uris() {
        assert_eq!(
            mount_of_uri("rtsp://127.0.0.1:8554/live/abc/").as_deref(),
            Some("/live/abc")
        );
        assert_eq!(
            mount_of_uri("rtsp://h/live/abc/stream=1").as_deref(),
            Some("/live/abc")
        );
        assert_eq!(mount_of_uri("rtsp://h/other/abc"), None);
        assert_eq!(mount_of_uri("rtsp://h"), None);
    }

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
