//! Every HTTP route of the server, and who may call it: the one place.
//!
//! Each line names the method, the path, the [`Access`] rule and the
//! handler. The rules are explained in `docs/security.md`, which lists
//! every route as this table does (a test keeps the two the same), and a
//! generated test calls every route here with every kind of credential
//! (`tests/e2e_access.rs`). `GET /api/v1/admin/routes` answers this table.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::Method;
use axum::routing::{delete, get, on, post, MethodFilter};
use axum::{Json, Router};
use sharecast_share::{ShareService, Stills};

use crate::access::{Access, AssetIn, AuthAdmin, Policy, RouteSpec, Routes};
use crate::admin::Admin;
use crate::frames::Frames;
use crate::http::Gateway;
use crate::webhooks::WebhookRoutes;
use crate::{admin, frames, http, keys, resume, shares, stills, webhooks};
use sharecast_resume::ResumeService;

/// Everything that serves a route.
pub struct Services {
    /// Assets, VOD files, sessions, metrics.
    pub gateway: Gateway,
    /// Shares, subscriptions, SMS replies, share pages.
    pub shares: ShareService,
    /// Users, terminals, history, bookmarks, hand-off, on-demand jobs.
    pub resume: ResumeService,
    /// Still-frame shares.
    pub stills: Stills,
    /// Frames and posters of assets.
    pub frames: Frames,
    /// The admin dashboard and API.
    pub admin: Admin,
    /// The live relay's handlers.
    pub live: LiveHandlers,
    /// Webhook endpoints, replays and deliveries.
    pub webhooks: WebhookRoutes,
    /// Whether `/metrics` is public (`http.metrics_public`).
    pub metrics_public: bool,
}

/// The live relay's HTTP handlers (state applied), which the relay hands
/// over for this table to declare.
pub struct LiveHandlers {
    /// `GET /watch/{id}`: the player page.
    pub watch: axum::routing::MethodRouter,
    /// `GET /live/{id}/{file}`: playlists, segments, status.
    pub stream_file: axum::routing::MethodRouter,
    /// `GET /live/{id}/{rendition}/{file}`.
    pub rendition_file: axum::routing::MethodRouter,
    /// `POST /api/v1/live/{id}/heartbeat`.
    pub heartbeat: axum::routing::MethodRouter,
}

/// The routes, each behind its rule, and the table of them.
pub fn routes(policy: Policy, s: Services) -> (Router, Vec<RouteSpec>) {
    let table: Arc<OnceLock<Vec<RouteSpec>>> = Arc::default();
    let metrics = if s.metrics_public {
        Access::Public
    } else {
        Access::Admin
    };
    let routes = Routes::new(policy);
    let routes = server_and_assets(routes, &s.gateway, &s.frames, metrics);
    let routes = live(routes, s.live, &s.shares);
    let routes = shares_and_stills(routes, &s.shares, &s.stills);
    let routes = users_and_history(routes, &s.resume);
    let routes = handoff_and_jobs(routes, &s.resume);
    let routes = admin_routes(routes, &s.admin, &table);
    let routes = webhook_routes(routes, &s.webhooks);
    let (router, specs) = routes.into_parts();
    let _ = table.set(specs.clone());
    (router, specs)
}

// One route a line: method, path, rule, handler.

#[rustfmt::skip]
fn server_and_assets(r: Routes, g: &Gateway, f: &Frames, metrics: Access) -> Routes {
    use Access::*;
    r.add(Method::GET, "/api/v1/health", Public, get(http::health))
        .add(Method::GET, "/metrics", metrics, get(http::metrics).with_state(g.clone()))
        .add(Method::GET, "/api/v1/assets", DeviceOrAdmin, get(http::list_assets).with_state(g.clone()))
        .add(Method::GET, "/api/v1/assets/{id}", AssetOwner, get(http::get_asset).with_state(g.clone()))
        .add(Method::GET, "/api/v1/assets/{id}/frame", AssetViewer, get(frames::frame).with_state(f.clone()))
        .add(Method::GET, "/api/v1/assets/{id}/poster.jpg", AssetViewer, get(frames::poster).with_state(f.clone()))
        .add(Method::GET, "/api/v1/sessions", DeviceOrAdmin, get(http::list_sessions).with_state(g.clone()))
        .add(Method::GET, "/api/v1/publishing-keys", Device, get(keys::list_keys).with_state(g.clone()))
        .add(Method::POST, "/api/v1/publishing-keys", Device, post(keys::create_key).with_state(g.clone()))
        .add(Method::DELETE, "/api/v1/publishing-keys/{id}", Device, delete(keys::revoke_key).with_state(g.clone()))
        .add(Method::GET, "/vod/{id}/{file}", Capability, get(http::vod_file).with_state(g.clone()))
        .add(Method::HEAD, "/vod/{id}/{file}", Capability, on(MethodFilter::HEAD, http::vod_file).with_state(g.clone()))
}

#[rustfmt::skip]
fn live(r: Routes, l: LiveHandlers, sh: &ShareService) -> Routes {
    use Access::*;
    r.add_page("/watch/{id}", Public, l.watch)
        .add(Method::GET, "/live/{id}/{file}", LiveViewer, l.stream_file)
        .add(Method::GET, "/live/{id}/{rendition}/{file}", LiveViewer, l.rendition_file)
        .add(Method::POST, "/api/v1/live/{id}/heartbeat", LiveViewer, l.heartbeat)
        .add(Method::POST, "/api/v1/live/{id}/playback-tokens", AssetOwner, post(shares::issue_playback_token).with_state(sh.clone()))
        .add(Method::GET, "/assets/hls.js", Public, get(shares::hls_js).with_state(sh.clone()))
        .add(Method::GET, "/assets/uplot.js", Public, get(shares::uplot_js).with_state(sh.clone()))
        .add(Method::GET, "/assets/uplot.css", Public, get(shares::uplot_css).with_state(sh.clone()))
}

#[rustfmt::skip]
fn shares_and_stills(r: Routes, sh: &ShareService, st: &Stills) -> Routes {
    use Access::*;
    r.add(Method::GET, "/api/v1/shares", Device, get(shares::list_shares).with_state(sh.clone()))
        .add(Method::POST, "/api/v1/shares", Device, post(shares::create_share).with_state(sh.clone()))
        .add(Method::GET, "/api/v1/shares/{id}", Device, get(shares::get_share).with_state(sh.clone()))
        .add(Method::DELETE, "/api/v1/shares/{id}", Device, delete(shares::revoke_share).with_state(sh.clone()))
        .add(Method::GET, "/api/v1/shares/{id}/deliveries", Device, get(shares::share_deliveries).with_state(sh.clone()))
        .add(Method::GET, "/api/v1/subscriptions", Device, get(shares::list_subscriptions).with_state(sh.clone()))
        .add(Method::POST, "/api/v1/subscriptions", Device, post(shares::subscribe).with_state(sh.clone()))
        .add(Method::DELETE, "/api/v1/subscriptions/{recipient}", Device, delete(shares::unsubscribe).with_state(sh.clone()))
        .add(Method::GET, "/api/v1/sms/inbound", SmsGateway, get(shares::inbound).with_state(sh.clone()))
        .add(Method::POST, "/api/v1/sms/inbound", SmsGateway, post(shares::inbound).with_state(sh.clone()))
        .add(Method::GET, "/api/v1/sms/dlr", SmsGateway, get(shares::delivery_report).with_state(sh.clone()))
        .add_page("/s/{token}", Capability, get(shares::share_page).with_state(sh.clone()))
        .add_asset(Method::POST, "/api/v1/stills", AssetViewer, AssetIn::BodyContentId, post(stills::screenshot).with_state(st.clone()))
        .add(Method::GET, "/api/v1/stills/{id}/{file}", Capability, get(stills::image_file).with_state(st.clone()))
        .add_page("/p/{token}", Capability, get(stills::page).with_state(st.clone()))
        .add(Method::GET, "/oembed", Public, get(stills::oembed).with_state(st.clone()))
}

#[rustfmt::skip]
fn users_and_history(r: Routes, rs: &ResumeService) -> Routes {
    use Access::*;
    r.add(Method::POST, "/api/v1/users", Public, post(resume::create_user).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/terminals", User, post(resume::create_terminal).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/history", User, post(resume::record_stop).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/history", User, get(resume::list_history).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/catalogue", User, get(resume::catalogue).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/resume", User, post(resume::resume).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/bookmarks", User, get(resume::list_bookmarks).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/bookmarks/{id}/resume", User, post(resume::resume_bookmark).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/reverse-bookmark", BodyTokens, post(resume::reverse_bookmark).with_state(rs.clone()))
}

#[rustfmt::skip]
fn handoff_and_jobs(r: Routes, rs: &ResumeService) -> Routes {
    use Access::*;
    r.add(Method::POST, "/api/v1/handoff", User, post(resume::create_handoff).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/handoff/{id}", SignedLink, get(resume::pull_handoff).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/handoff/by-code/{code}", Capability, get(resume::pull_by_code).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/handoff/{id}/push", User, post(resume::push_handoff).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/handoff/{id}/redirect", Capability, get(resume::redirect_handoff).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/handoff/receive", BodyTokens, post(resume::receive_handoff).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/handoff/accept", User, post(resume::accept_handoff).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/handoff/accept", User, get(resume::accept_redirect).with_state(rs.clone()))
        .add(Method::POST, "/api/v1/transcodes", User, post(resume::create_transcode).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/transcodes/{id}", User, get(resume::get_transcode).with_state(rs.clone()))
        .add(Method::GET, "/api/v1/fetches/{id}", User, get(resume::get_fetch).with_state(rs.clone()))
}

#[rustfmt::skip]
fn admin_routes(r: Routes, a: &Admin, table: &Arc<OnceLock<Vec<RouteSpec>>>) -> Routes {
    use Access::*;
    r.add_page("/admin", Admin, get(admin::page))
        .add(Method::GET, "/api/v1/admin/overview", Admin, get(admin::overview).with_state(a.clone()))
        .add(Method::GET, "/api/v1/admin/events", Admin, get(admin::events).with_state(a.clone()))
        .add(Method::GET, "/api/v1/admin/routes", Admin, get(route_table).with_state(table.clone()))
        .add(Method::GET, "/api/v1/openapi.json", Public, get(openapi).with_state(table.clone()))
        .add(Method::GET, "/api/v1/admin/{what}", Admin, get(admin::list).with_state(a.clone()))
        .add(Method::POST, "/api/v1/admin/sessions/{id}/end", Admin, post(admin::end_session).with_state(a.clone()))
        .add(Method::POST, "/api/v1/admin/viewers/{id}/kick", Admin, post(admin::kick_viewer).with_state(a.clone()))
}

#[rustfmt::skip]
fn webhook_routes(r: Routes, w: &WebhookRoutes) -> Routes {
    use Access::*;
    r.add(Method::GET, "/api/v1/webhooks", DeviceOrAdmin, get(webhooks::list).with_state(w.clone()))
        .add(Method::POST, "/api/v1/webhooks", DeviceOrAdmin, post(webhooks::create).with_state(w.clone()))
        .add(Method::DELETE, "/api/v1/webhooks/{id}", DeviceOrAdmin, delete(webhooks::delete).with_state(w.clone()))
        .add(Method::POST, "/api/v1/webhooks/{id}/replay", DeviceOrAdmin, post(webhooks::replay).with_state(w.clone()))
        .add(Method::GET, "/api/v1/admin/webhook-deliveries", Admin, get(webhooks::deliveries).with_state(w.clone()))
}

/// `GET /api/v1/admin/routes`: every route with its rule.
async fn route_table(
    State(table): State<Arc<OnceLock<Vec<RouteSpec>>>>,
    _: AuthAdmin,
) -> Json<RouteTable> {
    Json(RouteTable {
        routes: table.get().cloned().unwrap_or_default(),
    })
}

/// `GET /api/v1/openapi.json`: the description of every route.
async fn openapi(
    State(table): State<Arc<OnceLock<Vec<RouteSpec>>>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document(
        table.get().map(Vec::as_slice).unwrap_or_default(),
    ))
}

/// The answer of `GET /api/v1/admin/routes`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct RouteTable {
    /// Every route, in the order of the table.
    routes: Vec<RouteSpec>,
}
