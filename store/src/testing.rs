//! Stores for tests (feature `testing`), on the engine the environment
//! names, so that the same tests run on both:
//!
//! - `SHARECAST_TEST_STORE` = `sqlite` (or unset): a SQLite database in a
//!   temporary directory;
//! - `SHARECAST_TEST_STORE` = `postgres`: a fresh database for each test on
//!   the PostgreSQL server at `SHARECAST_TEST_POSTGRES_URL` (default: the
//!   one `scripts/postgres.sh start` runs), dropped when the test ends.

use std::path::Path;

use sqlx::{Connection, Executor};

use crate::{Engine, Store, StoreConfig};

/// The variable naming the engine of the tests' stores.
pub const ENGINE_VAR: &str = "SHARECAST_TEST_STORE";
/// The variable holding the URL of the PostgreSQL server for the tests (a
/// role allowed to create databases).
pub const POSTGRES_URL_VAR: &str = "SHARECAST_TEST_POSTGRES_URL";
/// The server `scripts/postgres.sh` starts.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:55432/postgres";

/// The engine [`ENGINE_VAR`] names (SQLite when unset).
pub fn engine() -> Engine {
    match std::env::var(ENGINE_VAR).as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Engine::Sqlite,
        Ok("postgres") => Engine::Postgres,
        Ok(other) => panic!("{ENGINE_VAR}={other}: want sqlite or postgres"),
    }
}

/// A fresh, empty PostgreSQL database, dropped (its connections closed by
/// force) with this guard.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    server: String,
    name: String,
}

impl TestDatabase {
    /// Creates a database with a new name on the tests' server.
    pub async fn create() -> TestDatabase {
        let server =
            std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string());
        let name = format!("sharecast_test_{}", sharecast_tokens::random_hex(8));
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no PostgreSQL at {} ({e}): start one with `bash scripts/postgres.sh start`, or set {POSTGRES_URL_VAR}",
                    crate::redact(&server)
                )
            });
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("creating database {name}: {e}"));
        let _ = conn.close().await;
        TestDatabase {
            url: with_database(&server, &name),
            server,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own thread and runtime: this may run inside the test's.
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&server).await?;
                conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                conn.close().await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("dropping test database {}: {e:#}", self.name);
        }
    }
}

/// `url` with its database replaced by `name` (its parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// The `[store]` settings of a server under test, on the engine of
/// [`engine`], and the database to keep while it runs (PostgreSQL).
pub async fn store_config() -> (StoreConfig, Option<TestDatabase>) {
    match engine() {
        Engine::Sqlite => (StoreConfig::default(), None),
        Engine::Postgres => {
            let db = TestDatabase::create().await;
            let cfg = StoreConfig {
                url: db.url.clone(),
                max_connections: 4,
                ..StoreConfig::default()
            };
            (cfg, Some(db))
        }
    }
}

/// A temporary directory and, on PostgreSQL, the test's database: what a
/// test store needs kept alive.
#[derive(Debug)]
pub struct TestDir {
    dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

impl TestDir {
    /// The temporary directory (the SQLite database is in it).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A new, empty store on the engine of [`engine`], kept alive by the
/// returned guard.
pub async fn store() -> (Store, TestDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, database) = store_config().await;
    let store = Store::open(&cfg, dir.path()).await.unwrap();
    assert_eq!(store.engine(), engine());
    (
        store,
        TestDir {
            dir,
            _database: database,
        },
    )
}

/// Two stores on one new, empty database, as two servers (nodes `a` and
/// `b`, claims of `claim_secs`) share it; kept alive by the guard.
pub async fn two_nodes(claim_secs: u64) -> (Store, Store, TestDir) {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, database) = store_config().await;
    let a = Store::open(&cfg, dir.path()).await.unwrap();
    let b = Store::open(&cfg, dir.path()).await.unwrap();
    (
        a.for_node("a", claim_secs),
        b.for_node("b", claim_secs),
        TestDir {
            dir,
            _database: database,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_parameters_kept() {
        assert_eq!(
            with_database("postgres://u@h:1/postgres?sslmode=disable", "t1"),
            "postgres://u@h:1/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@h:1", "t2"),
            "postgres://u@h:1/t2"
        );
    }

    /// The store of the tests runs on the engine the environment names, and
    /// keeps what is written to it.
    #[tokio::test]
    async fn the_test_store_is_on_the_named_engine() {
        let (s, _d) = store().await;
        assert_eq!(s.engine(), engine());
        let (device, token) = s.add_device("phone").await.unwrap();
        assert_eq!(s.device_by_token(&token).await.unwrap(), Some(device));
    }
}
