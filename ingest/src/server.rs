//! The server: the QUIC endpoint, the sessions it holds, and what happens to
//! a session without its phone: the resume timeout, recovery from the
//! journals after a restart, and finalisation into outputs.
//!
//! One connection's protocol (HELLO, WELCOME, frames and ACKs, END and
//! FINISHED) is in [`crate::connection`]; how a HELLO opens or resumes a
//! session is in [`crate::hello`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use prometheus_client::registry::Registry;
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{ErrorCode, ALPN};
use sharecast_formats::status::SessionSnapshot;

use crate::committer::{self, Committer, CommitterConfig};
use crate::config::IngestConfig;
use crate::connection::handle_connection;
use crate::journal::{self, JournalWriter, SessionMeta};
use crate::limiter::AuthLimiter;
use crate::metrics::{IngestCollector, IngestMetrics};
use crate::session::{Lifecycle, Session, SessionLimits};
use crate::tls::{self, TlsMaterial};
use crate::{lock, ConnectionChange, DeviceIdentity, SessionInfo, SessionOutput};

/// What every connection of the server shares.
pub(crate) struct Shared {
    pub(crate) cfg: IngestConfig,
    pub(crate) data_dir: PathBuf,
    pub(crate) handler: Arc<dyn crate::SessionHandler>,
    pub(crate) sessions: Mutex<HashMap<String, Arc<Session>>>,
    pub(crate) metrics: Arc<IngestMetrics>,
    /// Failed authentications per token and per address.
    pub(crate) limiter: Mutex<AuthLimiter>,
    pub(crate) finished: Mutex<HashMap<String, VideoAttributes>>,
    /// Connections already refused (by stable id): a connection is refused,
    /// counted and told once, however many of its streams hit an error.
    pub(crate) refused: Mutex<HashSet<usize>>,
    /// Makes every session's frames durable (group commit across sessions).
    pub(crate) committer: Committer,
    /// Sessions being created, per device id: they count against
    /// `max_sessions_per_device` with the open ones (see [`SessionSlot`]).
    pub(crate) opening: Mutex<HashMap<String, usize>>,
    /// RTMP and SRT publishes that a publisher can rejoin.
    pub(crate) publishes: crate::publish::Publishes,
    /// Connections (QUIC, RTMP and SRT) open now, against `max_connections`.
    pub(crate) open_connections: std::sync::atomic::AtomicUsize,
}

/// A place among the `max_connections` open at once, given back when
/// dropped (when the connection's handler ends).
pub(crate) struct ConnectionSlot(Arc<Shared>);

impl ConnectionSlot {
    /// A place, or `None` (counted) when `max_connections` are open.
    pub(crate) fn take(shared: &Arc<Shared>) -> Option<ConnectionSlot> {
        let open = &shared.open_connections;
        let max = shared.cfg.max_connections;
        let taken = open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            shared.metrics.connections_over_limit.inc();
            return None;
        }
        Some(ConnectionSlot(shared.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A place among a device's `max_sessions_per_device`, taken before its
/// session is created and given back when dropped (once the session is
/// registered, or its creation failed). Without it, HELLOs arriving together
/// would all pass the check before any of their sessions was registered.
pub(crate) struct SessionSlot {
    shared: Arc<Shared>,
    device_id: String,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut opening = lock(&self.shared.opening);
        if let Some(n) = opening.get_mut(&self.device_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                opening.remove(&self.device_id);
            }
        }
    }
}

impl Shared {
    /// The open session `id`, if there is one.
    pub(crate) fn session(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.sessions).get(id).cloned()
    }

    /// Open sessions (taking frames, or waiting for their phone) of a device.
    pub(crate) fn open_sessions_of(&self, device_id: &str) -> usize {
        lock(&self.sessions)
            .values()
            .filter(|s| s.info.device.id == device_id && s.lifecycle().is_open())
            .count()
    }

    /// A place for one more session of a device, or `Err(open)` (its open
    /// sessions and those being created) when it has `max_sessions_per_device`.
    pub(crate) fn reserve_session(self: &Arc<Self>, device_id: &str) -> Result<SessionSlot, usize> {
        let mut opening = lock(&self.opening);
        let pending = opening.get(device_id).copied().unwrap_or(0);
        let open = self.open_sessions_of(device_id) + pending;
        if open >= self.cfg.max_sessions_per_device {
            return Err(open);
        }
        *opening.entry(device_id.to_string()).or_insert(0) += 1;
        Ok(SessionSlot {
            shared: self.clone(),
            device_id: device_id.to_string(),
        })
    }

    /// A session over a journal, with this server's limits and committer.
    pub(crate) fn new_session(
        &self,
        info: SessionInfo,
        secret: String,
        output: Arc<dyn SessionOutput>,
        writer: JournalWriter,
    ) -> Arc<Session> {
        let limits = SessionLimits {
            max_session_us: (self.cfg.max_session_secs as i64).saturating_mul(1_000_000),
            max_bitrate_bps: self.cfg.max_bitrate_bps,
        };
        Session::new(info, secret, output, writer, limits, &self.committer)
    }

    /// Add a session to the open ones, where a resume finds it.
    pub(crate) fn register(&self, session: &Arc<Session>) {
        lock(&self.sessions).insert(session.info.id.clone(), session.clone());
    }
}

/// What the server knows of a session from its journal's META record, in a
/// directory `dir`.
pub(crate) fn session_info(meta: &SessionMeta, dir: PathBuf, recovered: bool) -> SessionInfo {
    SessionInfo {
        id: meta.id.clone(),
        device: DeviceIdentity {
            id: meta.device_id.clone(),
            name: meta.device_name.clone(),
        },
        tracks: meta.tracks.clone(),
        anchor_unix_us: meta.anchor_unix_us,
        title: meta.title.clone(),
        dir,
        started_unix_ms: meta.started_unix_ms,
        recovered,
    }
}

/// The ingest server.
pub struct IngestServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    fingerprint: String,
    udp_buffers: crate::udp::UdpBuffers,
    /// The RTMP listener (`ingest.rtmp_listen`), until `run` takes it.
    rtmp: Mutex<Option<tokio::net::TcpListener>>,
    rtmp_addr: Option<SocketAddr>,
    /// The SRT socket (`ingest.srt_listen`), until `run` takes it.
    srt: Mutex<Option<std::net::UdpSocket>>,
    srt_addr: Option<SocketAddr>,
}

impl IngestServer {
    /// Bind the QUIC endpoint. TLS material comes from the config or is
    /// generated under `data_dir/tls`.
    pub fn bind(
        cfg: IngestConfig,
        data_dir: &Path,
        handler: Arc<dyn crate::SessionHandler>,
    ) -> Result<IngestServer> {
        let TlsMaterial {
            chain,
            key,
            fingerprint,
            ..
        } = tls::load_or_generate(&cfg.cert_chain, &cfg.private_key, data_dir)?;
        let server_config = quic_server_config(&cfg, chain, key)?;
        let addr: SocketAddr = cfg
            .listen
            .parse()
            .with_context(|| format!("ingest listen address {:?}", cfg.listen))?;
        let (socket, udp_buffers) = crate::udp::bind(addr, cfg.udp_buffer_bytes)
            .context("binding the QUIC ingest socket")?;
        let runtime = quinn::default_runtime()
            .ok_or_else(|| anyhow!("the QUIC ingest needs a Tokio runtime"))?;
        let secrets = tls::load_or_generate_reset_key(data_dir)?;
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(secrets.reset_key));
        let cid_key = secrets.cid_key;
        endpoint_config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let endpoint = quinn::Endpoint::new(endpoint_config, Some(server_config), socket, runtime)
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
        let rtmp = bind_rtmp(&cfg.rtmp_listen)?;
        let rtmp_addr = rtmp.as_ref().and_then(|l| l.local_addr().ok());
        let srt = bind_srt(&cfg.srt_listen)?;
        let srt_addr = srt.as_ref().and_then(|s| s.local_addr().ok());
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
                refused: Mutex::new(HashSet::new()),
                opening: Mutex::new(HashMap::new()),
                committer,
                publishes: Default::default(),
                open_connections: Default::default(),
            }),
            fingerprint,
            udp_buffers,
            rtmp: Mutex::new(rtmp),
            rtmp_addr,
            srt: Mutex::new(srt),
            srt_addr,
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

    /// The bound RTMP address, when `ingest.rtmp_listen` is set.
    pub fn rtmp_addr(&self) -> Option<SocketAddr> {
        self.rtmp_addr
    }

    /// The bound SRT address (UDP), when `ingest.srt_listen` is set.
    pub fn srt_addr(&self) -> Option<SocketAddr> {
        self.srt_addr
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
        let sessions: Vec<Arc<Session>> = lock(&self.shared.sessions).values().cloned().collect();
        sessions.iter().map(|s| snapshot(s)).collect()
    }

    /// Whether a session is open (connected or waiting for its phone).
    pub fn has_session(&self, id: &str) -> bool {
        lock(&self.shared.sessions).contains_key(id)
    }

    /// End a session as if the phone had sent END (admin action). Returns
    /// false if no such session is open.
    pub async fn end_session(&self, id: &str) -> bool {
        let Some(s) = self.shared.session(id) else {
            return false;
        };
        if let Some(c) = lock(&s.connection).take() {
            c.close(ErrorCode::Ok.as_u16().into(), b"ended by an administrator");
        }
        finalise(&self.shared, &s).await.is_ok()
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

    /// Accept connections (QUIC, and RTMP and SRT when they listen) until
    /// the endpoint is closed.
    pub async fn run(&self) {
        let rtmp = lock(&self.rtmp)
            .take()
            .map(|l| tokio::spawn(crate::rtmp::serve(self.shared.clone(), l)));
        let srt = lock(&self.srt)
            .take()
            .and_then(|s| match tokio::net::UdpSocket::from_std(s) {
                Ok(s) => Some(tokio::spawn(crate::srt::serve(self.shared.clone(), s))),
                Err(e) => {
                    tracing::error!(error = %e, "the SRT socket cannot be used; SRT ingest is off");
                    None
                }
            });
        self.accept_quic().await;
        for task in [rtmp, srt].into_iter().flatten() {
            task.abort();
        }
    }

    async fn accept_quic(&self) {
        while let Some(incoming) = self.endpoint.accept().await {
            let shared = self.shared.clone();
            let Some(slot) = ConnectionSlot::take(&shared) else {
                tracing::warn!(remote = %incoming.remote_address(), "ingest connection refused: max_connections are open");
                incoming.refuse();
                continue;
            };
            tokio::spawn(async move {
                let _slot = slot;
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

/// The address of a listen setting (none when empty).
fn listen_addr(listen: &str, what: &str) -> Result<Option<SocketAddr>> {
    if listen.is_empty() {
        return Ok(None);
    }
    let addr = listen
        .parse()
        .with_context(|| format!("ingest {what} listen address {listen:?}"))?;
    Ok(Some(addr))
}

/// The SRT ingest's UDP socket on `listen` (none when empty).
fn bind_srt(listen: &str) -> Result<Option<std::net::UdpSocket>> {
    let Some(addr) = listen_addr(listen, "SRT")? else {
        return Ok(None);
    };
    let socket = std::net::UdpSocket::bind(addr)
        .with_context(|| format!("binding the SRT ingest on udp {addr}"))?;
    socket.set_nonblocking(true).context("the SRT socket")?;
    Ok(Some(socket))
}

/// The RTMP listener of `listen` (none when empty).
fn bind_rtmp(listen: &str) -> Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = listen_addr(listen, "RTMP")? else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the RTMP ingest on tcp {addr}"))?;
    listener
        .set_nonblocking(true)
        .context("the RTMP listener")?;
    let listener = tokio::net::TcpListener::from_std(listener).context("the RTMP listener")?;
    Ok(Some(listener))
}

/// Sessions open (connected or waiting for their phone), and those with a
/// live connection.
fn session_counts(shared: &Shared) -> (usize, usize) {
    let sessions = lock(&shared.sessions);
    let connected = sessions
        .values()
        .filter(|s| s.lifecycle() == Lifecycle::Connected)
        .count();
    (sessions.len(), connected)
}

/// TLS 1.3 with the `sharecast/1` ALPN only, and the transport limits of
/// the protocol (section 2: `max_frame_streams` frame streams at once).
fn quic_server_config(
    cfg: &IngestConfig,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<quinn::ServerConfig> {
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
    Ok(server_config)
}

fn snapshot(s: &Session) -> SessionSnapshot {
    let (frames, bytes) = s.counts();
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
    let durable_bytes = st.durable_bytes;
    let report = st.report.clone().unwrap_or_default();
    drop(st);
    let (ingest_bitrate_bps, frame_rate) = if span_us > 0 {
        (
            (bytes as u128 * 8 * 1_000_000 / span_us as u128) as u64,
            video_frames.saturating_sub(1) as f64 * 1e6 / span_us as f64,
        )
    } else {
        (0, 0.0)
    };
    let rtt_ms = lock(&s.connection)
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
        durable_bytes,
        advised_bitrate_bps: report.advised_bps,
        phone_backlog_bytes: report.backlog_bytes,
    }
}

/// Recover the session of one journal (section 6, "Resume": after a server
/// restart, sessions whose journals have no END record wait for their
/// phones). `Ok(false)` for a journal that ended.
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
    let info = session_info(&rec.meta, dir.to_path_buf(), true);
    let output = shared
        .handler
        .open(&info)
        .await
        .context("opening the outputs of a recovered session")?;
    let writer = JournalWriter::reopen(path)?;
    let session = shared.new_session(info, rec.meta.secret.clone(), output, writer);
    session.replay(rec.frames)?;
    session.set_lifecycle(Lifecycle::Suspended);
    session
        .output
        .connection_changed(ConnectionChange::Suspended {
            reason: "server_restart",
        });
    shared.register(&session);
    shared.metrics.sessions_recovered.inc();
    tracing::info!(session = %session.info.id, "recovered session from its journal; waiting for the phone to resume");
    let wait = Duration::from_secs(shared.cfg.resume_timeout_secs);
    spawn_resume_timer(shared.clone(), session, 0, wait);
    Ok(true)
}

/// Finalise a session whose client has not come back within `wait` of
/// `generation`'s connection going away (`resume_timeout_secs` for a
/// phone, `rejoin_window_secs` for an RTMP publisher).
pub(crate) fn spawn_resume_timer(
    shared: Arc<Shared>,
    session: Arc<Session>,
    generation: u64,
    wait: Duration,
) {
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

/// Finalise a session's outputs once; later callers get the same result.
pub(crate) async fn finalise(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
) -> Result<VideoAttributes> {
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
        return finalised_elsewhere(shared, session).await;
    }
    let id = session.info.id.clone();
    session.flush_record();
    let result = async {
        if session.recording_failed() {
            session.record_again().await?;
        }
        let a = session.output.finish().await?;
        session.close_journal().await?;
        Ok(a)
    }
    .await;
    lock(&shared.sessions).remove(&id);
    let (lifecycle, counter) = match &result {
        Ok(_) => (Lifecycle::Finished, &shared.metrics.sessions_finished),
        Err(_) => (Lifecycle::Failed, &shared.metrics.sessions_failed),
    };
    session.set_lifecycle(lifecycle);
    counter.inc();
    match result {
        Ok(a) => {
            let mut f = lock(&shared.finished);
            if f.len() > 1000 {
                f.clear();
            }
            f.insert(id.clone(), a.clone());
            tracing::info!(session = %id, "session finalised");
            Ok(a)
        }
        Err(e) => {
            tracing::error!(session = %id, error = %format!("{e:#}"), "session failed to finalise");
            Err(e)
        }
    }
}

/// Someone else is finishing the session: wait for their result.
async fn finalised_elsewhere(shared: &Shared, session: &Session) -> Result<VideoAttributes> {
    for _ in 0..600 {
        if let Some(a) = lock(&shared.finished).get(&session.info.id) {
            return Ok(a.clone());
        }
        if session.lifecycle() == Lifecycle::Failed {
            anyhow::bail!("session {} failed", session.info.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("session {} is still finishing", session.info.id);
}
