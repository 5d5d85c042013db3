//! Shares, deliveries and subscriptions: the HTTP API, the share page
//! `/s/{token}`, and the communication proxy that turns "source went live"
//! and "VOD ready" into share messages for every subscriber. See
//! `docs/http-api.md` ("Shares, deliveries, subscriptions").
//!
//! Tables (created by [`migrate`]): `shares` (one link: token, asset,
//! attributes snapshot, expiry, revocation), `share_deliveries` (the
//! persisted queue, see [`crate::delivery`]) and `share_subscriptions`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::share::ShareFormat;

use crate::access::{AnyCaller, AuthDevice, Caller};
use crate::delivery::{self, now_ms, Delivery, DeliveryMetrics};
use crate::error::{ApiError, ApiPath as Path, ApiQuery as Query, ErrorCodeTag};
use crate::kannel::{Kannel, SmsConfig};
use sharecast_store::{Asset, AssetState, Device, Store};
use sharecast_store::{DeliveryStatus, NewDelivery, ShareRecord, SubscriptionStatus};
use sharecast_tokens::PlaybackTokens;
use sharecast_tokens::{new_id, random_hex, valid_id};

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

struct ShareRow {
    share: Share,
    token: String,
    attributes: VideoAttributes,
}

pub use sharecast_store::Subscription;

/// A share token: 128 random bits, 32 lowercase hex digits.
pub fn new_token() -> String {
    random_hex(16)
}

fn valid_token(t: &str) -> bool {
    t.len() == 32 && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Normalise a phone number: drop spaces, dashes, dots and parentheses;
/// accept an optional leading `+` and 3 to 20 digits.
pub fn normalize_number(s: &str) -> Option<String> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = t.strip_prefix('+').unwrap_or(&t);
    let ok = (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(t)
}

/// A share as shown: the record with its link on this server.
fn view(r: ShareRecord, public: &str) -> ShareRow {
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
        token: r.token,
        attributes: r.attributes,
    }
}

async fn share_by_id(store: &Store, id: &str, public: &str) -> Result<Option<ShareRow>> {
    Ok(store.share(id).await?.map(|r| view(r, public)))
}

/// The attributes a share message carries: the snapshot taken when the
/// share was made, plus the share link, poster and expiry. `None` when the
/// share is gone, revoked or expired.
pub(crate) async fn message_attributes(
    store: &Store,
    share_id: &str,
    public: &str,
) -> Result<Option<VideoAttributes>> {
    let Some(s) = share_by_id(store, share_id, public).await? else {
        return Ok(None);
    };
    if s.share.revoked_unix_ms.is_some() || s.share.expires_unix_ms.is_some_and(|e| e <= now_ms()) {
        return Ok(None);
    }
    let mut a = s.attributes;
    a.share_url = Some(s.share.url.clone());
    // A private live recording's poster needs a playback token: rather than
    // a second copy of the token (and one more SMS part), the message then
    // carries no thumbnail; the share page shows the poster.
    let private_live = s.share.kind == "live" && a.live_urls.iter().any(|u| u.contains("?token="));
    a.thumbnail_url =
        (!private_live).then(|| format!("{public}/api/v1/assets/{}/poster.jpg", s.share.asset_id));
    a.expires_unix = s.share.expires_unix_ms.map(|e| (e / 1000) as u64);
    Ok(Some(a))
}

/// The share service: API, page, and communication proxy.
#[derive(Clone)]
pub struct ShareService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    cfg: ShareConfig,
    sms: SmsConfig,
    public_http: String,
    live_url_template: String,
    tokens: PlaybackTokens,
    gateway: bool,
    wake: Arc<tokio::sync::Notify>,
    metrics: Arc<DeliveryMetrics>,
}

impl ShareService {
    /// Create the tables, recover the queue, and start the delivery worker
    /// when a gateway is configured. `live_url_template` is the RTSP URL of
    /// a session with `{id}` for its id; live URLs handed out carry a
    /// playback token from `tokens` unless the share is public. Public
    /// shares that are neither revoked nor expired open their streams again.
    pub async fn start(
        store: Store,
        cfg: ShareConfig,
        sms: SmsConfig,
        public_http: String,
        live_url_template: String,
        tokens: PlaybackTokens,
    ) -> Result<ShareService> {
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
        let svc = ShareService {
            inner: Arc::new(Inner {
                store: store.clone(),
                cfg,
                sms: sms.clone(),
                public_http: public_http.trim_end_matches('/').to_string(),
                live_url_template,
                tokens,
                gateway,
                wake: Arc::new(tokio::sync::Notify::new()),
                metrics: Arc::new(DeliveryMetrics::default()),
            }),
        };
        if gateway {
            let kannel = Kannel::new(&sms)?;
            tokio::spawn(delivery::run_worker(
                store,
                kannel,
                sms,
                svc.inner.public_http.clone(),
                svc.inner.wake.clone(),
                svc.inner.metrics.clone(),
            ));
            tracing::info!(sendsms = %svc.inner.sms.sendsms_url, ppg = %svc.inner.sms.ppg_url, "share delivery through Kannel");
        } else {
            tracing::info!(
                "no SMS gateway configured: share deliveries are recorded as no_gateway"
            );
        }
        Ok(svc)
    }

    /// Append the delivery counters in Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        self.inner.metrics.render(out);
    }

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

    async fn on_event(&self, kind: &str, device_id: &str, attrs: VideoAttributes) -> Result<()> {
        let store = &self.inner.store;
        let subs = store.active_subscribers(device_id).await?;
        if subs.is_empty() {
            return Ok(());
        }
        let event = format!("{kind}:{}", attrs.id);
        // One share (one link) per event; a repeated event reuses it.
        let now = now_ms();
        let expires = (self.inner.cfg.default_ttl_s > 0)
            .then(|| now + (self.inner.cfg.default_ttl_s as i64) * 1000);
        store
            .insert_share(&ShareRecord {
                id: new_id(),
                token: new_token(),
                asset_id: attrs.id.clone(),
                device_id: device_id.to_string(),
                kind: kind.to_string(),
                event_key: Some(event.clone()),
                attributes: attrs,
                created_ms: now,
                expires_ms: expires,
                revoked_ms: None,
                public: false,
            })
            .await
            .context("creating the event share")?;
        let share = store
            .share_by_event(&event)
            .await?
            .map(|r| view(r, &self.inner.public_http))
            .context("event share vanished")?;
        let mut queued = 0;
        for (recipient, format) in &subs {
            queued += self
                .enqueue(&share.share.id, &event, recipient, format)
                .await?;
        }
        tracing::info!(event = %event, subscribers = subs.len(), queued, "subscription event");
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Insert one delivery unless this (event, recipient, format) exists;
    /// returns 1 when inserted.
    async fn enqueue(
        &self,
        share_id: &str,
        event: &str,
        recipient: &str,
        format: &str,
    ) -> Result<u64> {
        let stopped = delivery::number_opted_out(&self.inner.store, recipient).await?;
        let (status, note) = if stopped {
            tracing::info!(to = %recipient, event = %event, "recipient replied STOP; delivery recorded as opted_out");
            (DeliveryStatus::OptedOut, Some(delivery::OPTED_OUT_NOTE))
        } else if self.inner.gateway {
            (DeliveryStatus::Pending, None)
        } else {
            (
                DeliveryStatus::NoGateway,
                Some("no SMS gateway is configured ([sms] backend); not sent"),
            )
        };
        self.inner
            .store
            .enqueue_delivery(&NewDelivery {
                share_id,
                event,
                recipient,
                format,
                status,
                note,
                now: now_ms(),
            })
            .await
    }

    async fn deliveries(&self, share_id: &str) -> Result<Vec<Delivery>> {
        self.inner.store.deliveries_of(share_id).await
    }

    /// An asset of this device: 400 `bad_id`, 404 `unknown_asset`, 403
    /// `not_owner` otherwise.
    async fn owned_asset(&self, device: &Device, id: &str) -> Result<Asset, ApiError> {
        if !valid_id(id) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_id",
                "asset ids are hexadecimal",
            ));
        }
        let asset = self
            .inner
            .store
            .asset(id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_asset",
                    format!("no asset {id}"),
                )
            })?;
        if asset.device_id != device.id {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_owner",
                format!("asset {id} belongs to another device"),
            ));
        }
        Ok(asset)
    }

    /// Any asset (for the admin): 400 `bad_id`, 404 `unknown_asset`.
    async fn any_asset(&self, id: &str) -> Result<Asset, ApiError> {
        if !valid_id(id) {
            return Err(ApiError::bad_request("bad_id", "asset ids are hexadecimal"));
        }
        self.inner
            .store
            .asset(id)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("unknown_asset", format!("no asset {id}")))
    }

    async fn owned_share(&self, device: &Device, id: &str) -> Result<ShareRow, ApiError> {
        if !valid_id(id) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_id",
                "share ids are hexadecimal",
            ));
        }
        match share_by_id(&self.inner.store, id, &self.inner.public_http)
            .await
            .map_err(ApiError::internal)?
        {
            Some(s) if s.share.device_id == device.id => Ok(s),
            _ => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_share",
                format!("no share {id} of this device"),
            )),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("request body: {e}"),
        )
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateShare {
    asset_id: String,
    #[serde(default)]
    recipients: Vec<String>,
    formats: Option<Vec<String>>,
    ttl_s: Option<u64>,
    #[serde(default)]
    public: bool,
}

pub(crate) async fn create_share(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let req: CreateShare = parse_json(&body)?;
    let cfg = &svc.inner.cfg;
    if !valid_id(&req.asset_id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_id",
            "asset ids are hexadecimal",
        ));
    }
    if req.recipients.len() > cfg.max_recipients {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "too_many_recipients",
            format!(
                "{} recipients; at most {} (share.max_recipients)",
                req.recipients.len(),
                cfg.max_recipients
            ),
        ));
    }
    let mut recipients: Vec<String> = Vec::new();
    for r in &req.recipients {
        let n = normalize_number(r).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_recipient",
                format!("{r:?} is not a phone number (optional +, 3 to 20 digits)"),
            )
        })?;
        if !recipients.contains(&n) {
            recipients.push(n);
        }
    }
    let names = req.formats.unwrap_or_else(|| vec!["tlv".into()]);
    if names.is_empty() && !recipients.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_format",
            "formats is empty",
        ));
    }
    let mut formats: Vec<ShareFormat> = Vec::new();
    for n in &names {
        let f: ShareFormat = n
            .parse()
            .map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, "unknown_format", e))?;
        if !formats.contains(&f) {
            formats.push(f);
        }
    }
    let ttl = req.ttl_s.unwrap_or(cfg.default_ttl_s);
    if req.ttl_s.is_some() && (ttl == 0 || (cfg.max_ttl_s > 0 && ttl > cfg.max_ttl_s)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_ttl",
            format!("ttl_s must be 1 to {} (share.max_ttl_s)", cfg.max_ttl_s),
        ));
    }
    let store = &svc.inner.store;
    let asset = svc.owned_asset(&device, &req.asset_id).await?;
    let now = now_ms();
    let expires = (ttl > 0).then(|| now + (ttl as i64) * 1000);
    if req.public {
        // Before the URLs below are made: a public stream needs no token,
        // until the share expires.
        svc.inner.tokens.set_public(&asset.id, expires);
    }
    let (kind, attributes) = match (asset.state, asset.attributes) {
        (AssetState::Ready, Some(a)) => ("vod", a),
        (AssetState::Recording, _) => (
            "live",
            VideoAttributes {
                id: asset.id.clone(),
                title: asset.title.clone(),
                sender: Some(device.name.clone()),
                live_urls: vec![format!(
                    "{}{}",
                    svc.inner.live_url_template.replace("{id}", &asset.id),
                    svc.inner.tokens.query(&asset.id)
                )],
                ..VideoAttributes::default()
            },
        ),
        (state, _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "asset_failed",
                format!("asset {} is {}: nothing to share", asset.id, state.as_str()),
            ))
        }
    };
    let id = new_id();
    let token = new_token();
    store
        .insert_share(&ShareRecord {
            id: id.clone(),
            token: token.clone(),
            asset_id: asset.id.clone(),
            device_id: device.id.clone(),
            kind: kind.to_string(),
            event_key: None,
            attributes,
            created_ms: now,
            expires_ms: expires,
            revoked_ms: None,
            public: req.public,
        })
        .await
        .map_err(ApiError::internal)?;
    let event = format!("share:{id}");
    for r in &recipients {
        for f in &formats {
            svc.enqueue(&id, &event, r, f.name())
                .await
                .map_err(ApiError::internal)?;
        }
    }
    svc.inner.wake.notify_one();
    tracing::info!(share = %id, asset = %asset.id, recipients = recipients.len(), formats = %names.join(","), "share created");
    let row = share_by_id(store, &id, &svc.inner.public_http)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("share {id} vanished")))?;
    let deliveries = svc.deliveries(&id).await.map_err(ApiError::internal)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "share": row.share,
            "token": row.token,
            "deliveries": deliveries,
        })),
    ))
}

#[derive(Deserialize)]
pub(crate) struct Limit {
    limit: Option<i64>,
}

pub(crate) async fn list_shares(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Query(q): Query<Limit>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = svc
        .inner
        .store
        .shares_of(&device.id, q.limit.unwrap_or(50).clamp(1, 500))
        .await
        .map_err(ApiError::internal)?;
    let shares: Vec<Share> = rows
        .into_iter()
        .map(|r| view(r, &svc.inner.public_http).share)
        .collect();
    Ok(Json(serde_json::json!({ "shares": shares })))
}

pub(crate) async fn get_share(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let s = svc.owned_share(&device, &id).await?;
    let deliveries = svc.deliveries(&id).await.map_err(ApiError::internal)?;
    Ok(Json(
        serde_json::json!({ "share": s.share, "deliveries": deliveries }),
    ))
}

pub(crate) async fn share_deliveries(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    svc.owned_share(&device, &id).await?;
    let deliveries = svc.deliveries(&id).await.map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "deliveries": deliveries })))
}

pub(crate) async fn revoke_share(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    svc.owned_share(&device, &id).await?;
    let store = &svc.inner.store;
    store
        .revoke_share(&id, now_ms())
        .await
        .map_err(ApiError::internal)?;
    // Messages not yet sent are not sent any more.
    store
        .fail_pending_deliveries(&id, "share revoked before sending")
        .await
        .map_err(ApiError::internal)?;
    let s = svc.owned_share(&device, &id).await?;
    if s.share.public {
        // The stream stays public as long as another public share of it does.
        let others = store
            .active_public_shares(Some(&s.share.asset_id), now_ms())
            .await
            .map_err(ApiError::internal)?;
        svc.inner.tokens.set_private(&s.share.asset_id);
        for (asset, expires) in others {
            svc.inner.tokens.set_public(&asset, expires);
        }
    }
    Ok(Json(serde_json::json!({ "share": s.share })))
}

/// `POST /api/v1/live/{id}/playback-tokens`: a playback token for a live
/// session, for the device that records it, with the URLs that carry it.
pub(crate) async fn issue_playback_token(
    State(svc): State<ShareService>,
    AnyCaller(caller): AnyCaller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let asset = match caller {
        Caller::Device(device) => svc.owned_asset(&device, &id).await?,
        // The admin watches any session.
        _ => svc.any_asset(&id).await?,
    };
    if asset.state != AssetState::Recording {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_live",
            format!(
                "asset {id} is {}: its live stream has ended",
                asset.state.as_str()
            ),
        ));
    }
    let tokens = &svc.inner.tokens;
    let issued = tokens.issue(&id);
    let q = format!("?token={}", issued.token);
    let public = &svc.inner.public_http;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "token": issued.token,
            "expires_unix_ms": issued.expires_unix_ms,
            "required": tokens.required() && !tokens.is_public(&id),
            "rtsp_url": format!("{}{q}", svc.inner.live_url_template.replace("{id}", &id)),
            "hls_url": format!("{public}{}{q}", svc.inner.cfg.hls_path.replace("{id}", &id)),
            "watch_url": format!("{public}/watch/{id}{q}"),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Subscribe {
    recipient: String,
    format: Option<String>,
}

async fn subscription(
    store: &Store,
    device_id: &str,
    recipient: &str,
) -> Result<Option<Subscription>> {
    store.subscription(device_id, recipient).await
}

pub(crate) async fn subscribe(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    body: Bytes,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    let req: Subscribe = parse_json(&body)?;
    let recipient = normalize_number(&req.recipient).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_recipient",
            format!(
                "{:?} is not a phone number (optional +, 3 to 20 digits)",
                req.recipient
            ),
        )
    })?;
    let format: ShareFormat = req
        .format
        .as_deref()
        .unwrap_or(&svc.inner.cfg.subscription_format)
        .parse()
        .map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, "unknown_format", e))?;
    let store = &svc.inner.store;
    let existing = subscription(store, &device.id, &recipient)
        .await
        .map_err(ApiError::internal)?;
    let stopped = delivery::number_opted_out(store, &recipient)
        .await
        .map_err(ApiError::internal)?;
    if stopped
        || existing
            .as_ref()
            .is_some_and(|s| s.status == SubscriptionStatus::OptedOut)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "opted_out",
            format!(
                "{recipient} replied STOP; only the recipient can subscribe again (reply START)"
            ),
        ));
    }
    store
        .upsert_subscription(&device.id, &recipient, format.name(), now_ms())
        .await
        .map_err(ApiError::internal)?;
    let s = subscription(store, &device.id, &recipient)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("subscription vanished")))?;
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(s)))
}

pub(crate) async fn list_subscriptions(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
) -> Result<Json<serde_json::Value>, ApiError> {
    let subs = svc
        .inner
        .store
        .subscriptions_of(&device.id)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({ "subscriptions": subs })))
}

pub(crate) async fn unsubscribe(
    State(svc): State<ShareService>,
    AuthDevice(device): AuthDevice,
    Path(recipient): Path<String>,
) -> Result<Json<Subscription>, ApiError> {
    let recipient = normalize_number(&recipient).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_recipient",
            format!("{recipient:?} is not a phone number"),
        )
    })?;
    let store = &svc.inner.store;
    store
        .remove_subscription(&device.id, &recipient, now_ms())
        .await
        .map_err(ApiError::internal)?;
    subscription(store, &device.id, &recipient)
        .await
        .map_err(ApiError::internal)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_subscription",
                format!("{recipient} is not subscribed to this device"),
            )
        })
}

#[derive(Deserialize)]
pub(crate) struct Inbound {
    from: Option<String>,
    text: Option<String>,
    /// Checked by the access policy (`sms_gateway`).
    #[allow(dead_code)]
    key: Option<String>,
}

/// An SMS received by the gateway (Kannel `sms-service` get-url, e.g.
/// `/api/v1/sms/inbound?from=%p&text=%a`). STOP opts the sender out of
/// every message (shares and subscriptions, of every device), START opts
/// back in. The answer is the reply text. Only the gateway calls it: the
/// access policy checks its key (`sms.inbound_key`).
pub(crate) async fn inbound(
    State(svc): State<ShareService>,
    Query(q): Query<Inbound>,
) -> Result<Response, ApiError> {
    let from = q
        .from
        .as_deref()
        .and_then(normalize_number)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_recipient",
                "from must be the sender's phone number",
            )
        })?;
    let word = q
        .text
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let (stop, reply) = match word.as_str() {
        "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" => (
            true,
            "Sharecast: you will get no more video messages. Reply START to get them again.",
        ),
        "START" | "UNSTOP" | "YES" => (
            false,
            "Sharecast: you will get video messages again. Reply STOP to stop.",
        ),
        _ => {
            return Ok((
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Sharecast: reply STOP to stop video messages, START to get them again.",
            )
                .into_response())
        }
    };
    let changed = svc
        .inner
        .store
        .set_opt_out(&delivery::digits(&from), stop, now_ms())
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(from = %from, word = %word, changed, "inbound SMS keyword");
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], reply).into_response())
}

pub(crate) async fn hls_js(State(svc): State<ShareService>) -> Response {
    let path = svc
        .inner
        .cfg
        .web_dir
        .join("node_modules/hls.js/dist/hls.min.js");
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            let mut r = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "hls_js_missing",
                format!(
                    "{} is missing ({e}); run `npm ci` in {} (scripts/setup.sh does)",
                    path.display(),
                    svc.inner.cfg.web_dir.display()
                ),
            )
            .into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            r
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    t: Option<String>,
}

/// Escape text for HTML content and attribute values.
pub(crate) fn html_escape(s: &str) -> String {
    crate::kannel::xml_escape(s)
}

fn message_page(status: StatusCode, code: &'static str, title: &str, text: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t} · Sharecast</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}}</style></head>\
<body><h1>{t}</h1><p id=\"reason\" data-code=\"{code}\">{m}</p></body></html>",
        t = html_escape(title),
        m = html_escape(text),
    );
    let mut r = (status, Html(body)).into_response();
    r.extensions_mut().insert(ErrorCodeTag(code));
    r
}

pub(crate) async fn share_page(
    State(svc): State<ShareService>,
    Path(token): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let not_found = || {
        message_page(
            StatusCode::NOT_FOUND,
            "unknown_share",
            "Share not found",
            "This link does not lead to any shared video. Check that it was copied in full.",
        )
    };
    if !valid_token(&token) {
        return Ok(not_found());
    }
    let public = &svc.inner.public_http;
    let Some(s) = svc
        .inner
        .store
        .share_by_token(&token)
        .await
        .map_err(ApiError::internal)?
        .map(|r| view(r, public))
    else {
        return Ok(not_found());
    };
    if s.share.revoked_unix_ms.is_some() {
        return Ok(message_page(
            StatusCode::GONE,
            "share_revoked",
            "Share revoked",
            "The person who shared this video has withdrawn the link.",
        ));
    }
    if let Some(e) = s.share.expires_unix_ms.filter(|e| *e <= now_ms()) {
        return Ok(message_page(
            StatusCode::GONE,
            "share_expired",
            "Share expired",
            &format!(
                "This link expired {} minutes ago. Ask the sender for a new one.",
                (now_ms() - e) / 60_000
            ),
        ));
    }
    let start_s = match q.t.as_deref() {
        None | Some("") => 0.0,
        Some(t) => match t.trim_end_matches('s').parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v,
            _ => {
                return Ok(message_page(
                    StatusCode::BAD_REQUEST,
                    "bad_time",
                    "Bad start time",
                    "t must be a number of seconds, for example ?t=42",
                ))
            }
        },
    };
    let asset = svc
        .inner
        .store
        .asset(&s.share.asset_id)
        .await
        .map_err(ApiError::internal)?;
    let (attrs, live) = match asset {
        Some(a) if a.state == AssetState::Ready => (a.attributes.unwrap_or(s.attributes), false),
        Some(a) if a.state == AssetState::Recording => (s.attributes, true),
        _ => {
            return Ok(message_page(
                StatusCode::GONE,
                "asset_unavailable",
                "Video unavailable",
                "The recording behind this link failed or was deleted.",
            ))
        }
    };
    let id = &s.share.asset_id;
    let vod_path = format!("/vod/{id}/source.mp4");
    let hls_path = format!(
        "{}{}",
        svc.inner.cfg.hls_path.replace("{id}", id),
        if live {
            svc.inner.tokens.query(id)
        } else {
            String::new()
        }
    );
    let title = attrs
        .title
        .clone()
        .or_else(|| attrs.sender.as_ref().map(|n| format!("Video from {n}")))
        .unwrap_or_else(|| "Shared video".into());
    let page_url = format!("{public}/s/{token}");
    // A live recording's poster opens with the same token as its stream.
    let poster = format!(
        "{public}/api/v1/assets/{id}/poster.jpg{}",
        if live {
            svc.inner.tokens.query(id)
        } else {
            String::new()
        }
    );
    let mut og = format!(
        "<meta property=\"og:type\" content=\"video.other\">\n<meta property=\"og:title\" content=\"{}\">\n<meta property=\"og:url\" content=\"{}\">\n<meta property=\"og:image\" content=\"{}\">\n<meta property=\"og:site_name\" content=\"Sharecast\">\n",
        html_escape(&title),
        html_escape(&page_url),
        html_escape(&poster)
    );
    if !live {
        og.push_str(&format!(
            "<meta property=\"og:video\" content=\"{public}{vod_path}\">\n<meta property=\"og:video:type\" content=\"video/mp4\">\n"
        ));
        // As shown: a link preview embeds the picture upright.
        let (w, h) = attrs.display_size();
        if w > 0 && h > 0 {
            og.push_str(&format!(
                "<meta property=\"og:video:width\" content=\"{w}\">\n<meta property=\"og:video:height\" content=\"{h}\">\n"
            ));
        }
    }
    let (data_src, script) = if live {
        (
            format!("data-hls=\"{}\"", html_escape(&hls_path)),
            "<script src=\"/assets/hls.js\"></script>\n",
        )
    } else {
        (format!("data-src=\"{}\"", html_escape(&vod_path)), "")
    };
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · Sharecast</title>
{og}<style>body{{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}}main{{max-width:960px;margin:0 auto;padding:1em}}video{{width:100%;background:#000}}#status{{color:#aaa}}</style>
{script}</head>
<body><main>
<h1>{title}</h1>
<video id="video" controls muted playsinline preload="auto" poster="{poster}" {data_src} data-start="{start_s}" data-live="{live}"></video>
<p id="status">{kind}</p>
</main>
<script>
(function () {{
  var v = document.getElementById('video');
  var status = document.getElementById('status');
  var start = parseFloat(v.dataset.start) || 0;
  var seeked = false;
  v.addEventListener('loadedmetadata', function () {{
    if (start > 0 && !seeked) {{
      seeked = true;
      var d = v.duration;
      v.currentTime = (isFinite(d) && d > 0) ? Math.min(start, d) : start;
    }}
    var p = v.play();
    if (p && p.catch) p.catch(function (e) {{ status.textContent = 'Press play (' + e.name + ')'; }});
  }});
  v.addEventListener('error', function () {{ status.textContent = 'This video cannot be played here.'; }});
  if (v.dataset.hls) {{
    // hls.js over Media Source Extensions first; native HLS (Safari, iOS)
    // otherwise.
    if (window.Hls && window.Hls.isSupported()) {{ var h = new window.Hls(); h.loadSource(v.dataset.hls); h.attachMedia(v); }}
    else if (v.canPlayType('application/vnd.apple.mpegurl')) {{ v.src = v.dataset.hls; }}
    else {{ status.textContent = 'Live playback needs hls.js, which did not load.'; }}
  }} else {{
    v.src = v.dataset.src;
  }}
}})();
</script>
</body>
</html>
"#,
        title = html_escape(&title),
        poster = html_escape(&poster),
        kind = if live { "Live now" } else { "Recorded video" },
    );
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised_or_refused() {
        assert_eq!(
            normalize_number(" +86 138-0013 8000 ").as_deref(),
            Some("+8613800138000")
        );
        assert_eq!(normalize_number("12345").as_deref(), Some("12345"));
        for bad in ["", "+", "12", "abc123", "++123", "1".repeat(21).as_str()] {
            assert_eq!(normalize_number(bad), None, "{bad:?}");
        }
    }

    async fn temp_store() -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("sharecast-shares-{}", new_token()));
        let store = Store::open_sqlite(&dir.join("db.sqlite")).await.unwrap();
        (store, dir)
    }

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
        let (store, dir) = temp_store().await;
        let (device, _) = store.add_device("phone").await.unwrap();
        let svc = ShareService::start(
            store.clone(),
            ShareConfig::default(),
            SmsConfig::default(),
            "http://h".into(),
            "rtsp://h/live/{id}".into(),
            PlaybackTokens::load(&dir, true, 3600).unwrap(),
        )
        .await
        .unwrap();
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
        let got = statuses(&store).await;
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
                let update = sharecast_store::DeliveryUpdate::default();
                store
                    .set_delivery_status(d.id, DeliveryStatus::Sending, update)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(store.recover_interrupted_deliveries().await.unwrap(), 2);
        assert!(statuses(&store).await.iter().all(|d| d.2 == "unknown"));
        let _ = std::fs::remove_dir_all(dir);
    }

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
}
