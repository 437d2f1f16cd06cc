//! What each sender is owed while its messages travel through the backplane, with no
//! I/O, so every path is tested here.
//!
//! Every batch a session hands over is tracked from the moment it is queued until its
//! sender has been answered for good: an Ack per message once this server's reader
//! delivered it (binary clients), or a notice that it was not delivered. Redis may be
//! slow to say which (stopped, unreachable, a reply lost), so a batch not answered
//! within `append_timeout` is answered for now: not delivered when that is certain (it
//! never left the queue, and is then taken out of it), delayed otherwise (it was sent
//! and its fate is unknown until Redis answers).
//!
//! A Pong follows the answers to every message its client sent before the Ping
//! (PROTOCOL.md section 3.4): it waits here until they are given.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys::lock;

/// Where a batch is on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the writer.
    Queued,
    /// Sent to Redis at least once: it may have been appended.
    Sent,
    /// Appended: its last message has this sequence number; answered once the reader
    /// delivered it (the Acks are then queued).
    Appended(u64),
}

#[derive(Debug)]
struct Tracked {
    ticket: u64,
    client: u64,
    count: usize,
    since: Instant,
    state: State,
    /// The append call it went out in, and where its first message is in the call,
    /// once sent: the reader recognises its messages by them.
    place: Option<(u64, usize)>,
    /// How many of its messages the reader delivered.
    done: usize,
    /// Its sender was told it is delayed.
    told: bool,
}

#[derive(Debug)]
struct Pong {
    client: u64,
    /// Waits for the answers to the client's batches up to this ticket.
    after: u64,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// In ticket order.
    batches: VecDeque<Tracked>,
    /// The highest sequence number this server's reader delivered.
    delivered: u64,
    pongs: Vec<Pong>,
    /// Batches answered since the last [`Inner::owed`].
    owed: Owed,
}

/// Pongs that may wait at once; past this a Pong is sent at once, which is what a
/// client sending pings by the thousand while Redis is stopped gets.
const MAX_PONGS: usize = 4096;

/// What is owed to whom, for the caller to send (outside the tracker's lock) in this
/// order: the notices first, then the Pongs they let go.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Owed {
    /// (client, messages) never sent and now past their time: not delivered.
    pub(crate) refused: Vec<(u64, usize)>,
    /// (client, messages) sent and not answered in time: delayed.
    pub(crate) delayed: Vec<(u64, usize)>,
    /// (client, messages) told delayed and now delivered.
    pub(crate) late: Vec<(u64, usize)>,
    /// (client, messages) sent whose fate cannot be known any more.
    pub(crate) unknown: Vec<(u64, usize)>,
    /// (client, bytes) of Pongs now free to go.
    pub(crate) pongs: Vec<(u64, Vec<u8>)>,
}

/// The batches on their way and the Pongs waiting for them.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    inner: Mutex<Inner>,
}

/// Adds `n` messages of `client` to the (client, count) list `to`.
fn add(to: &mut Vec<(u64, usize)>, client: u64, n: usize) {
    match to.iter_mut().find(|(c, _)| *c == client) {
        Some((_, have)) => *have += n,
        None => to.push((client, n)),
    }
}

impl Inner {
    fn find(&mut self, ticket: u64) -> Option<usize> {
        // In ticket order: a flood can queue thousands.
        self.batches
            .binary_search_by_key(&ticket, |b| b.ticket)
            .ok()
    }

    /// Batch `i` was delivered: it is answered (a sender told it was delayed is owed
    /// word of its delivery).
    fn done(&mut self, i: usize) {
        if let Some(b) = self.batches.remove(i) {
            if b.told {
                add(&mut self.owed.late, b.client, b.count);
            }
        }
    }

    /// What was answered since last time, with the Pongs no unanswered batch holds
    /// back any more.
    fn owed(&mut self) -> Owed {
        let batches = &self.batches;
        let free = |p: &Pong| {
            !batches
                .iter()
                .any(|b| b.client == p.client && b.ticket <= p.after && !b.told)
        };
        let mut i = 0;
        while i < self.pongs.len() {
            if free(&self.pongs[i]) {
                let p = self.pongs.remove(i);
                self.owed.pongs.push((p.client, p.bytes));
            } else {
                i += 1;
            }
        }
        std::mem::take(&mut self.owed)
    }
}

impl Tracker {
    /// Tracks `count` messages of `client` queued at `now`; returns the batch's ticket.
    pub(crate) fn register(&self, client: u64, count: usize, now: Instant) -> u64 {
        let mut inner = lock(&self.inner);
        inner.next += 1;
        let ticket = inner.next;
        inner.batches.push_back(Tracked {
            ticket,
            client,
            count,
            since: now,
            state: State::Queued,
            place: None,
            done: 0,
            told: false,
        });
        ticket
    }

    /// True while batch `ticket` is not answered for good (the writer may still send
    /// it, or is sending it).
    pub(crate) fn is_waiting(&self, ticket: u64) -> bool {
        lock(&self.inner).find(ticket).is_some()
    }

    /// The writer is about to send batch `ticket` in call number `call`, its first
    /// message at `offset` in the call: false if it must not, because the batch was
    /// answered already (refused as too old while it waited).
    pub(crate) fn claim(&self, ticket: u64, call: u64, offset: usize) -> bool {
        let mut inner = lock(&self.inner);
        let Some(i) = inner.find(ticket) else {
            return false;
        };
        let b = &mut inner.batches[i];
        if b.state == State::Queued {
            b.state = State::Sent;
        }
        b.place = Some((call, offset));
        true
    }

    /// Answers for now the batches not answered within `timeout` of being queued.
    pub(crate) fn expire(&self, now: Instant, timeout: Duration) -> Owed {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        let owed = &mut inner.owed;
        inner.batches.retain_mut(|b| {
            if now.saturating_duration_since(b.since) < timeout || b.told {
                return true;
            }
            match b.state {
                State::Queued => {
                    add(&mut owed.refused, b.client, b.count);
                    false
                }
                State::Sent => {
                    b.told = true;
                    add(&mut owed.delayed, b.client, b.count);
                    true
                }
                // Appended: its Acks are on their way from the reader.
                State::Appended(_) => true,
            }
        });
        inner.owed()
    }

    /// Batch `ticket` was appended (its last message numbered `last`), or, with
    /// `None`, will never be (the caller tells its sender). Returns what that lets go.
    pub(crate) fn settle(&self, ticket: u64, last: Option<u64>) -> Owed {
        let mut inner = lock(&self.inner);
        if let Some(i) = inner.find(ticket) {
            match last {
                Some(last) if last > inner.delivered => {
                    inner.batches[i].state = State::Appended(last);
                }
                Some(_) => inner.done(i),
                None => {
                    inner.batches.remove(i);
                }
            }
        }
        inner.owed()
    }

    /// The reader delivered everything up to `seq` (and queued the Acks), among it
    /// this server's own messages `own`: (call, index in the call) of each.
    pub(crate) fn delivered(&self, seq: u64, own: &[(u64, usize)]) -> Owed {
        let mut inner = lock(&self.inner);
        inner.delivered = inner.delivered.max(seq);
        for &(call, at) in own {
            let found = inner.batches.iter().position(|b| {
                matches!(b.place, Some((c, first)) if c == call && (first..first + b.count).contains(&at))
            });
            if let Some(i) = found {
                inner.batches[i].done += 1;
                if inner.batches[i].done == inner.batches[i].count {
                    inner.done(i);
                }
            }
        }
        while let Some(i) = inner
            .batches
            .iter()
            .position(|b| matches!(b.state, State::Appended(last) if last <= seq))
        {
            inner.done(i);
        }
        inner.owed()
    }

    /// The room was reset, numbering on after `tail`: batches that left for the old
    /// room will not be delivered here, and their clients are being disconnected, so
    /// nothing waits for them any more. Whether anyone received them cannot be known
    /// (other servers may have before the reset): their senders are owed that, before
    /// the reset notice. Batches still queued stay.
    pub(crate) fn reset(&self, tail: u64) -> Owed {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        inner.delivered = inner.delivered.max(tail);
        let unknown = &mut inner.owed.unknown;
        inner.batches.retain(|b| {
            let queued = b.state == State::Queued;
            if !queued {
                add(unknown, b.client, b.count);
            }
            queued
        });
        inner.owed()
    }

    /// A Ping of `client` arrived: `Some(bytes)` if its Pong may go now, `None` if it
    /// waits for the answers to the client's messages before it (and comes back in an
    /// [`Owed`]).
    pub(crate) fn pong(&self, client: u64, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let mut inner = lock(&self.inner);
        let after = inner
            .batches
            .iter()
            .filter(|b| b.client == client && !b.told)
            .map(|b| b.ticket)
            .max();
        let Some(after) = after else {
            return Some(bytes);
        };
        if inner.pongs.len() >= MAX_PONGS {
            return Some(bytes);
        }
        inner.pongs.push(Pong {
            client,
            after,
            bytes,
        });
        None
    }

    /// Batches being tracked.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.inner).batches.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(2);

    #[test]
    fn a_batch_never_sent_is_refused_when_its_time_is_up_and_not_sent_after() {
        let t = Tracker::default();
        let now = Instant::now();
        let a = t.register(1, 3, now);
        assert_eq!(t.expire(now + T / 2, T), Owed::default());
        let owed = t.expire(now + T, T);
        assert_eq!(owed.refused, [(1, 3)]);
        assert!(owed.delayed.is_empty());
        assert!(!t.is_waiting(a), "the writer still tries to send it");
        assert!(!t.claim(a, 1, 0), "the writer sends what was refused");
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_batch_sent_is_delayed_once_then_settled_with_the_truth() {
        let t = Tracker::default();
        let now = Instant::now();
        let a = t.register(1, 2, now);
        let b = t.register(1, 1, now);
        assert!(t.claim(a, 1, 0) && t.claim(b, 1, 2));
        assert_eq!(t.expire(now + T, T).delayed, [(1, 3)]);
        assert_eq!(t.expire(now + 2 * T, T), Owed::default(), "told once");
        assert_eq!(t.settle(a, Some(7)), Owed::default(), "not delivered yet");
        assert_eq!(t.settle(b, None), Owed::default());
        assert_eq!(t.len(), 1, "a waits for its delivery");
        assert_eq!(t.delivered(7, &[]).late, [(1, 2)]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_reader_answers_a_batch_whose_append_reply_is_late() {
        let t = Tracker::default();
        let now = Instant::now();
        let a = t.register(1, 2, now);
        let b = t.register(2, 1, now);
        assert!(t.claim(a, 5, 0) && t.claim(b, 5, 2));
        t.delivered(3, &[(5, 0)]);
        assert_eq!(t.len(), 2, "one of a's two delivered");
        t.delivered(4, &[(5, 1), (5, 2)]);
        assert_eq!(t.len(), 0);
        // Nothing is delayed that was delivered.
        assert_eq!(t.expire(now + T, T), Owed::default());
        assert_eq!(t.settle(a, Some(3)), Owed::default());
    }

    #[test]
    fn a_pong_follows_the_answers_to_the_messages_before_its_ping() {
        let t = Tracker::default();
        let now = Instant::now();
        assert_eq!(t.pong(1, vec![1]), Some(vec![1]), "nothing on its way");
        let a = t.register(1, 1, now);
        let other = t.register(2, 1, now);
        assert_eq!(t.pong(1, vec![2]), None);
        let later = t.register(1, 1, now);
        assert!(t.claim(a, 1, 0) && t.claim(other, 1, 1) && t.claim(later, 2, 0));
        // Appended, but the Ack is not queued until the reader delivers it.
        assert_eq!(t.settle(a, Some(5)).pongs, []);
        assert_eq!(t.settle(other, Some(6)).pongs, []);
        assert_eq!(t.delivered(5, &[]).pongs, [(1, vec![2])], "held by `later`");
        // Another ping waits for `later`, which is refused.
        assert_eq!(t.pong(1, vec![3]), None);
        assert_eq!(t.settle(later, None).pongs, [(1, vec![3])]);
    }

    #[test]
    fn a_pong_waits_for_a_delay_notice_at_most() {
        let t = Tracker::default();
        let now = Instant::now();
        let a = t.register(1, 1, now);
        assert!(t.claim(a, 1, 0));
        assert_eq!(t.pong(1, vec![9]), None);
        let owed = t.expire(now + T, T);
        assert_eq!(owed.delayed, [(1, 1)]);
        assert_eq!(owed.pongs, [(1, vec![9])]);
        // Pinged again while the batch is still delayed: nothing to wait for.
        assert_eq!(t.pong(1, vec![10]), Some(vec![10]));
    }

    #[test]
    fn a_reset_answers_what_left_for_the_old_room_as_of_unknown_fate() {
        let t = Tracker::default();
        let now = Instant::now();
        let a = t.register(1, 1, now);
        let b = t.register(1, 2, now);
        let c = t.register(2, 1, now);
        let queued = t.register(2, 1, now + T);
        assert!(t.claim(a, 1, 0) && t.claim(b, 2, 0) && t.claim(c, 2, 2));
        t.settle(a, Some(40));
        assert_eq!(t.expire(now + T, T).delayed, [(1, 2), (2, 1)]);
        assert_eq!(t.pong(1, vec![1]), None);
        let owed = t.reset(30);
        // Appended (a) or sent (b, c), delayed or not: the same.
        assert_eq!(owed.unknown, [(1, 3), (2, 1)]);
        assert_eq!(owed.pongs, [(1, vec![1])]);
        assert!(!t.is_waiting(b), "the writer would tell b's sender again");
        assert!(t.is_waiting(queued), "not sent yet: the writer sends it");
        assert_eq!(t.settle(b, None), Owed::default());
    }

    #[test]
    fn an_append_the_reader_delivered_already_is_done() {
        let t = Tracker::default();
        let a = t.register(1, 1, Instant::now());
        assert!(t.claim(a, 1, 0));
        t.delivered(9, &[]);
        t.settle(a, Some(9));
        assert_eq!(t.len(), 0);
    }
}
