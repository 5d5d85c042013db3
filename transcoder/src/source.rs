//! Reading encoded frames out of a media file without re-encoding.
//!
//! [`FileSource`] is what the phone simulator (`sharecast push`) and the tests
//! use in place of a camera: it demuxes an MP4 / M4A / MOV (qtdemux) or a
//! Matroska / WebM file (matroskademux) into appsinks and hands out
//! [`MediaFrame`]s one at a time, with [`TrackInfo`]s describing each track
//! exactly as a phone would announce them (codec name, codec configuration
//! record, dimensions, frame rate, sample rate, channels, display rotation).
//!
//! The display rotation comes from the demuxer's `image-orientation` tag
//! (qtdemux reads it from the track matrix): `rotate-90` becomes
//! `rotation: 90`, and so on. Mirrored orientations (`flip-rotate-*`) are
//! refused when the file is opened: a phone announces a rotation only.
//!
//! Tracks whose codec Sharecast does not accept (for example VP8) are still
//! reported, with their codec name ("vp8"), so that the server can reject them
//! with a clear error.
//!
//! Frames come out interleaved by decode timestamp, as a phone sends them.
//! Timestamps are the demuxer's running time (edit lists applied) in
//! microseconds, so the first frame is at or near 0. Decode timestamps of
//! B-frame video may be slightly negative.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sharecast_formats::media::{MediaFrame, TrackInfo};

/// How many frames may be demuxed ahead of the reader.
const READ_AHEAD: usize = 64;
/// Most frames held back to interleave the tracks by decode time (a file
/// whose tracks are interleaved more coarsely is read in chunk order).
const MAX_REORDER: usize = 4096;
/// How long `open` waits for the demuxer to announce all tracks.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

enum Item {
    Frame(MediaFrame),
    Eos(u8),
    Error(String),
}

enum Discovery {
    Track(TrackInfo),
    NoMorePads,
    Error(String),
}

/// A media file opened for reading frame by frame.
pub struct FileSource {
    /// The file's tracks, in demuxer order; `id` is the index.
    pub tracks: Vec<TrackInfo>,
    frames: Option<Receiver<Item>>,
    pipeline: gst::Pipeline,
    /// Frames read ahead, per track, to hand them out in DTS order.
    queued: BTreeMap<u8, VecDeque<MediaFrame>>,
    queued_total: usize,
    ended: BTreeSet<u8>,
    done: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("tracks", &self.tracks)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Container formats [`FileSource`] can demux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    IsoBmff,
    Matroska,
}

fn sniff_container(path: &Path) -> anyhow::Result<Container> {
    let mut head = [0u8; 12];
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = file
        .read(&mut head)
        .with_context(|| format!("reading {}", path.display()))?;
    let head = &head[..n];
    if head.len() >= 4 && head[..4] == [0x1a, 0x45, 0xdf, 0xa3] {
        return Ok(Container::Matroska);
    }
    if head.len() >= 8 {
        let kind = &head[4..8];
        if [
            b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp",
        ]
        .iter()
        .any(|k| kind == *k)
        {
            return Ok(Container::IsoBmff);
        }
    }
    bail!(
        "{}: not an MP4/MOV/M4A or Matroska/WebM file",
        path.display()
    )
}

/// The wire codec name for a caps structure ("h264", "aac", "vp8", ...).
pub(crate) fn codec_name(s: &gst::StructureRef) -> String {
    match s.name().as_str() {
        "video/x-h264" => "h264".into(),
        "video/x-h265" => "h265".into(),
        "audio/x-opus" => "opus".into(),
        "audio/mpeg" => match s.get::<i32>("mpegversion") {
            Ok(2) | Ok(4) => "aac".into(),
            Ok(1) => "mp3".into(),
            _ => "mpeg-audio".into(),
        },
        other => {
            let short = other.split('/').nth(1).unwrap_or(other);
            short.strip_prefix("x-").unwrap_or(short).to_string()
        }
    }
}

fn positive(s: &gst::StructureRef, field: &str) -> Option<u32> {
    s.get::<i32>(field)
        .ok()
        .and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
}

fn buffer_bytes(buffer: &gst::BufferRef) -> Option<Vec<u8>> {
    buffer.map_readable().ok().map(|m| m.as_slice().to_vec())
}

/// Builds the [`TrackInfo`] a phone would announce for a demuxed stream.
pub fn track_info_from_caps(id: u8, caps: &gst::CapsRef) -> anyhow::Result<TrackInfo> {
    let s = caps
        .structure(0)
        .ok_or_else(|| anyhow!("track {id}: empty caps"))?;
    let mut codec_data = s
        .get::<gst::Buffer>("codec_data")
        .ok()
        .and_then(|b| buffer_bytes(&b))
        .unwrap_or_default();
    if codec_data.is_empty() && s.name() == "audio/x-opus" {
        // Matroska carries the OpusHead as the first stream header.
        if let Ok(headers) = s.get::<gst::Array>("streamheader") {
            if let Some(Ok(first)) = headers.first().map(|v| v.get::<gst::Buffer>()) {
                codec_data = buffer_bytes(&first).unwrap_or_default();
            }
        }
    }
    let framerate = s
        .get::<gst::Fraction>("framerate")
        .ok()
        .and_then(|f| {
            Some((
                u32::try_from(f.numer()).ok()?,
                u32::try_from(f.denom()).ok()?,
            ))
        })
        .filter(|(n, d)| *n > 0 && *d > 0);
    Ok(TrackInfo {
        id,
        codec: codec_name(s),
        codec_data,
        width: positive(s, "width"),
        height: positive(s, "height"),
        framerate,
        sample_rate: positive(s, "rate"),
        channels: positive(s, "channels"),
        // Set from the stream's `image-orientation` tag once it is known.
        rotation: 0,
    })
}

/// Display rotation (degrees clockwise) for a GStreamer `image-orientation`
/// tag value. Mirrored orientations (`flip-rotate-*`) are refused: a phone
/// announces a rotation only, and a mirror cannot be expressed as one.
pub fn rotation_from_orientation(tag: &str) -> Result<u32, String> {
    match tag {
        "rotate-0" => Ok(0),
        "rotate-90" => Ok(90),
        "rotate-180" => Ok(180),
        "rotate-270" => Ok(270),
        other => Err(format!(
            "image orientation {other:?} is not supported: only rotations \
             (rotate-0, rotate-90, rotate-180, rotate-270) are carried, not mirrored pictures"
        )),
    }
}

/// What a demuxed pad told before its first buffer.
#[derive(Debug, Default)]
struct PadTags {
    /// Last `image-orientation` tag seen.
    orientation: Option<String>,
    /// A buffer (or the end of the stream) went through: every tag that
    /// comes before the media has been seen.
    flowing: bool,
}

type SharedTags = Arc<Mutex<HashMap<u8, PadTags>>>;

/// Watches a demuxed pad's tag events until its first buffer.
fn watch_tags(pad: &gst::Pad, id: u8, tags: SharedTags) {
    let note = move |tags: &SharedTags, event: &gst::EventRef| {
        if let gst::EventView::Tag(t) = event.view() {
            if let Some(o) = t.tag().get::<gst::tags::ImageOrientation>() {
                let mut map = tags.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(id).or_default().orientation = Some(o.get().to_string());
            }
        }
    };
    // Tags stored on the pad before it was announced.
    for idx in 0..8 {
        match pad.sticky_event::<gst::event::Tag>(idx) {
            Some(ev) => note(&tags, &ev),
            None => break,
        }
    }
    pad.add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER,
        move |_, info| match &info.data {
            Some(gst::PadProbeData::Event(ev)) => {
                note(&tags, ev);
                if ev.type_() == gst::EventType::Eos {
                    let mut map = tags.lock().unwrap_or_else(|e| e.into_inner());
                    map.entry(id).or_default().flowing = true;
                    return gst::PadProbeReturn::Remove;
                }
                gst::PadProbeReturn::Ok
            }
            Some(gst::PadProbeData::Buffer(_)) => {
                let mut map = tags.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(id).or_default().flowing = true;
                gst::PadProbeReturn::Remove
            }
            _ => gst::PadProbeReturn::Ok,
        },
    );
}

fn to_us(t: gst::Signed<gst::ClockTime>) -> i64 {
    match t {
        gst::Signed::Positive(t) => i64::try_from(t.useconds()).unwrap_or(i64::MAX),
        gst::Signed::Negative(t) => -i64::try_from(t.useconds()).unwrap_or(i64::MAX),
    }
}

/// Converts one demuxed sample into a frame; running time, microseconds.
fn sample_to_frame(track: u8, seq: u64, sample: &gst::Sample) -> Result<MediaFrame, String> {
    let buffer = sample
        .buffer()
        .ok_or_else(|| format!("track {track}: sample without buffer"))?;
    let segment = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned())
        .unwrap_or_default();
    let pts = buffer.pts().or(buffer.dts());
    let dts = buffer.dts().or(buffer.pts());
    let (Some(pts), Some(dts)) = (pts, dts) else {
        return Err(format!("track {track}: frame {seq} has no timestamp"));
    };
    let pts_rt = segment
        .to_running_time_full(pts)
        .ok_or_else(|| format!("track {track}: frame {seq} outside the segment"))?;
    let dts_rt = segment.to_running_time_full(dts).unwrap_or(pts_rt);
    let data = buffer
        .map_readable()
        .map_err(|_| format!("track {track}: frame {seq} not readable"))?;
    Ok(MediaFrame {
        track,
        seq,
        pts_us: to_us(pts_rt),
        dts_us: to_us(dts_rt),
        duration_us: buffer
            .duration()
            .map(|d| u32::try_from(d.useconds()).unwrap_or(u32::MAX))
            .unwrap_or(0),
        keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        data: Bytes::copy_from_slice(data.as_slice()),
    })
}

fn bus_error(bus: &gst::Bus) -> Option<anyhow::Error> {
    while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = msg.view() {
            let src = msg
                .src()
                .map(|s| s.path_string().to_string())
                .unwrap_or_default();
            return Some(anyhow!(
                "demuxing failed in {src}: {} ({:?})",
                e.error(),
                e.debug()
            ));
        }
    }
    None
}

/// Creates the appsink for one demuxed pad and links it.
fn attach_track(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    id: u8,
    frames: SyncSender<Item>,
    tags: SharedTags,
) -> anyhow::Result<TrackInfo> {
    let caps = pad
        .current_caps()
        .ok_or_else(|| anyhow!("pad {} has no caps", pad.name()))?;
    let info = track_info_from_caps(id, &caps)?;
    watch_tags(pad, id, tags);
    let eos_tx = frames.clone();
    let mut seq = 0u64;
    let sink = gst_app::AppSink::builder()
        .name(format!("track{id}"))
        .sync(false)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Flushing)?;
                    let item = match sample_to_frame(id, seq, &sample) {
                        Ok(frame) => Item::Frame(frame),
                        Err(e) => Item::Error(e),
                    };
                    seq += 1;
                    // The reader went away: stop the streaming thread.
                    frames.send(item).map_err(|_| gst::FlowError::Flushing)?;
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos(move |_| {
                    let _ = eos_tx.send(Item::Eos(id));
                })
                .build(),
        )
        .build();
    sink.set_property("async", false);
    pipeline
        .add(&sink)
        .context("adding appsink to the demux pipeline")?;
    sink.sync_state_with_parent()
        .context("starting the appsink")?;
    let sinkpad = sink
        .static_pad("sink")
        .ok_or_else(|| anyhow!("appsink without sink pad"))?;
    pad.link(&sinkpad)
        .with_context(|| format!("linking {} to its appsink", pad.name()))?;
    Ok(info)
}

/// `filesrc ! {qtdemux,matroskademux}`, added to a new pipeline and linked;
/// returns the pipeline and the demuxer.
fn demux_pipeline(
    path: &Path,
    container: Container,
) -> anyhow::Result<(gst::Pipeline, gst::Element)> {
    let pipeline = gst::Pipeline::with_name("file-source");
    let src = gst::ElementFactory::make("filesrc")
        .name("src")
        .property("location", path.to_string_lossy().as_ref())
        .build()
        .context("creating filesrc")?;
    let demux_factory = match container {
        Container::IsoBmff => "qtdemux",
        Container::Matroska => "matroskademux",
    };
    let demux = gst::ElementFactory::make(demux_factory)
        .name("demux")
        .build()
        .with_context(|| format!("creating {demux_factory}"))?;
    pipeline
        .add_many([&src, &demux])
        .context("building the demux pipeline")?;
    src.link(&demux).context("linking filesrc to the demuxer")?;
    Ok((pipeline, demux))
}

/// Gives each pad the demuxer adds a track id and an appsink, and says what
/// it found (a track, an error, or that there are no more pads) on
/// `discovered`.
fn announce_tracks(
    demux: &gst::Element,
    pipeline: &gst::Pipeline,
    frames: SyncSender<Item>,
    discovered: mpsc::Sender<Discovery>,
    tags: SharedTags,
) {
    let next_id = std::sync::Mutex::new(0u8);
    let weak = pipeline.downgrade();
    let pad_discovered = discovered.clone();
    demux.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let id = {
            let mut next = next_id.lock().unwrap_or_else(|e| e.into_inner());
            let id = *next;
            *next = next.saturating_add(1);
            id
        };
        let msg = match attach_track(&pipeline, pad, id, frames.clone(), tags.clone()) {
            Ok(info) => Discovery::Track(info),
            Err(e) => Discovery::Error(format!("{e:#}")),
        };
        let _ = pad_discovered.send(msg);
    });
    demux.connect_no_more_pads(move |_| {
        let _ = discovered.send(Discovery::NoMorePads);
    });
}

/// Logs the demuxer's warnings; errors stay on the bus for [`bus_error`].
fn log_warnings(pipeline: &gst::Pipeline, path: &Path) {
    if let Some(bus) = pipeline.bus() {
        let name = path.display().to_string();
        bus.set_sync_handler(move |_, msg| match msg.view() {
            gst::MessageView::Error(_) => gst::BusSyncReply::Pass,
            gst::MessageView::Warning(w) => {
                tracing::warn!(path = %name, "demuxer warning: {} ({:?})", w.error(), w.debug());
                gst::BusSyncReply::Drop
            }
            _ => gst::BusSyncReply::Drop,
        });
    }
}

impl FileSource {
    /// Opens a media file and waits until the demuxer has announced all its
    /// tracks. Frames are then read with [`FileSource::next_frame`] (or by
    /// iterating).
    pub fn open(path: &Path) -> anyhow::Result<FileSource> {
        gst::init().context("initialising GStreamer")?;
        let container = sniff_container(path)?;
        let (pipeline, demux) = demux_pipeline(path, container)?;
        let (frame_tx, frame_rx) = mpsc::sync_channel::<Item>(READ_AHEAD);
        let (disc_tx, disc_rx) = mpsc::channel::<Discovery>();
        let tags = SharedTags::default();
        announce_tracks(&demux, &pipeline, frame_tx, disc_tx, tags.clone());
        log_warnings(&pipeline, path);
        let mut source = FileSource {
            tracks: Vec::new(),
            frames: Some(frame_rx),
            pipeline,
            queued: BTreeMap::new(),
            queued_total: 0,
            ended: BTreeSet::new(),
            done: false,
        };
        source
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| {
                bus_error(&source.bus())
                    .unwrap_or_else(|| anyhow!("demux pipeline failed to start"))
            })
            .with_context(|| format!("opening {}", path.display()))?;
        let deadline = Instant::now() + DISCOVERY_TIMEOUT;
        source
            .discover_tracks(&disc_rx, deadline)
            .with_context(|| format!("opening {}", path.display()))?;
        source.tracks.sort_by_key(|t| t.id);
        if source.tracks.is_empty() {
            bail!("{}: no tracks", path.display());
        }
        source
            .read_rotations(&tags, deadline)
            .with_context(|| format!("opening {}", path.display()))?;
        tracing::debug!(path = %path.display(), tracks = ?source.tracks, "opened media file");
        Ok(source)
    }

    /// Collects the tracks the demuxer announces until it has no more pads.
    fn discover_tracks(
        &mut self,
        discovered: &Receiver<Discovery>,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        loop {
            match discovered.recv_timeout(Duration::from_millis(50)) {
                Ok(Discovery::Track(info)) => self.tracks.push(info),
                Ok(Discovery::NoMorePads) => return Ok(()),
                Ok(Discovery::Error(e)) => bail!(e),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    if let Some(e) = bus_error(&self.bus()) {
                        return Err(e);
                    }
                    if Instant::now() > deadline {
                        bail!("timed out waiting for the demuxer");
                    }
                }
            }
        }
    }

    /// Sets each video track's rotation from its `image-orientation` tag.
    /// The demuxer sends a stream's tags just before its first buffer, so
    /// this reads ahead (into the interleaving queues) until every video
    /// track has started.
    fn read_rotations(&mut self, tags: &SharedTags, deadline: Instant) -> anyhow::Result<()> {
        let video: Vec<u8> = self
            .tracks
            .iter()
            .filter(|t| t.width.is_some())
            .map(|t| t.id)
            .collect();
        loop {
            let started = {
                let map = tags.lock().unwrap_or_else(|e| e.into_inner());
                video
                    .iter()
                    .all(|id| map.get(id).is_some_and(|t| t.flowing) || self.ended.contains(id))
            };
            if started {
                break;
            }
            if Instant::now() > deadline || self.queued_total >= MAX_REORDER {
                bail!("timed out waiting for the video tracks' first frames");
            }
            self.receive_until(Some(deadline))?;
        }
        let map = tags.lock().unwrap_or_else(|e| e.into_inner());
        for t in self.tracks.iter_mut().filter(|t| video.contains(&t.id)) {
            if let Some(o) = map.get(&t.id).and_then(|p| p.orientation.as_deref()) {
                t.rotation =
                    rotation_from_orientation(o).map_err(|e| anyhow!("track {}: {e}", t.id))?;
            }
        }
        Ok(())
    }

    fn bus(&self) -> gst::Bus {
        // A pipeline always has a bus.
        self.pipeline.bus().unwrap_or_default()
    }

    /// The file's duration, as the demuxer knows it (none for a file that
    /// does not say).
    pub fn duration(&self) -> Option<Duration> {
        self.pipeline
            .query_duration::<gst::ClockTime>()
            .map(|d| Duration::from_nanos(d.nseconds()))
    }

    /// The next frame (blocking), tracks interleaved by decode timestamp as
    /// a phone would send them; `None` at the end of the file,
    /// `Some(Err(..))` if demuxing failed (after which the source is
    /// finished).
    pub fn next_frame(&mut self) -> Option<anyhow::Result<MediaFrame>> {
        loop {
            if self.done {
                return None;
            }
            if self.interleave_ready() {
                if let Some(frame) = self.pop_earliest() {
                    return Some(Ok(frame));
                }
                if self.ended.len() >= self.tracks.len() {
                    self.done = true;
                    return None;
                }
            }
            match self.receive() {
                Ok(()) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }

    /// Whether the earliest queued frame can go: every track still running
    /// has a frame queued (or the reorder window is full).
    fn interleave_ready(&self) -> bool {
        self.queued_total >= MAX_REORDER
            || self.tracks.iter().all(|t| {
                self.ended.contains(&t.id) || self.queued.get(&t.id).is_some_and(|q| !q.is_empty())
            })
    }

    fn pop_earliest(&mut self) -> Option<MediaFrame> {
        let track = self
            .queued
            .iter()
            .filter_map(|(id, q)| q.front().map(|f| (f.dts_us, *id)))
            .min()?
            .1;
        let frame = self.queued.get_mut(&track)?.pop_front()?;
        self.queued_total -= 1;
        Some(frame)
    }

    /// Waits for the next item from the demuxer and queues it.
    fn receive(&mut self) -> anyhow::Result<()> {
        self.receive_until(None)
    }

    /// Like [`FileSource::receive`], but gives up (with `Ok`) at `deadline`.
    fn receive_until(&mut self, deadline: Option<Instant>) -> anyhow::Result<()> {
        loop {
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Ok(());
            }
            let Some(rx) = self.frames.as_ref() else {
                bail!("source is closed");
            };
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Item::Frame(frame)) => {
                    self.queued.entry(frame.track).or_default().push_back(frame);
                    self.queued_total += 1;
                    return Ok(());
                }
                Ok(Item::Eos(track)) => {
                    self.ended.insert(track);
                    return Ok(());
                }
                Ok(Item::Error(e)) => bail!(e),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(e) = bus_error(&self.bus()) {
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(bus_error(&self.bus())
                        .unwrap_or_else(|| anyhow!("demuxer stopped without finishing")));
                }
            }
        }
    }
}

impl Iterator for FileSource {
    type Item = anyhow::Result<MediaFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame()
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        // Drop the receiver first so that a streaming thread blocked on a
        // full channel wakes up, then stop the pipeline.
        self.frames = None;
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
