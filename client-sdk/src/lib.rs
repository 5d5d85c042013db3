//! Sharecast client SDK: what runs on the phone. Its one job: move a
//! phone's encoded frames to the ingest server while it films, and turn a
//! received share message back into something a recipient can play.
//!
//! - [`uploader`]: stream encoded frames to the ingest server while filming.
//!   Main types: [`Uploader`] (the session: `start`, `send`, `finish`,
//!   `resume_pending`), [`UploaderConfig`], [`UploadEvent`], [`Advice`],
//!   [`UploadError`]; inside it the pure decision core
//!   [`uploader::state::UploadState`] and the on-device
//!   [`uploader::spool::Spool`].
//! - [`codec`]: codec configuration and frame layout as MediaCodec and
//!   VideoToolbox give them, turned into what the protocol carries.
//! - [`recipient`]: received SMS / WAP Push PDUs back to video attributes
//!   ([`recipient::Reassembler`]), the links a recipient may be offered
//!   ([`recipient::check_links`]), and how to play
//!   ([`recipient::recommend`], [`recipient::choose_playback`]).
//!
//! It knows nothing about servers' internals or GStreamer: the app's encoder
//! produces [`sharecast_formats::media::MediaFrame`]s and the SDK moves them.
//! The `sharecast-client-sdk-ffi` crate (`client-sdk/ffi/`) exposes it to
//! Kotlin and Swift.

pub mod codec;
pub mod recipient;
pub mod uploader;

pub use uploader::{
    client_config, Advice, ResumeReport, SpoolConfig, Trust, UploadError, UploadEvent, UploadStats,
    Uploader, UploaderConfig,
};
