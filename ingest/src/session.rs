//! Per-session state: which frames are held, which are durable, what has been
//! released to the outputs; frames go to the journal through a
//! [`JournalSlot`] of the shared committer.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use sharecast_formats::ingest::ErrorCode;
use sharecast_formats::media::MediaFrame;
use tokio::sync::watch;

use crate::committer::{Committer, JournalSlot};
use crate::journal::JournalWriter;
use crate::{lock, SessionInfo, SessionOutput};

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
    pub(crate) frames: Vec<MediaFrame>,
    /// When the oldest waiting frame was released.
    pub(crate) since: Instant,
    /// The recording refused a frame (its disk full, say): it takes no
    /// more, and is made again from the journal when the session ends.
    pub(crate) failed: bool,
}

/// A rejected frame: code and explanation.
pub(crate) type Reject = (ErrorCode, String);

#[derive(Debug, Default)]
pub(crate) struct TrackState {
    /// Every frame below this is durable and released to `record`.
    pub(crate) durable_next: u64,
    /// Durable frames waiting for a gap below them to fill.
    pub(crate) durable_ahead: BTreeMap<u64, MediaFrame>,
    /// Frames sent to the journal and not yet durable: seq → dts.
    pub(crate) in_flight: BTreeMap<u64, i64>,
    /// dts of the last frame released (seq durable_next - 1).
    pub(crate) last_dts: Option<i64>,
    /// The next seq the live output may take (newest first).
    pub(crate) live_next: u64,
    /// Frames received (unique).
    pub(crate) frames: u64,
    /// Bytes received (unique).
    pub(crate) bytes: u64,
}

impl TrackState {
    /// Whether frame `seq` is held already (durable, or on its way to the
    /// journal): a duplicate.
    fn holds(&self, seq: u64) -> bool {
        seq < self.durable_next
            || self.durable_ahead.contains_key(&seq)
            || self.in_flight.contains_key(&seq)
    }

    /// Decode timestamps must not go backwards in sequence order: a new
    /// frame's dts lies between those of the frames held next to it.
    fn check_dts_order(&self, frame: &MediaFrame) -> Result<(), Reject> {
        let out_of_order = |side: &str, other: i64| {
            Err((
                ErrorCode::NonMonotonicTimestamp,
                format!(
                    "track {} seq {}: dts {} us is {side} frame's {other} us",
                    frame.track, frame.seq, frame.dts_us
                ),
            ))
        };
        match (self.dts_before(frame.seq), self.dts_after(frame.seq)) {
            (Some(p), _) if frame.dts_us < p => out_of_order("before the previous", p),
            (_, Some(n)) if frame.dts_us > n => out_of_order("after the next", n),
            _ => Ok(()),
        }
    }

    /// The dts of the frame held just below `seq` (durable ahead of a gap,
    /// or on its way to the journal), else of the last frame released.
    fn dts_before(&self, seq: u64) -> Option<i64> {
        if seq == self.durable_next {
            return self.last_dts;
        }
        let ahead = self.durable_ahead.range(..seq).next_back();
        let flying = self.in_flight.range(..seq).next_back();
        let below = ahead
            .map(|(s, f)| (*s, f.dts_us))
            .into_iter()
            .chain(flying.map(|(s, d)| (*s, *d)))
            .max_by_key(|(s, _)| *s);
        below.map(|(_, dts)| dts).or(self.last_dts)
    }

    /// The dts of the frame held just above `seq`, if any.
    fn dts_after(&self, seq: u64) -> Option<i64> {
        let above = (Bound::Excluded(seq), Bound::Unbounded);
        let ahead = self.durable_ahead.range(above).next();
        let flying = self.in_flight.range(above).next();
        ahead
            .map(|(s, f)| (*s, f.dts_us))
            .into_iter()
            .chain(flying.map(|(s, d)| (*s, *d)))
            .min_by_key(|(s, _)| *s)
            .map(|(_, dts)| dts)
    }

    /// Take a new frame on its way to the journal; whether it is the newest
    /// so far (the live output takes it).
    fn take(&mut self, frame: &MediaFrame) -> bool {
        self.in_flight.insert(frame.seq, frame.dts_us);
        self.frames += 1;
        self.bytes += frame.data.len() as u64;
        let live = frame.seq >= self.live_next;
        if live {
            self.live_next = frame.seq + 1;
        }
        live
    }

    /// A frame of this track is durable: released (onto `release`) with
    /// the durable frames above it that it un-gaps, or held above a gap.
    fn durable(&mut self, f: MediaFrame, release: &mut Vec<MediaFrame>) {
        if f.seq == self.durable_next {
            self.durable_next += 1;
            self.last_dts = Some(f.dts_us);
            release.push(f);
            while let Some(n) = self.durable_ahead.remove(&self.durable_next) {
                self.durable_next += 1;
                self.last_dts = Some(n.dts_us);
                release.push(n);
            }
        } else if f.seq > self.durable_next {
            self.durable_ahead.insert(f.seq, f);
        }
    }

    /// The durable ranges `[start, end)` above the contiguous prefix, at
    /// most [`MAX_HELD_RANGES`].
    fn held_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for seq in self.durable_ahead.keys() {
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
        ranges
    }
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
    pub(crate) fn name(self) -> &'static str {
        match self {
            Lifecycle::Connected => "connected",
            Lifecycle::Suspended => "suspended",
            Lifecycle::Stopped => "stopped",
            Lifecycle::Finishing => "finishing",
            Lifecycle::Finished => "finished",
            Lifecycle::Failed => "failed",
        }
    }

    /// Whether the session still takes frames (and counts against
    /// `max_sessions_per_device`): connected, or waiting for its phone.
    pub(crate) fn is_open(self) -> bool {
        matches!(self, Lifecycle::Connected | Lifecycle::Suspended)
    }
}

pub(crate) struct State {
    pub(crate) tracks: BTreeMap<u8, TrackState>,
    pub(crate) first_pts: Option<i64>,
    pub(crate) max_pts: i64,
    pub(crate) bytes: u64,
    /// Bytes of the frames made durable (acknowledged), for the admin's
    /// throughput chart.
    pub(crate) durable_bytes: u64,
    /// The phone's latest REPORT (its encoder advice and backlog), if it
    /// sends them.
    pub(crate) report: Option<sharecast_formats::ingest::Report>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) suspended_at: Option<Instant>,
    pub(crate) resumes: u64,
    pub(crate) failure: Option<String>,
    /// Capture-to-arrival delay of the newest live frame, ms (wall clock of
    /// arrival minus the phone's anchor + capture time).
    pub(crate) live_delay_ms: Option<i64>,
    /// Largest live delay seen, ms.
    pub(crate) max_live_delay_ms: Option<i64>,
}

impl State {
    /// The session's limits, checked before anything else of a frame: its
    /// timestamps within the session's span, the average bitrate with it
    /// below the limit. Returns the session's bytes and highest pts with
    /// the frame, for [`Session::accept`] to keep once it takes it.
    fn check_limits(
        &mut self,
        frame: &MediaFrame,
        limits: &SessionLimits,
    ) -> Result<(u64, i64), Reject> {
        let first_pts = *self.first_pts.get_or_insert(frame.pts_us);
        // First, so that every later difference of timestamps is small.
        check_timestamps(frame, first_pts, limits.max_session_us)?;
        let bytes = self.bytes + frame.data.len() as u64;
        let max_pts = self.max_pts.max(frame.pts_us);
        let span_us = max_pts.saturating_sub(first_pts).max(10_000_000) as u128;
        let bitrate = (bytes as u128 * 8 * 1_000_000 / span_us) as u64;
        let max_bitrate = limits.max_bitrate_bps;
        if bitrate > max_bitrate {
            return Err((
                ErrorCode::BitrateExceeded,
                format!(
                    "average bitrate {bitrate} bit/s is above the limit of {max_bitrate} bit/s"
                ),
            ));
        }
        Ok((bytes, max_pts))
    }

    /// A live frame captured at `anchor_unix_us + pts_us` arrived now.
    fn note_live_delay(&mut self, anchor_unix_us: i64, pts_us: i64) {
        let now_us = crate::unix_now_us();
        let delay = now_us.saturating_sub(anchor_unix_us.saturating_add(pts_us)) / 1000;
        self.live_delay_ms = Some(delay);
        self.max_live_delay_ms = Some(self.max_live_delay_ms.map_or(delay, |m| m.max(delay)));
    }

    /// Per track, the lowest sequence number not yet durable.
    fn next_seq(&self) -> BTreeMap<u8, u64> {
        self.tracks
            .iter()
            .map(|(k, t)| (*k, t.durable_next))
            .collect()
    }
}

/// One ingest session, independent of the connection carrying it.
pub(crate) struct Session {
    pub(crate) info: SessionInfo,
    pub(crate) secret: String,
    pub(crate) output: Arc<dyn SessionOutput>,
    pub(crate) state: Mutex<State>,
    pub(crate) ack_tx: watch::Sender<AckState>,
    pub(crate) journal: Arc<JournalSlot>,
    /// Generation of the connection currently attached (0 = none yet).
    pub(crate) generation: AtomicU64,
    pub(crate) connection: Mutex<Option<quinn::Connection>>,
    pub(crate) started: Instant,
    /// Released frames waiting to go to the recording together.
    pub(crate) record_batch: Mutex<RecordBatch>,
    pub(crate) limits: SessionLimits,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionLimits {
    pub(crate) max_session_us: i64,
    pub(crate) max_bitrate_bps: u64,
}

impl Session {
    pub(crate) fn new(
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
                durable_bytes: 0,
                report: None,
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
                failed: false,
            }),
            limits,
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn next_seq(&self) -> BTreeMap<u8, u64> {
        self.lock().next_seq()
    }

    /// Contiguous durable prefix and durable ranges above it.
    pub(crate) fn ack_state(&self) -> AckState {
        let st = self.lock();
        let held = st
            .tracks
            .iter()
            .map(|(k, t)| (*k, t.held_ranges()))
            .filter(|(_, ranges)| !ranges.is_empty())
            .collect();
        (st.next_seq(), held)
    }

    /// Take a received frame: dedup, validate, pass to live, queue for the
    /// journal. Returns `Ok(false)` for a duplicate.
    pub(crate) fn accept(&self, frame: MediaFrame) -> Result<bool, Reject> {
        let mut st = self.lock();
        if !st.lifecycle.is_open() {
            return Err((ErrorCode::UnknownSession, "session has ended".into()));
        }
        let (bytes, max_pts) = st.check_limits(&frame, &self.limits)?;
        let Some(ts) = st.tracks.get_mut(&frame.track) else {
            return Err((
                ErrorCode::UnknownTrack,
                format!(
                    "frame for track {} which HELLO did not declare",
                    frame.track
                ),
            ));
        };
        if ts.holds(frame.seq) {
            return Ok(false);
        }
        ts.check_dts_order(&frame)?;
        let live = ts.take(&frame);
        st.bytes = bytes;
        st.max_pts = max_pts;
        if live {
            st.note_live_delay(self.info.anchor_unix_us, frame.pts_us);
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
            let mut guard = self.lock();
            let st = &mut *guard;
            for f in frames {
                let len = f.data.len() as u64;
                let Some(ts) = st.tracks.get_mut(&f.track) else {
                    continue;
                };
                ts.in_flight.remove(&f.seq);
                st.durable_bytes += len;
                ts.durable(f, &mut release);
            }
        }
        // Into the batch before the ACK: whoever sees the ACK and finishes
        // the session flushes these frames too.
        self.record(release, false);
        self.ack_tx.send_replace(self.ack_state());
    }

    /// Take the frames of a journal read back after a restart: every one is
    /// durable already. Each track's contiguous prefix goes to the
    /// recording now, in decode order; frames above a gap wait for the
    /// phone's resend.
    pub(crate) fn replay(&self, frames: Vec<MediaFrame>) -> anyhow::Result<()> {
        let mut by_track: HashMap<u8, Vec<MediaFrame>> = HashMap::new();
        for f in frames {
            by_track.entry(f.track).or_default().push(f);
        }
        let mut release = Vec::new();
        let mut st = self.lock();
        for (track, mut frames) in by_track {
            frames.sort_by_key(|f| f.seq);
            frames.dedup_by_key(|f| f.seq);
            let Some(ts) = st.tracks.get_mut(&track) else {
                continue;
            };
            for f in frames {
                ts.frames += 1;
                ts.bytes += f.data.len() as u64;
                ts.durable(f, &mut release);
            }
            ts.live_next = ts.durable_next;
        }
        st.bytes = st.tracks.values().map(|t| t.bytes).sum();
        st.durable_bytes = st.bytes;
        drop(st);
        release.sort_by_key(|f| f.dts_us);
        for f in &release {
            self.output.record(f).with_context(|| {
                format!("recording replayed frame {} of track {}", f.seq, f.track)
            })?;
        }
        self.ack_tx.send_replace(self.ack_state());
        Ok(())
    }

    /// Hand frames released in order to the recording, in batches: they wait
    /// until the oldest has waited [`RECORD_BATCH`] (or `flush`), then go
    /// together, so the recording's threads wake once per batch rather than
    /// once per frame. Durability and acknowledgements do not wait for this.
    fn record(&self, frames: Vec<MediaFrame>, flush: bool) {
        let mut batch = lock(&self.record_batch);
        if batch.frames.is_empty() {
            batch.since = Instant::now();
        }
        batch.frames.extend(frames);
        if batch.frames.is_empty() || (!flush && batch.since.elapsed() < RECORD_BATCH) {
            return;
        }
        // The lock stays held while recording, so batches keep their order.
        let frames = std::mem::take(&mut batch.frames);
        if batch.failed {
            return;
        }
        for f in &frames {
            if let Err(e) = self.output.record(f) {
                let msg = format!("{e:#}");
                tracing::error!(session = %self.info.id, error = %msg, "recording output failed; it will be made again from the journal when the session ends");
                batch.failed = true;
                self.lock().failure.get_or_insert(msg);
                return;
            }
        }
    }

    /// Whether the recording failed and must be made again from the journal.
    pub(crate) fn recording_failed(&self) -> bool {
        lock(&self.record_batch).failed
    }

    /// Make the recording again from the journal (after it failed): a fresh
    /// recording gets every released frame, in decode order. The journal
    /// holds every durable frame; frames above a gap were never released
    /// and stay out, as they do from a recording that did not fail.
    pub(crate) async fn record_again(&self) -> anyhow::Result<()> {
        let path = self.info.dir.join("journal");
        let rec = tokio::task::spawn_blocking(move || crate::journal::read(&path))
            .await
            .context("journal read task")??;
        self.output
            .restart_recording()
            .await
            .context("starting the recording again")?;
        let mut frames = {
            let st = self.lock();
            let released = |f: &MediaFrame| {
                st.tracks
                    .get(&f.track)
                    .is_some_and(|t| f.seq < t.durable_next)
            };
            let mut frames: Vec<MediaFrame> =
                rec.frames.into_iter().filter(|f| released(f)).collect();
            frames.sort_by_key(|f| (f.track, f.seq));
            frames.dedup_by_key(|f| (f.track, f.seq));
            frames
        };
        frames.sort_by_key(|f| f.dts_us);
        for f in &frames {
            self.output
                .record(f)
                .with_context(|| format!("recording frame {} of track {} again", f.seq, f.track))?;
        }
        lock(&self.record_batch).failed = false;
        tracing::info!(session = %self.info.id, frames = frames.len(), "recording made again from the journal");
        Ok(())
    }

    /// Hand every released frame still waiting in the batch to the recording
    /// (before the recording is finished).
    pub(crate) fn flush_record(&self) {
        self.record(Vec::new(), true);
    }

    /// Make everything durable so far and write the END record.
    pub(crate) async fn close_journal(&self) -> anyhow::Result<()> {
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
        if let Some(c) = lock(&self.connection).as_ref() {
            c.close(ErrorCode::Internal.as_u16().into(), msg.as_bytes());
        }
    }

    /// The disk was full: `frames` (sent to the journal, never made
    /// durable nor acknowledged) are forgotten, so that the phone's resend
    /// after it resumes is taken, and the phone is told `storage_full` (it
    /// keeps the frames and resumes later). The session stays open.
    pub(crate) fn storage_full<'a>(
        &self,
        frames: impl IntoIterator<Item = &'a MediaFrame>,
        msg: &str,
    ) {
        let mut st = self.lock();
        let mut forgotten = 0u64;
        for f in frames {
            let Some(ts) = st.tracks.get_mut(&f.track) else {
                continue;
            };
            if ts.in_flight.remove(&f.seq).is_some() {
                let len = f.data.len() as u64;
                ts.frames -= 1;
                ts.bytes -= len;
                st.bytes -= len;
                forgotten += 1;
            }
        }
        drop(st);
        // The episode is logged once by the committer, not per session.
        tracing::debug!(session = %self.info.id, forgotten, error = %msg, "disk full: frames not journalled, phone told storage_full");
        if let Some(c) = lock(&self.connection).as_ref() {
            let reason = format!("{}: {msg}", ErrorCode::StorageFull.name());
            c.close(
                ErrorCode::StorageFull.as_u16().into(),
                &reason.as_bytes()[..reason.len().min(512)],
            );
        }
    }

    /// Unique frames and bytes held, for snapshots.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.tracks.values().map(|t| t.frames).sum(), st.bytes)
    }

    /// Stop the session after an error on connection `conn` (a stable id),
    /// if that connection is the one attached and the session is still
    /// taking frames. Returns whether it stopped now.
    pub(crate) fn stop(&self, conn: usize, code: ErrorCode) -> bool {
        let attached = lock(&self.connection).as_ref().map(|c| c.stable_id());
        let mut st = self.lock();
        if attached != Some(conn) || st.lifecycle != Lifecycle::Connected {
            return false;
        }
        st.lifecycle = Lifecycle::Stopped;
        st.suspended_at = None;
        tracing::debug!(session = %self.info.id, code = code.name(), "session stopped");
        true
    }

    pub(crate) fn set_lifecycle(&self, l: Lifecycle) {
        let mut st = self.lock();
        st.lifecycle = l;
        st.suspended_at = if l == Lifecycle::Suspended {
            Some(Instant::now())
        } else {
            None
        };
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lock().lifecycle
    }

    pub(crate) fn age(&self) -> Duration {
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
