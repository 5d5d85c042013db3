//! RTMP ingest: publishers that speak RTMP (Larix Broadcaster, OBS,
//! ffmpeg, GStreamer's `rtmp2sink`) feed the same sessions as the QUIC
//! protocol: journal, recording, live stream, attributes, admin, metrics.
//!
//! The RTMP session (handshake, chunking, AMF commands) is `rml_rtmp`'s;
//! this module authenticates the stream key (a publishing key of a device,
//! [`SessionHandler::authenticate_publisher`](crate::SessionHandler::authenticate_publisher),
//! under the same failed-authentication limits as HELLO), reads the FLV media
//! ([`flv`]) into frames and keeps **one recording across reconnects**: a
//! publisher that comes back with the same key within
//! `ingest.rejoin_window_secs` continues its session (same asset, same
//! live URLs, timestamps continuing from where they stopped; the time it
//! was away is a gap in the recording, no frame is invented). Unlike a QUIC
//! phone, an RTMP publisher does not resend what it sent before the
//! connection dropped: frames lost in flight are lost.

pub(crate) mod flv;
mod publish;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use sharecast_formats::ingest::ErrorCode;
use sharecast_formats::media::{MediaFrame, TrackInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::limiter::token_key;
use crate::metrics::RtmpEnd;
use crate::server::Shared;
use crate::session::Session;
use crate::DeviceIdentity;

/// Accept RTMP connections until the listener fails.
pub(crate) async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let Some(slot) = crate::server::ConnectionSlot::take(&shared) else {
                    tracing::warn!(%remote, "RTMP connection refused: max_connections are open");
                    drop(stream);
                    continue;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    connection(shared, stream, remote).await
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting an RTMP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Publishes that can be continued, by the hash of their stream key.
#[derive(Default)]
pub(crate) struct Publishes(Mutex<HashMap<String, Arc<Mutex<Publish>>>>);

/// What continues across a publisher's connections: its session, the next
/// sequence number and the last decode timestamp of each track, and the
/// frame of each track held until the next one gives its duration.
pub(crate) struct Publish {
    session: Arc<Session>,
    tracks: Vec<TrackInfo>,
    next_seq: [u64; 2],
    last_dts_us: [Option<i64>; 2],
    held: [Option<MediaFrame>; 2],
    /// The duration of each track's last frame that had a next one, µs
    /// (0: none yet).
    last_duration_us: [u32; 2],
    /// The connection publishing now; the one it supersedes is told.
    generation: u64,
    kick: Arc<Notify>,
}

/// Why a connection ended before its publisher stopped: counted by reason,
/// logged, and (for a refused publish) answered on the RTMP session.
#[derive(Debug)]
struct Ended {
    reason: RtmpEnd,
    message: String,
}

fn ended(reason: RtmpEnd, message: impl Into<String>) -> Ended {
    Ended {
        reason,
        message: message.into(),
    }
}

/// One RTMP connection, from handshake to close.
async fn connection(shared: Arc<Shared>, mut stream: TcpStream, remote: SocketAddr) {
    shared.metrics.rtmp_connections.inc();
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        shared: shared.clone(),
        remote,
        rtmp: None,
        device: None,
        publish: None,
        session_generation: 0,
        metadata: StreamMetadata::new(),
        video_cfg: None,
        audio_cfg: None,
        clock: None,
        base_us: 0,
    };
    let result = conn.run(&mut stream).await;
    conn.detach();
    match result {
        Ok(()) => tracing::debug!(%remote, "RTMP connection closed"),
        Err(e) => {
            shared.metrics.rtmp_ended(e.reason);
            tracing::info!(%remote, reason = e.reason.name(), message = %e.message, "RTMP connection ended");
        }
    }
}

struct Conn {
    shared: Arc<Shared>,
    remote: SocketAddr,
    rtmp: Option<ServerSession>,
    /// The device its stream key authenticated, and the key's hash (what
    /// a rejoin is found by).
    device: Option<(DeviceIdentity, String)>,
    /// The publish this connection feeds, its generation in it, and what
    /// tells this connection a newer one took over.
    publish: Option<(Arc<Mutex<Publish>>, u64, Arc<Notify>)>,
    /// The session's connection generation this connection holds.
    session_generation: u64,
    metadata: StreamMetadata,
    video_cfg: Option<Vec<u8>>,
    audio_cfg: Option<Vec<u8>>,
    /// The last RTMP timestamp read (32-bit, wrapping) and its extension to
    /// 64 bits, ms; the first one read is this connection's origin.
    clock: Option<(u32, i64)>,
    /// Where this connection's origin lies in the session's timeline, µs.
    base_us: i64,
}

/// What the read loop does after a batch of input.
enum Next {
    Continue,
    /// The publisher said it has finished.
    Finished,
}

impl Conn {
    async fn run(&mut self, stream: &mut TcpStream) -> Result<(), Ended> {
        let rest = self.handshake(stream).await?;
        let (session, results) = ServerSession::new(ServerSessionConfig::new())
            .map_err(|e| ended(RtmpEnd::Protocol, format!("RTMP session: {e}")))?;
        self.rtmp = Some(session);
        self.answer(stream, results).await?;
        let mut input = rest;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !input.is_empty() {
                let results = self
                    .session()
                    .handle_input(&input)
                    .map_err(|e| ended(RtmpEnd::Protocol, format!("RTMP: {e}")))?;
                for result in results {
                    if let Next::Finished = self.result(stream, result).await? {
                        return self.finish().await;
                    }
                }
            }
            input = self.read(stream, &mut buf).await?;
            if input.is_empty() {
                return Ok(());
            }
        }
    }

    /// Read the next input: at most `stall_timeout_secs` of silence, and a
    /// connection superseded by a newer one of its publisher ends.
    async fn read(&self, stream: &mut TcpStream, buf: &mut [u8]) -> Result<Vec<u8>, Ended> {
        let stall = Duration::from_secs(self.shared.cfg.stall_timeout_secs);
        let kick = self.publish.as_ref().map(|(_, _, k)| k.clone());
        let superseded = async {
            match kick {
                Some(k) => k.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::time::timeout(stall, stream.read(buf)) => match r {
                Ok(Ok(n)) => Ok(buf[..n].to_vec()),
                Ok(Err(e)) => Err(ended(RtmpEnd::Closed, format!("reading: {e}"))),
                Err(_) => Err(ended(RtmpEnd::Stalled, format!("no data for {} s", stall.as_secs()))),
            },
            _ = superseded => Err(ended(RtmpEnd::Closed, "superseded by a newer connection with the same key")),
        }
    }

    fn session(&mut self) -> &mut ServerSession {
        self.rtmp
            .as_mut()
            .expect("the RTMP session exists once the handshake is done")
    }

    /// The RTMP handshake, within `hello_timeout_secs`; returns the bytes
    /// that followed it.
    async fn handshake(&self, stream: &mut TcpStream) -> Result<Vec<u8>, Ended> {
        let limit = Duration::from_secs(self.shared.cfg.hello_timeout_secs);
        let mut handshake = Handshake::new(PeerType::Server);
        let mut buf = vec![0u8; 4096];
        let shake = async {
            loop {
                let n = stream
                    .read(&mut buf)
                    .await
                    .map_err(|e| ended(RtmpEnd::Handshake, format!("reading: {e}")))?;
                if n == 0 {
                    return Err(ended(RtmpEnd::Handshake, "closed during the handshake"));
                }
                let step = handshake
                    .process_bytes(&buf[..n])
                    .map_err(|e| ended(RtmpEnd::Handshake, format!("{e}")))?;
                let (response, rest) = match step {
                    HandshakeProcessResult::InProgress { response_bytes } => (response_bytes, None),
                    HandshakeProcessResult::Completed {
                        response_bytes,
                        remaining_bytes,
                    } => (response_bytes, Some(remaining_bytes)),
                };
                write(stream, &response).await?;
                if let Some(rest) = rest {
                    return Ok(rest);
                }
            }
        };
        tokio::time::timeout(limit, shake).await.map_err(|_| {
            ended(
                RtmpEnd::Handshake,
                format!("no RTMP handshake within {} s", limit.as_secs()),
            )
        })?
    }

    async fn answer(
        &mut self,
        stream: &mut TcpStream,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), Ended> {
        for r in results {
            if let ServerSessionResult::OutboundResponse(packet) = r {
                write(stream, &packet.bytes).await?;
            }
        }
        Ok(())
    }

    /// One result of the RTMP session: a packet to send or an event.
    async fn result(
        &mut self,
        stream: &mut TcpStream,
        result: ServerSessionResult,
    ) -> Result<Next, Ended> {
        let event = match result {
            ServerSessionResult::OutboundResponse(packet) => {
                write(stream, &packet.bytes).await?;
                return Ok(Next::Continue);
            }
            ServerSessionResult::RaisedEvent(event) => event,
            ServerSessionResult::UnhandleableMessageReceived(_) => return Ok(Next::Continue),
        };
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, .. } => {
                let results = self.session().accept_request(request_id);
                self.reply(stream, results).await?;
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id,
                stream_key,
                ..
            } => self.publish(stream, request_id, &stream_key).await?,
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let results = self.session().reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "this server takes publishers only; watch over RTSP or HLS",
                );
                self.reply(stream, results).await?;
                return Err(ended(RtmpEnd::Play, "a play request (publish only)"));
            }
            ServerSessionEvent::StreamMetadataChanged { metadata, .. } => self.metadata = metadata,
            ServerSessionEvent::VideoDataReceived {
                data, timestamp, ..
            } => self.media(flv::video_tag(&data), timestamp.value).await?,
            ServerSessionEvent::AudioDataReceived {
                data, timestamp, ..
            } => self.media(flv::audio_tag(&data), timestamp.value).await?,
            ServerSessionEvent::PublishStreamFinished { .. } => return Ok(Next::Finished),
            _ => {}
        }
        Ok(Next::Continue)
    }

    async fn reply(
        &mut self,
        stream: &mut TcpStream,
        results: Result<Vec<ServerSessionResult>, rml_rtmp::sessions::ServerSessionError>,
    ) -> Result<(), Ended> {
        let results =
            results.map_err(|e| ended(RtmpEnd::Protocol, format!("RTMP request: {e}")))?;
        self.answer(stream, results).await
    }

    /// A publish request: the stream key authenticated like a HELLO's
    /// token, refused on the RTMP session when it fails.
    async fn publish(
        &mut self,
        stream: &mut TcpStream,
        request_id: u32,
        key: &str,
    ) -> Result<(), Ended> {
        if self.device.is_some() {
            return Err(ended(
                RtmpEnd::Protocol,
                "a second publish on one connection",
            ));
        }
        let kind = crate::hello::Credential::PublishingKey;
        match crate::hello::authenticate(&self.shared, key, kind, self.remote).await {
            Ok(device) => {
                let results = self.session().accept_request(request_id);
                self.reply(stream, results).await?;
                self.device = Some((device, hex::encode(token_key(key))));
                Ok(())
            }
            Err(refused) => {
                let results = self.session().reject_request(
                    request_id,
                    "NetStream.Publish.BadName",
                    &refused.message,
                );
                self.reply(stream, results).await?;
                let reason = match refused.code {
                    ErrorCode::RateLimited => RtmpEnd::RateLimited,
                    ErrorCode::Unauthorized => RtmpEnd::Unauthorized,
                    _ => RtmpEnd::Session,
                };
                Err(ended(reason, refused.message))
            }
        }
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), Ended> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| ended(RtmpEnd::Closed, format!("writing: {e}")))
}
