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
use crate::{admin, frames, http, resume, shares, stills};
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
    use Access::*;
    let table: Arc<OnceLock<Vec<RouteSpec>>> = Arc::default();
    let (g, sh, r, st, f, a) = (s.gateway, s.shares, s.resume, s.stills, s.frames, s.admin);
    let metrics_access = if s.metrics_public { Public } else { Admin };
    let routes = Routes::new(policy)
        // The server itself.
        .add(Method::GET, "/api/v1/health", Public, get(http::health))
        .add(
            Method::GET,
            "/metrics",
            metrics_access,
            get(http::metrics).with_state(g.clone()),
        )
        // Assets and their files.
        .add(
            Method::GET,
            "/api/v1/assets",
            DeviceOrAdmin,
            get(http::list_assets).with_state(g.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/assets/{id}",
            AssetOwner,
            get(http::get_asset).with_state(g.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/assets/{id}/frame",
            AssetViewer,
            get(frames::frame).with_state(f.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/assets/{id}/poster.jpg",
            AssetViewer,
            get(frames::poster).with_state(f),
        )
        .add(
            Method::GET,
            "/api/v1/sessions",
            DeviceOrAdmin,
            get(http::list_sessions).with_state(g.clone()),
        )
        .add(
            Method::GET,
            "/vod/{id}/{file}",
            Capability,
            get(http::vod_file).with_state(g.clone()),
        )
        .add(
            Method::HEAD,
            "/vod/{id}/{file}",
            Capability,
            on(MethodFilter::HEAD, http::vod_file).with_state(g),
        )
        // Live streams.
        .add_page("/watch/{id}", Public, s.live.watch)
        .add(
            Method::GET,
            "/live/{id}/{file}",
            LiveViewer,
            s.live.stream_file,
        )
        .add(
            Method::GET,
            "/live/{id}/{rendition}/{file}",
            LiveViewer,
            s.live.rendition_file,
        )
        .add(
            Method::POST,
            "/api/v1/live/{id}/heartbeat",
            LiveViewer,
            s.live.heartbeat,
        )
        .add(
            Method::POST,
            "/api/v1/live/{id}/playback-tokens",
            AssetOwner,
            post(shares::issue_playback_token).with_state(sh.clone()),
        )
        .add(
            Method::GET,
            "/assets/hls.js",
            Public,
            get(shares::hls_js).with_state(sh.clone()),
        )
        // Shares, subscriptions, SMS.
        .add(
            Method::GET,
            "/api/v1/shares",
            Device,
            get(shares::list_shares).with_state(sh.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/shares",
            Device,
            post(shares::create_share).with_state(sh.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/shares/{id}",
            Device,
            get(shares::get_share).with_state(sh.clone()),
        )
        .add(
            Method::DELETE,
            "/api/v1/shares/{id}",
            Device,
            delete(shares::revoke_share).with_state(sh.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/shares/{id}/deliveries",
            Device,
            get(shares::share_deliveries).with_state(sh.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/subscriptions",
            Device,
            get(shares::list_subscriptions).with_state(sh.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/subscriptions",
            Device,
            post(shares::subscribe).with_state(sh.clone()),
        )
        .add(
            Method::DELETE,
            "/api/v1/subscriptions/{recipient}",
            Device,
            delete(shares::unsubscribe).with_state(sh.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/sms/inbound",
            SmsGateway,
            get(shares::inbound).with_state(sh.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/sms/inbound",
            SmsGateway,
            post(shares::inbound).with_state(sh.clone()),
        )
        .add_page(
            "/s/{token}",
            Capability,
            get(shares::share_page).with_state(sh),
        )
        // Still-frame shares.
        .add_asset(
            Method::POST,
            "/api/v1/stills",
            AssetViewer,
            AssetIn::BodyContentId,
            post(stills::screenshot).with_state(st.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/stills/{id}/{file}",
            Capability,
            get(stills::image_file).with_state(st.clone()),
        )
        .add_page(
            "/p/{token}",
            Capability,
            get(stills::page).with_state(st.clone()),
        )
        .add(
            Method::GET,
            "/oembed",
            Public,
            get(stills::oembed).with_state(st),
        )
        // Users, terminals, history across terminals, bookmarks.
        .add(
            Method::POST,
            "/api/v1/users",
            Public,
            post(resume::create_user).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/terminals",
            User,
            post(resume::create_terminal).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/history",
            User,
            post(resume::record_stop).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/history",
            User,
            get(resume::list_history).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/catalogue",
            User,
            get(resume::catalogue).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/resume",
            User,
            post(resume::resume).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/bookmarks",
            User,
            get(resume::list_bookmarks).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/bookmarks/{id}/resume",
            User,
            post(resume::resume_bookmark).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/reverse-bookmark",
            BodyTokens,
            post(resume::reverse_bookmark).with_state(r.clone()),
        )
        // Hand-off between platforms.
        .add(
            Method::POST,
            "/api/v1/handoff",
            User,
            post(resume::create_handoff).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/handoff/{id}",
            SignedLink,
            get(resume::pull_handoff).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/handoff/by-code/{code}",
            Capability,
            get(resume::pull_by_code).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/handoff/{id}/push",
            User,
            post(resume::push_handoff).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/handoff/{id}/redirect",
            Capability,
            get(resume::redirect_handoff).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/handoff/receive",
            BodyTokens,
            post(resume::receive_handoff).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/handoff/accept",
            User,
            post(resume::accept_handoff).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/handoff/accept",
            User,
            get(resume::accept_redirect).with_state(r.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/transcodes",
            User,
            post(resume::create_transcode).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/transcodes/{id}",
            User,
            get(resume::get_transcode).with_state(r.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/fetches/{id}",
            User,
            get(resume::get_fetch).with_state(r),
        )
        // Admin.
        .add_page("/admin", Admin, get(admin::page))
        .add(
            Method::GET,
            "/api/v1/admin/overview",
            Admin,
            get(admin::overview).with_state(a.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/admin/events",
            Admin,
            get(admin::events).with_state(a.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/admin/routes",
            Admin,
            get(route_table).with_state(table.clone()),
        )
        .add(
            Method::GET,
            "/api/v1/admin/{what}",
            Admin,
            get(admin::list).with_state(a.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/admin/sessions/{id}/end",
            Admin,
            post(admin::end_session).with_state(a.clone()),
        )
        .add(
            Method::POST,
            "/api/v1/admin/viewers/{id}/kick",
            Admin,
            post(admin::kick_viewer).with_state(a),
        );
    let (router, specs) = routes.into_parts();
    let _ = table.set(specs.clone());
    (router, specs)
}

/// `GET /api/v1/admin/routes`: every route with its rule.
async fn route_table(
    State(table): State<Arc<OnceLock<Vec<RouteSpec>>>>,
    _: AuthAdmin,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "routes": table.get().cloned().unwrap_or_default() }))
}
