//! Who may call each route: the access rules, the middleware that applies
//! them, and the extractors that hand the authenticated caller to handlers.
//!
//! Every route is added through [`Routes::add`], which takes its [`Access`]
//! rule; there is no other way to add a route to the server. The rule is
//! applied by [`enforce`] before the handler runs (and before its body is
//! read), so a request without the credential its route asks for is
//! refused the same way everywhere: 401 `unauthorized` (no or unknown
//! credential), 403 (a credential that does not open this resource), with
//! the JSON error shape, counted in `sharecast_http_refused_total`.
//! Handlers get the caller through [`AuthDevice`], [`AuthUser`], [`AuthAdmin`]
//! and [`Scope`], never by reading headers themselves.
//!
//! Credentials: `Authorization: Bearer <token>` (device `sc_…`, user `su_…`,
//! admin, or a playback token), or `?token=` in the URL where a browser or
//! player cannot set a header (admin pages, live streams). See
//! `docs/security.md` for the rule of every route.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sharecast_tokens::{constant_time_eq, LinkError, LinkSigner};

use crate::error::ApiError;
use sharecast_metrics::family;
use sharecast_store::{Asset, AssetState, Device, Store};
use sharecast_tokens::PlaybackTokens;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Anyone.
    Public,
    /// Anyone holding the unguessable token or id in the path (share and
    /// still pages and their images, VOD files by their 128-bit asset id).
    Capability,
    /// A device token.
    Device,
    /// A device token (the device sees its own) or the admin token (all).
    DeviceOrAdmin,
    /// The device that recorded the asset in the path, or the admin token.
    AssetOwner,
    /// A user token.
    User,
    /// The admin token.
    Admin,
    /// A playback token for the live session in the path, or an active
    /// public share of it.
    LiveViewer,
    /// Who may see the asset the route names: while it is recording, as
    /// [`Access::LiveViewer`] (or its device, or the admin); once recorded,
    /// anyone holding its id, as for its VOD files.
    AssetViewer,
    /// A link this server signed (`?exp=…&sig=…`), before it expires.
    SignedLink,
    /// Credentials in the request body, checked by the interface itself and
    /// answered with its own result codes (the reverse-bookmark interface,
    /// and a hand-off pushed by another platform, which names the user
    /// token on this one).
    BodyTokens,
    /// The SMS gateway, by the inbound key (`?key=`).
    SmsGateway,
}

impl Access {
    /// Every rule, for documentation and tests.
    pub const ALL: [Access; 12] = [
        Access::Public,
        Access::Capability,
        Access::Device,
        Access::DeviceOrAdmin,
        Access::AssetOwner,
        Access::User,
        Access::Admin,
        Access::LiveViewer,
        Access::AssetViewer,
        Access::SignedLink,
        Access::BodyTokens,
        Access::SmsGateway,
    ];

    /// The rule's name, as in `docs/security.md` and `/metrics`.
    pub fn name(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Capability => "capability",
            Access::Device => "device",
            Access::DeviceOrAdmin => "device_or_admin",
            Access::AssetOwner => "asset_owner",
            Access::User => "user",
            Access::Admin => "admin",
            Access::LiveViewer => "live_viewer",
            Access::AssetViewer => "asset_viewer",
            Access::SignedLink => "signed_link",
            Access::BodyTokens => "body_tokens",
            Access::SmsGateway => "sms_gateway",
        }
    }
}

/// Where a route names the asset its rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssetIn {
    /// The `{id}` path parameter.
    Path,
    /// The `content_id` field of the JSON body.
    BodyContentId,
}

/// One route: method, path, rule.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: String,
    /// Path pattern, axum syntax (`/api/v1/assets/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Where the asset of an asset rule is named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asset: Option<AssetIn>,
    /// A page for browsers: a refusal is a page too (the admin page's
    /// offers the token form).
    pub page: bool,
}

/// The authenticated caller, put into the request by [`enforce`].
#[derive(Debug, Clone)]
pub enum Caller {
    /// Anyone (public routes, capabilities, recorded assets).
    Anyone,
    /// A device, by its token.
    Device(Device),
    /// A user, by their token.
    User(User),
    /// The admin.
    Admin,
    /// A viewer with a playback token (or a public share) for the asset.
    Viewer {
        /// When the access it proved ends, ms since the Unix epoch (`None`:
        /// as long as the share is public).
        until_unix_ms: Option<i64>,
    },
    /// The SMS gateway.
    Gateway,
}

/// A user authenticated by a user token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User id.
    pub id: String,
}

/// The answer to a link that does not open.
pub fn link_refusal(e: LinkError) -> ApiError {
    match e {
        LinkError::BadSignature => ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            "link signature does not match",
        ),
        LinkError::Expired => ApiError::new(StatusCode::GONE, "expired", "this link has expired"),
    }
}

/// Largest request body read to find the asset a rule is about.
const MAX_INSPECTED_BODY: usize = 8 << 20;

/// The access policy: what it needs to check every kind of credential.
#[derive(Clone)]
pub struct Policy {
    inner: Arc<PolicyInner>,
}

struct PolicyInner {
    store: Store,
    admin_token: String,
    sms_inbound_key: String,
    tokens: PlaybackTokens,
    links: LinkSigner,
    refusals: Refusals,
}

/// The labels of a refusal: the route's rule and why.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    rule: &'static str,
    reason: &'static str,
}

/// Requests the policy refused, by rule and reason (a pair appears once
/// counted), and the admin requests among them. Clones count together.
#[derive(Clone, Debug, Default)]
struct Refusals {
    by_rule: Family<RefusalLabels, Counter>,
    admin: Counter,
}

impl Collector for Refusals {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        family(
            &mut enc,
            "admin_rejected",
            "Admin requests refused for a missing or wrong token",
            &self.admin,
        )?;
        family(
            &mut enc,
            "http_refused",
            "Requests refused by the access policy, by route rule and reason",
            &self.by_rule,
        )
    }
}

impl Policy {
    /// The policy over these credentials. An empty admin token or inbound
    /// key opens nothing.
    pub fn new(
        store: Store,
        admin_token: String,
        sms_inbound_key: String,
        tokens: PlaybackTokens,
        links: LinkSigner,
    ) -> Self {
        Self {
            inner: Arc::new(PolicyInner {
                store,
                admin_token,
                sms_inbound_key,
                tokens,
                links,
                refusals: Refusals::default(),
            }),
        }
    }

    /// The playback tokens the policy checks.
    pub fn tokens(&self) -> &PlaybackTokens {
        &self.inner.tokens
    }

    /// The signer of links.
    pub fn links(&self) -> &LinkSigner {
        &self.inner.links
    }

    fn is_admin(&self, token: Option<&str>) -> bool {
        let admin = &self.inner.admin_token;
        !admin.is_empty() && token.is_some_and(|t| constant_time_eq(t.as_bytes(), admin.as_bytes()))
    }

    async fn device(&self, token: Option<&str>) -> Result<Option<Device>, ApiError> {
        match token.filter(|t| t.starts_with("sc_")) {
            Some(t) => self
                .inner
                .store
                .device_by_token(t)
                .await
                .map_err(ApiError::internal),
            None => Ok(None),
        }
    }

    async fn user(&self, token: Option<&str>) -> Result<Option<User>, ApiError> {
        match token.filter(|t| t.starts_with("su_")) {
            Some(t) => Ok(self
                .inner
                .store
                .user_by_token(t)
                .await
                .map_err(ApiError::internal)?
                .map(|id| User { id })),
            None => Ok(None),
        }
    }

    /// Whether `token` opens the live stream of `id` (a playback token for
    /// it, or an active public share), and until when.
    pub fn live_viewer(&self, id: &str, token: Option<&str>) -> Option<Caller> {
        let t = &self.inner.tokens;
        if !t.required() {
            return Some(Caller::Viewer {
                until_unix_ms: None,
            });
        }
        if let Some(until) = t.public_until(id) {
            return Some(Caller::Viewer {
                until_unix_ms: until,
            });
        }
        t.check_until(id, token).map(|exp| Caller::Viewer {
            until_unix_ms: Some(exp),
        })
    }

    fn count(&self, access: Access, reason: &'static str) {
        let r = &self.inner.refusals;
        let rule = access.name();
        r.by_rule
            .get_or_create(&RefusalLabels { rule, reason })
            .inc();
        if access == Access::Admin {
            r.admin.inc();
        }
    }

    /// Registers the policy's families (under the registry's prefix):
    /// `http_refused`, requests refused by rule and reason, and
    /// `admin_rejected`, the admin requests among them.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.inner.refusals.clone()));
    }

    /// Decides a request: the caller, or the answer refusing it.
    async fn decide(
        &self,
        spec: &RouteSpec,
        cred: Option<&str>,
        query: &Query,
        asset_id: Option<&str>,
    ) -> Result<Caller, Refused> {
        let a = spec.access;
        match a {
            Access::Public | Access::Capability | Access::BodyTokens => Ok(Caller::Anyone),
            Access::Admin => match self.is_admin(cred) {
                true => Ok(Caller::Admin),
                false => Err(Refused::unauthorized(a, "the admin token is required")),
            },
            Access::Device => self.device_rule(a, cred, false).await,
            Access::DeviceOrAdmin => self.device_rule(a, cred, true).await,
            Access::User => match self.user(cred).await? {
                Some(u) => Ok(Caller::User(u)),
                None => Err(Refused::unauthorized(
                    a,
                    "give a user token: Authorization: Bearer <token>",
                )),
            },
            Access::AssetOwner => self.asset_owner_rule(cred, asset_id).await,
            Access::LiveViewer => self
                .live_viewer(asset_id.unwrap_or_default(), cred)
                .ok_or_else(|| {
                    Refused::unauthorized(a, "a playback token is needed for this stream")
                }),
            Access::AssetViewer => self.asset_viewer_rule(cred, asset_id).await,
            Access::SignedLink => self.signed_link_rule(query, asset_id.unwrap_or_default()),
            Access::SmsGateway => self.sms_gateway_rule(query),
        }
    }

    /// `device` (and, with `admin_too`, `device_or_admin`).
    async fn device_rule(
        &self,
        a: Access,
        cred: Option<&str>,
        admin_too: bool,
    ) -> Result<Caller, Refused> {
        if admin_too && self.is_admin(cred) {
            return Ok(Caller::Admin);
        }
        match self.device(cred).await? {
            Some(d) => Ok(Caller::Device(d)),
            None if admin_too => Err(Refused::unauthorized(
                a,
                "send a device token (or the admin token) as Authorization: Bearer <token>",
            )),
            None => Err(Refused::unauthorized(
                a,
                "send the device token as Authorization: Bearer <token>",
            )),
        }
    }

    /// `asset_owner`: the device that recorded the asset, or the admin.
    async fn asset_owner_rule(
        &self,
        cred: Option<&str>,
        asset_id: Option<&str>,
    ) -> Result<Caller, Refused> {
        let a = Access::AssetOwner;
        if self.is_admin(cred) {
            return Ok(Caller::Admin);
        }
        let Some(d) = self.device(cred).await? else {
            return Err(Refused::unauthorized(
                a,
                "send the device token as Authorization: Bearer <token>",
            ));
        };
        match self.asset(asset_id).await? {
            Some(asset) if asset.device_id != d.id => Err(Refused::new(
                a,
                StatusCode::FORBIDDEN,
                "not_owner",
                "this asset belongs to another device",
            )),
            // Unknown assets are the handler's 404.
            _ => Ok(Caller::Device(d)),
        }
    }

    /// `asset_viewer`: while it records, as `live_viewer` (or its device,
    /// or the admin); once recorded, anyone holding its id.
    async fn asset_viewer_rule(
        &self,
        cred: Option<&str>,
        asset_id: Option<&str>,
    ) -> Result<Caller, Refused> {
        let Some(asset) = self.asset(asset_id).await? else {
            return Ok(Caller::Anyone);
        };
        if asset.state != AssetState::Recording {
            return Ok(Caller::Anyone);
        }
        if self.is_admin(cred) {
            return Ok(Caller::Admin);
        }
        if let Some(d) = self.device(cred).await?.filter(|d| d.id == asset.device_id) {
            return Ok(Caller::Device(d));
        }
        self.live_viewer(&asset.id, cred).ok_or_else(|| {
            Refused::unauthorized(
                Access::AssetViewer,
                "this video is live: a playback token for it is needed",
            )
        })
    }

    /// `signed_link`: `exp` and `sig` over the id in the path.
    fn signed_link_rule(&self, query: &Query, id: &str) -> Result<Caller, Refused> {
        let a = Access::SignedLink;
        let refuse = |m: &str| Refused::new(a, StatusCode::FORBIDDEN, "bad_signature", m);
        let (Some(exp), Some(sig)) = (query.get("exp"), query.get("sig")) else {
            return Err(refuse("this link needs its exp and sig parameters"));
        };
        let exp: i64 = exp.parse().map_err(|_| refuse("exp is a time in ms"))?;
        self.inner
            .links
            .verify(id, exp, sig)
            .map(|()| Caller::Anyone)
            .map_err(|e| {
                let error = link_refusal(e);
                Refused {
                    access: a,
                    reason: error.code(),
                    error,
                }
            })
    }

    /// `sms_gateway`: the inbound key.
    fn sms_gateway_rule(&self, query: &Query) -> Result<Caller, Refused> {
        let key = &self.inner.sms_inbound_key;
        let ok = !key.is_empty()
            && query
                .get("key")
                .is_some_and(|k| constant_time_eq(k.as_bytes(), key.as_bytes()));
        if ok {
            return Ok(Caller::Gateway);
        }
        Err(Refused::new(
            Access::SmsGateway,
            StatusCode::FORBIDDEN,
            "bad_key",
            "inbound SMS callbacks need the inbound key (sms.inbound_key)",
        ))
    }

    async fn asset(&self, id: Option<&str>) -> Result<Option<Asset>, ApiError> {
        match id.filter(|i| sharecast_tokens::valid_id(i)) {
            Some(id) => self.inner.store.asset(id).await.map_err(ApiError::internal),
            None => Ok(None),
        }
    }
}

/// A refusal: the answer, and what is counted.
struct Refused {
    access: Access,
    reason: &'static str,
    error: ApiError,
}

impl Refused {
    fn new(access: Access, status: StatusCode, code: &'static str, msg: &str) -> Self {
        Refused {
            access,
            reason: code,
            error: ApiError::new(status, code, msg),
        }
    }

    fn unauthorized(access: Access, msg: &str) -> Self {
        Self::new(access, StatusCode::UNAUTHORIZED, "unauthorized", msg)
    }
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused {
            access: Access::Public,
            reason: "internal",
            error: e,
        }
    }
}

/// Query parameters, decoded.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        let pairs = q
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Query(pairs)
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The credential a request presents: the bearer token, else `?token=`.
fn credential(parts: &Parts, query: &Query) -> Option<String> {
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    bearer.or_else(|| {
        query
            .get("token")
            .map(str::to_string)
            .filter(|t| !t.is_empty())
    })
}

/// Applies a route's rule (the middleware of every route).
pub async fn enforce(
    State((policy, spec)): State<(Policy, Arc<RouteSpec>)>,
    params: RawPathParams,
    req: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query());
    let cred = credential(&parts, &query);
    let path_id = params
        .iter()
        .find(|(k, _)| *k == "id")
        .map(|(_, v)| v.to_string());
    let (asset_id, body) = match spec.asset {
        Some(AssetIn::BodyContentId) => {
            let bytes = match axum::body::to_bytes(body, MAX_INSPECTED_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    return ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("request body over {MAX_INSPECTED_BODY} bytes"),
                    )
                    .into_response()
                }
            };
            let id = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("content_id")?.as_str().map(str::to_string));
            (id, Body::from(bytes))
        }
        _ => (path_id, body),
    };
    match policy
        .decide(&spec, cred.as_deref(), &query, asset_id.as_deref())
        .await
    {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(r) => {
            let access = if r.reason == "internal" {
                spec.access
            } else {
                r.access
            };
            policy.count(access, r.reason);
            tracing::debug!(path = %parts.uri.path(), rule = access.name(), reason = r.reason, "request refused by the access policy");
            if spec.page {
                refusal_page(&r.error, spec.access)
            } else {
                r.error.into_response()
            }
        }
    }
}

/// A refusal shown to a browser: a small page saying why (for the admin
/// page, the form that asks for the token).
fn refusal_page(e: &ApiError, access: Access) -> Response {
    let body = if access == Access::Admin {
        crate::admin::LOGIN_HTML.to_string()
    } else {
        format!(
            "<!doctype html><title>Sharecast</title><p id=\"reason\" data-code=\"{}\">{}</p>",
            e.code(),
            crate::shares::html_escape(&e.to_string())
        )
    };
    let mut r = (e.status(), axum::response::Html(body)).into_response();
    r.extensions_mut()
        .insert(crate::error::ErrorCodeTag(e.code()));
    r
}

/// Every route of the server with its rule; the only way to add one.
pub struct Routes {
    policy: Policy,
    router: Router,
    specs: Vec<RouteSpec>,
}

impl Routes {
    /// No routes yet.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            router: Router::new(),
            specs: Vec::new(),
        }
    }

    /// Adds `handler` (with its state applied) for `method` on `path`,
    /// callable as `access` says.
    pub fn add(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter,
    ) -> Self {
        self.add_spec(method, path, access, None, false, handler)
    }

    /// [`Routes::add`] for a page shown to browsers (`GET`).
    pub fn add_page(self, path: &'static str, access: Access, handler: MethodRouter) -> Self {
        self.add_spec(Method::GET, path, access, None, true, handler)
    }

    /// [`Routes::add`] for a rule about an asset named in the request.
    pub fn add_asset(
        self,
        method: Method,
        path: &'static str,
        access: Access,
        asset: AssetIn,
        handler: MethodRouter,
    ) -> Self {
        self.add_spec(method, path, access, Some(asset), false, handler)
    }

    fn add_spec(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        asset: Option<AssetIn>,
        page: bool,
        handler: MethodRouter,
    ) -> Self {
        let asset = asset.or(match access {
            Access::AssetOwner | Access::LiveViewer | Access::AssetViewer | Access::SignedLink => {
                Some(AssetIn::Path)
            }
            _ => None,
        });
        let spec = Arc::new(RouteSpec {
            method: method.to_string(),
            path,
            access,
            asset,
            page,
        });
        self.specs.push((*spec).clone());
        let filter = MethodFilter::try_from(method).unwrap_or(MethodFilter::GET);
        let mr = MethodRouter::new().on_service(filter, handler).route_layer(
            axum::middleware::from_fn_with_state((self.policy.clone(), spec), enforce),
        );
        self.router = self.router.route(path, mr);
        self
    }

    /// The routes declared so far.
    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// The router and the declared routes.
    pub fn into_parts(self) -> (Router, Vec<RouteSpec>) {
        (self.router, self.specs)
    }
}

fn caller(parts: &Parts) -> Result<&Caller, ApiError> {
    parts.extensions.get::<Caller>().ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "route {} has no access rule that identifies its caller",
            parts.uri.path()
        ))
    })
}

fn misdeclared(parts: &Parts, wanted: &str) -> ApiError {
    ApiError::internal(anyhow::anyhow!(
        "route {} is declared with a rule that does not give it {wanted}",
        parts.uri.path()
    ))
}

/// The device a [`Access::Device`] or [`Access::AssetOwner`] route was called by.
pub struct AuthDevice(pub Device);

impl<S: Send + Sync> FromRequestParts<S> for AuthDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match caller(parts)? {
            Caller::Device(d) => Ok(AuthDevice(d.clone())),
            _ => Err(misdeclared(parts, "a device")),
        }
    }
}

/// The user a [`Access::User`] route was called by.
pub struct AuthUser(pub User);

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match caller(parts)? {
            Caller::User(u) => Ok(AuthUser(u.clone())),
            _ => Err(misdeclared(parts, "a user")),
        }
    }
}

/// Proof that the admin called an [`Access::Admin`] route.
pub struct AuthAdmin;

impl<S: Send + Sync> FromRequestParts<S> for AuthAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match caller(parts)? {
            Caller::Admin => Ok(AuthAdmin),
            _ => Err(misdeclared(parts, "the admin")),
        }
    }
}

/// What a [`Access::DeviceOrAdmin`] caller may see: its own, or everything.
pub enum Scope {
    /// One device's own.
    Device(Device),
    /// Everything (the admin).
    All,
}

impl Scope {
    /// Whether a thing of `device_id` is in scope.
    pub fn covers(&self, device_id: &str) -> bool {
        match self {
            Scope::Device(d) => d.id == device_id,
            Scope::All => true,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match caller(parts)? {
            Caller::Device(d) => Ok(Scope::Device(d.clone())),
            Caller::Admin => Ok(Scope::All),
            _ => Err(misdeclared(parts, "a device or the admin")),
        }
    }
}

/// The caller of any route, as the policy found it.
pub struct AnyCaller(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for AnyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        caller(parts).map(|c| AnyCaller(c.clone()))
    }
}
