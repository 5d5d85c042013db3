//! Ingest configuration. Every limit is a named value with a default; the
//! defaults are documented here and in `docs/sharecast.example.toml`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use sharecast_formats::ingest::HelloLimits;

pub use crate::committer::JournalSync;
use crate::limiter::AuthLimits;

/// Configuration of the QUIC ingest server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// UDP address to listen on. Default `0.0.0.0:4433`.
    pub listen: String,
    /// TCP address of the RTMP ingest, for publishers that speak RTMP
    /// (OBS, Larix Broadcaster, ffmpeg): `rtmp://HOST:PORT/live/<key>`,
    /// the key being a publishing key of a device. Empty: no RTMP. Default empty: RTMP
    /// has no encryption and carries the key in clear, so it is opt-in
    /// (`docs/publishing.md`).
    pub rtmp_listen: String,
    /// UDP address of the SRT ingest, for publishers that send an MPEG
    /// transport stream (H.264 and AAC) over SRT (ffmpeg, OBS, Larix):
    /// `srt://HOST:PORT?streamid=<key>`, the stream id carrying a
    /// publishing key (also as `#!::r=<key>,m=publish` or `publish:<key>`).
    /// One port serves every publisher. Empty: no SRT. Default empty
    /// (opt-in like RTMP; SRT's own encryption is not used, so the key
    /// travels in clear), e.g. "0.0.0.0:8890".
    pub srt_listen: String,
    /// The SRT receive latency in milliseconds: how long a packet may take
    /// to arrive, resends included, before SRT's live mode drops it (the
    /// publisher's own latency is used when it asks for more). Larger
    /// keeps more frames on a bad link and delays the live stream by as
    /// much. Default 1000 (SRT's own default, 120, loses what a mobile
    /// link resends later than that).
    pub srt_latency_ms: u64,
    /// Seconds an RTMP or SRT publisher whose connection dropped (not one
    /// that finished: RTMP's `FCUnpublish`, SRT's SHUTDOWN) has to come
    /// back with the same key and continue the same recording; after that
    /// the session is finalised into its VOD. Default 60.
    pub rejoin_window_secs: u64,
    /// PEM certificate chain. Empty: use (or generate) a self-signed
    /// certificate under `<data_dir>/tls/`.
    pub cert_chain: String,
    /// PEM private key matching `cert_chain`.
    pub private_key: String,
    /// Largest frame accepted, bytes. Default 4 MiB.
    pub max_frame_bytes: u32,
    /// Highest average bitrate of one session over a 10 s window, bits per
    /// second. Default 40 Mbit/s.
    pub max_bitrate_bps: u64,
    /// Longest session, seconds (by capture timestamps). Default 4 hours.
    /// Every timestamp of a session must also lie within this span of its
    /// first frame's, either way (`session_too_long`).
    pub max_session_secs: u64,
    /// Frame streams one connection may have open at once (QUIC stream
    /// credit: a client opening more waits until one ends). Each holds at
    /// most one partial frame in memory, so a connection buffers at most
    /// this many times `max_frame_bytes`. Default 16 (the reference client
    /// uses 2).
    pub max_frame_streams: u32,
    /// Sessions a device may have open at once. Default 4.
    pub max_sessions_per_device: usize,
    /// Failed authentications (unknown or revoked token) of one token within
    /// `auth_failure_window_secs` before the token backs off: HELLOs
    /// presenting it are then refused with `rate_limited` without being
    /// looked up. Default 5.
    pub auth_failures_per_token: u32,
    /// Failed authentications (and wrong resume secrets) from one address
    /// (IPv4, or IPv6 /64) within `auth_failure_window_secs` before the
    /// address is penalised: its failures are answered `rate_limited`, and a
    /// token failing from it backs off at once. Tokens from a penalised
    /// address are still checked: a correct one always gets in (carrier NAT
    /// puts thousands of phones behind one address). Default 30.
    pub auth_failures_per_address: u32,
    /// The window failed authentications are counted in, seconds. Default 60.
    pub auth_failure_window_secs: u64,
    /// First backoff of a token, and first penalty of an address, seconds;
    /// each failure after one has ended starts the next, twice as long.
    /// Default 30.
    pub auth_backoff_secs: u64,
    /// Longest backoff or penalty, seconds. Default 900.
    pub auth_backoff_max_secs: u64,
    /// Most tokens, and most addresses, whose failures are tracked at once
    /// (memory bound; beyond it, failures are answered without tracking).
    /// Default 100 000.
    pub auth_max_tracked: usize,
    /// Ingest connections (QUIC, RTMP and SRT together) open at once; one
    /// more is refused before its handshake (QUIC: CONNECTION_REFUSED;
    /// RTMP: the TCP connection is closed; SRT: rejected as overloaded) and
    /// counted in
    /// `sharecast_ingest_connections_over_limit_total`. Default 2000.
    pub max_connections: usize,
    /// After an ERROR, how long the server waits for the phone to
    /// acknowledge it before it closes the connection, ms. Default 2000.
    pub error_linger_ms: u64,
    /// Seconds to wait for HELLO after a connection opens. Default 10.
    pub hello_timeout_secs: u64,
    /// Seconds a stream may stay in the middle of a frame or message without
    /// progress before the client is considered stalled. Default 15.
    pub stall_timeout_secs: u64,
    /// Seconds a disconnected session waits for its phone to resume before it
    /// is finalised into a VOD. Default 60.
    pub resume_timeout_secs: u64,
    /// Seconds the server waits after END for frames END announced. Default 30.
    pub end_wait_secs: u64,
    /// QUIC idle timeout, seconds. Default 10.
    pub idle_timeout_secs: u64,
    /// Most frames of one session written by one journal commit round.
    /// Default 512.
    pub journal_batch_frames: usize,
    /// Journal commit rounds (one write per session with waiting frames,
    /// then one sync for all of them) start at most this often, ms. Under
    /// load a round takes everything that arrived during the previous one;
    /// at light load a frame waits at most this long before its write. 0
    /// starts a round as soon as a frame waits. Default 20.
    pub journal_commit_delay_ms: u64,
    /// How a commit round is made durable: `"filesystem"` (one `syncfs` of
    /// the journals' filesystem per round; Linux, elsewhere the same as
    /// `"file"`) or `"file"` (one `fdatasync` per journal written by the
    /// round). Default `"filesystem"`. `syncfs` also flushes whatever else
    /// is dirty on that filesystem: keep `data_dir` on a filesystem of its
    /// own, or use `"file"` when other programs write heavily beside it.
    pub journal_sync: JournalSync,
    /// Receive and send buffer asked for the ingest UDP socket, bytes.
    /// Every phone's packets arrive on this one socket: a buffer too small
    /// for the bursts between two reads drops datagrams, and each drop costs
    /// its phone a QUIC loss recovery (hundreds of ms of acknowledgement
    /// latency, and a resend). The kernel caps the size at
    /// `net.core.rmem_max` / `wmem_max` unless the server may force it
    /// (CAP_NET_ADMIN); the size obtained is logged at start-up, with a
    /// warning when it is smaller than asked, and exported as
    /// `sharecast_ingest_udp_receive_buffer_bytes`. 0 keeps the system
    /// default. Default 8 MiB.
    pub udp_buffer_bytes: usize,
    /// Bounds on the fields of HELLO (`[ingest.hello]`,
    /// docs/ingest-protocol.md section 4.1); a HELLO outside them is
    /// refused with `bad_message` naming the field and the bound.
    pub hello: HelloLimits,
}

impl IngestConfig {
    /// The failed-authentication limits.
    pub fn auth_limits(&self) -> AuthLimits {
        AuthLimits {
            failures_per_token: self.auth_failures_per_token,
            failures_per_address: self.auth_failures_per_address,
            window: Duration::from_secs(self.auth_failure_window_secs),
            backoff: Duration::from_secs(self.auth_backoff_secs),
            backoff_max: Duration::from_secs(self.auth_backoff_max_secs),
            max_tracked: self.auth_max_tracked,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:4433".into(),
            rtmp_listen: String::new(),
            srt_listen: String::new(),
            srt_latency_ms: 1000,
            rejoin_window_secs: 60,
            cert_chain: String::new(),
            private_key: String::new(),
            max_frame_bytes: 4 * 1024 * 1024,
            max_bitrate_bps: 40_000_000,
            max_session_secs: 4 * 3600,
            max_frame_streams: 16,
            max_sessions_per_device: 4,
            auth_failures_per_token: 5,
            auth_failures_per_address: 30,
            auth_failure_window_secs: 60,
            auth_backoff_secs: 30,
            auth_backoff_max_secs: 900,
            auth_max_tracked: 100_000,
            max_connections: 2000,
            error_linger_ms: 2000,
            hello_timeout_secs: 10,
            stall_timeout_secs: 15,
            resume_timeout_secs: 60,
            end_wait_secs: 30,
            idle_timeout_secs: 10,
            journal_batch_frames: 512,
            journal_commit_delay_ms: 20,
            journal_sync: JournalSync::Filesystem,
            udp_buffer_bytes: 8 * 1024 * 1024,
            hello: HelloLimits::default(),
        }
    }
}
