//! One journal committer for every session: group commit across sessions.
//!
//! Sessions hand their accepted frames to a [`JournalSlot`]. A single
//! committer thread runs rounds: it takes every slot with waiting frames,
//! appends each slot's frames to its journal file with one `write`, makes the
//! whole round durable at once, and only then reports the frames durable to
//! their sessions (which release and acknowledge them).
//!
//! How a round is made durable is [`JournalSync`]:
//! - `filesystem` (default on Linux): one `syncfs` on the journals' directory
//!   flushes every file of the round (and anything else dirty on that
//!   filesystem) in one go. If it reports an error, each file of the round is
//!   then `fdatasync`ed on its own so only the files that really failed lose
//!   their frames.
//! - `file`: one `fdatasync` per file of the round, one after the other.
//!
//! Rounds start at most every `journal_commit_delay_ms`: under load a round
//! takes every frame that arrived while the previous one was syncing, so
//! syncs stay few however many sessions there are; at light load a frame
//! waits at most that delay before its write starts.
//!
//! A round's results are handed to the async runtime in one message: one
//! task there releases every session's durable frames and wakes their ACK
//! writers. Waking hundreds of tasks from the committer thread would cost one
//! cross-thread wake-up each; from inside the runtime they are queue pushes.
//! (Without a runtime, as in unit code, the committer thread delivers.)
//! A failed write is settled on the committer thread before the next round
//! and reported to its session in order with the deliveries before it.
//! Nothing of a failed write or sync is acknowledged, and the journal is cut
//! back to its last durable record. A full disk (`ENOSPC`, `EDQUOT`) pauses
//! the session: its frames not yet durable are dropped on the server (the
//! phone keeps them), the phone's connection is closed with `storage_full`,
//! and the journal takes frames again when the phone resumes. Any other
//! failure closes the journal for good. The filesystem becoming full is
//! logged once per episode (and once when it has room again), counted in
//! `storage_full_episodes`; each refused write in `storage_full`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use sharecast_formats::media::MediaFrame;
use tokio::sync::{mpsc, oneshot};

use crate::journal::{is_storage_full, JournalWriter};
use crate::lock;
use crate::metrics::IngestMetrics;
use crate::session::Session;

/// How a commit round is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalSync {
    /// One `syncfs` of the journals' filesystem per round (Linux; elsewhere
    /// the same as `file`).
    Filesystem,
    /// One `fdatasync` per journal file per round.
    File,
}

struct Queue {
    ready: Vec<Arc<JournalSlot>>,
    shutdown: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The committer thread's handle; dropping it lets the thread finish the
/// frames it was given and stop.
pub(crate) struct Committer {
    inner: Arc<Inner>,
}

/// Settings of the committer.
#[derive(Debug, Clone)]
pub(crate) struct CommitterConfig {
    /// A directory on the journals' filesystem (for `syncfs`).
    pub(crate) dir: PathBuf,
    pub(crate) sync: JournalSync,
    /// Rounds start at most this often.
    pub(crate) min_interval: Duration,
    /// Most frames of one session written by one round.
    pub(crate) batch_frames: usize,
}

impl Committer {
    /// Start the committer thread.
    pub(crate) fn start(cfg: CommitterConfig, metrics: Arc<IngestMetrics>) -> Result<Committer> {
        std::fs::create_dir_all(&cfg.dir)
            .with_context(|| format!("creating {}", cfg.dir.display()))?;
        let dir = File::open(&cfg.dir)
            .with_context(|| format!("opening {} for syncfs", cfg.dir.display()))?;
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                ready: Vec::new(),
                shutdown: false,
            }),
            wake: Condvar::new(),
        });
        let thread_inner = inner.clone();
        let deliver_to = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Written>>();
            let metrics = metrics.clone();
            rt.spawn(async move {
                while let Some(round) = rx.recv().await {
                    deliver_round(&metrics, round);
                }
            });
            tx
        });
        std::thread::Builder::new()
            .name("journal-commit".into())
            .spawn(move || run(thread_inner, cfg, dir, metrics, deliver_to))
            .context("starting the journal committer thread")?;
        Ok(Committer { inner })
    }

    /// A slot for one session's journal.
    pub(crate) fn slot(&self, writer: JournalWriter, session: Weak<Session>) -> Arc<JournalSlot> {
        Arc::new(JournalSlot {
            committer: self.inner.clone(),
            pending: Mutex::new(Pending {
                frames: Vec::new(),
                end: None,
                queued: false,
                closed: None,
            }),
            writer: Mutex::new(Some(writer)),
            session,
        })
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        lock(&self.inner.queue).shutdown = true;
        self.inner.wake.notify_all();
    }
}

/// Why a slot takes no more frames once END was asked for.
const ENDED: &str = "session has ended";

struct Pending {
    frames: Vec<MediaFrame>,
    end: Option<oneshot::Sender<Result<()>>>,
    /// In the committer's ready list (or being written by a round).
    queued: bool,
    /// Set once END was asked for or the journal failed: no more frames.
    closed: Option<String>,
}

/// One session's journal as the committer sees it.
pub(crate) struct JournalSlot {
    committer: Arc<Inner>,
    pending: Mutex<Pending>,
    /// Only the committer thread writes; the lock makes the slot `Sync`.
    writer: Mutex<Option<JournalWriter>>,
    session: Weak<Session>,
}

impl JournalSlot {
    fn enqueue(self: &Arc<Self>, p: &mut Pending) {
        if p.queued {
            return;
        }
        p.queued = true;
        let mut q = lock(&self.committer.queue);
        q.ready.push(self.clone());
        let was_idle = q.ready.len() == 1;
        drop(q);
        if was_idle {
            self.committer.wake.notify_one();
        }
    }

    /// Queue a frame for the next round.
    pub(crate) fn push(self: &Arc<Self>, frame: MediaFrame) -> Result<(), String> {
        let mut p = lock(&self.pending);
        if let Some(why) = &p.closed {
            return Err(why.clone());
        }
        p.frames.push(frame);
        self.enqueue(&mut p);
        Ok(())
    }

    /// Make every queued frame durable, then write the END record; the
    /// receiver answers once END is durable too.
    pub(crate) fn end(self: &Arc<Self>) -> oneshot::Receiver<Result<()>> {
        let (tx, rx) = oneshot::channel();
        let mut p = lock(&self.pending);
        if let Some(why) = &p.closed {
            let _ = tx.send(Err(anyhow!("journal closed: {why}")));
            return rx;
        }
        p.closed = Some(ENDED.into());
        p.end = Some(tx);
        self.enqueue(&mut p);
        rx
    }
}

/// What a round did with one slot.
struct Written {
    slot: Arc<JournalSlot>,
    frames: Vec<MediaFrame>,
    end: Option<oneshot::Sender<Result<()>>>,
    result: Result<()>,
    /// The disk was full: the journal was rolled back and stays open;
    /// `frames` and `dropped` are forgotten (never acknowledged).
    full: bool,
    /// Frames that were waiting for a later round when the write failed:
    /// dropped with the failed ones.
    dropped: Vec<MediaFrame>,
}

/// A full disk, from its first refused write to the first round that
/// writes again at least [`Episode::quiet`] after the last refused one (a
/// disk that is nearly full lets small writes through now and then: that
/// is the same episode): logged once at each end.
struct Episode {
    since: Option<Instant>,
    last_refused: Option<Instant>,
    refused: u64,
    quiet: Duration,
}

impl Default for Episode {
    fn default() -> Self {
        Episode {
            since: None,
            last_refused: None,
            refused: 0,
            quiet: Duration::from_secs(5),
        }
    }
}

impl Episode {
    /// Counts and logs a round's outcome: `refused` writes refused for lack
    /// of space, `wrote` successful ones.
    fn note(&mut self, metrics: &IngestMetrics, refused: u64, wrote: bool) {
        if refused > 0 {
            metrics.storage_full.inc_by(refused);
            self.refused += refused;
            self.last_refused = Some(Instant::now());
            if self.since.is_none() {
                self.since = Some(Instant::now());
                metrics.storage_full_episodes.inc();
                tracing::error!(
                    "the journals' filesystem is full: sessions are told storage_full and keep their frames until it has room (logged once until then)"
                );
            }
        } else if wrote && self.last_refused.is_some_and(|t| t.elapsed() >= self.quiet) {
            if let Some(since) = self.since.take() {
                tracing::info!(
                    full_secs = since.elapsed().as_secs(),
                    refused_writes = std::mem::take(&mut self.refused),
                    "the journals' filesystem has room again"
                );
            }
        }
    }
}

fn run(
    inner: Arc<Inner>,
    cfg: CommitterConfig,
    dir: File,
    metrics: Arc<IngestMetrics>,
    deliver_to: Option<mpsc::UnboundedSender<Vec<Written>>>,
) {
    let mut last_round: Option<Instant> = None;
    let mut episode = Episode::default();
    loop {
        {
            let mut q = lock(&inner.queue);
            while q.ready.is_empty() && !q.shutdown {
                q = inner.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.ready.is_empty() {
                return;
            }
        }
        if let Some(t) = last_round {
            let since = t.elapsed();
            if since < cfg.min_interval {
                std::thread::sleep(cfg.min_interval - since);
            }
        }
        last_round = Some(Instant::now());
        let ready = std::mem::take(&mut lock(&inner.queue).ready);
        let written = round(&cfg, &dir, &metrics, &mut episode, ready);
        if written.is_empty() {
            continue;
        }
        // Into the runtime in one message; if it is gone (shutting down),
        // deliver here.
        match &deliver_to {
            Some(tx) => {
                if let Err(mpsc::error::SendError(written)) = tx.send(written) {
                    deliver_round(&metrics, written);
                }
            }
            None => deliver_round(&metrics, written),
        }
    }
}

/// Write and sync one round; the results, failures already settled, for
/// [`deliver_round`].
fn round(
    cfg: &CommitterConfig,
    dir: &File,
    metrics: &IngestMetrics,
    episode: &mut Episode,
    ready: Vec<Arc<JournalSlot>>,
) -> Vec<Written> {
    let started = Instant::now();
    let mut written = Vec::with_capacity(ready.len());
    for slot in ready {
        let (frames, end) = {
            let mut p = lock(&slot.pending);
            let frames = if p.frames.len() > cfg.batch_frames {
                let rest = p.frames.split_off(cfg.batch_frames);
                std::mem::replace(&mut p.frames, rest)
            } else {
                std::mem::take(&mut p.frames)
            };
            // END goes only after every frame queued before it.
            let end = if p.frames.is_empty() {
                p.end.take()
            } else {
                None
            };
            p.queued = false;
            if !p.frames.is_empty() || p.end.is_some() {
                slot.enqueue(&mut p);
            }
            (frames, end)
        };
        if frames.is_empty() && end.is_none() {
            continue;
        }
        let result = {
            let mut w = lock(&slot.writer);
            match w.as_mut() {
                None => Err(anyhow!("journal writer is closed after an earlier failure")),
                Some(w) => w.write_frames(&frames).and_then(|()| {
                    if end.is_some() {
                        w.write_end(crate::unix_now_ms())
                    } else {
                        Ok(())
                    }
                }),
            }
        };
        written.push(Written {
            slot,
            frames,
            end,
            result,
            full: false,
            dropped: Vec::new(),
        });
    }
    sync_round(cfg.sync, dir, &mut written);
    metrics.journal_round(started.elapsed().as_micros() as u64);
    let mut refused = 0;
    for w in written.iter_mut() {
        if let Err(e) = &w.result {
            let msg = format!("journal write failed: {e:#}");
            if is_storage_full(e) && roll_back(&w.slot) {
                w.full = true;
                w.dropped = settle_full(&w.slot, &msg);
                refused += 1;
            } else {
                settle_failure(&w.slot, &msg);
            }
        }
    }
    episode.note(metrics, refused, written.iter().any(|w| w.result.is_ok()));
    written
}

/// Cut a slot's journal back to its last durable record; whether it can
/// take frames again.
fn roll_back(slot: &JournalSlot) -> bool {
    let mut w = lock(&slot.writer);
    let Some(writer) = w.as_mut() else {
        return false;
    };
    match writer.roll_back() {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not roll back a journal after a failed write");
            false
        }
    }
}

/// Pause a slot whose write failed for lack of space, before the next
/// round: the frames still waiting are dropped (returned, so the session
/// forgets them too) and an END waiting is refused; the journal stays open
/// for the frames the phone resends when it resumes.
fn settle_full(slot: &JournalSlot, msg: &str) -> Vec<MediaFrame> {
    let mut p = lock(&slot.pending);
    if let Some(tx) = p.end.take() {
        let _ = tx.send(Err(anyhow!("{msg}")));
    }
    if p.closed.as_deref() == Some(ENDED) {
        // END was refused: the phone asks again after it resumes.
        p.closed = None;
    }
    std::mem::take(&mut p.frames)
}

/// Close a slot whose write failed, before the next round: the writer is
/// dropped and no more frames are taken. Nothing of the failed write is
/// acknowledged; the phone keeps the frames and resends them after it
/// resumes on a healthy server.
fn settle_failure(slot: &JournalSlot, msg: &str) {
    *lock(&slot.writer) = None;
    let mut p = lock(&slot.pending);
    p.closed.get_or_insert_with(|| msg.to_string());
    p.frames.clear();
    if let Some(tx) = p.end.take() {
        let _ = tx.send(Err(anyhow!("{msg}")));
    }
}

/// Release a round's durable frames to their sessions (and report failed
/// writes), in the order the round wrote them.
fn deliver_round(metrics: &IngestMetrics, written: Vec<Written>) {
    for w in written {
        let slot = w.slot.clone();
        // One session's outputs must not take the committer (and with it
        // every other session) down: a panic fails that session only.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| deliver(metrics, w))).is_err() {
            if let Some(s) = slot.session.upgrade() {
                s.journal_failed("internal error while releasing durable frames");
            }
        }
    }
}

/// Make every successfully written file of the round durable, turning each
/// `result` into the file's durability.
fn sync_round(sync: JournalSync, dir: &File, written: &mut [Written]) {
    if sync == JournalSync::Filesystem && written.iter().any(|w| w.result.is_ok()) {
        match syncfs(dir) {
            Ok(true) => {
                for w in written.iter_mut().filter(|w| w.result.is_ok()) {
                    w.result = match lock(&w.slot.writer).as_mut() {
                        Some(writer) => writer.synced(),
                        None => Err(anyhow!("journal writer is closed")),
                    };
                }
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "syncfs of the journals failed; syncing each journal on its own");
            }
        }
    }
    for w in written.iter_mut().filter(|w| w.result.is_ok()) {
        let mut guard = lock(&w.slot.writer);
        w.result = match guard.as_mut() {
            Some(writer) => writer.sync_data(),
            None => Err(anyhow!("journal writer is closed")),
        };
    }
}

/// `syncfs` on the journals' filesystem. `Ok(false)` where it does not exist.
#[cfg(target_os = "linux")]
fn syncfs(dir: &File) -> Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the life of `dir`; syncfs takes no
    // pointers.
    let r = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if r == 0 {
        Ok(true)
    } else {
        Err(std::io::Error::last_os_error()).context("syncfs")
    }
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_dir: &File) -> Result<bool> {
    Ok(false)
}

fn deliver(metrics: &IngestMetrics, w: Written) {
    let Written {
        slot,
        frames,
        end,
        result,
        full,
        dropped,
    } = w;
    match result {
        Ok(()) => {
            metrics.journal_frames.inc_by(frames.len() as u64);
            if let Some(s) = slot.session.upgrade() {
                if !frames.is_empty() {
                    s.on_durable(frames);
                }
            }
            if let Some(tx) = end {
                let _ = tx.send(Ok(()));
            }
        }
        Err(e) => {
            // Already settled on the committer thread; tell the session.
            let msg = format!("journal write failed: {e:#}");
            if let Some(tx) = end {
                let _ = tx.send(Err(anyhow!("{msg}")));
            }
            if let Some(s) = slot.session.upgrade() {
                if full {
                    s.storage_full(frames.iter().chain(&dropped), &msg);
                } else {
                    s.journal_failed(&msg);
                }
            }
        }
    }
}

/// The directory whose filesystem holds the session journals.
pub(crate) fn journals_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sessions")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::recover;
    use crate::journal::tests::{frame, meta};

    fn seqs(frames: &[MediaFrame]) -> Vec<u64> {
        frames.iter().map(|f| f.seq).collect()
    }

    /// A committer without its thread (the test runs the rounds) and its
    /// settings, on `tmp`.
    fn committer(
        tmp: &Path,
        sync: JournalSync,
        batch_frames: usize,
    ) -> (Committer, CommitterConfig) {
        let c = Committer {
            inner: Arc::new(Inner {
                queue: Mutex::new(Queue {
                    ready: Vec::new(),
                    shutdown: false,
                }),
                wake: Condvar::new(),
            }),
        };
        let cfg = CommitterConfig {
            dir: tmp.to_path_buf(),
            sync,
            min_interval: Duration::ZERO,
            batch_frames,
        };
        (c, cfg)
    }

    #[test]
    fn a_full_disk_acknowledges_nothing_of_the_round_and_the_journal_goes_on() {
        let tmp = tempfile::tempdir().unwrap();
        let session_dir = tmp.path().join("s1");
        let writer = JournalWriter::create(&session_dir, &meta()).unwrap();
        let (c, cfg) = committer(tmp.path(), JournalSync::Filesystem, 2);
        let dir = File::open(tmp.path()).unwrap();
        let metrics = IngestMetrics::default();
        let mut episode = Episode {
            quiet: Duration::ZERO,
            ..Episode::default()
        };
        let slot = c.slot(writer, Weak::new());
        let mut run_round = || {
            let ready = std::mem::take(&mut lock(&c.inner.queue).ready);
            round(&cfg, &dir, &metrics, &mut episode, ready)
        };

        for seq in 0..2 {
            slot.push(frame(seq)).unwrap();
        }
        let w = run_round();
        assert!(w[0].result.is_ok());
        assert_eq!(seqs(&w[0].frames), [0, 1]);

        // The disk fills during the next write: frames 2 and 3 are written
        // half-way; frame 4 waits for a later round.
        lock(&slot.writer)
            .as_mut()
            .unwrap()
            .fail_next_write(libc::ENOSPC);
        for seq in 2..5 {
            slot.push(frame(seq)).unwrap();
        }
        let w = run_round();
        assert_eq!(w.len(), 1);
        let failed = &w[0];
        assert!(failed.full, "a full disk pauses the session");
        assert!(failed.result.is_err(), "nothing of the round is durable");
        assert_eq!(seqs(&failed.frames), [2, 3]);
        assert_eq!(seqs(&failed.dropped), [4], "waiting frames are dropped too");
        assert_eq!(metrics.storage_full.get(), 1);
        assert_eq!(metrics.storage_full_episodes.get(), 1);
        // The journal holds exactly the acknowledged frames.
        let journal = session_dir.join("journal");
        assert_eq!(
            seqs(&crate::journal::read(&journal).unwrap().frames),
            [0, 1]
        );
        assert!(run_round().is_empty(), "nothing left waiting");

        // The phone resends after it resumes: the journal takes them.
        for seq in 2..5 {
            slot.push(frame(seq)).unwrap();
        }
        let mut durable = Vec::new();
        while durable.len() < 3 {
            let w = run_round();
            assert!(w.iter().all(|w| w.result.is_ok() && !w.full));
            durable.extend(w.into_iter().flat_map(|w| w.frames));
        }
        assert_eq!(seqs(&durable), [2, 3, 4]);
        assert_eq!(metrics.storage_full_episodes.get(), 1);

        // A second episode is counted as one more.
        lock(&slot.writer)
            .as_mut()
            .unwrap()
            .fail_next_write(libc::ENOSPC);
        slot.push(frame(5)).unwrap();
        assert!(run_round()[0].full);
        assert_eq!(metrics.storage_full_episodes.get(), 2);

        let r = recover(&journal).unwrap();
        assert_eq!(seqs(&r.frames), [0, 1, 2, 3, 4]);
        assert_eq!(r.truncated_bytes, 0, "the torn write was cut at once");
    }

    #[test]
    fn any_other_write_error_closes_the_journal() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::create(&tmp.path().join("s2"), &meta()).unwrap();
        writer.fail_next_write(libc::EIO);
        let (c, cfg) = committer(tmp.path(), JournalSync::File, 8);
        let dir = File::open(tmp.path()).unwrap();
        let metrics = IngestMetrics::default();
        let slot = c.slot(writer, Weak::new());
        slot.push(frame(0)).unwrap();
        let ready = std::mem::take(&mut lock(&c.inner.queue).ready);
        let w = round(&cfg, &dir, &metrics, &mut Episode::default(), ready);
        assert!(w[0].result.is_err() && !w[0].full);
        assert!(slot.push(frame(1)).is_err(), "the journal is closed");
        assert_eq!(metrics.storage_full.get(), 0);
    }
}
