//! Still frames: the JPEG of the frame shown at a given time of a VOD file,
//! and the poster image of a session.
//!
//! "The frame shown at `t`" is the frame whose presentation interval
//! `[pts, pts + duration)` contains `t` (presentation timestamps as stored in
//! the file, edit lists applied). To find it exactly, the file is decoded
//! from the key frame at or before `t` (a key-unit seek) and the decoded
//! frames are walked until the next one would start after `t`; that is at
//! most one GOP of decoding. The chosen frame is converted to JPEG.
//!
//! ```text
//! filesrc ! qtdemux ! queue ! decodebin ! videoconvert ! videoflip video-direction=auto
//!   ! appsink (RGB, sync=false)
//! ```
//!
//! Frames are shown upright: `videoflip` applies the file's display
//! rotation (its track matrix), as players and ffmpeg do, so the JPEG of a
//! 640x360 clip with a 90° rotation is 360x640.

use std::path::Path;

use anyhow::{anyhow, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::pipeline::make;

/// File name of the poster image inside a session's output directory.
pub const POSTER_FILE: &str = "poster.jpg";
/// File name of the poster kept while a session is live (the first frame of
/// the recording); removed when [`POSTER_FILE`] is written at the end.
pub const LIVE_POSTER_FILE: &str = "poster.live.jpg";

/// Why a still frame could not be made.
#[derive(Debug, thiserror::Error)]
pub enum StillError {
    /// The requested time is after the end of the video.
    #[error("t_ms={t_ms} is past the end of the video ({duration_ms} ms)")]
    PastEnd {
        /// Requested time.
        t_ms: u64,
        /// Duration of the video.
        duration_ms: u64,
    },
    /// The file has no video track.
    #[error("the file has no video track")]
    NoVideo,
    /// Anything else (unreadable file, decoder error), with context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// How long one still-frame extraction may take.
const TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(20);

fn bus_error(pipeline: &gst::Pipeline) -> Option<String> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
            return Some(format!("{element}: {} ({:?})", e.error(), e.debug()));
        }
    }
    None
}

/// Whether a file being recorded has a video track in its index: `None`
/// while it has no index yet (before the recording's first index update),
/// so that "no video yet" and "no video at all" can be told apart.
pub fn recorded_video(path: &Path) -> anyhow::Result<Option<bool>> {
    crate::matrix::index_has_video(path)
}

/// Decodes the frame shown at `t_ms` in `path` and returns it as a JPEG.
/// A time at the very end of the file gives the last frame.
pub fn frame_jpeg(path: &Path, t_ms: u64) -> Result<Vec<u8>, StillError> {
    let sample = frame_at(path, t_ms)?;
    let caps = gst::Caps::builder("image/jpeg").build();
    let jpeg = gstreamer_video::convert_sample(&sample, &caps, TIMEOUT)
        .map_err(|e| anyhow!("encoding the frame as JPEG: {e}"))?;
    let buffer = jpeg
        .buffer()
        .ok_or_else(|| anyhow!("JPEG encoder produced no buffer"))?;
    let map = buffer
        .map_readable()
        .map_err(|_| anyhow!("JPEG buffer is not readable"))?;
    Ok(map.as_slice().to_vec())
}

/// Writes the poster image of a VOD file (the frame at one second, or at
/// the middle of shorter videos) to `out`. Returns `Ok(false)` for a file
/// without video.
pub(crate) fn write_poster(path: &Path, out: &Path) -> anyhow::Result<bool> {
    let duration_ms = crate::probe_file(path)
        .with_context(|| format!("probing {}", path.display()))?
        .duration_ms;
    let t = (duration_ms / 2).min(1000);
    match frame_jpeg(path, t) {
        Ok(jpeg) => {
            let tmp = out.with_extension("jpg.tmp");
            std::fs::write(&tmp, &jpeg).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
            Ok(true)
        }
        Err(StillError::NoVideo) => Ok(false),
        Err(e) => Err(anyhow::Error::new(e).context(format!("poster of {}", path.display()))),
    }
}

/// The still-frame pipeline of one file. Dropping it stops the pipeline.
struct StillPipeline {
    pipeline: gst::Pipeline,
    /// In front of the decoder: linked once the demuxer has a video pad.
    queue: gst::Element,
    sink: gst_app::AppSink,
}

impl Drop for StillPipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Links the demuxer's video pad to the queue, and the decoder's video pad
/// to the converter, as they appear.
fn link_video_pads(
    demux: &gst::Element,
    queue: &gst::Element,
    decode: &gst::Element,
    convert: &gst::Element,
) {
    let queue = queue.clone();
    demux.connect_pad_added(move |_, pad| {
        if pad.name().starts_with("video_") {
            if let Some(sinkpad) = queue.static_pad("sink") {
                if !sinkpad.is_linked() {
                    let _ = pad.link(&sinkpad);
                }
            }
        }
    });
    let convert = convert.clone();
    decode.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if let (true, Some(sinkpad)) = (is_video, convert.static_pad("sink")) {
            if !sinkpad.is_linked() {
                let _ = pad.link(&sinkpad);
            }
        }
    });
}

impl StillPipeline {
    fn build(path: &Path) -> anyhow::Result<StillPipeline> {
        let pipeline = gst::Pipeline::with_name("still");
        let src = gst::ElementFactory::make("filesrc")
            .property("location", path.to_string_lossy().as_ref())
            .build()
            .context("creating filesrc")?;
        let demux = make("qtdemux")?;
        let queue = make("queue")?;
        let decode = make("decodebin")?;
        let convert = make("videoconvert")?;
        // Shown upright: the file's display rotation (the track matrix, which
        // qtdemux announces as an image-orientation tag) is applied.
        let flip = gst::ElementFactory::make("videoflip")
            .property_from_str("video-direction", "auto")
            .build()
            .context("creating videoflip")?;
        let sink = gst_app::AppSink::builder()
            .caps(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "RGB")
                    .build(),
            )
            .sync(false)
            .max_buffers(2)
            .build();
        let still = StillPipeline {
            pipeline,
            queue,
            sink,
        };
        let elements = [&src, &demux, &still.queue, &decode, &convert, &flip];
        still
            .pipeline
            .add_many(elements)
            .and_then(|()| still.pipeline.add(&still.sink))
            .context("building the still-frame pipeline")?;
        src.link(&demux).context("linking filesrc to qtdemux")?;
        still
            .queue
            .link(&decode)
            .context("linking queue to decodebin")?;
        gst::Element::link_many([&convert, &flip, still.sink.upcast_ref()])
            .context("linking videoconvert, videoflip and appsink")?;
        link_video_pads(&demux, &still.queue, &decode, &convert);
        Ok(still)
    }

    /// Whether the demuxer gave a video pad.
    fn has_video(&self) -> bool {
        self.queue.static_pad("sink").is_some_and(|p| p.is_linked())
    }

    /// Prerolls the pipeline; returns the file's duration, ms.
    fn preroll(&self, path: &Path) -> Result<u64, StillError> {
        let pipeline = &self.pipeline;
        pipeline.set_state(gst::State::Paused).map_err(|_| {
            anyhow!(
                "opening {}: {}",
                path.display(),
                bus_error(pipeline).unwrap_or_default()
            )
        })?;
        let (res, _, _) = pipeline.state(TIMEOUT);
        if res.is_err() {
            let err = bus_error(pipeline).unwrap_or_default();
            if !self.has_video() {
                return Err(StillError::NoVideo);
            }
            return Err(anyhow!("decoding {}: {err}", path.display()).into());
        }
        if !self.has_video() {
            return Err(StillError::NoVideo);
        }
        Ok(pipeline
            .query_duration::<gst::ClockTime>()
            .map(|d| d.mseconds())
            .unwrap_or(0))
    }

    /// Seeks to the key frame at or before `target` and walks to the frame
    /// shown at `target`. A key-unit seek may land on a key frame after t
    /// (open GOPs: the key frame's decode time is before t, the frames shown
    /// just before it are not decodable from it); then it seeks further back
    /// and tries again.
    fn frame_shown_at(
        &self,
        target: gst::ClockTime,
        path: &Path,
    ) -> Result<Option<gst::Sample>, StillError> {
        let mut seek_to = target;
        let mut back = gst::ClockTime::from_seconds(1);
        loop {
            self.pipeline
                .seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT | gst::SeekFlags::SNAP_BEFORE,
                    seek_to,
                )
                .map_err(|_| anyhow!("seeking {} to {seek_to}", path.display()))?;
            let (first, chosen) = walk_to(&self.pipeline, &self.sink, target, path)?;
            if first.is_some_and(|f| f > target) && seek_to > gst::ClockTime::ZERO {
                seek_to = seek_to.saturating_sub(back);
                back *= 2;
                continue;
            }
            return Ok(chosen);
        }
    }
}

fn frame_at(path: &Path, t_ms: u64) -> Result<gst::Sample, StillError> {
    gst::init().context("initialising GStreamer")?;
    if !path.is_file() {
        return Err(anyhow!("{} does not exist", path.display()).into());
    }
    let still = StillPipeline::build(path)?;
    let duration_ms = still.preroll(path)?;
    if t_ms > duration_ms {
        return Err(StillError::PastEnd { t_ms, duration_ms });
    }
    still
        .pipeline
        .set_state(gst::State::Playing)
        .map_err(|_| anyhow!("decoding {}", path.display()))?;
    let chosen = still.frame_shown_at(gst::ClockTime::from_mseconds(t_ms), path)?;
    drop(still);
    chosen.ok_or_else(|| StillError::Other(anyhow!("no frame decoded at {t_ms} ms")))
}

/// Pulls decoded frames after a seek until the next one starts after
/// `target`. Returns the first frame's time and the last frame starting at or
/// before `target` (or the first frame, if all start after it).
fn walk_to(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    target: gst::ClockTime,
    path: &Path,
) -> Result<(Option<gst::ClockTime>, Option<gst::Sample>), StillError> {
    let mut first = None;
    let mut chosen: Option<gst::Sample> = None;
    loop {
        let Some(sample) = sink.try_pull_sample(TIMEOUT) else {
            if sink.is_eos() {
                break;
            }
            return Err(anyhow!(
                "decoding {} at {target}: {}",
                path.display(),
                bus_error(pipeline).unwrap_or_else(|| "timed out".into())
            )
            .into());
        };
        let stream_time = match (sample.buffer().and_then(|b| b.pts()), sample.segment()) {
            (Some(pts), Some(seg)) => seg
                .downcast_ref::<gst::ClockTime>()
                .and_then(|s| s.to_stream_time(pts))
                .unwrap_or(pts),
            (Some(pts), None) => pts,
            (None, _) => continue,
        };
        first.get_or_insert(stream_time);
        if stream_time > target {
            if chosen.is_none() {
                // Every frame starts after t (t before the first frame).
                chosen = Some(sample);
            }
            break;
        }
        chosen = Some(sample);
    }
    Ok((first, chosen))
}
