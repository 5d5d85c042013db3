//! Video attribute data of phone video sharing: what the server returns to
//! the phone when the outputs exist, and what share messages carry to
//! recipients.
//!
//! Sizes are in bytes, durations and offsets in milliseconds, bitrates in bits
//! per second, frame rates in frames per second.

use serde::{Deserialize, Serialize};

/// One output file (a VOD rendition) and its attributes, measured on the
/// produced file.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Rendition {
    /// Rendition name, e.g. "source" or "480p".
    pub name: String,
    /// Where the file is served (HTTP, supports Range).
    pub url: String,
    /// Container format, e.g. "mp4".
    pub container: String,
    /// MIME type, e.g. `video/mp4`.
    pub mime: String,
    /// RFC 6381 codec strings, e.g. ["avc1.64001f", "mp4a.40.2"].
    pub codecs: Vec<String>,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Width in pixels (0 for audio-only).
    pub width: u32,
    /// Height in pixels (0 for audio-only).
    pub height: u32,
    /// Display rotation, degrees clockwise (0, 90, 180, 270), from the
    /// video track's matrix: `width` x `height` is the coded picture; with
    /// 90 or 270 it is shown as `height` x `width`. 0 for audio-only. ffprobe
    /// reports the same matrix counter-clockwise: its `rotation` side data is
    /// `-rotation` (-90 for 90), see [`rotation_from_ffprobe`].
    #[serde(default)]
    pub rotation: u32,
    /// Frame rate in frames per second (0 for audio-only).
    pub frame_rate: f64,
    /// Overall bitrate in bits per second (size * 8 / duration).
    pub bitrate: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
}

/// The video attribute data of a shared video.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VideoAttributes {
    /// Asset or session id the attributes describe.
    pub id: String,
    /// Title, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Sender (device name or phone number), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Primary VOD URL (the source rendition), if a VOD exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vod_url: Option<String>,
    /// Live stream URLs (RTSP, HLS), if live.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub live_urls: Vec<String>,
    /// Share page URL, if shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share_url: Option<String>,
    /// Thumbnail (poster) URL, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
    /// Container / stream format of the primary output, e.g. "mp4".
    pub container: String,
    /// RFC 6381 codec strings of the primary output.
    pub codecs: Vec<String>,
    /// Size in bytes of the primary output.
    pub size_bytes: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Display rotation of the primary output, degrees clockwise (0, 90,
    /// 180, 270); see [`Rendition::rotation`].
    #[serde(default)]
    pub rotation: u32,
    /// Frames per second.
    pub frame_rate: f64,
    /// Bits per second.
    pub bitrate: u64,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Expiry of the share, Unix seconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix: Option<u64>,
    /// Offset to start playback at, milliseconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_offset_ms: Option<u64>,
    /// Every rendition with its own attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renditions: Vec<Rendition>,
}

impl VideoAttributes {
    /// The primary output's picture as shown: `width` x `height` turned by
    /// `rotation` (swapped for 90 and 270).
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Converts ffprobe's display-matrix `rotation` (degrees counter-clockwise,
/// for example -90 or 270 for a picture to be turned a quarter turn
/// clockwise) to Sharecast's clockwise degrees in 0..360.
pub fn rotation_from_ffprobe(degrees: i64) -> u32 {
    // -degrees modulo 360, in 0..360.
    u32::try_from((-degrees).rem_euclid(360)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::{rotation_from_ffprobe, VideoAttributes};

    #[test]
    fn display_size_turns_with_the_rotation() {
        let a = |rotation| VideoAttributes {
            width: 640,
            height: 360,
            rotation,
            ..Default::default()
        };
        assert_eq!(a(0).display_size(), (640, 360));
        assert_eq!(a(90).display_size(), (360, 640));
        assert_eq!(a(180).display_size(), (640, 360));
        assert_eq!(a(270).display_size(), (360, 640));
    }

    #[test]
    fn ffprobe_rotation_is_counter_clockwise() {
        assert_eq!(rotation_from_ffprobe(0), 0);
        assert_eq!(rotation_from_ffprobe(-90), 90);
        assert_eq!(rotation_from_ffprobe(270), 90);
        assert_eq!(rotation_from_ffprobe(180), 180);
        assert_eq!(rotation_from_ffprobe(-180), 180);
        assert_eq!(rotation_from_ffprobe(90), 270);
        assert_eq!(rotation_from_ffprobe(-270), 270);
    }
}
