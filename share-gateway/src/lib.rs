//! Sharecast share gateway: the HTTP side.
//!
//! JSON API under `/api/v1/`, VOD files with HTTP Range under `/vod/`,
//! Prometheus metrics at `/metrics`, and the [`store`] of devices and assets.
//! Every route is declared with who may call it in [`routes`], and applied
//! by the [`access`] policy; every request the server makes to an address it
//! was given goes through the [`outbound`] policy. It knows nothing of media
//! internals: outputs arrive as files and
//! [`sharecast_formats::attributes::VideoAttributes`].

pub mod access;
pub mod admin;
pub mod delivery;
pub mod error;
pub mod fetches;
pub mod frames;
pub mod http;
pub mod ids;
mod jobs;
pub mod kannel;
pub mod limiter;
pub mod outbound;
pub mod playback;
pub mod resume;
pub mod routes;
pub mod shares;
pub mod stills;
pub mod store;
pub mod transcodes;

pub use access::{Access, LinkSigner, Policy, RouteSpec};
pub use http::{Gateway, GatewayConfig, MetricsFn, SessionsFn};
pub use kannel::SmsConfig;
pub use outbound::{Outbound, OutboundConfig};
pub use playback::PlaybackTokens;
pub use shares::{ShareConfig, ShareService};
pub use store::Store;
