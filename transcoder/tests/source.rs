//! Reading the fixtures frame by frame, as the phone simulator does.

use sharecast_transcoder::source::FileSource;
use sharecast_transcoder::testing::{self, fixture};

#[test]
fn every_fixture_demuxes_in_decode_order() {
    // (fixture, codecs, frames per track)
    let expected: [(&str, &[&str], &[usize]); 6] = [
        (testing::H264_AAC, &["h264", "aac"], &[90, 142]),
        (testing::PORTRAIT, &["h264", "aac"], &[90, 142]),
        (testing::H265_AAC, &["h265", "aac"], &[90, 142]),
        (testing::AUDIO_ONLY, &["aac"], &[142]),
        (testing::H264_BFRAMES, &["h264", "aac"], &[90, 142]),
        (testing::VP8_OPUS, &["vp8", "opus"], &[90, 151]),
    ];
    for (name, codecs, counts) in expected {
        let mut src = FileSource::open(&fixture(name).unwrap()).unwrap();
        let got: Vec<&str> = src.tracks.iter().map(|t| t.codec.as_str()).collect();
        assert_eq!(got, codecs, "{name}");
        let tracks = src.tracks.clone();
        let frames: Vec<_> = src.by_ref().map(|f| f.unwrap()).collect();
        assert!(
            frames.windows(2).all(|w| w[0].dts_us <= w[1].dts_us),
            "{name}: decode order"
        );
        for (t, want) in tracks.iter().zip(counts) {
            let mine: Vec<_> = frames.iter().filter(|f| f.track == t.id).collect();
            assert_eq!(mine.len(), *want, "{name}: track {}", t.id);
            assert!(mine.iter().enumerate().all(|(i, f)| f.seq == i as u64));
            assert!(mine[0].keyframe && mine[0].pts_us.abs() < 50_000);
        }
        assert!(src.next_frame().is_none(), "{name}: stays finished");
    }
}

#[test]
fn dropping_a_source_midway_stops_it() {
    for _ in 0..3 {
        let mut src = FileSource::open(&fixture(testing::H264_AAC).unwrap()).unwrap();
        assert!(src.next_frame().unwrap().is_ok());
        drop(src);
    }
}
