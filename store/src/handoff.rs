//! Suspend states of hand-offs between platforms.

use anyhow::{Context, Result};
use sqlx::Row;

use crate::Store;

/// A suspend state as stored: its JSON, owner and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuspendRecord {
    /// State id.
    pub id: String,
    /// The short code a user types.
    pub code: String,
    /// The user who handed off.
    pub user_id: String,
    /// The state, JSON.
    pub state: String,
    /// Expiry, Unix ms.
    pub expires_ms: i64,
}

fn record(r: &sqlx::any::AnyRow) -> SuspendRecord {
    SuspendRecord {
        id: r.get(0),
        code: r.get(1),
        user_id: r.get(2),
        state: r.get(3),
        expires_ms: r.get(4),
    }
}

impl Store {
    /// Stores a suspend state.
    pub async fn insert_suspend_state(&self, s: &SuspendRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO suspend_states (id, code, user_id, state, expires_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id)
        .bind(&s.code)
        .bind(&s.user_id)
        .bind(&s.state)
        .bind(s.expires_ms)
        .execute(&self.pool)
        .await
        .context("storing the suspend state")?;
        Ok(())
    }

    /// A suspend state by id.
    pub async fn suspend_state(&self, id: &str) -> Result<Option<SuspendRecord>> {
        let row = sqlx::query(
            "SELECT id, code, user_id, state, expires_ms FROM suspend_states WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .context("loading the suspend state")?;
        Ok(row.as_ref().map(record))
    }

    /// A suspend state by its code.
    pub async fn suspend_state_by_code(&self, code: &str) -> Result<Option<SuspendRecord>> {
        let row = sqlx::query(
            "SELECT id, code, user_id, state, expires_ms FROM suspend_states WHERE code = $1",
        )
        .bind(code)
        .fetch_optional(&self.pool)
        .await
        .context("loading the suspend state by code")?;
        Ok(row.as_ref().map(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[tokio::test]
    async fn states_are_found_by_id_and_code() {
        let (s, _d) = store().await;
        let r = SuspendRecord {
            id: "i".into(),
            code: "ABCDEFGH".into(),
            user_id: "u".into(),
            state: "{}".into(),
            expires_ms: 5,
        };
        s.insert_suspend_state(&r).await.unwrap();
        assert_eq!(s.suspend_state("i").await.unwrap(), Some(r.clone()));
        assert_eq!(s.suspend_state_by_code("ABCDEFGH").await.unwrap(), Some(r));
        assert_eq!(s.suspend_state_by_code("X").await.unwrap(), None);
    }
}
