//! The one place SQL lives: Sharecast's schema, as numbered migrations in
//! `store/migrations/` applied by `sqlx::migrate!`, and typed repositories
//! over it, as methods of [`Store`] grouped by what they keep: [`devices`],
//! [`assets`], [`shares`], [`deliveries`], [`subscriptions`], [`users`],
//! [`history`], [`handoff`], [`bookmarks`], [`stills`],
//! [`publishing_keys`]. States are enums
//! ([`AssetState`], [`DeliveryStatus`], [`SubscriptionStatus`],
//! [`BookmarkStatus`]).
//!
//! The embedded default is SQLite (`<data_dir>/sharecast.db`). Queries use
//! numbered parameters (`$1`, in order) and standard SQL that PostgreSQL
//! also accepts.

use std::str::FromStr;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub mod assets;
pub mod bookmarks;
pub mod deliveries;
pub mod devices;
pub mod handoff;
pub mod history;
mod legacy;
pub mod publishing_keys;
pub mod shares;
pub mod stills;
pub mod subscriptions;
pub mod users;

pub use assets::{Asset, AssetState};
pub use bookmarks::{BookmarkRecord, BookmarkStatus, BookmarkUpdate};
pub use deliveries::{Delivery, DeliveryStatus, DeliveryUpdate, DueDelivery, NewDelivery};
pub use devices::Device;
pub use handoff::SuspendRecord;
pub use history::{HistoryRecord, ResumeGrant};
pub use publishing_keys::PublishingKey;
pub use sharecast_tokens::now_ms;
pub use shares::ShareRecord;
pub use stills::StillRecord;
pub use subscriptions::{Subscription, SubscriptionStatus};

/// The metadata store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// SHA-256 of a token, hex: what the store keeps instead of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new secret token: `prefix` and 192 random bits in hex.
pub(crate) fn new_token(prefix: &str) -> String {
    format!("{prefix}{}", sharecast_tokens::random_hex(24))
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, and brings
    /// its schema up to date.
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

    /// Applies the migrations not applied yet (a database made before the
    /// migrations existed is brought to their first state first).
    async fn migrate(&self) -> Result<()> {
        legacy::upgrade(&self.pool).await?;
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .context("applying the database migrations")
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A store in a temporary directory (kept alive by the returned guard).
    pub(crate) async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_sqlite(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        (s, dir)
    }
}
