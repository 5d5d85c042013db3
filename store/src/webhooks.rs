//! Webhooks: the endpoints integrators register, the outbox of events and
//! the delivery of each event to each endpoint that wants it.
//!
//! An event is written by `record_event` inside the transaction of the
//! change it reports (so a change is never kept without its event, nor an
//! event without its change), with the next sequence number of its subject
//! (`session:{id}` or `share:{id}`), and one `pending` delivery row for each
//! endpoint that wants it is written in that same transaction. The delivery
//! worker (`sharecast-resume`'s `webhooks`) takes a subject's deliveries
//! one after the other ([`Store::due_webhooks`]), and records each outcome.

use anyhow::{Context, Result};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{now_ms, Store};

/// Every event type, as registered and sent.
pub const EVENT_TYPES: &[&str] = &[
    "session.started",
    "session.suspended",
    "session.resumed",
    "session.ended",
    "asset.ready",
    "asset.failed",
    "rendition.ready",
    "share.created",
    "delivery.sent",
    "delivery.delivered",
    "delivery.failed",
    "subscriber.opted_out",
    "subscriber.opted_in",
    "viewer.interrupted",
    "handoff.accepted",
];

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// One of [`EVENT_TYPES`].
    pub kind: &'static str,
    /// What it is about, ordered on its own: `session:{id}`, `share:{id}`.
    pub subject: String,
    /// The device whose event it is (its owner's endpoints get it); none:
    /// only global endpoints do.
    pub device_id: Option<String>,
    /// Its body's `data`.
    pub data: serde_json::Value,
}

/// An event as recorded.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookEvent {
    /// Event id (the `webhook-id` header; the same for every attempt and
    /// replay, so receivers deduplicate by it).
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its subject.
    pub subject: String,
    /// Its number within the subject: 1, 2, 3…
    pub sequence: i64,
    /// When the change happened, Unix ms.
    pub timestamp_ms: i64,
    /// What happened.
    pub data: serde_json::Value,
}

/// A registered endpoint (its secret is shown only when it is made).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookEndpoint {
    /// Endpoint id.
    pub id: String,
    /// The device whose events it gets; none: a global (admin) endpoint,
    /// which gets every event.
    pub device_id: Option<String>,
    /// Where events are posted.
    pub url: String,
    /// The event types it wants (`*`: all).
    pub event_types: Vec<String>,
    /// Creation time, Unix ms.
    pub created_unix_ms: i64,
}

/// A delivery due now: the event, where it goes and with which secret.
#[derive(Debug, Clone, PartialEq)]
pub struct DueWebhook {
    /// The endpoint.
    pub endpoint_id: String,
    /// Its URL.
    pub url: String,
    /// Its signing secret (`whsec_…`).
    pub secret: String,
    /// The event's position in the outbox.
    pub event_pos: i64,
    /// Attempts made so far.
    pub attempts: i64,
    /// When it was queued (or queued again by a replay), Unix ms: retries
    /// are counted from then.
    pub queued_ms: i64,
    /// The event.
    pub event: WebhookEvent,
}

/// A delivery as the admin lists it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// The endpoint.
    pub endpoint_id: String,
    /// Its URL.
    pub url: String,
    /// The event id.
    pub event_id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's subject and sequence number.
    pub subject: String,
    /// The event's number within its subject.
    pub sequence: i64,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// Next attempt (pending), Unix ms.
    pub next_unix_ms: i64,
    /// When it was delivered or given up, Unix ms.
    pub done_unix_ms: Option<i64>,
}

/// `,a,b,`: the stored form of a list of event types.
fn types_column(types: &[String]) -> String {
    format!(",{},", types.join(","))
}

fn endpoint(r: &AnyRow) -> WebhookEndpoint {
    let types: String = r.get(3);
    WebhookEndpoint {
        id: r.get(0),
        device_id: r.get(1),
        url: r.get(2),
        event_types: types
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        created_unix_ms: r.get(4),
    }
}

/// The deliveries (`d`) with their endpoints (`p`) and events (`e`).
const DELIVERIES_JOINED: &str = "FROM webhook_deliveries d
     JOIN webhook_endpoints p ON p.id = d.endpoint_id
     JOIN webhook_events e ON e.pos = d.event_pos";

const ENDPOINT_COLUMNS: &str = "id, device_id, url, event_types, created_ms";

/// The event in columns `id, kind, subject, seq, created_ms, data` from
/// `at` on.
fn event_at(r: &AnyRow, at: usize) -> WebhookEvent {
    let data: String = r.get(at + 5);
    WebhookEvent {
        id: r.get(at),
        kind: r.get(at + 1),
        subject: r.get(at + 2),
        sequence: r.get(at + 3),
        timestamp_ms: r.get(at + 4),
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
    }
}

/// An event of session `id` (its asset has the same id).
pub fn session_event(
    kind: &'static str,
    id: &str,
    device_id: &str,
    data: serde_json::Value,
) -> NewEvent {
    NewEvent {
        kind,
        subject: format!("session:{id}"),
        device_id: Some(device_id.to_string()),
        data,
    }
}

/// Records `e` on `conn` (inside the caller's transaction): the subject's
/// next sequence number, the event, and a pending delivery for every live
/// endpoint that wants it (the device's own and the global ones).
pub(crate) async fn record_event(conn: &mut AnyConnection, e: &NewEvent) -> Result<()> {
    let what = || format!("recording event {} of {}", e.kind, e.subject);
    // Types are matched in the `,a,b,` column with LIKE: they hold no `%`,
    // and a `_` in one matches no other known type.
    // The counter row is written first: it serialises the writers of one
    // subject (a row lock on PostgreSQL, the write lock on SQLite).
    sqlx::query(
        "INSERT INTO webhook_subjects (subject, last_seq) VALUES ($1, 1)
         ON CONFLICT(subject) DO UPDATE SET last_seq = webhook_subjects.last_seq + 1",
    )
    .bind(&e.subject)
    .execute(&mut *conn)
    .await
    .with_context(what)?;
    let now = now_ms();
    let id = sharecast_tokens::new_id();
    let row = sqlx::query(
        "INSERT INTO webhook_events (id, kind, subject, seq, device_id, created_ms, data)
         SELECT $1, $2, $3, last_seq, $4, $5, $6 FROM webhook_subjects WHERE subject = $3
         RETURNING pos, seq",
    )
    .bind(&id)
    .bind(e.kind)
    .bind(&e.subject)
    .bind(&e.device_id)
    .bind(now)
    .bind(e.data.to_string())
    .fetch_one(&mut *conn)
    .await
    .with_context(what)?;
    let (pos, seq): (i64, i64) = (row.get(0), row.get(1));
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_pos, subject, seq, status, next_ms, created_ms)
         SELECT id, $1, $2, $3, 'pending', $4, $4 FROM webhook_endpoints
         WHERE deleted_ms IS NULL AND (device_id IS NULL OR device_id = $5)
           AND (event_types = ',*,' OR event_types LIKE '%,' || $6 || ',%')",
    )
    .bind(pos)
    .bind(&e.subject)
    .bind(seq)
    .bind(now)
    .bind(&e.device_id)
    .bind(e.kind)
    .execute(&mut *conn)
    .await
    .with_context(what)?;
    tracing::debug!(event = %id, kind = e.kind, subject = %e.subject, seq, "webhook event recorded");
    Ok(())
}

impl Store {
    /// Records events in a transaction of their own (for changes that are
    /// not database writes: a session suspended or resumed).
    pub async fn emit_events(&self, events: &[NewEvent]) -> Result<()> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("acquiring a connection")?;
        let result = async {
            let mut tx = sqlx::Connection::begin(&mut *conn)
                .await
                .context("starting a transaction")?;
            for e in events {
                record_event(&mut tx, e).await?;
            }
            tx.commit().await.context("committing events")
        }
        .await;
        if result.is_err() {
            // A COMMIT that failed (SQLite on a full disk) can leave the
            // connection believing it is still in a transaction, and its
            // next use holding the database's write lock: every other
            // writer then got "database is locked". Closed, not reused.
            conn.close_on_drop();
        }
        result
    }

    /// A new endpoint of `device_id` (none: global) posting the `types` of
    /// events to `url`; returns it and its secret (shown once).
    pub async fn add_webhook(
        &self,
        device_id: Option<&str>,
        url: &str,
        types: &[String],
        secret: &str,
    ) -> Result<WebhookEndpoint> {
        let id = sharecast_tokens::new_id();
        let created = now_ms();
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, device_id, url, event_types, secret, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(device_id)
        .bind(url)
        .bind(types_column(types))
        .bind(secret)
        .bind(created)
        .execute(&self.pool)
        .await
        .context("inserting a webhook endpoint")?;
        Ok(WebhookEndpoint {
            id,
            device_id: device_id.map(str::to_string),
            url: url.to_string(),
            event_types: types.to_vec(),
            created_unix_ms: created,
        })
    }

    /// The live endpoints of `device_id`, or every live endpoint when
    /// `None`, oldest first.
    pub async fn webhooks(&self, device_id: Option<&str>) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints
             WHERE ($1 IS NULL OR device_id = $1) AND deleted_ms IS NULL ORDER BY created_ms, id"
        ))
        .bind(device_id)
        .fetch_all(&self.pool)
        .await
        .context("listing webhook endpoints")?;
        Ok(rows.iter().map(endpoint).collect())
    }

    /// A live endpoint, if `device_id` (when given) owns it.
    pub async fn webhook(
        &self,
        id: &str,
        device_id: Option<&str>,
    ) -> Result<Option<WebhookEndpoint>> {
        Ok(self
            .webhooks(device_id)
            .await?
            .into_iter()
            .find(|e| e.id == id))
    }

    /// Deletes an endpoint (of `device_id` when given): its pending
    /// deliveries are dropped. False when there is no such live endpoint.
    pub async fn delete_webhook(&self, id: &str, device_id: Option<&str>) -> Result<bool> {
        if self.webhook(id, device_id).await?.is_none() {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET deleted_ms = $1 WHERE id = $2 AND deleted_ms IS NULL",
        )
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await
        .context("deleting a webhook endpoint")?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'pending'")
            .bind(id)
            .execute(&mut *tx)
            .await
            .context("dropping a deleted endpoint's deliveries")?;
        tx.commit()
            .await
            .context("committing an endpoint's deletion")?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims for this node the pending deliveries due at `now` that no
    /// other node holds a live claim on, at most `limit`, and returns them:
    /// for each endpoint and subject only the earliest pending one (a later
    /// event waits for the earlier ones, whichever node holds them), in
    /// outbox order. On PostgreSQL the rows are locked `FOR UPDATE SKIP
    /// LOCKED`, so servers claiming at once get disjoint sets.
    pub async fn due_webhooks(&self, now: i64, limit: i64) -> Result<Vec<DueWebhook>> {
        let lock = match self.engine {
            crate::Engine::Postgres => " FOR UPDATE OF d SKIP LOCKED",
            crate::Engine::Sqlite => "",
        };
        let until = now.saturating_add(self.claim_ms);
        sqlx::query(&format!(
            "UPDATE webhook_deliveries SET claimed_by = $1, claim_until_ms = $2
             WHERE (endpoint_id, event_pos) IN (SELECT d.endpoint_id, d.event_pos
                 FROM webhook_deliveries d
                 WHERE d.status = 'pending' AND d.next_ms <= $3
                   AND (d.claim_until_ms IS NULL OR d.claim_until_ms < $3 OR d.claimed_by = $1)
                   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries b
                       WHERE b.endpoint_id = d.endpoint_id AND b.subject = d.subject
                         AND b.status = 'pending' AND b.seq < d.seq)
                 ORDER BY d.event_pos LIMIT $4{lock})"
        ))
        .bind(&*self.node)
        .bind(until)
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await
        .context("claiming due webhook deliveries")?;
        let rows = sqlx::query(&format!(
            "SELECT d.endpoint_id, p.url, p.secret, d.event_pos, d.attempts, d.created_ms,
                    e.id, e.kind, e.subject, e.seq, e.created_ms, e.data
             {DELIVERIES_JOINED}
             WHERE d.status = 'pending' AND d.claimed_by = $1 AND d.claim_until_ms = $2
               AND d.next_ms <= $3
             ORDER BY d.event_pos"
        ))
        .bind(&*self.node)
        .bind(until)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .context("loading claimed webhook deliveries")?;
        Ok(rows
            .iter()
            .map(|r| DueWebhook {
                endpoint_id: r.get(0),
                url: r.get(1),
                secret: r.get(2),
                event_pos: r.get(3),
                attempts: r.get(4),
                queued_ms: r.get(5),
                event: event_at(r, 6),
            })
            .collect())
    }

    /// Records an attempt's outcome: `delivered`, `failed` (given up) or,
    /// with `next_ms`, `pending` again until then.
    pub async fn webhook_attempted(
        &self,
        due: &DueWebhook,
        status: &str,
        error: Option<&str>,
        next_ms: Option<i64>,
    ) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_error = $2,
             next_ms = COALESCE($3, next_ms), done_ms = $4
             WHERE endpoint_id = $5 AND event_pos = $6 AND status = 'pending'",
        )
        .bind(status)
        .bind(error)
        .bind(next_ms)
        .bind((status != "pending").then_some(now))
        .bind(&due.endpoint_id)
        .bind(due.event_pos)
        .execute(&self.pool)
        .await
        .with_context(|| format!("recording a delivery of event {}", due.event.id))?;
        Ok(())
    }

    /// Queues again, for `endpoint_id`, every event it wants from event
    /// `from` (included) on, in outbox order; `None` when that event is
    /// unknown or not one the endpoint may see. Returns how many.
    pub async fn replay_webhook(&self, endpoint_id: &str, from: &str) -> Result<Option<u64>> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        // Written first, to take the write lock (see `record_event`).
        sqlx::query("UPDATE webhook_endpoints SET url = url WHERE id = $1")
            .bind(endpoint_id)
            .execute(&mut *tx)
            .await
            .context("locking the endpoint")?;
        let visible = sqlx::query(
            "SELECT e.pos FROM webhook_events e JOIN webhook_endpoints p ON p.id = $1
             WHERE e.id = $2 AND p.deleted_ms IS NULL AND (p.device_id IS NULL OR p.device_id = e.device_id)",
        )
        .bind(endpoint_id)
        .bind(from)
        .fetch_optional(&mut *tx)
        .await
        .context("finding the event to replay from")?;
        let Some(pos) = visible.map(|r| r.get::<i64, _>(0)) else {
            return Ok(None);
        };
        let done = sqlx::query(
            "INSERT INTO webhook_deliveries (endpoint_id, event_pos, subject, seq, status, next_ms, created_ms)
             SELECT p.id, e.pos, e.subject, e.seq, 'pending', $1, $1
             FROM webhook_events e JOIN webhook_endpoints p ON p.id = $2
             WHERE e.pos >= $3 AND (p.device_id IS NULL OR p.device_id = e.device_id)
               AND (p.event_types = ',*,' OR p.event_types LIKE '%,' || e.kind || ',%')
             ON CONFLICT(endpoint_id, event_pos) DO UPDATE SET status = 'pending', attempts = 0,
                next_ms = excluded.next_ms, created_ms = excluded.created_ms, last_error = NULL, done_ms = NULL",
        )
        .bind(now_ms())
        .bind(endpoint_id)
        .bind(pos)
        .execute(&mut *tx)
        .await
        .context("queueing a replay")?;
        tx.commit().await.context("committing a replay")?;
        Ok(Some(done.rows_affected()))
    }

    /// Removes the events recorded before `before_ms` whose deliveries are
    /// all finished (delivered or given up), with those deliveries; an
    /// event with a delivery still pending stays. Subjects keep their last
    /// sequence number, so later events continue it. Returns how many
    /// events were removed.
    pub async fn purge_webhook_events(&self, before_ms: i64) -> Result<u64> {
        let mut tx = self.pool.begin().await.context("starting a transaction")?;
        sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND event_pos IN
             (SELECT pos FROM webhook_events WHERE created_ms < $1)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await
        .context("removing old webhook deliveries")?;
        let done = sqlx::query(
            "DELETE FROM webhook_events WHERE created_ms < $1 AND NOT EXISTS
             (SELECT 1 FROM webhook_deliveries d WHERE d.event_pos = webhook_events.pos)",
        )
        .bind(before_ms)
        .execute(&mut *tx)
        .await
        .context("removing old webhook events")?;
        tx.commit().await.context("committing a webhook purge")?;
        Ok(done.rows_affected())
    }

    /// Deliveries with `status` (any when `None`), newest event first, at
    /// most `limit`: what the admin sees.
    pub async fn webhook_deliveries(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>> {
        let rows = sqlx::query(&format!(
            "SELECT d.endpoint_id, p.url, e.id, e.kind, e.subject, e.seq, d.status, d.attempts,
                    d.last_error, d.next_ms, d.done_ms {DELIVERIES_JOINED}
             WHERE ($1 IS NULL OR d.status = $1) ORDER BY d.event_pos DESC LIMIT $2"
        ))
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing webhook deliveries")?;
        Ok(rows
            .iter()
            .map(|r| WebhookDelivery {
                endpoint_id: r.get(0),
                url: r.get(1),
                event_id: r.get(2),
                kind: r.get(3),
                subject: r.get(4),
                sequence: r.get(5),
                status: r.get(6),
                attempts: r.get(7),
                last_error: r.get(8),
                next_unix_ms: r.get(9),
                done_unix_ms: r.get(10),
            })
            .collect())
    }

    /// The events of a subject, in order.
    pub async fn webhook_events_of(&self, subject: &str) -> Result<Vec<WebhookEvent>> {
        let rows = sqlx::query(
            "SELECT id, kind, subject, seq, created_ms, data FROM webhook_events WHERE subject = $1 ORDER BY seq",
        )
        .bind(subject)
        .fetch_all(&self.pool)
        .await
        .context("listing a subject's events")?;
        Ok(rows.iter().map(|r| event_at(r, 0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use sharecast_formats::attributes::{Rendition, VideoAttributes};

    use super::*;
    use crate::testing::store;

    fn attrs(renditions: &[&str]) -> VideoAttributes {
        VideoAttributes {
            renditions: renditions
                .iter()
                .map(|n| Rendition {
                    name: n.to_string(),
                    ..Rendition::default()
                })
                .collect(),
            ..VideoAttributes::default()
        }
    }

    fn start<'a>(id: &'a str, device_id: &'a str) -> crate::SessionStart<'a> {
        crate::SessionStart {
            id,
            device_id,
            title: None,
            started_ms: 1,
        }
    }

    fn all() -> Vec<String> {
        vec!["*".to_string()]
    }

    /// Events are numbered per subject, written with their change, and
    /// queued for the device's own endpoints and the global ones only.
    #[tokio::test]
    async fn events_are_numbered_and_queued_for_the_endpoints_that_want_them() {
        let (s, _d) = store().await;
        let (a, _) = s.add_device("a").await.unwrap();
        let (b, _) = s.add_device("b").await.unwrap();
        let types = vec!["asset.ready".to_string(), "rendition.ready".to_string()];
        let mine = s
            .add_webhook(Some(&a.id), "http://a.example/h", &types, "whsec_a")
            .await
            .unwrap();
        let global = s
            .add_webhook(None, "http://g.example/h", &all(), "whsec_g")
            .await
            .unwrap();
        assert_eq!(s.webhooks(Some(&a.id)).await.unwrap(), vec![mine.clone()]);
        assert_eq!(s.webhooks(None).await.unwrap().len(), 2);
        assert_eq!(s.webhook(&global.id, Some(&a.id)).await.unwrap(), None);

        s.session_started(&start("s1", &a.id)).await.unwrap();
        s.session_ended("s1", Ok(&attrs(&["source"])))
            .await
            .unwrap();
        s.asset_ready("s1", &attrs(&["source", "360p"]))
            .await
            .unwrap();
        s.session_started(&start("s2", &b.id)).await.unwrap();
        // A change that fails keeps no event: no asset "nope".
        assert!(s.asset_ready("nope", &attrs(&[])).await.is_err());
        assert!(s
            .webhook_events_of("session:nope")
            .await
            .unwrap()
            .is_empty());

        let events = s.webhook_events_of("session:s1").await.unwrap();
        let kinds: Vec<(&str, i64)> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.sequence))
            .collect();
        assert_eq!(
            kinds,
            [
                ("session.started", 1),
                ("asset.ready", 2),
                ("session.ended", 3),
                ("rendition.ready", 4)
            ]
        );
        assert_eq!(events[3].data["rendition"]["name"], "360p");
        assert_eq!(
            s.webhook_events_of("session:s2").await.unwrap()[0].sequence,
            1
        );

        let deliveries = s.webhook_deliveries(Some("pending"), 100).await.unwrap();
        let to = |id: &str| -> Vec<(String, i64)> {
            let mut v: Vec<_> = deliveries
                .iter()
                .filter(|d| d.endpoint_id == id)
                .map(|d| (d.subject.clone(), d.sequence))
                .collect();
            v.sort();
            v
        };
        // Device a's endpoint: only the two types it wants, of its session.
        assert_eq!(
            to(&mine.id),
            [("session:s1".into(), 2), ("session:s1".into(), 4)]
        );
        assert_eq!(to(&global.id).len(), 5);
    }

    /// Two servers on one database: claims are disjoint, a subject's next
    /// event waits while another node holds its earlier one, and a dead
    /// node's claim is taken over once it has expired.
    #[tokio::test]
    async fn two_nodes_share_webhook_deliveries_in_order() {
        let (a, b, _d) = crate::testing::two_nodes(60).await;
        let (dev, _) = a.add_device("d").await.unwrap();
        a.add_webhook(None, "http://g.example/h", &all(), "whsec_g")
            .await
            .unwrap();
        for id in ["s1", "s2", "s3", "s4"] {
            a.session_started(&start(id, &dev.id)).await.unwrap();
        }
        a.asset_failed("s1", "broken").await.unwrap();
        let now = now_ms();
        let (ca, cb) = tokio::join!(a.due_webhooks(now, 2), b.due_webhooks(now, 10));
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        let subjects = |v: &[DueWebhook]| -> Vec<String> {
            v.iter().map(|d| d.event.subject.clone()).collect()
        };
        let mut all_claimed = [subjects(&ca), subjects(&cb)].concat();
        all_claimed.sort();
        // The four first events, once each; s1's second waits for its first.
        assert_eq!(
            all_claimed,
            ["session:s1", "session:s2", "session:s3", "session:s4"]
        );
        assert!(ca.iter().chain(&cb).all(|d| d.event.sequence == 1));
        let other = if subjects(&ca).contains(&"session:s1".to_string()) {
            &b
        } else {
            &a
        };
        // The other node gets its own claims again, never s1's events.
        let again = other.due_webhooks(now, 10).await.unwrap();
        assert!(
            again.iter().all(|d| d.event.subject != "session:s1"),
            "{again:?}"
        );
        // The holder of s1 dies: after the claim, the other takes s1 over,
        // and once that is delivered, s1's second event comes.
        let later = now + 61_000;
        let taken = other.due_webhooks(later, 10).await.unwrap();
        assert_eq!(taken.len(), 4, "every expired claim is taken over");
        let s1 = taken
            .iter()
            .find(|d| d.event.subject == "session:s1")
            .unwrap();
        other
            .webhook_attempted(s1, "delivered", None, None)
            .await
            .unwrap();
        let next = other.due_webhooks(later, 10).await.unwrap();
        let second: Vec<_> = next
            .iter()
            .filter(|d| d.event.subject == "session:s1")
            .collect();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].event.sequence, 2);
    }

    /// A subject's deliveries to an endpoint go one after the other; a
    /// retry waits its time; replay queues again; deleting drops them.
    #[tokio::test]
    async fn deliveries_are_ordered_retried_replayed_and_dropped() {
        let (s, _d) = store().await;
        let (a, _) = s.add_device("a").await.unwrap();
        let (b, _) = s.add_device("b").await.unwrap();
        let ep = s
            .add_webhook(Some(&a.id), "http://a.example/h", &all(), "whsec_a")
            .await
            .unwrap();
        s.session_started(&start("s1", &a.id)).await.unwrap();
        s.session_started(&start("s3", &a.id)).await.unwrap();
        s.asset_failed("s1", "broken").await.unwrap();
        s.session_started(&start("s2", &b.id)).await.unwrap();
        let now = now_ms();
        let due = s.due_webhooks(now, 10).await.unwrap();
        // One per subject: s1's first event and s3's, not s1's second.
        let got: Vec<(String, i64)> = due
            .iter()
            .map(|d| (d.event.subject.clone(), d.event.sequence))
            .collect();
        assert_eq!(got, [("session:s1".into(), 1), ("session:s3".into(), 1)]);
        assert_eq!(due[0].secret, "whsec_a");
        assert_eq!(due[0].event.kind, "session.started");
        // s1's first is retried later: its second still waits.
        s.webhook_attempted(&due[0], "pending", Some("HTTP 500"), Some(now + 60_000))
            .await
            .unwrap();
        s.webhook_attempted(&due[1], "delivered", None, None)
            .await
            .unwrap();
        assert!(s.due_webhooks(now, 10).await.unwrap().is_empty());
        let later = s.due_webhooks(now + 60_000, 10).await.unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].attempts, 1);
        s.webhook_attempted(&later[0], "delivered", None, None)
            .await
            .unwrap();
        let next = s.due_webhooks(now + 60_000, 10).await.unwrap();
        assert_eq!(next[0].event.kind, "asset.failed");
        assert_eq!(next[0].event.data["error"], "broken");
        s.webhook_attempted(&next[0], "failed", Some("gave up"), None)
            .await
            .unwrap();
        let failed = s.webhook_deliveries(Some("failed"), 10).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].last_error.as_deref(), Some("gave up"));

        // Replay from s1's first event: its events and s3's, again.
        let first = s.webhook_events_of("session:s1").await.unwrap()[0]
            .id
            .clone();
        assert_eq!(s.replay_webhook(&ep.id, &first).await.unwrap(), Some(3));
        let again = s.due_webhooks(now_ms(), 10).await.unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0].attempts, 0);
        // Another device's event is not replayed to it.
        let other = s.webhook_events_of("session:s2").await.unwrap()[0]
            .id
            .clone();
        assert_eq!(s.replay_webhook(&ep.id, &other).await.unwrap(), None);
        assert_eq!(s.replay_webhook(&ep.id, "unknown").await.unwrap(), None);

        assert!(!s.delete_webhook(&ep.id, Some(&b.id)).await.unwrap());
        assert!(s.delete_webhook(&ep.id, Some(&a.id)).await.unwrap());
        assert!(s.due_webhooks(now_ms(), 10).await.unwrap().is_empty());
        assert!(s.webhooks(None).await.unwrap().is_empty());
    }

    /// Shares, deliveries and bookmarks report themselves.
    #[tokio::test]
    async fn shares_deliveries_and_bookmarks_have_events() {
        let (s, _d) = store().await;
        let (a, _) = s.add_device("a").await.unwrap();
        s.add_webhook(None, "http://g.example/h", &all(), "whsec_g")
            .await
            .unwrap();
        s.session_started(&start("s1", &a.id)).await.unwrap();
        let share = crate::ShareRecord {
            id: "sh1".into(),
            token: "tok".into(),
            asset_id: "s1".into(),
            device_id: a.id.clone(),
            kind: "live".into(),
            event_key: Some("live:s1".into()),
            attributes: VideoAttributes::default(),
            created_ms: 1,
            expires_ms: None,
            revoked_ms: None,
            public: false,
        };
        s.insert_share(&share).await.unwrap();
        // The same subscription event again stores nothing, and tells nothing.
        s.insert_share(&crate::ShareRecord {
            id: "sh2".into(),
            token: "t2".into(),
            ..share.clone()
        })
        .await
        .unwrap();
        let d = crate::NewDelivery {
            share_id: "sh1",
            event: "live:s1",
            recipient: "+15550001",
            format: "sms",
            status: crate::DeliveryStatus::Pending,
            note: None,
            now: 1,
        };
        s.enqueue_delivery(&d).await.unwrap();
        let id = s.deliveries_of("sh1").await.unwrap()[0].id;
        let none = crate::DeliveryUpdate::default;
        s.set_delivery_status(id, crate::DeliveryStatus::Sending, none())
            .await
            .unwrap();
        s.set_delivery_status(id, crate::DeliveryStatus::Sent, none())
            .await
            .unwrap();
        let kinds: Vec<String> = s
            .webhook_events_of("share:sh1")
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["share.created", "delivery.sent"]);
        assert!(s.webhook_events_of("share:sh2").await.unwrap().is_empty());

        let bookmark = crate::BookmarkRecord {
            id: "b1".into(),
            user_id: "u".into(),
            content_id: "s1".into(),
            position_ms: 1500,
            name: None,
            description: None,
            source: "interruption".into(),
            address: "http://x/vod".into(),
            status: crate::BookmarkStatus::Ready,
            created_ms: 1,
            access_until_ms: None,
        };
        s.insert_bookmark(&bookmark).await.unwrap();
        s.insert_bookmark(&crate::BookmarkRecord {
            id: "b2".into(),
            source: "handoff".into(),
            ..bookmark
        })
        .await
        .unwrap();
        let events = s.webhook_events_of("session:s1").await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["session.started", "viewer.interrupted", "handoff.accepted"]
        );
        assert_eq!(events[1].data["position_ms"], 1500);
        assert_eq!(s.webhook_deliveries(None, 100).await.unwrap().len(), 5);

        // STOP, then START, from a subscriber of device a.
        s.upsert_subscription(&a.id, "+15550009", "tlv", 1)
            .await
            .unwrap();
        assert_eq!(s.set_opt_out("15550009", true, 2).await.unwrap(), 1);
        assert_eq!(s.set_opt_out("15550009", false, 3).await.unwrap(), 1);
        let events = s
            .webhook_events_of(&format!("subscriber:{}:15550009", a.id))
            .await
            .unwrap();
        let kinds: Vec<(&str, i64)> = events
            .iter()
            .map(|e| (e.kind.as_str(), e.sequence))
            .collect();
        assert_eq!(
            kinds,
            [("subscriber.opted_out", 1), ("subscriber.opted_in", 2)]
        );
        assert_eq!(events[0].data["recipient"], "+15550009");
    }
}
