//! The communication proxy's delivery queue: every (event, recipient,
//! format) is one row in SQLite, so deliveries survive a restart; a single
//! worker sends what is due through the gateway, retries temporary failures
//! with exponential backoff, and obeys a per-gateway token-bucket rate
//! limit. The unique key (event, recipient, format) means a recipient never
//! gets the same event twice.
//!
//! Statuses: `pending` (waiting for its next attempt), `sending` (handed to
//! the gateway right now), `sent`, `failed` (permanent error or attempts
//! exhausted), `no_gateway` (no SMS gateway configured: recorded, never
//! sent), `unknown` (the server stopped while the gateway was being called;
//! not retried, so it is never sent twice), `opted_out` (the recipient
//! replied STOP before it was sent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::{encode_user_data, MessageOptions, ShareFormat};
use sharecast_store::{now_ms, DeliveryStatus, DeliveryUpdate, DueDelivery, Store};

use crate::kannel::{Kannel, SendError, SmsConfig};
use crate::message::{message_attributes, wap_document};
use crate::number::digits;
use crate::shares::ShareService;

/// Kannel's delivery report types (the `%d` of a `dlr-url`); sendsms
/// asks for 1 and 2 (`dlr-mask=3`), SMSC-level reports are understood too.
mod dlr {
    /// Delivered to the phone.
    pub(super) const DELIVERED: u32 = 1;
    /// Not delivered to the phone.
    pub(super) const UNDELIVERED: u32 = 2;
    /// Queued on the SMSC.
    pub(super) const BUFFERED: u32 = 4;
    /// Accepted by the SMSC.
    pub(super) const SMSC_ACCEPTED: u32 = 8;
    /// Refused by the SMSC.
    pub(super) const SMSC_REFUSED: u32 = 16;
}

impl ShareService {
    /// A delivery report from the gateway (`/api/v1/sms/dlr`, Kannel's
    /// `dlr-url`): part `part` of delivery `delivery` reached the phone
    /// (type 1) or could not (2; 16: the SMSC refused it); types 4 and 8
    /// (queued on, accepted by the SMSC) change nothing. The answer is a
    /// short text for the gateway's log. Errors: `bad_report`,
    /// `unknown_delivery`.
    pub async fn delivery_report(
        &self,
        delivery: Option<&str>,
        part: Option<&str>,
        kind: Option<&str>,
    ) -> crate::error::Result<&'static str> {
        use crate::error::Error;
        let number = |name: &str, v: Option<&str>| {
            v.and_then(|v| v.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| Error::BadReport(format!("{name} must be a number")))
        };
        let id = number("delivery", delivery)?;
        let part = number("part", part)?;
        let part = u32::try_from(part)
            .ok()
            .filter(|p| *p < 63)
            .ok_or_else(|| Error::BadReport("part must be 0 to 62".into()))?;
        let kind = number("type", kind)?;
        let outcome = match u32::try_from(kind).unwrap_or(u32::MAX) {
            dlr::DELIVERED => Ok(()),
            dlr::UNDELIVERED => Err(format!(
                "the network could not deliver SMS part {} to the phone",
                part + 1
            )),
            dlr::SMSC_REFUSED => Err(format!("the SMS centre refused SMS part {}", part + 1)),
            dlr::BUFFERED | dlr::SMSC_ACCEPTED => return Ok("noted"),
            _ => return Err(Error::BadReport(format!("unknown report type {kind}"))),
        };
        let i = &self.inner;
        let status = i
            .store
            .record_delivery_report(
                id,
                part,
                outcome.as_ref().map(|_| ()).map_err(|e| e.as_str()),
            )
            .await?
            .ok_or(Error::UnknownDelivery(id))?;
        match &outcome {
            Ok(()) => i.metrics.parts_delivered.inc(),
            Err(_) => i.metrics.parts_undelivered.inc(),
        };
        tracing::info!(
            delivery = id,
            part,
            report = kind,
            status = status.as_str(),
            "delivery report"
        );
        Ok("recorded")
    }
}

/// Counters for `/metrics`, exposed under the registry's prefix
/// (`share_…`) by [`ShareService::register_metrics`](crate::ShareService::register_metrics).
#[derive(Debug, Default)]
pub(crate) struct DeliveryMetrics {
    /// Deliveries the gateway accepted.
    pub(crate) sent: Counter,
    /// Attempts that failed temporarily (will retry).
    pub(crate) retried: Counter,
    /// Deliveries that failed for good.
    pub(crate) failed: Counter,
    /// SMS/pushes handed to the gateway.
    pub(crate) parts: Counter,
    /// Time spent waiting on the rate limit, ms.
    pub(crate) throttled_ms: Counter,
    /// SMS parts the network reported delivered to the phone.
    pub(crate) parts_delivered: Counter,
    /// SMS parts the network reported it could not deliver.
    pub(crate) parts_undelivered: Counter,
}

impl Collector for DeliveryMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        for (name, help, counter) in [
            (
                "share_deliveries_sent",
                "share deliveries accepted by the SMS gateway",
                &self.sent,
            ),
            (
                "share_delivery_retries",
                "share delivery attempts that failed temporarily and will be retried",
                &self.retried,
            ),
            (
                "share_deliveries_failed",
                "share deliveries that failed for good",
                &self.failed,
            ),
            (
                "share_sms_parts",
                "SMS or pushes handed to the gateway",
                &self.parts,
            ),
            (
                "share_rate_limited_ms",
                "time the delivery worker waited on the gateway rate limit, ms",
                &self.throttled_ms,
            ),
            (
                "share_sms_parts_delivered",
                "SMS parts the gateway's delivery reports say reached the phone",
                &self.parts_delivered,
            ),
            (
                "share_sms_parts_undelivered",
                "SMS parts the gateway's delivery reports say could not be delivered",
                &self.parts_undelivered,
            ),
        ] {
            // Under its exact help text: `Registry::register` would add a
            // full stop.
            counter.encode(enc.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

/// A token bucket: `rate` tokens a second, at most `burst` held.
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket.
    pub(crate) fn new(rate_per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: if rate_per_second > 0.0 {
                rate_per_second
            } else {
                f64::INFINITY
            },
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// How long to wait before `n` tokens may be taken at `now`; takes them
    /// when the answer is zero.
    pub(crate) fn try_take(&mut self, n: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        let n = n.min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((n - self.tokens) / self.rate)
        }
    }

    /// Wait until `n` tokens are available and take them; returns the wait.
    pub(crate) async fn take(&mut self, n: f64) -> Duration {
        let mut waited = Duration::ZERO;
        loop {
            let d = self.try_take(n, Instant::now());
            if d.is_zero() {
                return waited;
            }
            tokio::time::sleep(d).await;
            waited += d;
        }
    }
}

/// Delay before attempt `attempts + 1` after `attempts` failures.
pub(crate) fn backoff_ms(cfg: &SmsConfig, attempts: u32) -> u64 {
    let exp = attempts.saturating_sub(1).min(30);
    cfg.backoff_initial_ms
        .saturating_mul(1u64 << exp)
        .min(cfg.backoff_max_ms)
}

/// What the worker sends for one delivery.
pub(crate) struct Job {
    pub(crate) id: i64,
    pub(crate) share_id: String,
    pub(crate) recipient: String,
    pub(crate) format: String,
    pub(crate) attempts: i64,
    pub(crate) attributes: VideoAttributes,
}

/// Send one job through the gateway; returns the number of SMS/pushes.
async fn send(
    kannel: &Kannel,
    limiter: &mut RateLimiter,
    metrics: &DeliveryMetrics,
    job: &Job,
) -> Result<i64, SendError> {
    let format: ShareFormat = job
        .format
        .parse()
        .map_err(|e: String| SendError::Permanent(e))?;
    if kannel.has_ppg() && matches!(format, ShareFormat::WapSi | ShareFormat::WapSl) {
        let (ct, doc) = wap_document(&job.attributes, format).map_err(SendError::Permanent)?;
        let waited = limiter.take(1.0).await;
        metrics.throttled_ms.inc_by(waited.as_millis() as u64);
        let push_id = format!("{}-{}@sharecast", job.share_id, job.id);
        kannel.push(&push_id, &job.recipient, ct, &doc).await?;
        metrics.parts.inc();
        return Ok(1);
    }
    let opts = MessageOptions {
        // Different deliveries get different concatenation references.
        reference: (job.id as u16).wrapping_mul(31).wrapping_add(7),
        ..MessageOptions::default()
    };
    let parts = encode_user_data(&job.attributes, format, &opts)
        .map_err(|e| SendError::Permanent(format!("encoding the {format} message: {e}")))?;
    for (i, part) in parts.iter().enumerate() {
        let waited = limiter.take(1.0).await;
        metrics.throttled_ms.inc_by(waited.as_millis() as u64);
        kannel.send_part(&job.recipient, part, (job.id, i)).await?;
        metrics.parts.inc();
    }
    Ok(parts.len() as i64)
}

/// Longest sleep of an idle worker, ms: deliveries another server queued
/// (on a shared database) are seen within this.
const IDLE_POLL_MS: i64 = 5_000;

/// The worker: sends what is due, then sleeps until the next delivery is
/// due or `wake` is notified. Runs until the process ends.
pub(crate) async fn run_worker(
    store: Store,
    kannel: Kannel,
    cfg: SmsConfig,
    public_http: String,
    wake: Arc<tokio::sync::Notify>,
    metrics: Arc<DeliveryMetrics>,
) {
    let mut limiter = RateLimiter::new(cfg.rate_per_second, cfg.burst);
    loop {
        match store.expire_stale_sends(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                deliveries = n,
                "deliveries whose node stopped mid-send marked unknown; not retried"
            ),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "delivery queue"),
        }
        let batch = match store.claim_due_deliveries(now_ms(), 32).await {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "delivery queue");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        for due in batch.iter().cloned() {
            let Some(job) = prepare(&store, &public_http, due).await else {
                continue;
            };
            if let Err(e) = process(&store, &kannel, &cfg, &mut limiter, &metrics, &job).await {
                tracing::error!(delivery = job.id, error = %format!("{e:#}"), "recording delivery outcome");
            }
        }
        if !batch.is_empty() {
            continue;
        }
        let sleep_ms = match store.next_due_delivery().await {
            Ok(Some(t)) => (t - now_ms()).clamp(0, IDLE_POLL_MS),
            _ => IDLE_POLL_MS,
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
        }
    }
}

/// The job of a due delivery with what its message carries; `None`, with
/// the outcome recorded, when it is not to be sent now: its share is gone,
/// revoked or expired (`failed`), the recipient replied STOP (`opted_out`),
/// or the share could not be read (tried again 5 s later).
async fn prepare(store: &Store, public_http: &str, due: DueDelivery) -> Option<Job> {
    let DueDelivery {
        id,
        share_id,
        recipient,
        format,
        attempts,
    } = due;
    let attributes = match message_attributes(store, &share_id, public_http).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            let why = Some("the share is gone, revoked or expired");
            let _ = set_status(store, id, DeliveryStatus::Failed, why, None, None).await;
            return None;
        }
        Err(e) => {
            tracing::error!(delivery = id, error = %format!("{e:#}"), "loading share for delivery");
            let why = format!("{e:#}");
            let next = Some(now_ms() + 5000);
            let _ = set_status(store, id, DeliveryStatus::Pending, Some(&why), next, None).await;
            return None;
        }
    };
    match opted_out(store, &share_id, &recipient).await {
        Ok(true) => {
            tracing::info!(delivery = id, to = %recipient, "recipient opted out (STOP); not sent");
            let note = Some(OPTED_OUT_NOTE);
            let _ = set_status(store, id, DeliveryStatus::OptedOut, note, None, None).await;
            return None;
        }
        Ok(false) => {}
        Err(e) => tracing::error!(delivery = id, error = %format!("{e:#}"), "checking opt-out"),
    }
    Some(Job {
        id,
        share_id,
        recipient,
        format,
        attempts,
        attributes,
    })
}

/// Why a delivery to a number that replied STOP was not sent.
pub(crate) const OPTED_OUT_NOTE: &str =
    "the recipient replied STOP; nothing is sent to it until it replies START";

/// Whether `recipient` replied STOP (and not START since): it gets no
/// message of any device.
pub(crate) async fn number_opted_out(store: &Store, recipient: &str) -> Result<bool> {
    store.number_opted_out(&digits(recipient)).await
}

/// Whether `recipient` replied STOP: to every device (see
/// [`number_opted_out`]), or as a subscriber of the device that owns
/// `share_id`.
pub(crate) async fn opted_out(store: &Store, share_id: &str, recipient: &str) -> Result<bool> {
    Ok(number_opted_out(store, recipient).await?
        || store
            .subscriber_opted_out(share_id, &digits(recipient))
            .await?)
}

/// Records a delivery's new status (and when it was sent, for `Sent`).
pub(crate) async fn set_status(
    store: &Store,
    id: i64,
    status: DeliveryStatus,
    error: Option<&str>,
    next_ms: Option<i64>,
    parts: Option<i64>,
) -> Result<()> {
    let update = DeliveryUpdate {
        error,
        next_ms,
        sent_ms: (status == DeliveryStatus::Sent).then(now_ms),
        parts,
    };
    store.set_delivery_status(id, status, update).await
}

/// One pass over one due job: send, then record the outcome.
pub(crate) async fn process(
    store: &Store,
    kannel: &Kannel,
    cfg: &SmsConfig,
    limiter: &mut RateLimiter,
    metrics: &DeliveryMetrics,
    job: &Job,
) -> Result<()> {
    if !store.start_sending(job.id, now_ms()).await? {
        tracing::info!(
            delivery = job.id,
            "delivery taken over by another node; not sent here"
        );
        return Ok(());
    }
    let attempts = job.attempts + 1;
    match send(kannel, limiter, metrics, job).await {
        Ok(parts) => {
            metrics.sent.inc();
            tracing::info!(delivery = job.id, share = %job.share_id, to = %job.recipient, format = %job.format, parts, "share message accepted by the gateway");
            set_status(store, job.id, DeliveryStatus::Sent, None, None, Some(parts)).await
        }
        Err(SendError::Temporary(e)) if (attempts as u32) < cfg.max_attempts => {
            metrics.retried.inc();
            let delay = backoff_ms(cfg, attempts as u32);
            tracing::warn!(delivery = job.id, to = %job.recipient, attempts, retry_in_ms = delay, error = %e, "share message not accepted; will retry");
            let next = Some(now_ms() + delay as i64);
            set_status(store, job.id, DeliveryStatus::Pending, Some(&e), next, None).await
        }
        Err(e) => {
            metrics.failed.inc();
            let msg = format!("{e} (after {attempts} attempt(s))");
            tracing::error!(delivery = job.id, to = %job.recipient, error = %msg, "share message failed");
            set_status(
                store,
                job.id,
                DeliveryStatus::Failed,
                Some(&msg),
                None,
                None,
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn backoff_doubles_and_caps() {
        let cfg = SmsConfig {
            backoff_initial_ms: 1000,
            backoff_max_ms: 5000,
            ..SmsConfig::default()
        };
        assert_eq!(backoff_ms(&cfg, 1), 1000);
        assert_eq!(backoff_ms(&cfg, 2), 2000);
        assert_eq!(backoff_ms(&cfg, 3), 4000);
        assert_eq!(backoff_ms(&cfg, 4), 5000);
        assert_eq!(backoff_ms(&cfg, 60), 5000);
    }

    #[test]
    fn rate_limiter_allows_burst_then_spaces() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2.0, 3);
        r.last = t0;
        for _ in 0..3 {
            assert!(r.try_take(1.0, t0).is_zero());
        }
        let wait = r.try_take(1.0, t0);
        assert!(
            (wait.as_secs_f64() - 0.5).abs() < 0.01,
            "waits half a second at 2/s, got {wait:?}"
        );
        assert!(r.try_take(1.0, t0 + Duration::from_millis(500)).is_zero());
    }

    /// A sendsms stand-in that answers each request with the next status
    /// of `answers` (the last one repeats) and counts the requests.
    async fn fake_sendsms(answers: Vec<u16>) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                // The request head (a GET has no body).
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let n = h.fetch_add(1, Ordering::SeqCst);
                let code = answers[n.min(answers.len() - 1)];
                let answer = format!(
                    "HTTP/1.1 {code} X\r\nContent-Length: 6\r\nConnection: close\r\n\r\nanswer"
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            }
        });
        (format!("http://{addr}/cgi-bin/sendsms"), hits)
    }

    async fn row(store: &Store, id: i64) -> (String, i64, i64, Option<String>, Option<i64>) {
        let d = store.delivery(id).await.unwrap().unwrap();
        let next = d.next_attempt_unix_ms.unwrap_or(0);
        (
            d.status.as_str().to_string(),
            d.attempts,
            next,
            d.last_error,
            d.parts,
        )
    }

    /// Temporary failures are retried after a doubling delay until
    /// `max_attempts`; a permanent failure ends the delivery at once; a
    /// success records the parts. Each outcome is counted.
    #[tokio::test]
    async fn failures_back_off_then_fail_and_successes_count_parts() {
        let (store, _dir) = sharecast_store::testing::store().await;
        for recipient in ["+1555001", "+1555002", "+1555003"] {
            let d = sharecast_store::NewDelivery {
                share_id: "ab",
                event: "share:ab",
                recipient,
                format: "tlv",
                status: DeliveryStatus::Pending,
                note: None,
                now: 0,
            };
            store.enqueue_delivery(&d).await.unwrap();
        }
        let job = |id: i64, attempts: i64| Job {
            id,
            share_id: "ab".into(),
            recipient: format!("+155500{id}"),
            format: "tlv".into(),
            attempts,
            attributes: VideoAttributes {
                id: "ab".into(),
                share_url: Some("http://h/s/0123456789abcdef0123456789abcdef".into()),
                ..VideoAttributes::default()
            },
        };
        let metrics = DeliveryMetrics::default();
        let mut limiter = RateLimiter::new(0.0, 1);

        // 503, 503, 503: two retries 1 s then 2 s later, then failed.
        let (url, hits) = fake_sendsms(vec![503]).await;
        let cfg = SmsConfig {
            sendsms_url: url,
            max_attempts: 3,
            backoff_initial_ms: 1000,
            backoff_max_ms: 60_000,
            ..SmsConfig::default()
        };
        let kannel = Kannel::new(&cfg, "http://127.0.0.1:1").unwrap();
        // Every attempt is of a delivery this node claimed (whenever due).
        let claim = || store.claim_due_deliveries(i64::MAX / 4, 100);
        for (attempts, delay) in [(0, 1000), (1, 2000)] {
            let before = now_ms();
            claim().await.unwrap();
            process(
                &store,
                &kannel,
                &cfg,
                &mut limiter,
                &metrics,
                &job(1, attempts),
            )
            .await
            .unwrap();
            let (status, n, next, err, _) = row(&store, 1).await;
            assert_eq!((status.as_str(), n), ("pending", attempts + 1));
            assert!(
                next >= before + delay && next <= now_ms() + delay,
                "attempt {n}: next {next}, expected {delay} ms after {before}"
            );
            assert!(err.unwrap().contains("sendsms answered 503"));
        }
        claim().await.unwrap();
        process(&store, &kannel, &cfg, &mut limiter, &metrics, &job(1, 2))
            .await
            .unwrap();
        let (status, n, _, err, _) = row(&store, 1).await;
        assert_eq!((status.as_str(), n), ("failed", 3));
        assert!(err.unwrap().contains("after 3 attempt(s)"));
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(metrics.retried.get(), 2);
        assert_eq!(metrics.failed.get(), 1);

        // 403 (bad credentials): failed at the first attempt.
        let (url, _) = fake_sendsms(vec![403]).await;
        let cfg = SmsConfig {
            sendsms_url: url,
            ..cfg
        };
        let kannel = Kannel::new(&cfg, "http://127.0.0.1:1").unwrap();
        claim().await.unwrap();
        process(&store, &kannel, &cfg, &mut limiter, &metrics, &job(2, 0))
            .await
            .unwrap();
        let (status, n, _, err, _) = row(&store, 2).await;
        assert_eq!((status.as_str(), n), ("failed", 1));
        assert!(err.unwrap().contains("permanent"));
        assert_eq!(metrics.failed.get(), 2);

        // 202: sent, one part.
        let (url, _) = fake_sendsms(vec![202]).await;
        let cfg = SmsConfig {
            sendsms_url: url,
            ..cfg
        };
        let kannel = Kannel::new(&cfg, "http://127.0.0.1:1").unwrap();
        claim().await.unwrap();
        process(&store, &kannel, &cfg, &mut limiter, &metrics, &job(3, 0))
            .await
            .unwrap();
        let (status, n, _, _, parts) = row(&store, 3).await;
        assert_eq!((status.as_str(), n, parts), ("sent", 1, Some(1)));
        assert_eq!(metrics.sent.get(), 1);
        assert_eq!(metrics.parts.get(), 1);
    }
}
