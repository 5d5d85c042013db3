//! Failed attempts counted per client, in fixed windows: a pure state
//! machine (time passed in), used where a short secret is typed by people
//! (hand-off codes) so that it cannot be guessed by trying.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most clients remembered; older windows are dropped first.
const MAX_KEYS: usize = 100_000;

/// Failed attempts per key and window.
#[derive(Debug)]
pub struct AttemptLimiter {
    max: u32,
    window: Duration,
    keys: HashMap<String, (Instant, u32)>,
}

impl AttemptLimiter {
    /// At most `max` failures per key in each `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            keys: HashMap::new(),
        }
    }

    /// Whether `key` has used up its failures in the current window.
    pub fn blocked(&mut self, key: &str, now: Instant) -> bool {
        match self.keys.get(key) {
            Some((start, n)) if now.duration_since(*start) < self.window => *n >= self.max,
            _ => false,
        }
    }

    /// Counts a failure of `key`.
    pub fn failed(&mut self, key: &str, now: Instant) {
        if self.keys.len() >= MAX_KEYS {
            let window = self.window;
            self.keys
                .retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let e = self.keys.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

/// The key of a client address: the address itself for IPv4, its /64 for
/// IPv6 (one subscriber's prefix).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = a.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_their_key_until_the_window_ends() {
        let mut l = AttemptLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!l.blocked("a", t0));
            l.failed("a", t0);
        }
        assert!(l.blocked("a", t0 + Duration::from_secs(59)));
        assert!(!l.blocked("b", t0), "another client is not blocked");
        assert!(!l.blocked("a", t0 + Duration::from_secs(60)));
        l.failed("a", t0 + Duration::from_secs(61));
        assert!(!l.blocked("a", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn ipv6_clients_are_counted_by_prefix() {
        let a = client_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = client_key("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(client_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1");
    }
}
