//! SRT ingest: publishers that send an MPEG transport stream over SRT
//! (ffmpeg, OBS, Larix Broadcaster, GStreamer's `srtsink`) feed the same
//! sessions as the QUIC protocol and RTMP: journal, recording, live stream,
//! attributes, admin, metrics.
//!
//! SRT itself (handshake, retransmission, latency) is the pure-Rust
//! `srt-tokio` listener: one UDP port serves every publisher at once, and
//! each caller's stream id is seen before the connection is accepted. The
//! stream id carries a publishing key ([`streamid`]); it is authenticated
//! under the same failed-authentication limits as HELLO and RTMP, and a
//! missing or wrong key, or a caller that asks to read, is refused with an
//! SRT rejection before any media. The transport stream is read into
//! frames ([`ts`]) and fed to the session through the same
//! [`Feed`](crate::publish::Feed) as RTMP, with the same continuation by
//! key within `ingest.rejoin_window_secs`.
//!
//! SRT has no "publish finished" message like RTMP's `FCUnpublish`, and
//! srt-tokio ends the stream the same way whether the caller closed it
//! (SHUTDOWN) or went silent; the two are told apart by when the stream
//! ends after the last data ([`stream_end`]). A caller that closed has
//! finished: its recording is finalised at once. One that was cut leaves
//! its session suspended, finalised once `ingest.rejoin_window_secs`
//! passes without the key coming back.

pub(crate) mod streamid;
pub(crate) mod ts;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use sharecast_formats::media::TrackInfo;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};

use self::streamid::Refusal;
use self::ts::{Access, Demuxer, Item};
use crate::metrics::PublishEnd;
use crate::publish::{ended, Ended, Feed, Unit};
use crate::rtmp::flv::{self, AUDIO_TRACK, VIDEO_TRACK};
use crate::server::{ConnectionSlot, Shared};

/// Access units held while the session cannot open yet (a track of the
/// program has not shown its configuration); one more is refused.
const MAX_PENDING: usize = 2000;
/// Bytes of those access units held at most.
const MAX_PENDING_BYTES: usize = 32 * 1024 * 1024;

/// Accept SRT callers on `socket` until the listener ends.
pub(crate) async fn serve(shared: Arc<Shared>, socket: tokio::net::UdpSocket) {
    let addr = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "the SRT socket has no address; SRT ingest is off");
            return;
        }
    };
    // Both ways, not only the receive latency: srt-tokio drains a
    // connection that the caller shut down for twice the send latency, and
    // a drain shorter than the receive latency would cut the tail that SRT
    // still holds back.
    let latency = Duration::from_millis(shared.cfg.srt_latency_ms);
    let bound = SrtListener::builder()
        .socket(socket)
        .latency(latency)
        .bind(addr)
        .await;
    let (_listener, mut incoming) = match bound {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, %addr, "the SRT listener could not start; SRT ingest is off");
            return;
        }
    };
    let requests = incoming.incoming();
    while let Some(request) = requests.next().await {
        let shared = shared.clone();
        let Some(slot) = ConnectionSlot::take(&shared) else {
            let remote = request.remote();
            tracing::warn!(%remote, "SRT connection refused: max_connections are open");
            tokio::spawn(reject(request, ServerRejectReason::Overload));
            continue;
        };
        tokio::spawn(async move {
            let _slot = slot;
            connection(shared, request).await
        });
    }
    tracing::warn!(%addr, "the SRT listener ended");
}

async fn reject(request: ConnectionRequest, reason: ServerRejectReason) {
    if let Err(e) = request.reject(RejectReason::Server(reason)).await {
        tracing::debug!(error = %e, "answering an SRT rejection failed");
    }
}

/// One SRT caller, from its connection request to its close.
async fn connection(shared: Arc<Shared>, request: ConnectionRequest) {
    shared.metrics.srt_connections.inc();
    let remote = request.remote();
    let mut conn = Conn {
        feed: Feed::new(shared.clone(), remote, "SRT"),
        demux: Demuxer::default(),
        configs: [None, None],
        pending: Vec::new(),
        pending_bytes: 0,
        clock: None,
        received: 0,
    };
    let result = conn.run(request).await;
    conn.feed.detach();
    match result {
        Ok(()) => tracing::debug!(%remote, bytes = conn.received, "SRT connection closed"),
        Err(e) => {
            shared.metrics.srt_ended(e.reason);
            tracing::info!(%remote, reason = e.reason.name(), message = %e.message, bytes = conn.received, "SRT connection ended");
        }
    }
}

struct Conn {
    feed: Feed,
    demux: Demuxer,
    /// The decoder configuration of each track seen before the session
    /// opened.
    configs: [Option<Vec<u8>>; 2],
    /// Access units waiting for the session to open, and their bytes.
    pending: Vec<Unit>,
    pending_bytes: usize,
    /// The first timestamp read (90 kHz, 33 bits), and the last one with
    /// its distance from the first: the connection's origin and clock.
    clock: Option<(u64, u64, i64)>,
    /// Transport-stream bytes read from the connection (logged at its end).
    received: u64,
}

impl Conn {
    async fn run(&mut self, request: ConnectionRequest) -> Result<(), Ended> {
        let shared = self.feed.shared().clone();
        let key = match streamid::publish_key(request.stream_id().map(|s| s.as_str())) {
            Ok(k) => k.to_string(),
            Err(refusal) => {
                let (reason, message, answer) = match refusal {
                    Refusal::NoKey(m) => (
                        PublishEnd::Unauthorized,
                        m,
                        ServerRejectReason::Unauthorized,
                    ),
                    Refusal::NotPublish(m) => (PublishEnd::Play, m, ServerRejectReason::BadMode),
                };
                reject(request, answer).await;
                return Err(ended(reason, message));
            }
        };
        if let Err(refused) = self.feed.authenticate(&key).await {
            let answer = match refused.reason {
                PublishEnd::RateLimited => ServerRejectReason::Overload,
                PublishEnd::Unauthorized => ServerRejectReason::Unauthorized,
                _ => ServerRejectReason::Forbidden,
            };
            reject(request, answer).await;
            return Err(refused);
        }
        let mut socket = request
            .accept(None)
            .await
            .map_err(|e| ended(PublishEnd::Handshake, format!("accepting: {e}")))?;
        tracing::debug!(
            latency_ms = socket.settings().recv_tsbpd_latency.as_millis() as u64,
            "SRT connection accepted"
        );
        let result = self.read(&mut socket, &shared).await;
        let dropped = dropped_packets(&mut socket);
        if dropped > 0 {
            shared.metrics.srt_dropped_packets.inc_by(dropped);
            tracing::warn!(
                dropped,
                "SRT packets arrived too late for the latency and were dropped"
            );
        }
        match result? {
            StreamEnd::Closed => self.feed.finish().await,
            StreamEnd::Lost => Ok(()),
        }
    }

    /// Reads the connection's transport stream until it ends.
    async fn read(&mut self, socket: &mut SrtSocket, shared: &Shared) -> Result<StreamEnd, Ended> {
        let stall = Duration::from_secs(shared.cfg.stall_timeout_secs);
        // When the last data read was sent, in this machine's clock.
        let mut last_sent = None;
        let end = loop {
            let kick = self.feed.superseded();
            let superseded = async {
                match kick {
                    Some(k) => k.notified().await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                r = tokio::time::timeout(stall, socket.next()) => r.map_err(|_| {
                    ended(PublishEnd::Stalled, format!("no data for {} s", stall.as_secs()))
                })?,
                _ = superseded => {
                    return Err(ended(PublishEnd::Closed, "superseded by a newer connection with the same key"))
                }
            };
            match next {
                Some(Ok((sent, bytes))) => {
                    last_sent = Some(sent);
                    self.received += bytes.len() as u64;
                    self.input(&bytes).await?
                }
                Some(Err(e)) => return Err(ended(PublishEnd::Closed, format!("reading: {e}"))),
                None => {
                    let settings = socket.settings();
                    let quiet = last_sent.map(|t: Instant| t.elapsed());
                    break stream_end(
                        quiet,
                        settings.recv_tsbpd_latency,
                        settings.peer_idle_timeout,
                    );
                }
            }
        };
        let mut rest = Vec::new();
        self.demux.flush(&mut rest);
        for pes in rest {
            self.pes(pes).await?;
        }
        Ok(end)
    }

    /// Bytes of the transport stream.
    async fn input(&mut self, bytes: &[u8]) -> Result<(), Ended> {
        let mut done = Vec::new();
        self.demux
            .push(bytes, &mut done)
            .map_err(|e| ended(PublishEnd::Media, e.0))?;
        for pes in done {
            self.pes(pes).await?;
        }
        Ok(())
    }

    /// One PES packet's configurations and access units.
    async fn pes(&mut self, pes: ts::Pes) -> Result<(), Ended> {
        let items = ts::items(pes).map_err(|e| ended(PublishEnd::Media, e.0))?;
        for item in items {
            match item {
                Item::Config(track, config) if self.feed.started() => {
                    self.feed.same_config(track, &config)?
                }
                Item::Config(track, config) => self.configs[usize::from(track)] = Some(config),
                Item::Unit(access) => {
                    let unit = self.timed(access);
                    self.unit(unit).await?
                }
            }
        }
        Ok(())
    }

    /// An access unit into the session; held until every track of the
    /// program has shown its configuration, so the session opens with all.
    async fn unit(&mut self, unit: Unit) -> Result<(), Ended> {
        if self.feed.started() {
            return self.feed.frame(|| Ok(Vec::new()), unit).await;
        }
        self.pending_bytes += unit.data.len();
        self.pending.push(unit);
        let declared = self.demux.tracks();
        let ready = declared
            .iter()
            .all(|t| self.configs[usize::from(*t)].is_some());
        if !ready {
            let held = self.pending_bytes;
            if self.pending.len() > MAX_PENDING || held > MAX_PENDING_BYTES {
                return Err(ended(
                    PublishEnd::Media,
                    format!(
                        "no {} configuration within {} access units ({held} bytes; H.264 needs an in-band SPS and PPS)",
                        missing(&declared, &self.configs),
                        self.pending.len()
                    ),
                ));
            }
            return Ok(());
        }
        let tracks = tracks(&self.configs)?;
        for unit in std::mem::take(&mut self.pending) {
            let tracks = tracks.clone();
            self.feed.frame(move || Ok(tracks), unit).await?;
        }
        Ok(())
    }

    /// An access unit timed from this connection's first timestamp (33-bit
    /// MPEG time wraps; the step from the previous one is taken as signed).
    fn timed(&mut self, a: Access) -> Unit {
        let (first, last, ext) = self.clock.unwrap_or((a.dts, a.dts, 0));
        let ext = ext.saturating_add(ts::delta_33(last, a.dts));
        self.clock = Some((first, a.dts, ext));
        Unit {
            track: a.track,
            since_origin_us: ticks_to_us(ext),
            cts_us: ticks_to_us(ts::delta_33(a.dts, a.pts)),
            keyframe: a.keyframe,
            data: a.data,
        }
    }
}

/// 90 kHz ticks in µs.
/// How an SRT connection's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    /// The caller closed it (SRT's shutdown message): the publish is
    /// finished and the recording finalised at once.
    Closed,
    /// The caller went silent: the session waits for it to rejoin.
    Lost,
}

/// Tells a caller that closed from one that went silent. srt-tokio ends
/// the stream in both cases without saying which, but at different times:
/// a silent peer's stream ends `idle` (the peer idle timeout, 5 s) after
/// its last packet, a closing peer's within about `latency` of its last
/// data's send time (the receiver first hands over what SRT still holds
/// back). `quiet` is the time since that send time; halfway between the
/// two is the line. Reading late only makes `quiet` longer, so a close
/// may be taken for a loss (the session then waits for a rejoin) but a
/// loss is never taken for a close. With a latency too near the idle
/// timeout for a line, or no data at all, every end is a loss.
fn stream_end(quiet: Option<Duration>, latency: Duration, idle: Duration) -> StreamEnd {
    match quiet {
        Some(q) if latency + Duration::from_secs(2) <= idle && q < (latency + idle) / 2 => {
            StreamEnd::Closed
        }
        _ => StreamEnd::Lost,
    }
}

/// The packets the connection's receiver dropped as too late, from the
/// socket's statistics (updated once a second: the last second's drops
/// may be missing).
fn dropped_packets(socket: &mut SrtSocket) -> u64 {
    let mut stats = socket.statistics().clone();
    stats
        .next()
        .now_or_never()
        .flatten()
        .map_or(0, |s| s.rx_dropped_data)
}

fn ticks_to_us(ticks: i64) -> i64 {
    ticks.saturating_mul(100) / 9
}

/// The tracks the configurations describe (the frame rate from the SPS).
fn tracks(configs: &[Option<Vec<u8>>; 2]) -> Result<Vec<TrackInfo>, Ended> {
    let media = |e: flv::TagError| ended(PublishEnd::Media, e.0);
    let mut tracks = Vec::new();
    if let Some(c) = &configs[usize::from(VIDEO_TRACK)] {
        tracks.push(flv::video_track(c, None).map_err(media)?);
    }
    if let Some(c) = &configs[usize::from(AUDIO_TRACK)] {
        tracks.push(flv::audio_track(c).map_err(media)?);
    }
    Ok(tracks)
}

fn missing(declared: &[u8], configs: &[Option<Vec<u8>>; 2]) -> &'static str {
    match declared
        .iter()
        .find(|t| configs[usize::from(**t)].is_none())
    {
        Some(&VIDEO_TRACK) => "video",
        _ => "audio",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_stream_that_ends_soon_after_its_last_data_was_closed() {
        // Latency 1 s, idle timeout 5 s: the line is at 3 s.
        assert_eq!(stream_end(Some(S), S, 5 * S), StreamEnd::Closed);
        assert_eq!(stream_end(Some(2 * S), S, 5 * S), StreamEnd::Closed);
    }

    #[test]
    fn a_stream_that_ends_an_idle_timeout_after_its_last_data_was_lost() {
        assert_eq!(stream_end(Some(5 * S), S, 5 * S), StreamEnd::Lost);
        assert_eq!(stream_end(Some(3 * S), S, 5 * S), StreamEnd::Lost);
    }

    #[test]
    fn without_data_or_room_for_a_line_every_end_is_a_loss() {
        assert_eq!(stream_end(None, S, 5 * S), StreamEnd::Lost);
        // A 4 s latency leaves no room below a 5 s idle timeout.
        assert_eq!(stream_end(Some(S / 10), 4 * S, 5 * S), StreamEnd::Lost);
    }
}
