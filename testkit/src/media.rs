//! Looking at media with the real tools: ffprobe on files, ffmpeg's
//! decoded frames and pictures, an ffmpeg RTSP viewer.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::process::{run_ok, ChildGuard};

/// ffprobe a file: its streams (with counted frames) and its format.
pub fn ffprobe(path: &Path) -> Value {
    let out = run_ok(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-show_streams"])
            .args(["-show_format", "-of", "json"])
            .arg(path),
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

/// The first stream of `kind` (`"video"`, `"audio"`) in an [`ffprobe`]
/// answer.
pub fn stream<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    probe["streams"]
        .as_array()
        .expect("ffprobe streams")
        .iter()
        .find(|s| s["codec_type"] == kind)
}

/// A number as ffprobe writes it: a JSON number, a string, or a fraction
/// such as `"30000/1001"`.
pub fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) => {
            if let Some((a, b)) = s.split_once('/') {
                a.parse::<f64>().unwrap() / b.parse::<f64>().unwrap()
            } else {
                s.parse().unwrap()
            }
        }
        Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// The frames ffprobe decodes in each stream of a file: (video, audio).
pub fn frame_counts(path: &Path) -> (u64, u64) {
    let probe = ffprobe(path);
    let n = |kind| num(&stream(&probe, kind).expect(kind)["nb_read_frames"]) as u64;
    (n("video"), n("audio"))
}

/// The video frames ffprobe counts in a file's first video stream; 0
/// while the file cannot be read (not written yet, or cut short before its
/// first fragment).
pub fn video_frames(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or(0)
}

/// The display rotation ffprobe reads from a stream's matrix, in
/// Sharecast's clockwise degrees (ffprobe's `rotation` side data is
/// counter-clockwise: -90 for a quarter turn clockwise); 0 without a
/// display matrix.
pub fn ffprobe_rotation(stream: &Value) -> u64 {
    let ccw = stream["side_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["side_data_type"] == "Display Matrix")
        .map(|d| {
            d["rotation"]
                .as_i64()
                .expect("rotation in the display matrix")
        })
        .unwrap_or(0);
    u64::from(sharecast_formats::attributes::rotation_from_ffprobe(ccw))
}

/// The frame ffmpeg decodes at `t` seconds, as shown (ffmpeg applies a
/// display rotation).
pub fn ffmpeg_frame(file: &Path, t: f64) -> image::DynamicImage {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.png");
    run_ok(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(file)
            .args(["-ss", &format!("{t:.3}"), "-frames:v", "1"])
            .arg(&out),
    );
    image::open(&out).unwrap()
}

/// The MD5 of every decoded frame of one stream of a file (`map`: ffmpeg's
/// `-map`, e.g. `"0:v"`, `"0:a"`, `"0:v:0"`), in order.
pub fn frame_md5s(path: &Path, map: &str) -> Vec<String> {
    let out = run_ok(
        Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(path)
            .args(["-map", map, "-f", "framemd5", "-"]),
    );
    parse_framemd5(&String::from_utf8_lossy(&out.stdout))
}

/// The MD5s of ffmpeg's `framemd5` output, in order (comment lines
/// skipped).
pub fn parse_framemd5(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|m| m.trim().to_string()))
        .collect()
}

/// The mean absolute difference of two pictures of the same size, per RGB
/// channel (0: identical, 255: opposite).
pub fn mean_abs_diff(a: &image::DynamicImage, b: &image::DynamicImage) -> f64 {
    let (a, b) = (a.to_rgb8(), b.to_rgb8());
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// An ffmpeg that plays `url` over RTSP (interleaved TCP) and throws the
/// pictures away: a viewer that vanishes without TEARDOWN when killed.
pub fn spawn_rtsp_viewer(url: &str) -> ChildGuard {
    ChildGuard::new(
        Command::new("ffmpeg")
            .args(["-v", "error", "-rtsp_transport", "tcp", "-i", url])
            .args(["-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framemd5_lines_give_their_md5() {
        let text = "#format: frame checksums\n#tb 0: 1/30\n0, 0, 0, 1, 3110400, 5b1a\n0, 1, 1, 1, 3110400, 77ff\n";
        assert_eq!(parse_framemd5(text), ["5b1a", "77ff"]);
    }

    #[test]
    fn ffprobe_numbers_and_fractions() {
        assert_eq!(num(&serde_json::json!("30000/1000")), 30.0);
        assert_eq!(num(&serde_json::json!("2.5")), 2.5);
        assert_eq!(num(&serde_json::json!(7)), 7.0);
    }
}
