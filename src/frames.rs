//! Still images for the share services, made by the transcoder: the
//! [`FrameSource`] and [`StillComposer`] of `sharecast-share` implemented
//! with `sharecast_transcoder::still` and `sharecast_transcoder::image`.

use std::path::Path;

use sharecast_share::{BoxFuture, ComposedStill, FrameError, FrameSource, StillComposer};
use sharecast_transcoder::image::{self, ImageError, MAX_DRAWING_SIDE};
use sharecast_transcoder::still::{self, StillError, LIVE_POSTER_FILE, POSTER_FILE};
use sharecast_transcoder::SOURCE_FILE;

/// Decodes frames from a session's source rendition.
pub(crate) struct GstFrames;

fn convert(e: StillError) -> FrameError {
    match e {
        StillError::PastEnd { t_ms, duration_ms } => FrameError::PastEnd { t_ms, duration_ms },
        StillError::NoVideo => FrameError::NoVideo("no video track".into()),
        StillError::Other(e) => FrameError::Other(e),
    }
}

async fn frame(dir: &Path, t_ms: u64) -> Result<Vec<u8>, FrameError> {
    let file = dir.join(SOURCE_FILE);
    if !file.is_file() {
        return Err(FrameError::NoVideo("no file written yet".into()));
    }
    tokio::task::spawn_blocking(move || still::frame_jpeg(&file, t_ms))
        .await
        .map_err(|e| FrameError::Other(anyhow::anyhow!("still-frame task: {e}")))?
        .map_err(convert)
}

/// The poster of a session still recording: the first frame of the
/// recording (a key frame: decoding starts there), decoded once from the
/// file recorded so far and kept as `poster.live.jpg`, so that a share page
/// opened by many recipients costs one decode. The transcoder removes it
/// when it writes the VOD poster at the end.
async fn live_poster(dir: &Path) -> Result<Vec<u8>, FrameError> {
    // The recording has just ended (the asset turns ready next): the VOD
    // poster is there.
    if let Ok(bytes) = tokio::fs::read(dir.join(POSTER_FILE)).await {
        return Ok(bytes);
    }
    let cached = dir.join(LIVE_POSTER_FILE);
    if let Ok(bytes) = tokio::fs::read(&cached).await {
        return Ok(bytes);
    }
    if !dir.join(SOURCE_FILE).is_file() {
        return Err(FrameError::NotReady("nothing recorded yet".into()));
    }
    let jpeg = match frame(dir, 0).await {
        Ok(jpeg) => jpeg,
        // No video in what the demuxer could read: before the recording's
        // first index update, nothing is readable yet.
        Err(FrameError::NoVideo(why)) => {
            let file = dir.join(SOURCE_FILE);
            let indexed = tokio::task::spawn_blocking(move || still::recorded_video(&file))
                .await
                .map_err(|e| FrameError::Other(anyhow::anyhow!("index task: {e}")))?;
            return Err(match indexed {
                Ok(Some(false)) => FrameError::NoVideo(why),
                Ok(None) => FrameError::NotReady("nothing recorded yet".into()),
                Ok(Some(true)) => {
                    FrameError::NotReady("the recording has no decodable video frame yet".into())
                }
                Err(e) => {
                    FrameError::NotReady(format!("the recording is not readable yet ({e:#})"))
                }
            });
        }
        // Before the recording's first index update the file has no
        // decodable frame yet.
        Err(FrameError::Other(e)) => {
            return Err(FrameError::NotReady(format!(
                "the recording has no decodable frame yet ({e:#})"
            )))
        }
        Err(FrameError::PastEnd { .. }) | Err(FrameError::NotReady(_)) => {
            return Err(FrameError::NotReady(
                "the recording has no frame yet".into(),
            ))
        }
    };
    let tmp = dir.join(format!("{LIVE_POSTER_FILE}.tmp"));
    let kept = async {
        tokio::fs::write(&tmp, &jpeg).await?;
        tokio::fs::rename(&tmp, &cached).await
    }
    .await;
    if let Err(e) = kept {
        tracing::warn!(dir = %dir.display(), "live poster not kept: {e}");
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    Ok(jpeg)
}

impl FrameSource for GstFrames {
    fn frame_jpeg<'a>(
        &'a self,
        asset_dir: &'a Path,
        t_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, FrameError>> {
        Box::pin(frame(asset_dir, t_ms))
    }

    fn poster<'a>(&'a self, asset_dir: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, FrameError>> {
        Box::pin(async move {
            // Written at finish; if writing it failed, the first frame.
            match tokio::fs::read(asset_dir.join(POSTER_FILE)).await {
                Ok(bytes) => Ok(bytes),
                Err(_) => frame(asset_dir, 0).await,
            }
        })
    }

    fn live_poster<'a>(
        &'a self,
        asset_dir: &'a Path,
    ) -> BoxFuture<'a, Result<Vec<u8>, FrameError>> {
        Box::pin(live_poster(asset_dir))
    }
}

impl StillComposer for GstFrames {
    fn compose(
        &self,
        frame_jpeg: &[u8],
        enhance: bool,
        drawing_png: Option<&[u8]>,
    ) -> Result<ComposedStill, sharecast_share::Error> {
        match image::compose(frame_jpeg, enhance, drawing_png) {
            Ok(i) => Ok(ComposedStill {
                jpeg: i.jpeg,
                width: i.width,
                height: i.height,
            }),
            Err(ImageError::DrawingTooLarge { width, height }) => {
                Err(sharecast_share::Error::DrawingTooLarge {
                    width,
                    height,
                    max: MAX_DRAWING_SIDE,
                })
            }
            Err(e @ ImageError::BadDrawing(_)) => {
                Err(sharecast_share::Error::BadDrawing(e.to_string()))
            }
            Err(ImageError::Other(e)) => Err(e.into()),
        }
    }
}
