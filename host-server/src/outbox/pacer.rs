//! Pacing senders to their readers.
//!
//! A client with more than its pace mark waiting is *behind*. While a behind client
//! is still draining (its lag, see `progress`, is under the grace), every sender
//! waits before reading more from its own socket, so TCP slows the senders down and
//! the room moves at the pace of its readers instead of queueing a flood for them.
//! A client that has stopped, or trickles, stops holding anyone back once its lag
//! passes the grace; it is then dropped when its queue passes the hard limit or its
//! lag passes the stall timeout.
//!
//! The pacer knows the behind clients only by key and by the instant until which
//! each holds senders back, which its outbox moves on (under its own lock) each time
//! it drains. It holds no reference to any outbox, so a client that leaves is
//! forgotten at once (its outbox releases it when it ends). Going behind, draining
//! and catching up cost O(log n) in the n clients behind; a waiting sender looks at
//! the latest holder only.
//!
//! All waiting senders wake together when a client catches up, and each relays at
//! most one read buffer before it waits again, so senders share the room's pace
//! fairly: a flooder cannot hold it, and a quiet sender is not queued behind it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sys::lock;

/// Longest single wait, so a sender notices a stop or an eviction of its own soon.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// The clients that are behind, and the senders waiting for them.
#[derive(Default)]
pub(crate) struct Pacer {
    /// Clients behind now; zero on the fast path.
    behind: AtomicUsize,
    holders: Mutex<Holders>,
    changed: Condvar,
}

/// Until when each behind client holds senders, by key and in order of that instant.
#[derive(Default)]
struct Holders {
    until: HashMap<u64, Instant>,
    order: BTreeSet<(Instant, u64)>,
}

impl Holders {
    /// The latest instant until which a client other than `me` holds senders, if
    /// that is after `now`.
    fn latest_but(&self, me: u64, now: Instant) -> Option<Instant> {
        let (until, _) = self.order.iter().rev().find(|(_, key)| *key != me)?;
        (*until > now).then_some(*until)
    }
}

impl Pacer {
    /// Client `key` is behind and holds senders until `until` unless it drains more:
    /// called when it goes behind and each time it drains while behind.
    pub(super) fn hold(&self, key: u64, until: Instant) {
        let mut h = lock(&self.holders);
        match h.until.insert(key, until) {
            Some(old) => {
                h.order.remove(&(old, key));
            }
            None => {
                self.behind.fetch_add(1, Ordering::AcqRel);
            }
        }
        h.order.insert((until, key));
    }

    /// Client `key` caught up, was dropped or left: it holds nobody any more.
    pub(super) fn release(&self, key: u64) {
        let mut h = lock(&self.holders);
        if let Some(old) = h.until.remove(&key) {
            h.order.remove(&(old, key));
            self.behind.fetch_sub(1, Ordering::AcqRel);
            self.changed.notify_all();
        }
    }

    /// Waits while some client other than the sender `me` (its outbox's key) is
    /// behind and still draining, or until `give_up` says the sender has other
    /// things to do (it is leaving).
    pub(crate) fn wait(&self, me: u64, give_up: impl Fn() -> bool) {
        if self.behind.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut h = lock(&self.holders);
        loop {
            let now = Instant::now();
            let Some(until) = h.latest_but(me, now) else {
                return;
            };
            if give_up() {
                return;
            }
            // Woken when some client catches up, or when the holder's grace runs out.
            let left = until.saturating_duration_since(now).min(WAIT_SLICE);
            h = match self.changed.wait_timeout(h, left) {
                Ok((h, _)) => h,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Until when a client other than `me` holds senders back, as of `now`.
    #[cfg(test)]
    pub(crate) fn held_for(&self, me: u64, now: Instant) -> Option<Instant> {
        lock(&self.holders).latest_but(me, now)
    }

    /// How many clients are behind now.
    #[cfg(test)]
    pub(crate) fn behind(&self) -> usize {
        self.behind.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_sender_is_held_by_the_latest_other_holder_never_by_itself() {
        let pacer = Pacer::default();
        let t0 = Instant::now();
        pacer.hold(1, t0 + 300 * MS);
        pacer.hold(2, t0 + 100 * MS);
        assert_eq!(pacer.held_for(3, t0), Some(t0 + 300 * MS));
        assert_eq!(pacer.held_for(1, t0), Some(t0 + 100 * MS));
        assert_eq!(pacer.held_for(2, t0), Some(t0 + 300 * MS));
        // Client 2 drains: its hold moves on, and replaces the old one.
        pacer.hold(2, t0 + 500 * MS);
        assert_eq!(pacer.behind(), 2);
        assert_eq!(pacer.held_for(1, t0), Some(t0 + 500 * MS));
        assert_eq!(pacer.held_for(2, t0), Some(t0 + 300 * MS));
        // Past every hold, nobody is held, though both are still behind.
        assert_eq!(pacer.held_for(3, t0 + 500 * MS), None);
        pacer.release(2);
        pacer.release(2);
        assert_eq!(pacer.behind(), 1);
        assert_eq!(pacer.held_for(1, t0), None, "held by itself");
        pacer.release(1);
        assert_eq!(pacer.behind(), 0);
        assert_eq!(pacer.held_for(3, t0), None);
    }
}
