//! Serves live streams to viewers and tracks who is watching.
//!
//! While a phone uploads, ingest pushes each session's frames into a
//! [`LivePublisher`], which feeds them to viewers over RTSP
//! (gst-rtsp-server, `rtsp://HOST:PORT/live/{session_id}`) and to an fMP4
//! HLS segmenter (`/live/{session_id}/index.m3u8`, served through the
//! handlers [`LiveRelay::http_routes`] hands the HTTP server). Every RTSP
//! session and HLS player is tracked as a viewer; one that disappears yields
//! one [`ViewerEvent::Vanished`] (what interruption bookmarks are made
//! from).
//!
//! Main types: [`LiveRelay`] (one per process, configured by
//! [`LiveRelayConfig`]), [`LivePublisher`] (one per live stream) and
//! [`ViewerEvent`].
//!
//! Modules, one job each: `rtsp` (the server, its mounts, the playback-token
//! guard and the viewer-tracking hooks), `publisher` (feeding frames to the
//! RTSP medias and to HLS), `hls` (segments and playlists), `viewers`
//! (viewer tracking and events), `http` (the HLS and heartbeat handlers),
//! `relay` ([`LiveRelay`], which ties them together), [`sei`] (the capture
//! clock in the live video, for glass-to-glass measurement) and `vod`
//! (recordings over RTSP). See `docs/live.md`.

mod hls;
mod http;
mod metrics;
mod publisher;
mod relay;
mod rtsp;
pub mod sei;
mod viewers;
mod vod;

pub mod config;
pub use config::LiveRelayConfig;
pub use hls::{HlsConfig, LiveStart, LiveStartError};
pub use http::LiveRoutes;
pub use publisher::LivePublisher;
pub use relay::{Authorizer, LiveRelay};
pub use sharecast_formats::status::{
    HeartbeatAnswer, HeartbeatBody, LiveStreamSnapshot, Protocol, ViewerEnd, ViewerEvent,
    ViewerSnapshot,
};

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, taking the data of a poisoned one as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
