//! Assets: recordings and their outputs.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sharecast_formats::attributes::VideoAttributes;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::rows::Record;
use crate::webhooks::{record_event, session_event};
use crate::{now_ms, Store};

/// Where a recording is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetState {
    /// The phone is uploading (the asset is live).
    Recording,
    /// Its VOD files exist.
    Ready,
    /// The recording could not be finished.
    Failed,
}

impl AssetState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetState::Recording => "recording",
            AssetState::Ready => "ready",
            AssetState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> AssetState {
        match s {
            "ready" => AssetState::Ready,
            "recording" => AssetState::Recording,
            _ => AssetState::Failed,
        }
    }
}

/// An ingest session that starts (see [`Store::session_started`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionStart<'a> {
    /// The session id (its asset's).
    pub id: &'a str,
    /// Its device.
    pub device_id: &'a str,
    /// Its title, if given.
    pub title: Option<&'a str>,
    /// When it started, Unix ms.
    pub started_ms: i64,
}

/// A recording and its outputs.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Asset {
    /// Asset id (the ingest session id).
    pub id: String,
    /// Uploading device id.
    pub device_id: String,
    /// Title, if given.
    pub title: Option<String>,
    /// Where the recording is.
    pub state: AssetState,
    /// Start time, Unix ms.
    pub created_unix_ms: i64,
    /// When the VOD became ready, Unix ms.
    pub ready_unix_ms: Option<i64>,
    /// Attributes of the outputs once ready.
    pub attributes: Option<VideoAttributes>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

const COLUMNS: &str = "id, device_id, title, state, created_ms, ready_ms, attributes, error";

impl Record for Asset {
    const TABLE: &'static str = "assets";
    const COLUMNS: &'static str = COLUMNS;

    fn from_row(r: &AnyRow) -> Self {
        let attrs: Option<String> = r.get(6);
        Asset {
            id: r.get(0),
            device_id: r.get(1),
            title: r.get(2),
            state: AssetState::parse(r.get(3)),
            created_unix_ms: r.get(4),
            ready_unix_ms: r.get(5),
            attributes: attrs.and_then(|a| serde_json::from_str(&a).ok()),
            error: r.get(7),
        }
    }
}

async fn insert_recording(
    conn: &mut AnyConnection,
    id: &str,
    device_id: &str,
    title: Option<&str>,
    created_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO assets (id, device_id, title, state, created_ms) VALUES ($1, $2, $3, 'recording', $4)
         ON CONFLICT(id) DO UPDATE SET state = 'recording'",
    )
    .bind(id)
    .bind(device_id)
    .bind(title)
    .bind(created_ms)
    .execute(conn)
    .await
    .with_context(|| format!("recording asset {id}"))?;
    Ok(())
}

/// The asset's device, state and attributes before a change, its row
/// written first so that the transaction holds it (see
/// [`record_event`]).
async fn lock_asset(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<(String, String, Option<String>)> {
    let row = sqlx::query(
        "UPDATE assets SET state = state WHERE id = $1 RETURNING device_id, state, attributes",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
    .with_context(|| format!("loading asset {id}"))?
    .with_context(|| format!("no asset {id}"))?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Marks an asset ready with its events; returns its device.
async fn mark_ready(
    conn: &mut AnyConnection,
    id: &str,
    attributes: &VideoAttributes,
) -> Result<String> {
    let (device, state, before) = lock_asset(conn, id).await?;
    let json = serde_json::to_string(attributes).context("serialising attributes")?;
    sqlx::query(
        "UPDATE assets SET state = 'ready', ready_ms = $1, attributes = $2, error = NULL WHERE id = $3",
    )
    .bind(now_ms())
    .bind(json)
    .bind(id)
    .execute(&mut *conn)
    .await
    .with_context(|| format!("marking asset {id} ready"))?;
    let events = if state == AssetState::Ready.as_str() {
        let before: Option<VideoAttributes> = before.and_then(|b| serde_json::from_str(&b).ok());
        let had = |name: &str| {
            before
                .as_ref()
                .is_some_and(|b| b.renditions.iter().any(|r| r.name == name))
        };
        attributes
            .renditions
            .iter()
            .filter(|r| !had(&r.name))
            .map(|r| {
                session_event(
                    "rendition.ready",
                    id,
                    &device,
                    json!({ "asset_id": id, "rendition": r }),
                )
            })
            .collect()
    } else {
        vec![session_event(
            "asset.ready",
            id,
            &device,
            json!({ "asset_id": id, "attributes": attributes }),
        )]
    };
    for e in &events {
        record_event(conn, e).await?;
    }
    Ok(device)
}

/// Marks an asset failed with its event; returns its device.
async fn mark_failed(conn: &mut AnyConnection, id: &str, error: &str) -> Result<String> {
    let (device, _, _) = lock_asset(conn, id).await?;
    sqlx::query("UPDATE assets SET state = 'failed', error = $1 WHERE id = $2")
        .bind(error)
        .bind(id)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("marking asset {id} failed"))?;
    let data = json!({ "asset_id": id, "error": error });
    record_event(conn, &session_event("asset.failed", id, &device, data)).await?;
    Ok(device)
}

impl Store {
    /// Records that a recording started (idempotent).
    pub async fn asset_recording(
        &self,
        id: &str,
        device_id: &str,
        title: Option<&str>,
        created_ms: i64,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await.context("a database connection")?;
        insert_recording(&mut conn, id, device_id, title, created_ms).await
    }

    /// Records that a device's ingest session started: its asset is
    /// recording, and the `session.started` event in the same transaction.
    pub async fn session_started(&self, s: &SessionStart<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        insert_recording(&mut tx, s.id, s.device_id, s.title, s.started_ms).await?;
        let data = json!({
            "session_id": s.id,
            "device_id": s.device_id,
            "title": s.title,
            "started_unix_ms": s.started_ms,
        });
        let event = session_event("session.started", s.id, s.device_id, data);
        record_event(&mut tx, &event).await?;
        tx.commit()
            .await
            .with_context(|| format!("committing session {}'s start", s.id))
    }

    /// Records that the outputs of a recording are ready, with the event
    /// `asset.ready` (the first time) or a `rendition.ready` for each
    /// rendition it did not have.
    pub async fn asset_ready(&self, id: &str, attributes: &VideoAttributes) -> Result<()> {
        self.settle_asset(id, Ok(attributes), false).await
    }

    /// Records that a recording failed, with the event `asset.failed`.
    pub async fn asset_failed(&self, id: &str, error: &str) -> Result<()> {
        self.settle_asset(id, Err(error), false).await
    }

    /// Records that an ingest session ended with its asset ready
    /// (`Ok(attributes)`) or failed (`Err(why)`): the asset's state and the
    /// events `asset.ready` (or `asset.failed`) and `session.ended`, in one
    /// transaction.
    pub async fn session_ended(
        &self,
        id: &str,
        outcome: Result<&VideoAttributes, &str>,
    ) -> Result<()> {
        self.settle_asset(id, outcome, true).await
    }

    /// An asset ready or failed, with its events (and `session.ended` when
    /// `ended`), in one transaction.
    async fn settle_asset(
        &self,
        id: &str,
        outcome: Result<&VideoAttributes, &str>,
        ended: bool,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let device = match outcome {
            Ok(attributes) => mark_ready(&mut tx, id, attributes).await?,
            Err(error) => mark_failed(&mut tx, id, error).await?,
        };
        let state = if outcome.is_ok() { "ready" } else { "failed" };
        if ended {
            let data = json!({ "session_id": id, "outcome": state });
            record_event(&mut tx, &session_event("session.ended", id, &device, data)).await?;
        }
        tx.commit()
            .await
            .with_context(|| format!("committing asset {id} {state}"))
    }

    /// Forgets an asset (its files are the caller's).
    pub async fn asset_delete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM assets WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("deleting asset {id}"))?;
        Ok(())
    }

    /// One asset.
    pub async fn asset(&self, id: &str) -> Result<Option<Asset>> {
        self.find("id", id)
            .await
            .with_context(|| format!("loading asset {id}"))
    }

    /// The newest assets first.
    pub async fn assets(&self, limit: i64) -> Result<Vec<Asset>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM assets ORDER BY created_ms DESC LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing assets")?;
        Ok(rows.iter().map(Asset::from_row).collect())
    }

    /// One device's assets, newest first.
    pub async fn assets_of(&self, device_id: &str, limit: i64) -> Result<Vec<Asset>> {
        self.newest("device_id", device_id, limit)
            .await
            .with_context(|| format!("listing the assets of device {device_id}"))
    }

    /// Assets with a public share that is neither revoked nor expired
    /// (published to everyone), newest first.
    pub async fn published_assets(&self, limit: i64) -> Result<Vec<Asset>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM assets
             WHERE id IN (SELECT asset_id FROM shares WHERE public = 1 AND revoked_ms IS NULL
                          AND (expires_ms IS NULL OR expires_ms > $1))
             ORDER BY created_ms DESC LIMIT $2"
        ))
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing published assets")?;
        Ok(rows.iter().map(Asset::from_row).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[tokio::test]
    async fn an_asset_goes_from_recording_to_ready_or_failed() {
        let (s, _d) = store().await;
        s.asset_recording("a", "d", Some("t"), 1).await.unwrap();
        s.asset_recording("b", "e", None, 2).await.unwrap();
        assert_eq!(
            s.asset("a").await.unwrap().unwrap().state,
            AssetState::Recording
        );
        let attrs = VideoAttributes {
            id: "a".into(),
            duration_ms: 1000,
            ..VideoAttributes::default()
        };
        s.asset_ready("a", &attrs).await.unwrap();
        let a = s.asset("a").await.unwrap().unwrap();
        assert_eq!(a.state, AssetState::Ready);
        assert_eq!(a.attributes.unwrap().duration_ms, 1000);
        s.asset_failed("b", "why").await.unwrap();
        assert_eq!(
            s.asset("b").await.unwrap().unwrap().state,
            AssetState::Failed
        );
        assert_eq!(s.assets(10).await.unwrap().len(), 2);
        assert_eq!(s.assets_of("d", 10).await.unwrap().len(), 1);
        assert!(s.published_assets(10).await.unwrap().is_empty());
        s.asset_delete("b").await.unwrap();
        assert!(s.asset("b").await.unwrap().is_none());
        // Shown as before: a lowercase word.
        assert_eq!(serde_json::to_value(AssetState::Ready).unwrap(), "ready");
    }
}
