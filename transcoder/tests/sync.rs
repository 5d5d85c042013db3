//! Timestamp sync, checked packet by packet with ffprobe: every packet of
//! the produced file is where the phone's capture timestamps put it.

mod common;

use common::*;
use sharecast_formats::media::MediaFrame;
use sharecast_transcoder::testing;
use sharecast_transcoder::TranscoderConfig;

const V: u8 = 0;
const A: u8 = 1;

/// Every packet of the file is at its expected capture time (within 1 ms),
/// and the file decodes without an error.
fn check(expected: &[MediaFrame], base_us: i64, path: &std::path::Path) {
    assert_times(
        "video",
        &packet_pts(path, "v"),
        &expected_pts(expected, V, base_us),
        0.001,
    );
    assert_times(
        "audio",
        &packet_pts(path, "a"),
        &expected_pts(expected, A, base_us),
        0.001,
    );
    decodes_cleanly(path);
}

#[test]
fn b_frames_keep_their_presentation_times() {
    let (tracks, frames) = read_all(testing::H264_BFRAMES);
    assert!(
        frames.iter().any(|f| f.track == V && f.dts_us != f.pts_us),
        "fixture has B-frames"
    );
    let dir = tempfile::tempdir().unwrap();
    let (out, stats) = record(&tracks, &frames, source_only(), dir.path());
    assert_eq!(stats.dropped, 0);
    let base = frames.iter().map(|f| f.pts_us).min().unwrap();
    check(&frames, base, &out[0].path);
}

#[test]
fn tracks_starting_at_different_times_stay_aligned() {
    // Video starts 250 ms after audio this time (the other way round is in
    // tests/recording.rs).
    let (tracks, frames) = read_all(testing::H264_AAC);
    let start = CLOCK_OFFSET_US + 250_000;
    let kept: Vec<_> = frames
        .iter()
        .filter(|f| !(f.track == V && f.pts_us < start))
        .cloned()
        .collect();
    // The first kept video frame must be a key frame for the file to decode:
    // drop video up to the next key frame.
    let first_key = kept
        .iter()
        .find(|f| f.track == V && f.keyframe)
        .map(|f| f.pts_us)
        .unwrap();
    let kept: Vec<_> = kept
        .into_iter()
        .filter(|f| !(f.track == V && f.pts_us < first_key))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = record(&tracks, &kept, source_only(), dir.path());
    let base = kept.iter().map(|f| f.pts_us).min().unwrap();
    check(&kept, base, &out[0].path);
    let v = packet_pts(&out[0].path, "v");
    assert!((v[0] - (first_key - base) as f64 / 1e6).abs() < 0.001);
    assert!(v[0] > 0.9, "video starts late: {}", v[0]);
}

#[test]
fn a_gap_in_the_upload_stays_in_the_timeline() {
    // Nothing arrives between 1.0 s and 2.0 s (both tracks); video resumes
    // on the key frame at 2.0 s.
    let (tracks, frames) = read_all(testing::H264_AAC);
    let (from, to) = (CLOCK_OFFSET_US + 1_000_000, CLOCK_OFFSET_US + 2_000_000);
    let kept: Vec<_> = frames
        .iter()
        .filter(|f| f.pts_us < from || f.pts_us >= to)
        .cloned()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (out, stats) = record(&tracks, &kept, source_only(), dir.path());
    assert_eq!((stats.dropped, stats.jumps), (0, 0));
    check(&kept, CLOCK_OFFSET_US, &out[0].path);
    let v = packet_pts(&out[0].path, "v");
    assert_eq!(v.len(), 60);
    assert!(v.iter().all(|t| *t < 1.0 || *t >= 1.999), "{v:?}");
    let a = packet_pts(&out[0].path, "a");
    let after = a.iter().find(|t| **t > 1.0).unwrap();
    assert!((after - 2.0).abs() < 0.0214, "audio resumes at {after}");
}

#[test]
fn timestamps_going_back_a_little_are_dropped() {
    // The phone re-sends 6 frames of each track it had already sent (for
    // example after a reconnect): their timestamps go back ~200 ms.
    let (tracks, frames) = read_all(testing::H264_AAC);
    let cut = frames
        .iter()
        .position(|f| f.pts_us >= CLOCK_OFFSET_US + 1_500_000)
        .unwrap();
    let mut sent: Vec<MediaFrame> = frames[..cut].to_vec();
    for track in [V, A] {
        let mine: Vec<_> = frames[..cut].iter().filter(|f| f.track == track).collect();
        sent.extend(mine[mine.len() - 6..].iter().map(|f| (*f).clone()));
    }
    sent.extend_from_slice(&frames[cut..]);
    let dir = tempfile::tempdir().unwrap();
    let (out, stats) = record(&tracks, &sent, source_only(), dir.path());
    assert_eq!(stats.dropped, 12);
    assert_eq!(stats.jumps, 0);
    check(&frames, CLOCK_OFFSET_US, &out[0].path);
}

fn clock_jump(jump_us: i64) {
    let (tracks, frames) = read_all(testing::H264_AAC);
    let at = CLOCK_OFFSET_US + 1_500_000;
    let sent: Vec<MediaFrame> = frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.dts_us >= at {
                f.pts_us += jump_us;
                f.dts_us += jump_us;
            }
            f
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let (out, stats) = record(&tracks, &sent, source_only(), dir.path());
    assert_eq!(stats.jumps, 1, "one jump repaired");
    assert_eq!(stats.dropped, 0);
    // Repaired: the timeline is continuous, exactly as captured.
    check(&frames, CLOCK_OFFSET_US, &out[0].path);
    let d = out[0].attributes.duration_ms;
    assert!((2990..=3040).contains(&d), "duration {d}");
}

#[test]
fn the_clock_jumping_backwards_is_repaired() {
    clock_jump(-10_000_000);
}

#[test]
fn the_clock_jumping_forwards_is_repaired() {
    clock_jump(3_600_000_000);
}

#[test]
fn audio_clock_drift_follows_the_capture_timestamps() {
    // 30 s: the 3 s clip ten times over, and the phone's audio clock runs
    // 1000 ppm fast against video (30 ms by the end). Each audio packet must
    // sit at its own capture timestamp, so A/V alignment holds to the end.
    let (tracks, frames) = read_all(testing::H264_AAC);
    const PERIOD_US: i64 = 3_000_000;
    let mut sent = Vec::new();
    for lap in 0..10i64 {
        for f in frames.iter().filter(|f| {
            f.track == V || f.pts_us + i64::from(f.duration_us) <= CLOCK_OFFSET_US + PERIOD_US
        }) {
            let mut f = f.clone();
            let mut t = f.pts_us - CLOCK_OFFSET_US + lap * PERIOD_US;
            if f.track == A {
                t += t / 1000;
            }
            f.pts_us = t + CLOCK_OFFSET_US;
            f.dts_us = f.pts_us;
            f.seq += lap as u64 * 1000;
            sent.push(f);
        }
    }
    sent.sort_by_key(|f| f.dts_us);
    let dir = tempfile::tempdir().unwrap();
    let (out, stats) = record(&tracks, &sent, source_only(), dir.path());
    assert_eq!((stats.dropped, stats.jumps), (0, 0));
    check(&sent, CLOCK_OFFSET_US, &out[0].path);
    let a = packet_pts(&out[0].path, "a");
    let last = a.last().unwrap();
    assert!(*last > 29.9, "audio runs to the end: {last}");
}

#[test]
fn a_recording_longer_than_the_limit_is_refused_clearly() {
    let (tracks, frames) = read_all(testing::H264_AAC);
    let cfg = TranscoderConfig {
        max_duration_ms: 1000,
        ..source_only()
    };
    let dir = tempfile::tempdir().unwrap();
    let transcoder = sharecast_transcoder::Transcoder::new(cfg).unwrap();
    let recording = transcoder.start("long", &tracks, dir.path()).unwrap();
    let err = frames
        .iter()
        .find_map(|f| recording.push(f).err())
        .expect("refused");
    assert!(format!("{err:#}").contains("max_duration_ms"), "{err:#}");
}
