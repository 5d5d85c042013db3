//! A live camera for `sharecast push --input testsrc`: sensor-like noise (so
//! the encoder really uses the bitrate it is given)
//! with the capture clock burnt in, encoded live with x264 (and a tick tone
//! encoded to AAC), whose encoder bitrate and frame rate follow the client
//! SDK's advice, the way a phone's encoder would.
//!
//! ```text
//! videotestsrc is-live pattern=snow ! video/x-raw,640x360,30/1 ! clockoverlay ! videorate name=rate
//!   ! videoconvert ! x264enc name=enc tune=zerolatency ! h264parse ! avc/au ! appsink name=video
//! audiotestsrc is-live wave=ticks ! audio/x-raw,48000,2ch ! avenc_aac ! aacparse ! appsink name=audio
//! ```
//!
//! Frame rate changes go through `videorate max-rate` (frames are dropped
//! before the encoder, so caps and codec data never change mid-session).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sharecast_formats::media::{MediaFrame, TrackInfo};
use sharecast_transcoder::source::track_info_from_caps;

/// A running live test source.
pub(crate) struct TestSource {
    pipeline: gst::Pipeline,
    encoder: gst::Element,
    rate: gst::Element,
    sinks: Vec<(u8, gst_app::AppSink)>,
    /// Track descriptions (known once the encoders produced their first output).
    pub tracks: Vec<TrackInfo>,
    pending: Vec<Option<gst::Sample>>,
    seq: Vec<u64>,
    base: Option<i64>,
}

/// A buffer time as running time in µs (encoders shift their segments, so
/// raw buffer times of different branches are not comparable).
fn running_us(sample: &gst::Sample, t: Option<gst::ClockTime>) -> Option<i64> {
    let t = t?;
    let seg = sample.segment()?.downcast_ref::<gst::ClockTime>()?;
    match seg.to_running_time_full(t)? {
        gst::Signed::Positive(v) => Some(v.useconds() as i64),
        gst::Signed::Negative(v) => Some(-(v.useconds() as i64)),
    }
}

impl TestSource {
    /// Start the pattern at `width`x`height`, `fps`, with the encoder at `bitrate_bps`.
    pub(crate) fn start(width: u32, height: u32, fps: u32, bitrate_bps: u64) -> Result<TestSource> {
        gst::init().context("initialising GStreamer")?;
        let overlay = if gst::ElementFactory::find("clockoverlay").is_some() {
            "clockoverlay time-format=\"%H:%M:%S\" ! timeoverlay valignment=bottom ! "
        } else {
            ""
        };
        let desc = format!(
            "videotestsrc is-live=true pattern=snow ! video/x-raw,width={width},height={height},framerate={fps}/1 \
             ! {overlay}videorate name=rate drop-only=true max-rate={fps} ! videoconvert ! video/x-raw,format=I420 \
             ! x264enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bitrate={kbps} \
             ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=video sync=false \
             audiotestsrc is-live=true wave=ticks ! audio/x-raw,rate=48000,channels=2 ! audioconvert \
             ! avenc_aac bitrate=96000 ! aacparse ! appsink name=audio sync=false",
            kbps = (bitrate_bps / 1000).max(1)
        );
        let pipeline = gst::parse::launch(&desc)
            .context("building the test source pipeline")?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("test source is not a pipeline"))?;
        let get = |name: &str| {
            pipeline
                .by_name(name)
                .with_context(|| format!("test source element {name}"))
        };
        let encoder = get("enc")?;
        let rate = get("rate")?;
        let mut sinks = Vec::new();
        for (id, name) in [(0u8, "video"), (1u8, "audio")] {
            let sink = get(name)?
                .downcast::<gst_app::AppSink>()
                .map_err(|_| anyhow!("{name} is not an appsink"))?;
            sink.set_max_buffers(1000);
            sinks.push((id, sink));
        }
        pipeline
            .set_state(gst::State::Playing)
            .context("starting the test source")?;
        let mut src = TestSource {
            pipeline,
            encoder,
            rate,
            tracks: Vec::new(),
            pending: vec![None, None],
            seq: vec![0, 0],
            base: None,
            sinks,
        };
        // The first sample of each sink carries the negotiated caps (with codec data).
        for i in 0..src.sinks.len() {
            let (id, sink) = &src.sinks[i];
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(10))
                .with_context(|| format!("test source track {id} produced nothing"))?;
            let caps = sample.caps().context("first sample without caps")?;
            src.tracks.push(track_info_from_caps(*id, caps)?);
            src.pending[i] = Some(sample);
        }
        Ok(src)
    }

    /// A handle that changes the encoder's targets from another thread.
    pub(crate) fn controls(&self) -> Controls {
        Controls {
            encoder: self.encoder.clone(),
            rate: self.rate.clone(),
        }
    }

    /// The next encoded frame of either track (earliest first), blocking up
    /// to `timeout`.
    pub(crate) fn next_frame(&mut self, timeout: Duration) -> Option<Result<MediaFrame>> {
        for i in 0..self.sinks.len() {
            if self.pending[i].is_none() {
                let t = gst::ClockTime::from_nseconds(timeout.as_nanos() as u64);
                self.pending[i] = self.sinks[i].1.try_pull_sample(t);
            }
        }
        let dts_of = |s: &Option<gst::Sample>| {
            s.as_ref()
                .and_then(|s| s.buffer().and_then(|b| running_us(s, b.dts_or_pts())))
                .unwrap_or(i64::MAX)
        };
        let idx = (0..self.sinks.len())
            .filter(|i| self.pending[*i].is_some())
            .min_by_key(|i| dts_of(&self.pending[*i]))?;
        let sample = self.pending[idx].take()?;
        let buffer = sample.buffer()?;
        let Some(pts) = running_us(&sample, buffer.pts()) else {
            return Some(Err(anyhow!("encoded buffer without a timestamp")));
        };
        let dts = running_us(&sample, buffer.dts()).unwrap_or(pts);
        let base = *self.base.get_or_insert(dts);
        let (pts_us, dts_us) = (pts - base, dts - base);
        let data = match buffer.map_readable() {
            Ok(m) => bytes::Bytes::copy_from_slice(m.as_slice()),
            Err(_) => return Some(Err(anyhow!("unreadable encoded buffer"))),
        };
        let track = self.sinks[idx].0;
        let seq = self.seq[idx];
        self.seq[idx] += 1;
        Some(Ok(MediaFrame {
            track,
            seq,
            pts_us,
            dts_us,
            duration_us: buffer.duration().map(|d| d.useconds() as u32).unwrap_or(0),
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data,
        }))
    }
}

/// Changes the live encoder's targets.
#[derive(Clone)]
pub(crate) struct Controls {
    encoder: gst::Element,
    rate: gst::Element,
}

impl Controls {
    /// Follow the SDK's advice: encoder bitrate and frame rate.
    pub(crate) fn set_target(&self, bitrate_bps: u64, fps: u32) {
        self.encoder
            .set_property("bitrate", ((bitrate_bps / 1000).max(16)) as u32);
        self.rate.set_property("max-rate", fps.max(1) as i32);
    }
}

impl Drop for TestSource {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
