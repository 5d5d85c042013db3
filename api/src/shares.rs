//! Shares, deliveries and subscriptions over HTTP: the JSON routes, the SMS
//! gateway's callback, and the share page `/s/{token}`. The work is the
//! [`ShareService`]'s (crate `sharecast-share`); this module parses
//! requests and shapes answers. See `docs/http-api.md` ("Shares,
//! deliveries, subscriptions").

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sharecast_share::{
    CreatedShare, ErrorKind, LivePlayback, NewShare, NewSubscription, Share, SharePage,
    ShareService,
};
use sharecast_store::{Delivery, Subscription};

use crate::access::{AnyCaller, AuthDevice, Caller};
use crate::error::{code_for_status, ApiError, ApiPath as Path, ApiQuery as Query, ErrorCodeTag};

/// A JSON body as the share and subscription routes read it (documented in
/// `docs/http-api.md`): whatever the content type, and every body that is
/// not the expected JSON (not JSON, a missing or an unknown field) is 400
/// `bad_json`.
pub(crate) struct ShareBody<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ShareBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), code_for_status(e.status()), e.body_text()))?;
        serde_json::from_slice(&body)
            .map(ShareBody)
            .map_err(|e| ApiError::bad_request("bad_json", format!("request body: {e}")))
    }
}

/// `{"shares": [...]}`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Shares {
    shares: Vec<Share>,
}

/// `{"share": {...}, "deliveries": [...]}`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct ShareWithDeliveries {
    share: Share,
    deliveries: Vec<Delivery>,
}

/// `{"share": {...}}`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct OneShare {
    share: Share,
}

/// `{"deliveries": [...]}`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Deliveries {
    deliveries: Vec<Delivery>,
}

/// `{"subscriptions": [...]}`.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Subscriptions {
    subscriptions: Vec<Subscription>,
}

/// `POST /api/v1/shares`: 201 with the share, its token and deliveries.
pub(crate) async fn create_share(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    ShareBody(req): ShareBody<NewShare>,
) -> Result<(StatusCode, Json<CreatedShare>), ApiError> {
    Ok((StatusCode::CREATED, Json(svc.create(&device, req).await?)))
}

#[derive(Deserialize)]
pub(crate) struct Limit {
    limit: Option<i64>,
}

/// `GET /api/v1/shares?limit=N`: the device's shares, newest first.
pub(crate) async fn list_shares(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Query(q): Query<Limit>,
) -> Result<Json<Shares>, ApiError> {
    let shares = svc.list(&device, q.limit).await?;
    Ok(Json(Shares { shares }))
}

/// `GET /api/v1/shares/{id}`: the share and its deliveries.
pub(crate) async fn get_share(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(id): Path<String>,
) -> Result<Json<ShareWithDeliveries>, ApiError> {
    let share = svc.get(&device, &id).await?;
    let deliveries = svc.deliveries(&device, &id).await?;
    Ok(Json(ShareWithDeliveries { share, deliveries }))
}

/// `GET /api/v1/shares/{id}/deliveries`.
pub(crate) async fn share_deliveries(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(id): Path<String>,
) -> Result<Json<Deliveries>, ApiError> {
    let deliveries = svc.deliveries(&device, &id).await?;
    Ok(Json(Deliveries { deliveries }))
}

/// `DELETE /api/v1/shares/{id}`: revoke.
pub(crate) async fn revoke_share(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(id): Path<String>,
) -> Result<Json<OneShare>, ApiError> {
    let share = svc.revoke(&device, &id).await?;
    Ok(Json(OneShare { share }))
}

/// `POST /api/v1/live/{id}/playback-tokens`: a playback token for a live
/// session, for the device that records it (or the admin), with the URLs
/// that carry it.
pub(crate) async fn issue_playback_token(
    State(svc): State<ShareService>,
    AnyCaller(caller): AnyCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<LivePlayback>), ApiError> {
    let device = match caller {
        Caller::Device(device) => Some(device),
        // The admin watches any session.
        _ => None,
    };
    let issued = svc.playback_token(device.as_ref(), &id).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// `POST /api/v1/subscriptions`: 201 new, 200 updated.
pub(crate) async fn subscribe(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    ShareBody(req): ShareBody<NewSubscription>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    let s = svc.subscribe(&device, req).await?;
    let status = if s.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(s.subscription)))
}

/// `GET /api/v1/subscriptions`.
pub(crate) async fn list_subscriptions(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
) -> Result<Json<Subscriptions>, ApiError> {
    let subscriptions = svc.subscriptions(&device).await?;
    Ok(Json(Subscriptions { subscriptions }))
}

/// `DELETE /api/v1/subscriptions/{recipient}`.
pub(crate) async fn unsubscribe(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(recipient): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(svc.unsubscribe(&device, &recipient).await?))
}

#[derive(Deserialize)]
pub(crate) struct Inbound {
    from: Option<String>,
    text: Option<String>,
    /// Checked by the access policy (`sms_gateway`).
    #[allow(dead_code)]
    key: Option<String>,
}

/// An SMS received by the gateway (Kannel `sms-service` get-url, e.g.
/// `/api/v1/sms/inbound?from=%p&text=%a`): STOP, START or anything else.
/// The answer is the reply text. Only the gateway calls it: the access
/// policy checks its key (`sms.inbound_key`).
pub(crate) async fn inbound(
    State(svc): State<ShareService>,
    Query(q): Query<Inbound>,
) -> Result<Response, ApiError> {
    let reply = svc.sms_reply(q.from.as_deref(), q.text.as_deref()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], reply).into_response())
}

#[derive(Deserialize)]
pub(crate) struct DeliveryReport {
    delivery: Option<String>,
    part: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Checked by the access policy (`sms_gateway`).
    #[allow(dead_code)]
    key: Option<String>,
}

/// A delivery report from the gateway (Kannel's `dlr-url`, which the
/// delivery worker sets on every SMS part it sends:
/// `/api/v1/sms/dlr?key=…&delivery=ID&part=N&type=%d`). Only the gateway
/// calls it: the access policy checks its key (`sms.inbound_key`).
pub(crate) async fn delivery_report(
    State(svc): State<ShareService>,
    Query(q): Query<DeliveryReport>,
) -> Result<Response, ApiError> {
    let answer = svc
        .delivery_report(q.delivery.as_deref(), q.part.as_deref(), q.kind.as_deref())
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        answer,
    )
        .into_response())
}

/// `GET /assets/hls.js`: the share page's HLS player, from npm.
pub(crate) async fn hls_js(State(svc): State<ShareService>) -> Response {
    npm_file(
        &svc,
        "hls.js/dist/hls.min.js",
        "text/javascript; charset=utf-8",
    )
    .await
}

/// `GET /assets/uplot.js`: the admin dashboard's charting library, from npm.
pub(crate) async fn uplot_js(State(svc): State<ShareService>) -> Response {
    npm_file(
        &svc,
        "uplot/dist/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
    )
    .await
}

/// `GET /assets/uplot.css`: uPlot's style sheet, from npm.
pub(crate) async fn uplot_css(State(svc): State<ShareService>) -> Response {
    npm_file(&svc, "uplot/dist/uPlot.min.css", "text/css; charset=utf-8").await
}

/// A file of an npm package installed under `web_dir/node_modules`
/// (`scripts/setup.sh` runs `npm ci` there); 503 while it is missing.
async fn npm_file(svc: &ShareService, file: &str, content_type: &'static str) -> Response {
    let web_dir = &svc.config().web_dir;
    let path = web_dir.join("node_modules").join(file);
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "asset_missing",
            format!(
                "{} is missing ({e}); run `npm ci` in {} (scripts/setup.sh does)",
                path.display(),
                web_dir.display()
            ),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    t: Option<String>,
}

/// Escape text for HTML content and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    sharecast_formats::share::xml::escape_markup(s)
}

/// A page that says why there is nothing to show, with the error's status
/// and code (counted in `/metrics` like the JSON errors).
fn message_page(status: StatusCode, code: &'static str, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t} · Sharecast</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}}</style></head>\
<body><h1>{t}</h1><p id=\"reason\" data-code=\"{code}\">{m}</p></body></html>",
        t = html_escape(title),
        m = html_escape(text),
    );
    let mut r = (status, Html(body)).into_response();
    r.extensions_mut().insert(ErrorCodeTag(code));
    r
}

/// `GET /s/{token}[?t=SECONDS]`: the share page; refusals are pages too.
pub(crate) async fn share_page(
    State(svc): State<ShareService>,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let e = match svc.page(&token, q.t.as_deref()).await {
        Ok(page) => {
            let html = Html(share_page_html(&page));
            return Ok(([(header::CACHE_CONTROL, "no-store")], html).into_response());
        }
        Err(e) if e.kind() == ErrorKind::Internal => return Err(e.into()),
        Err(e) => e,
    };
    let title = match e.code() {
        "unknown_share" => "Share not found",
        "share_revoked" => "Share revoked",
        "share_expired" => "Share expired",
        "bad_time" => "Bad start time",
        _ => "Video unavailable",
    };
    let (code, text) = (e.code(), e.to_string());
    Ok(message_page(ApiError::from(e).status(), code, title, &text))
}

/// The Open Graph tags of a share page, for link previews.
fn open_graph(p: &SharePage) -> String {
    let mut og = format!(
        "<meta property=\"og:type\" content=\"video.other\">\n<meta property=\"og:title\" content=\"{}\">\n<meta property=\"og:url\" content=\"{}\">\n<meta property=\"og:image\" content=\"{}\">\n<meta property=\"og:site_name\" content=\"Sharecast\">\n",
        html_escape(&p.title),
        html_escape(&p.page_url),
        html_escape(&p.poster_url)
    );
    if !p.live {
        og.push_str(&format!(
            "<meta property=\"og:video\" content=\"{}{}\">\n<meta property=\"og:video:type\" content=\"video/mp4\">\n",
            p.public_url, p.vod_path
        ));
        // As shown: a link preview embeds the picture upright.
        let (w, h) = p.display_size;
        if w > 0 && h > 0 {
            og.push_str(&format!(
                "<meta property=\"og:video:width\" content=\"{w}\">\n<meta property=\"og:video:height\" content=\"{h}\">\n"
            ));
        }
    }
    og
}

/// The share page: a `<video>` of the VOD, or of the live stream through
/// hls.js, starting at the time asked for.
fn share_page_html(p: &SharePage) -> String {
    let (data_src, script) = if p.live {
        (
            format!("data-hls=\"{}\"", html_escape(&p.hls_path)),
            "<script src=\"/assets/hls.js\"></script>\n",
        )
    } else {
        (format!("data-src=\"{}\"", html_escape(&p.vod_path)), "")
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Sharecast</title>
{og}<style>body{{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}}main{{max-width:960px;margin:0 auto;padding:1em}}video{{width:100%;background:#000}}#status{{color:#aaa}}</style>
{script}</head>
<body><main>
<h1>{title}</h1>
<video id="video" controls muted playsinline preload="auto" poster="{poster}" {data_src} data-start="{start_s}" data-live="{live}"></video>
<p id="status">{kind}</p>
</main>
<script>
(function () {{
  var v = document.getElementById('video');
  var status = document.getElementById('status');
  var start = parseFloat(v.dataset.start) || 0;
  var seeked = false;
  v.addEventListener('loadedmetadata', function () {{
    if (start > 0 && !seeked) {{
      seeked = true;
      var d = v.duration;
      v.currentTime = (isFinite(d) && d > 0) ? Math.min(start, d) : start;
    }}
    var p = v.play();
    if (p && p.catch) p.catch(function (e) {{ status.textContent = 'Press play (' + e.name + ')'; }});
  }});
  v.addEventListener('error', function () {{ status.textContent = 'This video cannot be played here.'; }});
  if (v.dataset.hls) {{
    // hls.js over Media Source Extensions first; native HLS (Safari, iOS)
    // otherwise.
    if (window.Hls && window.Hls.isSupported()) {{ var h = new window.Hls(); h.loadSource(v.dataset.hls); h.attachMedia(v); }}
    else if (v.canPlayType('application/vnd.apple.mpegurl')) {{ v.src = v.dataset.hls; }}
    else {{ status.textContent = 'Live playback needs hls.js, which did not load.'; }}
  }} else {{
    v.src = v.dataset.src;
  }}
}})();
</script>
</body>
</html>
"#,
        title = html_escape(&p.title),
        og = open_graph(p),
        poster = html_escape(&p.poster_url),
        start_s = p.start_s,
        live = p.live,
        kind = if p.live { "Live now" } else { "Recorded video" },
    )
}
