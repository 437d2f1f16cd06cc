//! Counting deliveries, losses and order violations, and latency percentiles.
//!
//! Recording a delivery costs a few array updates and no allocation: the last number
//! seen per (receiver, sender) is a flat table, and latencies go into an HDR
//! histogram (exact up to 2,048 µs, within 0.1% above) instead of a list that would
//! grow by millions of entries. Recording into it costs about what the hand-made
//! histogram it replaced did (6.5-8.3 ns against 9.0-12.9 ns per record, 50 M
//! records on the development machine).

use hdrhistogram::Histogram;

use super::payload::Stamp;

/// Significant decimal digits the latency histogram keeps.
const SIGNIFICANT_DIGITS: u8 = 3;
/// The longest latency told apart, in microseconds (one hour); longer ones count as
/// this long.
const LONGEST_US: u64 = 3_600_000_000;

/// What the receivers saw.
#[derive(Debug)]
pub struct Stats {
    /// Bench messages received, summed over receivers.
    pub delivered: u64,
    /// Messages that arrived at or below a number already seen from their sender.
    pub order_violations: u64,
    /// Jumps in the server's broadcast sequence numbers (binary mode only).
    pub seq_gaps: u64,
    /// Frames or lines the receivers could not decode.
    pub decode_errors: u64,
    /// Commands the server answered with an error (Redis pub/sub: PUBLISH refused).
    pub refused: u64,
    /// Deliveries per sender, summed over receivers: what flow control releases.
    pub per_sender: Vec<u64>,
    senders: usize,
    /// One more than the highest message number seen, per (receiver, sender); 0 for none.
    next: Vec<u64>,
    /// Latencies in microseconds.
    histogram: Histogram<u64>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Stats {
    /// Empty statistics for `receivers` receivers of `senders` senders.
    pub fn new(receivers: usize, senders: usize) -> Self {
        Self {
            delivered: 0,
            order_violations: 0,
            seq_gaps: 0,
            decode_errors: 0,
            refused: 0,
            per_sender: vec![0; senders],
            senders,
            next: vec![0; receivers * senders],
            histogram: latency_histogram(),
        }
    }

    /// Records a bench message received by `receiver` at `now_us`. A stamp naming
    /// a sender or receiver out of range is not the bench's and is ignored.
    pub fn record(&mut self, receiver: u32, stamp: Stamp, now_us: u64) {
        let sender = stamp.sender as usize;
        let at = receiver as usize * self.senders + sender;
        if sender >= self.senders || at >= self.next.len() {
            return;
        }
        self.delivered += 1;
        self.per_sender[sender] += 1;
        self.histogram
            .saturating_record(now_us.saturating_sub(stamp.sent_us));
        if self.next[at] > stamp.seq {
            self.order_violations += 1;
        } else {
            self.next[at] = stamp.seq + 1;
        }
    }

    /// The latency percentiles so far (all zero without deliveries).
    pub fn latency(&self) -> Latency {
        Latency::of(&self.histogram)
    }
}

impl Latency {
    /// The percentiles of `histogram` (all zero when it is empty).
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50: histogram.value_at_quantile(0.50),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants within what the crate accepts; a failure is a bug here.
    Histogram::new_with_bounds(1, LONGEST_US, SIGNIFICANT_DIGITS)
        .unwrap_or_else(|e| unreachable!("latency histogram bounds: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(sender: u32, seq: u64, sent_us: u64) -> Stamp {
        Stamp {
            run: 1,
            sender,
            seq,
            sent_us,
        }
    }

    #[test]
    fn order_is_checked_per_receiver_and_sender() {
        let mut s = Stats::new(2, 2);
        s.record(0, stamp(0, 0, 0), 10);
        s.record(0, stamp(0, 1, 0), 10);
        s.record(1, stamp(0, 0, 0), 10);
        s.record(0, stamp(1, 0, 0), 10);
        assert_eq!(s.order_violations, 0);
        s.record(0, stamp(0, 1, 0), 10);
        s.record(0, stamp(0, 0, 0), 10);
        assert_eq!((s.delivered, s.order_violations), (6, 2));
        assert_eq!(s.per_sender, [5, 1]);
        s.record(0, stamp(2, 0, 0), 10);
        s.record(2, stamp(0, 0, 0), 10);
        assert_eq!(s.delivered, 6, "out-of-range stamps are not counted");
    }

    #[test]
    fn percentiles() {
        let mut s = Stats::new(1, 1);
        assert_eq!(s.latency(), Latency::default());
        for i in 1..=1000 {
            s.record(0, stamp(0, i, 0), i);
        }
        assert_eq!(
            s.latency(),
            Latency {
                p50: 500,
                p99: 990,
                p999: 999,
                max: 1000
            }
        );
    }

    #[test]
    fn large_latencies_keep_their_magnitude() {
        for us in [2_047, 2_049, 12_345, 987_654, 3_000_000_000] {
            let mut s = Stats::new(1, 1);
            s.record(0, stamp(0, 0, 0), us);
            let l = s.latency();
            assert!(l.p50.abs_diff(us) <= us / 1000, "{us} -> {l:?}");
        }
        let mut s = Stats::new(1, 1);
        s.record(0, stamp(0, 0, 0), u64::MAX);
        assert!(s.latency().max >= LONGEST_US, "{:?}", s.latency());
    }
}
