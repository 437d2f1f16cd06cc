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
//! forgotten at once (its outbox releases it when it ends).
//!
//! # Constant time, whatever the number of clients behind
//!
//! A hold ends at most one grace from the moment it is made (a client's hold is its
//! drain clock plus the grace, and that clock is never ahead of the present), so
//! every hold that still matters ends within the next grace. Time is cut into slots
//! of width `W` counted from the pacer's creation, and a ring of `R` cells covers the
//! next `R * W` (the *horizon*, just over one grace). Each cell counts how many
//! clients hold senders until the end of one slot, and says which slot (its absolute
//! number) it counts for; each client's hold is recorded by that slot number.
//!
//! - Going behind, draining and catching up change one entry of the key map and at
//!   most two cells: O(1) however many clients are behind. A cell found counting an
//!   older slot than the one being added counts a slot that is over (older than the
//!   horizon), so it is reset; a client whose slot was reset that way is not counted
//!   in any cell any more, and leaving or moving on leaves the cell alone.
//! - A waiting sender looks at no client: it scans the ring from the slot one
//!   horizon ahead (or the latest slot ever counted, if earlier) back to the present
//!   and stops at the first slot counting a client other than itself (less one if
//!   its own hold is in that slot). That is at most `R` cells, a constant set by the
//!   grace (at most 130), not by the clients; none once every hold has ended.
//!
//! `W` is the grace / 128, but at least 1 ms (so `R` stays at most 130). A hold is
//! rounded *up* to the end of its slot: a sender is never released before the
//! holder's instant, and at most `W` after it (about 2 ms at the default grace of
//! 250 ms; 1 ms for a grace under 128 ms; 0.8% of longer ones).
//!
//! All waiting senders wake together when a client catches up, and each relays at
//! most one read buffer before it waits again, so senders share the room's pace
//! fairly: a flooder cannot hold it, and a quiet sender is not queued behind it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::sys::lock;

/// Longest single wait, so a sender notices a stop or an eviction of its own soon.
const WAIT_SLICE: Duration = Duration::from_millis(50);

/// Slots per grace: the rounding of a hold is at most the grace / `SLOTS_PER_GRACE`.
const SLOTS_PER_GRACE: u64 = 128;

/// Narrowest slot, so a short grace does not make slots of a few microseconds.
const MIN_SLOT: Duration = Duration::from_millis(1);

/// The clients that are behind, and the senders waiting for them.
pub(crate) struct Pacer {
    /// Clients behind now; zero on the fast path.
    behind: AtomicUsize,
    holders: Mutex<Holders>,
    changed: Condvar,
}

/// Until when each behind client holds senders: its slot by key, and per slot of
/// the horizon how many clients hold until its end.
struct Holders {
    /// The slot each behind client holds senders until (perhaps one that is over).
    slot: HashMap<u64, u64>,
    ring: Ring,
}

/// Counts of holds by the slot they end in, for the slots of one horizon.
struct Ring {
    /// Slot 0 ends here; slot `k` ends `k` slot widths later.
    origin: Instant,
    /// Slot width in nanoseconds (at least 1).
    width: u64,
    /// Cell `k % cells.len()` counts for slot `k`; its length is the horizon in slots.
    cells: Box<[RingCell]>,
    /// The latest slot ever counted.
    top: u64,
    /// Cells looked at by `latest_but` so far, to show the bound on its work.
    #[cfg(test)]
    visited: std::cell::Cell<usize>,
}

/// How many clients hold senders until the end of slot `slot`.
#[derive(Debug, Clone, Copy, Default)]
struct RingCell {
    slot: u64,
    count: usize,
}

impl Ring {
    /// A ring made at `origin` whose horizon covers holds of up to `grace` (from
    /// when each is made).
    fn new(grace: Duration, origin: Instant) -> Self {
        let grace = nanos(grace);
        let width = (grace / SLOTS_PER_GRACE).max(nanos(MIN_SLOT)).max(1);
        // A hold made at `now`, in slot `n` (now - origin in [n * width,
        // (n + 1) * width)), ends by now + grace, so in slot n + 1 + ceil(grace /
        // width) at the latest: one horizon of that many slots past `n`.
        let horizon = grace.div_ceil(width) + 1;
        let cells = (0..horizon)
            .map(|slot| RingCell { slot, count: 0 })
            .collect();
        Self {
            origin,
            width,
            cells,
            top: 0,
            #[cfg(test)]
            visited: std::cell::Cell::new(0),
        }
    }

    /// Slots in the horizon (and cells in the ring).
    fn horizon(&self) -> u64 {
        self.cells.len() as u64
    }

    /// The slot whose end is `t` or the first after it (0 before the origin).
    fn slot_ending_by(&self, t: Instant) -> u64 {
        let since = t.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since.div_ceil(u128::from(self.width))).unwrap_or(u64::MAX)
    }

    /// The slot `now` is in: slots up to it have ended, later ones have not.
    fn slot_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / u128::from(self.width)).unwrap_or(u64::MAX)
    }

    /// When slot `slot` ends.
    fn end(&self, slot: u64) -> Instant {
        self.origin + Duration::from_nanos(slot.saturating_mul(self.width))
    }

    fn cell(&mut self, slot: u64) -> &mut RingCell {
        let at = (slot % self.horizon()) as usize;
        &mut self.cells[at]
    }

    /// One more client holds until the end of `slot`. `slot` is at most one horizon
    /// past the present, and so is every slot counted before, so a cell counting an
    /// older slot counts one that is over (it is reset) and a cell counting a newer
    /// one means `slot` is over (nothing to count: it holds nobody).
    fn add(&mut self, slot: u64) {
        let cell = self.cell(slot);
        if cell.slot == slot {
            cell.count += 1;
        } else if cell.slot < slot {
            *cell = RingCell { slot, count: 1 };
        } else {
            return;
        }
        self.top = self.top.max(slot);
    }

    /// A client that held until the end of `slot` no longer does. Its cell counts it
    /// only if it still counts that slot.
    fn remove(&mut self, slot: u64) {
        let cell = self.cell(slot);
        if cell.slot == slot {
            cell.count = cell.count.saturating_sub(1);
        }
    }

    /// The end of the latest slot after `now` counting a client other than the one
    /// holding until the end of `mine` (if any): at most one look per cell.
    /// No slot after `top` has ever been counted: the scan starts there, so when
    /// every hold has ended it looks at no cell at all.
    fn latest_but(&self, mine: Option<u64>, now: Instant) -> Option<Instant> {
        let present = self.slot_at(now);
        let last = present.saturating_add(self.horizon()).min(self.top);
        // The cell of `last`, then each one before it (the ring's index wraps).
        let mut at = (last % self.horizon()) as usize;
        for slot in (present + 1..=last).rev() {
            #[cfg(test)]
            self.visited.set(self.visited.get() + 1);
            let cell = self.cells[at];
            if cell.slot == slot && cell.count > usize::from(mine == Some(slot)) {
                return Some(self.end(slot));
            }
            at = at.checked_sub(1).unwrap_or(self.cells.len() - 1);
        }
        None
    }

    /// Clients counted in slots that have not ended at `now`.
    #[cfg(test)]
    fn counted(&self, now: Instant) -> usize {
        let present = self.slot_at(now);
        self.cells
            .iter()
            .filter(|c| c.slot > present)
            .map(|c| c.count)
            .sum()
    }
}

impl Holders {
    fn new(grace: Duration, origin: Instant) -> Self {
        Self {
            slot: HashMap::new(),
            ring: Ring::new(grace, origin),
        }
    }

    /// Client `key` holds senders until `until`, as of `now`; true if it was not
    /// holding before. A hold past one horizon from `now` (none is: see the module
    /// docs) is cut to the horizon, which ends after now + grace.
    fn hold(&mut self, key: u64, until: Instant, now: Instant) -> bool {
        let latest = self.ring.slot_at(now).saturating_add(self.ring.horizon());
        let slot = self.ring.slot_ending_by(until).min(latest);
        match self.slot.insert(key, slot) {
            Some(old) if old == slot => false,
            Some(old) => {
                self.ring.remove(old);
                self.ring.add(slot);
                false
            }
            None => {
                self.ring.add(slot);
                true
            }
        }
    }

    /// Client `key` holds nobody any more; true if it held before.
    fn release(&mut self, key: u64) -> bool {
        let Some(old) = self.slot.remove(&key) else {
            return false;
        };
        self.ring.remove(old);
        true
    }

    /// The latest instant until which a client other than `me` holds senders, if
    /// that is after `now`: the end of its slot, at most one slot width after it.
    fn latest_but(&self, me: u64, now: Instant) -> Option<Instant> {
        self.ring.latest_but(self.slot.get(&me).copied(), now)
    }
}

impl Pacer {
    /// A pacer for clients that hold senders for at most `grace` at a time (the
    /// `--pace-grace-ms` setting).
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            behind: AtomicUsize::new(0),
            holders: Mutex::new(Holders::new(grace, Instant::now())),
            changed: Condvar::new(),
        }
    }

    /// Client `key` is behind and holds senders until `until` unless it drains more:
    /// called when it goes behind and each time it drains while behind.
    pub(super) fn hold(&self, key: u64, until: Instant) {
        let mut h = lock(&self.holders);
        // Read under the lock, so holds and waits see the present in one order.
        if h.hold(key, until, Instant::now()) {
            self.behind.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Client `key` caught up, was dropped or left: it holds nobody any more.
    pub(super) fn release(&self, key: u64) {
        let mut h = lock(&self.holders);
        if h.release(key) {
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

    /// How much later than its holder's instant a hold may end (the slot width).
    #[cfg(test)]
    pub(crate) fn rounding(&self) -> Duration {
        Duration::from_nanos(lock(&self.holders).ring.width)
    }
}

/// Nanoseconds in `d`, saturated (a grace is at most a minute).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A grace whose slots are 2 ms wide (and 129 of them).
    const GRACE: Duration = Duration::from_millis(256);

    /// Holders made at `t0` for a grace of `GRACE`, and its slot width.
    fn holders(t0: Instant) -> (Holders, Duration) {
        let h = Holders::new(GRACE, t0);
        let width = Duration::from_nanos(h.ring.width);
        assert_eq!(width, 2 * MS);
        assert_eq!(h.ring.horizon(), 129);
        (h, width)
    }

    /// `got` is `want` rounded up by less than one slot `width`.
    fn rounded_up(got: Option<Instant>, want: Instant, width: Duration) -> bool {
        got.is_some_and(|got| got >= want && got < want + width)
    }

    #[test]
    fn a_sender_is_held_by_the_latest_other_holder_never_by_itself() {
        let pacer = Pacer::new(Duration::from_secs(1));
        // Holds end at the end of their slot: never before their instant, and less
        // than one slot width after it.
        let w = pacer.rounding();
        assert_eq!(w, Duration::from_nanos(1_000_000_000 / 128));
        let t0 = Instant::now();
        let held = |me, now| pacer.held_for(me, now);
        pacer.hold(1, t0 + 300 * MS);
        pacer.hold(2, t0 + 100 * MS);
        assert!(rounded_up(held(3, t0), t0 + 300 * MS, w));
        assert!(rounded_up(held(1, t0), t0 + 100 * MS, w));
        assert!(rounded_up(held(2, t0), t0 + 300 * MS, w));
        // Client 2 drains: its hold moves on, and replaces the old one.
        pacer.hold(2, t0 + 500 * MS);
        assert_eq!(pacer.behind(), 2);
        assert!(rounded_up(held(1, t0), t0 + 500 * MS, w));
        assert!(rounded_up(held(2, t0), t0 + 300 * MS, w));
        // Past every hold (and its rounding), nobody is held, though both are
        // still behind; just before the last hold's instant, somebody is.
        assert!(
            held(3, t0 + 500 * MS - MS / 1000).is_some(),
            "released early"
        );
        assert_eq!(held(3, t0 + 500 * MS + w), None);
        pacer.release(2);
        pacer.release(2);
        assert_eq!(pacer.behind(), 1);
        assert_eq!(held(1, t0), None, "held by itself");
        pacer.release(1);
        assert_eq!(pacer.behind(), 0);
        assert_eq!(held(3, t0), None);
    }

    #[test]
    fn a_slot_reused_after_a_horizon_forgets_its_stale_holder_and_counts_right() {
        let t0 = Instant::now();
        let (mut h, w) = holders(t0);
        let horizon = w * 129;
        // Client 1 holds until the end of slot 10; the hold runs out, and the
        // client stays behind without draining (it does not move its hold).
        assert!(h.hold(1, t0 + 10 * w, t0));
        assert_eq!(h.ring.counted(t0), 1);
        // One horizon later, client 2 holds until the end of slot 10 + 129, which
        // has the same cell: the stale count is discarded.
        let later = t0 + horizon;
        assert!(h.hold(2, t0 + 10 * w + horizon, later));
        assert_eq!(h.ring.counted(later), 1);
        assert_eq!(h.latest_but(3, later), Some(t0 + 10 * w + horizon));
        assert_eq!(h.latest_but(2, later), None, "the stale hold still counts");
        // The stale client leaves: the cell is now client 2's and stays so.
        assert!(h.release(1));
        assert_eq!(h.ring.counted(later), 1);
        assert_eq!(h.latest_but(3, later), Some(t0 + 10 * w + horizon));
        // A hold made in the past (its slot's cell now counts a later slot) is
        // counted nowhere, and its release takes nothing from client 2's cell.
        assert!(h.hold(4, t0 + 10 * w, later));
        assert_eq!(h.ring.counted(later), 1);
        assert_eq!(h.latest_but(2, later), None, "a past hold holds");
        assert!(h.release(4));
        assert_eq!(h.latest_but(3, later), Some(t0 + 10 * w + horizon));
        // A stale client that drains again moves into the live horizon.
        assert!(h.hold(5, t0 + 20 * w, t0));
        assert!(!h.hold(5, later + 50 * w, later));
        assert_eq!(h.ring.counted(later), 2);
        assert_eq!(h.latest_but(2, later), Some(later + 50 * w));
        assert!(h.release(2));
        assert!(h.release(5));
        assert!(!h.release(5));
        assert_eq!(h.ring.counted(later), 0);
        assert_eq!(h.latest_but(3, later), None);
        assert!(h.slot.is_empty());
    }

    #[test]
    fn a_holder_at_the_horizon_holds_and_shares_no_cell_with_the_next_slot() {
        // The present is inside a slot, not on its edge.
        let t0 = Instant::now();
        let (mut h, w) = holders(t0);
        let now = t0 + 1000 * w + w / 2;
        // The shortest hold, in the next slot, and the longest: a full grace.
        assert!(h.hold(1, now + MS / 10, now));
        assert!(h.hold(2, now + GRACE, now));
        assert!(rounded_up(h.latest_but(1, now), now + GRACE, w));
        assert_eq!(h.latest_but(2, now), Some(t0 + 1001 * w));
        assert_eq!(h.ring.counted(now), 2);
        // Releasing the longest leaves the shortest counted.
        assert!(h.release(2));
        assert_eq!(h.latest_but(3, now), Some(t0 + 1001 * w));
        // A hold past the horizon (none is made) is cut to the horizon, which still
        // ends after a full grace.
        assert!(h.hold(3, now + 10 * GRACE, now));
        let until = h.latest_but(1, now).expect("held");
        assert!(until >= now + GRACE && until < now + GRACE + 2 * w);
        assert!(h.release(1) && h.release(3));
        assert_eq!(h.ring.counted(now), 0);
    }

    #[test]
    fn ten_thousand_clients_going_behind_and_catching_up_leave_nobody_held() {
        const N: u64 = 10_000;
        let pacer = Pacer::new(Duration::from_millis(250));
        let started = Instant::now();
        for key in 0..N {
            pacer.hold(key, Instant::now() + (key % 250) as u32 * MS);
        }
        assert_eq!(pacer.behind(), N as usize);
        for key in 0..N {
            // Each drains once, then catches up.
            pacer.hold(key, Instant::now() + 250 * MS);
            pacer.release(key);
        }
        eprintln!(
            "{N} clients behind, drained and caught up in {:?}",
            started.elapsed()
        );
        assert_eq!(pacer.behind(), 0);
        assert_eq!(pacer.held_for(N, Instant::now()), None);
        let h = lock(&pacer.holders);
        assert!(h.slot.is_empty());
        assert!(
            h.ring.cells.iter().all(|c| c.count == 0),
            "counts left over"
        );
    }

    #[test]
    fn a_waiting_sender_looks_at_no_more_cells_than_the_ring_has_with_any_number_behind() {
        let t0 = Instant::now();
        for n in [10, 10_000] {
            let (mut h, w) = holders(t0);
            let ring = h.ring.cells.len();
            // Inside a slot, so that a hold for the grace reaches the horizon.
            let now = t0 + 10 * w + w / 2;
            // Every client holds until the next slot, the last one looked at, and
            // one that held until the horizon has caught up.
            for key in 0..n {
                h.hold(key, now + MS / 2, now);
            }
            h.hold(n, now + GRACE, now);
            h.release(n);
            // Looking for a holder other than one client (found) or past the holds
            // (none found): each visits every cell once, at most.
            h.ring.visited.set(0);
            assert!(h.latest_but(0, now).is_some());
            assert_eq!(h.ring.visited.get(), ring, "with {n} behind");
            h.ring.visited.set(0);
            assert!(h.latest_but(0, now + w).is_none());
            assert!(h.ring.visited.get() <= ring, "with {n} behind");
            // Once every hold has ended, none is looked at.
            h.ring.visited.set(0);
            assert!(h.latest_but(0, now + GRACE + w).is_none());
            assert_eq!(h.ring.visited.get(), 0, "with {n} behind");
        }
    }
}
