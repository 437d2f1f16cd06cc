//! How far behind a client is, measured in time rather than bytes.
//!
//! A client with bytes waiting is expected to drain at least `min_rate` bytes a
//! second. Its *drain clock* starts when bytes start waiting and moves forward by
//! `n / min_rate` seconds for every `n` bytes it takes, but never past the present,
//! so no credit is banked while it keeps up. The *lag* is how far that clock is
//! behind the present: about zero for a reader that keeps up, growing by a second
//! per second for one that has stopped, and almost as fast for one that trickles
//! a byte a second.

use std::time::{Duration, Instant};

/// A client's drain clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    clock: Instant,
    /// Seconds of credit per byte taken: 1 / the minimum drain rate.
    per_byte: f64,
}

impl Progress {
    /// A clock for a client expected to drain `min_rate` bytes a second (at least 1).
    pub(crate) fn new(min_rate: u32, now: Instant) -> Self {
        Self {
            clock: now,
            per_byte: 1.0 / f64::from(min_rate.max(1)),
        }
    }

    /// Bytes started waiting for the client: it is on time now.
    pub(crate) fn restart(&mut self, now: Instant) {
        self.clock = now;
    }

    /// The client took `n` bytes.
    pub(crate) fn drained(&mut self, n: usize, now: Instant) {
        let credit = Duration::from_secs_f64((n as f64 * self.per_byte).min(1e6));
        self.clock = (self.clock + credit).min(now);
    }

    /// How far the client is behind at `now`.
    pub(crate) fn lag(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.clock)
    }

    /// When the lag reaches `lag`, if the client takes nothing more.
    pub(crate) fn lagging_by(&self, lag: Duration) -> Instant {
        self.clock + lag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_stopped_reader_lags_by_the_time_since_it_stopped() {
        let t0 = Instant::now();
        let mut p = Progress::new(8192, t0);
        p.drained(8192, t0 + 500 * MS);
        assert_eq!(p.lag(t0 + 500 * MS), Duration::ZERO);
        assert_eq!(p.lag(t0 + 1500 * MS), 1000 * MS);
        assert_eq!(p.lagging_by(250 * MS), t0 + 750 * MS);
    }

    #[test]
    fn a_reader_at_the_minimum_rate_keeps_up_and_banks_nothing() {
        let t0 = Instant::now();
        let mut p = Progress::new(1000, t0);
        for i in 1..=10 {
            p.drained(100, t0 + 100 * i * MS);
            assert!(p.lag(t0 + 100 * i * MS) < MS, "step {i}");
        }
        // A big read long ago does not excuse a stop now.
        p.drained(1_000_000, t0 + 1000 * MS);
        assert_eq!(p.lag(t0 + 1300 * MS), 300 * MS);
    }

    #[test]
    fn a_trickling_reader_falls_behind_almost_as_fast_as_a_stopped_one() {
        let t0 = Instant::now();
        let mut p = Progress::new(8192, t0);
        for s in 1..=10u64 {
            p.drained(1, t0 + Duration::from_secs(s));
        }
        let lag = p.lag(t0 + Duration::from_secs(10));
        assert!(lag > Duration::from_millis(9990), "{lag:?}");
    }

    #[test]
    fn restart_forgets_the_lag() {
        let t0 = Instant::now();
        let mut p = Progress::new(10, t0);
        p.restart(t0 + Duration::from_secs(5));
        assert_eq!(p.lag(t0 + Duration::from_secs(5)), Duration::ZERO);
    }
}
