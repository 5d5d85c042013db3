//! A publisher's timestamped access units into its session, shared by the
//! RTMP and SRT ingests: the stream key authenticated, the session opened
//! at its first frame (or continued when the publisher rejoins with the
//! same key within `ingest.rejoin_window_secs`), timestamps on the
//! session's timeline, each frame held until the next one of its track
//! gives its duration, and the session suspended, finished or stopped as
//! the connection ends. Unlike a QUIC phone, such a publisher does not
//! resend what it sent before its connection dropped: frames lost in
//! flight are lost, and the time it was away is a gap in the recording.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sharecast_formats::ingest::ErrorCode;
use sharecast_formats::media::{MediaFrame, TrackInfo};
use tokio::sync::Notify;

use crate::limiter::token_key;
use crate::metrics::PublishEnd;
use crate::rtmp::flv::{AUDIO_TRACK, VIDEO_TRACK};
use crate::server::{finalise, spawn_resume_timer, Shared};
use crate::session::{Lifecycle, Session};
use crate::{lock, ConnectionChange, DeviceIdentity};

/// The frame duration assumed for a track's last frame when its publisher
/// is gone before a next frame gave it one and none was measured, µs.
const FALLBACK_DURATION_US: u32 = 33_333;

/// Publishes that can be continued, by the hash of their stream key (one
/// map for RTMP and SRT: a key is the same publisher on either).
#[derive(Default)]
pub(crate) struct Publishes(Mutex<HashMap<String, Arc<Mutex<Publish>>>>);

/// What continues across a publisher's connections: its session, the next
/// sequence number and the last decode timestamp of each track, and the
/// frame of each track held until the next one gives its duration.
pub(crate) struct Publish {
    session: Arc<Session>,
    tracks: Vec<TrackInfo>,
    next_seq: [u64; 2],
    last_dts_us: [Option<i64>; 2],
    held: [Option<MediaFrame>; 2],
    /// The duration of each track's last frame that had a next one, µs
    /// (0: none yet).
    last_duration_us: [u32; 2],
    /// The connection publishing now; the one it supersedes is told.
    generation: u64,
    kick: Arc<Notify>,
}

/// Why a connection ended before its publisher stopped: counted by reason
/// and logged by the protocol's module.
#[derive(Debug)]
pub(crate) struct Ended {
    pub(crate) reason: PublishEnd,
    pub(crate) message: String,
}

pub(crate) fn ended(reason: PublishEnd, message: impl Into<String>) -> Ended {
    Ended {
        reason,
        message: message.into(),
    }
}

/// One access unit of a publisher, timed from its connection's origin.
pub(crate) struct Unit {
    pub(crate) track: u8,
    /// Decode time after the connection's first timestamp, µs.
    pub(crate) since_origin_us: i64,
    /// Presentation minus decode time, µs.
    pub(crate) cts_us: i64,
    pub(crate) keyframe: bool,
    pub(crate) data: Bytes,
}

/// One publisher connection's feed into its session.
pub(crate) struct Feed {
    shared: Arc<Shared>,
    remote: SocketAddr,
    /// "RTMP" or "SRT", for the logs.
    protocol: &'static str,
    /// The device its stream key authenticated, and the key's hash (what
    /// a rejoin is found by).
    device: Option<(DeviceIdentity, String)>,
    /// The publish this connection feeds, its generation in it, and what
    /// tells this connection a newer one took over.
    publish: Option<(Arc<Mutex<Publish>>, u64, Arc<Notify>)>,
    /// The session's connection generation this connection holds.
    session_generation: u64,
    /// Where this connection's origin lies in the session's timeline, µs.
    base_us: i64,
}

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

impl Feed {
    pub(crate) fn new(shared: Arc<Shared>, remote: SocketAddr, protocol: &'static str) -> Feed {
        Feed {
            shared,
            remote,
            protocol,
            device: None,
            publish: None,
            session_generation: 0,
            base_us: 0,
        }
    }

    /// The stream key authenticated like a HELLO's token, under the same
    /// failed-authentication limits; one per connection.
    pub(crate) async fn authenticate(&mut self, key: &str) -> Result<(), Ended> {
        if self.device.is_some() {
            return Err(ended(
                PublishEnd::Protocol,
                "a second publish on one connection",
            ));
        }
        let kind = crate::hello::Credential::PublishingKey;
        match crate::hello::authenticate(&self.shared, key, kind, self.remote).await {
            Ok(device) => {
                self.device = Some((device, hex::encode(token_key(key))));
                Ok(())
            }
            Err(refused) => {
                let reason = match refused.code {
                    ErrorCode::RateLimited => PublishEnd::RateLimited,
                    ErrorCode::Unauthorized => PublishEnd::Unauthorized,
                    _ => PublishEnd::Session,
                };
                Err(ended(reason, refused.message))
            }
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn authenticated(&self) -> bool {
        self.device.is_some()
    }

    /// Whether the session is open (its tracks fixed).
    pub(crate) fn started(&self) -> bool {
        self.publish.is_some()
    }

    /// What tells this connection that a newer one of its publisher took
    /// over.
    pub(crate) fn superseded(&self) -> Option<Arc<Notify>> {
        self.publish.as_ref().map(|(_, _, k)| k.clone())
    }

    /// A decoder configuration seen once the session is open: the same one
    /// again is fine, another one is refused.
    pub(crate) fn same_config(&self, track: u8, config: &[u8]) -> Result<(), Ended> {
        let Some((publish, _, _)) = &self.publish else {
            return Ok(());
        };
        let p = lock(publish);
        if p.tracks
            .iter()
            .any(|t| t.id == track && t.codec_data == config)
        {
            return Ok(());
        }
        Err(ended(
            PublishEnd::Media,
            format!(
                "the publisher changed its {} configuration mid-stream; a recording keeps the one it started with",
                kind(track)
            ),
        ))
    }

    /// A frame on the session's timeline: after this connection's origin,
    /// never before its track's previous frame. The session opens at the
    /// first one, with the tracks `tracks` gives then.
    pub(crate) async fn frame(
        &mut self,
        tracks: impl FnOnce() -> Result<Vec<TrackInfo>, Ended>,
        unit: Unit,
    ) -> Result<(), Ended> {
        let Unit {
            track,
            since_origin_us,
            cts_us,
            keyframe,
            data,
        } = unit;
        let max = self.shared.cfg.max_frame_bytes;
        if data.len() > max as usize {
            self.shared.metrics.reject(ErrorCode::FrameTooLarge);
            return Err(ended(
                PublishEnd::Media,
                format!(
                    "a {} frame of {} bytes is above ingest.max_frame_bytes ({max})",
                    kind(track),
                    data.len()
                ),
            ));
        }
        if self.publish.is_none() {
            self.start(tracks()?).await?;
        }
        let Some((publish, generation, _)) = &self.publish else {
            return Err(ended(PublishEnd::Protocol, "no publish"));
        };
        let mut p = lock(publish);
        if p.generation != *generation {
            return Err(ended(
                PublishEnd::Closed,
                "superseded by a newer connection with the same key",
            ));
        }
        if !p.tracks.iter().any(|t| t.id == track) {
            return Err(ended(
                PublishEnd::Media,
                format!(
                    "{} frames without a {} configuration before the first frame",
                    kind(track),
                    kind(track)
                ),
            ));
        }
        let i = usize::from(track);
        let dts_us =
            // Saturating: timestamps that run away are refused by the
            // session's span check (`session_too_long`), never overflow.
            self.base_us
                .saturating_add(since_origin_us)
                .max(p.last_dts_us[i].unwrap_or(i64::MIN));
        let frame = MediaFrame {
            track,
            seq: p.next_seq[i],
            pts_us: dts_us.saturating_add(cts_us),
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
                    PublishEnd::Session,
                    format!("{}: {message}", code.name()),
                ))
            }
        }
    }

    /// The first frame: continue the key's open publish if its tracks are
    /// the same, else open a new session.
    async fn start(&mut self, tracks: Vec<TrackInfo>) -> Result<(), Ended> {
        let Some((device, key)) = self.device.clone() else {
            return Err(ended(
                PublishEnd::Protocol,
                "media before a publish request",
            ));
        };
        if tracks.is_empty() {
            return Err(ended(
                PublishEnd::Media,
                "a frame before any decoder configuration",
            ));
        }
        let rejoin = self.shared.publishes.open(&key).filter(|p| {
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
                        PublishEnd::Session,
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
                self.shared.publishes.insert(key, p.clone());
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
            tracing::info!(session = %session.info.id, protocol = self.protocol, "publisher rejoined its session");
        } else {
            tracing::info!(session = %session.info.id, remote = %self.remote, protocol = self.protocol, "publish started");
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
    pub(crate) async fn finish(&mut self) -> Result<(), Ended> {
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
            self.shared.publishes.remove(key);
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
            .map(|_| tracing::info!(session = %session.info.id, protocol = self.protocol, "publish finished"))
            .map_err(|e| ended(PublishEnd::Session, format!("finalising: {e:#}")))
    }

    /// The connection is gone before its publisher finished: a stopped
    /// session is finalised now; otherwise it waits `rejoin_window_secs`
    /// for the publisher to come back.
    pub(crate) fn detach(&mut self) {
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
        tracing::info!(session = %session.info.id, protocol = self.protocol, "publisher disconnected; waiting for it to rejoin");
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
