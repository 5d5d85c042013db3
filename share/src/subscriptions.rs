//! Subscriptions of recipient numbers to a device's videos, and the SMS
//! replies of recipients: STOP opts a number out of every message of every
//! device, START opts it back in. Only the recipient can undo its STOP.

use serde::Deserialize;
use sharecast_formats::share::ShareFormat;
use sharecast_store::{now_ms, Device, Subscription, SubscriptionStatus};

use crate::delivery::number_opted_out;
use crate::error::{Error, Result};
use crate::number::{digits, normalize_number};
use crate::shares::ShareService;

/// A request to subscribe a number to the calling device's videos.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// The recipient's number.
    pub recipient: String,
    /// Message format; default `share.subscription_format`.
    pub format: Option<String>,
}

/// A subscription as stored after a subscribe request.
#[derive(Debug)]
pub struct Subscribed {
    /// The subscription.
    pub subscription: Subscription,
    /// Whether it is new (rather than updated).
    pub created: bool,
}

/// The words of a reply SMS that opt a number out.
const STOP_WORDS: [&str; 6] = ["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"];
/// The words that opt it back in.
const START_WORDS: [&str; 3] = ["START", "UNSTOP", "YES"];

impl ShareService {
    /// Subscribe a number to the device's live and VOD events (or change its
    /// format). Errors: `bad_recipient`, `unknown_format`, `opted_out`.
    pub async fn subscribe(&self, device: &Device, req: NewSubscription) -> Result<Subscribed> {
        let recipient = normalize_number(&req.recipient).ok_or_else(|| {
            Error::BadRecipient(format!(
                "{:?} is not a phone number (optional +, 3 to 20 digits)",
                req.recipient
            ))
        })?;
        let format: ShareFormat = req
            .format
            .as_deref()
            .unwrap_or(&self.inner.cfg.subscription_format)
            .parse()
            .map_err(Error::UnknownFormat)?;
        let store = &self.inner.store;
        let existing = store.subscription(&device.id, &recipient).await?;
        let refused = existing
            .as_ref()
            .is_some_and(|s| s.status == SubscriptionStatus::OptedOut);
        if refused || number_opted_out(store, &recipient).await? {
            return Err(Error::OptedOut(recipient));
        }
        store
            .upsert_subscription(&device.id, &recipient, format.name(), now_ms())
            .await?;
        let subscription = store
            .subscription(&device.id, &recipient)
            .await?
            .ok_or_else(|| anyhow::anyhow!("subscription of {recipient} vanished"))?;
        Ok(Subscribed {
            subscription,
            created: existing.is_none(),
        })
    }

    /// The device's subscribers, oldest first.
    pub async fn subscriptions(&self, device: &Device) -> Result<Vec<Subscription>> {
        Ok(self.inner.store.subscriptions_of(&device.id).await?)
    }

    /// The device removes a subscriber. Errors: `bad_recipient`,
    /// `unknown_subscription`.
    pub async fn unsubscribe(&self, device: &Device, recipient: &str) -> Result<Subscription> {
        let recipient = normalize_number(recipient)
            .ok_or_else(|| Error::BadRecipient(format!("{recipient:?} is not a phone number")))?;
        let store = &self.inner.store;
        store
            .remove_subscription(&device.id, &recipient, now_ms())
            .await?;
        store
            .subscription(&device.id, &recipient)
            .await?
            .ok_or(Error::UnknownSubscription(recipient))
    }

    /// An SMS a recipient sent (as the gateway hands it over): STOP and its
    /// synonyms opt the sender out of every message (shares and
    /// subscriptions, of every device), START opts it back in; the answer
    /// is the reply text. Error: `bad_recipient`.
    pub async fn sms_reply(&self, from: Option<&str>, text: Option<&str>) -> Result<&'static str> {
        let from = from
            .and_then(normalize_number)
            .ok_or_else(|| Error::BadRecipient("from must be the sender's phone number".into()))?;
        let word = text
            .unwrap_or("")
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let (stop, reply) = if STOP_WORDS.contains(&word.as_str()) {
            (
                true,
                "Sharecast: you will get no more video messages. Reply START to get them again.",
            )
        } else if START_WORDS.contains(&word.as_str()) {
            (
                false,
                "Sharecast: you will get video messages again. Reply STOP to stop.",
            )
        } else {
            return Ok("Sharecast: reply STOP to stop video messages, START to get them again.");
        };
        let changed = self
            .inner
            .store
            .set_opt_out(&digits(&from), stop, now_ms())
            .await?;
        tracing::info!(from = %from, word = %word, changed, "inbound SMS keyword");
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;

    fn sub(recipient: &str, format: Option<&str>) -> NewSubscription {
        NewSubscription {
            recipient: recipient.into(),
            format: format.map(str::to_string),
        }
    }

    /// A subscriber that replies STOP is opted out of every device and
    /// cannot be subscribed again by a device; its START opts it back in.
    #[tokio::test]
    async fn stop_opts_a_subscriber_out_until_it_replies_start() {
        let f = fixture().await;
        let (svc, device) = (&f.svc, &f.device);
        let s = svc
            .subscribe(device, sub("+1 555 0001", None))
            .await
            .unwrap();
        assert!(s.created);
        assert_eq!(
            (
                s.subscription.recipient.as_str(),
                s.subscription.format.as_str()
            ),
            ("+15550001", "tlv")
        );
        let s = svc
            .subscribe(device, sub("+15550001", Some("xml")))
            .await
            .unwrap();
        assert!(!s.created, "an update");
        assert_eq!(s.subscription.format, "xml");

        let reply = svc
            .sms_reply(Some("+15550001"), Some("stop please"))
            .await
            .unwrap();
        assert!(reply.contains("no more video messages"), "{reply}");
        let subs = svc.subscriptions(device).await.unwrap();
        assert_eq!(subs[0].status, SubscriptionStatus::OptedOut);
        let e = svc
            .subscribe(device, sub("+15550001", None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "opted_out");
        // Another device cannot subscribe the number either.
        let (other, _) = f.store.add_device("other").await.unwrap();
        let e = svc
            .subscribe(&other, sub("15550001", None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "opted_out");

        let help = svc
            .sms_reply(Some("+15550001"), Some("hello"))
            .await
            .unwrap();
        assert!(help.contains("reply STOP"), "{help}");
        assert_eq!(
            svc.subscriptions(device).await.unwrap()[0].status,
            SubscriptionStatus::OptedOut
        );
        let reply = svc
            .sms_reply(Some("+15550001"), Some("START"))
            .await
            .unwrap();
        assert!(reply.contains("again"), "{reply}");
        assert_eq!(
            svc.subscriptions(device).await.unwrap()[0].status,
            SubscriptionStatus::Active
        );
        assert!(
            svc.subscribe(&other, sub("15550001", None))
                .await
                .unwrap()
                .created
        );

        let removed = svc.unsubscribe(device, "+15550001").await.unwrap();
        assert_eq!(removed.status, SubscriptionStatus::Removed);
        let codes = [
            svc.unsubscribe(device, "+15559999")
                .await
                .unwrap_err()
                .code(),
            svc.unsubscribe(device, "x").await.unwrap_err().code(),
            svc.sms_reply(None, Some("STOP")).await.unwrap_err().code(),
            svc.subscribe(device, sub("+15550002", Some("mms")))
                .await
                .unwrap_err()
                .code(),
        ];
        assert_eq!(
            codes,
            [
                "unknown_subscription",
                "bad_recipient",
                "bad_recipient",
                "unknown_format"
            ]
        );
    }
}
