//! Playback history across a user's terminals, and the resume tokens that
//! resume a record on any of them.

use anyhow::{Context, Result};
use sqlx::Row;

use crate::{hash_token, new_token, Store};

/// Where a terminal stopped a programme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    /// Record id.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The content (asset) id.
    pub content_id: String,
    /// The terminal that stopped.
    pub terminal_id: String,
    /// Its type.
    pub terminal_type: String,
    /// A live programme (absolute breakpoint) or a recording (relative).
    pub live: bool,
    /// The relative breakpoint of a recording, ms.
    pub position_ms: Option<i64>,
    /// The absolute breakpoint of a live programme, Unix ms.
    pub breakpoint_unix_ms: Option<i64>,
    /// An abnormal stop.
    pub abnormal: bool,
    /// When recorded, Unix ms.
    pub created_ms: i64,
}

/// What a resume token opens: its user, its expiry and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeGrant {
    /// The user it belongs to.
    pub user_id: String,
    /// When it stops working, Unix ms.
    pub expires_ms: i64,
    /// The record it resumes.
    pub record: HistoryRecord,
}

const COLUMNS: &str = "h.id, h.user_id, h.content_id, h.terminal_id, h.terminal_type, h.live, h.position_ms, h.breakpoint_unix_ms, h.abnormal, h.created_ms";

fn record(r: &sqlx::any::AnyRow) -> HistoryRecord {
    HistoryRecord {
        id: r.get(0),
        user_id: r.get(1),
        content_id: r.get(2),
        terminal_id: r.get(3),
        terminal_type: r.get(4),
        live: r.get::<i64, _>(5) != 0,
        position_ms: r.get(6),
        breakpoint_unix_ms: r.get(7),
        abnormal: r.get::<i64, _>(8) != 0,
        created_ms: r.get(9),
    }
}

impl Store {
    /// Records a stop and makes its resume token (returned, stored hashed),
    /// valid until `token_expires_ms`.
    pub async fn add_history(&self, h: &HistoryRecord, token_expires_ms: i64) -> Result<String> {
        let token = new_token("sr_");
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        sqlx::query(
            "INSERT INTO history (id, user_id, content_id, terminal_id, terminal_type, live, position_ms, breakpoint_unix_ms, abnormal, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&h.id)
        .bind(&h.user_id)
        .bind(&h.content_id)
        .bind(&h.terminal_id)
        .bind(&h.terminal_type)
        .bind(h.live as i64)
        .bind(h.position_ms)
        .bind(h.breakpoint_unix_ms)
        .bind(h.abnormal as i64)
        .bind(h.created_ms)
        .execute(&mut *tx)
        .await
        .context("inserting history")?;
        sqlx::query(
            "INSERT INTO resume_tokens (token_hash, user_id, history_id, expires_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash_token(&token))
        .bind(&h.user_id)
        .bind(&h.id)
        .bind(token_expires_ms)
        .execute(&mut *tx)
        .await
        .context("inserting resume token")?;
        tx.commit().await.context("storing history")?;
        Ok(token)
    }

    /// A user's history, newest first.
    pub async fn history_of(&self, user_id: &str, limit: i64) -> Result<Vec<HistoryRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM history h WHERE h.user_id = $1 ORDER BY h.created_ms DESC LIMIT $2"
        ))
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing history")?;
        Ok(rows.iter().map(record).collect())
    }

    /// What a resume token opens, if it exists.
    pub async fn resume_grant(&self, token: &str) -> Result<Option<ResumeGrant>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, t.user_id, t.expires_ms FROM resume_tokens t
             JOIN history h ON h.id = t.history_id WHERE t.token_hash = $1"
        ))
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await
        .context("looking up resume token")?;
        Ok(row.map(|r| ResumeGrant {
            user_id: r.get(10),
            expires_ms: r.get(11),
            record: record(&r),
        }))
    }

    /// Deletes history records made before `cutoff_ms` and their resume
    /// tokens; returns how many records.
    pub async fn purge_history(&self, cutoff_ms: i64) -> Result<u64> {
        sqlx::query(
            "DELETE FROM resume_tokens WHERE history_id IN (SELECT id FROM history WHERE created_ms < $1)",
        )
        .bind(cutoff_ms)
        .execute(&self.pool)
        .await
        .context("purging resume tokens")?;
        let r = sqlx::query("DELETE FROM history WHERE created_ms < $1")
            .bind(cutoff_ms)
            .execute(&self.pool)
            .await
            .context("purging history")?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[tokio::test]
    async fn history_is_resumed_by_its_token_and_ages_out() {
        let (s, _d) = store().await;
        let h = HistoryRecord {
            id: "h1".into(),
            user_id: "u".into(),
            content_id: "c".into(),
            terminal_id: "t".into(),
            terminal_type: "tv".into(),
            live: false,
            position_ms: Some(1500),
            breakpoint_unix_ms: None,
            abnormal: false,
            created_ms: 100,
        };
        let token = s.add_history(&h, 9_000).await.unwrap();
        let g = s.resume_grant(&token).await.unwrap().unwrap();
        assert_eq!((g.user_id.as_str(), g.expires_ms), ("u", 9_000));
        assert_eq!(g.record, h);
        assert_eq!(s.history_of("u", 10).await.unwrap(), vec![h]);
        assert_eq!(s.purge_history(101).await.unwrap(), 1);
        assert!(s.resume_grant(&token).await.unwrap().is_none());
    }
}
