//! The harness of the ingest tests: a server on loopback with an in-memory
//! output standing in for the transcoder, uploads through the client SDK,
//! and a raw QUIC client for what the SDK would never send.

// Each test binary uses its own part of the harness.
#![allow(dead_code)]

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sharecast_client_sdk::{Trust, UploadError, Uploader, UploaderConfig};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{Control, ControlDecoder, ErrorMsg, Hello, Welcome, VERSION};
use sharecast_formats::media::{Codec, MediaFrame, TrackInfo};
use sharecast_ingest::{
    BoxFuture, ConnectionChange, DeviceIdentity, IngestConfig, IngestServer, SessionHandler,
    SessionInfo, SessionOutput,
};
use tokio::task::JoinHandle;

/// What the server handed to the outputs of every session.
#[derive(Default)]
pub(crate) struct Memory {
    pub recorded: Mutex<Vec<MediaFrame>>,
    /// `record` refuses this many frames (as a recording on a full disk
    /// does) before it takes them again.
    pub fail_records: std::sync::atomic::AtomicU32,
    /// `restart_recording` calls.
    pub restarts: std::sync::atomic::AtomicU32,
    /// When each frame reached `record`.
    pub record_times: Mutex<Vec<Instant>>,
    pub live: Mutex<Vec<(u8, u64)>>,
    pub finished: Mutex<u32>,
    /// Every session's connection changes, in order.
    pub connection_changes: Mutex<Vec<ConnectionChange>>,
    /// Tracks of every session opened, as the handler received them.
    pub opened: Mutex<Vec<Vec<TrackInfo>>>,
}

impl Memory {
    pub(crate) fn finished(&self) -> u32 {
        *self.finished.lock().unwrap()
    }
}

struct Out(Arc<Memory>);

impl SessionOutput for Out {
    fn live(&self, f: &MediaFrame) {
        self.0.live.lock().unwrap().push((f.track, f.seq));
    }
    fn record(&self, f: &MediaFrame) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        let fail = &self.0.fail_records;
        if fail
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            anyhow::bail!("writing the recording: No space left on device");
        }
        self.0.recorded.lock().unwrap().push(f.clone());
        self.0.record_times.lock().unwrap().push(Instant::now());
        Ok(())
    }
    fn connection_changed(&self, change: ConnectionChange) {
        self.0.connection_changes.lock().unwrap().push(change);
    }
    fn restart_recording(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.0
                .restarts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.recorded.lock().unwrap().clear();
            Ok(())
        })
    }
    fn finish(&self) -> BoxFuture<'_, anyhow::Result<VideoAttributes>> {
        Box::pin(async move {
            *self.0.finished.lock().unwrap() += 1;
            Ok(VideoAttributes {
                id: "x".into(),
                container: "mp4".into(),
                ..Default::default()
            })
        })
    }
}

/// Knows one device, token `good`; token `store-down` finds the device
/// store unreachable; accepts every codec the protocol names.
struct Handler(Arc<Memory>);

impl SessionHandler for Handler {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<DeviceIdentity>>> {
        Box::pin(async move {
            if token == "store-down" {
                anyhow::bail!("the device store is unreachable");
            }
            Ok((token == "good").then(|| DeviceIdentity {
                id: "d1".into(),
                name: "phone".into(),
            }))
        })
    }
    fn check_tracks(&self, tracks: &[TrackInfo]) -> Result<(), String> {
        match tracks.iter().find(|t| t.codec().is_none()) {
            Some(t) => Err(format!("codec {} is not supported", t.codec)),
            None => Ok(()),
        }
    }
    fn open<'a>(
        &'a self,
        info: &'a SessionInfo,
    ) -> BoxFuture<'a, anyhow::Result<Arc<dyn SessionOutput>>> {
        let m = self.0.clone();
        m.opened.lock().unwrap().push(info.tracks.clone());
        Box::pin(async move { Ok(Arc::new(Out(m)) as Arc<dyn SessionOutput>) })
    }
    fn live_urls(&self, id: &str) -> Vec<String> {
        vec![format!("rtsp://test/live/{id}")]
    }
}

/// H.264 640x360 at 30 fps (track 0) and AAC 48 kHz stereo (track 1).
pub(crate) fn tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo::video(0, Codec::H264, vec![1, 0x64, 0, 0x1f], (640, 360), (30, 1)),
        TrackInfo::audio(1, Codec::Aac, vec![0x11, 0x90], 48_000, 2),
    ]
}

/// The `i`th frame of a track of [`tracks`], for the uploader (which
/// numbers it): 3000-byte video frames at 30 fps, 300-byte audio frames
/// every 21.3 ms.
pub(crate) fn frame(track: u8, i: i64) -> MediaFrame {
    let dur = if track == 0 { 33_333 } else { 21_333 };
    MediaFrame {
        track,
        seq: 0,
        pts_us: i * dur,
        dts_us: i * dur,
        duration_us: dur as u32,
        keyframe: track == 1 || i % 30 == 0,
        data: Bytes::from(vec![(i % 251) as u8; if track == 0 { 3000 } else { 300 }]),
    }
}

/// The `i`th frame of a track numbered `i`, as a raw client sends it.
pub(crate) fn numbered(track: u8, i: i64) -> MediaFrame {
    MediaFrame {
        seq: i as u64,
        ..frame(track, i)
    }
}

/// The sequence numbers of a track's frames, in the order given.
pub(crate) fn seqs(frames: &[MediaFrame], track: u8) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f.track == track)
        .map(|f| f.seq)
        .collect()
}

/// A server on loopback, serving until dropped.
pub(crate) struct Env {
    pub server: Arc<IngestServer>,
    pub mem: Arc<Memory>,
    pub dir: Arc<tempfile::TempDir>,
    run: JoinHandle<()>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.run.abort();
    }
}

impl Env {
    /// A server with the default configuration on a fresh data directory,
    /// on any free port.
    pub(crate) async fn new() -> Env {
        Env::with(|_| {}).await
    }

    /// The same with the configuration changed by `tweak`.
    pub(crate) async fn with(tweak: impl FnOnce(&mut IngestConfig)) -> Env {
        let mut cfg = IngestConfig {
            listen: "127.0.0.1:0".into(),
            ..IngestConfig::default()
        };
        tweak(&mut cfg);
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Env::start(dir, cfg).await.0
    }

    /// A server on `dir`, started as the binary starts it: the sessions of
    /// unfinished journals recovered (how many is returned), then serving.
    async fn start(dir: Arc<tempfile::TempDir>, cfg: IngestConfig) -> (Env, usize) {
        let mem = Arc::new(Memory::default());
        let server = IngestServer::bind(cfg, dir.path(), Arc::new(Handler(mem.clone()))).unwrap();
        let server = Arc::new(server);
        let recovered = server.recover_sessions().await.unwrap();
        let s = server.clone();
        let run = tokio::spawn(async move { s.run().await });
        let env = Env {
            server,
            mem,
            dir,
            run,
        };
        (env, recovered)
    }

    /// Stop this server as a crash would (nothing finalised), then start
    /// another on the same data directory and address. Returns it and how
    /// many sessions it recovered.
    pub(crate) async fn restart(self) -> (Env, usize) {
        let addr = self.server.local_addr().unwrap();
        self.server.close();
        let dir = self.dir.clone();
        drop(self);
        // Let the old endpoint give up the address.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cfg = IngestConfig {
            listen: addr.to_string(),
            ..IngestConfig::default()
        };
        Env::start(dir, cfg).await
    }

    /// An uploader's configuration for this server, trusting it by its pin.
    pub(crate) fn client(&self, token: &str) -> UploaderConfig {
        let mut c = UploaderConfig::new(
            self.server.local_addr().unwrap().to_string(),
            token,
            Trust::PinSha256(self.server.fingerprint().to_string()),
        );
        c.server_name = Some("localhost".into());
        c.reconnect_deadline = Duration::from_secs(20);
        c
    }

    /// A phone filming: a session of the good device with [`tracks`].
    pub(crate) async fn phone(&self) -> Uploader {
        self.phone_with(|_| {}).await
    }

    /// The same with the uploader's configuration changed by `tweak`.
    pub(crate) async fn phone_with(&self, tweak: impl FnOnce(&mut UploaderConfig)) -> Uploader {
        let mut c = self.client("good");
        tweak(&mut c);
        Uploader::start(c, tracks(), 0).await.unwrap()
    }

    /// How the server refuses a new session.
    pub(crate) async fn refused(&self, token: &str, tracks: Vec<TrackInfo>) -> UploadError {
        match Uploader::start(self.client(token), tracks, 0).await {
            Ok(_) => panic!("expected a refusal"),
            Err(e) => e,
        }
    }

    /// Every recorded frame exactly once, in sequence order per track.
    pub(crate) fn assert_complete(&self, video: u64, audio: u64) {
        let rec = self.mem.recorded.lock().unwrap();
        for (track, n) in [(0u8, video), (1u8, audio)] {
            assert_eq!(
                seqs(&rec, track),
                (0..n).collect::<Vec<_>>(),
                "track {track}"
            );
        }
    }

    /// The value of the metrics line that starts with `line_prefix`.
    pub(crate) fn metric(&self, line_prefix: &str) -> u64 {
        let mut registry = prometheus_client::registry::Registry::with_prefix("sharecast");
        self.server.register_metrics(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .expect("encoding the ingest metrics");
        out.lines()
            .find_map(|l| l.strip_prefix(line_prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {line_prefix:?} in\n{out}"))
    }
}

/// Film `n` frames of each track as fast as the uploader takes them (a
/// pause every ten), calling `each` after each pair.
pub(crate) async fn upload(up: &Uploader, n: i64, mut each: impl FnMut(i64, &Uploader)) {
    for i in 0..n {
        send_pair(up, i).await;
        each(i, up);
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Film frames `range` of each track, pausing `pause` after each pair (as
/// a camera spreads them out).
pub(crate) async fn film(up: &Uploader, range: Range<i64>, pause: Duration) {
    for i in range {
        send_pair(up, i).await;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

/// Frame `i` of the video and of the audio track.
pub(crate) async fn send_pair(up: &Uploader, i: i64) {
    up.send(frame(0, i)).await.unwrap();
    up.send(frame(1, i)).await.unwrap();
}

/// Waits until `done`, checking every 10 ms, for at most `deadline` (a
/// guard against a hang, not a timing claim): whether it came true.
pub(crate) async fn eventually(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while !done() {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

/// A raw client: its endpoint, connection and control stream.
pub(crate) type RawClient = (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
);

/// A HELLO of a new session with the good token.
pub(crate) fn good_hello() -> Hello {
    Hello {
        version: VERSION,
        token: "good".into(),
        tracks: tracks(),
        anchor_unix_us: 0,
        resume: None,
        client: None,
        title: None,
    }
}

/// A raw client: connect and open the control stream, then whatever the
/// test writes.
pub(crate) async fn raw_connect(env: &Env) -> RawClient {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(
        sharecast_client_sdk::client_config(&Trust::PinSha256(env.server.fingerprint().into()))
            .unwrap(),
    );
    let conn = ep
        .connect(env.server.local_addr().unwrap(), "localhost")
        .unwrap()
        .await
        .unwrap();
    let (s, r) = conn.open_bi().await.unwrap();
    (ep, conn, s, r)
}

/// A raw client that sends `hello` as it is.
pub(crate) async fn raw_hello(env: &Env, hello: Hello) -> RawClient {
    let (ep, conn, mut s, r) = raw_connect(env).await;
    s.write_all(&Control::Hello(hello).encode()).await.unwrap();
    (ep, conn, s, r)
}

/// A raw client: connect, HELLO, then whatever the test writes.
pub(crate) async fn raw(env: &Env) -> RawClient {
    raw_hello(env, good_hello()).await
}

/// The next control message from the server; `None` when the stream or
/// the connection ended first.
pub(crate) async fn next_control(
    r: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
) -> Option<Control> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(m) = dec
            .decode_next()
            .expect("the server's control messages parse")
        {
            return Some(m);
        }
        // A deadline against a hang, not a timing claim.
        match tokio::time::timeout(Duration::from_secs(60), r.read(&mut buf)).await {
            Ok(Ok(Some(n))) => dec.push(&buf[..n]),
            Ok(Ok(None)) | Ok(Err(_)) => return None,
            Err(_) => panic!("no control message from the server in 60 s"),
        }
    }
}

/// WELCOME, or a panic naming what came instead.
pub(crate) async fn expect_welcome(r: &mut quinn::RecvStream, dec: &mut ControlDecoder) -> Welcome {
    match next_control(r, dec).await {
        Some(Control::Welcome(w)) => w,
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

/// The ERROR the server sends before it closes: every message up to it is
/// skipped (WELCOME, ACKs); the stream or connection ending first fails.
pub(crate) async fn expect_error(r: &mut quinn::RecvStream, dec: &mut ControlDecoder) -> ErrorMsg {
    loop {
        match next_control(r, dec).await {
            Some(Control::Error(e)) => return e,
            Some(_) => continue,
            None => panic!("the connection ended without an ERROR message"),
        }
    }
}

/// Reads control messages until an ACK covers frame `seq` of `track`.
pub(crate) async fn until_acked(
    r: &mut quinn::RecvStream,
    dec: &mut ControlDecoder,
    track: u8,
    seq: u64,
) {
    loop {
        match next_control(r, dec).await {
            Some(Control::Ack(a)) if a.covers(track, seq) => return,
            Some(_) => {}
            None => panic!("connection ended before the ACK"),
        }
    }
}

/// The code and reason the server closed the connection with.
pub(crate) async fn close_code(conn: &quinn::Connection) -> (u16, String) {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => (
            u64::from(c.error_code) as u16,
            String::from_utf8_lossy(&c.reason).to_string(),
        ),
        other => panic!("unexpected close: {other:?}"),
    }
}
