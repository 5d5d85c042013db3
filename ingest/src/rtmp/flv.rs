//! The media of an RTMP publish, I/O-free: FLV video and audio tag bodies
//! (H.264 and AAC, as Larix, OBS, ffmpeg and GStreamer send them) read
//! into decoder configurations and frames, and the tracks a session
//! declares built from the configurations.

use bytes::Bytes;
use h264_reader::avcc::AvcDecoderConfigurationRecord;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::nal::{Nal, RefNal};
use sharecast_formats::media::{Codec, TrackInfo};

/// Track id of an RTMP publish's video.
pub(crate) const VIDEO_TRACK: u8 = 0;
/// Track id of an RTMP publish's audio.
pub(crate) const AUDIO_TRACK: u8 = 1;

/// What one FLV tag body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tag {
    /// The AVCDecoderConfigurationRecord (AVC sequence header).
    VideoConfig(Vec<u8>),
    /// One H.264 access unit, length-prefixed as the configuration says.
    Video {
        /// A keyframe (IDR).
        keyframe: bool,
        /// Composition time offset (pts - dts), milliseconds.
        cts_ms: i32,
        /// The access unit.
        data: Bytes,
    },
    /// The AAC AudioSpecificConfig (AAC sequence header).
    AudioConfig(Vec<u8>),
    /// One raw AAC access unit.
    Audio(Bytes),
    /// Nothing to keep (AVC end of sequence, an empty tag, a video info
    /// frame).
    Skip,
}

/// Why a tag body cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TagError(pub(crate) String);

impl std::fmt::Display for TagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(why: impl Into<String>) -> TagError {
    TagError(why.into())
}

/// FLV codec id of H.264 (AVC) video.
const FLV_AVC: u8 = 7;
/// FLV sound format of AAC.
const FLV_AAC: u8 = 10;
/// FLV frame type of a video info/command frame (no picture).
const FLV_INFO_FRAME: u8 = 5;

/// Read a VIDEODATA tag body: `frame type (4 bits) | codec id (4 bits)`,
/// then for AVC `packet type`, a 24-bit signed composition time and the
/// sequence header or the access unit.
pub(crate) fn video_tag(body: &Bytes) -> Result<Tag, TagError> {
    let Some(&first) = body.first() else {
        return Ok(Tag::Skip);
    };
    let (frame_type, codec) = (first >> 4, first & 0x0f);
    if frame_type == FLV_INFO_FRAME {
        return Ok(Tag::Skip);
    }
    if codec != FLV_AVC {
        return Err(bad(format!(
            "video codec id {codec} is not supported over RTMP; publish H.264 (codec id 7)"
        )));
    }
    if body.len() < 5 {
        return Err(bad(format!(
            "an AVC video tag of {} bytes is shorter than its 5-byte header",
            body.len()
        )));
    }
    let cts = i32::from_be_bytes([0, body[2], body[3], body[4]]) << 8 >> 8;
    let payload = body.slice(5..);
    match body[1] {
        0 => Ok(Tag::VideoConfig(payload.to_vec())),
        1 if payload.is_empty() => Ok(Tag::Skip),
        1 => Ok(Tag::Video {
            keyframe: frame_type == 1,
            cts_ms: cts,
            data: payload,
        }),
        2 => Ok(Tag::Skip),
        t => Err(bad(format!("unknown AVC packet type {t}"))),
    }
}

/// Read an AUDIODATA tag body: `sound format (4 bits) | rate, size, type`,
/// then for AAC `packet type` and the sequence header or the access unit.
pub(crate) fn audio_tag(body: &Bytes) -> Result<Tag, TagError> {
    let Some(&first) = body.first() else {
        return Ok(Tag::Skip);
    };
    let format = first >> 4;
    if format != FLV_AAC {
        return Err(bad(format!(
            "sound format {format} is not supported over RTMP; publish AAC (sound format 10)"
        )));
    }
    match body.get(1) {
        None => Err(bad("an AAC audio tag without its packet type")),
        Some(0) => Ok(Tag::AudioConfig(body[2..].to_vec())),
        Some(1) if body.len() == 2 => Ok(Tag::Skip),
        Some(1) => Ok(Tag::Audio(body.slice(2..))),
        Some(t) => Err(bad(format!("unknown AAC packet type {t}"))),
    }
}

/// The video track an AVC sequence header describes: its picture size from
/// the first SPS; its frame rate from the publisher's metadata, else the
/// SPS's timing information, else 30 frames a second (the recording is
/// timed by the frames' timestamps either way; the rate is the nominal
/// one reported in the video's attributes).
pub(crate) fn video_track(avcc: &[u8], metadata_fps: Option<f32>) -> Result<TrackInfo, TagError> {
    let record = AvcDecoderConfigurationRecord::try_from(avcc)
        .map_err(|e| bad(format!("AVC sequence header: {e:?}")))?;
    if record.length_size_minus_one() != 3 {
        return Err(bad(format!(
            "AVC sequence header: NAL lengths of {} bytes; only 4-byte lengths are supported",
            record.length_size_minus_one() + 1
        )));
    }
    let sps_nal = record
        .sequence_parameter_sets()
        .next()
        .ok_or_else(|| bad("AVC sequence header without an SPS"))?
        .map_err(|e| bad(format!("AVC sequence header: SPS: {e:?}")))?;
    if sps_nal.is_empty() {
        return Err(bad("AVC sequence header: an empty SPS"));
    }
    let sps = SeqParameterSet::from_bits(RefNal::new(sps_nal, &[], true).rbsp_bits())
        .map_err(|e| bad(format!("AVC sequence header: SPS: {e:?}")))?;
    let (width, height) = sps
        .pixel_dimensions()
        .map_err(|e| bad(format!("AVC sequence header: picture size: {e:?}")))?;
    let fps = metadata_fps
        .map(f64::from)
        .or_else(|| sps.fps())
        .filter(|f| f.is_finite() && *f >= 1.0 && *f <= 240.0)
        .unwrap_or(30.0);
    // Rates such as 29.97 kept to the thousandth.
    let framerate = ((fps * 1000.0).round() as u32, 1000);
    Ok(TrackInfo::video(
        VIDEO_TRACK,
        Codec::H264,
        avcc.to_vec(),
        (width, height),
        framerate,
    ))
}

/// Sampling frequencies of an AudioSpecificConfig's 4-bit index.
const AAC_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The audio track an AAC sequence header (AudioSpecificConfig) describes.
pub(crate) fn audio_track(asc: &[u8]) -> Result<TrackInfo, TagError> {
    if asc.len() < 2 {
        return Err(bad(format!(
            "AAC sequence header of {} bytes; an AudioSpecificConfig has at least 2",
            asc.len()
        )));
    }
    let index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
    // Index 15 (an explicit 24-bit frequency) is not used by encoders that
    // publish over RTMP; 13 and 14 are reserved.
    let rate = *AAC_RATES.get(usize::from(index)).ok_or_else(|| {
        bad(format!(
            "AAC sequence header: sampling frequency index {index} is not supported"
        ))
    })?;
    let channels = u32::from((asc[1] >> 3) & 0x0f);
    if channels == 0 || rate == 0 {
        return Err(bad(format!(
            "AAC sequence header: {channels} channels at {rate} Hz (a channel layout in the stream is not supported)"
        )));
    }
    Ok(TrackInfo::audio(
        AUDIO_TRACK,
        Codec::Aac,
        asc.to_vec(),
        rate,
        channels,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVC sequence header of the 640x360 demo clip
    /// (`fixtures/generate.sh`: x264, High profile, level 3.0, 30 fps).
    const AVCC_640X360: &str = "0164001effe1001e6764001eacb405017fcb80b5060606a50000030001000003003c8f162ea001000468ef3cb0";

    fn avcc() -> Vec<u8> {
        hex::decode(AVCC_640X360).unwrap()
    }

    /// Found by fuzzing (fuzz/, target rtmp_flv_tag): a sequence header
    /// whose SPS is 0 bytes long panicked in the H.264 reader ("RefNal must
    /// be non-empty"), taking the publisher's task down; now it is refused.
    #[test]
    fn a_sequence_header_with_an_empty_sps_is_refused() {
        let avcc = hex::decode("0142c00affe1000007000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000099036cff6c2b40ffe15b040000035400000068cb83cb20").unwrap();
        let e = video_track(&avcc, None).unwrap_err();
        assert!(e.0.contains("empty SPS"), "{e}");
        let mut body = vec![0x17, 0x00, 0x00, 0x00, 0x00];
        body.extend_from_slice(&avcc);
        match video_tag(&Bytes::from(body)).unwrap() {
            Tag::VideoConfig(c) => assert!(video_track(&c, Some(30.0)).is_err()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sequence_header_gives_the_picture_size_and_the_metadata_rate() {
        let t = video_track(&avcc(), Some(25.0)).unwrap();
        assert_eq!((t.width, t.height), (Some(640), Some(360)));
        assert_eq!(t.framerate, Some((25000, 1000)));
        assert_eq!(t.codec, "h264");
        // Without metadata: the SPS's timing information (30 fps here).
        let t = video_track(&avcc(), None).unwrap();
        assert_eq!(t.framerate, Some((30000, 1000)));
    }

    #[test]
    fn video_tags_are_read_with_their_composition_time() {
        let mut body = vec![0x17, 0, 0, 0, 0];
        body.extend_from_slice(&avcc());
        assert_eq!(
            video_tag(&Bytes::from(body)).unwrap(),
            Tag::VideoConfig(avcc())
        );
        let frame = Bytes::from_static(&[0x27, 1, 0xff, 0xff, 0xfe, 0, 0, 0, 1, 0x41]);
        assert_eq!(
            video_tag(&frame).unwrap(),
            Tag::Video {
                keyframe: false,
                cts_ms: -2,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x41]),
            }
        );
        let end = Bytes::from_static(&[0x17, 2, 0, 0, 0]);
        assert_eq!(video_tag(&end).unwrap(), Tag::Skip);
    }

    #[test]
    fn unsupported_or_truncated_video_is_refused_with_a_reason() {
        for (body, why) in [
            (&[0x12u8, 0, 0][..], "codec id 2"),
            (&[0x17, 1, 0][..], "shorter than its 5-byte header"),
            (&[0x17, 9, 0, 0, 0, 1][..], "packet type 9"),
        ] {
            let e = video_tag(&Bytes::copy_from_slice(body)).unwrap_err();
            assert!(e.0.contains(why), "{e} should say {why}");
        }
    }

    #[test]
    fn an_audio_specific_config_gives_rate_and_channels() {
        // AAC-LC, 44.1 kHz, stereo.
        let t = audio_track(&[0x12, 0x10]).unwrap();
        assert_eq!((t.sample_rate, t.channels), (Some(44100), Some(2)));
        // AAC-LC, 48 kHz, mono.
        let t = audio_track(&[0x11, 0x88]).unwrap();
        assert_eq!((t.sample_rate, t.channels), (Some(48000), Some(1)));
        assert!(audio_track(&[0x12]).unwrap_err().0.contains("at least 2"));
        assert!(audio_track(&[0x16, 0x90])
            .unwrap_err()
            .0
            .contains("index 13"));
        assert!(audio_track(&[0x12, 0x00])
            .unwrap_err()
            .0
            .contains("0 channels"));
    }

    #[test]
    fn audio_tags_are_read() {
        let cfg = Bytes::from_static(&[0xaf, 0, 0x12, 0x10]);
        assert_eq!(audio_tag(&cfg).unwrap(), Tag::AudioConfig(vec![0x12, 0x10]));
        let au = Bytes::from_static(&[0xaf, 1, 0x21, 0x1b]);
        assert_eq!(
            audio_tag(&au).unwrap(),
            Tag::Audio(Bytes::from_static(&[0x21, 0x1b]))
        );
        assert!(audio_tag(&Bytes::from_static(&[0x2f, 1, 0]))
            .unwrap_err()
            .0
            .contains("sound format 2"));
        assert!(audio_tag(&Bytes::from_static(&[0xaf])).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 7u64;
        for len in 0..64 {
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 56) as u8
                })
                .collect();
            let b = Bytes::from(body.clone());
            let _ = video_tag(&b);
            let _ = audio_tag(&b);
            let _ = video_track(&body, None);
            let _ = audio_track(&body);
        }
    }
}
