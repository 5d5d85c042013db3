//! Still-frame routes: the JPEG of the frame shown at a time of an asset's
//! video, and its poster image. The gateway knows nothing of media: a
//! [`FrameSource`] (implemented with GStreamer by the binary) makes the
//! images from the asset's directory.
//!
//! - `GET /api/v1/assets/{id}/frame?t_ms=N`: `image/jpeg`; 400 `bad_time`
//!   for a missing, negative or non-numeric `t_ms`; 404 `unknown_asset`;
//!   404 `no_video` for an asset without video (or without a file yet);
//!   416 `past_end` for a time after the end of the video.
//! - `GET /api/v1/assets/{id}/poster.jpg`: `image/jpeg`, same errors. Once
//!   the recording has ended, the VOD poster (`Cache-Control: public,
//!   max-age=60`). While the asset is still recording (live), the first
//!   frame of the recording, an early key frame (`Cache-Control: no-cache`,
//!   so that clients pick up the VOD poster once the session ends); 503
//!   `not_ready` with `Retry-After: 1` until the recording has a decodable
//!   frame (its first index update, about one second in).
//!
//! Errors use the JSON shape of every API error:
//! `{"error": {"code": "...", "message": "..."}}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sharecast_share::{FrameError, FrameSource};

use crate::error::{ApiError, ApiPath as UrlPath, ApiQuery as Query};
use sharecast_store::Store;
use sharecast_tokens::valid_id;

/// The still-frame routes' state.
#[derive(Clone)]
pub struct Frames {
    store: Store,
    data_dir: PathBuf,
    source: Arc<dyn FrameSource>,
}

impl Frames {
    /// Frames of the assets under `data_dir/sessions`, made by `source`.
    pub fn new(store: Store, data_dir: PathBuf, source: Arc<dyn FrameSource>) -> Self {
        Frames {
            store,
            data_dir,
            source,
        }
    }
}

/// The asset's directory and whether it is still recording (live).
async fn asset_dir_and_state(f: &Frames, id: &str) -> Result<(PathBuf, bool), ApiError> {
    if !valid_id(id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "asset ids are hexadecimal",
        ));
    }
    match f.store.asset(id).await.map_err(ApiError::internal)? {
        Some(asset) => Ok((
            f.data_dir.join("sessions").join(id),
            asset.state == sharecast_store::AssetState::Recording,
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_asset",
            format!("no asset {id}"),
        )),
    }
}

/// The asset's directory.
async fn asset_dir(f: &Frames, id: &str) -> Result<PathBuf, ApiError> {
    Ok(asset_dir_and_state(f, id).await?.0)
}

fn jpeg(result: Result<Vec<u8>, FrameError>, id: &str) -> Result<Response, ApiError> {
    jpeg_cached(result, id, "public, max-age=60")
}

fn jpeg_cached(
    result: Result<Vec<u8>, FrameError>,
    id: &str,
    cache_control: &'static str,
) -> Result<Response, ApiError> {
    match result {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, cache_control),
            ],
            bytes,
        )
            .into_response()),
        Err(FrameError::NotReady(why)) => {
            let mut response = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("asset {id} has no frame to show yet: {why}"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            Ok(response)
        }
        Err(FrameError::PastEnd { t_ms, duration_ms }) => Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "past_end",
            format!("t_ms={t_ms} is past the end of asset {id} ({duration_ms} ms)"),
        )),
        Err(FrameError::NoVideo(why)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_video",
            format!("asset {id} has no video frame: {why}"),
        )),
        Err(FrameError::Other(e)) => Err(ApiError::internal(
            e.context(format!("still frame of asset {id}")),
        )),
    }
}

pub(crate) async fn frame(
    State(f): State<Frames>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let t_ms = match q.get("t_ms").map(|s| s.trim().parse::<u64>()) {
        Some(Ok(t)) => t,
        Some(Err(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_time",
                "t_ms must be a whole number of milliseconds, 0 or more",
            ))
        }
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_time",
                "the t_ms query parameter is required",
            ))
        }
    };
    let dir = asset_dir(&f, &id).await?;
    jpeg(f.source.frame_jpeg(&dir, t_ms).await, &id)
}

pub(crate) async fn poster(
    State(f): State<Frames>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let (dir, live) = asset_dir_and_state(&f, &id).await?;
    if live {
        // Not cached: the VOD poster replaces it when the session ends.
        jpeg_cached(f.source.live_poster(&dir).await, &id, "no-cache")
    } else {
        jpeg(f.source.poster(&dir).await, &id)
    }
}
