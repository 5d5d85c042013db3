//! RTMP ingest with a real publisher: ffmpeg publishes the demo clip to the
//! real server, and the recording holds every frame; a publisher killed
//! and restarted with the same key continues one recording, and so does a
//! second publisher with the key while the first is still up; wrong keys and
//! garbage are refused, counted, and leave other publishers alone.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;
use sharecast_testkit::*;

fn rtmp_server() -> Server {
    Server::start_with(&["--rtmp-listen", "127.0.0.1:0", "--rejoin-window-secs", "20"])
}

/// A new publishing key of the demo device: (id, stream key).
fn publishing_key(server: &Server) -> (String, String) {
    server.publishing_key("ffmpeg")
}

/// `sharecast device ARGS --data-dir DATA`'s standard output.
fn device_cli(server: &Server, args: &[&str]) -> String {
    let out = run_ok(
        Command::new(bin())
            .arg("device")
            .args(args)
            .arg("--data-dir")
            .arg(server.data_dir())
            .env("RUST_LOG", "warn"),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn rtmp_url(server: &Server, key: &str) -> String {
    format!(
        "rtmp://{}/live/{key}",
        server.rtmp.as_ref().expect("RTMP listens")
    )
}

/// `ffmpeg` sending `input` (its streams copied, `extra` before the
/// input) to `url` as FLV over RTMP.
fn ffmpeg_publish(extra: &[&str], input: &str, url: &str) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(extra)
        .args(["-i", input, "-c", "copy", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// ffmpeg looping `clip` in real time to `url`, once its session records;
/// the session's id.
fn publish_looped(server: &Server, clip: &std::path::Path, url: &str) -> (ChildGuard, String) {
    let looped = ["-re", "-stream_loop", "-1"];
    let publisher = ChildGuard::new(
        ffmpeg_publish(&looped, clip.to_str().unwrap(), url)
            .spawn()
            .unwrap(),
    );
    let live = wait_until(
        "the RTMP session to be live",
        Duration::from_secs(20),
        || {
            let a = server.assets().first().cloned()?;
            (a["state"] == "recording").then(|| a["id"].as_str().unwrap().to_string())
        },
    );
    (publisher, live)
}

#[test]
fn ffmpeg_publishes_over_rtmp_and_the_recording_has_every_frame() {
    let server = rtmp_server();
    let clip = fixture(H264_AAC).unwrap();
    // A key made with the command line, listed by it.
    let key = device_cli(&server, &["add-key", "demo-phone", "--name", "studio"]);
    assert!(key.starts_with("sk_"), "{key}");
    let listed = device_cli(&server, &["keys", "demo-phone"]);
    assert!(
        listed.ends_with("\tstudio") && !listed.contains(&key),
        "{listed}"
    );
    let out = ffmpeg_publish(&[], clip.to_str().unwrap(), &rtmp_url(&server, &key))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = server.only_ready_asset();
    server.assert_vod_is_the_640x360_clip(&id, &clip);
    assert_eq!(
        server.metric("sharecast_ingest_rtmp_connections_total"),
        1.0
    );
}

#[test]
fn a_publisher_that_reconnects_with_its_key_continues_one_recording() {
    let (server, clip) = (rtmp_server(), fixture(H264_AAC).unwrap());
    let url = rtmp_url(&server, &publishing_key(&server).1);
    // First part: in real time, killed (no unpublish) after about 2 s.
    let (mut first, live) = publish_looped(&server, &clip, &url);
    // Watched live over HLS and RTSP while it records.
    let token = server.playback_token(&live);
    wait_until("the live HLS playlist", Duration::from_secs(20), || {
        let r = server.get_raw(
            &format!("/live/{live}/source/index.m3u8?token={token}"),
            None,
        );
        (r.status().as_u16() == 200 && r.text().unwrap().contains("#EXTINF")).then_some(())
    });
    let rtsp = format!(
        "rtsp://127.0.0.1:{}/live/{live}?token={token}",
        server.rtsp_port
    );
    let mut viewer = spawn_rtsp_viewer(&rtsp);
    std::thread::sleep(Duration::from_secs(2));
    first.stop();
    // Back 3 s later with the same key, in real time: the rest of the
    // recording. The RTSP viewer stays connected through the gap.
    std::thread::sleep(Duration::from_secs(3));
    let mut second = ChildGuard::new(
        ffmpeg_publish(&["-re"], clip.to_str().unwrap(), &url)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        viewer.wait_timeout(Duration::ZERO).is_none(),
        "the RTSP viewer was dropped by the rejoin"
    );
    let status = second
        .wait_timeout(Duration::from_secs(30))
        .expect("the second part ends");
    assert!(status.success(), "the second ffmpeg failed");
    let id = server.only_ready_asset();
    assert_eq!(id, live, "the rejoin continued the same asset");
    let (clip_video, clip_audio) = frame_counts(&clip);
    let (video, audio) = frame_counts(&server.session_file(&id, "source.mp4"));
    // The whole second part, and what the first sent in about 2 s.
    assert!(
        video > clip_video + 30 && audio > clip_audio + 50,
        "{video} video / {audio} audio frames"
    );
    // The time away is a gap: the recording lasts the first part, the gap
    // and the clip.
    let duration = num(&ffprobe(&server.session_file(&id, "source.mp4"))["format"]["duration"]);
    assert!(duration > 3.0 + 2.0 + 2.5, "duration {duration} s");
    assert_eq!(
        server.metric("sharecast_ingest_sessions_resumed_total"),
        1.0
    );
    assert_eq!(
        server.metric("sharecast_ingest_sessions_started_total"),
        1.0
    );
}

#[test]
fn a_second_publisher_with_the_same_key_takes_the_recording_over() {
    let (server, clip) = (rtmp_server(), fixture(H264_AAC).unwrap());
    let url = rtmp_url(&server, &publishing_key(&server).1);
    // The first publisher loops the clip in real time, and never stops.
    let (mut first, live) = publish_looped(&server, &clip, &url);
    std::thread::sleep(Duration::from_secs(2));
    // A second one with the same key (a phone that reconnected before the
    // server saw the old connection die): it takes over, the first is cut.
    let second = ffmpeg_publish(&["-re"], clip.to_str().unwrap(), &url)
        .output()
        .unwrap();
    assert!(
        second.status.success(),
        "the second ffmpeg: {}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        first.wait_timeout(Duration::from_secs(10)).is_some(),
        "the superseded publisher was disconnected"
    );
    // One recording: the first's frames, then the second's.
    let id = server.only_ready_asset();
    assert_eq!(id, live, "the takeover continued the same asset");
    let (clip_video, _) = frame_counts(&clip);
    let (video, _) = frame_counts(&server.session_file(&id, "source.mp4"));
    assert!(video > clip_video + 30, "{video} video frames");
    assert_eq!(
        server.metric("sharecast_ingest_sessions_started_total"),
        1.0
    );
    assert_eq!(
        server.metric("sharecast_ingest_rtmp_connections_total"),
        2.0
    );
}

#[test]
fn wrong_keys_and_garbage_are_refused_and_counted() {
    let server = rtmp_server();
    let clip = fixture(H264_AAC).unwrap();
    let clip = clip.to_str().unwrap();
    let (key_id, key) = publishing_key(&server);
    // Refused before any media is taken: a wrong key, the device's token
    // (never sent in clear), a revoked key.
    let path = format!("/api/v1/publishing-keys/{key_id}");
    assert_eq!(server.delete(&path, Some(&server.token)).0, 204);
    for wrong in ["sk_wrong", server.token.as_str(), key.as_str()] {
        let out = ffmpeg_publish(&[], clip, &rtmp_url(&server, wrong))
            .output()
            .unwrap();
        assert!(!out.status.success(), "the key {wrong} must be refused");
    }
    let series = |r: &str| format!("sharecast_ingest_rtmp_ended_total{{reason=\"{r}\"}}");
    wait_until(
        "the refusals to be counted",
        Duration::from_secs(10),
        || (server.metric(&series("unauthorized")) == 3.0).then_some(()),
    );
    // Garbage instead of a handshake.
    let addr = server.rtmp.clone().unwrap();
    let mut raw = TcpStream::connect(&addr).unwrap();
    raw.write_all(&[0x42; 1537]).unwrap();
    expect_closed(&mut raw);
    // A valid handshake, then garbage.
    let mut raw = TcpStream::connect(&addr).unwrap();
    client_handshake(&mut raw);
    raw.write_all(&[0xff; 4096]).unwrap();
    expect_closed(&mut raw);
    wait_until("garbage to be counted", Duration::from_secs(10), || {
        (server.metric(&series("handshake")) == 1.0 && server.metric(&series("protocol")) == 1.0)
            .then_some(())
    });
    assert!(
        server.assets().is_empty(),
        "nothing recorded from refused input"
    );
    // Another publisher is unaffected.
    let out = ffmpeg_publish(&[], clip, &rtmp_url(&server, &publishing_key(&server).1))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.only_ready_asset();
}

/// The server closes the connection (within 15 s).
fn expect_closed(raw: &mut TcpStream) {
    raw.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 8192];
    loop {
        match raw.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// A client's RTMP handshake on `raw`.
fn client_handshake(raw: &mut TcpStream) {
    let mut hs = Handshake::new(PeerType::Client);
    raw.write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = raw.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed during the handshake");
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                raw.write_all(&response_bytes).unwrap()
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                raw.write_all(&response_bytes).unwrap();
                return;
            }
        }
    }
}

/// A publisher speaking RTMP with `rml_rtmp`'s client session over `raw`
/// (handshake done): connected to `live`, publishing with `key`.
struct RawPublisher {
    raw: TcpStream,
    session: ClientSession,
}

impl RawPublisher {
    fn start(addr: &str, key: &str) -> RawPublisher {
        let mut raw = TcpStream::connect(addr).unwrap();
        client_handshake(&mut raw);
        raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (session, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut p = RawPublisher { raw, session };
        p.send(results);
        let r = p.session.request_connection("live".into()).unwrap();
        p.send(vec![r]);
        p.until(|e| matches!(e, ClientSessionEvent::ConnectionRequestAccepted));
        let r = p
            .session
            .request_publishing(key.into(), PublishRequestType::Live)
            .unwrap();
        p.send(vec![r]);
        p.until(|e| matches!(e, ClientSessionEvent::PublishRequestAccepted));
        p
    }

    fn send(&mut self, results: Vec<ClientSessionResult>) {
        for r in results {
            if let ClientSessionResult::OutboundResponse(packet) = r {
                self.raw.write_all(&packet.bytes).unwrap();
            }
        }
    }

    /// Reads and answers the server until it raises an event `want` takes.
    fn until(&mut self, want: impl Fn(&ClientSessionEvent) -> bool) {
        let mut buf = [0u8; 4096];
        loop {
            let n = self.raw.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed the connection");
            let mut seen = false;
            let mut out = Vec::new();
            for r in self.session.handle_input(&buf[..n]).unwrap() {
                match r {
                    ClientSessionResult::RaisedEvent(e) => seen |= want(&e),
                    other => out.push(other),
                }
            }
            self.send(out);
            if seen {
                return;
            }
        }
    }

    /// One FLV video tag body at RTMP time `ts_ms`; false once the server
    /// has closed the connection.
    fn video(&mut self, body: Vec<u8>, ts_ms: u32) -> bool {
        let r = self
            .session
            .publish_video_data(body.into(), RtmpTimestamp::new(ts_ms), false)
            .unwrap();
        match r {
            ClientSessionResult::OutboundResponse(packet) => {
                self.raw.write_all(&packet.bytes).is_ok()
            }
            _ => true,
        }
    }
}

#[test]
fn timestamps_that_run_away_stop_the_session_with_what_it_holds() {
    let server = rtmp_server();
    let (_, key) = publishing_key(&server);
    let mut p = RawPublisher::start(server.rtmp.as_ref().unwrap(), &key);
    // The demo clip's AVC sequence header, then key frames 33 ms apart,
    // then ones that jump 24 days ahead at each step (the 32-bit RTMP
    // clock, wrapping): the session's span check refuses them.
    let avcc = hex_avcc();
    let mut config = vec![0x17, 0, 0, 0, 0];
    config.extend_from_slice(&avcc);
    assert!(p.video(config, 0));
    let frame = || vec![0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65];
    for i in 0..5 {
        assert!(p.video(frame(), i * 33));
    }
    for i in 1..=8u32 {
        if !p.video(frame(), i.wrapping_mul(0x7fff_ffff)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    expect_closed(&mut p.raw);
    let series = r#"sharecast_ingest_rtmp_ended_total{reason="session"}"#;
    wait_until("the stop to be counted", Duration::from_secs(10), || {
        (server.metric(series) == 1.0).then_some(())
    });
    assert_eq!(
        server.metric(r#"sharecast_ingest_rejected_total{code="session_too_long"}"#),
        1.0
    );
    // The session is finalised with the frames it took; nothing else broke.
    let (st, _) = server.get("/api/v1/health", None);
    assert_eq!(st, 200);
    wait_until("the session to end", Duration::from_secs(30), || {
        let list = server.assets();
        let a = list.first()?;
        (a["state"] != "recording").then_some(())
    });
}

/// The AVCDecoderConfigurationRecord of the demo clip (640x360, 30 fps).
fn hex_avcc() -> Vec<u8> {
    let hex = "0164001effe1001e6764001eacb405017fcb80b5060606a50000030001000003003c8f162ea001000468ef3cb0";
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}
