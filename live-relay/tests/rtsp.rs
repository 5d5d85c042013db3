//! Publishes a fixture in real time and watches it with two real RTSP clients
//! (ffmpeg), one over UDP and one over TCP.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use sharecast_formats::media::{FrameSink, MediaFrame};
use sharecast_live_relay::{LivePublisher, LiveRelay, LiveRelayConfig};
use sharecast_transcoder::source::FileSource;
use sharecast_transcoder::testing::{self, fixture};

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

fn read_all(name: &str) -> (Vec<sharecast_formats::media::TrackInfo>, Vec<MediaFrame>) {
    let mut src = FileSource::open(&fixture(name).unwrap()).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = src.next_frame() {
        frames.push(f.unwrap());
    }
    (src.tracks.clone(), frames)
}

/// A relay on loopback, on a free RTSP port.
fn relay_on_loopback() -> LiveRelay {
    LiveRelay::start(LiveRelayConfig {
        bind: "127.0.0.1".into(),
        rtsp_port: 0,
        ..LiveRelayConfig::default()
    })
    .unwrap()
}

/// Pushes the clip in a loop, paced by its timestamps, like a phone filming.
fn publish_in_real_time(
    publisher: Arc<LivePublisher>,
    frames: Vec<MediaFrame>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let clip_us = frames.iter().map(|f| f.pts_us).max().unwrap_or(0) + 33_333;
        let start = Instant::now();
        let mut seq_base = [0u64; 16];
        for round in 0i64.. {
            for f in &frames {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let mut f = f.clone();
                f.pts_us += round * clip_us;
                f.dts_us += round * clip_us;
                f.seq += seq_base[f.track as usize];
                let due = Duration::from_micros(f.dts_us.max(0) as u64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    thread::sleep(wait);
                }
                FrameSink::push(&*publisher, &f);
            }
            for (track, base) in seq_base.iter_mut().enumerate() {
                *base += frames.iter().filter(|f| f.track as usize == track).count() as u64;
            }
            if round > 10 {
                return;
            }
        }
    })
}

fn viewer(url: &str, transport: &str, frames: u32) -> std::process::Child {
    viewer_of(url, transport, "v", frames)
}

/// An ffmpeg RTSP client that decodes `frames` frames of one stream kind
/// ("v" or "a") and prints one line per frame.
fn viewer_of(url: &str, transport: &str, kind: &str, frames: u32) -> std::process::Child {
    // Bounded: a viewer that never gets its frames fails the test instead of
    // hanging it.
    Command::new("timeout")
        .args(["--kill-after=5", "90", "ffmpeg"])
        .args(["-nostdin", "-v", "error", "-rtsp_transport", transport])
        .args(["-i", url, "-map", &format!("0:{kind}")])
        .arg(format!("-frames:{kind}"))
        .arg(frames.to_string())
        .args(["-f", "framecrc", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ffmpeg")
}

fn wait_viewer(child: std::process::Child, what: &str) -> usize {
    let out = child.wait_with_output().expect("ffmpeg output");
    assert!(
        out.status.success(),
        "{what} viewer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        eprintln!("{what} viewer said:\n{stderr}");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count()
}

#[test]
fn two_viewers_over_udp_and_tcp() {
    init_logs();
    let (tracks, frames) = read_all(testing::H264_AAC);
    let relay = relay_on_loopback();
    let port = relay.rtsp_port();
    assert_ne!(port, 0);
    let publisher = Arc::new(relay.publish("it-session", &tracks).unwrap());
    assert_eq!(publisher.path(), "/live/it-session");
    assert!(
        relay.publish("it-session", &tracks).is_err(),
        "double publish"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let pusher = publish_in_real_time(publisher.clone(), frames, stop.clone());
    thread::sleep(Duration::from_millis(300));

    let url = format!("rtsp://127.0.0.1:{port}/live/it-session");
    let udp = viewer(&url, "udp", 45);
    let tcp = viewer(&url, "tcp", 45);

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut max_viewers = 0;
    while Instant::now() < deadline && max_viewers < 2 {
        max_viewers = max_viewers.max(relay.viewer_count("it-session"));
        thread::sleep(Duration::from_millis(20));
    }
    let udp_frames = wait_viewer(udp, "UDP");
    let tcp_frames = wait_viewer(tcp, "TCP");
    assert_eq!(max_viewers, 2, "viewer_count never reached 2");
    assert_eq!(udp_frames, 45, "UDP viewer decoded frames");
    assert_eq!(tcp_frames, 45, "TCP viewer decoded frames");

    // Both viewers sent TEARDOWN on exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.viewer_count("it-session") > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(relay.viewer_count("it-session"), 0);

    // Ending the stream removes the mount.
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
    drop(Arc::try_unwrap(publisher).expect("sole owner"));
    let probe = Command::new("timeout")
        .args(["--kill-after=5", "30", "ffprobe"])
        .args(["-v", "error", "-rtsp_transport", "tcp", "-i", &url])
        .output()
        .unwrap();
    assert!(!probe.status.success(), "mount still there after end");
    assert_ne!(probe.status.code(), Some(124), "ffprobe timed out");
    // The session id can be published again.
    let again = relay.publish("it-session", &tracks).unwrap();
    again.end();
}

/// One TCP viewer for a clip; returns the decoded frame count.
fn watch_one(name: &str, session: &str, kind: &str, frames: u32) -> usize {
    init_logs();
    let (tracks, clip) = read_all(name);
    let relay = relay_on_loopback();
    let publisher = Arc::new(relay.publish(session, &tracks).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = publish_in_real_time(publisher.clone(), clip, stop.clone());
    thread::sleep(Duration::from_millis(200));
    let url = format!("rtsp://127.0.0.1:{}/live/{session}", relay.rtsp_port());
    let n = wait_viewer(viewer_of(&url, "tcp", kind, frames), name);
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
    n
}

#[test]
fn h265_viewer() {
    assert_eq!(watch_one(testing::H265_AAC, "hevc", "v", 20), 20);
}

#[test]
fn audio_only_viewer() {
    assert_eq!(watch_one(testing::AUDIO_ONLY, "radio", "a", 40), 40);
}

#[test]
fn publishers_cross_threads() {
    fn send_sync<T: Send + Sync + FrameSink>() {}
    send_sync::<LivePublisher>();
}

/// The capture wall clock travels in an SEI of every RTSP video access unit:
/// a client reading it gets `anchor + pts` of the frame it received.
#[test]
fn capture_clock_sei_reaches_rtsp_clients() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    use gstreamer_app as gst_app;
    use std::sync::Mutex;

    init_logs();
    let (tracks, clip) = read_all(testing::H264_AAC);
    let relay = relay_on_loopback();
    let anchor_us = 1_700_000_000_000_000i64;
    let publisher = Arc::new(relay.publish_at("clock", &tracks, anchor_us).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = publish_in_real_time(publisher.clone(), clip, stop.clone());
    thread::sleep(Duration::from_millis(200));
    let url = format!("rtsp://127.0.0.1:{}/live/clock", relay.rtsp_port());
    let pipeline = gst::parse::launch(&format!(
        "rtspsrc location={url} protocols=tcp latency=0 ! rtph264depay ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let clocks = Arc::new(Mutex::new(Vec::new()));
    let c = clocks.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let b = sample.buffer().ok_or(gst::FlowError::Error)?;
                let m = b.map_readable().map_err(|_| gst::FlowError::Error)?;
                c.lock()
                    .unwrap()
                    .push(sharecast_live_relay::sei::find_capture_clock(m.as_slice()));
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while clocks.lock().unwrap().len() < 30 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    let _ = pipeline.set_state(gst::State::Null);
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
    let clocks = clocks.lock().unwrap().clone();
    assert!(clocks.len() >= 30, "received {} access units", clocks.len());
    // Every AU carries the clock; it is the anchor plus a capture time within
    // the first seconds of the clip, increasing.
    let clocks: Vec<i64> = clocks
        .into_iter()
        .map(|c| c.expect("capture clock SEI in every access unit"))
        .collect();
    for c in &clocks {
        let pts = c - anchor_us;
        assert!((0..60_000_000).contains(&pts), "capture pts {pts} µs");
    }
    assert!(clocks.windows(2).filter(|w| w[1] > w[0]).count() >= clocks.len() / 2);
}

/// With an authorizer, DESCRIBE/SETUP/PLAY need the session's playback token
/// in the URL: no token and a wrong token get 401 (counted), the right one
/// plays.
#[test]
fn playback_token_guards_rtsp() {
    init_logs();
    let (tracks, clip) = read_all(testing::H264_AAC);
    let relay = relay_on_loopback();
    relay.set_authorizer(Some(Arc::new(|id: &str, token: Option<&str>| {
        id == "guarded" && token == Some("good-token")
    })));
    let publisher = Arc::new(relay.publish("guarded", &tracks).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = publish_in_real_time(publisher.clone(), clip, stop.clone());
    thread::sleep(Duration::from_millis(200));
    let base = format!("rtsp://127.0.0.1:{}/live/guarded", relay.rtsp_port());
    for (url, what) in [
        (base.clone(), "no token"),
        (format!("{base}?token=bad"), "a wrong token"),
    ] {
        let out = viewer(&url, "tcp", 5).wait_with_output().unwrap();
        assert!(!out.status.success(), "{what} played");
        assert_ne!(out.status.code(), Some(124), "{what}: viewer timed out");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("401"), "{what}: {stderr}");
    }
    // A client that skips DESCRIBE and sets up a stream directly.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", relay.rtsp_port())).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            c,
            "SETUP {base}/stream=0 RTSP/1.0\r\nCSeq: 1\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
        )
        .unwrap();
        let mut buf = [0u8; 512];
        let n = c.read(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("RTSP/1.0 401"), "{answer}");
    }
    let mut registry = Registry::with_prefix("sharecast");
    relay.register_metrics(&mut registry);
    let mut metrics = String::new();
    prometheus_text::encode(&mut metrics, &registry).unwrap();
    assert!(
        metrics.contains("reason=\"unauthorized\"} 3"),
        "three refusals counted:\n{metrics}"
    );
    let n = wait_viewer(
        viewer(&format!("{base}?token=good-token"), "tcp", 10),
        "token",
    );
    assert_eq!(n, 10);
    stop.store(true, Ordering::SeqCst);
    pusher.join().unwrap();
}

/// An extra rendition has its own RTSP mount under the session's, next to
/// the source; bad rendition names are refused.
#[test]
fn rendition_mounts_beside_the_source() {
    init_logs();
    let (tracks, clip) = read_all(testing::H264_AAC);
    let (low_tracks, low_clip) = read_all(testing::H265_AAC);
    let relay = relay_on_loopback();
    let source = Arc::new(relay.publish("rend", &tracks).unwrap());
    let now = 1_700_000_000_000_000;
    let low = Arc::new(
        relay
            .publish_rendition("rend", "low", &low_tracks, now)
            .unwrap(),
    );
    assert_eq!(low.path(), "/live/rend/low");
    assert!(relay
        .publish_rendition("rend", "low", &low_tracks, now)
        .is_err());
    for bad in ["", "source", "../x", "a/b", "stream=0"] {
        assert!(
            relay
                .publish_rendition("rend", bad, &low_tracks, now)
                .is_err(),
            "{bad:?}"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let pushers = [
        publish_in_real_time(source.clone(), clip, stop.clone()),
        publish_in_real_time(low.clone(), low_clip, stop.clone()),
    ];
    thread::sleep(Duration::from_millis(200));
    let base = format!("rtsp://127.0.0.1:{}/live/rend", relay.rtsp_port());
    let codec = |url: &str| {
        let out = Command::new("timeout")
            .args(["30", "ffprobe", "-v", "error", "-rtsp_transport", "tcp"])
            .args(["-select_streams", "v", "-show_entries", "stream=codec_name"])
            .args(["-of", "csv=p=0", url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(codec(&format!("{base}/low")), "hevc");
    assert_eq!(codec(&base), "h264");
    assert_eq!(
        wait_viewer(viewer(&format!("{base}/low"), "tcp", 10), "low"),
        10
    );
    stop.store(true, Ordering::SeqCst);
    for p in pushers {
        p.join().unwrap();
    }
}
