//! HTTP side of the live relay (axum): HLS playlists and segments, the
//! stream status, and viewer heartbeats. Merged into the gateway's router by
//! the binary.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Json;
use serde::Deserialize;

use crate::hls::{Directive, HlsStream, LiveStartError, PartAnswer, LIVE_RENDITION};
use crate::lock;
use crate::relay::Shared;
use crate::viewers::{Heartbeat, HeartbeatRefused};
use sharecast_formats::status::{HeartbeatAnswer, HeartbeatBody, Protocol};

/// How long a playlist request waits for the first segment.
const FIRST_SEGMENT_WAIT: Duration = Duration::from_secs(10);

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message.into() } });
    (status, Json(body)).into_response()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.')
}

#[derive(Deserialize, Default)]
struct TokenQuery {
    token: Option<String>,
    /// Resume: content position (ms of capture) to start playing from.
    start_ms: Option<String>,
    /// Blocking playlist reload: answer once this media sequence number is
    /// in the playlist.
    #[serde(rename = "_HLS_msn")]
    hls_msn: Option<String>,
    /// With `_HLS_msn`: answer once this part of that segment (or a later
    /// part) is in the playlist.
    #[serde(rename = "_HLS_part")]
    hls_part: Option<String>,
    /// Delta update (`YES` or `v2`): the oldest segments are skipped.
    #[serde(rename = "_HLS_skip")]
    hls_skip: Option<String>,
}

/// 400 `bad_directive`, counted.
fn bad_directive(s: &Shared, message: String) -> Response {
    s.reject("bad_directive");
    error(StatusCode::BAD_REQUEST, "bad_directive", message)
}

/// Holds a blocking playlist reload (`_HLS_msn`, `_HLS_part`) until the
/// playlist has what it asks for. Err is the answer to send, counted: 400
/// `bad_directive` for a request too far ahead (RFC 8216bis 6.2.5.2), 503
/// `blocking_timeout` when it did not come within three target durations.
#[allow(clippy::result_large_err)]
async fn wait_for_directive(
    s: &Shared,
    stream: &HlsStream,
    directive: Directive,
) -> Result<(), Response> {
    stream
        .check_directive(directive)
        .map_err(|m| bad_directive(s, m))?;
    if stream.wait_directive(directive).await {
        return Ok(());
    }
    s.reject("blocking_timeout");
    Err(error(
        StatusCode::SERVICE_UNAVAILABLE,
        "blocking_timeout",
        format!(
            "the playlist did not reach segment {} part {:?} within {} s",
            directive.msn,
            directive.part,
            stream.block_limit().as_secs()
        ),
    ))
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

impl TokenQuery {
    /// The playback token: `?token=`, else `Authorization: Bearer`.
    fn token<'a>(&'a self, headers: &'a HeaderMap) -> Option<&'a str> {
        self.token.as_deref().or_else(|| bearer(headers))
    }

    /// The resume position, if asked for. Err is the answer to send.
    #[allow(clippy::result_large_err)]
    fn start_ms(&self) -> Result<Option<u64>, Response> {
        match self.start_ms.as_deref() {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                error(
                    StatusCode::BAD_REQUEST,
                    "bad_start",
                    "start_ms is a content position in milliseconds",
                )
            }),
        }
    }
}

impl Shared {
    /// The stream, after the token check. Err is the answer to send.
    // The error is the HTTP answer itself; handlers return it as is.
    #[allow(clippy::result_large_err)]
    fn stream_for(&self, id: &str, token: Option<&str>) -> Result<Arc<HlsStream>, Response> {
        if !valid_id(id) {
            self.reject("bad_id");
            return Err(error(StatusCode::BAD_REQUEST, "bad_id", "bad stream id"));
        }
        if let Some(auth) = lock(&self.authorizer).clone() {
            if !auth(id, token) {
                self.reject("unauthorized");
                return Err(error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a playback token is needed for this stream",
                ));
            }
        }
        match lock(&self.hls).get(id) {
            Some(s) => Ok(s.clone()),
            None => {
                self.reject("unknown_stream");
                Err(error(
                    StatusCode::NOT_FOUND,
                    "unknown_stream",
                    format!("no live stream {id}"),
                ))
            }
        }
    }
}

fn query_suffix(q: &TokenQuery) -> String {
    match &q.token {
        Some(t) if !t.is_empty() => {
            let safe: String = t
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
                .collect();
            format!("?token={safe}")
        }
        _ => String::new(),
    }
}

fn playlist(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-cache, no-store"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

fn media(body: bytes::Bytes, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "video/mp4"),
            (header::CACHE_CONTROL, cache),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response()
}

/// What a playlist request waits for and asks: the stream's first
/// segment (503 without one in time), and the resume position, if any (400,
/// counted, for one that is not a number). Err is the answer to send.
#[allow(clippy::result_large_err)]
async fn ready_at(s: &Shared, stream: &HlsStream, q: &TokenQuery) -> Result<Option<u64>, Response> {
    if !stream.wait_ready(FIRST_SEGMENT_WAIT).await {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_segment_yet",
            "the stream has no segment yet",
        ));
    }
    q.start_ms().inspect_err(|_| s.reject("bad_start"))
}

async fn stream_file(
    State(s): State<Arc<Shared>>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let stream = match s.stream_for(&id, q.token(&headers)) {
        Ok(st) => st,
        Err(r) => return r,
    };
    match file.as_str() {
        "index.m3u8" => {
            let start = match ready_at(&s, &stream, &q).await {
                Ok(start) => start,
                Err(r) => return r,
            };
            let mut query = query_suffix(&q);
            if let Some(p) = start {
                query.push(if query.is_empty() { '?' } else { '&' });
                query.push_str(&format!("start_ms={p}"));
            }
            playlist(stream.multivariant(&query))
        }
        "status.json" => {
            let mut r = Json(stream.status()).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-cache"),
            );
            r
        }
        _ => {
            s.reject("unknown_file");
            error(StatusCode::NOT_FOUND, "unknown_file", "no such file")
        }
    }
}

async fn rendition_file(
    State(s): State<Arc<Shared>>,
    Path((id, rendition, file)): Path<(String, String, String)>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    let stream = match s.stream_for(&id, q.token(&headers)) {
        Ok(st) => st,
        Err(r) => return r,
    };
    let stream = if rendition == LIVE_RENDITION {
        stream
    } else if let Some(r) = stream.rendition(&rendition) {
        r
    } else {
        s.reject("unknown_rendition");
        return error(
            StatusCode::NOT_FOUND,
            "unknown_rendition",
            format!("stream {id} has no live rendition {rendition:?}"),
        );
    };
    if file == "index.m3u8" {
        return media_playlist(&s, &stream, &q).await;
    }
    if file == "init.mp4" {
        return media(stream.init(), "max-age=3600");
    }
    if let Some(id) = numbered(&file, "part") {
        return part(&s, &stream, id).await;
    }
    segment(&s, &stream, &file)
}

/// `n` of `{prefix}{n}.m4s`.
fn numbered(file: &str, prefix: &str) -> Option<u64> {
    file.strip_prefix(prefix)?
        .strip_suffix(".m4s")?
        .parse::<u64>()
        .ok()
}

/// A partial segment, `part{n}.m4s`: at once if it exists; the next ones
/// (the preload hint) are held until they do (blocking preload), at most
/// three target durations (then 503 `part_not_ready`); any other is 404.
async fn part(s: &Shared, stream: &HlsStream, id: u64) -> Response {
    match stream.part(id).await {
        PartAnswer::Ready(data) => {
            s.hls_parts_served.inc();
            media(data, "max-age=3600")
        }
        PartAnswer::Missing => {
            s.reject("unknown_part");
            error(
                StatusCode::NOT_FOUND,
                "unknown_part",
                format!("part {id} is not (or no longer) available"),
            )
        }
        PartAnswer::Late => {
            s.reject("part_not_ready");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "part_not_ready",
                format!("part {id} was not ready in time"),
            )
        }
    }
}

/// A rendition's media playlist, once it has a segment; at a resume
/// position (`start_ms`) and after a blocking reload (`_HLS_msn`) if asked.
async fn media_playlist(s: &Shared, stream: &HlsStream, q: &TokenQuery) -> Response {
    // Directives that are not decimal integers, or `_HLS_part` without
    // `_HLS_msn`: 400 before anything waits.
    let directive = match Directive::parse(q.hls_msn.as_deref(), q.hls_part.as_deref()) {
        Ok(d) => d,
        Err(m) => return bad_directive(s, m),
    };
    let delta = match q.hls_skip.as_deref() {
        None => false,
        Some("YES" | "v2") => true,
        Some(other) => {
            return bad_directive(s, format!("_HLS_skip is YES or v2, not {other:?}"));
        }
    };
    let start = match ready_at(s, stream, q).await {
        Ok(start) => start,
        Err(r) => return r,
    };
    if let Some(d) = directive {
        if let Err(r) = wait_for_directive(s, stream, d).await {
            return r;
        }
    }
    match stream.media_playlist(&query_suffix(q), start, delta) {
        Ok(body) => playlist(body),
        Err(e @ LiveStartError::PastEnd { .. }) => {
            s.reject("past_end");
            error(StatusCode::RANGE_NOT_SATISFIABLE, "past_end", e.to_string())
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_segment_yet",
            e.to_string(),
        ),
    }
}

/// A media segment, `seg{n}.m4s`, while the stream still has it.
fn segment(s: &Shared, stream: &HlsStream, file: &str) -> Response {
    let Some(seq) = numbered(file, "seg") else {
        s.reject("unknown_file");
        return error(StatusCode::NOT_FOUND, "unknown_file", "no such file");
    };
    match stream.segment(seq) {
        Some(data) => {
            s.hls_segments_served.inc();
            media(data, "max-age=3600")
        }
        None => {
            s.reject("unknown_segment");
            error(
                StatusCode::NOT_FOUND,
                "unknown_segment",
                format!("segment {seq} is not (or no longer) available"),
            )
        }
    }
}

async fn heartbeat(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let hb: HeartbeatBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            s.reject("bad_heartbeat");
            return error(
                StatusCode::BAD_REQUEST,
                "bad_heartbeat",
                format!("invalid heartbeat: {e}"),
            );
        }
    };
    let token = bearer(&headers);
    if let Err(r) = s.stream_for(&id, token) {
        return r;
    }
    let short = |v: &Option<String>, n: usize| v.as_ref().is_none_or(|u| u.len() <= n);
    let protocol = match hb.protocol.as_deref() {
        None | Some("hls") => Protocol::Hls,
        Some("vod") => Protocol::Vod,
        Some(_) => {
            s.reject("bad_heartbeat");
            return error(
                StatusCode::BAD_REQUEST,
                "bad_heartbeat",
                "protocol is hls or vod",
            );
        }
    };
    if !valid_id(&hb.viewer_id)
        || !short(&hb.user, 128)
        || !short(&hb.state, 32)
        || hb.position_ms > 1000 * 3600 * 24 * 365
    {
        s.reject("bad_heartbeat");
        return error(
            StatusCode::BAD_REQUEST,
            "bad_heartbeat",
            "viewer_id: 1-64 of [A-Za-z0-9._-]; user ≤ 128 bytes; state ≤ 32 bytes",
        );
    }
    let beat = Heartbeat {
        viewer_id: hb.viewer_id,
        position_ms: hb.position_ms,
        user: hb.user,
        protocol,
        state: hb.state,
        leaving: hb.leaving,
        remote: headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(64).collect()),
        token: token.map(|t| t.chars().take(128).collect()),
    };
    match s.tracker.heartbeat(&id, beat) {
        Ok(()) => Json(HeartbeatAnswer {
            ok: true,
            timeout_ms: s.tracker.timeout().as_millis() as u64,
        })
        .into_response(),
        Err(HeartbeatRefused::Kicked) => error(
            StatusCode::GONE,
            "kicked",
            "this viewer was removed by an admin",
        ),
    }
}

/// The player page (`web/watch/index.html`): HLS through hls.js, then the
/// VOD once the stream ended. hls.js itself is served at `/assets/hls.js`.
const WATCH_HTML: &str = include_str!("../../web/watch/index.html");

async fn watch_page(Path(id): Path<String>) -> Response {
    if !valid_id(&id) {
        return error(StatusCode::BAD_REQUEST, "bad_id", "bad stream id");
    }
    (
        [(header::CACHE_CONTROL, "no-cache")],
        axum::response::Html(WATCH_HTML),
    )
        .into_response()
}

/// The live relay's HTTP handlers, each with its state, for the server's
/// route table (which declares who may call each; see the gateway's
/// `routes` module).
pub struct LiveRoutes {
    /// `GET /watch/{id}`: the player page.
    pub watch: MethodRouter,
    /// `GET /live/{id}/{file}`: playlists, segments, status.
    pub stream_file: MethodRouter,
    /// `GET /live/{id}/{rendition}/{file}`: a rendition's playlist and segments.
    pub rendition_file: MethodRouter,
    /// `POST /api/v1/live/{id}/heartbeat`: a player's heartbeat.
    pub heartbeat: MethodRouter,
}

pub(crate) fn routes(shared: Arc<Shared>) -> LiveRoutes {
    LiveRoutes {
        watch: get(watch_page),
        stream_file: get(stream_file).with_state(shared.clone()),
        rendition_file: get(rendition_file).with_state(shared.clone()),
        heartbeat: post(heartbeat).with_state(shared),
    }
}
