//! One session being muxed into `source.mp4` while the phone uploads.
//!
//! Pipeline, one branch per track, split into two muxers:
//!
//! ```text
//! appsrc name=track{id} caps=<from TrackInfo> ! {h264,h265,aac,opus}parse name=parse{id} ! tee name=tee{id}
//!   tee{id}. ! queue ! mp4mux name=fragmux fragment-duration=<cfg> ! filesink name=fragsink location=<out_dir>/source.mp4
//!   tee{id}. ! queue ! mp4mux name=vodmux faststart=true ! filesink name=vodsink location=<out_dir>/.source.mp4.vod
//! ```
//!
//! - `fragmux` writes a fragmented MP4 at the final path: everything up to the
//!   last complete fragment is on disk, playable while recording, and
//!   survives a crash of the server.
//! - `vodmux` writes the VOD file proper: a regular MP4 with the index first
//!   (progressive playback) and edit lists, which is what keeps the tracks'
//!   start offsets and B-frame composition delays (mp4mux 1.22 writes no edit
//!   lists in fragmented mode, so there every track starts at 0). At
//!   [`Recording::finish`] it replaces the fragmented file (atomic rename).
//!   Until then its media data sits in `.source.mp4.mdat` (mp4mux's faststart
//!   file), so a session needs about three times its size on disk at the end.
//!
//! **Timestamp sync**: frames carry capture timestamps (microseconds) on the
//! phone's clock. The recording holds back the first frames until every track
//! has delivered one (or [`crate::TranscoderConfig::start_window_ms`] of media
//! has gone by), takes the smallest presentation timestamp among them as the
//! session's start, and subtracts it from every timestamp of every track. The
//! file therefore starts at 0 with the audio/video offsets of the capture
//! intact.
//!
//! Decode timestamps of B-frame video come before the first presentation
//! timestamp, that is below 0. GStreamer buffers cannot carry negative
//! times, so, like the encoders do, buffers are stamped `TS_SHIFT + t` in a
//! segment that starts at `TS_SHIFT`: running times are then exactly `t`,
//! negative DTS included, and mp4mux writes the matching edit list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sharecast_formats::media::{FrameSink, MediaFrame, TrackInfo};

use crate::caps::{caps_for_track, check_tracks, parser_for_track};
use crate::{probe_file, ProducedFile, TranscoderConfig};

/// Name of the source rendition (the phone's encoding, remuxed).
pub const SOURCE_RENDITION: &str = "source";
/// File name of the source rendition inside the session's output directory.
pub const SOURCE_FILE: &str = "source.mp4";

struct Track {
    appsrc: gst_app::AppSrc,
    /// Last decode timestamp pushed, microseconds after the session start.
    last_dts_us: Option<i64>,
}

/// Start-of-session alignment: which frames are held back and the base.
struct Sync {
    base_us: Option<i64>,
    pending: Vec<MediaFrame>,
    tracks: HashMap<u8, Track>,
    dropped: u64,
    pushed: u64,
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
    vod_tmp: PathBuf,
    mdat_tmp: PathBuf,
    track_count: usize,
    start_window_us: i64,
    max_queued_bytes: u64,
    finish_timeout: Duration,
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording")
            .field("session_id", &self.session_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn element(factory: &str, name: &str) -> anyhow::Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .with_context(|| format!("creating {factory} (is the GStreamer plugin installed?)"))
}

/// Offset added to buffer timestamps (and to the segment start) so that
/// negative decode timestamps can be represented: 1000 hours, as in
/// GStreamer's video encoders.
const TS_SHIFT_US: i64 = 1000 * 3600 * 1_000_000;

fn shifted(us: i64) -> gst::ClockTime {
    gst::ClockTime::from_useconds(u64::try_from(us.saturating_add(TS_SHIFT_US)).unwrap_or(0))
}

/// The segment every buffer is pushed in: running time = timestamp − shift.
fn shifted_segment() -> gst::FormattedSegment<gst::ClockTime> {
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(shifted(0));
    segment.set_time(gst::ClockTime::ZERO);
    segment
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

        let vod_tmp = out_dir.join(format!(".{SOURCE_FILE}.vod"));
        let mdat_tmp = out_dir.join(format!(".{SOURCE_FILE}.mdat"));
        let _ = std::fs::remove_file(&vod_tmp);

        let pipeline = gst::Pipeline::with_name(&format!("recording-{session_id}"));
        let fragmux = gst::ElementFactory::make("mp4mux")
            .name("fragmux")
            .property("fragment-duration", cfg.fragment_duration_ms.max(1))
            .build()
            .context("creating mp4mux")?;
        let vodmux = gst::ElementFactory::make("mp4mux")
            .name("vodmux")
            .property("faststart", true)
            .property("faststart-file", mdat_tmp.to_string_lossy().as_ref())
            .build()
            .context("creating mp4mux")?;
        for (mux, sink_name, location) in [
            (&fragmux, "fragsink", &path),
            (&vodmux, "vodsink", &vod_tmp),
        ] {
            let sink = gst::ElementFactory::make("filesink")
                .name(sink_name)
                .property("location", location.to_string_lossy().as_ref())
                // Every fragment reaches the kernel as soon as it is complete.
                .property_from_str("buffer-mode", "unbuffered")
                .build()
                .context("creating filesink")?;
            pipeline
                .add_many([mux, &sink])
                .context("adding mp4mux and filesink")?;
            mux.link(&sink).context("linking mp4mux to filesink")?;
        }

        let mut branches = HashMap::new();
        for t in tracks {
            let caps = caps_for_track(t)?;
            let appsrc = gst_app::AppSrc::builder()
                .name(format!("track{}", t.id))
                .caps(&caps)
                .format(gst::Format::Time)
                .is_live(false)
                .do_timestamp(false)
                .block(false)
                // The queue limit is enforced in `push` with a clear error.
                .max_bytes(0)
                .max_buffers(0)
                .max_time(None)
                .handle_segment_change(true)
                .build();
            let parser = element(parser_for_track(t)?, &format!("parse{}", t.id))?;
            let tee = element("tee", &format!("tee{}", t.id))?;
            pipeline
                .add_many([appsrc.upcast_ref(), &parser, &tee])
                .context("adding appsrc, parser and tee")?;
            gst::Element::link_many([appsrc.upcast_ref(), &parser, &tee])
                .with_context(|| format!("linking track {} to its parser", t.id))?;
            let is_video = t.codec().is_some_and(|c| c.is_video());
            let template = if is_video { "video_%u" } else { "audio_%u" };
            for mux in [&fragmux, &vodmux] {
                let queue = element("queue", &format!("queue{}-{}", t.id, mux.name()))?;
                pipeline.add(&queue).context("adding queue")?;
                tee.link(&queue)
                    .with_context(|| format!("linking track {} to a queue", t.id))?;
                let mux_pad = mux
                    .request_pad_simple(template)
                    .ok_or_else(|| anyhow!("mp4mux refused a {template} pad"))?;
                queue
                    .static_pad("src")
                    .ok_or_else(|| anyhow!("queue without src pad"))?
                    .link(&mux_pad)
                    .with_context(|| format!("linking track {} to {}", t.id, mux.name()))?;
            }
            branches.insert(
                t.id,
                Track {
                    appsrc,
                    last_dts_us: None,
                },
            );
        }

        let error = Arc::new(Mutex::new(None::<String>));
        let bus = pipeline
            .bus()
            .ok_or_else(|| anyhow!("pipeline without bus"))?;
        {
            let error = error.clone();
            let session = session_id.to_string();
            bus.set_sync_handler(move |_, msg| {
                let element = msg.src().map(|s| s.name().to_string()).unwrap_or_default();
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        tracing::error!(
                            session = %session,
                            element = %element,
                            debug = ?e.debug(),
                            "recording pipeline error: {}",
                            e.error()
                        );
                        let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                        if slot.is_none() {
                            *slot = Some(format!("{element}: {}", e.error()));
                        }
                        gst::BusSyncReply::Pass
                    }
                    gst::MessageView::Warning(w) => {
                        tracing::warn!(
                            session = %session,
                            element = %element,
                            debug = ?w.debug(),
                            "recording pipeline warning: {}",
                            w.error()
                        );
                        gst::BusSyncReply::Drop
                    }
                    gst::MessageView::Eos(_) => gst::BusSyncReply::Pass,
                    _ => gst::BusSyncReply::Drop,
                }
            });
        }

        let recording = Recording {
            session_id: session_id.to_string(),
            pipeline,
            sync: Mutex::new(Sync {
                base_us: None,
                pending: Vec::new(),
                tracks: branches,
                dropped: 0,
                pushed: 0,
            }),
            segment: shifted_segment().upcast(),
            error,
            path,
            vod_tmp,
            mdat_tmp,
            track_count: tracks.len(),
            start_window_us: i64::from(cfg.start_window_ms) * 1000,
            max_queued_bytes: cfg.max_queued_bytes,
            finish_timeout: Duration::from_millis(cfg.finish_timeout_ms),
        };
        recording
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| anyhow!(recording.error_message()))
            .with_context(|| format!("starting the recording of session {session_id}"))?;
        tracing::info!(session = %session_id, path = %recording.path.display(), "recording started");
        Ok(recording)
    }

    /// Where the source rendition is being written.
    pub fn path(&self) -> &Path {
        &self.path
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
        if sync.base_us.is_none() {
            sync.pending.push(frame.clone());
            if !self.start_ready(&sync.pending) {
                return Ok(());
            }
            let base = sync.pending.iter().map(|f| f.pts_us).min().unwrap_or(0);
            tracing::debug!(session = %self.session_id, base_us = base, "session start aligned");
            sync.base_us = Some(base);
            let pending = std::mem::take(&mut sync.pending);
            for f in &pending {
                self.push_aligned(&mut sync, base, f)?;
            }
            return Ok(());
        }
        let base = sync.base_us.unwrap_or(0);
        self.push_aligned(&mut sync, base, frame)
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
        max.saturating_sub(min) >= self.start_window_us
    }

    fn push_aligned(&self, sync: &mut Sync, base: i64, frame: &MediaFrame) -> anyhow::Result<()> {
        let pts = frame.pts_us.saturating_sub(base);
        let dts = frame.dts_us.saturating_sub(base);
        let Some(track) = sync.tracks.get_mut(&frame.track) else {
            bail!(
                "session {}: frame for unknown track {}",
                self.session_id,
                frame.track
            );
        };
        let reason = if pts < 0 || dts < -TS_SHIFT_US {
            Some("before the session start")
        } else if track.last_dts_us.is_some_and(|last| dts < last) {
            Some("decode timestamp going backwards")
        } else {
            None
        };
        if let Some(reason) = reason {
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
        let queued = track.appsrc.current_level_bytes();
        if self.max_queued_bytes > 0 && queued > self.max_queued_bytes {
            bail!(
                "session {}: muxer is not keeping up ({queued} bytes queued on track {}); \
                 is a declared track not sending frames?",
                self.session_id,
                frame.track
            );
        }
        track.last_dts_us = Some(dts);
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        {
            let b = buffer
                .get_mut()
                .ok_or_else(|| anyhow!("new buffer is not writable"))?;
            b.set_pts(shifted(pts));
            b.set_dts(shifted(dts));
            if frame.duration_us > 0 {
                b.set_duration(gst::ClockTime::from_useconds(u64::from(frame.duration_us)));
            }
            if !frame.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        let sample = gst::Sample::builder()
            .buffer(&buffer)
            .segment(&self.segment)
            .build();
        track.appsrc.push_sample(&sample).map_err(|flow| {
            let detail = self
                .error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            anyhow!(
                "session {}: track {} refused frame {}: {flow:?} {detail}",
                self.session_id,
                frame.track,
                frame.seq
            )
        })?;
        sync.pushed += 1;
        Ok(())
    }

    /// Ends the session: flushes the muxer, waits until the file is
    /// finalised, and measures it. Blocking.
    pub fn finish(self) -> anyhow::Result<Vec<ProducedFile>> {
        self.check_error()?;
        {
            let mut sync = self.sync.lock().unwrap_or_else(|p| p.into_inner());
            if sync.base_us.is_none() {
                let pending = std::mem::take(&mut sync.pending);
                let base = pending.iter().map(|f| f.pts_us).min().unwrap_or(0);
                sync.base_us = Some(base);
                for f in &pending {
                    self.push_aligned(&mut sync, base, f)?;
                }
            }
            if sync.dropped > 0 {
                tracing::warn!(session = %self.session_id, dropped = sync.dropped, "frames dropped");
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
        }
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| anyhow!("pipeline without bus"))?;
        let timeout = gst::ClockTime::from_mseconds(
            u64::try_from(self.finish_timeout.as_millis()).unwrap_or(u64::MAX),
        );
        let msg =
            bus.timed_pop_filtered(timeout, &[gst::MessageType::Eos, gst::MessageType::Error]);
        let _ = self.pipeline.set_state(gst::State::Null);
        match msg {
            Some(msg) if matches!(msg.view(), gst::MessageView::Eos(_)) => {}
            Some(_) => {
                self.check_error()?;
                bail!("recording of session {} failed", self.session_id);
            }
            None => bail!(
                "recording of session {}: muxer did not finish within {:?}",
                self.session_id,
                self.finish_timeout
            ),
        }
        std::fs::rename(&self.vod_tmp, &self.path).with_context(|| {
            format!(
                "moving {} to {}",
                self.vod_tmp.display(),
                self.path.display()
            )
        })?;
        let attributes =
            probe_file(&self.path).with_context(|| format!("probing {}", self.path.display()))?;
        tracing::info!(
            session = %self.session_id,
            path = %self.path.display(),
            size = attributes.size_bytes,
            duration_ms = attributes.duration_ms,
            "recording finished"
        );
        Ok(vec![ProducedFile {
            rendition: SOURCE_RENDITION.to_string(),
            path: self.path.clone(),
            attributes: crate::Rendition {
                name: SOURCE_RENDITION.to_string(),
                ..attributes
            },
        }])
    }

    /// Stops recording at once. What was written so far (complete fragments)
    /// stays on disk at [`Recording::path`] and is playable.
    pub fn abort(self) {
        tracing::info!(session = %self.session_id, "recording aborted");
        // Drop stops the pipeline and removes the unfinished VOD file.
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        // After a successful finish this file has been renamed away already.
        let _ = std::fs::remove_file(&self.vod_tmp);
        let _ = std::fs::remove_file(&self.mdat_tmp);
    }
}

impl FrameSink for Recording {
    fn push(&self, frame: &MediaFrame) {
        if let Err(e) = Recording::push(self, frame) {
            tracing::warn!(session = %self.session_id, "frame not recorded: {e:#}");
        }
    }
}
