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
//! (the writer closed, no more frames taken), and reported to its session in
//! order with the deliveries before it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use sharecast_formats::media::MediaFrame;
use tokio::sync::{mpsc, oneshot};

use crate::journal::JournalWriter;
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
        p.closed = Some("session has ended".into());
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
}

fn run(
    inner: Arc<Inner>,
    cfg: CommitterConfig,
    dir: File,
    metrics: Arc<IngestMetrics>,
    deliver_to: Option<mpsc::UnboundedSender<Vec<Written>>>,
) {
    let mut last_round: Option<Instant> = None;
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
        let written = round(&cfg, &dir, &metrics, ready);
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
        });
    }
    sync_round(cfg.sync, dir, &mut written);
    metrics.journal_round(started.elapsed().as_micros() as u64);
    for w in written.iter_mut() {
        if let Err(e) = &w.result {
            settle_failure(&w.slot, &format!("journal write failed: {e:#}"));
        }
    }
    written
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
            Ok(true) => return,
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
            // Already settled by `settle_failure`; tell the session.
            let msg = format!("journal write failed: {e:#}");
            if let Some(tx) = end {
                let _ = tx.send(Err(anyhow!("{msg}")));
            }
            if let Some(s) = slot.session.upgrade() {
                s.journal_failed(&msg);
            }
        }
    }
}

/// The directory whose filesystem holds the session journals.
pub(crate) fn journals_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("sessions")
}
