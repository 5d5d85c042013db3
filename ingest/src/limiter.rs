//! Failed authentications, limited per token and per address. Pure: the
//! caller passes the time in; nothing here touches a socket or a clock.
//!
//! The rules (`ingest.auth_*`, docs/ingest-protocol.md section 7):
//!
//! - **Per token** (fail2ban's per-credential ban, with growing ban times): a
//!   token that fails `failures_per_token` times within `window` backs off
//!   for `backoff`. While it does, a HELLO presenting it is refused with
//!   `rate_limited` *before* it is looked up. Each failure after a backoff
//!   (until the token's record is forgotten) starts the next one, twice as
//!   long, up to `backoff_max`.
//! - **Per address** (an IPv4 address, or the /64 prefix of an IPv6 one):
//!   `failures_per_address` failures within `window` penalise the address
//!   for a backoff of its own (growing the same way). Tokens from a
//!   penalised address are still looked up; its *failures* are answered
//!   `rate_limited`, and a token failing from it backs off at its first
//!   failure.
//! - **A correct token is never refused** by either rule. Only a token's own
//!   failures back it off (device tokens are random, so a correct token
//!   does not fail), a token that authenticates clears its record, and the
//!   address penalty applies after the token was checked and only to
//!   failures: a phone behind a carrier NAT that an attacker shares still
//!   gets in.
//!
//! Tokens are kept as a hash prefix, never in clear. Each table holds at
//! most `max_tracked` entries: when full, entries whose backoff and window
//! are over are dropped, and failures beyond that are not tracked (they are
//! answered with their own error code).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The limits, from `IngestConfig`'s `auth_*` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failures of one token within `window` before it backs off.
    pub failures_per_token: u32,
    /// Failures from one address within `window` before it is penalised.
    pub failures_per_address: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// The first backoff (token) or penalty (address).
    pub backoff: Duration,
    /// The longest backoff or penalty.
    pub backoff_max: Duration,
    /// Most tokens, and most addresses, tracked at once.
    pub max_tracked: usize,
}

/// A token as the limiter keeps it: the first 16 bytes of its SHA-256.
pub type TokenKey = [u8; 16];

/// The key of a presented token.
pub fn token_key(token: &str) -> TokenKey {
    let d = Sha256::digest(token.as_bytes());
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

/// Where failures are counted: an IPv4 address, or an IPv6 /64 (one
/// subscriber's network; an attacker owns all of it). IPv4-mapped IPv6
/// addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6([u8; 8]),
}

/// The key of a remote address.
pub fn address_key(ip: IpAddr) -> AddressKey {
    match ip {
        IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => AddressKey::V4(v4.octets()),
            None => {
                let mut p = [0u8; 8];
                p.copy_from_slice(&v6.octets()[..8]);
                AddressKey::V6(p)
            }
        },
    }
}

/// Which rule refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The token is backing off.
    Token,
    /// The address is penalised.
    Address,
}

impl Scope {
    /// Metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Token => "token",
            Scope::Address => "address",
        }
    }
}

/// A refusal with `rate_limited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Which rule refused.
    pub scope: Scope,
    /// How long until the rule lets the token (or the address's failures)
    /// through again.
    pub retry_after: Duration,
}

/// Whether a presented token may be looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Look it up.
    Check,
    /// Refuse it without looking it up: it is backing off.
    Refuse(Refusal),
}

/// How to answer a failure, and the backoffs it started (to log once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failure {
    /// `Some`: answer `rate_limited` (the address is penalised); `None`:
    /// answer with the failure's own code (`unauthorized`,
    /// `bad_resume_secret`).
    pub refusal: Option<Refusal>,
    /// This failure made the token back off, for this long.
    pub token_backoff: Option<Duration>,
    /// This failure penalised the address, for this long.
    pub address_penalty: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Record {
    /// Start of the current counting window.
    window_start: Instant,
    /// Failures in the current window.
    failures: u32,
    /// Backing off until then.
    until: Option<Instant>,
    /// Backoffs served so far; the next one lasts `backoff * 2^strikes`.
    strikes: u32,
    /// Last failure.
    last: Instant,
}

impl Record {
    fn new(now: Instant) -> Record {
        Record {
            window_start: now,
            failures: 0,
            until: None,
            strikes: 0,
            last: now,
        }
    }

    /// Time left of the current backoff.
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .filter(|u| *u > now)
            .map(|u| u.duration_since(now))
    }

    /// Count a failure; `Some(length)` when it starts a backoff. A failure
    /// during a backoff neither extends it nor counts toward the next.
    fn fail(
        &mut self,
        now: Instant,
        limit: u32,
        at_once: bool,
        l: &AuthLimits,
    ) -> Option<Duration> {
        self.last = now;
        if self.remaining(now).is_some() {
            return None;
        }
        if now.duration_since(self.window_start) >= l.window {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures < limit.max(1) && self.strikes == 0 && !at_once {
            return None;
        }
        let length = l
            .backoff
            .saturating_mul(1u32 << self.strikes.min(20))
            .min(l.backoff_max);
        self.until = Some(now + length);
        self.strikes = self.strikes.saturating_add(1);
        self.failures = 0;
        self.window_start = now;
        Some(length)
    }

    /// Nothing left to remember: no backoff running, and quiet for a window
    /// (and, after a backoff, for the longest backoff too, so that a
    /// returning offender keeps its strikes).
    fn forgettable(&self, now: Instant, l: &AuthLimits) -> bool {
        let quiet = if self.strikes > 0 {
            l.window + l.backoff_max
        } else {
            l.window
        };
        self.remaining(now).is_none() && now.duration_since(self.last) >= quiet
    }
}

/// A bounded table of records.
#[derive(Debug)]
struct Table<K> {
    records: HashMap<K, Record>,
    last_prune: Option<Instant>,
}

impl<K: std::hash::Hash + Eq + Copy> Table<K> {
    fn new() -> Self {
        Table {
            records: HashMap::new(),
            last_prune: None,
        }
    }

    /// The record of `k`, created if there is room.
    fn entry(&mut self, k: K, now: Instant, l: &AuthLimits) -> Option<&mut Record> {
        if !self.records.contains_key(&k) && self.records.len() >= l.max_tracked {
            // Prune at most once a second: under a flood of new keys the
            // table stays full and the scan would run for every one.
            let due = self
                .last_prune
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
            if due {
                self.last_prune = Some(now);
                self.records.retain(|_, r| !r.forgettable(now, l));
            }
            if self.records.len() >= l.max_tracked {
                return None;
            }
        }
        Some(self.records.entry(k).or_insert_with(|| Record::new(now)))
    }

    fn remaining(&self, k: &K, now: Instant) -> Option<Duration> {
        self.records.get(k).and_then(|r| r.remaining(now))
    }
}

/// Failed authentications per token and per address.
#[derive(Debug)]
pub struct AuthLimiter {
    limits: AuthLimits,
    tokens: Table<TokenKey>,
    addresses: Table<AddressKey>,
}

impl AuthLimiter {
    /// A limiter with nothing recorded.
    pub fn new(limits: AuthLimits) -> AuthLimiter {
        AuthLimiter {
            limits,
            tokens: Table::new(),
            addresses: Table::new(),
        }
    }

    /// Before a token is looked up: refused only while the token itself is
    /// backing off. The address is not consulted here (a correct token from
    /// a penalised address must get in).
    pub fn before_check(&mut self, token: &TokenKey, now: Instant) -> Gate {
        match self.tokens.remaining(token, now) {
            Some(retry_after) => Gate::Refuse(Refusal {
                scope: Scope::Token,
                retry_after,
            }),
            None => Gate::Check,
        }
    }

    /// The token authenticated: forget its failures.
    pub fn succeeded(&mut self, token: &TokenKey) {
        self.tokens.records.remove(token);
    }

    /// The token is unknown (or revoked): count it for the token and the
    /// address.
    pub fn token_failed(&mut self, token: &TokenKey, addr: AddressKey, now: Instant) -> Failure {
        let mut f = self.address_failed(addr, now);
        let l = self.limits;
        let penalised = f.refusal.is_some();
        if let Some(r) = self.tokens.entry(*token, now, &l) {
            f.token_backoff = r.fail(now, l.failures_per_token, penalised, &l);
        }
        f
    }

    /// A failure that is not the token's (a wrong resume secret presented
    /// with a correct token): counted for the address only.
    pub fn address_failed(&mut self, addr: AddressKey, now: Instant) -> Failure {
        let l = self.limits;
        let mut f = Failure::default();
        if let Some(r) = self.addresses.entry(addr, now, &l) {
            f.address_penalty = r.fail(now, l.failures_per_address, false, &l);
            f.refusal = r.remaining(now).map(|retry_after| Refusal {
                scope: Scope::Address,
                retry_after,
            });
        }
        f
    }

    /// Tokens and addresses currently tracked (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        (self.tokens.records.len(), self.addresses.records.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const S: Duration = Duration::from_secs(1);

    fn limits() -> AuthLimits {
        AuthLimits {
            failures_per_token: 5,
            failures_per_address: 30,
            window: 60 * S,
            backoff: 30 * S,
            backoff_max: 900 * S,
            max_tracked: 1000,
        }
    }

    fn ip(last: u8) -> AddressKey {
        address_key(IpAddr::V4(Ipv4Addr::new(203, 0, 113, last)))
    }

    /// The finding: 150 wrong tokens from one address, then a correct
    /// token from the same address (a phone behind the same carrier NAT).
    /// The address is penalised, its failures are answered `rate_limited`,
    /// and the correct token is still looked up and let in.
    #[test]
    fn a_correct_token_behind_a_penalised_address_gets_in() {
        let mut lim = AuthLimiter::new(limits());
        let t0 = Instant::now();
        let nat = ip(7);
        let mut refused = 0;
        let mut penalties = 0;
        for i in 0..150u32 {
            let now = t0 + Duration::from_millis(10 * i as u64);
            let k = token_key(&format!("guess-{i}"));
            assert_eq!(
                lim.before_check(&k, now),
                Gate::Check,
                "a new token is checked"
            );
            let f = lim.token_failed(&k, nat, now);
            refused += usize::from(f.refusal.is_some());
            penalties += usize::from(f.address_penalty.is_some());
        }
        assert_eq!(penalties, 1, "the address is penalised once");
        assert_eq!(refused, 150 - 29, "from the 30th failure on");
        let good = token_key("sc_correct");
        let now = t0 + 2 * S;
        assert_eq!(lim.before_check(&good, now), Gate::Check);
        lim.succeeded(&good);
        // And again and again: success never counts against anything.
        for _ in 0..100 {
            assert_eq!(lim.before_check(&good, now), Gate::Check);
            lim.succeeded(&good);
        }
    }

    /// fail2ban-like per-token backoff: five failures of the same token
    /// back it off; it is refused without a lookup until the backoff ends;
    /// each failure after that doubles the backoff, up to the maximum.
    #[test]
    fn a_failing_token_backs_off_and_each_later_failure_doubles_it() {
        let l = limits();
        let mut lim = AuthLimiter::new(l);
        let t0 = Instant::now();
        let k = token_key("sc_revoked");
        let mut now = t0;
        for i in 1..=5 {
            assert_eq!(lim.before_check(&k, now), Gate::Check, "failure {i}");
            let f = lim.token_failed(&k, ip(1), now);
            assert_eq!(f.refusal, None, "answered unauthorized");
            assert_eq!(f.token_backoff, (i == 5).then_some(30 * S), "failure {i}");
            now += S;
        }
        assert_eq!(
            lim.before_check(&k, now),
            Gate::Refuse(Refusal {
                scope: Scope::Token,
                retry_after: 29 * S
            })
        );
        // Each later failure starts the next backoff at once: 60, 120, ...
        let mut expected = 60 * S;
        for _ in 0..8 {
            now = match lim.before_check(&k, now) {
                Gate::Refuse(r) => now + r.retry_after,
                Gate::Check => now,
            };
            assert_eq!(lim.before_check(&k, now), Gate::Check);
            let f = lim.token_failed(&k, ip(1), now);
            assert_eq!(f.token_backoff, Some(expected));
            expected = (expected * 2).min(l.backoff_max);
        }
        assert_eq!(expected, l.backoff_max);
        // Other tokens from the same address are not affected.
        assert_eq!(lim.before_check(&token_key("sc_other"), now), Gate::Check);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_add_up() {
        let mut lim = AuthLimiter::new(limits());
        let t0 = Instant::now();
        let k = token_key("sc_typo");
        for i in 0..20u64 {
            // Four failures a minute, never five within one window.
            let now = t0 + Duration::from_secs(61 * (i / 4)) + Duration::from_secs(i % 4);
            assert_eq!(lim.before_check(&k, now), Gate::Check, "attempt {i}");
            assert_eq!(lim.token_failed(&k, ip(2), now).token_backoff, None);
        }
    }

    /// A token that authenticates is never backed off, whatever failed
    /// before it from its address, and its own earlier failures are
    /// forgotten.
    #[test]
    fn success_clears_a_token_and_is_never_punished() {
        let mut lim = AuthLimiter::new(limits());
        let now = Instant::now();
        let k = token_key("sc_fat_fingered_then_right");
        for _ in 0..4 {
            lim.token_failed(&k, ip(3), now);
        }
        lim.succeeded(&k);
        // Four more failures would have made nine: not backed off.
        for _ in 0..4 {
            assert_eq!(lim.token_failed(&k, ip(3), now).token_backoff, None);
        }
        assert_eq!(lim.before_check(&k, now), Gate::Check);
    }

    /// From a penalised address a failing token backs off at its first
    /// failure; the penalty ends after its backoff and the next one is
    /// twice as long; other addresses are not affected.
    #[test]
    fn an_address_penalty_ends_and_grows_for_a_returning_offender() {
        let l = limits();
        let mut lim = AuthLimiter::new(l);
        let t0 = Instant::now();
        let a = ip(9);
        for i in 0..30 {
            lim.token_failed(&token_key(&format!("g{i}")), a, t0);
        }
        let f = lim.token_failed(&token_key("fresh"), a, t0);
        assert_eq!(f.refusal.map(|r| r.scope), Some(Scope::Address));
        assert_eq!(f.token_backoff, Some(30 * S), "backs off at once");
        let other = lim.token_failed(&token_key("fresh2"), ip(10), t0);
        assert_eq!(other, Failure::default(), "another address: unauthorized");
        // The penalty is over after 30 s: failures are unauthorized again.
        let later = t0 + 31 * S;
        let f = lim.token_failed(&token_key("after"), a, later);
        // A returning offender: its next failure starts the next penalty.
        assert_eq!(f.address_penalty, Some(60 * S));
        // A wrong resume secret counts for the address, not a token.
        let f = lim.address_failed(a, later + S);
        assert_eq!(f.refusal.map(|r| r.scope), Some(Scope::Address));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a.into()), address_key(b.into()));
        assert_ne!(address_key(a.into()), address_key(c.into()));
        let mapped: Ipv6Addr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(address_key(mapped.into()), ip(7));
    }

    /// The tables stay bounded under a flood of new tokens and addresses;
    /// when full, records that are over are dropped to make room.
    #[test]
    fn the_tables_are_bounded() {
        let l = AuthLimits {
            max_tracked: 100,
            ..limits()
        };
        let mut lim = AuthLimiter::new(l);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let addr = address_key(IpAddr::V4(Ipv4Addr::from(i)));
            lim.token_failed(&token_key(&i.to_string()), addr, t0);
        }
        assert_eq!(lim.tracked(), (100, 100));
        // Once their window is over, old records make room for new ones.
        let later = t0 + l.window + S;
        let k = token_key("new");
        for _ in 0..5 {
            lim.token_failed(&k, ip(200), later);
        }
        assert!(matches!(lim.before_check(&k, later), Gate::Refuse(_)));
        assert!(lim.tracked().0 <= 100);
    }

    #[test]
    fn tokens_are_not_kept_in_clear() {
        let k = token_key("sc_0123456789abcdef");
        assert_ne!(&k[..], &b"sc_0123456789abc"[..]);
        assert_eq!(k, token_key("sc_0123456789abcdef"));
        assert_ne!(k, token_key("sc_0123456789abcdeF"));
    }
}
