//! Databases made before the migrations existed (their tables were created
//! by the code at start-up, without a migrations table): the columns added
//! since are added, and old combined bookmark states (`transcoding:<job>`)
//! are split into status and job, so that the first migrations find the
//! tables as they make them. SQLite only: PostgreSQL databases never had
//! that older form.

use anyhow::{Context, Result};
use sqlx::AnyPool;

async fn has_table(pool: &AnyPool, table: &str) -> Result<bool> {
    Ok(
        sqlx::query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1")
            .bind(table)
            .fetch_optional(pool)
            .await
            .with_context(|| format!("looking for table {table}"))?
            .is_some(),
    )
}

async fn add_column(pool: &AnyPool, table: &str, column: &str, ddl: &str) -> Result<()> {
    let present = sqlx::query("SELECT 1 FROM pragma_table_info($1) WHERE name = $2")
        .bind(table)
        .bind(column)
        .fetch_optional(pool)
        .await
        .with_context(|| format!("reading table {table}"))?
        .is_some();
    if !present {
        sqlx::query(&format!("ALTER TABLE {table} ADD COLUMN {column} {ddl}"))
            .execute(pool)
            .await
            .with_context(|| format!("adding {table}.{column}"))?;
    }
    Ok(())
}

/// Brings a pre-migration database to the state of the first migrations;
/// does nothing to a new database or one the migrations manage.
pub(crate) async fn upgrade(pool: &AnyPool) -> Result<()> {
    if has_table(pool, "_sqlx_migrations").await? || !has_table(pool, "assets").await? {
        return Ok(());
    }
    tracing::info!("upgrading a database made before migrations");
    if has_table(pool, "shares").await? {
        add_column(pool, "shares", "public", "INTEGER NOT NULL DEFAULT 0").await?;
    }
    if has_table(pool, "bookmarks").await? {
        add_column(pool, "bookmarks", "access_until_ms", "BIGINT").await?;
        add_column(pool, "bookmarks", "job_id", "TEXT").await?;
        add_column(pool, "bookmarks", "rendition", "TEXT").await?;
        for prefix in [
            "transcoding",
            "transcode_failed",
            "fetching",
            "fetch_failed",
        ] {
            sqlx::query(
                "UPDATE bookmarks SET job_id = substr(status, $1), status = $2
                 WHERE status LIKE $3",
            )
            .bind(prefix.len() as i64 + 2)
            .bind(prefix)
            .bind(format!("{prefix}:%"))
            .execute(pool)
            .await
            .context("splitting old bookmark states")?;
        }
        sqlx::query(
            "UPDATE bookmarks SET rendition = substr(status, 11), status = 'rendition'
             WHERE status LIKE 'rendition:%'",
        )
        .execute(pool)
        .await
        .context("splitting old bookmark renditions")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{BookmarkStatus, Store};

    /// A database as the code before migrations left it opens, keeps its
    /// rows, and its old states read as the new ones.
    #[tokio::test]
    async fn a_database_made_before_migrations_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
            for stmt in [
                "CREATE TABLE assets (id TEXT PRIMARY KEY, device_id TEXT NOT NULL, title TEXT, state TEXT NOT NULL,
                 created_ms BIGINT NOT NULL, ready_ms BIGINT, attributes TEXT, error TEXT)",
                "CREATE TABLE shares (id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, asset_id TEXT NOT NULL,
                 device_id TEXT NOT NULL, kind TEXT NOT NULL, event_key TEXT UNIQUE, attributes TEXT NOT NULL,
                 created_ms BIGINT NOT NULL, expires_ms BIGINT, revoked_ms BIGINT)",
                "CREATE TABLE bookmarks (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, content_id TEXT NOT NULL,
                 position_ms BIGINT NOT NULL, name TEXT, description TEXT, source TEXT NOT NULL,
                 address TEXT NOT NULL, status TEXT NOT NULL, created_ms BIGINT NOT NULL)",
                "INSERT INTO assets VALUES ('a1', 'd1', NULL, 'ready', 1, 2, NULL, NULL)",
                "INSERT INTO bookmarks VALUES ('b1', 'u1', 'a1', 5, NULL, NULL, 'handoff', 'x', 'transcoding:j7', 1)",
                "INSERT INTO bookmarks VALUES ('b2', 'u1', 'a1', 5, NULL, NULL, 'handoff', 'x', 'rendition:480p', 2)",
                "INSERT INTO bookmarks VALUES ('b3', 'u1', 'a1', 5, NULL, NULL, 'handoff', 'x', 'fetch_failed:f2', 3)",
            ] {
                sqlx::query(stmt).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        let s = Store::open_sqlite(&path).await.unwrap();
        assert!(s.asset("a1").await.unwrap().is_some());
        let b = |id: &'static str| {
            let s = s.clone();
            async move { s.bookmark(id).await.unwrap().unwrap().status }
        };
        assert_eq!(b("b1").await, BookmarkStatus::Transcoding("j7".into()));
        assert_eq!(b("b2").await, BookmarkStatus::Rendition("480p".into()));
        assert_eq!(b("b3").await, BookmarkStatus::FetchFailed("f2".into()));
        // Opened again: nothing to do.
        drop(s);
        Store::open_sqlite(&path).await.unwrap();
    }
}
