//! The uploader: what a phone app embeds to stream frames while it films.
//!
//! The app hands encoded frames to [`Uploader::send`] as the encoder produces
//! them. The uploader stamps per-track sequence numbers, keeps every frame in
//! a bounded buffer until the server acknowledges it as durable, sends frames
//! over QUIC, and when the connection drops it reconnects, resumes the session
//! and resends whatever the server does not hold. [`Uploader::finish`] ends the
//! recording and returns the video attributes the server produced.
//!
//! It is built in three parts:
//!
//! - [`state`]: every decision (in-flight window, live-edge jumps, resend
//!   sets, bitrate advice, back-pressure) as a pure state machine with the
//!   time passed in, tested without sockets;
//! - [`mod@spool`]: the optional on-device spool, so an app killed
//!   mid-recording finishes the upload at its next start
//!   ([`Uploader::resume_pending`]);
//! - `io`: the thin quinn layer that moves bytes and feeds the state
//!   machine.
//!
//! **Buffer policy**: without a spool, the buffer holds at most
//! `max_buffer_bytes` of unacknowledged frames. When it is full,
//! [`Uploader::send`] waits (the app's capture pipeline sees back-pressure)
//! until acknowledgements free space, or until `reconnect_deadline` passes
//! with no connection, in which case it fails with
//! [`UploadError::Disconnected`]. With a spool, frames are appended to it
//! before they are sent and [`Uploader::send`] never waits: when the spool
//! holds `max_bytes` it refuses the frame at once with
//! [`UploadError::SpoolFull`]. Nothing already accepted is dropped.
//!
//! **Live edge first, backlog after**: the uploader keeps at most a window of
//! sent-but-unacknowledged bytes in flight (about two round trips of the
//! acknowledged throughput, at least `min_window_bytes`), so frames queue in
//! its own buffer rather than in the network. When the frames waiting to be
//! sent span more than `live_threshold` of capture time, it jumps to the
//! newest video keyframe and sends from there on a high-priority QUIC stream,
//! so the live stream stays near real time; the older frames are sent
//! afterwards on a low-priority stream, so the recording is still complete.
//!
//! **Bitrate advice**: [`Uploader::advice`] (and [`Uploader::advice_watch`])
//! gives the app a target bitrate and frame rate for its encoder, computed
//! from the acknowledged throughput and the backlog: multiplicative decrease
//! (×0.85 of the measured throughput) when more than 0.5 s of data waits and
//! the backlog is still growing,
//! gentle increase (×1.08 + 20 kbit/s every 500 ms) when less than 0.2 s waits
//! and the encoder uses at least half of its budget.

mod io;
pub mod spool;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::ErrorCode;
use sharecast_formats::media::{MediaFrame, TrackInfo};
use tokio::sync::{mpsc, oneshot, Notify};

pub use io::client_config;
pub use spool::{SpoolConfig, SpoolError};
pub use state::{Advice, UploadStats};

use spool::Spool;
use state::{Offer, StateConfig, UploadState};

/// How the uploader trusts the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Accept exactly the certificate with this SHA-256 fingerprint (hex, as
    /// printed by `sharecast serve`). Colons and case are ignored.
    PinSha256(String),
    /// Verify the server's chain against these PEM root certificates.
    CaPem(Vec<u8>),
}

/// Default [`UploaderConfig::max_buffer_bytes`]: 64 MiB.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Default [`UploaderConfig::reconnect_deadline`]: 60 s.
pub const DEFAULT_RECONNECT_DEADLINE: Duration = Duration::from_secs(60);
/// Default [`UploaderConfig::min_window_bytes`]: 48 KiB.
pub const DEFAULT_MIN_WINDOW_BYTES: usize = 48 * 1024;
/// Default [`UploaderConfig::live_threshold`]: 1 s.
pub const DEFAULT_LIVE_THRESHOLD: Duration = Duration::from_secs(1);
/// Default [`UploaderConfig::initial_bitrate_bps`]: 2 Mbit/s.
pub const DEFAULT_INITIAL_BITRATE_BPS: u64 = 2_000_000;
/// Default [`UploaderConfig::min_bitrate_bps`]: 100 kbit/s.
pub const DEFAULT_MIN_BITRATE_BPS: u64 = 100_000;
/// Default [`UploaderConfig::max_bitrate_bps`]: 8 Mbit/s.
pub const DEFAULT_MAX_BITRATE_BPS: u64 = 8_000_000;
/// Default [`UploaderConfig::nominal_fps`]: 30.
pub const DEFAULT_NOMINAL_FPS: u32 = 30;
/// Default [`UploaderConfig::spool_memory_bytes`]: 8 MiB.
pub const DEFAULT_SPOOL_MEMORY_BYTES: usize = 8 * 1024 * 1024;

/// Uploader configuration.
#[derive(Debug, Clone)]
pub struct UploaderConfig {
    /// Server address, `host:port`.
    pub server: String,
    /// Other addresses of the same server (`host:port`), tried in order when
    /// `server` cannot be reached. Default none.
    pub extra_servers: Vec<String>,
    /// TLS server name; defaults to the host part of `server`.
    pub server_name: Option<String>,
    /// Device token.
    pub token: String,
    /// Certificate trust.
    pub trust: Trust,
    /// Title of the recording.
    pub title: Option<String>,
    /// Most bytes of unacknowledged frames kept in memory when there is no
    /// spool. Default 64 MiB.
    pub max_buffer_bytes: usize,
    /// How long to keep trying to reconnect before giving up. Default 60 s.
    pub reconnect_deadline: Duration,
    /// Client name sent in HELLO.
    pub client_name: String,
    /// Smallest in-flight window, bytes. Default 48 KiB.
    pub min_window_bytes: usize,
    /// Capture-time span of waiting frames beyond which the uploader jumps to
    /// the live edge. Default 1 s.
    pub live_threshold: Duration,
    /// Encoder bitrate advised at the start, bit/s. Default 2 Mbit/s.
    pub initial_bitrate_bps: u64,
    /// Lowest advised bitrate, bit/s. Default 100 kbit/s.
    pub min_bitrate_bps: u64,
    /// Highest advised bitrate, bit/s. Default 8 Mbit/s.
    pub max_bitrate_bps: u64,
    /// Nominal frame rate advised when the bitrate allows it. Default 30.
    pub nominal_fps: u32,
    /// The on-device spool; `None` (the default) keeps frames in memory
    /// only.
    pub spool: Option<SpoolConfig>,
    /// With a spool: most frame bytes also kept in memory (the newest);
    /// older ones are read back from the spool when sent. Default 8 MiB.
    pub spool_memory_bytes: usize,
}

impl UploaderConfig {
    /// A config with defaults for everything but the essentials.
    pub fn new(server: impl Into<String>, token: impl Into<String>, trust: Trust) -> Self {
        Self {
            server: server.into(),
            extra_servers: Vec::new(),
            server_name: None,
            token: token.into(),
            trust,
            title: None,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
            reconnect_deadline: DEFAULT_RECONNECT_DEADLINE,
            client_name: concat!("sharecast-client-sdk/", env!("CARGO_PKG_VERSION")).to_string(),
            min_window_bytes: DEFAULT_MIN_WINDOW_BYTES,
            live_threshold: DEFAULT_LIVE_THRESHOLD,
            initial_bitrate_bps: DEFAULT_INITIAL_BITRATE_BPS,
            min_bitrate_bps: DEFAULT_MIN_BITRATE_BPS,
            max_bitrate_bps: DEFAULT_MAX_BITRATE_BPS,
            nominal_fps: DEFAULT_NOMINAL_FPS,
            spool: None,
            spool_memory_bytes: DEFAULT_SPOOL_MEMORY_BYTES,
        }
    }

    fn state_config(&self) -> StateConfig {
        StateConfig {
            memory_bytes: if self.spool.is_some() {
                self.spool_memory_bytes
            } else {
                self.max_buffer_bytes
            },
            spooled: self.spool.is_some(),
            reconnect_deadline: self.reconnect_deadline,
            min_window_bytes: self.min_window_bytes,
            live_threshold: self.live_threshold,
            initial_bitrate_bps: self.initial_bitrate_bps,
            min_bitrate_bps: self.min_bitrate_bps,
            max_bitrate_bps: self.max_bitrate_bps,
            nominal_fps: self.nominal_fps,
        }
    }
}

/// Why an upload failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    /// The server refused the session or a frame.
    #[error("server refused: {} (code {code}): {message}", name_of(*code))]
    Refused {
        /// Numeric error code (see `docs/ingest-protocol.md`).
        code: u16,
        /// The server's explanation.
        message: String,
    },
    /// No connection could be (re-)established in time.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// Local configuration problem (address, TLS).
    #[error("configuration: {0}")]
    Config(String),
    /// A frame was bigger than the buffer.
    #[error("frame of {0} bytes is larger than the upload buffer")]
    FrameTooBig(usize),
    /// The spool holds its configured maximum: the frame was refused
    /// (nothing accepted before is dropped).
    #[error("spool full: {used} of {max} bytes hold unacknowledged frames; the frame of {frame} bytes was refused")]
    SpoolFull {
        /// Bytes in the spool.
        used: u64,
        /// Its bound.
        max: u64,
        /// The refused frame's size.
        frame: usize,
    },
    /// The spool could not be written or read.
    #[error("spool: {0}")]
    Spool(String),
    /// The session takes no more frames (it is finishing, or it was resumed
    /// from the spool after a restart).
    #[error("closed: {0}")]
    Closed(String),
    /// A frame or a track description is not valid.
    #[error("invalid input: {0}")]
    Invalid(String),
}

fn name_of(code: u16) -> &'static str {
    ErrorCode::from_u16(code)
        .map(|c| c.name())
        .unwrap_or("unknown")
}

impl UploadError {
    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            UploadError::Refused { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }

    /// A stable name for the error, for apps and logs: the server's code
    /// name (`unauthorized`, `unknown_session`, …) when the server refused,
    /// else `disconnected`, `configuration`, `frame_too_big`, `spool_full`,
    /// `spool`, `closed` or `invalid`.
    pub fn code_name(&self) -> &'static str {
        match self {
            UploadError::Refused { code, .. } => name_of(*code),
            UploadError::Disconnected(_) => "disconnected",
            UploadError::Config(_) => "configuration",
            UploadError::FrameTooBig(_) => "frame_too_big",
            UploadError::SpoolFull { .. } => "spool_full",
            UploadError::Spool(_) => "spool",
            UploadError::Closed(_) => "closed",
            UploadError::Invalid(_) => "invalid",
        }
    }
}

impl From<SpoolError> for UploadError {
    fn from(e: SpoolError) -> Self {
        match e {
            SpoolError::Full { used, max, frame } => UploadError::SpoolFull { used, max, frame },
            other => UploadError::Spool(other.to_string()),
        }
    }
}

/// What happens to an upload, in order, for the app (see
/// [`Uploader::take_events`]).
#[derive(Debug, Clone)]
pub enum UploadEvent {
    /// The session is open; viewers can watch at these URLs.
    Connected {
        /// Session id.
        session_id: String,
        /// Live URLs (RTSP, the player page), with a playback token.
        live_urls: Vec<String>,
    },
    /// New encoder advice.
    Advice(Advice),
    /// The connection was lost; the uploader is reconnecting.
    Reconnecting {
        /// Why the connection ended.
        reason: String,
    },
    /// A connection resumed the session.
    Resumed {
        /// Resumes so far.
        resumes: u64,
    },
    /// Frames are waiting (sent every second while the backlog spans more
    /// than half a second of capture time or there is no connection, and
    /// once more when it has drained).
    Backlog {
        /// Unacknowledged frames.
        frames: u64,
        /// Unacknowledged bytes.
        bytes: u64,
        /// Capture time they span, ms.
        span_ms: u64,
        /// Bytes in the spool, if any.
        spool_bytes: u64,
        /// Whether a connection is up.
        connected: bool,
    },
    /// The server produced the outputs.
    Finished(Box<VideoAttributes>),
    /// The upload failed for good.
    Failed(UploadError),
}

/// Most events queued for the app; beyond, new events are dropped (the
/// outcome still comes from [`Uploader::finish`]).
pub const EVENT_QUEUE: usize = 1024;

/// What the uploader and its connection task share.
struct Shared {
    state: UploadState,
    spool: Option<Spool>,
    fatal: Option<UploadError>,
    /// The connection task has ended (finished or failed).
    ended: bool,
}

struct Inner {
    cfg: UploaderConfig,
    session_id: String,
    secret: String,
    tracks: Vec<TrackInfo>,
    anchor_unix_us: i64,
    live_urls: Vec<String>,
    /// False for a session resumed from the spool: it only finishes.
    accepts_frames: bool,
    shared: Mutex<Shared>,
    changed: Notify,
    conn: Mutex<Option<(quinn::Endpoint, quinn::Connection)>>,
    advice_tx: tokio::sync::watch::Sender<Advice>,
    events: mpsc::Sender<UploadEvent>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Option<(quinn::Endpoint, quinn::Connection)>> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, e: UploadEvent) {
        if self.events.try_send(e).is_err() {
            tracing::trace!("event queue full or closed; event dropped");
        }
    }

    fn publish_advice(&self, a: Option<Advice>) {
        if let Some(a) = a {
            self.advice_tx.send_replace(a);
            self.emit(UploadEvent::Advice(a));
        }
    }
}

/// A running upload session.
pub struct Uploader {
    inner: Arc<Inner>,
    done: tokio::sync::Mutex<Option<oneshot::Receiver<Result<VideoAttributes, UploadError>>>>,
    events: Mutex<Option<mpsc::Receiver<UploadEvent>>>,
}

/// What [`Uploader::resume_pending`] found.
#[derive(Default)]
pub struct ResumeReport {
    /// Sessions resumed: each uploads what the server lacks and ends;
    /// call [`Uploader::finish`] for the attributes.
    pub resumed: Vec<Uploader>,
    /// Sessions that could not be resumed (the spool folder or session id,
    /// and why). Their spool stays until [`Uploader::discard_pending`].
    pub failed: Vec<(String, UploadError)>,
    /// What recovery noticed in the spool files (torn tails cut, corrupt
    /// records), per session id.
    pub issues: Vec<(String, String)>,
}

impl std::fmt::Debug for ResumeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumeReport")
            .field(
                "resumed",
                &self
                    .resumed
                    .iter()
                    .map(|u| u.session_id().to_string())
                    .collect::<Vec<_>>(),
            )
            .field("failed", &self.failed)
            .field("issues", &self.issues)
            .finish()
    }
}

impl Uploader {
    /// Open a session: connect, send HELLO, wait for WELCOME. With a spool,
    /// the session's spool folder is created before this returns.
    pub async fn start(
        cfg: UploaderConfig,
        tracks: Vec<TrackInfo>,
        anchor_unix_us: i64,
    ) -> Result<Uploader, UploadError> {
        let c = io::connect(&cfg, &tracks, anchor_unix_us, None).await?;
        let spool = match &cfg.spool {
            None => None,
            Some(sc) => {
                let meta = spool::SessionMeta {
                    version: 1,
                    session_id: c.welcome.session_id.clone(),
                    resume_secret: c.welcome.resume_secret.clone(),
                    tracks: tracks.clone(),
                    anchor_unix_us,
                    title: cfg.title.clone(),
                    live_urls: c.welcome.live_urls.clone(),
                };
                let created = Spool::create(sc.clone(), &meta);
                match created {
                    Ok(s) => Some(s),
                    Err(e) => {
                        c.conn.close(0u32.into(), b"spool unavailable");
                        return Err(e.into());
                    }
                }
            }
        };
        let state = UploadState::new(cfg.state_config(), &tracks, Instant::now());
        let session_id = c.welcome.session_id.clone();
        let secret = c.welcome.resume_secret.clone();
        let live_urls = c.welcome.live_urls.clone();
        Ok(Self::launch(
            cfg,
            tracks,
            anchor_unix_us,
            (session_id, secret, live_urls),
            state,
            spool,
            true,
            c,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        cfg: UploaderConfig,
        tracks: Vec<TrackInfo>,
        anchor_unix_us: i64,
        (session_id, secret, live_urls): (String, String, Vec<String>),
        state: UploadState,
        spool: Option<Spool>,
        accepts_frames: bool,
        c: io::Connected,
    ) -> Uploader {
        let advice = state.advice();
        let (advice_tx, _) = tokio::sync::watch::channel(advice);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let inner = Arc::new(Inner {
            advice_tx,
            events: events_tx,
            session_id,
            secret,
            live_urls,
            accepts_frames,
            shared: Mutex::new(Shared {
                state,
                spool,
                fatal: None,
                ended: false,
            }),
            changed: Notify::new(),
            conn: Mutex::new(None),
            anchor_unix_us,
            cfg,
            tracks,
        });
        inner.emit(UploadEvent::Connected {
            session_id: inner.session_id.clone(),
            live_urls: inner.live_urls.clone(),
        });
        // Registered before the task starts, so the connection can be observed
        // (stats, rebind, drop) from the first moment.
        *inner.conn() = Some((c.endpoint.clone(), c.conn.clone()));
        let (tx, rx) = oneshot::channel();
        tokio::spawn(io::run(inner.clone(), c, tx));
        tokio::spawn(io::monitor(Arc::downgrade(&inner)));
        Uploader {
            inner,
            done: tokio::sync::Mutex::new(Some(rx)),
            events: Mutex::new(Some(events_rx)),
        }
    }

    /// Resume every unfinished session found in the spool folder of `cfg`
    /// (`cfg.spool` must be set; its `dir` is the folder): after the app
    /// was killed, crashed, or the phone rebooted mid-recording. Each is
    /// resumed with the server, its frames the server lacks are sent, and
    /// it ends (END); [`Uploader::finish`] gives its attributes, and its
    /// spool is deleted once the server has them. Sessions another uploader
    /// still owns are left alone.
    pub async fn resume_pending(cfg: UploaderConfig) -> Result<ResumeReport, UploadError> {
        let Some(sc) = cfg.spool.clone() else {
            return Err(UploadError::Config(
                "resume_pending needs a spool folder".into(),
            ));
        };
        let (found, unreadable) = spool::recover(&sc);
        let mut report = ResumeReport::default();
        for u in unreadable {
            report
                .failed
                .push((u.dir.display().to_string(), u.error.into()));
        }
        for r in found {
            let id = r.meta.session_id.clone();
            for i in &r.issues {
                report.issues.push((id.clone(), i.clone()));
            }
            match Self::resume_one(&cfg, r).await {
                Ok(u) => {
                    tracing::info!(session = %id, "resumed a spooled session");
                    report.resumed.push(u);
                }
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "could not resume a spooled session");
                    report.failed.push((id, e));
                }
            }
        }
        Ok(report)
    }

    async fn resume_one(
        cfg: &UploaderConfig,
        r: spool::Recovered,
    ) -> Result<Uploader, UploadError> {
        let mut cfg = cfg.clone();
        cfg.title = r.meta.title.clone();
        let resume = sharecast_formats::ingest::Resume {
            session_id: r.meta.session_id.clone(),
            secret: r.meta.resume_secret.clone(),
        };
        let c = io::connect(&cfg, &r.meta.tracks, r.meta.anchor_unix_us, Some(resume)).await?;
        let now = Instant::now();
        let mut state = UploadState::new(cfg.state_config(), &r.meta.tracks, now);
        for f in r.frames {
            state.restore(f.frame, f.len, f.at, now);
        }
        state.raise_counts(&r.counts);
        // What the server holds counts too (frames the spool lost to a
        // power cut after the server acknowledged them).
        let mut server_counts = c.welcome.next_seq.clone();
        for (t, ranges) in &c.welcome.held {
            if let Some(end) = ranges.iter().map(|(_, e)| *e).max() {
                let e = server_counts.entry(*t).or_insert(0);
                *e = (*e).max(end);
            }
        }
        state.raise_counts(&server_counts);
        state.request_end();
        let ids = (
            r.meta.session_id.clone(),
            r.meta.resume_secret.clone(),
            if c.welcome.live_urls.is_empty() {
                r.meta.live_urls.clone()
            } else {
                c.welcome.live_urls.clone()
            },
        );
        Ok(Self::launch(
            cfg,
            r.meta.tracks,
            r.meta.anchor_unix_us,
            ids,
            state,
            Some(r.spool),
            false,
            c,
        ))
    }

    /// Delete a spooled session the app gives up on (for example one that
    /// [`Uploader::resume_pending`] reported the server no longer knows).
    pub fn discard_pending(spool: &SpoolConfig, session_id: &str) -> Result<(), UploadError> {
        spool::discard(spool, session_id).map_err(UploadError::from)
    }

    /// Session id assigned by the server.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// Live URLs announced by the server.
    pub fn live_urls(&self) -> &[String] {
        &self.inner.live_urls
    }

    /// Current statistics.
    pub fn stats(&self) -> UploadStats {
        let mut s = self.inner.lock().state.stats();
        if let Some((_, c)) = self.inner.conn().as_ref() {
            s.rtt_ms = c.rtt().as_secs_f64() * 1000.0;
        }
        s
    }

    /// Bytes in the spool (0 without one).
    pub fn spool_bytes(&self) -> u64 {
        self.inner.lock().spool.as_ref().map_or(0, Spool::bytes)
    }

    /// Time from [`Uploader::send`] to the durable acknowledgement of every
    /// frame acknowledged since the last call, microseconds.
    pub fn take_ack_latencies(&self) -> Vec<u32> {
        self.inner.lock().state.take_ack_latencies()
    }

    /// Frames handed to [`Uploader::send`] so far, per track.
    pub fn frames_per_track(&self) -> BTreeMap<u8, u64> {
        self.inner.lock().state.frames_per_track().clone()
    }

    /// The current encoder advice.
    pub fn advice(&self) -> Advice {
        *self.inner.advice_tx.borrow()
    }

    /// A receiver that sees every change of the encoder advice.
    pub fn advice_watch(&self) -> tokio::sync::watch::Receiver<Advice> {
        self.inner.advice_tx.subscribe()
    }

    /// The events of this upload, from [`UploadEvent::Connected`] on, in
    /// order (the first call takes them; later calls get `None`). Events
    /// beyond [`EVENT_QUEUE`] unread ones are dropped.
    pub fn take_events(&self) -> Option<mpsc::Receiver<UploadEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Queue one frame. Its `seq` is assigned here (per track, from 0).
    /// Without a spool it waits while the buffer is full; with one, the
    /// frame is appended to the spool first and a full spool refuses it
    /// (see the module docs).
    pub async fn send(&self, frame: MediaFrame) -> Result<(), UploadError> {
        loop {
            let notified = self.inner.changed.notified();
            match self.try_send_inner(&frame)? {
                true => return Ok(()),
                false => {
                    let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
                }
            }
        }
    }

    /// Queue one frame from a thread that is not async, waiting (blocking
    /// the calling thread) while the buffer is full, like
    /// [`Uploader::send`]. Never call it on an async runtime's thread.
    pub fn send_blocking(&self, frame: MediaFrame) -> Result<(), UploadError> {
        loop {
            if self.try_send_inner(&frame)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `Ok(true)`: queued; `Ok(false)`: wait and try again.
    fn try_send_inner(&self, frame: &MediaFrame) -> Result<bool, UploadError> {
        if !self.inner.accepts_frames {
            return Err(UploadError::Closed(
                "a session resumed from the spool only finishes; start a new upload for new frames"
                    .into(),
            ));
        }
        let now = Instant::now();
        let mut g = self.inner.lock();
        let sh = &mut *g;
        if let Some(e) = &sh.fatal {
            return Err(e.clone());
        }
        if sh.state.end_requested() {
            return Err(UploadError::Closed("the recording was ended".into()));
        }
        match sh.state.offer(frame.data.len(), now) {
            Offer::Accept => {}
            Offer::Wait => return Ok(false),
            Offer::TooBig => return Err(UploadError::FrameTooBig(frame.data.len())),
            Offer::Fail => {
                return Err(UploadError::Disconnected(
                    "upload buffer full and no connection".into(),
                ))
            }
        }
        let mut frame = frame.clone();
        let at = match sh.spool.as_mut() {
            None => None,
            Some(spool) => {
                frame.seq = sh.state.peek_seq(frame.track);
                let mut counts = sh.state.frames_per_track().clone();
                counts.insert(frame.track, frame.seq + 1);
                Some(spool.append(&frame, &counts, now)?)
            }
        };
        sh.state.push(frame, at, now);
        drop(g);
        self.inner.changed.notify_waiters();
        Ok(true)
    }

    /// End the recording: wait until every frame is durable on the server,
    /// then return the attributes of the produced outputs.
    pub async fn finish(self) -> Result<VideoAttributes, UploadError> {
        self.finish_with_stats().await.0
    }

    /// Like [`Uploader::finish`], and the statistics as they stand once the
    /// session has ended (resumes that happened after the last frame was
    /// queued included).
    pub async fn finish_with_stats(self) -> (Result<VideoAttributes, UploadError>, UploadStats) {
        self.end().await
    }

    /// [`Uploader::finish_with_stats`] for a shared uploader: ends the
    /// recording and waits for the outcome. A second call answers at once
    /// that the session already ended.
    pub async fn end(&self) -> (Result<VideoAttributes, UploadError>, UploadStats) {
        self.inner.lock().state.request_end();
        self.inner.changed.notify_waiters();
        let rx = self.done.lock().await.take();
        let result = match rx {
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(UploadError::Disconnected("uploader task stopped".into()))),
            None => Err(UploadError::Closed("already finished".into())),
        };
        (result, self.stats())
    }

    /// Close the current connection abruptly, as a network drop would; the
    /// uploader reconnects and resumes by itself. For tests and demos.
    pub fn drop_connection(&self) {
        if let Some((_, c)) = self.inner.conn().as_ref() {
            c.close(0u32.into(), b"client dropped the connection");
        }
    }

    /// Move the connection to a new local UDP socket (what a phone does when it
    /// switches from Wi-Fi to mobile data). QUIC migrates the connection.
    pub fn rebind(&self) -> Result<SocketAddr, UploadError> {
        let guard = self.inner.conn();
        let Some((ep, _)) = guard.as_ref() else {
            return Err(UploadError::Disconnected("not connected".into()));
        };
        let bind: SocketAddr = match ep.local_addr() {
            Ok(a) if a.is_ipv6() => SocketAddr::from(([0u16; 8], 0)),
            _ => SocketAddr::from(([0u8; 4], 0)),
        };
        let sock = std::net::UdpSocket::bind(bind)
            .map_err(|e| UploadError::Disconnected(format!("rebind: {e}")))?;
        let addr = sock
            .local_addr()
            .map_err(|e| UploadError::Disconnected(e.to_string()))?;
        ep.rebind(sock)
            .map_err(|e| UploadError::Disconnected(format!("rebind: {e}")))?;
        Ok(addr)
    }

    /// Local UDP address of the current connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner
            .conn()
            .as_ref()
            .and_then(|(ep, _)| ep.local_addr().ok())
    }

    /// The tracks of this session.
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.inner.tracks
    }

    /// Capture time 0 of this session, Unix microseconds.
    pub fn anchor_unix_us(&self) -> i64 {
        self.inner.anchor_unix_us
    }
}
