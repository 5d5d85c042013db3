//! Playback tokens for live streams.
//!
//! A live stream (RTSP `rtsp://HOST:PORT/live/{id}` and HLS
//! `/live/{id}/…`) opens only with a playback token for that session, unless
//! the session was shared publicly or tokens are switched off
//! (`live.playback_tokens = false`). A token is
//!
//! ```text
//! {expiry, unix seconds}-{first 32 hex digits of HMAC-SHA256(key, "live|{session_id}|{expiry}")}
//! ```
//!
//! so it is bound to one session, expires, needs no storage and survives a
//! restart (the key is kept in `<data_dir>/playback-key`). Viewers present it
//! as `?token=` in the RTSP or HLS URL, or as `Authorization: Bearer` on
//! heartbeats. Tokens reach
//! viewers through the URLs Sharecast hands out: the phone's live URLs, share
//! pages and messages, resume answers, and
//! `POST /api/v1/live/{id}/playback-tokens` for the owner of the session.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Result;

use crate::signer::Signer;

/// Hex digits of the MAC kept in a token (128 bits).
const MAC_HEX: usize = 32;

/// Decides whether a token opens a session's live stream:
/// `(session_id, token)`.
pub type Authorizer = Arc<dyn Fn(&str, Option<&str>) -> bool + Send + Sync>;

/// A token handed out, with its expiry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedToken {
    /// The token.
    pub token: String,
    /// When it stops opening the stream, ms since the Unix epoch.
    pub expires_unix_ms: i64,
}

/// Why a token does not open a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No token was presented.
    Missing,
    /// Not a token of ours, or for another session.
    Invalid,
    /// A valid token past its expiry.
    Expired,
}

struct Inner {
    signer: Signer,
    required: bool,
    ttl_secs: u64,
    /// Sessions shared publicly, with when the last public share of each
    /// expires (ms since the Unix epoch; `None`: never).
    public: RwLock<HashMap<String, Option<i64>>>,
}

/// Issues and checks playback tokens; cheap to clone.
#[derive(Clone)]
pub struct PlaybackTokens {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PlaybackTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaybackTokens")
            .field("required", &self.inner.required)
            .field("ttl_secs", &self.inner.ttl_secs)
            .finish_non_exhaustive()
    }
}

fn now_unix_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl PlaybackTokens {
    /// Loads (or creates) the key in `<data_dir>/playback-key`. `required`:
    /// whether live streams need a token; `ttl_secs`: lifetime of issued
    /// tokens.
    pub fn load(data_dir: &Path, required: bool, ttl_secs: u64) -> Result<Self> {
        let signer = Signer::load(&data_dir.join("playback-key"))?;
        Ok(Self::with_signer(signer, required, ttl_secs))
    }

    /// Tokens signed by `signer`.
    pub fn with_signer(signer: Signer, required: bool, ttl_secs: u64) -> Self {
        PlaybackTokens {
            inner: Arc::new(Inner {
                signer,
                required,
                ttl_secs: ttl_secs.max(1),
                public: RwLock::default(),
            }),
        }
    }

    /// Whether live streams need a token at all.
    pub fn required(&self) -> bool {
        self.inner.required
    }

    fn mac(&self, session_id: &str, exp: i64) -> String {
        self.inner
            .signer
            .sign(&format!("live|{session_id}|{exp}"), MAC_HEX)
    }

    /// A token for `session_id`, valid for the configured lifetime.
    pub fn issue(&self, session_id: &str) -> IssuedToken {
        self.issue_until(
            session_id,
            now_unix_s().saturating_add(self.inner.ttl_secs as i64),
        )
    }

    fn issue_until(&self, session_id: &str, exp: i64) -> IssuedToken {
        IssuedToken {
            token: format!("{exp}-{}", self.mac(session_id, exp)),
            expires_unix_ms: exp.saturating_mul(1000),
        }
    }

    /// Checks a token against a session (ignores `required` and public
    /// sessions: see [`PlaybackTokens::allows`]).
    pub fn check(&self, session_id: &str, token: Option<&str>) -> Result<(), Refusal> {
        let token = token.filter(|t| !t.is_empty()).ok_or(Refusal::Missing)?;
        let (exp, mac) = token.split_once('-').ok_or(Refusal::Invalid)?;
        let exp: i64 = exp.parse().map_err(|_| Refusal::Invalid)?;
        // Constant-time comparison of the truncated MAC.
        let genuine = mac.len() == MAC_HEX
            && self
                .inner
                .signer
                .verify(&format!("live|{session_id}|{exp}"), mac);
        if !genuine {
            return Err(Refusal::Invalid);
        }
        if exp < now_unix_s() {
            return Err(Refusal::Expired);
        }
        Ok(())
    }

    /// The expiry of a genuine, unexpired token for `session_id`, ms since
    /// the Unix epoch.
    pub fn check_until(&self, session_id: &str, token: Option<&str>) -> Option<i64> {
        self.check(session_id, token).ok()?;
        let exp: i64 = token?.split_once('-')?.0.parse().ok()?;
        Some(exp.saturating_mul(1000))
    }

    /// Whether a viewer presenting `token` may watch `session_id`.
    pub fn allows(&self, session_id: &str, token: Option<&str>) -> bool {
        !self.inner.required || self.is_public(session_id) || self.check(session_id, token).is_ok()
    }

    /// Opens a session's live stream to everyone (a public share) until
    /// `expires_unix_ms` (`None`: until made private). A later expiry of
    /// another public share of the same session extends it.
    pub fn set_public(&self, session_id: &str, expires_unix_ms: Option<i64>) {
        if let Ok(mut p) = self.inner.public.write() {
            let e = p.entry(session_id.to_string()).or_insert(expires_unix_ms);
            *e = match (*e, expires_unix_ms) {
                (None, _) | (_, None) => None,
                (Some(a), Some(b)) => Some(a.max(b)),
            };
        }
    }

    /// Issues a token for `session_id` that expires at the configured
    /// lifetime or at `until_unix_ms`, whichever is first; `None` when
    /// `until_unix_ms` has passed.
    pub fn issue_within(
        &self,
        session_id: &str,
        until_unix_ms: Option<i64>,
    ) -> Option<IssuedToken> {
        let ttl_end = now_unix_s().saturating_add(self.inner.ttl_secs as i64);
        let exp = match until_unix_ms {
            Some(u) => ttl_end.min(u.div_euclid(1000)),
            None => ttl_end,
        };
        (exp >= now_unix_s()).then(|| self.issue_until(session_id, exp))
    }

    /// Closes a session's live stream to viewers without a token again.
    pub fn set_private(&self, session_id: &str) {
        if let Ok(mut p) = self.inner.public.write() {
            p.remove(session_id);
        }
    }

    /// Whether the session is shared publicly now (a public share that has
    /// not expired).
    pub fn is_public(&self, session_id: &str) -> bool {
        self.public_until(session_id).is_some()
    }

    /// When the session's public sharing ends: `None` when it is not public
    /// (or its public shares expired), `Some(None)` when it never ends.
    pub fn public_until(&self, session_id: &str) -> Option<Option<i64>> {
        let until = self.inner.public.read().ok()?.get(session_id).copied()?;
        match until {
            Some(e) if e <= now_unix_s().saturating_mul(1000) => None,
            u => Some(u),
        }
    }

    /// `?token=…` to append to a live URL of `session_id`, or "" when no
    /// token is needed.
    pub fn query(&self, session_id: &str) -> String {
        if !self.inner.required || self.is_public(session_id) {
            return String::new();
        }
        format!("?token={}", self.issue(session_id).token)
    }

    /// The check as a closure for the live relay.
    pub fn authorizer(&self) -> Authorizer {
        let this = self.clone();
        Arc::new(move |id, token| this.allows(id, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(required: bool) -> PlaybackTokens {
        PlaybackTokens::with_signer(Signer::new(vec![7u8; 32]), required, 3600)
    }

    #[test]
    fn issued_tokens_open_their_session_only() {
        let t = tokens(true);
        let issued = t.issue("abc");
        assert!(t.allows("abc", Some(&issued.token)));
        assert_eq!(t.check("abd", Some(&issued.token)), Err(Refusal::Invalid));
        assert!(!t.allows("abd", Some(&issued.token)));
        assert!(issued.expires_unix_ms > now_unix_s() * 1000);
        // URL-safe: digits, '-' and hex.
        assert!(issued
            .token
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-'));
    }

    #[test]
    fn missing_forged_and_expired_tokens_are_refused() {
        let t = tokens(true);
        assert_eq!(t.check("abc", None), Err(Refusal::Missing));
        assert_eq!(t.check("abc", Some("")), Err(Refusal::Missing));
        for bad in [
            "x",
            "123",
            "-",
            "12-zz",
            "99999999999-00000000000000000000000000000000",
        ] {
            assert_eq!(t.check("abc", Some(bad)), Err(Refusal::Invalid), "{bad}");
        }
        // Another key's token for the same session.
        let other =
            PlaybackTokens::with_signer(Signer::new(vec![8u8; 32]), true, 3600).issue("abc");
        assert_eq!(t.check("abc", Some(&other.token)), Err(Refusal::Invalid));
        // A longer expiry with the old MAC.
        let good = t.issue("abc").token;
        let (exp, mac) = good.split_once('-').unwrap();
        let moved = format!("{}-{mac}", exp.parse::<i64>().unwrap() + 1);
        assert_eq!(t.check("abc", Some(&moved)), Err(Refusal::Invalid));
        let old = t.issue_until("abc", now_unix_s() - 10);
        assert_eq!(t.check("abc", Some(&old.token)), Err(Refusal::Expired));
        assert!(!t.allows("abc", Some(&old.token)));
    }

    #[test]
    fn public_sessions_and_disabled_tokens_need_none() {
        let t = tokens(true);
        assert!(!t.allows("abc", None));
        assert!(t.query("abc").starts_with("?token="));
        t.set_public("abc", None);
        assert!(t.allows("abc", None));
        assert_eq!(t.query("abc"), "");
        assert!(!t.allows("other", None));
        t.set_private("abc");
        assert!(!t.allows("abc", None));
        let open = tokens(false);
        assert!(open.allows("abc", None));
        assert_eq!(open.query("abc"), "");
        // The authorizer closure agrees.
        let auth = t.authorizer();
        assert!(!auth("abc", None));
        assert!(auth("abc", Some(&t.issue("abc").token)));
    }

    #[test]
    fn public_sharing_ends_when_its_share_expires() {
        let t = tokens(true);
        let now = now_unix_s() * 1000;
        t.set_public("abc", Some(now - 1));
        assert!(
            !t.allows("abc", None),
            "an expired public share opens nothing"
        );
        assert_eq!(
            t.query("abc").len(),
            "?token=".len() + t.issue("abc").token.len()
        );
        t.set_public("abc", Some(now + 60_000));
        assert!(t.allows("abc", None));
        assert_eq!(t.public_until("abc"), Some(Some(now + 60_000)));
        t.set_public("abc", None);
        assert_eq!(t.public_until("abc"), Some(None));
    }

    #[test]
    fn tokens_issued_within_a_proof_end_with_it() {
        let t = tokens(true);
        let now = now_unix_s() * 1000;
        let within = t.issue_within("abc", Some(now + 10_000)).unwrap();
        assert!(within.expires_unix_ms <= now + 10_000);
        assert_eq!(
            t.check_until("abc", Some(&within.token)),
            Some(within.expires_unix_ms)
        );
        assert!(t.issue_within("abc", Some(now - 5_000)).is_none());
        let full = t.issue_within("abc", None).unwrap();
        assert!(full.expires_unix_ms > now + 3_000_000);
        assert_eq!(t.check_until("abd", Some(&within.token)), None);
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let a = PlaybackTokens::load(dir.path(), true, 60).unwrap();
        let token = a.issue("abc").token;
        let b = PlaybackTokens::load(dir.path(), true, 60).unwrap();
        assert!(b.allows("abc", Some(&token)));
    }
}
