//! One session being muxed into `source.mp4` while the phone uploads, plus
//! the extra renditions of the ladder (see [`crate::ladder`]).
//!
//! Source pipeline, one branch per track, one muxer:
//!
//! ```text
//! appsrc name=track{id} caps=<from TrackInfo> ! {h264,h265,aac,opus}parse name=parse{id}
//!   ! mp4mux name=vodmux reserved-max-duration=<max_duration_ms> reserved-moov-update-period=<fragment_duration_ms>
//!   ! filesink name=vodsink location=<out_dir>/source.mp4
//! ```
//!
//! **Finalisation without a rewrite** ("robust muxing"): mp4mux reserves
//! room for the index (`moov`) at the front of the file, right after `ftyp`,
//! and rewrites the index in that room every `fragment_duration_ms` while
//! media data is appended behind it. So, at every moment:
//! - the file on disk is a regular MP4 with the index first, playable (and
//!   progressively downloadable) up to the last index update;
//! - a crash (even `kill -9`) leaves a file that plays up to the last index
//!   update, at most `fragment_duration_ms` behind;
//! - finishing writes only the last index into the reserved room and the
//!   final `mdat` size: the cost does not depend on the recording's length,
//!   and there is no whole-file read, copy or rename at the end.
//!
//! It is a regular (not fragmented) MP4, so mp4mux writes edit lists: the
//! tracks' start offsets and B-frame composition delays are kept (mp4mux
//! 1.22 writes no edit lists in fragmented mode). The price is the reserved
//! room: mp4mux keeps two copies of the index room, each about
//! `550 bytes × seconds × tracks` (8 MB in all for the default one hour and
//! two tracks). Files up to `compact_max_bytes` (default 32 MiB) are
//! compacted at the end (the room removed, chunk offsets patched, see
//! [`crate::compact`]): a bounded cost, so short clips carry no overhead and
//! long ones keep a `free` box of a few MB at the front.
//! Recordings longer than `max_duration_ms` are refused with a clear error.
//!
//! **Timestamp sync**: frames carry capture timestamps (microseconds) on the
//! phone's clock. The recording holds back the first frames until every track
//! has delivered one (or [`crate::TranscoderConfig::start_window_ms`] of media
//! has gone by), takes the smallest presentation timestamp among them as the
//! session's start, and subtracts it from every timestamp of every track. The
//! file therefore starts at 0 with the audio/video offsets of the capture
//! intact. After that, frames are placed by their timestamps only:
//! - a gap in the upload (no frames for a while) stays a gap in the
//!   timeline, and the tracks stay aligned after it;
//! - a frame whose decode timestamp is not after its track's previous one
//!   (by less than `jump_threshold_ms` backwards, or equal) is dropped
//!   (warning, counted): a duplicate or a reordering, never a corrupt file;
//! - a jump of a track's timestamps backwards by more than
//!   `jump_threshold_ms`, or forwards by more than `max_gap_ms`, is a jump
//!   of the phone's clock: the session is re-timed so that the frame follows
//!   its track's previous frame directly; the same correction applies to
//!   every track from then on (warning with the size of the jump);
//! - audio clock drift against video is kept as captured: each sample is
//!   placed at its own timestamp (MP4 sample durations absorb the drift), so
//!   sound and picture stay aligned on the capture clock over any length.
//!
//! Decode timestamps of B-frame video come before the first presentation
//! timestamp, that is below 0. GStreamer buffers cannot carry negative
//! times, so, like the encoders do, buffers are stamped `TS_SHIFT + t` in a
//! segment that starts at `TS_SHIFT`: running times are then exactly `t`,
//! negative DTS included, and mp4mux writes the matching edit list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sharecast_formats::media::{FrameSink, MediaFrame, TrackInfo};

use crate::caps::{check_tracks, parser_for_track};
use crate::ladder::Encoder;
use crate::pipeline::{
    frame_buffer, input_appsrc, link_to_muxer, make_named, shifted_segment, video_rotation,
    TS_SHIFT_US,
};
use crate::{ProducedFile, TranscoderConfig};

/// Name of the source rendition (the phone's encoding, remuxed).
pub const SOURCE_RENDITION: &str = "source";
/// File name of the source rendition inside the session's output directory.
pub const SOURCE_FILE: &str = "source.mp4";

struct Track {
    appsrc: gst_app::AppSrc,
    /// Last decode timestamp pushed, microseconds after the session start.
    last_dts_us: Option<i64>,
    /// Duration of the last frame pushed (its own, or the DTS step).
    last_dur_us: i64,
}

/// Start-of-session alignment, clock repair and counters.
struct Sync {
    base_us: Option<i64>,
    /// Correction added to every timestamp after a clock jump.
    offset_us: i64,
    pending: Vec<MediaFrame>,
    tracks: HashMap<u8, Track>,
    dropped: u64,
    pushed: u64,
    jumps: u64,
    /// Largest end time pushed (µs after the start).
    end_us: i64,
}

/// Counters of a finished recording's timestamp repairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Frames pushed to the muxer.
    pub pushed: u64,
    /// Frames dropped (timestamp going backwards a little, before the start).
    pub dropped: u64,
    /// Clock jumps repaired by re-timing.
    pub jumps: u64,
}

/// The limits of a recording, from [`TranscoderConfig`], in the units the
/// recording works in.
struct Limits {
    start_window_us: i64,
    max_queued_bytes: u64,
    max_duration_us: i64,
    jump_threshold_us: i64,
    max_gap_us: i64,
    finish_timeout: Duration,
    rendition_timeout: Duration,
    compact_max_bytes: u64,
}

impl Limits {
    fn new(cfg: &TranscoderConfig) -> Limits {
        Limits {
            start_window_us: i64::from(cfg.start_window_ms) * 1000,
            max_queued_bytes: cfg.max_queued_bytes,
            max_duration_us: i64::try_from(cfg.max_duration_ms.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            jump_threshold_us: i64::from(cfg.jump_threshold_ms) * 1000,
            max_gap_us: i64::try_from(cfg.max_gap_ms.saturating_mul(1000)).unwrap_or(i64::MAX),
            finish_timeout: Duration::from_millis(cfg.finish_timeout_ms),
            rendition_timeout: Duration::from_millis(cfg.rendition_timeout_ms),
            compact_max_bytes: cfg.compact_max_bytes,
        }
    }
}

/// A session being recorded. Push frames in arrival order; call
/// [`Recording::finish`] at the end of the session.
pub struct Recording {
    session_id: String,
    pipeline: gst::Pipeline,
    sync: Mutex<Sync>,
    segment: gst::Segment,
    error: Arc<Mutex<Option<String>>>,
    path: PathBuf,
    out_dir: PathBuf,
    encoders: Vec<Encoder>,
    /// The capture timestamp of the recording's start, once known.
    base: Arc<std::sync::atomic::AtomicI64>,
    /// Display rotation of the video track, degrees clockwise, written into
    /// every output's track matrix at the end.
    rotation: u32,
    track_count: usize,
    limits: Limits,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("session_id", &self.session_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Media each mp4mux pad may queue, ns.
const MUX_QUEUE_NS: u64 = 2_000_000_000;

/// The source muxer and its file sink, added to the pipeline and linked.
fn source_muxer(
    pipeline: &gst::Pipeline,
    cfg: &TranscoderConfig,
    path: &Path,
) -> anyhow::Result<gst::Element> {
    let max_duration_ns = cfg.max_duration_ms.max(1).saturating_mul(1_000_000);
    let vodmux = gst::ElementFactory::make("mp4mux")
        .name("vodmux")
        .property("reserved-max-duration", max_duration_ns)
        .property(
            "reserved-moov-update-period",
            u64::from(cfg.fragment_duration_ms.max(1)) * 1_000_000,
        )
        // Each mux pad may hold this much media (the pipeline is not
        // live, so it adds no delay): a batch of frames pushed at once
        // goes into the muxer in one go instead of one thread hand-off
        // per frame.
        .property("latency", MUX_QUEUE_NS)
        .build()
        .context("creating mp4mux")?;
    let sink = gst::ElementFactory::make("filesink")
        .name("vodsink")
        .property("location", path.to_string_lossy().as_ref())
        // Media data is written in blocks of `buffer-size`; filesink
        // flushes its buffer before every seek, so each index update
        // (a seek back to the reserved room, a write, a seek to the
        // end) reaches the kernel together with the data it indexes.
        .property_from_str("buffer-mode", "full")
        .property("buffer-size", 256u32 * 1024)
        .build()
        .context("creating filesink")?;
    pipeline
        .add_many([&vodmux, &sink])
        .context("adding mp4mux and filesink")?;
    vodmux.link(&sink).context("linking mp4mux to filesink")?;
    Ok(vodmux)
}

/// One track's branch of the source pipeline: appsrc and parser, linked
/// into the muxer. No queue: each appsrc has its own streaming thread and
/// queue, and every mp4mux pad holds its own buffer, so a queue would only
/// add a thread and a hand-off per frame.
fn source_branch(
    pipeline: &gst::Pipeline,
    vodmux: &gst::Element,
    t: &TrackInfo,
) -> anyhow::Result<Track> {
    let appsrc = input_appsrc(t)?;
    let parser = make_named(parser_for_track(t)?, &format!("parse{}", t.id))?;
    pipeline
        .add_many([appsrc.upcast_ref(), &parser])
        .context("adding appsrc and parser")?;
    appsrc
        .link(&parser)
        .with_context(|| format!("linking track {} to its parser", t.id))?;
    let video = t.codec().is_some_and(|c| c.is_video());
    link_to_muxer(&parser, vodmux, video, t.id)?;
    Ok(Track {
        appsrc,
        last_dts_us: None,
        last_dur_us: 0,
    })
}

/// Starts the pipeline of every extra rendition that applies.
fn start_encoders(
    cfg: &TranscoderConfig,
    session_id: &str,
    tracks: &[TrackInfo],
    out_dir: &Path,
) -> anyhow::Result<Vec<Encoder>> {
    let mut encoders = Vec::new();
    for spec in &cfg.renditions {
        let encoder = Encoder::start(session_id, spec, tracks, out_dir)
            .with_context(|| format!("starting rendition {} of session {session_id}", spec.name))?;
        encoders.extend(encoder);
    }
    Ok(encoders)
}

/// Logs every error and warning of a pipeline with the session id and the
/// element's name; the first error is kept in the returned slot.
pub(crate) fn watch_bus(
    pipeline: &gst::Pipeline,
    session_id: &str,
    what: &str,
) -> anyhow::Result<Arc<Mutex<Option<String>>>> {
    let error = Arc::new(Mutex::new(None::<String>));
    let bus = pipeline
        .bus()
        .ok_or_else(|| anyhow!("pipeline without bus"))?;
    let slot = error.clone();
    let session = session_id.to_string();
    let what = what.to_string();
    bus.set_sync_handler(move |_, msg| {
        let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
        match msg.view() {
            gst::MessageView::Error(e) => {
                tracing::error!(
                    session = %session,
                    pipeline = %what,
                    element = %element,
                    debug = ?e.debug(),
                    "GStreamer error: {}",
                    e.error()
                );
                let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                if slot.is_none() {
                    *slot = Some(format!("{element}: {}", e.error()));
                }
                gst::BusSyncReply::Pass
            }
            gst::MessageView::Warning(w) => {
                tracing::warn!(
                    session = %session,
                    pipeline = %what,
                    element = %element,
                    debug = ?w.debug(),
                    "GStreamer warning: {}",
                    w.error()
                );
                gst::BusSyncReply::Drop
            }
            gst::MessageView::Eos(_) => gst::BusSyncReply::Pass,
            _ => gst::BusSyncReply::Drop,
        }
    });
    Ok(error)
}

impl Recording {
    pub(crate) fn start(
        cfg: &TranscoderConfig,
        session_id: &str,
        tracks: &[TrackInfo],
        out_dir: &Path,
    ) -> anyhow::Result<Recording> {
        check_tracks(tracks).map_err(|e| anyhow!(e))?;
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        let path = out_dir.join(SOURCE_FILE);
        let pipeline = gst::Pipeline::with_name(&format!("recording-{session_id}"));
        let vodmux = source_muxer(&pipeline, cfg, &path)?;
        let mut branches = HashMap::new();
        for t in tracks {
            branches.insert(t.id, source_branch(&pipeline, &vodmux, t)?);
        }
        let error = watch_bus(&pipeline, session_id, "source")?;
        let encoders = start_encoders(cfg, session_id, tracks, out_dir).inspect_err(|_| {
            let _ = pipeline.set_state(gst::State::Null);
        })?;
        let recording = Recording {
            session_id: session_id.to_string(),
            pipeline,
            sync: Mutex::new(Sync {
                base_us: None,
                offset_us: 0,
                pending: Vec::new(),
                tracks: branches,
                dropped: 0,
                pushed: 0,
                jumps: 0,
                end_us: 0,
            }),
            segment: shifted_segment().upcast(),
            error,
            path,
            out_dir: out_dir.to_path_buf(),
            encoders,
            base: Arc::default(),
            rotation: video_rotation(tracks),
            track_count: tracks.len(),
            limits: Limits::new(cfg),
        };
        recording
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| anyhow!(recording.error_message()))
            .with_context(|| format!("starting the recording of session {session_id}"))?;
        tracing::info!(
            session = %session_id,
            path = %recording.path.display(),
            renditions = recording.encoders.len() + 1,
            "recording started"
        );
        Ok(recording)
    }

    /// Sends each extra rendition's encoded output to a live stream while
    /// it is encoded: `tap(rendition, tracks, base_us)` is called once per
    /// rendition when its first frames are out, and returns where its frames
    /// go. Frame timestamps count from the start of the recording; `base_us`
    /// is the capture timestamp of that start.
    pub fn tap_renditions(&self, tap: crate::RenditionTap) {
        for enc in &self.encoders {
            let base = self.base.clone();
            enc.tap(
                tap.clone(),
                Arc::new(move || base.load(std::sync::atomic::Ordering::Relaxed)),
            );
        }
    }

    /// Where the source rendition is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Timestamp repairs so far.
    pub fn sync_stats(&self) -> SyncStats {
        let sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        SyncStats {
            pushed: sync.pushed,
            dropped: sync.dropped,
            jumps: sync.jumps,
        }
    }

    /// Bytes of frames waiting in the source pipeline's input queues (0 when
    /// the muxer has caught up with the phone).
    pub fn backlog_bytes(&self) -> u64 {
        let sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        sync.tracks
            .values()
            .map(|t| t.appsrc.current_level_bytes())
            .sum()
    }

    fn error_message(&self) -> String {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "the pipeline refused to change state".to_string())
    }

    fn check_error(&self) -> anyhow::Result<()> {
        if let Some(e) = self
            .error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            bail!("recording of session {} failed: {e}", self.session_id);
        }
        Ok(())
    }

    /// Queues one frame for muxing. Never blocks on the pipeline; fails if the
    /// pipeline has failed, the track is unknown, or the muxer has fallen too
    /// far behind.
    pub fn push(&self, frame: &MediaFrame) -> anyhow::Result<()> {
        self.check_error()?;
        let mut sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        if !sync.tracks.contains_key(&frame.track) {
            bail!(
                "session {}: frame for unknown track {}",
                self.session_id,
                frame.track
            );
        }
        if let Some(base) = sync.base_us {
            return self.push_aligned(&mut sync, base, frame);
        }
        sync.pending.push(frame.clone());
        if !self.start_ready(&sync.pending) {
            return Ok(());
        }
        self.align_start(&mut sync)
    }

    /// Fixes the session's start at the smallest presentation timestamp of
    /// the held-back frames, and pushes them.
    fn align_start(&self, sync: &mut Sync) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut sync.pending);
        let base = pending.iter().map(|f| f.pts_us).min().unwrap_or(0);
        tracing::debug!(session = %self.session_id, base_us = base, "session start aligned");
        sync.base_us = Some(base);
        self.base.store(base, std::sync::atomic::Ordering::Relaxed);
        for f in &pending {
            self.push_aligned(sync, base, f)?;
        }
        Ok(())
    }

    /// Whether the held-back start frames are enough to fix the base: one
    /// frame from every track, or a start window's worth of media.
    fn start_ready(&self, pending: &[MediaFrame]) -> bool {
        let mut seen: Vec<u8> = pending.iter().map(|f| f.track).collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() >= self.track_count {
            return true;
        }
        let min = pending.iter().map(|f| f.dts_us).min().unwrap_or(0);
        let max = pending.iter().map(|f| f.dts_us).max().unwrap_or(0);
        max.saturating_sub(min) >= self.limits.start_window_us
    }

    /// A frame's timestamps on the session's timeline (µs after its start),
    /// re-timing the session when the frame's track jumped: backwards by
    /// more than the jump threshold or forwards by more than the longest
    /// gap. The frame then follows its track's previous frame directly.
    fn retime(&self, sync: &mut Sync, base: i64, frame: &MediaFrame) -> anyhow::Result<(i64, i64)> {
        let on_timeline = |us: i64| us.saturating_sub(base).saturating_add(sync.offset_us);
        let (pts, dts) = (on_timeline(frame.pts_us), on_timeline(frame.dts_us));
        let Some(track) = sync.tracks.get(&frame.track) else {
            bail!(
                "session {}: frame for unknown track {}",
                self.session_id,
                frame.track
            );
        };
        let Some(last) = track.last_dts_us else {
            return Ok((pts, dts));
        };
        let step = dts.saturating_sub(last);
        if step >= -self.limits.jump_threshold_us && step <= self.limits.max_gap_us {
            return Ok((pts, dts));
        }
        let target = last.saturating_add(track.last_dur_us.max(1));
        let correction = target.saturating_sub(dts);
        sync.offset_us = sync.offset_us.saturating_add(correction);
        sync.jumps += 1;
        tracing::warn!(
            session = %self.session_id,
            track = frame.track,
            seq = frame.seq,
            jump_ms = step / 1000,
            correction_ms = correction / 1000,
            "capture clock jumped; re-timing the session so the timeline stays continuous"
        );
        Ok((
            pts.saturating_add(correction),
            dts.saturating_add(correction),
        ))
    }

    /// Fails the session when it runs past the longest recording or its
    /// muxer has fallen too far behind.
    fn check_limits(&self, track: &Track, frame: &MediaFrame, pts: i64) -> anyhow::Result<()> {
        if pts > self.limits.max_duration_us {
            bail!(
                "session {}: recording is longer than max_duration_ms ({} ms)",
                self.session_id,
                self.limits.max_duration_us / 1000
            );
        }
        let queued = track.appsrc.current_level_bytes();
        let max = self.limits.max_queued_bytes;
        if max > 0 && queued > max {
            bail!(
                "session {}: muxer is not keeping up ({queued} bytes queued on track {}); \
                 is a declared track not sending frames?",
                self.session_id,
                frame.track
            );
        }
        Ok(())
    }

    fn push_aligned(&self, sync: &mut Sync, base: i64, frame: &MediaFrame) -> anyhow::Result<()> {
        let (pts, dts) = self.retime(sync, base, frame)?;
        let Some(track) = sync.tracks.get_mut(&frame.track) else {
            bail!("session {}: unknown track {}", self.session_id, frame.track);
        };
        if let Some(reason) = drop_reason(track, pts, dts) {
            sync.dropped += 1;
            tracing::warn!(
                session = %self.session_id,
                track = frame.track,
                seq = frame.seq,
                pts_us = frame.pts_us,
                dts_us = frame.dts_us,
                "dropping frame: {reason}"
            );
            return Ok(());
        }
        self.check_limits(track, frame, pts)?;
        let dur = i64::from(frame.duration_us);
        track.last_dur_us = if dur > 0 {
            dur
        } else {
            track.last_dts_us.map(|l| dts - l).unwrap_or(0)
        };
        track.last_dts_us = Some(dts);
        sync.end_us = sync.end_us.max(pts.saturating_add(dur));
        let sample = gst::Sample::builder()
            .buffer(&frame_buffer(frame, pts, dts)?)
            .segment(&self.segment)
            .build();
        track.appsrc.push_sample(&sample).map_err(|flow| {
            anyhow!(
                "session {}: track {} refused frame {}: {flow:?} {}",
                self.session_id,
                frame.track,
                frame.seq,
                self.failure()
            )
        })?;
        for enc in &self.encoders {
            // A failed rendition is reported at finish; the source goes on.
            if let Err(e) = enc.push(frame.track, &sample) {
                tracing::debug!(session = %self.session_id, "{e:#}");
            }
        }
        sync.pushed += 1;
        Ok(())
    }

    /// The pipeline's first error, or "".
    fn failure(&self) -> String {
        self.error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// Ends the session: flushes the muxers, waits until the source file is
    /// finalised, writes the poster, waits for the other renditions (encoding
    /// what is left, with progress in the log), and measures every file.
    /// Blocking. A rendition that fails is left out (error in the log); a
    /// failure of the source rendition fails the session.
    pub fn finish(self) -> anyhow::Result<Vec<ProducedFile>> {
        let finished = self.finish_source()?;
        let mut produced = finished.source;
        produced.extend(finished.renditions.wait());
        Ok(produced)
    }

    /// Pushes the frames still held back (a session shorter than the start
    /// window), and sends end-of-stream to every track and rendition.
    /// Returns the largest end time pushed, µs after the start.
    fn end_of_stream(&self) -> anyhow::Result<i64> {
        let mut sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
        if sync.base_us.is_none() {
            self.align_start(&mut sync)?;
        }
        if sync.dropped > 0 || sync.jumps > 0 {
            tracing::warn!(
                session = %self.session_id,
                dropped = sync.dropped,
                clock_jumps = sync.jumps,
                "timestamps repaired"
            );
        }
        if sync.pushed == 0 {
            bail!(
                "recording of session {}: no frames were recorded",
                self.session_id
            );
        }
        for (id, track) in &sync.tracks {
            track
                .appsrc
                .end_of_stream()
                .map_err(|flow| anyhow!("track {id}: end of stream refused: {flow:?}"))?;
        }
        for enc in &self.encoders {
            enc.end_of_stream();
        }
        Ok(sync.end_us)
    }

    /// Waits until the source muxer has written the last index, then stops
    /// the pipeline.
    fn wait_for_muxer(&self) -> anyhow::Result<()> {
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| anyhow!("pipeline without bus"))?;
        let timeout = gst::ClockTime::from_mseconds(
            u64::try_from(self.limits.finish_timeout.as_millis()).unwrap_or(u64::MAX),
        );
        let msg =
            bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]);
        let _ = self.pipeline.set_state(gst::State::Null);
        match msg {
            Some(msg) if matches!(msg.view(), gst::MessageView::Eos(_)) => Ok(()),
            Some(_) => {
                self.check_error()?;
                bail!("recording of session {} failed", self.session_id);
            }
            None => bail!(
                "recording of session {}: muxer did not finish within {:?}",
                self.session_id,
                self.limits.finish_timeout
            ),
        }
    }

    /// Compacts a short source file (see [`crate::compact`]); a failure
    /// keeps the file as it is.
    fn compact_source(&self) {
        if self.limits.compact_max_bytes == 0 {
            return;
        }
        match crate::compact::compact(&self.path, self.limits.compact_max_bytes) {
            Ok(saved) if saved > 0 => tracing::debug!(
                session = %self.session_id,
                saved,
                "reserved index room removed"
            ),
            Ok(_) => {}
            Err(e) => {
                let _ = std::fs::remove_file(self.path.with_extension("mp4.compact"));
                tracing::warn!(
                    session = %self.session_id,
                    "could not compact {} (kept as is): {e:#}",
                    self.path.display()
                );
            }
        }
    }

    /// Writes the poster image next to the source file (an error is logged,
    /// not returned), and removes the live poster, which is stale now.
    fn write_poster(&self, stop: Instant) {
        let poster = self.out_dir.join(crate::still::POSTER_FILE);
        match crate::still::write_poster(&self.path, &poster) {
            Ok(_) => tracing::info!(
                session = %self.session_id,
                after_stop_ms = stop.elapsed().as_secs_f64() * 1000.0,
                "poster written"
            ),
            Err(e) => tracing::error!(session = %self.session_id, "no poster: {e:#}"),
        }
        let _ = std::fs::remove_file(self.out_dir.join(crate::still::LIVE_POSTER_FILE));
    }

    /// Like [`Recording::finish`], but returns as soon as the source
    /// rendition is final and measured (and the poster written): the VOD can
    /// be served at once, while [`PendingRenditions::wait`] finishes the
    /// other renditions.
    pub fn finish_source(mut self) -> anyhow::Result<Finished> {
        self.check_error()?;
        let end_us = self.end_of_stream()?;
        let stop = Instant::now();
        self.wait_for_muxer()?;
        let finalised = stop.elapsed();
        let compact_start = Instant::now();
        self.compact_source();
        let compacted = compact_start.elapsed();
        // mp4mux (1.22) writes no rotation: set the video track's matrix
        // now that the index is final (36 bytes in place).
        if self.rotation != 0 {
            crate::matrix::write_rotation(&self.path, self.rotation).with_context(|| {
                format!(
                    "writing the display rotation of session {} into {}",
                    self.session_id,
                    self.path.display()
                )
            })?;
        }
        let source = ProducedFile::measure(SOURCE_RENDITION, &self.path)?;
        tracing::info!(
            session = %self.session_id,
            path = %self.path.display(),
            compact_ms = compacted.as_secs_f64() * 1000.0,
            size = source.attributes.size_bytes,
            duration_ms = source.attributes.duration_ms,
            finalise_ms = finalised.as_secs_f64() * 1000.0,
            ready_ms = stop.elapsed().as_secs_f64() * 1000.0,
            "source rendition finished"
        );
        self.write_poster(stop);
        Ok(Finished {
            source: vec![source],
            renditions: PendingRenditions {
                session_id: self.session_id.clone(),
                encoders: std::mem::take(&mut self.encoders),
                media_end: gst::ClockTime::from_useconds(u64::try_from(end_us).unwrap_or(0)),
                timeout: self.limits.rendition_timeout,
                stop,
            },
        })
    }

    /// Stops recording at once. What was written so far (up to the last
    /// index update) stays on disk at [`Recording::path`] and is playable.
    pub fn abort(self) {
        tracing::info!(session = %self.session_id, "recording aborted");
        // Drop stops the pipelines.
    }
}

/// Why a frame is dropped rather than muxed: before the session start, or
/// a decode timestamp not after its track's previous one.
fn drop_reason(track: &Track, pts: i64, dts: i64) -> Option<&'static str> {
    if pts < 0 || dts < -TS_SHIFT_US {
        Some("before the session start")
    } else if track.last_dts_us.is_some_and(|last| dts <= last) {
        // Equal decode timestamps make mp4mux fail the whole file.
        Some("decode timestamp not after the previous frame's")
    } else {
        None
    }
}

/// A recording whose source rendition is final.
#[derive(Debug)]
pub struct Finished {
    /// The source rendition, measured.
    pub source: Vec<ProducedFile>,
    /// The other renditions, still encoding what is left.
    pub renditions: PendingRenditions,
}

/// Renditions still encoding after the phone stopped.
pub struct PendingRenditions {
    session_id: String,
    encoders: Vec<Encoder>,
    media_end: gst::ClockTime,
    timeout: Duration,
    stop: Instant,
}

impl std::fmt::Debug for PendingRenditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRenditions")
            .field("session_id", &self.session_id)
            .field("renditions", &self.encoders.len())
            .finish_non_exhaustive()
    }
}

impl PendingRenditions {
    /// Names of the renditions still to come.
    pub fn names(&self) -> Vec<String> {
        self.encoders.iter().map(|e| e.spec.name.clone()).collect()
    }

    /// Waits for every rendition (progress in the log every second) and
    /// measures each file. A rendition that fails or times out is left out,
    /// with an error in the log. Blocking.
    pub fn wait(self) -> Vec<ProducedFile> {
        let mut produced = Vec::new();
        for enc in &self.encoders {
            let result = enc
                .wait(self.timeout, self.media_end, &|_, _| {})
                .and_then(|()| ProducedFile::measure(&enc.spec.name, &enc.path));
            match result {
                Ok(file) => {
                    tracing::info!(
                        session = %self.session_id,
                        rendition = %enc.spec.name,
                        size = file.attributes.size_bytes,
                        after_stop_ms = self.stop.elapsed().as_secs_f64() * 1000.0,
                        "rendition finished"
                    );
                    produced.push(file);
                }
                Err(e) => tracing::error!(
                    session = %self.session_id,
                    rendition = %enc.spec.name,
                    "rendition left out: {e:#}"
                ),
            }
        }
        produced
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl FrameSink for Recording {
    fn push(&self, frame: &MediaFrame) {
        if let Err(e) = Recording::push(self, frame) {
            tracing::warn!(session = %self.session_id, "frame not recorded: {e:#}");
        }
    }
}
