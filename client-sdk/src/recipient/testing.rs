//! What the recipient's unit tests share.

use sharecast_formats::attributes::{Rendition, VideoAttributes};

/// A share of a 40 s 1080p video with one 480p rendition, a page, a VOD file
/// and an RTSP stream.
pub(crate) fn attrs() -> VideoAttributes {
    VideoAttributes {
        id: "k3v9x2".into(),
        title: Some("Beach walk".into()),
        share_url: Some("https://sc.example/s/Xy3kP9".into()),
        vod_url: Some("https://sc.example/vod/k3v9x2/source.mp4".into()),
        live_urls: vec!["rtsp://sc.example:8554/live/k3v9x2".into()],
        container: "mp4".into(),
        codecs: vec!["avc1.64001f".into(), "mp4a.40.2".into()],
        size_bytes: 30_000_000,
        width: 1920,
        height: 1080,
        frame_rate: 30.0,
        bitrate: 6_000_000,
        duration_ms: 40_000,
        renditions: vec![Rendition {
            name: "480p".into(),
            url: "https://sc.example/vod/k3v9x2/480p.mp4".into(),
            container: "mp4".into(),
            mime: "video/mp4".into(),
            codecs: vec!["avc1.4d401e".into(), "mp4a.40.2".into()],
            size_bytes: 6_000_000,
            width: 854,
            height: 480,
            frame_rate: 30.0,
            bitrate: 1_200_000,
            duration_ms: 40_000,
            ..Default::default()
        }],
        ..Default::default()
    }
}
