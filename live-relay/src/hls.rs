//! Live HLS: per session, frames are cut into fMP4 segments on video
//! keyframes (written by [`sharecast_formats::mp4::fmp4`]) and kept in a sliding window in memory.
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sharecast_formats::media::{MediaFrame, TrackInfo};

use crate::lock;
use sharecast_formats::mp4::fmp4::{self, Fmp4Track, Sample, TrackRun};

/// The one live rendition.
pub(crate) const LIVE_RENDITION: &str = "source";

/// HLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsConfig {
    /// Shortest segment, ms; segments are cut at the first video keyframe
    /// after this (default 1000).
    pub segment_target_ms: u32,
    /// Longest partial segment (LL-HLS part), ms (default 200). Parts are
    /// cut on any video frame, so a part is at most this long unless the
    /// capture itself has a longer gap between two frames.
    pub part_target_ms: u32,
    /// Segments listed in the live media playlist (default 6).
    pub window_segments: usize,
    /// How long an ended stream's playlists stay available, s (default 600).
    pub keep_ended_secs: u64,
}

impl Default for HlsConfig {
    fn default() -> Self {
        crate::LiveRelayConfig::default().hls()
    }
}

/// Where a player that resumes at a content position starts in a live
/// stream (see `docs/resume.md`). Content time is the capture timeline in
/// ms (the VOD file's timeline).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LiveStart {
    /// `live`, or `ended` once the phone stopped (the playlist still serves).
    pub state: &'static str,
    /// `position` when the asked position is in a segment the stream still
    /// has; `oldest_segment` when it has left the stream: playback then
    /// starts at the oldest segment kept.
    pub from: &'static str,
    /// Sequence number of the segment playback starts in.
    pub segment: u64,
    /// Content time of that segment's first frame, ms.
    pub segment_start_ms: u64,
    /// Content position playback starts at, ms.
    pub start_ms: u64,
    /// Content time of the oldest segment kept, ms.
    pub oldest_ms: u64,
    /// Content time of the live edge (end of the newest segment), ms.
    pub edge_ms: u64,
}

/// Why a live stream cannot start at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStartError {
    /// No segment has been cut yet.
    NoSegment,
    /// The position is after the live edge.
    PastEnd {
        /// The live edge, ms.
        edge_ms: u64,
    },
}

impl std::fmt::Display for LiveStartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveStartError::NoSegment => write!(f, "the stream has no segment yet"),
            LiveStartError::PastEnd { edge_ms } => {
                write!(f, "the position is past the live edge ({edge_ms} ms)")
            }
        }
    }
}

/// Index of the segment a player resuming at `position_us` starts in, the
/// content µs it starts at, and whether that is the asked position.
fn locate(
    segments: &VecDeque<Segment>,
    position_us: i64,
) -> Result<(usize, i64, bool), LiveStartError> {
    let (Some(first), Some(last)) = (segments.front(), segments.back()) else {
        return Err(LiveStartError::NoSegment);
    };
    let edge_us = last.start_us + last.duration_us;
    if position_us > edge_us {
        return Err(LiveStartError::PastEnd {
            edge_ms: (edge_us.max(0) / 1000) as u64,
        });
    }
    if position_us < first.start_us {
        return Ok((0, first.start_us, false));
    }
    let idx = segments
        .iter()
        .rposition(|s| s.start_us <= position_us)
        .unwrap_or(0);
    Ok((idx, position_us, true))
}

fn ms(us: i64) -> u64 {
    (us.max(0) / 1000) as u64
}

/// One partial segment (LL-HLS part): a `moof`+`mdat` fragment. A segment is
/// the concatenation of its parts, and once the segment is closed each
/// part's bytes are a slice of the segment's.
#[derive(Debug, Clone)]
struct Part {
    /// Number of the part in the whole stream: its URI is `part{id}.m4s`,
    /// so the next part's URI is known before the segment it falls in is.
    id: u64,
    duration_us: i64,
    /// It starts with a video keyframe (always, for a stream without video).
    independent: bool,
    data: Bytes,
}

/// One media segment.
#[derive(Debug, Clone)]
struct Segment {
    seq: u64,
    /// Content time (capture µs) of the segment's first frame.
    start_us: i64,
    duration_us: i64,
    data: Bytes,
    pdt_unix_us: i64,
    parts: Vec<Part>,
}

#[derive(Default)]
struct State {
    started: bool,
    base_us: i64,
    /// Frames of the open part, per MP4 track.
    pending: Vec<Vec<MediaFrame>>,
    open_start_us: i64,
    open_pts_us: i64,
    /// Decode time of the open part's first frame.
    part_start_us: i64,
    /// Closed parts of the open segment.
    open_parts: Vec<Part>,
    next_part: u64,
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

impl State {
    /// (media sequence number, part index) of the newest part.
    fn newest_part(&self) -> Option<(u64, u64)> {
        if let Some(n) = self.open_parts.len().checked_sub(1) {
            return Some((self.next_seq, n as u64));
        }
        let s = self.segments.back()?;
        Some((s.seq, s.parts.len().saturating_sub(1) as u64))
    }

    /// A part by number, from the open segment or a kept one.
    fn part(&self, id: u64) -> Option<&Part> {
        self.open_parts
            .iter()
            .chain(self.segments.iter().rev().flat_map(|s| s.parts.iter()))
            .find(|p| p.id == id)
    }

    fn any_pending(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }
}

/// A blocking playlist reload's delivery directives: `_HLS_msn` and
/// `_HLS_part` (RFC 8216bis 6.2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directive {
    /// Media sequence number asked for.
    pub(crate) msn: u64,
    /// Part index in that segment, if asked for.
    pub(crate) part: Option<u64>,
}

impl Directive {
    /// The directives of a playlist request; `None` without `_HLS_msn`.
    /// Err is why they are refused: a value that is not a decimal integer,
    /// or `_HLS_part` without `_HLS_msn`.
    pub(crate) fn parse(
        msn: Option<&str>,
        part: Option<&str>,
    ) -> Result<Option<Directive>, String> {
        let number = |name: &str, v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{name} is a decimal integer, not {v:?}"))
        };
        let part = part.map(|p| number("_HLS_part", p)).transpose()?;
        match msn {
            Some(m) => Ok(Some(Directive {
                msn: number("_HLS_msn", m)?,
                part,
            })),
            None if part.is_some() => Err("_HLS_part needs _HLS_msn".into()),
            None => Ok(None),
        }
    }
}

/// What a request for a part gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PartAnswer {
    /// The part's bytes.
    Ready(Bytes),
    /// The part is not (or no longer) there and will not come.
    Missing,
    /// The part was to come but did not in time.
    Late,
}

/// The HLS side of one live session.
pub(crate) struct HlsStream {
    pub(crate) session_id: String,
    tracks: Vec<Fmp4Track>,
    has_video: bool,
    init: Bytes,
    anchor_unix_us: i64,
    cfg: HlsConfig,
    vod_url: String,
    state: Mutex<State>,
    pub(crate) segments_made: std::sync::atomic::AtomicU64,
    /// Bumped at every new part, segment and at the end: what blocking
    /// requests wait on.
    changed: tokio::sync::watch::Sender<u64>,
    /// Extra renditions (variants of the multivariant playlist).
    renditions: Mutex<Vec<(String, Arc<HlsStream>)>>,
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
            changed: tokio::sync::watch::Sender::new(0),
            renditions: Mutex::default(),
        })
    }

    /// Adds a frame; closes a part when the next frame would make it longer
    /// than the part target, and a segment when a keyframe arrives after the
    /// segment target.
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
            st.part_start_us = frame.dts_us;
        }
        if frame.dts_us < st.base_us {
            return;
        }
        let cuts = video || !self.has_video;
        if cuts && st.any_pending() {
            let target = i64::from(self.cfg.segment_target_ms) * 1000;
            let next_us = i64::from(frame.duration_us).max(st.last_duration_us);
            if (frame.keyframe || !video) && frame.dts_us - st.open_start_us >= target {
                self.close_segment(&mut st, frame.dts_us);
            } else if frame.dts_us + next_us - st.part_start_us > self.part_target_us() {
                self.close_part(&mut st, frame.dts_us);
            }
        }
        if !st.any_pending() {
            if st.open_parts.is_empty() {
                st.open_start_us = frame.dts_us;
                st.open_pts_us = frame.pts_us;
            }
            st.part_start_us = frame.dts_us;
        }
        if cuts {
            st.last_dts_us = frame.dts_us;
            if frame.duration_us > 0 {
                st.last_duration_us = i64::from(frame.duration_us);
            }
        }
        st.pending[ti].push(frame.clone());
    }

    /// The part target, µs (at least one ms, at most the segment target).
    fn part_target_us(&self) -> i64 {
        i64::from(
            self.cfg
                .part_target_ms
                .clamp(1, self.cfg.segment_target_ms.max(1)),
        ) * 1000
    }

    /// The pending frames as one track run per track, the last sample of
    /// each lasting until `end_dts_us` (video) or its own duration.
    fn runs(&self, st: &mut State, end_dts_us: i64) -> Vec<TrackRun> {
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
        runs
    }

    /// Closes the open part (its frames up to `end_dts_us`) into the open
    /// segment, and wakes the requests waiting for it.
    fn close_part(&self, st: &mut State, end_dts_us: i64) {
        let independent = !self.has_video
            || self
                .tracks
                .iter()
                .zip(&st.pending)
                .find(|(t, _)| t.is_video())
                .and_then(|(_, frames)| frames.first())
                .is_some_and(|f| f.keyframe);
        let runs = self.runs(st, end_dts_us);
        if runs.is_empty() {
            return;
        }
        let id = st.next_part;
        st.next_part += 1;
        let data = Bytes::from(fmp4::media_segment(
            u32::try_from(id + 1).unwrap_or(u32::MAX),
            &runs,
        ));
        st.open_parts.push(Part {
            id,
            duration_us: (end_dts_us - st.part_start_us).max(1),
            independent,
            data,
        });
        self.changed.send_modify(|v| *v += 1);
    }

    /// Closes the open part and the open segment, whose bytes are its
    /// parts' bytes one after the other.
    fn close_segment(&self, st: &mut State, end_dts_us: i64) {
        self.close_part(st, end_dts_us);
        let mut parts = std::mem::take(&mut st.open_parts);
        if parts.is_empty() {
            return;
        }
        let mut whole = Vec::with_capacity(parts.iter().map(|p| p.data.len()).sum());
        for p in &parts {
            whole.extend_from_slice(&p.data);
        }
        let data = Bytes::from(whole);
        let mut at = 0;
        for p in &mut parts {
            let len = p.data.len();
            p.data = data.slice(at..at + len);
            at += len;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let duration_us = (end_dts_us - st.open_start_us).max(1);
        st.bytes += data.len() as u64;
        st.duration_us += duration_us;
        st.segments.push_back(Segment {
            seq,
            start_us: st.open_pts_us,
            duration_us,
            data,
            pdt_unix_us: self.anchor_unix_us.saturating_add(st.open_pts_us),
            parts,
        });
        while st.segments.len() > self.cfg.window_segments + 4 {
            st.segments.pop_front();
        }
        self.segments_made
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changed.send_modify(|v| *v += 1);
        tracing::debug!(session = %self.session_id, seq, duration_us, "HLS segment");
    }

    /// Closes the last segment and ends the playlist.
    pub(crate) fn end(&self) {
        let mut st = lock(&self.state);
        if st.ended {
            return;
        }
        if st.any_pending() || !st.open_parts.is_empty() {
            let end = st.last_dts_us + st.last_duration_us.max(1000);
            self.close_segment(&mut st, end);
        }
        st.ended = true;
        st.ended_at = Some(Instant::now());
        self.changed.send_modify(|v| *v += 1);
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

    /// Waits until `done` holds for the state, at most `limit`; whether it
    /// holds. Woken by each new part, segment and the end (no polling).
    async fn wait_until(&self, limit: Duration, done: impl Fn(&State) -> bool) -> bool {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if done(&lock(&self.state)) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return done(&lock(&self.state)),
            }
        }
    }

    /// Waits (at most `limit`) for the first segment; whether there is one
    /// (or the stream ended).
    pub(crate) async fn wait_ready(&self, limit: Duration) -> bool {
        self.wait_until(limit, |st| st.ended || !st.segments.is_empty())
            .await
    }

    /// The target duration of the media playlist, s: the longest kept
    /// segment rounded up, at least the segment target rounded up.
    fn target_duration_s(&self, st: &State) -> i64 {
        st.segments
            .iter()
            .map(|s| (s.duration_us + 999_999) / 1_000_000)
            .max()
            .unwrap_or(0)
            .max(i64::from(self.cfg.segment_target_ms.div_ceil(1000)))
            .max(1)
    }

    /// How long a blocking request is held: three target durations
    /// (RFC 8216bis 6.2.5.2).
    pub(crate) fn block_limit(&self) -> Duration {
        let td = self.target_duration_s(&lock(&self.state));
        Duration::from_secs(3 * td.unsigned_abs())
    }

    /// Parts a request may ask for beyond the newest one (the Advance Part
    /// Limit: three divided by the part target in s if it is under a
    /// second, else three).
    fn advance_part_limit(&self) -> u64 {
        let part_ms = (self.part_target_us() / 1000).unsigned_abs().max(1);
        if part_ms < 1000 {
            3000 / part_ms
        } else {
            3
        }
    }

    /// Err (why) for a directive asking too far ahead: `_HLS_msn` more than
    /// two past the newest segment (the open one counts once it has a part),
    /// or `_HLS_part` more than the Advance Part Limit past the newest part.
    /// An ended stream refuses nothing (the directives are ignored).
    pub(crate) fn check_directive(&self, d: Directive) -> Result<(), String> {
        let st = lock(&self.state);
        if st.ended {
            return Ok(());
        }
        let (last_msn, last_part) = st.newest_part().unwrap_or((st.next_seq, 0));
        if d.msn > last_msn.saturating_add(2) {
            return Err(format!(
                "_HLS_msn {} is more than two segments past the newest ({last_msn})",
                d.msn
            ));
        }
        let apl = self.advance_part_limit();
        let ahead = match d.part {
            Some(p) if d.msn == last_msn => p.saturating_sub(last_part),
            Some(p) if d.msn > last_msn => p.saturating_add(1),
            _ => 0,
        };
        if ahead > apl {
            return Err(format!(
                "_HLS_part {} is more than {apl} parts past the newest",
                d.part.unwrap_or(0)
            ));
        }
        Ok(())
    }

    /// Whether the playlist holds what a directive asks for: segment `msn`
    /// complete, or with `_HLS_part`, that part or a later one (a part index
    /// past a segment's last part is part 0 of the next segment). Always
    /// true once the stream ended.
    fn directive_met(st: &State, d: Directive) -> bool {
        if st.ended {
            return true;
        }
        match d.part {
            None => st.next_seq > d.msn,
            Some(p) => st.newest_part().is_some_and(|newest| newest >= (d.msn, p)),
        }
    }

    /// Holds a blocking playlist reload until the playlist has what it
    /// asks for; false when that did not happen within three target
    /// durations.
    pub(crate) async fn wait_directive(&self, d: Directive) -> bool {
        let limit = self.block_limit();
        self.wait_until(limit, |st| Self::directive_met(st, d))
            .await
    }

    /// Part `id`; one that is still to come (the preload hint, up to the
    /// Advance Part Limit ahead) is waited for, at most three target
    /// durations.
    pub(crate) async fn part(&self, id: u64) -> PartAnswer {
        let coming = {
            let st = lock(&self.state);
            if let Some(p) = st.part(id) {
                return PartAnswer::Ready(p.data.clone());
            }
            !st.ended && id >= st.next_part && id - st.next_part < self.advance_part_limit()
        };
        if !coming {
            return PartAnswer::Missing;
        }
        let limit = self.block_limit();
        self.wait_until(limit, |st| st.ended || st.next_part > id)
            .await;
        let st = lock(&self.state);
        match st.part(id) {
            Some(p) => PartAnswer::Ready(p.data.clone()),
            None if st.ended => PartAnswer::Missing,
            None => PartAnswer::Late,
        }
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

    /// `{state, vod_url, vod_ready, segments, capture_epoch_unix_ms}` for
    /// the player page. A segment's `#EXT-X-PROGRAM-DATE-TIME` minus
    /// `capture_epoch_unix_ms` is its content time (ms of capture).
    pub(crate) fn status(&self) -> serde_json::Value {
        let st = lock(&self.state);
        serde_json::json!({
            "session_id": self.session_id,
            "state": if st.ended { "ended" } else { "live" },
            "vod_url": self.vod_url,
            "vod_ready": st.vod_ready,
            "segments": st.next_seq,
            "capture_epoch_unix_ms": self.anchor_unix_us.div_euclid(1000),
        })
    }

    /// Where a player resuming at content position `position_ms` starts.
    pub(crate) fn live_start(&self, position_ms: u64) -> Result<LiveStart, LiveStartError> {
        let st = lock(&self.state);
        let position_us = i64::try_from(position_ms)
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        let (idx, start_us, exact) = locate(&st.segments, position_us)?;
        let seg = &st.segments[idx];
        let (first, last) = (&st.segments[0], &st.segments[st.segments.len() - 1]);
        Ok(LiveStart {
            state: if st.ended { "ended" } else { "live" },
            from: if exact { "position" } else { "oldest_segment" },
            segment: seg.seq,
            segment_start_ms: ms(seg.start_us),
            start_ms: ms(start_us),
            oldest_ms: ms(first.start_us),
            edge_ms: ms(last.start_us + last.duration_us),
        })
    }

    /// Adds (or replaces) an extra rendition.
    pub(crate) fn add_rendition(&self, name: &str, stream: Arc<HlsStream>) {
        let mut r = lock(&self.renditions);
        r.retain(|(n, _)| n != name);
        r.push((name.to_string(), stream));
    }

    /// An extra rendition by name.
    pub(crate) fn rendition(&self, name: &str) -> Option<Arc<HlsStream>> {
        lock(&self.renditions)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
    }

    /// The multivariant playlist: the source, then every extra rendition
    /// that has a segment. `query` is appended to the media playlists' URIs
    /// (tokens, resume position).
    pub(crate) fn multivariant(&self, query: &str) -> String {
        let mut out = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:{},NAME=\"{LIVE_RENDITION}\"\n{LIVE_RENDITION}/index.m3u8{query}\n",
            self.variant_attributes()
        );
        for (name, r) in lock(&self.renditions).iter() {
            if r.ready() {
                out.push_str(&format!(
                    "#EXT-X-STREAM-INF:{},NAME=\"{name}\"\n{name}/index.m3u8{query}\n",
                    r.variant_attributes()
                ));
            }
        }
        out
    }

    /// BANDWIDTH, CODECS, RESOLUTION, FRAME-RATE of this stream.
    fn variant_attributes(&self) -> String {
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
        attrs
    }

    /// The media playlist. `query` is appended to URIs (tokens). With
    /// `start_ms` (a resume), the playlist also lists the older segments
    /// kept back to the one holding that content position, and says where
    /// to start with `#EXT-X-START:TIME-OFFSET` (seconds from the first
    /// listed segment); a position that has left the stream starts at the
    /// oldest segment kept. With `delta` (a client's `_HLS_skip=YES`)
    /// while live, a delta update: the oldest segments further than the
    /// skip boundary (`CAN-SKIP-UNTIL`) from the end are replaced by one
    /// `#EXT-X-SKIP` (RFC 8216bis 6.2.5.1), and no `#EXT-X-START`.
    pub(crate) fn media_playlist(
        &self,
        query: &str,
        start_ms: Option<u64>,
        delta: bool,
    ) -> Result<String, LiveStartError> {
        use std::fmt::Write;
        let st = lock(&self.state);
        let mut skip = st.segments.len().saturating_sub(self.cfg.window_segments);
        let mut start_line = String::new();
        if let Some(p) = start_ms {
            let position_us = i64::try_from(p)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000);
            let (idx, start_us, _) = locate(&st.segments, position_us)?;
            skip = skip.min(idx);
            // hls.js, Safari and ExoPlayer place the first listed segment at
            // 0 and the others at the sum of the EXTINF before them.
            let before_us: i64 = st
                .segments
                .iter()
                .skip(skip)
                .take(idx - skip)
                .map(|s| s.duration_us / 1000 * 1000)
                .sum();
            let offset_us = before_us + (start_us - st.segments[idx].start_us);
            start_line = format!(
                "#EXT-X-START:TIME-OFFSET={:.3},PRECISE=YES\n",
                offset_us as f64 / 1e6
            );
        }
        let target = self.target_duration_s(&st);
        let first_seq = st.segments.get(skip).map_or(st.next_seq, |s| s.seq);
        let skipped = if delta && !st.ended {
            skippable(&st, skip, skip_until_us(target))
        } else {
            0
        };
        let (version, skip_line) = if skipped > 0 {
            start_line.clear();
            (9, format!("#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}\n"))
        } else {
            (7, String::new())
        };
        let mut out = String::new();
        let _ = write!(
            out,
            "#EXTM3U\n#EXT-X-VERSION:{version}\n#EXT-X-TARGETDURATION:{target}\n{}#EXT-X-MEDIA-SEQUENCE:{first_seq}\n#EXT-X-INDEPENDENT-SEGMENTS\n{start_line}#EXT-X-MAP:URI=\"init.mp4{query}\"\n{skip_line}",
            self.server_control(&st),
        );
        self.write_segments(&mut out, &st, skip + skipped, target, query);
        if st.ended {
            let _ = write!(
                out,
                "#EXT-X-SHARECAST-VOD:URI=\"{}\"\n#EXT-X-ENDLIST\n",
                self.vod_url
            );
        }
        Ok(out)
    }

    /// While live: blocking reload (a player asks for the playlist holding
    /// the next part or segment and gets it the moment it exists) and the
    /// part target, with the hold-back of three part targets players keep
    /// from the live edge. Nothing once ended.
    fn server_control(&self, st: &State) -> String {
        if st.ended {
            return String::new();
        }
        let part_s = self.part_target_us() as f64 / 1e6;
        let skip_s = skip_until_us(self.target_duration_s(st)) as f64 / 1e6;
        format!(
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_s:.3},PART-HOLD-BACK={:.3}\n#EXT-X-PART-INF:PART-TARGET={part_s:.3}\n",
            3.0 * part_s
        )
    }

    /// The segments from index `skip` on; while live, the parts of those
    /// that end within three target durations of the playlist's end, then
    /// the open segment's parts and the preload hint of the next part.
    fn write_segments(&self, out: &mut String, st: &State, skip: usize, target: i64, query: &str) {
        use std::fmt::Write;
        let horizon_us = 3 * target * 1_000_000;
        let listed = st.segments.iter().skip(skip);
        for (s, after_us) in listed.zip(after_each(st, skip)) {
            let parts = !st.ended && after_us < horizon_us;
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(s.pdt_unix_us));
            if parts {
                write_parts(out, &s.parts, query);
            }
            let _ = write!(
                out,
                "#EXTINF:{:.3},\nseg{}.m4s{query}\n",
                s.duration_us as f64 / 1e6,
                s.seq
            );
        }
        if st.ended {
            return;
        }
        if !st.open_parts.is_empty() {
            let pdt = self.anchor_unix_us.saturating_add(st.open_pts_us);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(pdt));
            write_parts(out, &st.open_parts, query);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{}.m4s{query}\"",
            st.next_part
        );
    }
}

/// The skip boundary of delta updates: six target durations, the least
/// RFC 8216bis allows, µs.
fn skip_until_us(target_s: i64) -> i64 {
    6 * target_s * 1_000_000
}

/// For each segment from index `from` on, the media after its end to the
/// playlist's end (the open segment's parts included), µs.
fn after_each(st: &State, from: usize) -> Vec<i64> {
    let mut after_us: i64 = st.open_parts.iter().map(|p| p.duration_us).sum();
    let mut after: Vec<i64> = st
        .segments
        .iter()
        .skip(from)
        .rev()
        .map(|s| {
            let this = after_us;
            after_us += s.duration_us;
            this
        })
        .collect();
    after.reverse();
    after
}

/// How many of the segments listed from index `from` a delta update skips:
/// the oldest ones that end at least `boundary_us` before the playlist's
/// end.
fn skippable(st: &State, from: usize, boundary_us: i64) -> usize {
    after_each(st, from)
        .iter()
        .take_while(|after| **after >= boundary_us)
        .count()
}

/// `#EXT-X-PART` lines.
fn write_parts(out: &mut String, parts: &[Part], query: &str) {
    use std::fmt::Write;
    for p in parts {
        let _ = writeln!(
            out,
            "#EXT-X-PART:DURATION={:.3},URI=\"part{}.m4s{query}\"{}",
            p.duration_us as f64 / 1e6,
            p.id,
            if p.independent {
                ",INDEPENDENT=YES"
            } else {
                ""
            }
        );
    }
}

/// Unix µs as `2024-01-02T03:04:05.678Z`.
fn iso8601(unix_us: i64) -> String {
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

    fn stream() -> HlsStream {
        HlsStream::new(
            "s1",
            &[track()],
            1_700_000_000_000_000,
            HlsConfig::default(),
            "/vod/s1/source.mp4".into(),
        )
        .unwrap()
    }

    #[test]
    fn segments_on_keyframes_and_ends_the_playlist() {
        let s = stream();
        // Delta frames before the first keyframe are skipped.
        s.push(&frame(0, false));
        for i in 1..=35 {
            s.push(&frame(i, i % 10 == 1));
        }
        let pl = s.media_playlist("", None, false).unwrap();
        assert_eq!(pl.matches("#EXTINF:1.000,").count(), 3, "{pl}");
        assert!(
            pl.contains("seg0.m4s")
                && pl.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.100Z")
        );
        assert!(!pl.contains("ENDLIST"));
        assert!(pl.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.000,PART-HOLD-BACK=0.600\n"));
        let seg = |msn| Directive { msn, part: None };
        assert!(HlsStream::directive_met(&lock(&s.state), seg(2)));
        assert!(!HlsStream::directive_met(&lock(&s.state), seg(3)));
        s.end();
        assert!(
            HlsStream::directive_met(&lock(&s.state), seg(99)),
            "an ended stream blocks no reload"
        );
        assert!(!s
            .media_playlist("", None, false)
            .unwrap()
            .contains("SERVER-CONTROL"));
        let pl = s.media_playlist("?t=1", None, false).unwrap();
        assert!(pl.contains("#EXTINF:0.500,\nseg3.m4s?t=1\n"), "{pl}");
        assert!(pl.ends_with("#EXT-X-SHARECAST-VOD:URI=\"/vod/s1/source.mp4\"\n#EXT-X-ENDLIST\n"));
        assert!(s.segment(3).is_some());
        let mv = s.multivariant("");
        assert!(
            mv.contains("CODECS=\"avc1.42c01e\",RESOLUTION=320x240,FRAME-RATE=10.000"),
            "{mv}"
        );
    }

    /// Extra renditions are variants of the multivariant playlist once they
    /// have a segment, and are found by name.
    #[test]
    fn renditions_are_listed_once_ready() {
        let new = || Arc::new(stream());
        let (source, low) = (new(), new());
        source.add_rendition("low", low.clone());
        for i in 1..=15 {
            source.push(&frame(i, i % 10 == 1));
        }
        let mv = source.multivariant("?token=t");
        assert!(
            mv.contains("NAME=\"source\"\nsource/index.m3u8?token=t\n"),
            "{mv}"
        );
        assert!(!mv.contains("low"), "not ready yet: {mv}");
        for i in 1..=15 {
            low.push(&frame(i, i % 10 == 1));
        }
        let mv = source.multivariant("?token=t");
        assert!(
            mv.contains("NAME=\"low\"\nlow/index.m3u8?token=t\n"),
            "{mv}"
        );
        assert!(source.rendition("low").is_some());
        assert!(source.rendition("high").is_none());
    }

    /// A delta update (`_HLS_skip=YES`) replaces the oldest segments
    /// further than six target durations from the end by one
    /// `#EXT-X-SKIP`; the media sequence and the rest stay as in the full
    /// playlist; an ended stream is always listed in full.
    #[test]
    fn delta_updates_skip_the_oldest_segments() {
        let cfg = HlsConfig {
            window_segments: 12,
            ..HlsConfig::default()
        };
        let s = HlsStream::new("s1", &[track()], 1_700_000_000_000_000, cfg, "/v".into()).unwrap();
        for i in 1..=200 {
            s.push(&frame(i, i % 10 == 1));
        }
        let full = s.media_playlist("?token=a", None, false).unwrap();
        assert!(full.contains("CAN-SKIP-UNTIL=6.000,"), "{full}");
        assert!(full.contains("#EXT-X-VERSION:7\n") && !full.contains("EXT-X-SKIP:"));
        assert!(
            full.contains("#EXT-X-MEDIA-SEQUENCE:7\n") && full.contains("\nseg7.m4s?token=a\n")
        );
        let delta = s.media_playlist("?token=a", None, true).unwrap();
        assert!(delta.contains("#EXT-X-VERSION:9\n"), "{delta}");
        assert!(delta.contains("#EXT-X-MEDIA-SEQUENCE:7\n"), "{delta}");
        assert!(
            delta.contains("#EXT-X-MAP:URI=\"init.mp4?token=a\"\n#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n"),
            "{delta}"
        );
        for seq in 7..=12 {
            assert!(
                !delta.contains(&format!("\nseg{seq}.m4s")),
                "seg{seq}: {delta}"
            );
        }
        // What is listed is the full playlist's tail, byte for byte.
        let tail = delta.split("SKIPPED-SEGMENTS=6\n").nth(1).unwrap();
        assert!(full.ends_with(tail), "{delta}");
        assert!(
            tail.starts_with("#EXT-X-PROGRAM-DATE-TIME:") && tail.contains("\nseg13.m4s?token=a\n")
        );
        // Never fewer than six target durations are left: at the boundary.
        let listed: f64 = tail
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|d| d.trim_end_matches(',').parse::<f64>().unwrap())
            .sum();
        assert!((5.0..7.0).contains(&listed), "{listed} s listed: {delta}");
        s.end();
        let ended = s.media_playlist("", None, true).unwrap();
        assert!(
            !ended.contains("EXT-X-SKIP") && ended.contains("#EXT-X-ENDLIST"),
            "{ended}"
        );
    }

    #[test]
    fn resume_positions_map_to_segments_and_start_offsets() {
        let cfg = HlsConfig {
            window_segments: 2,
            ..HlsConfig::default()
        };
        let s = HlsStream::new("s1", &[track()], 1_700_000_000_000_000, cfg, "/v".into()).unwrap();
        assert_eq!(s.live_start(0), Err(LiveStartError::NoSegment));
        for i in 1..=100 {
            s.push(&frame(i, i % 10 == 1));
        }
        // Segments of 1 s start at 0.1 s, 1.1 s, …; seg0..seg8 are closed,
        // seg3..seg8 kept (window 2 + 4), seg7 and seg8 listed.
        let pl = s.media_playlist("", None, false).unwrap();
        assert!(
            pl.contains("#EXT-X-MEDIA-SEQUENCE:7\n") && !pl.contains("EXT-X-START"),
            "{pl}"
        );
        let at = s.live_start(6150).unwrap();
        assert_eq!(
            at,
            LiveStart {
                state: "live",
                from: "position",
                segment: 6,
                segment_start_ms: 6100,
                start_ms: 6150,
                oldest_ms: 3100,
                edge_ms: 9100,
            }
        );
        // Behind the window but kept: listed from its segment.
        let pl = s.media_playlist("?token=a", Some(6150), false).unwrap();
        assert!(
            pl.contains("#EXT-X-MEDIA-SEQUENCE:6\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-START:TIME-OFFSET=0.050,PRECISE=YES\n"),
            "{pl}"
        );
        assert!(
            pl.contains("seg6.m4s?token=a")
                && pl.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:26.100Z"),
            "{pl}"
        );
        // In the window: the usual window, offset from its first segment
        // (seg7, 1 s) into seg8.
        let pl = s.media_playlist("", Some(8500), false).unwrap();
        assert!(
            pl.contains("#EXT-X-MEDIA-SEQUENCE:7\n") && pl.contains("TIME-OFFSET=1.400,"),
            "{pl}"
        );
        // Left the stream: the oldest segment kept, said so.
        let at = s.live_start(500).unwrap();
        assert_eq!(
            (at.from, at.segment, at.start_ms),
            ("oldest_segment", 3, 3100)
        );
        let pl = s.media_playlist("", Some(500), false).unwrap();
        assert!(
            pl.contains("#EXT-X-MEDIA-SEQUENCE:3\n") && pl.contains("TIME-OFFSET=0.000,"),
            "{pl}"
        );
        // Past the live edge: refused.
        assert_eq!(
            s.live_start(9200),
            Err(LiveStartError::PastEnd { edge_ms: 9100 })
        );
        assert!(s.media_playlist("", Some(9200), false).is_err());
        assert_eq!(
            s.live_start(u64::MAX),
            Err(LiveStartError::PastEnd { edge_ms: 9100 })
        );
        s.end();
        assert_eq!(s.live_start(9500).unwrap().state, "ended");
        assert!(s.status()["capture_epoch_unix_ms"] == 1_700_000_000_000u64);
    }

    /// 10 fps, a keyframe every second from 0.1 s: seg0 and seg1 closed
    /// (parts 0-4 and 5-9), seg2 open with parts 10 and 11 and frame 25
    /// pending.
    fn stream_with_open_parts() -> HlsStream {
        let s = stream();
        for i in 1..=25 {
            s.push(&frame(i, i % 10 == 1));
        }
        s
    }

    fn parts_of(first: u64, last: u64) -> String {
        (first..=last)
            .map(|id| {
                format!(
                    "#EXT-X-PART:DURATION=0.200,URI=\"part{id}.m4s?t=1\"{}\n",
                    if id % 5 == 0 { ",INDEPENDENT=YES" } else { "" }
                )
            })
            .collect()
    }

    /// The LL-HLS media playlist, to the byte: parts of the closed segments
    /// before their EXTINF, the open segment's parts, the preload hint.
    #[test]
    fn playlist_lists_parts_and_the_preload_hint() {
        let s = stream_with_open_parts();
        let pl = s.media_playlist("?t=1", None, false).unwrap();
        let want = format!(
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:1\n\
             #EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.000,PART-HOLD-BACK=0.600\n\
             #EXT-X-PART-INF:PART-TARGET=0.200\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4?t=1\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.100Z\n{}#EXTINF:1.000,\nseg0.m4s?t=1\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.100Z\n{}#EXTINF:1.000,\nseg1.m4s?t=1\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.100Z\n{}\
             #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part12.m4s?t=1\"\n",
            parts_of(0, 4),
            parts_of(5, 9),
            parts_of(10, 11)
        );
        assert_eq!(pl, want);
        // Ended: the parts, the hint and the part target go; the segments
        // (now with seg2, frames 21-25) stay.
        s.end();
        let pl = s.media_playlist("", None, false).unwrap();
        for gone in ["#EXT-X-PART", "PRELOAD-HINT", "SERVER-CONTROL"] {
            assert!(!pl.contains(gone), "{gone}: {pl}");
        }
        assert!(
            pl.contains("#EXTINF:0.500,\nseg2.m4s\n#EXT-X-SHARECAST-VOD"),
            "{pl}"
        );
    }

    /// Only segments ending within three target durations of the playlist's
    /// end keep their parts.
    #[test]
    fn old_segments_lose_their_parts() {
        let s = stream();
        for i in 1..=61 {
            s.push(&frame(i, i % 10 == 1));
        }
        // seg0..seg5 closed, the open seg6 has no part yet.
        let pl = s.media_playlist("", None, false).unwrap();
        assert!(!pl.contains("part14.m4s"), "{pl}");
        assert!(pl.contains("URI=\"part15.m4s\",INDEPENDENT=YES\n"), "{pl}");
        assert!(
            pl.ends_with(
                "#EXTINF:1.000,\nseg5.m4s\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part30.m4s\"\n"
            ),
            "{pl}"
        );
    }

    /// A part is a moof+mdat fragment whose first sample is the one the
    /// playlist says; a segment is its parts' bytes, shared, not copied.
    #[test]
    fn parts_are_fragments_and_segments_share_their_bytes() {
        let s = stream_with_open_parts();
        let st = lock(&s.state);
        let seg = st.segments.iter().find(|x| x.seq == 1).unwrap();
        let joined: Vec<u8> = seg.parts.iter().flat_map(|p| p.data.to_vec()).collect();
        assert_eq!(joined, seg.data.to_vec());
        assert_eq!(seg.parts[0].data.as_ptr(), seg.data.as_ptr());
        for (i, p) in seg.parts.iter().enumerate() {
            assert_eq!(&p.data[4..8], b"moof");
            // mfhd sequence number: the part number + 1.
            assert_eq!(&p.data[20..24], &(p.id as u32 + 1).to_be_bytes());
            assert_eq!(p.independent, i == 0);
            let moof = u32::from_be_bytes(p.data[0..4].try_into().unwrap()) as usize;
            assert_eq!(&p.data[moof + 4..moof + 8], b"mdat");
            // Two 5-byte frames per part.
            assert_eq!(p.data.len() - moof, 8 + 10);
        }
        assert_eq!(st.open_parts.len(), 2);
        assert_eq!(st.newest_part(), Some((2, 1)));
    }

    #[test]
    fn directives_parse_strictly() {
        let d = |m: &str, p: Option<&str>| Directive::parse(Some(m), p);
        assert_eq!(
            d("3", Some("1")),
            Ok(Some(Directive {
                msn: 3,
                part: Some(1)
            }))
        );
        assert_eq!(Directive::parse(None, None), Ok(None));
        for bad in [
            d("x", None),
            d("-1", None),
            d("18446744073709551616", None),
            d("3", Some("1.5")),
            d("", None),
            Directive::parse(None, Some("2")),
        ] {
            assert!(bad.is_err(), "{bad:?}");
        }
    }

    /// `_HLS_part` past a segment's last part means part 0 of the next one;
    /// requests too far ahead are refused (RFC 8216bis 6.2.5.2).
    #[test]
    fn directives_wait_for_parts_and_refuse_what_is_too_far() {
        let s = stream_with_open_parts();
        let met = |msn, part| HlsStream::directive_met(&lock(&s.state), Directive { msn, part });
        assert!(met(2, Some(1)) && !met(2, Some(2)));
        assert!(met(1, Some(9)), "past seg1's last part: seg2 part 0 exists");
        assert!(met(1, None) && !met(2, None));
        let check = |msn, part| s.check_directive(Directive { msn, part });
        // Part target 0.2 s: an Advance Part Limit of 15 parts.
        assert!(check(4, None).is_ok() && check(5, None).is_err());
        assert!(check(2, Some(16)).is_ok() && check(2, Some(17)).is_err());
        assert!(check(3, Some(14)).is_ok() && check(3, Some(15)).is_err());
        assert!(check(u64::MAX, Some(u64::MAX)).is_err());
        s.end();
        assert!(check(5, Some(99)).is_ok(), "ignored once ended");
    }

    /// A blocking reload and a blocking preload are held until the part is
    /// made, and woken by it; a part that will never come is refused at
    /// once, and a reload that is not satisfied in 3 target durations ends.
    #[tokio::test]
    async fn blocking_requests_wake_on_the_part() {
        let s = Arc::new(stream_with_open_parts());
        let reload = tokio::spawn({
            let s = s.clone();
            async move {
                s.wait_directive(Directive {
                    msn: 2,
                    part: Some(2),
                })
                .await
            }
        });
        let preload = tokio::spawn({
            let s = s.clone();
            async move { s.part(12).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!reload.is_finished() && !preload.is_finished());
        assert_eq!(s.part(40).await, PartAnswer::Missing);
        let asked = Instant::now();
        s.push(&frame(26, false));
        s.push(&frame(27, false));
        assert!(reload.await.unwrap());
        let PartAnswer::Ready(data) = preload.await.unwrap() else {
            panic!("part 12 not served");
        };
        assert!(asked.elapsed() < Duration::from_millis(500));
        assert_eq!(&data[4..8], b"moof");
        assert!(matches!(s.part(0).await, PartAnswer::Ready(_)));
        let started = Instant::now();
        let d = Directive {
            msn: 3,
            part: Some(0),
        };
        assert!(!s.wait_directive(d).await, "nothing came");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(3) && waited < Duration::from_secs(4));
        let late = tokio::spawn({
            let s = s.clone();
            async move { s.part(13).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        s.end();
        assert_eq!(
            late.await.unwrap(),
            PartAnswer::Ready(lock(&s.state).part(13).unwrap().data.clone())
        );
        assert_eq!(s.part(14).await, PartAnswer::Missing, "ended");
    }
}
