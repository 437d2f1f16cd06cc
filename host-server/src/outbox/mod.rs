//! One client's outbound path: a bounded queue of shared chunks, write-through into
//! the connection when nothing is queued, and a small writer pool (see `pool`) for
//! what the socket does not take at once.
//!
//! Broadcasters call [`Outbox::push`] while holding the room's lock, so chunks enter
//! every queue in the room's one order. When nothing is waiting, `push` sends straight
//! into the connection without blocking: at ordinary load no thread is woken at all.
//! Whatever the socket does not take is queued (a reference to the shared chunk, never
//! a copy), and the outbox registers with the writer pool, whose threads send
//! everything queued with one `writev` whenever the socket takes more. Every write
//! goes through the client's [`Conn`], and bytes the connection holds pending (TLS
//! ciphertext the socket did not take, the `close_notify` that ends a TLS stream)
//! are backlog like queued ones: the outbox stays in the pool until they are out, and
//! they are under the same stall clock.
//!
//! A client whose queue passes its pace mark makes senders wait for it (see `pacer`)
//! while it keeps draining; one that has stopped or trickles (see `progress`) is
//! dropped with a `SLOW_CONSUMER` notice when its queue passes the hard limit or it
//! has made no progress for the stall timeout. A drop finishes the frame or line in
//! flight, then sends the notice, then closes; the queue's memory is freed at once.

mod pacer;
mod pool;
mod progress;

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use proto_core::ErrorCode;

pub(crate) use pacer::Pacer;
pub(crate) use pool::{Pool, Workers};
use progress::Progress;

use crate::config::Config;
use crate::conn::Conn;
use crate::sys::{is_transient, lock, relax_send_limits, wait_until};
use crate::wire::{self, Mode};

/// Most chunks handed to one `writev`.
const MAX_IOV: usize = 64;

/// How long a dropped client is given to take the end of the frame in flight and
/// the notice saying why it was dropped (they normally fit in the socket at once).
const EVICT_GRACE: Duration = Duration::from_secs(1);

/// Bytes to send to one or more clients: borrowed until some client needs to queue
/// them, then copied once into a shared chunk that every such queue references.
pub(crate) struct Chunk<'a> {
    bytes: &'a [u8],
    shared: Option<Arc<[u8]>>,
}

impl<'a> Chunk<'a> {
    /// A chunk over `bytes`, not yet shared.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            shared: None,
        }
    }

    fn shared(&mut self) -> Arc<[u8]> {
        self.shared
            .get_or_insert_with(|| Arc::from(self.bytes))
            .clone()
    }
}

/// Why an outbox stopped taking chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Send what is queued, then close the sending side.
    Flush,
    /// Dropped by the server: the frame in flight is finished, the rest of the queue
    /// discarded, the error notice with this code sent, and the connection closed.
    Evict(ErrorCode),
    /// Writing to the socket failed: the connection is gone.
    Failed(io::ErrorKind),
    /// Cut now, sending nothing more.
    Cut,
}

/// The limits of one outbox, from the server's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Bytes waiting past which the client is dropped at once.
    pub(crate) hard: usize,
    /// Bytes waiting past which senders wait for the client while it drains.
    pub(crate) pace_at: usize,
    /// Bytes a second that count as draining (see `progress`).
    pub(crate) min_rate: u32,
    /// Lag past which a client no longer holds senders back.
    pub(crate) grace: Duration,
    /// Lag past which a client with bytes waiting is dropped.
    pub(crate) stall: Duration,
}

impl Limits {
    /// The limits `config` sets.
    pub(crate) fn of(config: &Config) -> Self {
        Self {
            hard: config.outbox_limit,
            pace_at: config.pace_at,
            min_rate: config.min_drain_rate,
            grace: config.pace_grace,
            stall: config.stall_timeout,
        }
    }
}

struct State {
    queue: VecDeque<Arc<[u8]>>,
    /// Bytes of `queue[0]` already sent.
    head_sent: usize,
    /// Bytes in the queue not yet sent.
    queued: usize,
    /// Over the pace mark (counted in the pacer).
    behind: bool,
    progress: Progress,
    /// In the writer pool: the backlog is the pool's to send, so broadcasters queue
    /// behind it instead of writing through.
    registered: bool,
    /// Nothing more will be sent: the connection is finished or cut.
    closed: bool,
    /// Bytes handed to the connection so far.
    sent_total: u64,
    end: Option<End>,
    /// What a drop was for, with its figures, for the log.
    dropped: Option<String>,
    /// A dropped client's end of frame and notice are sent by then, or not at all.
    evict_by: Option<Instant>,
}

/// What is done after an outbox's lock is released: dropping the pool's reference
/// to an outbox it no longer sends to (perhaps the last one, which must not be
/// dropped under its own lock).
#[derive(Default)]
struct After {
    gone: Option<Arc<Outbox>>,
}

/// A client's outbound queue and the connection it drains into.
pub(crate) struct Outbox {
    conn: Conn,
    mode: Mode,
    limits: Limits,
    /// Its key in the writer pool.
    key: u64,
    /// Itself, to hand to the pool when a backlog starts.
    me: Weak<Outbox>,
    pacer: Arc<Pacer>,
    pool: Arc<Pool>,
    state: Mutex<State>,
    /// Signalled when the outbox has closed.
    finished: Condvar,
}

impl Outbox {
    /// An empty outbox for a client of `mode` on `conn`, within `limits`, paced by
    /// `pacer`, its backlog sent by `pool`.
    pub(crate) fn new(
        conn: Conn,
        mode: Mode,
        limits: Limits,
        pacer: Arc<Pacer>,
        pool: Arc<Pool>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            conn,
            mode,
            limits,
            key: pool.key(),
            me: me.clone(),
            pacer,
            pool,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                head_sent: 0,
                queued: 0,
                behind: false,
                progress: Progress::new(limits.min_rate, Instant::now()),
                registered: false,
                closed: false,
                sent_total: 0,
                end: None,
                dropped: None,
                evict_by: None,
            }),
            finished: Condvar::new(),
        })
    }

    /// The client's mode.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The connection.
    pub(crate) fn conn(&self) -> &Conn {
        &self.conn
    }

    /// Sends `chunk` after everything pushed before it. Never blocks on the network.
    /// Whatever the chunk is (a broadcast, a pong, a notice), a push that puts the
    /// client over its pace mark tells the pacer.
    pub(crate) fn push(&self, chunk: &mut Chunk<'_>) {
        let mut after = After::default();
        let mut st = lock(&self.state);
        if st.end.is_some() || chunk.bytes.is_empty() {
            return;
        }
        let mut sent = 0;
        if st.queue.is_empty() && !st.registered {
            // Write-through: nothing is ahead of these bytes.
            match self.conn.send_now(&[IoSlice::new(chunk.bytes)]) {
                Ok(n) => {
                    sent = n;
                    st.sent_total += n as u64;
                }
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    self.fail(&mut st, e.kind());
                    return self.settle(&mut st, false, &mut after);
                }
            }
        }
        if sent < chunk.bytes.len() {
            if st.queue.is_empty() {
                st.head_sent = sent;
            }
            // A backlog of pending ciphertext alone (registered, nothing queued)
            // already runs the clock.
            if st.queued == 0 && !st.registered {
                st.progress.restart(Instant::now());
            }
            st.queued += chunk.bytes.len() - sent;
            st.queue.push_back(chunk.shared());
            if st.queued > self.limits.hard {
                let why = format!(
                    "{} bytes waiting, over the limit of {}",
                    st.queued, self.limits.hard
                );
                self.evict(&mut st, why);
            } else if !st.behind && st.queued > self.limits.pace_at {
                st.behind = true;
                let until = st.progress.lagging_by(self.limits.grace);
                self.pacer.hold(self.key, until);
            }
        }
        self.settle(&mut st, false, &mut after);
    }

    /// Hands the pool what the connection holds pending when no push would: a TLS
    /// reply the reader made (an alert, a key update) that the socket did not take at
    /// once. The reader calls it after each read.
    pub(crate) fn kick(&self) {
        // Checked first: for plain TCP it is false without taking any lock.
        if !self.conn.has_pending() {
            return;
        }
        let mut after = After::default();
        let mut st = lock(&self.state);
        self.settle(&mut st, false, &mut after);
    }

    /// Sends `bytes` to this client alone (a notice, a pong).
    pub(crate) fn push_bytes(&self, bytes: &[u8]) {
        self.push(&mut Chunk::new(bytes));
    }

    /// Stops taking chunks, for the reason `end`. The first reason given stays, except
    /// that a pending [`End::Flush`] may be hardened into a drop or a cut.
    pub(crate) fn end(&self, end: End) {
        let mut after = After::default();
        let mut st = lock(&self.state);
        if !(st.end.is_none() || (st.end == Some(End::Flush) && end != End::Flush)) {
            return;
        }
        match end {
            End::Flush => st.end = Some(End::Flush),
            End::Evict(code) => self.begin_eviction(&mut st, code),
            End::Cut | End::Failed(_) => {
                st.end = Some(end);
                self.discard(&mut st);
            }
        }
        self.settle(&mut st, false, &mut after);
    }

    /// Queues `bytes` as the last thing sent (a WebSocket client then gets a close
    /// frame), then ends with [`End::Flush`].
    pub(crate) fn push_last(&self, bytes: &[u8]) {
        self.push_bytes(bytes);
        self.push_bytes(&wire::farewell(self.mode));
        self.end(End::Flush);
    }

    /// Bytes handed to the connection so far: a peer that keeps taking them is alive
    /// (data it does not acknowledge is caught by the socket's user timeout).
    pub(crate) fn sent_total(&self) -> u64 {
        lock(&self.state).sent_total
    }

    /// Why the outbox stopped, if it has.
    pub(crate) fn ended(&self) -> Option<End> {
        lock(&self.state).end
    }

    /// Why the client was dropped, with the figures (bytes waiting, time without
    /// progress), if it was.
    pub(crate) fn dropped(&self) -> Option<String> {
        lock(&self.state).dropped.clone()
    }

    /// Its key in the writer pool and the pacer: a sender passes it to
    /// [`Pacer::wait`] so it does not wait for itself.
    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Waits, up to `deadline`, for the outbox to close (everything sent and the
    /// connection finished, or cut); true if it has.
    pub(crate) fn wait_done(&self, deadline: Instant) -> bool {
        let st = lock(&self.state);
        wait_until(&self.finished, st, deadline, |st| !st.closed).closed
    }

    /// The pool's call when the socket takes more: sends what it takes, then re-arms
    /// the socket or leaves the pool.
    pub(super) fn writable(&self) {
        let mut after = After::default();
        let mut st = lock(&self.state);
        if !st.registered {
            return;
        }
        self.pump(&mut st);
        self.settle(&mut st, true, &mut after);
    }

    /// The pool's sweep: drops a client that has taken nothing for the stall timeout
    /// (whether its backlog is queued or ciphertext pending in a TLS connection),
    /// and cuts a dropped one whose notice did not go out in time.
    pub(super) fn check_deadlines(&self, now: Instant) {
        let mut after = After::default();
        let mut st = lock(&self.state);
        let pending = self.conn.pending_len();
        match st.end {
            None if st.queued > 0 || pending > 0 => {
                let lag = st.progress.lag(now);
                if lag > self.limits.stall {
                    let why = format!(
                        "{} bytes waiting, nothing taken for {:.1} s",
                        st.queued + pending,
                        lag.as_secs_f64()
                    );
                    self.evict(&mut st, why);
                }
            }
            // `settle` cuts it.
            Some(End::Evict(_)) if st.evict_by.is_some_and(|by| now >= by) => {
                self.discard(&mut st);
            }
            _ => {}
        }
        self.settle(&mut st, false, &mut after);
    }

    /// Sends what the connection takes now: its pending bytes, then the queue, in
    /// `writev`s of up to [`MAX_IOV`] chunks.
    fn pump(&self, st: &mut State) {
        loop {
            let result = match self.conn.has_pending() {
                true => self.flush_pending(st),
                false if st.queue.is_empty() => return,
                false => self.send_queued(st),
            };
            match result {
                // All that was offered went out: there may be more.
                Ok((0, _)) => {}
                // TLS takes one record's worth at a time, all of it encrypted and
                // sent: the socket may well take more.
                Ok((_, taken)) if taken > 0 && self.conn.is_tls() && !self.conn.has_pending() => {}
                Ok(_) => return,
                Err(e) if is_transient(&e) => return,
                Err(e) => return self.fail(st, e.kind()),
            }
        }
    }

    /// Pushes the connection's pending ciphertext into the socket, crediting the
    /// drain clock with what it took; returns (1 if some is left, 0).
    fn flush_pending(&self, st: &mut State) -> io::Result<(usize, usize)> {
        let before = self.conn.pending_len();
        let all = self.conn.flush_pending()?;
        // The reader may add replies meanwhile: never credit more than went out.
        let taken = before.saturating_sub(self.conn.pending_len());
        if taken > 0 {
            st.progress.drained(taken, Instant::now());
        }
        Ok((usize::from(!all), 0))
    }

    /// One `writev` of the front of the queue; returns (bytes offered but not taken,
    /// bytes taken).
    fn send_queued(&self, st: &mut State) -> io::Result<(usize, usize)> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let mut offered = 0;
        for (i, chunk) in st.queue.iter().take(MAX_IOV).enumerate() {
            let from = if i == 0 { st.head_sent } else { 0 };
            let bytes = chunk.get(from..).unwrap_or_default();
            offered += bytes.len();
            slices[i] = IoSlice::new(bytes);
        }
        let n = self.conn.send_now(&slices[..st.queue.len().min(MAX_IOV)])?;
        self.consume(st, n);
        Ok((offered - n, n))
    }

    /// Drops `n` sent bytes from the front of the queue, noting when that brought
    /// the client back under its pace mark.
    fn consume(&self, st: &mut State, mut n: usize) {
        st.queued = st.queued.saturating_sub(n);
        st.sent_total += n as u64;
        st.progress.drained(n, Instant::now());
        while n > 0 {
            let Some(front) = st.queue.front() else {
                break;
            };
            let left = front.len() - st.head_sent;
            if n < left {
                st.head_sent += n;
                break;
            }
            n -= left;
            st.head_sent = 0;
            st.queue.pop_front();
        }
        if st.behind && st.queued <= self.limits.pace_at {
            st.behind = false;
            self.pacer.release(self.key);
        } else if st.behind {
            let until = st.progress.lagging_by(self.limits.grace);
            self.pacer.hold(self.key, until);
        }
    }

    /// Decides what follows a change: close when nothing more is to be sent, keep the
    /// outbox in the pool while it has a backlog (re-arming its socket after an event
    /// when `rearm`), and take it out when it has none.
    fn settle(&self, st: &mut State, rearm: bool, after: &mut After) {
        if st.closed {
            return;
        }
        let mut backlog = !st.queue.is_empty() || self.conn.has_pending();
        let close = match st.end {
            None => false,
            // A dropped client's last bytes did not go out in time.
            Some(End::Evict(_)) if st.evict_by.is_some_and(|by| Instant::now() >= by) => true,
            Some(End::Flush | End::Evict(_)) if !backlog => {
                // Everything is out: end the sending side. For TLS that makes a
                // close_notify, which is backlog like any pending bytes until it is
                // out; the connection shuts its sending side then.
                self.conn.finish();
                backlog = self.conn.has_pending();
                !backlog
            }
            Some(End::Flush | End::Evict(_)) => false,
            Some(End::Cut | End::Failed(_)) => true,
        };
        if close {
            if st.end != Some(End::Flush) {
                self.conn.cut();
            }
            st.closed = true;
            self.finished.notify_all();
        }
        if backlog && !close {
            let armed = match (st.registered, self.me.upgrade()) {
                (false, Some(me)) => {
                    // A backlog starts: of pending ciphertext alone, if nothing is
                    // queued (`push` started the clock for a queue).
                    if st.queued == 0 {
                        st.progress.restart(Instant::now());
                    }
                    self.pool.register(me)
                }
                (true, _) if rearm => self.pool.rearm(self),
                _ => Ok(()),
            };
            match armed {
                Ok(()) => st.registered = true,
                Err(e) => {
                    tracing::error!("cannot hand a backlog to the writer pool: {e}");
                    st.end = Some(End::Failed(e.kind()));
                    self.discard(st);
                    self.settle(st, rearm, after);
                }
            }
        } else if st.registered {
            st.registered = false;
            after.gone = self.pool.deregister(self);
        }
    }

    /// Writing failed: the connection is gone.
    fn fail(&self, st: &mut State, kind: io::ErrorKind) {
        if !matches!(st.end, Some(End::Evict(_))) {
            st.end = Some(End::Failed(kind));
        }
        self.discard(st);
    }

    /// Frees the backlog: nothing more is sent.
    fn discard(&self, st: &mut State) {
        st.queue = VecDeque::new();
        st.queued = 0;
        st.head_sent = 0;
        if std::mem::take(&mut st.behind) {
            self.pacer.release(self.key);
        }
    }

    /// Drops the client as too slow, recording why for the log.
    fn evict(&self, st: &mut State, why: String) {
        st.dropped = Some(why);
        self.begin_eviction(st, ErrorCode::SLOW_CONSUMER);
    }

    /// Ends with a drop: the frame in flight is finished, the rest of the queue freed,
    /// and the notice with `code` queued, all to go out within [`EVICT_GRACE`].
    fn begin_eviction(&self, st: &mut State, code: ErrorCode) {
        st.end = Some(End::Evict(code));
        let mut bytes = match st.queue.front() {
            Some(head) if st.head_sent > 0 => {
                let end = frame_end(self.mode, head, st.head_sent);
                head[st.head_sent..end].to_vec()
            }
            _ => Vec::new(),
        };
        self.discard(st);
        bytes.extend(wire::error(
            self.mode,
            code,
            &evict_text(code, &self.limits),
        ));
        // A WebSocket client then gets a close frame, so a browser shows the notice
        // and a close, not a failure.
        bytes.extend(wire::farewell(self.mode));
        // The socket is full (that is why the client is dropped): let it take these
        // few bytes beyond its usual limit.
        let _ = relax_send_limits(self.conn.tcp());
        st.queued = bytes.len();
        st.queue.push_back(Arc::from(bytes));
        st.evict_by = Some(Instant::now() + EVICT_GRACE);
        self.pump(st);
    }
}

/// The text of the notice sent to a dropped client.
fn evict_text(code: ErrorCode, limits: &Limits) -> String {
    if code == ErrorCode::SLOW_CONSUMER {
        format!(
            "disconnected: {code} (you read less than {} bytes a second for {} s, \
             or more than {} bytes were waiting for you)",
            limits.min_rate,
            limits.stall.as_secs_f64(),
            limits.hard
        )
    } else {
        format!("disconnected: {code}")
    }
}

/// Where the frame (binary) or line (text) that holds byte `at` of `chunk` ends.
/// Chunks hold whole frames or lines, so `at` on a boundary ends there.
fn frame_end(mode: Mode, chunk: &[u8], at: usize) -> usize {
    match mode {
        Mode::Text => {
            if at == 0 || chunk.get(at - 1) == Some(&b'\n') {
                return at;
            }
            let rest = chunk.get(at..).unwrap_or_default();
            rest.iter()
                .position(|&b| b == b'\n')
                .map_or(chunk.len(), |i| at + i + 1)
        }
        Mode::Binary | Mode::WebSocket => {
            let mut start = 0;
            while start < at {
                let rest = chunk.get(start..).unwrap_or_default();
                let len = match mode {
                    Mode::WebSocket => wire::ws_frame_len(rest),
                    _ => rest
                        .get(1..3)
                        .map(|len| 3 + usize::from(u16::from_be_bytes([len[0], len[1]]))),
                };
                let Some(end) = len.map(|len| start + len) else {
                    return chunk.len();
                };
                if at < end {
                    return end.min(chunk.len());
                }
                start = end;
            }
            at
        }
    }
}

#[cfg(test)]
mod tests;
