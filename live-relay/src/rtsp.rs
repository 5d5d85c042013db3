//! The RTSP server (gst-rtsp-server): its mounts, the playback-token guard
//! on every DESCRIBE, SETUP and PLAY, and the hooks that tell the viewer
//! tracker who plays, pauses, leaves or vanishes.
//!
//! One [`RtspServer`] per process: an `RTSPServer` attached to a GLib main
//! context that a dedicated thread runs. Viewers open
//! `rtsp://HOST:PORT/live/{session_id}` (RTP over UDP or interleaved over
//! the RTSP TCP connection, as the client asks); the mounts themselves are
//! made by the publishers ([`crate::publisher`]) and by [`crate::vod`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use rtsp::gst_rtsp::RTSPStatusCode;

use crate::relay::Shared;
use crate::viewers::{self, ViewerTracker};
use crate::{lock, LiveRelayConfig};

/// Mount path of a session's live stream.
pub(crate) fn mount_path(session_id: &str) -> String {
    format!("/live/{session_id}")
}

/// Who is playing what: (client, RTSP session id) → mount path.
type Viewers = Arc<Mutex<HashMap<(usize, String), String>>>;

/// The RTSP server and the thread that runs its main context. Dropping it
/// disconnects every viewer and stops the thread.
pub(crate) struct RtspServer {
    server: rtsp::RTSPServer,
    mounts: rtsp::RTSPMountPoints,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    source: Option<glib::SourceId>,
    housekeeping: Option<glib::SourceId>,
    port: u16,
    viewers: Viewers,
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

/// The URI of the request being handled ("" without one).
fn request_uri(ctx: &rtsp::RTSPContext) -> String {
    ctx.uri()
        .map(|u| u.request_uri().to_string())
        .unwrap_or_default()
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

/// Mounts a connection presented a valid playback token for.
type Opened = Arc<Mutex<HashSet<String>>>;

/// The answer to one request of a connection: `Ok` without an authorizer,
/// for a mount that is not a live stream (the server answers 404 itself),
/// for a mount this connection already opened with a valid token, or with a
/// valid token; `Unauthorized` (counted) otherwise.
fn check_token(shared: &Shared, opened: &Opened, ctx: &rtsp::RTSPContext) -> RTSPStatusCode {
    let Some(auth) = lock(&shared.authorizer).clone() else {
        return RTSPStatusCode::Ok;
    };
    let uri = request_uri(ctx);
    let Some(mount) = mount_of_uri(&uri) else {
        return RTSPStatusCode::Ok;
    };
    let id = mount.trim_start_matches("/live/");
    let token = query_token(&uri);
    if token.is_none() && lock(opened).contains(&mount) {
        return RTSPStatusCode::Ok;
    }
    if auth(id, token.as_deref()) {
        lock(opened).insert(mount);
        RTSPStatusCode::Ok
    } else {
        shared.reject("unauthorized");
        tracing::info!(mount = %mount, "RTSP request without a valid playback token refused");
        RTSPStatusCode::Unauthorized
    }
}

/// Checks the playback token of every DESCRIBE, SETUP and PLAY against the
/// authorizer (`LiveRelay::set_authorizer`); a refused request gets
/// `401 Unauthorized` and is counted as `unauthorized`. Clients build SETUP
/// and PLAY URLs from the content base, which drops the query, so a mount
/// whose token was accepted on a connection stays open on that connection.
fn guard_requests(server: &rtsp::RTSPServer, shared: &Arc<Shared>) {
    let shared = shared.clone();
    server.connect_client_connected(move |_, client| {
        let opened = Opened::default();
        let check = |shared: Arc<Shared>, opened: Opened| {
            move |_: &rtsp::RTSPClient, ctx: &rtsp::RTSPContext| check_token(&shared, &opened, ctx)
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
            let uri = request_uri(ctx);
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

/// What the viewer-tracking hooks of one connection share.
#[derive(Clone)]
struct Hooks {
    viewers: Viewers,
    tracker: Arc<ViewerTracker>,
    context: glib::MainContext,
}

impl Hooks {
    /// PLAY: the viewer starts, with the user and token it presented, and a
    /// closer that lets an admin kick it.
    fn play(&self, client: &rtsp::RTSPClient, rctx: &rtsp::RTSPContext, users: &ViewerIds) {
        let mount = rctx.uri().and_then(|u| mount_of_uri(&u.request_uri()));
        let (Some(key), Some(mount)) = (request_key(client, rctx), mount) else {
            return;
        };
        tracing::info!(mount = %mount, session = %key.1, "viewer playing");
        let content = mount.trim_start_matches("/live/").to_string();
        let (user, token) = lock(users).get(&mount).cloned().unwrap_or_default();
        let weak = client.downgrade();
        let ctx = self.context.clone();
        let closer: viewers::Closer = Box::new(move || {
            let weak = weak.clone();
            ctx.invoke(move || {
                if let Some(c) = weak.upgrade() {
                    c.close();
                }
            });
        });
        let id = rtsp_viewer_id(&key.1);
        self.tracker
            .rtsp_started(&id, &content, None, user, token, Some(closer));
        lock(&self.viewers).insert(key, mount);
    }

    /// TEARDOWN: the viewer left normally.
    fn teardown(&self, client: &rtsp::RTSPClient, ctx: &rtsp::RTSPContext) {
        if let Some(key) = request_key(client, ctx) {
            self.tracker
                .end(&rtsp_viewer_id(&key.1), viewers::Ending::Left);
            if let Some(mount) = lock(&self.viewers).remove(&key) {
                tracing::info!(mount = %mount, session = %key.1, "viewer left");
            }
        }
    }

    /// The connection closed: its sessions without TEARDOWN vanished.
    fn closed(&self, client: &rtsp::RTSPClient) {
        let id = client.as_ptr() as usize;
        let mut gone = Vec::new();
        lock(&self.viewers).retain(|(c, s), _| {
            if *c == id {
                gone.push(s.clone());
            }
            *c != id
        });
        for s in gone {
            self.tracker
                .end(&rtsp_viewer_id(&s), viewers::Ending::Vanished);
        }
    }
}

/// Follows every RTSP viewer: sessions time out after `timeout_secs`,
/// PLAY starts a viewer, PAUSE stops counting it, TEARDOWN ends it, and a
/// connection closed without TEARDOWN makes its viewers vanish.
fn track_viewers(server: &rtsp::RTSPServer, hooks: Hooks, timeout_secs: u32) {
    server.connect_client_connected(move |_, client| {
        client.connect_new_session(move |_, session| {
            session.set_timeout(timeout_secs);
        });
        // Who the viewer says it is (`?user=` on the URL it DESCRIBEd or SET
        // UP: its user token), by mount, for this connection: the PLAY URL
        // is built from the content base, without the query.
        let users: ViewerIds = Arc::default();
        remember_viewer_users(client, &users);
        let h = hooks.clone();
        client.connect_play_request(move |client, ctx| h.play(client, ctx, &users));
        let v = hooks.viewers.clone();
        client.connect_pause_request(move |client, ctx| {
            if let Some(key) = request_key(client, ctx) {
                lock(&v).remove(&key);
            }
        });
        let h = hooks.clone();
        client.connect_teardown_request(move |client, ctx| h.teardown(client, ctx));
        let h = hooks.clone();
        client.connect_closed(move |client| h.closed(client));
    });
}

/// Sessions that time out (UDP viewers that vanished) are vanished viewers
/// too.
fn end_timed_out_sessions(pool: &rtsp::RTSPSessionPool, hooks: &Hooks) {
    let (v, t) = (hooks.viewers.clone(), hooks.tracker.clone());
    pool.connect_session_removed(move |_, session| {
        if let Some(id) = session.sessionid() {
            lock(&v).retain(|(_, s), _| s.as_str() != id.as_str());
            t.end(&rtsp_viewer_id(&id), viewers::Ending::Vanished);
        }
    });
}

/// Housekeeping twice a second: expire RTSP sessions, reap heartbeat
/// viewers, drop ended HLS streams past their keep time.
fn start_housekeeping(
    pool: rtsp::RTSPSessionPool,
    shared: &Arc<Shared>,
    context: &glib::MainContext,
) -> glib::SourceId {
    let shared = shared.clone();
    let source = glib::timeout_source_new(
        std::time::Duration::from_millis(500),
        Some("live-housekeeping"),
        glib::Priority::DEFAULT,
        move || {
            pool.cleanup();
            shared.housekeep();
            glib::ControlFlow::Continue
        },
    );
    source.attach(Some(context))
}

/// Runs the main context on a thread of its own.
fn spawn_main_loop(
    main_loop: &glib::MainLoop,
    context: &glib::MainContext,
) -> anyhow::Result<JoinHandle<()>> {
    let (main_loop, context) = (main_loop.clone(), context.clone());
    std::thread::Builder::new()
        .name("rtsp-server".into())
        .spawn(move || {
            let result = context.with_thread_default(|| main_loop.run());
            if result.is_err() {
                tracing::error!("RTSP main context is owned by another thread");
            }
        })
        .context("spawning the RTSP server thread")
}

impl RtspServer {
    /// Starts the RTSP server on its own thread.
    pub(crate) fn start(cfg: &LiveRelayConfig, shared: &Arc<Shared>) -> anyhow::Result<Self> {
        gst::init().context("initialising GStreamer")?;
        let server = rtsp::RTSPServer::new();
        server.set_address(&cfg.bind);
        server.set_service(&cfg.rtsp_port.to_string());
        let mounts = server
            .mount_points()
            .ok_or_else(|| anyhow!("RTSP server without mount points"))?;
        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let hooks = Hooks {
            viewers: Viewers::default(),
            tracker: shared.tracker.clone(),
            context: context.clone(),
        };
        let timeout_secs = u32::try_from(cfg.rtsp_session_timeout_secs.max(1)).unwrap_or(u32::MAX);
        track_viewers(&server, hooks.clone(), timeout_secs);
        guard_requests(&server, shared);
        let pool = server
            .session_pool()
            .ok_or_else(|| anyhow!("RTSP server without a session pool"))?;
        end_timed_out_sessions(&pool, &hooks);
        let housekeeping = start_housekeeping(pool, shared, &context);
        let source = server
            .attach(Some(&context))
            .with_context(|| format!("listening for RTSP on {}:{}", cfg.bind, cfg.rtsp_port))?;
        let port = u16::try_from(server.bound_port())
            .map_err(|_| anyhow!("RTSP server is not bound to a port"))?;
        let thread = spawn_main_loop(&main_loop, &context)?;
        tracing::info!(bind = %cfg.bind, port, "RTSP server listening");
        Ok(RtspServer {
            server,
            mounts,
            context,
            main_loop,
            thread: Some(thread),
            source: Some(source),
            housekeeping: Some(housekeeping),
            port,
            viewers: hooks.viewers,
        })
    }

    /// The port the server is bound to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The server's mount points.
    pub(crate) fn mounts(&self) -> &rtsp::RTSPMountPoints {
        &self.mounts
    }

    /// How many RTSP clients are currently playing the session's stream.
    pub(crate) fn viewer_count(&self, session_id: &str) -> usize {
        let mount = mount_path(session_id);
        lock(&self.viewers)
            .values()
            .filter(|m| **m == mount)
            .count()
    }
}

impl Drop for RtspServer {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
