//! What every pipeline of the transcoder builds the same way: elements with
//! a clear error when a plugin is missing, the appsrc a track's frames go
//! into, frames as buffers on the shifted timeline, and the link into a
//! muxer. (The bus watch every pipeline shares is `recording::watch_bus`.)

use anyhow::{anyhow, Context};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sharecast_formats::media::{MediaFrame, TrackInfo};

use crate::caps::caps_for_track;

/// Offset added to buffer timestamps (and to the segment start) so that
/// negative decode timestamps can be represented: 1000 hours, as in
/// GStreamer's video encoders.
pub(crate) const TS_SHIFT_US: i64 = 1000 * 3600 * 1_000_000;

/// A timestamp, µs, on the shifted timeline.
pub(crate) fn shifted(us: i64) -> gst::ClockTime {
    gst::ClockTime::from_useconds(u64::try_from(us.saturating_add(TS_SHIFT_US)).unwrap_or(0))
}

/// The segment every buffer is pushed in: running time = timestamp − shift.
pub(crate) fn shifted_segment() -> gst::FormattedSegment<gst::ClockTime> {
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_start(shifted(0));
    segment.set_time(gst::ClockTime::ZERO);
    segment
}

/// A frame as a buffer on the shifted timeline, at `pts_us` / `dts_us`
/// (the frame's own timestamps, or re-timed ones), with its duration and
/// its keyframe flag.
pub(crate) fn frame_buffer(
    frame: &MediaFrame,
    pts_us: i64,
    dts_us: i64,
) -> anyhow::Result<gst::Buffer> {
    let mut buffer = gst::Buffer::from_slice(frame.data.clone());
    let b = buffer
        .get_mut()
        .ok_or_else(|| anyhow!("new buffer is not writable"))?;
    b.set_pts(shifted(pts_us));
    b.set_dts(shifted(dts_us));
    if frame.duration_us > 0 {
        b.set_duration(gst::ClockTime::from_useconds(u64::from(frame.duration_us)));
    }
    if !frame.keyframe {
        b.set_flags(gst::BufferFlags::DELTA_UNIT);
    }
    Ok(buffer)
}

/// Creates an element; the error names the factory (a missing plugin).
pub(crate) fn make(factory: &str) -> anyhow::Result<gst::Element> {
    built(factory, gst::ElementFactory::make(factory))
}

/// Creates an element with a name (the name the log gives its errors).
pub(crate) fn make_named(factory: &str, name: &str) -> anyhow::Result<gst::Element> {
    built(factory, gst::ElementFactory::make(factory).name(name))
}

fn built(
    factory: &str,
    builder: gst::element_factory::ElementBuilder<'_>,
) -> anyhow::Result<gst::Element> {
    builder
        .build()
        .with_context(|| format!("creating {factory} (is the GStreamer plugin installed?)"))
}

/// The appsrc a track's frames are pushed into (`track{id}`): caps from the
/// track, time format, not live, never blocking, and no queue limit of its
/// own (the callers bound what they queue).
pub(crate) fn input_appsrc(t: &TrackInfo) -> anyhow::Result<gst_app::AppSrc> {
    Ok(gst_app::AppSrc::builder()
        .name(format!("track{}", t.id))
        .caps(&caps_for_track(t)?)
        .format(gst::Format::Time)
        .is_live(false)
        .do_timestamp(false)
        .block(false)
        .max_bytes(0)
        .max_buffers(0)
        .max_time(None)
        .handle_segment_change(true)
        .build())
}

/// Links the last element of a track's branch into a new pad of an
/// mp4mux (`video_%u` or `audio_%u`).
pub(crate) fn link_to_muxer(
    last: &gst::Element,
    mux: &gst::Element,
    video: bool,
    track: u8,
) -> anyhow::Result<()> {
    let template = if video { "video_%u" } else { "audio_%u" };
    let mux_pad = mux
        .request_pad_simple(template)
        .ok_or_else(|| anyhow!("mp4mux refused a {template} pad"))?;
    last.static_pad("src")
        .ok_or_else(|| anyhow!("{} without src pad", last.name()))?
        .link(&mux_pad)
        .with_context(|| format!("linking track {track} to mp4mux"))?;
    Ok(())
}

/// The display rotation of a session: that of its (first) video track.
pub(crate) fn video_rotation(tracks: &[TrackInfo]) -> u32 {
    tracks
        .iter()
        .find(|t| t.codec().is_some_and(|c| c.is_video()))
        .map(|t| t.rotation)
        .unwrap_or(0)
}
