//! An RTMP publisher's frames into its session: the session opened at its
//! first frame (or continued when the publisher rejoins), timestamps on
//! the session's timeline, each frame held until the next one of its track
//! gives its duration, and the session suspended, finished or stopped as
//! the connection ends.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sharecast_formats::media::{MediaFrame, TrackInfo};
use tokio::sync::Notify;

use super::flv::{self, Tag, TagError, AUDIO_TRACK, VIDEO_TRACK};
use super::{ended, Conn, Ended, Publish, Publishes};
use crate::metrics::RtmpEnd;
use crate::server::{finalise, spawn_resume_timer};
use crate::session::{Lifecycle, Session};
use crate::{lock, ConnectionChange};

/// The frame duration assumed for a track's last frame when its publisher
/// is gone before a next frame gave it one and none was measured, µs.
const FALLBACK_DURATION_US: u32 = 33_333;

impl Publishes {
    /// The publish of `key` that can still take frames, if any.
    fn open(&self, key: &str) -> Option<Arc<Mutex<Publish>>> {
        let publishes = lock(&self.0);
        let p = publishes.get(key)?.clone();
        let open = lock(&p).session.lifecycle().is_open();
        open.then_some(p)
    }

    fn insert(&self, key: String, publish: Arc<Mutex<Publish>>) {
        let mut publishes = lock(&self.0);
        // Ended publishes are dropped as new ones come.
        publishes.retain(|_, p| lock(p).session.lifecycle().is_open());
        publishes.insert(key, publish);
    }

    fn remove(&self, key: &str) {
        lock(&self.0).remove(key);
    }
}

impl Conn {
    /// A tag's media: configurations kept, frames taken.
    pub(super) async fn media(&mut self, tag: Result<Tag, TagError>, ts: u32) -> Result<(), Ended> {
        let tag = tag.map_err(|e| ended(RtmpEnd::Media, e.0))?;
        if self.device.is_none() {
            return Err(ended(RtmpEnd::Protocol, "media before a publish request"));
        }
        match tag {
            Tag::Skip => Ok(()),
            Tag::VideoConfig(c) => self.config(VIDEO_TRACK, c),
            Tag::AudioConfig(c) => self.config(AUDIO_TRACK, c),
            Tag::Video {
                keyframe,
                cts_ms,
                data,
            } => self.frame(VIDEO_TRACK, ts, cts_ms, keyframe, data).await,
            Tag::Audio(data) => self.frame(AUDIO_TRACK, ts, 0, true, data).await,
        }
    }

    /// A sequence header. Once the session is open its tracks are fixed: the
    /// same configuration again is fine, another one is refused.
    fn config(&mut self, track: u8, config: Vec<u8>) -> Result<(), Ended> {
        if let Some((publish, _, _)) = &self.publish {
            let p = lock(publish);
            let same = p
                .tracks
                .iter()
                .any(|t| t.id == track && t.codec_data == config);
            if !same {
                return Err(ended(
                    RtmpEnd::Media,
                    format!(
                        "the publisher changed its {} configuration mid-stream; a recording keeps the one it started with",
                        kind(track)
                    ),
                ));
            }
            return Ok(());
        }
        match track {
            VIDEO_TRACK => self.video_cfg = Some(config),
            _ => self.audio_cfg = Some(config),
        }
        Ok(())
    }

    /// The tracks the sequence headers seen so far describe.
    fn tracks(&self) -> Result<Vec<TrackInfo>, Ended> {
        let media = |e: TagError| ended(RtmpEnd::Media, e.0);
        let mut tracks = Vec::new();
        if let Some(c) = &self.video_cfg {
            tracks.push(flv::video_track(c, self.metadata.video_frame_rate).map_err(media)?);
        }
        if let Some(c) = &self.audio_cfg {
            tracks.push(flv::audio_track(c).map_err(media)?);
        }
        Ok(tracks)
    }

    /// A frame on the session's timeline: `ts` (RTMP ms) after this
    /// connection's origin, never before its track's previous frame.
    async fn frame(
        &mut self,
        track: u8,
        ts: u32,
        cts_ms: i32,
        keyframe: bool,
        data: Bytes,
    ) -> Result<(), Ended> {
        let max = self.shared.cfg.max_frame_bytes;
        if data.len() > max as usize {
            self.shared
                .metrics
                .reject(sharecast_formats::ingest::ErrorCode::FrameTooLarge);
            return Err(ended(
                RtmpEnd::Media,
                format!(
                    "a {} frame of {} bytes is above ingest.max_frame_bytes ({max})",
                    kind(track),
                    data.len()
                ),
            ));
        }
        if self.publish.is_none() {
            self.start().await?;
        }
        let since_origin_ms = self.extend(ts);
        let Some((publish, generation, _)) = &self.publish else {
            return Err(ended(RtmpEnd::Protocol, "no publish"));
        };
        let mut p = lock(publish);
        if p.generation != *generation {
            return Err(ended(
                RtmpEnd::Closed,
                "superseded by a newer connection with the same key",
            ));
        }
        if !p.tracks.iter().any(|t| t.id == track) {
            return Err(ended(
                RtmpEnd::Media,
                format!(
                    "{} frames without a {} sequence header before the first frame",
                    kind(track),
                    kind(track)
                ),
            ));
        }
        let i = usize::from(track);
        let dts_us =
            // Saturating: timestamps that run away are refused by the
            // session's span check (`session_too_long`), never overflow.
            (self.base_us.saturating_add(since_origin_ms.saturating_mul(1000)))
                .max(p.last_dts_us[i].unwrap_or(i64::MIN));
        let frame = MediaFrame {
            track,
            seq: p.next_seq[i],
            pts_us: dts_us.saturating_add(i64::from(cts_ms) * 1000),
            dts_us,
            duration_us: 0,
            keyframe,
            data,
        };
        p.next_seq[i] += 1;
        p.last_dts_us[i] = Some(dts_us);
        let previous = p.held[i].replace(frame).map(|mut prev| {
            prev.duration_us = u32::try_from(dts_us - prev.dts_us).unwrap_or(u32::MAX);
            p.last_duration_us[i] = prev.duration_us;
            prev
        });
        let session = p.session.clone();
        drop(p);
        match previous {
            Some(prev) => self.accept(&session, prev),
            None => Ok(()),
        }
    }

    /// A frame into the session, counted; an error that ends the session
    /// stops it (it is finalised with what it holds).
    fn accept(&self, session: &Session, frame: MediaFrame) -> Result<(), Ended> {
        let metrics = &self.shared.metrics;
        metrics.frames_received.inc();
        metrics.bytes_received.inc_by(frame.data.len() as u64);
        match session.accept(frame) {
            Ok(_) => Ok(()),
            Err((code, message)) => {
                metrics.reject(code);
                if code.ends_session() && session.lifecycle() == Lifecycle::Connected {
                    session.set_lifecycle(Lifecycle::Stopped);
                    metrics.sessions_stopped.inc();
                }
                Err(ended(
                    RtmpEnd::Session,
                    format!("{}: {message}", code.name()),
                ))
            }
        }
    }

    /// The RTMP timestamp `ts` as ms after this connection's first one
    /// (32-bit RTMP time wraps; the difference to the previous one is
    /// taken as signed).
    fn extend(&mut self, ts: u32) -> i64 {
        let (last, ext) = self.clock.unwrap_or((ts, 0));
        let ext = ext.saturating_add(i64::from(ts.wrapping_sub(last) as i32));
        self.clock = Some((ts, ext));
        ext
    }

    /// The first frame: continue the key's open publish if its tracks are
    /// the same, else open a new session.
    async fn start(&mut self) -> Result<(), Ended> {
        let Some((device, key)) = self.device.clone() else {
            return Err(ended(RtmpEnd::Protocol, "media before a publish request"));
        };
        let tracks = self.tracks()?;
        if tracks.is_empty() {
            return Err(ended(RtmpEnd::Media, "a frame before any sequence header"));
        }
        let rejoin = self.shared.rtmp.open(&key).filter(|p| {
            let p = lock(p);
            p.tracks == tracks && p.session.info.device.id == device.id
        });
        let publish = match rejoin {
            Some(p) => p,
            None => {
                let session = crate::hello::start_session(
                    &self.shared,
                    device,
                    tracks.clone(),
                    crate::unix_now_us(),
                    None,
                )
                .await
                .map_err(|r| {
                    ended(
                        RtmpEnd::Session,
                        format!("{}: {}", r.code.name(), r.message),
                    )
                })?;
                let p = Arc::new(Mutex::new(Publish {
                    session,
                    tracks,
                    next_seq: [0; 2],
                    last_dts_us: [None; 2],
                    held: [None, None],
                    last_duration_us: [0; 2],
                    generation: 0,
                    kick: Arc::new(Notify::new()),
                }));
                self.shared.rtmp.insert(key, p.clone());
                p
            }
        };
        self.attach(publish);
        Ok(())
    }

    /// Take the publish over: a connection it had is told to end; the
    /// session is connected; a rejoin continues the timeline where it
    /// stopped, or later by the time the publisher was away.
    fn attach(&mut self, publish: Arc<Mutex<Publish>>) {
        let mut p = lock(&publish);
        let rejoin = p.next_seq.iter().any(|n| *n > 0);
        p.kick.notify_waiters();
        p.kick = Arc::new(Notify::new());
        p.generation += 1;
        let session = p.session.clone();
        self.session_generation = session.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let was_suspended = session.lifecycle() == Lifecycle::Suspended;
        session.set_lifecycle(Lifecycle::Connected);
        if rejoin {
            if was_suspended {
                session.output.connection_changed(ConnectionChange::Resumed);
            }
            let away_us = crate::unix_now_us() - session.info.anchor_unix_us;
            let after_last = p
                .last_dts_us
                .iter()
                .flatten()
                .max()
                .map_or(0, |d| d.saturating_add(1000));
            self.base_us = away_us.max(after_last);
            session.lock().resumes += 1;
            self.shared.metrics.sessions_resumed.inc();
            tracing::info!(session = %session.info.id, "RTMP publisher rejoined its session");
        } else {
            tracing::info!(session = %session.info.id, remote = %self.remote, "RTMP publish started");
        }
        self.publish = Some((publish.clone(), p.generation, p.kick.clone()));
    }

    /// The frames still held, with the duration of the frame before them.
    fn release_held(&self, p: &mut Publish) -> Result<(), Ended> {
        for i in 0..2 {
            if let Some(mut f) = p.held[i].take() {
                f.duration_us = match p.last_duration_us[i] {
                    0 if f.track == AUDIO_TRACK => audio_duration_us(&p.tracks),
                    0 => FALLBACK_DURATION_US,
                    d => d,
                };
                self.accept(&p.session, f)?;
            }
        }
        Ok(())
    }

    /// The publisher finished: its frames durable (within `end_wait_secs`),
    /// then the recording is finalised.
    pub(super) async fn finish(&mut self) -> Result<(), Ended> {
        let Some((publish, generation, _)) = self.publish.take() else {
            return Ok(());
        };
        let (session, want) = {
            let mut p = lock(&publish);
            if p.generation != generation {
                return Ok(());
            }
            self.release_held(&mut p)?;
            (p.session.clone(), p.next_seq)
        };
        if let Some((_, key)) = &self.device {
            self.shared.rtmp.remove(key);
        }
        let mut rx = session.ack_tx.subscribe();
        let durable = |next: &std::collections::BTreeMap<u8, u64>| {
            [VIDEO_TRACK, AUDIO_TRACK]
                .iter()
                .all(|t| next.get(t).copied().unwrap_or(0) >= want[usize::from(*t)])
        };
        let wait = Duration::from_secs(self.shared.cfg.end_wait_secs);
        let _ = tokio::time::timeout(wait, async {
            while !durable(&rx.borrow_and_update().0) {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        finalise(&self.shared, &session)
            .await
            .map(|_| tracing::info!(session = %session.info.id, "RTMP publish finished"))
            .map_err(|e| ended(RtmpEnd::Session, format!("finalising: {e:#}")))
    }

    /// The connection is gone before its publisher finished: a stopped
    /// session is finalised now; otherwise it waits `rejoin_window_secs`
    /// for the publisher to come back.
    pub(super) fn detach(&mut self) {
        let Some((publish, generation, _)) = self.publish.take() else {
            return;
        };
        let session = {
            let mut p = lock(&publish);
            if p.generation != generation {
                return;
            }
            // What arrived is kept, whatever happens next.
            let _ = self.release_held(&mut p);
            p.session.clone()
        };
        let shared = self.shared.clone();
        if session.lifecycle() == Lifecycle::Stopped {
            tokio::spawn(async move {
                if let Err(e) = finalise(&shared, &session).await {
                    tracing::error!(session = %session.info.id, error = %format!("{e:#}"), "could not finalise a stopped session");
                }
            });
            return;
        }
        if session.generation.load(Ordering::SeqCst) != self.session_generation
            || session.lifecycle() != Lifecycle::Connected
        {
            return;
        }
        session.set_lifecycle(Lifecycle::Suspended);
        session
            .output
            .connection_changed(ConnectionChange::Suspended {
                reason: "connection_lost",
            });
        tracing::info!(session = %session.info.id, "RTMP publisher disconnected; waiting for it to rejoin");
        let wait = Duration::from_secs(shared.cfg.rejoin_window_secs);
        spawn_resume_timer(shared, session, self.session_generation, wait);
    }
}

/// An AAC frame's duration (1024 samples) at the audio track's rate, µs.
fn audio_duration_us(tracks: &[TrackInfo]) -> u32 {
    tracks
        .iter()
        .find(|t| t.id == AUDIO_TRACK)
        .and_then(|t| t.sample_rate)
        .map_or(FALLBACK_DURATION_US, |r| {
            (1024 * 1_000_000 / r.max(1) as u64) as u32
        })
}

fn kind(track: u8) -> &'static str {
    if track == VIDEO_TRACK {
        "video"
    } else {
        "audio"
    }
}
