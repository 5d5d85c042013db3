//! `sharecast push`'s summary counts what happened during the whole
//! session: resumes that happen after the last frame was queued (a drop near
//! the end, a long blackout) are counted too.

use sharecast_testkit::*;

/// Frames of the H.264 + AAC test clip (video and audio).
fn clip_frames(server: &Server) -> u64 {
    let src = fixture(H264_AAC).unwrap();
    let r = server.push(&src, &[]);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    r.line("frames").unwrap().parse().unwrap()
}

#[test]
fn resumes_after_the_last_queued_frame_are_counted() {
    let server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let total = clip_frames(&server);
    // Without --realtime every frame is queued within milliseconds, long
    // before the reconnect (after a 100 ms back-off) resumes the session:
    // a drop mid-way, and a drop after the last frame, are each resumed
    // before FINISHED and must be counted.
    for at in [total / 2, total] {
        let r = server.push(&src, &["--drop-after", &at.to_string()]);
        assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
        assert!(
            r.stderr
                .contains(&format!("dropping the connection after {at} frames")),
            "{}",
            r.stderr
        );
        assert_eq!(
            r.line("resumes").as_deref(),
            Some("1"),
            "drop after {at} of {total} frames; stdout:\n{}\nstderr:\n{}",
            r.stdout,
            r.stderr
        );
        assert_eq!(r.line("frames"), Some(total.to_string()));
    }
    // A push without drops still says 0.
    let r = server.push(&src, &[]);
    assert_eq!(r.line("resumes").as_deref(), Some("0"));
}
