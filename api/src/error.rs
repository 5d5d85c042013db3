//! The one error answer of the HTTP API, and the extractors that turn bad
//! requests into it.
//!
//! Every error answer has the JSON shape documented in `docs/http-api.md`:
//! `{"error": {"code": "...", "message": "..."}}`, with the status that fits.
//! Bodies that are too large (413), of the wrong type (415) or that do not
//! match the expected fields (422) get it too: handlers take [`ApiJson`] and
//! [`ApiQuery`] instead of axum's `Json` and `Query`, and [`json_errors`]
//! gives the same shape to the few answers axum makes itself (405, a body
//! over the limit read elsewhere).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

/// A JSON error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error answer with its status, machine-readable code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with a code and message.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 500: logged with its whole chain; the client gets the message too
    /// (no secrets are put into internal errors).
    pub fn internal(e: anyhow::Error) -> Self {
        tracing::error!(error = %format!("{e:#}"), "internal error serving HTTP");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{e:#}"),
        )
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's code.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
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

/// A share service's error as an answer: its kind gives the status, its
/// code and message go as they are; an internal one is logged.
impl From<sharecast_share::Error> for ApiError {
    fn from(e: sharecast_share::Error) -> Self {
        use sharecast_share::ErrorKind;
        let status = match e.kind() {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Gone => StatusCode::GONE,
            ErrorKind::OutOfRange => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        match e {
            sharecast_share::Error::Internal(e) => ApiError::internal(e),
            e => ApiError::new(status, e.code(), e.to_string()),
        }
    }
}

/// The error code of an error answer, for `/metrics` (HTML pages that
/// answer an error set it too).
#[derive(Clone, Copy, Debug)]
pub struct ErrorCodeTag(pub &'static str);

/// The code an error answer gets from its status alone, where nothing more
/// specific is known.
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "too_large",
        415 => "unsupported_media_type",
        416 => "bad_range",
        422 => "invalid_body",
        429 => "too_many_requests",
        500..=599 => "internal",
        _ => "error",
    }
}

/// A JSON body, whose rejections are [`ApiError`]s: 413 `too_large`, 415
/// `unsupported_media_type` (no `Content-Type: application/json`), 400
/// `bad_json` (not JSON) and 422 `invalid_body` (JSON without the expected
/// fields), each with the reason.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    let status = e.status();
    let code = match &e {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "bad_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ => code_for_status(status),
    };
    ApiError::new(status, code, format!("request body: {}", e.body_text()))
}

/// Query parameters, whose rejection is 400 `bad_query` with the reason.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::bad_request("bad_query", e.body_text())
}

/// Path parameters, whose rejection is 400 `bad_path` with the reason.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(e) => Err(path_rejection(e)),
        }
    }
}

fn path_rejection(e: PathRejection) -> ApiError {
    ApiError::new(e.status(), code_for_status(e.status()), e.body_text())
}

/// Gives the JSON error shape to error answers made outside the handlers
/// (axum's own 405, a body limit hit by a plain extractor): an error answer
/// that is neither JSON nor a page keeps its status and gets the JSON body
/// with the code its status implies.
pub async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    let r = next.run(req).await;
    let status = r.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return r;
    }
    let content_type = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let shaped = content_type.starts_with("application/json")
        || content_type.starts_with("text/html")
        || r.extensions().get::<ErrorCodeTag>().is_some();
    if shaped {
        return r;
    }
    let (parts, body) = r.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("request refused")
                .to_string()
        });
    let mut out = ApiError::new(status, code_for_status(status), text).into_response();
    // Keep what the original answer said beyond its body (Allow on a 405,
    // Retry-After, Content-Range on a 416).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Body {
        #[allow(dead_code)]
        name: String,
    }

    async fn handler(ApiJson(_b): ApiJson<Body>) -> &'static str {
        "ok"
    }

    fn app() -> axum::Router {
        axum::Router::new()
            .route("/", post(handler))
            .layer(axum::extract::DefaultBodyLimit::max(64))
            .layer(axum::middleware::from_fn(json_errors))
    }

    async fn call(req: Request) -> (StatusCode, serde_json::Value) {
        let r = app().oneshot(req).await.unwrap();
        let status = r.status();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    fn req(method: &str, ct: Option<&str>, body: &str) -> Request {
        let mut b = Request::builder().method(method).uri("/");
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(axum::body::Body::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn bad_bodies_get_the_json_error_shape() {
        let json = Some("application/json");
        let cases = [
            (req("POST", None, "{}"), 415, "unsupported_media_type"),
            (req("POST", json, "{"), 400, "bad_json"),
            (req("POST", json, "{\"x\":1}"), 422, "invalid_body"),
            (req("POST", json, &"x".repeat(100)), 413, "too_large"),
            (req("GET", json, ""), 405, "method_not_allowed"),
        ];
        for (r, status, code) in cases {
            let (s, v) = call(r).await;
            assert_eq!(s.as_u16(), status, "{v}");
            assert_eq!(v["error"]["code"], code, "{v}");
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
        let (s, _) = call(req("POST", json, "{\"name\":\"a\"}")).await;
        assert_eq!(s, StatusCode::OK);
    }
}
