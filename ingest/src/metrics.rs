//! Ingest counters, rendered in Prometheus text format by [`IngestMetrics::render`].

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use sharecast_formats::ingest::{ErrorCode, HELLO_FIELDS};

use crate::limiter::Scope;

const CODES: usize = 18;

/// Counters of the ingest server.
#[derive(Default)]
pub struct IngestMetrics {
    /// QUIC connections accepted.
    pub connections: AtomicU64,
    /// Handshakes that failed (wrong ALPN, TLS errors, timeouts).
    pub handshakes_failed: AtomicU64,
    /// Sessions opened.
    pub sessions_started: AtomicU64,
    /// Sessions resumed on a new connection.
    pub sessions_resumed: AtomicU64,
    /// Sessions finalised into outputs.
    pub sessions_finished: AtomicU64,
    /// Sessions recovered from journals at start-up.
    pub sessions_recovered: AtomicU64,
    /// Sessions whose outputs failed.
    pub sessions_failed: AtomicU64,
    /// Sessions stopped by an error whose client action is "stop"
    /// (finalised with what they hold, not resumable).
    pub sessions_stopped: AtomicU64,
    /// ERROR messages queued to phones (each followed by a close).
    pub errors_sent: AtomicU64,
    /// ERROR messages the phone acknowledged before the connection closed.
    pub errors_acknowledged: AtomicU64,
    /// Frames received (including duplicates).
    pub frames_received: AtomicU64,
    /// Frames received again that were already held (after a resume).
    pub frames_duplicate: AtomicU64,
    /// Frame bytes received.
    pub bytes_received: AtomicU64,
    /// Journal commit rounds.
    pub journal_commits: AtomicU64,
    /// Frames made durable.
    pub journal_frames: AtomicU64,
    /// Time spent in commit rounds (writes and sync), microseconds.
    pub journal_sync_us: AtomicU64,
    /// Longest commit round so far, microseconds.
    pub journal_round_max_us: AtomicU64,
    rejected: [AtomicU64; CODES],
    /// `rate_limited` answers of the failed-authentication limiter, by
    /// scope (token, address).
    auth_refused: [AtomicU64; 2],
    /// Token backoffs and address penalties started, by scope.
    auth_backoffs: [AtomicU64; 2],
    /// HELLOs refused for a field out of bounds, by field.
    hello_refused: [AtomicU64; HELLO_FIELDS.len()],
}

fn scope_index(s: Scope) -> usize {
    match s {
        Scope::Token => 0,
        Scope::Address => 1,
    }
}

impl IngestMetrics {
    /// Count a rejected input by error code.
    pub fn reject(&self, code: ErrorCode) {
        if let Some(c) = self.rejected.get(code.as_u16() as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count a `rate_limited` answer of the failed-authentication limiter.
    pub fn auth_refused(&self, scope: Scope) {
        self.auth_refused[scope_index(scope)].fetch_add(1, Ordering::Relaxed);
    }

    /// `rate_limited` answers so far for a scope.
    pub fn auth_refusals(&self, scope: Scope) -> u64 {
        self.auth_refused[scope_index(scope)].load(Ordering::Relaxed)
    }

    /// Count a token backoff or address penalty that started.
    pub fn auth_backoff(&self, scope: Scope) {
        self.auth_backoffs[scope_index(scope)].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a HELLO refused for `field` (one of [`HELLO_FIELDS`]).
    pub fn hello_refused(&self, field: &str) {
        if let Some(i) = HELLO_FIELDS.iter().position(|f| *f == field) {
            self.hello_refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// HELLOs refused so far for `field`.
    pub fn hello_refusals(&self, field: &str) -> u64 {
        HELLO_FIELDS
            .iter()
            .position(|f| *f == field)
            .map(|i| self.hello_refused[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Rejections so far for a code.
    pub fn rejected(&self, code: ErrorCode) -> u64 {
        self.rejected
            .get(code.as_u16() as usize)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Append Prometheus text for these counters.
    pub fn render(&self, out: &mut String, active_sessions: usize, connected_sessions: usize) {
        let counters: [(&str, &str, &AtomicU64); 16] = [
            (
                "sharecast_ingest_connections_total",
                "QUIC connections accepted",
                &self.connections,
            ),
            (
                "sharecast_ingest_handshakes_failed_total",
                "QUIC/TLS handshakes that failed (wrong ALPN, TLS errors, timeouts)",
                &self.handshakes_failed,
            ),
            (
                "sharecast_ingest_sessions_started_total",
                "Ingest sessions opened",
                &self.sessions_started,
            ),
            (
                "sharecast_ingest_sessions_resumed_total",
                "Sessions resumed on a new connection",
                &self.sessions_resumed,
            ),
            (
                "sharecast_ingest_sessions_finished_total",
                "Sessions finalised",
                &self.sessions_finished,
            ),
            (
                "sharecast_ingest_sessions_recovered_total",
                "Sessions recovered from journals at start-up",
                &self.sessions_recovered,
            ),
            (
                "sharecast_ingest_sessions_failed_total",
                "Sessions whose outputs failed",
                &self.sessions_failed,
            ),
            (
                "sharecast_ingest_sessions_stopped_total",
                "Sessions stopped by an error whose client action is stop (finalised with what they hold, not resumable)",
                &self.sessions_stopped,
            ),
            (
                "sharecast_ingest_errors_sent_total",
                "ERROR messages sent to phones before closing their connection",
                &self.errors_sent,
            ),
            (
                "sharecast_ingest_errors_acknowledged_total",
                "ERROR messages the phone acknowledged before the connection closed",
                &self.errors_acknowledged,
            ),
            (
                "sharecast_ingest_frames_received_total",
                "Frames received, duplicates included",
                &self.frames_received,
            ),
            (
                "sharecast_ingest_frames_duplicate_total",
                "Frames received that were already held",
                &self.frames_duplicate,
            ),
            (
                "sharecast_ingest_bytes_received_total",
                "Frame bytes received",
                &self.bytes_received,
            ),
            (
                "sharecast_ingest_journal_commits_total",
                "Journal commit rounds (one sync for the frames of every session in the round)",
                &self.journal_commits,
            ),
            (
                "sharecast_ingest_journal_frames_total",
                "Frames made durable",
                &self.journal_frames,
            ),
            (
                "sharecast_ingest_journal_sync_microseconds_total",
                "Time spent in journal commit rounds (writes and sync)",
                &self.journal_sync_us,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sharecast_ingest_rejected_total Inputs rejected by the ingest server, by error code\n# TYPE sharecast_ingest_rejected_total counter"
        );
        for i in 1..CODES as u16 {
            if let Some(code) = ErrorCode::from_u16(i) {
                let _ = writeln!(
                    out,
                    "sharecast_ingest_rejected_total{{code=\"{}\"}} {}",
                    code.name(),
                    self.rejected(code)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP sharecast_ingest_auth_refused_total HELLOs answered rate_limited by the failed-authentication limits (token: backing off, refused without lookup; address: a failure from a penalised address)\n# TYPE sharecast_ingest_auth_refused_total counter"
        );
        for s in [Scope::Token, Scope::Address] {
            let _ = writeln!(
                out,
                "sharecast_ingest_auth_refused_total{{scope=\"{}\"}} {}",
                s.name(),
                self.auth_refusals(s)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sharecast_ingest_auth_backoffs_total Token backoffs and address penalties started by failed authentications\n# TYPE sharecast_ingest_auth_backoffs_total counter"
        );
        for s in [Scope::Token, Scope::Address] {
            let _ = writeln!(
                out,
                "sharecast_ingest_auth_backoffs_total{{scope=\"{}\"}} {}",
                s.name(),
                self.auth_backoffs[scope_index(s)].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sharecast_ingest_hello_refused_total HELLOs refused because a field is out of bounds, by field\n# TYPE sharecast_ingest_hello_refused_total counter"
        );
        for f in HELLO_FIELDS {
            let _ = writeln!(
                out,
                "sharecast_ingest_hello_refused_total{{field=\"{f}\"}} {}",
                self.hello_refusals(f)
            );
        }
        let _ = writeln!(
            out,
            "# HELP sharecast_ingest_journal_round_max_microseconds Longest journal commit round so far (writes and sync)\n# TYPE sharecast_ingest_journal_round_max_microseconds gauge\nsharecast_ingest_journal_round_max_microseconds {}",
            self.journal_round_max_us.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP sharecast_ingest_sessions_active Sessions open (connected or waiting for resume)\n# TYPE sharecast_ingest_sessions_active gauge\nsharecast_ingest_sessions_active {active_sessions}"
        );
        let _ = writeln!(
            out,
            "# HELP sharecast_ingest_sessions_connected Sessions with a live connection\n# TYPE sharecast_ingest_sessions_connected gauge\nsharecast_ingest_sessions_connected {connected_sessions}"
        );
    }
}
