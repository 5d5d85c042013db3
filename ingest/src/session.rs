//! Per-session state: which frames are held, which are durable, what has been
//! released to the outputs; frames go to the journal through a
//! [`JournalSlot`] of the shared committer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sharecast_formats::ingest::ErrorCode;
use sharecast_formats::media::MediaFrame;
use tokio::sync::watch;

use crate::committer::{Committer, JournalSlot};
use crate::journal::JournalWriter;
use crate::{SessionInfo, SessionOutput};

/// A frame's timestamps must lie within the session's longest span of its
/// first frame's pts, either way: `pts_us` and `dts_us` no farther than
/// `max_session_us` from `first_pts`. Beyond it the session is too long
/// (`session_too_long`); within it every difference of two timestamps of
/// the session fits an i64. The arithmetic saturates, so any value is safe.
pub(crate) fn check_timestamps(
    frame: &MediaFrame,
    first_pts: i64,
    max_session_us: i64,
) -> Result<(), Reject> {
    let off = |t: i64| t.saturating_sub(first_pts).saturating_abs();
    if off(frame.pts_us) > max_session_us || off(frame.dts_us) > max_session_us {
        return Err((
            ErrorCode::SessionTooLong,
            format!(
                "track {} seq {}: pts {} us / dts {} us lie more than the session limit of {} s from the first frame's pts {} us",
                frame.track,
                frame.seq,
                frame.pts_us,
                frame.dts_us,
                max_session_us / 1_000_000,
                first_pts
            ),
        ));
    }
    Ok(())
}

/// Durable frames: contiguous prefix and ranges held above it, per track.
pub(crate) type AckState = (BTreeMap<u8, u64>, BTreeMap<u8, Vec<(u64, u64)>>);

/// Most ranges reported per track in one ACK.
const MAX_HELD_RANGES: usize = 64;

/// How long released frames wait to go to the recording together (see
/// `Session::record`).
const RECORD_BATCH: Duration = Duration::from_millis(300);

/// Released frames on their way to the recording.
pub(crate) struct RecordBatch {
    pub frames: Vec<MediaFrame>,
    /// When the oldest waiting frame was released.
    pub since: Instant,
}

/// A rejected frame: code and explanation.
pub(crate) type Reject = (ErrorCode, String);

#[derive(Debug, Default)]
pub(crate) struct TrackState {
    /// Every frame below this is durable and released to `record`.
    pub durable_next: u64,
    /// Durable frames waiting for a gap below them to fill.
    pub durable_ahead: BTreeMap<u64, MediaFrame>,
    /// Frames sent to the journal and not yet durable: seq → dts.
    pub in_flight: BTreeMap<u64, i64>,
    /// dts of the last frame released (seq durable_next - 1).
    pub last_dts: Option<i64>,
    /// The next seq the live output may take (newest first).
    pub live_next: u64,
    /// Frames received (unique).
    pub frames: u64,
    /// Bytes received (unique).
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Connected,
    Suspended,
    /// Stopped by an error whose client action is "stop": takes no more
    /// frames, cannot be resumed, is finalised once its connection is gone.
    Stopped,
    Finishing,
    Finished,
    Failed,
}

impl Lifecycle {
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::Connected => "connected",
            Lifecycle::Suspended => "suspended",
            Lifecycle::Stopped => "stopped",
            Lifecycle::Finishing => "finishing",
            Lifecycle::Finished => "finished",
            Lifecycle::Failed => "failed",
        }
    }
}

pub(crate) struct State {
    pub tracks: BTreeMap<u8, TrackState>,
    pub first_pts: Option<i64>,
    pub max_pts: i64,
    pub bytes: u64,
    pub lifecycle: Lifecycle,
    pub suspended_at: Option<Instant>,
    pub resumes: u64,
    pub failure: Option<String>,
    /// Capture-to-arrival delay of the newest live frame, ms (wall clock of
    /// arrival minus the phone's anchor + capture time).
    pub live_delay_ms: Option<i64>,
    /// Largest live delay seen, ms.
    pub max_live_delay_ms: Option<i64>,
}

/// One ingest session, independent of the connection carrying it.
pub(crate) struct Session {
    pub info: SessionInfo,
    pub secret: String,
    pub output: Arc<dyn SessionOutput>,
    pub state: Mutex<State>,
    pub ack_tx: watch::Sender<AckState>,
    pub journal: Arc<JournalSlot>,
    /// Generation of the connection currently attached (0 = none yet).
    pub generation: AtomicU64,
    pub connection: Mutex<Option<quinn::Connection>>,
    pub started: Instant,
    /// Released frames waiting to go to the recording together.
    pub record_batch: Mutex<RecordBatch>,
    pub limits: SessionLimits,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub max_session_us: i64,
    pub max_bitrate_bps: u64,
}

impl Session {
    pub fn new(
        info: SessionInfo,
        secret: String,
        output: Arc<dyn SessionOutput>,
        writer: JournalWriter,
        limits: SessionLimits,
        committer: &Committer,
    ) -> Arc<Session> {
        let tracks = info
            .tracks
            .iter()
            .map(|t| (t.id, TrackState::default()))
            .collect::<BTreeMap<_, _>>();
        let acks = tracks.keys().map(|k| (*k, 0)).collect();
        let (ack_tx, _) = watch::channel((acks, BTreeMap::new()));
        Arc::new_cyclic(|weak| Session {
            info,
            secret,
            output,
            state: Mutex::new(State {
                tracks,
                first_pts: None,
                max_pts: i64::MIN,
                bytes: 0,
                lifecycle: Lifecycle::Suspended,
                suspended_at: Some(Instant::now()),
                resumes: 0,
                failure: None,
                live_delay_ms: None,
                max_live_delay_ms: None,
            }),
            ack_tx,
            journal: committer.slot(writer, weak.clone()),
            generation: AtomicU64::new(0),
            connection: Mutex::new(None),
            started: Instant::now(),
            record_batch: Mutex::new(RecordBatch {
                frames: Vec::new(),
                since: Instant::now(),
            }),
            limits,
        })
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock means a panic in another task while holding it;
        // the state itself is still consistent enough to read and finish.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn next_seq(&self) -> BTreeMap<u8, u64> {
        self.lock()
            .tracks
            .iter()
            .map(|(k, t)| (*k, t.durable_next))
            .collect()
    }

    /// Contiguous durable prefix and durable ranges above it.
    pub fn ack_state(&self) -> AckState {
        let st = self.lock();
        let next = st
            .tracks
            .iter()
            .map(|(k, t)| (*k, t.durable_next))
            .collect();
        let mut held = BTreeMap::new();
        for (k, t) in &st.tracks {
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for seq in t.durable_ahead.keys() {
                match ranges.last_mut() {
                    Some((_, end)) if *end == *seq => *end += 1,
                    _ => {
                        if ranges.len() == MAX_HELD_RANGES {
                            break;
                        }
                        ranges.push((*seq, *seq + 1));
                    }
                }
            }
            if !ranges.is_empty() {
                held.insert(*k, ranges);
            }
        }
        (next, held)
    }

    /// Take a received frame: dedup, validate, pass to live, queue for the
    /// journal. Returns `Ok(false)` for a duplicate.
    pub fn accept(&self, frame: MediaFrame) -> Result<bool, Reject> {
        let mut st = self.lock();
        if matches!(
            st.lifecycle,
            Lifecycle::Stopped | Lifecycle::Finishing | Lifecycle::Finished | Lifecycle::Failed
        ) {
            return Err((ErrorCode::UnknownSession, "session has ended".into()));
        }
        let max_session_us = self.limits.max_session_us;
        let max_bitrate = self.limits.max_bitrate_bps;
        let first_pts = *st.first_pts.get_or_insert(frame.pts_us);
        // First, so that every later difference of timestamps is small.
        check_timestamps(&frame, first_pts, max_session_us)?;
        let new_bytes = st.bytes + frame.data.len() as u64;
        let new_max_pts = st.max_pts.max(frame.pts_us);
        let span_us = new_max_pts.saturating_sub(first_pts).max(10_000_000) as u128;
        let bitrate = (new_bytes as u128 * 8 * 1_000_000 / span_us) as u64;
        if bitrate > max_bitrate {
            return Err((
                ErrorCode::BitrateExceeded,
                format!(
                    "average bitrate {bitrate} bit/s is above the limit of {max_bitrate} bit/s"
                ),
            ));
        }
        let Some(ts) = st.tracks.get_mut(&frame.track) else {
            return Err((
                ErrorCode::UnknownTrack,
                format!(
                    "frame for track {} which HELLO did not declare",
                    frame.track
                ),
            ));
        };
        if frame.seq < ts.durable_next
            || ts.durable_ahead.contains_key(&frame.seq)
            || ts.in_flight.contains_key(&frame.seq)
        {
            return Ok(false);
        }
        // Decode timestamps must not go backwards in sequence order.
        let prev = if frame.seq == ts.durable_next {
            ts.last_dts
        } else {
            let a = ts
                .durable_ahead
                .range(..frame.seq)
                .next_back()
                .map(|(s, f)| (*s, f.dts_us));
            let b = ts
                .in_flight
                .range(..frame.seq)
                .next_back()
                .map(|(s, d)| (*s, *d));
            match (a, b) {
                (Some(a), Some(b)) => Some(if a.0 > b.0 { a.1 } else { b.1 }),
                (Some(a), None) => Some(a.1),
                (None, Some(b)) => Some(b.1),
                (None, None) => ts.last_dts,
            }
        };
        if let Some(p) = prev {
            if frame.dts_us < p {
                return Err((
                    ErrorCode::NonMonotonicTimestamp,
                    format!(
                        "track {} seq {}: dts {} us is before the previous frame's {} us",
                        frame.track, frame.seq, frame.dts_us, p
                    ),
                ));
            }
        }
        let next = {
            let a = ts
                .durable_ahead
                .range(frame.seq + 1..)
                .next()
                .map(|(s, f)| (*s, f.dts_us));
            let b = ts
                .in_flight
                .range(frame.seq + 1..)
                .next()
                .map(|(s, d)| (*s, *d));
            match (a, b) {
                (Some(a), Some(b)) => Some(if a.0 < b.0 { a.1 } else { b.1 }),
                (x, y) => x.or(y).map(|v| v.1),
            }
        };
        if let Some(n) = next {
            if frame.dts_us > n {
                return Err((
                    ErrorCode::NonMonotonicTimestamp,
                    format!(
                        "track {} seq {}: dts {} us is after the next frame's {} us",
                        frame.track, frame.seq, frame.dts_us, n
                    ),
                ));
            }
        }
        ts.in_flight.insert(frame.seq, frame.dts_us);
        ts.frames += 1;
        ts.bytes += frame.data.len() as u64;
        let live = frame.seq >= ts.live_next;
        if live {
            ts.live_next = frame.seq + 1;
        }
        st.bytes = new_bytes;
        st.max_pts = new_max_pts;
        if live {
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0);
            let delay =
                now_us.saturating_sub(self.info.anchor_unix_us.saturating_add(frame.pts_us)) / 1000;
            st.live_delay_ms = Some(delay);
            st.max_live_delay_ms = Some(st.max_live_delay_ms.map_or(delay, |m| m.max(delay)));
        }
        drop(st);
        if live {
            self.output.live(&frame);
        }
        self.journal.push(frame).map_err(|why| {
            (
                ErrorCode::Internal,
                format!("session journal is closed: {why}"),
            )
        })?;
        Ok(true)
    }

    /// Frames of a commit are durable: release in order, acknowledge.
    pub(crate) fn on_durable(&self, frames: Vec<MediaFrame>) {
        let mut release = Vec::new();
        {
            let mut st = self.lock();
            for f in frames {
                let Some(ts) = st.tracks.get_mut(&f.track) else {
                    continue;
                };
                ts.in_flight.remove(&f.seq);
                if f.seq == ts.durable_next {
                    ts.durable_next += 1;
                    ts.last_dts = Some(f.dts_us);
                    release.push(f);
                    while let Some(n) = ts.durable_ahead.remove(&ts.durable_next) {
                        ts.durable_next += 1;
                        ts.last_dts = Some(n.dts_us);
                        release.push(n);
                    }
                } else if f.seq > ts.durable_next {
                    ts.durable_ahead.insert(f.seq, f);
                }
            }
        }
        // Into the batch before the ACK: whoever sees the ACK and finishes
        // the session flushes these frames too.
        self.record(release, false);
        self.ack_tx.send_replace(self.ack_state());
    }

    /// Hand frames released in order to the recording, in batches: they wait
    /// until the oldest has waited [`RECORD_BATCH`] (or `flush`), then go
    /// together, so the recording's threads wake once per batch rather than
    /// once per frame. Durability and acknowledgements do not wait for this.
    fn record(&self, frames: Vec<MediaFrame>, flush: bool) {
        let mut batch = self.record_batch.lock().unwrap_or_else(|e| e.into_inner());
        if batch.frames.is_empty() {
            batch.since = Instant::now();
        }
        batch.frames.extend(frames);
        if batch.frames.is_empty() || (!flush && batch.since.elapsed() < RECORD_BATCH) {
            return;
        }
        // The lock stays held while recording, so batches keep their order.
        let frames = std::mem::take(&mut batch.frames);
        for f in &frames {
            if let Err(e) = self.output.record(f) {
                let msg = format!("{e:#}");
                tracing::error!(session = %self.info.id, error = %msg, "recording output failed");
                let mut st = self.lock();
                st.failure.get_or_insert(msg);
            }
        }
    }

    /// Hand every released frame still waiting in the batch to the recording
    /// (before the recording is finished).
    pub fn flush_record(&self) {
        self.record(Vec::new(), true);
    }

    /// Make everything durable so far and write the END record.
    pub async fn close_journal(&self) -> anyhow::Result<()> {
        self.journal
            .end()
            .await
            .map_err(|_| anyhow::anyhow!("journal committer stopped"))?
    }

    /// The journal could not take this session's frames: nothing of them
    /// was acknowledged; the session fails and its phone is told.
    pub(crate) fn journal_failed(&self, msg: &str) {
        tracing::error!(session = %self.info.id, error = %msg, "session journal failed");
        self.lock().failure.get_or_insert_with(|| msg.to_string());
        if let Some(c) = self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            c.close(ErrorCode::Internal.as_u16().into(), msg.as_bytes());
        }
    }

    /// Frames held per track (unique), for snapshots.
    pub fn counts(&self) -> (u64, u64, HashMap<u8, u64>) {
        let st = self.lock();
        let frames = st.tracks.values().map(|t| t.frames).sum();
        let per = st.tracks.iter().map(|(k, t)| (*k, t.frames)).collect();
        (frames, st.bytes, per)
    }

    /// Stop the session after an error on connection `conn` (a stable id),
    /// if that connection is the one attached and the session is still
    /// taking frames. Returns whether it stopped now.
    pub fn stop(&self, conn: usize, code: ErrorCode) -> bool {
        let attached = self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| c.stable_id());
        let mut st = self.lock();
        if attached != Some(conn) || st.lifecycle != Lifecycle::Connected {
            return false;
        }
        st.lifecycle = Lifecycle::Stopped;
        st.suspended_at = None;
        tracing::debug!(session = %self.info.id, code = code.name(), "session stopped");
        true
    }

    pub fn set_lifecycle(&self, l: Lifecycle) {
        let mut st = self.lock();
        st.lifecycle = l;
        st.suspended_at = if l == Lifecycle::Suspended {
            Some(Instant::now())
        } else {
            None
        };
    }

    pub fn lifecycle(&self) -> Lifecycle {
        self.lock().lifecycle
    }

    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(pts_us: i64, dts_us: i64) -> MediaFrame {
        MediaFrame {
            track: 0,
            seq: 1,
            pts_us,
            dts_us,
            duration_us: 0,
            keyframe: true,
            data: Bytes::new(),
        }
    }

    #[test]
    fn timestamps_stay_within_the_session_span_either_way() {
        let max = 4 * 3600 * 1_000_000;
        for (pts, dts, first, ok) in [
            (0, 0, 0, true),
            (max, max, 0, true),
            (max + 1, 0, 0, false),
            (0, -max - 1, 0, false),
            (-max, -max, 0, true),
            // Extremes: no overflow, a clear refusal.
            (i64::MIN, i64::MIN, i64::MIN, true),
            (i64::MAX, i64::MAX, i64::MIN, false),
            (i64::MIN, 0, i64::MAX, false),
            (0, i64::MAX, 0, false),
        ] {
            let r = check_timestamps(&frame(pts, dts), first, max);
            assert_eq!(r.is_ok(), ok, "pts {pts} dts {dts} first {first}: {r:?}");
            if let Err((code, msg)) = r {
                assert_eq!(code, ErrorCode::SessionTooLong);
                assert!(msg.contains("14400 s"), "{msg}");
            }
        }
    }
}
