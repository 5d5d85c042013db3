//! The HTTP side of resume everywhere (`docs/resume.md`): users and
//! terminals, cross-terminal history, interruption bookmarks, hand-off
//! between platforms and the on-demand jobs. Each handler parses its
//! request, calls the [`ResumeService`] and answers its typed result; the
//! service's errors become error answers through one `From`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Redirect;
use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::Rendition;
use sharecast_resume::{
    Accepted, Bookmark, BookmarkPlay, Catalogue, ErrorKind, FetchJob, HandoffCreated,
    HandoffSource, HistoryEntry, NewTerminal, NewUser, Pushed, Received, ResumeAnswer,
    ResumeService, ReverseBookmark, ReverseBookmarkAnswer, Scheduled, Stop, Stopped, SuspendState,
    TranscodeJob,
};

use crate::access::AuthUser;
use crate::error::{ApiError, ApiJson as Json, ApiPath as Path, ApiQuery as Query};

impl From<sharecast_resume::Error> for ApiError {
    fn from(e: sharecast_resume::Error) -> Self {
        let status = match e.kind() {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Gone => StatusCode::GONE,
            ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        match e {
            sharecast_resume::Error::Internal(e) => ApiError::internal(e),
            e => ApiError::new(status, e.code(), e.to_string()),
        }
    }
}

#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct UserRequest {
    name: String,
}

#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct TerminalRequest {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

/// A body or query naming the terminal that will play.
#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct OnTerminal {
    terminal_id: String,
}

#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct ResumeRequest {
    resume_token: String,
    terminal_id: String,
}

#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct HandoffRequest {
    content_id: String,
    position_ms: u64,
}

#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct PushRequest {
    /// Base URL of the platform pushed to.
    target: String,
}

#[derive(Deserialize)]
pub(crate) struct RedirectQuery {
    target: String,
}

#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct AcceptRequest {
    /// A signed pull URL of a suspend state on another platform.
    #[serde(default)]
    from: Option<String>,
    /// Or: that platform's base URL and the short code the user typed.
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    code: Option<String>,
    /// The terminal that will play (its type decides the rendition).
    terminal_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct AcceptQuery {
    from: String,
    #[serde(default)]
    terminal_id: Option<String>,
}

#[derive(utoipa::ToSchema, Deserialize)]
pub(crate) struct TranscodeRequest {
    content_id: String,
    /// The terminal that will play (its type decides the rendition).
    terminal_id: String,
}

#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct HistoryList {
    history: Vec<HistoryEntry>,
}

#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct BookmarkList {
    bookmarks: Vec<Bookmark>,
}

/// `POST /api/v1/transcodes`: the rendition, or the job making it.
#[derive(utoipa::ToSchema, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub(crate) enum TranscodeAnswer {
    Ready { rendition: Rendition },
    Transcoding { transcode: Box<TranscodeJob> },
}

pub(crate) async fn create_user(
    State(s): State<ResumeService>,
    Json(req): Json<UserRequest>,
) -> Result<Json<NewUser>, ApiError> {
    Ok(Json(s.create_user(&req.name).await?))
}

pub(crate) async fn create_terminal(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<TerminalRequest>,
) -> Result<Json<NewTerminal>, ApiError> {
    let t = s.add_terminal(&user.id, &req.kind, req.name.as_deref());
    Ok(Json(t.await?))
}

pub(crate) async fn record_stop(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<Stop>,
) -> Result<Json<Stopped>, ApiError> {
    Ok(Json(s.record_stop(&user.id, &req).await?))
}

pub(crate) async fn list_history(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
) -> Result<Json<HistoryList>, ApiError> {
    let history = s.history(&user.id).await?;
    Ok(Json(HistoryList { history }))
}

pub(crate) async fn catalogue(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Query(q): Query<OnTerminal>,
) -> Result<Json<Catalogue>, ApiError> {
    Ok(Json(s.catalogue(&user.id, &q.terminal_id).await?))
}

pub(crate) async fn resume(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<ResumeRequest>,
) -> Result<Json<ResumeAnswer>, ApiError> {
    let answer = s.resume(&user.id, &req.resume_token, &req.terminal_id);
    Ok(Json(answer.await?))
}

pub(crate) async fn list_bookmarks(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
) -> Result<Json<BookmarkList>, ApiError> {
    let bookmarks = s.bookmarks(&user.id).await?;
    Ok(Json(BookmarkList { bookmarks }))
}

/// Resumes a bookmark on one of the user's terminals (see
/// [`ResumeService::resume_bookmark`]).
pub(crate) async fn resume_bookmark(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Json(req): Json<OnTerminal>,
) -> Result<Json<BookmarkPlay>, ApiError> {
    let play = s.resume_bookmark(&user.id, &id, &req.terminal_id);
    Ok(Json(play.await?))
}

/// The reverse-bookmark interface: its result code, with the status that
/// says the same.
pub(crate) async fn reverse_bookmark(
    State(s): State<ResumeService>,
    Json(req): Json<ReverseBookmark>,
) -> (StatusCode, Json<ReverseBookmarkAnswer>) {
    let a = s.reverse_bookmark(&req).await;
    let status = match a.result_code {
        0 => StatusCode::OK,
        2 | 3 | 6 => StatusCode::FORBIDDEN,
        4 => StatusCode::NOT_FOUND,
        5 => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(a))
}

pub(crate) async fn create_handoff(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<HandoffRequest>,
) -> Result<Json<HandoffCreated>, ApiError> {
    let created = s.create_handoff(&user.id, &req.content_id, req.position_ms);
    Ok(Json(created.await?))
}

/// A suspend state by its signed link (the access policy checked the
/// signature and expiry).
pub(crate) async fn pull_handoff(
    State(s): State<ResumeService>,
    Path(id): Path<String>,
) -> Result<Json<SuspendState>, ApiError> {
    Ok(Json(s.pull_handoff(&id).await?))
}

/// A suspend state by the short code a user typed, wrong codes limited per
/// client address.
pub(crate) async fn pull_by_code(
    State(s): State<ResumeService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(code): Path<String>,
) -> Result<Json<SuspendState>, ApiError> {
    Ok(Json(s.pull_by_code(peer.ip(), &code).await?))
}

/// Pushes the user's hand-off to another platform, where the user is
/// named by the headers `X-Target-User-Token` and `X-Target-Terminal`.
pub(crate) async fn push_handoff(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<PushRequest>,
) -> Result<Json<Pushed>, ApiError> {
    let header = |name: &str| {
        let value = headers.get(name).and_then(|v| v.to_str().ok());
        value.map(str::to_string)
    };
    let (token, terminal) = (header("x-target-user-token"), header("x-target-terminal"));
    let pushed = s.push_handoff(&user.id, &id, &req.target, token, terminal);
    Ok(Json(pushed.await?))
}

pub(crate) async fn receive_handoff(
    State(s): State<ResumeService>,
    Json(req): Json<Received>,
) -> Result<Json<Bookmark>, ApiError> {
    Ok(Json(s.receive_handoff(req).await?))
}

pub(crate) async fn redirect_handoff(
    State(s): State<ResumeService>,
    Path(id): Path<String>,
    Query(q): Query<RedirectQuery>,
) -> Result<Redirect, ApiError> {
    let location = s.redirect_location(&id, &q.target).await?;
    Ok(Redirect::to(&location))
}

/// The terminal followed a redirect from another platform (with the user's
/// token on this one): what would be resumed, and with `terminal_id` the
/// bookmark made of it.
pub(crate) async fn accept_redirect(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Query(q): Query<AcceptQuery>,
) -> Result<Json<Accepted>, ApiError> {
    let accepted = s.accept_redirect(&user.id, &q.from, q.terminal_id.as_deref());
    Ok(Json(accepted.await?))
}

pub(crate) async fn accept_handoff(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<AcceptRequest>,
) -> Result<Json<Bookmark>, ApiError> {
    let source = match (req.from, req.platform, req.code) {
        (Some(from), _, _) => HandoffSource::Link(from),
        (None, Some(platform), Some(code)) => HandoffSource::Code { platform, code },
        _ => {
            return Err(ApiError::bad_request(
                "missing_source",
                "give `from` (a signed pull URL) or `platform` and `code`",
            ))
        }
    };
    let (name, description) = (req.name, req.description);
    let b = s.accept_handoff(&user.id, source, &req.terminal_id, name, description);
    Ok(Json(b.await?))
}

/// Schedules the on-demand rendition a terminal plays: 200 `ready` with the
/// rendition when one exists, 202 `transcoding` with the job.
pub(crate) async fn create_transcode(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<TranscodeRequest>,
) -> Result<(StatusCode, Json<TranscodeAnswer>), ApiError> {
    let scheduled = s.create_transcode(&user.id, &req.content_id, &req.terminal_id);
    Ok(match scheduled.await? {
        Scheduled::Ready(rendition) => (StatusCode::OK, Json(TranscodeAnswer::Ready { rendition })),
        Scheduled::Job(transcode) => (
            StatusCode::ACCEPTED,
            Json(TranscodeAnswer::Transcoding { transcode }),
        ),
    })
}

/// An on-demand transcode job.
pub(crate) async fn get_transcode(
    State(s): State<ResumeService>,
    AuthUser(_user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<TranscodeJob>, ApiError> {
    Ok(Json(s.transcode_job(&id)?))
}

/// A fetch of another platform's video.
pub(crate) async fn get_fetch(
    State(s): State<ResumeService>,
    AuthUser(_user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<FetchJob>, ApiError> {
    Ok(Json(s.fetch_job(&id)?))
}
