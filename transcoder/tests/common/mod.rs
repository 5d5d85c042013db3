//! Helpers shared by the transcoder's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use sharecast_formats::media::{MediaFrame, TrackInfo};
use sharecast_testkit::run_ok;
use sharecast_transcoder::source::FileSource;
use sharecast_transcoder::testing::fixture;
use sharecast_transcoder::{ProducedFile, Transcoder, TranscoderConfig};

/// The phone's capture clock does not start at 0.
pub(crate) const CLOCK_OFFSET_US: i64 = 12_345_678;

/// Every frame of a fixture, capture clock shifted by [`CLOCK_OFFSET_US`].
pub(crate) fn read_all(name: &str) -> (Vec<TrackInfo>, Vec<MediaFrame>) {
    let mut src = FileSource::open(&fixture(name).unwrap()).unwrap();
    let mut frames = Vec::new();
    while let Some(f) = src.next_frame() {
        let mut f = f.unwrap();
        f.pts_us += CLOCK_OFFSET_US;
        f.dts_us += CLOCK_OFFSET_US;
        frames.push(f);
    }
    (src.tracks.clone(), frames)
}

/// Records frames (in the order given) and finishes; source rendition only
/// unless `cfg` says otherwise.
pub(crate) fn record(
    tracks: &[TrackInfo],
    frames: &[MediaFrame],
    cfg: TranscoderConfig,
    dir: &Path,
) -> (Vec<ProducedFile>, sharecast_transcoder::SyncStats) {
    let transcoder = Transcoder::new(cfg).unwrap();
    let recording = transcoder.start("test", tracks, dir).unwrap();
    for f in frames {
        recording.push(f).unwrap();
    }
    let stats = recording.sync_stats();
    (recording.finish().unwrap(), stats)
}

/// Source rendition only: faster tests.
pub(crate) fn source_only() -> TranscoderConfig {
    TranscoderConfig {
        renditions: vec![],
        ..TranscoderConfig::default()
    }
}

/// Presentation times (seconds) of one stream's packets ("v" or "a"),
/// sorted.
pub(crate) fn packet_pts(path: &Path, stream: &str) -> Vec<f64> {
    let out = run_ok(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", stream])
            .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
            .arg(path),
    );
    let mut v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Asserts two sorted time lists are equal within `tol` seconds.
pub(crate) fn assert_times(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: packet count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}: packet {i} at {g} s, expected {w} s"
        );
    }
}

/// Expected output times of one track: pts relative to `base_us`, sorted.
pub(crate) fn expected_pts(frames: &[MediaFrame], track: u8, base_us: i64) -> Vec<f64> {
    let mut v: Vec<f64> = frames
        .iter()
        .filter(|f| f.track == track)
        .map(|f| (f.pts_us - base_us) as f64 / 1e6)
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Decodes the whole file with ffmpeg; panics on any decode error.
pub(crate) fn decodes_cleanly(path: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("running ffmpeg");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg decoding {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}
