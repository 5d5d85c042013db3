//! The service: what it holds, how it is built, and the few lookups every
//! part of it shares.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::registry::Registry;
use sharecast_formats::attributes::VideoAttributes;
use sharecast_store::{now_ms, Store};
use sharecast_tokens::{AttemptLimiter, LinkSigner, PlaybackTokens};

use crate::config::ResumeConfig;
use crate::error::{Error, Result};
use crate::fetches::{FetchJob, FetchLimits, Fetches, Probe};
use crate::live::{LiveStarts, RtspVod};
use crate::outbound::Outbound;
use crate::transcodes::{Scheduled, Transcode, TranscodeJob, Transcodes};

/// Users, terminals, cross-terminal history, interruption bookmarks,
/// hand-off between platforms and the on-demand jobs behind them, over the
/// store. Cheap to clone.
#[derive(Clone)]
pub struct ResumeService {
    pub(crate) store: Store,
    pub(crate) cfg: ResumeConfig,
    pub(crate) links: LinkSigner,
    /// This platform's base URL, without a trailing slash.
    pub(crate) public_url: String,
    pub(crate) outbound: Outbound,
    /// Wrong hand-off codes, per client address and per user.
    code_attempts: Arc<Mutex<AttemptLimiter>>,
    pub(crate) live: Option<LiveStarts>,
    pub(crate) rtsp_vod: Option<RtspVod>,
    pub(crate) tokens: Option<PlaybackTokens>,
    pub(crate) transcodes: Option<Transcodes>,
    pub(crate) fetches: Option<Fetches>,
    data_dir: PathBuf,
}

/// The on-demand jobs of a server (see [`ResumeService::jobs`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Jobs {
    /// On-demand transcodes, as `GET /api/v1/transcodes/{id}` shows them.
    pub transcodes: Vec<TranscodeJob>,
    /// Fetches of other platforms' videos, as `GET /api/v1/fetches/{id}`.
    pub fetches: Vec<FetchJob>,
}

impl ResumeService {
    /// The service over `store`, signing hand-off links with `links` and
    /// asking other platforms through `outbound`. Purges aged history every
    /// minute (in a task of the current Tokio runtime).
    pub fn new(
        store: Store,
        cfg: ResumeConfig,
        data_dir: &Path,
        public_url: String,
        links: LinkSigner,
        outbound: Outbound,
    ) -> Self {
        let limiter = AttemptLimiter::new(cfg.code_attempts_per_minute, Duration::from_secs(60));
        let svc = Self {
            store,
            code_attempts: Arc::new(Mutex::new(limiter)),
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
        let s = svc.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = s.purge().await {
                    tracing::warn!(error = %e, "history purge failed");
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        });
        svc
    }

    /// Lets bookmarks of still-live content resume into the live stream.
    pub fn with_live_starts(mut self, live: LiveStarts) -> Self {
        self.live = Some(live);
        self
    }

    /// Puts a playback token into the live URLs of resume answers: the
    /// bookmark's owner may watch what they proved they could watch.
    pub fn with_playback_tokens(mut self, tokens: PlaybackTokens) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Lets resumes of recorded content offer seekable RTSP.
    pub fn with_rtsp_vod(mut self, rtsp_vod: RtspVod) -> Self {
        self.rtsp_vod = Some(rtsp_vod);
        self
    }

    /// Lets hand-offs and resumes transcode a finished recording that the
    /// terminal cannot play; `transcode` encodes, bounded and deduplicated
    /// by the service.
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
    /// play fetch it and transcode it here, when `fetch_remote` is on;
    /// `probe` measures the fetched file. Needs
    /// [`ResumeService::with_transcode`] too.
    pub fn with_fetch(mut self, probe: Probe) -> anyhow::Result<Self> {
        if self.cfg.fetch_remote {
            let limits = FetchLimits {
                max_bytes: self.cfg.fetch_max_bytes,
                timeout: Duration::from_secs(self.cfg.fetch_timeout_secs.max(1)),
                outbound: self.outbound.clone(),
            };
            let fetches = Fetches::new(
                self.store.clone(),
                probe,
                limits,
                &self.data_dir,
                &self.public_url,
            )?;
            self.fetches = Some(fetches);
        }
        Ok(self)
    }

    /// Registers the families of the fetches and on-demand transcodes (when
    /// this service has them), under the registry's prefix.
    pub fn register_metrics(&self, registry: &mut Registry) {
        if let Some(f) = &self.fetches {
            f.register_metrics(registry);
        }
        if let Some(t) = &self.transcodes {
            t.register_metrics(registry);
        }
    }

    /// The on-demand transcodes and fetches this server knows (running,
    /// queued, and the recent finished ones), newest first: for the admin.
    pub fn jobs(&self) -> Jobs {
        let newest_first = |a: i64, b: i64| b.cmp(&a);
        let mut transcodes = self
            .transcodes
            .as_ref()
            .map(Transcodes::list)
            .unwrap_or_default();
        transcodes.sort_by(|a, b| newest_first(a.created_unix_ms, b.created_unix_ms));
        let mut fetches = self.fetches.as_ref().map(Fetches::list).unwrap_or_default();
        fetches.sort_by(|a, b| newest_first(a.created_unix_ms, b.created_unix_ms));
        Jobs {
            transcodes,
            fetches,
        }
    }

    /// Deletes history records (and their resume tokens) older than
    /// `history_max_age_secs`; how many.
    pub(crate) async fn purge(&self) -> Result<u64> {
        let max_age_ms = (self.cfg.history_max_age_secs as i64).saturating_mul(1000);
        Ok(self.store.purge_history(now_ms() - max_age_ms).await?)
    }

    /// The wrong-code limiter.
    pub(crate) fn code_attempts(&self) -> MutexGuard<'_, AttemptLimiter> {
        self.code_attempts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The type of the user's terminal `id`.
    pub(crate) async fn terminal(&self, user_id: &str, id: &str) -> Result<String> {
        let kind = self.store.terminal_type(user_id, id).await?;
        kind.ok_or_else(|| Error::UnknownTerminal(id.to_string()))
    }

    /// The attributes of a content whose outputs exist.
    pub(crate) async fn attributes(&self, content_id: &str) -> Result<VideoAttributes> {
        match self.store.asset(content_id).await? {
            Some(a) => a
                .attributes
                .ok_or_else(|| Error::NotReady(content_id.to_string())),
            None => Err(Error::UnknownContent(content_id.to_string())),
        }
    }

    /// The rendition of a local recording that the terminal type plays, or
    /// the job making it; [`Error::TranscodeUnavailable`] without a
    /// transcoder.
    pub(crate) async fn schedule(
        &self,
        content_id: &str,
        terminal_type: &str,
    ) -> Result<Scheduled> {
        match &self.transcodes {
            Some(t) => t.schedule(content_id, terminal_type).await,
            None => Err(Error::TranscodeUnavailable),
        }
    }

    /// Schedules the on-demand rendition of a finished recording that the
    /// user's terminal plays: the rendition when one exists, or the job
    /// (new, or the one already making it).
    pub async fn create_transcode(
        &self,
        user_id: &str,
        content_id: &str,
        terminal_id: &str,
    ) -> Result<Scheduled> {
        let terminal_type = self.terminal(user_id, terminal_id).await?;
        self.schedule(content_id, &terminal_type).await
    }

    /// An on-demand transcode job, while it is known.
    pub fn transcode_job(&self, id: &str) -> Result<TranscodeJob> {
        let job = self.transcodes.as_ref().and_then(|t| t.job(id));
        job.ok_or_else(|| Error::UnknownTranscode(id.to_string()))
    }

    /// A fetch of another platform's video, while it is known.
    pub fn fetch_job(&self, id: &str) -> Result<FetchJob> {
        let job = self.fetches.as_ref().and_then(|f| f.job(id));
        job.ok_or_else(|| Error::UnknownFetch(id.to_string()))
    }
}

/// `url` with the `#t=` fragment (seconds) players start from.
pub(crate) fn play_url(url: &str, position_ms: u64) -> String {
    format!("{url}#t={}", seconds(position_ms))
}

/// A position in seconds, to the millisecond.
pub(crate) fn seconds(position_ms: u64) -> String {
    format!("{:.3}", position_ms as f64 / 1000.0)
}
