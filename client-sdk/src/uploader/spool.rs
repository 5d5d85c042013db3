//! The on-device spool: every frame is appended to a checksummed file
//! before it is sent, and stays there until the server acknowledges it as
//! durable, so that an app killed, crashed or rebooted mid-recording can
//! finish the upload at its next start ([`recover`], used by
//! `Uploader::resume_pending`).
//!
//! # Layout
//!
//! ```text
//! <dir>/                      0700, given by the app
//!   <session id>/             0700, one per unfinished recording
//!     meta.json               0600: session id, resume secret, tracks, anchor, title
//!     lock                    flock()ed while a process owns the session
//!     00000001.seg            0600: segments of records, numbered from 1
//!     00000002.seg
//! ```
//!
//! A segment starts with a 16-byte header (`SCSPOOL` + NUL, version u32,
//! segment number u32) followed by records: `len` u32, `crc32c` u32 of the
//! body, then the body of `len` bytes (integers big-endian). A body is a
//! frame (`0x01`, then track u8, flags u8 — bit 0 keyframe —, seq u64,
//! pts i64, dts i64, duration u32, data) or the per-track frame counts at
//! the start of a segment (`0x02`, then n u8 and n × (track u8, count u64)),
//! so that the counts survive the release of older segments.
//!
//! A segment is deleted once every frame in it is acknowledged and a newer
//! one is being written; the session's folder once the server has sent
//! FINISHED.
//!
//! # Limits and durability
//!
//! The segments' total size is bounded by `max_bytes`: an append that would
//! pass it is refused ([`SpoolError::Full`]) and nothing already in the
//! spool is dropped. Appends are `write`s to the file (they survive the
//! process being killed at once); the data is synced to storage at most
//! every `sync_interval` (on the appending thread), so a power loss or
//! reboot can lose the frames of the last `sync_interval` that the server
//! had not yet acknowledged. A torn record at the end of the newest segment
//! (a write cut by the kill) is cut off at recovery; a record that fails its
//! checksum elsewhere ends the reading of its segment, and the frames after
//! it are reported lost.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sharecast_formats::media::{MediaFrame, TrackInfo};

use super::state::SpoolRef;

/// Spool settings (see `docs/client-sdk.md` for the defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolConfig {
    /// The folder the app gives (created if missing, 0700).
    pub dir: PathBuf,
    /// Most bytes of segment files per session. Default 256 MiB.
    pub max_bytes: u64,
    /// Most bytes of a segment before a new one is started. Default 4 MiB
    /// (at most an eighth of `max_bytes`).
    pub segment_bytes: u64,
    /// Longest time between two syncs of appended frames to storage
    /// (zero: sync every frame). Default 100 ms.
    pub sync_interval: Duration,
}

/// Default [`SpoolConfig::max_bytes`]: 256 MiB.
pub const DEFAULT_MAX_SPOOL_BYTES: u64 = 256 * 1024 * 1024;
/// Default [`SpoolConfig::segment_bytes`]: 4 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
/// Default [`SpoolConfig::sync_interval`]: 100 ms.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(100);

impl SpoolConfig {
    /// Defaults for everything but the folder.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_SPOOL_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            sync_interval: DEFAULT_SYNC_INTERVAL,
        }
    }

    fn segment_limit(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes / 8).max(64 * 1024)
    }
}

/// Why the spool failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `max_bytes`: the frame was not accepted.
    #[error("spool full: {used} of {max} bytes hold frames the server has not acknowledged; the frame of {frame} bytes was refused")]
    Full {
        /// Bytes in the spool.
        used: u64,
        /// The bound.
        max: u64,
        /// Size of the refused frame.
        frame: usize,
    },
    /// A file operation failed.
    #[error("spool {path}: {message}")]
    Io {
        /// The file or folder.
        path: String,
        /// What failed.
        message: String,
    },
    /// A record read back does not match its checksum or layout.
    #[error("spool {path} at byte {offset}: {message}")]
    Corrupt {
        /// The segment.
        path: String,
        /// Offset of the record.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// Another process (or uploader) owns this session's spool.
    #[error("spool session {0} is in use by another uploader")]
    Busy(String),
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> SpoolError {
    SpoolError::Io {
        path: path.display().to_string(),
        message: format!("{what}: {e}"),
    }
}

/// What a spooled session needs to be resumed by a new process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Layout version (1).
    pub version: u32,
    /// Session id from WELCOME.
    pub session_id: String,
    /// Resume secret from WELCOME.
    pub resume_secret: String,
    /// The tracks as sent in HELLO.
    pub tracks: Vec<TrackInfo>,
    /// Capture time 0 in Unix microseconds, as sent in HELLO.
    pub anchor_unix_us: i64,
    /// Title, if any.
    #[serde(default)]
    pub title: Option<String>,
    /// Live URLs from WELCOME.
    #[serde(default)]
    pub live_urls: Vec<String>,
}

const MAGIC: &[u8; 8] = b"SCSPOOL\0";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 16;
const RECORD_HEAD: usize = 8;
const FRAME_FIXED: usize = 1 + 1 + 1 + 8 + 8 + 8 + 4;
const TYPE_FRAME: u8 = 0x01;
const TYPE_COUNTS: u8 = 0x02;
/// Largest record body read back (a corrupt length is not allocated).
const MAX_RECORD: u32 = 64 * 1024 * 1024;
const META: &str = "meta.json";
const LOCK: &str = "lock";

fn segment_name(n: u32) -> String {
    format!("{n:08}.seg")
}

fn parse_segment_name(name: &str) -> Option<u32> {
    name.strip_suffix(".seg")
        .filter(|s| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
}

fn create_dir(path: &Path) -> Result<(), SpoolError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(path)
        .map_err(|e| io_err(path, "creating the folder", e))
}

fn open_private(path: &Path, create_new: bool) -> Result<File, SpoolError> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| io_err(path, "opening", e))
}

/// Make a folder's new entries durable.
fn sync_dir(path: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        File::open(path)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(path, "syncing the folder", e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Take the session's lock: held until the file is closed (also when the
/// process dies), so a session still owned by a live uploader is never
/// resumed twice.
fn lock(dir: &Path, session: &str) -> Result<File, SpoolError> {
    let path = dir.join(LOCK);
    let f = open_private(&path, false)?;
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(SpoolError::Busy(session.to_string()));
            }
            return Err(io_err(&path, "locking", e));
        }
    }
    Ok(f)
}

fn crc(body: &[u8]) -> u32 {
    crc32c::crc32c(body)
}

fn frame_body(f: &MediaFrame) -> Vec<u8> {
    let mut b = Vec::with_capacity(FRAME_FIXED + f.data.len());
    b.push(TYPE_FRAME);
    b.push(f.track);
    b.push(u8::from(f.keyframe));
    b.extend_from_slice(&f.seq.to_be_bytes());
    b.extend_from_slice(&f.pts_us.to_be_bytes());
    b.extend_from_slice(&f.dts_us.to_be_bytes());
    b.extend_from_slice(&f.duration_us.to_be_bytes());
    b.extend_from_slice(&f.data);
    b
}

fn counts_body(counts: &BTreeMap<u8, u64>) -> Vec<u8> {
    let mut b = vec![TYPE_COUNTS, counts.len().min(255) as u8];
    for (t, n) in counts.iter().take(255) {
        b.push(*t);
        b.extend_from_slice(&n.to_be_bytes());
    }
    b
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// A record body read back.
enum Body {
    Frame(MediaFrame),
    Counts(BTreeMap<u8, u64>),
}

fn parse_body(b: &[u8]) -> Result<Body, String> {
    match b.first() {
        Some(&TYPE_FRAME) => {
            if b.len() < FRAME_FIXED {
                return Err(format!("frame record of {} bytes", b.len()));
            }
            if b[2] & !1 != 0 {
                return Err(format!("frame flags {:#04x}", b[2]));
            }
            let mut dur = [0u8; 4];
            dur.copy_from_slice(&b[27..31]);
            Ok(Body::Frame(MediaFrame {
                track: b[1],
                keyframe: b[2] & 1 == 1,
                seq: be_u64(b, 3),
                pts_us: be_u64(b, 11) as i64,
                dts_us: be_u64(b, 19) as i64,
                duration_us: u32::from_be_bytes(dur),
                data: Bytes::copy_from_slice(&b[FRAME_FIXED..]),
            }))
        }
        Some(&TYPE_COUNTS) => {
            let n = usize::from(*b.get(1).ok_or("counts record without a count")?);
            if b.len() != 2 + n * 9 {
                return Err(format!("counts record of {} bytes for {n} tracks", b.len()));
            }
            Ok(Body::Counts(
                (0..n)
                    .map(|i| (b[2 + i * 9], be_u64(b, 3 + i * 9)))
                    .collect(),
            ))
        }
        Some(t) => Err(format!("record type {t:#04x}")),
        None => Err("empty record".into()),
    }
}

/// Read one record at `offset`: `Ok(None)` at a clean end of file.
fn read_record(file: &mut File, offset: u64) -> Result<Option<(Body, u64)>, String> {
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| format!("seek: {e}"))?;
    let mut head = [0u8; RECORD_HEAD];
    let mut got = 0;
    while got < RECORD_HEAD {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if got == 0 {
        return Ok(None);
    }
    if got < RECORD_HEAD {
        return Err(format!("torn record header ({got} of 8 bytes)"));
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let sum = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len > MAX_RECORD {
        return Err(format!("record length {len}"));
    }
    let mut body = vec![0u8; len as usize];
    file.read_exact(&mut body)
        .map_err(|e| format!("record of {len} bytes cut short ({e})"))?;
    if crc(&body) != sum {
        return Err("checksum mismatch".into());
    }
    let parsed = parse_body(&body)?;
    Ok(Some((parsed, offset + RECORD_HEAD as u64 + u64::from(len))))
}

struct SegmentInfo {
    bytes: u64,
    /// Frames in it not yet acknowledged.
    live_frames: u64,
}

/// One session's spool, owned by one uploader.
pub struct Spool {
    cfg: SpoolConfig,
    dir: PathBuf,
    session_id: String,
    _lock: File,
    /// The segment being written: number, file, length.
    active: Option<(u32, File, u64)>,
    segments: BTreeMap<u32, SegmentInfo>,
    total_bytes: u64,
    reader: Option<(u32, File)>,
    last_sync: Option<Instant>,
    unsynced: bool,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("bytes", &self.total_bytes)
            .finish()
    }
}

impl Spool {
    /// Start the spool of a new session: its folder, `meta.json` and lock.
    pub fn create(cfg: SpoolConfig, meta: &SessionMeta) -> Result<Spool, SpoolError> {
        create_dir(&cfg.dir)?;
        let dir = cfg.dir.join(&meta.session_id);
        create_dir(&dir)?;
        let lock = lock(&dir, &meta.session_id)?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| SpoolError::Io {
            path: dir.join(META).display().to_string(),
            message: format!("encoding: {e}"),
        })?;
        let tmp = dir.join("meta.json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = open_private(&tmp, true)?;
        f.write_all(&json)
            .and_then(|_| f.sync_all())
            .map_err(|e| io_err(&tmp, "writing", e))?;
        std::fs::rename(&tmp, dir.join(META)).map_err(|e| io_err(&tmp, "renaming", e))?;
        sync_dir(&dir)?;
        sync_dir(&cfg.dir)?;
        tracing::debug!(dir = %dir.display(), "spool created");
        Ok(Spool {
            cfg,
            dir,
            session_id: meta.session_id.clone(),
            _lock: lock,
            active: None,
            segments: BTreeMap::new(),
            total_bytes: 0,
            reader: None,
            last_sync: None,
            unsynced: false,
        })
    }

    /// The session's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of segment files.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The bound on [`Spool::bytes`].
    pub fn max_bytes(&self) -> u64 {
        self.cfg.max_bytes
    }

    fn new_segment(&mut self, counts: &BTreeMap<u8, u64>) -> Result<(), SpoolError> {
        let n = self
            .segments
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
            .saturating_add(1);
        // The previous segment is complete: make it durable before the new
        // one is named in the folder.
        if let Some((_, f, _)) = &self.active {
            f.sync_data()
                .map_err(|e| io_err(&self.dir, "syncing a segment", e))?;
        }
        let path = self.dir.join(segment_name(n));
        let mut f = open_private(&path, true)?;
        let mut head = Vec::with_capacity(HEADER_LEN as usize + 64);
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_be_bytes());
        head.extend_from_slice(&n.to_be_bytes());
        let body = counts_body(counts);
        head.extend_from_slice(&(body.len() as u32).to_be_bytes());
        head.extend_from_slice(&crc(&body).to_be_bytes());
        head.extend_from_slice(&body);
        if let Err(e) = f.write_all(&head) {
            let _ = std::fs::remove_file(&path);
            return Err(io_err(&path, "writing", e));
        }
        sync_dir(&self.dir)?;
        let len = head.len() as u64;
        self.total_bytes += len;
        self.segments.insert(
            n,
            SegmentInfo {
                bytes: len,
                live_frames: 0,
            },
        );
        self.active = Some((n, f, len));
        // Segments left behind fully acknowledged can go now.
        self.collect();
        Ok(())
    }

    /// Append a frame (its `seq` assigned) before it is sent. `counts` is
    /// the per-track frame count including this frame, written at the
    /// start of a new segment.
    pub fn append(
        &mut self,
        frame: &MediaFrame,
        counts: &BTreeMap<u8, u64>,
        now: Instant,
    ) -> Result<SpoolRef, SpoolError> {
        let body = frame_body(frame);
        let need = (RECORD_HEAD + body.len()) as u64;
        let limit = self.cfg.segment_limit();
        let rotate = match &self.active {
            None => true,
            Some((_, _, len)) => *len > HEADER_LEN && *len + need > limit,
        };
        // A new segment costs its header and counts too.
        let extra = if rotate { HEADER_LEN + 16 + 9 * 16 } else { 0 };
        if self.total_bytes + need + extra > self.cfg.max_bytes {
            return Err(SpoolError::Full {
                used: self.total_bytes,
                max: self.cfg.max_bytes,
                frame: frame.data.len(),
            });
        }
        if rotate {
            self.new_segment(counts)?;
        }
        let Some((n, f, len)) = self.active.as_mut() else {
            return Err(SpoolError::Io {
                path: self.dir.display().to_string(),
                message: "no segment open".into(),
            });
        };
        let mut rec = Vec::with_capacity(RECORD_HEAD + body.len());
        rec.extend_from_slice(&(body.len() as u32).to_be_bytes());
        rec.extend_from_slice(&crc(&body).to_be_bytes());
        rec.extend_from_slice(&body);
        let offset = *len;
        if let Err(e) = f.write_all(&rec) {
            // Leave no partial record behind: later records must follow a
            // whole one.
            let _ = f.set_len(offset);
            let _ = f.seek(SeekFrom::Start(offset));
            return Err(io_err(
                &self.dir.join(segment_name(*n)),
                "appending a frame",
                e,
            ));
        }
        *len += need;
        let seg = *n;
        self.total_bytes += need;
        if let Some(s) = self.segments.get_mut(&seg) {
            s.bytes += need;
            s.live_frames += 1;
        }
        self.unsynced = true;
        let due = self
            .last_sync
            .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.sync_interval);
        if due {
            self.sync(now)?;
        }
        Ok(SpoolRef {
            segment: seg,
            offset,
        })
    }

    /// Sync appended frames to storage now.
    pub fn sync(&mut self, now: Instant) -> Result<(), SpoolError> {
        if self.unsynced {
            if let Some((n, f, _)) = &self.active {
                f.sync_data()
                    .map_err(|e| io_err(&self.dir.join(segment_name(*n)), "syncing", e))?;
            }
            self.unsynced = false;
        }
        self.last_sync = Some(now);
        Ok(())
    }

    /// Read a spooled frame back (to send it).
    pub fn read(&mut self, at: SpoolRef) -> Result<MediaFrame, SpoolError> {
        let path = self.dir.join(segment_name(at.segment));
        if self.reader.as_ref().map(|(n, _)| *n) != Some(at.segment) {
            let f = File::open(&path).map_err(|e| io_err(&path, "opening", e))?;
            self.reader = Some((at.segment, f));
        }
        let Some((_, f)) = self.reader.as_mut() else {
            return Err(io_err(&path, "opening", std::io::Error::other("no reader")));
        };
        match read_record(f, at.offset) {
            Ok(Some((Body::Frame(fr), _))) => Ok(fr),
            Ok(Some((Body::Counts(_), _))) | Ok(None) => Err(SpoolError::Corrupt {
                path: path.display().to_string(),
                offset: at.offset,
                message: "no frame record there".into(),
            }),
            Err(message) => Err(SpoolError::Corrupt {
                path: path.display().to_string(),
                offset: at.offset,
                message,
            }),
        }
    }

    /// Frames acknowledged by the server, per segment: segments with no
    /// frame left (other than the one being written) are deleted.
    pub fn release(&mut self, released: &BTreeMap<u32, u64>) {
        for (seg, n) in released {
            if let Some(s) = self.segments.get_mut(seg) {
                s.live_frames = s.live_frames.saturating_sub(*n);
            }
        }
        self.collect();
    }

    fn collect(&mut self) {
        let active = self.active.as_ref().map(|(n, _, _)| *n);
        let newest = self.segments.keys().next_back().copied();
        let done: Vec<u32> = self
            .segments
            .iter()
            .filter(|(n, s)| s.live_frames == 0 && Some(**n) != active && Some(**n) != newest)
            .map(|(n, _)| *n)
            .collect();
        for n in done {
            let path = self.dir.join(segment_name(n));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not delete an acknowledged spool segment");
                    continue;
                }
            }
            if self.reader.as_ref().map(|(r, _)| *r) == Some(n) {
                self.reader = None;
            }
            if let Some(s) = self.segments.remove(&n) {
                self.total_bytes -= s.bytes;
            }
        }
    }

    /// The server has sent FINISHED: delete the session's folder.
    pub fn finish(self) -> Result<(), SpoolError> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, "removing", e))?;
        tracing::debug!(dir = %dir.display(), "spool removed");
        Ok(())
    }

    /// The session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
}

/// A frame found in the spool at recovery (without its bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct SpooledFrame {
    /// The frame, `data` empty.
    pub frame: MediaFrame,
    /// Its data length.
    pub len: usize,
    /// Where it is.
    pub at: SpoolRef,
}

/// An unfinished session found in the spool folder.
#[derive(Debug)]
pub struct Recovered {
    /// What resuming needs.
    pub meta: SessionMeta,
    /// Its spool, locked by this process.
    pub spool: Spool,
    /// Every intact frame, in the order it was queued.
    pub frames: Vec<SpooledFrame>,
    /// Per track, how many frames the app had queued (at least).
    pub counts: BTreeMap<u8, u64>,
    /// What was wrong with the files (cut torn tails, corrupt records).
    pub issues: Vec<String>,
}

/// A session folder that could not be recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct Unrecoverable {
    /// The folder.
    pub dir: PathBuf,
    /// Why.
    pub error: SpoolError,
}

/// Find the unfinished sessions under `cfg.dir` (a missing folder has
/// none). Sessions locked by a live uploader are skipped; folders without a
/// readable `meta.json` are reported, not deleted.
pub fn recover(cfg: &SpoolConfig) -> (Vec<Recovered>, Vec<Unrecoverable>) {
    let mut found = Vec::new();
    let mut failed = Vec::new();
    let entries = match std::fs::read_dir(&cfg.dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (found, failed),
        Err(e) => {
            failed.push(Unrecoverable {
                dir: cfg.dir.clone(),
                error: io_err(&cfg.dir, "listing", e),
            });
            return (found, failed);
        }
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        match recover_one(cfg, &dir) {
            Ok(Some(r)) => found.push(r),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "spooled session not recoverable");
                failed.push(Unrecoverable { dir, error });
            }
        }
    }
    (found, failed)
}

fn recover_one(cfg: &SpoolConfig, dir: &Path) -> Result<Option<Recovered>, SpoolError> {
    let meta = read_meta(dir)?;
    let lock = match lock(dir, &meta.session_id) {
        Ok(l) => l,
        Err(SpoolError::Busy(s)) => {
            tracing::debug!(session = %s, "spooled session in use; not resumed");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut numbers: Vec<u32> = std::fs::read_dir(dir)
        .map_err(|e| io_err(dir, "listing", e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| parse_segment_name(&e.file_name().to_string_lossy()))
        .collect();
    numbers.sort_unstable();
    let mut scan = Scan::default();
    let mut segments = BTreeMap::new();
    let mut total = 0u64;
    let last = numbers.last().copied();
    for n in numbers {
        if let Some(info) = scan.segment(&dir.join(segment_name(n)), n, Some(n) == last)? {
            total += info.bytes;
            segments.insert(n, info);
        }
    }
    for i in &scan.issues {
        tracing::warn!(session = %meta.session_id, "spool recovery: {i}");
    }
    let spool = Spool {
        cfg: cfg.clone(),
        dir: dir.to_path_buf(),
        session_id: meta.session_id.clone(),
        _lock: lock,
        active: None,
        segments,
        total_bytes: total,
        reader: None,
        last_sync: None,
        unsynced: false,
    };
    Ok(Some(Recovered {
        meta,
        spool,
        frames: scan.frames,
        counts: scan.counts,
        issues: scan.issues,
    }))
}

/// A session folder's `meta.json`.
fn read_meta(dir: &Path) -> Result<SessionMeta, SpoolError> {
    let meta_path = dir.join(META);
    let text = match std::fs::read(&meta_path) {
        Ok(t) => t,
        Err(e) => return Err(io_err(&meta_path, "reading", e)),
    };
    serde_json::from_slice(&text).map_err(|e| SpoolError::Corrupt {
        path: meta_path.display().to_string(),
        offset: 0,
        message: e.to_string(),
    })
}

/// What recovery has found so far in a session's segments.
#[derive(Default)]
struct Scan {
    frames: Vec<SpooledFrame>,
    counts: BTreeMap<u8, u64>,
    issues: Vec<String>,
}

impl Scan {
    /// Read segment `n` at `path` record by record. A torn tail of the
    /// `last` segment (a write cut short) is cut off; elsewhere the frames
    /// after a bad record are lost. `None` when the header is bad.
    fn segment(
        &mut self,
        path: &Path,
        n: u32,
        last: bool,
    ) -> Result<Option<SegmentInfo>, SpoolError> {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, "opening", e))?;
        let mut head = [0u8; HEADER_LEN as usize];
        let header_ok = f.read_exact(&mut head).is_ok()
            && &head[..8] == MAGIC
            && head[8..12] == VERSION.to_be_bytes()
            && head[12..16] == n.to_be_bytes();
        if !header_ok {
            self.issues.push(format!(
                "{}: bad segment header; its frames are lost",
                path.display()
            ));
            return Ok(None);
        }
        let mut offset = HEADER_LEN;
        let mut live = 0u64;
        loop {
            match read_record(&mut f, offset) {
                Ok(None) => break,
                Ok(Some((body, next))) => {
                    if self.record(body, SpoolRef { segment: n, offset }) {
                        live += 1;
                    }
                    offset = next;
                }
                Err(why) => {
                    let size = f.metadata().map(|m| m.len()).unwrap_or(offset);
                    if last {
                        // A write cut short by the kill: cut it off.
                        self.issues.push(format!(
                            "{}: {why} at byte {offset}; the last {} bytes (a write cut short) were cut off",
                            path.display(),
                            size - offset
                        ));
                        f.set_len(offset)
                            .map_err(|e| io_err(path, "cutting a torn tail", e))?;
                    } else {
                        self.issues.push(format!(
                            "{}: {why} at byte {offset}; the frames in its last {} bytes are lost",
                            path.display(),
                            size - offset
                        ));
                    }
                    break;
                }
            }
        }
        let bytes = f.metadata().map(|m| m.len()).unwrap_or(offset);
        Ok(Some(SegmentInfo {
            bytes,
            live_frames: live,
        }))
    }

    /// Take one record found `at`: a frame (then `true`) or a track count.
    fn record(&mut self, body: Body, at: SpoolRef) -> bool {
        match body {
            Body::Frame(fr) => {
                self.count(fr.track, fr.seq + 1);
                let len = fr.data.len();
                self.frames.push(SpooledFrame {
                    frame: MediaFrame {
                        data: Bytes::new(),
                        ..fr
                    },
                    len,
                    at,
                });
                true
            }
            Body::Counts(k) => {
                for (t, v) in k {
                    self.count(t, v);
                }
                false
            }
        }
    }

    /// At least `n` frames were queued on `track`.
    fn count(&mut self, track: u8, n: u64) {
        let c = self.counts.entry(track).or_insert(0);
        *c = (*c).max(n);
    }
}

/// Delete a spooled session the app gives up on (for example one the server
/// no longer knows). Refused while an uploader owns it.
pub fn discard(cfg: &SpoolConfig, session_id: &str) -> Result<(), SpoolError> {
    if session_id.is_empty() || session_id.contains(['/', '\\']) || session_id.starts_with('.') {
        return Err(SpoolError::Io {
            path: session_id.to_string(),
            message: "not a session id".into(),
        });
    }
    let dir = cfg.dir.join(session_id);
    let lock = lock(&dir, session_id)?;
    drop(lock);
    std::fs::remove_dir_all(&dir).map_err(|e| io_err(&dir, "removing", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> SessionMeta {
        SessionMeta {
            version: 1,
            session_id: id.into(),
            resume_secret: "s3cret".into(),
            tracks: Vec::new(),
            anchor_unix_us: 1_700_000_000_000_000,
            title: Some("t".into()),
            live_urls: vec!["rtsp://h/live/x".into()],
        }
    }

    fn frame(track: u8, seq: u64, size: usize) -> MediaFrame {
        MediaFrame {
            track,
            seq,
            pts_us: seq as i64 * 33_333,
            dts_us: seq as i64 * 33_333,
            duration_us: 33_333,
            keyframe: seq % 30 == 0,
            data: Bytes::from(
                (0..size)
                    .map(|i| (i as u64 + seq) as u8)
                    .collect::<Vec<u8>>(),
            ),
        }
    }

    fn cfg(dir: &Path) -> SpoolConfig {
        SpoolConfig {
            max_bytes: 1024 * 1024,
            segment_bytes: 64 * 1024,
            ..SpoolConfig::new(dir)
        }
    }

    /// Append `n` frames of track 0 and return their places.
    fn fill(s: &mut Spool, n: u64, size: usize) -> Vec<SpoolRef> {
        let now = Instant::now();
        (0..n)
            .map(|i| {
                let counts = [(0u8, i + 1)].into();
                s.append(&frame(0, i, size), &counts, now).unwrap()
            })
            .collect()
    }

    fn recover_single(cfg: &SpoolConfig) -> Recovered {
        let (mut found, failed) = recover(cfg);
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(found.len(), 1);
        found.remove(0)
    }

    #[test]
    fn frames_read_back_and_survive_a_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let mut s = Spool::create(cfg.clone(), &meta("aa01")).unwrap();
        let refs = fill(&mut s, 40, 5000);
        assert!(s.segments.len() > 1, "several segments");
        assert_eq!(s.read(refs[17]).unwrap(), frame(0, 17, 5000));
        // While the uploader owns it, the session is not recovered.
        let (found, failed) = recover(&cfg);
        assert!(found.is_empty() && failed.is_empty());
        drop(s);
        let mut r = recover_single(&cfg);
        assert_eq!(r.meta, meta("aa01"));
        assert!(r.issues.is_empty(), "{:?}", r.issues);
        assert_eq!(r.frames.len(), 40);
        assert_eq!(r.counts, [(0u8, 40u64)].into());
        for (i, f) in r.frames.iter().enumerate() {
            assert_eq!(f.frame.seq, i as u64);
            assert_eq!(f.len, 5000);
            assert_eq!(f.at, refs[i]);
        }
        assert_eq!(r.spool.read(refs[39]).unwrap(), frame(0, 39, 5000));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&tmp.path().join("aa01")), 0o700);
            assert_eq!(mode(&tmp.path().join("aa01").join(META)), 0o600);
            assert_eq!(mode(&tmp.path().join("aa01").join(segment_name(1))), 0o600);
        }
    }

    #[test]
    fn acknowledged_segments_are_deleted_and_counts_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let mut s = Spool::create(cfg.clone(), &meta("aa02")).unwrap();
        let refs = fill(&mut s, 40, 5000);
        let before = s.bytes();
        let mut per_seg: BTreeMap<u32, u64> = BTreeMap::new();
        for r in &refs[..30] {
            *per_seg.entry(r.segment).or_insert(0) += 1;
        }
        s.release(&per_seg);
        assert!(s.bytes() < before);
        let on_disk: u64 = std::fs::read_dir(s.dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| parse_segment_name(&e.file_name().to_string_lossy()).is_some())
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert_eq!(on_disk, s.bytes());
        drop(s);
        let r = recover_single(&cfg);
        // Released frames are gone; the counts still say 40.
        assert!(
            r.frames.len() < 40 && r.frames.len() >= 10,
            "{}",
            r.frames.len()
        );
        assert_eq!(r.frames.last().unwrap().frame.seq, 39);
        assert_eq!(r.counts, [(0u8, 40u64)].into());
        // Finished: the folder goes.
        r.spool.finish().unwrap();
        assert!(!tmp.path().join("aa02").exists());
    }

    #[test]
    fn a_torn_tail_is_cut_off() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let mut s = Spool::create(cfg.clone(), &meta("aa03")).unwrap();
        fill(&mut s, 5, 1000);
        let seg = s.dir().join(segment_name(1));
        drop(s);
        // The kill cut the last write: 700 bytes of the last frame record
        // (8 + 39 + 1000 bytes) never reached the file.
        let record = (RECORD_HEAD + FRAME_FIXED + 1000) as u64;
        let full = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(full - 700).unwrap();
        drop(f);
        let r = recover_single(&cfg);
        assert_eq!(r.frames.len(), 4);
        assert_eq!(r.issues.len(), 1, "{:?}", r.issues);
        assert!(r.issues[0].contains("cut off"), "{}", r.issues[0]);
        // The torn bytes are gone from the file.
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), full - record);
        drop(r);
        // A header cut short is a torn tail too.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(full - record + 3).unwrap();
        drop(f);
        let r = recover_single(&cfg);
        assert_eq!(r.frames.len(), 4);
        assert!(r.issues[0].contains("torn record header"), "{:?}", r.issues);
    }

    #[test]
    fn a_corrupt_record_is_detected_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let mut s = Spool::create(cfg.clone(), &meta("aa04")).unwrap();
        let refs = fill(&mut s, 40, 5000);
        let seg1 = s.dir().join(segment_name(1));
        drop(s);
        // Flip one byte of frame 3's data in the first (older) segment.
        let at = refs[3].offset + 8 + FRAME_FIXED as u64 + 10;
        let mut bytes = std::fs::read(&seg1).unwrap();
        bytes[at as usize] ^= 0xFF;
        std::fs::write(&seg1, &bytes).unwrap();
        let mut r = recover_single(&cfg);
        let seqs: Vec<u64> = r.frames.iter().map(|f| f.frame.seq).collect();
        // Frames 0-2 and every frame of the later segments are kept.
        assert_eq!(&seqs[..3], &[0, 1, 2]);
        assert!(!seqs.contains(&3));
        assert_eq!(*seqs.last().unwrap(), 39);
        assert_eq!(r.issues.len(), 1);
        assert!(r.issues[0].contains("checksum mismatch"), "{}", r.issues[0]);
        assert!(r.issues[0].contains("lost"), "{}", r.issues[0]);
        // The older segment is not truncated (it is not a torn tail).
        assert_eq!(std::fs::metadata(&seg1).unwrap().len(), bytes.len() as u64);
        // Reading a corrupt record back is an error, not a wrong frame.
        match r.spool.read(refs[3]) {
            Err(SpoolError::Corrupt { message, .. }) => {
                assert!(message.contains("checksum"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        // Garbage lengths are refused without allocating them.
        let mut bytes = std::fs::read(&seg1).unwrap();
        let o = refs[0].offset as usize;
        bytes[o..o + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        std::fs::write(&seg1, &bytes).unwrap();
        drop(r);
        let r = recover_single(&cfg);
        assert!(r.issues[0].contains("record length"), "{:?}", r.issues);
        // A bad meta.json is reported and left alone.
        drop(r);
        std::fs::write(tmp.path().join("aa04").join(META), b"{").unwrap();
        let (found, failed) = recover(&cfg);
        assert!(found.is_empty());
        assert_eq!(failed.len(), 1);
        assert!(tmp.path().join("aa04").exists());
    }

    #[test]
    fn a_full_spool_refuses_and_keeps_what_it_has() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            max_bytes: 100_000,
            ..cfg(tmp.path())
        };
        let mut s = Spool::create(cfg.clone(), &meta("aa05")).unwrap();
        let now = Instant::now();
        let mut accepted = 0u64;
        let err = loop {
            let counts = [(0u8, accepted + 1)].into();
            match s.append(&frame(0, accepted, 9_000), &counts, now) {
                Ok(_) => accepted += 1,
                Err(e) => break e,
            }
            assert!(accepted < 100, "never refused");
        };
        match &err {
            SpoolError::Full { used, max, frame } => {
                assert_eq!((*max, *frame), (100_000, 9_000));
                assert!(*used <= 100_000);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("spool full"), "{err}");
        assert!(s.bytes() <= 100_000);
        // Acknowledgements make room again.
        let mut all: BTreeMap<u32, u64> = BTreeMap::new();
        for seg in s.segments.keys() {
            all.insert(*seg, u64::MAX);
        }
        s.release(&all);
        let counts = [(0u8, accepted + 1)].into();
        s.append(&frame(0, accepted, 9_000), &counts, now).unwrap();
        drop(s);
        let r = recover_single(&cfg);
        let seqs: Vec<u64> = r.frames.iter().map(|f| f.frame.seq).collect();
        assert_eq!(*seqs.last().unwrap(), accepted);
        assert_eq!(r.counts, [(0u8, accepted + 1)].into());
    }

    #[test]
    fn discard_removes_a_session_unless_in_use() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = cfg(tmp.path());
        let s = Spool::create(cfg.clone(), &meta("aa06")).unwrap();
        assert!(matches!(discard(&cfg, "aa06"), Err(SpoolError::Busy(_))));
        assert!(discard(&cfg, "../x").is_err());
        drop(s);
        discard(&cfg, "aa06").unwrap();
        assert!(!tmp.path().join("aa06").exists());
        // No folder at all: nothing to recover.
        let (found, failed) = recover(&SpoolConfig::new(tmp.path().join("none")));
        assert!(found.is_empty() && failed.is_empty());
    }
}
