//! Still frames: the JPEG at t is the frame ffmpeg shows at t (pixels
//! compared with a tolerance), and the poster is written at finish.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use sharecast_transcoder::still::{frame_jpeg, StillError};
use sharecast_transcoder::testing::{self, fixture};

/// Decodes an image or the frame shown at `t` of a video to 160x90 gray
/// pixels with ffmpeg.
fn gray(input: &Path, t: Option<f64>) -> Vec<u8> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-i"]).arg(input);
    if let Some(t) = t {
        // Keep every frame that starts at or before t.
        cmd.args(["-vf", &format!("select='lte(t\\,{t})',scale=160:90")])
            .args(["-fps_mode", "passthrough"]);
    } else {
        cmd.args(["-vf", "scale=160:90"]);
    }
    cmd.args(["-pix_fmt", "gray", "-f", "rawvideo", "-"]);
    let o = cmd.output().expect("ffmpeg");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The last frame written is the one shown at t.
    const FRAME: usize = 160 * 90;
    assert!(o.stdout.len() >= FRAME && o.stdout.len() % FRAME == 0);
    o.stdout[o.stdout.len() - FRAME..].to_vec()
}

/// Pixels that differ by more than 16 grey levels (JPEG noise stays below).
fn differing_pixels(a: &[u8], b: &[u8]) -> usize {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.abs_diff(**y) > 16)
        .count()
}

fn check_frames(file: &Path) {
    let dir = tempfile::tempdir().unwrap();
    // Times inside frames (not on their boundaries) and across GOPs.
    for t_ms in [0u64, 517, 1234, 1999, 2671, 2990] {
        let jpeg = frame_jpeg(file, t_ms).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8], "a JPEG");
        let p = dir.path().join(format!("{t_ms}.jpg"));
        std::fs::write(&p, &jpeg).unwrap();
        let ours = gray(&p, None);
        let t = t_ms as f64 / 1000.0;
        let same = differing_pixels(&ours, &gray(file, Some(t)));
        // The frame two frames earlier must be clearly different, or the
        // comparison proves nothing (the test clip moves).
        let other = differing_pixels(&ours, &gray(file, Some((t - 0.067).max(0.0))));
        assert!(
            same <= 3,
            "{}: t={t_ms}: {same} pixels differ from ffmpeg's frame ({} from the one before, {} from the one after)",
            file.display(),
            differing_pixels(&ours, &gray(file, Some(t - 0.0334))),
            differing_pixels(&ours, &gray(file, Some(t + 0.0334)))
        );
        if t_ms > 100 {
            assert!(
                other >= same + 4,
                "t={t_ms}: neighbouring frames not distinguishable ({same} vs {other} pixels)"
            );
        }
    }
}

#[test]
fn frame_at_t_matches_ffmpeg() {
    check_frames(&fixture(testing::H264_AAC).unwrap());
}

#[test]
fn frame_at_t_matches_ffmpeg_with_b_frames_after_recording() {
    // Through our own pipeline: B-frames, edit list, capture clock offset.
    let (tracks, frames) = read_all(testing::H264_BFRAMES);
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = record(&tracks, &frames, source_only(), dir.path());
    check_frames(&out[0].path);
    let poster = dir.path().join("poster.jpg");
    let jpeg = std::fs::read(&poster).expect("poster written at finish");
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
}

#[test]
fn frames_of_a_rotated_clip_are_upright_as_ffmpeg_shows_them() {
    let file = fixture(testing::ROTATED_90).unwrap();
    let jpeg = frame_jpeg(&file, 1000).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.jpg");
    std::fs::write(&p, &jpeg).unwrap();
    let o = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "360,640");
    // ffmpeg turns the picture by the display matrix too.
    check_frames(&file);
}

#[test]
fn frame_at_t_matches_ffmpeg_h265() {
    check_frames(&fixture(testing::H265_AAC).unwrap());
}

#[test]
fn past_the_end_and_no_video_are_clear_errors() {
    let file = fixture(testing::H264_AAC).unwrap();
    match frame_jpeg(&file, 3_500) {
        Err(StillError::PastEnd { t_ms, duration_ms }) => {
            assert_eq!(t_ms, 3_500);
            assert!((2990..=3100).contains(&duration_ms));
        }
        other => panic!("{:?}", other.map(|j| j.len())),
    }
    // The very end gives the last frame.
    assert!(frame_jpeg(&file, 3_000).is_ok());
    let audio = fixture(testing::AUDIO_ONLY).unwrap();
    assert!(matches!(frame_jpeg(&audio, 0), Err(StillError::NoVideo)));
    let missing = frame_jpeg(Path::new("/nonexistent/x.mp4"), 0).unwrap_err();
    assert!(format!("{missing}").contains("does not exist"));
}
