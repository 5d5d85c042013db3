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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl Default for LiveRelayConfig {
    fn default() -> Self {
        LiveRelayConfig {
            bind: "0.0.0.0".to_string(),
            rtsp_port: 8554,
            max_gop_bytes: 8 * 1024 * 1024,
            max_queued_bytes: 4 * 1024 * 1024,
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

fn track_viewers(server: &rtsp::RTSPServer, viewers: &Viewers) {
    let viewers = viewers.clone();
    server.connect_client_connected(move |_, client| {
        let v = viewers.clone();
        client.connect_play_request(move |client, ctx| {
            let mount = ctx.uri().and_then(|u| mount_of_uri(&u.request_uri()));
            if let (Some(key), Some(mount)) = (request_key(client, ctx), mount) {
                tracing::info!(mount = %mount, session = %key.1, "viewer playing");
                lock(&v).insert(key, mount);
            }
        });
        let v = viewers.clone();
        client.connect_pause_request(move |client, ctx| {
            if let Some(key) = request_key(client, ctx) {
                lock(&v).remove(&key);
            }
        });
        let v = viewers.clone();
        client.connect_teardown_request(move |client, ctx| {
            if let Some(key) = request_key(client, ctx) {
                if let Some(mount) = lock(&v).remove(&key) {
                    tracing::info!(mount = %mount, session = %key.1, "viewer left");
                }
            }
        });
        let v = viewers.clone();
        client.connect_closed(move |client| {
            let id = client.as_ptr() as usize;
            lock(&v).retain(|(c, _), _| *c != id);
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
        track_viewers(&server, &viewers);

        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
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
        })
    }

    /// The port the server is bound to (the real one when configured with 0).
    pub fn rtsp_port(&self) -> u16 {
        self.port
    }

    /// Starts the live stream of a session at `/live/{session_id}`.
    pub fn publish(&self, session_id: &str, tracks: &[TrackInfo]) -> anyhow::Result<LivePublisher> {
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

        let path = mount_path(session_id);
        {
            let mut published = lock(&self.published);
            if published.contains(session_id) {
                bail!("session {session_id} is already published");
            }
            published.insert(session_id.to_string());
        }
        let inner = Arc::new(PublisherInner {
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
        if let Some(id) = self.source.take() {
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
        let Some(now) = first.current_running_time() else {
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
        let offset = now_ns
            .saturating_sub(frame.pts_us.saturating_mul(1000))
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
        if let Some(published) = self.published.upgrade() {
            lock(&published).remove(&self.session_id);
        }
        tracing::info!(session = %self.session_id, mount = %self.path, "live stream ended");
    }
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
        };
        assert!(relay.publish("../x", std::slice::from_ref(&vp8)).is_err());
        let err = relay.publish("s1", &[vp8]).unwrap_err();
        assert!(format!("{err:#}").contains("vp8"));
        assert_eq!(relay.viewer_count("s1"), 0);
    }
}
