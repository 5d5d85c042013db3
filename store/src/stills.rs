//! Still-frame shares.

use anyhow::{Context, Result};
use sqlx::Row;

use crate::Store;

/// A still as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StillRecord {
    /// Still id (names its files).
    pub id: String,
    /// The token of its page (`/p/{token}`).
    pub token: String,
    /// The video it comes from.
    pub content_id: String,
    /// Its time point, ms.
    pub t_ms: i64,
    /// The comment that travels with it.
    pub comment: Option<String>,
    /// The file name offered for download.
    pub name: String,
    /// Whether the shared image was enhanced.
    pub enhanced: bool,
    /// Width of the image, pixels.
    pub width: i64,
    /// Height of the image, pixels.
    pub height: i64,
    /// Created, Unix ms.
    pub created_ms: i64,
}

const COLUMNS: &str =
    "id, token, content_id, t_ms, comment, name, enhanced, width, height, created_ms";

fn record(r: &sqlx::any::AnyRow) -> StillRecord {
    StillRecord {
        id: r.get(0),
        token: r.get(1),
        content_id: r.get(2),
        t_ms: r.get(3),
        comment: r.get(4),
        name: r.get(5),
        enhanced: r.get::<i64, _>(6) != 0,
        width: r.get(7),
        height: r.get(8),
        created_ms: r.get(9),
    }
}

impl Store {
    /// Stores a still.
    pub async fn insert_still(&self, s: &StillRecord) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO stills ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&s.id)
        .bind(&s.token)
        .bind(&s.content_id)
        .bind(s.t_ms)
        .bind(&s.comment)
        .bind(&s.name)
        .bind(s.enhanced as i64)
        .bind(s.width)
        .bind(s.height)
        .bind(s.created_ms)
        .execute(&self.pool)
        .await
        .context("storing the still")?;
        Ok(())
    }

    /// A still by id.
    pub async fn still(&self, id: &str) -> Result<Option<StillRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM stills WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("loading the still")?;
        Ok(row.as_ref().map(record))
    }

    /// A still by the token of its page.
    pub async fn still_by_token(&self, token: &str) -> Result<Option<StillRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM stills WHERE token = $1"))
            .bind(token)
            .fetch_optional(&self.pool)
            .await
            .context("loading the still by token")?;
        Ok(row.as_ref().map(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[tokio::test]
    async fn stills_are_found_by_id_and_token() {
        let (s, _d) = store().await;
        let r = StillRecord {
            id: "i".into(),
            token: "t".into(),
            content_id: "c".into(),
            t_ms: 1500,
            comment: None,
            name: "n".into(),
            enhanced: true,
            width: 64,
            height: 36,
            created_ms: 1,
        };
        s.insert_still(&r).await.unwrap();
        assert_eq!(s.still("i").await.unwrap(), Some(r.clone()));
        assert_eq!(s.still_by_token("t").await.unwrap(), Some(r));
    }
}
