//! Devices: the phones allowed to upload, each with a token stored hashed.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::Row;

use crate::{hash_token, new_token, now_ms, Store};

/// A registered device (a phone that uploads).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Device id.
    pub id: String,
    /// Name given at `device add`.
    pub name: String,
    /// Creation time, Unix ms.
    pub created_unix_ms: i64,
}

fn device(r: &sqlx::any::AnyRow) -> Device {
    Device {
        id: r.get(0),
        name: r.get(1),
        created_unix_ms: r.get(2),
    }
}

impl Store {
    /// Registers a device; returns it and its token (shown once, stored
    /// hashed).
    pub async fn add_device(&self, name: &str) -> Result<(Device, String)> {
        let id = sharecast_tokens::new_id();
        let token = new_token("sc_");
        let created = now_ms();
        sqlx::query(
            "INSERT INTO devices (id, name, token_hash, created_ms) VALUES ($1, $2, $3, $4)",
        )
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
            "SELECT id, name, created_ms FROM devices WHERE token_hash = $1 AND revoked = 0",
        )
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await
        .context("looking up device token")?;
        Ok(row.as_ref().map(device))
    }

    /// Every device.
    pub async fn devices(&self) -> Result<Vec<Device>> {
        let rows = sqlx::query(
            "SELECT id, name, created_ms FROM devices WHERE revoked = 0 ORDER BY created_ms",
        )
        .fetch_all(&self.pool)
        .await
        .context("listing devices")?;
        Ok(rows.iter().map(device).collect())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::store;

    #[tokio::test]
    async fn a_device_is_found_by_its_token_only() {
        let (s, _d) = store().await;
        let (d, token) = s.add_device("phone").await.unwrap();
        assert_eq!(d.id.len(), 32);
        assert!(token.starts_with("sc_"));
        assert_eq!(s.device_by_token(&token).await.unwrap(), Some(d.clone()));
        assert_eq!(s.device_by_token("sc_other").await.unwrap(), None);
        assert_eq!(s.devices().await.unwrap(), vec![d]);
    }
}
