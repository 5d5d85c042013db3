//! Bookmarks following the jobs that make them playable: a fetch of another
//! platform's video, then the on-demand transcode of the local copy. A
//! bookmark's stored status names the job it waits for; when the job ends
//! the bookmark takes its outcome (a rendition's address, or the failure).

use sharecast_store::{now_ms, AssetState, BookmarkStatus, BookmarkUpdate};

use crate::error::Result;
use crate::fetches::{local_id, FetchJob, Fetches};
use crate::service::ResumeService;
use crate::transcodes::{Scheduled, TranscodeJob};

impl ResumeService {
    /// A bookmark's status as shown: its name (`rendition:<name>` for a
    /// rendition), with the transcode it waits for while that is known.
    pub(crate) fn shown_status(&self, stored: &BookmarkStatus) -> (String, Option<TranscodeJob>) {
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
    pub(crate) fn bookmark_fetch(&self, stored: &BookmarkStatus) -> Option<FetchJob> {
        match stored {
            BookmarkStatus::Fetching(id) | BookmarkStatus::FetchFailed(id) => {
                self.fetches.as_ref().and_then(|f| f.job(id))
            }
            _ => None,
        }
    }

    /// Changes a bookmark's status (and, when given, its content and
    /// address), when it still is `only_if` (any when `None`).
    pub(crate) async fn set_status(
        &self,
        bookmark_id: &str,
        status: &BookmarkStatus,
        content_id: Option<&str>,
        address: Option<&str>,
        only_if: Option<&BookmarkStatus>,
    ) -> Result<()> {
        let update = BookmarkUpdate {
            status,
            content_id,
            address,
        };
        self.store
            .update_bookmark(bookmark_id, update, only_if)
            .await?;
        Ok(())
    }

    /// A fetch finished: the bookmark waiting for it (stored status
    /// `waiting`) waits for the transcode of the local copy (or points to
    /// a rendition it has), or records that the fetch failed.
    pub(crate) async fn follow_fetch(
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
                    tracing::warn!(fetch = %job.id, bookmark = %bookmark_id, error = %e, "no transcode of a fetched video");
                    (None, BookmarkStatus::NeedsTranscode)
                }
            };
            (status, Some(job.content_id.as_str()), address)
        };
        let r = self
            .set_status(
                bookmark_id,
                &status,
                content_id,
                address.as_deref(),
                Some(waiting),
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(fetch = %job.id, bookmark = %bookmark_id, error = %e, "updating a bookmark after a fetch failed");
        }
        if let Some(j) = transcode {
            if let Err(e) = self.settle_if_finished(bookmark_id, &j).await {
                tracing::warn!(bookmark = %bookmark_id, error = %e, "settling a bookmark");
            }
        }
    }

    /// Starts the fetch of `address` (or joins the one under way) for a
    /// bookmark, which follows it.
    pub(crate) fn start_fetch(
        &self,
        f: &Fetches,
        address: &str,
        title: Option<String>,
        bookmark_id: &str,
        terminal_type: &str,
    ) -> FetchJob {
        let waiter = (bookmark_id.to_string(), terminal_type.to_string());
        let (j, new) = f.start(address, title, waiter);
        if new {
            tracing::info!(fetch = %j.id, address = %j.address, content = %j.content_id, "fetching another platform's video");
            let (svc, f, id) = (self.clone(), f.clone(), j.id.clone());
            tokio::spawn(async move {
                let (job, waiters) = f.run(&id).await;
                let waiting = BookmarkStatus::Fetching(job.id.clone());
                for (b, t) in waiters {
                    svc.follow_fetch(&job, &b, &t, &waiting).await;
                }
            });
        }
        j
    }

    /// A bookmark just set to wait for fetch `job`: the fetch may have
    /// finished before, and then the bookmark takes its outcome now.
    pub(crate) async fn follow_if_fetched(
        &self,
        job_id: &str,
        bookmark_id: &str,
        terminal_type: &str,
    ) {
        let waiting = BookmarkStatus::Fetching(job_id.to_string());
        if let Some(done) = self
            .bookmark_fetch(&waiting)
            .filter(|j| j.state != "fetching")
        {
            self.follow_fetch(&done, bookmark_id, terminal_type, &waiting)
                .await;
        }
    }

    /// The bookmark's fetch failed or was forgotten (a restart): fetch
    /// again (or use the local copy made since); the bookmark follows.
    /// Answers the content id to resume when the local copy exists.
    pub(crate) async fn refetch(
        &self,
        bookmark_id: &str,
        address: &str,
        terminal_type: &str,
        stored_status: &BookmarkStatus,
    ) -> Result<Option<String>> {
        let (Some(f), Some(_)) = (&self.fetches, &self.transcodes) else {
            return Ok(None);
        };
        f.check_address(address)?;
        let local = local_id(address);
        if let Some(a) = self.store.asset(&local).await? {
            if a.state == AssetState::Ready {
                let done = FetchJob::done(address, &local);
                self.follow_fetch(&done, bookmark_id, terminal_type, stored_status)
                    .await;
                return Ok(Some(local));
            }
        }
        let j = self.start_fetch(f, address, None, bookmark_id, terminal_type);
        let waiting = BookmarkStatus::Fetching(j.id.clone());
        self.set_status(bookmark_id, &waiting, None, None, None)
            .await?;
        self.follow_if_fetched(&j.id, bookmark_id, terminal_type)
            .await;
        Ok(None)
    }

    /// A job may finish before a bookmark waiting for it is stored (a job is
    /// marked finished before it updates the bookmarks waiting for it): the
    /// bookmark then takes the outcome itself.
    pub(crate) async fn settle_if_finished(&self, bookmark_id: &str, job_id: &str) -> Result<()> {
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
        self.set_status(bookmark_id, &status, None, address, None)
            .await
    }

    /// A bookmark found waiting for the transcode job `old` (forgotten at a
    /// restart, or failed) waits for `new` from now on.
    pub(crate) async fn wait_for_new_job(
        &self,
        bookmark_id: &str,
        stored: &BookmarkStatus,
        new: &TranscodeJob,
    ) -> Result<()> {
        let waits_for = match stored {
            BookmarkStatus::Transcoding(old) | BookmarkStatus::TranscodeFailed(old) => Some(old),
            _ => None,
        };
        if waits_for.is_some_and(|old| *old != new.id) {
            let waiting = BookmarkStatus::Transcoding(new.id.clone());
            self.set_status(bookmark_id, &waiting, None, None, None)
                .await?;
            self.settle_if_finished(bookmark_id, &new.id).await?;
        }
        Ok(())
    }
}

impl FetchJob {
    /// A fetch that needs no running: the local copy of `address` exists.
    fn done(address: &str, content_id: &str) -> FetchJob {
        FetchJob {
            id: String::new(),
            address: address.to_string(),
            content_id: content_id.to_string(),
            state: "done".into(),
            error: None,
            bytes: 0,
            total_bytes: None,
            percent: None,
            poll_url: String::new(),
            created_unix_ms: now_ms(),
            finished_unix_ms: None,
        }
    }
}
