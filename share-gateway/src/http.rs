//! HTTP routes. See `docs/http-api.md`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::store::Store;

/// Appends Prometheus text for one component.
pub type MetricsFn = Arc<dyn Fn(&mut String) + Send + Sync>;
/// Returns the open ingest sessions as JSON.
pub type SessionsFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// HTTP configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// TCP address to listen on. Default `0.0.0.0:8080`.
    pub listen: String,
    /// Base URL clients use to reach this server, for links in attributes and
    /// messages. Default `http://127.0.0.1:8080`.
    pub public_url: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
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
    metrics: Vec<MetricsFn>,
    http: HttpMetrics,
}

#[derive(Default)]
struct HttpMetrics {
    requests: AtomicU64,
    errors: Mutex<BTreeMap<(u16, &'static str), u64>>,
}

/// A JSON error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn internal(e: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{e:#}"), "internal error serving HTTP");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{e:#}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut r = (self.status, Json(body)).into_response();
        r.extensions_mut().insert(ErrorCodeTag(self.code));
        r
    }
}

/// The error code of a non-JSON error answer (HTML pages), for `/metrics`.
#[derive(Clone, Copy)]
pub(crate) struct ErrorCodeTag(pub(crate) &'static str);

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Gateway {
    /// A gateway over a store and data directory.
    pub fn new(
        store: Store,
        data_dir: PathBuf,
        sessions: SessionsFn,
        metrics: Vec<MetricsFn>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                data_dir,
                sessions,
                metrics,
                http: HttpMetrics::default(),
            }),
        }
    }

    /// The axum router with every route.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/api/v1/health", get(health))
            .route("/api/v1/assets", get(list_assets))
            .route("/api/v1/assets/{id}", get(get_asset))
            .route("/api/v1/sessions", get(list_sessions))
            .route("/vod/{id}/{file}", get(vod_file).head(vod_file))
            .route("/metrics", get(metrics))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                count_requests,
            ))
            .with_state(self.clone())
    }

    /// Serve on a bound listener until the future is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
        axum::serve(listener, self.router())
            .await
            .map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
    }

    /// Like [`Gateway::serve`], with `extra` routes (state applied, no
    /// fallback) merged in and counted in `/metrics` the same way.
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        extra: Router,
    ) -> anyhow::Result<()> {
        let extra = self.counted(extra);
        axum::serve(listener, self.router().merge(extra))
            .await
            .map_err(|e| anyhow::anyhow!("HTTP server: {e}"))
    }

    /// `routes` (state applied) behind the request and error counting of
    /// `/metrics`, ready to merge into [`Gateway::router`].
    pub fn counted(&self, routes: Router) -> Router {
        routes.layer(axum::middleware::from_fn_with_state(
            self.clone(),
            count_requests,
        ))
    }
}

async fn count_requests(
    State(g): State<Gateway>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    g.inner.http.requests.fetch_add(1, Ordering::Relaxed);
    let r = next.run(req).await;
    if r.status().is_client_error() || r.status().is_server_error() {
        let code = r
            .extensions()
            .get::<ErrorCodeTag>()
            .map(|t| t.0)
            .unwrap_or("other");
        let mut m = g
            .inner
            .http
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry((r.status().as_u16(), code)).or_insert(0) += 1;
    }
    r
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<i64>,
}

async fn list_assets(
    State(g): State<Gateway>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let assets = g
        .inner
        .store
        .assets(limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "assets": assets })))
}

async fn get_asset(
    State(g): State<Gateway>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "asset ids are hexadecimal",
        ));
    }
    match g.inner.store.asset(&id).await.map_err(ApiError::internal)? {
        Some(a) => Ok(Json(
            serde_json::to_value(a).map_err(|e| ApiError::internal(e.into()))?,
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_asset",
            format!("no asset {id}"),
        )),
    }
}

async fn list_sessions(State(g): State<Gateway>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "sessions": (g.inner.sessions)() }))
}

async fn vod_file(
    State(g): State<Gateway>,
    Path((id, file)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "asset ids are hexadecimal",
        ));
    }
    let ok_name = file.len() <= 64
        && file.ends_with(".mp4")
        && file[..file.len() - 4]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok_name {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_file",
            "no such file name",
        ));
    }
    let asset = g.inner.store.asset(&id).await.map_err(ApiError::internal)?;
    match asset {
        Some(a) if a.state == "ready" => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_ready",
                format!("asset {id} is still recording"),
            ))
        }
        None => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_asset",
                format!("no asset {id}"),
            ))
        }
    }
    let path = g.inner.data_dir.join("sessions").join(&id).join(&file);
    if !path.is_file() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_file",
            format!("no file {file} for asset {id}"),
        ));
    }
    let mut resp = ServeFile::new_with_mime(
        &path,
        &"video/mp4"
            .parse()
            .map_err(|_| ApiError::internal(anyhow::anyhow!("mime")))?,
    )
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

async fn metrics(State(g): State<Gateway>) -> Response {
    let mut out = String::new();
    for m in &g.inner.metrics {
        m(&mut out);
    }
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP sharecast_http_requests_total HTTP requests served\n# TYPE sharecast_http_requests_total counter\nsharecast_http_requests_total {}",
        g.inner.http.requests.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP sharecast_http_errors_total HTTP requests answered with an error, by status and code\n# TYPE sharecast_http_errors_total counter"
    );
    for ((status, code), n) in g
        .inner
        .http
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "sharecast_http_errors_total{{status=\"{status}\",code=\"{code}\"}} {n}"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
