//! The metadata store: devices and assets, in SQL behind one interface.
//!
//! The embedded default is SQLite (`<data_dir>/sharecast.db`). Queries are
//! plain SQL that PostgreSQL also accepts, so a multi-node deployment can swap
//! the pool; only SQLite is wired and tested today.

use std::str::FromStr;

use anyhow::{Context, Result};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sharecast_formats::attributes::VideoAttributes;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

/// A registered device (a phone that uploads).
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    /// Device id.
    pub id: String,
    /// Name given at `device add`.
    pub name: String,
    /// Creation time, Unix ms.
    pub created_unix_ms: i64,
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
    /// `recording`, `ready` or `failed`.
    pub state: String,
    /// Start time, Unix ms.
    pub created_unix_ms: i64,
    /// When the VOD became ready, Unix ms.
    pub ready_unix_ms: Option<i64>,
    /// Attributes of the outputs once ready.
    pub attributes: Option<VideoAttributes>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The store.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: SqlitePool,
}

/// Now, ms since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// SHA-256 of a token, hex: what the store keeps instead of the token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
    format!("{prefix}{}", hex::encode(b))
}

impl Store {
    /// Open (creating if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &std::path::Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .with_context(|| format!("database path {}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        for stmt in [
            "CREATE TABLE IF NOT EXISTS devices (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                token_hash TEXT NOT NULL UNIQUE,
                created_ms BIGINT NOT NULL,
                revoked INTEGER NOT NULL DEFAULT 0
            )",
            "CREATE TABLE IF NOT EXISTS assets (
                id TEXT PRIMARY KEY,
                device_id TEXT NOT NULL,
                title TEXT,
                state TEXT NOT NULL,
                created_ms BIGINT NOT NULL,
                ready_ms BIGINT,
                attributes TEXT,
                error TEXT
            )",
            "CREATE INDEX IF NOT EXISTS assets_created ON assets(created_ms)",
        ] {
            sqlx::query(stmt)
                .execute(&self.pool)
                .await
                .context("creating tables")?;
        }
        Ok(())
    }

    /// Register a device; returns it and its token (shown once, stored hashed).
    pub async fn add_device(&self, name: &str) -> Result<(Device, String)> {
        let id = crate::ids::new_id();
        let token = random_token("sc_");
        let created = now_ms();
        sqlx::query("INSERT INTO devices (id, name, token_hash, created_ms) VALUES (?, ?, ?, ?)")
            .bind(&id)
            .bind(name)
            .bind(hash_token(&token))
            .bind(created)
            .execute(&self.pool)
            .await
            .context("inserting device")?;
        Ok((
            Device {
                id,
                name: name.to_string(),
                created_unix_ms: created,
            },
            token,
        ))
    }

    /// The device a token belongs to, unless unknown or revoked.
    pub async fn device_by_token(&self, token: &str) -> Result<Option<Device>> {
        let row = sqlx::query(
            "SELECT id, name, created_ms FROM devices WHERE token_hash = ? AND revoked = 0",
        )
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await
        .context("looking up device token")?;
        Ok(row.map(|r| Device {
            id: r.get(0),
            name: r.get(1),
            created_unix_ms: r.get(2),
        }))
    }

    /// The user a user token belongs to.
    pub async fn user_by_token(&self, token: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM user_tokens WHERE token_hash = ?")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await
            .context("looking up user token")?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Every device.
    pub async fn devices(&self) -> Result<Vec<Device>> {
        let rows = sqlx::query(
            "SELECT id, name, created_ms FROM devices WHERE revoked = 0 ORDER BY created_ms",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing devices")?;
        Ok(rows
            .into_iter()
            .map(|r| Device {
                id: r.get(0),
                name: r.get(1),
                created_unix_ms: r.get(2),
            })
            .collect())
    }

    /// Record that a recording started (idempotent).
    pub async fn asset_recording(
        &self,
        id: &str,
        device_id: &str,
        title: Option<&str>,
        created_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO assets (id, device_id, title, state, created_ms) VALUES (?, ?, ?, 'recording', ?)
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

    /// Record that the outputs of a recording are ready.
    pub async fn asset_ready(&self, id: &str, attributes: &VideoAttributes) -> Result<()> {
        let json = serde_json::to_string(attributes).context("serialising attributes")?;
        sqlx::query("UPDATE assets SET state = 'ready', ready_ms = ?, attributes = ?, error = NULL WHERE id = ?")
            .bind(now_ms())
            .bind(json)
            .bind(id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("marking asset {id} ready"))?;
        Ok(())
    }

    /// Forget an asset (its files are the caller's).
    pub async fn asset_delete(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM assets WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("deleting asset {id}"))?;
        Ok(())
    }

    /// Record that a recording failed.
    pub async fn asset_failed(&self, id: &str, error: &str) -> Result<()> {
        sqlx::query("UPDATE assets SET state = 'failed', error = ? WHERE id = ?")
            .bind(error)
            .bind(id)
            .execute(&self.pool)
            .await
            .with_context(|| format!("marking asset {id} failed"))?;
        Ok(())
    }

    fn asset_from_row(r: sqlx::sqlite::SqliteRow) -> Asset {
        let attrs: Option<String> = r.get(6);
        Asset {
            id: r.get(0),
            device_id: r.get(1),
            title: r.get(2),
            state: r.get(3),
            created_unix_ms: r.get(4),
            ready_unix_ms: r.get(5),
            attributes: attrs.and_then(|a| serde_json::from_str(&a).ok()),
            error: r.get(7),
        }
    }

    /// One asset.
    pub async fn asset(&self, id: &str) -> Result<Option<Asset>> {
        let row = sqlx::query(
            "SELECT id, device_id, title, state, created_ms, ready_ms, attributes, error FROM assets WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("loading asset {id}"))?;
        Ok(row.map(Self::asset_from_row))
    }

    /// The newest assets first.
    pub async fn assets(&self, limit: i64) -> Result<Vec<Asset>> {
        let rows = sqlx::query(
            "SELECT id, device_id, title, state, created_ms, ready_ms, attributes, error FROM assets
             ORDER BY created_ms DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing assets")?;
        Ok(rows.into_iter().map(Self::asset_from_row).collect())
    }

    /// One device's assets, newest first.
    pub async fn assets_of(&self, device_id: &str, limit: i64) -> Result<Vec<Asset>> {
        let rows = sqlx::query(
            "SELECT id, device_id, title, state, created_ms, ready_ms, attributes, error FROM assets
             WHERE device_id = ? ORDER BY created_ms DESC LIMIT ?",
        )
        .bind(device_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .with_context(|| format!("listing the assets of device {device_id}"))?;
        Ok(rows.into_iter().map(Self::asset_from_row).collect())
    }

    /// Assets with a public share that is neither revoked nor expired
    /// (published to everyone), newest first.
    pub async fn published_assets(&self, limit: i64) -> Result<Vec<Asset>> {
        let rows = sqlx::query(
            "SELECT id, device_id, title, state, created_ms, ready_ms, attributes, error FROM assets
             WHERE id IN (SELECT asset_id FROM shares WHERE public = 1 AND revoked_ms IS NULL
                          AND (expires_ms IS NULL OR expires_ms > ?))
             ORDER BY created_ms DESC LIMIT ?",
        )
        .bind(now_ms())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing published assets")?;
        Ok(rows.into_iter().map(Self::asset_from_row).collect())
    }
}
