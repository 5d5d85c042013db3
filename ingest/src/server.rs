//! The QUIC side: accept connections, run the protocol, attach connections to
//! sessions, detach and finalise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use prometheus_client::registry::Registry;
use rand::RngCore;
use serde::Serialize;
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{
    Control, ControlDecoder, End, ErrorCode, ErrorMsg, Finished, FrameDecoder, Hello, Limits,
    Welcome, ALPN, VERSION,
};
use tokio::sync::mpsc;

use crate::committer::{self, Committer, CommitterConfig};
use crate::config::IngestConfig;
use crate::journal::{self, JournalWriter, SessionMeta};
use crate::limiter::{address_key, token_key, AuthLimiter, Gate, Scope};
use crate::metrics::{IngestCollector, IngestMetrics};
use crate::session::{Lifecycle, Reject, Session, SessionLimits};
use crate::tls::{self, TlsMaterial};
use crate::{DeviceIdentity, SessionHandler, SessionInfo};

/// A point-in-time view of one session, for the admin API.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSnapshot {
    /// Session id.
    pub id: String,
    /// Device id.
    pub device_id: String,
    /// Device name.
    pub device_name: String,
    /// connected, suspended, stopped (by an error; being finalised),
    /// finishing, finished, failed.
    pub state: &'static str,
    /// Start time, Unix ms.
    pub started_unix_ms: u64,
    /// Seconds since start.
    pub age_secs: f64,
    /// Unique frames received.
    pub frames: u64,
    /// Unique bytes received.
    pub bytes: u64,
    /// Times the phone resumed the session.
    pub resumes: u64,
    /// Codecs of the tracks.
    pub codecs: Vec<String>,
    /// Video width and height, if any.
    pub width: Option<u32>,
    /// Video height.
    pub height: Option<u32>,
    /// Smoothed RTT of the current connection, ms.
    pub rtt_ms: Option<f64>,
    /// Frames received but not yet durable.
    pub backlog_frames: u64,
    /// Average ingest bitrate by capture time, bit/s.
    pub ingest_bitrate_bps: u64,
    /// Video frames per second of capture time.
    pub frame_rate: f64,
    /// Capture-to-arrival delay of the newest live frame, ms.
    pub live_delay_ms: Option<i64>,
    /// Largest capture-to-arrival delay of a live frame, ms.
    pub max_live_delay_ms: Option<i64>,
}

struct Shared {
    cfg: IngestConfig,
    data_dir: PathBuf,
    handler: Arc<dyn SessionHandler>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    metrics: Arc<IngestMetrics>,
    /// Failed authentications per token and per address.
    limiter: Mutex<AuthLimiter>,
    finished: Mutex<HashMap<String, VideoAttributes>>,
    /// Connections already refused (by stable id): a connection is refused,
    /// counted and told once, however many of its streams hit an error.
    refused: Mutex<std::collections::HashSet<usize>>,
    /// Makes every session's frames durable (group commit across sessions).
    committer: Committer,
}

/// The ingest server.
pub struct IngestServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    fingerprint: String,
    udp_buffers: crate::udp::UdpBuffers,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl IngestServer {
    /// Bind the QUIC endpoint. TLS material comes from the config or is
    /// generated under `data_dir/tls`.
    pub fn bind(
        cfg: IngestConfig,
        data_dir: &Path,
        handler: Arc<dyn SessionHandler>,
    ) -> Result<IngestServer> {
        let TlsMaterial {
            chain,
            key,
            fingerprint,
            ..
        } = tls::load_or_generate(&cfg.cert_chain, &cfg.private_key, data_dir)?;
        let mut crypto = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 with the ring provider")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("using the TLS certificate")?;
        crypto.alpn_protocols = vec![ALPN.to_vec()];
        let qcrypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .context("building the QUIC TLS config")?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(qcrypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_secs(cfg.idle_timeout_secs))
                .context("idle_timeout_secs")?,
        ));
        transport.max_concurrent_uni_streams(cfg.max_frame_streams.into());
        transport.max_concurrent_bidi_streams(4u32.into());
        transport.stream_receive_window((16u32 * 1024 * 1024).into());
        transport.receive_window((64u32 * 1024 * 1024).into());
        server_config.transport_config(Arc::new(transport));
        server_config.migration(true);
        let addr: SocketAddr = cfg
            .listen
            .parse()
            .with_context(|| format!("ingest listen address {:?}", cfg.listen))?;
        let (socket, udp_buffers) = crate::udp::bind(addr, cfg.udp_buffer_bytes)
            .context("binding the QUIC ingest socket")?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| anyhow!("the QUIC ingest needs a Tokio runtime"))?;
        let endpoint = quinn::Endpoint::new(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            runtime,
        )
        .with_context(|| format!("starting QUIC ingest on udp {addr}"))?;
        let metrics = Arc::new(IngestMetrics::default());
        let committer = Committer::start(
            CommitterConfig {
                dir: committer::journals_dir(data_dir),
                sync: cfg.journal_sync,
                min_interval: Duration::from_millis(cfg.journal_commit_delay_ms),
                batch_frames: cfg.journal_batch_frames.max(1),
            },
            metrics.clone(),
        )?;
        let limiter = AuthLimiter::new(cfg.auth_limits());
        Ok(IngestServer {
            endpoint,
            shared: Arc::new(Shared {
                cfg,
                data_dir: data_dir.to_path_buf(),
                handler,
                sessions: Mutex::new(HashMap::new()),
                metrics,
                limiter: Mutex::new(limiter),
                finished: Mutex::new(HashMap::new()),
                refused: Mutex::new(std::collections::HashSet::new()),
                committer,
            }),
            fingerprint,
            udp_buffers,
        })
    }

    /// The kernel buffers the ingest UDP socket got
    /// (`ingest.udp_buffer_bytes`).
    pub fn udp_buffers(&self) -> crate::udp::UdpBuffers {
        self.udp_buffers
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.endpoint.local_addr().context("ingest local address")
    }

    /// SHA-256 fingerprint of the server certificate (what clients pin).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Counters.
    pub fn metrics(&self) -> Arc<IngestMetrics> {
        self.shared.metrics.clone()
    }

    /// Registers ingest's families (`ingest_…`, under the registry's
    /// prefix): the counters, and the sessions and UDP socket gauges read
    /// at each scrape.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let shared = self.shared.clone();
        registry.register_collector(Box::new(IngestCollector {
            metrics: self.shared.metrics.clone(),
            sessions: Box::new(move || session_counts(&shared)),
            udp: self.udp_buffers,
        }));
    }

    /// Snapshots of the open sessions.
    pub fn sessions(&self) -> Vec<SessionSnapshot> {
        let sessions: Vec<Arc<Session>> = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        sessions.iter().map(|s| snapshot(s)).collect()
    }

    /// Whether a session is open (connected or waiting for its phone).
    pub fn has_session(&self, id: &str) -> bool {
        self.shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    /// End a session as if the phone had sent END (admin action). Returns
    /// false if no such session is open.
    pub async fn end_session(&self, id: &str) -> bool {
        let s = self
            .shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned();
        match s {
            Some(s) => {
                if let Some(c) = s
                    .connection
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take()
                {
                    c.close(ErrorCode::Ok.as_u16().into(), b"ended by an administrator");
                }
                finalise(&self.shared, &s).await.is_ok()
            }
            None => false,
        }
    }

    /// Reopen sessions whose journals have no END record (after a crash or a
    /// restart): replay their frames into fresh outputs and wait for their
    /// phones to resume, finalising them after `resume_timeout_secs`.
    pub async fn recover_sessions(&self) -> Result<usize> {
        let dir = committer::journals_dir(&self.shared.data_dir);
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(0);
        };
        let mut n = 0;
        for entry in rd.flatten() {
            let path = entry.path().join("journal");
            if !path.exists() {
                continue;
            }
            match recover_one(&self.shared, &entry.path(), &path).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(journal = %path.display(), error = %format!("{e:#}"), "could not recover session")
                }
            }
        }
        Ok(n)
    }

    /// Accept connections until the endpoint is closed.
    pub async fn run(&self) {
        while let Some(incoming) = self.endpoint.accept().await {
            let shared = self.shared.clone();
            tokio::spawn(async move {
                if let Err(e) = handle_connection(shared, incoming).await {
                    tracing::debug!(error = %format!("{e:#}"), "ingest connection ended");
                }
            });
        }
    }

    /// Stop accepting and close every connection (phones will resume after a
    /// restart).
    pub fn close(&self) {
        self.endpoint.close(
            ErrorCode::ShuttingDown.as_u16().into(),
            b"server shutting down",
        );
    }
}

/// Sessions open (connected or waiting for their phone), and those with a
/// live connection.
fn session_counts(shared: &Shared) -> (usize, usize) {
    let sessions = shared.sessions.lock().unwrap_or_else(|e| e.into_inner());
    let connected = sessions
        .values()
        .filter(|s| s.lifecycle() == Lifecycle::Connected)
        .count();
    (sessions.len(), connected)
}

fn snapshot(s: &Session) -> SessionSnapshot {
    let (frames, bytes, _) = s.counts();
    let st = s.lock();
    let backlog = st.tracks.values().map(|t| t.in_flight.len() as u64).sum();
    let resumes = st.resumes;
    let state = st.lifecycle.name();
    let span_us = st
        .first_pts
        .map(|f| st.max_pts.saturating_sub(f).max(0))
        .unwrap_or(0);
    let video = s.info.tracks.iter().find(|t| t.width.is_some());
    let video_frames = video
        .and_then(|v| st.tracks.get(&v.id))
        .map(|t| t.frames)
        .unwrap_or(0);
    let (live_delay_ms, max_live_delay_ms) = (st.live_delay_ms, st.max_live_delay_ms);
    drop(st);
    let (ingest_bitrate_bps, frame_rate) = if span_us > 0 {
        (
            (bytes as u128 * 8 * 1_000_000 / span_us as u128) as u64,
            video_frames.saturating_sub(1) as f64 * 1e6 / span_us as f64,
        )
    } else {
        (0, 0.0)
    };
    let rtt_ms = s
        .connection
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|c| c.rtt().as_secs_f64() * 1000.0);
    SessionSnapshot {
        id: s.info.id.clone(),
        device_id: s.info.device.id.clone(),
        device_name: s.info.device.name.clone(),
        state,
        started_unix_ms: s.info.started_unix_ms,
        age_secs: s.age().as_secs_f64(),
        frames,
        bytes,
        resumes,
        codecs: s.info.tracks.iter().map(|t| t.codec.clone()).collect(),
        width: video.and_then(|t| t.width),
        height: video.and_then(|t| t.height),
        rtt_ms,
        backlog_frames: backlog,
        ingest_bitrate_bps,
        frame_rate,
        live_delay_ms,
        max_live_delay_ms,
    }
}

fn limits(cfg: &IngestConfig) -> SessionLimits {
    SessionLimits {
        max_session_us: (cfg.max_session_secs as i64).saturating_mul(1_000_000),
        max_bitrate_bps: cfg.max_bitrate_bps,
    }
}

async fn recover_one(shared: &Arc<Shared>, dir: &Path, path: &Path) -> Result<bool> {
    let rec = tokio::task::spawn_blocking({
        let path = path.to_path_buf();
        move || journal::recover(&path)
    })
    .await
    .context("journal recovery task")??;
    if rec.ended {
        return Ok(false);
    }
    let meta = rec.meta;
    let info = SessionInfo {
        id: meta.id.clone(),
        device: DeviceIdentity {
            id: meta.device_id.clone(),
            name: meta.device_name.clone(),
        },
        tracks: meta.tracks.clone(),
        anchor_unix_us: meta.anchor_unix_us,
        title: meta.title.clone(),
        dir: dir.to_path_buf(),
        started_unix_ms: meta.started_unix_ms,
        recovered: true,
    };
    let output = shared.handler.open(&info).await?;
    let writer = JournalWriter::reopen(path)?;
    let session = Session::new(
        info,
        meta.secret.clone(),
        output,
        writer,
        limits(&shared.cfg),
        &shared.committer,
    );
    // Replay: every journaled frame is durable already; release in order.
    {
        let mut by_track: HashMap<u8, Vec<_>> = HashMap::new();
        for f in rec.frames {
            by_track.entry(f.track).or_default().push(f);
        }
        let mut st = session.lock();
        let mut release = Vec::new();
        for (track, mut frames) in by_track {
            frames.sort_by_key(|f| f.seq);
            frames.dedup_by_key(|f| f.seq);
            let Some(ts) = st.tracks.get_mut(&track) else {
                continue;
            };
            for f in frames {
                ts.frames += 1;
                ts.bytes += f.data.len() as u64;
                if f.seq == ts.durable_next {
                    ts.durable_next += 1;
                    ts.last_dts = Some(f.dts_us);
                    ts.live_next = ts.durable_next;
                    release.push(f);
                } else if f.seq > ts.durable_next {
                    ts.durable_ahead.insert(f.seq, f);
                }
            }
        }
        st.bytes = st.tracks.values().map(|t| t.bytes).sum();
        drop(st);
        release.sort_by_key(|f| f.dts_us);
        for f in &release {
            session.output.record(f)?;
        }
        session.ack_tx.send_replace(session.ack_state());
    }
    session.set_lifecycle(Lifecycle::Suspended);
    shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(meta.id.clone(), session.clone());
    shared.metrics.sessions_recovered.inc();
    tracing::info!(session = %meta.id, "recovered session from its journal; waiting for the phone to resume");
    spawn_resume_timer(shared.clone(), session, 0);
    Ok(true)
}

fn spawn_resume_timer(shared: Arc<Shared>, session: Arc<Session>, generation: u64) {
    let wait = Duration::from_secs(shared.cfg.resume_timeout_secs);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if session.generation.load(Ordering::SeqCst) == generation
            && session.lifecycle() == Lifecycle::Suspended
        {
            tracing::info!(session = %session.info.id, "phone did not resume in time; finalising");
            let _ = finalise(&shared, &session).await;
        }
    });
}

/// Removes a connection from the refused set when dropped.
struct ForgetRefusal(Arc<Shared>, usize);

impl Drop for ForgetRefusal {
    fn drop(&mut self) {
        self.0
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// A refusal to tell the phone: its code, a message, and for
/// `rate_limited` how long to wait.
#[derive(Debug)]
struct Refused {
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl From<Reject> for Refused {
    fn from((code, message): Reject) -> Refused {
        Refused {
            code,
            message,
            retry_after: None,
        }
    }
}

/// What the control writer sends.
// Nearly every item is a control message (ACKs); boxing them to shrink the
// rare ERROR's difference would cost an allocation per ACK.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    /// A control message.
    Msg(Control),
    /// ERROR: written, the stream finished, then (once the phone has
    /// acknowledged it, or after `error_linger_ms`) the connection closed
    /// with the code and `"<name>: <message>"` as reason.
    Error {
        msg: ErrorMsg,
        code: ErrorCode,
        reason: Vec<u8>,
    },
}

/// The sending side of a connection's control stream.
type ControlTx = mpsc::UnboundedSender<Outgoing>;

/// Reject: count it, tell the client (ERROR message, then close with the code
/// and the message as reason).
fn reject(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    ctrl: Option<&ControlTx>,
    code: ErrorCode,
    message: &str,
) {
    refuse(shared, conn, ctrl, (code, message.to_string()).into());
}

/// Reject input of an attached session. A code whose client action is
/// "stop" ([`ErrorCode::ends_session`]) also stops the session: it is
/// finalised with the frames already accepted once the connection is gone,
/// cannot be resumed and no longer counts against `max_sessions_per_device`.
fn reject_in_session(
    shared: &Arc<Shared>,
    session: &Session,
    conn: &quinn::Connection,
    ctrl: &ControlTx,
    code: ErrorCode,
    message: &str,
) {
    if code.ends_session() && session.stop(conn.stable_id(), code) {
        shared.metrics.sessions_stopped.inc();
        tracing::info!(session = %session.info.id, code = code.name(), "session stopped by an error; it will be finalised and cannot be resumed");
    }
    reject(shared, conn, Some(ctrl), code, message);
}

/// Refuse once per connection: count it, log it, send ERROR on the control
/// stream (if there is one) and close the connection once the phone has
/// acknowledged it, after `error_linger_ms` at most. Without a control
/// stream the connection is closed at once; the close carries the code and
/// the message either way.
fn refuse(shared: &Arc<Shared>, conn: &quinn::Connection, ctrl: Option<&ControlTx>, r: Refused) {
    let first = {
        let mut refused = shared.refused.lock().unwrap_or_else(|e| e.into_inner());
        // Each connection's handler removes its entry when it ends; bound
        // the set all the same.
        if refused.len() > 100_000 {
            refused.clear();
        }
        refused.insert(conn.stable_id())
    };
    if !first {
        return;
    }
    let Refused {
        code,
        message,
        retry_after,
    } = r;
    shared.metrics.reject(code);
    if code == ErrorCode::RateLimited {
        // Refusals of the failed-authentication limiter come in floods;
        // the backoff that caused them was logged when it started.
        tracing::debug!(remote = %conn.remote_address(), code = code.name(), message, "ingest rejected input");
    } else {
        tracing::warn!(remote = %conn.remote_address(), code = code.name(), message, "ingest rejected input");
    }
    let reason = format!("{}: {}", code.name(), message);
    let reason = reason.as_bytes()[..reason.len().min(512)].to_vec();
    let msg = ErrorMsg {
        code: code.as_u16(),
        message,
        retry_after_ms: retry_after.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX)),
    };
    let queued = ctrl.is_some_and(|tx| {
        tx.send(Outgoing::Error {
            msg,
            code,
            reason: reason.clone(),
        })
        .is_ok()
    });
    if !queued {
        conn.close(code.as_u16().into(), &reason);
        return;
    }
    shared.metrics.errors_sent.inc();
    // The writer closes the connection as soon as the phone has the ERROR;
    // this closes it anyway when the phone does not acknowledge it in time
    // (or earlier messages still wait for flow control).
    let linger = Duration::from_millis(shared.cfg.error_linger_ms);
    let conn = conn.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(linger) => conn.close(code.as_u16().into(), &reason),
            _ = conn.closed() => {}
        }
    });
}

struct ControlReader {
    recv: quinn::RecvStream,
    dec: ControlDecoder,
    stall: Duration,
}

impl ControlReader {
    /// Next control message; `Ok(None)` at a clean end of stream.
    async fn next(&mut self) -> Result<Option<Control>, Reject> {
        let mut buf = [0u8; 4096];
        loop {
            match self.dec.decode_next() {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => return Err((e.code(), format!("control stream: {e}"))),
            }
            let read = if self.dec.buffered() > 0 {
                match tokio::time::timeout(self.stall, self.recv.read(&mut buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err((
                            ErrorCode::Stalled,
                            "control message incomplete for too long".into(),
                        ))
                    }
                }
            } else {
                self.recv.read(&mut buf).await
            };
            match read {
                Ok(Some(n)) => self.dec.push(&buf[..n]),
                Ok(None) => {
                    return match self.dec.finish() {
                        Ok(()) => Ok(None),
                        Err(e) => Err((e.code(), format!("control stream: {e}"))),
                    }
                }
                Err(e) => return Err((ErrorCode::Ok, format!("control stream closed: {e}"))),
            }
        }
    }
}

async fn handle_connection(shared: Arc<Shared>, incoming: quinn::Incoming) -> Result<()> {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            // A client speaking another protocol (no `sharecast/1` ALPN), or
            // failing TLS, never reaches the session layer: count and log it.
            shared.metrics.handshakes_failed.inc();
            tracing::info!(%remote, error = %e, "ingest handshake failed");
            return Ok(());
        }
    };
    shared.metrics.connections.inc();
    // Stable ids are addresses: a later connection can get the id of one
    // that is gone. Forget this one's refusal when its handler ends (before
    // `conn` itself is dropped), or the next connection with its id would be
    // taken as refused already and dropped without a word.
    let _forget = ForgetRefusal(shared.clone(), conn.stable_id());
    let hello_timeout = Duration::from_secs(shared.cfg.hello_timeout_secs);
    let (send, recv) = match tokio::time::timeout(hello_timeout, conn.accept_bi()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e).context("accepting the control stream"),
        Err(_) => {
            // No control stream: the close code and reason are all the
            // phone can get.
            reject(
                &shared,
                &conn,
                None,
                ErrorCode::Stalled,
                "no control stream opened in time",
            );
            let _ = conn.closed().await;
            return Ok(());
        }
    };
    let mut ctrl = ControlReader {
        recv,
        dec: ControlDecoder::new(),
        stall: Duration::from_secs(shared.cfg.stall_timeout_secs),
    };
    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel::<Outgoing>();
    tokio::spawn(control_writer(shared.clone(), conn.clone(), send, ctrl_rx));
    // Until the connection closes, a refusal is still being delivered.
    let refused = |r: Refused| {
        let (shared, conn, ctrl_tx) = (shared.clone(), conn.clone(), ctrl_tx.clone());
        async move {
            refuse(&shared, &conn, Some(&ctrl_tx), r);
            let _ = conn.closed().await;
            Ok(())
        }
    };
    let hello = match tokio::time::timeout(hello_timeout, ctrl.next()).await {
        Ok(Ok(Some(Control::Hello(h)))) => h,
        Ok(Ok(Some(other))) => {
            let msg = format!(
                "expected HELLO, got message type 0x{:02x}",
                other.type_byte()
            );
            return refused((ErrorCode::BadMessage, msg).into()).await;
        }
        Ok(Ok(None)) => return Ok(()),
        Ok(Err((code, msg))) => {
            if code == ErrorCode::Ok {
                return Ok(());
            }
            return refused((code, msg).into()).await;
        }
        Err(_) => {
            return refused((ErrorCode::Stalled, "no HELLO in time".to_string()).into()).await;
        }
    };
    let session = match open_session(&shared, &hello, remote).await {
        Ok(s) => s,
        Err(r) => return refused(r).await,
    };
    // Attach this connection, superseding any previous one.
    let generation = session.generation.fetch_add(1, Ordering::SeqCst) + 1;
    let resumed = hello.resume.is_some();
    if let Some(old) = session
        .connection
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .replace(conn.clone())
    {
        old.close(
            ErrorCode::Ok.as_u16().into(),
            b"superseded by a resumed connection",
        );
    }
    session.set_lifecycle(Lifecycle::Connected);
    if resumed {
        session.lock().resumes += 1;
        shared.metrics.sessions_resumed.inc();
    }
    let (next_seq, held) = session.ack_state();
    let welcome = Welcome {
        session_id: session.info.id.clone(),
        resume_secret: session.secret.clone(),
        resumed,
        next_seq,
        held,
        limits: Limits {
            max_frame_bytes: shared.cfg.max_frame_bytes,
            max_bitrate_bps: shared.cfg.max_bitrate_bps,
            max_session_secs: shared.cfg.max_session_secs,
        },
        live_urls: shared.handler.live_urls(&session.info.id),
    };
    let _ = ctrl_tx.send(Outgoing::Msg(Control::Welcome(welcome)));
    tracing::info!(session = %session.info.id, device = %session.info.device.name, %remote, resumed, "ingest connection attached");

    // Acknowledgements follow durability.
    let mut ack_rx = session.ack_tx.subscribe();
    let ack_tx = ctrl_tx.clone();
    let acks = tokio::spawn(async move {
        while ack_rx.changed().await.is_ok() {
            let (next_seq, held) = ack_rx.borrow_and_update().clone();
            if ack_tx
                .send(Outgoing::Msg(Control::Ack(
                    sharecast_formats::ingest::Ack { next_seq, held },
                )))
                .is_err()
            {
                break;
            }
        }
    });

    // Frame streams.
    let frames = tokio::spawn(accept_frame_streams(
        shared.clone(),
        session.clone(),
        conn.clone(),
        ctrl_tx.clone(),
    ));

    // Control loop.
    loop {
        match ctrl.next().await {
            Ok(Some(Control::End(end))) => {
                match handle_end(&shared, &session, &conn, &end).await {
                    Ok(attributes) => {
                        let _ =
                            ctrl_tx.send(Outgoing::Msg(Control::Finished(Finished { attributes })));
                        // Let the client read FINISHED and close first.
                        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                    }
                    // The connection is gone already.
                    Err((ErrorCode::Ok, _)) => {}
                    Err((code, msg)) => {
                        reject_in_session(&shared, &session, &conn, &ctrl_tx, code, &msg)
                    }
                }
                break;
            }
            Ok(Some(Control::Error(e))) => {
                // The phone's words, escaped and cut: they go to the log.
                let message: String = e.message.chars().take(256).collect();
                tracing::warn!(session = %session.info.id, code = e.code, message = ?message, "client reported an error");
            }
            Ok(Some(other)) => {
                let msg = format!(
                    "unexpected control message type 0x{:02x} after HELLO",
                    other.type_byte()
                );
                reject_in_session(
                    &shared,
                    &session,
                    &conn,
                    &ctrl_tx,
                    ErrorCode::BadMessage,
                    &msg,
                );
                break;
            }
            Ok(None) => break,
            Err((ErrorCode::Ok, _)) => break,
            Err((code, msg)) => {
                reject_in_session(&shared, &session, &conn, &ctrl_tx, code, &msg);
                break;
            }
        }
    }
    let _ = conn.closed().await;
    shared
        .refused
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&conn.stable_id());
    acks.abort();
    frames.abort();
    if session.lifecycle() == Lifecycle::Stopped {
        // Stopped by an error: not resumable; finalise what it holds now
        // rather than after the resume timeout.
        session
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (shared, session) = (shared.clone(), session.clone());
        tokio::spawn(async move {
            if let Err(e) = finalise(&shared, &session).await {
                tracing::error!(session = %session.info.id, error = %format!("{e:#}"), "could not finalise a stopped session");
            }
        });
        return Ok(());
    }
    // Detach: if no newer connection took over, the session waits for its phone.
    if session.generation.load(Ordering::SeqCst) == generation {
        let mut c = session.connection.lock().unwrap_or_else(|e| e.into_inner());
        if c.as_ref().map(|c| c.stable_id()) == Some(conn.stable_id()) {
            *c = None;
        }
        drop(c);
        if session.lifecycle() == Lifecycle::Connected {
            session.set_lifecycle(Lifecycle::Suspended);
            tracing::info!(session = %session.info.id, "phone disconnected; waiting for it to resume");
            spawn_resume_timer(shared.clone(), session.clone(), generation);
        }
    }
    Ok(())
}

/// Authenticate the token under the failed-authentication limits: a token
/// backing off is refused before it is looked up; a failure is counted for
/// the token and the address, and answered `rate_limited` while the
/// address is penalised; a correct token is always let in.
async fn authenticate(
    shared: &Arc<Shared>,
    token: &str,
    remote: SocketAddr,
) -> Result<DeviceIdentity, Refused> {
    let key = token_key(token);
    let gate = shared
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .before_check(&key, Instant::now());
    if let Gate::Refuse(r) = gate {
        shared.metrics.auth_refused(Scope::Token);
        return Err(Refused {
            code: ErrorCode::RateLimited,
            message: format!(
                "this token failed authentication too often; retry in {} s",
                r.retry_after.as_secs().max(1)
            ),
            retry_after: Some(r.retry_after),
        });
    }
    let found = match shared.handler.authenticate(token).await {
        Ok(found) => found,
        Err(e) => {
            // The device store could not answer: not the phone's failure.
            tracing::error!(error = %format!("{e:#}"), "device lookup failed");
            return Err(Refused {
                code: ErrorCode::Internal,
                message: "the server cannot check device tokens right now; retry".into(),
                retry_after: None,
            });
        }
    };
    if let Some(device) = found {
        shared
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .succeeded(&key);
        return Ok(device);
    }
    let f = shared
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .token_failed(&key, address_key(remote.ip()), Instant::now());
    Err(auth_failure(
        shared,
        f,
        remote,
        (
            ErrorCode::Unauthorized,
            "unknown or revoked device token".into(),
        ),
    ))
}

/// Answer a failed authentication (wrong token or resume secret): its own
/// code, or `rate_limited` while the address is penalised. Backoffs that
/// start are logged and counted once.
fn auth_failure(
    shared: &Shared,
    f: crate::limiter::Failure,
    remote: SocketAddr,
    own: Reject,
) -> Refused {
    if let Some(d) = f.token_backoff {
        shared.metrics.auth_backoff(Scope::Token);
        tracing::warn!(%remote, backoff_secs = d.as_secs(), "a device token keeps failing authentication; it backs off");
    }
    if let Some(d) = f.address_penalty {
        shared.metrics.auth_backoff(Scope::Address);
        tracing::warn!(%remote, penalty_secs = d.as_secs(), "too many failed authentications from this address; its failures are refused for a while (correct tokens still get in)");
    }
    match f.refusal {
        Some(r) => {
            shared.metrics.auth_refused(Scope::Address);
            Refused {
                code: ErrorCode::RateLimited,
                message: format!(
                    "{}; too many failed authentications from this address, retry in {} s",
                    own.1,
                    r.retry_after.as_secs().max(1)
                ),
                retry_after: Some(r.retry_after),
            }
        }
        None => own.into(),
    }
}

async fn open_session(
    shared: &Arc<Shared>,
    hello: &Hello,
    remote: SocketAddr,
) -> Result<Arc<Session>, Refused> {
    if hello.version != VERSION {
        return Err((
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this server speaks {VERSION}",
                hello.version
            ),
        )
            .into());
    }
    // Every field within its bound before anything looks at it.
    if let Err(r) = hello.check(&shared.cfg.hello) {
        shared.metrics.hello_refused(r.field);
        return Err((ErrorCode::BadMessage, format!("HELLO: {}", r.message)).into());
    }
    let device = authenticate(shared, &hello.token, remote).await?;
    if let Some(resume) = &hello.resume {
        let s = shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&resume.session_id)
            .cloned();
        let Some(s) = s else {
            return Err((
                ErrorCode::UnknownSession,
                format!("no open session {}", resume.session_id),
            )
                .into());
        };
        if !constant_time_eq(s.secret.as_bytes(), resume.secret.as_bytes())
            || s.info.device.id != device.id
        {
            // A correct token with a wrong secret: the address's failure,
            // never the token's.
            let f = shared
                .limiter
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .address_failed(address_key(remote.ip()), Instant::now());
            return Err(auth_failure(
                shared,
                f,
                remote,
                (
                    ErrorCode::BadResumeSecret,
                    "resume secret does not match the session".into(),
                ),
            ));
        }
        match s.lifecycle() {
            Lifecycle::Connected | Lifecycle::Suspended => return Ok(s),
            Lifecycle::Stopped => {
                return Err((
                    ErrorCode::UnknownSession,
                    format!(
                        "session {} was stopped by an error and cannot be resumed",
                        resume.session_id
                    ),
                )
                    .into())
            }
            Lifecycle::Finishing | Lifecycle::Finished | Lifecycle::Failed => {
                return Err((
                    ErrorCode::UnknownSession,
                    format!("session {} has ended", resume.session_id),
                )
                    .into())
            }
        }
    }
    if hello.tracks.is_empty() {
        return Err((
            ErrorCode::BadMessage,
            "HELLO declares no tracks".to_string(),
        )
            .into());
    }
    shared
        .handler
        .check_tracks(&hello.tracks)
        .map_err(|m| (ErrorCode::UnsupportedCodec, m))?;
    // Only sessions that can still take frames count: stopped, finishing
    // and failed ones do not.
    let open = shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|s| {
            s.info.device.id == device.id
                && matches!(s.lifecycle(), Lifecycle::Connected | Lifecycle::Suspended)
        })
        .count();
    if open >= shared.cfg.max_sessions_per_device {
        return Err((
            ErrorCode::SessionLimit,
            format!(
                "device already has {open} open sessions (limit {})",
                shared.cfg.max_sessions_per_device
            ),
        )
            .into());
    }
    // 128 random bits each: the session id is also the asset id that
    // addresses the recording's VOD files.
    let id = random_hex(16);
    let secret = random_hex(16);
    let dir = committer::journals_dir(&shared.data_dir).join(&id);
    let info = SessionInfo {
        id: id.clone(),
        device: device.clone(),
        tracks: hello.tracks.clone(),
        anchor_unix_us: hello.anchor_unix_us,
        title: hello.title.clone(),
        dir: dir.clone(),
        started_unix_ms: now_ms(),
        recovered: false,
    };
    let meta = SessionMeta {
        id: id.clone(),
        secret: secret.clone(),
        device_id: device.id.clone(),
        device_name: device.name.clone(),
        tracks: hello.tracks.clone(),
        anchor_unix_us: hello.anchor_unix_us,
        title: hello.title.clone(),
        started_unix_ms: info.started_unix_ms,
    };
    let writer = tokio::task::spawn_blocking(move || JournalWriter::create(&dir, &meta))
        .await
        .map_err(|e| (ErrorCode::Internal, format!("journal task: {e}")))?
        .map_err(|e| {
            (
                ErrorCode::Internal,
                format!("creating the session journal: {e:#}"),
            )
        })?;
    let output = shared.handler.open(&info).await.map_err(|e| {
        (
            ErrorCode::Internal,
            format!("opening session outputs: {e:#}"),
        )
    })?;
    let session = Session::new(
        info,
        secret,
        output,
        writer,
        limits(&shared.cfg),
        &shared.committer,
    );
    shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id.clone(), session.clone());
    shared.metrics.sessions_started.inc();
    tracing::info!(session = %id, device = %device.name, tracks = hello.tracks.len(), "ingest session opened");
    Ok(session)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes the control messages of one connection in order. An ERROR is the
/// last thing it writes: it finishes the stream, waits until the phone has
/// acknowledged everything (bounded by the linger timer `refuse` starts),
/// and closes the connection with the error's code.
async fn control_writer(
    shared: Arc<Shared>,
    conn: quinn::Connection,
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    while let Some(m) = rx.recv().await {
        match m {
            Outgoing::Msg(m) => {
                if send.write_all(&m.encode()).await.is_err() {
                    break;
                }
            }
            Outgoing::Error { msg, code, reason } => {
                let wrote = send.write_all(&Control::Error(msg).encode()).await.is_ok()
                    && send.finish().is_ok();
                if wrote && matches!(send.stopped().await, Ok(None)) {
                    shared.metrics.errors_acknowledged.inc();
                }
                conn.close(code.as_u16().into(), &reason);
                return;
            }
        }
    }
    let _ = send.finish();
}

async fn accept_frame_streams(
    shared: Arc<Shared>,
    session: Arc<Session>,
    conn: quinn::Connection,
    ctrl_tx: ControlTx,
) {
    while let Ok(stream) = conn.accept_uni().await {
        tokio::spawn(read_frames(
            shared.clone(),
            session.clone(),
            conn.clone(),
            ctrl_tx.clone(),
            stream,
        ));
    }
}

async fn read_frames(
    shared: Arc<Shared>,
    session: Arc<Session>,
    conn: quinn::Connection,
    ctrl_tx: ControlTx,
    mut stream: quinn::RecvStream,
) {
    let mut dec = FrameDecoder::new(shared.cfg.max_frame_bytes);
    let stall = Duration::from_secs(shared.cfg.stall_timeout_secs);
    let mut buf = vec![0u8; 64 * 1024];
    let refuse = |code: ErrorCode, msg: &str| {
        reject_in_session(&shared, &session, &conn, &ctrl_tx, code, msg)
    };
    loop {
        loop {
            match dec.decode_next() {
                Ok(Some(frame)) => {
                    shared.metrics.frames_received.inc();
                    shared
                        .metrics
                        .bytes_received
                        .inc_by(frame.data.len() as u64);
                    match session.accept(frame) {
                        Ok(true) => {}
                        Ok(false) => {
                            shared.metrics.frames_duplicate.inc();
                        }
                        Err((code, msg)) => {
                            refuse(code, &msg);
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    refuse(e.code(), &format!("frame stream: {e}"));
                    return;
                }
            }
        }
        let read = if dec.is_idle() {
            stream.read(&mut buf).await
        } else {
            match tokio::time::timeout(stall, stream.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    refuse(ErrorCode::Stalled, "frame incomplete for too long");
                    return;
                }
            }
        };
        match read {
            Ok(Some(n)) => dec.push(&buf[..n]),
            Ok(None) => {
                if let Err(e) = dec.finish() {
                    refuse(ErrorCode::BadMessage, &format!("frame stream: {e}"));
                }
                return;
            }
            // Connection lost or stream reset: frames already taken are kept.
            Err(_) => return,
        }
    }
}

async fn handle_end(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    conn: &quinn::Connection,
    end: &End,
) -> Result<VideoAttributes, Reject> {
    for t in end.frame_count.keys() {
        if !session.info.tracks.iter().any(|x| x.id == *t) {
            return Err((
                ErrorCode::UnknownTrack,
                format!("END counts track {t} which HELLO did not declare"),
            ));
        }
    }
    let complete = |next: &std::collections::BTreeMap<u8, u64>| {
        end.frame_count
            .iter()
            .all(|(t, n)| next.get(t).copied().unwrap_or(0) >= *n)
    };
    let mut rx = session.ack_tx.subscribe();
    let wait = Duration::from_secs(shared.cfg.end_wait_secs);
    // Until END's frames are durable, the wait times out, or the
    // connection is gone (another error, or the phone left).
    let waited = tokio::time::timeout(wait, async {
        tokio::select! {
            _ = async {
                loop {
                    if complete(&rx.borrow_and_update().0) {
                        return;
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            } => true,
            _ = conn.closed() => false,
        }
    })
    .await;
    if matches!(waited, Ok(false)) {
        return Err((
            ErrorCode::Ok,
            "the connection closed while waiting for END's frames".into(),
        ));
    }
    if session.lifecycle() == Lifecycle::Stopped {
        return Err((
            ErrorCode::UnknownSession,
            "the session was stopped by an error".into(),
        ));
    }
    if !complete(&session.next_seq()) {
        let have = session.next_seq();
        return Err((
            ErrorCode::MissingFrames,
            format!(
                "END announced {:?} frames but only {:?} arrived",
                end.frame_count, have
            ),
        ));
    }
    finalise(shared, session)
        .await
        .map_err(|e| (ErrorCode::Internal, format!("finalising outputs: {e:#}")))
}

/// Finalise a session's outputs once; later callers get the same result.
async fn finalise(shared: &Arc<Shared>, session: &Arc<Session>) -> Result<VideoAttributes> {
    let already = {
        let mut st = session.lock();
        match st.lifecycle {
            Lifecycle::Finishing | Lifecycle::Finished | Lifecycle::Failed => true,
            _ => {
                st.lifecycle = Lifecycle::Finishing;
                false
            }
        }
    };
    if already {
        // Someone else is finishing it; wait for their result.
        for _ in 0..600 {
            if let Some(a) = shared
                .finished
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&session.info.id)
            {
                return Ok(a.clone());
            }
            if session.lifecycle() == Lifecycle::Failed {
                anyhow::bail!("session {} failed", session.info.id);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("session {} is still finishing", session.info.id);
    }
    let id = session.info.id.clone();
    session.flush_record();
    let result = session.output.finish().await;
    let result = match result {
        Ok(a) => session.close_journal().await.map(|_| a),
        Err(e) => Err(e),
    };
    shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    match result {
        Ok(a) => {
            session.set_lifecycle(Lifecycle::Finished);
            shared.metrics.sessions_finished.inc();
            let mut f = shared.finished.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() > 1000 {
                f.clear();
            }
            f.insert(id.clone(), a.clone());
            tracing::info!(session = %id, "session finalised");
            Ok(a)
        }
        Err(e) => {
            session.set_lifecycle(Lifecycle::Failed);
            shared.metrics.sessions_failed.inc();
            tracing::error!(session = %id, error = %format!("{e:#}"), "session failed to finalise");
            Err(e)
        }
    }
}
