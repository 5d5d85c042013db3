//! The communication proxy: "a source went live" and "a VOD is ready" turn
//! into one share per event and a share message queued for every active
//! subscriber of the device; and the queueing of one delivery, for shares
//! made by hand too.

use sharecast_formats::attributes::VideoAttributes;
use sharecast_store::{now_ms, DeliveryStatus, NewDelivery, ShareRecord};
use sharecast_tokens::new_id;

use crate::delivery::{number_opted_out, OPTED_OUT_NOTE};
use crate::error::Result;
use crate::shares::{new_token, ShareService};

impl ShareService {
    /// A phone started uploading: tell the device's subscribers it is live.
    pub fn source_live(&self, device_id: &str, attributes: VideoAttributes) {
        let svc = self.clone();
        let device_id = device_id.to_string();
        tokio::spawn(async move {
            if let Err(e) = svc.on_event("live", &device_id, attributes).await {
                tracing::error!(error = %format!("{e:#}"), "queueing live notifications");
            }
        });
    }

    /// A recording's VOD is ready: tell the device's subscribers.
    pub fn vod_ready(&self, attributes: VideoAttributes) {
        let svc = self.clone();
        tokio::spawn(async move {
            let device = match svc.inner.store.asset(&attributes.id).await {
                Ok(Some(a)) => a.device_id,
                Ok(None) => {
                    tracing::warn!(asset = %attributes.id, "VOD ready for an unknown asset");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "VOD ready: loading asset");
                    return;
                }
            };
            if let Err(e) = svc.on_event("vod", &device, attributes).await {
                tracing::error!(error = %format!("{e:#}"), "queueing VOD notifications");
            }
        });
    }

    /// One share for the event `{kind}:{asset}` (a repeated event reuses
    /// it), and one delivery per active subscriber.
    pub(crate) async fn on_event(
        &self,
        kind: &str,
        device_id: &str,
        attrs: VideoAttributes,
    ) -> Result<()> {
        let (i, store) = (&self.inner, &self.inner.store);
        let subs = store.active_subscribers(device_id).await?;
        if subs.is_empty() {
            return Ok(());
        }
        let event = format!("{kind}:{}", attrs.id);
        let now = now_ms();
        let ttl = i.cfg.default_ttl_s;
        let record = ShareRecord {
            id: new_id(),
            token: new_token(),
            asset_id: attrs.id.clone(),
            device_id: device_id.to_string(),
            kind: kind.to_string(),
            event_key: Some(event.clone()),
            attributes: attrs,
            created_ms: now,
            expires_ms: (ttl > 0).then(|| now + (ttl as i64) * 1000),
            revoked_ms: None,
            public: false,
        };
        store
            .insert_share(&record)
            .await
            .map_err(|e| e.context("creating the event share"))?;
        let share = store
            .share_by_event(&event)
            .await?
            .ok_or_else(|| anyhow::anyhow!("event share {event} vanished"))?;
        let mut queued = 0;
        for (recipient, format) in &subs {
            queued += self.enqueue(&share.id, &event, recipient, format).await?;
        }
        tracing::info!(event = %event, subscribers = subs.len(), queued, "subscription event");
        i.wake.notify_one();
        Ok(())
    }

    /// Insert one delivery unless this (event, recipient, format) exists;
    /// returns 1 when inserted. A number that replied STOP gets it recorded
    /// as `opted_out`; without a gateway it is recorded as `no_gateway`.
    pub(crate) async fn enqueue(
        &self,
        share_id: &str,
        event: &str,
        recipient: &str,
        format: &str,
    ) -> Result<u64> {
        let store = &self.inner.store;
        let (status, note) = if number_opted_out(store, recipient).await? {
            tracing::info!(to = %recipient, event = %event, "recipient replied STOP; delivery recorded as opted_out");
            (DeliveryStatus::OptedOut, Some(OPTED_OUT_NOTE))
        } else if self.inner.gateway {
            (DeliveryStatus::Pending, None)
        } else {
            let why = "no SMS gateway is configured ([sms] backend); not sent";
            (DeliveryStatus::NoGateway, Some(why))
        };
        let delivery = NewDelivery {
            share_id,
            event,
            recipient,
            format,
            status,
            note,
            now: now_ms(),
        };
        Ok(store.enqueue_delivery(&delivery).await?)
    }
}

#[cfg(test)]
mod tests {
    use sharecast_store::{DeliveryUpdate, Store};

    use super::*;
    use crate::testing::fixture;

    async fn statuses(store: &Store) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for event in ["live:ab01", "vod:ab01"] {
            let Some(share) = store.share_by_event(event).await.unwrap() else {
                continue;
            };
            for d in store.deliveries_of(&share.id).await.unwrap() {
                out.push((d.event, d.recipient, d.status.as_str().to_string()));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_repeated_event_reaches_each_subscriber_once_and_restarts_never_resend() {
        let f = fixture().await;
        let (store, svc, device) = (&f.store, &f.svc, &f.device);
        for n in ["+1555001", "+1555002"] {
            store
                .upsert_subscription(&device.id, n, "tlv", 0)
                .await
                .unwrap();
        }
        store.set_opt_out("1555002", true, 0).await.unwrap();
        let attrs = VideoAttributes {
            id: "ab01".into(),
            ..VideoAttributes::default()
        };
        for _ in 0..3 {
            svc.on_event("live", &device.id, attrs.clone())
                .await
                .unwrap();
        }
        svc.on_event("vod", &device.id, attrs.clone())
            .await
            .unwrap();
        let got = statuses(store).await;
        assert_eq!(
            got,
            vec![
                ("live:ab01".into(), "+1555001".into(), "no_gateway".into()),
                ("vod:ab01".into(), "+1555001".into(), "no_gateway".into()),
            ],
            "one delivery per (event, recipient); opted-out numbers get none"
        );
        let shares = store.shares_of(&device.id, 10).await.unwrap();
        assert_eq!(shares.len(), 2, "one share per event");

        // A delivery caught mid-send by a crash is not retried.
        for share in &shares {
            for d in store.deliveries_of(&share.id).await.unwrap() {
                let update = DeliveryUpdate::default();
                store
                    .set_delivery_status(d.id, DeliveryStatus::Sending, update)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(store.recover_interrupted_deliveries().await.unwrap(), 2);
        assert!(statuses(store).await.iter().all(|d| d.2 == "unknown"));
    }
}
