//! The per-session journal: every accepted frame is appended here and made
//! durable (fdatasync) before it is acknowledged.
//!
//! File layout (`<data_dir>/sessions/<id>/journal`):
//!
//! ```text
//! magic   "SCJ1"                                   4 bytes
//! record* len u32 BE | crc32c(payload) u32 BE | payload[len]
//! payload kind u8 | body
//!   0x01 META   body = JSON of SessionMeta
//!   0x02 FRAME  body = a frame record exactly as on the wire (36-byte header + data)
//!   0x03 END    body = JSON {"finished_unix_ms": ..}
//! ```
//!
//! **fsync policy (group commit across sessions)**: one committer thread
//! (`committer.rs`) runs rounds, at most one every `journal_commit_delay_ms`
//! (default 20). A round appends each waiting session's frames (up to
//! `journal_batch_frames` per session) to its journal with one `write`, makes
//! the round durable with one `syncfs` of the journals' filesystem
//! (`journal_sync = "filesystem"`, the default) or one `fdatasync` per file
//! (`"file"`), and only then reports the frames durable; acknowledgements
//! are sent after that. A crash can lose only frames that were never
//! acknowledged.
//!
//! **A failed write or sync** (a full disk, above all) is rolled back: the
//! file is cut to its length after the last successful sync, so a torn
//! record never sits in the middle of the journal and later appends stay
//! readable. Nothing of the failed round was acknowledged; the phone keeps
//! those frames and resends them (see `committer.rs`).
//!
//! **Recovery**: records are read until the end of the file or the first record
//! whose length or checksum does not match (a torn tail from a crash); the file
//! is truncated to the last good record.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sharecast_formats::ingest::{decode_frame_header, encode_frame_header, FRAME_HEADER_LEN};
use sharecast_formats::media::{MediaFrame, TrackInfo};

const MAGIC: &[u8; 4] = b"SCJ1";
const KIND_META: u8 = 0x01;
const KIND_FRAME: u8 = 0x02;
const KIND_END: u8 = 0x03;
/// Largest record accepted when reading back (a frame can't be bigger).
const MAX_RECORD: u32 = 64 * 1024 * 1024;

/// What the journal knows about its session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionMeta {
    /// Session id.
    pub id: String,
    /// Resume secret (hex).
    pub secret: String,
    /// Device id.
    pub device_id: String,
    /// Device name.
    pub device_name: String,
    /// Tracks from HELLO.
    pub tracks: Vec<TrackInfo>,
    /// Wall-clock anchor of capture time 0, Unix µs.
    pub anchor_unix_us: i64,
    /// Title, if given.
    #[serde(default)]
    pub title: Option<String>,
    /// When the session started, Unix ms.
    pub started_unix_ms: u64,
}

/// Appends records to a session journal.
pub(crate) struct JournalWriter {
    file: File,
    path: PathBuf,
    scratch: BytesMut,
    /// Length of the file after the last successful sync: what a failed
    /// write or sync is rolled back to.
    durable_len: u64,
    /// Tests: the next write stops half-way with this OS error (as a full
    /// disk does).
    #[cfg(test)]
    fail_next_write: Option<i32>,
}

fn put_record(out: &mut BytesMut, kind: u8, body_parts: &[&[u8]]) {
    let len: usize = 1 + body_parts.iter().map(|p| p.len()).sum::<usize>();
    let mut crc = crc32c::crc32c(&[kind]);
    for p in body_parts {
        crc = crc32c::crc32c_append(crc, p);
    }
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(&[kind]);
    for p in body_parts {
        out.extend_from_slice(p);
    }
}

impl JournalWriter {
    /// Create a new journal with its META record, durable on return.
    pub(crate) fn create(dir: &Path, meta: &SessionMeta) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("journal");
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("creating journal {}", path.display()))?;
        let mut buf = BytesMut::new();
        buf.extend_from_slice(MAGIC);
        let json = serde_json::to_vec(meta).context("serialising session meta")?;
        put_record(&mut buf, KIND_META, &[&json]);
        let written = file
            .write_all(&buf)
            .with_context(|| format!("writing {}", path.display()))
            .and_then(|()| {
                file.sync_all()
                    .with_context(|| format!("syncing {}", path.display()))
            });
        if let Err(e) = written {
            // No half-made journal for the next start to trip over (a full
            // disk fails here).
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir(dir);
            return Err(e);
        }
        // Make the new directory entry durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(Self::new(file, path, buf.len() as u64))
    }

    fn new(file: File, path: PathBuf, durable_len: u64) -> Self {
        Self {
            file,
            path,
            scratch: BytesMut::new(),
            durable_len,
            #[cfg(test)]
            fail_next_write: None,
        }
    }

    /// Reopen an existing journal for appending (after recovery truncated it).
    pub(crate) fn reopen(path: &Path) -> Result<Self> {
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("reopening journal {}", path.display()))?;
        let len = file
            .seek(SeekFrom::End(0))
            .with_context(|| format!("seeking {}", path.display()))?;
        Ok(Self::new(file, path.to_path_buf(), len))
    }

    /// Append frames with one write, not yet durable (see [`Self::sync_data`]).
    pub(crate) fn write_frames(&mut self, frames: &[MediaFrame]) -> Result<()> {
        self.scratch.clear();
        let mut header = BytesMut::with_capacity(FRAME_HEADER_LEN);
        for f in frames {
            header.clear();
            encode_frame_header(f, &mut header);
            put_record(&mut self.scratch, KIND_FRAME, &[&header, &f.data]);
        }
        self.append_scratch()
            .with_context(|| format!("appending to {}", self.path.display()))
    }

    fn append_scratch(&mut self) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(errno) = self.fail_next_write.take() {
            self.file
                .write_all(&self.scratch[..self.scratch.len() / 2])?;
            return Err(std::io::Error::from_raw_os_error(errno));
        }
        self.file.write_all(&self.scratch)
    }

    /// Tests: make the next write stop half-way with OS error `errno`.
    #[cfg(test)]
    pub(crate) fn fail_next_write(&mut self, errno: i32) {
        self.fail_next_write = Some(errno);
    }

    /// Append the END record marking the session finished, not yet durable.
    pub(crate) fn write_end(&mut self, finished_unix_ms: u64) -> Result<()> {
        self.scratch.clear();
        let body = serde_json::json!({ "finished_unix_ms": finished_unix_ms }).to_string();
        put_record(&mut self.scratch, KIND_END, &[body.as_bytes()]);
        self.append_scratch()
            .with_context(|| format!("appending END to {}", self.path.display()))
    }

    /// Make everything written so far durable (`fdatasync`).
    pub(crate) fn sync_data(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("fdatasync {}", self.path.display()))?;
        self.synced()
    }

    /// Everything written so far is durable (the round's `syncfs`, or
    /// [`Self::sync_data`]): a later failure rolls back to here.
    pub(crate) fn synced(&mut self) -> Result<()> {
        self.durable_len = self
            .file
            .stream_position()
            .with_context(|| format!("position in {}", self.path.display()))?;
        Ok(())
    }

    /// Undo whatever was written since the last successful sync (a failed
    /// write or sync): cut the file there, so that the next append follows
    /// the last durable record. An error here leaves the journal unusable.
    pub(crate) fn roll_back(&mut self) -> Result<()> {
        let len = self.durable_len;
        self.file
            .set_len(len)
            .and_then(|()| self.file.seek(SeekFrom::Start(len)).map(|_| ()))
            .with_context(|| format!("cutting {} back to {len} bytes", self.path.display()))
    }
}

/// Whether an error (of a journal write or sync) is the disk being full:
/// `ENOSPC`, or `EDQUOT` (a quota).
pub(crate) fn is_storage_full(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| {
            io.kind() == std::io::ErrorKind::StorageFull
                || io.raw_os_error() == Some(libc::ENOSPC)
                || io.raw_os_error() == Some(libc::EDQUOT)
        })
}

/// A journal read back from disk.
#[derive(Debug)]
pub struct Recovered {
    /// The session's META record.
    pub meta: SessionMeta,
    /// Every intact frame, in journal order.
    pub frames: Vec<MediaFrame>,
    /// Whether the END record is present.
    pub ended: bool,
    /// Bytes cut from a torn tail (0 when the file was intact).
    pub truncated_bytes: u64,
}

/// Read a journal, cut a torn tail (truncating the file), return its content.
pub fn recover(path: &Path) -> Result<Recovered> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening journal {}", path.display()))?;
    let (rec, pos) = parse(&mut file, path)?;
    if rec.truncated_bytes > 0 {
        tracing::warn!(
            journal = %path.display(),
            truncated_bytes = rec.truncated_bytes,
            "journal has a torn tail; cutting it"
        );
        file.set_len(pos as u64)
            .with_context(|| format!("truncating {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
    }
    Ok(rec)
}

/// Read a journal as it is, changing nothing (its writer may still be
/// open): the intact records up to the first that is not.
pub(crate) fn read(path: &Path) -> Result<Recovered> {
    let mut file =
        File::open(path).with_context(|| format!("opening journal {}", path.display()))?;
    Ok(parse(&mut file, path)?.0)
}

/// The journal's intact records, and the length they end at.
fn parse(file: &mut File, path: &Path) -> Result<(Recovered, usize)> {
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .with_context(|| format!("reading journal {}", path.display()))?;
    if data.len() < 4 || &data[..4] != MAGIC {
        bail!("{} is not a Sharecast journal (bad magic)", path.display());
    }
    let data = Bytes::from(data);
    let mut pos = 4usize;
    let mut meta = None;
    let mut frames = Vec::new();
    let mut ended = false;
    loop {
        if pos + 8 > data.len() {
            break;
        }
        let len = u32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let crc = u32::from_be_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len == 0 || len > MAX_RECORD || pos + 8 + len as usize > data.len() {
            break;
        }
        let payload = data.slice(pos + 8..pos + 8 + len as usize);
        if crc32c::crc32c(&payload) != crc {
            break;
        }
        match payload[0] {
            KIND_META => {
                meta = Some(
                    serde_json::from_slice::<SessionMeta>(&payload[1..])
                        .with_context(|| format!("bad META record in {}", path.display()))?,
                );
            }
            KIND_FRAME => {
                let body = payload.slice(1..);
                let h = match decode_frame_header(&body, MAX_RECORD) {
                    Ok(h) if body.len() == FRAME_HEADER_LEN + h.len as usize => h,
                    _ => break,
                };
                frames.push(MediaFrame {
                    track: h.track,
                    seq: h.seq,
                    pts_us: h.pts_us,
                    dts_us: h.dts_us,
                    duration_us: h.duration_us,
                    keyframe: h.keyframe,
                    data: body.slice(FRAME_HEADER_LEN..),
                });
            }
            KIND_END => ended = true,
            _ => break,
        }
        pos += 8 + len as usize;
    }
    let truncated_bytes = (data.len() - pos) as u64;
    let meta = meta.with_context(|| format!("{} has no META record", path.display()))?;
    let rec = Recovered {
        meta,
        frames,
        ended,
        truncated_bytes,
    };
    Ok((rec, pos))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn meta() -> SessionMeta {
        SessionMeta {
            id: "s1".into(),
            secret: "ab".into(),
            device_id: "d".into(),
            device_name: "phone".into(),
            tracks: vec![],
            anchor_unix_us: 5,
            title: None,
            started_unix_ms: 7,
        }
    }

    /// Append frames and make them durable, as a commit round does.
    fn append(w: &mut JournalWriter, frames: &[MediaFrame]) {
        w.write_frames(frames).unwrap();
        w.sync_data().unwrap();
    }

    pub(crate) fn frame(seq: u64) -> MediaFrame {
        MediaFrame {
            track: 0,
            seq,
            pts_us: seq as i64 * 1000,
            dts_us: seq as i64 * 1000,
            duration_us: 1000,
            keyframe: seq == 0,
            data: Bytes::from(vec![seq as u8; 300]),
        }
    }

    #[test]
    fn write_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = JournalWriter::create(dir.path(), &meta()).unwrap();
        append(&mut w, &[frame(0), frame(1)]);
        append(&mut w, &[frame(2)]);
        w.write_end(9).unwrap();
        w.sync_data().unwrap();
        let r = recover(&dir.path().join("journal")).unwrap();
        assert_eq!(r.meta, meta());
        assert_eq!(r.frames, vec![frame(0), frame(1), frame(2)]);
        assert!(r.ended);
        assert_eq!(r.truncated_bytes, 0);
    }

    #[test]
    fn torn_tail_is_cut_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut w = JournalWriter::create(dir.path(), &meta()).unwrap();
        append(&mut w, &[frame(0), frame(1)]);
        let good_len = std::fs::metadata(&path).unwrap().len();
        append(&mut w, &[frame(2)]);
        let full = std::fs::read(&path).unwrap();
        for cut in good_len as usize..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let r = recover(&path).unwrap();
            assert_eq!(r.frames, vec![frame(0), frame(1)], "cut at {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        }
    }

    #[test]
    fn corrupted_byte_is_detected_by_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut w = JournalWriter::create(dir.path(), &meta()).unwrap();
        append(&mut w, &[frame(0), frame(1), frame(2)]);
        let mut data = std::fs::read(&path).unwrap();
        let n = data.len();
        data[n - 10] ^= 0xff; // inside frame 2's data
        std::fs::write(&path, &data).unwrap();
        let r = recover(&path).unwrap();
        assert_eq!(r.frames, vec![frame(0), frame(1)]);
        // Appending after recovery continues a valid journal.
        let mut w = JournalWriter::reopen(&path).unwrap();
        append(&mut w, &[frame(2)]);
        assert_eq!(recover(&path).unwrap().frames.len(), 3);
    }

    #[test]
    fn a_failed_write_is_rolled_back_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut w = JournalWriter::create(dir.path(), &meta()).unwrap();
        append(&mut w, &[frame(0), frame(1)]);
        let good_len = std::fs::metadata(&path).unwrap().len();
        w.fail_next_write(libc::ENOSPC);
        let e = w.write_frames(&[frame(2), frame(3)]).unwrap_err();
        assert!(is_storage_full(&e), "{e:#}");
        // Half a record was written, as a full disk leaves it.
        assert!(std::fs::metadata(&path).unwrap().len() > good_len);
        w.roll_back().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good_len);
        append(&mut w, &[frame(2), frame(3)]);
        let r = recover(&path).unwrap();
        assert_eq!(r.frames, vec![frame(0), frame(1), frame(2), frame(3)]);
        assert_eq!(r.truncated_bytes, 0);
        let other = anyhow::Error::new(std::io::Error::from_raw_os_error(libc::EIO));
        assert!(!is_storage_full(&other));
    }

    #[test]
    fn not_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        std::fs::write(&path, b"hello").unwrap();
        assert!(recover(&path).is_err());
    }
}
