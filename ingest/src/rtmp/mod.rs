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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata,
};
use sharecast_formats::media::TrackInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use self::flv::{Tag, TagError, AUDIO_TRACK, VIDEO_TRACK};
use crate::metrics::PublishEnd;
use crate::publish::{ended, Ended, Feed, Unit};
use crate::server::Shared;

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

/// One RTMP connection, from handshake to close.
async fn connection(shared: Arc<Shared>, mut stream: TcpStream, remote: SocketAddr) {
    shared.metrics.rtmp_connections.inc();
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        feed: Feed::new(shared.clone(), remote, "RTMP"),
        shared: shared.clone(),
        rtmp: None,
        metadata: StreamMetadata::new(),
        video_cfg: None,
        audio_cfg: None,
        clock: None,
    };
    let result = conn.run(&mut stream).await;
    conn.feed.detach();
    match result {
        Ok(()) => tracing::debug!(%remote, "RTMP connection closed"),
        Err(e) => {
            shared.metrics.rtmp_ended(e.reason);
            tracing::info!(%remote, reason = e.reason.name(), message = %e.message, "RTMP connection ended");
        }
    }
}

struct Conn {
    /// The publisher's frames into its session.
    feed: Feed,
    shared: Arc<Shared>,
    rtmp: Option<ServerSession>,
    metadata: StreamMetadata,
    video_cfg: Option<Vec<u8>>,
    audio_cfg: Option<Vec<u8>>,
    /// The last RTMP timestamp read (32-bit, wrapping) and its extension to
    /// 64 bits, ms; the first one read is this connection's origin.
    clock: Option<(u32, i64)>,
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
            .map_err(|e| ended(PublishEnd::Protocol, format!("RTMP session: {e}")))?;
        self.rtmp = Some(session);
        self.answer(stream, results).await?;
        let mut input = rest;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !input.is_empty() {
                let results = self
                    .session()
                    .handle_input(&input)
                    .map_err(|e| ended(PublishEnd::Protocol, format!("RTMP: {e}")))?;
                for result in results {
                    if let Next::Finished = self.result(stream, result).await? {
                        return self.feed.finish().await;
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
        let kick = self.feed.superseded();
        let superseded = async {
            match kick {
                Some(k) => k.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::time::timeout(stall, stream.read(buf)) => match r {
                Ok(Ok(n)) => Ok(buf[..n].to_vec()),
                Ok(Err(e)) => Err(ended(PublishEnd::Closed, format!("reading: {e}"))),
                Err(_) => Err(ended(PublishEnd::Stalled, format!("no data for {} s", stall.as_secs()))),
            },
            _ = superseded => Err(ended(PublishEnd::Closed, "superseded by a newer connection with the same key")),
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
                    .map_err(|e| ended(PublishEnd::Handshake, format!("reading: {e}")))?;
                if n == 0 {
                    return Err(ended(PublishEnd::Handshake, "closed during the handshake"));
                }
                let step = handshake
                    .process_bytes(&buf[..n])
                    .map_err(|e| ended(PublishEnd::Handshake, format!("{e}")))?;
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
                PublishEnd::Handshake,
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
                return Err(ended(PublishEnd::Play, "a play request (publish only)"));
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
            results.map_err(|e| ended(PublishEnd::Protocol, format!("RTMP request: {e}")))?;
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
        match self.feed.authenticate(key).await {
            Ok(()) => {
                let results = self.session().accept_request(request_id);
                self.reply(stream, results).await
            }
            Err(refused) => {
                let results = self.session().reject_request(
                    request_id,
                    "NetStream.Publish.BadName",
                    &refused.message,
                );
                self.reply(stream, results).await?;
                Err(refused)
            }
        }
    }

    /// A tag's media: configurations kept, frames taken.
    async fn media(&mut self, tag: Result<Tag, TagError>, ts: u32) -> Result<(), Ended> {
        let tag = tag.map_err(|e| ended(PublishEnd::Media, e.0))?;
        if !self.feed.authenticated() {
            return Err(ended(
                PublishEnd::Protocol,
                "media before a publish request",
            ));
        }
        match tag {
            Tag::Skip => Ok(()),
            Tag::VideoConfig(c) => self.config(VIDEO_TRACK, c),
            Tag::AudioConfig(c) => self.config(AUDIO_TRACK, c),
            Tag::Video {
                keyframe,
                cts_ms,
                data,
            } => self.frame(VIDEO_TRACK, ts, cts_ms, keyframe, data).await,
            Tag::Audio(data) => self.frame(AUDIO_TRACK, ts, 0, true, data).await,
        }
    }

    /// A sequence header: kept until the session opens; once it is open
    /// its tracks are fixed.
    fn config(&mut self, track: u8, config: Vec<u8>) -> Result<(), Ended> {
        if self.feed.started() {
            return self.feed.same_config(track, &config);
        }
        match track {
            VIDEO_TRACK => self.video_cfg = Some(config),
            _ => self.audio_cfg = Some(config),
        }
        Ok(())
    }

    /// The tracks the sequence headers seen so far describe.
    fn tracks(
        video_cfg: &Option<Vec<u8>>,
        audio_cfg: &Option<Vec<u8>>,
        fps: Option<f32>,
    ) -> Result<Vec<TrackInfo>, Ended> {
        let media = |e: TagError| ended(PublishEnd::Media, e.0);
        let mut tracks = Vec::new();
        if let Some(c) = video_cfg {
            tracks.push(flv::video_track(c, fps).map_err(media)?);
        }
        if let Some(c) = audio_cfg {
            tracks.push(flv::audio_track(c).map_err(media)?);
        }
        Ok(tracks)
    }

    /// A frame at RTMP time `ts` (ms).
    async fn frame(
        &mut self,
        track: u8,
        ts: u32,
        cts_ms: i32,
        keyframe: bool,
        data: Bytes,
    ) -> Result<(), Ended> {
        let since_origin_ms = self.extend(ts);
        let (video, audio) = (&self.video_cfg, &self.audio_cfg);
        let fps = self.metadata.video_frame_rate;
        let unit = Unit {
            track,
            since_origin_us: since_origin_ms.saturating_mul(1000),
            cts_us: i64::from(cts_ms) * 1000,
            keyframe,
            data,
        };
        self.feed
            .frame(|| Self::tracks(video, audio, fps), unit)
            .await
    }

    /// The RTMP timestamp `ts` as ms after this connection's first one
    /// (32-bit RTMP time wraps; the difference to the previous one is
    /// taken as signed).
    fn extend(&mut self, ts: u32) -> i64 {
        let (last, ext) = self.clock.unwrap_or((ts, 0));
        let ext = ext.saturating_add(i64::from(ts.wrapping_sub(last) as i32));
        self.clock = Some((ts, ext));
        ext
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), Ended> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| ended(PublishEnd::Closed, format!("writing: {e}")))
}
