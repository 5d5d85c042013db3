//! The delivery queue: one row per (event, recipient, format), so that a
//! recipient never gets the same event twice and deliveries survive a
//! restart.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::rows::Record;
use crate::webhooks::{record_event, NewEvent};
use crate::Store;

/// Where a delivery is.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Handed to the gateway right now.
    Sending,
    /// The gateway accepted it.
    Sent,
    /// The network reported every part delivered to the phone (SMS
    /// delivery reports).
    Delivered,
    /// A permanent error, or attempts exhausted.
    Failed,
    /// No SMS gateway is configured: recorded, never sent.
    NoGateway,
    /// The server stopped while the gateway was being called: not retried,
    /// so it is never sent twice.
    Unknown,
    /// The recipient replied STOP before it was sent.
    OptedOut,
}

impl DeliveryStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::NoGateway => "no_gateway",
            DeliveryStatus::Unknown => "unknown",
            DeliveryStatus::OptedOut => "opted_out",
        }
    }

    fn parse(s: &str) -> DeliveryStatus {
        match s {
            "pending" => DeliveryStatus::Pending,
            "sending" => DeliveryStatus::Sending,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "no_gateway" => DeliveryStatus::NoGateway,
            "unknown" => DeliveryStatus::Unknown,
            "opted_out" => DeliveryStatus::OptedOut,
            _ => DeliveryStatus::Failed,
        }
    }
}

/// One delivery of one event to one recipient in one format.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Row id.
    pub id: i64,
    /// The share whose message this is.
    pub share_id: String,
    /// Idempotency key: `share:{id}`, `live:{asset}` or `vod:{asset}`.
    pub event: String,
    /// Recipient number.
    pub recipient: String,
    /// Message format.
    pub format: String,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (pending only), Unix ms.
    pub next_attempt_unix_ms: Option<i64>,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Creation time, Unix ms.
    pub created_unix_ms: i64,
    /// When the gateway accepted it, Unix ms.
    pub sent_unix_ms: Option<i64>,
    /// SMS (or pushes) it took.
    pub parts: Option<i64>,
    /// Parts the network reported delivered to the phone (SMS delivery
    /// reports; a WAP Push through the PPG gets none).
    pub parts_delivered: i64,
    /// The server (node name) that claimed it to send it, if one has.
    pub node: Option<String>,
}

const COLUMNS: &str = "id, share_id, event_key, recipient, format, status, attempts, next_ms, last_error, created_ms, sent_ms, parts, delivered_parts, claimed_by";

impl Record for Delivery {
    const TABLE: &'static str = "share_deliveries";
    const COLUMNS: &'static str = COLUMNS;

    fn from_row(r: &AnyRow) -> Self {
        let status = DeliveryStatus::parse(r.get(5));
        Delivery {
            id: r.get(0),
            share_id: r.get(1),
            event: r.get(2),
            recipient: r.get(3),
            format: r.get(4),
            next_attempt_unix_ms: if status == DeliveryStatus::Pending {
                r.get(7)
            } else {
                None
            },
            status,
            attempts: r.get(6),
            last_error: r.get(8),
            created_unix_ms: r.get(9),
            sent_unix_ms: r.get(10),
            parts: r.get(11),
            parts_delivered: i64::from(r.get::<i64, _>(12).count_ones()),
            node: r.get(13),
        }
    }
}

/// Why a delivery is `unknown`.
const INTERRUPTED: &str =
    "the server stopped while the gateway was being called; not retried so that it is never sent twice";

/// A delivery due for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// Row id.
    pub id: i64,
    /// Its share.
    pub share_id: String,
    /// Recipient number.
    pub recipient: String,
    /// Message format.
    pub format: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// What an attempt changes in a delivery: its new status, and what is
/// known besides (each left as it was when `None`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryUpdate<'a> {
    /// The last error.
    pub error: Option<&'a str>,
    /// When the next attempt is due, Unix ms.
    pub next_ms: Option<i64>,
    /// When the gateway accepted it, Unix ms.
    pub sent_ms: Option<i64>,
    /// SMS (or pushes) it took.
    pub parts: Option<i64>,
}

/// A delivery to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery<'a> {
    /// The share whose message it is.
    pub share_id: &'a str,
    /// Idempotency key (see [`Delivery::event`]).
    pub event: &'a str,
    /// Recipient number.
    pub recipient: &'a str,
    /// Message format.
    pub format: &'a str,
    /// Its first status.
    pub status: DeliveryStatus,
    /// Why, when it is not pending.
    pub note: Option<&'a str>,
    /// Now, Unix ms (it is due at once).
    pub now: i64,
}

impl Store {
    /// Queues one delivery unless this (event, recipient, format) exists;
    /// returns 1 when queued.
    pub async fn enqueue_delivery(&self, d: &NewDelivery<'_>) -> Result<u64> {
        let NewDelivery {
            share_id,
            event,
            recipient,
            format,
            status,
            note,
            now,
        } = *d;
        let r = sqlx::query(
            "INSERT INTO share_deliveries (share_id, event_key, recipient, format, status, next_ms, created_ms, last_error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT(event_key, recipient, format) DO NOTHING",
        )
        .bind(share_id)
        .bind(event)
        .bind(recipient)
        .bind(format)
        .bind(status.as_str())
        .bind(now)
        .bind(now)
        .bind(note)
        .execute(&self.pool)
        .await
        .with_context(|| format!("queueing delivery to {recipient}"))?;
        Ok(r.rows_affected())
    }

    /// A share's deliveries, in the order they were queued.
    pub async fn deliveries_of(&self, share_id: &str) -> Result<Vec<Delivery>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM share_deliveries WHERE share_id = $1 ORDER BY id"
        ))
        .bind(share_id)
        .fetch_all(&self.pool)
        .await
        .context("listing deliveries")?;
        Ok(rows.iter().map(Delivery::from_row).collect())
    }

    /// One delivery.
    pub async fn delivery(&self, id: i64) -> Result<Option<Delivery>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM share_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .with_context(|| format!("loading delivery {id}"))?;
        Ok(row.as_ref().map(Delivery::from_row))
    }

    /// Fails a share's pending deliveries (it was revoked).
    pub async fn fail_pending_deliveries(&self, share_id: &str, note: &str) -> Result<()> {
        sqlx::query(
            "UPDATE share_deliveries SET status = 'failed', last_error = $1
             WHERE share_id = $2 AND status = 'pending'",
        )
        .bind(note)
        .bind(share_id)
        .execute(&self.pool)
        .await
        .context("failing pending deliveries")?;
        Ok(())
    }

    /// Marks this node's deliveries interrupted mid-send as `unknown` (at
    /// start): they are not retried, so that none is sent twice. (Another
    /// node's are left to [`Store::expire_stale_sends`] once their claim
    /// has expired.)
    pub async fn recover_interrupted_deliveries(&self) -> Result<u64> {
        let r = sqlx::query(&format!(
            "UPDATE share_deliveries SET status = 'unknown', last_error = '{INTERRUPTED}'
             WHERE status = 'sending' AND (claimed_by = $1 OR claimed_by IS NULL)"
        ))
        .bind(&*self.node)
        .execute(&self.pool)
        .await
        .context("recovering interrupted deliveries")?;
        Ok(r.rows_affected())
    }

    /// Marks deliveries whose send has been under way past their claim as
    /// `unknown` (their node died mid-send): never sent twice. Returns how
    /// many.
    pub async fn expire_stale_sends(&self, now: i64) -> Result<u64> {
        let r = sqlx::query(&format!(
            "UPDATE share_deliveries SET status = 'unknown', last_error = '{INTERRUPTED}'
             WHERE status = 'sending' AND claim_until_ms < $1"
        ))
        .bind(now)
        .execute(&self.pool)
        .await
        .context("expiring stale sends")?;
        Ok(r.rows_affected())
    }

    /// Claims for this node the pending deliveries due at `now` that no
    /// other node holds a live claim on, the oldest first, at most
    /// `limit`. On PostgreSQL the rows are locked `FOR UPDATE SKIP LOCKED`,
    /// so servers claiming at once get disjoint sets; SQLite has one writer.
    pub async fn claim_due_deliveries(&self, now: i64, limit: i64) -> Result<Vec<DueDelivery>> {
        let lock = match self.engine {
            crate::Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Engine::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "UPDATE share_deliveries SET claimed_by = $1, claim_until_ms = $2
             WHERE id IN (SELECT id FROM share_deliveries
                 WHERE status = 'pending' AND next_ms <= $3
                   AND (claim_until_ms IS NULL OR claim_until_ms < $3 OR claimed_by = $1)
                 ORDER BY next_ms, id LIMIT $4{lock})
             RETURNING id, share_id, recipient, format, attempts, next_ms"
        ))
        .bind(&*self.node)
        .bind(now.saturating_add(self.claim_ms))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("claiming due deliveries")?;
        let mut due: Vec<(i64, DueDelivery)> = rows
            .iter()
            .map(|r| {
                let d = DueDelivery {
                    id: r.get(0),
                    share_id: r.get(1),
                    recipient: r.get(2),
                    format: r.get(3),
                    attempts: r.get(4),
                };
                (r.get(5), d)
            })
            .collect();
        due.sort_by_key(|(next, d)| (*next, d.id));
        Ok(due.into_iter().map(|(_, d)| d).collect())
    }

    /// Moves a delivery this node claimed from `pending` to `sending` (an
    /// attempt counted, the claim renewed): `false` when it is no longer
    /// this node's to send (another node took it over, or it changed).
    /// Only the node that made this move sends it.
    pub async fn start_sending(&self, id: i64, now: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE share_deliveries SET status = 'sending', attempts = attempts + 1, claim_until_ms = $1
             WHERE id = $2 AND status = 'pending' AND claimed_by = $3",
        )
        .bind(now.saturating_add(self.claim_ms))
        .bind(id)
        .bind(&*self.node)
        .execute(&self.pool)
        .await
        .with_context(|| format!("starting to send delivery {id}"))?;
        Ok(r.rows_affected() == 1)
    }

    /// When this node can next claim a pending delivery, Unix ms: when it
    /// is due, or when another node's claim on it expires if that is later.
    pub async fn next_due_delivery(&self) -> Result<Option<i64>> {
        let r = sqlx::query(
            "SELECT MIN(CASE WHEN claimed_by <> $1 AND claim_until_ms > next_ms
                             THEN claim_until_ms ELSE next_ms END)
             FROM share_deliveries WHERE status = 'pending'",
        )
        .bind(&*self.node)
        .fetch_one(&self.pool)
        .await
        .context("finding the next due delivery")?;
        Ok(r.get(0))
    }

    /// Records an attempt's outcome; `Sending` counts an attempt. `Sent`
    /// and `Failed` are reported by the events `delivery.sent` and
    /// `delivery.failed`, in the same transaction. A delivery whose every
    /// part was reported delivered while it was being sent becomes
    /// `delivered` at once (after its `delivery.sent`).
    pub async fn set_delivery_status(
        &self,
        id: i64,
        status: DeliveryStatus,
        u: DeliveryUpdate<'_>,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let row = sqlx::query(
            "UPDATE share_deliveries SET status = $1, last_error = COALESCE($2, last_error),
             next_ms = COALESCE($3, next_ms), sent_ms = COALESCE($4, sent_ms), parts = COALESCE($5, parts),
             attempts = attempts + $6
             WHERE id = $7 RETURNING share_id, recipient, format, last_error, parts, delivered_parts",
        )
        .bind(status.as_str())
        .bind(u.error)
        .bind(u.next_ms)
        .bind(u.sent_ms)
        .bind(u.parts)
        .bind(i64::from(status == DeliveryStatus::Sending))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .with_context(|| format!("updating delivery {id}"))?;
        if let Some(row) = row {
            let d = Reported::from_row(id, &row);
            match status {
                DeliveryStatus::Sent => {
                    delivery_event(&mut tx, "delivery.sent", &d, None).await?;
                    if d.all_delivered() {
                        mark_delivered(&mut tx, &d).await?;
                    }
                }
                DeliveryStatus::Failed => {
                    delivery_event(&mut tx, "delivery.failed", &d, d.error.as_deref()).await?;
                }
                _ => {}
            }
        }
        tx.commit()
            .await
            .with_context(|| format!("committing delivery {id}"))
    }

    /// Records the network's report on part `part` (0-based, below 63) of
    /// delivery `id`. `Ok(true)`: the part reached the phone; a `sent`
    /// delivery whose every part did becomes `delivered` (event
    /// `delivery.delivered`). `Err(why)`: the network could not deliver
    /// it; a `sent` delivery becomes `failed` with `why` (event
    /// `delivery.failed`). Reports are idempotent: a part reported twice
    /// counts once, and a delivery changes state once. `None`: no such
    /// delivery; else its status after the report.
    pub async fn record_delivery_report(
        &self,
        id: i64,
        part: u32,
        outcome: std::result::Result<(), &str>,
    ) -> Result<Option<DeliveryStatus>> {
        anyhow::ensure!(part < 63, "part {part}: at most 63 parts are tracked");
        let bit = if outcome.is_ok() { 1i64 << part } else { 0 };
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let row = sqlx::query(
            "UPDATE share_deliveries SET delivered_parts = delivered_parts | $1 WHERE id = $2
             RETURNING share_id, recipient, format, last_error, parts, delivered_parts, status",
        )
        .bind(bit)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .with_context(|| format!("recording a delivery report of delivery {id}"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let d = Reported::from_row(id, &row);
        let mut status = DeliveryStatus::parse(row.get(6));
        if status == DeliveryStatus::Sent {
            match outcome {
                Ok(()) if d.all_delivered() => {
                    mark_delivered(&mut tx, &d).await?;
                    status = DeliveryStatus::Delivered;
                }
                Ok(()) => {}
                Err(why) => {
                    sqlx::query(
                        "UPDATE share_deliveries SET status = 'failed', last_error = $1 WHERE id = $2",
                    )
                    .bind(why)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("failing delivery {id}"))?;
                    delivery_event(&mut tx, "delivery.failed", &d, Some(why)).await?;
                    status = DeliveryStatus::Failed;
                }
            }
        }
        tx.commit()
            .await
            .with_context(|| format!("committing the report of delivery {id}"))?;
        Ok(Some(status))
    }
}

/// A delivery as an update returned it: what its events carry.
struct Reported {
    id: i64,
    share_id: String,
    recipient: String,
    format: String,
    error: Option<String>,
    parts: Option<i64>,
    delivered_mask: i64,
}

impl Reported {
    /// From `share_id, recipient, format, last_error, parts,
    /// delivered_parts` (in this order, first).
    fn from_row(id: i64, r: &AnyRow) -> Reported {
        Reported {
            id,
            share_id: r.get(0),
            recipient: r.get(1),
            format: r.get(2),
            error: r.get(3),
            parts: r.get(4),
            delivered_mask: r.get(5),
        }
    }

    /// Whether every part it took is reported delivered.
    fn all_delivered(&self) -> bool {
        self.parts
            .is_some_and(|p| p > 0 && i64::from(self.delivered_mask.count_ones()) >= p)
    }
}

/// `sent` → `delivered`, with its event.
async fn mark_delivered(tx: &mut sqlx::AnyConnection, d: &Reported) -> Result<()> {
    sqlx::query("UPDATE share_deliveries SET status = 'delivered' WHERE id = $1")
        .bind(d.id)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("marking delivery {} delivered", d.id))?;
    delivery_event(tx, "delivery.delivered", d, None).await
}

/// Records a `delivery.*` event of the delivery's share.
async fn delivery_event(
    tx: &mut sqlx::AnyConnection,
    kind: &'static str,
    d: &Reported,
    error: Option<&str>,
) -> Result<()> {
    let device: Option<String> = sqlx::query_scalar("SELECT device_id FROM shares WHERE id = $1")
        .bind(&d.share_id)
        .fetch_optional(&mut *tx)
        .await
        .with_context(|| format!("loading share {}", d.share_id))?;
    let data = json!({
        "share_id": d.share_id,
        "delivery_id": d.id,
        "recipient": d.recipient,
        "format": d.format,
        "error": error,
    });
    let event = NewEvent {
        kind,
        subject: format!("share:{}", d.share_id),
        device_id: device,
        data,
    };
    record_event(tx, &event).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    #[tokio::test]
    async fn a_delivery_is_queued_once_attempted_and_recovered() {
        let (s, _d) = store().await;
        assert_eq!(enqueue(&s, "+1").await, 1);
        assert_eq!(
            enqueue(&s, "+1").await,
            0,
            "the same event to the same number: once"
        );
        assert_eq!(enqueue(&s, "+2").await, 1);
        let due = s.claim_due_deliveries(10, 10).await.unwrap();
        assert_eq!(due.len(), 2);
        assert!(s.claim_due_deliveries(9, 10).await.unwrap().is_empty());
        assert_eq!(s.next_due_delivery().await.unwrap(), Some(10));
        let id = due[0].id;
        s.set_delivery_status(id, DeliveryStatus::Sending, DeliveryUpdate::default())
            .await
            .unwrap();
        assert_eq!(s.recover_interrupted_deliveries().await.unwrap(), 1);
        let d = s.delivery(id).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Unknown, 1));
        s.fail_pending_deliveries("sh", "revoked").await.unwrap();
        let all = s.deliveries_of("sh").await.unwrap();
        assert_eq!(all[1].status, DeliveryStatus::Failed);
        assert_eq!(all[1].last_error.as_deref(), Some("revoked"));
        assert_eq!(
            serde_json::to_value(DeliveryStatus::NoGateway).unwrap(),
            "no_gateway"
        );
    }

    /// Delivery reports: each part once, `delivered` (and its event) once
    /// every part is, even when the reports came while it was being sent;
    /// a failure report fails a sent delivery; unknown deliveries are told.
    #[tokio::test]
    async fn delivery_reports_complete_or_fail_a_sent_delivery_once() {
        let (s, _d) = store().await;
        let mut ids = Vec::new();
        for recipient in ["+1", "+2", "+3"] {
            enqueue(&s, recipient).await;
        }
        for d in s.deliveries_of("sh").await.unwrap() {
            ids.push(d.id);
        }
        let sent = DeliveryUpdate {
            parts: Some(2),
            ..Default::default()
        };
        // +1: sent, then both parts reported (one twice).
        s.set_delivery_status(ids[0], DeliveryStatus::Sent, sent.clone())
            .await
            .unwrap();
        let r = |id, part, outcome| s.record_delivery_report(id, part, outcome);
        assert_eq!(
            r(ids[0], 0, Ok(())).await.unwrap(),
            Some(DeliveryStatus::Sent)
        );
        assert_eq!(
            r(ids[0], 0, Ok(())).await.unwrap(),
            Some(DeliveryStatus::Sent)
        );
        assert_eq!(
            r(ids[0], 1, Ok(())).await.unwrap(),
            Some(DeliveryStatus::Delivered)
        );
        assert_eq!(
            r(ids[0], 1, Ok(())).await.unwrap(),
            Some(DeliveryStatus::Delivered)
        );
        let d = s.delivery(ids[0]).await.unwrap().unwrap();
        assert_eq!(
            (d.status, d.parts_delivered),
            (DeliveryStatus::Delivered, 2)
        );
        // +2: both reports arrive while it is being sent.
        s.set_delivery_status(ids[1], DeliveryStatus::Sending, DeliveryUpdate::default())
            .await
            .unwrap();
        r(ids[1], 0, Ok(())).await.unwrap();
        assert_eq!(
            r(ids[1], 1, Ok(())).await.unwrap(),
            Some(DeliveryStatus::Sending)
        );
        s.set_delivery_status(ids[1], DeliveryStatus::Sent, sent.clone())
            .await
            .unwrap();
        let d = s.delivery(ids[1]).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Delivered);
        // +3: a part the network could not deliver.
        s.set_delivery_status(ids[2], DeliveryStatus::Sent, sent)
            .await
            .unwrap();
        assert_eq!(
            r(ids[2], 1, Err("not delivered")).await.unwrap(),
            Some(DeliveryStatus::Failed)
        );
        assert_eq!(
            r(ids[2], 0, Ok(())).await.unwrap(),
            Some(DeliveryStatus::Failed)
        );
        let d = s.delivery(ids[2]).await.unwrap().unwrap();
        assert_eq!(d.last_error.as_deref(), Some("not delivered"));
        assert_eq!(r(i64::MAX, 0, Ok(())).await.unwrap(), None);
        assert!(r(ids[0], 63, Ok(())).await.is_err());
        // Each change is reported once, in order.
        let kinds: Vec<String> = s
            .webhook_events_of("share:sh")
            .await
            .unwrap()
            .into_iter()
            .map(|e| format!("{}:{}", e.kind, e.data["recipient"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            kinds,
            [
                "delivery.sent:+1",
                "delivery.delivered:+1",
                "delivery.sent:+2",
                "delivery.delivered:+2",
                "delivery.sent:+3",
                "delivery.failed:+3",
            ]
        );
    }

    /// Queues share `sh`'s message to `recipient`, due at 10; 1 when new.
    async fn enqueue(s: &Store, recipient: &str) -> u64 {
        s.enqueue_delivery(&NewDelivery {
            share_id: "sh",
            event: "share:sh",
            recipient,
            format: "tlv",
            status: DeliveryStatus::Pending,
            note: None,
            now: 10,
        })
        .await
        .unwrap()
    }

    async fn queue(s: &Store, n: usize) {
        for i in 0..n {
            enqueue(s, &format!("+1555{i:04}")).await;
        }
    }

    /// Two nodes claiming at once get disjoint deliveries, and each
    /// delivery is started (sent) by exactly one node.
    #[tokio::test]
    async fn two_nodes_claim_disjoint_deliveries_and_each_is_sent_once() {
        let (a, b, _d) = crate::testing::two_nodes(60).await;
        queue(&a, 40).await;
        let now = crate::now_ms();
        let mut started = std::collections::BTreeMap::new();
        for _ in 0..2 {
            let (ca, cb) = tokio::join!(
                a.claim_due_deliveries(now, 7),
                b.claim_due_deliveries(now, 7)
            );
            let (ca, cb) = (ca.unwrap(), cb.unwrap());
            for (node, store, claimed) in [("a", &a, ca), ("b", &b, cb)] {
                for d in claimed {
                    // Each node may start only what it claimed; the other
                    // cannot start it.
                    let other = if node == "a" { &b } else { &a };
                    assert!(!other.start_sending(d.id, now).await.unwrap(), "{d:?}");
                    assert!(store.start_sending(d.id, now).await.unwrap(), "{d:?}");
                    assert!(started.insert(d.id, node).is_none(), "{d:?} twice");
                }
            }
        }
        assert_eq!(started.len(), 28);
        assert!(started.values().any(|n| *n == "a") && started.values().any(|n| *n == "b"));
        assert_eq!(a.claim_due_deliveries(now, 100).await.unwrap().len(), 12);
        // a holds the last 12 now: b gets none until the claim expires.
        assert!(b
            .claim_due_deliveries(now + 59_000, 100)
            .await
            .unwrap()
            .is_empty());
    }

    /// A dead node's claim expires and another node takes the delivery
    /// over (the dead node can no longer start it); a send under way when
    /// its node died becomes `unknown` once its claim has expired, and is
    /// never sent again; a restarting node marks only its own sends.
    #[tokio::test]
    async fn an_expired_claim_is_taken_over_and_a_dead_send_is_never_repeated() {
        let (a, b, _d) = crate::testing::two_nodes(60).await;
        queue(&a, 2).await;
        let t = crate::now_ms();
        let claimed = a.claim_due_deliveries(t, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let (sending, waiting) = (claimed[0].id, claimed[1].id);
        assert!(a.start_sending(sending, t).await.unwrap());
        // a dies here. Before its claims expire, b gets nothing.
        assert!(b
            .claim_due_deliveries(t + 30_000, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(b.recover_interrupted_deliveries().await.unwrap(), 0);
        assert_eq!(b.expire_stale_sends(t + 30_000).await.unwrap(), 0);
        // After: the waiting one is b's; the one mid-send is unknown.
        let later = t + 61_000;
        assert_eq!(b.expire_stale_sends(later).await.unwrap(), 1);
        let taken = b.claim_due_deliveries(later, 10).await.unwrap();
        assert_eq!(taken.iter().map(|d| d.id).collect::<Vec<_>>(), [waiting]);
        assert!(!a.start_sending(waiting, later).await.unwrap(), "a lost it");
        assert!(b.start_sending(waiting, later).await.unwrap());
        let d = a.delivery(sending).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Unknown, 1));
        let d = a.delivery(waiting).await.unwrap().unwrap();
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Sending, 1));
        // b restarts: its own interrupted send is unknown at once.
        assert_eq!(b.recover_interrupted_deliveries().await.unwrap(), 1);
    }
}
