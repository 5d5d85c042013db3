//! Recordings over RTSP, seekable: `rtsp://HOST:PORT/vod/{id}` plays an
//! asset's recorded file through gst-rtsp-server with one pipeline per
//! client (`filesrc ! qtdemux ! parser ! payloader` per track, not shared),
//! so a client's `PLAY` with `Range: npt=<pos>-` starts there: the server
//! seeks that client's media to the range. Resuming a bookmark over RTSP
//! uses it (`docs/resume.md`).

use std::path::Path;

use anyhow::{bail, Context, Result};
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;

/// The RTSP mount path of a recording.
fn vod_mount_path(id: &str) -> String {
    format!("/vod/{id}")
}

/// The media launch line for a file whose tracks have these RFC 6381 codecs.
pub(crate) fn launch(file: &Path, codecs: &[String]) -> Result<String> {
    let location = file
        .to_str()
        .filter(|l| !l.contains(['"', '\\']))
        .with_context(|| format!("{} is not usable in a launch line", file.display()))?;
    let mut line = format!("( filesrc location=\"{location}\" ! qtdemux name=d");
    let (mut video, mut audio) = (0, 0);
    for (i, codec) in codecs.iter().enumerate() {
        let c = codec.as_str();
        let (pad, chain) = if c.starts_with("avc1") || c.starts_with("avc3") {
            video += 1;
            (
                format!("video_{}", video - 1),
                "h264parse ! rtph264pay config-interval=-1",
            )
        } else if c.starts_with("hvc1") || c.starts_with("hev1") {
            video += 1;
            (
                format!("video_{}", video - 1),
                "h265parse ! rtph265pay config-interval=-1",
            )
        } else if c.starts_with("mp4a") {
            audio += 1;
            (format!("audio_{}", audio - 1), "aacparse ! rtpmp4gpay")
        } else if c.eq_ignore_ascii_case("opus") {
            audio += 1;
            (format!("audio_{}", audio - 1), "opusparse ! rtpopuspay")
        } else {
            bail!("codec {c:?} cannot be served over RTSP");
        };
        line.push_str(&format!(
            " d.{pad} ! queue ! {chain} name=pay{i} pt={}",
            96 + i
        ));
    }
    if codecs.is_empty() {
        bail!("a recording without tracks");
    }
    line.push_str(" )");
    Ok(line)
}

/// Mounts (or mounts again) `file` at [`vod_mount_path`]; returns the path.
pub(crate) fn mount(
    mounts: &rtsp::RTSPMountPoints,
    id: &str,
    file: &Path,
    codecs: &[String],
) -> Result<String> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        bail!("id {id:?} is not usable in an RTSP path");
    }
    if !file.is_file() {
        bail!("no recording at {}", file.display());
    }
    let launch = launch(file, codecs)?;
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&launch);
    // One pipeline per client: each seeks on its own.
    factory.set_shared(false);
    let path = vod_mount_path(id);
    mounts.add_factory(&path, factory);
    tracing::info!(mount = %path, launch = %launch, "recording mounted for RTSP");
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_lines_per_codec() {
        let l = launch(
            Path::new("/d/source.mp4"),
            &["avc1.64001e".into(), "mp4a.40.2".into()],
        )
        .unwrap();
        assert_eq!(
            l,
            "( filesrc location=\"/d/source.mp4\" ! qtdemux name=d d.video_0 ! queue ! h264parse ! rtph264pay config-interval=-1 name=pay0 pt=96 d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
        );
        assert!(launch(Path::new("/d/a.mp4"), &["vp08".into()]).is_err());
        assert!(launch(Path::new("/d/\"x.mp4"), &["avc1".into()]).is_err());
        assert!(launch(Path::new("/d/a.mp4"), &[]).is_err());
    }
}
