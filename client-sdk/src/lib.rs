//! Sharecast client SDK: what runs on the phone.
//!
//! - [`uploader`]: stream encoded frames to the ingest server while filming
//!   (capture timestamps, bounded buffer, QUIC, resume after drops, live
//!   edge first, bitrate advice).
//! - [`recipient`]: turn received SMS / WAP Push PDUs back into video
//!   attributes and choose how to play them.
//!
//! It knows nothing about servers' internals or GStreamer: the app's encoder
//! produces [`sharecast_formats::media::MediaFrame`]s and the SDK moves them.

pub mod recipient;
pub mod uploader;

pub use uploader::{
    client_config, Advice, Trust, UploadError, UploadStats, Uploader, UploaderConfig,
};
