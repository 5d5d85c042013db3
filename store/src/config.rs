//! Settings of the store: the `[store]` table of the configuration file,
//! keys as they are written there, each with its default.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// Default of [`StoreConfig::url`]: empty, the embedded SQLite database
/// `<data_dir>/sharecast.db` ([`SQLITE_FILE`]).
pub const DEFAULT_URL: &str = "";
/// Default of [`StoreConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// The SQLite database's file name in the data directory.
pub const SQLITE_FILE: &str = "sharecast.db";

/// The database engines the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite, embedded: a file in the data directory.
    Sqlite,
    /// PostgreSQL, a server.
    Postgres,
}

impl Engine {
    /// Its name: `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// Where the metadata lives; every value has a documented default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Empty: SQLite in the data directory. `postgres://user:password@host:port/database`
    /// (or `postgresql://`, with libpq's parameters such as `?sslmode=`):
    /// that PostgreSQL database, whose schema the server brings up to date.
    pub url: String,
    /// Most connections to PostgreSQL the server holds at once (SQLite,
    /// embedded, keeps its own small pool).
    pub max_connections: u32,
    /// The name this server claims queued work under (share deliveries),
    /// unique among the servers on one database. Empty (default): the
    /// machine's host name.
    pub node_name: String,
    /// How long a claim on a pending delivery holds, seconds: a delivery
    /// claimed by a server that died is taken over by another this long
    /// after. Default 60.
    pub claim_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: DEFAULT_URL.to_string(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            node_name: String::new(),
            claim_secs: 60,
        }
    }
}

impl StoreConfig {
    /// The engine its URL names.
    pub fn engine(&self) -> Result<Engine> {
        let url = self.url.trim();
        if url.is_empty() {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            bail!(
                "store.url {}: not a postgres:// URL (leave it empty for SQLite in the data directory)",
                redact(url)
            )
        }
    }
}

/// A database URL fit for logs: its password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_string();
    };
    format!(
        "{}{user}:***@{host}{}",
        &url[..scheme_end],
        &url[authority_end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_chooses_the_engine() {
        let engine = |url: &str| {
            StoreConfig {
                url: url.into(),
                ..StoreConfig::default()
            }
            .engine()
        };
        assert_eq!(engine("").unwrap(), Engine::Sqlite);
        assert_eq!(StoreConfig::default().engine().unwrap(), Engine::Sqlite);
        assert_eq!(engine("postgres://u@h/db").unwrap(), Engine::Postgres);
        assert_eq!(engine("postgresql://h:5433/db").unwrap(), Engine::Postgres);
        let err = engine("mysql://u:secret@h/db").unwrap_err().to_string();
        assert!(err.contains("mysql://u:***@h/db"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(
            redact("postgres://u:p@ss@h:5432/db?sslmode=disable"),
            "postgres://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("not a url"), "not a url");
    }
}
