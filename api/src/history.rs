//! The admin dashboard's charts: one sample a second of every open ingest
//! session (ingest bitrate, acknowledged throughput, RTT, backlog, the
//! phone's advised bitrate, viewers) and of the whole server (sessions,
//! ingest bitrate, viewers), kept for the last [`KEEP`] samples.
//!
//! It reads the same JSON the admin lists answer (the ingest sessions'
//! cumulative byte counts and the live streams' viewer counts) and turns
//! counts into rates between two samples. I/O-free: the sampler task in
//! [`crate::admin`] calls [`History::record`] with the time.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

/// Samples kept per series: five minutes at one a second.
pub const KEEP: usize = 300;

/// What the history reads of a session (a `SessionSnapshot` of the
/// ingest, as JSON).
#[derive(Debug, Deserialize)]
struct SessionIn {
    id: String,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    durable_bytes: u64,
    #[serde(default)]
    rtt_ms: Option<f64>,
    #[serde(default)]
    backlog_frames: u64,
    #[serde(default)]
    advised_bitrate_bps: Option<u64>,
}

/// What the history reads of a live stream.
#[derive(Debug, Deserialize)]
struct StreamIn {
    session_id: String,
    #[serde(default)]
    viewers: BTreeMap<String, u64>,
}

/// One second of one session.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SessionPoint {
    /// Unix ms of the sample.
    pub t_ms: u64,
    /// Bytes received since the previous sample, as bit/s.
    pub ingest_bps: u64,
    /// Bytes made durable (acknowledged) since the previous sample, as bit/s.
    pub acked_bps: u64,
    /// Smoothed RTT of the connection, ms (none while suspended).
    pub rtt_ms: Option<f64>,
    /// Frames received and not yet durable.
    pub backlog_frames: u64,
    /// The phone's advised encoder bitrate (its last REPORT), bit/s.
    pub advised_bps: Option<u64>,
    /// Viewers of its live stream (RTSP, HLS, and VOD of it).
    pub viewers: u64,
}

/// One second of the server.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ServerPoint {
    /// Unix ms of the sample.
    pub t_ms: u64,
    /// Open ingest sessions.
    pub sessions: u64,
    /// Sum of the sessions' ingest bitrates, bit/s.
    pub ingest_bps: u64,
    /// Viewers of every live stream.
    pub viewers: u64,
}

/// One sample of everything (what the dashboard's event stream sends).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The server's point.
    pub server: ServerPoint,
    /// Each session's point, by session id.
    pub sessions: BTreeMap<String, SessionPoint>,
}

/// The series kept (what `GET /api/v1/admin/history` answers), oldest
/// first.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Series {
    /// The server's points.
    pub server: Vec<ServerPoint>,
    /// Each open session's points, by session id.
    pub sessions: BTreeMap<String, Vec<SessionPoint>>,
}

/// The last counts of a session, to make rates of.
#[derive(Debug, Clone, Copy)]
struct Last {
    t_ms: u64,
    bytes: u64,
    durable_bytes: u64,
}

/// The samples of the last [`KEEP`] seconds.
#[derive(Debug, Default)]
pub struct History {
    last: HashMap<String, Last>,
    sessions: HashMap<String, VecDeque<SessionPoint>>,
    server: VecDeque<ServerPoint>,
}

/// bit/s of `bytes` over `ms`.
fn rate(bytes: u64, ms: u64) -> u64 {
    if ms == 0 {
        return 0;
    }
    (u128::from(bytes) * 8 * 1000 / u128::from(ms)) as u64
}

fn push<T>(q: &mut VecDeque<T>, v: T) {
    q.push_back(v);
    while q.len() > KEEP {
        q.pop_front();
    }
}

impl History {
    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// Take a sample at `t_ms` of `sessions` (the admin's session list)
    /// and `streams` (its live stream list). A session's first sample only
    /// sets the counts its rates start from; sessions no longer listed are
    /// forgotten. Entries that do not parse are skipped.
    pub fn record(
        &mut self,
        t_ms: u64,
        sessions: &serde_json::Value,
        streams: &serde_json::Value,
    ) -> Sample {
        let streams: Vec<StreamIn> = parse_list(streams);
        let viewers: HashMap<&str, u64> = streams
            .iter()
            .map(|s| (s.session_id.as_str(), s.viewers.values().sum()))
            .collect();
        let sessions: Vec<SessionIn> = parse_list(sessions);
        let mut points = BTreeMap::new();
        for s in &sessions {
            let now = Last {
                t_ms,
                bytes: s.bytes,
                durable_bytes: s.durable_bytes,
            };
            let Some(prev) = self.last.insert(s.id.clone(), now) else {
                continue;
            };
            let ms = t_ms.saturating_sub(prev.t_ms);
            let point = SessionPoint {
                t_ms,
                ingest_bps: rate(s.bytes.saturating_sub(prev.bytes), ms),
                acked_bps: rate(s.durable_bytes.saturating_sub(prev.durable_bytes), ms),
                rtt_ms: s.rtt_ms.filter(|r| r.is_finite()),
                backlog_frames: s.backlog_frames,
                advised_bps: s.advised_bitrate_bps,
                viewers: viewers.get(s.id.as_str()).copied().unwrap_or(0),
            };
            push(
                self.sessions.entry(s.id.clone()).or_default(),
                point.clone(),
            );
            points.insert(s.id.clone(), point);
        }
        let open: std::collections::HashSet<&str> =
            sessions.iter().map(|s| s.id.as_str()).collect();
        self.last.retain(|id, _| open.contains(id.as_str()));
        self.sessions.retain(|id, _| open.contains(id.as_str()));
        let server = ServerPoint {
            t_ms,
            sessions: sessions.len() as u64,
            ingest_bps: points.values().map(|p| p.ingest_bps).sum(),
            viewers: viewers.values().sum(),
        };
        push(&mut self.server, server.clone());
        Sample {
            server,
            sessions: points,
        }
    }

    /// Every point kept, oldest first.
    pub fn series(&self) -> Series {
        Series {
            server: self.server.iter().cloned().collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(id, q)| (id.clone(), q.iter().cloned().collect()))
                .collect(),
        }
    }
}

/// The entries of a JSON list that parse as `T`.
fn parse_list<T: for<'de> Deserialize<'de>>(v: &serde_json::Value) -> Vec<T> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| serde_json::from_value(e.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(id: &str, bytes: u64, durable: u64) -> serde_json::Value {
        json!({"id": id, "bytes": bytes, "durable_bytes": durable, "rtt_ms": 12.5,
               "backlog_frames": 3, "advised_bitrate_bps": 1_500_000, "state": "connected"})
    }

    #[test]
    fn counts_become_rates_between_samples() {
        let mut h = History::new();
        let streams = json!([{"session_id": "a", "viewers": {"rtsp": 1, "hls": 2}}]);
        // The first sample of a session only sets where its rates start.
        let s = h.record(1_000, &json!([session("a", 1_000, 0)]), &streams);
        assert!(s.sessions.is_empty());
        assert_eq!(s.server.sessions, 1);
        assert_eq!(s.server.viewers, 3);
        // 250 kB in 2 s = 1 Mbit/s received, 125 kB durable = 500 kbit/s.
        let s = h.record(3_000, &json!([session("a", 251_000, 125_000)]), &streams);
        let p = &s.sessions["a"];
        assert_eq!((p.ingest_bps, p.acked_bps), (1_000_000, 500_000));
        assert_eq!(
            (p.rtt_ms, p.backlog_frames, p.advised_bps, p.viewers),
            (Some(12.5), 3, Some(1_500_000), 3)
        );
        assert_eq!(s.server.ingest_bps, 1_000_000);
        assert_eq!(h.series().sessions["a"].len(), 1);
        assert_eq!(h.series().server.len(), 2);
    }

    #[test]
    fn ended_sessions_are_forgotten_and_series_are_bounded() {
        let mut h = History::new();
        for i in 0..(KEEP as u64 + 10) {
            h.record(
                i * 1000,
                &json!([session("a", i * 100, i * 100)]),
                &json!([]),
            );
        }
        let series = h.series();
        assert_eq!(series.server.len(), KEEP);
        assert_eq!(series.sessions["a"].len(), KEEP);
        assert_eq!(series.sessions["a"][0].ingest_bps, 800);
        h.record(1_000_000, &json!([]), &json!([]));
        assert!(h.series().sessions.is_empty());
        // Back after being forgotten: starts again from its counts.
        let s = h.record(1_001_000, &json!([session("a", 10, 10)]), &json!([]));
        assert!(s.sessions.is_empty());
    }

    #[test]
    fn odd_input_is_skipped_not_fatal() {
        let mut h = History::new();
        let bad = json!([{"id": 5}, "x", {"no": "id"}, session("b", 0, 0)]);
        let s = h.record(0, &bad, &json!({"not": "a list"}));
        assert_eq!(s.server.sessions, 1);
        // Counters that went backwards (a replayed journal) give 0, not a
        // huge number; two samples at the same time give 0.
        let s = h.record(0, &json!([session("b", 100, 100)]), &json!([]));
        assert_eq!(s.sessions["b"].ingest_bps, 0);
        let s = h.record(1000, &json!([session("b", 50, 50)]), &json!([]));
        assert_eq!(s.sessions["b"].ingest_bps, 0);
    }
}
