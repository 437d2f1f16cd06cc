//! Counting deliveries, losses and order violations, and latency percentiles.

use std::collections::HashMap;

use super::payload::Stamp;

/// What the receivers saw.
#[derive(Debug, Default)]
pub struct Stats {
    /// Bench messages received, summed over receivers.
    pub delivered: u64,
    /// Messages that arrived at or below a number already seen from their sender.
    pub order_violations: u64,
    /// Jumps in the server's broadcast sequence numbers (binary mode only).
    pub seq_gaps: u64,
    /// Frames or lines the receivers could not decode.
    pub decode_errors: u64,
    /// Microseconds from queueing to receipt, one per delivery.
    latencies_us: Vec<u64>,
    /// The highest message number seen, per (receiver, sender).
    last: HashMap<(u32, u32), u64>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// Records a bench message received by `receiver` at `now_us`.
    pub fn record(&mut self, receiver: u32, stamp: Stamp, now_us: u64) {
        self.delivered += 1;
        self.latencies_us.push(now_us.saturating_sub(stamp.sent_us));
        match self.last.insert((receiver, stamp.sender), stamp.seq) {
            Some(prev) if prev >= stamp.seq => self.order_violations += 1,
            _ => {}
        }
    }

    /// The latency percentiles so far (all zero without deliveries).
    pub fn latency(&mut self) -> Latency {
        let l = &mut self.latencies_us;
        if l.is_empty() {
            return Latency::default();
        }
        l.sort_unstable();
        let at = |q: f64| l[((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1];
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: l[l.len() - 1],
        }
    }
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
        let mut s = Stats::default();
        s.record(0, stamp(0, 0, 0), 10);
        s.record(0, stamp(0, 1, 0), 10);
        s.record(1, stamp(0, 0, 0), 10);
        s.record(0, stamp(1, 0, 0), 10);
        assert_eq!(s.order_violations, 0);
        s.record(0, stamp(0, 1, 0), 10);
        s.record(0, stamp(0, 0, 0), 10);
        assert_eq!((s.delivered, s.order_violations), (6, 2));
    }

    #[test]
    fn percentiles() {
        let mut s = Stats::default();
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
}
