//! Live HLS: per session, frames are cut into fMP4 segments on video
//! keyframes (see [`crate::fmp4`]) and kept in a sliding window in memory.
//!
//! - `/live/{id}/index.m3u8`: multivariant playlist (one variant per
//!   rendition; the live path carries the `source` rendition).
//! - `/live/{id}/source/index.m3u8`: media playlist with
//!   `#EXT-X-PROGRAM-DATE-TIME` (capture wall clock of each segment's first
//!   frame, for glass-to-glass measurement).
//! - `/live/{id}/source/init.mp4`, `/live/{id}/source/seg{n}.m4s`.
//! - `/live/{id}/status.json`: `live` or `ended`, and the VOD URL once the
//!   recording is ready.
//!
//! When the phone stops, the last segment is closed and the media playlist
//! gets `#EXT-X-ENDLIST` plus `#EXT-X-SHARECAST-VOD:URI="…"` (ignored by
//! players, read by ours); the player page then switches to the VOD.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sharecast_formats::media::{MediaFrame, TrackInfo};

use crate::fmp4::{self, Fmp4Track, Sample, TrackRun};
use crate::lock;

/// The one live rendition.
pub const LIVE_RENDITION: &str = "source";

/// HLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsConfig {
    /// Shortest segment, ms; segments are cut at the first video keyframe
    /// after this (default 1000).
    pub segment_target_ms: u32,
    /// Segments listed in the live media playlist (default 6).
    pub window_segments: usize,
    /// How long an ended stream's playlists stay available, s (default 600).
    pub keep_ended_secs: u64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig {
            segment_target_ms: 1000,
            window_segments: 6,
            keep_ended_secs: 600,
        }
    }
}

/// One media segment.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub seq: u64,
    pub duration_us: i64,
    pub data: Bytes,
    pub pdt_unix_us: i64,
}

#[derive(Default)]
struct State {
    started: bool,
    base_us: i64,
    /// Frames of the open segment, per MP4 track.
    pending: Vec<Vec<MediaFrame>>,
    open_start_us: i64,
    open_pts_us: i64,
    segments: VecDeque<Segment>,
    next_seq: u64,
    last_dts_us: i64,
    last_duration_us: i64,
    ended: bool,
    ended_at: Option<Instant>,
    vod_ready: bool,
    bytes: u64,
    duration_us: i64,
}

/// The HLS side of one live session.
pub struct HlsStream {
    pub(crate) session_id: String,
    tracks: Vec<Fmp4Track>,
    has_video: bool,
    init: Bytes,
    anchor_unix_us: i64,
    cfg: HlsConfig,
    vod_url: String,
    state: Mutex<State>,
    pub(crate) segments_made: std::sync::atomic::AtomicU64,
}

impl HlsStream {
    /// An HLS stream for the tracks it can carry; `None` if none.
    pub(crate) fn new(
        session_id: &str,
        tracks: &[TrackInfo],
        anchor_unix_us: i64,
        cfg: HlsConfig,
        vod_url: String,
    ) -> Option<HlsStream> {
        let tracks: Vec<Fmp4Track> = tracks
            .iter()
            .filter_map(|t| Fmp4Track::new(0, t))
            .enumerate()
            .map(|(i, mut t)| {
                t.track_id = i as u32 + 1;
                t
            })
            .collect();
        if tracks.is_empty() {
            return None;
        }
        let init = Bytes::from(fmp4::init_segment(&tracks));
        Some(HlsStream {
            session_id: session_id.to_string(),
            has_video: tracks.iter().any(|t| t.is_video()),
            state: Mutex::new(State {
                pending: vec![Vec::new(); tracks.len()],
                ..State::default()
            }),
            tracks,
            init,
            anchor_unix_us,
            cfg,
            vod_url,
            segments_made: Default::default(),
        })
    }

    /// Adds a frame; closes a segment when a keyframe arrives after the
    /// target duration.
    pub(crate) fn push(&self, frame: &MediaFrame) {
        let Some(ti) = self.tracks.iter().position(|t| t.source_id == frame.track) else {
            return;
        };
        let video = self.tracks[ti].is_video();
        let mut st = lock(&self.state);
        if st.ended {
            return;
        }
        if !st.started {
            if self.has_video && !(video && frame.keyframe) {
                return;
            }
            st.started = true;
            st.base_us = frame.dts_us.min(0);
            st.open_start_us = frame.dts_us;
            st.open_pts_us = frame.pts_us;
        }
        if frame.dts_us < st.base_us {
            return;
        }
        let cuts = if self.has_video {
            video && frame.keyframe
        } else {
            true
        };
        let target = i64::from(self.cfg.segment_target_ms) * 1000;
        let open = st.pending.iter().any(|p| !p.is_empty());
        if cuts && open && frame.dts_us - st.open_start_us >= target {
            self.close_segment(&mut st, frame.dts_us);
        }
        if !st.pending.iter().any(|p| !p.is_empty()) {
            st.open_start_us = frame.dts_us;
            st.open_pts_us = frame.pts_us;
        }
        if video || !self.has_video {
            st.last_dts_us = frame.dts_us;
            if frame.duration_us > 0 {
                st.last_duration_us = i64::from(frame.duration_us);
            }
        }
        st.pending[ti].push(frame.clone());
    }

    fn close_segment(&self, st: &mut State, end_dts_us: i64) {
        let base = st.base_us;
        let mut runs = Vec::new();
        for (ti, t) in self.tracks.iter().enumerate() {
            let frames = std::mem::take(&mut st.pending[ti]);
            let Some(first) = frames.first() else {
                continue;
            };
            let base_decode_time = t.ticks(first.dts_us - base).max(0) as u64;
            let mut samples = Vec::with_capacity(frames.len());
            for (i, f) in frames.iter().enumerate() {
                let dts = t.ticks(f.dts_us - base);
                let next = match frames.get(i + 1) {
                    Some(n) => t.ticks(n.dts_us - base),
                    None if t.is_video() && end_dts_us > f.dts_us => t.ticks(end_dts_us - base),
                    None if f.duration_us > 0 => dts + t.ticks(i64::from(f.duration_us)),
                    None if !t.is_video() => dts + 1024,
                    None => dts + t.ticks(st.last_duration_us.max(1000)),
                };
                samples.push(Sample {
                    duration: u32::try_from((next - dts).max(0)).unwrap_or(0),
                    cts: i32::try_from(t.ticks(f.pts_us - base) - dts).unwrap_or(0),
                    keyframe: f.keyframe || !t.is_video(),
                    data: f.data.clone(),
                });
            }
            runs.push(TrackRun {
                track_id: t.track_id,
                base_decode_time,
                samples,
            });
        }
        if runs.is_empty() {
            return;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let data = Bytes::from(fmp4::media_segment(
            u32::try_from(seq + 1).unwrap_or(u32::MAX),
            &runs,
        ));
        let duration_us = (end_dts_us - st.open_start_us).max(1);
        st.bytes += data.len() as u64;
        st.duration_us += duration_us;
        st.segments.push_back(Segment {
            seq,
            duration_us,
            data,
            pdt_unix_us: self.anchor_unix_us.saturating_add(st.open_pts_us),
        });
        while st.segments.len() > self.cfg.window_segments + 4 {
            st.segments.pop_front();
        }
        self.segments_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(session = %self.session_id, seq, duration_us, "HLS segment");
    }

    /// Closes the last segment and ends the playlist.
    pub(crate) fn end(&self) {
        let mut st = lock(&self.state);
        if st.ended {
            return;
        }
        if st.pending.iter().any(|p| !p.is_empty()) {
            let end = st.last_dts_us + st.last_duration_us.max(1000);
            self.close_segment(&mut st, end);
        }
        st.ended = true;
        st.ended_at = Some(Instant::now());
    }

    /// Marks the recording as available.
    pub(crate) fn set_vod_ready(&self) {
        lock(&self.state).vod_ready = true;
    }

    /// True once ended for longer than the keep time.
    pub(crate) fn expired(&self) -> bool {
        lock(&self.state)
            .ended_at
            .is_some_and(|t| t.elapsed() > Duration::from_secs(self.cfg.keep_ended_secs))
    }

    /// Whether at least one segment exists (or the stream ended).
    pub(crate) fn ready(&self) -> bool {
        let st = lock(&self.state);
        st.ended || !st.segments.is_empty()
    }

    /// The init segment.
    pub(crate) fn init(&self) -> Bytes {
        self.init.clone()
    }

    /// A segment by sequence number.
    pub(crate) fn segment(&self, seq: u64) -> Option<Bytes> {
        lock(&self.state)
            .segments
            .iter()
            .find(|s| s.seq == seq)
            .map(|s| s.data.clone())
    }

    /// `{state, vod_url, vod_ready}` for the player page.
    pub(crate) fn status(&self) -> serde_json::Value {
        let st = lock(&self.state);
        serde_json::json!({
            "session_id": self.session_id,
            "state": if st.ended { "ended" } else { "live" },
            "vod_url": self.vod_url,
            "vod_ready": st.vod_ready,
            "segments": st.next_seq,
        })
    }

    /// The multivariant playlist. `query` is appended to URIs (tokens).
    pub(crate) fn multivariant(&self, query: &str) -> String {
        let st = lock(&self.state);
        let bandwidth = if st.duration_us > 0 {
            (st.bytes as f64 * 8.0 * 1e6 / st.duration_us as f64) as u64
        } else {
            0
        }
        .max(256_000);
        let codecs: Vec<String> = self.tracks.iter().map(|t| t.codec_string()).collect();
        let mut attrs = format!("BANDWIDTH={bandwidth},CODECS=\"{}\"", codecs.join(","));
        if let Some(v) = self.tracks.iter().find(|t| t.is_video()) {
            if let (Some(w), Some(h)) = (v.info.width, v.info.height) {
                attrs.push_str(&format!(",RESOLUTION={w}x{h}"));
            }
            if let Some((n, d)) = v.info.framerate.filter(|(_, d)| *d > 0) {
                attrs.push_str(&format!(",FRAME-RATE={:.3}", f64::from(n) / f64::from(d)));
            }
        }
        format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:{attrs},NAME=\"{LIVE_RENDITION}\"\n{LIVE_RENDITION}/index.m3u8{query}\n"
        )
    }

    /// The media playlist.
    pub(crate) fn media_playlist(&self, query: &str) -> String {
        use std::fmt::Write;
        let st = lock(&self.state);
        let skip = st.segments.len().saturating_sub(self.cfg.window_segments);
        let listed: Vec<&Segment> = st.segments.iter().skip(skip).collect();
        let target = listed
            .iter()
            .map(|s| (s.duration_us + 999_999) / 1_000_000)
            .max()
            .unwrap_or(i64::from(self.cfg.segment_target_ms.div_ceil(1000)))
            .max(1);
        let mut out = String::new();
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4{query}\"\n",
            listed.first().map(|s| s.seq).unwrap_or(st.next_seq)
        );
        for s in listed {
            let _ = write!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.3},\nseg{}.m4s{query}\n",
                iso8601(s.pdt_unix_us),
                s.duration_us as f64 / 1e6,
                s.seq
            );
        }
        if st.ended {
            let _ = write!(
                out,
                "#EXT-X-SHARECAST-VOD:URI=\"{}\"\n#EXT-X-ENDLIST\n",
                self.vod_url
            );
        }
        out
    }
}

/// Unix µs as `2024-01-02T03:04:05.678Z`.
pub fn iso8601(unix_us: i64) -> String {
    let ms = unix_us.div_euclid(1000);
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123_456), "2023-11-14T22:13:20.123Z");
    }

    fn track() -> TrackInfo {
        TrackInfo {
            id: 0,
            codec: "h264".into(),
            codec_data: vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 0],
            width: Some(320),
            height: Some(240),
            framerate: Some((10, 1)),
            sample_rate: None,
            channels: None,
            rotation: 0,
        }
    }

    fn frame(i: i64, key: bool) -> MediaFrame {
        MediaFrame {
            track: 0,
            seq: i as u64,
            pts_us: i * 100_000,
            dts_us: i * 100_000,
            duration_us: 100_000,
            keyframe: key,
            data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
        }
    }

    #[test]
    fn segments_on_keyframes_and_ends_the_playlist() {
        let s = HlsStream::new(
            "s1",
            &[track()],
            1_700_000_000_000_000,
            HlsConfig::default(),
            "/vod/s1/source.mp4".into(),
        )
        .unwrap();
        // Delta frames before the first keyframe are skipped.
        s.push(&frame(0, false));
        for i in 1..=35 {
            s.push(&frame(i, i % 10 == 1));
        }
        let pl = s.media_playlist("");
        assert_eq!(pl.matches("#EXTINF:1.000,").count(), 3, "{pl}");
        assert!(
            pl.contains("seg0.m4s")
                && pl.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.100Z")
        );
        assert!(!pl.contains("ENDLIST"));
        s.end();
        let pl = s.media_playlist("?t=1");
        assert!(pl.contains("#EXTINF:0.500,\nseg3.m4s?t=1\n"), "{pl}");
        assert!(pl.ends_with("#EXT-X-SHARECAST-VOD:URI=\"/vod/s1/source.mp4\"\n#EXT-X-ENDLIST\n"));
        assert!(s.segment(3).is_some());
        let mv = s.multivariant("");
        assert!(
            mv.contains("CODECS=\"avc1.42c01e\",RESOLUTION=320x240,FRAME-RATE=10.000"),
            "{mv}"
        );
    }
}
