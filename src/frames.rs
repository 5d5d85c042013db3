//! Still frames for the HTTP gateway, made by the transcoder: the gateway's
//! [`FrameSource`] implemented with `sharecast_transcoder::still`.

use std::path::Path;

use sharecast_share_gateway::frames::{BoxFuture, FrameError, FrameSource};
use sharecast_transcoder::still::{self, StillError, POSTER_FILE};
use sharecast_transcoder::SOURCE_FILE;

/// Decodes frames from a session's source rendition.
pub struct GstFrames;

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
            // Written at finish; while the session is live, the first frame
            // of the file recorded so far.
            match tokio::fs::read(asset_dir.join(POSTER_FILE)).await {
                Ok(bytes) => Ok(bytes),
                Err(_) => frame(asset_dir, 0).await,
            }
        })
    }
}
