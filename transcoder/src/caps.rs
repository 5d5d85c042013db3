//! From a phone's [`TrackInfo`] to GStreamer caps, and the checks that decide
//! whether a session's tracks can be muxed at all.

use anyhow::{anyhow, bail};
use gstreamer as gst;
use gstreamer_pbutils as gst_pbutils;
use sharecast_formats::media::{Codec, TrackInfo};

/// Checks that every track can be muxed: a supported codec, the codec
/// configuration record it needs, and dimensions for video. The error is a
/// message fit for the phone and the log.
pub fn check_tracks(tracks: &[TrackInfo]) -> Result<(), String> {
    if tracks.is_empty() {
        return Err("the session has no tracks".into());
    }
    for (i, t) in tracks.iter().enumerate() {
        if tracks[..i].iter().any(|o| o.id == t.id) {
            return Err(format!("track id {} is used more than once", t.id));
        }
        check_track(t)?;
    }
    Ok(())
}

/// A codec that cannot be set up without its configuration `record`: the
/// track's `codec_data` must be there, and `valid` (shaped like the record).
fn needs_config(id: u8, codec: Codec, cd: &[u8], record: &str, valid: bool) -> Result<(), String> {
    let name = codec.as_str();
    if cd.is_empty() {
        return Err(format!(
            "track {id} ({name}): missing codec_data ({record})"
        ));
    }
    if !valid {
        return Err(format!(
            "track {id} ({name}): codec_data is not an {record}"
        ));
    }
    Ok(())
}

fn check_track(t: &TrackInfo) -> Result<(), String> {
    let id = t.id;
    t.check_rotation()?;
    let Some(codec) = t.codec() else {
        return Err(format!(
            "track {id}: unsupported codec {:?} (supported: h264, h265, aac, opus)",
            t.codec
        ));
    };
    let cd = &t.codec_data;
    match codec {
        Codec::H264 => {
            let valid = cd.len() >= 7 && cd[0] == 1;
            needs_config(id, codec, cd, "AVCDecoderConfigurationRecord", valid)?
        }
        Codec::H265 => {
            let valid = cd.len() >= 23 && cd[0] == 1;
            needs_config(id, codec, cd, "HEVCDecoderConfigurationRecord", valid)?
        }
        Codec::Aac => {
            let valid = cd.len() >= 2 && cd[0] >> 3 != 0;
            needs_config(id, codec, cd, "AudioSpecificConfig", valid)?
        }
        Codec::Opus => {
            if !cd.is_empty() && !cd.starts_with(b"OpusHead") {
                return Err(format!("track {id} (opus): codec_data is not an OpusHead"));
            }
            if cd.is_empty() && t.channels.unwrap_or(2) > 2 {
                return Err(format!(
                    "track {id} (opus): more than 2 channels needs codec_data (OpusHead)"
                ));
            }
        }
    }
    if codec.is_video() {
        match (t.width, t.height) {
            (Some(w), Some(h)) if w > 0 && h > 0 => {}
            _ => {
                return Err(format!(
                    "track {id} ({}): missing width/height",
                    codec.as_str()
                ))
            }
        }
        if let Some((n, d)) = t.framerate {
            if n == 0 || d == 0 {
                return Err(format!("track {id}: invalid frame rate {n}/{d}"));
            }
        }
    }
    Ok(())
}

fn int(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Caps for an appsrc carrying this track's frames, as they come from the
/// phone: length-prefixed access units (avc / hvc1) with the codec
/// configuration record, raw AAC with its AudioSpecificConfig, Opus packets.
pub fn caps_for_track(t: &TrackInfo) -> anyhow::Result<gst::Caps> {
    check_track(t).map_err(|e| anyhow!(e))?;
    let codec = t
        .codec()
        .ok_or_else(|| anyhow!("track {}: unsupported codec {:?}", t.id, t.codec))?;
    let codec_data = || gst::Buffer::from_slice(t.codec_data.clone());
    let caps = match codec {
        Codec::H264 | Codec::H265 => {
            let (name, format) = if codec == Codec::H264 {
                ("video/x-h264", "avc")
            } else {
                ("video/x-h265", "hvc1")
            };
            let mut b = gst::Caps::builder(name)
                .field("stream-format", format)
                .field("alignment", "au")
                .field("codec_data", codec_data());
            if let (Some(w), Some(h)) = (t.width, t.height) {
                b = b.field("width", int(w)).field("height", int(h));
            }
            if let Some((n, d)) = t.framerate {
                b = b.field("framerate", gst::Fraction::new(int(n), int(d)));
            }
            b.build()
        }
        Codec::Aac => {
            let mut b = gst::Caps::builder("audio/mpeg")
                .field("mpegversion", 4i32)
                .field("stream-format", "raw")
                .field("codec_data", codec_data());
            if let Some(rate) = t.sample_rate {
                b = b.field("rate", int(rate));
            }
            if let Some(ch) = t.channels {
                b = b.field("channels", int(ch));
            }
            b.build()
        }
        Codec::Opus => {
            if t.codec_data.is_empty() {
                gst::Caps::builder("audio/x-opus")
                    .field("channel-mapping-family", 0i32)
                    .field("rate", int(t.sample_rate.unwrap_or(48_000)))
                    .field("channels", int(t.channels.unwrap_or(2)))
                    .build()
            } else {
                let header = codec_data();
                gst_pbutils::codec_utils_opus_create_caps_from_header(&header, None).map_err(
                    |e| anyhow!("track {} (opus): bad OpusHead in codec_data: {e}", t.id),
                )?
            }
        }
    };
    if !caps.is_fixed() {
        bail!("track {}: could not build fixed caps ({caps})", t.id);
    }
    Ok(caps)
}

/// The parser element that goes between a track's appsrc and a muxer or
/// payloader.
pub fn parser_for_track(t: &TrackInfo) -> anyhow::Result<&'static str> {
    Ok(match t.codec() {
        Some(Codec::H264) => "h264parse",
        Some(Codec::H265) => "h265parse",
        Some(Codec::Aac) => "aacparse",
        Some(Codec::Opus) => "opusparse",
        None => bail!("track {}: unsupported codec {:?}", t.id, t.codec),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h264() -> TrackInfo {
        let avcc = vec![1, 0x64, 0, 0x1e, 0xff, 0xe1, 0];
        TrackInfo::video(0, Codec::H264, avcc, (640, 360), (30, 1))
    }

    fn aac() -> TrackInfo {
        TrackInfo::audio(1, Codec::Aac, vec![0x11, 0x90], 48_000, 2)
    }

    #[test]
    fn accepts_h264_and_aac() {
        assert_eq!(check_tracks(&[h264(), aac()]), Ok(()));
    }

    #[test]
    fn rejects_unsupported_codec_by_name() {
        let mut t = h264();
        t.codec = "vp8".into();
        let err = check_tracks(&[t]).unwrap_err();
        assert!(err.contains("unsupported codec \"vp8\""), "{err}");
    }

    #[test]
    fn rejects_missing_codec_data_and_dimensions() {
        let mut t = h264();
        t.codec_data.clear();
        assert!(check_tracks(&[t])
            .unwrap_err()
            .contains("missing codec_data"));
        let mut t = h264();
        t.height = None;
        assert!(check_tracks(&[t])
            .unwrap_err()
            .contains("missing width/height"));
        let mut a = aac();
        a.codec_data.clear();
        assert!(check_tracks(&[a])
            .unwrap_err()
            .contains("AudioSpecificConfig"));
    }

    #[test]
    fn says_which_configuration_record_is_missing_or_malformed() {
        let h265 = || TrackInfo {
            codec: "h265".into(),
            ..h264()
        };
        for (track, record) in [
            (h264(), "AVCDecoderConfigurationRecord"),
            (h265(), "HEVCDecoderConfigurationRecord"),
            (aac(), "AudioSpecificConfig"),
        ] {
            let (id, name) = (track.id, track.codec.clone());
            let missing = TrackInfo {
                codec_data: Vec::new(),
                ..track.clone()
            };
            assert_eq!(
                check_tracks(&[missing]),
                Err(format!(
                    "track {id} ({name}): missing codec_data ({record})"
                ))
            );
            let malformed = TrackInfo {
                codec_data: vec![0],
                ..track
            };
            assert_eq!(
                check_tracks(&[malformed]),
                Err(format!(
                    "track {id} ({name}): codec_data is not an {record}"
                ))
            );
        }
    }

    #[test]
    fn accepts_right_angle_rotations_only() {
        for r in [0, 90, 180, 270] {
            let t = TrackInfo {
                rotation: r,
                ..h264()
            };
            assert_eq!(check_tracks(&[t]), Ok(()));
        }
        let t = TrackInfo {
            rotation: 45,
            ..h264()
        };
        assert!(check_tracks(&[t]).unwrap_err().contains("rotation 45"));
    }

    #[test]
    fn rejects_empty_and_duplicate_tracks() {
        assert!(check_tracks(&[]).is_err());
        let mut a = aac();
        a.id = 0;
        assert!(check_tracks(&[h264(), a])
            .unwrap_err()
            .contains("more than once"));
    }

    #[test]
    fn builds_fixed_caps() {
        gst::init().unwrap();
        let caps = caps_for_track(&h264()).unwrap();
        let s = caps.structure(0).unwrap();
        assert_eq!(s.name(), "video/x-h264");
        assert_eq!(s.get::<&str>("stream-format").unwrap(), "avc");
        let caps = caps_for_track(&aac()).unwrap();
        assert_eq!(
            caps.structure(0).unwrap().get::<i32>("rate").unwrap(),
            48_000
        );
        let opus = TrackInfo {
            codec: "opus".into(),
            codec_data: vec![],
            ..aac()
        };
        assert!(caps_for_track(&opus).unwrap().is_fixed());
    }
}
