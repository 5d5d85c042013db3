//! Bookmarks: where a user's playback of a content stopped (a hand-off, an
//! interruption, or the user's own), and what it waits for.

use anyhow::{Context, Result};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::rows::Record;
use crate::webhooks::{record_event, NewEvent};
use crate::Store;

/// What a bookmark plays, or waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookmarkStatus {
    /// Its address plays on the terminal.
    Ready,
    /// A rendition (named) chosen for the terminal.
    Rendition(String),
    /// An on-demand transcode (this job) makes what the terminal plays.
    Transcoding(String),
    /// That transcode failed.
    TranscodeFailed(String),
    /// Another platform's video is being fetched (this job), then
    /// transcoded.
    Fetching(String),
    /// That fetch failed.
    FetchFailed(String),
    /// Nothing here suits the terminal and this platform fetches nothing.
    NeedsTranscode,
}

impl BookmarkStatus {
    /// The stored columns: status, job, rendition.
    fn columns(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            BookmarkStatus::Ready => ("ready", None, None),
            BookmarkStatus::Rendition(r) => ("rendition", None, Some(r)),
            BookmarkStatus::Transcoding(j) => ("transcoding", Some(j), None),
            BookmarkStatus::TranscodeFailed(j) => ("transcode_failed", Some(j), None),
            BookmarkStatus::Fetching(j) => ("fetching", Some(j), None),
            BookmarkStatus::FetchFailed(j) => ("fetch_failed", Some(j), None),
            BookmarkStatus::NeedsTranscode => ("needs_transcode", None, None),
        }
    }

    fn from_columns(status: &str, job: Option<String>, rendition: Option<String>) -> Self {
        let job = job.unwrap_or_default();
        match status {
            "rendition" => BookmarkStatus::Rendition(rendition.unwrap_or_default()),
            "transcoding" => BookmarkStatus::Transcoding(job),
            "transcode_failed" => BookmarkStatus::TranscodeFailed(job),
            "fetching" => BookmarkStatus::Fetching(job),
            "fetch_failed" => BookmarkStatus::FetchFailed(job),
            "needs_transcode" => BookmarkStatus::NeedsTranscode,
            _ => BookmarkStatus::Ready,
        }
    }

    /// The status's name (without its job or rendition).
    pub fn name(&self) -> &'static str {
        self.columns().0
    }

    /// The transcode or fetch job it waits for (or whose failure it shows).
    pub fn job(&self) -> Option<&str> {
        self.columns().1
    }
}

/// A bookmark as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookmarkRecord {
    /// Bookmark id.
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// The content (on the platform that holds the video).
    pub content_id: String,
    /// Position, ms.
    pub position_ms: i64,
    /// Optional name.
    pub name: Option<String>,
    /// Optional description.
    pub description: Option<String>,
    /// `handoff`, `interruption` or `user`.
    pub source: String,
    /// Address to play from.
    pub address: String,
    /// What it plays or waits for.
    pub status: BookmarkStatus,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Until when the live access its creator proved lasts, Unix ms
    /// (`i64::MAX`: as long as the stream is public; `None`: none).
    pub access_until_ms: Option<i64>,
}

const COLUMNS: &str = "id, user_id, content_id, position_ms, name, description, source, address, status, created_ms, access_until_ms, job_id, rendition";

impl Record for BookmarkRecord {
    const TABLE: &'static str = "bookmarks";
    const COLUMNS: &'static str = COLUMNS;

    fn from_row(r: &AnyRow) -> Self {
        BookmarkRecord {
            id: r.get(0),
            user_id: r.get(1),
            content_id: r.get(2),
            position_ms: r.get(3),
            name: r.get(4),
            description: r.get(5),
            source: r.get(6),
            address: r.get(7),
            status: BookmarkStatus::from_columns(r.get(8), r.get(11), r.get(12)),
            created_ms: r.get(9),
            access_until_ms: r.get(10),
        }
    }
}

/// A change of a bookmark: its status, and where it points (each left as it
/// was when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookmarkUpdate<'a> {
    /// The new status.
    pub status: &'a BookmarkStatus,
    /// The new content.
    pub content_id: Option<&'a str>,
    /// The new address.
    pub address: Option<&'a str>,
}

impl Store {
    /// Stores a bookmark. One of an interruption (`source` `interruption`)
    /// is reported by the event `viewer.interrupted`, one of a hand-off
    /// (`handoff`) by `handoff.accepted`, in the same transaction.
    pub async fn insert_bookmark(&self, b: &BookmarkRecord) -> Result<()> {
        let (status, job, rendition) = b.status.columns();
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        sqlx::query(&format!(
            "INSERT INTO bookmarks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        ))
        .bind(&b.id)
        .bind(&b.user_id)
        .bind(&b.content_id)
        .bind(b.position_ms)
        .bind(&b.name)
        .bind(&b.description)
        .bind(&b.source)
        .bind(&b.address)
        .bind(status)
        .bind(b.created_ms)
        .bind(b.access_until_ms)
        .bind(job)
        .bind(rendition)
        .execute(&mut *tx)
        .await
        .context("storing bookmark")?;
        let kind = match b.source.as_str() {
            "interruption" => Some("viewer.interrupted"),
            "handoff" => Some("handoff.accepted"),
            _ => None,
        };
        if let Some(kind) = kind {
            let device: Option<String> =
                sqlx::query_scalar("SELECT device_id FROM assets WHERE id = $1")
                    .bind(&b.content_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .context("loading the bookmarked asset")?;
            let data = json!({
                "bookmark_id": b.id,
                "content_id": b.content_id,
                "position_ms": b.position_ms,
            });
            let event = NewEvent {
                kind,
                subject: format!("session:{}", b.content_id),
                device_id: device,
                data,
            };
            record_event(&mut tx, &event).await?;
        }
        tx.commit().await.context("committing a bookmark")
    }

    /// A bookmark by id.
    pub async fn bookmark(&self, id: &str) -> Result<Option<BookmarkRecord>> {
        self.find("id", id).await.context("loading bookmark")
    }

    /// A user's bookmarks, newest first.
    pub async fn bookmarks_of(&self, user_id: &str, limit: i64) -> Result<Vec<BookmarkRecord>> {
        self.newest("user_id", user_id, limit)
            .await
            .context("listing bookmarks")
    }

    /// Changes a bookmark, when its status is still `only_if` (any status
    /// when `None`); whether it changed.
    pub async fn update_bookmark(
        &self,
        id: &str,
        u: BookmarkUpdate<'_>,
        only_if: Option<&BookmarkStatus>,
    ) -> Result<bool> {
        let (status, job, rendition) = u.status.columns();
        let (w_status, w_job, w_rendition) =
            only_if.map(BookmarkStatus::columns).unwrap_or_default();
        let r = sqlx::query(
            "UPDATE bookmarks SET status = $1, job_id = $2, rendition = $3,
             content_id = COALESCE($4, content_id), address = COALESCE($5, address)
             WHERE id = $6 AND ($7 = 0 OR (status = $8 AND COALESCE(job_id, '') = $9 AND COALESCE(rendition, '') = $10))",
        )
        .bind(status)
        .bind(job)
        .bind(rendition)
        .bind(u.content_id)
        .bind(u.address)
        .bind(id)
        .bind(i64::from(only_if.is_some()))
        .bind(w_status)
        .bind(w_job.unwrap_or_default())
        .bind(w_rendition.unwrap_or_default())
        .execute(&self.pool)
        .await
        .with_context(|| format!("updating bookmark {id}"))?;
        Ok(r.rows_affected() > 0)
    }

    /// Every bookmark waiting for transcode `job` takes its outcome: the
    /// rendition made (and its address), or the failure.
    pub async fn finish_transcode(&self, job: &str, done: Option<(&str, &str)>) -> Result<u64> {
        let waiting = BookmarkStatus::Transcoding(job.to_string());
        let (status, address) = match done {
            Some((rendition, address)) => {
                (BookmarkStatus::Rendition(rendition.into()), Some(address))
            }
            None => (BookmarkStatus::TranscodeFailed(job.to_string()), None),
        };
        let (s, j, r) = status.columns();
        let res = sqlx::query(
            "UPDATE bookmarks SET status = $1, job_id = $2, rendition = $3, address = COALESCE($4, address)
             WHERE status = $5 AND job_id = $6",
        )
        .bind(s)
        .bind(j)
        .bind(r)
        .bind(address)
        .bind(waiting.name())
        .bind(job)
        .execute(&self.pool)
        .await
        .with_context(|| format!("updating the bookmarks of transcode {job}"))?;
        Ok(res.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    fn bookmark(id: &str, status: BookmarkStatus) -> BookmarkRecord {
        BookmarkRecord {
            id: id.into(),
            user_id: "u".into(),
            content_id: "c".into(),
            position_ms: 5,
            name: None,
            description: Some("d".into()),
            source: "handoff".into(),
            address: "http://a/x.mp4".into(),
            status,
            created_ms: 1,
            access_until_ms: Some(99),
        }
    }

    #[tokio::test]
    async fn statuses_keep_their_job_and_follow_it() {
        let (s, _d) = store().await;
        s.insert_bookmark(&bookmark("1", BookmarkStatus::Transcoding("j".into())))
            .await
            .unwrap();
        s.insert_bookmark(&bookmark("2", BookmarkStatus::Fetching("f".into())))
            .await
            .unwrap();
        assert_eq!(
            s.bookmark("1").await.unwrap().unwrap(),
            bookmark("1", BookmarkStatus::Transcoding("j".into()))
        );
        // Only while it still waits for that fetch.
        let failed = BookmarkStatus::FetchFailed("f".into());
        let upd = |status| BookmarkUpdate {
            status,
            content_id: None,
            address: None,
        };
        assert!(!s
            .update_bookmark(
                "2",
                upd(&failed),
                Some(&BookmarkStatus::Fetching("g".into()))
            )
            .await
            .unwrap());
        assert!(s
            .update_bookmark(
                "2",
                upd(&failed),
                Some(&BookmarkStatus::Fetching("f".into()))
            )
            .await
            .unwrap());
        assert_eq!(s.bookmark("2").await.unwrap().unwrap().status, failed);
        assert_eq!(
            s.finish_transcode("j", Some(("480p", "http://b/480p.mp4")))
                .await
                .unwrap(),
            1
        );
        let b = s.bookmark("1").await.unwrap().unwrap();
        assert_eq!(b.status, BookmarkStatus::Rendition("480p".into()));
        assert_eq!(b.address, "http://b/480p.mp4");
        assert_eq!(s.bookmarks_of("u", 10).await.unwrap().len(), 2);
        assert_eq!(BookmarkStatus::TranscodeFailed("j".into()).job(), Some("j"));
    }
}
