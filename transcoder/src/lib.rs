//! GStreamer pipelines that turn a session's encoded frames into VOD files and
//! their attributes.
//!
//! The phone uploads encoded frames
//! ([`MediaFrame`](sharecast_formats::media::MediaFrame)) with capture
//! timestamps while it films; ingest hands them to a [`Recording`] as they
//! arrive. The recording synchronises the tracks by their timestamps and
//! muxes them without re-encoding. While the session runs, `source.mp4` is an
//! MP4 whose index (at the front) is rewritten every fragment duration, so
//! it is playable as it grows and survives a crash; when the
//! session ends, [`Recording::finish`] finalises it in place (a regular MP4,
//! index first, edit lists keeping the audio/video offsets), writes the
//! poster image, waits for the extra renditions ([`ladder`]) and measures
//! every file ([`probe_file`]): the video attribute data that the phone
//! shares comes from the produced files. See the `recording` module source
//! for the pipeline and `docs/transcoder.md`.
//!
//! Main types: [`Transcoder`] (one per server, configured by
//! [`TranscoderConfig`]), [`Recording`] (one per session) and the
//! [`ProducedFile`]s it yields; [`source::FileSource`] reads a file frame by
//! frame.
//!
//! ```no_run
//! # fn demo(tracks: &[sharecast_formats::media::TrackInfo],
//! #         frames: &[sharecast_formats::media::MediaFrame]) -> anyhow::Result<()> {
//! use sharecast_transcoder::{Transcoder, TranscoderConfig};
//! let transcoder = Transcoder::new(TranscoderConfig::default())?;
//! Transcoder::check_tracks(tracks).map_err(anyhow::Error::msg)?;
//! let recording = transcoder.start("session-1", tracks, "data/vod/session-1".as_ref())?;
//! for frame in frames {
//!     recording.push(frame)?;
//! }
//! for file in recording.finish()? {
//!     println!("{}: {:?}", file.rendition, file.attributes);
//! }
//! # Ok(()) }
//! ```
//!
//! Modules:
//! - [`caps`]: [`TrackInfo`] → GStreamer caps, and the track checks.
//! - [`source`]: read a media file frame by frame (the phone simulator and
//!   the tests use it in place of a camera).
//! - [`ladder`]: the extra renditions (480p H.264 + AAC by default).
//! - [`still`]: still frames (JPEG of the frame shown at a time, posters).
//! - [`testing`]: fixture helpers for tests across the workspace.
//!
//! Timestamps are microseconds end to end (see [`sharecast_formats::media`]).

use std::path::{Path, PathBuf};

use anyhow::Context;
use gstreamer as gst;
use sharecast_formats::attributes::Rendition;
use sharecast_formats::media::TrackInfo;

pub mod caps;
mod compact;
pub mod image;
pub mod ladder;
mod matrix;
mod pipeline;
mod probe;
mod recording;
pub mod source;
pub mod still;
pub mod testing;

pub use ladder::RenditionSpec;

/// Where a rendition's encoded output goes while it is encoded (its live
/// stream): called with the rendition's name, its tracks (as they came out of
/// the encoder) and the capture timestamp the frame timestamps count from;
/// returns the consumer, or `None` to drop the output.
pub type RenditionTap = std::sync::Arc<
    dyn Fn(&str, &[TrackInfo], i64) -> Option<Box<dyn sharecast_formats::media::FrameSink>>
        + Send
        + Sync,
>;
pub use probe::probe_file;
pub use recording::{
    Finished, PendingRenditions, Recording, SyncStats, SOURCE_FILE, SOURCE_RENDITION,
};

/// Default of [`TranscoderConfig::fragment_duration_ms`].
pub const DEFAULT_FRAGMENT_DURATION_MS: u32 = 1000;
/// Default of [`TranscoderConfig::max_duration_ms`].
pub const DEFAULT_MAX_DURATION_MS: u64 = 3_600_000;
/// Default of [`TranscoderConfig::start_window_ms`].
pub const DEFAULT_START_WINDOW_MS: u32 = 500;
/// Default of [`TranscoderConfig::compact_max_bytes`].
pub const DEFAULT_COMPACT_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Default of [`TranscoderConfig::rendition_timeout_ms`].
pub const DEFAULT_RENDITION_TIMEOUT_MS: u64 = 3_600_000;
/// Default of [`TranscoderConfig::max_queued_bytes`].
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = 256 * 1024 * 1024;
/// Default of [`TranscoderConfig::finish_timeout_ms`].
pub const DEFAULT_FINISH_TIMEOUT_MS: u64 = 60_000;
/// Default of [`TranscoderConfig::jump_threshold_ms`].
pub const DEFAULT_JUMP_THRESHOLD_MS: u32 = 1000;
/// Default of [`TranscoderConfig::max_gap_ms`].
pub const DEFAULT_MAX_GAP_MS: u64 = 300_000;

/// Settings of the transcoder (the `[transcoder]` table of the
/// configuration file); every limit has a documented default.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscoderConfig {
    /// How often the index at the front of the recorded MP4 is rewritten,
    /// ms: media is on disk and playable, and a crash loses, at most this
    /// much.
    pub fragment_duration_ms: u32,
    /// Longest recording, ms. The source file reserves room for its index
    /// at the front for this long (about 550 bytes per second per track);
    /// longer sessions are refused.
    pub max_duration_ms: u64,
    /// Media held back at the start of a session while waiting for every
    /// track's first frame, to line tracks up by their capture timestamps,
    /// ms.
    pub start_window_ms: u32,
    /// A finished source file up to this size (bytes) is compacted: the
    /// index room reserved at the front is removed (a bounded copy, a few
    /// tens of ms). 0 = never.
    pub compact_max_bytes: u64,
    /// How long renditions may take after the phone stopped, ms; a
    /// rendition still not done is left out with an error in the log.
    pub rendition_timeout_ms: u64,
    /// Extra renditions besides the source (default: one 480p H.264 + AAC
    /// compatibility rendition). Empty (`renditions = []`): source only.
    pub renditions: Vec<RenditionSpec>,
    /// Bytes that may wait in one track's queue before `push` fails, for
    /// example because a declared track never sends frames and the muxer
    /// waits for it (0 = unlimited).
    pub max_queued_bytes: u64,
    /// How long finishing waits for the muxer to finalise the file, ms.
    pub finish_timeout_ms: u64,
    /// A track's timestamps going backwards by more than this (ms) is a
    /// jump of the phone's clock, repaired by re-timing; smaller steps
    /// backwards drop the frame.
    pub jump_threshold_ms: u32,
    /// A forward step of a track's timestamps up to this long (ms) is a gap
    /// in the upload and stays in the timeline; longer is a clock jump,
    /// repaired by re-timing.
    pub max_gap_ms: u64,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        TranscoderConfig {
            fragment_duration_ms: DEFAULT_FRAGMENT_DURATION_MS,
            max_duration_ms: DEFAULT_MAX_DURATION_MS,
            start_window_ms: DEFAULT_START_WINDOW_MS,
            compact_max_bytes: DEFAULT_COMPACT_MAX_BYTES,
            rendition_timeout_ms: DEFAULT_RENDITION_TIMEOUT_MS,
            renditions: vec![RenditionSpec::compat_480p()],
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            finish_timeout_ms: DEFAULT_FINISH_TIMEOUT_MS,
            jump_threshold_ms: DEFAULT_JUMP_THRESHOLD_MS,
            max_gap_ms: DEFAULT_MAX_GAP_MS,
        }
    }
}

/// One output file of a session and its measured attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducedFile {
    /// Rendition name ("source", "480p", …).
    pub rendition: String,
    /// Where the file is.
    pub path: PathBuf,
    /// Attributes measured on the file; `url` is empty (the caller knows
    /// where the file is served).
    pub attributes: Rendition,
}

impl ProducedFile {
    /// Measures a produced file ([`probe_file`]); its attributes are named
    /// after its rendition.
    pub(crate) fn measure(rendition: &str, path: &Path) -> anyhow::Result<ProducedFile> {
        let attributes = probe_file(path).with_context(|| format!("probing {}", path.display()))?;
        Ok(ProducedFile {
            rendition: rendition.to_string(),
            path: path.to_path_buf(),
            attributes: Rendition {
                name: rendition.to_string(),
                ..attributes
            },
        })
    }
}

/// Starts recordings. Cheap to share; one per server.
#[derive(Debug, Clone)]
pub struct Transcoder {
    cfg: TranscoderConfig,
}

impl Transcoder {
    /// Initialises GStreamer and checks that the elements it needs exist.
    pub fn new(cfg: TranscoderConfig) -> anyhow::Result<Self> {
        gst::init().context("initialising GStreamer")?;
        for factory in [
            "appsrc",
            "mp4mux",
            "filesink",
            "h264parse",
            "h265parse",
            "aacparse",
            "opusparse",
            "qtdemux",
            "decodebin",
            "videoconvert",
            "videoscale",
            "jpegenc",
        ] {
            if gst::ElementFactory::find(factory).is_none() {
                anyhow::bail!("GStreamer element {factory} is missing (install the GStreamer plugins, see scripts/setup.sh)");
            }
        }
        Ok(Transcoder { cfg })
    }

    /// Whether a session with these tracks can be recorded; the error says
    /// why not (unsupported codec, missing codec_data or dimensions).
    pub fn check_tracks(tracks: &[TrackInfo]) -> Result<(), String> {
        caps::check_tracks(tracks)
    }

    /// Starts recording a session into `out_dir/source.mp4`.
    pub fn start(
        &self,
        session_id: &str,
        tracks: &[TrackInfo],
        out_dir: &Path,
    ) -> anyhow::Result<Recording> {
        Recording::start(&self.cfg, session_id, tracks, out_dir)
    }
}
