//! Sharecast share gateway: the HTTP side.
//!
//! JSON API under `/api/v1/`, VOD files with HTTP Range under `/vod/`,
//! Prometheus metrics at `/metrics`, and the [`store`] of devices and assets.
//! It knows nothing of media internals: outputs arrive as files and
//! [`sharecast_formats::attributes::VideoAttributes`].

pub mod admin;
pub mod delivery;
pub mod fetches;
pub mod frames;
pub mod http;
mod jobs;
pub mod kannel;
pub mod playback;
pub mod resume;
pub mod shares;
pub mod stills;
pub mod store;
pub mod transcodes;

pub use http::{Gateway, GatewayConfig, MetricsFn, SessionsFn};
pub use kannel::SmsConfig;
pub use playback::PlaybackTokens;
pub use shares::{ShareConfig, ShareService};
pub use store::Store;
