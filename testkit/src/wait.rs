//! Polling with a deadline: the one way the tests wait for something to
//! happen.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How long [`wait_until`], [`wait_until_ok`] and [`poll_until`] sleep between two looks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `probe` every [`POLL_INTERVAL`] until it answers `Some`, and
/// returns that; panics with "timed out after … waiting for `what`" once
/// `timeout` has passed. The deadline only stops a hang: no test asserts
/// how fast anything happens.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_until_ok(what, timeout, || probe().ok_or("(nothing yet)"))
}

/// Calls `probe` every [`POLL_INTERVAL`] until it answers `Some` or
/// `timeout` has passed; `None` then. For a wait whose end is checked by the
/// assertions that follow it.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`wait_until`], for a probe that says what it saw while it waits:
/// `Ok` ends the wait, `Err(seen)` goes on, and the last `seen` is in the
/// panic message when time is up.
pub fn wait_until_ok<T, E: Display>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match probe() {
            Ok(v) => return v,
            Err(seen) => seen,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {seen}"
        );
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_answer() {
        let mut n = 0;
        let got = wait_until("n to reach 3", Duration::from_secs(10), || {
            n += 1;
            (n == 3).then_some(n * 10)
        });
        assert_eq!(got, 30);
    }

    #[test]
    fn poll_until_gives_up_quietly() {
        assert_eq!(poll_until(Duration::ZERO, || None::<u8>), None);
        assert_eq!(poll_until(Duration::ZERO, || Some(1)), Some(1));
    }

    #[test]
    #[should_panic(expected = "waiting for the moon; last seen: cheese")]
    fn names_what_never_happened_and_what_was_seen() {
        wait_until_ok::<(), _>("the moon", Duration::ZERO, || Err("cheese"));
    }
}
