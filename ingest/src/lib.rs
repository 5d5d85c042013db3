//! Sharecast ingest: the QUIC server phones upload to while they film.
//!
//! Its one job: take a phone's encoded frames (ingest protocol v1,
//! `docs/ingest-protocol.md`, codecs in [`sharecast_formats::ingest`]),
//! acknowledge each only once it is durable in the session's [`journal`],
//! let the phone resume the session after a drop or a server restart, and
//! hand the frames on. It authenticates devices and enforces every limit
//! of the protocol; it knows nothing about GStreamer or HTTP.
//!
//! Main types: [`IngestServer`] (bind, run, recover sessions, snapshots for
//! the admin API), configured by [`IngestConfig`]; [`SessionHandler`], the
//! application side (authentication, codec checks, outputs), and
//! [`SessionOutput`], where a session's frames go (the transcoder and the
//! live relay, wired by the binary).
//!
//! Publishers that speak RTMP (OBS, Larix, ffmpeg) feed the same sessions
//! (`rtmp`, when `ingest.rtmp_listen` is set), and so do publishers that
//! send an MPEG transport stream over SRT (`srt`, when `ingest.srt_listen`
//! is set); both keep one recording across their reconnects (`publish`).
//!
//! Inside: one connection's protocol (`connection`), answering HELLO
//! (`hello`), a session's frames and acknowledgements (`session`), the
//! group commit of every journal (`committer`), the journal file
//! ([`journal`]) and the failed-authentication limits ([`limiter`], pure).

mod committer;
pub mod config;
mod connection;
#[doc(hidden)]
pub mod fuzzing;
mod hello;
pub mod journal;
pub mod limiter;
pub mod metrics;
mod publish;
mod rtmp;
mod server;
mod session;
mod srt;
mod tls;
mod udp;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::media::{MediaFrame, TrackInfo};

pub use config::IngestConfig;
pub use server::IngestServer;
pub use sharecast_formats::status::SessionSnapshot;
pub use udp::UdpBuffers;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An authenticated device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// Stable device id.
    pub id: String,
    /// Human-readable device name.
    pub name: String,
}

/// What the server knows about a session when it opens it.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// The uploading device.
    pub device: DeviceIdentity,
    /// Tracks declared in HELLO.
    pub tracks: Vec<TrackInfo>,
    /// Wall-clock time of capture timestamp 0, Unix µs.
    pub anchor_unix_us: i64,
    /// Title, if the phone gave one.
    pub title: Option<String>,
    /// Directory for the session's files (journal, outputs).
    pub dir: PathBuf,
    /// Start time, Unix ms.
    pub started_unix_ms: u64,
    /// True when the session was recovered from its journal after a restart.
    pub recovered: bool,
}

/// The application side of ingest: authentication, codec checks, and where
/// frames go.
pub trait SessionHandler: Send + Sync + 'static {
    /// Resolve a device token; `Ok(None)` if unknown or revoked, which
    /// counts as a failed authentication of the token and of the address
    /// (`ingest.auth_*`): a token that keeps failing backs off. `Err` (the
    /// device store cannot answer) is answered `internal` and counts
    /// against nobody.
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<DeviceIdentity>>>;
    /// Resolve an RTMP stream key (a publishing key: it can only publish,
    /// as its device), as [`authenticate`](Self::authenticate) resolves a
    /// device token. The default knows no publishing keys: every RTMP
    /// publisher is refused.
    fn authenticate_publisher<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<DeviceIdentity>>> {
        let _ = key;
        Box::pin(async { Ok(None) })
    }
    /// Check that the tracks can be processed; `Err` explains why not.
    fn check_tracks(&self, tracks: &[TrackInfo]) -> Result<(), String>;
    /// Open the outputs of a new (or recovered) session.
    fn open<'a>(
        &'a self,
        info: &'a SessionInfo,
    ) -> BoxFuture<'a, anyhow::Result<Arc<dyn SessionOutput>>>;
    /// URLs where the session can be watched live.
    fn live_urls(&self, session_id: &str) -> Vec<String>;
}

/// Where a session's frames go.
pub trait SessionOutput: Send + Sync {
    /// A frame as soon as it arrives, newest first: older frames arriving
    /// later (backfill after a drop) are not passed here. May skip.
    fn live(&self, frame: &MediaFrame);
    /// A durable frame, in sequence order per track, each exactly once.
    fn record(&self, frame: &MediaFrame) -> anyhow::Result<()>;
    /// The session ended: finalise the outputs and return their attributes.
    fn finish(&self) -> BoxFuture<'_, anyhow::Result<VideoAttributes>>;
    /// The recording failed (a `record` error, its disk full for example):
    /// drop it and start an empty one in its place; every durable frame is
    /// then recorded again, in order, from the journal.
    fn restart_recording(&self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// The session's client went away (it may come back) or came back;
    /// called in the order of the changes, without waiting.
    fn connection_changed(&self, change: ConnectionChange);
}

/// A change of a session's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionChange {
    /// The client is gone, and the session waits for it to resume;
    /// `reason` is `connection_lost` or `server_restart` (a session
    /// recovered from its journal).
    Suspended {
        /// Why.
        reason: &'static str,
    },
    /// The client resumed the session on a new connection.
    Resumed,
}

/// Lock `m`, poisoned or not. A poisoned lock means a panic elsewhere while
/// it was held; what the crate keeps behind its locks (session state, the
/// committer's queue, registries) changes in steps that leave it readable,
/// so the server carries on and finishes its sessions rather than failing
/// every one of them.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wall-clock time, Unix microseconds (0 for a clock before 1970).
pub(crate) fn unix_now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Wall-clock time, Unix milliseconds (0 for a clock before 1970).
pub(crate) fn unix_now_ms() -> u64 {
    (unix_now_us() / 1000) as u64
}
