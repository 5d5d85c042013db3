//! The uploader: what a phone app embeds to stream frames while it films.
//!
//! The app hands encoded frames to [`Uploader::send`] as the encoder produces
//! them. The uploader stamps per-track sequence numbers, keeps every frame in
//! a bounded buffer until the server acknowledges it as durable, sends frames
//! over QUIC, and when the connection drops it reconnects, resumes the session
//! and resends whatever the server does not hold. [`Uploader::finish`] ends the
//! recording and returns the video attributes the server produced.
//!
//! **Buffer policy**: the buffer holds at most `max_buffer_bytes` of
//! unacknowledged frames. When it is full, [`Uploader::send`] waits (the app's
//! capture pipeline sees back-pressure) until acknowledgements free space, or
//! until `reconnect_deadline` passes with no connection, in which case it fails
//! with [`UploadError::Disconnected`]. Nothing already accepted is dropped.
//!
//! **Live edge first, backlog after**: the uploader keeps at most a window of
//! sent-but-unacknowledged bytes in flight (about two round trips of the
//! acknowledged throughput, at least `min_window_bytes`), so frames queue in
//! its own buffer rather than in the network. When the frames waiting to be
//! sent span more than `live_threshold` of capture time, it jumps to the
//! newest video keyframe and sends from there on a high-priority QUIC stream,
//! so the live stream stays near real time; the older frames are sent
//! afterwards on a low-priority stream, so the recording is still complete.
//!
//! **Bitrate advice**: [`Uploader::advice`] (and [`Uploader::advice_watch`])
//! gives the app a target bitrate and frame rate for its encoder, computed
//! from the acknowledged throughput and the backlog: multiplicative decrease
//! (×0.85 of the measured throughput) when more than 0.5 s of data waits and
//! the backlog is still growing,
//! gentle increase (×1.08 + 20 kbit/s every 500 ms) when less than 0.2 s waits
//! and the encoder uses at least half of its budget.

use std::collections::{BTreeMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{
    covers, encode_frame, Control, ControlDecoder, End, ErrorCode, Hello, Resume, Welcome, ALPN,
    VERSION,
};
use sharecast_formats::media::{MediaFrame, TrackInfo};
use tokio::sync::{oneshot, Notify};

/// How the uploader trusts the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Accept exactly the certificate with this SHA-256 fingerprint (hex, as
    /// printed by `sharecast serve`). Colons and case are ignored.
    PinSha256(String),
    /// Verify the server's chain against these PEM root certificates.
    CaPem(Vec<u8>),
}

/// Uploader configuration.
#[derive(Debug, Clone)]
pub struct UploaderConfig {
    /// Server address, `host:port`.
    pub server: String,
    /// TLS server name; defaults to the host part of `server`.
    pub server_name: Option<String>,
    /// Device token.
    pub token: String,
    /// Certificate trust.
    pub trust: Trust,
    /// Title of the recording.
    pub title: Option<String>,
    /// Most bytes of unacknowledged frames kept. Default 64 MiB.
    pub max_buffer_bytes: usize,
    /// How long to keep trying to reconnect before giving up. Default 60 s.
    pub reconnect_deadline: Duration,
    /// Client name sent in HELLO.
    pub client_name: String,
    /// Smallest in-flight window, bytes. Default 48 KiB.
    pub min_window_bytes: usize,
    /// Capture-time span of waiting frames beyond which the uploader jumps to
    /// the live edge. Default 1 s.
    pub live_threshold: Duration,
    /// Encoder bitrate advised at the start, bit/s. Default 2 Mbit/s.
    pub initial_bitrate_bps: u64,
    /// Lowest advised bitrate, bit/s. Default 100 kbit/s.
    pub min_bitrate_bps: u64,
    /// Highest advised bitrate, bit/s. Default 8 Mbit/s.
    pub max_bitrate_bps: u64,
    /// Nominal frame rate advised when the bitrate allows it. Default 30.
    pub nominal_fps: u32,
}

/// What the app's encoder should aim for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Advice {
    /// Target encoder bitrate, bit/s.
    pub target_bps: u64,
    /// Target frame rate.
    pub target_fps: u32,
    /// Why it changed last: "start", "congested", "probing", "steady".
    pub reason: &'static str,
}

impl UploaderConfig {
    /// A config with defaults for everything but the essentials.
    pub fn new(server: impl Into<String>, token: impl Into<String>, trust: Trust) -> Self {
        Self {
            server: server.into(),
            server_name: None,
            token: token.into(),
            trust,
            title: None,
            max_buffer_bytes: 64 * 1024 * 1024,
            reconnect_deadline: Duration::from_secs(60),
            client_name: concat!("sharecast-client-sdk/", env!("CARGO_PKG_VERSION")).to_string(),
            min_window_bytes: 48 * 1024,
            live_threshold: Duration::from_secs(1),
            initial_bitrate_bps: 2_000_000,
            min_bitrate_bps: 100_000,
            max_bitrate_bps: 8_000_000,
            nominal_fps: 30,
        }
    }
}

/// Why an upload failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UploadError {
    /// The server refused the session or a frame.
    #[error("server refused: {} (code {code}): {message}", name_of(*code))]
    Refused {
        /// Numeric error code (see `docs/ingest-protocol.md`).
        code: u16,
        /// The server's explanation.
        message: String,
    },
    /// No connection could be (re-)established in time.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// Local configuration problem (address, TLS).
    #[error("configuration: {0}")]
    Config(String),
    /// A frame was bigger than the buffer.
    #[error("frame of {0} bytes is larger than the upload buffer")]
    FrameTooBig(usize),
}

fn name_of(code: u16) -> &'static str {
    ErrorCode::from_u16(code)
        .map(|c| c.name())
        .unwrap_or("unknown")
}

impl UploadError {
    /// The server's error code, if the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            UploadError::Refused { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }
}

/// What the uploader observes, for the app and for bitrate advice.
#[derive(Debug, Clone, Default)]
pub struct UploadStats {
    /// Frames handed to `send`.
    pub frames_sent: u64,
    /// Frames the server acknowledged as durable.
    pub frames_acked: u64,
    /// Bytes waiting for acknowledgement.
    pub backlog_bytes: u64,
    /// Frames waiting for acknowledgement.
    pub backlog_frames: u64,
    /// Smoothed round-trip time, ms.
    pub rtt_ms: f64,
    /// Acknowledged throughput over the last 2 seconds, bit/s.
    pub acked_bps: u64,
    /// Reconnections that resumed the session.
    pub resumes: u64,
    /// Bytes sent and not yet acknowledged.
    pub inflight_bytes: u64,
    /// Current in-flight window, bytes.
    pub window_bytes: u64,
    /// Times the uploader jumped to the live edge.
    pub live_jumps: u64,
}

struct Entry {
    frame: MediaFrame,
    sent: bool,
    queued_at: Instant,
}

/// Most acknowledgement latencies kept for [`Uploader::take_ack_latencies`].
const MAX_LATENCY_SAMPLES: usize = 100_000;

struct St {
    buffer: VecDeque<Entry>,
    buffer_bytes: usize,
    /// Index of the live edge: frames from here on go to the live stream.
    live_cursor: usize,
    inflight: usize,
    window: usize,
    min_rtt: Option<Duration>,
    advice: Advice,
    advice_at: Instant,
    video_tracks: Vec<u8>,
    /// Backlog at the previous advice update, bytes.
    last_backlog: usize,
    acked: BTreeMap<u8, u64>,
    next_seq: BTreeMap<u8, u64>,
    end_requested: bool,
    fatal: Option<UploadError>,
    stats: UploadStats,
    ack_log: VecDeque<(Instant, u64)>,
    connected: bool,
    ack_latencies_us: Vec<u32>,
}

struct Inner {
    cfg: UploaderConfig,
    session_id: String,
    secret: String,
    tracks: Vec<TrackInfo>,
    st: Mutex<St>,
    changed: Notify,
    conn: Mutex<Option<(quinn::Endpoint, quinn::Connection)>>,
    live_urls: Vec<String>,
    advice_tx: tokio::sync::watch::Sender<Advice>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running upload session.
pub struct Uploader {
    inner: Arc<Inner>,
    done: Option<oneshot::Receiver<Result<VideoAttributes, UploadError>>>,
}

struct Connected {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    dec: ControlDecoder,
    welcome: Welcome,
}

fn refused_from(e: &quinn::ConnectionError) -> Option<UploadError> {
    if let quinn::ConnectionError::ApplicationClosed(c) = e {
        let code = u64::from(c.error_code) as u16;
        let message = String::from_utf8_lossy(&c.reason).to_string();
        return Some(UploadError::Refused { code, message });
    }
    None
}

/// Whether a server error code ends the upload for good (vs. resume).
fn is_fatal(code: u16) -> bool {
    !matches!(
        ErrorCode::from_u16(code),
        Some(
            ErrorCode::Ok
                | ErrorCode::ShuttingDown
                | ErrorCode::Internal
                | ErrorCode::Stalled
                | ErrorCode::RateLimited
        )
    )
}

#[derive(Debug)]
struct PinVerifier {
    pin: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.pin.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The QUIC client configuration the uploader uses (TLS 1.3, ALPN
/// `sharecast/1`, the given trust), for tools that speak the protocol directly.
pub fn client_config(trust: &Trust) -> Result<quinn::ClientConfig, UploadError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| UploadError::Config(format!("TLS: {e}")))?;
    let mut crypto = match trust {
        Trust::PinSha256(hexpin) => {
            let clean: String = hexpin.chars().filter(|c| *c != ':').collect();
            let pin = hex::decode(clean.to_ascii_lowercase())
                .map_err(|e| UploadError::Config(format!("pin is not hex: {e}")))?;
            if pin.len() != 32 {
                return Err(UploadError::Config(
                    "pin must be a SHA-256 (32 bytes of hex)".into(),
                ));
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinVerifier { pin, provider }))
                .with_no_client_auth()
        }
        Trust::CaPem(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                let c = c.map_err(|e| UploadError::Config(format!("CA file: {e}")))?;
                roots
                    .add(c)
                    .map_err(|e| UploadError::Config(format!("CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let qc = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| UploadError::Config(format!("QUIC TLS: {e}")))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(qc));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(1)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(10))
            .map_err(|e| UploadError::Config(e.to_string()))?,
    ));
    transport.send_window(32 * 1024 * 1024);
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

async fn connect(
    cfg: &UploaderConfig,
    tracks: &[TrackInfo],
    anchor_unix_us: i64,
    resume: Option<Resume>,
) -> Result<Connected, UploadError> {
    let addr: SocketAddr = cfg
        .server
        .to_socket_addrs()
        .map_err(|e| UploadError::Config(format!("server address {:?}: {e}", cfg.server)))?
        .next()
        .ok_or_else(|| {
            UploadError::Config(format!(
                "server address {:?} resolves to nothing",
                cfg.server
            ))
        })?;
    let host = cfg.server_name.clone().unwrap_or_else(|| {
        cfg.server
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
            .unwrap_or_else(|| cfg.server.clone())
    });
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0"
            .parse()
            .map_err(|_| UploadError::Config("bind".into()))?
    } else {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| UploadError::Config("bind".into()))?
    };
    let mut endpoint = quinn::Endpoint::client(bind)
        .map_err(|e| UploadError::Disconnected(format!("UDP socket: {e}")))?;
    endpoint.set_default_client_config(client_config(&cfg.trust)?);
    let conn = endpoint
        .connect(addr, &host)
        .map_err(|e| UploadError::Config(format!("connect: {e}")))?
        .await
        .map_err(|e| {
            refused_from(&e)
                .unwrap_or_else(|| UploadError::Disconnected(format!("connecting to {addr}: {e}")))
        })?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| {
        refused_from(&e).unwrap_or_else(|| UploadError::Disconnected(e.to_string()))
    })?;
    let hello = Control::Hello(Hello {
        version: VERSION,
        token: cfg.token.clone(),
        tracks: tracks.to_vec(),
        anchor_unix_us,
        resume,
        client: Some(cfg.client_name.clone()),
        title: cfg.title.clone(),
    });
    send.write_all(&hello.encode())
        .await
        .map_err(|e| UploadError::Disconnected(format!("sending HELLO: {e}")))?;
    let mut dec = ControlDecoder::new();
    let welcome = loop {
        match read_control(&conn, &mut recv, &mut dec).await? {
            Control::Welcome(w) => break w,
            Control::Error(e) => {
                return Err(UploadError::Refused {
                    code: e.code,
                    message: e.message,
                })
            }
            _ => continue,
        }
    };
    Ok(Connected {
        endpoint,
        conn,
        send,
        recv,
        dec,
        welcome,
    })
}

async fn read_control(
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
) -> Result<Control, UploadError> {
    let mut buf = [0u8; 4096];
    loop {
        match dec.decode_next() {
            Ok(Some(m)) => return Ok(m),
            Ok(None) => {}
            Err(e) => {
                return Err(UploadError::Disconnected(format!(
                    "bad control message from server: {e}"
                )))
            }
        }
        match recv.read(&mut buf).await {
            Ok(Some(n)) => dec.push(&buf[..n]),
            Ok(None) | Err(_) => {
                let e = conn.closed().await;
                return Err(
                    refused_from(&e).unwrap_or_else(|| UploadError::Disconnected(e.to_string()))
                );
            }
        }
    }
}

impl Uploader {
    /// Open a session: connect, send HELLO, wait for WELCOME.
    pub async fn start(
        cfg: UploaderConfig,
        tracks: Vec<TrackInfo>,
        anchor_unix_us: i64,
    ) -> Result<Uploader, UploadError> {
        let c = connect(&cfg, &tracks, anchor_unix_us, None).await?;
        let advice = Advice {
            target_bps: cfg.initial_bitrate_bps,
            target_fps: cfg.nominal_fps,
            reason: "start",
        };
        let (advice_tx, _) = tokio::sync::watch::channel(advice);
        let inner = Arc::new(Inner {
            advice_tx,
            session_id: c.welcome.session_id.clone(),
            secret: c.welcome.resume_secret.clone(),
            live_urls: c.welcome.live_urls.clone(),
            st: Mutex::new(St {
                buffer: VecDeque::new(),
                buffer_bytes: 0,
                live_cursor: 0,
                inflight: 0,
                window: cfg.min_window_bytes,
                min_rtt: None,
                advice,
                advice_at: Instant::now(),
                last_backlog: 0,
                video_tracks: tracks
                    .iter()
                    .filter(|t| matches!(t.codec.as_str(), "h264" | "h265") || t.width.is_some())
                    .map(|t| t.id)
                    .collect(),
                acked: c.welcome.next_seq.clone(),
                next_seq: tracks.iter().map(|t| (t.id, 0)).collect(),
                end_requested: false,
                fatal: None,
                stats: UploadStats::default(),
                ack_log: VecDeque::new(),
                connected: true,
                ack_latencies_us: Vec::new(),
            }),
            changed: Notify::new(),
            conn: Mutex::new(None),
            cfg,
            tracks,
        });
        // Registered before the task starts, so the connection can be observed
        // (stats, rebind, drop) from the first moment.
        *inner.conn.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((c.endpoint.clone(), c.conn.clone()));
        let (tx, rx) = oneshot::channel();
        tokio::spawn(run(inner.clone(), c, anchor_unix_us, tx));
        Ok(Uploader {
            inner,
            done: Some(rx),
        })
    }

    /// Session id assigned by the server.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// Live URLs announced by the server.
    pub fn live_urls(&self) -> &[String] {
        &self.inner.live_urls
    }

    /// Current statistics.
    pub fn stats(&self) -> UploadStats {
        let mut s = self.inner.lock().stats.clone();
        if let Some((_, c)) = self
            .inner
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            s.rtt_ms = c.rtt().as_secs_f64() * 1000.0;
        }
        s
    }

    /// Time from [`Uploader::send`] to the durable acknowledgement of every
    /// frame acknowledged since the last call, microseconds.
    pub fn take_ack_latencies(&self) -> Vec<u32> {
        std::mem::take(&mut self.inner.lock().ack_latencies_us)
    }

    /// Frames handed to [`Uploader::send`] so far, per track.
    pub fn frames_per_track(&self) -> BTreeMap<u8, u64> {
        self.inner.lock().next_seq.clone()
    }

    /// The current encoder advice.
    pub fn advice(&self) -> Advice {
        *self.inner.advice_tx.borrow()
    }

    /// A receiver that sees every change of the encoder advice.
    pub fn advice_watch(&self) -> tokio::sync::watch::Receiver<Advice> {
        self.inner.advice_tx.subscribe()
    }

    /// Queue one frame. Its `seq` is assigned here (per track, from 0). Waits
    /// while the buffer is full (see the module docs).
    pub async fn send(&self, mut frame: MediaFrame) -> Result<(), UploadError> {
        let size = frame.data.len();
        if size > self.inner.cfg.max_buffer_bytes {
            return Err(UploadError::FrameTooBig(size));
        }
        let mut disconnected_since: Option<Instant> = None;
        loop {
            let notified = self.inner.changed.notified();
            {
                let mut st = self.inner.lock();
                if let Some(e) = &st.fatal {
                    return Err(e.clone());
                }
                if st.buffer_bytes + size <= self.inner.cfg.max_buffer_bytes {
                    let seq = st.next_seq.entry(frame.track).or_insert(0);
                    frame.seq = *seq;
                    *seq += 1;
                    st.buffer_bytes += size;
                    st.stats.frames_sent += 1;
                    st.buffer.push_back(Entry {
                        frame,
                        sent: false,
                        queued_at: Instant::now(),
                    });
                    drop(st);
                    self.inner.changed.notify_waiters();
                    return Ok(());
                }
                if st.connected {
                    disconnected_since = None;
                } else if disconnected_since
                    .get_or_insert_with(Instant::now)
                    .elapsed()
                    > self.inner.cfg.reconnect_deadline
                {
                    return Err(UploadError::Disconnected(
                        "upload buffer full and no connection".into(),
                    ));
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
        }
    }

    /// End the recording: wait until every frame is durable on the server,
    /// then return the attributes of the produced outputs.
    pub async fn finish(mut self) -> Result<VideoAttributes, UploadError> {
        self.inner.lock().end_requested = true;
        self.inner.changed.notify_waiters();
        match self.done.take() {
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(UploadError::Disconnected("uploader task stopped".into()))),
            None => Err(UploadError::Disconnected("already finished".into())),
        }
    }

    /// Close the current connection abruptly, as a network drop would; the
    /// uploader reconnects and resumes by itself. For tests and demos.
    pub fn drop_connection(&self) {
        if let Some((_, c)) = self
            .inner
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            c.close(0u32.into(), b"client dropped the connection");
        }
    }

    /// Move the connection to a new local UDP socket (what a phone does when it
    /// switches from Wi-Fi to mobile data). QUIC migrates the connection.
    pub fn rebind(&self) -> Result<std::net::SocketAddr, UploadError> {
        let guard = self.inner.conn.lock().unwrap_or_else(|e| e.into_inner());
        let Some((ep, _)) = guard.as_ref() else {
            return Err(UploadError::Disconnected("not connected".into()));
        };
        let bind: SocketAddr = match ep.local_addr() {
            Ok(a) if a.is_ipv6() => "[::]:0"
                .parse()
                .map_err(|_| UploadError::Config("bind".into()))?,
            _ => "0.0.0.0:0"
                .parse()
                .map_err(|_| UploadError::Config("bind".into()))?,
        };
        let sock = std::net::UdpSocket::bind(bind)
            .map_err(|e| UploadError::Disconnected(format!("rebind: {e}")))?;
        let addr = sock
            .local_addr()
            .map_err(|e| UploadError::Disconnected(e.to_string()))?;
        ep.rebind(sock)
            .map_err(|e| UploadError::Disconnected(format!("rebind: {e}")))?;
        Ok(addr)
    }

    /// Local UDP address of the current connection.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|(ep, _)| ep.local_addr().ok())
    }

    /// The tracks of this session.
    pub fn tracks(&self) -> &[TrackInfo] {
        &self.inner.tracks
    }
}

enum ConnEnd {
    Finished(Box<VideoAttributes>),
    Lost(String),
    Fatal(UploadError),
}

async fn run(
    inner: Arc<Inner>,
    first: Connected,
    anchor_unix_us: i64,
    done: oneshot::Sender<Result<VideoAttributes, UploadError>>,
) {
    let mut current = Some(first);
    let mut lost_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let result = loop {
        let c = match current.take() {
            Some(c) => c,
            None => {
                let since = *lost_since.get_or_insert_with(Instant::now);
                if since.elapsed() > inner.cfg.reconnect_deadline {
                    break Err(UploadError::Disconnected(format!(
                        "could not resume within {:?}",
                        inner.cfg.reconnect_deadline
                    )));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                let resume = Resume {
                    session_id: inner.session_id.clone(),
                    secret: inner.secret.clone(),
                };
                match connect(&inner.cfg, &inner.tracks, anchor_unix_us, Some(resume)).await {
                    Ok(c) => {
                        tracing::info!(session = %inner.session_id, "resumed upload session");
                        c
                    }
                    Err(UploadError::Refused { code, message }) if is_fatal(code) => {
                        break Err(UploadError::Refused { code, message });
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "reconnect failed; retrying");
                        continue;
                    }
                }
            }
        };
        lost_since = None;
        backoff = Duration::from_millis(100);
        match drive(&inner, c).await {
            ConnEnd::Finished(a) => break Ok(*a),
            ConnEnd::Fatal(e) => break Err(e),
            ConnEnd::Lost(why) => {
                tracing::warn!(session = %inner.session_id, reason = %why, "connection lost; resuming");
                inner.lock().connected = false;
                *inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
                inner.changed.notify_waiters();
            }
        }
    };
    if let Err(e) = &result {
        inner.lock().fatal = Some(e.clone());
        inner.changed.notify_waiters();
    }
    if let Some((ep, c)) = inner.conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
        c.close(0u32.into(), b"done");
        drop(ep);
    }
    let _ = done.send(result);
}

fn apply_ack(
    st: &mut St,
    cfg: &UploaderConfig,
    next_seq: &BTreeMap<u8, u64>,
    held: &BTreeMap<u8, Vec<(u64, u64)>>,
    rtt: Option<Duration>,
) -> Option<Advice> {
    let mut removed_before_live = 0;
    let mut idx = 0;
    let mut freed = 0usize;
    let mut freed_inflight = 0usize;
    let mut acked_frames = 0u64;
    let live = st.live_cursor;
    let now = Instant::now();
    let mut latencies = std::mem::take(&mut st.ack_latencies_us);
    st.buffer.retain(|e| {
        let keep = !covers(next_seq, held, e.frame.track, e.frame.seq);
        if !keep {
            if latencies.len() < MAX_LATENCY_SAMPLES {
                latencies.push(
                    now.duration_since(e.queued_at)
                        .as_micros()
                        .min(u32::MAX as u128) as u32,
                );
            }
            freed += e.frame.data.len();
            if e.sent {
                freed_inflight += e.frame.data.len();
            }
            acked_frames += 1;
            if idx < live {
                removed_before_live += 1;
            }
        }
        idx += 1;
        keep
    });
    st.ack_latencies_us = latencies;
    st.live_cursor -= removed_before_live;
    st.buffer_bytes -= freed;
    st.inflight = st.inflight.saturating_sub(freed_inflight);
    for (t, n) in next_seq {
        let e = st.acked.entry(*t).or_insert(0);
        *e = (*e).max(*n);
    }
    st.stats.frames_acked += acked_frames;
    let now = Instant::now();
    st.ack_log.push_back((now, freed as u64));
    refresh_rate(st, now);
    st.stats.backlog_bytes = st.buffer_bytes as u64;
    st.stats.backlog_frames = st.buffer.len() as u64;
    if let Some(r) = rtt {
        st.min_rtt = Some(st.min_rtt.map_or(r, |m| m.min(r)));
    }
    // In-flight window: about two round trips (plus 100 ms of slack) of the
    // acknowledged throughput.
    let min_rtt = st.min_rtt.unwrap_or(Duration::from_millis(50));
    let bytes_per_sec = st.stats.acked_bps as f64 / 8.0;
    st.window = cfg
        .min_window_bytes
        .max((2.0 * bytes_per_sec * (min_rtt.as_secs_f64() + 0.1)) as usize);
    st.stats.inflight_bytes = st.inflight as u64;
    st.stats.window_bytes = st.window as u64;
    update_advice(st, cfg, now)
}

/// Recompute the acknowledged throughput over the last 2 seconds.
fn refresh_rate(st: &mut St, now: Instant) {
    while st
        .ack_log
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(2))
    {
        st.ack_log.pop_front();
    }
    let bytes: u64 = st.ack_log.iter().map(|(_, b)| *b).sum();
    st.stats.acked_bps = bytes * 8 / 2;
}

/// Recompute the encoder advice (at most every 500 ms).
fn update_advice(st: &mut St, cfg: &UploaderConfig, now: Instant) -> Option<Advice> {
    if now.duration_since(st.advice_at) < Duration::from_millis(500) {
        return None;
    }
    let throughput = st.stats.acked_bps.max(1);
    let backlog_secs = st.buffer_bytes as f64 * 8.0 / throughput.max(50_000) as f64;
    let old = st.advice;
    let growing = st.buffer_bytes >= st.last_backlog;
    st.last_backlog = st.buffer_bytes;
    let (target, reason) = if backlog_secs > 0.5 && growing {
        let base = old.target_bps.min(throughput);
        ((base as f64 * 0.85) as u64, "congested")
    } else if backlog_secs < 0.2 && st.stats.acked_bps * 2 >= old.target_bps {
        // Only probe upwards while the encoder actually uses its budget.
        ((old.target_bps as f64 * 1.08) as u64 + 20_000, "probing")
    } else {
        (old.target_bps, "steady")
    };
    let target = target.clamp(cfg.min_bitrate_bps, cfg.max_bitrate_bps);
    let fps = if target >= 500_000 {
        cfg.nominal_fps
    } else if target >= 250_000 {
        (cfg.nominal_fps * 2 / 3).max(1)
    } else {
        (cfg.nominal_fps / 2).max(1)
    };
    st.advice_at = now;
    st.advice = Advice {
        target_bps: target,
        target_fps: fps,
        reason,
    };
    (st.advice != old).then_some(st.advice)
}

/// Which stream a frame goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Live,
    Backfill,
}

/// Choose the next frame to send, or `None` to wait (nothing unsent, or the
/// in-flight window is full).
fn pick(st: &mut St, cfg: &UploaderConfig) -> Option<(Lane, Bytes)> {
    if st.inflight > 0 && st.inflight >= st.window {
        return None;
    }
    let oldest_unsent = st.buffer.iter().position(|e| !e.sent)?;
    let newest = st.buffer.back().map(|e| e.frame.pts_us).unwrap_or(0);
    let span = newest.saturating_sub(st.buffer[oldest_unsent].frame.pts_us);
    if span > cfg.live_threshold.as_micros() as i64 {
        // Behind: move the live edge to the newest keyframe (for audio-only
        // sessions, to the newest frame).
        let edge = st
            .buffer
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| {
                st.video_tracks.is_empty()
                    || (e.frame.keyframe && st.video_tracks.contains(&e.frame.track))
            })
            .map(|(i, _)| i);
        if let Some(edge) = edge {
            if edge > st.live_cursor && !st.buffer[edge].sent {
                st.live_cursor = edge;
                st.stats.live_jumps += 1;
            }
        }
    }
    let live_cursor = st.live_cursor;
    let (idx, lane) = match st.buffer.iter().skip(live_cursor).position(|e| !e.sent) {
        Some(off) => (live_cursor + off, Lane::Live),
        None => (oldest_unsent, Lane::Backfill),
    };
    let e = &mut st.buffer[idx];
    e.sent = true;
    st.inflight += e.frame.data.len();
    if lane == Lane::Live {
        st.live_cursor = idx + 1;
    }
    Some((lane, encode_frame(&st.buffer[idx].frame)))
}

async fn drive(inner: &Arc<Inner>, c: Connected) -> ConnEnd {
    let Connected {
        endpoint,
        conn,
        mut send,
        mut recv,
        mut dec,
        welcome,
    } = c;
    {
        let mut st = inner.lock();
        // Resend everything not yet durable.
        for e in st.buffer.iter_mut() {
            e.sent = false;
        }
        st.inflight = 0;
        st.live_cursor = 0;
        let advice = apply_ack(&mut st, &inner.cfg, &welcome.next_seq, &welcome.held, None);
        st.connected = true;
        drop(st);
        if let Some(a) = advice {
            inner.advice_tx.send_replace(a);
        }
    }
    *inner.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some((endpoint, conn.clone()));
    if welcome.resumed {
        // Counted once the connection is in place, so observers that wait
        // for a resume can act on the new connection right away.
        inner.lock().stats.resumes += 1;
    }
    inner.changed.notify_waiters();

    let writer = async {
        let mut end_sent = false;
        let mut live: Option<quinn::SendStream> = None;
        let mut backfill: Option<quinn::SendStream> = None;
        loop {
            let notified = inner.changed.notified();
            let next;
            let mut send_end: Option<End> = None;
            let advice;
            {
                let mut st = inner.lock();
                let now = Instant::now();
                refresh_rate(&mut st, now);
                advice = update_advice(&mut st, &inner.cfg, now);
                next = pick(&mut st, &inner.cfg);
                if next.is_none()
                    && st.end_requested
                    && !end_sent
                    && st.buffer.iter().all(|e| e.sent)
                {
                    send_end = Some(End {
                        frame_count: st.next_seq.clone(),
                    });
                }
            }
            if let Some(a) = advice {
                inner.advice_tx.send_replace(a);
            }
            if let Some((lane, bytes)) = next {
                let slot = match lane {
                    Lane::Live => &mut live,
                    Lane::Backfill => &mut backfill,
                };
                if slot.is_none() {
                    match conn.open_uni().await {
                        Ok(s) => {
                            // Live data goes on the wire before backlog.
                            let _ = s.set_priority(if lane == Lane::Live { 1 } else { 0 });
                            *slot = Some(s);
                        }
                        Err(e) => return format!("opening a frame stream: {e}"),
                    }
                }
                if let Some(stream) = slot.as_mut() {
                    if let Err(e) = stream.write_all(&bytes).await {
                        return format!("writing frames: {e}");
                    }
                }
                continue;
            }
            if let Some(end) = send_end {
                if let Err(e) = send.write_all(&Control::End(end).encode()).await {
                    return format!("sending END: {e}");
                }
                end_sent = true;
            }
            // Wake on new frames or acks; also re-check periodically.
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    };
    let reader = async {
        loop {
            match read_control(&conn, &mut recv, &mut dec).await {
                Ok(Control::Ack(a)) => {
                    let mut st = inner.lock();
                    let advice =
                        apply_ack(&mut st, &inner.cfg, &a.next_seq, &a.held, Some(conn.rtt()));
                    drop(st);
                    if let Some(a) = advice {
                        inner.advice_tx.send_replace(a);
                    }
                    inner.changed.notify_waiters();
                }
                Ok(Control::Finished(f)) => return ConnEnd::Finished(Box::new(f.attributes)),
                Ok(Control::Error(e)) => {
                    if is_fatal(e.code) {
                        return ConnEnd::Fatal(UploadError::Refused {
                            code: e.code,
                            message: e.message,
                        });
                    }
                    return ConnEnd::Lost(format!("server error {}: {}", e.code, e.message));
                }
                Ok(_) => {}
                Err(UploadError::Refused { code, message }) if is_fatal(code) => {
                    return ConnEnd::Fatal(UploadError::Refused { code, message })
                }
                Err(e) => return ConnEnd::Lost(e.to_string()),
            }
        }
    };
    let end = tokio::select! {
        why = writer => {
            // The writer only stops on an error; the connection's close
            // reason (if the server closed it) tells whether it is fatal.
            match tokio::time::timeout(Duration::from_secs(2), conn.closed()).await {
                Ok(e) => match refused_from(&e) {
                    Some(UploadError::Refused { code, message }) if is_fatal(code) => {
                        ConnEnd::Fatal(UploadError::Refused { code, message })
                    }
                    _ => ConnEnd::Lost(why),
                },
                Err(_) => ConnEnd::Lost(why),
            }
        }
        end = reader => end,
    };
    if let ConnEnd::Finished(_) = &end {
        conn.close(0u32.into(), b"finished");
    }
    end
}
