//! The writer thread: appends the sessions' batches to the room's stream.
//!
//! Everything that waited while the previous call was out goes into the next call,
//! up to `batch` messages: one round trip per call, however many senders. One
//! connection, one call at a time, so each sender's messages keep their order.
//!
//! A call that fails on the connection is retried with the same dedupe key (the
//! script returns the first try's result if that one went through) until
//! `append_timeout` after its oldest batch arrived. Meanwhile the watch thread
//! ([`watch`]) answers every batch not answered within `append_timeout`: one that never
//! left the queue is not delivered (certain; the writer skips it), one that was sent
//! is delayed. A call given up on after it was sent has an unknown fate until Redis
//! answers again; the first thing done on the next connection is to settle it (the
//! void script): found appended, it is delivered like any other message (a text
//! sender is told its delayed messages were delivered, a binary one gets its Acks);
//! not appended, the script makes sure no try still on its way can append it, and its
//! senders are told it was not delivered; if Redis no longer holds what would tell
//! (its dedupe key expired and the entries after where it was sent were trimmed, or
//! the room it was sent to is gone), they are told its fate cannot be known. So a
//! sender never hears "not delivered" of a message anyone receives, and always hears
//! the truth, or that it cannot be known, once Redis answers.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use proto_core::ErrorCode;
use redis::{Connection, RedisError, RetryMethod};

use super::link::{self, random_token};
use super::roster::{self, Op, Wrote};
use super::script::{Append, AppendArgs, Appended, Fate, Message, Settle, Unsettled};
use super::tracker::Owed;
use super::{Common, Item, Outgoing};
use crate::wire::{self, Mode};

/// Pause between attempts to reach Redis again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How often an idle writer looks for the room closing.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// How often the watch thread looks for batches past their time.
const WATCH_TICK: Duration = Duration::from_millis(50);

/// An append call's batches, number and dedupe key.
struct Call {
    number: u64,
    dedupe: String,
    batches: Vec<Outgoing>,
    /// The highest sequence number delivered when it was first sent: its entries, if
    /// appended, come after.
    floor: u64,
    /// The room's epoch when it was first sent: the room it may be in.
    epoch: String,
}

struct Writer<'c> {
    common: &'c Common,
    con: Option<Connection>,
    script: Append,
    settle: Settle,
    roster: roster::Scripts,
    /// An item taken from the queue that goes in the next call.
    peeked: Option<Item>,
    calls: u64,
    /// Calls sent but not answered, past their time: voided on the next connection.
    doubtful: Vec<Call>,
    last_attempt: Option<Instant>,
    /// Logged once per outage.
    down: bool,
}

/// The writer thread's body: runs until the room closes.
pub(crate) fn run(common: &Common, from_rooms: &Receiver<Item>) {
    let mut writer = Writer {
        common,
        con: None,
        script: Append::new(),
        settle: Settle::new(),
        roster: roster::Scripts::new(),
        peeked: None,
        calls: 0,
        doubtful: Vec::new(),
        last_attempt: None,
        down: false,
    };
    super::supervise("writer", &common.room, || writer.serve(from_rooms));
}

impl Writer<'_> {
    fn serve(&mut self, from_rooms: &Receiver<Item>) {
        while !self.common.room.is_closing() {
            let first = match self.peeked.take() {
                Some(first) => first,
                None => match from_rooms.recv_timeout(IDLE_TICK) {
                    Ok(first) => first,
                    Err(RecvTimeoutError::Timeout) => {
                        if !self.doubtful.is_empty() {
                            self.connected();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return,
                },
            };
            let first = match first {
                Item::Batch(first) => first,
                Item::Roster(op) => {
                    // Joins and leaves that waited together go in one call; a
                    // batch behind them waits for the next (so a client's join
                    // comes before its messages, its leave after them).
                    let mut ops = vec![op];
                    while ops.len() < self.common.config.batch {
                        match from_rooms.try_recv() {
                            Ok(Item::Roster(op)) => ops.push(op),
                            Ok(other) => {
                                self.peeked = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.write_roster(&ops);
                    continue;
                }
            };
            let mut count = first.ends.len();
            let mut batches = vec![first];
            while count < self.common.config.batch {
                match from_rooms.try_recv() {
                    Ok(Item::Batch(next)) => {
                        count += next.ends.len();
                        batches.push(next);
                    }
                    Ok(other) => {
                        self.peeked = Some(other);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.calls += 1;
            let dedupe = self.common.keys.dedupe(&self.common.server_id, self.calls);
            self.send(Call {
                number: self.calls,
                dedupe,
                batches,
                floor: 0,
                epoch: String::new(),
            });
        }
    }

    /// Appends `call`, retrying until it is appended or refused.
    fn send(&mut self, mut call: Call) {
        let tracker = &self.common.tracker;
        let oldest = call.batches.iter().map(|b| b.since).min();
        let oldest = oldest.unwrap_or_else(Instant::now);
        let mut sent = false;
        loop {
            // Batches refused while they waited need no connection attempt.
            call.batches.retain(|b| tracker.is_waiting(b.ticket));
            if call.batches.is_empty() {
                return;
            }
            if self.connected() {
                // Batches answered already (refused while they waited) stay unsent.
                let (number, mut offset) = (call.number, 0);
                call.batches.retain(|b| {
                    let go = tracker.claim(b.ticket, number, offset);
                    offset += if go { b.ends.len() } else { 0 };
                    go
                });
                if call.batches.is_empty() {
                    return;
                }
                if !sent {
                    call.floor = self.common.delivered.load(Ordering::Acquire);
                    call.epoch = self.common.epoch();
                }
                sent = true;
                match self.append(&call) {
                    Ok(Appended::At(first)) => return appended(self.common, &call, first),
                    Ok(Appended::Void) => return refuse(self.common, &call, "not delivered"),
                    Ok(Appended::Reset(epoch)) => {
                        tracing::warn!("backplane: the room was reset (epoch {epoch})");
                        self.common.reset_seen.store(true, Ordering::Release);
                        return refuse(self.common, &call, "not delivered: the room was reset");
                    }
                    Err(e) if transient(&e) => {
                        tracing::warn!("backplane: append failed, retrying: {e}");
                        self.con = None;
                        self.down = true;
                    }
                    Err(e) => {
                        tracing::warn!("backplane: append refused by Redis: {e}");
                        return refuse(
                            self.common,
                            &call,
                            "not delivered: the room backplane refused it",
                        );
                    }
                }
            }
            if oldest.elapsed() >= self.common.config.append_timeout
                || self.common.room.is_closing()
            {
                if sent {
                    self.doubtful.push(call);
                }
                // Never sent: the watch thread refuses each batch when its time is up.
                return;
            }
            thread::sleep(RETRY_PAUSE);
        }
    }

    /// Writes joins and leaves, retrying until Redis answers (they are idempotent:
    /// a retry of one already written writes nothing) or the room closes. Found
    /// in an old epoch, they are written in the new one once the reader has taken
    /// it up: a client that joined as the room was reset is then in the new room
    /// (and one that was disconnected by the reset joins and leaves it).
    fn write_roster(&mut self, ops: &[Op]) {
        let mut resets = 0;
        while !self.common.room.is_closing() {
            if self.connected() {
                let Some(con) = self.con.as_mut() else {
                    continue;
                };
                let floor = self.common.delivered.load(Ordering::Acquire);
                match self.roster.write(con, self.common, floor, ops) {
                    Ok(Wrote::Done) => return,
                    Ok(Wrote::Reset(epoch)) => {
                        tracing::warn!("backplane: the room was reset (epoch {epoch})");
                        self.common.reset_seen.store(true, Ordering::Release);
                        resets += 1;
                        if resets > 3 || !self.await_epoch(&epoch) {
                            return;
                        }
                        continue;
                    }
                    Err(e) if transient(&e) => {
                        tracing::warn!("backplane: writing joins and leaves failed, retrying: {e}");
                        self.con = None;
                        self.down = true;
                    }
                    Err(e) => {
                        tracing::warn!("backplane: joins and leaves refused by Redis: {e}");
                        return;
                    }
                }
            }
            thread::sleep(RETRY_PAUSE);
        }
    }

    /// Waits, at most `io_timeout`, for the reader to take up epoch `epoch`.
    fn await_epoch(&self, epoch: &str) -> bool {
        let since = Instant::now();
        while self.common.epoch() != epoch {
            if since.elapsed() >= self.common.config.io_timeout || self.common.room.is_closing() {
                tracing::warn!("backplane: joins and leaves of the old room dropped");
                return false;
            }
            thread::sleep(RETRY_PAUSE);
        }
        true
    }

    fn append(&mut self, call: &Call) -> Result<Appended, RedisError> {
        let Some(con) = self.con.as_mut() else {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "not connected",
            )));
        };
        let epoch = self.common.epoch();
        let cand = random_token();
        let args = AppendArgs {
            keys: &self.common.keys,
            dedupe: &call.dedupe,
            epoch: &epoch,
            cand: &cand,
            floor: self.common.delivered.load(Ordering::Acquire),
            retain: self.common.config.retain,
            server: &self.common.server_id,
            call: call.number,
            dedupe_secs: self.common.config.dedupe.as_secs().max(1),
        };
        let peers: Vec<String> = call.batches.iter().map(|b| b.peer.to_string()).collect();
        let messages = call.batches.iter().zip(&peers).flat_map(|(b, peer)| {
            b.messages().map(move |body| Message {
                client: b.client,
                peer,
                body,
            })
        });
        self.script.call(con, &args, messages)
    }

    /// True when connected, after settling the doubtful calls; tries to connect at
    /// most once per [`RETRY_PAUSE`].
    fn connected(&mut self) -> bool {
        if self.con.is_none() {
            if self.last_attempt.is_some_and(|t| t.elapsed() < RETRY_PAUSE) {
                return false;
            }
            self.last_attempt = Some(Instant::now());
            match link::connect(&self.common.config) {
                Ok(con) => {
                    if self.down {
                        tracing::info!("backplane: writer reconnected");
                    }
                    self.down = false;
                    self.con = Some(con);
                }
                Err(e) => {
                    if !self.down {
                        tracing::warn!("backplane: writer cannot reach Redis: {e}");
                    }
                    self.down = true;
                    return false;
                }
            }
        }
        while let Some(call) = self.doubtful.first() {
            let Some(con) = self.con.as_mut() else {
                return false;
            };
            let limit = self.common.config.retain.min(MAX_SCAN);
            let unsettled = Unsettled {
                dedupe: &call.dedupe,
                server: &self.common.server_id,
                number: call.number,
                floor: call.floor,
                epoch: &call.epoch,
            };
            match self.settle.call(con, &self.common.keys, &unsettled, limit) {
                Ok(Fate::At(first)) => appended(self.common, call, first),
                Ok(Fate::Void) => refuse(
                    self.common,
                    call,
                    "not delivered: the room backplane was unavailable",
                ),
                Ok(Fate::Unknown) => unknown(self.common, call),
                Err(e) => {
                    tracing::warn!("backplane: cannot settle an unanswered append: {e}");
                    self.con = None;
                    return false;
                }
            }
            self.doubtful.remove(0);
        }
        true
    }
}

/// Most entries the void script looks through for a call whose dedupe key expired.
const MAX_SCAN: u64 = 100_000;

/// True for an error after which the same call may succeed on a new connection.
fn transient(e: &RedisError) -> bool {
    !matches!(e.retry_method(), RetryMethod::NoRetry) || e.is_timeout() || e.is_io_error()
}

/// The (client, messages) of `call`, one pair per sender, of the batches not
/// answered for good yet (the reader may have delivered some, or a reset told their
/// senders their fate is unknown).
fn senders(common: &Common, call: &Call) -> Vec<(u64, usize)> {
    let mut senders: Vec<(u64, usize)> = Vec::new();
    let waiting = call
        .batches
        .iter()
        .filter(|b| common.tracker.is_waiting(b.ticket));
    for b in waiting {
        match senders.iter_mut().find(|(c, _)| *c == b.client) {
            Some((_, n)) => *n += b.ends.len(),
            None => senders.push((b.client, b.ends.len())),
        }
    }
    senders
}

/// "1 message" or "N messages".
pub(crate) fn messages(n: usize) -> String {
    if n == 1 {
        "1 message".into()
    } else {
        format!("{n} messages")
    }
}

/// Sends an error notice with `code` to `client`: "error: N messages WHY".
fn tell(common: &Common, client: u64, n: usize, code: ErrorCode, why: &str) {
    let text = format!("error: {} {why}", messages(n));
    common
        .room
        .tell(client, |mode| wire::error(mode, code, &text));
}

/// Sends what the tracker says is owed, notices before the Pongs they let go.
pub(crate) fn send_owed(common: &Common, owed: Owed) {
    let Owed {
        refused,
        delayed,
        late,
        unknown,
        pongs,
    } = owed;
    for (client, n) in &refused {
        let why = "not delivered: the room backplane is unavailable";
        tell(common, *client, *n, ErrorCode::NOT_DELIVERED, why);
    }
    for (client, n) in &delayed {
        let why = "delayed: the room backplane is not answering; \
                   you will be told whether they were delivered";
        tell(common, *client, *n, ErrorCode::DELAYED, why);
    }
    for (client, n) in &unknown {
        tell(common, *client, *n, ErrorCode::DELAYED, UNKNOWN);
    }
    for (client, n) in late {
        let text = format!("{} delayed, delivered now", messages(n));
        common.room.tell(client, |mode| match mode {
            // A binary sender has the Acks.
            Mode::Binary => Vec::new(),
            Mode::Text | Mode::WebSocket => wire::error(mode, ErrorCode::DELAYED, &text),
        });
        tracing::info!("backplane: {text}");
    }
    for (client, bytes) in pongs {
        common.room.tell(client, |_| bytes.clone());
    }
    let count = |told: &[(u64, usize)]| told.iter().map(|(_, n)| n).sum::<usize>();
    if !unknown.is_empty() {
        let n = messages(count(&unknown));
        tracing::warn!("backplane: the fate of {n} sent to the old room is unknown");
    }
    for (n, fate) in [
        (count(&refused), "not delivered"),
        (count(&delayed), "delayed"),
    ] {
        if n > 0 {
            tracing::warn!("backplane: {} {fate}: Redis is not answering", messages(n));
        }
    }
}

/// Tells each sender of `call` how many of its messages were not delivered, and why.
fn refuse(common: &Common, call: &Call, why: &str) {
    let senders = senders(common, call);
    for (client, n) in &senders {
        tell(common, *client, *n, ErrorCode::NOT_DELIVERED, why);
    }
    settle_void(common, call);
    let n: usize = senders.iter().map(|s| s.1).sum();
    tracing::warn!("backplane: {} {why}", messages(n));
}

/// Stops tracking the batches of `call`, answered with a notice; sends the Pongs
/// that waited for them.
fn settle_void(common: &Common, call: &Call) {
    for b in &call.batches {
        send_owed(common, common.tracker.settle(b.ticket, None));
    }
}

/// `call` was appended, its first message numbered `first`: its Acks come from the
/// reader (a text sender that was told its messages were delayed is told they were
/// delivered once they are).
fn appended(common: &Common, call: &Call, first: u64) {
    let mut last = first - 1;
    for b in &call.batches {
        last += b.ends.len() as u64;
        send_owed(common, common.tracker.settle(b.ticket, Some(last)));
    }
}

/// Why the senders of messages whose fate cannot be known are told so (code 13).
const UNKNOWN: &str = "delayed: the room backplane cannot tell whether they were delivered";

/// What became of `call` cannot be known any more: its senders, told it was
/// delayed, are told so.
fn unknown(common: &Common, call: &Call) {
    for (client, n) in senders(common, call) {
        tell(common, client, n, ErrorCode::DELAYED, UNKNOWN);
    }
    settle_void(common, call);
    tracing::warn!(
        "backplane: the fate of append call {} is unknown",
        call.number
    );
}

/// The watch thread's body: answers, until the room closes, every batch not
/// answered within `append_timeout` (see [`super::tracker`]).
pub(crate) fn watch(common: &Common) {
    let timeout = common.config.append_timeout;
    while !common.room.is_closing() {
        thread::sleep(WATCH_TICK);
        send_owed(common, common.tracker.expire(Instant::now(), timeout));
    }
}
