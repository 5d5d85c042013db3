//! One phone's connection, as section 6 of `docs/ingest-protocol.md` tells
//! it: the phone opens the control stream and sends HELLO; the server opens
//! or resumes the session ([`crate::hello`]) and answers WELCOME; frames
//! arrive on frame streams and ACKs follow their durability; END is
//! answered FINISHED. When the connection goes, the session waits for its
//! phone to resume (or, stopped by an error, is finalised at once).
//!
//! Refusals (section 4.6): ERROR first on the control stream, then the
//! close with the same code, once per connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{
    Ack, Control, ControlDecoder, End, ErrorCode, ErrorMsg, Finished, FrameDecoder, Hello, Limits,
    Welcome,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::hello::open_session;
use crate::server::{finalise, spawn_resume_timer, Shared};
use crate::session::{Lifecycle, Reject, Session};
use crate::{lock, ConnectionChange};

/// Serve one connection from its handshake to its close.
pub(crate) async fn handle_connection(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
) -> Result<()> {
    let remote = incoming.remote_address();
    let Some(conn) = handshake(&shared, incoming).await else {
        return Ok(());
    };
    // Stable ids are addresses: a later connection can get the id of one
    // that is gone. Forget this one's refusal when its handler ends (before
    // `conn` itself is dropped), or the next connection with its id would be
    // taken as refused already and dropped without a word.
    let _forget = ForgetRefusal(shared.clone(), conn.stable_id());
    let Some((send, recv)) = accept_control_stream(&shared, &conn).await? else {
        return Ok(());
    };
    let mut ctrl = ControlReader::new(recv, &shared);
    let (ctrl_tx, ctrl_rx) = mpsc::unbounded_channel::<Outgoing>();
    tokio::spawn(control_writer(shared.clone(), conn.clone(), send, ctrl_rx));
    let opened = match read_hello(&shared, &mut ctrl).await {
        Ok(None) => return Ok(()),
        Ok(Some(hello)) => open_session(&shared, &hello, remote)
            .await
            .map(|s| (s, hello.resume.is_some())),
        Err(r) => Err(r),
    };
    let (session, resumed) = match opened {
        Ok(opened) => opened,
        Err(r) => {
            refuse(&shared, &conn, Some(&ctrl_tx), r);
            // Until the connection closes, the refusal is still being
            // delivered.
            let _ = conn.closed().await;
            return Ok(());
        }
    };
    let link = Link {
        shared,
        session,
        conn,
        ctrl: ctrl_tx,
    };
    let generation = link.attach(resumed);
    link.welcome(resumed);
    tracing::info!(session = %link.session.info.id, device = %link.session.info.device.name, %remote, resumed, "ingest connection attached");
    let acks = link.spawn_ack_writer();
    let frames = tokio::spawn(accept_frame_streams(link.clone()));
    control_loop(&link, &mut ctrl).await;
    let _ = link.conn.closed().await;
    lock(&link.shared.refused).remove(&link.conn.stable_id());
    acks.abort();
    frames.abort();
    link.detach(generation);
    Ok(())
}

/// The QUIC handshake. A client speaking another protocol (no
/// `sharecast/1` ALPN), or failing TLS, never reaches the session layer: it
/// is counted and logged, and `None` returned.
async fn handshake(shared: &Shared, incoming: quinn::Incoming) -> Option<quinn::Connection> {
    let remote = incoming.remote_address();
    match incoming.await {
        Ok(conn) => {
            shared.metrics.connections.inc();
            Some(conn)
        }
        Err(e) => {
            shared.metrics.handshakes_failed.inc();
            tracing::info!(%remote, error = %e, "ingest handshake failed");
            None
        }
    }
}

/// The control stream, which the phone opens first. `None` when it opens
/// none within `hello_timeout_secs`: refused `stalled` by the close alone
/// (there is no stream to carry ERROR).
async fn accept_control_stream(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
) -> Result<Option<(quinn::SendStream, quinn::RecvStream)>> {
    let hello_timeout = Duration::from_secs(shared.cfg.hello_timeout_secs);
    match tokio::time::timeout(hello_timeout, conn.accept_bi()).await {
        Ok(Ok(streams)) => Ok(Some(streams)),
        Ok(Err(e)) => Err(e).context("accepting the control stream"),
        Err(_) => {
            reject(
                shared,
                conn,
                None,
                ErrorCode::Stalled,
                "no control stream opened in time",
            );
            let _ = conn.closed().await;
            Ok(None)
        }
    }
}

/// HELLO, the first message, within `hello_timeout_secs`. `Ok(None)` when
/// the stream or the connection ended first.
async fn read_hello(shared: &Shared, ctrl: &mut ControlReader) -> Result<Option<Hello>, Refused> {
    let hello_timeout = Duration::from_secs(shared.cfg.hello_timeout_secs);
    match tokio::time::timeout(hello_timeout, ctrl.next()).await {
        Ok(Ok(Some(Control::Hello(h)))) => Ok(Some(h)),
        Ok(Ok(Some(other))) => Err((
            ErrorCode::BadMessage,
            format!(
                "expected HELLO, got message type 0x{:02x}",
                other.type_byte()
            ),
        )
            .into()),
        Ok(Ok(None)) | Ok(Err((ErrorCode::Ok, _))) => Ok(None),
        Ok(Err(r)) => Err(r.into()),
        Err(_) => Err((ErrorCode::Stalled, "no HELLO in time".to_string()).into()),
    }
}

/// The control messages after HELLO, until END is answered, the stream
/// ends, or the phone's input is refused.
async fn control_loop(link: &Link, ctrl: &mut ControlReader) {
    loop {
        match ctrl.next().await {
            Ok(Some(Control::End(end))) => return link.end(&end).await,
            // What the phone sees (its advice, its backlog): for the admin.
            Ok(Some(Control::Report(r))) => link.session.lock().report = Some(r),
            Ok(Some(Control::Error(e))) => {
                // The phone's words, escaped and cut: they go to the log.
                let message: String = e.message.chars().take(256).collect();
                tracing::warn!(session = %link.session.info.id, code = e.code, message = ?message, "client reported an error");
            }
            Ok(Some(other)) => {
                let msg = format!(
                    "unexpected control message type 0x{:02x} after HELLO",
                    other.type_byte()
                );
                return link.refuse(ErrorCode::BadMessage, &msg);
            }
            Ok(None) | Err((ErrorCode::Ok, _)) => return,
            Err((code, msg)) => return link.refuse(code, &msg),
        }
    }
}

/// A connection attached to its session: what every step after WELCOME
/// needs to answer the phone.
#[derive(Clone)]
struct Link {
    shared: Arc<Shared>,
    session: Arc<Session>,
    conn: quinn::Connection,
    ctrl: ControlTx,
}

impl Link {
    /// Attach this connection to the session, superseding (closing) any
    /// previous one. Returns the connection's generation.
    fn attach(&self, resumed: bool) -> u64 {
        let session = &self.session;
        let generation = session.generation.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(old) = lock(&session.connection).replace(self.conn.clone()) {
            old.close(
                ErrorCode::Ok.as_u16().into(),
                b"superseded by a resumed connection",
            );
        }
        let was_suspended = session.lifecycle() == Lifecycle::Suspended;
        session.set_lifecycle(Lifecycle::Connected);
        if resumed {
            if was_suspended {
                session.output.connection_changed(ConnectionChange::Resumed);
            }
            session.lock().resumes += 1;
            self.shared.metrics.sessions_resumed.inc();
        }
        generation
    }

    /// WELCOME: the session, what the server holds of it, its limits.
    fn welcome(&self, resumed: bool) {
        let (session, cfg) = (&self.session, &self.shared.cfg);
        let (next_seq, held) = session.ack_state();
        let welcome = Welcome {
            session_id: session.info.id.clone(),
            resume_secret: session.secret.clone(),
            resumed,
            next_seq,
            held,
            limits: Limits {
                max_frame_bytes: cfg.max_frame_bytes,
                max_bitrate_bps: cfg.max_bitrate_bps,
                max_session_secs: cfg.max_session_secs,
            },
            live_urls: self.shared.handler.live_urls(&session.info.id),
            reports: true,
        };
        let _ = self.ctrl.send(Outgoing::Msg(Control::Welcome(welcome)));
    }

    /// ACKs follow durability: one for each change of the durable frames.
    fn spawn_ack_writer(&self) -> JoinHandle<()> {
        let mut ack_rx = self.session.ack_tx.subscribe();
        let ack_tx = self.ctrl.clone();
        tokio::spawn(async move {
            while ack_rx.changed().await.is_ok() {
                let (next_seq, held) = ack_rx.borrow_and_update().clone();
                let ack = Outgoing::Msg(Control::Ack(Ack { next_seq, held }));
                if ack_tx.send(ack).is_err() {
                    break;
                }
            }
        })
    }

    /// Refuse the phone's input (see [`reject_in_session`]).
    fn refuse(&self, code: ErrorCode, message: &str) {
        reject_in_session(
            &self.shared,
            &self.session,
            &self.conn,
            &self.ctrl,
            code,
            message,
        );
    }

    /// END: once its frames are durable, finalise and answer FINISHED.
    async fn end(&self, end: &End) {
        match self.wait_for_end(end).await {
            Ok(attributes) => {
                let finished = Control::Finished(Finished { attributes });
                let _ = self.ctrl.send(Outgoing::Msg(finished));
                // Let the client read FINISHED and close first.
                let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.closed()).await;
            }
            // The connection is gone already.
            Err((ErrorCode::Ok, _)) => {}
            Err((code, msg)) => self.refuse(code, &msg),
        }
    }

    /// Wait up to `end_wait_secs` until every frame END announced is
    /// durable, then finalise the session's outputs.
    async fn wait_for_end(&self, end: &End) -> Result<VideoAttributes, Reject> {
        let session = &self.session;
        if let Some(t) = end
            .frame_count
            .keys()
            .find(|t| !session.info.tracks.iter().any(|x| x.id == **t))
        {
            return Err((
                ErrorCode::UnknownTrack,
                format!("END counts track {t} which HELLO did not declare"),
            ));
        }
        let complete = |next: &BTreeMap<u8, u64>| {
            end.frame_count
                .iter()
                .all(|(t, n)| next.get(t).copied().unwrap_or(0) >= *n)
        };
        let mut rx = session.ack_tx.subscribe();
        let wait = Duration::from_secs(self.shared.cfg.end_wait_secs);
        // Until END's frames are durable, the wait times out, or the
        // connection is gone (another error, or the phone left).
        let waited = tokio::time::timeout(wait, async {
            tokio::select! {
                _ = async {
                    while !complete(&rx.borrow_and_update().0) {
                        if rx.changed().await.is_err() {
                            return;
                        }
                    }
                } => true,
                _ = self.conn.closed() => false,
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
        let have = session.next_seq();
        if !complete(&have) {
            return Err((
                ErrorCode::MissingFrames,
                format!(
                    "END announced {:?} frames but only {:?} arrived",
                    end.frame_count, have
                ),
            ));
        }
        finalise(&self.shared, session)
            .await
            .map_err(|e| (ErrorCode::Internal, format!("finalising outputs: {e:#}")))
    }

    /// The connection is gone. A session stopped by an error is not
    /// resumable: what it holds is finalised now rather than after the
    /// resume timeout. Otherwise, unless a newer connection took over, the
    /// session waits for its phone.
    fn detach(self, generation: u64) {
        let Link {
            shared,
            session,
            conn,
            ..
        } = self;
        if session.lifecycle() == Lifecycle::Stopped {
            lock(&session.connection).take();
            tokio::spawn(async move {
                if let Err(e) = finalise(&shared, &session).await {
                    tracing::error!(session = %session.info.id, error = %format!("{e:#}"), "could not finalise a stopped session");
                }
            });
            return;
        }
        if session.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        let mut c = lock(&session.connection);
        if c.as_ref().map(|c| c.stable_id()) == Some(conn.stable_id()) {
            *c = None;
        }
        drop(c);
        if session.lifecycle() == Lifecycle::Connected {
            session.set_lifecycle(Lifecycle::Suspended);
            session
                .output
                .connection_changed(ConnectionChange::Suspended {
                    reason: "connection_lost",
                });
            tracing::info!(session = %session.info.id, "phone disconnected; waiting for it to resume");
            let wait = Duration::from_secs(shared.cfg.resume_timeout_secs);
            spawn_resume_timer(shared, session, generation, wait);
        }
    }
}

/// Frame streams, as the phone opens them, each read on its own.
async fn accept_frame_streams(link: Link) {
    while let Ok(stream) = link.conn.accept_uni().await {
        tokio::spawn(read_frames(link.clone(), stream));
    }
}

/// Frame records of one stream into the session, until the stream ends or
/// a record is refused.
async fn read_frames(link: Link, mut stream: quinn::RecvStream) {
    let shared = &link.shared;
    let mut dec = FrameDecoder::new(shared.cfg.max_frame_bytes);
    let stall = Duration::from_secs(shared.cfg.stall_timeout_secs);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        loop {
            match dec.decode_next() {
                Ok(Some(frame)) => {
                    if let Err((code, msg)) = take_frame(&link, frame) {
                        return link.refuse(code, &msg);
                    }
                }
                Ok(None) => break,
                Err(e) => return link.refuse(e.code(), &format!("frame stream: {e}")),
            }
        }
        let read = if dec.is_idle() {
            stream.read(&mut buf).await
        } else {
            match tokio::time::timeout(stall, stream.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => return link.refuse(ErrorCode::Stalled, "frame incomplete for too long"),
            }
        };
        match read {
            Ok(Some(n)) => dec.push(&buf[..n]),
            Ok(None) => {
                if let Err(e) = dec.finish() {
                    link.refuse(ErrorCode::BadMessage, &format!("frame stream: {e}"));
                }
                return;
            }
            // Connection lost or stream reset: frames already taken are kept.
            Err(_) => return,
        }
    }
}

/// One decoded frame: counted, and taken by the session (a duplicate is
/// counted as one).
fn take_frame(link: &Link, frame: sharecast_formats::media::MediaFrame) -> Result<(), Reject> {
    let metrics = &link.shared.metrics;
    metrics.frames_received.inc();
    metrics.bytes_received.inc_by(frame.data.len() as u64);
    if !link.session.accept(frame)? {
        metrics.frames_duplicate.inc();
    }
    Ok(())
}

/// Removes a connection from the refused set when dropped.
struct ForgetRefusal(Arc<Shared>, usize);

impl Drop for ForgetRefusal {
    fn drop(&mut self) {
        lock(&self.0.refused).remove(&self.1);
    }
}

/// A refusal to tell the phone: its code, a message, and for
/// `rate_limited` how long to wait.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
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
    // A closed connection was refused already (or is gone): a frame stream
    // still decoding what arrived before the close is not a second refusal,
    // even once the handler has forgotten the first.
    if conn.close_reason().is_some() || !first_refusal(shared, conn) {
        return;
    }
    let Refused {
        code,
        message,
        retry_after,
    } = r;
    shared.metrics.reject(code);
    log_refusal(conn.remote_address(), code, &message);
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

/// Whether this is the connection's first refusal (it is told only once).
fn first_refusal(shared: &Shared, conn: &quinn::Connection) -> bool {
    let mut refused = lock(&shared.refused);
    // Each connection's handler removes its entry when it ends; bound the
    // set all the same.
    if refused.len() > 100_000 {
        refused.clear();
    }
    refused.insert(conn.stable_id())
}

fn log_refusal(remote: SocketAddr, code: ErrorCode, message: &str) {
    if code == ErrorCode::RateLimited {
        // Refusals of the failed-authentication limiter come in floods;
        // the backoff that caused them was logged when it started.
        tracing::debug!(%remote, code = code.name(), message, "ingest rejected input");
    } else {
        tracing::warn!(%remote, code = code.name(), message, "ingest rejected input");
    }
}

/// Reads control messages off the control stream.
struct ControlReader {
    recv: quinn::RecvStream,
    dec: ControlDecoder,
    stall: Duration,
}

impl ControlReader {
    fn new(recv: quinn::RecvStream, shared: &Shared) -> ControlReader {
        ControlReader {
            recv,
            dec: ControlDecoder::new(),
            stall: Duration::from_secs(shared.cfg.stall_timeout_secs),
        }
    }

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
