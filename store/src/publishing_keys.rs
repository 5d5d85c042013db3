//! Publishing keys: the stream keys of RTMP publishers. Each belongs to a
//! device and can only publish as it; it is shown once, stored as its
//! SHA-256, and revoked on its own, without touching the device's token.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::Row;

use crate::devices::Device;
use crate::{hash_token, new_token, now_ms, Store};

/// A publishing key as listed (never the key itself).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublishingKey {
    /// Key id.
    pub id: String,
    /// The name given when it was made.
    pub name: String,
    /// Creation time, Unix ms.
    pub created_unix_ms: i64,
}

fn key(r: &sqlx::any::AnyRow) -> PublishingKey {
    PublishingKey {
        id: r.get(0),
        name: r.get(1),
        created_unix_ms: r.get(2),
    }
}

impl Store {
    /// A new publishing key of `device_id`; returns it and the key (shown
    /// once, stored hashed).
    pub async fn add_publishing_key(
        &self,
        device_id: &str,
        name: &str,
    ) -> Result<(PublishingKey, String)> {
        let id = sharecast_tokens::new_id();
        let secret = new_token("sk_");
        let created = now_ms();
        sqlx::query(
            "INSERT INTO publishing_keys (id, device_id, name, key_hash, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(device_id)
        .bind(name)
        .bind(hash_token(&secret))
        .bind(created)
        .execute(&self.pool)
        .await
        .context("inserting a publishing key")?;
        let k = PublishingKey {
            id,
            name: name.to_string(),
            created_unix_ms: created,
        };
        Ok((k, secret))
    }

    /// The device's publishing keys that are not revoked, oldest first.
    pub async fn publishing_keys(&self, device_id: &str) -> Result<Vec<PublishingKey>> {
        let rows = sqlx::query(
            "SELECT id, name, created_ms FROM publishing_keys WHERE device_id = $1 AND revoked_ms IS NULL ORDER BY created_ms, id",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .context("listing publishing keys")?;
        Ok(rows.iter().map(key).collect())
    }

    /// Revokes a key of `device_id`; false when it has no such key (or it
    /// was revoked already).
    pub async fn revoke_publishing_key(&self, device_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE publishing_keys SET revoked_ms = $1 WHERE id = $2 AND device_id = $3 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .bind(device_id)
        .execute(&self.pool)
        .await
        .context("revoking a publishing key")?;
        Ok(done.rows_affected() == 1)
    }

    /// The device a publishing key publishes as, unless the key is unknown
    /// or revoked, or the device is revoked.
    pub async fn device_by_publishing_key(&self, secret: &str) -> Result<Option<Device>> {
        let row = sqlx::query(
            "SELECT d.id, d.name, d.created_ms FROM publishing_keys k JOIN devices d ON d.id = k.device_id \
             WHERE k.key_hash = $1 AND k.revoked_ms IS NULL AND d.revoked = 0",
        )
        .bind(hash_token(secret))
        .fetch_optional(&self.pool)
        .await
        .context("looking up a publishing key")?;
        Ok(row.map(|r| Device {
            id: r.get(0),
            name: r.get(1),
            created_unix_ms: r.get(2),
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::store;

    #[tokio::test]
    async fn a_key_publishes_as_its_device_until_revoked() {
        let (s, _d) = store().await;
        let (phone, token) = s.add_device("phone").await.unwrap();
        let (other, _) = s.add_device("other").await.unwrap();
        let (k, secret) = s.add_publishing_key(&phone.id, "obs").await.unwrap();
        assert!(secret.starts_with("sk_"));
        assert_eq!(
            s.device_by_publishing_key(&secret).await.unwrap(),
            Some(phone.clone())
        );
        // A device token is not a publishing key, nor the other way round.
        assert_eq!(s.device_by_publishing_key(&token).await.unwrap(), None);
        assert_eq!(s.device_by_token(&secret).await.unwrap(), None);
        assert_eq!(s.publishing_keys(&phone.id).await.unwrap(), vec![k.clone()]);
        assert!(s.publishing_keys(&other.id).await.unwrap().is_empty());
        // Only its own device revokes it, once.
        assert!(!s.revoke_publishing_key(&other.id, &k.id).await.unwrap());
        assert!(s.revoke_publishing_key(&phone.id, &k.id).await.unwrap());
        assert!(!s.revoke_publishing_key(&phone.id, &k.id).await.unwrap());
        assert_eq!(s.device_by_publishing_key(&secret).await.unwrap(), None);
        assert!(s.publishing_keys(&phone.id).await.unwrap().is_empty());
    }
}
