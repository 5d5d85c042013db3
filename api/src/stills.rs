//! Still-frame shares over HTTP: making a still, its images, its page
//! `/p/{token}` (Open Graph tags for link previews, the download under the
//! chosen name, playback from the time point) and the oEmbed endpoint that
//! lets platforms embed it. The work is the [`Stills`] service's (crate
//! `sharecast-share`). See `docs/resume.md` ("Still-frame shares").

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use sharecast_share::{Oembed, Still, StillPage, StillRequest, Stills};

use crate::error::{ApiError, ApiJson as Json, ApiPath as Path, ApiQuery as Query};
use crate::shares::html_escape;

/// `POST /api/v1/stills`: a screenshot of a video at a time point, shared
/// as a link. Whoever may see the video may make one (the access policy
/// checks `content_id`).
pub(crate) async fn screenshot(
    State(s): State<Stills>,
    Json(req): Json<StillRequest>,
) -> Result<Json<Still>, ApiError> {
    Ok(Json(s.make(req).await?))
}

#[derive(Deserialize)]
pub(crate) struct DownloadQuery {
    #[serde(default)]
    download: Option<u8>,
}

/// `GET /api/v1/stills/{id}/{image.jpg|original.jpg}[?download=1]`.
pub(crate) async fn image_file(
    State(s): State<Stills>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<DownloadQuery>,
) -> Result<Response, ApiError> {
    let image = s.image(&id, &file, q.download == Some(1)).await?;
    let mut resp = ([(header::CONTENT_TYPE, "image/jpeg")], image.jpeg).into_response();
    if let Some(name) = image.download_name {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}

/// `GET /p/{token}`: the still's page.
pub(crate) async fn page(
    State(s): State<Stills>,
    Path(token): Path<String>,
) -> Result<Html<String>, ApiError> {
    Ok(Html(still_page_html(&s.page(&token).await?)))
}

fn still_page_html(p: &StillPage) -> String {
    let t = p.t_ms as f64 / 1000.0;
    let video = match &p.video_url {
        Some(u) => format!(
            r#"<video id="v" controls autoplay muted playsinline preload="auto" data-t="{t:.3}" src="{u}#t={t:.3}"></video>"#,
            u = html_escape(u)
        ),
        None => "<p>The video is still recording; the still is shown above.</p>".into(),
    };
    let desc = if p.comment.is_empty() {
        "A still shared from a video"
    } else {
        &p.comment
    };
    format!(
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
        title = html_escape(&p.title),
        desc = html_escape(desc),
        image = html_escape(&p.image_url),
        link = html_escape(&p.link),
        base = html_escape(&p.public_url),
        download = html_escape(&p.download_url),
        name = html_escape(&p.name),
        comment = html_escape(&p.comment),
        w = p.width,
        h = p.height,
    )
}

#[derive(Deserialize)]
pub(crate) struct OembedQuery {
    url: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    maxwidth: Option<u32>,
}

/// `GET /oembed?url=<still link>[&format=json][&maxwidth=N]`: an oEmbed
/// `photo`.
pub(crate) async fn oembed(
    State(s): State<Stills>,
    Query(q): Query<OembedQuery>,
) -> Result<Json<Oembed>, ApiError> {
    if q.format.as_deref().is_some_and(|f| f != "json") {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "format_not_supported",
            "only format=json",
        ));
    }
    Ok(Json(s.oembed(&q.url, q.maxwidth).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
