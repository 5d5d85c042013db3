//! The Sharecast server: [`config::Config`] (the configuration file, every
//! key with its default) and [`server::Server::start`], which builds every
//! component from it. The `sharecast` binary (`src/main.rs`) is the command
//! line around them; `docs/architecture.md` maps the crates.

pub mod config;
pub mod secure;
pub mod server;

mod frames;
mod hooks;
mod live_admin;
mod recording;

pub use recording::Public;
