//! `sharecast push`'s summary counts what happened during the whole
//! session: resumes that happen after the last frame was queued (a drop near
//! the end, a long blackout) are counted too. Its progress is a bar on a
//! terminal and lines otherwise.

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

/// A shell word for `s`.
fn sh_quote(s: &std::ffi::OsStr) -> String {
    format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"))
}

#[test]
fn push_shows_a_progress_bar_on_a_terminal_and_lines_otherwise() {
    let server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let args = ["--realtime", "--stats-interval-ms", "200"];
    // Standard error is a pipe: progress lines, no bar.
    let r = server.push(&src, &args);
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("sent ") && r.stderr.contains(" acked "),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("% of the input queued"), "{}", r.stderr);
    // On a terminal (`script` gives the push a pseudo-terminal, 120 columns
    // wide): a bar that reaches 100 %, with the counts, and no progress
    // lines.
    let cmd = server.push_cmd(&src, &args);
    let line = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(sh_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let out = std::process::Command::new("script")
        .args([
            "-qec",
            &format!("stty cols 120 rows 40; env RUST_LOG=warn TERM=xterm {line}"),
            "/dev/null",
        ])
        .output()
        .expect("script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("% of the input queued"), "{text}");
    assert!(text.contains("100%"), "{text}");
    assert!(
        text.contains(" acked ") && text.contains("backlog"),
        "{text}"
    );
    assert!(
        !text.contains("throughput"),
        "no progress lines on a terminal: {text}"
    );
    assert!(
        text.contains("\nframes "),
        "the summary still follows: {text}"
    );
}
