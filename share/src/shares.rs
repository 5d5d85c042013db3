//! Shares: links `/s/{token}` to one asset (a live session or a VOD), made
//! by the device that recorded it, listed, revoked; public shares open the
//! live stream to viewers without a playback token until they expire or
//! are revoked ([`PlaybackTokens`] is told). Also the data of a share page
//! and the playback tokens a device asks for its own live session.

use std::path::PathBuf;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::ShareFormat;
use sharecast_store::{now_ms, Asset, AssetState, Delivery, Device, ShareRecord, Store};
use sharecast_tokens::{new_id, random_hex, valid_id, PlaybackTokens};

use crate::delivery::{self, DeliveryMetrics};
use crate::error::{Error, Result};
use crate::kannel::{Kannel, SmsConfig};
use crate::number::normalize_number;

/// Share settings (`[share]` in the configuration file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShareConfig {
    /// Lifetime of a share link when the request gives none, seconds.
    /// Default 604800 (7 days).
    pub default_ttl_s: u64,
    /// Longest lifetime a request may ask for, seconds. Default 2592000
    /// (30 days).
    pub max_ttl_s: u64,
    /// Most recipients in one share request. Default 50.
    pub max_recipients: usize,
    /// Format used for subscribers who did not choose one. Default `tlv`.
    pub subscription_format: String,
    /// Folder with the front-end packages (`npm install` there); the share
    /// page loads `node_modules/hls.js/dist/hls.min.js` from it at
    /// `/assets/hls.js`. Default `web`.
    pub web_dir: PathBuf,
    /// Path of a live stream's HLS playlist; `{id}` is the session id.
    /// Default `/live/{id}/index.m3u8`.
    pub hls_path: String,
}

impl Default for ShareConfig {
    fn default() -> Self {
        Self {
            default_ttl_s: 7 * 24 * 3600,
            max_ttl_s: 30 * 24 * 3600,
            max_recipients: 50,
            subscription_format: "tlv".into(),
            web_dir: PathBuf::from("web"),
            hls_path: "/live/{id}/index.m3u8".into(),
        }
    }
}

/// A share link.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Share {
    /// Share id.
    pub id: String,
    /// The shared asset (session) id.
    pub asset_id: String,
    /// Owner device.
    pub device_id: String,
    /// `vod` or `live`: what the asset was when shared.
    pub kind: String,
    /// The share page URL (carries the token).
    pub url: String,
    /// `live:{asset}` or `vod:{asset}` for subscription events.
    pub event: Option<String>,
    /// Creation time, Unix ms.
    pub created_unix_ms: i64,
    /// Expiry, Unix ms (none: never).
    pub expires_unix_ms: Option<i64>,
    /// When it was revoked, Unix ms.
    pub revoked_unix_ms: Option<i64>,
    /// A public share opens the live stream to viewers without a playback
    /// token.
    pub public: bool,
}

/// A share as kept: the link, its token and the attributes it shares.
pub(crate) struct ShareRow {
    pub(crate) share: Share,
    pub(crate) attributes: VideoAttributes,
}

impl ShareRow {
    /// The record with its link on the server at `public`.
    pub(crate) fn new(r: ShareRecord, public: &str) -> ShareRow {
        ShareRow {
            share: Share {
                url: format!("{public}/s/{}", r.token),
                id: r.id,
                asset_id: r.asset_id,
                device_id: r.device_id,
                kind: r.kind,
                event: r.event_key,
                created_unix_ms: r.created_ms,
                expires_unix_ms: r.expires_ms,
                public: r.public,
                revoked_unix_ms: r.revoked_ms,
            },
            attributes: r.attributes,
        }
    }

    /// Whether it still opens: neither revoked nor expired at `now`.
    pub(crate) fn open_at(&self, now: i64) -> bool {
        self.share.revoked_unix_ms.is_none() && self.share.expires_unix_ms.is_none_or(|e| e > now)
    }
}

/// A request to share an asset.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewShare {
    /// The asset (a session of the calling device).
    pub asset_id: String,
    /// Numbers to send share messages to (may be empty: a link only).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Message formats; default `["tlv"]`.
    pub formats: Option<Vec<String>>,
    /// Lifetime, seconds; default `share.default_ttl_s`.
    pub ttl_s: Option<u64>,
    /// Whether it opens the live stream to viewers without a token.
    #[serde(default)]
    pub public: bool,
}

/// A share just made.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct CreatedShare {
    /// The share.
    pub share: Share,
    /// The token of its link.
    pub token: String,
    /// One delivery per recipient and format.
    pub deliveries: Vec<Delivery>,
}

/// A playback token for a live session, with the URLs that carry it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Serialize)]
pub struct LivePlayback {
    /// The token.
    pub token: String,
    /// When it stops opening the stream, Unix ms.
    pub expires_unix_ms: i64,
    /// Whether viewers need a token at all (tokens on and not public).
    pub required: bool,
    /// RTSP URL with the token.
    pub rtsp_url: String,
    /// HLS playlist URL with the token.
    pub hls_url: String,
    /// Player page URL with the token.
    pub watch_url: String,
}

/// What a share page shows.
#[derive(Debug)]
pub struct SharePage {
    /// The video's title (or who sent it).
    pub title: String,
    /// The asset id.
    pub asset_id: String,
    /// Whether the asset is still recording: the page plays HLS.
    pub live: bool,
    /// The page's own URL.
    pub page_url: String,
    /// The poster image URL (with a playback token while live).
    pub poster_url: String,
    /// Path of the VOD file on this server.
    pub vod_path: String,
    /// Path of the live HLS playlist (with a playback token if needed).
    pub hls_path: String,
    /// The public base URL, no trailing slash.
    pub public_url: String,
    /// Width and height as shown (turned by the display rotation); zero
    /// when unknown.
    pub display_size: (u32, u32),
    /// Where playback starts, seconds.
    pub start_s: f64,
}

/// A share token: 128 random bits, 32 lowercase hex digits.
pub(crate) fn new_token() -> String {
    random_hex(16)
}

fn valid_token(t: &str) -> bool {
    t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The share service: shares, the communication proxy, subscriptions and
/// SMS replies, over the store and the delivery queue. Cheap to clone.
#[derive(Clone)]
pub struct ShareService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) cfg: ShareConfig,
    pub(crate) public_http: String,
    live_url_template: String,
    tokens: PlaybackTokens,
    pub(crate) gateway: bool,
    pub(crate) wake: Arc<tokio::sync::Notify>,
    pub(crate) metrics: Arc<DeliveryMetrics>,
}

impl ShareService {
    /// Recover the queue and start the delivery worker when a gateway is
    /// configured. `live_url_template` is the RTSP URL of a session with
    /// `{id}` for its id; live URLs handed out carry a playback token from
    /// `tokens` unless the share is public. Public shares that are neither
    /// revoked nor expired open their streams again.
    pub async fn start(
        store: Store,
        cfg: ShareConfig,
        sms: SmsConfig,
        public_http: String,
        live_url_template: String,
        tokens: PlaybackTokens,
    ) -> anyhow::Result<ShareService> {
        for (asset, expires) in store.active_public_shares(None, now_ms()).await? {
            tokens.set_public(&asset, expires);
        }
        let interrupted = store.recover_interrupted_deliveries().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "deliveries were interrupted mid-send by a restart; marked unknown, not retried"
            );
        }
        let gateway = match sms.backend.as_str() {
            "none" | "" => false,
            "kannel" => true,
            other => anyhow::bail!("sms.backend {other:?}: expected \"none\" or \"kannel\""),
        };
        cfg.subscription_format
            .parse::<ShareFormat>()
            .map_err(|e| anyhow::anyhow!("share.subscription_format: {e}"))?;
        let inner = Inner {
            store,
            cfg,
            public_http: public_http.trim_end_matches('/').to_string(),
            live_url_template,
            tokens,
            gateway,
            wake: Arc::new(tokio::sync::Notify::new()),
            metrics: Arc::new(DeliveryMetrics::default()),
        };
        let svc = ShareService {
            inner: Arc::new(inner),
        };
        if gateway {
            svc.start_worker(sms)?;
        } else {
            tracing::info!(
                "no SMS gateway configured: share deliveries are recorded as no_gateway"
            );
        }
        Ok(svc)
    }

    fn start_worker(&self, sms: SmsConfig) -> anyhow::Result<()> {
        let kannel = Kannel::new(&sms, &self.inner.public_http)?;
        tracing::info!(sendsms = %sms.sendsms_url, ppg = %sms.ppg_url, "share delivery through Kannel");
        let i = &self.inner;
        tokio::spawn(delivery::run_worker(
            i.store.clone(),
            kannel,
            sms,
            i.public_http.clone(),
            i.wake.clone(),
            i.metrics.clone(),
        ));
        Ok(())
    }

    /// The settings in use.
    pub fn config(&self) -> &ShareConfig {
        &self.inner.cfg
    }

    /// Registers the delivery counters (`share_…`, under the registry's
    /// prefix).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.inner.metrics.clone()));
    }

    /// Share an asset of `device`: the link, and a delivery queued per
    /// recipient and format. Errors: `bad_id`, `too_many_recipients`,
    /// `bad_recipient`, `unknown_format`, `bad_ttl`, `unknown_asset`,
    /// `not_owner`, `asset_failed`.
    pub async fn create(&self, device: &Device, req: NewShare) -> Result<CreatedShare> {
        if !valid_id(&req.asset_id) {
            return Err(Error::BadId("asset ids are hexadecimal"));
        }
        let recipients = self.recipients(&req.recipients)?;
        let (names, formats) = formats(req.formats, recipients.is_empty())?;
        let expires = self.expiry(req.ttl_s)?;
        let asset = self.owned_asset(device, &req.asset_id).await?;
        let (kind, attributes) = self.snapshot(&asset, device, req.public, expires)?;
        let id = new_id();
        let token = new_token();
        let record = ShareRecord {
            id: id.clone(),
            token: token.clone(),
            asset_id: asset.id.clone(),
            device_id: device.id.clone(),
            kind: kind.to_string(),
            event_key: None,
            attributes,
            created_ms: now_ms(),
            expires_ms: expires,
            revoked_ms: None,
            public: req.public,
        };
        let store = &self.inner.store;
        store.insert_share(&record).await?;
        let event = format!("share:{id}");
        for r in &recipients {
            for f in &formats {
                self.enqueue(&id, &event, r, f.name()).await?;
            }
        }
        self.inner.wake.notify_one();
        tracing::info!(share = %id, asset = %asset.id, recipients = recipients.len(), formats = %names.join(","), "share created");
        let share = self.share_row(&id).await?.share;
        let deliveries = store.deliveries_of(&id).await?;
        Ok(CreatedShare {
            share,
            token,
            deliveries,
        })
    }

    /// The recipients normalised, each once.
    fn recipients(&self, given: &[String]) -> Result<Vec<String>> {
        let max = self.inner.cfg.max_recipients;
        if given.len() > max {
            return Err(Error::TooManyRecipients {
                given: given.len(),
                max,
            });
        }
        let mut out: Vec<String> = Vec::new();
        for r in given {
            let n = normalize_number(r).ok_or_else(|| {
                Error::BadRecipient(format!(
                    "{r:?} is not a phone number (optional +, 3 to 20 digits)"
                ))
            })?;
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// When a share asked to live `ttl_s` (or the default) expires.
    fn expiry(&self, ttl_s: Option<u64>) -> Result<Option<i64>> {
        let cfg = &self.inner.cfg;
        let ttl = ttl_s.unwrap_or(cfg.default_ttl_s);
        if ttl_s.is_some() && (ttl == 0 || (cfg.max_ttl_s > 0 && ttl > cfg.max_ttl_s)) {
            return Err(Error::BadTtl { max: cfg.max_ttl_s });
        }
        Ok((ttl > 0).then(|| now_ms() + (ttl as i64) * 1000))
    }

    /// What a share of `asset` is (`vod` or `live`) and the attributes it
    /// shares. A public share opens the stream first, so that the live URL
    /// made here needs no token.
    fn snapshot(
        &self,
        asset: &Asset,
        device: &Device,
        public: bool,
        expires: Option<i64>,
    ) -> Result<(&'static str, VideoAttributes)> {
        let vod = match (asset.state, &asset.attributes) {
            (AssetState::Ready, Some(a)) => Some(a.clone()),
            (AssetState::Recording, _) => None,
            (state, _) => {
                return Err(Error::AssetFailed {
                    id: asset.id.clone(),
                    state: state.as_str(),
                })
            }
        };
        let tokens = &self.inner.tokens;
        if public {
            tokens.set_public(&asset.id, expires);
        }
        if let Some(a) = vod {
            return Ok(("vod", a));
        }
        let url = self.inner.live_url_template.replace("{id}", &asset.id);
        let attributes = VideoAttributes {
            id: asset.id.clone(),
            title: asset.title.clone(),
            sender: Some(device.name.clone()),
            live_urls: vec![format!("{url}{}", tokens.query(&asset.id))],
            ..VideoAttributes::default()
        };
        Ok(("live", attributes))
    }

    /// The device's shares, newest first (`limit` 1 to 500, default 50).
    pub async fn list(&self, device: &Device, limit: Option<i64>) -> Result<Vec<Share>> {
        let limit = limit.unwrap_or(50).clamp(1, 500);
        let rows = self.inner.store.shares_of(&device.id, limit).await?;
        let public = &self.inner.public_http;
        Ok(rows
            .into_iter()
            .map(|r| ShareRow::new(r, public).share)
            .collect())
    }

    /// One of the device's shares: `bad_id`, `unknown_share`.
    pub async fn get(&self, device: &Device, id: &str) -> Result<Share> {
        Ok(self.owned_share(device, id).await?.share)
    }

    /// The deliveries of one of the device's shares.
    pub async fn deliveries(&self, device: &Device, id: &str) -> Result<Vec<Delivery>> {
        self.owned_share(device, id).await?;
        Ok(self.inner.store.deliveries_of(id).await?)
    }

    /// Revoke one of the device's shares: its page answers 410, unsent
    /// messages are not sent, and its live stream stays public only while
    /// another public share of it does.
    pub async fn revoke(&self, device: &Device, id: &str) -> Result<Share> {
        self.owned_share(device, id).await?;
        let store = &self.inner.store;
        store.revoke_share(id, now_ms()).await?;
        store
            .fail_pending_deliveries(id, "share revoked before sending")
            .await?;
        let s = self.owned_share(device, id).await?.share;
        if s.public {
            let others = store
                .active_public_shares(Some(&s.asset_id), now_ms())
                .await?;
            let tokens = &self.inner.tokens;
            tokens.set_private(&s.asset_id);
            for (asset, expires) in others {
                tokens.set_public(&asset, expires);
            }
        }
        Ok(s)
    }

    /// A playback token for a live session, for the device that records it
    /// (`device`), or for the admin (`None`), who watches any session.
    /// Errors: `bad_id`, `unknown_asset`, `not_owner`, `not_live`.
    pub async fn playback_token(&self, device: Option<&Device>, id: &str) -> Result<LivePlayback> {
        let asset = match device {
            Some(device) => self.owned_asset(device, id).await?,
            None => self.any_asset(id).await?,
        };
        if asset.state != AssetState::Recording {
            return Err(Error::NotLive {
                id: id.to_string(),
                state: asset.state.as_str(),
            });
        }
        let (i, tokens) = (&self.inner, &self.inner.tokens);
        let issued = tokens.issue(id);
        let q = format!("?token={}", issued.token);
        let public = &i.public_http;
        Ok(LivePlayback {
            required: tokens.required() && !tokens.is_public(id),
            rtsp_url: format!("{}{q}", i.live_url_template.replace("{id}", id)),
            hls_url: format!("{public}{}{q}", i.cfg.hls_path.replace("{id}", id)),
            watch_url: format!("{public}/watch/{id}{q}"),
            token: issued.token,
            expires_unix_ms: issued.expires_unix_ms,
        })
    }

    /// What the share page of `token` shows, starting at `t` seconds.
    /// Errors: `unknown_share`, `share_revoked`, `share_expired`,
    /// `bad_time`, `asset_unavailable`.
    pub async fn page(&self, token: &str, t: Option<&str>) -> Result<SharePage> {
        let unknown = || {
            Error::UnknownShare(
                "This link does not lead to any shared video. Check that it was copied in full."
                    .into(),
            )
        };
        if !valid_token(token) {
            return Err(unknown());
        }
        let (i, now) = (&self.inner, now_ms());
        let s = match i.store.share_by_token(token).await? {
            Some(r) => ShareRow::new(r, &i.public_http),
            None => return Err(unknown()),
        };
        if s.share.revoked_unix_ms.is_some() {
            return Err(Error::ShareRevoked);
        }
        if let Some(e) = s.share.expires_unix_ms.filter(|e| *e <= now) {
            return Err(Error::ShareExpired {
                minutes_ago: (now - e) / 60_000,
            });
        }
        let start_s = start_seconds(t)?;
        let (attrs, live) = match i.store.asset(&s.share.asset_id).await? {
            Some(a) if a.state == AssetState::Ready => {
                (a.attributes.unwrap_or(s.attributes), false)
            }
            Some(a) if a.state == AssetState::Recording => (s.attributes, true),
            _ => return Err(Error::AssetUnavailable),
        };
        Ok(self.page_of(&s.share, token, &attrs, live, start_s))
    }

    fn page_of(
        &self,
        share: &Share,
        token: &str,
        attrs: &VideoAttributes,
        live: bool,
        start_s: f64,
    ) -> SharePage {
        let i = &self.inner;
        let (id, public) = (&share.asset_id, &i.public_http);
        // A live recording's stream and poster open with a playback token.
        let token_query = if live {
            i.tokens.query(id)
        } else {
            String::new()
        };
        let title = attrs
            .title
            .clone()
            .or_else(|| attrs.sender.as_ref().map(|n| format!("Video from {n}")))
            .unwrap_or_else(|| "Shared video".into());
        SharePage {
            title,
            asset_id: id.clone(),
            live,
            page_url: format!("{public}/s/{token}"),
            poster_url: format!("{public}/api/v1/assets/{id}/poster.jpg{token_query}"),
            vod_path: format!("/vod/{id}/source.mp4"),
            hls_path: format!("{}{token_query}", i.cfg.hls_path.replace("{id}", id)),
            public_url: public.clone(),
            display_size: attrs.display_size(),
            start_s,
        }
    }

    /// An asset of this device: `bad_id`, `unknown_asset`, `not_owner`.
    async fn owned_asset(&self, device: &Device, id: &str) -> Result<Asset> {
        let asset = self.any_asset(id).await?;
        if asset.device_id != device.id {
            return Err(Error::NotOwner(id.to_string()));
        }
        Ok(asset)
    }

    /// Any asset: `bad_id`, `unknown_asset`.
    async fn any_asset(&self, id: &str) -> Result<Asset> {
        if !valid_id(id) {
            return Err(Error::BadId("asset ids are hexadecimal"));
        }
        self.inner
            .store
            .asset(id)
            .await?
            .ok_or_else(|| Error::UnknownAsset(id.to_string()))
    }

    /// A share of this device: `bad_id`, `unknown_share`.
    async fn owned_share(&self, device: &Device, id: &str) -> Result<ShareRow> {
        if !valid_id(id) {
            return Err(Error::BadId("share ids are hexadecimal"));
        }
        match self.inner.store.share(id).await? {
            Some(r) if r.device_id == device.id => Ok(ShareRow::new(r, &self.inner.public_http)),
            _ => Err(Error::UnknownShare(format!("no share {id} of this device"))),
        }
    }

    /// A share that was just stored.
    pub(crate) async fn share_row(&self, id: &str) -> Result<ShareRow> {
        let row = self.inner.store.share(id).await?;
        let row = row.ok_or_else(|| anyhow::anyhow!("share {id} vanished"))?;
        Ok(ShareRow::new(row, &self.inner.public_http))
    }
}

/// The formats asked for (default `tlv`), each once, with their names as
/// given; none at all is refused when there are recipients.
fn formats(
    names: Option<Vec<String>>,
    no_recipients: bool,
) -> Result<(Vec<String>, Vec<ShareFormat>)> {
    let names = names.unwrap_or_else(|| vec!["tlv".into()]);
    if names.is_empty() && !no_recipients {
        return Err(Error::UnknownFormat("formats is empty".into()));
    }
    let mut formats: Vec<ShareFormat> = Vec::new();
    for n in &names {
        let f: ShareFormat = n.parse().map_err(Error::UnknownFormat)?;
        if !formats.contains(&f) {
            formats.push(f);
        }
    }
    Ok((names, formats))
}

/// A share page's start time: `t` seconds (`42` or `42s`), 0 without.
fn start_seconds(t: Option<&str>) -> Result<f64> {
    match t {
        None | Some("") => Ok(0.0),
        Some(t) => match t.trim_end_matches('s').parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
            _ => Err(Error::BadTime),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fixture, start};

    #[test]
    fn tokens_carry_128_random_bits() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 32);
        assert!(valid_token(&a));
        assert_ne!(a, b);
        assert!(!valid_token("ABCDEF0123456789abcdef0123456789"));
        assert!(!valid_token("abc"));
    }

    fn share_of(asset: &str, device: &str, public: bool, expires: Option<i64>) -> ShareRecord {
        ShareRecord {
            id: new_id(),
            token: new_token(),
            asset_id: asset.into(),
            device_id: device.into(),
            kind: "live".into(),
            event_key: None,
            attributes: VideoAttributes::default(),
            created_ms: 0,
            expires_ms: expires,
            revoked_ms: None,
            public,
        }
    }

    fn req(asset: &str, public: bool, ttl_s: Option<u64>) -> NewShare {
        NewShare {
            asset_id: asset.into(),
            recipients: vec!["+1 555-0001".into(), "+15550001".into()],
            formats: Some(vec!["tlv".into(), "wap-si".into(), "tlv".into()]),
            ttl_s,
            public,
        }
    }

    /// A public share opens the live stream until it expires: its expiry
    /// is the one the playback tokens get; revoking it closes the stream
    /// unless another public share of it is open.
    #[tokio::test]
    async fn public_shares_open_the_stream_until_revoked_or_expired() {
        let f = fixture().await;
        let asset = new_id();
        f.store
            .asset_recording(&asset, &f.device.id, Some("t"), 0)
            .await
            .unwrap();
        let private = f
            .svc
            .create(&f.device, req(&asset, false, None))
            .await
            .unwrap();
        assert_eq!(private.share.kind, "live");
        assert_eq!(private.deliveries.len(), 2, "one number, two formats");
        assert!(f.tokens.public_until(&asset).is_none());

        let first = f
            .svc
            .create(&f.device, req(&asset, true, Some(60)))
            .await
            .unwrap();
        let until = first.share.expires_unix_ms;
        assert!(until.is_some());
        assert_eq!(f.tokens.public_until(&asset), Some(until));
        let second = f
            .svc
            .create(&f.device, req(&asset, true, Some(120)))
            .await
            .unwrap();
        let later = second.share.expires_unix_ms;
        assert_eq!(f.tokens.public_until(&asset), Some(later));

        let revoked = f.svc.revoke(&f.device, &second.share.id).await.unwrap();
        assert!(revoked.revoked_unix_ms.is_some());
        assert_eq!(
            f.tokens.public_until(&asset),
            Some(until),
            "the first still opens it"
        );
        let deliveries = f.svc.deliveries(&f.device, &second.share.id).await.unwrap();
        assert!(deliveries.iter().all(|d| d.status.as_str() == "no_gateway"));
        f.svc.revoke(&f.device, &first.share.id).await.unwrap();
        assert!(f.tokens.public_until(&asset).is_none());
        let page = f.svc.page(&second.token, None).await.unwrap_err();
        assert_eq!(page.code(), "share_revoked");
    }

    /// At start, public shares that are neither revoked nor expired open
    /// their streams again; expired ones do not, and their pages say so.
    #[tokio::test]
    async fn a_restart_reopens_only_unexpired_public_shares() {
        let f = fixture().await;
        let (open, expired) = (new_id(), new_id());
        let later = now_ms() + 60_000;
        let shares = [
            share_of(&open, &f.device.id, true, Some(later)),
            share_of(&expired, &f.device.id, true, Some(now_ms() - 120_000)),
        ];
        for s in &shares {
            f.store.insert_share(s).await.unwrap();
        }
        let tokens = PlaybackTokens::load(f.dir.path(), true, 3600).unwrap();
        let svc = start(&f.store, &tokens).await;
        assert_eq!(tokens.public_until(&open), Some(Some(later)));
        assert!(tokens.public_until(&expired).is_none());
        let e = svc.page(&shares[1].token, None).await.unwrap_err();
        assert!(matches!(e, Error::ShareExpired { minutes_ago: 2 }), "{e}");
        let e = svc.page(&new_token(), None).await.unwrap_err();
        assert_eq!(e.code(), "unknown_share");
    }

    #[tokio::test]
    async fn bad_share_requests_are_refused_with_their_codes() {
        let f = fixture().await;
        let (mine, failed, theirs) = (new_id(), new_id(), new_id());
        let (other, _) = f.store.add_device("other").await.unwrap();
        for (a, d) in [
            (&mine, &f.device.id),
            (&failed, &f.device.id),
            (&theirs, &other.id),
        ] {
            f.store.asset_recording(a, d, None, 0).await.unwrap();
        }
        f.store.asset_failed(&failed, "broken").await.unwrap();
        let with = |change: fn(&mut NewShare)| {
            let mut r = req(&mine, false, None);
            change(&mut r);
            r
        };
        let cases = [
            (with(|r| r.asset_id = "../x".into()), "bad_id"),
            (
                with(|r| r.recipients = vec!["1".into(); 51]),
                "too_many_recipients",
            ),
            (with(|r| r.recipients = vec!["abc".into()]), "bad_recipient"),
            (with(|r| r.formats = Some(vec![])), "unknown_format"),
            (
                with(|r| r.formats = Some(vec!["mms".into()])),
                "unknown_format",
            ),
            (with(|r| r.ttl_s = Some(0)), "bad_ttl"),
            (with(|r| r.asset_id = new_id()), "unknown_asset"),
            (
                NewShare {
                    asset_id: theirs.clone(),
                    ..with(|_| {})
                },
                "not_owner",
            ),
            (
                NewShare {
                    asset_id: failed.clone(),
                    ..with(|_| {})
                },
                "asset_failed",
            ),
        ];
        for (r, code) in cases {
            let e = f.svc.create(&f.device, r).await.unwrap_err();
            assert_eq!(e.code(), code, "{e}");
        }
        assert!(f.svc.list(&f.device, None).await.unwrap().is_empty());
        let e = f.svc.get(&other, &new_id()).await.unwrap_err();
        assert_eq!(e.code(), "unknown_share");
        let e = f.svc.playback_token(Some(&other), &mine).await.unwrap_err();
        assert_eq!(e.code(), "not_owner");
        let t = f.svc.playback_token(None, &mine).await.unwrap();
        assert!(t.required && t.hls_url.ends_with(&format!("?token={}", t.token)));
        let e = f.svc.playback_token(None, &failed).await.unwrap_err();
        assert_eq!(e.code(), "not_live");
    }
}
