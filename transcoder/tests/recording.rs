//! Records the fixtures through the real pipeline and checks the produced
//! files with ffprobe.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sharecast_formats::media::MediaFrame;
use sharecast_testkit::media::{self, ffprobe, num, stream};
use sharecast_transcoder::source::FileSource;
use sharecast_transcoder::testing::{self, fixture};
use sharecast_transcoder::{probe_file, Transcoder, TranscoderConfig};

mod common;

use common::{read_all, CLOCK_OFFSET_US};

fn frame_count(v: &Value) -> u64 {
    num(&v["nb_read_frames"]) as u64
}

fn rate(v: &Value) -> f64 {
    let s = v.as_str().expect("rate string");
    let (n, d) = s.split_once('/').expect("n/d");
    let (n, d): (f64, f64) = (n.parse().unwrap(), d.parse().unwrap());
    if d == 0.0 {
        0.0
    } else {
        n / d
    }
}

fn record_and_check(name: &str) {
    let source_path = fixture(name).unwrap();
    let (tracks, frames) = read_all(name);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    Transcoder::check_tracks(&tracks).unwrap();
    let recording = transcoder.start("test", &tracks, dir.path()).unwrap();
    for f in &frames {
        recording.push(f).unwrap();
    }
    let produced = recording.finish().unwrap();
    let has_video = tracks.iter().any(|t| t.width.is_some());
    assert_eq!(produced.len(), if has_video { 2 } else { 1 }, "{name}");
    let out = &produced[0];
    assert_eq!(out.rendition, "source");
    assert_eq!(out.path, dir.path().join("source.mp4"));
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    let expected: &[&str] = if has_video {
        &["480p.mp4", "poster.jpg", "source.mp4"]
    } else {
        &["source.mp4"]
    };
    assert_eq!(left, expected, "{name}: files left in the session dir");
    for p in &produced {
        check_attributes_against_ffprobe(name, p);
    }
    if has_video {
        check_compat_rendition(name, &source_path, &produced[1]);
    }

    let want = ffprobe(&source_path);
    let got = ffprobe(&out.path);
    let attrs = &out.attributes;
    assert_eq!(attrs.name, "source");
    assert_eq!(attrs.container, "mp4");
    assert_eq!(attrs.size_bytes, num(&got["format"]["size"]) as u64, "size");
    let got_duration = num(&got["format"]["duration"]);
    assert!(
        (attrs.duration_ms as f64 - got_duration * 1000.0).abs() <= 50.0,
        "{name}: probe duration {} ms vs ffprobe {got_duration} s",
        attrs.duration_ms
    );
    assert!(
        num(&got["format"]["start_time"]).abs() < 0.001,
        "{name}: file does not start at 0: {}",
        got["format"]["start_time"]
    );
    assert_eq!(
        attrs.bitrate,
        attrs.size_bytes * 8 * 1000 / attrs.duration_ms.max(1),
        "{name}: bitrate"
    );

    match (stream(&want, "video"), stream(&got, "video")) {
        (Some(wv), Some(gv)) => {
            assert_eq!(
                frame_count(gv),
                frame_count(wv),
                "{name}: video frame count"
            );
            assert_eq!(gv["codec_name"], wv["codec_name"]);
            let fps = rate(&gv["avg_frame_rate"]);
            let one_frame = 1.0 / fps;
            let (wd, gd) = (num(&wv["duration"]), num(&gv["duration"]));
            assert!(
                (wd - gd).abs() <= one_frame + 1e-6,
                "{name}: video duration {gd} vs source {wd}"
            );
            assert_eq!(attrs.width, gv["width"].as_u64().unwrap() as u32, "width");
            assert_eq!(
                attrs.height,
                gv["height"].as_u64().unwrap() as u32,
                "height"
            );
            assert!(
                (attrs.frame_rate - fps).abs() < 0.01,
                "{name}: fps {} vs ffprobe {fps}",
                attrs.frame_rate
            );
            let prefix = if gv["codec_name"] == "hevc" {
                "hvc1."
            } else {
                "avc1."
            };
            assert!(
                attrs.codecs[0].starts_with(prefix),
                "{name}: codecs {:?}",
                attrs.codecs
            );
            assert!(attrs.mime == "video/mp4");
        }
        (None, None) => {
            assert_eq!((attrs.width, attrs.height), (0, 0));
            assert_eq!(attrs.frame_rate, 0.0);
            assert_eq!(attrs.mime, "audio/mp4");
        }
        other => panic!("{name}: video streams differ: {other:?}"),
    }

    let wa = stream(&want, "audio").expect("source audio");
    let ga = stream(&got, "audio").unwrap_or_else(|| panic!("{name}: no audio in output"));
    // Audio/video offsets are preserved.
    if let (Some(wv), Some(gv)) = (stream(&want, "video"), stream(&got, "video")) {
        let want_offset = num(&wv["start_time"]) - num(&wa["start_time"]);
        let got_offset = num(&gv["start_time"]) - num(&ga["start_time"]);
        assert!(
            (want_offset - got_offset).abs() < 0.001,
            "{name}: A/V offset {got_offset} s, source {want_offset} s"
        );
    }
    assert_eq!(ga["codec_name"], "aac");
    assert_eq!(
        frame_count(ga),
        frame_count(wa),
        "{name}: audio frame count"
    );
    assert!(
        attrs.codecs.iter().any(|c| c.starts_with("mp4a.40.")),
        "{name}: codecs {:?}",
        attrs.codecs
    );
    // probe_file on its own gives the same answer.
    let again = probe_file(&out.path).unwrap();
    assert_eq!(again.size_bytes, attrs.size_bytes);
    assert_eq!(again.codecs, attrs.codecs);
}

/// Every attribute of a produced file agrees with ffprobe.
fn check_attributes_against_ffprobe(name: &str, p: &sharecast_transcoder::ProducedFile) {
    let got = ffprobe(&p.path);
    let a = &p.attributes;
    let ctx = format!("{name}/{}", p.rendition);
    assert_eq!(a.name, p.rendition, "{ctx}");
    assert_eq!(a.container, "mp4", "{ctx}");
    assert!(
        got["format"]["format_name"]
            .as_str()
            .unwrap()
            .contains("mp4"),
        "{ctx}"
    );
    assert_eq!(
        a.size_bytes,
        num(&got["format"]["size"]) as u64,
        "{ctx}: size"
    );
    assert_eq!(a.size_bytes, std::fs::metadata(&p.path).unwrap().len());
    let d = num(&got["format"]["duration"]) * 1000.0;
    assert!(
        (a.duration_ms as f64 - d).abs() <= 25.0,
        "{ctx}: duration {} ms vs ffprobe {d} ms",
        a.duration_ms
    );
    assert_eq!(
        a.bitrate,
        a.size_bytes * 8 * 1000 / a.duration_ms.max(1),
        "{ctx}"
    );
    let ff_bitrate = num(&got["format"]["bit_rate"]);
    assert!(
        (a.bitrate as f64 - ff_bitrate).abs() / ff_bitrate < 0.02,
        "{ctx}: bitrate {} vs ffprobe {ff_bitrate}",
        a.bitrate
    );
    let mut codecs = Vec::new();
    if let Some(v) = stream(&got, "video") {
        assert_eq!(a.width as u64, v["width"].as_u64().unwrap(), "{ctx}: width");
        assert_eq!(
            a.height as u64,
            v["height"].as_u64().unwrap(),
            "{ctx}: height"
        );
        assert_eq!(
            u64::from(a.rotation),
            media::ffprobe_rotation(v),
            "{ctx}: rotation"
        );
        let fps = rate(&v["avg_frame_rate"]);
        assert!(
            (a.frame_rate - fps).abs() < 0.05,
            "{ctx}: fps {} vs {fps}",
            a.frame_rate
        );
        let level = v["level"].as_i64().unwrap();
        let expect = match v["codec_name"].as_str().unwrap() {
            "h264" => {
                let profile_idc = match v["profile"].as_str().unwrap() {
                    "Constrained Baseline" | "Baseline" => 0x42,
                    "Main" => 0x4d,
                    "High" => 0x64,
                    other => panic!("{ctx}: profile {other}"),
                };
                assert_eq!(v["codec_tag_string"], "avc1", "{ctx}");
                format!("avc1.{profile_idc:02x}")
            }
            "hevc" => {
                assert_eq!(v["codec_tag_string"], "hvc1", "{ctx}");
                "hvc1.1.".to_string()
            }
            other => panic!("{ctx}: video codec {other}"),
        };
        let c = &a.codecs[0];
        assert!(
            c.to_lowercase().starts_with(&expect),
            "{ctx}: {c} vs {expect}"
        );
        if expect.starts_with("avc1") {
            assert_eq!(
                i64::from_str_radix(&c[9..11], 16).unwrap(),
                level,
                "{ctx}: level in {c}"
            );
        } else {
            assert!(
                c.contains(&format!(".L{level}")),
                "{ctx}: level {level} in {c}"
            );
        }
        codecs.push(c.clone());
        assert_eq!(a.mime, "video/mp4");
    } else {
        assert_eq!((a.width, a.height), (0, 0), "{ctx}");
        assert_eq!(a.mime, "audio/mp4");
    }
    if let Some(au) = stream(&got, "audio") {
        match au["codec_name"].as_str().unwrap() {
            "aac" => {
                assert_eq!(au["profile"], "LC", "{ctx}");
                assert!(
                    a.codecs.contains(&"mp4a.40.2".to_string()),
                    "{ctx}: {:?}",
                    a.codecs
                );
            }
            "opus" => assert!(a.codecs.contains(&"opus".to_string()), "{ctx}"),
            other => panic!("{ctx}: audio codec {other}"),
        }
    }
    assert_eq!(
        a.codecs.len(),
        got["streams"].as_array().unwrap().len(),
        "{ctx}: one codec string per stream"
    );
}

/// The 480p compatibility rendition: H.264 Main, no B-frames, short side at
/// most 480, every frame of the source, AAC, and the A/V offset kept.
fn check_compat_rendition(name: &str, source: &Path, p: &sharecast_transcoder::ProducedFile) {
    assert_eq!(p.rendition, "480p");
    assert_eq!(p.path.file_name().unwrap(), "480p.mp4");
    let want = ffprobe(source);
    let got = ffprobe(&p.path);
    let (wv, gv) = (
        stream(&want, "video").unwrap(),
        stream(&got, "video").unwrap(),
    );
    assert_eq!(gv["codec_name"], "h264", "{name}");
    assert_eq!(gv["profile"], "Main", "{name}");
    assert_eq!(gv["has_b_frames"].as_u64(), Some(0), "{name}");
    let (sw, sh) = (
        wv["width"].as_u64().unwrap(),
        wv["height"].as_u64().unwrap(),
    );
    let (w, h) = (
        gv["width"].as_u64().unwrap(),
        gv["height"].as_u64().unwrap(),
    );
    assert_eq!(w.min(h), sw.min(sh).min(480), "{name}: short side");
    // The rendition is scaled as coded and keeps the source's display
    // rotation: players turn both the same way.
    assert_eq!(
        media::ffprobe_rotation(gv),
        media::ffprobe_rotation(wv),
        "{name}: rotation"
    );
    let aspect = |w: u64, h: u64| w as f64 / h as f64;
    assert!(
        (aspect(w, h) - aspect(sw, sh)).abs() < 0.01,
        "{name}: aspect"
    );
    assert_eq!(frame_count(gv), frame_count(wv), "{name}: frames");
    let (wa, ga) = (
        stream(&want, "audio").unwrap(),
        stream(&got, "audio").unwrap(),
    );
    assert_eq!(ga["codec_name"], "aac");
    let want_offset = num(&wv["start_time"]) - num(&wa["start_time"]);
    let got_offset = num(&gv["start_time"]) - num(&ga["start_time"]);
    assert!(
        (want_offset - got_offset).abs() < 0.002,
        "{name}: 480p A/V offset {got_offset}, source {want_offset}"
    );
}

#[test]
fn records_h264_aac() {
    record_and_check(testing::H264_AAC);
}

#[test]
fn records_a_rotated_clip_with_its_rotation_in_every_rendition() {
    record_and_check(testing::ROTATED_90);
    // The same frames, announced with each rotation: every output carries
    // the rotation announced (not the one in the fixture file).
    let (tracks, frames) = read_all(testing::ROTATED_90);
    assert_eq!(tracks[0].rotation, 90, "demuxed from the fixture's matrix");
    for rotation in [0, 180, 270] {
        let mut tracks = tracks.clone();
        tracks[0].rotation = rotation;
        let dir = tempfile::tempdir().unwrap();
        let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
        let recording = transcoder.start("rot", &tracks, dir.path()).unwrap();
        for f in &frames {
            recording.push(f).unwrap();
        }
        let produced = recording.finish().unwrap();
        assert_eq!(produced.len(), 2);
        for p in &produced {
            assert_eq!(p.attributes.rotation, rotation, "{}", p.rendition);
            assert_eq!((p.attributes.width, p.attributes.height), (640, 360));
            check_attributes_against_ffprobe(&format!("rotation {rotation}"), p);
        }
    }
}

#[test]
fn records_portrait() {
    record_and_check(testing::PORTRAIT);
}

#[test]
fn records_h265_aac() {
    record_and_check(testing::H265_AAC);
}

#[test]
fn records_audio_only() {
    record_and_check(testing::AUDIO_ONLY);
}

#[test]
fn records_h264_with_bframes() {
    record_and_check(testing::H264_BFRAMES);
}

#[test]
fn rejects_unsupported_codecs() {
    let src = FileSource::open(&fixture(testing::VP8_OPUS).unwrap()).unwrap();
    assert_eq!(src.tracks[0].codec, "vp8");
    let err = Transcoder::check_tracks(&src.tracks).unwrap_err();
    assert!(err.contains("unsupported codec \"vp8\""), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let err = transcoder
        .start("bad", &src.tracks, dir.path())
        .unwrap_err();
    assert!(format!("{err:#}").contains("vp8"), "{err:#}");
}

#[test]
fn push_rejects_unknown_track_and_garbage_does_not_panic() {
    let (tracks, frames) = read_all(testing::H264_AAC);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("garbage", &tracks, dir.path()).unwrap();
    let mut bad = frames[0].clone();
    bad.track = 9;
    assert!(recording.push(&bad).is_err());
    // Garbage payloads: the pipeline may fail, but nothing panics and the
    // failure surfaces as an error.
    for (i, f) in frames.iter().take(60).enumerate() {
        let mut f = f.clone();
        if f.track == 0 {
            f.data = bytes::Bytes::from(vec![0xff; 50 + i]);
        }
        if recording.push(&f).is_err() {
            break;
        }
    }
    let _ = recording.finish();
}

#[test]
fn aborted_recording_is_playable_up_to_the_last_fragment() {
    let (tracks, frames) = read_all(testing::H264_AAC);
    let dir = tempfile::tempdir().unwrap();
    let cfg = TranscoderConfig {
        fragment_duration_ms: 500,
        ..TranscoderConfig::default()
    };
    let transcoder = Transcoder::new(cfg).unwrap();
    let recording = transcoder.start("crash", &tracks, dir.path()).unwrap();
    // Two seconds of media, then the server "crashes".
    let cut = CLOCK_OFFSET_US + 2_000_000;
    for f in frames.iter().filter(|f| f.dts_us < cut) {
        recording.push(f).unwrap();
    }
    let path = recording.path().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(&path)
            .output()
            .unwrap();
        let n: u64 = String::from_utf8_lossy(&probe.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        if n >= 30 {
            break;
        }
        assert!(Instant::now() < deadline, "no complete fragment on disk");
        std::thread::sleep(Duration::from_millis(100));
    }
    recording.abort();
    let probe = ffprobe(&path);
    let v = stream(&probe, "video").expect("video after abort");
    assert!(frame_count(v) >= 30, "{v}");
}

#[test]
fn keeps_a_late_track_start_offset() {
    // The phone's audio encoder started 320 ms after the camera.
    let (tracks, frames) = read_all(testing::H264_AAC);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("late", &tracks, dir.path()).unwrap();
    for f in frames
        .iter()
        .filter(|f| !(f.track == 1 && f.pts_us < CLOCK_OFFSET_US + 300_000))
    {
        recording.push(f).unwrap();
    }
    let out = recording.finish().unwrap();
    let probe = ffprobe(&out[0].path);
    let v = stream(&probe, "video").unwrap();
    let a = stream(&probe, "audio").unwrap();
    assert!(num(&v["start_time"]).abs() < 0.001, "{v}");
    assert!((num(&a["start_time"]) - 0.32).abs() < 0.001, "{a}");
    assert_eq!(frame_count(v), 90);
}

#[test]
fn records_opus_audio() {
    let (tracks, frames) = read_all(testing::VP8_OPUS);
    let opus: Vec<_> = tracks
        .iter()
        .filter(|t| t.codec == "opus")
        .cloned()
        .collect();
    assert_eq!(opus.len(), 1);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("opus", &opus, dir.path()).unwrap();
    let mut n = 0;
    for f in frames.iter().filter(|f| f.track == opus[0].id) {
        recording.push(f).unwrap();
        n += 1;
    }
    let out = recording.finish().unwrap();
    let probe = ffprobe(&out[0].path);
    let a = stream(&probe, "audio").unwrap();
    assert_eq!(a["codec_name"], "opus");
    // Packets, not decoded frames: ffmpeg drops the first ~0.3 s of Opus in
    // any mp4mux 1.22 file (the same happens with gst-launch-1.0).
    assert_eq!(num(&a["nb_frames"]) as u64, n);
    assert_eq!(out[0].attributes.codecs, vec!["opus".to_string()]);
}

#[test]
fn a_declared_track_that_never_sends_frames() {
    // The phone announced audio but the microphone never delivered.
    let (tracks, frames) = read_all(testing::H264_AAC);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("mute", &tracks, dir.path()).unwrap();
    for f in frames.iter().filter(|f| f.track == 0) {
        recording.push(f).unwrap();
    }
    let out = recording.finish().unwrap();
    let probe = ffprobe(&out[0].path);
    assert_eq!(frame_count(stream(&probe, "video").unwrap()), 90);
    assert_eq!(out[0].attributes.width, 640);
}

#[test]
fn finishing_without_frames_is_an_error_not_a_panic() {
    let (tracks, _) = read_all(testing::H264_AAC);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("empty", &tracks, dir.path()).unwrap();
    assert!(recording.finish().is_err());
}

#[test]
fn recordings_and_frames_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<sharecast_transcoder::Recording>();
    fn frame_sink<T: sharecast_formats::media::FrameSink>() {}
    frame_sink::<sharecast_transcoder::Recording>();
}

#[test]
fn opus_is_kept_in_the_source_and_transcoded_to_aac_for_480p() {
    // A phone sending H.264 + Opus: video from one clip, Opus from another.
    let (vtracks, vframes) = read_all(testing::H264_AAC);
    let (otracks, oframes) = read_all(testing::VP8_OPUS);
    let opus = otracks.iter().find(|t| t.codec == "opus").unwrap();
    let mut opus_track = opus.clone();
    opus_track.id = 5;
    let tracks = vec![vtracks[0].clone(), opus_track];
    let mut frames: Vec<MediaFrame> = vframes.into_iter().filter(|f| f.track == 0).collect();
    frames.extend(
        oframes
            .into_iter()
            .filter(|f| f.track == opus.id)
            .map(|mut f| {
                f.track = 5;
                f
            }),
    );
    frames.sort_by_key(|f| f.dts_us);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("opus", &tracks, dir.path()).unwrap();
    for f in &frames {
        recording.push(f).unwrap();
    }
    let out = recording.finish().unwrap();
    assert_eq!(out.len(), 2);
    let source = ffprobe(&out[0].path);
    assert_eq!(stream(&source, "audio").unwrap()["codec_name"], "opus");
    assert_eq!(stream(&source, "video").unwrap()["codec_name"], "h264");
    assert!(out[0].attributes.codecs.contains(&"opus".to_string()));
    let compat = ffprobe(&out[1].path);
    let a = stream(&compat, "audio").unwrap();
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["profile"], "LC");
    assert!(num(&a["duration"]) > 2.5, "{a}");
    assert_eq!(frame_count(stream(&compat, "video").unwrap()), 90);
    check_attributes_against_ffprobe("h264+opus", &out[1]);
}

#[test]
fn short_recordings_carry_no_reserved_index_room() {
    // The source file is about the size of the media: the index room
    // reserved for an hour (MBs) is removed at finish.
    let src = fixture(testing::H264_AAC).unwrap();
    let (tracks, frames) = read_all(testing::H264_AAC);
    let dir = tempfile::tempdir().unwrap();
    let cfg = TranscoderConfig {
        renditions: vec![],
        ..TranscoderConfig::default()
    };
    let transcoder = Transcoder::new(cfg.clone()).unwrap();
    let recording = transcoder.start("small", &tracks, dir.path()).unwrap();
    for f in &frames {
        recording.push(f).unwrap();
    }
    let out = recording.finish().unwrap();
    let size = out[0].attributes.size_bytes;
    let media = std::fs::metadata(&src).unwrap().len();
    assert!(size < media + 64 * 1024, "{size} bytes vs {media} of media");
    // Without compaction the room is there (and the file still plays).
    let dir2 = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig {
        compact_max_bytes: 0,
        ..cfg
    })
    .unwrap();
    let recording = transcoder.start("big", &tracks, dir2.path()).unwrap();
    for f in &frames {
        recording.push(f).unwrap();
    }
    let out2 = recording.finish().unwrap();
    assert!(out2[0].attributes.size_bytes > size + 4_000_000);
    let (a, b) = (ffprobe(&out[0].path), ffprobe(&out2[0].path));
    for kind in ["video", "audio"] {
        assert_eq!(
            frame_count(stream(&a, kind).unwrap()),
            frame_count(stream(&b, kind).unwrap())
        );
    }
}

#[test]
fn the_source_is_ready_before_the_renditions_and_nothing_is_dropped() {
    // All frames arrive at once (far faster than real time), so the 480p
    // encoder is behind when the phone stops: the source is served first,
    // the rendition follows with every frame.
    let (tracks, frames) = read_all(testing::PORTRAIT);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("split", &tracks, dir.path()).unwrap();
    for f in &frames {
        recording.push(f).unwrap();
    }
    let finished = recording.finish_source().unwrap();
    assert_eq!(finished.source.len(), 1);
    assert_eq!(finished.source[0].rendition, "source");
    assert_eq!(finished.renditions.names(), ["480p"]);
    let probe = ffprobe(&finished.source[0].path);
    assert_eq!(frame_count(stream(&probe, "video").unwrap()), 90);
    assert!(dir.path().join("poster.jpg").is_file());
    let rest = finished.renditions.wait();
    assert_eq!(rest.len(), 1);
    let probe = ffprobe(&rest[0].path);
    let v = stream(&probe, "video").unwrap();
    assert_eq!(frame_count(v), 90);
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(480), Some(854))
    );
}

/// The 480p rendition's encoded output reaches a tap while it is encoded:
/// every video frame once, scaled, with tracks described from the encoder's
/// output and timestamps counted from the recording's start.
#[test]
fn rendition_output_is_tapped_while_encoding() {
    use sharecast_formats::media::{FrameSink, TrackInfo};
    use std::sync::{Arc, Mutex};

    struct Collect(Arc<Mutex<Vec<MediaFrame>>>);
    impl FrameSink for Collect {
        fn push(&self, frame: &MediaFrame) {
            self.0.lock().unwrap().push(frame.clone());
        }
    }
    let (tracks, frames) = read_all(testing::PORTRAIT);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig::default()).unwrap();
    let recording = transcoder.start("tap", &tracks, dir.path()).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    type Started = Vec<(String, Vec<TrackInfo>, i64)>;
    let seen: Arc<Mutex<Started>> = Arc::default();
    {
        let (got, seen) = (got.clone(), seen.clone());
        recording.tap_renditions(Arc::new(move |name, tracks, base| {
            seen.lock()
                .unwrap()
                .push((name.to_string(), tracks.to_vec(), base));
            Some(Box::new(Collect(got.clone())) as Box<dyn FrameSink>)
        }));
    }
    for f in &frames {
        recording.push(f).unwrap();
    }
    let produced = recording.finish().unwrap();
    assert_eq!(produced.len(), 2);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "one rendition started once");
    let (name, tracks, base) = &seen[0];
    assert_eq!(name, "480p");
    assert_eq!(
        *base, CLOCK_OFFSET_US,
        "capture time of the recording start"
    );
    let video = tracks
        .iter()
        .find(|t| t.codec == "h264")
        .expect("video track");
    assert_eq!((video.width, video.height), (Some(480), Some(854)));
    assert!(!video.codec_data.is_empty());
    assert!(tracks.iter().any(|t| t.codec == "aac"));
    let got = got.lock().unwrap();
    let video_frames: Vec<&MediaFrame> = got.iter().filter(|f| f.track == video.id).collect();
    let source_video = frames.iter().filter(|f| f.track == video.id).count();
    assert_eq!(video_frames.len(), source_video, "every frame, once");
    assert!(video_frames[0].keyframe);
    assert_eq!(video_frames[0].pts_us, 0);
    assert!(video_frames.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

/// Records a fixture with no ladder (source only) and returns the session
/// dir holding `source.mp4`.
fn record_source_only(name: &str) -> tempfile::TempDir {
    let (tracks, frames) = read_all(name);
    let dir = tempfile::tempdir().unwrap();
    let transcoder = Transcoder::new(TranscoderConfig {
        renditions: Vec::new(),
        ..TranscoderConfig::default()
    })
    .unwrap();
    let recording = transcoder.start("od", &tracks, dir.path()).unwrap();
    for f in &frames {
        recording.push(f).unwrap();
    }
    let produced = recording.finish().unwrap();
    assert_eq!(produced.len(), 1, "{name}: source only");
    dir
}

#[test]
fn transcodes_a_finished_recording_on_demand_like_the_ladder() {
    for name in [testing::H265_AAC, testing::PORTRAIT, testing::ROTATED_90] {
        let dir = record_source_only(name);
        let source = dir.path().join("source.mp4");
        let progress = std::sync::Mutex::new(Vec::new());
        let p = sharecast_transcoder::ladder::transcode_file(
            &source,
            &sharecast_transcoder::RenditionSpec::compat_480p(),
            dir.path(),
            Duration::from_secs(120),
            &|done, total| progress.lock().unwrap().push((done, total)),
        )
        .unwrap();
        // Progress ends with the whole encoded; what came before never
        // went past the whole.
        let progress = progress.into_inner().unwrap();
        let &(done, total) = progress.last().expect("progress reported");
        assert_eq!(done, total, "{name}: {progress:?}");
        let duration_ms = p.attributes.duration_ms;
        assert!(
            total.abs_diff(duration_ms) <= duration_ms / 10 + 100,
            "{name}: {total} ms of {duration_ms}"
        );
        assert!(
            progress.iter().all(|(d, t)| d <= t || *t == 0),
            "{name}: {progress:?}"
        );
        assert_eq!(p.path, dir.path().join("480p.mp4"), "{name}");
        assert_eq!(p.attributes.name, "480p");
        // The same checks as the ladder's rendition made while uploading:
        // H.264 main, short side, aspect, rotation, every frame, A/V offset.
        check_compat_rendition(name, &source, &p);
        check_attributes_against_ffprobe(name, &p);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["480p.mp4", "poster.jpg", "source.mp4"], "{name}");
    }
}

#[test]
fn an_on_demand_transcode_of_a_bad_input_fails_and_leaves_no_file() {
    let spec = sharecast_transcoder::RenditionSpec::compat_480p();
    let timeout = Duration::from_secs(60);
    // No video to transcode.
    let dir = record_source_only(testing::AUDIO_ONLY);
    let e = sharecast_transcoder::ladder::transcode_file(
        &dir.path().join("source.mp4"),
        &spec,
        dir.path(),
        timeout,
        &|_, _| {},
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("no video track"), "{e:#}");
    // Not a media file, and a missing one.
    let bad = dir.path().join("bad.mp4");
    std::fs::write(&bad, b"not an mp4 at all").unwrap();
    for input in [bad.clone(), dir.path().join("missing.mp4")] {
        let e = sharecast_transcoder::ladder::transcode_file(
            &input,
            &spec,
            dir.path(),
            timeout,
            &|_, _| {},
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains(&input.display().to_string()),
            "{e:#}"
        );
    }
    assert!(!dir.path().join("480p.mp4").exists());
    assert!(!dir.path().join(".480p.mp4.part").exists());
}
