//! The thin I/O layer of the uploader: QUIC connections (quinn), TLS
//! trust, the control stream, and the tasks that move bytes. Every decision
//! is taken by [`super::state::UploadState`]; this module only feeds it
//! what the network says and does what it answers.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{
    encode_frame, Control, ControlDecoder, End, ErrorCode, Hello, Report, Resume, Welcome, ALPN,
    VERSION,
};
use sharecast_formats::media::TrackInfo;
use tokio::sync::oneshot;

use super::state::Lane;
use super::{Inner, Trust, UploadError, UploadEvent, UploaderConfig};

pub(super) struct Connected {
    pub(super) endpoint: quinn::Endpoint,
    pub(super) conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    dec: ControlDecoder,
    pub(super) welcome: Welcome,
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
                | ErrorCode::StorageFull
        )
    )
}

/// How long to wait before resuming after the server said its disk is
/// full (`storage_full`): the frames are kept meanwhile.
const STORAGE_FULL_WAIT: Duration = Duration::from_secs(2);

/// Whether the server closed the connection because its disk is full.
fn closed_for_storage_full(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if u64::from(c.error_code) == u64::from(ErrorCode::StorageFull.as_u16())
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

/// Connect to the first address of `cfg.server` and `cfg.extra_servers`
/// that answers, send HELLO and wait for WELCOME. A refusal by the server
/// is final; an address that cannot be reached makes the next one tried.
pub(super) async fn connect(
    cfg: &UploaderConfig,
    tracks: &[TrackInfo],
    anchor_unix_us: i64,
    resume: Option<Resume>,
) -> Result<Connected, UploadError> {
    let mut last = None;
    for server in std::iter::once(&cfg.server).chain(cfg.extra_servers.iter()) {
        match connect_to(cfg, server, tracks, anchor_unix_us, resume.clone()).await {
            Ok(c) => return Ok(c),
            Err(e @ UploadError::Refused { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(%server, error = %e, "server address not reachable");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| UploadError::Config("no server address".into())))
}

async fn connect_to(
    cfg: &UploaderConfig,
    server: &str,
    tracks: &[TrackInfo],
    anchor_unix_us: i64,
    resume: Option<Resume>,
) -> Result<Connected, UploadError> {
    let addr: SocketAddr = server
        .to_socket_addrs()
        .map_err(|e| UploadError::Config(format!("server address {server:?}: {e}")))?
        .next()
        .ok_or_else(|| {
            UploadError::Config(format!("server address {server:?} resolves to nothing"))
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

enum ConnEnd {
    Finished(Box<VideoAttributes>),
    Lost(String),
    Fatal(UploadError),
}

/// The connection task: drive each connection, resume after losses until
/// `reconnect_deadline`, and report the outcome.
pub(super) async fn run(
    inner: Arc<Inner>,
    first: Connected,
    done: oneshot::Sender<Result<VideoAttributes, UploadError>>,
) {
    let mut current = Some(first);
    let mut lost_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    let result = loop {
        let c = match current.take() {
            Some(c) => c,
            None => match reconnect(&inner, &mut lost_since, &mut backoff).await {
                Ok(Some(c)) => c,
                Ok(None) => continue,
                Err(e) => break Err(e),
            },
        };
        lost_since = None;
        backoff = Duration::from_millis(100);
        match drive(&inner, c).await {
            ConnEnd::Finished(a) => break Ok(*a),
            ConnEnd::Fatal(e) => break Err(e),
            ConnEnd::Lost(why) => {
                if why.contains(ErrorCode::StorageFull.name()) {
                    // Retry later, keeping every frame not acknowledged.
                    backoff = STORAGE_FULL_WAIT;
                }
                tracing::warn!(session = %inner.session_id, reason = %why, "connection lost; resuming");
                inner.lock().state.on_lost();
                *inner.conn() = None;
                inner.changed.notify_waiters();
                inner.emit(UploadEvent::Reconnecting { reason: why });
            }
        }
    };
    report_outcome(&inner, &result);
    let _ = done.send(result);
}

/// One attempt to resume the session after a loss, after a backoff that
/// doubles up to two seconds: the new connection, `None` to try again, or
/// the error that ends the upload (the server refused for good, or
/// `reconnect_deadline` passed since the loss).
async fn reconnect(
    inner: &Inner,
    lost_since: &mut Option<Instant>,
    backoff: &mut Duration,
) -> Result<Option<Connected>, UploadError> {
    let since = *lost_since.get_or_insert_with(Instant::now);
    if since.elapsed() > inner.cfg.reconnect_deadline {
        return Err(UploadError::Disconnected(format!(
            "could not resume within {:?}",
            inner.cfg.reconnect_deadline
        )));
    }
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(2));
    let resume = Resume {
        session_id: inner.session_id.clone(),
        secret: inner.secret.clone(),
    };
    match connect(
        &inner.cfg,
        &inner.tracks,
        inner.anchor_unix_us,
        Some(resume),
    )
    .await
    {
        Ok(c) => {
            tracing::info!(session = %inner.session_id, "resumed upload session");
            Ok(Some(c))
        }
        Err(UploadError::Refused { code, message }) if is_fatal(code) => {
            Err(UploadError::Refused { code, message })
        }
        Err(e) => {
            tracing::debug!(error = %e, "reconnect failed; retrying");
            Ok(None)
        }
    }
}

/// The upload ended: drop the spool once the server has everything, tell
/// the app, and close the connection.
fn report_outcome(inner: &Inner, result: &Result<VideoAttributes, UploadError>) {
    inner.lock().ended = true;
    match result {
        Ok(a) => {
            // The server has everything: the spool's copy can go.
            let spool = inner.lock().spool.take();
            if let Some(s) = spool {
                if let Err(e) = s.finish() {
                    tracing::warn!(session = %inner.session_id, error = %e, "spool not removed");
                }
            }
            inner.emit(UploadEvent::Finished(Box::new(a.clone())));
        }
        Err(e) => {
            inner.lock().fatal = Some(e.clone());
            inner.changed.notify_waiters();
            inner.emit(UploadEvent::Failed(e.clone()));
        }
    }
    if let Some((ep, c)) = inner.conn().take() {
        c.close(0u32.into(), b"done");
        drop(ep);
    }
}

/// Every second: tell the app about a backlog (more than half a second of
/// capture time waiting, or no connection), and once more when it drains.
pub(super) async fn monitor(inner: Weak<Inner>) {
    let mut reported = false;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = inner.upgrade() else { return };
        let event = {
            let sh = inner.lock();
            if sh.ended {
                return;
            }
            let st = &sh.state;
            let behind = st.backlog_span_us() > 500_000 || !st.connected();
            let report = behind || reported;
            reported = behind;
            report.then(|| UploadEvent::Backlog {
                frames: st.backlog_frames() as u64,
                bytes: st.backlog_bytes() as u64,
                span_ms: (st.backlog_span_us() / 1000) as u64,
                spool_bytes: sh.spool.as_ref().map_or(0, |s| s.bytes()),
                connected: st.connected(),
            })
        };
        if let Some(e) = event {
            inner.emit(e);
        }
    }
}

/// What the writer does next: a frame record to write on a lane (or none:
/// wait), and END when it is due.
struct Next {
    frame: Option<(Lane, bytes::Bytes)>,
    end: Option<End>,
}

/// Ask the state machine what to write next.
fn next_transmit(inner: &Inner, end_sent: bool) -> Result<Next, String> {
    let now = Instant::now();
    let mut g = inner.lock();
    let sh = &mut *g;
    let advice = sh.state.tick(now);
    let next = match sh.state.poll_transmit() {
        None => None,
        Some(t) if t.resident => Some((t.lane, encode_frame(&t.frame))),
        Some(t) => {
            let Some(at) = t.spool else {
                return Err(format!(
                    "frame {} of track {} has neither bytes nor a spool copy",
                    t.frame.seq, t.frame.track
                ));
            };
            let Some(spool) = sh.spool.as_mut() else {
                return Err("spooled frame without a spool".into());
            };
            let f = spool.read(at).map_err(|e| e.to_string())?;
            if f.track != t.frame.track || f.seq != t.frame.seq {
                return Err(format!(
                    "spool gave frame {}/{} for {}/{}",
                    f.track, f.seq, t.frame.track, t.frame.seq
                ));
            }
            Some((t.lane, encode_frame(&f)))
        }
    };
    let end = if next.is_none() && !end_sent {
        sh.state.end_due().map(|frame_count| End { frame_count })
    } else {
        None
    };
    drop(g);
    inner.publish_advice(advice);
    Ok(Next { frame: next, end })
}

/// Drive one connection: resend what the server lacks, then write frames
/// and read acks until the upload finishes or the connection ends.
async fn drive(inner: &Arc<Inner>, c: Connected) -> ConnEnd {
    let Connected {
        endpoint,
        conn,
        mut send,
        mut recv,
        mut dec,
        welcome,
    } = c;
    on_welcome(inner, endpoint, &conn, &welcome);
    let end = tokio::select! {
        why = write_frames(inner, &conn, &mut send, welcome.reports) => match why {
            Err(local) => ConnEnd::Fatal(local),
            // The writer only stops on an error; the connection's close
            // reason (if the server closed it) tells whether it is fatal.
            Ok(why) => match tokio::time::timeout(Duration::from_secs(2), conn.closed()).await {
                Ok(e) => match refused_from(&e) {
                    Some(UploadError::Refused { code, message }) if is_fatal(code) => {
                        ConnEnd::Fatal(UploadError::Refused { code, message })
                    }
                    // Why the connection ended (a stateless reset from a
                    // restarted server, a timeout), not only that it did.
                    _ => ConnEnd::Lost(format!("{why} ({e})")),
                },
                Err(_) => ConnEnd::Lost(why),
            },
        },
        end = read_acks(inner, &conn, &mut recv, &mut dec) => end,
    };
    if let ConnEnd::Finished(_) = &end {
        conn.close(0u32.into(), b"finished");
    }
    match end {
        ConnEnd::Lost(why) if closed_for_storage_full(&conn) => ConnEnd::Lost(format!(
            "{}: the server's disk is full ({why})",
            ErrorCode::StorageFull.name()
        )),
        end => end,
    }
}

/// The server's WELCOME is in: queue everything not yet durable again,
/// publish the connection, and count a resume.
fn on_welcome(
    inner: &Inner,
    endpoint: quinn::Endpoint,
    conn: &quinn::Connection,
    welcome: &Welcome,
) {
    {
        let mut g = inner.lock();
        let sh = &mut *g;
        // Resend everything not yet durable.
        let out = sh
            .state
            .on_welcome(&welcome.next_seq, &welcome.held, Instant::now());
        if let Some(s) = sh.spool.as_mut() {
            s.release(&out.spool_released);
        }
        drop(g);
        inner.publish_advice(out.advice);
    }
    *inner.conn() = Some((endpoint, conn.clone()));
    if welcome.resumed {
        // Counted once the connection is in place, so observers that wait
        // for a resume can act on the new connection right away.
        let resumes = inner.lock().state.on_resumed();
        inner.emit(UploadEvent::Resumed { resumes });
    }
    inner.changed.notify_waiters();
}

/// How often the client sends REPORT to a server that takes them.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// REPORT: the advice the app is given and the backlog, as the state
/// machine has them now.
fn report(inner: &Inner) -> Report {
    let g = inner.lock();
    let stats = g.state.stats();
    Report {
        advised_bps: Some(g.state.advice().target_bps),
        backlog_bytes: Some(stats.backlog_bytes),
        backlog_frames: Some(stats.backlog_frames),
    }
}

/// The writer: frames on their lane's stream (opened on first use, live
/// before backlog), END when it is due, and a REPORT every second to a
/// server that takes them (`reports`). Stops only on an error: a local
/// one (the spool) ends the upload, a network one (`Ok(why)`) loses the
/// connection.
async fn write_frames(
    inner: &Inner,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    reports: bool,
) -> Result<String, UploadError> {
    let mut end_sent = false;
    let mut live: Option<quinn::SendStream> = None;
    let mut backfill: Option<quinn::SendStream> = None;
    let mut last_report: Option<Instant> = None;
    loop {
        if reports && !end_sent && last_report.is_none_or(|t| t.elapsed() >= REPORT_INTERVAL) {
            last_report = Some(Instant::now());
            let msg = Control::Report(report(inner)).encode();
            if let Err(e) = send.write_all(&msg).await {
                return Ok(format!("sending REPORT: {e}"));
            }
        }
        let notified = inner.changed.notified();
        let Next {
            frame: next,
            end: send_end,
        } = match next_transmit(inner, end_sent) {
            Ok(x) => x,
            Err(why) => return Err(UploadError::Spool(why)),
        };
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
                    Err(e) => return Ok(format!("opening a frame stream: {e}")),
                }
            }
            if let Some(stream) = slot.as_mut() {
                if let Err(e) = stream.write_all(&bytes).await {
                    return Ok(format!("writing frames: {e}"));
                }
            }
            continue;
        }
        if let Some(end) = send_end {
            if let Err(e) = send.write_all(&Control::End(end).encode()).await {
                return Ok(format!("sending END: {e}"));
            }
            end_sent = true;
        }
        // Wake on new frames or acks; also re-check periodically.
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}

/// The reader: acks release frames (and their spool copies) until the
/// server says FINISHED or ERROR, or the connection ends.
async fn read_acks(
    inner: &Inner,
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
) -> ConnEnd {
    loop {
        match read_control(conn, recv, dec).await {
            Ok(Control::Ack(a)) => {
                let advice = {
                    let mut g = inner.lock();
                    let sh = &mut *g;
                    let out =
                        sh.state
                            .on_ack(&a.next_seq, &a.held, Some(conn.rtt()), Instant::now());
                    if let Some(s) = sh.spool.as_mut() {
                        s.release(&out.spool_released);
                    }
                    out.advice
                };
                inner.publish_advice(advice);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_full_means_retry_later() {
        assert!(!is_fatal(ErrorCode::StorageFull.as_u16()));
        assert!(!is_fatal(ErrorCode::Internal.as_u16()));
        assert!(is_fatal(ErrorCode::Unauthorized.as_u16()));
        assert!(STORAGE_FULL_WAIT >= Duration::from_secs(1));
    }
}
