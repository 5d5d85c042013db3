//! HTTP routes. See `docs/http-api.md`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::access::Scope;
use crate::error::{ApiPath, ApiQuery};
use crate::metrics::HttpMetrics;
use sharecast_formats::status::SessionSnapshot;
use sharecast_store::Store;
use sharecast_tokens::valid_id;

/// Returns the open ingest sessions.
pub type SessionsFn = Arc<dyn Fn() -> Vec<SessionSnapshot> + Send + Sync>;

/// HTTP configuration.
#[derive(utoipa::ToSchema, Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// TCP address to listen on. Default `0.0.0.0:8080`.
    pub listen: String,
    /// Base URL clients use to reach this server, for links in attributes and
    /// messages. Empty: `http://127.0.0.1:<port it listens on>`. Default
    /// empty.
    pub public_url: String,
    /// Whether `/metrics` answers without the admin token (for a Prometheus
    /// on a trusted network that sends no credentials). Default false: the
    /// scraper sends `Authorization: Bearer <admin token>`.
    pub metrics_public: bool,
    /// Largest request body, bytes (larger: 413). Default 8 MiB.
    pub max_body_bytes: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            public_url: String::new(),
            metrics_public: false,
            max_body_bytes: 8 << 20,
        }
    }
}

/// Admin dashboard and API settings (the `[admin]` table).
#[derive(utoipa::ToSchema, Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Token for `/admin` and `/api/v1/admin/` (`Authorization: Bearer`).
    /// Empty (default): generated at first start into
    /// `<data_dir>/admin-token` and printed by `serve`.
    pub token: String,
}

/// The HTTP gateway.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    data_dir: PathBuf,
    sessions: SessionsFn,
    /// Every component's families, and the gateway's own.
    registry: Registry,
    http: HttpMetrics,
}

pub use crate::error::{ApiError, ErrorCodeTag};

impl Gateway {
    /// The metadata store.
    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    /// A gateway over a store and data directory; `/metrics` encodes
    /// `registry` (every component's families), to which the gateway adds
    /// its request and error counts (`http_…`, under the registry's prefix).
    pub fn new(
        store: Store,
        data_dir: PathBuf,
        sessions: SessionsFn,
        mut registry: Registry,
    ) -> Self {
        let http = HttpMetrics::default();
        registry.register_collector(Box::new(http.clone()));
        Self {
            inner: Arc::new(Inner {
                store,
                data_dir,
                sessions,
                registry,
                http,
            }),
        }
    }

    /// The whole application: `routes` (every route, each with its access
    /// rule; see [`crate::routes`]), a JSON 404 for anything else, the JSON
    /// error shape on every error answer, the body limit, and the request
    /// and error counts of `/metrics`.
    pub fn app(&self, routes: Router, max_body_bytes: usize) -> Router {
        routes
            .fallback(not_found)
            .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
            .layer(axum::middleware::from_fn(crate::error::json_errors))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                count_requests,
            ))
    }

    /// Serve `app` on a bound listener until the future is dropped (with the
    /// peer address available to handlers that rate-limit by it).
    pub async fn serve(app: Router, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
    }
}

async fn count_requests(
    State(g): State<Gateway>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    g.inner.http.request();
    let r = next.run(req).await;
    if r.status().is_client_error() || r.status().is_server_error() {
        let code = r
            .extensions()
            .get::<ErrorCodeTag>()
            .map(|t| t.0)
            .unwrap_or("other");
        g.inner.http.error(r.status().as_u16(), code);
    }
    r
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The answer of `GET /api/v1/health`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `ok` (the process answers).
    status: &'static str,
    /// The server's version.
    version: &'static str,
}

/// `GET /api/v1/health`.
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The answer of `GET /api/v1/assets`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AssetList {
    /// Newest first.
    assets: Vec<sharecast_store::Asset>,
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/assets`: the caller's assets (every asset for the admin).
pub(crate) async fn list_assets(
    State(g): State<Gateway>,
    scope: Scope,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<AssetList>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let store = &g.inner.store;
    let assets = match &scope {
        Scope::Device(d) => store.assets_of(&d.id, limit).await,
        Scope::All => store.assets(limit).await,
    }
    .map_err(ApiError::internal)?;
    Ok(Json(AssetList { assets }))
}

/// `GET /api/v1/assets/{id}`, for the device that recorded it.
pub(crate) async fn get_asset(
    State(g): State<Gateway>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<sharecast_store::Asset>, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::bad_request("bad_id", "asset ids are hexadecimal"));
    }
    match g.inner.store.asset(&id).await.map_err(ApiError::internal)? {
        Some(a) => Ok(Json(a)),
        None => Err(ApiError::not_found(
            "unknown_asset",
            format!("no asset {id}"),
        )),
    }
}

/// The answer of `GET /api/v1/sessions`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SessionList {
    /// The open ingest sessions.
    sessions: Vec<SessionSnapshot>,
}

/// `GET /api/v1/sessions`: the caller's open sessions (all for the admin).
pub(crate) async fn list_sessions(State(g): State<Gateway>, scope: Scope) -> Json<SessionList> {
    let mut sessions = (g.inner.sessions)();
    sessions.retain(|s| scope.covers(&s.device_id));
    Json(SessionList { sessions })
}

/// A `Range` header that is not one well-formed byte range is ignored (RFC
/// 9110 §14.2: a server may ignore a Range it does not support, and must
/// ignore one it cannot parse): the whole file is sent with 200. A single
/// range that cannot be satisfied still gets 416.
pub(crate) fn single_range_or_none(headers: &mut HeaderMap) {
    let keep = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
        .is_some_and(|spec| {
            let spec = spec.trim();
            !spec.contains(',')
                && spec.split_once('-').is_some_and(|(a, b)| {
                    let (a, b) = (a.trim(), b.trim());
                    let num = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_digit());
                    match (a.is_empty(), b.is_empty()) {
                        (false, true) => num(a),
                        (true, false) => num(b),
                        (false, false) => {
                            num(a) && num(b) && a.parse::<u64>().ok() <= b.parse::<u64>().ok()
                        }
                        (true, true) => false,
                    }
                })
        });
    if !keep {
        headers.remove(header::RANGE);
    }
}

/// `GET|HEAD /vod/{id}/{file}`: a finished recording's file, with Range.
pub(crate) async fn vod_file(
    State(g): State<Gateway>,
    ApiPath((id, file)): ApiPath<(String, String)>,
    mut req: Request,
) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::bad_request("bad_id", "asset ids are hexadecimal"));
    }
    let ok_name = file.len() <= 64
        && file.ends_with(".mp4")
        && file[..file.len() - 4]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok_name {
        return Err(ApiError::bad_request("bad_file", "no such file name"));
    }
    let asset = g.inner.store.asset(&id).await.map_err(ApiError::internal)?;
    match asset {
        Some(a) if a.state == sharecast_store::AssetState::Ready => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!("asset {id} is still recording"),
            ))
        }
        None => {
            return Err(ApiError::not_found(
                "unknown_asset",
                format!("no asset {id}"),
            ))
        }
    }
    let path = g.inner.data_dir.join("sessions").join(&id).join(&file);
    if !path.is_file() {
        return Err(ApiError::not_found(
            "unknown_file",
            format!("no file {file} for asset {id}"),
        ));
    }
    single_range_or_none(req.headers_mut());
    let mp4 = "video/mp4"
        .parse()
        .map_err(|_| ApiError::internal(anyhow::anyhow!("the video/mp4 type")))?;
    let mut resp = ServeFile::new_with_mime(&path, &mp4)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("serving {}: {e}", path.display())))?
        .map(Body::new);
    resp.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(resp)
}

/// `GET /metrics`: the registry in the Prometheus text format (0.0.4).
pub(crate) async fn metrics(State(g): State<Gateway>) -> Result<Response, ApiError> {
    let mut out = String::new();
    prometheus_text::encode(&mut out, &g.inner.registry)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("encoding /metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_after(v: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        single_range_or_none(&mut h);
        h.get(header::RANGE)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn only_single_well_formed_ranges_are_kept() {
        for ok in ["bytes=0-99", "bytes=100-", "bytes=-500", "bytes= 5-5 "] {
            assert!(range_after(ok).is_some(), "{ok}");
        }
        for ignored in [
            "bytes=0-1,5-6",
            "bytes=abc",
            "bytes=5-1",
            "bytes=-",
            "items=0-1",
            "bytes=0x1-2",
            "",
        ] {
            assert_eq!(range_after(ignored), None, "{ignored}");
        }
    }
}
