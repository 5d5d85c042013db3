//! Share links: one row per link, with a snapshot of the attributes it
//! shares.

use anyhow::{Context, Result};
use serde_json::json;
use sharecast_formats::attributes::VideoAttributes;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::rows::Record;
use crate::webhooks::{record_event, NewEvent};
use crate::Store;

/// A share link as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRecord {
    /// Share id.
    pub id: String,
    /// The token in its link (`/s/{token}`).
    pub token: String,
    /// The shared asset.
    pub asset_id: String,
    /// Owner device.
    pub device_id: String,
    /// `vod` or `live`: what the asset was when shared.
    pub kind: String,
    /// `live:{asset}` or `vod:{asset}` for subscription events.
    pub event_key: Option<String>,
    /// The attributes when shared.
    pub attributes: VideoAttributes,
    /// Creation, Unix ms.
    pub created_ms: i64,
    /// Expiry, Unix ms (none: never).
    pub expires_ms: Option<i64>,
    /// Revocation, Unix ms.
    pub revoked_ms: Option<i64>,
    /// Whether it opens the live stream to everyone.
    pub public: bool,
}

const COLUMNS: &str =
    "id, token, asset_id, device_id, kind, event_key, attributes, created_ms, expires_ms, revoked_ms, public";

impl Record for ShareRecord {
    const TABLE: &'static str = "shares";
    const COLUMNS: &'static str = COLUMNS;

    fn from_row(r: &AnyRow) -> Self {
        let attrs: String = r.get(6);
        ShareRecord {
            id: r.get(0),
            token: r.get(1),
            asset_id: r.get(2),
            device_id: r.get(3),
            kind: r.get(4),
            event_key: r.get(5),
            attributes: serde_json::from_str(&attrs).unwrap_or_default(),
            created_ms: r.get(7),
            expires_ms: r.get(8),
            revoked_ms: r.get(9),
            public: r.get::<i64, _>(10) != 0,
        }
    }
}

impl Store {
    /// Stores a share. With an `event_key` already taken, nothing is stored
    /// (one share per subscription event).
    /// A share stored is reported by the event `share.created`, in the same
    /// transaction.
    pub async fn insert_share(&self, s: &ShareRecord) -> Result<()> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let done = sqlx::query(&format!(
            "INSERT INTO shares ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT(event_key) DO NOTHING"
        ))
        .bind(&s.id)
        .bind(&s.token)
        .bind(&s.asset_id)
        .bind(&s.device_id)
        .bind(&s.kind)
        .bind(&s.event_key)
        .bind(serde_json::to_string(&s.attributes).context("serialising attributes")?)
        .bind(s.created_ms)
        .bind(s.expires_ms)
        .bind(s.revoked_ms)
        .bind(s.public as i64)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("inserting share {}", s.id))?;
        if done.rows_affected() == 1 {
            let data = json!({
                "share_id": s.id,
                "asset_id": s.asset_id,
                "kind": s.kind,
                "public": s.public,
                "created_unix_ms": s.created_ms,
                "expires_unix_ms": s.expires_ms,
            });
            let event = NewEvent {
                kind: "share.created",
                subject: format!("share:{}", s.id),
                device_id: Some(s.device_id.clone()),
                data,
            };
            record_event(&mut tx, &event).await?;
        }
        tx.commit()
            .await
            .with_context(|| format!("committing share {}", s.id))
    }

    async fn share_where(&self, column: &str, value: &str) -> Result<Option<ShareRecord>> {
        self.find(column, value)
            .await
            .with_context(|| format!("loading a share by {column}"))
    }

    /// A share by id.
    pub async fn share(&self, id: &str) -> Result<Option<ShareRecord>> {
        self.share_where("id", id).await
    }

    /// A share by the token of its link.
    pub async fn share_by_token(&self, token: &str) -> Result<Option<ShareRecord>> {
        self.share_where("token", token).await
    }

    /// The share of a subscription event.
    pub async fn share_by_event(&self, event_key: &str) -> Result<Option<ShareRecord>> {
        self.share_where("event_key", event_key).await
    }

    /// A device's shares, newest first.
    pub async fn shares_of(&self, device_id: &str, limit: i64) -> Result<Vec<ShareRecord>> {
        self.newest("device_id", device_id, limit)
            .await
            .context("listing shares")
    }

    /// Revokes a share (the first revocation time stays).
    pub async fn revoke_share(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE shares SET revoked_ms = COALESCE(revoked_ms, $1) WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("revoking share {id}"))?;
        Ok(())
    }

    /// Public shares neither revoked nor expired at `now`, of one asset or
    /// of all: (asset id, expiry).
    pub async fn active_public_shares(
        &self,
        asset_id: Option<&str>,
        now: i64,
    ) -> Result<Vec<(String, Option<i64>)>> {
        let active = "SELECT asset_id, expires_ms FROM shares
             WHERE public = 1 AND revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $1)";
        let rows = match asset_id {
            Some(a) => {
                sqlx::query(&format!("{active} AND asset_id = $2"))
                    .bind(now)
                    .bind(a)
                    .fetch_all(&self.pool)
                    .await
            }
            None => sqlx::query(active).bind(now).fetch_all(&self.pool).await,
        }
        .context("loading public shares")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    fn record(id: &str, event: Option<&str>, public: bool, expires: Option<i64>) -> ShareRecord {
        ShareRecord {
            id: id.into(),
            token: format!("t{id}"),
            asset_id: "a".into(),
            device_id: "d".into(),
            kind: "vod".into(),
            event_key: event.map(str::to_string),
            attributes: VideoAttributes::default(),
            created_ms: 1,
            expires_ms: expires,
            revoked_ms: None,
            public,
        }
    }

    #[tokio::test]
    async fn shares_are_found_by_id_token_and_event_and_revoked_once() {
        let (s, _d) = store().await;
        s.insert_share(&record("1", Some("vod:a"), false, None))
            .await
            .unwrap();
        // The same event again: one share.
        s.insert_share(&record("2", Some("vod:a"), false, None))
            .await
            .unwrap();
        assert!(s.share("2").await.unwrap().is_none());
        assert_eq!(s.share_by_token("t1").await.unwrap().unwrap().id, "1");
        assert_eq!(s.share_by_event("vod:a").await.unwrap().unwrap().id, "1");
        s.revoke_share("1", 5).await.unwrap();
        s.revoke_share("1", 9).await.unwrap();
        assert_eq!(s.share("1").await.unwrap().unwrap().revoked_ms, Some(5));
        s.insert_share(&record("3", None, true, Some(100)))
            .await
            .unwrap();
        s.insert_share(&record("4", None, true, None))
            .await
            .unwrap();
        let public = s.active_public_shares(Some("a"), 50).await.unwrap();
        assert_eq!(public.len(), 2);
        assert_eq!(s.active_public_shares(None, 150).await.unwrap().len(), 1);
        assert_eq!(s.shares_of("d", 10).await.unwrap().len(), 3);
    }
}
