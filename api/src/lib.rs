//! Every HTTP route of Sharecast, and who may call it.
//!
//! The JSON API under `/api/v1/`, VOD files with HTTP Range under `/vod/`,
//! share and still pages, the admin dashboard and Prometheus metrics at
//! `/metrics`, over the services of the `share` and `resume` crates and the
//! `store`. Every route is declared with its access rule in [`routes`] and
//! applied by the [`access`] policy before its handler runs; every error
//! answer has the one shape of [`error::ApiError`]. Main types: [`Gateway`]
//! (the application), [`Policy`], [`routes::Services`]. It knows nothing of
//! media internals: outputs arrive as files and
//! [`sharecast_formats::attributes::VideoAttributes`].

pub mod access;
pub mod admin;
pub mod error;
pub mod frames;
pub mod history;
pub mod http;
mod keys;
mod metrics;
pub mod openapi;
pub mod resume;
pub mod routes;
mod shares;
mod stills;
pub mod webhooks;

pub use access::{Access, Policy, RouteSpec};
pub use http::{AdminConfig, Gateway, GatewayConfig, SessionsFn};
pub use sharecast_store::Store;
pub use sharecast_tokens::LinkSigner;
pub use sharecast_tokens::PlaybackTokens;
