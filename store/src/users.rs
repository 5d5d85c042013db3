//! Users (portal accounts) and their terminals.

use anyhow::{Context, Result};
use sqlx::Row;

use crate::{hash_token, new_token, now_ms, Store};

impl Store {
    /// Makes a user; returns its id and its token (shown once, stored
    /// hashed).
    pub async fn create_user(&self, name: &str) -> Result<(String, String)> {
        let id = sharecast_tokens::new_id();
        let token = new_token("su_");
        let now = now_ms();
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        sqlx::query("INSERT INTO users (id, name, created_ms) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("inserting user")?;
        sqlx::query(
            "INSERT INTO user_tokens (token_hash, user_id, created_ms) VALUES ($1, $2, $3)",
        )
        .bind(hash_token(&token))
        .bind(&id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .context("inserting user token")?;
        tx.commit().await.context("storing the user")?;
        Ok((id, token))
    }

    /// The user a user token belongs to.
    pub async fn user_by_token(&self, token: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM user_tokens WHERE token_hash = $1")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await
            .context("looking up user token")?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Adds a terminal of a user; returns its id.
    pub async fn add_terminal(
        &self,
        user_id: &str,
        kind: &str,
        name: Option<&str>,
    ) -> Result<String> {
        let id = sharecast_tokens::new_id();
        sqlx::query(
            "INSERT INTO terminals (id, user_id, type, name, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(kind)
        .bind(name)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .context("inserting terminal")?;
        Ok(id)
    }

    /// The type of a user's terminal, if it is theirs.
    pub async fn terminal_type(&self, user_id: &str, terminal_id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT type FROM terminals WHERE id = $1 AND user_id = $2")
            .bind(terminal_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await
            .context("looking up terminal")?;
        Ok(row.map(|r| r.get(0)))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::store;

    #[tokio::test]
    async fn users_are_found_by_token_and_terminals_are_theirs() {
        let (s, _d) = store().await;
        let (id, token) = s.create_user("alice").await.unwrap();
        assert!(token.starts_with("su_"));
        assert_eq!(s.user_by_token(&token).await.unwrap(), Some(id.clone()));
        assert_eq!(s.user_by_token("su_x").await.unwrap(), None);
        let t = s.add_terminal(&id, "tv", None).await.unwrap();
        assert_eq!(
            s.terminal_type(&id, &t).await.unwrap().as_deref(),
            Some("tv")
        );
        assert_eq!(s.terminal_type("other", &t).await.unwrap(), None);
    }
}
