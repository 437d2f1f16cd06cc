//! The per-client rate limit: a token bucket of messages. When it runs dry the
//! reader sleeps instead of reading, so the sender is slowed by TCP, never dropped.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use crate::outbox::Outbox;

/// A token bucket refilled at `per_sec` messages a second, holding one second's worth.
pub(crate) struct Throttle {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    /// A full bucket for `rate` messages a second.
    pub(crate) fn new(rate: NonZeroU32) -> Self {
        let per_sec = f64::from(rate.get());
        Self {
            per_sec,
            tokens: per_sec,
            last: Instant::now(),
        }
    }

    /// Takes `n` tokens and returns how long the reader must wait before reading
    /// again (zero while the bucket is not in debt).
    pub(crate) fn take(&mut self, n: usize, now: Instant) -> Duration {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.per_sec) - n as f64;
        self.last = now;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / self.per_sec)
    }

    /// Takes `n` tokens, sleeping while in debt; the sleep ends early when `outbox`
    /// ends, so a closing connection is not held up.
    pub(crate) fn pause(&mut self, n: usize, outbox: &Outbox) {
        let now = Instant::now();
        let until = now + self.take(n, now);
        while Instant::now() < until && outbox.ended().is_none() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_messages_is_free_then_each_costs_its_share_of_a_second() {
        let rate = NonZeroU32::new(10).unwrap();
        let start = Instant::now();
        let mut t = Throttle::new(rate);
        t.last = start;
        assert_eq!(t.take(10, start), Duration::ZERO);
        let debt = t.take(5, start);
        assert!((debt.as_secs_f64() - 0.5).abs() < 1e-9, "{debt:?}");
        // Half a second later the debt is paid; a tenth later there is one token.
        let later = start + Duration::from_millis(600);
        assert_eq!(t.take(1, later), Duration::ZERO);
        assert!(t.take(1, later) > Duration::ZERO);
    }
}
