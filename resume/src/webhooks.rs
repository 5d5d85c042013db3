//! Webhook delivery: the worker that posts the outbox's events
//! (`sharecast-store`'s `webhooks`) to the endpoints that want them, signed
//! in the style of the Standard Webhooks specification, through the one
//! outbound policy ([`Outbound`]).
//!
//! - A subject's (session's, share's) events go to an endpoint one after the
//!   other: a later one waits until the earlier one is delivered or given up.
//! - A failed attempt (no answer in `outbound.timeout_secs`, or an answer
//!   that is not 2xx) is retried after `retry_initial_ms`, doubling up to
//!   `retry_max_interval_secs`, until `give_up_after_secs` have passed
//!   since it was queued; then it is marked `failed` (the admin lists it).
//! - Every attempt of an event (and every replay) carries the same
//!   `webhook-id`: receivers deduplicate by it.
//! - Counted in `sharecast_webhook_deliveries_total{result}`.
//! - Events older than `retention_days` whose deliveries are all finished
//!   are removed every hour (`sharecast_webhook_events_purged_total`).

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rand::RngCore;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sharecast_store::{now_ms, DueWebhook, Store, WebhookEvent};

use crate::metrics::by_result;
use crate::outbound::{Outbound, OutboundError};

/// How often old events are looked for.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The prefix of a signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// `[webhooks]`: how events are delivered.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Deliver events at all. Default true.
    pub enabled: bool,
    /// Wait before the first retry of a failed attempt, ms; each further
    /// retry waits twice as long. Default 5000.
    pub retry_initial_ms: u64,
    /// Longest wait between two attempts, seconds. Default 3600.
    pub retry_max_interval_secs: u64,
    /// How long an event is retried after it was queued (or replayed)
    /// before it is marked failed, seconds. Default 86400 (24 h).
    pub give_up_after_secs: u64,
    /// How often the outbox is looked at when nothing is due, ms.
    /// Default 1000.
    pub poll_interval_ms: u64,
    /// Most deliveries attempted at once (each to a different endpoint or
    /// subject). Default 16.
    pub max_in_flight: u32,
    /// Days an event is kept after it was recorded; then it is removed
    /// with its deliveries once none is pending (checked hourly), and can
    /// no longer be replayed. 0 keeps events forever. Default 30.
    pub retention_days: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retry_initial_ms: 5000,
            retry_max_interval_secs: 3600,
            give_up_after_secs: 86_400,
            poll_interval_ms: 1000,
            max_in_flight: 16,
            retention_days: 30,
        }
    }
}

impl WebhooksConfig {
    /// The wait before the attempt after `attempts` failed ones.
    fn backoff_ms(&self, attempts: i64) -> i64 {
        let max = self.retry_max_interval_secs.saturating_mul(1000);
        let shift = attempts.clamp(0, 40) as u32;
        let wait = self.retry_initial_ms.saturating_mul(1u64 << shift).min(max);
        i64::try_from(wait).unwrap_or(i64::MAX)
    }
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// The `webhook-signature` of a message: `v1,` and the base64 HMAC-SHA256,
/// keyed with the secret's decoded bytes, of `{id}.{timestamp}.{body}`.
pub fn sign(secret: &str, id: &str, timestamp_s: i64, body: &[u8]) -> anyhow::Result<String> {
    let key = B64
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .map_err(|e| anyhow::anyhow!("a webhook secret that is not base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|e| anyhow::anyhow!("a webhook secret HMAC refuses: {e}"))?;
    mac.update(format!("{id}.{timestamp_s}.").as_bytes());
    mac.update(body);
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// The body posted for an event.
pub fn body(event: &WebhookEvent) -> Vec<u8> {
    serde_json::to_vec(event).unwrap_or_default()
}

/// Deliveries, by outcome: the collector of
/// `sharecast_webhook_deliveries_total`.
#[derive(Debug, Clone, Default)]
struct Counts {
    delivered: Counter,
    retried: Counter,
    failed: Counter,
    purged: Counter,
}

impl Collector for Counts {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        by_result(
            &mut enc,
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome (delivered, retried later, failed for good)",
            &[
                ("delivered", &self.delivered),
                ("retried", &self.retried),
                ("failed", &self.failed),
            ],
        )?;
        let purged = enc.encode_descriptor(
            "webhook_events_purged",
            "Webhook events removed after webhooks.retention_days (with their finished deliveries)",
            None,
            self.purged.metric_type(),
        )?;
        self.purged.encode(purged)
    }
}

/// The webhook side of the server: new secrets, checks of addresses, and
/// the delivery worker. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    store: Store,
    outbound: Outbound,
    client: reqwest::Client,
    cfg: Arc<WebhooksConfig>,
    counts: Counts,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Outcome {
    Delivered,
    Retry(i64),
    Failed,
}

impl Webhooks {
    /// The webhooks of `store`, posted through `outbound`.
    pub fn new(store: Store, outbound: Outbound, cfg: WebhooksConfig) -> anyhow::Result<Webhooks> {
        let client = outbound.client(outbound.timeout())?;
        Ok(Webhooks {
            store,
            outbound,
            client,
            cfg: Arc::new(cfg),
            counts: Counts::default(),
        })
    }

    /// Whether an endpoint's address is one the outbound policy allows.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        self.outbound.check_destination(url)
    }

    /// Starts the hourly purge of old events (unless `retention_days` is
    /// 0) and the delivery worker (unless `webhooks.enabled` is off).
    pub fn start(&self) {
        if self.cfg.retention_days > 0 {
            let this = self.clone();
            tokio::spawn(async move {
                let mut hourly = tokio::time::interval(PURGE_EVERY);
                loop {
                    hourly.tick().await;
                    if let Err(e) = this.purge(now_ms()).await {
                        tracing::error!(error = %format!("{e:#}"), "webhooks: purging old events");
                    }
                }
            });
        }
        if !self.cfg.enabled {
            tracing::info!("webhooks: delivery is off (webhooks.enabled = false)");
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.run().await });
    }

    async fn run(self) {
        let idle = Duration::from_millis(self.cfg.poll_interval_ms.max(10));
        loop {
            match self.pass().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "webhooks: delivery pass"),
            }
            tokio::time::sleep(idle).await;
        }
    }

    /// Removes the events older than `retention_days` at `now` (Unix ms)
    /// whose deliveries are all finished; returns how many.
    pub async fn purge(&self, now: i64) -> anyhow::Result<u64> {
        let days = self.cfg.retention_days;
        if days == 0 {
            return Ok(0);
        }
        let keep_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
        let n = self
            .store
            .purge_webhook_events(now.saturating_sub(keep_ms))
            .await?;
        if n > 0 {
            self.counts.purged.inc_by(n);
            tracing::info!(
                events = n,
                retention_days = days,
                "webhooks: old events removed"
            );
        }
        Ok(n)
    }

    /// Attempts every delivery due now (at most `max_in_flight`, at once);
    /// returns how many were attempted.
    pub async fn pass(&self) -> anyhow::Result<usize> {
        let limit = i64::from(self.cfg.max_in_flight.max(1));
        let due = self.store.due_webhooks(now_ms(), limit).await?;
        let n = due.len();
        let mut attempts = tokio::task::JoinSet::new();
        for d in due {
            let this = self.clone();
            attempts.spawn(async move { this.attempt(d).await });
        }
        while let Some(done) = attempts.join_next().await {
            match done {
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "webhooks: recording an attempt")
                }
                Err(e) => tracing::error!(error = %e, "webhooks: attempt task"),
                Ok(Ok(())) => {}
            }
        }
        Ok(n)
    }

    /// One attempt of one delivery, and its outcome recorded.
    async fn attempt(&self, d: DueWebhook) -> anyhow::Result<()> {
        let result = self.post(&d).await;
        let now = now_ms();
        let outcome = match &result {
            Ok(()) => Outcome::Delivered,
            Err(_) => {
                let deadline = d.queued_ms.saturating_add(
                    i64::try_from(self.cfg.give_up_after_secs.saturating_mul(1000))
                        .unwrap_or(i64::MAX),
                );
                if now >= deadline {
                    Outcome::Failed
                } else {
                    Outcome::Retry(
                        now.saturating_add(self.cfg.backoff_ms(d.attempts))
                            .min(deadline),
                    )
                }
            }
        };
        let error = result.err().map(|e| e.to_string());
        let (status, next) = match outcome {
            Outcome::Delivered => {
                self.counts.delivered.inc();
                ("delivered", None)
            }
            Outcome::Retry(next) => {
                self.counts.retried.inc();
                ("pending", Some(next))
            }
            Outcome::Failed => {
                self.counts.failed.inc();
                tracing::warn!(event = %d.event.id, endpoint = %d.endpoint_id, error = ?error, "webhooks: gave up a delivery");
                ("failed", None)
            }
        };
        tracing::debug!(event = %d.event.id, endpoint = %d.endpoint_id, status, error = ?error, "webhook attempt");
        self.store
            .webhook_attempted(&d, status, error.as_deref(), next)
            .await
    }

    /// Posts the event, signed, to the endpoint.
    async fn post(&self, d: &DueWebhook) -> Result<(), OutboundError> {
        let body = body(&d.event);
        let timestamp = now_ms() / 1000;
        let signature = sign(&d.secret, &d.event.id, timestamp, &body).map_err(|e| {
            tracing::error!(endpoint = %d.endpoint_id, error = %format!("{e:#}"), "webhooks: signing");
            OutboundError::BadAnswer("the endpoint's secret cannot sign".into())
        })?;
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        set("webhook-id", &d.event.id);
        set("webhook-timestamp", &timestamp.to_string());
        set("webhook-signature", &signature);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        self.outbound
            .post_bytes(&self.client, &d.url, headers, body)
            .await
    }

    /// Registers `webhook_deliveries` (under the registry's prefix).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.counts.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries: this secret, id, timestamp and body give this signature.
    #[test]
    fn signatures_are_those_of_standard_webhooks() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sig = sign(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(new_secret().starts_with(SECRET_PREFIX));
        assert_ne!(new_secret(), new_secret());
    }

    /// A loopback address nothing listens on.
    fn closed_url() -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    }

    /// A store with one global endpoint, for every event, that nothing
    /// answers.
    async fn store_with_unreachable_endpoint() -> (Store, sharecast_store::testing::TestDir) {
        let (store, d) = sharecast_store::testing::store().await;
        let all = vec!["*".to_string()];
        store
            .add_webhook(None, &closed_url(), &all, &new_secret())
            .await
            .unwrap();
        (store, d)
    }

    fn worker(store: &Store, cfg: WebhooksConfig) -> Webhooks {
        let outbound = Outbound::new(&crate::outbound::OutboundConfig {
            allow_private_addresses: true,
            timeout_secs: 1,
            ..Default::default()
        })
        .unwrap();
        Webhooks::new(store.clone(), outbound, cfg).unwrap()
    }

    /// A failed attempt is retried after the first wait; past
    /// `give_up_after_secs` it is marked failed, and the subject's next
    /// event goes on.
    #[tokio::test]
    async fn failed_attempts_are_retried_then_given_up_and_the_next_goes_on() {
        let (store, _d) = store_with_unreachable_endpoint().await;
        let start = sharecast_store::SessionStart {
            id: "s1",
            device_id: "dev",
            title: None,
            started_ms: 1,
        };
        store.session_started(&start).await.unwrap();
        store.asset_failed("s1", "broken").await.unwrap();

        // Retried: pending, due again after about retry_initial_ms.
        let retrying = worker(&store, WebhooksConfig::default());
        let before = now_ms();
        assert_eq!(retrying.pass().await.unwrap(), 1);
        let list = store.webhook_deliveries(Some("pending"), 10).await.unwrap();
        let first = list.iter().find(|d| d.sequence == 1).unwrap();
        assert_eq!(first.attempts, 1);
        assert_eq!(first.last_error.as_deref(), Some("could not be reached"));
        assert!(first.next_unix_ms >= before + 5000, "{first:?}");
        assert_eq!(retrying.pass().await.unwrap(), 0, "not due yet");

        // Given up: failed, listed, counted; the next event is attempted.
        let giving_up = worker(
            &store,
            WebhooksConfig {
                give_up_after_secs: 0,
                ..WebhooksConfig::default()
            },
        );
        store
            .replay_webhook(&first.endpoint_id, &first.event_id)
            .await
            .unwrap();
        assert_eq!(giving_up.pass().await.unwrap(), 1);
        let failed = store.webhook_deliveries(Some("failed"), 10).await.unwrap();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].sequence, 1);
        assert_eq!(giving_up.pass().await.unwrap(), 1);
        assert_eq!(
            store
                .webhook_deliveries(Some("failed"), 10)
                .await
                .unwrap()
                .len(),
            2
        );
        assert_eq!(giving_up.counts.failed.get(), 2);
        assert_eq!(retrying.counts.retried.get(), 1);
    }

    /// Old events whose deliveries are finished are removed (and counted);
    /// a pending one and recent ones stay; sequences continue; retention 0
    /// keeps everything.
    #[tokio::test]
    async fn old_finished_events_are_purged_and_sequences_continue() {
        let (store, _d) = store_with_unreachable_endpoint().await;
        let start = |id| sharecast_store::SessionStart {
            id,
            device_id: "dev",
            title: None,
            started_ms: 1,
        };
        store.session_started(&start("s1")).await.unwrap();
        store.asset_failed("s1", "broken").await.unwrap();
        let giving_up = worker(
            &store,
            WebhooksConfig {
                give_up_after_secs: 0,
                ..WebhooksConfig::default()
            },
        );
        while giving_up.pass().await.unwrap() > 0 {}
        store.session_started(&start("s2")).await.unwrap();
        let month = 31 * 86_400_000;
        let keep_all = worker(
            &store,
            WebhooksConfig {
                retention_days: 0,
                ..WebhooksConfig::default()
            },
        );
        assert_eq!(keep_all.purge(now_ms() + month).await.unwrap(), 0);
        // Nothing is a month old yet.
        assert_eq!(giving_up.purge(now_ms()).await.unwrap(), 0);

        assert_eq!(giving_up.purge(now_ms() + month).await.unwrap(), 2);
        assert!(store
            .webhook_events_of("session:s1")
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.webhook_events_of("session:s2").await.unwrap().len(),
            1
        );
        let pending = store.webhook_deliveries(Some("pending"), 10).await.unwrap();
        assert_eq!(pending.len(), 1, "the pending delivery stays");
        assert!(store
            .webhook_deliveries(Some("failed"), 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(giving_up.counts.purged.get(), 2);
        store.session_ended("s1", Err("again")).await.unwrap();
        let events = store.webhook_events_of("session:s1").await.unwrap();
        assert_eq!(events[0].sequence, 3, "the subject's sequence continues");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_longest_wait() {
        let cfg = WebhooksConfig {
            retry_initial_ms: 1000,
            retry_max_interval_secs: 10,
            ..WebhooksConfig::default()
        };
        let waits: Vec<i64> = (0..6).map(|a| cfg.backoff_ms(a)).collect();
        assert_eq!(waits, [1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(cfg.backoff_ms(1000), 10_000);
    }
}
