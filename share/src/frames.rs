//! Where still images come from. The share services know nothing of media:
//! the binary implements [`FrameSource`] (frames and posters decoded from an
//! asset's recording) and [`StillComposer`] (enhancement, drawing, JPEG)
//! with the transcoder.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use crate::error::Error;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why an image could not be made.
#[derive(Debug)]
pub enum FrameError {
    /// The requested time is after the end of the video.
    PastEnd {
        /// Requested time, ms.
        t_ms: u64,
        /// Duration of the video, ms.
        duration_ms: u64,
    },
    /// The asset has no video (audio only, or nothing written yet).
    NoVideo(String),
    /// A live asset has nothing decodable yet; try again in a moment.
    NotReady(String),
    /// Anything else.
    Other(anyhow::Error),
}

/// Makes still images from an asset's directory (`data/sessions/{id}`).
pub trait FrameSource: Send + Sync {
    /// JPEG of the frame shown at `t_ms` of the asset's main video.
    fn frame_jpeg<'a>(
        &'a self,
        asset_dir: &'a Path,
        t_ms: u64,
    ) -> BoxFuture<'a, Result<Vec<u8>, FrameError>>;
    /// JPEG poster of an asset whose recording has ended.
    fn poster<'a>(&'a self, asset_dir: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, FrameError>>;
    /// JPEG poster of an asset still recording: an early key frame of what
    /// is recorded so far ([`FrameError::NotReady`] until there is one).
    fn live_poster<'a>(&'a self, asset_dir: &'a Path)
        -> BoxFuture<'a, Result<Vec<u8>, FrameError>>;
}

/// A still as shared: a JPEG and its size in pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposedStill {
    /// The JPEG.
    pub jpeg: Vec<u8>,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
}

/// Turns a captured frame into the still that is shared.
pub trait StillComposer: Send + Sync {
    /// The frame (a JPEG), enhanced if asked (too dark, too bright,
    /// blurry), with the drawing (a PNG, scaled to the frame) laid over it,
    /// as JPEG. A drawing that is not a PNG is [`Error::BadDrawing`]; one
    /// whose header announces a picture too large is
    /// [`Error::DrawingTooLarge`], refused before decoding. Blocking and
    /// CPU-bound: the still service calls it on the blocking pool, one
    /// still at a time.
    fn compose(
        &self,
        frame_jpeg: &[u8],
        enhance: bool,
        drawing_png: Option<&[u8]>,
    ) -> Result<ComposedStill, Error>;
}
