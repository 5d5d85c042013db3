//! `kill -9` mid-recording: the process recording a session is killed with
//! SIGKILL; the file it leaves plays, up to the last index update, and
//! decodes without errors.
//!
//! The test re-runs its own binary as the recording process (the ignored
//! test `crash_child`, selected with an environment variable).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use sharecast_testkit::media::video_frames;
use sharecast_transcoder::testing;
use sharecast_transcoder::{Transcoder, TranscoderConfig};

const DIR_ENV: &str = "SHARECAST_CRASH_TEST_DIR";

/// The process that gets killed: records the clip in real time, over and
/// over, never finishing.
#[test]
#[ignore = "run by kill9_mid_recording_leaves_a_playable_file"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let (tracks, frames) = read_all(testing::H264_AAC);
    let cfg = TranscoderConfig {
        fragment_duration_ms: 500,
        ..TranscoderConfig::default()
    };
    let transcoder = Transcoder::new(cfg).unwrap();
    let recording = transcoder
        .start("crash", &tracks, std::path::Path::new(&dir))
        .unwrap();
    let start = Instant::now();
    for lap in 0..100i64 {
        for f in &frames {
            let mut f = f.clone();
            f.pts_us += lap * 3_000_000;
            f.dts_us += lap * 3_000_000;
            let due = Duration::from_micros(u64::try_from(f.dts_us - CLOCK_OFFSET_US).unwrap_or(0));
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            recording.push(&f).unwrap();
        }
    }
}

#[test]
fn kill9_mid_recording_leaves_a_playable_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--ignored", "--nocapture"])
        .env(DIR_ENV, dir.path())
        .spawn()
        .unwrap();
    let path = dir.path().join("source.mp4");
    // Wait for 2 s of video (at least 60 frames) in the file, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if path.exists() && video_frames(&path) >= 60 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "recording process ended early"
        );
        assert!(Instant::now() < deadline, "no index update on disk");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let n = video_frames(&path);
    assert!(n >= 60, "{n} frames after kill -9");
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let d: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(d >= 2.0, "duration {d}");
    decodes_cleanly(&path);
    // Index first: ftyp, then the reserved room with the index, then media.
    let head = std::fs::read(&path).unwrap();
    assert_eq!(&head[4..8], b"ftyp");
    let moov = head.windows(4).position(|w| w == b"moov").unwrap();
    let mdat = head.windows(4).position(|w| w == b"mdat").unwrap();
    assert!(moov < mdat, "moov at the front");
}
