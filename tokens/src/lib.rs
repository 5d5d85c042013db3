//! Everything Sharecast signs or draws at random, in one place.
//!
//! - [`ids`]: random ids and tokens (128 bits), and the check of ids that
//!   arrive in requests.
//! - [`Signer`]: HMAC-SHA256 with a key kept in the data directory, the one
//!   signing primitive of the product; [`PlaybackTokens`] (live streams) and
//!   [`LinkSigner`] (hand-off links) are built on it.
//! - [`AttemptLimiter`]: failed attempts counted per client, so that short
//!   secrets typed by people cannot be guessed by trying.
//!
//! No I/O beyond reading and writing the key files.

pub mod ids;
pub mod limiter;
pub mod playback;
mod signer;

pub use ids::{new_id, random_hex, valid_id};
pub use limiter::{client_key, AttemptLimiter};
pub use playback::{IssuedToken, PlaybackTokens, Refusal};
pub use signer::{constant_time_eq, load_or_create_key, LinkError, LinkSigner, Signer};

/// Now, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
