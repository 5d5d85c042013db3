//! Who is watching: every RTSP session and every HLS player (through the
//! heartbeats its page posts) is a viewer with a position. A viewer that
//! vanishes (missed heartbeats past the timeout, RTSP session timeout,
//! connection closed without TEARDOWN) produces exactly one
//! [`ViewerEvent::Vanished`] on a broadcast channel; this is what the
//! bookmark feature consumes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use sharecast_formats::status::{Protocol, ViewerEnd, ViewerEvent, ViewerSnapshot};
use tokio::sync::broadcast;

use crate::lock;
use crate::metrics::{EventLabel, ProtocolLabel};
use sharecast_metrics::family;

/// Closes an RTSP viewer's connection (for kicks).
pub(crate) type Closer = Box<dyn Fn() + Send + Sync>;

struct Viewer {
    snap: ViewerSnapshot,
    /// The playback token it presented, newest first seen.
    token: Option<String>,
    last_seen: Instant,
    /// Heartbeat viewers time out here; RTSP viewers through their session.
    heartbeat: bool,
    closer: Option<Closer>,
}

/// A heartbeat from a player page.
#[derive(Debug, Clone)]
pub(crate) struct Heartbeat {
    /// Stable id of the player instance.
    pub(crate) viewer_id: String,
    /// Current position, ms.
    pub(crate) position_ms: u64,
    /// User, if known.
    pub(crate) user: Option<String>,
    /// HLS (live) or VOD.
    pub(crate) protocol: Protocol,
    /// Player state.
    pub(crate) state: Option<String>,
    /// The page is closing: end as [`ViewerEvent::Left`].
    pub(crate) leaving: bool,
    /// Remote address.
    pub(crate) remote: Option<String>,
    /// The playback token the heartbeat carried.
    pub(crate) token: Option<String>,
}

/// Why a heartbeat was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeartbeatRefused {
    /// The viewer was kicked; the page must stop.
    Kicked,
}

/// Tracks viewers and emits their events.
pub(crate) struct ViewerTracker {
    timeout: Duration,
    viewers: Mutex<HashMap<String, Viewer>>,
    kicked: Mutex<HashMap<String, Instant>>,
    positions: Mutex<HashMap<String, Arc<AtomicI64>>>,
    tx: broadcast::Sender<ViewerEvent>,
    recent: Mutex<VecDeque<ViewerEvent>>,
    recent_max: usize,
    /// Viewer endings, by kind (every kind listed from the start).
    endings: Family<EventLabel, Counter>,
    heartbeats: Counter,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ViewerTracker {
    /// A tracker; heartbeat viewers vanish after `timeout` without one.
    pub(crate) fn new(timeout: Duration, recent_max: usize) -> ViewerTracker {
        let (tx, _) = broadcast::channel(1024);
        ViewerTracker {
            timeout,
            viewers: Mutex::default(),
            kicked: Mutex::default(),
            positions: Mutex::default(),
            tx,
            recent: Mutex::default(),
            recent_max: recent_max.max(1),
            endings: endings_by_kind(),
            heartbeats: Counter::default(),
        }
    }

    /// The heartbeat timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Receives every viewer event from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ViewerEvent> {
        self.tx.subscribe()
    }

    /// The most recent events, oldest first.
    pub(crate) fn recent_events(&self) -> Vec<ViewerEvent> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Current viewers.
    pub(crate) fn snapshot(&self) -> Vec<ViewerSnapshot> {
        let mut v: Vec<ViewerSnapshot> = lock(&self.viewers)
            .values()
            .map(|v| {
                let mut snap = v.snap.clone();
                // An RTSP viewer is at the newest capture position sent.
                if snap.protocol == Protocol::Rtsp {
                    snap.position_ms = self.live_position(&snap.content_id).max(snap.position_ms);
                }
                snap
            })
            .collect();
        v.sort_by_key(|a| a.started_unix_ms);
        v
    }

    /// Registers the live position (newest capture ms) of a content.
    pub(crate) fn register_content(&self, content_id: &str) -> Arc<AtomicI64> {
        let p = Arc::new(AtomicI64::new(0));
        lock(&self.positions).insert(content_id.to_string(), p.clone());
        p
    }

    /// Forgets a content's live position (its stream is gone).
    pub(crate) fn unregister_content(&self, content_id: &str) {
        lock(&self.positions).remove(content_id);
    }

    fn live_position(&self, content_id: &str) -> u64 {
        lock(&self.positions)
            .get(content_id)
            .map(|p| p.load(Ordering::Relaxed).max(0) as u64)
            .unwrap_or(0)
    }

    /// Records a heartbeat; starts tracking the viewer if new.
    pub(crate) fn heartbeat(
        &self,
        content_id: &str,
        hb: Heartbeat,
    ) -> Result<(), HeartbeatRefused> {
        self.heartbeats.inc();
        if lock(&self.kicked).contains_key(&hb.viewer_id) {
            return Err(HeartbeatRefused::Kicked);
        }
        let now = unix_ms();
        {
            let mut viewers = lock(&self.viewers);
            let v = viewers.entry(hb.viewer_id.clone()).or_insert_with(|| {
                tracing::info!(viewer = %hb.viewer_id, content = %content_id, protocol = hb.protocol.as_str(), "viewer started");
                Viewer {
                    snap: ViewerSnapshot {
                        viewer_id: hb.viewer_id.clone(),
                        protocol: hb.protocol,
                        content_id: content_id.to_string(),
                        user: None,
                        position_ms: 0,
                        state: None,
                        started_unix_ms: now,
                        last_seen_unix_ms: now,
                        remote: hb.remote.clone(),
                    },
                    token: None,
                    last_seen: Instant::now(),
                    heartbeat: true,
                    closer: None,
                }
            });
            if hb.token.is_some() {
                v.token = hb.token.clone();
            }
            v.last_seen = Instant::now();
            v.snap.last_seen_unix_ms = now;
            v.snap.position_ms = hb.position_ms;
            v.snap.protocol = hb.protocol;
            v.snap.content_id = content_id.to_string();
            if hb.user.is_some() {
                v.snap.user = hb.user.clone();
            }
            if hb.state.is_some() {
                v.snap.state = hb.state.clone();
            }
        }
        if hb.leaving {
            self.end(&hb.viewer_id, Ending::Left);
        }
        Ok(())
    }

    /// Starts tracking an RTSP viewer.
    pub(crate) fn rtsp_started(
        &self,
        viewer_id: &str,
        content_id: &str,
        remote: Option<String>,
        user: Option<String>,
        token: Option<String>,
        closer: Option<Closer>,
    ) {
        let now = unix_ms();
        let position_ms = self.live_position(content_id);
        let mut viewers = lock(&self.viewers);
        if viewers.contains_key(viewer_id) {
            return;
        }
        viewers.insert(
            viewer_id.to_string(),
            Viewer {
                snap: ViewerSnapshot {
                    viewer_id: viewer_id.to_string(),
                    protocol: Protocol::Rtsp,
                    content_id: content_id.to_string(),
                    user,
                    position_ms,
                    state: Some("playing".into()),
                    started_unix_ms: now,
                    last_seen_unix_ms: now,
                    remote,
                },
                token,
                last_seen: Instant::now(),
                heartbeat: false,
                closer,
            },
        );
    }

    /// Ends a viewer (once): emits and records the event. `None` when the
    /// viewer was not (or no longer) tracked.
    pub(crate) fn end(&self, viewer_id: &str, how: Ending) -> Option<ViewerEvent> {
        let v = lock(&self.viewers).remove(viewer_id)?;
        let position_ms = if v.snap.protocol == Protocol::Rtsp {
            self.live_position(&v.snap.content_id)
        } else {
            v.snap.position_ms
        };
        let end = ViewerEnd {
            viewer_id: v.snap.viewer_id,
            protocol: v.snap.protocol,
            content_id: v.snap.content_id,
            user: v.snap.user,
            position_ms,
            at_unix_ms: unix_ms(),
            playback_token: v.token,
        };
        let event = match how {
            Ending::Vanished => ViewerEvent::Vanished(end),
            Ending::Left => ViewerEvent::Left(end),
            Ending::Kicked => ViewerEvent::Kicked(end),
        };
        tracing::info!(event = event.kind(), viewer = %viewer_id, content = %event.end().content_id, position_ms, "viewer ended");
        self.endings
            .get_or_create(&EventLabel {
                event: event.kind(),
            })
            .inc();
        {
            let mut recent = lock(&self.recent);
            recent.push_back(event.clone());
            while recent.len() > self.recent_max {
                recent.pop_front();
            }
        }
        let _ = self.tx.send(event.clone());
        if how == Ending::Kicked {
            if let Some(close) = v.closer {
                close();
            }
        }
        Some(event)
    }

    /// Kicks a viewer: an RTSP connection is closed, an HLS page's next
    /// heartbeat is refused. False when no such viewer.
    pub(crate) fn kick(&self, viewer_id: &str) -> bool {
        let known = lock(&self.viewers).contains_key(viewer_id);
        if known {
            let mut kicked = lock(&self.kicked);
            kicked.retain(|_, t| t.elapsed() < Duration::from_secs(3600));
            kicked.insert(viewer_id.to_string(), Instant::now());
        }
        known && self.end(viewer_id, Ending::Kicked).is_some()
    }

    /// Ends heartbeat viewers whose last heartbeat is older than the
    /// timeout. Returns how many vanished.
    pub(crate) fn reap(&self) -> usize {
        let stale: Vec<String> = lock(&self.viewers)
            .iter()
            .filter(|(_, v)| v.heartbeat && v.last_seen.elapsed() > self.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        stale
            .iter()
            .filter(|id| self.end(id, Ending::Vanished).is_some())
            .count()
    }

    /// Current viewers by protocol.
    pub(crate) fn counts_by_protocol(&self) -> HashMap<Protocol, usize> {
        let mut m = HashMap::new();
        for v in lock(&self.viewers).values() {
            *m.entry(v.snap.protocol).or_insert(0) += 1;
        }
        m
    }

    /// Encodes the viewer families: current viewers by protocol (read
    /// now), endings by kind and heartbeats.
    pub(crate) fn encode_metrics(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let counts = self.counts_by_protocol();
        let mut viewers = enc.encode_descriptor(
            "live_viewers",
            "Current viewers by protocol",
            None,
            MetricType::Gauge,
        )?;
        for p in [Protocol::Rtsp, Protocol::Hls, Protocol::Vod] {
            let n = counts.get(&p).copied().unwrap_or(0);
            let label = ProtocolLabel {
                protocol: p.as_str(),
            };
            ConstGauge::new(n).encode(viewers.encode_family(&label)?)?;
        }
        family(
            enc,
            "live_viewer_events",
            "Viewer endings by kind",
            &self.endings,
        )?;
        family(
            enc,
            "live_heartbeats",
            "Viewer heartbeats received",
            &self.heartbeats,
        )
    }
}

/// The endings family, with a series for each kind at 0.
fn endings_by_kind() -> Family<EventLabel, Counter> {
    let endings = Family::default();
    for event in ["vanished", "left", "kicked"] {
        drop(endings.get_or_create(&EventLabel { event }));
    }
    endings
}

/// How a viewing ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Vanished,
    Left,
    Kicked,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, pos: u64) -> Heartbeat {
        Heartbeat {
            viewer_id: id.into(),
            position_ms: pos,
            user: Some("u1".into()),
            protocol: Protocol::Hls,
            state: Some("playing".into()),
            leaving: false,
            remote: None,
            token: None,
        }
    }

    #[test]
    fn a_vanished_viewer_yields_exactly_one_event() {
        let t = ViewerTracker::new(Duration::from_millis(50), 10);
        let mut rx = t.subscribe();
        t.heartbeat("c1", hb("v1", 1000)).unwrap();
        t.heartbeat("c1", hb("v1", 2000)).unwrap();
        assert_eq!(t.reap(), 0);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(t.reap(), 1);
        assert_eq!(t.reap(), 0);
        let e = rx.try_recv().unwrap();
        match e {
            ViewerEvent::Vanished(end) => {
                assert_eq!(end.position_ms, 2000);
                assert_eq!(end.user.as_deref(), Some("u1"));
                assert_eq!(end.content_id, "c1");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(rx.try_recv().is_err());
        assert!(t.snapshot().is_empty());
    }

    #[test]
    fn kicked_viewers_are_refused() {
        let t = ViewerTracker::new(Duration::from_secs(5), 10);
        t.heartbeat("c1", hb("v1", 10)).unwrap();
        assert!(t.kick("v1"));
        assert!(!t.kick("v1"));
        assert_eq!(
            t.heartbeat("c1", hb("v1", 20)),
            Err(HeartbeatRefused::Kicked)
        );
        assert_eq!(t.recent_events().len(), 1);
        assert_eq!(t.recent_events()[0].kind(), "kicked");
    }
}
