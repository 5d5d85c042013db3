//! Assets: recordings and their outputs.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::VideoAttributes;
use sqlx::Row;

use crate::{now_ms, Store};

/// Where a recording is.
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

/// A recording and its outputs.
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

fn asset(r: &sqlx::any::AnyRow) -> Asset {
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

impl Store {
    /// Records that a recording started (idempotent).
    pub async fn asset_recording(
        &self,
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
        .execute(&self.pool)
        .await
        .with_context(|| format!("recording asset {id}"))?;
        Ok(())
    }

    /// Records that the outputs of a recording are ready.
    pub async fn asset_ready(&self, id: &str, attributes: &VideoAttributes) -> Result<()> {
        let json = serde_json::to_string(attributes).context("serialising attributes")?;
        sqlx::query(
            "UPDATE assets SET state = 'ready', ready_ms = $1, attributes = $2, error = NULL WHERE id = $3",
        )
        .bind(now_ms())
        .bind(json)
        .bind(id)
        .execute(&self.pool)
        .await
        .with_context(|| format!("marking asset {id} ready"))?;
        Ok(())
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

    /// Records that a recording failed.
    pub async fn asset_failed(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query("UPDATE assets SET state = 'failed', error = $1 WHERE id = $2")
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("marking asset {id} failed"))?;
        Ok(())
    }

    /// One asset.
    pub async fn asset(&self, id: &str) -> Result<Option<Asset>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM assets WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .with_context(|| format!("loading asset {id}"))?;
        Ok(row.as_ref().map(asset))
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
        Ok(rows.iter().map(asset).collect())
    }

    /// One device's assets, newest first.
    pub async fn assets_of(&self, device_id: &str, limit: i64) -> Result<Vec<Asset>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM assets WHERE device_id = $1 ORDER BY created_ms DESC LIMIT $2"
        ))
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .with_context(|| format!("listing the assets of device {device_id}"))?;
        Ok(rows.iter().map(asset).collect())
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
        Ok(rows.iter().map(asset).collect())
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
