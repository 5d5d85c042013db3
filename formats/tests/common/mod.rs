//! What several of the formats crate's tests share.

use sharecast_formats::attributes::VideoAttributes;

/// The attributes of a typical share.
pub(crate) fn typical() -> VideoAttributes {
    VideoAttributes {
        id: "k3v9x2".into(),
        share_url: Some("https://share.sharecast.example/s/Xy3kP9qLm2Va".into()),
        vod_url: Some("https://share.sharecast.example/vod/k3v9x2/source.mp4".into()),
        container: "mp4".into(),
        codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
        size_bytes: 12_582_912,
        width: 1280,
        height: 720,
        frame_rate: 29.97,
        bitrate: 2_500_000,
        duration_ms: 40_250,
        ..Default::default()
    }
}
