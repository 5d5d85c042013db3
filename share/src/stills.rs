//! Still-frame shares: a viewer takes a screenshot of a playing video; the
//! frame at that time point is captured, optionally enhanced (auto levels,
//! light sharpening; the original is kept), a comment and a drawing can
//! travel with it, and the result is shared as a link (`/p/{token}`) whose
//! page shows the still, offers it for download under a chosen name, and
//! plays the video from the time point. See `docs/resume.md` ("Still-frame
//! shares").
//!
//! Files: `<data_dir>/stills/{id}/original.jpg` (the frame as captured) and
//! `image.jpg` (as shared); the record is in the store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sharecast_store::{now_ms, StillRecord, Store};
use sharecast_tokens::{new_id, random_hex, valid_id};

use crate::error::{Error, Result};
use crate::frames::{ComposedStill, FrameError, FrameSource, StillComposer};

/// Largest comment, characters.
const MAX_COMMENT_CHARS: usize = 1000;
/// Largest drawing overlay (PNG), bytes.
const MAX_DRAWING_BYTES: usize = 2 * 1024 * 1024;
/// Stills made at once; more wait (up to [`STILL_QUEUE_WAIT`]), then
/// `busy`. Image work runs on the blocking pool, never on the threads that
/// serve requests and ingest.
const STILLS_AT_ONCE: usize = 1;
/// How long a still request waits for its turn.
const STILL_QUEUE_WAIT: Duration = Duration::from_secs(10);

/// A request for a still: the frame of a video at a time point.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
pub struct StillRequest {
    /// The video (asset) id.
    pub content_id: String,
    /// The time point, ms.
    pub t_ms: u64,
    /// Enhance the image (auto levels, light sharpening).
    #[serde(default)]
    pub enhance: bool,
    /// A comment that travels with the still.
    #[serde(default)]
    pub comment: Option<String>,
    /// A PNG (base64) drawn over the still, scaled to its size.
    #[serde(default)]
    pub drawing_png_base64: Option<String>,
    /// File name offered for download (without extension).
    #[serde(default)]
    pub name: Option<String>,
}

/// A still just made: the interface data of the share.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct Still {
    /// Still id.
    pub still_id: String,
    /// The shared image (`image.jpg`).
    pub image_url: String,
    /// The frame as captured (`original.jpg`).
    pub original_url: String,
    /// The video.
    pub video_id: String,
    /// The time point, ms.
    pub time_point_ms: u64,
    /// The still's page (`/p/{token}`).
    pub share_link: String,
    /// The oEmbed URL of the page.
    pub oembed_url: String,
    /// The comment.
    pub comment: Option<String>,
    /// Whether the image was enhanced.
    pub enhanced: bool,
    /// Width of the shared image, pixels.
    pub width: u32,
    /// Height of the shared image, pixels.
    pub height: u32,
}

/// One of a still's two images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StillFile {
    /// `image.jpg`: as shared.
    Image,
    /// `original.jpg`: as captured.
    Original,
}

impl StillFile {
    /// The file by its name: `unknown_file` for any other.
    fn from_name(name: &str) -> Result<StillFile> {
        match name {
            "image.jpg" => Ok(StillFile::Image),
            "original.jpg" => Ok(StillFile::Original),
            _ => Err(Error::UnknownFile),
        }
    }

    fn name(self) -> &'static str {
        match self {
            StillFile::Image => "image.jpg",
            StillFile::Original => "original.jpg",
        }
    }
}

/// A still's image file.
#[derive(Debug)]
pub struct StillImage {
    /// The JPEG.
    pub jpeg: Vec<u8>,
    /// The file name to save it under (the chosen name), when a download
    /// was asked for.
    pub download_name: Option<String>,
}

/// What a still's page shows.
#[derive(Debug)]
pub struct StillPage {
    /// The video's title.
    pub title: String,
    /// The video's VOD URL (none while it records).
    pub video_url: Option<String>,
    /// The shared image.
    pub image_url: String,
    /// The shared image as a download.
    pub download_url: String,
    /// The page's own URL.
    pub link: String,
    /// The public base URL, no trailing slash.
    pub public_url: String,
    /// The time point, ms.
    pub t_ms: u64,
    /// The comment ("" without).
    pub comment: String,
    /// The download name.
    pub name: String,
    /// Width of the shared image.
    pub width: u32,
    /// Height of the shared image.
    pub height: u32,
}

/// An oEmbed `photo` answer for a still's page.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct Oembed {
    /// oEmbed version, `1.0`.
    pub version: &'static str,
    /// `photo`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The image.
    pub url: String,
    /// Width, at most the `maxwidth` asked for.
    pub width: u32,
    /// Height, scaled with the width.
    pub height: u32,
    /// The comment, or the time point.
    pub title: String,
    /// `Sharecast`.
    pub provider_name: &'static str,
    /// This server.
    pub provider_url: String,
    /// The video.
    pub sharecast_video_id: String,
    /// The time point, ms.
    pub sharecast_time_point_ms: u64,
    /// Whether the image was enhanced.
    pub sharecast_enhanced: bool,
}

/// A request checked: what the still will carry.
struct Checked {
    content_id: String,
    t_ms: u64,
    enhance: bool,
    comment: Option<String>,
    name: String,
    drawing: Option<Vec<u8>>,
}

/// The still-frame share service. Cheap to clone.
#[derive(Clone)]
pub struct Stills {
    store: Store,
    data_dir: PathBuf,
    frames: Arc<dyn FrameSource>,
    composer: Arc<dyn StillComposer>,
    public_url: String,
    work: Arc<tokio::sync::Semaphore>,
}

impl Stills {
    /// Stills of the assets under `data_dir/sessions`, captured by
    /// `frames` and made by `composer`, kept under `data_dir/stills`, with
    /// links on `public_url`.
    pub fn new(
        store: Store,
        data_dir: PathBuf,
        frames: Arc<dyn FrameSource>,
        composer: Arc<dyn StillComposer>,
        public_url: String,
    ) -> Self {
        Self {
            store,
            data_dir,
            frames,
            composer,
            public_url: public_url.trim_end_matches('/').to_string(),
            work: Arc::new(tokio::sync::Semaphore::new(STILLS_AT_ONCE)),
        }
    }

    /// Make and keep a still. Errors: `bad_id`, `comment_too_long`,
    /// `bad_name`, `bad_drawing`, `drawing_too_large`, `unknown_asset`,
    /// `past_end`, `no_video`, `not_ready`, `busy`; nothing is kept then.
    pub async fn make(&self, req: StillRequest) -> Result<Still> {
        let req = check(req)?;
        let asset = self
            .store
            .asset(&req.content_id)
            .await?
            .ok_or_else(|| Error::UnknownAsset(req.content_id.clone()))?;
        let asset_dir = self.data_dir.join("sessions").join(&asset.id);
        let frame = self
            .frames
            .frame_jpeg(&asset_dir, req.t_ms)
            .await
            .map_err(frame_error)?;
        let shared = self.compose(&frame, &req).await?;
        let (id, token) = (new_id(), random_hex(16));
        self.keep(&id, &frame, &shared.jpeg).await?;
        let record = StillRecord {
            id: id.clone(),
            token: token.clone(),
            content_id: req.content_id.clone(),
            t_ms: req.t_ms as i64,
            comment: req.comment.clone(),
            name: req.name.clone(),
            enhanced: req.enhance,
            width: i64::from(shared.width),
            height: i64::from(shared.height),
            created_ms: now_ms(),
        };
        self.store.insert_still(&record).await?;
        Ok(self.answer(id, &token, req, &shared))
    }

    /// The shared still, one at a time on the blocking pool.
    async fn compose(&self, frame: &[u8], req: &Checked) -> Result<ComposedStill> {
        let wait = tokio::time::timeout(STILL_QUEUE_WAIT, self.work.clone().acquire_owned());
        let _turn = wait
            .await
            .map_err(|_| Error::Busy)?
            .context("the stills queue")?;
        let composer = self.composer.clone();
        let (frame, enhance, drawing) = (frame.to_vec(), req.enhance, req.drawing.clone());
        tokio::task::spawn_blocking(move || composer.compose(&frame, enhance, drawing.as_deref()))
            .await
            .context("the still task")?
    }

    /// Write a still's two images.
    async fn keep(&self, id: &str, original: &[u8], shared: &[u8]) -> Result<()> {
        let dir = self.dir(id);
        tokio::fs::create_dir_all(&dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
        for (file, bytes) in [(StillFile::Original, original), (StillFile::Image, shared)] {
            let path = dir.join(file.name());
            tokio::fs::write(&path, bytes)
                .await
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn answer(&self, id: String, token: &str, req: Checked, shared: &ComposedStill) -> Still {
        let base = &self.public_url;
        let share_link = format!("{base}/p/{token}");
        Still {
            image_url: format!("{base}/api/v1/stills/{id}/image.jpg"),
            original_url: format!("{base}/api/v1/stills/{id}/original.jpg"),
            still_id: id,
            video_id: req.content_id,
            time_point_ms: req.t_ms,
            oembed_url: format!("{base}/oembed?url={share_link}"),
            share_link,
            comment: req.comment,
            enhanced: req.enhance,
            width: shared.width,
            height: shared.height,
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("stills").join(id)
    }

    /// One of a still's images by the still's id, with its download name
    /// when `download`. Errors: `unknown_still`, `unknown_file`.
    pub async fn image(&self, id: &str, file: &str, download: bool) -> Result<StillImage> {
        // 32 hex digits (16 for stills made before ids were 128 bits).
        if !matches!(id.len(), 16 | 32) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::UnknownStill);
        }
        let file = StillFile::from_name(file)?;
        let row = self.store.still(id).await?.ok_or(Error::UnknownStill)?;
        let jpeg = tokio::fs::read(self.dir(id).join(file.name()))
            .await
            .with_context(|| format!("reading still {id}"))?;
        let suffix = match file {
            StillFile::Original => "-original",
            StillFile::Image => "",
        };
        let download_name = download.then(|| format!("{}{suffix}.jpg", row.name).replace('"', ""));
        Ok(StillImage {
            jpeg,
            download_name,
        })
    }

    /// What the page of the still with this token shows: `unknown_still`.
    pub async fn page(&self, token: &str) -> Result<StillPage> {
        let row = self.by_token(token).await?;
        let asset = self.store.asset(&row.content_id).await?;
        let untitled = || "A moment from a Sharecast video".to_string();
        let (title, video_url) = match asset {
            Some(a) => (
                a.title.unwrap_or_else(untitled),
                a.attributes.and_then(|x| x.vod_url),
            ),
            None => (untitled(), None),
        };
        let image_url = format!("{}/api/v1/stills/{}/image.jpg", self.public_url, row.id);
        Ok(StillPage {
            title,
            video_url,
            download_url: format!("{image_url}?download=1"),
            image_url,
            link: format!("{}/p/{token}", self.public_url),
            public_url: self.public_url.clone(),
            t_ms: row.t_ms.max(0) as u64,
            comment: row.comment.unwrap_or_default(),
            name: row.name,
            width: row.width as u32,
            height: row.height as u32,
        })
    }

    /// The oEmbed answer for a still-share link of this server, at most
    /// `maxwidth` wide. Errors: `unknown_url`, `unknown_still`.
    pub async fn oembed(&self, url: &str, maxwidth: Option<u32>) -> Result<Oembed> {
        let prefix = format!("{}/p/", self.public_url);
        let token = url.strip_prefix(&prefix).ok_or(Error::UnknownUrl)?;
        let row = self.by_token(token).await?;
        let (mut w, mut h) = (row.width as u32, row.height as u32);
        if let Some(mw) = maxwidth.filter(|m| *m > 0 && *m < w) {
            h = (h as u64 * mw as u64 / w.max(1) as u64) as u32;
            w = mw;
        }
        let t_ms = row.t_ms.max(0) as u64;
        Ok(Oembed {
            version: "1.0",
            kind: "photo",
            url: format!("{}/api/v1/stills/{}/image.jpg", self.public_url, row.id),
            width: w,
            height: h,
            title: (row.comment.clone())
                .unwrap_or_else(|| format!("Still at {:.3} s", t_ms as f64 / 1000.0)),
            provider_name: "Sharecast",
            provider_url: self.public_url.clone(),
            sharecast_video_id: row.content_id,
            sharecast_time_point_ms: t_ms,
            sharecast_enhanced: row.enhanced,
        })
    }

    async fn by_token(&self, token: &str) -> Result<StillRecord> {
        if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::UnknownStill);
        }
        self.store
            .still_by_token(token)
            .await?
            .ok_or(Error::UnknownStill)
    }
}

/// A still request checked: its id, comment, download name and drawing.
fn check(req: StillRequest) -> Result<Checked> {
    if !valid_id(&req.content_id) {
        return Err(Error::BadId("content ids are hexadecimal"));
    }
    let comment = req
        .comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(Error::CommentTooLong {
            max: MAX_COMMENT_CHARS,
        });
    }
    let name = req
        .name
        .unwrap_or_else(|| format!("sharecast-{}-{}ms", req.content_id, req.t_ms));
    let name = name.trim().trim_end_matches(".jpg").to_string();
    let fits = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ' | '.');
    if name.is_empty() || name.len() > 100 || !name.chars().all(fits) {
        return Err(Error::BadName);
    }
    let drawing = req.drawing_png_base64.as_deref().map(drawing).transpose()?;
    Ok(Checked {
        content_id: req.content_id,
        t_ms: req.t_ms,
        enhance: req.enhance,
        comment,
        name,
        drawing,
    })
}

/// A drawing's bytes from base64, at most [`MAX_DRAWING_BYTES`].
fn drawing(b64: &str) -> Result<Vec<u8>> {
    let too_large = || Error::BadDrawing(format!("a drawing is at most {MAX_DRAWING_BYTES} bytes"));
    let b64 = b64.trim();
    if b64.len() > MAX_DRAWING_BYTES.div_ceil(3) * 4 {
        return Err(too_large());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| Error::BadDrawing(format!("drawing is not base64: {e}")))?;
    if bytes.len() > MAX_DRAWING_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// A capture's failure as the still request's error.
fn frame_error(e: FrameError) -> Error {
    match e {
        FrameError::PastEnd { t_ms, duration_ms } => Error::PastEnd { t_ms, duration_ms },
        FrameError::NoVideo(why) => Error::NoVideo(why),
        FrameError::NotReady(why) => Error::NotReady(why),
        FrameError::Other(e) => Error::Internal(e),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::frames::BoxFuture;
    use crate::testing::fixture;

    /// Frames of a one-second video: the bytes name the asset directory's
    /// last part and the time.
    struct OneSecond;

    impl FrameSource for OneSecond {
        fn frame_jpeg<'a>(
            &'a self,
            asset_dir: &'a Path,
            t_ms: u64,
        ) -> BoxFuture<'a, Result<Vec<u8>, FrameError>> {
            let name = asset_dir.file_name().unwrap().to_string_lossy();
            let frame = format!("{name}@{t_ms}").into_bytes();
            Box::pin(async move {
                match t_ms {
                    0..=1000 => Ok(frame),
                    _ => Err(FrameError::PastEnd {
                        t_ms,
                        duration_ms: 1000,
                    }),
                }
            })
        }

        fn poster<'a>(&'a self, _: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, FrameError>> {
            Box::pin(async { Err(FrameError::NoVideo("not used".into())) })
        }

        fn live_poster<'a>(&'a self, _: &'a Path) -> BoxFuture<'a, Result<Vec<u8>, FrameError>> {
            Box::pin(async { Err(FrameError::NoVideo("not used".into())) })
        }
    }

    /// Marks the frame as enhanced and appends the drawing; a drawing of
    /// `huge` is refused as a real one announcing 9000 pixels a side.
    struct Marker;

    impl StillComposer for Marker {
        fn compose(
            &self,
            frame: &[u8],
            enhance: bool,
            drawing: Option<&[u8]>,
        ) -> Result<ComposedStill> {
            if drawing == Some(b"huge") {
                return Err(Error::DrawingTooLarge {
                    width: 9000,
                    height: 9000,
                    max: 4096,
                });
            }
            let mut jpeg = frame.to_vec();
            if enhance {
                jpeg.extend_from_slice(b"+enhanced");
            }
            jpeg.extend_from_slice(drawing.unwrap_or_default());
            Ok(ComposedStill {
                jpeg,
                width: 640,
                height: 360,
            })
        }
    }

    fn request(content_id: &str, t_ms: u64) -> StillRequest {
        StillRequest {
            content_id: content_id.into(),
            t_ms,
            enhance: true,
            comment: Some("  look  ".into()),
            drawing_png_base64: Some(base64::engine::general_purpose::STANDARD.encode(b"+line")),
            name: Some("my moment.jpg".into()),
        }
    }

    /// A still keeps the frame as captured and as shared, its record
    /// answers its page, image and oEmbed; refused requests keep nothing.
    #[tokio::test]
    async fn a_still_is_kept_with_its_record_and_refusals_keep_nothing() {
        let f = fixture().await;
        let asset = new_id();
        f.store
            .asset_recording(&asset, &f.device.id, Some("Walk"), 0)
            .await
            .unwrap();
        let stills = Stills::new(
            f.store.clone(),
            f.dir.path().to_path_buf(),
            Arc::new(OneSecond),
            Arc::new(Marker),
            "http://h/".into(),
        );
        let still = stills.make(request(&asset, 500)).await.unwrap();
        assert_eq!(
            (still.video_id.as_str(), still.time_point_ms),
            (asset.as_str(), 500)
        );
        assert_eq!(
            (still.comment.as_deref(), still.enhanced),
            (Some("look"), true)
        );
        let token = still.share_link.strip_prefix("http://h/p/").unwrap();
        assert_eq!(
            still.oembed_url,
            format!("http://h/oembed?url={}", still.share_link)
        );

        let original = stills
            .image(&still.still_id, "original.jpg", false)
            .await
            .unwrap();
        assert_eq!(original.jpeg, format!("{asset}@500").into_bytes());
        assert_eq!(original.download_name, None);
        let shared = stills
            .image(&still.still_id, "image.jpg", true)
            .await
            .unwrap();
        assert_eq!(
            shared.jpeg,
            format!("{asset}@500+enhanced+line").into_bytes()
        );
        assert_eq!(shared.download_name.as_deref(), Some("my moment.jpg"));
        let page = stills.page(token).await.unwrap();
        assert_eq!(
            (page.title.as_str(), page.t_ms, page.comment.as_str()),
            ("Walk", 500, "look")
        );
        assert_eq!((page.width, page.height, page.video_url), (640, 360, None));
        let o = stills.oembed(&still.share_link, Some(320)).await.unwrap();
        assert_eq!(
            (o.width, o.height, o.url),
            (320, 180, still.image_url.clone())
        );

        let with = |change: fn(&mut StillRequest)| {
            let mut r = request(&asset, 500);
            change(&mut r);
            r
        };
        let refused = [
            (with(|r| r.content_id = "zz".into()), "bad_id"),
            (
                with(|r| r.comment = Some("x".repeat(1001))),
                "comment_too_long",
            ),
            (with(|r| r.name = Some("../etc".into())), "bad_name"),
            (
                with(|r| r.drawing_png_base64 = Some("***".into())),
                "bad_drawing",
            ),
            (
                with(|r| r.drawing_png_base64 = Some("aHVnZQ==".into())),
                "drawing_too_large",
            ),
            (with(|r| r.content_id = "ab".repeat(16)), "unknown_asset"),
            (with(|r| r.t_ms = 1001), "past_end"),
        ];
        for (r, code) in refused {
            assert_eq!(stills.make(r).await.unwrap_err().code(), code);
        }
        let kept = std::fs::read_dir(f.dir.path().join("stills"))
            .unwrap()
            .count();
        assert_eq!(kept, 1, "only the first still was kept");
        let lookups = [
            stills
                .image(&still.still_id, "other.jpg", false)
                .await
                .unwrap_err()
                .code(),
            stills
                .image(&new_id(), "image.jpg", false)
                .await
                .unwrap_err()
                .code(),
            stills.page(&new_id()).await.unwrap_err().code(),
            stills
                .oembed("http://elsewhere/p/x", None)
                .await
                .unwrap_err()
                .code(),
        ];
        assert_eq!(
            lookups,
            [
                "unknown_file",
                "unknown_still",
                "unknown_still",
                "unknown_url"
            ]
        );
    }
}
