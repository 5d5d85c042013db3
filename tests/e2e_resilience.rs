//! End-to-end resilience: connection drops, address changes and a `kill -9`
//! of the server during an upload still give a complete VOD, every frame
//! exactly once and in order (compared frame by frame with the source).

use std::io::Read;
use std::time::Duration;

use sharecast_testkit::*;

fn assert_same_frames(src: &std::path::Path, vod: &std::path::Path) {
    for s in ["0:v", "0:a"] {
        let (a, b) = (frame_md5s(src, s), frame_md5s(vod, s));
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len(), "{s}: frame count");
        assert!(a == b, "{s}: decoded frames differ from the source");
    }
}

/// Pushes the H.264 clip in real time with `faults` (simulated network
/// trouble), checks that the VOD is the clip frame for frame, and returns
/// what the push printed.
fn push_through(faults: &[&str]) -> PushResult {
    let server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let r = server.push(&src, &[&["--realtime"], faults].concat());
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert_same_frames(&src, &server.session_file(&r.session(), "source.mp4"));
    r
}

#[test]
fn dropped_connections_lose_nothing() {
    let r = push_through(&["--drop-after", "40,110,170"]);
    assert_eq!(r.line("resumes").as_deref(), Some("3"), "{}", r.stderr);
}

#[test]
fn address_change_continues_without_reconnect() {
    let r = push_through(&["--rebind-after", "60"]);
    assert!(r.stderr.contains("rebound local socket"), "{}", r.stderr);
    assert_eq!(r.line("resumes").as_deref(), Some("0"));
}

#[test]
fn server_killed_mid_upload_recovers_and_completes() {
    let mut server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let (mut push, session, _out) = server.spawn_push(&src, &["--realtime"]);
    std::thread::sleep(Duration::from_millis(1200));
    let ingest = server.ingest.clone();
    server.kill9();
    std::thread::sleep(Duration::from_millis(500));
    server.restart(Some(&ingest));
    let out = push.wait().unwrap();
    let mut stderr = String::new();
    push.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        out.success(),
        "push did not complete after the restart:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    // The restarted server answers the old connection's packets with a
    // stateless reset (its reset and connection-id keys outlive the
    // process, see ingest/src/tls.rs): the phone learns of the restart from
    // the server instead of waiting for its 10 s idle timeout.
    assert!(
        stderr.contains("reset by peer"),
        "the phone did not learn of the restart from the server:\n{stderr}"
    );
    assert!(
        server.log().contains("recovered session"),
        "{}",
        server.log()
    );
    assert_same_frames(&src, &server.session_file(&session, "source.mp4"));
}
