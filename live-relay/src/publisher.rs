//! Feeding one session's frames to its live viewers: the RTSP mount's
//! media pipelines (through their appsrcs) and the HLS segmenter.
//!
//! A [`LivePublisher`] mounts `/live/{session_id}` with a **shared** media
//! factory: all viewers of a session share one media pipeline,
//! `appsrc name=src{i} ! {h264,h265,aac,opus}parse ! rtp…pay name=pay{i}`
//! per track. When a media is configured its appsrcs are registered with
//! the publisher, which then feeds every current media.
//!
//! **Live timestamps.** Frames carry capture timestamps (microseconds on the
//! phone's clock). Each media has its own running time (its pipeline clock
//! minus its base time). When the publisher starts feeding a media it picks
//! one offset, `running time now − pts of the newest frame`, and adds it to
//! the PTS and DTS of every frame of every track it feeds that media; audio
//! and video therefore stay aligned exactly as captured, and the newest frame
//! goes out immediately. A media starts on a video keyframe: the publisher
//! keeps the current GOP (frames since the last keyframe, all tracks) and
//! replays it first, so a new viewer can decode at once; those older frames
//! are late by construction and are sent straight away. The offset is raised
//! if needed so that no timestamp is negative. A viewer who joins a media
//! that is already running (the media is shared) gets the stream from that
//! moment; the payloaders repeat SPS/PPS (VPS) with every keyframe, so its
//! decoder starts at the next keyframe.
//!
//! Dropping a publisher (or [`LivePublisher::end`]) sends EOS to its medias
//! and removes the mount.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use anyhow::{anyhow, bail};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use sharecast_formats::media::{Codec, FrameSink, MediaFrame, TrackInfo};
use sharecast_transcoder::caps::{caps_for_track, parser_for_track};

use crate::hls::HlsStream;
use crate::lock;
use crate::relay::Shared;
use crate::sei;

/// What every publisher of a relay shares with it.
pub(crate) struct Stage {
    /// State shared with the RTSP side and the HLS routes.
    pub(crate) shared: Arc<Shared>,
    /// The RTSP server's mount points.
    pub(crate) mounts: rtsp::RTSPMountPoints,
    /// The keys of the streams being published.
    pub(crate) published: Weak<Mutex<HashSet<String>>>,
    /// Most bytes of frames kept to start new viewers on a keyframe.
    pub(crate) max_gop_bytes: usize,
    /// Bytes that may wait in one media's appsrc.
    pub(crate) max_queued_bytes: u64,
    /// Whether video carries the capture-clock SEI.
    pub(crate) capture_clock_sei: bool,
}

/// One stream to publish.
pub(crate) struct Stream {
    /// The session.
    pub(crate) session_id: String,
    /// The RTSP mount path.
    pub(crate) path: String,
    /// Key in the published set: the session id, or
    /// `{session id}/{rendition}`.
    pub(crate) published_key: String,
    /// The tracks, as the phone (or the encoder) described them.
    pub(crate) tracks: Vec<TrackInfo>,
    /// Wall clock of capture timestamp 0, Unix µs.
    pub(crate) anchor_unix_us: i64,
    /// The HLS side, if the tracks can be carried in HLS.
    pub(crate) hls: Option<Arc<HlsStream>>,
    /// Newest capture position, ms, for the viewer tracker.
    pub(crate) position: Arc<AtomicI64>,
}

/// Frames kept to start new viewers, and the medias being fed.
#[derive(Default)]
struct PublisherState {
    /// Frames since the last video keyframe (all tracks), in arrival order.
    gop: Vec<MediaFrame>,
    gop_bytes: usize,
    /// Whether `gop` starts with a keyframe (false after an overflow).
    gop_valid: bool,
    feeds: Vec<Feed>,
}

impl PublisherState {
    /// Keeps a frame of the current GOP for viewers that join later; a video
    /// keyframe starts a new GOP, a GOP over `max_bytes` is given up until
    /// the next keyframe.
    fn keep_gop(&mut self, frame: &MediaFrame, keyframe: bool, max_bytes: usize) {
        if keyframe {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = true;
        }
        if !self.gop_valid {
            return;
        }
        self.gop_bytes += frame.data.len();
        if self.gop_bytes > max_bytes {
            self.gop.clear();
            self.gop_bytes = 0;
            self.gop_valid = false;
        } else {
            self.gop.push(frame.clone());
        }
    }
}

/// One media (one viewer pipeline shared by all viewers of the session).
struct Feed {
    media: glib::WeakRef<rtsp::RTSPMedia>,
    srcs: HashMap<u8, gst_app::AppSrc>,
    /// Nanoseconds added to frame timestamps, once started.
    offset_ns: Option<i64>,
}

struct PublisherInner {
    stage: Stage,
    stream: Stream,
    /// Video track, syntax and NAL length size for the capture-clock SEI.
    sei: Option<(u8, sei::NalSyntax, usize)>,
    has_video: bool,
    state: Mutex<PublisherState>,
    ended: AtomicBool,
}

/// The media launch line of a session's tracks: one appsrc, parser and
/// payloader per track. An error for a track that cannot be carried.
pub(crate) fn launch_line(tracks: &[TrackInfo]) -> anyhow::Result<String> {
    let mut launch = String::from("(");
    for (i, t) in tracks.iter().enumerate() {
        let (pay, extra) = match t.codec() {
            Some(Codec::H264) => ("rtph264pay", " config-interval=-1"),
            Some(Codec::H265) => ("rtph265pay", " config-interval=-1"),
            Some(Codec::Aac) => ("rtpmp4gpay", ""),
            Some(Codec::Opus) => ("rtpopuspay", ""),
            None => bail!("track {}: unsupported codec {:?}", t.id, t.codec),
        };
        let parser = parser_for_track(t)?;
        // Caps are checked here, set on the appsrc when a media is made.
        caps_for_track(t)?;
        launch.push_str(&format!(
            " appsrc name=src{i} ! {parser} ! {pay} name=pay{i} pt={}{extra}",
            96 + i
        ));
    }
    launch.push_str(" )");
    Ok(launch)
}

/// The video track that carries the capture-clock SEI: its id, NAL syntax
/// and NAL length size.
fn capture_clock_track(tracks: &[TrackInfo]) -> Option<(u8, sei::NalSyntax, usize)> {
    tracks.iter().find_map(|t| {
        let syntax = match t.codec()? {
            Codec::H264 => sei::NalSyntax::H264,
            Codec::H265 => sei::NalSyntax::H265,
            _ => return None,
        };
        Some((t.id, syntax, sei::length_size(syntax, &t.codec_data)))
    })
}

/// Runs a media's pipeline on the system clock itself: base time 0, never
/// moved. gst-rtsp-server prepares a live media (PLAYING until every stream
/// has caps), pauses it, and plays it on the client's PLAY; a pipeline
/// normally stops its running time while paused, so every frame timed
/// before the pause would go out that much later. And a fresh running time
/// near 0 would leave no room below "now" for the replayed GOP, whose
/// timestamps would then have to be raised by up to a GOP (a delay of that
/// much for the whole stream).
fn run_on_system_clock(bin: &gst::Bin) {
    if let Some(pipeline) = bin
        .parent()
        .and_then(|p| p.downcast::<gst::Pipeline>().ok())
    {
        pipeline.use_clock(Some(&gst::SystemClock::obtain()));
        pipeline.set_start_time(gst::ClockTime::NONE);
        pipeline.set_base_time(gst::ClockTime::ZERO);
    }
}

impl PublisherInner {
    fn is_video_keyframe(&self, frame: &MediaFrame) -> bool {
        frame.keyframe
            && self
                .stream
                .tracks
                .iter()
                .any(|t| t.id == frame.track && t.codec().is_some_and(|c| c.is_video()))
    }

    /// The appsrcs of a new media, set up for this session's tracks.
    fn appsrcs(&self, bin: &gst::Bin) -> anyhow::Result<HashMap<u8, gst_app::AppSrc>> {
        let mut srcs = HashMap::new();
        for (i, t) in self.stream.tracks.iter().enumerate() {
            let appsrc = bin
                .by_name(&format!("src{i}"))
                .ok_or_else(|| anyhow!("no src{i} in the media"))?
                .downcast::<gst_app::AppSrc>()
                .map_err(|_| anyhow!("src{i} is not an appsrc"))?;
            appsrc.set_caps(Some(&caps_for_track(t)?));
            appsrc.set_format(gst::Format::Time);
            appsrc.set_is_live(true);
            appsrc.set_do_timestamp(false);
            appsrc.set_block(false);
            appsrc.set_max_bytes(self.stage.max_queued_bytes);
            appsrc.set_leaky_type(gst_app::AppLeakyType::Downstream);
            srcs.insert(t.id, appsrc);
        }
        Ok(srcs)
    }

    /// Called when gst-rtsp-server has built a media for the mount.
    fn configure(
        &self,
        media: &rtsp::RTSPMedia,
        weak: &Weak<PublisherInner>,
    ) -> anyhow::Result<()> {
        let bin = media
            .element()
            .downcast::<gst::Bin>()
            .map_err(|_| anyhow!("media element is not a bin"))?;
        run_on_system_clock(&bin);
        let srcs = self.appsrcs(&bin)?;
        let weak = weak.clone();
        media.connect_unprepared(move |media| {
            if let Some(inner) = weak.upgrade() {
                lock(&inner.state)
                    .feeds
                    .retain(|f| f.media.upgrade().is_some_and(|m| m != *media));
                tracing::debug!(session = %inner.stream.session_id, "live media unprepared");
            }
        });
        let mut state = lock(&self.state);
        if self.ended.load(Ordering::SeqCst) {
            for src in srcs.values() {
                let _ = src.end_of_stream();
            }
            return Ok(());
        }
        state.feeds.push(Feed {
            media: media.downgrade(),
            srcs,
            offset_ns: None,
        });
        tracing::info!(session = %self.stream.session_id, "live media configured");
        Ok(())
    }

    /// The frame with the capture-clock SEI inserted, for the video track
    /// that carries it; `None` to send the frame as it is.
    fn with_capture_clock(&self, frame: &MediaFrame) -> Option<MediaFrame> {
        let (track, syntax, len) = self.sei?;
        if track != frame.track {
            return None;
        }
        let capture = self.stream.anchor_unix_us.saturating_add(frame.pts_us);
        let data = sei::insert_capture_clock(syntax, len, &frame.data, capture)?;
        Some(MediaFrame {
            data,
            ..frame.clone()
        })
    }

    fn push(&self, frame: &MediaFrame) {
        if self.ended.load(Ordering::SeqCst) {
            return;
        }
        if !self.stream.tracks.iter().any(|t| t.id == frame.track) {
            tracing::warn!(session = %self.stream.session_id, track = frame.track, "live frame for unknown track");
            return;
        }
        self.stage.shared.frames.inc();
        self.stream
            .position
            .fetch_max(frame.pts_us / 1000, Ordering::Relaxed);
        if let Some(h) = &self.stream.hls {
            h.push(frame);
        }
        let with_clock = self.with_capture_clock(frame);
        let frame = with_clock.as_ref().unwrap_or(frame);
        let mut state = lock(&self.state);
        let state = &mut *state;
        if self.has_video {
            let keyframe = self.is_video_keyframe(frame);
            state.keep_gop(frame, keyframe, self.stage.max_gop_bytes);
        }
        let gop = &state.gop;
        let gop_valid = state.gop_valid;
        state.feeds.retain_mut(|feed| {
            let Some(offset) = feed.offset_ns else {
                return self.start_feed(feed, frame, gop, gop_valid);
            };
            self.feed_frame(feed, frame, offset)
        });
    }

    /// Starts feeding a media once its pipeline runs: replays the GOP (or
    /// starts with this frame) with one offset for all tracks. Returns whether
    /// the media is still alive.
    fn start_feed(
        &self,
        feed: &mut Feed,
        frame: &MediaFrame,
        gop: &[MediaFrame],
        gop_valid: bool,
    ) -> bool {
        let Some(first) = feed.srcs.values().next() else {
            return false;
        };
        let Some(now) = playing_running_time(first) else {
            // Not playing yet; frames are kept in the GOP meanwhile.
            return feed.media.upgrade().is_some();
        };
        let frames: &[MediaFrame] = if self.has_video {
            if !gop_valid || gop.is_empty() {
                return true; // wait for a keyframe
            }
            gop
        } else {
            std::slice::from_ref(frame)
        };
        let now_ns = i64::try_from(now.nseconds()).unwrap_or(i64::MAX);
        let min_ts_ns = frames
            .iter()
            .map(|f| f.pts_us.min(f.dts_us).saturating_mul(1000))
            .min()
            .unwrap_or(0);
        // The newest capture time known now, over every track: a track that
        // arrives later than its capture time (audio behind its encoder's
        // look-ahead) must not hold the others back, so the offset follows
        // the earliest-arriving track and late frames go out on arrival.
        let newest_us = frames
            .iter()
            .map(|f| f.pts_us)
            .chain(std::iter::once(frame.pts_us))
            .max()
            .unwrap_or(frame.pts_us);
        let offset = now_ns
            .saturating_sub(newest_us.saturating_mul(1000))
            .max(min_ts_ns.saturating_neg());
        feed.offset_ns = Some(offset);
        tracing::info!(
            session = %self.stream.session_id,
            replayed = frames.len(),
            offset_ns = offset,
            "live media starts"
        );
        frames.iter().all(|f| self.feed_frame(feed, f, offset))
    }

    /// Pushes one frame into a media; false when the media has stopped.
    fn feed_frame(&self, feed: &Feed, frame: &MediaFrame, offset_ns: i64) -> bool {
        let Some(src) = feed.srcs.get(&frame.track) else {
            return true;
        };
        let to_clock = |us: i64| {
            u64::try_from(us.saturating_mul(1000).saturating_add(offset_ns))
                .ok()
                .map(gst::ClockTime::from_nseconds)
        };
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(to_clock(frame.pts_us));
            b.set_dts(to_clock(frame.dts_us));
            if frame.duration_us > 0 {
                b.set_duration(gst::ClockTime::from_useconds(u64::from(frame.duration_us)));
            }
            if !frame.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        match src.push_buffer(buffer) {
            Ok(_) => true,
            Err(flow) => {
                tracing::debug!(session = %self.stream.session_id, ?flow, "live media stopped accepting frames");
                false
            }
        }
    }

    fn end(&self) {
        if self.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        self.stage.mounts.remove_factory(&self.stream.path);
        let mut state = lock(&self.state);
        for feed in state.feeds.drain(..) {
            for src in feed.srcs.values() {
                let _ = src.end_of_stream();
            }
        }
        state.gop.clear();
        if let Some(h) = &self.stream.hls {
            h.end();
        }
        if let Some(published) = self.stage.published.upgrade() {
            lock(&published).remove(&self.stream.published_key);
        }
        tracing::info!(session = %self.stream.session_id, mount = %self.stream.path, "live stream ended");
    }
}

/// The running time of an element of a playing pipeline; `None` before it
/// plays. Only a playing element has its base time: while its pipeline goes
/// to PLAYING it may already have a clock but still a base time of 0, and
/// "running time" would then be the clock's whole uptime, which would
/// schedule every frame hours ahead (a viewer that never gets a picture).
fn playing_running_time(element: &impl IsA<gst::Element>) -> Option<gst::ClockTime> {
    // The top-level pipeline's base time, which a playing element has too.
    let mut top: gst::Element = element.clone().upcast();
    while let Some(parent) = top.parent().and_then(|p| p.downcast::<gst::Element>().ok()) {
        top = parent;
    }
    let playing = element.current_state() == gst::State::Playing
        && element.clock().is_some()
        && element.base_time() == top.base_time();
    element.current_running_time().filter(|_| playing)
}

/// Feeds one session's frames to its live viewers. Dropping it ends the
/// stream.
pub struct LivePublisher {
    inner: Arc<PublisherInner>,
}

impl std::fmt::Debug for LivePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePublisher")
            .field("session_id", &self.inner.stream.session_id)
            .field("path", &self.inner.stream.path)
            .finish_non_exhaustive()
    }
}

impl LivePublisher {
    /// Mounts a stream at its path with a shared media factory running
    /// `launch` ([`launch_line`]), and starts publishing it.
    pub(crate) fn mount(stage: Stage, stream: Stream, launch: &str) -> LivePublisher {
        let sei = if stage.capture_clock_sei {
            capture_clock_track(&stream.tracks)
        } else {
            None
        };
        let has_video = stream
            .tracks
            .iter()
            .any(|t| t.codec().is_some_and(|c| c.is_video()));
        let inner = Arc::new(PublisherInner {
            stage,
            stream,
            sei,
            has_video,
            state: Mutex::new(PublisherState::default()),
            ended: AtomicBool::new(false),
        });
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(launch);
        factory.set_shared(true);
        let weak = Arc::downgrade(&inner);
        factory.connect_media_configure(move |_, media| {
            if let Some(inner) = weak.upgrade() {
                if let Err(e) = inner.configure(media, &Arc::downgrade(&inner)) {
                    tracing::error!(session = %inner.stream.session_id, "cannot configure live media: {e:#}");
                }
            }
        });
        let path = &inner.stream.path;
        inner.stage.mounts.add_factory(path, factory);
        tracing::info!(session = %inner.stream.session_id, mount = %path, launch = %launch, "live stream mounted");
        LivePublisher { inner }
    }

    /// The mount path, `/live/{session_id}`.
    pub fn path(&self) -> &str {
        &self.inner.stream.path
    }

    /// Forwards a frame to every current viewer pipeline. Never blocks on
    /// the network: a viewer pipeline that falls behind drops its oldest
    /// queued frames.
    pub fn push(&self, frame: &MediaFrame) {
        self.inner.push(frame);
    }

    /// Ends the stream: EOS to the viewers, mount removed.
    pub fn end(self) {
        self.inner.end();
    }
}

impl FrameSink for LivePublisher {
    fn push(&self, frame: &MediaFrame) {
        self.inner.push(frame);
    }
}

impl Drop for LivePublisher {
    fn drop(&mut self) {
        self.inner.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window in which a media's element has a clock but not yet its
    /// pipeline's base time (the pipeline is on its way to PLAYING) gives no
    /// running time, so a feed never starts hours ahead of the clock.
    #[test]
    fn running_time_needs_a_playing_element_with_its_base_time() {
        gst::init().unwrap();
        let pipeline = gst::parse::launch("appsrc name=src is-live=true ! fakesink sync=false")
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        let src = pipeline.by_name("src").unwrap();
        assert_eq!(playing_running_time(&src), None);
        // A clock, but not yet the base time its pipeline chose: the raw
        // running time is the clock's uptime.
        pipeline.set_base_time(gst::ClockTime::from_seconds(1));
        src.set_clock(Some(&gst::SystemClock::obtain())).unwrap();
        assert!(src.current_running_time().is_some());
        assert_eq!(playing_running_time(&src), None);
        src.set_clock(gst::Clock::NONE).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while src.current_state() != gst::State::Playing && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let now = playing_running_time(&src).expect("running time once playing");
        assert!(now < gst::ClockTime::from_seconds(10), "running time {now}");
        pipeline.set_state(gst::State::Null).unwrap();
    }
}
