//! Tracks and encoded media frames.
//!
//! **Timestamp unit**: every timestamp in Sharecast is a signed 64-bit count of
//! **microseconds** on the source phone's capture clock. `pts_us` is the
//! presentation (capture) time, `dts_us` the decode time (they differ only for
//! video with B-frames). The session's `anchor_unix_us` maps capture time 0 to
//! wall-clock time (Unix epoch microseconds) so capture-to-display delay can be
//! computed.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Codec of an encoded elementary stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// H.264 / AVC, access units in AVC (length-prefixed) form; `codec_data`
    /// is the AVCDecoderConfigurationRecord.
    H264,
    /// H.265 / HEVC, access units in HVC1 (length-prefixed) form; `codec_data`
    /// is the HEVCDecoderConfigurationRecord.
    H265,
    /// AAC raw access units; `codec_data` is the AudioSpecificConfig.
    Aac,
    /// Opus packets; `codec_data` is the OpusHead (may be empty).
    Opus,
}

impl Codec {
    /// Whether this codec carries video.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265)
    }

    /// Stable lowercase name used on the wire and in config.
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
        }
    }

    /// Parse a wire name; `None` for an unknown codec.
    pub fn parse(s: &str) -> Option<Codec> {
        match s {
            "h264" => Some(Codec::H264),
            "h265" => Some(Codec::H265),
            "aac" => Some(Codec::Aac),
            "opus" => Some(Codec::Opus),
            _ => None,
        }
    }
}

/// Description of one track of a session, sent by the phone at session start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackInfo {
    /// Track id, unique within the session (0..=15).
    pub id: u8,
    /// Codec name as on the wire ("h264", "h265", "aac", "opus"). Kept as a
    /// string so that an unknown codec can be rejected with a clear error
    /// instead of failing to parse.
    pub codec: String,
    /// Codec configuration record, hex encoded on the wire.
    #[serde(with = "hex_bytes", default)]
    pub codec_data: Vec<u8>,
    /// Video width in pixels (video tracks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Video height in pixels (video tracks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Nominal frame rate as a fraction (num, den), video tracks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framerate: Option<(u32, u32)>,
    /// Audio sample rate in Hz (audio tracks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Audio channel count (audio tracks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    /// Display rotation of a video track, degrees **clockwise**: the coded
    /// picture (`width` x `height`, as the sensor delivers it) must be
    /// rotated by this much to be shown upright. One of 0, 90, 180, 270;
    /// anything else is refused by the server. Optional on
    /// the wire (protocol v1): absent means 0, and 0 is not sent.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rotation: u32,
}

/// The display rotations a track may declare, degrees clockwise.
pub(crate) const ROTATIONS: [u32; 4] = [0, 90, 180, 270];

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl TrackInfo {
    /// A video track of `codec` described by `codec_data`: `width` x
    /// `height` pixels at `framerate` (num, den), not rotated.
    pub fn video(
        id: u8,
        codec: Codec,
        codec_data: Vec<u8>,
        (width, height): (u32, u32),
        framerate: (u32, u32),
    ) -> TrackInfo {
        TrackInfo {
            width: Some(width),
            height: Some(height),
            framerate: Some(framerate),
            ..TrackInfo::bare(id, codec, codec_data)
        }
    }

    /// An audio track of `codec` described by `codec_data`: `sample_rate`
    /// Hz, `channels` channels.
    pub fn audio(
        id: u8,
        codec: Codec,
        codec_data: Vec<u8>,
        sample_rate: u32,
        channels: u32,
    ) -> TrackInfo {
        TrackInfo {
            sample_rate: Some(sample_rate),
            channels: Some(channels),
            ..TrackInfo::bare(id, codec, codec_data)
        }
    }

    fn bare(id: u8, codec: Codec, codec_data: Vec<u8>) -> TrackInfo {
        TrackInfo {
            id,
            codec: codec.as_str().into(),
            codec_data,
            width: None,
            height: None,
            framerate: None,
            sample_rate: None,
            channels: None,
            rotation: 0,
        }
    }

    /// The parsed codec, if known.
    pub fn codec(&self) -> Option<Codec> {
        Codec::parse(&self.codec)
    }

    /// Checks the declared display rotation: `Err` with a message fit for
    /// the phone and the log unless it is 0, 90, 180 or 270.
    pub fn check_rotation(&self) -> Result<(), String> {
        if ROTATIONS.contains(&self.rotation) {
            Ok(())
        } else {
            Err(format!(
                "track {}: rotation {} is not one of 0, 90, 180, 270 (degrees clockwise)",
                self.id, self.rotation
            ))
        }
    }
}

/// One encoded frame (a video access unit or an audio packet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// Track this frame belongs to.
    pub track: u8,
    /// Per-track sequence number, starting at 0, without gaps.
    pub seq: u64,
    /// Presentation (capture) timestamp, microseconds.
    pub pts_us: i64,
    /// Decode timestamp, microseconds (equal to `pts_us` without B-frames).
    pub dts_us: i64,
    /// Duration in microseconds, 0 if unknown.
    pub duration_us: u32,
    /// Whether decoding can start at this frame (always true for audio).
    pub keyframe: bool,
    /// The encoded bytes.
    pub data: Bytes,
}

/// Something that accepts a session's frames in order, for example a VOD
/// muxer or a live publisher.
pub trait FrameSink: Send + Sync {
    /// Push one frame. Frames of a track arrive in sequence order.
    fn push(&self, frame: &MediaFrame);
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
