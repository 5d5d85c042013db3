//! Ingest counters as `prometheus-client` metrics: [`IngestMetrics`] holds
//! them, and [`IngestServer::register_metrics`](crate::IngestServer::register_metrics)
//! exposes them, with the gauges read at scrape time (sessions, the UDP
//! socket), under the registry's prefix (`sharecast` in the server).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use sharecast_formats::ingest::{ErrorCode, HELLO_FIELDS};
use sharecast_metrics::family;

use crate::limiter::Scope;
use crate::udp::UdpBuffers;

/// Error codes are numbered below this (`ok` is 0 and never a rejection).
const CODES: u16 = 19;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScopeLabel {
    scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Why an RTMP or SRT connection ended before its publisher finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishEnd {
    /// No valid RTMP handshake (garbage, or none within
    /// `hello_timeout_secs`), or an SRT connection that could not be set
    /// up after it was accepted.
    Handshake,
    /// RTMP messages the session cannot read, or in the wrong order.
    Protocol,
    /// An unknown or revoked stream key (or no key in an SRT stream id).
    Unauthorized,
    /// A stream key backing off, or an address penalised, by the
    /// failed-authentication limits.
    RateLimited,
    /// Media the server cannot take (codec, sequence headers; for SRT, a
    /// stream that is not an MPEG transport stream of H.264 and AAC).
    Media,
    /// The session refused a frame or could not open (limits, codecs).
    Session,
    /// A play (RTMP) or read (SRT `m=request`) request: the ingest takes
    /// publishers only.
    Play,
    /// No data for `stall_timeout_secs`.
    Stalled,
    /// The connection closed or was superseded by the same key's newer
    /// one (the session waits for the publisher to rejoin).
    Closed,
}

impl PublishEnd {
    const ALL: [PublishEnd; 9] = [
        PublishEnd::Handshake,
        PublishEnd::Protocol,
        PublishEnd::Unauthorized,
        PublishEnd::RateLimited,
        PublishEnd::Media,
        PublishEnd::Session,
        PublishEnd::Play,
        PublishEnd::Stalled,
        PublishEnd::Closed,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            PublishEnd::Handshake => "handshake",
            PublishEnd::Protocol => "protocol",
            PublishEnd::Unauthorized => "unauthorized",
            PublishEnd::RateLimited => "rate_limited",
            PublishEnd::Media => "media",
            PublishEnd::Session => "session",
            PublishEnd::Play => "play",
            PublishEnd::Stalled => "stalled",
            PublishEnd::Closed => "closed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FieldLabel {
    field: &'static str,
}

/// The unlabelled counters of [`IngestMetrics::counters`], in its order:
/// name (without `_total`, which the encoder adds) and help text.
const COUNTERS: [(&str, &str); 22] = [
    (
        "ingest_connections",
        "QUIC connections accepted",
    ),
    (
        "ingest_rtmp_connections",
        "RTMP connections accepted",
    ),
    (
        "ingest_srt_connections",
        "SRT connection requests taken (each one authenticated, then accepted or refused)",
    ),
    (
        "ingest_srt_dropped_packets",
        "SRT packets a publisher sent that arrived too late for the SRT latency (or never) and were dropped (read at each connection's end)",
    ),
    (
        "ingest_connections_over_limit",
        "Ingest connections (QUIC, RTMP or SRT) refused because max_connections were open",
    ),
    (
        "ingest_handshakes_failed",
        "QUIC/TLS handshakes that failed (wrong ALPN, TLS errors, timeouts)",
    ),
    (
        "ingest_sessions_started",
        "Ingest sessions opened",
    ),
    (
        "ingest_sessions_resumed",
        "Sessions resumed on a new connection",
    ),
    (
        "ingest_sessions_finished",
        "Sessions finalised",
    ),
    (
        "ingest_sessions_recovered",
        "Sessions recovered from journals at start-up",
    ),
    (
        "ingest_sessions_failed",
        "Sessions whose outputs failed",
    ),
    (
        "ingest_sessions_stopped",
        "Sessions stopped by an error whose client action is stop (finalised with what they hold, not resumable)",
    ),
    (
        "ingest_errors_sent",
        "ERROR messages sent to phones before closing their connection",
    ),
    (
        "ingest_errors_acknowledged",
        "ERROR messages the phone acknowledged before the connection closed",
    ),
    (
        "ingest_frames_received",
        "Frames received, duplicates included",
    ),
    (
        "ingest_frames_duplicate",
        "Frames received that were already held",
    ),
    (
        "ingest_bytes_received",
        "Frame bytes received",
    ),
    (
        "ingest_journal_commits",
        "Journal commit rounds (one sync for the frames of every session in the round)",
    ),
    (
        "ingest_journal_frames",
        "Frames made durable",
    ),
    (
        "ingest_journal_sync_microseconds",
        "Time spent in journal commit rounds (writes and sync)",
    ),
    (
        "ingest_storage_full",
        "Journal writes refused because the disk was full (one per session and commit round; none of their frames acknowledged)",
    ),
    (
        "ingest_storage_full_episodes",
        "Times the journals' filesystem became full (each logged once)",
    ),
];

/// Counters of the ingest server.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// QUIC connections accepted.
    pub connections: Counter,
    /// RTMP connections accepted.
    pub rtmp_connections: Counter,
    /// SRT connection requests taken (within `max_connections`).
    pub srt_connections: Counter,
    /// SRT packets dropped by the receiver (too late for the latency).
    pub srt_dropped_packets: Counter,
    /// Connections refused because `max_connections` were open.
    pub connections_over_limit: Counter,
    /// Handshakes that failed (wrong ALPN, TLS errors, timeouts).
    pub handshakes_failed: Counter,
    /// Sessions opened.
    pub sessions_started: Counter,
    /// Sessions resumed on a new connection.
    pub sessions_resumed: Counter,
    /// Sessions finalised into outputs.
    pub sessions_finished: Counter,
    /// Sessions recovered from journals at start-up.
    pub sessions_recovered: Counter,
    /// Sessions whose outputs failed.
    pub sessions_failed: Counter,
    /// Sessions stopped by an error whose client action is "stop"
    /// (finalised with what they hold, not resumable).
    pub sessions_stopped: Counter,
    /// ERROR messages queued to phones (each followed by a close).
    pub errors_sent: Counter,
    /// ERROR messages the phone acknowledged before the connection closed.
    pub errors_acknowledged: Counter,
    /// Frames received (including duplicates).
    pub frames_received: Counter,
    /// Frames received again that were already held (after a resume).
    pub frames_duplicate: Counter,
    /// Frame bytes received.
    pub bytes_received: Counter,
    /// Journal commit rounds.
    pub journal_commits: Counter,
    /// Frames made durable.
    pub journal_frames: Counter,
    /// Time spent in commit rounds (writes and sync), microseconds.
    pub journal_sync_us: Counter,
    /// Longest commit round so far, microseconds.
    pub journal_round_max_us: Gauge<u64, AtomicU64>,
    /// Journal writes refused for lack of space (one per session and
    /// round).
    pub storage_full: Counter,
    /// Times the journals' filesystem became full.
    pub storage_full_episodes: Counter,
    refusals: Refusals,
}

/// The labelled counters, every label value present (at 0) from the start.
#[derive(Debug)]
struct Refusals {
    /// Inputs rejected, by error code.
    rejected: Family<CodeLabel, Counter>,
    /// `rate_limited` answers of the failed-authentication limiter, by
    /// scope (token, address).
    auth_refused: Family<ScopeLabel, Counter>,
    /// Token backoffs and address penalties started, by scope.
    auth_backoffs: Family<ScopeLabel, Counter>,
    /// HELLOs refused for a field out of bounds, by field.
    hello_refused: Family<FieldLabel, Counter>,
    /// RTMP connections that ended before their publisher finished, by
    /// reason.
    rtmp_ended: Family<ReasonLabel, Counter>,
    /// SRT connections that ended before their publisher finished (or were
    /// refused), by reason.
    srt_ended: Family<ReasonLabel, Counter>,
}

impl Default for Refusals {
    fn default() -> Self {
        let scopes = [Scope::Token, Scope::Address].map(|s| ScopeLabel { scope: s.name() });
        Refusals {
            rejected: listed(
                (1..CODES)
                    .filter_map(ErrorCode::from_u16)
                    .map(|c| CodeLabel { code: c.name() }),
            ),
            auth_refused: listed(scopes.clone()),
            auth_backoffs: listed(scopes),
            hello_refused: listed(HELLO_FIELDS.map(|field| FieldLabel { field })),
            rtmp_ended: listed(PublishEnd::ALL.map(|r| ReasonLabel { reason: r.name() })),
            srt_ended: listed(PublishEnd::ALL.map(|r| ReasonLabel { reason: r.name() })),
        }
    }
}

/// A family with a series for each of `labels`, at 0.
fn listed<L: Clone + std::hash::Hash + Eq>(
    labels: impl IntoIterator<Item = L>,
) -> Family<L, Counter> {
    let family = Family::default();
    for label in labels {
        drop(family.get_or_create(&label));
    }
    family
}

/// Adds one to the series of `family` labelled `label`, when it has one:
/// only the label values listed from the start are counted.
fn count<L: Clone + std::hash::Hash + Eq>(family: &Family<L, Counter>, label: &L) {
    if let Some(c) = family.get(label) {
        c.inc();
    }
}

/// The value of the series of `family` labelled `label` (0 when none).
fn value<L: Clone + std::hash::Hash + Eq>(family: &Family<L, Counter>, label: &L) -> u64 {
    family.get(label).map(|c| c.get()).unwrap_or(0)
}

impl IngestMetrics {
    /// Count a rejected input by error code.
    pub fn reject(&self, code: ErrorCode) {
        count(&self.refusals.rejected, &CodeLabel { code: code.name() });
    }

    /// Count a `rate_limited` answer of the failed-authentication limiter.
    pub fn auth_refused(&self, scope: Scope) {
        let label = ScopeLabel {
            scope: scope.name(),
        };
        count(&self.refusals.auth_refused, &label);
    }

    /// `rate_limited` answers so far for a scope.
    pub fn auth_refusals(&self, scope: Scope) -> u64 {
        let label = ScopeLabel {
            scope: scope.name(),
        };
        value(&self.refusals.auth_refused, &label)
    }

    /// Count a token backoff or address penalty that started.
    pub fn auth_backoff(&self, scope: Scope) {
        let label = ScopeLabel {
            scope: scope.name(),
        };
        count(&self.refusals.auth_backoffs, &label);
    }

    /// Count a HELLO refused for `field` (one of [`HELLO_FIELDS`]).
    pub fn hello_refused(&self, field: &str) {
        if let Some(field) = HELLO_FIELDS.into_iter().find(|f| *f == field) {
            count(&self.refusals.hello_refused, &FieldLabel { field });
        }
    }

    /// HELLOs refused so far for `field`.
    pub fn hello_refusals(&self, field: &str) -> u64 {
        HELLO_FIELDS
            .into_iter()
            .find(|f| *f == field)
            .map(|field| value(&self.refusals.hello_refused, &FieldLabel { field }))
            .unwrap_or(0)
    }

    /// Count an RTMP connection that ended before its publisher finished.
    pub fn rtmp_ended(&self, reason: PublishEnd) {
        count(
            &self.refusals.rtmp_ended,
            &ReasonLabel {
                reason: reason.name(),
            },
        );
    }

    /// Count an SRT connection that was refused or ended before its
    /// publisher finished.
    pub fn srt_ended(&self, reason: PublishEnd) {
        count(
            &self.refusals.srt_ended,
            &ReasonLabel {
                reason: reason.name(),
            },
        );
    }

    /// RTMP connections so far that ended for `reason`.
    pub fn rtmp_endings(&self, reason: PublishEnd) -> u64 {
        value(
            &self.refusals.rtmp_ended,
            &ReasonLabel {
                reason: reason.name(),
            },
        )
    }

    /// Rejections so far for a code.
    pub fn rejected(&self, code: ErrorCode) -> u64 {
        value(&self.refusals.rejected, &CodeLabel { code: code.name() })
    }

    /// Count a journal commit round that took `took_us` microseconds
    /// (writes and sync).
    pub fn journal_round(&self, took_us: u64) {
        self.journal_commits.inc();
        self.journal_sync_us.inc_by(took_us);
        self.journal_round_max_us
            .inner()
            .fetch_max(took_us, Ordering::Relaxed);
    }

    /// The unlabelled counters, in the order of [`COUNTERS`].
    fn counters(&self) -> [&Counter; 22] {
        [
            &self.connections,
            &self.rtmp_connections,
            &self.srt_connections,
            &self.srt_dropped_packets,
            &self.connections_over_limit,
            &self.handshakes_failed,
            &self.sessions_started,
            &self.sessions_resumed,
            &self.sessions_finished,
            &self.sessions_recovered,
            &self.sessions_failed,
            &self.sessions_stopped,
            &self.errors_sent,
            &self.errors_acknowledged,
            &self.frames_received,
            &self.frames_duplicate,
            &self.bytes_received,
            &self.journal_commits,
            &self.journal_frames,
            &self.journal_sync_us,
            &self.storage_full,
            &self.storage_full_episodes,
        ]
    }

    /// Encodes the counters and the labelled families.
    fn encode_counters(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        for ((name, help), counter) in COUNTERS.into_iter().zip(self.counters()) {
            family(enc, name, help, counter)?;
        }
        let r = &self.refusals;
        family(
            enc,
            "ingest_rejected",
            "Inputs rejected by the ingest server, by error code",
            &r.rejected,
        )?;
        family(
            enc,
            "ingest_auth_refused",
            "HELLOs answered rate_limited by the failed-authentication limits (token: backing off, refused without lookup; address: a failure from a penalised address)",
            &r.auth_refused,
        )?;
        family(
            enc,
            "ingest_auth_backoffs",
            "Token backoffs and address penalties started by failed authentications",
            &r.auth_backoffs,
        )?;
        family(
            enc,
            "ingest_hello_refused",
            "HELLOs refused because a field is out of bounds, by field",
            &r.hello_refused,
        )?;
        family(
            enc,
            "ingest_rtmp_ended",
            "RTMP connections that ended before their publisher finished, by reason (closed: the publisher may rejoin)",
            &r.rtmp_ended,
        )?;
        family(
            enc,
            "ingest_srt_ended",
            "SRT connections refused or ended before their publisher finished, by reason (closed: the publisher may rejoin)",
            &r.srt_ended,
        )?;
        family(
            enc,
            "ingest_journal_round_max_microseconds",
            "Longest journal commit round so far (writes and sync)",
            &self.journal_round_max_us,
        )
    }
}

/// Counts the sessions open and those with a live connection.
pub(crate) type SessionCounts = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

/// Ingest's families on `/metrics`: the counters, and the gauges read at
/// each scrape.
pub(crate) struct IngestCollector {
    pub(crate) metrics: Arc<IngestMetrics>,
    pub(crate) sessions: SessionCounts,
    pub(crate) udp: UdpBuffers,
}

impl fmt::Debug for IngestCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestCollector")
            .field("metrics", &self.metrics)
            .field("udp", &self.udp)
            .finish_non_exhaustive()
    }
}

impl Collector for IngestCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        self.metrics.encode_counters(&mut enc)?;
        let (active, connected) = (self.sessions)();
        family(
            &mut enc,
            "ingest_sessions_active",
            "Sessions open (connected or waiting for resume)",
            &ConstGauge::new(active),
        )?;
        family(
            &mut enc,
            "ingest_sessions_connected",
            "Sessions with a live connection",
            &ConstGauge::new(connected),
        )?;
        family(
            &mut enc,
            "ingest_udp_receive_buffer_bytes",
            "Receive buffer of the ingest UDP socket as the kernel reports it (ingest.udp_buffer_bytes)",
            &ConstGauge::new(self.udp.receive),
        )?;
        family(
            &mut enc,
            "ingest_udp_gso_segments",
            "Datagrams the ingest socket sends in one system call (UDP GSO; 1: no offload)",
            &ConstGauge::new(self.udp.gso_segments),
        )?;
        family(
            &mut enc,
            "ingest_udp_gro_segments",
            "Datagrams the ingest socket receives in one system call (UDP GRO; 1: no offload)",
            &ConstGauge::new(self.udp.gro_segments),
        )?;
        if let Some(drops) = crate::udp::drops(self.udp.inode) {
            family(
                &mut enc,
                "ingest_udp_receive_drops",
                "Datagrams the kernel dropped on the ingest socket (receive buffer full)",
                &ConstCounter::new(drops),
            )?;
        }
        Ok(())
    }
}
