//! The one place SQL lives: Sharecast's schema, as numbered migrations in
//! `store/migrations/` applied by `sqlx::migrate!` (one set per engine, the
//! same numbers and tables: `sqlite/` and `postgres/`), and typed repositories
//! over it, as methods of [`Store`] grouped by what they keep: [`devices`],
//! [`assets`], [`shares`], [`deliveries`], [`subscriptions`], [`users`],
//! [`history`], [`handoff`], [`bookmarks`], [`stills`],
//! [`publishing_keys`], [`webhooks`] (endpoints, and the outbox of events
//! written in the transaction of the change each reports). States are enums
//! ([`AssetState`], [`DeliveryStatus`], [`SubscriptionStatus`],
//! [`BookmarkStatus`]).
//!
//! The embedded default is SQLite (`<data_dir>/sharecast.db`); a
//! `postgres://` URL in [`StoreConfig`] puts the same tables in PostgreSQL
//! ([`Store::open`]). The repositories run unchanged on both through sqlx's
//! `Any` driver: queries use numbered parameters (`$1`, in order) and SQL
//! both engines accept, and bind and read only integers (`i64`), text and
//! their `Option`s (flags are 0/1 integers).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Executor};

pub mod assets;
pub mod bookmarks;
mod config;
pub mod deliveries;
pub mod devices;
pub mod handoff;
pub mod history;
mod legacy;
pub mod publishing_keys;
mod rows;
pub mod shares;
pub mod stills;
pub mod subscriptions;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod users;
pub mod webhooks;

pub use assets::{Asset, AssetState, SessionStart};
pub use bookmarks::{BookmarkRecord, BookmarkStatus, BookmarkUpdate};
pub use config::{redact, Engine, StoreConfig, DEFAULT_MAX_CONNECTIONS, DEFAULT_URL, SQLITE_FILE};
pub use deliveries::{Delivery, DeliveryStatus, DeliveryUpdate, DueDelivery, NewDelivery};
pub use devices::Device;
pub use handoff::SuspendRecord;
pub use history::{HistoryRecord, ResumeGrant};
pub use publishing_keys::PublishingKey;
pub use sharecast_tokens::now_ms;
pub use shares::ShareRecord;
pub use stills::StillRecord;
pub use subscriptions::{Subscription, SubscriptionStatus};
pub use webhooks::{
    DueWebhook, NewEvent, WebhookDelivery, WebhookEndpoint, WebhookEvent, EVENT_TYPES,
};

/// The metadata store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
    /// The node name queue claims are made under.
    node: std::sync::Arc<str>,
    /// How long a claim holds, ms.
    claim_ms: i64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine)
            .field("node", &self.node)
            .finish_non_exhaustive()
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

/// How long a queue claim holds unless configured (`store.claim_secs`).
const DEFAULT_CLAIM_MS: i64 = 60_000;

/// The machine's host name (the default node name), else `sharecast`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sharecast".into())
}

/// Connections SQLite keeps (one writes at a time; WAL lets readers go on).
const SQLITE_CONNECTIONS: u32 = 4;

/// Set on every SQLite connection: write-ahead log, every commit synced,
/// and waits of up to 10 s for another connection's write.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;";

impl Store {
    /// Opens the store `cfg` names: SQLite at `<data_dir>/sharecast.db`
    /// when its URL is empty, else that PostgreSQL database; brings its
    /// schema up to date.
    pub async fn open(cfg: &StoreConfig, data_dir: &Path) -> Result<Store> {
        let store = match cfg.engine()? {
            Engine::Sqlite => Store::open_sqlite(&data_dir.join(SQLITE_FILE)).await?,
            Engine::Postgres => Store::open_postgres(cfg.url.trim(), cfg.max_connections).await?,
        };
        let node = match cfg.node_name.trim() {
            "" => store.node.to_string(),
            name => name.to_string(),
        };
        tracing::info!(node = %node, "store: queue claims under this node name");
        Ok(store.for_node(&node, cfg.claim_secs))
    }

    /// The same store, claiming queued work as node `node` for
    /// `claim_secs` seconds at a time.
    pub fn for_node(mut self, node: &str, claim_secs: u64) -> Store {
        self.node = node.into();
        self.claim_ms = i64::try_from(claim_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        self
    }

    /// The node name queue claims are made under.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Opens (creating if needed) the SQLite database at `path`, and brings
    /// its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(SQLITE_CONNECTIONS)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(SQLITE_PRAGMAS).await?;
                    Ok(())
                })
            })
            .connect(&sqlite_url(path)?)
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        let store = Store {
            pool,
            engine: Engine::Sqlite,
            node: host_name().into(),
            claim_ms: DEFAULT_CLAIM_MS,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to the PostgreSQL database at `url` with at most
    /// `max_connections` connections, and brings its schema up to date
    /// (several servers may do so at once: the migrations take a lock).
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
        tracing::info!(url = %redact(url), max_connections, "store: PostgreSQL");
        let store = Store {
            pool,
            engine: Engine::Postgres,
            node: host_name().into(),
            claim_ms: DEFAULT_CLAIM_MS,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The engine the store runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Applies the migrations not applied yet (a SQLite database made
    /// before the migrations existed is brought to their first state
    /// first).
    async fn migrate(&self) -> Result<()> {
        match self.engine {
            Engine::Sqlite => {
                legacy::upgrade(&self.pool).await?;
                sqlx::migrate!("./migrations/sqlite").run(&self.pool).await
            }
            Engine::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await
            }
        }
        .with_context(|| format!("applying the {} migrations", self.engine.name()))
    }
}

/// The `sqlite://` URL of a database file, created if missing (the path
/// made absolute, and what a URL would read otherwise escaped).
fn sqlite_url(path: &Path) -> Result<String> {
    let path =
        std::path::absolute(path).with_context(|| format!("database path {}", path.display()))?;
    let text = path
        .to_str()
        .with_context(|| format!("database path {} is not UTF-8", path.display()))?;
    let escaped = text
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    Ok(format!("sqlite://{escaped}?mode=rwc"))
}

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    /// The SQLite migrations are the ones existing databases recorded
    /// (same numbers, same checksums), so that those databases keep
    /// opening.
    #[test]
    fn the_sqlite_migrations_are_the_released_ones() {
        let released = [
            (1, "7ede3cd26f236e5abb3e6465948ff92a0aad688fdba80ca977138e92efe342b5656496a07d2635596d498e8f29ae1662"),
            (2, "2294380476eb3c9f231d16b29901cb5b410b50b9477cc454c77c71c041398ffaf23e0b44f7be2a431a2fc79fd784cbc4"),
            (3, "1cbf269e833a70be3385dfe27fc2d11a45afb1a2a7f46188b502d07d82aeeb3ada1a86cb602e7a2d6df778096c5dce12"),
            (4, "6a13daa5ac59a7120ef7a31f6781e07bc3161d2d98f842df111f8a6a01ba64086e97d44371a9070b79b21b732d503eac"),
            (5, "f19a8bd2ee34c78f2cc889e890e9cbc545f7cd3626d1d2f48538546d62ff780d1085cc099e19797ff8b5a73596650001"),
            (6, "8d505e7297ff36237c84eea72e89a19f740c6ecee56f9eb7b67ffe767c05f40a34754d5a25ea17e79de7baa3bbff265b"),
            (7, "baaeef2c232881f304993d176821677a76d8507b9414665f87fd8a41da71c06806069eb4d77a472f6c3fe57105292453"),
            (8, "18005bbeb6db36af5527290bfeabc91d4ed3f9ca51b0bdd4b6e5b6125077a637be8237a59ae3fe021ae6166fa9f5d28a"),
            (9, "b5cc4b40ff6469fd518c5ad08146c5dfca61f0856f3abb6b4ee3a2886c71f0e96c177009f71d02436e5262a02fce6741"),
        ];
        let got: Vec<(i64, String)> = sqlx::migrate!("./migrations/sqlite")
            .iter()
            .map(|m| (m.version, hex::encode(&m.checksum)))
            .collect();
        let want: Vec<(i64, String)> = released.iter().map(|(v, c)| (*v, c.to_string())).collect();
        assert_eq!(got, want);
    }

    /// Both engines have the same migrations, by number and name.
    #[test]
    fn both_engines_have_the_same_migrations() {
        let names = |m: sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        let sqlite = names(sqlx::migrate!("./migrations/sqlite"));
        assert_eq!(sqlite.len(), 9);
        assert_eq!(sqlite, names(sqlx::migrate!("./migrations/postgres")));
    }

    /// A SQLite database anywhere (a path a URL would misread) is made in
    /// write-ahead-log mode with every commit synced, and opens again.
    #[tokio::test]
    async fn sqlite_keeps_its_settings_at_any_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a dir #1?%20").join("x.db");
        let s = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(s.engine(), Engine::Sqlite);
        assert!(path.exists(), "{}", path.display());
        let pragma = |name: &'static str| {
            let pool = s.pool.clone();
            async move {
                let row = sqlx::query(&format!("PRAGMA {name}"))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                let value: String = row
                    .try_get(0)
                    .unwrap_or_else(|_| row.get::<i64, _>(0).to_string());
                value
            }
        };
        assert_eq!(pragma("journal_mode").await, "wal");
        assert_eq!(pragma("synchronous").await, "2", "FULL");
        assert_eq!(pragma("busy_timeout").await, "10000");
        let (device, _) = s.add_device("phone").await.unwrap();
        drop(s);
        let s = Store::open_sqlite(&path).await.unwrap();
        assert_eq!(s.devices().await.unwrap(), vec![device]);
        // Without a URL: SQLite in the data directory.
        let s = Store::open(&StoreConfig::default(), dir.path())
            .await
            .unwrap();
        assert_eq!(s.engine(), Engine::Sqlite);
        assert!(dir.path().join(SQLITE_FILE).exists());
    }
}
