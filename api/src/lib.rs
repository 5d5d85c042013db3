//! Sharecast share gateway: the HTTP side.
//!
//! JSON API under `/api/v1/`, VOD files with HTTP Range under `/vod/`,
//! and Prometheus metrics at `/metrics`, over the store (`sharecast-store`).
//! Every route is declared with who may call it in [`routes`], and applied
//! by the [`access`] policy; every request the server makes to an address it
//! was given goes through `sharecast_resume::outbound`. It knows nothing of media
//! internals: outputs arrive as files and
//! [`sharecast_formats::attributes::VideoAttributes`].

pub mod access;
pub mod admin;
pub mod delivery;
pub mod error;
pub mod frames;
pub mod http;
pub mod kannel;
pub mod resume;
pub mod routes;
pub mod shares;
pub mod stills;

pub use access::{Access, Policy, RouteSpec};
pub use http::{Gateway, GatewayConfig, MetricsFn, SessionsFn};
pub use kannel::SmsConfig;
pub use sharecast_store::Store;
pub use sharecast_tokens::LinkSigner;
pub use sharecast_tokens::PlaybackTokens;
pub use shares::{ShareConfig, ShareService};
