//! Still-frame shares (SEEDS S2): a viewer takes a screenshot of a playing
//! video; the frame at that time point is captured, optionally enhanced (auto
//! levels, light sharpening; the original is kept), a comment and a drawing
//! can travel with it, and the result is shared as a link whose page shows the
//! still (with Open Graph tags for link previews), offers it for download
//! under a chosen name, and plays the video from the time point. An oEmbed
//! endpoint lets platforms embed it. See `docs/stills.md`.

use sharecast_store::now_ms;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use image::{DynamicImage, GenericImageView, ImageFormat, RgbaImage};
use serde::Deserialize;

use crate::error::{ApiError, ApiJson as Json, ApiPath as Path, ApiQuery as Query};
use crate::frames::{FrameError, FrameSource};
use crate::shares::html_escape;
use sharecast_store::Store;
use sharecast_tokens::{new_id, random_hex, valid_id};

/// Largest comment, characters.
pub const MAX_COMMENT_CHARS: usize = 1000;
/// Largest drawing overlay (PNG), bytes.
pub const MAX_DRAWING_BYTES: usize = 2 * 1024 * 1024;
/// Largest side of a drawing overlay, pixels: its size is read from the
/// PNG header before anything is decoded, so a small file that would
/// decode into a huge picture is refused at once.
pub const MAX_DRAWING_SIDE: u32 = 4096;
/// Memory a drawing may take once decoded, bytes.
const MAX_DRAWING_ALLOC: u64 =
    4 * (MAX_DRAWING_SIDE as u64) * (MAX_DRAWING_SIDE as u64) + (1 << 20);
/// Stills made at once; more wait (up to [`STILL_QUEUE_WAIT`]), then 503.
/// Image work runs on the blocking pool, never on the threads that serve
/// requests and ingest.
const STILLS_AT_ONCE: usize = 1;
/// How long a still request waits for its turn.
const STILL_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The still-frame share service.
#[derive(Clone)]
pub struct Stills {
    store: Store,
    data_dir: PathBuf,
    source: Arc<dyn FrameSource>,
    public_url: String,
    work: Arc<tokio::sync::Semaphore>,
}

#[derive(Deserialize)]
pub(crate) struct Screenshot {
    content_id: String,
    t_ms: u64,
    #[serde(default)]
    enhance: bool,
    #[serde(default)]
    comment: Option<String>,
    /// A PNG (base64) drawn over the still, scaled to its size.
    #[serde(default)]
    drawing_png_base64: Option<String>,
    /// File name offered for download (without extension).
    #[serde(default)]
    name: Option<String>,
}

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

/// Auto levels: stretch each channel so the 1st and 99th luminance
/// percentiles map to 0 and 255 (fixes too dark and too bright frames), then
/// a light unsharp mask.
pub fn enhance(img: &DynamicImage) -> DynamicImage {
    let rgb = img.to_rgb8();
    let mut hist = [0u64; 256];
    for p in rgb.pixels() {
        let y = (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) / 1000;
        hist[y.min(255) as usize] += 1;
    }
    let total: u64 = hist.iter().sum();
    let pct = |q: f64| {
        let target = (total as f64 * q) as u64;
        let mut acc = 0;
        for (i, n) in hist.iter().enumerate() {
            acc += n;
            if acc > target {
                return i as f64;
            }
        }
        255.0
    };
    let (lo, hi) = (pct(0.01), pct(0.99));
    let mut out = rgb.clone();
    if hi - lo >= 8.0 {
        let scale = 255.0 / (hi - lo);
        for p in out.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = ((*c as f64 - lo) * scale).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    DynamicImage::ImageRgb8(out).unsharpen(1.0, 2)
}

fn encode_jpeg(img: &DynamicImage) -> anyhow::Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.to_rgb8()
        .write_to(&mut out, ImageFormat::Jpeg)
        .context("encoding JPEG")?;
    Ok(out.into_inner())
}

struct StillRow {
    id: String,
    content_id: String,
    t_ms: u64,
    comment: Option<String>,
    name: String,
    enhanced: bool,
    width: u32,
    height: u32,
}

impl Stills {
    /// Create the table; `source` captures frames.
    pub async fn new(
        store: Store,
        data_dir: PathBuf,
        source: Arc<dyn FrameSource>,
        public_url: String,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            data_dir,
            source,
            public_url: public_url.trim_end_matches('/').to_string(),
            work: Arc::new(tokio::sync::Semaphore::new(STILLS_AT_ONCE)),
        })
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.data_dir.join("stills").join(id)
    }

    async fn by_token(&self, token: &str) -> Result<StillRow, ApiError> {
        if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_still",
                "no such still",
            ));
        }
        self.row("token", token).await
    }

    async fn row(&self, column: &str, value: &str) -> Result<StillRow, ApiError> {
        let found = match column {
            "token" => self.store.still_by_token(value).await,
            _ => self.store.still(value).await,
        }
        .map_err(ApiError::internal)?;
        let r = found.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_still", "no such still")
        })?;
        Ok(StillRow {
            id: r.id,
            content_id: r.content_id,
            t_ms: r.t_ms.max(0) as u64,
            comment: r.comment,
            name: r.name,
            enhanced: r.enhanced,
            width: r.width as u32,
            height: r.height as u32,
        })
    }
}

/// Decodes a drawing overlay (a PNG), refusing one whose header announces
/// a picture larger than [`MAX_DRAWING_SIDE`] before decoding it, and
/// bounding what decoding may allocate. Blocking: runs on the blocking pool.
fn decode_drawing(bytes: &[u8]) -> Result<DynamicImage, ApiError> {
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_DRAWING_SIDE);
    limits.max_image_height = Some(MAX_DRAWING_SIDE);
    limits.max_alloc = Some(MAX_DRAWING_ALLOC);
    reader.limits(limits);
    let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), ImageFormat::Png)
        .into_dimensions()
        .map_err(|e| bad("bad_drawing", format!("drawing is not a PNG: {e}")))?;
    if w > MAX_DRAWING_SIDE || h > MAX_DRAWING_SIDE {
        return Err(bad(
            "drawing_too_large",
            format!("the drawing is {w}x{h}; at most {MAX_DRAWING_SIDE} pixels a side"),
        ));
    }
    reader
        .decode()
        .map_err(|e| bad("bad_drawing", format!("drawing is not a PNG: {e}")))
}

/// The still as shared, and its size: the frame, enhanced if asked, with
/// the drawing over it, as JPEG. Blocking.
fn compose(
    jpeg: &[u8],
    enhanced: bool,
    drawing: Option<&[u8]>,
) -> Result<(Vec<u8>, u32, u32), ApiError> {
    let drawing = drawing.map(decode_drawing).transpose()?;
    let original = image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("decoding the captured frame: {e}")))?;
    let mut shared = if enhanced {
        enhance(&original)
    } else {
        original
    };
    if let Some(d) = drawing {
        let (w, h) = shared.dimensions();
        let overlay: RgbaImage = d
            .resize_exact(w, h, image::imageops::FilterType::Triangle)
            .to_rgba8();
        let mut base = shared.to_rgba8();
        image::imageops::overlay(&mut base, &overlay, 0, 0);
        shared = DynamicImage::ImageRgba8(base);
    }
    let (w, h) = shared.dimensions();
    Ok((encode_jpeg(&shared).map_err(ApiError::internal)?, w, h))
}

/// `POST /api/v1/stills`: a screenshot of a video at a time point, shared
/// as a link. Whoever may see the video may make one (the access policy
/// checks `content_id`).
pub(crate) async fn screenshot(
    State(s): State<Stills>,
    Json(req): Json<Screenshot>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !valid_id(&req.content_id) {
        return Err(bad("bad_id", "content ids are hexadecimal"));
    }
    let comment = req
        .comment
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    if comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS)
    {
        return Err(bad(
            "comment_too_long",
            format!("a comment has at most {MAX_COMMENT_CHARS} characters"),
        ));
    }
    let name = req
        .name
        .unwrap_or_else(|| format!("sharecast-{}-{}ms", req.content_id, req.t_ms));
    let name: String = name.trim().trim_end_matches(".jpg").to_string();
    if name.is_empty()
        || name.len() > 100
        || !name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ' | '.'))
    {
        return Err(bad(
            "bad_name",
            "a file name is 1 to 100 letters, digits, spaces, '-', '_' or '.'",
        ));
    }
    let drawing = match &req.drawing_png_base64 {
        None => None,
        Some(b64) => {
            let b64 = b64.trim();
            if b64.len() > MAX_DRAWING_BYTES.div_ceil(3) * 4 {
                return Err(bad(
                    "bad_drawing",
                    format!("a drawing is at most {MAX_DRAWING_BYTES} bytes"),
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| bad("bad_drawing", format!("drawing is not base64: {e}")))?;
            if bytes.len() > MAX_DRAWING_BYTES {
                return Err(bad(
                    "bad_drawing",
                    format!("a drawing is at most {MAX_DRAWING_BYTES} bytes"),
                ));
            }
            Some(bytes)
        }
    };
    let asset = s
        .store
        .asset(&req.content_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_asset",
                format!("no asset {}", req.content_id),
            )
        })?;
    let asset_dir = s.data_dir.join("sessions").join(&asset.id);
    let jpeg = match s.source.frame_jpeg(&asset_dir, req.t_ms).await {
        Ok(j) => j,
        Err(FrameError::PastEnd { t_ms, duration_ms }) => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "past_end",
                format!("time {t_ms} ms is after the end of the video ({duration_ms} ms)"),
            ))
        }
        Err(FrameError::NoVideo(why)) => {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "no_video", why))
        }
        Err(FrameError::NotReady(why)) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                why,
            ))
        }
        Err(FrameError::Other(e)) => return Err(ApiError::internal(e)),
    };
    // One still at a time, on the blocking pool.
    let _turn = tokio::time::timeout(STILL_QUEUE_WAIT, s.work.clone().acquire_owned())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many stills are being made; try again in a moment",
            )
        })?
        .map_err(|e| ApiError::internal(e.into()))?;
    let (frame, enhanced) = (jpeg.clone(), req.enhance);
    let (shared_jpeg, w, h) =
        tokio::task::spawn_blocking(move || compose(&frame, enhanced, drawing.as_deref()))
            .await
            .map_err(|e| ApiError::internal(anyhow::anyhow!("the still task: {e}")))??;
    let id = new_id();
    let token = random_hex(16);
    let dir = s.dir(&id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("creating {}: {e}", dir.display())))?;
    tokio::fs::write(dir.join("original.jpg"), &jpeg)
        .await
        .map_err(|e| ApiError::internal(e.into()))?;
    tokio::fs::write(dir.join("image.jpg"), &shared_jpeg)
        .await
        .map_err(|e| ApiError::internal(e.into()))?;
    s.store
        .insert_still(&sharecast_store::StillRecord {
            id: id.clone(),
            token: token.clone(),
            content_id: req.content_id.clone(),
            t_ms: req.t_ms as i64,
            comment: comment.clone(),
            name: name.clone(),
            enhanced: req.enhance,
            width: i64::from(w),
            height: i64::from(h),
            created_ms: now_ms(),
        })
        .await
        .map_err(ApiError::internal)?;
    let share_link = format!("{}/p/{token}", s.public_url);
    Ok(Json(serde_json::json!({
        "still_id": id,
        "image_url": format!("{}/api/v1/stills/{id}/image.jpg", s.public_url),
        "original_url": format!("{}/api/v1/stills/{id}/original.jpg", s.public_url),
        "video_id": req.content_id,
        "time_point_ms": req.t_ms,
        "share_link": share_link,
        "oembed_url": format!("{}/oembed?url={}", s.public_url, share_link),
        "comment": comment,
        "enhanced": req.enhance,
        "width": w,
        "height": h,
    })))
}

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    #[serde(default)]
    download: Option<u8>,
}

pub(crate) async fn image_file(
    State(s): State<Stills>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    // 32 hex digits (16 for stills made before ids were 128 bits).
    if !matches!(id.len(), 16 | 32) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_still",
            "no such still",
        ));
    }
    if file != "image.jpg" && file != "original.jpg" {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_file",
            "image.jpg or original.jpg",
        ));
    }
    let row = s.row("id", &id).await?;
    let bytes = tokio::fs::read(s.dir(&id).join(&file))
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("reading still {id}: {e}")))?;
    let mut resp = ([(header::CONTENT_TYPE, "image/jpeg")], bytes).into_response();
    if q.download == Some(1) {
        let suffix = if file == "original.jpg" {
            "-original"
        } else {
            ""
        };
        let fname = format!("{}{suffix}.jpg", row.name).replace('"', "");
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{fname}\"")) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}

pub(crate) async fn page(
    State(s): State<Stills>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    let row = s.by_token(&token).await?;
    let asset = s
        .store
        .asset(&row.content_id)
        .await
        .map_err(ApiError::internal)?;
    let (title, video_url) = match &asset {
        Some(a) => (
            a.title
                .clone()
                .unwrap_or_else(|| "A moment from a Sharecast video".into()),
            a.attributes.as_ref().and_then(|x| x.vod_url.clone()),
        ),
        None => ("A moment from a Sharecast video".into(), None),
    };
    let image = format!("{}/api/v1/stills/{}/image.jpg", s.public_url, row.id);
    let download = format!("{image}?download=1");
    let link = format!("{}/p/{token}", s.public_url);
    let t = row.t_ms as f64 / 1000.0;
    let comment = row.comment.clone().unwrap_or_default();
    let video = match &video_url {
        Some(u) => format!(
            r#"<video id="v" controls autoplay muted playsinline preload="auto" data-t="{t:.3}" src="{u}#t={t:.3}"></video>"#,
            u = html_escape(u)
        ),
        None => "<p>The video is still recording; the still is shown above.</p>".into(),
    };
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<meta property="og:type" content="article">
<meta property="og:title" content="{title}">
<meta property="og:description" content="{desc}">
<meta property="og:image" content="{image}">
<meta property="og:image:width" content="{w}">
<meta property="og:image:height" content="{h}">
<meta property="og:url" content="{link}">
<link rel="alternate" type="application/json+oembed" href="{base}/oembed?url={link}&amp;format=json" title="{title}">
<style>body{{font-family:sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem}}img,video{{max-width:100%}}blockquote{{font-size:1.2rem}}</style>
</head><body>
<h1>{title}</h1>
<img id="still" src="{image}" width="{w}" height="{h}" alt="Still at {t:.3} s">
<blockquote id="comment">{comment}</blockquote>
<p><a id="download" href="{download}" download="{name}.jpg">Download the image</a> · at {t:.3} s of the video</p>
{video}
<script>
// Play the video from the time point of the still.
const v = document.getElementById('v');
if (v) {{
  const t = parseFloat(v.dataset.t);
  const seek = () => {{ if (Math.abs(v.currentTime - t) > 0.001) v.currentTime = t; }};
  v.addEventListener('loadedmetadata', seek, {{ once: true }});
  v.addEventListener('playing', () => {{ window.__sharecastStartedAt ??= v.currentTime; }});
  v.addEventListener('seeked', () => {{ window.__sharecastSeekedTo ??= v.currentTime; v.play().catch(() => {{}}); }}, {{ once: true }});
}}
</script>
</body></html>"#,
        title = html_escape(&title),
        desc = html_escape(if comment.is_empty() {
            "A still shared from a video"
        } else {
            &comment
        }),
        image = html_escape(&image),
        link = html_escape(&link),
        base = html_escape(&s.public_url),
        download = html_escape(&download),
        name = html_escape(&row.name),
        comment = html_escape(&comment),
        w = row.width,
        h = row.height,
    );
    Ok(Html(html))
}

#[derive(Deserialize)]
pub(crate) struct OembedQuery {
    url: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    maxwidth: Option<u32>,
}

pub(crate) async fn oembed(
    State(s): State<Stills>,
    Query(q): Query<OembedQuery>,
    _headers: HeaderMap,
) -> Result<Response, ApiError> {
    if q.format.as_deref().is_some_and(|f| f != "json") {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "format_not_supported",
            "only format=json",
        ));
    }
    let prefix = format!("{}/p/", s.public_url);
    let token = q.url.strip_prefix(&prefix).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_url",
            "not a still-share link of this server",
        )
    })?;
    let row = s.by_token(token).await?;
    let (mut w, mut h) = (row.width, row.height);
    if let Some(mw) = q.maxwidth.filter(|m| *m > 0 && *m < w) {
        h = (h as u64 * mw as u64 / w.max(1) as u64) as u32;
        w = mw;
    }
    let image = format!("{}/api/v1/stills/{}/image.jpg", s.public_url, row.id);
    let body = serde_json::json!({
        "version": "1.0",
        "type": "photo",
        "url": image,
        "width": w,
        "height": h,
        "title": row.comment.clone().unwrap_or_else(|| format!("Still at {:.3} s", row.t_ms as f64 / 1000.0)),
        "provider_name": "Sharecast",
        "provider_url": s.public_url,
        "sharecast_video_id": row.content_id,
        "sharecast_time_point_ms": row.t_ms,
        "sharecast_enhanced": row.enhanced,
    });
    Ok(Json(body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_luma(img: &DynamicImage) -> f64 {
        let rgb = img.to_rgb8();
        let n = rgb.pixels().len() as f64;
        rgb.pixels()
            .map(|p| (299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32) as f64 / 1000.0)
            .sum::<f64>()
            / n
    }

    #[test]
    fn enhance_brightens_a_dark_frame_and_darkens_a_washed_out_one() {
        let dark = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 36, |x, y| {
            let v = ((x + y) % 40) as u8 + 5;
            image::Rgb([v, v, v / 2])
        }));
        assert!(mean_luma(&enhance(&dark)) > mean_luma(&dark) + 50.0);
        let bright = DynamicImage::ImageRgb8(image::RgbImage::from_fn(64, 36, |x, y| {
            let v = 250 - ((x * 3 + y) % 40) as u8;
            image::Rgb([v, v, v])
        }));
        assert!(mean_luma(&enhance(&bright)) < mean_luma(&bright) - 50.0);
        // A flat image is left alone (no division by a tiny range).
        let flat = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            8,
            8,
            image::Rgb([100, 100, 100]),
        ));
        assert!((mean_luma(&enhance(&flat)) - 100.0).abs() < 2.0);
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        DynamicImage::ImageLuma8(image::GrayImage::new(w, h))
            .write_to(&mut out, ImageFormat::Png)
            .unwrap();
        out.into_inner()
    }

    /// CRC-32 (ISO-HDLC), as PNG chunks carry it.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in bytes {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xEDB8_8320
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    /// A valid PNG whose header announces `w` x `h` pixels (its data is that
    /// of a 1 x 1 picture): what a decompression bomb looks like up front.
    fn png_announcing(w: u32, h: u32) -> Vec<u8> {
        let mut b = png(1, 1);
        // Signature (8), IHDR length (4), "IHDR" (4), width, height.
        b[16..20].copy_from_slice(&w.to_be_bytes());
        b[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&b[12..29]);
        b[29..33].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn a_drawing_announcing_a_huge_picture_is_refused_before_decoding() {
        // 11000 x 11000 pixels: 484 MB as RGBA once decoded.
        let bomb = png_announcing(11_000, 11_000);
        let e = decode_drawing(&bomb).unwrap_err();
        assert_eq!(e.code(), "drawing_too_large", "{e}");
        let e = decode_drawing(&png_announcing(100, MAX_DRAWING_SIDE + 1)).unwrap_err();
        assert_eq!(e.code(), "drawing_too_large", "{e}");
        assert!(decode_drawing(&png(640, 360)).is_ok());
        assert_eq!(
            decode_drawing(b"not a png").unwrap_err().code(),
            "bad_drawing"
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
