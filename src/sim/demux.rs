//! The simulated camera: a media file demuxed into encoded frames, without
//! re-encoding, in file (decode-time interleaved) order.
//!
//! The GStreamer demuxing lives in [`sharecast_transcoder::source`] so that
//! the transcoder's and live relay's tests read fixtures exactly as the
//! simulator does; this module is the simulator's view of it.
//!
//! ```text
//! let mut source = FileSource::open("clip.mp4".as_ref())?;
//! announce(&source.tracks);                  // TrackInfo per track
//! while let Some(frame) = source.next_frame() {
//!     upload(frame?);                        // MediaFrame, DTS-interleaved
//! }
//! ```
//!
//! Tracks in codecs the server does not accept are still listed (for
//! example `codec: "vp8"`), so the server gets the chance to reject them.

pub(crate) use sharecast_transcoder::source::FileSource;

#[cfg(test)]
mod tests {
    use super::FileSource;
    use sharecast_formats::media::{MediaFrame, TrackInfo};
    use sharecast_transcoder::testing::{self, fixture};

    fn read(name: &str) -> (Vec<TrackInfo>, Vec<MediaFrame>) {
        let mut src = FileSource::open(&fixture(name).unwrap()).unwrap();
        let frames: Vec<MediaFrame> = src.by_ref().map(|f| f.unwrap()).collect();
        (src.tracks.clone(), frames)
    }

    /// Invariants every source must give the uploader.
    fn check_frames(tracks: &[TrackInfo], frames: &[MediaFrame]) {
        assert!(
            frames.windows(2).all(|w| w[0].dts_us <= w[1].dts_us),
            "frames are interleaved by decode time"
        );
        for t in tracks {
            let mine: Vec<&MediaFrame> = frames.iter().filter(|f| f.track == t.id).collect();
            assert!(!mine.is_empty(), "track {} has frames", t.id);
            for (i, f) in mine.iter().enumerate() {
                assert_eq!(f.seq, i as u64, "track {} seq", t.id);
                assert!(f.pts_us >= f.dts_us, "pts before dts: {f:?}");
                assert!(!f.data.is_empty());
            }
            assert!(mine[0].keyframe, "track {} starts with a keyframe", t.id);
            assert!(
                mine[0].pts_us.abs() < 50_000,
                "starts near 0: {:?}",
                mine[0]
            );
            assert!(mine.windows(2).all(|w| w[0].dts_us <= w[1].dts_us));
        }
    }

    fn video_frames<'a>(frames: &'a [MediaFrame], track: &TrackInfo) -> Vec<&'a MediaFrame> {
        frames.iter().filter(|f| f.track == track.id).collect()
    }

    fn check_h264_aac(name: &str, codec: &str, width: u32, height: u32) -> Vec<MediaFrame> {
        let (tracks, frames) = read(name);
        check_frames(&tracks, &frames);
        assert_eq!(tracks.len(), 2);
        let (v, a) = (&tracks[0], &tracks[1]);
        assert_eq!(v.codec, codec);
        assert_eq!(v.codec_data[0], 1, "configuration record version");
        assert_eq!((v.width, v.height), (Some(width), Some(height)));
        assert_eq!(v.framerate, Some((30, 1)));
        assert_eq!(a.codec, "aac");
        assert_eq!((a.sample_rate, a.channels), (Some(48_000), Some(2)));
        assert!(a.codec_data.len() >= 2, "AudioSpecificConfig");
        let video = video_frames(&frames, v);
        assert_eq!(video.len(), 90);
        assert!(
            video.iter().filter(|f| f.keyframe).count() >= 3,
            "GOP of 30"
        );
        assert!(frames
            .iter()
            .filter(|f| f.track == a.id)
            .all(|f| f.keyframe));
        frames
    }

    #[test]
    fn h264_aac_640x360() {
        let frames = check_h264_aac(testing::H264_AAC, "h264", 640, 360);
        assert!(frames.iter().all(|f| f.pts_us == f.dts_us), "no B-frames");
    }

    #[test]
    fn portrait_720x1280() {
        check_h264_aac(testing::PORTRAIT, "h264", 720, 1280);
    }

    #[test]
    fn h265_aac() {
        check_h264_aac(testing::H265_AAC, "h265", 640, 360);
    }

    #[test]
    fn h264_bframes() {
        let frames = check_h264_aac(testing::H264_BFRAMES, "h264", 640, 360);
        assert!(
            frames.iter().any(|f| f.pts_us > f.dts_us),
            "B-frames reorder"
        );
    }

    #[test]
    fn rotation_comes_from_the_track_matrix() {
        let (tracks, frames) = read(testing::ROTATED_90);
        check_frames(&tracks, &frames);
        assert_eq!(tracks[0].codec, "h264");
        assert_eq!((tracks[0].width, tracks[0].height), (Some(640), Some(360)));
        assert_eq!(tracks[0].rotation, 90);
        assert_eq!(tracks[1].rotation, 0, "audio has no rotation");
        let (plain, _) = read(testing::H264_AAC);
        assert_eq!(plain[0].rotation, 0);
    }

    #[test]
    fn orientation_tags_map_to_rotations_and_mirrors_are_refused() {
        use sharecast_transcoder::source::rotation_from_orientation as r;
        assert_eq!(r("rotate-0"), Ok(0));
        assert_eq!(r("rotate-90"), Ok(90));
        assert_eq!(r("rotate-180"), Ok(180));
        assert_eq!(r("rotate-270"), Ok(270));
        for flip in [
            "flip-rotate-0",
            "flip-rotate-90",
            "flip-rotate-180",
            "flip-rotate-270",
        ] {
            assert!(r(flip).unwrap_err().contains("mirrored"), "{flip}");
        }
    }

    #[test]
    fn audio_only() {
        let (tracks, frames) = read(testing::AUDIO_ONLY);
        check_frames(&tracks, &frames);
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0].codec, "aac");
        assert_eq!(tracks[0].width, None);
        assert_eq!(frames.len(), 142);
    }

    #[test]
    fn unsupported_codecs_are_reported() {
        let (tracks, frames) = read(testing::VP8_OPUS);
        check_frames(&tracks, &frames);
        let codecs: Vec<&str> = tracks.iter().map(|t| t.codec.as_str()).collect();
        assert_eq!(codecs, ["vp8", "opus"]);
        assert!(tracks[1].codec_data.starts_with(b"OpusHead"));
    }

    #[test]
    fn not_a_media_file() {
        let err = FileSource::open(&testing::fixtures_dir().join("generate.sh")).unwrap_err();
        assert!(format!("{err:#}").contains("not an MP4"), "{err:#}");
        assert!(FileSource::open("/nonexistent.mp4".as_ref()).is_err());
    }
}
