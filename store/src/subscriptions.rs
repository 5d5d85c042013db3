//! Subscriptions of recipient numbers to a device's videos, and the numbers
//! that replied STOP.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::rows::Record;
use crate::webhooks::{record_event, NewEvent};
use crate::Store;

/// Where a subscription is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// The number gets the device's messages.
    Active,
    /// The recipient replied STOP.
    OptedOut,
    /// The device removed it.
    Removed,
}

impl SubscriptionStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::OptedOut => "opted_out",
            SubscriptionStatus::Removed => "removed",
        }
    }

    fn parse(s: &str) -> SubscriptionStatus {
        match s {
            "active" => SubscriptionStatus::Active,
            "opted_out" => SubscriptionStatus::OptedOut,
            _ => SubscriptionStatus::Removed,
        }
    }
}

/// A subscription of a recipient number to a source device.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Subscription {
    /// Source device.
    pub device_id: String,
    /// Recipient number.
    pub recipient: String,
    /// Message format.
    pub format: String,
    /// Where it is.
    pub status: SubscriptionStatus,
    /// Creation time, Unix ms.
    pub created_unix_ms: i64,
    /// Last change, Unix ms.
    pub updated_unix_ms: i64,
}

const COLUMNS: &str = "device_id, recipient, format, status, created_ms, updated_ms";

impl Record for Subscription {
    const TABLE: &'static str = "share_subscriptions";
    const COLUMNS: &'static str = COLUMNS;

    fn from_row(r: &AnyRow) -> Self {
        Subscription {
            device_id: r.get(0),
            recipient: r.get(1),
            format: r.get(2),
            status: SubscriptionStatus::parse(r.get(3)),
            created_unix_ms: r.get(4),
            updated_unix_ms: r.get(5),
        }
    }
}

impl Store {
    /// One subscription.
    pub async fn subscription(
        &self,
        device_id: &str,
        recipient: &str,
    ) -> Result<Option<Subscription>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM share_subscriptions WHERE device_id = $1 AND recipient = $2"
        ))
        .bind(device_id)
        .bind(recipient)
        .fetch_optional(&self.pool)
        .await
        .context("loading subscription")?;
        Ok(row.as_ref().map(Subscription::from_row))
    }

    /// A device's subscriptions, oldest first.
    pub async fn subscriptions_of(&self, device_id: &str) -> Result<Vec<Subscription>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM share_subscriptions WHERE device_id = $1 ORDER BY created_ms"
        ))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .context("listing subscriptions")?;
        Ok(rows.iter().map(Subscription::from_row).collect())
    }

    /// The active subscribers of a device: (number, format).
    pub async fn active_subscribers(&self, device_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT recipient, format FROM share_subscriptions WHERE device_id = $1 AND status = 'active'",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .context("loading subscribers")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Subscribes a number (or changes its format), active.
    pub async fn upsert_subscription(
        &self,
        device_id: &str,
        recipient: &str,
        format: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO share_subscriptions (device_id, recipient, format, status, created_ms, updated_ms)
             VALUES ($1, $2, $3, 'active', $4, $5)
             ON CONFLICT(device_id, recipient) DO UPDATE SET format = excluded.format, status = 'active', updated_ms = excluded.updated_ms",
        )
        .bind(device_id)
        .bind(recipient)
        .bind(format)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await
        .context("storing subscription")?;
        Ok(())
    }

    /// The device removes an active subscriber.
    pub async fn remove_subscription(
        &self,
        device_id: &str,
        recipient: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE share_subscriptions SET status = 'removed', updated_ms = $1
             WHERE device_id = $2 AND recipient = $3 AND status = 'active'",
        )
        .bind(now)
        .bind(device_id)
        .bind(recipient)
        .execute(&self.pool)
        .await
        .context("removing subscription")?;
        Ok(())
    }

    /// Whether the number with these digits replied STOP (and not START
    /// since).
    pub async fn number_opted_out(&self, digits: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM share_opt_outs WHERE digits = $1")
            .bind(digits)
            .fetch_optional(&self.pool)
            .await
            .context("checking the STOP list")?;
        Ok(row.is_some())
    }

    /// Whether the number with these digits opted out of the subscription
    /// to the device that owns `share_id`.
    pub async fn subscriber_opted_out(&self, share_id: &str, digits: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM share_subscriptions s JOIN shares sh ON sh.device_id = s.device_id
             WHERE sh.id = $1 AND REPLACE(s.recipient, '+', '') = $2 AND s.status = 'opted_out' LIMIT 1",
        )
        .bind(share_id)
        .bind(digits)
        .fetch_optional(&self.pool)
        .await
        .context("checking opt-out")?;
        Ok(row.is_some())
    }

    /// A number replied STOP (`stop`) or START: it is put on or taken off
    /// the STOP list, and its subscriptions of every device follow, each
    /// change reported by the event `subscriber.opted_out` (or
    /// `subscriber.opted_in`) in the same transaction; returns how many
    /// subscriptions changed.
    pub async fn set_opt_out(&self, digits: &str, stop: bool, now: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let list = if stop {
            sqlx::query(
                "INSERT INTO share_opt_outs (digits, updated_ms) VALUES ($1, $2)
                 ON CONFLICT(digits) DO UPDATE SET updated_ms = excluded.updated_ms",
            )
            .bind(digits)
            .bind(now)
        } else {
            sqlx::query("DELETE FROM share_opt_outs WHERE digits = $1").bind(digits)
        };
        list.execute(&mut *tx)
            .await
            .context("recording STOP/START")?;
        let (from, to) = if stop {
            (SubscriptionStatus::Active, SubscriptionStatus::OptedOut)
        } else {
            (SubscriptionStatus::OptedOut, SubscriptionStatus::Active)
        };
        let changed = sqlx::query(
            "UPDATE share_subscriptions SET status = $1, updated_ms = $2
             WHERE REPLACE(recipient, '+', '') = $3 AND status = $4 RETURNING device_id, recipient",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(digits)
        .bind(from.as_str())
        .fetch_all(&mut *tx)
        .await
        .context("updating subscriptions after STOP/START")?;
        let kind = if stop {
            "subscriber.opted_out"
        } else {
            "subscriber.opted_in"
        };
        for row in &changed {
            let (device, recipient): (String, String) = (row.get(0), row.get(1));
            let event = NewEvent {
                kind,
                subject: format!("subscriber:{device}:{digits}"),
                device_id: Some(device),
                data: serde_json::json!({ "recipient": recipient }),
            };
            record_event(&mut tx, &event).await?;
        }
        tx.commit().await.context("committing STOP/START")?;
        Ok(changed.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[tokio::test]
    async fn stop_and_start_follow_the_number_across_devices() {
        let (s, _d) = store().await;
        s.upsert_subscription("d1", "+15550001", "tlv", 1)
            .await
            .unwrap();
        s.upsert_subscription("d2", "15550001", "xml", 1)
            .await
            .unwrap();
        assert_eq!(s.active_subscribers("d1").await.unwrap().len(), 1);
        assert_eq!(s.set_opt_out("15550001", true, 2).await.unwrap(), 2);
        assert!(s.number_opted_out("15550001").await.unwrap());
        let sub = s.subscription("d1", "+15550001").await.unwrap().unwrap();
        assert_eq!(sub.status, SubscriptionStatus::OptedOut);
        assert_eq!(s.set_opt_out("15550001", false, 3).await.unwrap(), 2);
        assert!(!s.number_opted_out("15550001").await.unwrap());
        s.remove_subscription("d1", "+15550001", 4).await.unwrap();
        let subs = s.subscriptions_of("d1").await.unwrap();
        assert_eq!(subs[0].status, SubscriptionStatus::Removed);
        assert_eq!(
            serde_json::to_value(SubscriptionStatus::OptedOut).unwrap(),
            "opted_out"
        );
    }
}
