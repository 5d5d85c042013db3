//! Publishing keys over HTTP: a device makes, lists and revokes the stream
//! keys its RTMP publishers present (`docs/publishing.md`). The key itself
//! is answered once, when it is made.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sharecast_store::PublishingKey;

use crate::access::AuthDevice;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::http::Gateway;

/// Longest key name, characters.
const MAX_NAME_CHARS: usize = 100;

/// `POST /api/v1/publishing-keys` body.
#[derive(utoipa::ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    /// What the key is for ("OBS in the studio"); optional.
    #[serde(default)]
    name: String,
}

/// A key just made: its listing and the key, shown this once.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct CreatedKey {
    #[serde(flatten)]
    key: PublishingKey,
    /// The stream key (`sk_…`).
    stream_key: String,
}

/// `GET /api/v1/publishing-keys` answer.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Keys {
    publishing_keys: Vec<PublishingKey>,
}

/// `POST /api/v1/publishing-keys`: a new key of the calling device.
pub(crate) async fn create_key(
    State(g): State<Gateway>,
    AuthDevice(device): AuthDevice,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    if body.name.chars().count() > MAX_NAME_CHARS || body.name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bad_name",
            format!("a key name has at most {MAX_NAME_CHARS} characters and no control characters"),
        ));
    }
    let (key, stream_key) = g
        .store()
        .add_publishing_key(&device.id, &body.name)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(device = %device.name, key = %key.id, "publishing key made");
    Ok((StatusCode::CREATED, Json(CreatedKey { key, stream_key })))
}

/// `GET /api/v1/publishing-keys`: the calling device's keys (without the
/// keys themselves).
pub(crate) async fn list_keys(
    State(g): State<Gateway>,
    AuthDevice(device): AuthDevice,
) -> Result<Json<Keys>, ApiError> {
    let publishing_keys = g
        .store()
        .publishing_keys(&device.id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Keys { publishing_keys }))
}

/// `DELETE /api/v1/publishing-keys/{id}`: revoke one of the calling
/// device's keys; 404 `unknown_key` for another device's or a revoked one.
pub(crate) async fn revoke_key(
    State(g): State<Gateway>,
    AuthDevice(device): AuthDevice,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let revoked = g
        .store()
        .revoke_publishing_key(&device.id, &id)
        .await
        .map_err(ApiError::internal)?;
    if !revoked {
        return Err(ApiError::not_found(
            "unknown_key",
            format!("this device has no publishing key {id}"),
        ));
    }
    tracing::info!(device = %device.name, key = %id, "publishing key revoked");
    Ok(StatusCode::NO_CONTENT)
}
