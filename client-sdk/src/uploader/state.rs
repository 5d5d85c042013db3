//! The uploader's decisions as a pure state machine: no sockets, no files,
//! no clock of its own. Time is passed in by the caller (`now`), so that a
//! test can drive it with a test clock, the way `quinn-proto` is tested.
//!
//! The I/O layer (`uploader::io`) feeds it events — a frame queued by the
//! app, a WELCOME, an ACK, a lost connection — and asks it what to do next:
//! which frame to transmit on which lane ([`UploadState::poll_transmit`]),
//! whether the app must wait ([`UploadState::offer`]), what the encoder
//! should aim for ([`UploadState::tick`]), when to send END.
//!
//! The rules it implements are those of `docs/client-sdk.md`:
//!
//! - **In-flight window**: at most about two round trips (plus 100 ms) of
//!   the acknowledged throughput, at least `min_window_bytes`, is sent and
//!   not yet acknowledged.
//! - **Live edge first**: when the unsent frames span more than
//!   `live_threshold` of capture time, the live cursor jumps to the newest
//!   video keyframe ([`Lane::Live`]); what was skipped is sent after it on
//!   [`Lane::Backfill`].
//! - **Resend set**: after (re)connecting, every frame not covered by the
//!   server's `next_seq` and `held` is sent again; the rest is released.
//! - **Bitrate advice**: every 500 ms, from the throughput of the last 2 s
//!   and the backlog (congested / probing / steady).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use sharecast_formats::ingest::covers;
use sharecast_formats::media::{MediaFrame, TrackInfo};

/// Most acknowledgement latencies kept between two
/// [`UploadState::take_ack_latencies`] calls.
pub const MAX_LATENCY_SAMPLES: usize = 100_000;

/// How often the bitrate advice is recomputed.
pub const ADVICE_INTERVAL: Duration = Duration::from_millis(500);

/// Over how long the acknowledged throughput is measured.
pub const THROUGHPUT_WINDOW: Duration = Duration::from_secs(2);

/// A connection younger than [`THROUGHPUT_WINDOW`] is measured by its
/// delivery rate since its first acknowledgement (dividing what it carried so
/// far by the whole window would make it look up to four times slower at the
/// first advice, and a large first keyframe still in flight slower still);
/// until that spans at least this long and [`MIN_THROUGHPUT_ACKS`]
/// acknowledgements, there is no measurement and the advice stays as it is.
pub const MIN_THROUGHPUT_SPAN: Duration = Duration::from_millis(500);

/// Acknowledgements (that released frames) a young connection needs before
/// its rate counts (see [`MIN_THROUGHPUT_SPAN`]).
pub const MIN_THROUGHPUT_ACKS: usize = 4;

/// What the encoder should aim for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Advice {
    /// Target encoder bitrate, bit/s.
    pub target_bps: u64,
    /// Target frame rate.
    pub target_fps: u32,
    /// Why it changed last: "start", "congested", "probing", "steady".
    pub reason: &'static str,
}

/// The settings the decisions depend on (a subset of
/// [`super::UploaderConfig`], which documents their defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Most bytes of unacknowledged frames kept in memory without a spool;
    /// with a spool, most frame bytes kept in memory besides it.
    pub memory_bytes: usize,
    /// Whether frames are also in a spool (then a frame's bytes may leave
    /// memory and be read back from the spool when it is sent).
    pub spooled: bool,
    /// How long the app may wait on a full buffer with no connection.
    pub reconnect_deadline: Duration,
    /// Smallest in-flight window, bytes.
    pub min_window_bytes: usize,
    /// Capture-time span of waiting frames that triggers a live-edge jump.
    pub live_threshold: Duration,
    /// First advised bitrate, bit/s.
    pub initial_bitrate_bps: u64,
    /// Lowest advised bitrate, bit/s.
    pub min_bitrate_bps: u64,
    /// Highest advised bitrate, bit/s.
    pub max_bitrate_bps: u64,
    /// Advised frame rate when the bitrate allows it.
    pub nominal_fps: u32,
}

/// What the uploader observes, for the app and for bitrate advice.
#[derive(Debug, Clone, Default)]
pub struct UploadStats {
    /// Frames handed to `send`.
    pub frames_sent: u64,
    /// Frames the server acknowledged as durable.
    pub frames_acked: u64,
    /// Bytes waiting for acknowledgement.
    pub backlog_bytes: u64,
    /// Frames waiting for acknowledgement.
    pub backlog_frames: u64,
    /// Smoothed round-trip time, ms.
    pub rtt_ms: f64,
    /// Acknowledged throughput over the last 2 seconds, bit/s.
    pub acked_bps: u64,
    /// Reconnections that resumed the session.
    pub resumes: u64,
    /// Bytes sent and not yet acknowledged.
    pub inflight_bytes: u64,
    /// Current in-flight window, bytes.
    pub window_bytes: u64,
    /// Times the uploader jumped to the live edge.
    pub live_jumps: u64,
    /// Frame records handed to the network, resends included.
    pub frames_transmitted: u64,
    /// Frame bytes held in memory (without a spool, equal to
    /// `backlog_bytes`; with one, at most the spool's memory share).
    pub resident_bytes: u64,
}

/// Where a frame's bytes are kept in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolRef {
    /// Segment number.
    pub segment: u32,
    /// Offset of the frame's record in the segment.
    pub offset: u64,
}

/// Which stream a frame goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The high-priority stream: the live edge.
    Live,
    /// The low-priority stream: frames skipped by a live-edge jump, and
    /// resends.
    Backfill,
}

/// A frame to put on the wire now.
#[derive(Debug, Clone, PartialEq)]
pub struct Transmit {
    /// The stream to write it on.
    pub lane: Lane,
    /// The frame. When `resident` is false its `data` is empty: read it
    /// from the spool at `spool`.
    pub frame: MediaFrame,
    /// Whether `frame.data` holds the bytes.
    pub resident: bool,
    /// Where the frame is in the spool, if spooled.
    pub spool: Option<SpoolRef>,
}

/// Whether the app may queue a frame now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Queue it.
    Accept,
    /// The memory buffer is full: wait for acknowledgements.
    Wait,
    /// The buffer is full and no connection came back in time.
    Fail,
    /// The frame alone is larger than the buffer.
    TooBig,
}

struct Entry {
    frame: MediaFrame,
    len: usize,
    resident: bool,
    spool: Option<SpoolRef>,
    sent: bool,
    queued_at: Instant,
}

/// What an acknowledgement changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AckOutcome {
    /// Frames released (durable on the server).
    pub released: u64,
    /// New advice for the encoder, if it changed.
    pub advice: Option<Advice>,
    /// Spool segments and how many of their frames were released.
    pub spool_released: BTreeMap<u32, u64>,
}

/// The uploader's state: the buffer of unacknowledged frames and every
/// decision taken on it. See the module documentation.
pub struct UploadState {
    cfg: StateConfig,
    buffer: VecDeque<Entry>,
    /// Bytes of unacknowledged frames.
    buffer_bytes: usize,
    /// Bytes of unacknowledged frames whose data is in memory.
    resident_bytes: usize,
    /// Index of the live edge: frames from here on go to the live stream.
    live_cursor: usize,
    inflight: usize,
    window: usize,
    min_rtt: Option<Duration>,
    advice: Advice,
    advice_at: Instant,
    video_tracks: Vec<u8>,
    /// Backlog at the previous advice update, bytes.
    last_backlog: usize,
    acked: BTreeMap<u8, u64>,
    next_seq: BTreeMap<u8, u64>,
    end_requested: bool,
    stats: UploadStats,
    ack_log: VecDeque<(Instant, u64)>,
    /// When the current connection came up: the throughput is measured on
    /// it alone.
    rate_since: Instant,
    /// Whether the throughput is measured yet (see [`MIN_THROUGHPUT_SPAN`]).
    rate_known: bool,
    connected: bool,
    /// Since when the app has found the buffer full with no connection.
    stuck_since: Option<Instant>,
    ack_latencies_us: Vec<u32>,
}

/// Whether a track carries video (by codec, or by declaring a size).
fn is_video(t: &TrackInfo) -> bool {
    matches!(t.codec.as_str(), "h264" | "h265") || t.width.is_some()
}

impl UploadState {
    /// A new session's state, connected (the first WELCOME has arrived).
    pub fn new(cfg: StateConfig, tracks: &[TrackInfo], now: Instant) -> Self {
        let advice = Advice {
            target_bps: cfg.initial_bitrate_bps,
            target_fps: cfg.nominal_fps,
            reason: "start",
        };
        Self {
            window: cfg.min_window_bytes,
            buffer: VecDeque::new(),
            buffer_bytes: 0,
            resident_bytes: 0,
            live_cursor: 0,
            inflight: 0,
            min_rtt: None,
            advice,
            advice_at: now,
            video_tracks: tracks
                .iter()
                .filter(|t| is_video(t))
                .map(|t| t.id)
                .collect(),
            last_backlog: 0,
            acked: BTreeMap::new(),
            next_seq: tracks.iter().map(|t| (t.id, 0)).collect(),
            end_requested: false,
            stats: UploadStats::default(),
            ack_log: VecDeque::new(),
            rate_since: now,
            rate_known: false,
            connected: true,
            stuck_since: None,
            ack_latencies_us: Vec::new(),
            cfg,
        }
    }

    /// The settings.
    pub fn config(&self) -> &StateConfig {
        &self.cfg
    }

    /// The current advice.
    pub fn advice(&self) -> Advice {
        self.advice
    }

    /// Statistics (without the RTT, which the connection knows).
    pub fn stats(&self) -> UploadStats {
        let mut s = self.stats.clone();
        s.resident_bytes = self.resident_bytes as u64;
        s.backlog_bytes = self.buffer_bytes as u64;
        s.backlog_frames = self.buffer.len() as u64;
        s
    }

    /// Frames queued so far per track (the next sequence number of each).
    pub fn frames_per_track(&self) -> &BTreeMap<u8, u64> {
        &self.next_seq
    }

    /// The sequence number the next frame of `track` gets.
    pub fn peek_seq(&self, track: u8) -> u64 {
        self.next_seq.get(&track).copied().unwrap_or(0)
    }

    /// Whether a connection is up.
    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Whether the app asked to end the recording.
    pub fn end_requested(&self) -> bool {
        self.end_requested
    }

    /// Unacknowledged frames.
    pub fn backlog_frames(&self) -> usize {
        self.buffer.len()
    }

    /// Unacknowledged bytes.
    pub fn backlog_bytes(&self) -> usize {
        self.buffer_bytes
    }

    /// Capture time spanned by the unacknowledged frames, microseconds.
    pub fn backlog_span_us(&self) -> i64 {
        match (self.buffer.front(), self.buffer.back()) {
            (Some(a), Some(b)) => b.frame.pts_us.saturating_sub(a.frame.pts_us).max(0),
            _ => 0,
        }
    }

    /// Whether a frame of `size` bytes may be queued now (the back-pressure
    /// rule of `docs/client-sdk.md`). With a spool, memory never refuses:
    /// the spool's own bound does.
    pub fn offer(&mut self, size: usize, now: Instant) -> Offer {
        if self.cfg.spooled {
            return Offer::Accept;
        }
        if size > self.cfg.memory_bytes {
            return Offer::TooBig;
        }
        if self.buffer_bytes + size <= self.cfg.memory_bytes {
            return Offer::Accept;
        }
        if self.connected {
            self.stuck_since = None;
            return Offer::Wait;
        }
        let since = *self.stuck_since.get_or_insert(now);
        if now.duration_since(since) > self.cfg.reconnect_deadline {
            Offer::Fail
        } else {
            Offer::Wait
        }
    }

    /// Queue a frame: its `seq` is assigned here (per track, from 0) and
    /// returned. `spool` says where a copy is kept, if spooled.
    pub fn push(&mut self, mut frame: MediaFrame, spool: Option<SpoolRef>, now: Instant) -> u64 {
        let seq = self.next_seq.entry(frame.track).or_insert(0);
        frame.seq = *seq;
        *seq += 1;
        let assigned = frame.seq;
        self.insert(frame, spool, now);
        self.stats.frames_sent += 1;
        assigned
    }

    /// Queue a frame whose `seq` was assigned before (a frame read back
    /// from the spool after a restart), without its bytes: they are read
    /// from the spool at `spool` when it is sent. `len` is its data length.
    /// Frames must come in the order they were first queued.
    pub fn restore(&mut self, mut frame: MediaFrame, len: usize, spool: SpoolRef, now: Instant) {
        let seq = self.next_seq.entry(frame.track).or_insert(0);
        *seq = (*seq).max(frame.seq + 1);
        frame.data = bytes::Bytes::new();
        self.buffer_bytes += len;
        self.buffer.push_back(Entry {
            frame,
            len,
            resident: false,
            spool: Some(spool),
            sent: false,
            queued_at: now,
        });
        self.stats.backlog_bytes = self.buffer_bytes as u64;
        self.stats.backlog_frames = self.buffer.len() as u64;
    }

    /// Raise the per-track frame counts to at least `counts` (what a spool
    /// recorded, for frames already released from it).
    pub fn raise_counts(&mut self, counts: &BTreeMap<u8, u64>) {
        for (t, n) in counts {
            let e = self.next_seq.entry(*t).or_insert(0);
            *e = (*e).max(*n);
        }
    }

    fn insert(&mut self, frame: MediaFrame, spool: Option<SpoolRef>, now: Instant) {
        let len = frame.data.len();
        self.buffer_bytes += len;
        self.resident_bytes += len;
        self.buffer.push_back(Entry {
            frame,
            len,
            resident: true,
            spool,
            sent: false,
            queued_at: now,
        });
        self.evict();
    }

    /// With a spool: drop the bytes of the oldest frames from memory while
    /// more than `memory_bytes` are held (they are read back when sent).
    fn evict(&mut self) {
        if !self.cfg.spooled {
            return;
        }
        let mut i = 0;
        while self.resident_bytes > self.cfg.memory_bytes && i < self.buffer.len() {
            let e = &mut self.buffer[i];
            if e.resident && e.spool.is_some() {
                e.resident = false;
                e.frame.data = bytes::Bytes::new();
                self.resident_bytes -= e.len;
            }
            i += 1;
        }
    }

    /// The app asked to end the recording.
    pub fn request_end(&mut self) {
        self.end_requested = true;
    }

    /// A connection came up (WELCOME): every frame not covered by its
    /// `next_seq` / `held` will be sent again, from the oldest; the rest is
    /// released.
    pub fn on_welcome(
        &mut self,
        next_seq: &BTreeMap<u8, u64>,
        held: &BTreeMap<u8, Vec<(u64, u64)>>,
        now: Instant,
    ) -> AckOutcome {
        for e in self.buffer.iter_mut() {
            e.sent = false;
        }
        self.inflight = 0;
        self.live_cursor = 0;
        let out = self.on_ack(next_seq, held, None, now);
        // A new path, measured afresh: what WELCOME released was carried by
        // the old connection.
        self.ack_log.clear();
        self.rate_since = now;
        self.connected = true;
        self.stuck_since = None;
        out
    }

    /// The connection that came up resumed the session (WELCOME said so):
    /// count it. Returns the resumes so far.
    pub fn on_resumed(&mut self) -> u64 {
        self.stats.resumes += 1;
        self.stats.resumes
    }

    /// The connection was lost.
    pub fn on_lost(&mut self) {
        self.connected = false;
    }

    /// An ACK: release every frame it covers, measure, re-size the window,
    /// maybe re-advise.
    pub fn on_ack(
        &mut self,
        next_seq: &BTreeMap<u8, u64>,
        held: &BTreeMap<u8, Vec<(u64, u64)>>,
        rtt: Option<Duration>,
        now: Instant,
    ) -> AckOutcome {
        let mut removed_before_live = 0;
        let mut idx = 0;
        let mut freed = 0usize;
        let mut freed_resident = 0usize;
        let mut freed_inflight = 0usize;
        let mut acked_frames = 0u64;
        let mut spool_released: BTreeMap<u32, u64> = BTreeMap::new();
        let live = self.live_cursor;
        let mut latencies = std::mem::take(&mut self.ack_latencies_us);
        self.buffer.retain(|e| {
            let keep = !covers(next_seq, held, e.frame.track, e.frame.seq);
            if !keep {
                if latencies.len() < MAX_LATENCY_SAMPLES {
                    latencies.push(
                        now.saturating_duration_since(e.queued_at)
                            .as_micros()
                            .min(u128::from(u32::MAX)) as u32,
                    );
                }
                freed += e.len;
                if e.resident {
                    freed_resident += e.len;
                }
                if e.sent {
                    freed_inflight += e.len;
                }
                if let Some(s) = e.spool {
                    *spool_released.entry(s.segment).or_insert(0) += 1;
                }
                acked_frames += 1;
                if idx < live {
                    removed_before_live += 1;
                }
            }
            idx += 1;
            keep
        });
        self.ack_latencies_us = latencies;
        self.live_cursor -= removed_before_live;
        self.buffer_bytes -= freed;
        self.resident_bytes -= freed_resident;
        self.inflight = self.inflight.saturating_sub(freed_inflight);
        for (t, n) in next_seq {
            let e = self.acked.entry(*t).or_insert(0);
            *e = (*e).max(*n);
        }
        self.stats.frames_acked += acked_frames;
        if freed > 0 {
            self.ack_log.push_back((now, freed as u64));
        }
        self.refresh_rate(now);
        self.stats.backlog_bytes = self.buffer_bytes as u64;
        self.stats.backlog_frames = self.buffer.len() as u64;
        if let Some(r) = rtt {
            self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        }
        // In-flight window: about two round trips (plus 100 ms of slack) of
        // the acknowledged throughput.
        let min_rtt = self.min_rtt.unwrap_or(Duration::from_millis(50));
        let bytes_per_sec = self.stats.acked_bps as f64 / 8.0;
        self.window = self
            .cfg
            .min_window_bytes
            .max((2.0 * bytes_per_sec * (min_rtt.as_secs_f64() + 0.1)) as usize);
        self.stats.inflight_bytes = self.inflight as u64;
        self.stats.window_bytes = self.window as u64;
        AckOutcome {
            released: acked_frames,
            advice: self.update_advice(now),
            spool_released,
        }
    }

    /// Recompute the acknowledged throughput over the last 2 seconds.
    fn refresh_rate(&mut self, now: Instant) {
        while self
            .ack_log
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > THROUGHPUT_WINDOW)
        {
            self.ack_log.pop_front();
        }
        let bytes: u64 = self.ack_log.iter().map(|(_, b)| *b).sum();
        if now.saturating_duration_since(self.rate_since) >= THROUGHPUT_WINDOW {
            self.rate_known = true;
            self.stats.acked_bps = bytes * 8 / THROUGHPUT_WINDOW.as_secs();
            return;
        }
        // A young connection: what it delivered after its first
        // acknowledgement, over the time since.
        let (first_at, first_bytes) = self.ack_log.front().copied().unwrap_or((now, 0));
        let span = now.saturating_duration_since(first_at);
        self.rate_known = span >= MIN_THROUGHPUT_SPAN && self.ack_log.len() >= MIN_THROUGHPUT_ACKS;
        self.stats.acked_bps = if self.rate_known {
            ((bytes - first_bytes) as f64 * 8.0 / span.as_secs_f64()) as u64
        } else {
            0
        };
    }

    /// Periodic work: refresh the throughput and, at most every 500 ms, the
    /// advice. Returns the advice when it changed.
    pub fn tick(&mut self, now: Instant) -> Option<Advice> {
        self.refresh_rate(now);
        self.update_advice(now)
    }

    /// Recompute the encoder advice (at most every 500 ms).
    fn update_advice(&mut self, now: Instant) -> Option<Advice> {
        if now.saturating_duration_since(self.advice_at) < ADVICE_INTERVAL || !self.rate_known {
            return None;
        }
        let throughput = self.stats.acked_bps.max(1);
        let backlog_secs = self.buffer_bytes as f64 * 8.0 / throughput.max(50_000) as f64;
        let old = self.advice;
        let growing = self.buffer_bytes >= self.last_backlog;
        self.last_backlog = self.buffer_bytes;
        let (target, reason) = if backlog_secs > 0.5 && growing {
            let base = old.target_bps.min(throughput);
            ((base as f64 * 0.85) as u64, "congested")
        } else if backlog_secs < 0.2 && self.stats.acked_bps * 2 >= old.target_bps {
            // Only probe upwards while the encoder actually uses its budget.
            ((old.target_bps as f64 * 1.08) as u64 + 20_000, "probing")
        } else {
            (old.target_bps, "steady")
        };
        let target = target.clamp(self.cfg.min_bitrate_bps, self.cfg.max_bitrate_bps);
        let fps = if target >= 500_000 {
            self.cfg.nominal_fps
        } else if target >= 250_000 {
            (self.cfg.nominal_fps * 2 / 3).max(1)
        } else {
            (self.cfg.nominal_fps / 2).max(1)
        };
        self.advice_at = now;
        self.advice = Advice {
            target_bps: target,
            target_fps: fps,
            reason,
        };
        (self.advice != old).then_some(self.advice)
    }

    /// The next frame to send, or `None` to wait (nothing unsent, or the
    /// in-flight window is full).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.inflight > 0 && self.inflight >= self.window {
            return None;
        }
        let oldest_unsent = self.buffer.iter().position(|e| !e.sent)?;
        let newest = self.buffer.back().map(|e| e.frame.pts_us).unwrap_or(0);
        let span = newest.saturating_sub(self.buffer[oldest_unsent].frame.pts_us);
        if span > self.cfg.live_threshold.as_micros() as i64 {
            // Behind: move the live edge to the newest keyframe (for
            // audio-only sessions, to the newest frame).
            let edge = self
                .buffer
                .iter()
                .enumerate()
                .rev()
                .find(|(_, e)| {
                    self.video_tracks.is_empty()
                        || (e.frame.keyframe && self.video_tracks.contains(&e.frame.track))
                })
                .map(|(i, _)| i);
            if let Some(edge) = edge {
                if edge > self.live_cursor && !self.buffer[edge].sent {
                    self.live_cursor = edge;
                    self.stats.live_jumps += 1;
                }
            }
        }
        let live_cursor = self.live_cursor;
        let (idx, lane) = match self.buffer.iter().skip(live_cursor).position(|e| !e.sent) {
            Some(off) => (live_cursor + off, Lane::Live),
            None => (oldest_unsent, Lane::Backfill),
        };
        let e = &mut self.buffer[idx];
        e.sent = true;
        self.inflight += e.len;
        self.stats.frames_transmitted += 1;
        if lane == Lane::Live {
            self.live_cursor = idx + 1;
        }
        let e = &self.buffer[idx];
        Some(Transmit {
            lane,
            frame: e.frame.clone(),
            resident: e.resident,
            spool: e.spool,
        })
    }

    /// When END is due: the app asked to end and every frame has been sent
    /// on this connection. Returns the frame count per track to announce.
    pub fn end_due(&self) -> Option<BTreeMap<u8, u64>> {
        (self.end_requested && self.buffer.iter().all(|e| e.sent)).then(|| self.next_seq.clone())
    }

    /// Acknowledgement latencies (queue to durable ACK, µs) since the last
    /// call.
    pub fn take_ack_latencies(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.ack_latencies_us)
    }
}

#[cfg(test)]
mod tests {
    //! The decisions, driven by a test clock: no socket, no sleep.
    use super::*;
    use bytes::Bytes;
    use sharecast_formats::media::Codec;

    /// A test clock: a fixed origin plus milliseconds.
    struct Clock(Instant);
    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn cfg() -> StateConfig {
        StateConfig {
            memory_bytes: 1_000_000,
            spooled: false,
            reconnect_deadline: Duration::from_secs(60),
            min_window_bytes: 48 * 1024,
            live_threshold: Duration::from_secs(1),
            initial_bitrate_bps: 2_000_000,
            min_bitrate_bps: 100_000,
            max_bitrate_bps: 8_000_000,
            nominal_fps: 30,
        }
    }

    fn tracks() -> Vec<TrackInfo> {
        vec![
            TrackInfo::video(0, Codec::H264, vec![1], (640, 360), (30, 1)),
            TrackInfo::audio(1, Codec::Aac, vec![0x11, 0x90], 48_000, 2),
        ]
    }

    fn video(pts_ms: i64, key: bool, size: usize) -> MediaFrame {
        MediaFrame {
            track: 0,
            seq: 0,
            pts_us: pts_ms * 1000,
            dts_us: pts_ms * 1000,
            duration_us: 33_333,
            keyframe: key,
            data: Bytes::from(vec![0u8; size]),
        }
    }

    fn ack(n: &[(u8, u64)]) -> BTreeMap<u8, u64> {
        n.iter().copied().collect()
    }

    fn no_held() -> BTreeMap<u8, Vec<(u64, u64)>> {
        BTreeMap::new()
    }

    /// Everything `poll_transmit` gives until it says wait.
    fn drain(s: &mut UploadState) -> Vec<(Lane, u8, u64)> {
        let mut out = Vec::new();
        while let Some(t) = s.poll_transmit() {
            out.push((t.lane, t.frame.track, t.frame.seq));
        }
        out
    }

    #[test]
    fn sequence_numbers_are_per_track_from_zero() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(cfg(), &tracks(), c.at(0));
        assert_eq!(s.push(video(0, true, 10), None, c.at(0)), 0);
        let mut a = video(0, true, 10);
        a.track = 1;
        assert_eq!(s.push(a.clone(), None, c.at(0)), 0);
        assert_eq!(s.push(a, None, c.at(0)), 1);
        assert_eq!(s.push(video(33, false, 10), None, c.at(0)), 1);
        assert_eq!(s.frames_per_track(), &ack(&[(0, 2), (1, 2)]));
    }

    #[test]
    fn window_follows_throughput_and_round_trip() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(cfg(), &tracks(), c.at(0));
        // Nothing acknowledged yet: the smallest window, and it limits what
        // is in flight (one frame over it, then wait).
        for i in 0..20 {
            s.push(video(i * 33, i == 0, 10_000), None, c.at(0));
        }
        let first = drain(&mut s);
        assert_eq!(first.len(), 5, "48 KiB window holds five 10 kB frames");
        assert_eq!(
            s.stats().window_bytes,
            0,
            "window not reported before an ACK"
        );
        // 4 Mbit/s acknowledged over the last 2 s, 50 ms RTT: the window is
        // 2 x 500 kB/s x (0.05 + 0.1) s = 150 kB.
        let mut t = 0;
        let mut seq = 0;
        while t < 2000 {
            t += 100;
            seq += 5;
            s.push(video(700 + t as i64, false, 50_000), None, c.at(t));
            let _ = s.on_ack(
                &ack(&[(0, seq.min(20))]),
                &no_held(),
                Some(Duration::from_millis(50)),
                c.at(t),
            );
        }
        let st = s.stats();
        assert!(st.acked_bps > 0);
        let expected = 2.0 * (st.acked_bps as f64 / 8.0) * 0.15;
        assert_eq!(st.window_bytes, (expected as u64).max(48 * 1024));
        // A slower link: the window shrinks to the minimum.
        let mut s = UploadState::new(cfg(), &tracks(), c.at(0));
        s.push(video(0, true, 1000), None, c.at(0));
        drain(&mut s);
        let _ = s.on_ack(
            &ack(&[(0, 1)]),
            &no_held(),
            Some(Duration::from_millis(300)),
            c.at(10),
        );
        assert_eq!(s.stats().window_bytes, 48 * 1024);
    }

    #[test]
    fn a_late_backlog_jumps_to_the_newest_keyframe_then_backfills() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(cfg(), &tracks(), c.at(0));
        // The first frames fill the window; while they are in flight the
        // encoder makes 2 s of video, a keyframe every second.
        for i in 0..10 {
            s.push(video(i * 33, i == 0, 20_000), None, c.at(0));
        }
        let sent = drain(&mut s);
        assert_eq!(sent.len(), 3, "{sent:?}");
        assert!(sent.iter().all(|(l, _, _)| *l == Lane::Live));
        assert_eq!(s.stats().live_jumps, 0, "less than 1 s waits");
        for i in 10..60 {
            s.push(video(i * 33, i % 30 == 0, 20_000), None, c.at(0));
        }
        assert_eq!(s.poll_transmit(), None, "the window is full");
        // Frames 0-2 are acknowledged: the waiting frames span more than
        // 1 s, so the live edge moves to the newest keyframe (seq 30).
        let _ = s.on_ack(&ack(&[(0, 3)]), &no_held(), None, c.at(100));
        let next = s.poll_transmit().unwrap();
        assert_eq!((next.lane, next.frame.seq), (Lane::Live, 30));
        assert_eq!(s.stats().live_jumps, 1);
        // The live edge goes first until it is all sent, then the backlog;
        // keep acknowledging what was sent (as held ranges) until done.
        let mut order = vec![(Lane::Live, 0, 30)];
        let mut held: Vec<(u64, u64)> = vec![(30, 31)];
        let mut t = 150;
        loop {
            let batch = drain(&mut s);
            if batch.is_empty() {
                break;
            }
            for (_, _, seq) in &batch {
                held.push((*seq, seq + 1));
            }
            order.extend(batch);
            let h: BTreeMap<u8, Vec<(u64, u64)>> = [(0u8, held.clone())].into();
            let _ = s.on_ack(&ack(&[(0, 3)]), &h, None, c.at(t));
            t += 50;
        }
        let seqs: Vec<u64> = order.iter().map(|x| x.2).collect();
        let expected: Vec<u64> = (30..60).chain(3..30).collect();
        assert_eq!(seqs, expected, "live edge first, then the backlog in order");
        for (lane, _, seq) in &order {
            assert_eq!(*lane == Lane::Live, *seq >= 30, "{order:?}");
        }
        assert_eq!(s.backlog_frames(), 0);
        // Audio-only sessions jump to the newest frame.
        let mut s = UploadState::new(cfg(), &tracks()[1..], c.at(0));
        let audio = |i: i64| MediaFrame {
            track: 1,
            ..video(i * 21, true, 20_000)
        };
        for i in 0..10 {
            s.push(audio(i), None, c.at(0));
        }
        assert_eq!(drain(&mut s).len(), 3);
        for i in 10..100 {
            s.push(audio(i), None, c.at(0));
        }
        let _ = s.on_ack(&ack(&[(1, 3)]), &no_held(), None, c.at(100));
        let next = s.poll_transmit().unwrap();
        assert_eq!((next.lane, next.frame.seq), (Lane::Live, 99));
    }

    #[test]
    fn after_a_reconnect_exactly_the_frames_the_server_lacks_are_resent() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(cfg(), &tracks(), c.at(0));
        for i in 0..10 {
            s.push(video(i * 33, i == 0, 1000), None, c.at(0));
        }
        assert_eq!(drain(&mut s).len(), 10);
        s.on_lost();
        assert!(!s.connected());
        // The server holds 0..4 and 6..8 durably.
        let held: BTreeMap<u8, Vec<(u64, u64)>> = [(0u8, vec![(6, 8)])].into();
        let out = s.on_welcome(&ack(&[(0, 4)]), &held, c.at(500));
        assert_eq!(out.released, 6);
        assert!(s.connected());
        assert_eq!(s.on_resumed(), 1);
        let resent: Vec<u64> = drain(&mut s).into_iter().map(|x| x.2).collect();
        assert_eq!(resent, vec![4, 5, 8, 9]);
        // END waits for every frame to be sent on this connection.
        s.request_end();
        assert_eq!(s.end_due(), Some(ack(&[(0, 10), (1, 0)])));
        let _ = s.on_welcome(&ack(&[(0, 10)]), &no_held(), c.at(600));
        assert_eq!(s.stats().resumes, 1);
        assert_eq!(s.backlog_frames(), 0);
    }

    #[test]
    fn advice_backs_off_when_congested_and_probes_when_clear() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(cfg(), &tracks(), c.at(0));
        assert_eq!(s.advice().reason, "start");
        // Within 500 ms of the last advice nothing changes.
        assert_eq!(s.tick(c.at(499)), None);
        // The link carries 400 kbit/s while the encoder makes 2 Mbit/s: the
        // backlog grows, the advice falls to 0.85 x throughput.
        let mut seq = 0u64;
        let mut last = None;
        for step in 1..=8u64 {
            let t = step * 250;
            for k in 0..8 {
                s.push(video((t + k * 31) as i64, false, 8_000), None, c.at(t));
            }
            seq += 2;
            let out = s.on_ack(&ack(&[(0, seq)]), &no_held(), None, c.at(t));
            if let Some(a) = out.advice {
                last = Some(a);
            }
        }
        let a = last.expect("advice changed");
        assert_eq!(a.reason, "congested");
        let thr = s.stats().acked_bps;
        assert!(
            a.target_bps <= (thr as f64 * 0.85) as u64 + 1,
            "{a:?} {thr}"
        );
        assert_eq!(
            a.target_fps,
            if a.target_bps >= 500_000 {
                30
            } else if a.target_bps >= 250_000 {
                20
            } else {
                15
            }
        );
        // Everything acknowledged, the encoder uses its budget: probing, by
        // x1.08 + 20 kbit/s per step, capped at the maximum.
        let before = s.advice().target_bps;
        let all = s.frames_per_track().get(&0).copied().unwrap_or(0);
        // Enough acknowledged bytes in the last 2 s for the "uses its
        // budget" rule.
        let t = 2500;
        for k in 0..20 {
            s.push(video(t + k, false, 20_000), None, c.at(t as u64));
        }
        let out = s.on_ack(&ack(&[(0, all + 20)]), &no_held(), None, c.at(t as u64));
        let a = out.advice.expect("re-advised");
        assert_eq!(a.reason, "probing");
        assert_eq!(a.target_bps, (before as f64 * 1.08) as u64 + 20_000);
        // The bounds hold whatever happens.
        let mut s = UploadState::new(
            StateConfig {
                initial_bitrate_bps: 7_900_000,
                ..cfg()
            },
            &tracks(),
            c.at(0),
        );
        for k in 0..100 {
            s.push(video(k, false, 50_000), None, c.at(0));
        }
        // (Four acknowledgements over half a second: a measured rate.)
        for (seq, t) in [(25, 100), (50, 250), (75, 400)] {
            let _ = s.on_ack(&ack(&[(0, seq)]), &no_held(), None, c.at(t));
        }
        let out = s.on_ack(&ack(&[(0, 100)]), &no_held(), None, c.at(600));
        assert_eq!(out.advice.map(|a| a.target_bps), Some(8_000_000));
    }

    #[test]
    fn a_connection_is_measured_over_its_own_life() {
        // A 1 Mbit/s link under a 3 Mbit/s encoder: every 50 ms three
        // 6250-byte frames are made and one is acknowledged, except while
        // the first keyframe (twelve frames' worth) is on its way.
        let c = Clock(Instant::now());
        let mut s = UploadState::new(cfg(), &tracks(), c.at(0));
        let mut seq = 0u64;
        let mut advice = None;
        let mut step = |s: &mut UploadState, seq: &mut u64, t: u64, acked: u64| {
            for k in 0..3 {
                s.push(video((t + k) as i64, false, 6_250), None, c.at(t));
            }
            if acked > 0 {
                *seq += acked;
                let out = s.on_ack(&ack(&[(0, *seq)]), &no_held(), None, c.at(t));
                advice = out.advice.or(advice);
            }
            advice
        };
        // A first small frame acknowledged at 100 ms, then nothing for
        // 600 ms: no measurement, so no advice (the 2 s window would say
        // 25 kbit/s, and the advice would fall to the floor).
        for t in (50..=650).step_by(50) {
            assert_eq!(
                step(&mut s, &mut seq, t, u64::from(t == 100)),
                None,
                "{t} ms"
            );
        }
        assert_eq!(s.tick(c.at(650)), None);
        assert_eq!(s.advice().reason, "start");
        // The keyframe arrives at 700 ms, then one frame every 50 ms: the
        // rate is 1 Mbit/s, and the advice asks for 0.85 of it.
        let mut first = None;
        for t in (700..=1200).step_by(50) {
            first = step(&mut s, &mut seq, t, if t == 700 { 12 } else { 1 });
        }
        let first = first.expect("advised");
        let thr = s.stats().acked_bps;
        assert!((900_000..=1_100_000).contains(&thr), "{thr}");
        assert_eq!(first.reason, "congested");
        assert!(first.target_bps >= 800_000, "{first:?}");
        // The connection is lost and another comes up: WELCOME releases
        // what the old one carried (not this path's throughput), then the
        // new path carries 1 Mbit/s too.
        s.on_lost();
        seq += 20;
        let _ = s.on_welcome(&ack(&[(0, seq)]), &no_held(), c.at(1500));
        for t in (1550..=2100).step_by(50) {
            step(&mut s, &mut seq, t, 1);
        }
        let thr = s.stats().acked_bps;
        assert!(
            (900_000..=1_100_000).contains(&thr),
            "after the reconnect: {thr}"
        );
    }

    #[test]
    fn a_full_buffer_waits_then_fails_without_a_connection() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(
            StateConfig {
                memory_bytes: 10_000,
                ..cfg()
            },
            &tracks(),
            c.at(0),
        );
        assert_eq!(s.offer(10_001, c.at(0)), Offer::TooBig);
        assert_eq!(s.offer(6_000, c.at(0)), Offer::Accept);
        s.push(video(0, true, 6_000), None, c.at(0));
        // Connected: wait for acknowledgements, however long.
        assert_eq!(s.offer(6_000, c.at(1)), Offer::Wait);
        assert_eq!(s.offer(6_000, c.at(600_000)), Offer::Wait);
        // Disconnected: wait up to the reconnect deadline, then fail.
        s.on_lost();
        assert_eq!(s.offer(6_000, c.at(600_001)), Offer::Wait);
        assert_eq!(s.offer(6_000, c.at(660_001)), Offer::Wait);
        assert_eq!(s.offer(6_000, c.at(660_002)), Offer::Fail);
        // A connection and an ACK free the space.
        let _ = s.on_welcome(&ack(&[(0, 1)]), &no_held(), c.at(660_003));
        assert_eq!(s.offer(6_000, c.at(660_004)), Offer::Accept);
    }

    #[test]
    fn with_a_spool_memory_holds_only_the_newest_frames() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(
            StateConfig {
                memory_bytes: 25_000,
                spooled: true,
                ..cfg()
            },
            &tracks(),
            c.at(0),
        );
        for i in 0..10u64 {
            let r = SpoolRef {
                segment: (i / 4) as u32,
                offset: i * 10_000,
            };
            assert_eq!(s.offer(10_000, c.at(0)), Offer::Accept, "never waits");
            s.push(video(i as i64 * 33, i == 0, 10_000), Some(r), c.at(0));
        }
        let st = s.stats();
        assert_eq!(st.resident_bytes, 20_000);
        assert_eq!(s.backlog_bytes(), 100_000);
        // The oldest come back without bytes (read them from the spool);
        // the newest with them.
        let t = s.poll_transmit().unwrap();
        assert!(!t.resident && t.frame.data.is_empty());
        assert_eq!(t.spool.map(|r| r.segment), Some(0));
        // Releasing frames reports their spool segments.
        let out = s.on_ack(&ack(&[(0, 6)]), &no_held(), None, c.at(50));
        assert_eq!(out.spool_released, [(0u32, 4u64), (1, 2)].into());
        assert_eq!(s.stats().resident_bytes, 20_000);
    }

    #[test]
    fn restored_frames_keep_their_numbers() {
        let c = Clock(Instant::now());
        let mut s = UploadState::new(
            StateConfig {
                spooled: true,
                ..cfg()
            },
            &tracks(),
            c.at(0),
        );
        for seq in [7u64, 8, 9] {
            let mut f = video(seq as i64 * 33, seq == 7, 0);
            f.seq = seq;
            s.restore(
                f,
                1000,
                SpoolRef {
                    segment: 3,
                    offset: seq,
                },
                c.at(0),
            );
        }
        s.raise_counts(&ack(&[(0, 5), (1, 4)]));
        assert_eq!(s.frames_per_track(), &ack(&[(0, 10), (1, 4)]));
        assert_eq!(s.backlog_bytes(), 3000);
        s.request_end();
        let _ = s.on_welcome(&ack(&[(0, 8), (1, 4)]), &no_held(), c.at(1));
        let resent: Vec<u64> = drain(&mut s).into_iter().map(|x| x.2).collect();
        assert_eq!(resent, vec![8, 9]);
        assert_eq!(s.end_due(), Some(ack(&[(0, 10), (1, 4)])));
    }
}
