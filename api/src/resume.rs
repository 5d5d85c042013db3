//! Resume everywhere (SEEDS S1 and S0): users and their terminals, playback
//! history across terminals with resume tokens, bookmarks, and cross-platform
//! hand-off of suspend-state information (push, pull, redirect, short code)
//! between Sharecast instances. See `docs/resume.md`.
//!
//! Everything is plain SQL through the [`Store`]; links handed between
//! platforms are HMAC-SHA256 signed and expire.

use sharecast_store::now_ms;
use std::time::Duration;

use anyhow::Result;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::{Rendition, VideoAttributes};

use crate::access::{AuthUser, User};
use crate::error::{ApiError, ApiJson as Json, ApiPath as Path, ApiQuery as Query};
use crate::fetches::{FetchJob, FetchLimits, Fetches, Probe};
use crate::outbound::Outbound;
use crate::transcodes::{Scheduled, Transcode, TranscodeJob, Transcodes};
use sharecast_store::{
    AssetState, BookmarkRecord, BookmarkStatus, BookmarkUpdate, HistoryRecord, Store, SuspendRecord,
};
use sharecast_tokens::AttemptLimiter;
use sharecast_tokens::LinkSigner;
use sharecast_tokens::{new_id, valid_id};

/// Resume configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResumeConfig {
    /// History records older than this are purged, seconds. Default 30 days.
    pub history_max_age_secs: u64,
    /// Lifetime of a suspend state and of the signed links to it, seconds.
    /// Default 1 hour.
    pub handoff_ttl_secs: u64,
    /// Lifetime of a resume token, seconds. Default 30 days.
    pub resume_token_ttl_secs: u64,
    /// Preferred shorter side of an on-demand rendition (made when no
    /// rendition suits a terminal), pixels; smaller when the terminal type
    /// needs it, never upscaled. Default 480.
    pub transcode_short_side: u32,
    /// On-demand transcodes encoding at once. Default 1.
    pub transcode_max_concurrent: usize,
    /// On-demand transcodes queued or running; more are refused (503
    /// `transcode_busy`). Default 16.
    pub transcode_max_pending: usize,
    /// Fetch another platform's video when none of its renditions suits the
    /// terminal, and transcode it here (its address must be http or
    /// https). When off, such a hand-off is recorded `needs_transcode`.
    /// Default true.
    pub fetch_remote: bool,
    /// Largest video fetched from another platform, bytes; a larger one
    /// fails the fetch (`fetch_failed`). Default 2 GiB.
    pub fetch_max_bytes: u64,
    /// Longest fetch of another platform's video (connect, headers and the
    /// whole body), seconds. Default 600. Which platforms are fetched from
    /// is the outbound policy's (`[outbound]`).
    pub fetch_timeout_secs: u64,
    /// Wrong hand-off codes one client address may try in a minute
    /// (`GET /api/v1/handoff/by-code/{code}`); more are answered 429
    /// `too_many_attempts` until the minute is over. Default 10.
    pub code_attempts_per_minute: u32,
}

impl Default for ResumeConfig {
    fn default() -> Self {
        Self {
            history_max_age_secs: 30 * 24 * 3600,
            handoff_ttl_secs: 3600,
            resume_token_ttl_secs: 30 * 24 * 3600,
            transcode_short_side: 480,
            transcode_max_concurrent: 1,
            transcode_max_pending: 16,
            fetch_remote: true,
            fetch_max_bytes: 2 << 30,
            fetch_timeout_secs: 600,
            code_attempts_per_minute: 10,
        }
    }
}

/// Terminal types (S1).
pub const TERMINAL_TYPES: [&str; 4] = ["mobile", "web", "tv", "other"];

/// What a terminal type can play: RFC 6381 codec prefixes and the largest
/// picture height.
pub fn terminal_can_play(terminal_type: &str, codecs: &[String], height: u32) -> bool {
    let allowed: &[&str] = match terminal_type {
        "tv" | "mobile" => &["avc1", "avc3", "hvc1", "hev1", "mp4a", "opus", "Opus"],
        // Browsers (and unknown players) decode H.264 and AAC everywhere.
        _ => &["avc1", "avc3", "mp4a"],
    };
    height <= terminal_max_height(terminal_type)
        && codecs
            .iter()
            .all(|c| allowed.iter().any(|a| c.starts_with(a)))
}

/// The largest picture height a terminal type shows.
pub fn terminal_max_height(terminal_type: &str) -> u32 {
    match terminal_type {
        "tv" => 2160,
        "mobile" => 1920,
        _ => 1080,
    }
}

/// The first rendition of `attrs` that `terminal_type` can play.
pub fn playable_rendition(attrs: &VideoAttributes, terminal_type: &str) -> Option<Rendition> {
    attrs
        .renditions
        .iter()
        .find(|r| terminal_can_play(terminal_type, &r.codecs, r.height))
        .cloned()
}

/// Where a resume into a still-running live stream starts, as the live
/// relay works it out (positions are content time: ms of capture).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStartInfo {
    /// `live`, or `ended` (the phone stopped; the recording is not ready yet).
    pub state: String,
    /// `position`: the stream still has the segment holding the position;
    /// `oldest_segment`: the position left the stream, playback starts at
    /// the oldest segment kept.
    pub from: String,
    /// Sequence number of the HLS segment playback starts in.
    pub segment: u64,
    /// Content time of that segment's first frame, ms.
    pub segment_start_ms: u64,
    /// Where playback starts, ms.
    pub start_ms: u64,
    /// Content time of the oldest segment kept, ms.
    pub oldest_ms: u64,
    /// Content time of the live edge, ms.
    pub edge_ms: u64,
}

/// What the live relay says about resuming a content at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveLookup {
    /// It can start there (or at its oldest segment).
    Start(LiveStartInfo),
    /// The position is after the live edge.
    PastEnd {
        /// The live edge, ms.
        edge_ms: u64,
    },
    /// The stream exists but has no segment yet.
    NoSegment,
}

/// Asks the live relay where a resume of a content at a position starts;
/// `None` when the content has no live stream.
pub type LiveStarts = std::sync::Arc<dyn Fn(&str, u64) -> Option<LiveLookup> + Send + Sync>;

/// Mounts a recorded content (id, RFC 6381 codecs of its source file) for
/// seekable RTSP and answers its `rtsp://…` URL, or why it cannot.
pub type RtspVod = std::sync::Arc<dyn Fn(&str, &[String]) -> Result<String, String> + Send + Sync>;

/// The resume service.
#[derive(Clone)]
pub struct ResumeService {
    store: Store,
    cfg: ResumeConfig,
    links: LinkSigner,
    public_url: String,
    outbound: Outbound,
    code_attempts: std::sync::Arc<std::sync::Mutex<AttemptLimiter>>,
    live: Option<LiveStarts>,
    rtsp_vod: Option<RtspVod>,
    tokens: Option<sharecast_tokens::PlaybackTokens>,
    transcodes: Option<Transcodes>,
    fetches: Option<Fetches>,
    data_dir: std::path::PathBuf,
}

/// How far past the end of the last closed live segment a reverse bookmark
/// may be (the segment being cut), ms.
const LIVE_EDGE_SLACK_MS: u64 = 5_000;

fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn internal(e: anyhow::Error) -> ApiError {
    ApiError::internal(e)
}

/// A suspend state (S0): where playback stopped, and what it needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SuspendState {
    /// State id.
    pub id: String,
    /// Short code a user can type on another platform.
    pub code: String,
    /// Content (asset) id on the issuing platform.
    pub content_id: String,
    /// Address of the video (signed where the issuing platform needs it).
    pub address: String,
    /// Playback progress, ms.
    pub position_ms: u64,
    /// Container format.
    pub format: String,
    /// RFC 6381 codecs.
    pub codecs: Vec<String>,
    /// Frames per second.
    pub frame_rate: f64,
    /// Every rendition the issuing platform has, with its address.
    #[serde(default)]
    pub renditions: Vec<Rendition>,
    /// Title, if any.
    #[serde(default)]
    pub title: Option<String>,
    /// Issuing platform's base URL.
    pub platform: String,
    /// Expiry, Unix ms.
    pub expires_unix_ms: i64,
}

/// A bookmark (S0 hand-off, S3 interruption, or the user's own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bookmark {
    /// Bookmark id.
    pub id: String,
    /// Content id (on the platform that holds the video).
    pub content_id: String,
    /// Position, ms.
    pub position_ms: u64,
    /// Optional name.
    pub name: Option<String>,
    /// Optional description.
    pub description: Option<String>,
    /// `handoff`, `interruption` or `user`.
    pub source: String,
    /// Address to play from.
    pub address: String,
    /// `ready` (the address plays on the terminal), `rendition:<name>` (a
    /// rendition chosen for the terminal), `transcoding` (an on-demand
    /// transcode makes one: see `transcode`), `transcode_failed` (see the
    /// job's `error`), `fetching` (the content is held by another platform
    /// and none of its renditions suits the terminal: its video is being
    /// fetched, see `fetch`, then transcoded), `fetch_failed` (see the
    /// fetch's `error`), or `needs_transcode` (none suits the terminal and
    /// this platform fetches nothing: `fetch_remote` is off).
    pub status: String,
    /// The on-demand transcode this bookmark waits for, while it is known
    /// (jobs are kept in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcode: Option<TranscodeJob>,
    /// The fetch of another platform's video this bookmark waits for, while
    /// it is known (jobs are kept in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch: Option<FetchJob>,
    /// Created, Unix ms.
    pub created_unix_ms: i64,
}

/// A reverse-bookmark request (S3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReverseBookmark {
    /// User id, if the caller knows it (checked against the token).
    #[serde(default)]
    pub user_id: Option<String>,
    /// Content id.
    pub content_id: String,
    /// Where playback stopped, ms.
    pub position_ms: u64,
    /// The playback token of the interrupted viewing.
    pub playback_token: String,
    /// The user's token.
    pub user_token: String,
}

/// The reverse-bookmark answer: user id, result code (0 saved) and description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReverseBookmarkAnswer {
    /// The user the bookmark belongs to, when known.
    pub user_id: Option<String>,
    /// 0 saved; 2 unknown user token; 3 user mismatch; 4 unknown content;
    /// 5 position past the end; 6 the playback token does not open this
    /// (live) content; 9 store error.
    pub result_code: u32,
    /// Human-readable result.
    pub description: String,
    /// The stored bookmark's id.
    #[serde(default)]
    pub bookmark_id: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct NewUser {
    name: String,
}

#[derive(Deserialize)]
pub(crate) struct NewTerminal {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Stop {
    terminal_id: String,
    content_id: String,
    position_ms: u64,
    #[serde(default)]
    live: bool,
    #[serde(default)]
    abnormal: bool,
}

#[derive(Deserialize)]
pub(crate) struct ResumeReq {
    resume_token: String,
    terminal_id: String,
}

#[derive(Deserialize)]
pub(crate) struct CatalogueQuery {
    terminal_id: String,
}

#[derive(Deserialize)]
pub(crate) struct HandoffReq {
    content_id: String,
    position_ms: u64,
}

#[derive(Deserialize)]
pub(crate) struct PushReq {
    /// Base URL of platform B.
    target: String,
}

#[derive(Deserialize)]
pub(crate) struct RedirectQuery {
    target: String,
}

#[derive(Deserialize)]
pub(crate) struct AcceptReq {
    /// A signed pull URL of a suspend state on platform A.
    #[serde(default)]
    from: Option<String>,
    /// Or: platform A's base URL and the short code the user typed.
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

#[derive(Deserialize, Serialize)]
pub(crate) struct Received {
    state: SuspendState,
    /// Whose bookmark: platform B's user token, given by the user to A.
    user_token: String,
    terminal_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

impl ResumeService {
    /// Create the tables and load (or create) the signing key.
    pub async fn new(
        store: Store,
        cfg: ResumeConfig,
        data_dir: &std::path::Path,
        public_url: String,
        links: LinkSigner,
        outbound: Outbound,
    ) -> Result<Self> {
        let svc = Self {
            store,
            code_attempts: std::sync::Arc::new(std::sync::Mutex::new(AttemptLimiter::new(
                cfg.code_attempts_per_minute,
                Duration::from_secs(60),
            ))),
            cfg,
            links,
            public_url: public_url.trim_end_matches('/').to_string(),
            outbound,
            live: None,
            rtsp_vod: None,
            tokens: None,
            transcodes: None,
            fetches: None,
            data_dir: data_dir.to_path_buf(),
        };
        // Purge aged history in the background.
        let s = svc.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = s.purge().await {
                    tracing::warn!(error = %format!("{e:#}"), "history purge failed");
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        });
        Ok(svc)
    }

    /// Lets bookmarks of still-live content resume into the live stream.
    pub fn with_live_starts(mut self, live: LiveStarts) -> Self {
        self.live = Some(live);
        self
    }

    /// Puts a playback token into the live URLs of resume answers: the
    /// bookmark's owner may watch what they were watching.
    pub fn with_playback_tokens(mut self, tokens: sharecast_tokens::PlaybackTokens) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// `token=…&` for a live URL of the content, or "" when none is needed
    /// (tokens off, or the stream is public). A bookmark hands out only the
    /// access its creator proved: the token ends when what they proved ends
    /// (`access_until`, ms since the Unix epoch); without such proof, or
    /// once it has ended, 403 `no_live_access`.
    fn live_token_param(
        &self,
        content_id: &str,
        access_until: Option<i64>,
    ) -> Result<String, ApiError> {
        let Some(t) = &self.tokens else {
            return Ok(String::new());
        };
        if !t.required() || t.is_public(content_id) {
            return Ok(String::new());
        }
        let refused = || {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "no_live_access",
                "this bookmark gives no access to the live stream (it was not made by a viewer of it, or that viewer's access has ended)",
            )
        };
        let until = access_until.ok_or_else(refused)?;
        let issued = t
            .issue_within(content_id, (until != i64::MAX).then_some(until))
            .ok_or_else(refused)?;
        Ok(format!("token={}&", issued.token))
    }

    /// Lets resumes of recorded content offer seekable RTSP.
    pub fn with_rtsp_vod(mut self, rtsp_vod: RtspVod) -> Self {
        self.rtsp_vod = Some(rtsp_vod);
        self
    }

    /// Lets hand-offs and resumes transcode a finished recording that the
    /// terminal cannot play (see [`crate::transcodes`]); `transcode` encodes,
    /// bounded and deduplicated by the service.
    pub fn with_transcode(mut self, transcode: Transcode) -> Self {
        self.transcodes = Some(Transcodes::new(
            transcode,
            self.store.clone(),
            &self.public_url,
            self.cfg.transcode_short_side,
            self.cfg.transcode_max_concurrent,
            self.cfg.transcode_max_pending,
        ));
        self
    }

    /// Lets hand-offs of another platform's video that the terminal cannot
    /// play fetch it and transcode it here (see [`crate::fetches`]), when
    /// `fetch_remote` is on; `probe` measures the fetched file. Needs
    /// [`ResumeService::with_transcode`] too.
    pub fn with_fetch(mut self, probe: Probe) -> Result<Self> {
        if self.cfg.fetch_remote {
            self.fetches = Some(Fetches::new(
                self.store.clone(),
                probe,
                FetchLimits {
                    max_bytes: self.cfg.fetch_max_bytes,
                    timeout: Duration::from_secs(self.cfg.fetch_timeout_secs.max(1)),
                    outbound: self.outbound.clone(),
                },
                &self.data_dir,
                &self.public_url,
            )?);
        }
        Ok(self)
    }

    /// The fetches of other platforms' videos, when enabled.
    pub fn fetches(&self) -> Option<&Fetches> {
        self.fetches.as_ref()
    }

    /// A fetch finished: the bookmark waiting for it (its stored status
    /// `fetching:<job>`) waits for the transcode of the local copy (or
    /// points to a rendition it has), or records that the fetch failed.
    async fn after_fetch(&self, job: &FetchJob, bookmark_id: &str, terminal_type: &str) {
        let waiting = BookmarkStatus::Fetching(job.id.clone());
        self.follow_fetch(job, bookmark_id, terminal_type, &waiting)
            .await
    }

    /// [`ResumeService::after_fetch`] for a bookmark whose stored status is
    /// `waiting`.
    async fn follow_fetch(
        &self,
        job: &FetchJob,
        bookmark_id: &str,
        terminal_type: &str,
        waiting: &BookmarkStatus,
    ) {
        let mut transcode = None;
        let (status, content_id, address) = if job.state != "done" {
            (BookmarkStatus::FetchFailed(job.id.clone()), None, None)
        } else {
            let (address, status) = match self.schedule(&job.content_id, terminal_type).await {
                Ok(Scheduled::Ready(r)) => (Some(r.url), BookmarkStatus::Rendition(r.name)),
                Ok(Scheduled::Job(j)) => {
                    transcode = Some(j.id.clone());
                    (None, BookmarkStatus::Transcoding(j.id))
                }
                Err(e) => {
                    tracing::warn!(fetch = %job.id, bookmark = %bookmark_id, error = ?e, "no transcode of a fetched video");
                    (None, BookmarkStatus::NeedsTranscode)
                }
            };
            (status, Some(job.content_id.as_str()), address)
        };
        let update = BookmarkUpdate {
            status: &status,
            content_id,
            address: address.as_deref(),
        };
        let r = self
            .store
            .update_bookmark(bookmark_id, update, Some(waiting))
            .await;
        if let Err(e) = r {
            tracing::warn!(fetch = %job.id, bookmark = %bookmark_id, error = %e, "updating a bookmark after a fetch failed");
        }
        if let Some(j) = transcode {
            if let Err(e) = self.settle_if_finished(bookmark_id, &j).await {
                tracing::warn!(bookmark = %bookmark_id, error = ?e, "settling a bookmark");
            }
        }
    }

    /// Starts the fetch of `address` (or joins the one under way) for a
    /// bookmark, which follows it.
    fn start_fetch(
        &self,
        f: &Fetches,
        address: &str,
        title: Option<String>,
        bookmark_id: &str,
        terminal_type: &str,
    ) -> FetchJob {
        let (j, new) = f.start(
            address,
            title,
            (bookmark_id.to_string(), terminal_type.to_string()),
        );
        if new {
            tracing::info!(fetch = %j.id, address = %j.address, content = %j.content_id, "fetching another platform's video");
            let (svc, f, id) = (self.clone(), f.clone(), j.id.clone());
            tokio::spawn(async move {
                let (job, waiters) = f.run(&id).await;
                for (b, t) in waiters {
                    svc.after_fetch(&job, &b, &t).await;
                }
            });
        }
        j
    }

    /// The bookmark's fetch failed or was forgotten (a restart): fetch
    /// again (or use the local copy made since); the bookmark follows.
    /// Answers the content id to resume when the local copy exists.
    async fn refetch(
        &self,
        bookmark_id: &str,
        address: &str,
        terminal_type: &str,
        stored_status: &BookmarkStatus,
    ) -> Result<Option<String>, ApiError> {
        let (Some(f), Some(_)) = (&self.fetches, &self.transcodes) else {
            return Ok(None);
        };
        f.check_address(address)?;
        let local = crate::fetches::local_id(address);
        if let Some(a) = self.store.asset(&local).await.map_err(internal)? {
            if a.state == AssetState::Ready {
                let done = FetchJob {
                    id: String::new(),
                    address: address.to_string(),
                    content_id: local.clone(),
                    state: "done".into(),
                    error: None,
                    bytes: 0,
                    poll_url: String::new(),
                    created_unix_ms: now_ms(),
                    finished_unix_ms: None,
                };
                self.follow_fetch(&done, bookmark_id, terminal_type, stored_status)
                    .await;
                return Ok(Some(local));
            }
        }
        let j = self.start_fetch(f, address, None, bookmark_id, terminal_type);
        let waiting = BookmarkStatus::Fetching(j.id.clone());
        let update = BookmarkUpdate {
            status: &waiting,
            content_id: None,
            address: None,
        };
        self.store
            .update_bookmark(bookmark_id, update, None)
            .await
            .map_err(internal)?;
        // The fetch may have finished before the bookmark waited for it.
        if let Some(done) = f.job(&j.id).filter(|j| j.state != "fetching") {
            self.after_fetch(&done, bookmark_id, terminal_type).await;
        }
        Ok(None)
    }

    /// The on-demand transcodes, when a transcoder is wired in.
    pub fn transcodes(&self) -> Option<&Transcodes> {
        self.transcodes.as_ref()
    }

    /// Schedules (or finds) the rendition of a local recording that the
    /// terminal type plays; 501 without a transcoder.
    async fn schedule(&self, content_id: &str, terminal_type: &str) -> Result<Scheduled, ApiError> {
        match &self.transcodes {
            Some(t) => t.schedule(content_id, terminal_type).await,
            None => Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "transcode_unavailable",
                "this server has no transcoder for on-demand renditions",
            )),
        }
    }

    /// A bookmark's status as shown: its name (`rendition:<name>` for a
    /// rendition), with the transcode it waits for while that is known.
    fn bookmark_status(&self, stored: &BookmarkStatus) -> (String, Option<TranscodeJob>) {
        match stored {
            BookmarkStatus::Rendition(name) => (format!("rendition:{name}"), None),
            BookmarkStatus::Transcoding(job) | BookmarkStatus::TranscodeFailed(job) => (
                stored.name().to_string(),
                self.transcodes.as_ref().and_then(|t| t.job(job)),
            ),
            other => (other.name().to_string(), None),
        }
    }

    /// The fetch a bookmark's status names, while it is known.
    fn bookmark_fetch(&self, stored: &BookmarkStatus) -> Option<FetchJob> {
        match stored {
            BookmarkStatus::Fetching(id) | BookmarkStatus::FetchFailed(id) => {
                self.fetches.as_ref().and_then(|f| f.job(id))
            }
            _ => None,
        }
    }

    fn live_lookup(&self, content_id: &str, position_ms: u64) -> Option<LiveLookup> {
        self.live.as_ref().and_then(|f| f(content_id, position_ms))
    }

    /// Delete history records (and their resume tokens) older than the limit.
    pub async fn purge(&self) -> Result<u64> {
        let cutoff = now_ms() - (self.cfg.history_max_age_secs as i64).saturating_mul(1000);
        self.store.purge_history(cutoff).await
    }

    fn signed_pull_url(&self, id: &str, exp: i64) -> String {
        format!(
            "{}/api/v1/handoff/{id}?exp={exp}&sig={}",
            self.public_url,
            self.links.sign(id, exp)
        )
    }

    async fn user_by_token(&self, token: &str) -> Result<Option<User>> {
        Ok(self.store.user_by_token(token).await?.map(|id| User { id }))
    }

    async fn terminal(&self, user: &User, id: &str) -> Result<String, ApiError> {
        let kind = self
            .store
            .terminal_type(&user.id, id)
            .await
            .map_err(internal)?;
        kind.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_terminal",
                format!("no terminal {id} for this user"),
            )
        })
    }

    async fn attributes(&self, content_id: &str) -> Result<VideoAttributes, ApiError> {
        let asset = self.store.asset(content_id).await.map_err(internal)?;
        match asset {
            Some(a) => a.attributes.ok_or_else(|| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "not_ready",
                    format!("content {content_id} is not ready"),
                )
            }),
            None => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_content",
                format!("no content {content_id}"),
            )),
        }
    }

    /// The reverse-bookmark interface (S3): the streaming side reports an
    /// abnormally interrupted viewer; a bookmark is stored for the user the
    /// user token names. Answers user id, result code (0 = saved) and a
    /// description.
    pub async fn reverse_bookmark(&self, req: &ReverseBookmark) -> ReverseBookmarkAnswer {
        let answer = |user_id: Option<String>, code: u32, d: &str| ReverseBookmarkAnswer {
            user_id,
            result_code: code,
            description: d.to_string(),
            bookmark_id: None,
        };
        let user = match self.user_by_token(&req.user_token).await {
            Ok(Some(u)) => u,
            Ok(None) => return answer(None, 2, "unknown user token"),
            Err(e) => return answer(None, 9, &format!("store error: {e:#}")),
        };
        if req.user_id.as_deref().is_some_and(|u| u != user.id) {
            return answer(Some(user.id), 3, "user id does not match the user token");
        }
        let attrs = self.store.asset(&req.content_id).await.ok().flatten();
        let Some(asset) = attrs else {
            return answer(Some(user.id), 4, "unknown content");
        };
        if let Some(a) = &asset.attributes {
            if a.duration_ms > 0 && req.position_ms > a.duration_ms {
                return answer(Some(user.id), 5, "position is past the end of the content");
            }
        }
        // A bookmark of a live stream hands out access to it later: only
        // what the playback token proved (its expiry), or the stream's
        // public sharing. Recorded content needs no proof (its VOD is
        // reached by its id).
        let mut access_until = None;
        if asset.state != AssetState::Ready {
            match self.live_access(&req.content_id, &req.playback_token) {
                Some(until) => access_until = Some(until),
                None => {
                    tracing::info!(content = %req.content_id, "reverse bookmark without a valid playback token refused");
                    return answer(
                        Some(user.id),
                        6,
                        "the playback token does not open this content",
                    );
                }
            }
        }
        if asset.state != AssetState::Ready {
            // Still live: past the live edge is past the end too. The edge
            // is the end of the last closed HLS segment, which trails the
            // newest frame (where an RTSP viewer is) by up to a segment
            // being cut; positions that close are real.
            if let Some(LiveLookup::PastEnd { edge_ms }) = self
                .live_lookup(&req.content_id, req.position_ms)
                .filter(|l| match l {
                    LiveLookup::PastEnd { edge_ms } => {
                        req.position_ms > edge_ms.saturating_add(LIVE_EDGE_SLACK_MS)
                    }
                    _ => true,
                })
            {
                tracing::info!(content = %req.content_id, position_ms = req.position_ms, edge_ms, "reverse bookmark past the live edge");
                return answer(
                    Some(user.id),
                    5,
                    "position is past the live edge of the content",
                );
            }
        }
        let address = asset
            .attributes
            .as_ref()
            .and_then(|a| a.vod_url.clone())
            .unwrap_or_else(|| format!("{}/live/{}/index.m3u8", self.public_url, req.content_id));
        let id = new_id();
        let r = self
            .store
            .insert_bookmark(&BookmarkRecord {
                id: id.clone(),
                user_id: user.id.clone(),
                content_id: req.content_id.clone(),
                position_ms: req.position_ms as i64,
                name: None,
                description: Some("interrupted".into()),
                source: "interruption".into(),
                address,
                status: BookmarkStatus::Ready,
                created_ms: now_ms(),
                access_until_ms: access_until,
            })
            .await;
        match r {
            Ok(_) => ReverseBookmarkAnswer {
                user_id: Some(user.id),
                result_code: 0,
                description: "saved".into(),
                bookmark_id: Some(id),
            },
            Err(e) => answer(Some(user.id), 9, &format!("store error: {e:#}")),
        }
    }

    /// Until when `token` opens the live stream of `content_id` (ms since
    /// the Unix epoch, `i64::MAX` for as long as it stays public or when
    /// streams need no token); `None` when it does not.
    fn live_access(&self, content_id: &str, token: &str) -> Option<i64> {
        let Some(t) = &self.tokens else {
            return Some(i64::MAX);
        };
        if !t.required() {
            return Some(i64::MAX);
        }
        if let Some(until) = t.public_until(content_id) {
            return Some(until.unwrap_or(i64::MAX));
        }
        t.check_until(content_id, Some(token).filter(|t| !t.is_empty()))
    }

    async fn store_bookmark(
        &self,
        user_id: &str,
        state: &SuspendState,
        terminal_type: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<Bookmark, ApiError> {
        let mut job = None;
        let bookmark_id = new_id();
        let mut content_id = state.content_id.clone();
        let mut fetch = None;
        let (address, status) = if terminal_can_play(terminal_type, &state.codecs, 0) {
            (state.address.clone(), BookmarkStatus::Ready)
        } else if let Some(r) = state
            .renditions
            .iter()
            .find(|r| terminal_can_play(terminal_type, &r.codecs, r.height))
        {
            (r.url.clone(), BookmarkStatus::Rendition(r.name.clone()))
        } else if state.platform.trim_end_matches('/') == self.public_url {
            // Our own recording: transcode it into what the terminal plays
            // (or find the rendition made since the state was issued).
            match self.schedule(&state.content_id, terminal_type).await? {
                Scheduled::Ready(r) => (r.url.clone(), BookmarkStatus::Rendition(r.name)),
                Scheduled::Job(j) => {
                    let status = BookmarkStatus::Transcoding(j.id.clone());
                    job = Some(j);
                    (state.address.clone(), status)
                }
            }
        } else if let (Some(f), Some(_)) = (&self.fetches, &self.transcodes) {
            // Another platform's video: fetch it (once), then transcode the
            // local copy like our own recordings.
            f.check_address(&state.address)?;
            let local = crate::fetches::local_id(&state.address);
            match self.store.asset(&local).await.map_err(internal)? {
                Some(a) if a.state == AssetState::Ready => {
                    content_id = local.clone();
                    match self.schedule(&local, terminal_type).await? {
                        Scheduled::Ready(r) => (r.url.clone(), BookmarkStatus::Rendition(r.name)),
                        Scheduled::Job(j) => {
                            let status = BookmarkStatus::Transcoding(j.id.clone());
                            job = Some(j);
                            (state.address.clone(), status)
                        }
                    }
                }
                _ => {
                    let j = self.start_fetch(
                        f,
                        &state.address,
                        state.title.clone(),
                        &bookmark_id,
                        terminal_type,
                    );
                    let status = BookmarkStatus::Fetching(j.id.clone());
                    fetch = Some(j);
                    (state.address.clone(), status)
                }
            }
        } else {
            (state.address.clone(), BookmarkStatus::NeedsTranscode)
        };
        let (shown_status, _) = self.bookmark_status(&status);
        let b = Bookmark {
            id: bookmark_id,
            content_id,
            position_ms: state.position_ms,
            name,
            description,
            source: "handoff".into(),
            address,
            status: shown_status,
            transcode: job,
            fetch,
            created_unix_ms: now_ms(),
        };
        self.store
            .insert_bookmark(&BookmarkRecord {
                id: b.id.clone(),
                user_id: user_id.to_string(),
                content_id: b.content_id.clone(),
                position_ms: b.position_ms as i64,
                name: b.name.clone(),
                description: b.description.clone(),
                source: b.source.clone(),
                address: b.address.clone(),
                status,
                created_ms: b.created_unix_ms,
                // A hand-off proves no live access.
                access_until_ms: None,
            })
            .await
            .map_err(internal)?;
        if let Some(j) = &b.transcode {
            self.settle_if_finished(&b.id, &j.id).await?;
        }
        // The fetch may have finished before the bookmark was stored.
        if let Some(done) = b
            .fetch
            .as_ref()
            .and_then(|j| self.bookmark_fetch(&BookmarkStatus::Fetching(j.id.clone())))
            .filter(|j| j.state != "fetching")
        {
            self.after_fetch(&done, &b.id, terminal_type).await;
        }
        Ok(b)
    }

    /// A job may finish before a bookmark waiting for it is stored (a job is
    /// marked finished before it updates the bookmarks waiting for it): the
    /// bookmark then takes the outcome itself.
    async fn settle_if_finished(&self, bookmark_id: &str, job_id: &str) -> Result<(), ApiError> {
        let finished = self
            .transcodes
            .as_ref()
            .and_then(|t| t.job(job_id))
            .filter(|j| j.state == "done" || j.state == "failed");
        let Some(job) = finished else { return Ok(()) };
        let (status, address) = match &job.attributes {
            Some(r) => (
                BookmarkStatus::Rendition(r.name.clone()),
                Some(r.url.as_str()),
            ),
            None => (BookmarkStatus::TranscodeFailed(job.id.clone()), None),
        };
        let update = BookmarkUpdate {
            status: &status,
            content_id: None,
            address,
        };
        self.store
            .update_bookmark(bookmark_id, update, None)
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// A suspend state of this platform named by a hand-off address on its
    /// own public URL (a signed pull URL, checked as its route checks it, or
    /// a code); `None` when the address is another platform's.
    async fn local_state(&self, url: &str) -> Result<Option<SuspendState>, ApiError> {
        let Some(rest) = url
            .strip_prefix(&self.public_url)
            .and_then(|r| r.strip_prefix("/api/v1/handoff/"))
        else {
            return Ok(None);
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if let Some(code) = path.strip_prefix("by-code/") {
            let code = url::form_urlencoded::parse(code.as_bytes())
                .map(|(k, v)| format!("{k}{v}"))
                .collect::<String>()
                .trim()
                .to_ascii_uppercase();
            if code.len() != 8 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad("bad_code", "a hand-off code is 8 letters and digits"));
            }
            return load_state(self, "code", &code).await.map(Some);
        }
        let q: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        let (Some(exp), Some(sig)) = (q.get("exp"), q.get("sig")) else {
            return Err(bad("bad_url", "a pull URL carries exp and sig"));
        };
        let exp: i64 = exp
            .parse()
            .map_err(|_| bad("bad_url", "exp is a time in ms"))?;
        self.links
            .verify(path, exp, sig)
            .map_err(crate::access::link_refusal)?;
        load_state(self, "id", path).await.map(Some)
    }

    /// The user a suspend state belongs to.
    async fn state_owner(&self, id: &str) -> Result<String, ApiError> {
        let state = self.store.suspend_state(id).await.map_err(internal)?;
        state
            .map(|r| r.user_id)
            .ok_or_else(|| ApiError::not_found("unknown_state", "no such suspend state"))
    }

    /// Pulls a suspend state from another platform, through the outbound
    /// policy. Only hand-off addresses are asked (a signed pull URL,
    /// `…/api/v1/handoff/{id}?exp=…&sig=…`, or a code's,
    /// `…/api/v1/handoff/by-code/{code}`), and the answer must be a suspend
    /// state: nothing else a remote server says is passed on.
    async fn fetch_state(&self, url: &str) -> Result<SuspendState, ApiError> {
        // A hand-off of this very platform is read here, not asked over HTTP.
        if let Some(state) = self.local_state(url).await? {
            return Ok(state);
        }
        let parsed = self.outbound.rules().check_url(url)?;
        if !is_handoff_address(&parsed) {
            return Err(bad(
                "bad_url",
                "not a hand-off address (…/api/v1/handoff/{id}?exp=…&sig=… or …/api/v1/handoff/by-code/{code})",
            ));
        }
        Ok(self.outbound.get_json::<SuspendState>(url).await?)
    }
}

/// Whether a URL is a platform's hand-off address: a signed pull URL or a
/// short code's.
fn is_handoff_address(url: &url::Url) -> bool {
    let Some(rest) = url.path().strip_prefix("/api/v1/handoff/") else {
        // Platforms may live under a path prefix.
        return url
            .path()
            .split_once("/api/v1/handoff/")
            .is_some_and(|(_, r)| handoff_tail(r, url));
    };
    handoff_tail(rest, url)
}

fn handoff_tail(rest: &str, url: &url::Url) -> bool {
    if let Some(code) = rest.strip_prefix("by-code/") {
        return !code.is_empty() && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'%');
    }
    let signed =
        url.query_pairs().any(|(k, _)| k == "exp") && url.query_pairs().any(|(k, _)| k == "sig");
    valid_id(rest) && signed
}

pub(crate) async fn create_user(
    State(s): State<ResumeService>,
    Json(req): Json<NewUser>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(bad("bad_name", "a user name is 1 to 100 characters"));
    }
    let (id, token) = s.store.create_user(name).await.map_err(internal)?;
    Ok(Json(
        serde_json::json!({ "user_id": id, "user_token": token }),
    ))
}

pub(crate) async fn create_terminal(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<NewTerminal>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !TERMINAL_TYPES.contains(&req.kind.as_str()) {
        return Err(bad(
            "bad_terminal_type",
            format!("terminal type must be one of {TERMINAL_TYPES:?}"),
        ));
    }
    let id = s
        .store
        .add_terminal(&user.id, &req.kind, req.name.as_deref())
        .await
        .map_err(internal)?;
    Ok(Json(
        serde_json::json!({ "terminal_id": id, "type": req.kind }),
    ))
}

pub(crate) async fn record_stop(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<Stop>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let terminal_type = s.terminal(&user, &req.terminal_id).await?;
    let now = now_ms();
    let (position, breakpoint_unix) = if req.live {
        // Live: the breakpoint is absolute wall time.
        (None, Some(now))
    } else {
        let attrs = s.attributes(&req.content_id).await?;
        if req.position_ms > attrs.duration_ms {
            return Err(bad(
                "position_past_end",
                format!(
                    "position {} ms is past the end ({} ms)",
                    req.position_ms, attrs.duration_ms
                ),
            ));
        }
        (Some(req.position_ms as i64), None)
    };
    let id = new_id();
    let record = HistoryRecord {
        id: id.clone(),
        user_id: user.id.clone(),
        content_id: req.content_id.clone(),
        terminal_id: req.terminal_id.clone(),
        terminal_type,
        live: req.live,
        position_ms: position,
        breakpoint_unix_ms: breakpoint_unix,
        abnormal: req.abnormal,
        created_ms: now,
    };
    let expires = now + (s.cfg.resume_token_ttl_secs as i64).saturating_mul(1000);
    let token = s
        .store
        .add_history(&record, expires)
        .await
        .map_err(internal)?;
    Ok(Json(
        serde_json::json!({ "history_id": id, "resume_token": token }),
    ))
}

async fn history_rows(s: &ResumeService, user: &User) -> Result<Vec<serde_json::Value>, ApiError> {
    s.purge().await.map_err(internal)?;
    let rows = s.store.history_of(&user.id, 200).await.map_err(internal)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "history_id": r.id,
                "content_id": r.content_id,
                "terminal_id": r.terminal_id,
                "terminal_type": r.terminal_type,
                "live": r.live,
                "position_ms": r.position_ms,
                "breakpoint_unix_ms": r.breakpoint_unix_ms,
                "abnormal": r.abnormal,
                "recorded_unix_ms": r.created_ms,
            })
        })
        .collect())
}

pub(crate) async fn list_history(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        serde_json::json!({ "history": history_rows(&s, &user).await? }),
    ))
}

pub(crate) async fn catalogue(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Query(q): Query<CatalogueQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let terminal_type = s.terminal(&user, &q.terminal_id).await?;
    // What this user may see: the programmes published to everyone (an
    // active public share), and what the user has watched (their history).
    let mut assets = s.store.published_assets(200).await.map_err(internal)?;
    let mut history = history_rows(&s, &user).await?;
    for h in &history {
        let cid = h["content_id"].as_str().unwrap_or_default();
        if !assets.iter().any(|a| a.id == cid) {
            if let Some(a) = s.store.asset(cid).await.map_err(internal)? {
                assets.push(a);
            }
        }
    }
    let mut programmes = Vec::new();
    for a in assets {
        let Some(attrs) = a.attributes else { continue };
        let links: Vec<serde_json::Value> = attrs
            .renditions
            .iter()
            .filter(|r| terminal_can_play(&terminal_type, &r.codecs, r.height))
            .map(|r| serde_json::json!({ "rendition": r.name, "url": r.url, "codecs": r.codecs, "width": r.width, "height": r.height }))
            .collect();
        if links.is_empty() {
            continue;
        }
        programmes.push(serde_json::json!({ "content_id": a.id, "title": a.title, "duration_ms": attrs.duration_ms, "links": links }));
    }
    for h in history.iter_mut() {
        let cid = h["content_id"].as_str().unwrap_or_default().to_string();
        let link = programmes
            .iter()
            .find(|p| p["content_id"] == cid.as_str())
            .and_then(|p| p["links"].get(0).cloned());
        h["link"] = link.unwrap_or(serde_json::Value::Null);
    }
    Ok(Json(serde_json::json!({
        "terminal": { "id": q.terminal_id, "type": terminal_type },
        "programmes": programmes,
        "history": history,
    })))
}

pub(crate) async fn resume(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<ResumeReq>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let terminal_type = s.terminal(&user, &req.terminal_id).await?;
    let grant = s
        .store
        .resume_grant(&req.resume_token)
        .await
        .map_err(internal)?;
    let Some(grant) = grant else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_resume_token",
            "unknown or purged resume token",
        ));
    };
    if grant.user_id != user.id {
        // A resume token works on every terminal of its user, and no one else's.
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_resume_token",
            "this resume token belongs to another user",
        ));
    }
    if grant.expires_ms < now_ms() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            "this resume token has expired",
        ));
    }
    let content_id = grant.record.content_id.clone();
    let live = grant.record.live;
    let attrs = s.attributes(&content_id).await?;
    let mut rendition = playable_rendition(&attrs, &terminal_type);
    let mut transcode = None;
    if rendition.is_none() && s.transcodes.is_some() {
        match s.schedule(&content_id, &terminal_type).await? {
            Scheduled::Ready(r) => rendition = Some(r),
            Scheduled::Job(j) => transcode = Some(j),
        }
    }
    let position_ms = grant.record.position_ms.unwrap_or(0).max(0) as u64;
    let url = rendition.as_ref().map(|r| r.url.clone());
    Ok(Json(serde_json::json!({
        "status": if transcode.is_some() { "transcoding" } else { "ready" },
        "transcode": transcode,
        "content_id": content_id,
        "live": live,
        "position_ms": position_ms,
        "breakpoint_unix_ms": grant.record.breakpoint_unix_ms,
        "terminal_type": terminal_type,
        "url": url,
        "play_url": url.as_ref().map(|u| format!("{u}#t={:.3}", position_ms as f64 / 1000.0)),
        "rendition": rendition.map(|r| r.name),
    })))
}

pub(crate) async fn list_bookmarks(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = s
        .store
        .bookmarks_of(&user.id, 200)
        .await
        .map_err(internal)?;
    let list: Vec<Bookmark> = rows
        .into_iter()
        .map(|r| {
            let (status, transcode) = s.bookmark_status(&r.status);
            Bookmark {
                fetch: s.bookmark_fetch(&r.status),
                id: r.id,
                content_id: r.content_id,
                position_ms: r.position_ms.max(0) as u64,
                name: r.name,
                description: r.description,
                source: r.source,
                address: r.address,
                status,
                transcode,
                created_unix_ms: r.created_ms,
            }
        })
        .collect();
    Ok(Json(serde_json::json!({ "bookmarks": list })))
}

pub(crate) async fn create_handoff(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<HandoffReq>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let attrs = s.attributes(&req.content_id).await?;
    if req.position_ms > attrs.duration_ms {
        return Err(bad(
            "position_past_end",
            format!(
                "position {} ms is past the end ({} ms)",
                req.position_ms, attrs.duration_ms
            ),
        ));
    }
    let id = new_id();
    let mut code_b = [0u8; 5];
    rand::thread_rng().fill_bytes(&mut code_b);
    // 8 characters of an unambiguous alphabet (40 bits).
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
    let bits = code_b.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64);
    let code: String = (0..8)
        .map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char)
        .collect();
    let expires = now_ms() + (s.cfg.handoff_ttl_secs as i64).saturating_mul(1000);
    let state = SuspendState {
        id: id.clone(),
        code: code.clone(),
        content_id: req.content_id.clone(),
        address: attrs.vod_url.clone().unwrap_or_default(),
        position_ms: req.position_ms,
        format: attrs.container.clone(),
        codecs: attrs.codecs.clone(),
        frame_rate: attrs.frame_rate,
        renditions: attrs.renditions.clone(),
        title: attrs.title.clone(),
        platform: s.public_url.clone(),
        expires_unix_ms: expires,
    };
    s.store
        .insert_suspend_state(&SuspendRecord {
            id: id.clone(),
            code: code.clone(),
            user_id: user.id.clone(),
            state: serde_json::to_string(&state).map_err(|e| internal(e.into()))?,
            expires_ms: expires,
        })
        .await
        .map_err(internal)?;
    Ok(Json(serde_json::json!({
        "state": state,
        "pull_url": s.signed_pull_url(&id, expires),
        "code": code,
    })))
}

async fn load_state(
    s: &ResumeService,
    column: &str,
    value: &str,
) -> Result<SuspendState, ApiError> {
    let found = match column {
        "code" => s.store.suspend_state_by_code(value).await,
        _ => s.store.suspend_state(value).await,
    }
    .map_err(internal)?;
    let record = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_state",
            "no such suspend state",
        )
    })?;
    if record.expires_ms < now_ms() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            "this suspend state has expired",
        ));
    }
    serde_json::from_str(&record.state).map_err(|e| internal(e.into()))
}

/// A suspend state by its signed link (the access policy checked the
/// signature and expiry).
pub(crate) async fn pull_handoff(
    State(s): State<ResumeService>,
    Path(id): Path<String>,
) -> Result<Json<SuspendState>, ApiError> {
    Ok(Json(load_state(&s, "id", &id).await?))
}

/// A suspend state by the short code a user typed. Wrong codes are counted
/// per client address: past `resume.code_attempts_per_minute` of them the
/// client gets 429 until the minute is over, so the 40-bit codes cannot be
/// guessed by trying.
pub(crate) async fn pull_by_code(
    State(s): State<ResumeService>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(code): Path<String>,
) -> Result<Json<SuspendState>, ApiError> {
    let key = sharecast_tokens::client_key(peer.ip());
    let now = std::time::Instant::now();
    let blocked = s
        .code_attempts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .blocked(&key, now);
    if blocked {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many wrong hand-off codes from this address; try again in a minute",
        ));
    }
    let code = code.trim().to_ascii_uppercase();
    let found = if code.len() == 8 && code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        load_state(&s, "code", &code).await
    } else {
        Err(bad("bad_code", "a hand-off code is 8 letters and digits"))
    };
    if found
        .as_ref()
        .is_err_and(|e| e.status() != StatusCode::INTERNAL_SERVER_ERROR)
    {
        s.code_attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .failed(&key, now);
    }
    Ok(Json(found?))
}

/// The platform a hand-off is pushed to: `target` (its base URL, http or
/// https, no query) joined with `/api/v1/handoff/receive`.
fn receive_url(target: &str) -> Result<String, ApiError> {
    let mut url = url::Url::parse(target.trim())
        .map_err(|e| bad("bad_url", format!("target is not a URL ({e})")))?;
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(bad(
            "bad_url",
            "target is a platform's base URL, without query or fragment",
        ));
    }
    let path = format!(
        "{}/api/v1/handoff/receive",
        url.path().trim_end_matches('/')
    );
    url.set_path(&path);
    Ok(url.to_string())
}

/// The part of the target platform's answer passed back: which bookmark
/// it made.
#[derive(Deserialize)]
struct PushAnswer {
    id: String,
}

pub(crate) async fn push_handoff(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(req): Json<PushReq>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = load_state(&s, "id", &id).await?;
    if s.state_owner(&id).await? != user.id {
        return Err(ApiError::not_found(
            "unknown_state",
            "no such suspend state of this user",
        ));
    }
    // The user gives A their identity on B (account mapping): B's user token
    // and terminal, in headers X-Target-User-Token / X-Target-Terminal.
    let header = |name: &str, code: &'static str, what: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| bad(code, format!("give {name} ({what})")))
    };
    let target_token = header(
        "x-target-user-token",
        "missing_target_user",
        "your user token on the target platform",
    )?;
    let target_terminal = header(
        "x-target-terminal",
        "missing_target_terminal",
        "the terminal id on the target platform",
    )?;
    let url = receive_url(&req.target)?;
    let body = serde_json::to_value(Received {
        state,
        user_token: target_token,
        terminal_id: target_terminal,
        name: None,
        description: None,
    })
    .map_err(|e| internal(e.into()))?;
    // Through the outbound policy; of the answer, only the bookmark's id
    // comes back (the user reads the bookmark on the target platform).
    let answer: PushAnswer = s.outbound.post_json(&url, &body).await?;
    if !valid_id(&answer.id) {
        return Err(ApiError::from(crate::outbound::OutboundError::BadAnswer(
            "not a bookmark of a Sharecast platform".into(),
        )));
    }
    Ok(Json(
        serde_json::json!({ "pushed_to": url, "bookmark_id": answer.id }),
    ))
}

pub(crate) async fn receive_handoff(
    State(s): State<ResumeService>,
    Json(req): Json<Received>,
) -> Result<Json<Bookmark>, ApiError> {
    let user = s
        .user_by_token(&req.user_token)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown user token",
            )
        })?;
    let terminal_type = s.terminal(&user, &req.terminal_id).await?;
    if req.state.expires_unix_ms < now_ms() {
        return Err(ApiError::new(
            StatusCode::GONE,
            "expired",
            "this suspend state has expired",
        ));
    }
    let b = s
        .store_bookmark(
            &user.id,
            &req.state,
            &terminal_type,
            req.name,
            req.description,
        )
        .await?;
    Ok(Json(b))
}

pub(crate) async fn redirect_handoff(
    State(s): State<ResumeService>,
    Path(id): Path<String>,
    Query(q): Query<RedirectQuery>,
) -> Result<Response, ApiError> {
    let state = load_state(&s, "id", &id).await?;
    // Only to platforms this one trusts (no open redirect).
    let target = s.outbound.rules().check_redirect(&q.target)?;
    if target.query().is_some() || target.fragment().is_some() {
        return Err(bad(
            "bad_url",
            "target is a platform's base URL, without query or fragment",
        ));
    }
    let pull = s.signed_pull_url(&id, state.expires_unix_ms);
    let enc: String = url_encode(&pull);
    let location = format!(
        "{}/api/v1/handoff/accept?from={enc}",
        target.as_str().trim_end_matches('/')
    );
    Ok(Redirect::to(&location).into_response())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
pub(crate) struct AcceptQuery {
    from: String,
    #[serde(default)]
    terminal_id: Option<String>,
}

/// The terminal followed a redirect from platform A (with the user's token
/// on this platform): show what would be resumed; with `terminal_id`, also
/// create the bookmark.
pub(crate) async fn accept_redirect(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Query(q): Query<AcceptQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let state = s.fetch_state(&q.from).await?;
    match q.terminal_id {
        Some(t) => {
            let terminal_type = s.terminal(&user, &t).await?;
            let b = s
                .store_bookmark(&user.id, &state, &terminal_type, None, None)
                .await?;
            Ok(Json(serde_json::json!({ "state": state, "bookmark": b })))
        }
        None => Ok(Json(serde_json::json!({ "state": state }))),
    }
}

pub(crate) async fn accept_handoff(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<AcceptReq>,
) -> Result<Json<Bookmark>, ApiError> {
    let terminal_type = s.terminal(&user, &req.terminal_id).await?;
    let url = match (&req.from, &req.platform, &req.code) {
        (Some(from), _, _) => from.clone(),
        (None, Some(p), Some(code)) => format!(
            "{}/api/v1/handoff/by-code/{}",
            p.trim_end_matches('/'),
            url_encode(code)
        ),
        _ => {
            return Err(bad(
                "missing_source",
                "give `from` (a signed pull URL) or `platform` and `code`",
            ))
        }
    };
    // Codes typed by this user are counted like codes tried from one
    // address: a user cannot guess codes through this platform either.
    let by_code = req.from.is_none();
    let key = format!("user:{}", user.id);
    let now = std::time::Instant::now();
    let limiter = || s.code_attempts.lock().unwrap_or_else(|e| e.into_inner());
    if by_code && limiter().blocked(&key, now) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many wrong hand-off codes; try again in a minute",
        ));
    }
    let state = match s.fetch_state(&url).await {
        Ok(state) => state,
        Err(e) => {
            if by_code && e.status() != StatusCode::INTERNAL_SERVER_ERROR {
                limiter().failed(&key, now);
            }
            return Err(e);
        }
    };
    let b = s
        .store_bookmark(&user.id, &state, &terminal_type, req.name, req.description)
        .await?;
    Ok(Json(b))
}

pub(crate) async fn reverse_bookmark(
    State(s): State<ResumeService>,
    Json(req): Json<ReverseBookmark>,
) -> Response {
    let a = s.reverse_bookmark(&req).await;
    let status = match a.result_code {
        0 => StatusCode::OK,
        2 | 3 | 6 => StatusCode::FORBIDDEN,
        4 => StatusCode::NOT_FOUND,
        5 => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(a)).into_response()
}

#[derive(Deserialize)]
pub(crate) struct BookmarkResume {
    terminal_id: String,
}

/// Resume a bookmark on one of the user's terminals. When the recording is
/// ready: the URL of the rendition that terminal plays, the position, and a
/// `play_url` with a `#t=` fragment the player seeks to. While the content
/// is still live (or ended with its recording not ready yet): the live HLS
/// playlist with `start_ms`, whose media playlist starts players at the
/// segment holding the position (`#EXT-X-START`), the player page URL, and
/// where the live relay says playback starts (`live_start`).
pub(crate) async fn resume_bookmark(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Json(req): Json<BookmarkResume>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let terminal_type = s.terminal(&user, &req.terminal_id).await?;
    let row = s
        .store
        .bookmark(&id)
        .await
        .map_err(internal)?
        .filter(|b| b.user_id == user.id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_bookmark",
                format!("no bookmark {id} for this user"),
            )
        })?;
    let position_ms = row.position_ms.max(0) as u64;
    let mut url = row.address;
    let source = row.source;
    let mut stored_status = row.status;
    let access_until = row.access_until_ms;
    let mut content_id = row.content_id;
    // Another platform's video whose fetch failed or was forgotten (a
    // restart): try again.
    if matches!(
        stored_status,
        BookmarkStatus::Fetching(_) | BookmarkStatus::FetchFailed(_)
    ) {
        let stuck = s
            .bookmark_fetch(&stored_status)
            .is_none_or(|j| j.state == "failed");
        if stuck {
            if let Some(local) = s.refetch(&id, &url, &terminal_type, &stored_status).await? {
                content_id = local;
            }
            if let Some(b) = s.store.bookmark(&id).await.map_err(internal)? {
                stored_status = b.status;
            }
        }
    }
    if let BookmarkStatus::Fetching(_) | BookmarkStatus::FetchFailed(_) = &stored_status {
        let prefix = stored_status.name();
        // Another platform's video, being fetched (or whose fetch failed):
        // its address, which the terminal cannot play; poll `fetch`.
        return Ok(Json(serde_json::json!({
            "bookmark_id": id,
            "content_id": content_id,
            "position_ms": position_ms,
            "live": false,
            "url": url,
            "play_url": format!("{url}#t={:.3}", position_ms as f64 / 1000.0),
            "source": source,
            "status": prefix,
            "fetch": s.bookmark_fetch(&stored_status),
        })));
    }
    let asset = s.store.asset(&content_id).await.map_err(internal)?;
    // Content of this platform whose recording is not ready: the live stream.
    // Otherwise (recorded here, or a hand-off from another platform whose
    // address the bookmark holds): the VOD, from the position.
    let live = asset.as_ref().is_some_and(|a| a.state != AssetState::Ready);
    if !live {
        let mut rtsp = None;
        let mut transcode = None;
        if let Some(attrs) = asset.and_then(|a| a.attributes) {
            if attrs.duration_ms > 0 && position_ms > attrs.duration_ms {
                return Err(bad(
                    "position_past_end",
                    format!(
                        "bookmark position {position_ms} ms is past the end ({} ms)",
                        attrs.duration_ms
                    ),
                ));
            }
            if let Some(r) = playable_rendition(&attrs, &terminal_type) {
                url = r.url;
            } else if s.transcodes.is_some() {
                // Nothing here plays on this terminal: make it (or find
                // the job already making it); `url` stays the source.
                match s.schedule(&content_id, &terminal_type).await? {
                    Scheduled::Ready(r) => url = r.url,
                    Scheduled::Job(j) => {
                        // A bookmark whose job was forgotten (a restart) or
                        // failed waits for the new one.
                        let waits_for = match &stored_status {
                            BookmarkStatus::Transcoding(old)
                            | BookmarkStatus::TranscodeFailed(old) => Some(old.as_str()),
                            _ => None,
                        };
                        if waits_for.is_some_and(|old| old != j.id) {
                            let waiting = BookmarkStatus::Transcoding(j.id.clone());
                            let update = BookmarkUpdate {
                                status: &waiting,
                                content_id: None,
                                address: None,
                            };
                            s.store
                                .update_bookmark(&id, update, None)
                                .await
                                .map_err(internal)?;
                            s.settle_if_finished(&id, &j.id).await?;
                        }
                        transcode = Some(j)
                    }
                }
            }
            // RTSP players: the source file, from a ranged PLAY.
            rtsp = s
                .rtsp_vod
                .as_ref()
                .and_then(|f| match f(&content_id, &attrs.codecs) {
                    Ok(u) => Some(serde_json::json!({
                        "url": u,
                        "range": format!("npt={:.3}-", position_ms as f64 / 1000.0),
                    })),
                    Err(e) => {
                        tracing::warn!(content = %content_id, error = %e, "no RTSP resume");
                        None
                    }
                });
        }
        return Ok(Json(serde_json::json!({
            "bookmark_id": id,
            "content_id": content_id,
            "position_ms": position_ms,
            "live": false,
            "url": url,
            "play_url": format!("{url}#t={:.3}", position_ms as f64 / 1000.0),
            "rtsp": rtsp,
            "source": source,
            "status": if transcode.is_some() { "transcoding" } else { "ready" },
            "transcode": transcode,
        })));
    }
    match s.live_lookup(&content_id, position_ms) {
        Some(LiveLookup::Start(start)) => {
            let q = format!(
                "{}start_ms={position_ms}",
                s.live_token_param(&content_id, access_until)?
            );
            let url = format!("{}/live/{content_id}/index.m3u8?{q}", s.public_url);
            Ok(Json(serde_json::json!({
                "bookmark_id": id,
                "content_id": content_id,
                "position_ms": position_ms,
                "live": true,
                "url": url,
                "play_url": url,
                "watch_url": format!("{}/watch/{content_id}?{q}", s.public_url),
                "live_start": start,
                "source": source,
            })))
        }
        Some(LiveLookup::PastEnd { edge_ms }) => Err(bad(
            "position_past_end",
            format!("bookmark position {position_ms} ms is past the live edge ({edge_ms} ms)"),
        )),
        Some(LiveLookup::NoSegment) | None => Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_ready",
            format!("content {content_id} is not live and its recording is not ready"),
        )),
    }
}

#[derive(Deserialize)]
pub(crate) struct NewTranscode {
    content_id: String,
    /// The terminal that will play (its type decides the rendition).
    terminal_id: String,
}

/// Schedules the on-demand rendition of a finished recording that a
/// terminal plays: 200 `ready` with the rendition when one exists, 202
/// `transcoding` with the job (new, or the one already making it).
pub(crate) async fn create_transcode(
    State(s): State<ResumeService>,
    AuthUser(user): AuthUser,
    Json(req): Json<NewTranscode>,
) -> Result<Response, ApiError> {
    let terminal_type = s.terminal(&user, &req.terminal_id).await?;
    Ok(match s.schedule(&req.content_id, &terminal_type).await? {
        Scheduled::Ready(r) => (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ready", "rendition": r })),
        )
            .into_response(),
        Scheduled::Job(j) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "status": "transcoding", "transcode": j })),
        )
            .into_response(),
    })
}

/// An on-demand transcode job: its state, the error when it failed, the
/// rendition's URL and attributes when done.
pub(crate) async fn get_transcode(
    State(s): State<ResumeService>,
    AuthUser(_user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<TranscodeJob>, ApiError> {
    s.transcodes
        .as_ref()
        .and_then(|t| t.job(&id))
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_transcode",
                format!("no transcode job {id} (jobs are forgotten at a restart)"),
            )
        })
}

/// A fetch of another platform's video: its state, bytes received, the
/// local content it becomes, the error when it failed.
pub(crate) async fn get_fetch(
    State(s): State<ResumeService>,
    AuthUser(_user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<FetchJob>, ApiError> {
    s.fetches
        .as_ref()
        .and_then(|f| f.job(&id))
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_fetch",
                format!("no fetch {id} (fetches are forgotten at a restart)"),
            )
        })
}
