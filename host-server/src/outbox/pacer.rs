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
//! All waiting senders wake together when a client catches up, and each relays at
//! most one read buffer before it waits again, so senders share the room's pace
//! fairly: a flooder cannot hold it, and a quiet sender is not queued behind it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Outbox;
use crate::sys::lock;

/// Longest single wait, so a sender notices a stop or an eviction of its own soon.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// The clients that are behind, and the senders waiting for them.
#[derive(Default)]
pub(crate) struct Pacer {
    /// Outboxes over their pace mark now; zero on the fast path.
    behind: AtomicUsize,
    /// Those outboxes (and perhaps some that caught up since), by client id.
    list: Mutex<Vec<(u64, Arc<Outbox>)>>,
    changed: Condvar,
}

impl Pacer {
    /// An outbox went over its mark (called under its lock).
    pub(super) fn went_behind(&self) {
        self.behind.fetch_add(1, Ordering::AcqRel);
    }

    /// An outbox came back under its mark or ended (called after its lock is released).
    pub(super) fn caught_up(&self) {
        self.behind.fetch_sub(1, Ordering::AcqRel);
        let _guard = lock(&self.list);
        self.changed.notify_all();
    }

    /// Remembers client `id`, whose outbox just went behind, so senders can wait for it.
    pub(crate) fn watch(&self, id: u64, outbox: &Arc<Outbox>) {
        let mut list = lock(&self.list);
        if !list.iter().any(|(i, _)| *i == id) {
            list.push((id, outbox.clone()));
        }
    }

    /// Waits while some client other than `me` is behind and still draining, or
    /// until `give_up` says the sender has other things to do (it is leaving).
    pub(crate) fn wait(&self, me: u64, give_up: impl Fn() -> bool) {
        if self.behind.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut list = lock(&self.list);
        loop {
            let now = Instant::now();
            list.retain(|(_, outbox)| outbox.is_behind());
            let until = list
                .iter()
                .filter(|(id, _)| *id != me)
                .filter_map(|(_, outbox)| outbox.holds_until(now))
                .min();
            let Some(until) = until else {
                return;
            };
            if give_up() {
                return;
            }
            // Woken when some client catches up, or when the first holder's grace
            // runs out.
            let left = until.saturating_duration_since(now).min(WAIT_SLICE);
            list = match self.changed.wait_timeout(list, left) {
                Ok((list, _)) => list,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// How many outboxes are behind now.
    #[cfg(test)]
    pub(crate) fn behind(&self) -> usize {
        self.behind.load(Ordering::Acquire)
    }
}
