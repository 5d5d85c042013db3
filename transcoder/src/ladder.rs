//! Extra renditions (the ladder): one pipeline per rendition, fed with the
//! same frames as the source rendition while the phone uploads.
//!
//! ```text
//! video: appsrc ! h264parse|h265parse ! avdec_h264|avdec_h265 thread-type=slice
//!          ! videoconvert ! videoscale
//!          ! video/x-raw,width=W,height=H,pixel-aspect-ratio=1/1
//!          ! x264enc speed-preset=<preset> bitrate=<kbps> key-int-max=<2 s> bframes=0
//!          ! video/x-h264,profile=main ! h264parse ! queue ! mp4mux faststart=true ! filesink
//! audio: appsrc ! aacparse                                             ! queue ! mux.   (AAC: kept)
//!        appsrc ! opusparse ! opusdec ! audioconvert ! audioresample ! avenc_aac ! aacparse ! queue ! mux.
//! ```
//!
//! Each rendition runs in its own pipeline so that a slow encoder never holds
//! up the source rendition: its appsrcs queue without limit (encoded input
//! only, a few hundred kB per second), so nothing is dropped when the machine
//! cannot encode in real time; the rest is encoded after the phone stops,
//! with progress in the log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sharecast_formats::media::{Codec, FrameSink, MediaFrame, TrackInfo};

use crate::caps::parser_for_track;
use crate::pipeline::{
    frame_buffer, input_appsrc, link_to_muxer, make, shifted_segment, video_rotation, TS_SHIFT_US,
};
use crate::recording::watch_bus;

/// One rung of the rendition ladder (besides the source rendition, which is
/// always produced): a `[[transcoder.renditions]]` table of the
/// configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// Rendition name; the file is `<name>.mp4`. Letters, digits, `_`, `-`.
    pub name: String,
    /// Length of the shorter side of the picture, pixels (480 gives 854x480
    /// for 16:9 landscape, 480x854 for portrait). Never upscaled.
    pub short_side: u32,
    /// Video bitrate, kbit/s.
    pub video_kbps: u32,
    /// AAC bitrate when the audio has to be encoded (Opus input), bit/s.
    pub audio_bps: u32,
    /// x264 speed preset (ultrafast … veryslow).
    pub x264_preset: String,
}

impl RenditionSpec {
    /// The default compatibility rendition: H.264 main profile + AAC, 480p.
    pub fn compat_480p() -> Self {
        RenditionSpec {
            name: "480p".into(),
            short_side: 480,
            video_kbps: 1000,
            audio_bps: 128_000,
            x264_preset: "veryfast".into(),
        }
    }
}

/// Output size for a source size: the shorter side becomes `short_side`
/// (never upscaled), the other keeps the aspect ratio; both even.
pub(crate) fn scaled_size(width: u32, height: u32, short_side: u32) -> (u32, u32) {
    let even = |v: u64| u32::try_from((v.div_ceil(2) * 2).max(2)).unwrap_or(u32::MAX);
    let short = width.min(height).max(1);
    if short <= short_side {
        return (even(u64::from(width)), even(u64::from(height)));
    }
    let scale =
        |v: u32| (u64::from(v) * u64::from(short_side) + u64::from(short) / 2) / u64::from(short);
    (even(scale(width)), even(scale(height)))
}

pub(crate) struct Encoder {
    pub(crate) spec: RenditionSpec,
    pipeline: gst::Pipeline,
    appsrcs: Vec<(u8, gst_app::AppSrc)>,
    /// Per track, the pad the encoded output leaves by (before the queue in
    /// front of the muxer): where a live tap listens.
    outputs: Vec<(u8, gst::Pad)>,
    error: Arc<Mutex<Option<String>>>,
    pub(crate) path: PathBuf,
    tmp: PathBuf,
    session_id: String,
    /// Display rotation, degrees clockwise, written into the file's matrix.
    rotation: u32,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("rendition", &self.spec.name)
            .finish_non_exhaustive()
    }
}

/// Frames of a rendition on their way to its live stream.
#[derive(Default)]
struct TapState {
    tracks: std::collections::BTreeMap<u8, TrackInfo>,
    /// Frames that came before every track's format was known.
    pending: Vec<MediaFrame>,
    out: Option<Box<dyn FrameSink>>,
    seq: std::collections::HashMap<u8, u64>,
    ended: usize,
    /// Given up (no consumer, or too much waiting).
    closed: bool,
    /// The source's display rotation, which the rendition keeps.
    rotation: u32,
}

/// Frames kept while waiting for the format of every track.
const TAP_MAX_PENDING: usize = 600;

impl TapState {
    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        track: u8,
        pad: &gst::Pad,
        buffer: &gst::Buffer,
        n_tracks: usize,
        name: &str,
        tap: &crate::RenditionTap,
        base_us: &(dyn Fn() -> i64 + Send + Sync),
    ) -> anyhow::Result<()> {
        if let std::collections::btree_map::Entry::Vacant(e) = self.tracks.entry(track) {
            let caps = pad
                .current_caps()
                .ok_or_else(|| anyhow!("track {track}: output without caps"))?;
            let mut info = crate::source::track_info_from_caps(track, &caps)?;
            if info.width.is_some() {
                info.rotation = self.rotation;
            }
            e.insert(info);
        }
        let to_us = |t: gst::ClockTime| {
            i64::try_from(t.useconds())
                .unwrap_or(i64::MAX)
                .saturating_sub(TS_SHIFT_US)
        };
        let (Some(pts), dts) = (buffer.pts().or(buffer.dts()), buffer.dts()) else {
            return Ok(()); // nothing to place it by
        };
        let seq = self.seq.entry(track).or_insert(0);
        let frame = MediaFrame {
            track,
            seq: *seq,
            pts_us: to_us(pts),
            dts_us: to_us(dts.unwrap_or(pts)),
            duration_us: buffer
                .duration()
                .map(|d| u32::try_from(d.useconds()).unwrap_or(u32::MAX))
                .unwrap_or(0),
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: bytes::Bytes::copy_from_slice(
                buffer
                    .map_readable()
                    .map_err(|_| anyhow!("unreadable buffer"))?
                    .as_slice(),
            ),
        };
        *seq += 1;
        if let Some(out) = &self.out {
            out.push(&frame);
            return Ok(());
        }
        self.pending.push(frame);
        if self.tracks.len() < n_tracks {
            if self.pending.len() > TAP_MAX_PENDING {
                bail!("a track produced no output after {TAP_MAX_PENDING} frames");
            }
            return Ok(());
        }
        let tracks: Vec<TrackInfo> = self.tracks.values().cloned().collect();
        let out = tap(name, &tracks, base_us()).ok_or_else(|| anyhow!("no live stream for it"))?;
        for f in self.pending.drain(..) {
            out.push(&f);
        }
        self.out = Some(out);
        Ok(())
    }
}

/// Refuses a rendition name that cannot name a file or a live path.
fn check_name(spec: &RenditionSpec) -> anyhow::Result<()> {
    let valid_name = !spec.name.is_empty()
        && spec.name.len() <= 32
        && spec.name != crate::SOURCE_RENDITION
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_name {
        bail!("rendition name {:?} is not allowed", spec.name);
    }
    Ok(())
}

/// The rendition's muxer (`faststart`, its scratch media file at `mdat`)
/// and file sink (writing `tmp`), added to the pipeline and linked.
fn rendition_muxer(
    pipeline: &gst::Pipeline,
    spec: &RenditionSpec,
    tmp: &Path,
    mdat: &Path,
) -> anyhow::Result<gst::Element> {
    let mux = gst::ElementFactory::make("mp4mux")
        .name(format!("mux-{}", spec.name))
        .property("faststart", true)
        .property("faststart-file", mdat.to_string_lossy().as_ref())
        .build()
        .context("creating mp4mux")?;
    let sink = gst::ElementFactory::make("filesink")
        .property("location", tmp.to_string_lossy().as_ref())
        .build()
        .context("creating filesink")?;
    pipeline.add_many([&mux, &sink]).context("adding mp4mux")?;
    mux.link(&sink).context("linking mp4mux to filesink")?;
    Ok(mux)
}

/// The elements that turn a parsed video track into the rendition's
/// H.264: decoder, scaler to the rendition's size, x264 and parser.
fn video_encoding(
    t: &TrackInfo,
    codec: Codec,
    spec: &RenditionSpec,
) -> anyhow::Result<Vec<gst::Element>> {
    let (w, h) = scaled_size(t.width.unwrap_or(2), t.height.unwrap_or(2), spec.short_side);
    let fps = t.framerate.map(|(n, d)| n.div_ceil(d.max(1))).unwrap_or(30);
    let decoder = if codec == Codec::H264 {
        "avdec_h264"
    } else {
        "avdec_h265"
    };
    let scale_caps = gst::Caps::builder("video/x-raw")
        .field("width", i32::try_from(w).unwrap_or(640))
        .field("height", i32::try_from(h).unwrap_or(480))
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let x264 = gst::ElementFactory::make("x264enc")
        .name(format!("x264enc-{}", spec.name))
        .property("bitrate", spec.video_kbps.max(1))
        .property("key-int-max", (fps * 2).max(1))
        .property("bframes", 0u32)
        .property_from_str("speed-preset", &spec.x264_preset)
        .build()
        .context("creating x264enc (gstreamer1.0-plugins-ugly)")?;
    let profile = gst::Caps::builder("video/x-h264")
        .field("profile", "main")
        .build();
    // Slice threads only: frame threading costs this decoder more CPU
    // (thread hand-offs) for no gain in a ladder whose encoder already
    // keeps every core busy (figures in bench/RESULTS.md).
    let decoder = gst::ElementFactory::make(decoder)
        .property_from_str("thread-type", "slice")
        .build()
        .with_context(|| format!("creating {decoder} (gstreamer1.0-libav)"))?;
    let capsfilter = |caps: &gst::Caps| {
        gst::ElementFactory::make("capsfilter")
            .property("caps", caps)
            .build()
            .context("creating capsfilter")
    };
    Ok(vec![
        decoder,
        make("videoconvert")?,
        make("videoscale")?,
        capsfilter(&scale_caps)?,
        x264,
        capsfilter(&profile)?,
        make("h264parse")?,
    ])
}

/// The elements that turn a parsed audio track into the rendition's AAC:
/// none for AAC (kept as is), a decoder and an AAC encoder for Opus.
fn audio_encoding(codec: Codec, spec: &RenditionSpec) -> anyhow::Result<Vec<gst::Element>> {
    if codec != Codec::Opus {
        return Ok(Vec::new());
    }
    let aac = gst::ElementFactory::make("avenc_aac")
        .property("bitrate", i32::try_from(spec.audio_bps).unwrap_or(128_000))
        .build()
        .context("creating avenc_aac (gstreamer1.0-libav)")?;
    Ok(vec![
        make("opusdec")?,
        make("audioconvert")?,
        make("audioresample")?,
        aac,
        make("aacparse")?,
    ])
}

/// One track's branch of a rendition: appsrc, parser, the encoding, a
/// queue, into the muxer. Returns the appsrc and the pad the encoded output
/// leaves by (where a live tap listens).
fn rendition_branch(
    pipeline: &gst::Pipeline,
    mux: &gst::Element,
    t: &TrackInfo,
    codec: Codec,
    spec: &RenditionSpec,
) -> anyhow::Result<(gst_app::AppSrc, Option<gst::Pad>)> {
    let appsrc = input_appsrc(t)?;
    let parser = make(parser_for_track(t)?)?;
    let mut chain: Vec<gst::Element> = vec![appsrc.clone().upcast(), parser];
    if codec.is_video() {
        chain.extend(video_encoding(t, codec, spec)?);
    } else {
        chain.extend(audio_encoding(codec, spec)?);
    }
    let output = chain.last().and_then(|e| e.static_pad("src"));
    let queue = make("queue")?;
    chain.push(queue.clone());
    pipeline
        .add_many(chain.iter())
        .context("adding rendition elements")?;
    gst::Element::link_many(chain.iter())
        .with_context(|| format!("linking track {} of rendition {}", t.id, spec.name))?;
    link_to_muxer(&queue, mux, codec.is_video(), t.id)?;
    Ok((appsrc, output))
}

impl Encoder {
    /// Builds and starts the pipeline of one rendition. `None` when the
    /// rendition does not apply (no video track).
    pub(crate) fn start(
        session_id: &str,
        spec: &RenditionSpec,
        tracks: &[TrackInfo],
        out_dir: &Path,
    ) -> anyhow::Result<Option<Encoder>> {
        if !tracks
            .iter()
            .any(|t| t.codec().is_some_and(|c| c.is_video()))
        {
            return Ok(None);
        }
        check_name(spec)?;
        let path = out_dir.join(format!("{}.mp4", spec.name));
        let tmp = out_dir.join(format!(".{}.mp4.part", spec.name));
        let mdat = out_dir.join(format!(".{}.mp4.mdat", spec.name));
        let pipeline = gst::Pipeline::with_name(&format!("rendition-{}-{session_id}", spec.name));
        let mux = rendition_muxer(&pipeline, spec, &tmp, &mdat)?;
        let mut appsrcs = Vec::new();
        let mut outputs = Vec::new();
        let mut have_video = false;
        for t in tracks {
            let Some(codec) = t.codec() else { continue };
            if codec.is_video() && have_video {
                continue; // one video track per rendition
            }
            have_video |= codec.is_video();
            let (appsrc, output) = rendition_branch(&pipeline, &mux, t, codec, spec)?;
            outputs.extend(output.map(|pad| (t.id, pad)));
            appsrcs.push((t.id, appsrc));
        }
        let error = watch_bus(&pipeline, session_id, &format!("rendition {}", spec.name))?;
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            anyhow!(
                "starting rendition {} of session {session_id}: {}",
                spec.name,
                error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
                    .unwrap_or_default()
            )
        })?;
        Ok(Some(Encoder {
            spec: spec.clone(),
            pipeline,
            appsrcs,
            outputs,
            error,
            path,
            tmp,
            session_id: session_id.to_string(),
            rotation: video_rotation(tracks),
        }))
    }

    /// Sends the encoded output of this rendition, frame by frame, to what
    /// `tap` returns once every track's format is known (see
    /// [`crate::RenditionTap`]); ends it when the encoder reaches its end.
    pub(crate) fn tap(
        &self,
        tap: crate::RenditionTap,
        base_us: Arc<dyn Fn() -> i64 + Send + Sync>,
    ) {
        let state = Arc::new(Mutex::new(TapState {
            rotation: self.rotation,
            ..TapState::default()
        }));
        let n_tracks = self.outputs.len();
        for (track, pad) in &self.outputs {
            let (track, state, tap, base_us) =
                (*track, state.clone(), tap.clone(), base_us.clone());
            let name = self.spec.name.clone();
            let session = self.session_id.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
                move |pad, info| {
                    let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                    match &info.data {
                        Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Eos => {
                            st.ended += 1;
                            if st.ended >= n_tracks {
                                // The rendition's live stream ends with it.
                                st.out = None;
                                st.pending.clear();
                            }
                        }
                        Some(gst::PadProbeData::Buffer(buffer)) if !st.closed => {
                            if let Err(e) =
                                st.take(track, pad, buffer, n_tracks, &name, &tap, &*base_us)
                            {
                                tracing::warn!(session = %session, rendition = %name, "live rendition stopped: {e:#}");
                                st.closed = true;
                                st.out = None;
                                st.pending.clear();
                            }
                        }
                        _ => {}
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        }
    }

    pub(crate) fn failed(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues a sample for this rendition; never blocks.
    pub(crate) fn push(&self, track: u8, sample: &gst::Sample) -> anyhow::Result<()> {
        if let Some(e) = self.failed() {
            bail!("rendition {} failed: {e}", self.spec.name);
        }
        if let Some((_, src)) = self.appsrcs.iter().find(|(id, _)| *id == track) {
            src.push_sample(sample)
                .map_err(|flow| anyhow!("rendition {}: {flow:?}", self.spec.name))?;
        }
        Ok(())
    }

    /// Media time the encoder has reached.
    pub(crate) fn position(&self) -> gst::ClockTime {
        self.pipeline
            .query_position::<gst::ClockTime>()
            .unwrap_or(gst::ClockTime::ZERO)
    }

    /// Encoded input waiting in this rendition's queues, bytes.
    pub(crate) fn queued_bytes(&self) -> u64 {
        self.appsrcs
            .iter()
            .map(|(_, src)| src.current_level_bytes())
            .sum()
    }

    pub(crate) fn end_of_stream(&self) {
        for (_, src) in &self.appsrcs {
            let _ = src.end_of_stream();
        }
    }

    /// Waits until the rendition is written, logging progress every second
    /// (`media_end` is the last timestamp pushed, for the percentage).
    pub(crate) fn wait(
        &self,
        timeout: Duration,
        media_end: gst::ClockTime,
        on_progress: OnProgress<'_>,
    ) -> anyhow::Result<()> {
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| anyhow!("pipeline without bus"))?;
        let started = Instant::now();
        loop {
            let msg = bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(1),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            );
            match msg.as_ref().map(|m| m.view()) {
                Some(gst::MessageView::Eos(_)) => break,
                Some(_) => bail!(
                    "rendition {} failed: {}",
                    self.spec.name,
                    self.failed().unwrap_or_default()
                ),
                None => {}
            }
            let done = self.position();
            on_progress(done.mseconds(), media_end.mseconds());
            let pct = if media_end.nseconds() > 0 {
                (done.nseconds().min(media_end.nseconds()) * 100) / media_end.nseconds()
            } else {
                0
            };
            tracing::info!(
                session = %self.session_id,
                rendition = %self.spec.name,
                encoded_ms = done.mseconds(),
                total_ms = media_end.mseconds(),
                percent = pct,
                "encoding rendition after the stop"
            );
            if started.elapsed() > timeout {
                bail!(
                    "rendition {} did not finish within {timeout:?}",
                    self.spec.name
                );
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        // The rendition keeps the source's display rotation: the picture is
        // scaled as coded (landscape sensor frame) and players turn it.
        if self.rotation != 0 {
            crate::matrix::write_rotation(&self.tmp, self.rotation).with_context(|| {
                format!(
                    "writing the display rotation of rendition {}",
                    self.spec.name
                )
            })?;
        }
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("moving {} to {}", self.tmp.display(), self.path.display()))?;
        on_progress(media_end.mseconds(), media_end.mseconds());
        Ok(())
    }
}

/// Encoded input that may wait in an on-demand encoder's queues before the
/// reader pauses, bytes: a finished file is read much faster than x264
/// encodes it, and the whole file must not end up in memory.
const ON_DEMAND_MAX_QUEUED_BYTES: u64 = 8 * 1024 * 1024;

/// Told how far an encode is: media time encoded and the whole, ms (every
/// half second while frames are fed, every second while the encoder
/// finishes, and once more at the end with both equal).
pub type OnProgress<'a> = &'a dyn Fn(u64, u64);

/// How often [`transcode_file`] reports progress while it feeds frames.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Encodes a finished file (a session's `source.mp4`) into one rendition, on
/// demand: the file is read frame by frame ([`crate::source::FileSource`])
/// into the same encoder the ladder uses while a phone uploads, so the
/// output is the same H.264 main + AAC MP4 (`out_dir/<name>.mp4`, written
/// under a temporary name and renamed when complete). The attributes are
/// measured on the produced file ([`crate::probe_file`]). Blocking; fails
/// (leaving no file) when the input cannot be read, has no video, the
/// encoder fails, or it takes longer than `timeout`. `on_progress` is told
/// how far it is.
pub fn transcode_file(
    input: &Path,
    spec: &RenditionSpec,
    out_dir: &Path,
    timeout: Duration,
    on_progress: OnProgress<'_>,
) -> anyhow::Result<crate::ProducedFile> {
    let started = Instant::now();
    let mut source =
        crate::source::FileSource::open(input).context("opening the file to transcode")?;
    let tracks = source.tracks.clone();
    let id = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "on-demand".into());
    let encoder = Encoder::start(&id, spec, &tracks, out_dir)?
        .ok_or_else(|| anyhow!("{} has no video track to transcode", input.display()))?;
    let segment = shifted_segment().upcast();
    let total_ms = source.duration().map_or(0, |d| d.as_millis() as u64);
    let mut end_us = 0i64;
    let mut reported = Instant::now();
    while let Some(frame) = source.next_frame() {
        let frame = frame.with_context(|| format!("reading {}", input.display()))?;
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = Instant::now();
            on_progress(encoder.position().mseconds(), total_ms);
        }
        // Back-pressure: wait while the encoder is behind.
        while encoder.queued_bytes() > ON_DEMAND_MAX_QUEUED_BYTES {
            if let Some(e) = encoder.failed() {
                bail!("rendition {} failed: {e}", spec.name);
            }
            if started.elapsed() > timeout {
                bail!("rendition {} did not finish within {timeout:?}", spec.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        end_us = end_us.max(frame.pts_us.saturating_add(i64::from(frame.duration_us)));
        let sample = gst::Sample::builder()
            .buffer(&frame_buffer(&frame, frame.pts_us, frame.dts_us)?)
            .segment(&segment)
            .build();
        encoder.push(frame.track, &sample)?;
    }
    drop(source);
    encoder.end_of_stream();
    let left = timeout.saturating_sub(started.elapsed());
    let media_end = gst::ClockTime::from_useconds(u64::try_from(end_us).unwrap_or(0));
    encoder.wait(left, media_end, on_progress)?;
    let file = crate::ProducedFile::measure(&spec.name, &encoder.path)?;
    tracing::info!(
        input = %input.display(),
        rendition = %spec.name,
        size = file.attributes.size_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "on-demand rendition finished"
    );
    Ok(file)
}

impl Drop for Encoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        let _ = std::fs::remove_file(&self.tmp);
        // The faststart scratch file, `.{name}.mp4.mdat`.
        let _ = std::fs::remove_file(self.tmp.with_extension("mdat"));
    }
}

#[cfg(test)]
mod tests {
    use super::scaled_size;

    #[test]
    fn scales_the_short_side_and_never_up() {
        assert_eq!(scaled_size(1920, 1080, 480), (854, 480));
        assert_eq!(scaled_size(720, 1280, 480), (480, 854));
        assert_eq!(scaled_size(640, 360, 480), (640, 360));
        assert_eq!(scaled_size(641, 361, 480), (642, 362));
    }
}
