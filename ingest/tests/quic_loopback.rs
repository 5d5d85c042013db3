//! The ingest server and the client SDK over real QUIC on loopback, with an
//! in-memory output standing in for the transcoder: resume after drops,
//! connection migration, and every kind of bad input.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use sharecast_client_sdk::{Trust, UploadError, Uploader, UploaderConfig};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{
    encode_frame, Control, ControlDecoder, End, ErrorCode, ErrorMsg, Hello, Resume, Welcome,
    VERSION,
};
use sharecast_formats::media::{MediaFrame, TrackInfo};
use sharecast_ingest::config::JournalSync;
use sharecast_ingest::journal;
use sharecast_ingest::{
    BoxFuture, DeviceIdentity, IngestConfig, IngestServer, SessionHandler, SessionInfo,
    SessionOutput,
};

#[derive(Default)]
struct Memory {
    recorded: Mutex<Vec<MediaFrame>>,
    /// When each frame reached `record`.
    record_times: Mutex<Vec<std::time::Instant>>,
    live: Mutex<Vec<(u8, u64)>>,
    finished: Mutex<u32>,
    /// Tracks of every session opened, as the handler received them.
    opened: Mutex<Vec<Vec<TrackInfo>>>,
}

struct Out(Arc<Memory>);

impl SessionOutput for Out {
    fn live(&self, f: &MediaFrame) {
        self.0.live.lock().unwrap().push((f.track, f.seq));
    }
    fn record(&self, f: &MediaFrame) -> anyhow::Result<()> {
        self.0.recorded.lock().unwrap().push(f.clone());
        self.0
            .record_times
            .lock()
            .unwrap()
            .push(std::time::Instant::now());
        Ok(())
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

fn tracks() -> Vec<TrackInfo> {
    vec![
        TrackInfo {
            id: 0,
            codec: "h264".into(),
            codec_data: vec![1, 0x64, 0, 0x1f],
            width: Some(640),
            height: Some(360),
            framerate: Some((30, 1)),
            sample_rate: None,
            channels: None,
            rotation: 0,
        },
        TrackInfo {
            id: 1,
            codec: "aac".into(),
            codec_data: vec![0x11, 0x90],
            width: None,
            height: None,
            framerate: None,
            sample_rate: Some(48000),
            channels: Some(2),
            rotation: 0,
        },
    ]
}

fn frame(track: u8, i: i64) -> MediaFrame {
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

struct Env {
    server: Arc<IngestServer>,
    mem: Arc<Memory>,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new(cfg: IngestConfig) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mem = Arc::new(Memory::default());
        let server = Arc::new(
            IngestServer::bind(
                IngestConfig {
                    listen: "127.0.0.1:0".into(),
                    ..cfg
                },
                dir.path(),
                Arc::new(Handler(mem.clone())),
            )
            .unwrap(),
        );
        let s = server.clone();
        tokio::spawn(async move { s.run().await });
        Env {
            server,
            mem,
            _dir: dir,
        }
    }

    fn client(&self, token: &str) -> UploaderConfig {
        let mut c = UploaderConfig::new(
            self.server.local_addr().unwrap().to_string(),
            token,
            Trust::PinSha256(self.server.fingerprint().to_string()),
        );
        c.server_name = Some("localhost".into());
        c.reconnect_deadline = Duration::from_secs(20);
        c
    }

    /// The server's families on `/metrics`, as Prometheus text.
    fn metrics(&self) -> String {
        let mut registry = Registry::with_prefix("sharecast");
        self.server.register_metrics(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        out
    }

    /// Every recorded frame exactly once, in sequence order per track.
    fn assert_complete(&self, video: u64, audio: u64) {
        let rec = self.mem.recorded.lock().unwrap();
        for (track, n) in [(0u8, video), (1u8, audio)] {
            let seqs: Vec<u64> = rec
                .iter()
                .filter(|f| f.track == track)
                .map(|f| f.seq)
                .collect();
            assert_eq!(seqs, (0..n).collect::<Vec<_>>(), "track {track}");
        }
    }
}

async fn upload(up: &Uploader, n: i64, mut each: impl FnMut(i64, &Uploader)) {
    for i in 0..n {
        up.send(frame(0, i)).await.unwrap();
        up.send(frame(1, i)).await.unwrap();
        each(i, up);
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_is_recorded_in_order_and_finished_once() {
    let env = Env::new(IngestConfig::default()).await;
    // The frames go much faster than real time: without a high live
    // threshold the uploader could (correctly) jump to the live edge while
    // they wait, and the live output would not see every frame.
    let mut c = env.client("good");
    c.live_threshold = Duration::from_secs(3600);
    let up = Uploader::start(c, tracks(), 0).await.unwrap();
    assert!(up.live_urls()[0].ends_with(up.session_id()));
    upload(&up, 100, |_, _| {}).await;
    let attrs = up.finish().await.unwrap();
    assert_eq!(attrs.container, "mp4");
    env.assert_complete(100, 100);
    assert_eq!(*env.mem.finished.lock().unwrap(), 1);
    assert_eq!(env.mem.live.lock().unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_resume_without_loss_or_duplicates() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug,quinn=info,quinn_proto=info")
        .with_test_writer()
        .try_init();
    let env = Env::new(IngestConfig::default()).await;
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    let mut i = 0;
    for (k, cut) in [50i64, 120, 220].into_iter().enumerate() {
        while i < cut {
            up.send(frame(0, i)).await.unwrap();
            up.send(frame(1, i)).await.unwrap();
            i += 1;
        }
        up.drop_connection();
        // Keep filming while disconnected; wait for the resume.
        for _ in 0..500 {
            if up.stats().resumes as usize > k {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    while i < 300 {
        up.send(frame(0, i)).await.unwrap();
        up.send(frame(1, i)).await.unwrap();
        i += 1;
    }
    let stats = up.stats();
    up.finish().await.unwrap();
    assert_eq!(stats.resumes, 3);
    env.assert_complete(300, 300);
    let out = env.metrics();
    assert!(
        out.contains("sharecast_ingest_sessions_resumed_total 3"),
        "{out}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_socket_gets_large_buffers_and_reports_its_drops() {
    // The system default (about 208 KiB) overflows under a few hundred
    // phones; the server asks for `udp_buffer_bytes` and gets at least what
    // the kernel's cap allows (more when it may force it).
    let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cfg = IngestConfig::default();
    let want = cfg.udp_buffer_bytes;
    let env = Env::new(cfg).await;
    let got = env.server.udp_buffers().receive;
    assert!(got >= want.min(cap), "asked {want}, cap {cap}, got {got}");
    let out = env.metrics();
    assert!(
        out.contains(&format!(
            "sharecast_ingest_udp_receive_buffer_bytes {got}\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("sharecast_ingest_udp_receive_drops_total 0\n"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_change_keeps_the_connection() {
    let env = Env::new(IngestConfig::default()).await;
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    let mut rebound = None;
    upload(&up, 150, |i, up| {
        if i == 60 {
            let before = up.local_addr();
            let after = up.rebind().unwrap();
            assert_ne!(before, Some(after));
            rebound = Some(after);
        }
    })
    .await;
    let stats = up.stats();
    up.finish().await.unwrap();
    assert!(rebound.is_some());
    assert_eq!(stats.resumes, 0, "migration must not need a reconnect");
    env.assert_complete(150, 150);
}

async fn refused(env: &Env, token: &str, tracks: Vec<TrackInfo>) -> UploadError {
    match Uploader::start(env.client(token), tracks, 0).await {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_and_unknown_codec_are_refused() {
    let env = Env::new(IngestConfig::default()).await;
    let e = refused(&env, "bad", tracks()).await;
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    let mut t = tracks();
    t[0].codec = "vp9".into();
    let e = refused(&env, "good", t).await;
    assert_eq!(e.code(), Some(ErrorCode::UnsupportedCodec), "{e}");
    assert!(e.to_string().contains("vp9"), "{e}");
    assert_eq!(env.server.metrics().rejected(ErrorCode::Unauthorized), 1);
    assert_eq!(
        env.server.metrics().rejected(ErrorCode::UnsupportedCodec),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_other_than_a_right_angle_is_refused() {
    let env = Env::new(IngestConfig::default()).await;
    for bad in [45, 360, 1000] {
        let mut t = tracks();
        t[0].rotation = bad;
        let e = refused(&env, "good", t).await;
        assert_eq!(e.code(), Some(ErrorCode::BadMessage), "{e}");
        assert!(
            e.to_string().contains(&format!("rotation {bad}")),
            "the refusal names the rotation: {e}"
        );
    }
    assert_eq!(env.server.metrics().rejected(ErrorCode::BadMessage), 3);
    assert!(
        env.mem.opened.lock().unwrap().is_empty(),
        "no session opened"
    );
    // Every right angle is accepted and reaches the handler as declared.
    for good in [90, 180, 270] {
        let mut t = tracks();
        t[0].rotation = good;
        let up = Uploader::start(env.client("good"), t, 0).await.unwrap();
        up.finish().await.unwrap();
    }
    let opened = env.mem.opened.lock().unwrap();
    let rotations: Vec<u32> = opened.iter().map(|t| t[0].rotation).collect();
    assert_eq!(rotations, [90, 180, 270]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_track_and_backwards_timestamps_are_refused() {
    let env = Env::new(IngestConfig::default()).await;
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    up.send(frame(0, 0)).await.unwrap();
    let mut f = frame(0, 0);
    f.track = 7;
    up.send(f).await.unwrap();
    let e = up.finish().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::UnknownTrack), "{e}");

    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    up.send(frame(0, 5)).await.unwrap();
    up.send(frame(0, 4)).await.unwrap();
    let e = up.finish().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NonMonotonicTimestamp), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_and_session_limits_are_refused() {
    let env = Env::new(IngestConfig {
        max_frame_bytes: 1000,
        max_sessions_per_device: 1,
        ..IngestConfig::default()
    })
    .await;
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    // A second session of the same device is over the limit.
    let e = refused(&env, "good", tracks()).await;
    assert_eq!(e.code(), Some(ErrorCode::SessionLimit), "{e}");
    up.send(frame(0, 0)).await.unwrap(); // 3000 bytes
    let e = up.finish().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::FrameTooLarge), "{e}");
}

type RawClient = (
    quinn::Endpoint,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
);

/// A HELLO of a new session with the good token.
fn good_hello() -> Hello {
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
async fn raw_connect(env: &Env) -> RawClient {
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
async fn raw_hello(env: &Env, hello: Hello) -> RawClient {
    let (ep, conn, mut s, r) = raw_connect(env).await;
    s.write_all(&Control::Hello(hello).encode()).await.unwrap();
    (ep, conn, s, r)
}

/// A raw client: connect, HELLO, then whatever the test writes.
async fn raw(env: &Env) -> RawClient {
    raw_hello(env, good_hello()).await
}

/// The next control message from the server; `None` when the stream or
/// the connection ended first.
async fn next_control(r: &mut quinn::RecvStream, dec: &mut ControlDecoder) -> Option<Control> {
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
async fn expect_welcome(r: &mut quinn::RecvStream, dec: &mut ControlDecoder) -> Welcome {
    match next_control(r, dec).await {
        Some(Control::Welcome(w)) => w,
        other => panic!("expected WELCOME, got {other:?}"),
    }
}

/// The ERROR the server sends before it closes: every message up to it is
/// skipped (WELCOME, ACKs); the stream or connection ending first fails.
async fn expect_error(r: &mut quinn::RecvStream, dec: &mut ControlDecoder) -> ErrorMsg {
    loop {
        match next_control(r, dec).await {
            Some(Control::Error(e)) => return e,
            Some(_) => continue,
            None => panic!("the connection ended without an ERROR message"),
        }
    }
}

async fn close_code(conn: &quinn::Connection) -> (u16, String) {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(c)) => (
            u64::from(c.error_code) as u16,
            String::from_utf8_lossy(&c.reason).to_string(),
        ),
        other => panic!("unexpected close: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_a_frame_stream_is_refused() {
    let env = Env::new(IngestConfig::default()).await;
    let (_ep, conn, _s, _r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    u.write_all(&[0xde; 64]).await.unwrap();
    let (code, reason) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::BadMessage.as_u16(), "{reason}");
    assert!(reason.contains("0xde"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_control_stream_is_refused() {
    let env = Env::new(IngestConfig::default()).await;
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
    let (mut s, _r) = conn.open_bi().await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (code, reason) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::BadMessage.as_u16(), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_stalled_mid_frame_is_refused() {
    let env = Env::new(IngestConfig {
        stall_timeout_secs: 1,
        ..IngestConfig::default()
    })
    .await;
    let (_ep, conn, _s, _r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    let mut f = frame(0, 0);
    f.seq = 0;
    let bytes = encode_frame(&f);
    u.write_all(&bytes[..100]).await.unwrap();
    let (code, reason) = close_code(&conn).await;
    assert_eq!(code, ErrorCode::Stalled.as_u16(), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_continue_while_one_is_refused() {
    let env = Env::new(IngestConfig::default()).await;
    let good = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    upload(&good, 30, |_, _| {}).await;
    let (_ep, conn, _s, _r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    u.write_all(&[0u8; 40]).await.unwrap();
    let _ = close_code(&conn).await;
    for i in 30..60 {
        good.send(frame(0, i)).await.unwrap();
        good.send(frame(1, i)).await.unwrap();
    }
    good.finish().await.unwrap();
    // Only the good session recorded frames.
    env.assert_complete(60, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_recovery_reopens_an_unfinished_session() {
    // A session whose server goes away is recovered by a new server on the same
    // data directory, and its phone resumes it.
    let dir = tempfile::tempdir().unwrap();
    let mem1 = Arc::new(Memory::default());
    let cfg = IngestConfig {
        listen: "127.0.0.1:0".into(),
        ..IngestConfig::default()
    };
    let s1 = Arc::new(
        IngestServer::bind(cfg.clone(), dir.path(), Arc::new(Handler(mem1.clone()))).unwrap(),
    );
    let addr = s1.local_addr().unwrap();
    let r1 = s1.clone();
    let run1 = tokio::spawn(async move { r1.run().await });
    let mut c = UploaderConfig::new(
        addr.to_string(),
        "good",
        Trust::PinSha256(s1.fingerprint().into()),
    );
    c.reconnect_deadline = Duration::from_secs(30);
    let up = Uploader::start(c, tracks(), 0).await.unwrap();
    upload(&up, 40, |_, _| {}).await;
    // Wait until everything sent so far is durable, then stop the server.
    for _ in 0..100 {
        if up.stats().frames_acked == 80 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s1.close();
    run1.abort();
    drop(s1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mem2 = Arc::new(Memory::default());
    let s2 = Arc::new(
        IngestServer::bind(
            IngestConfig {
                listen: addr.to_string(),
                ..cfg
            },
            dir.path(),
            Arc::new(Handler(mem2.clone())),
        )
        .unwrap(),
    );
    assert_eq!(s2.recover_sessions().await.unwrap(), 1);
    let r2 = s2.clone();
    tokio::spawn(async move { r2.run().await });
    for i in 40..80 {
        up.send(frame(0, i)).await.unwrap();
        up.send(frame(1, i)).await.unwrap();
    }
    up.finish().await.unwrap();
    let rec = mem2.recorded.lock().unwrap();
    for track in [0u8, 1] {
        let seqs: Vec<u64> = rec
            .iter()
            .filter(|f| f.track == track)
            .map(|f| f.seq)
            .collect();
        assert_eq!(seqs, (0..80).collect::<Vec<_>>(), "track {track}");
    }
    assert!(Path::new(&dir.path().join("sessions")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrate_and_session_length_limits_are_enforced() {
    let env = Env::new(IngestConfig {
        max_bitrate_bps: 100_000,
        ..IngestConfig::default()
    })
    .await;
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    // 3000-byte video frames at 30 fps are ~720 kbit/s.
    let _ = async {
        for i in 0..100 {
            up.send(frame(0, i)).await?;
        }
        Ok::<(), UploadError>(())
    }
    .await;
    let e = up.finish().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BitrateExceeded), "{e}");

    let env = Env::new(IngestConfig {
        max_session_secs: 1,
        ..IngestConfig::default()
    })
    .await;
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    let _ = async {
        for i in 0..60 {
            up.send(frame(1, i)).await?; // 60 × 21.3 ms = 1.28 s of capture time
        }
        Ok::<(), UploadError>(())
    }
    .await;
    let e = up.finish().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::SessionTooLong), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_never_returns_is_finalised_after_the_resume_timeout() {
    let env = Env::new(IngestConfig {
        resume_timeout_secs: 1,
        ..IngestConfig::default()
    })
    .await;
    let (ep, conn, _s, _r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    for i in 0..10 {
        let mut f = frame(0, i);
        f.seq = i as u64;
        u.write_all(&encode_frame(&f)).await.unwrap();
    }
    u.finish().unwrap();
    // Let the frames become durable, then vanish without END.
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.close(0u32.into(), b"gone");
    drop(ep);
    for _ in 0..50 {
        if *env.mem.finished.lock().unwrap() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        *env.mem.finished.lock().unwrap(),
        1,
        "session not finalised"
    );
    assert_eq!(env.mem.recorded.lock().unwrap().len(), 10);
    assert!(env.server.sessions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_certificate_chain_is_verified_by_the_client() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["ingest.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let chain = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let env = Env::new(IngestConfig {
        cert_chain: chain.display().to_string(),
        private_key: key.display().to_string(),
        ..IngestConfig::default()
    })
    .await;
    let mut c = env.client("good");
    c.trust = Trust::CaPem(ca.pem().into_bytes());
    c.server_name = Some("ingest.test".into());
    let up = Uploader::start(c.clone(), tracks(), 0).await.unwrap();
    upload(&up, 5, |_, _| {}).await;
    up.finish().await.unwrap();
    // The wrong name, or a pin of another certificate, is refused.
    c.server_name = Some("other.test".into());
    assert!(matches!(
        Uploader::start(c.clone(), tracks(), 0).await,
        Err(UploadError::Disconnected(_))
    ));
    let mut p = env.client("good");
    p.trust = Trust::PinSha256("00".repeat(32));
    assert!(Uploader::start(p, tracks(), 0).await.is_err());
}

/// Durable frames reach the recording in batches (about every 300 ms), not
/// one by one as each commit round ends, so the recording's threads wake
/// once per batch; every frame still arrives once, in order, and the last
/// batch is flushed before the recording is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_frames_reach_the_recording_in_batches() {
    let env = Env::new(IngestConfig::default()).await;
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap();
    // About 1.2 s of frames, 5 ms apart; commit rounds every 20 ms.
    for i in 0..240 {
        up.send(frame(0, i)).await.unwrap();
        up.send(frame(1, i)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    up.finish().await.unwrap();
    env.assert_complete(240, 240);
    let times = env.mem.record_times.lock().unwrap().clone();
    let gaps = times
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(150))
        .count();
    // Per round, frames would arrive every ~20 ms with no gap this long.
    assert!(
        gaps >= 2,
        "{gaps} pauses of more than 150 ms between {} record calls",
        times.len()
    );
}

/// The journal commit delay gathers the frames that follow the first one
/// into the same write and fdatasync: far fewer commits than frames, and
/// every frame still acknowledged and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_delay_groups_frames_into_fewer_syncs() {
    let commits = |env: &Env| {
        let out = env.metrics();
        out.lines()
            .find_map(|l| l.strip_prefix("sharecast_ingest_journal_commits_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("journal commits metric")
    };
    let mut counts = Vec::new();
    for delay_ms in [0u64, 50] {
        let env = Env::new(IngestConfig {
            journal_commit_delay_ms: delay_ms,
            ..IngestConfig::default()
        })
        .await;
        let up = Uploader::start(env.client("good"), tracks(), 0)
            .await
            .unwrap();
        // Frames spread over about half a second, as a camera sends them.
        for i in 0..100 {
            up.send(frame(0, i)).await.unwrap();
            up.send(frame(1, i)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        up.finish().await.unwrap();
        env.assert_complete(100, 100);
        counts.push(commits(&env));
    }
    let (none, delayed) = (counts[0], counts[1]);
    assert!(
        delayed * 3 <= none,
        "commits without delay {none}, with a 50 ms delay {delayed}"
    );
}

/// The server speaks only its own ALPN: a client offering another protocol,
/// or none, fails the TLS handshake and is counted; a client offering
/// `sharecast/1` over the same trust gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sharecast_alpn_is_accepted() {
    let env = Env::new(IngestConfig::default()).await;
    let cert = std::fs::read(env._dir.path().join("tls").join("cert.pem")).unwrap();
    let connect = |alpn: Vec<Vec<u8>>| {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut cert.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut crypto = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        crypto.alpn_protocols = alpn;
        let qc = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
        let addr = env.server.local_addr().unwrap();
        async move {
            let r = ep.connect(addr, "localhost").unwrap().await;
            (ep, r)
        }
    };
    let failed = |env: &Env| {
        let out = env.metrics();
        out.lines()
            .find_map(|l| l.strip_prefix("sharecast_ingest_handshakes_failed_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("handshake failures metric")
    };
    for (i, alpn) in [vec![b"h3".to_vec()], vec![]].into_iter().enumerate() {
        let (_ep, r) = connect(alpn.clone()).await;
        let err = r.expect_err("a handshake without our ALPN must fail");
        // TLS alert 120, no_application_protocol (RFC 8446 §6, RFC 9001 §8.1).
        assert!(
            format!("{err}").contains("120")
                || format!("{err:?}").contains("NoApplicationProtocol"),
            "ALPN {alpn:?}: {err:?}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while failed(&env) < i as u64 + 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(failed(&env), i as u64 + 1, "ALPN {alpn:?} not counted");
    }
    let (_ep, r) = connect(vec![sharecast_formats::ingest::ALPN.to_vec()]).await;
    let conn = r.expect("our ALPN is accepted");
    assert_eq!(
        conn.handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol),
        Some(b"sharecast/1".to_vec())
    );
}

/// One committer makes every session's frames durable: sessions sending at
/// the same time share commit rounds (at most one per commit delay, however
/// many sessions), with either sync mode, and every journal holds its
/// session's frames exactly once, in order, ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_commit_rounds() {
    const SESSIONS: usize = 6;
    const FRAMES: i64 = 60;
    let delay_ms = 20u64;
    for sync in [JournalSync::Filesystem, JournalSync::File] {
        let env = Env::new(IngestConfig {
            journal_commit_delay_ms: delay_ms,
            journal_sync: sync,
            max_sessions_per_device: 2 * SESSIONS,
            ..IngestConfig::default()
        })
        .await;
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..SESSIONS {
            let cfg = env.client("good");
            tasks.push(tokio::spawn(async move {
                let up = Uploader::start(cfg, tracks(), 0).await.unwrap();
                for i in 0..FRAMES {
                    up.send(frame(0, i)).await.unwrap();
                    up.send(frame(1, i)).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let id = up.session_id().to_string();
                up.finish().await.unwrap();
                id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let out = env.metrics();
        let commits = out
            .lines()
            .find_map(|l| l.strip_prefix("sharecast_ingest_journal_commits_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("journal commits metric");
        eprintln!("{sync:?}: {commits} rounds in {elapsed_ms} ms");
        // A committer per session would need about SESSIONS times one
        // session's rounds.
        assert!(
            commits <= elapsed_ms / delay_ms + 1,
            "{sync:?}: {commits} commit rounds in {elapsed_ms} ms with a {delay_ms} ms delay"
        );
        assert_eq!(
            env.mem.recorded.lock().unwrap().len(),
            SESSIONS * 2 * FRAMES as usize
        );
        for id in ids {
            let path = env._dir.path().join("sessions").join(&id).join("journal");
            let rec = journal::recover(&path).unwrap();
            assert!(rec.ended, "{sync:?}: {id} has no END record");
            for track in [0u8, 1] {
                let seqs: Vec<u64> = rec
                    .frames
                    .iter()
                    .filter(|f| f.track == track)
                    .map(|f| f.seq)
                    .collect();
                assert_eq!(
                    seqs,
                    (0..FRAMES as u64).collect::<Vec<_>>(),
                    "{sync:?}: {id} track {track}"
                );
            }
        }
    }
}

/// Connections refused one after the other are each told why: a refused
/// connection's id (an address, reused once the connection is gone) does not
/// make a later one look refused already.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_one_of_many_refused_connections_is_told_why() {
    let env = Env::new(IngestConfig::default()).await;
    for i in 0..25 {
        // Each a different wrong token (one token failing again and again
        // backs off: see `a_token_that_keeps_failing_backs_off`), and fewer
        // than `auth_failures_per_address`.
        let err = Uploader::start(env.client(&format!("wrong-{i}")), tracks(), 0)
            .await
            .err()
            .unwrap_or_else(|| panic!("connection {i} was accepted"));
        assert_eq!(
            err.code(),
            Some(ErrorCode::Unauthorized),
            "connection {i}: {err}"
        );
        // Let the server free the connection, so that its address can be
        // given to the next one.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(env: &Env, line_prefix: &str) -> u64 {
    let out = env.metrics();
    out.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_prefix:?} in\n{out}"))
}

/// Security review, ingest finding 1: 150 connections with wrong tokens
/// from one address (as an attacker behind a carrier NAT makes them) must
/// not lock a correct phone behind the same address out. With the default
/// configuration the address is penalised after 30 failures (its failures
/// are answered `rate_limited`, counted), and the correct token still gets
/// in, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_phone_behind_an_address_that_failed_150_times_gets_in() {
    let env = Env::new(IngestConfig::default()).await;
    let per_address = IngestConfig::default().auth_failures_per_address as u64;
    for i in 0..150 {
        let e = refused(&env, &format!("sc_guess_{i:04}"), tracks()).await;
        let want = if i + 1 < per_address {
            ErrorCode::Unauthorized
        } else {
            ErrorCode::RateLimited
        };
        assert_eq!(e.code(), Some(want), "attempt {i}: {e}");
    }
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .expect("a correct token is never locked out");
    upload(&up, 10, |_, _| {}).await;
    up.finish().await.unwrap();
    let m = env.server.metrics();
    assert_eq!(m.rejected(ErrorCode::Unauthorized), per_address - 1);
    assert_eq!(m.rejected(ErrorCode::RateLimited), 150 - (per_address - 1));
    assert_eq!(
        metric(
            &env,
            "sharecast_ingest_auth_refused_total{scope=\"address\"} "
        ),
        150 - (per_address - 1)
    );
    assert_eq!(
        metric(
            &env,
            "sharecast_ingest_auth_backoffs_total{scope=\"address\"} "
        ),
        1
    );
}

/// A device store that cannot answer is the server's failure, not the
/// phone's: the phone gets `internal`, and neither its token nor its
/// address is counted as failing (a correct phone gets in right after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_answer_counts_against_nobody() {
    let env = Env::new(IngestConfig::default()).await;
    let per_address = IngestConfig::default().auth_failures_per_address as u64;
    for i in 0..per_address + 5 {
        let e = refused(&env, "store-down", tracks()).await;
        assert_eq!(e.code(), Some(ErrorCode::Internal), "attempt {i}: {e}");
    }
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .expect("the address was not penalised");
    upload(&up, 5, |_, _| {}).await;
    up.finish().await.unwrap();
    assert_eq!(env.server.metrics().rejected(ErrorCode::Unauthorized), 0);
}

/// Finding 1, per token: one wrong token presented again and again (a
/// phone with a revoked token in a retry loop, or a guesser) backs off after
/// `auth_failures_per_token` failures and is refused without being looked
/// up, with a retry time; other tokens from the same address, and the
/// correct one, are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_keeps_failing_backs_off() {
    let env = Env::new(IngestConfig::default()).await;
    let per_token = IngestConfig::default().auth_failures_per_token;
    for i in 0..per_token {
        let e = refused(&env, "sc_revoked", tracks()).await;
        assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "attempt {i}: {e}");
    }
    let (_ep, _conn, _s, mut r) = raw_hello(
        &env,
        Hello {
            token: "sc_revoked".into(),
            ..good_hello()
        },
    )
    .await;
    let e = expect_error(&mut r, &mut ControlDecoder::new()).await;
    assert_eq!(e.code, ErrorCode::RateLimited.as_u16(), "{e:?}");
    let wait = e.retry_after_ms.expect("rate_limited says when to retry");
    assert!(wait > 0 && wait <= 30_000, "{wait} ms");
    assert_eq!(
        metric(
            &env,
            "sharecast_ingest_auth_refused_total{scope=\"token\"} "
        ),
        1
    );
    let e = refused(&env, "sc_other", tracks()).await;
    assert_eq!(e.code(), Some(ErrorCode::Unauthorized), "{e}");
    Uploader::start(env.client("good"), tracks(), 0)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
}

/// Security review, ingest finding 2: sessions stopped by an error do not
/// count against `max_sessions_per_device` (four of them used to lock the
/// device out), cannot be resumed, and are finalised with the frames they
/// had (nothing accepted is lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_stopped_by_errors_neither_count_nor_resume() {
    let env = Env::new(IngestConfig::default()).await;
    let limit = IngestConfig::default().max_sessions_per_device;
    let mut stopped = Vec::new();
    for _ in 0..limit + 2 {
        let (_ep, conn, _s, mut r) = raw(&env).await;
        let mut dec = ControlDecoder::new();
        let w = expect_welcome(&mut r, &mut dec).await;
        let mut u = conn.open_uni().await.unwrap();
        for i in 0..3 {
            let mut f = frame(0, i);
            f.seq = i as u64;
            u.write_all(&encode_frame(&f)).await.unwrap();
        }
        // Wait until the three frames are durable, then send garbage.
        loop {
            match next_control(&mut r, &mut dec).await {
                Some(Control::Ack(a)) if a.covers(0, 2) => break,
                Some(_) => {}
                None => panic!("connection ended before the ACK"),
            }
        }
        u.write_all(&[0xde; 64]).await.unwrap();
        let e = expect_error(&mut r, &mut dec).await;
        assert_eq!(e.code, ErrorCode::BadMessage.as_u16(), "{e:?}");
        stopped.push(w);
    }
    // The device is not locked out.
    let up = Uploader::start(env.client("good"), tracks(), 0)
        .await
        .expect("stopped sessions do not count against the limit");
    // A stopped session cannot be resumed, even with its secret.
    let w = &stopped[0];
    let (_ep, _conn, _s, mut r) = raw_hello(
        &env,
        Hello {
            tracks: vec![],
            resume: Some(Resume {
                session_id: w.session_id.clone(),
                secret: w.resume_secret.clone(),
            }),
            ..good_hello()
        },
    )
    .await;
    let e = expect_error(&mut r, &mut ControlDecoder::new()).await;
    assert_eq!(e.code, ErrorCode::UnknownSession.as_u16(), "{e:?}");
    // Each stopped session was finalised with its three durable frames.
    let n = stopped.len() as u32;
    for _ in 0..300 {
        if *env.mem.finished.lock().unwrap() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*env.mem.finished.lock().unwrap(), n);
    assert_eq!(env.mem.recorded.lock().unwrap().len(), 3 * n as usize);
    assert_eq!(
        metric(&env, "sharecast_ingest_sessions_stopped_total "),
        n as u64
    );
    up.finish().await.unwrap();
}

/// Security review, ingest finding 3: the ERROR message reaches the client
/// before the connection closes, for each way a connection is refused, and
/// the close carries the same code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_message_reaches_the_client_before_the_close() {
    let env = Env::new(IngestConfig {
        hello_timeout_secs: 1,
        end_wait_secs: 1,
        ..IngestConfig::default()
    })
    .await;
    let check = |what: &'static str, want: ErrorCode| {
        move |(e, (code, reason)): (ErrorMsg, (u16, String))| {
            assert_eq!(e.code, want.as_u16(), "{what}: {e:?}");
            assert!(!e.message.is_empty(), "{what}");
            assert_eq!(code, want.as_u16(), "{what}: close {reason}");
            assert!(reason.starts_with(want.name()), "{what}: {reason}");
        }
    };
    async fn error_then_close(
        conn: &quinn::Connection,
        r: &mut quinn::RecvStream,
    ) -> (ErrorMsg, (u16, String)) {
        let e = expect_error(r, &mut ControlDecoder::new()).await;
        (e, close_code(conn).await)
    }

    // A wrong token.
    let (_ep, conn, _s, mut r) = raw_hello(
        &env,
        Hello {
            token: "sc_wrong".into(),
            ..good_hello()
        },
    )
    .await;
    check("bad token", ErrorCode::Unauthorized)(error_then_close(&conn, &mut r).await);

    // A frame record with a bad header.
    let (_ep, conn, _s, mut r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    u.write_all(&[0xde; 64]).await.unwrap();
    check("bad frame header", ErrorCode::BadMessage)(error_then_close(&conn, &mut r).await);

    // A record cut short by the end of its stream.
    let (_ep, conn, _s, mut r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    let mut f = frame(0, 0);
    f.seq = 0;
    u.write_all(&encode_frame(&f)[..100]).await.unwrap();
    u.finish().unwrap();
    check("truncated record", ErrorCode::BadMessage)(error_then_close(&conn, &mut r).await);

    // A HELLO that never completes.
    let (_ep, conn, mut s, mut r) = raw_connect(&env).await;
    let hello = Control::Hello(good_hello()).encode();
    s.write_all(&hello[..hello.len() / 2]).await.unwrap();
    check("stalled HELLO", ErrorCode::Stalled)(error_then_close(&conn, &mut r).await);

    // END announcing more frames than were sent.
    let (_ep, conn, mut s, mut r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    u.write_all(&encode_frame(&f)).await.unwrap();
    u.finish().unwrap();
    let end = Control::End(End {
        frame_count: [(0u8, 5u64)].into_iter().collect(),
    });
    s.write_all(&end.encode()).await.unwrap();
    check("END with missing frames", ErrorCode::MissingFrames)(
        error_then_close(&conn, &mut r).await,
    );

    assert_eq!(metric(&env, "sharecast_ingest_errors_sent_total "), 5);
    assert_eq!(
        metric(&env, "sharecast_ingest_errors_acknowledged_total "),
        5
    );
}

/// Security review, ingest finding 4: every field of HELLO is bounded;
/// each out-of-bounds HELLO is refused with `bad_message` naming the field
/// and the bound, counted by field, and opens nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_fields_out_of_bounds_are_refused() {
    let env = Env::new(IngestConfig::default()).await;
    let l = IngestConfig::default().hello;
    type Edit = Box<dyn Fn(&mut Hello)>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        (
            "dimensions",
            "8192",
            Box::new(|h| {
                h.tracks[0].width = Some(1 << 31);
                h.tracks[0].height = Some(1 << 31);
            }),
        ),
        (
            "title",
            "256",
            Box::new(|h| h.title = Some("x".repeat(60_000))),
        ),
        (
            "token",
            "256",
            Box::new(move |h| h.token = "t".repeat(l.max_token_bytes + 1)),
        ),
        (
            "client",
            "128",
            Box::new(|h| h.client = Some("c".repeat(129))),
        ),
        (
            "tracks",
            "16",
            Box::new(|h| {
                h.tracks = (0..17u8)
                    .map(|id| TrackInfo {
                        id,
                        ..tracks()[1].clone()
                    })
                    .collect()
            }),
        ),
        (
            "codec",
            "16",
            Box::new(|h| h.tracks[0].codec = "h".repeat(17)),
        ),
        (
            "codec_data",
            "4096",
            Box::new(|h| h.tracks[0].codec_data = vec![1; 4097]),
        ),
        (
            "framerate",
            "1000",
            Box::new(|h| h.tracks[0].framerate = Some((1001, 1))),
        ),
        (
            "sample_rate",
            "192000",
            Box::new(|h| h.tracks[1].sample_rate = Some(192_001)),
        ),
        (
            "channels",
            "8",
            Box::new(|h| h.tracks[1].channels = Some(9)),
        ),
        (
            "resume",
            "128",
            Box::new(|h| {
                h.resume = Some(Resume {
                    session_id: "0".repeat(129),
                    secret: "s".into(),
                })
            }),
        ),
    ];
    for (field, bound, edit) in &cases {
        let mut h = good_hello();
        edit(&mut h);
        let (_ep, conn, _s, mut r) = raw_hello(&env, h).await;
        let e = expect_error(&mut r, &mut ControlDecoder::new()).await;
        assert_eq!(e.code, ErrorCode::BadMessage.as_u16(), "{field}: {e:?}");
        assert!(e.message.contains(bound), "{field}: {}", e.message);
        let _ = close_code(&conn).await;
        assert_eq!(
            metric(
                &env,
                &format!("sharecast_ingest_hello_refused_total{{field=\"{field}\"}} ")
            ),
            1,
            "{field}"
        );
    }
    assert_eq!(
        env.server.metrics().rejected(ErrorCode::BadMessage),
        cases.len() as u64
    );
    assert!(env.mem.opened.lock().unwrap().is_empty(), "nothing opened");
    // The bounds themselves are accepted.
    let mut h = good_hello();
    h.tracks[0].width = Some(l.max_video_dimension);
    h.title = Some("t".repeat(l.max_title_chars));
    let (_ep, _conn, _s, mut r) = raw_hello(&env, h).await;
    expect_welcome(&mut r, &mut ControlDecoder::new()).await;
}

/// Security review, ingest finding 5: session ids (which are also the
/// asset ids addressing the VOD files) and resume secrets are 128 random
/// bits: 32 lowercase hex digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_and_resume_secrets_are_128_random_bits() {
    let env = Env::new(IngestConfig::default()).await;
    let mut ids = std::collections::HashSet::new();
    for _ in 0..3 {
        let (_ep, conn, _s, mut r) = raw(&env).await;
        let w = expect_welcome(&mut r, &mut ControlDecoder::new()).await;
        for v in [&w.session_id, &w.resume_secret] {
            assert_eq!(v.len(), 32, "{v}");
            assert!(v
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        assert!(w.live_urls[0].ends_with(&w.session_id));
        assert!(ids.insert(w.session_id.clone()));
        conn.close(0u32.into(), b"bye");
    }
}

/// Timestamps are any i64 on the wire: extreme ones are refused with
/// `session_too_long` (they lie farther than `max_session_secs` from the
/// first frame), never an arithmetic overflow in the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_timestamps_are_refused_not_overflowed() {
    let env = Env::new(IngestConfig::default()).await;
    for (first, second) in [(i64::MIN, i64::MAX), (0, i64::MIN), (i64::MAX, 0)] {
        let (_ep, conn, _s, mut r) = raw(&env).await;
        let mut u = conn.open_uni().await.unwrap();
        for (seq, t) in [(0u64, first), (1, second)] {
            let mut f = frame(0, 0);
            f.seq = seq;
            (f.pts_us, f.dts_us) = (t, t);
            u.write_all(&encode_frame(&f)).await.unwrap();
        }
        let e = expect_error(&mut r, &mut ControlDecoder::new()).await;
        assert_eq!(
            e.code,
            ErrorCode::SessionTooLong.as_u16(),
            "{first} then {second}: {e:?}"
        );
    }
}

/// A connection may have `max_frame_streams` frame streams open at once
/// (QUIC stream credit), so it buffers at most that many partial frames:
/// with 16 open, the 17th cannot be opened until one ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_streams_open_at_once_are_bounded() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    let env = Env::new(IngestConfig::default()).await;
    let (_ep, conn, _s, mut r) = raw(&env).await;
    expect_welcome(&mut r, &mut ControlDecoder::new()).await;
    let max = IngestConfig::default().max_frame_streams;
    let mut open = Vec::new();
    for _ in 0..max {
        open.push(conn.open_uni().await.unwrap());
    }
    let mut next = std::pin::pin!(conn.open_uni());
    assert!(
        matches!(
            next.as_mut().poll(&mut Context::from_waker(Waker::noop())),
            Poll::Pending
        ),
        "stream {} opened while {max} are open",
        max + 1
    );
    // Ending them gives the credit back (quinn announces it once more than
    // an eighth of the streams has ended).
    for (i, mut s) in open.into_iter().enumerate() {
        let mut f = frame(0, i as i64);
        f.seq = i as u64;
        s.write_all(&encode_frame(&f)).await.unwrap();
        s.finish().unwrap();
    }
    next.await.unwrap();
}
