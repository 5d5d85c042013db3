//! Measuring a produced file: the video attribute data the phone shares
//! comes from the file on disk, never from what the phone claimed.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use gstreamer as gst;
use gstreamer_pbutils as gst_pbutils;
use gstreamer_pbutils::prelude::*;
use sharecast_formats::attributes::Rendition;

/// How long the discoverer may take on one file.
const DISCOVER_TIMEOUT_S: u64 = 15;

fn container_of(caps: Option<gst::Caps>, has_video: bool) -> (String, String) {
    let name = caps
        .as_ref()
        .and_then(|c| c.structure(0))
        .map(|s| {
            let variant = s.get::<&str>("variant").unwrap_or("");
            (s.name().to_string(), variant.to_string())
        })
        .unwrap_or_default();
    let (container, mime) = match (name.0.as_str(), name.1.as_str()) {
        ("video/quicktime", "apple") => ("mov", "video/quicktime"),
        ("video/quicktime", _) if has_video => ("mp4", "video/mp4"),
        ("video/quicktime", _) => ("mp4", "audio/mp4"),
        ("video/webm", _) | ("audio/webm", _) if has_video => ("webm", "video/webm"),
        ("video/webm", _) | ("audio/webm", _) => ("webm", "audio/webm"),
        ("video/x-matroska", _) | ("audio/x-matroska", _) => ("mkv", "video/x-matroska"),
        ("video/mpegts", _) => ("ts", "video/mp2t"),
        (other, _) => (other, other),
    };
    (container.to_string(), mime.to_string())
}

/// RFC 6381 codec string for a stream's caps ("avc1.64001e", "mp4a.40.2").
fn mime_codec(caps: &gst::CapsRef) -> Option<String> {
    gst_pbutils::codec_utils_caps_get_mime_codec(caps)
        .ok()
        .map(|s| s.to_string())
}

/// Runs the discoverer on a file; an error unless it read the file fully.
fn discover(path: &Path) -> anyhow::Result<gst_pbutils::DiscovererInfo> {
    let abs = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    let uri = gst::glib::filename_to_uri(&abs, None)
        .with_context(|| format!("making a URI for {}", abs.display()))?;
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(DISCOVER_TIMEOUT_S))
        .context("creating the discoverer")?;
    let info = discoverer
        .discover_uri(&uri)
        .with_context(|| format!("discovering {}", path.display()))?;
    match info.result() {
        gst_pbutils::DiscovererResult::Ok => Ok(info),
        other => bail!("discovering {}: {other:?}", path.display()),
    }
}

/// The RFC 6381 codec string of every stream, video first.
fn codecs(
    videos: &[gst_pbutils::DiscovererVideoInfo],
    audios: &[gst_pbutils::DiscovererAudioInfo],
    path: &Path,
) -> anyhow::Result<Vec<String>> {
    videos
        .iter()
        .filter_map(|v| v.caps())
        .chain(audios.iter().filter_map(|a| a.caps()))
        .map(|caps| {
            mime_codec(&caps)
                .ok_or_else(|| anyhow!("{}: no RFC 6381 codec string for {caps}", path.display()))
        })
        .collect()
}

/// Width, height and frame rate of the first video stream; zeros without
/// one.
fn picture(videos: &[gst_pbutils::DiscovererVideoInfo]) -> (u32, u32, f64) {
    videos
        .first()
        .map(|v| {
            let fr = v.framerate();
            let fps = if fr.denom() > 0 {
                f64::from(fr.numer()) / f64::from(fr.denom())
            } else {
                0.0
            };
            (v.width(), v.height(), fps)
        })
        .unwrap_or((0, 0, 0.0))
}

/// Measures a media file: container, MIME type, RFC 6381 codecs, size,
/// dimensions (coded, as stored), display rotation (degrees clockwise, from
/// the video track matrix), frame rate, duration and overall bitrate. `name`
/// and `url` are left empty for the caller.
pub fn probe_file(path: &Path) -> anyhow::Result<Rendition> {
    gst::init().context("initialising GStreamer")?;
    let size_bytes = std::fs::metadata(path)
        .with_context(|| format!("reading metadata of {}", path.display()))?
        .len();
    let info = discover(path)?;
    let videos = info.video_streams();
    let audios = info.audio_streams();
    if videos.is_empty() && audios.is_empty() {
        bail!("{}: no audio or video stream", path.display());
    }
    let (container, mime) = container_of(
        info.stream_info().and_then(|s| s.caps()),
        !videos.is_empty(),
    );
    let codecs = codecs(&videos, &audios, path)?;
    let (width, height, frame_rate) = picture(&videos);
    // The display rotation, from the video track's matrix in the file
    // (ISO BMFF only; other containers carry none that we write).
    let rotation = if !videos.is_empty() && (container == "mp4" || container == "mov") {
        crate::matrix::read_rotation(path)
            .with_context(|| format!("reading the display rotation of {}", path.display()))?
    } else {
        0
    };
    let duration_us = info.duration().map(|d| d.useconds()).unwrap_or(0);
    let duration_ms = (duration_us + 500) / 1000;
    // size * 8 / duration, with the duration as reported (milliseconds).
    let bitrate = if duration_ms > 0 {
        u64::try_from(u128::from(size_bytes) * 8 * 1000 / u128::from(duration_ms))
            .unwrap_or(u64::MAX)
    } else {
        0
    };
    Ok(Rendition {
        name: String::new(),
        url: String::new(),
        container,
        mime,
        codecs,
        size_bytes,
        width,
        height,
        rotation,
        frame_rate,
        bitrate,
        duration_ms,
    })
}
