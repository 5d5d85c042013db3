//! I/O-free wire formats that both the phone (client SDK) and the server speak.
//!
//! Everything here is bytes in, typed values out (and back): no sockets, no
//! files, no clocks. That lets the phone side and the server side share one
//! implementation, and lets property tests and fuzzers reach every decoder.
//!
//! Main types: [`media::TrackInfo`] and [`media::MediaFrame`] (what a phone
//! sends), [`ingest::Control`] (the ingest protocol's messages),
//! [`attributes::VideoAttributes`] (what is shared),
//! [`share::ShareFormat`] (how a share message carries it) and
//! [`mp4::Fmp4Track`] (a track of a live fragmented MP4).
//!
//! - [`media`]: tracks and encoded frames, with the one timestamp unit
//!   (microseconds) used end to end.
//! - [`attributes`]: the video attribute data returned to the phone and carried
//!   in share messages.
//! - [`ingest`]: the ingest protocol v1 (control messages and frame records).
//! - [`share`]: share-message codecs (TLV, XML, delimited text, SMS PDUs,
//!   WSP/WDP WAP Push, WBXML).
//! - [`status`]: what the ingest and the live relay report of themselves
//!   (sessions, live streams, viewers, heartbeats), as the HTTP API shows it.
//! - [`mp4`]: MP4 box writers and readers (fragmented MP4 for live HLS, the
//!   display rotation of a video track, compaction of a finished recording).

pub mod attributes;
pub mod compat;
pub mod ingest;
pub mod media;
pub mod mp4;
pub mod share;
pub mod status;
