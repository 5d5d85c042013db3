//! End-to-end resilience: connection drops, address changes and a `kill -9`
//! of the server during an upload still give a complete VOD, every frame
//! exactly once and in order (compared frame by frame with the source).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// Per-frame MD5 of the decoded video and audio, in order.
fn frame_hashes(path: &std::path::Path, stream: &str) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", stream, "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_string()))
        .collect()
}

fn assert_same_frames(src: &std::path::Path, vod: &std::path::Path) {
    for s in ["0:v", "0:a"] {
        let (a, b) = (frame_hashes(src, s), frame_hashes(vod, s));
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "{s}: frame count");
        assert!(a == b, "{s}: decoded frames differ from the source");
    }
}

#[test]
fn dropped_connections_lose_nothing() {
    let server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let r = server.push(&src, &["--realtime", "--drop-after", "40,110,170"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.line("resumes").as_deref(), Some("3"), "{}", r.stderr);
    let vod = server
        .data_dir()
        .join("sessions")
        .join(r.session())
        .join("source.mp4");
    assert_same_frames(&src, &vod);
}

#[test]
fn address_change_continues_without_reconnect() {
    let server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let r = server.push(&src, &["--realtime", "--rebind-after", "60"]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("rebound local socket"), "{}", r.stderr);
    assert_eq!(r.line("resumes").as_deref(), Some("0"));
    let vod = server
        .data_dir()
        .join("sessions")
        .join(r.session())
        .join("source.mp4");
    assert_same_frames(&src, &vod);
}

#[test]
fn server_killed_mid_upload_recovers_and_completes() {
    let mut server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let (mut push, session, _out) = spawn_push(server.push_cmd(&src, &["--realtime"]));
    std::thread::sleep(Duration::from_millis(1200));
    let ingest = server.ingest.clone();
    server.kill9();
    std::thread::sleep(Duration::from_millis(500));
    server.spawn(Some(&ingest));
    let out = push.wait().unwrap();
    assert!(
        out.success(),
        "push did not complete after the restart; server log:\n{}",
        server.log()
    );
    assert!(
        server.log().contains("recovered session"),
        "{}",
        server.log()
    );
    let vod = server
        .data_dir()
        .join("sessions")
        .join(&session)
        .join("source.mp4");
    assert_same_frames(&src, &vod);
}
