//! One client's outbound path: a bounded queue of shared chunks, write-through into
//! the socket when nothing is queued, and a writer thread for what the socket does
//! not take at once.
//!
//! Broadcasters call [`Outbox::push`] while holding the room's lock, so chunks enter
//! every queue in the room's one order. When the queue is empty and the writer is idle,
//! `push` sends straight into the socket with a non-blocking send: at ordinary load no
//! thread is woken at all. Whatever the socket does not take is queued (a reference to
//! the shared chunk, never a copy) and the writer thread sends everything queued with
//! one `writev`.
//!
//! A client whose queue passes its pace mark makes senders wait for it (see `pacer`)
//! while it keeps draining; one that has stopped or trickles (see `progress`) is
//! dropped with a `SLOW_CONSUMER` notice when its queue passes the hard limit or it
//! has made no progress for the stall timeout. A drop finishes the frame or line in
//! flight, then sends the notice, then closes; the queue's memory is freed at once.

mod pacer;
mod progress;

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use proto_core::ErrorCode;

pub(crate) use pacer::Pacer;
use progress::Progress;

use crate::config::Config;
use crate::conn::Conn;
use crate::sys::{
    is_transient, lock, relax_send_limits, wait, wait_until, wait_writable, WRITER_TICK,
};
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
    /// The writer is sending outside the lock; broadcasters must queue, not send.
    busy: bool,
    /// The writer is asleep on the condition variable.
    idle: bool,
    /// The writer thread has returned.
    done: bool,
    /// Bytes handed to the socket so far.
    sent_total: u64,
    end: Option<End>,
    /// What a drop was for, with its figures, for the log.
    dropped: Option<String>,
}

/// A client's outbound queue and the socket it drains into.
pub(crate) struct Outbox {
    conn: Arc<Conn>,
    mode: Mode,
    limits: Limits,
    pacer: Arc<Pacer>,
    state: Mutex<State>,
    /// Wakes the writer.
    wake: Condvar,
    /// Signalled when the writer thread has returned.
    finished: Condvar,
}

impl Outbox {
    /// An empty outbox for a client of `mode`, within `limits`, paced by `pacer`.
    pub(crate) fn new(conn: Arc<Conn>, mode: Mode, limits: Limits, pacer: Arc<Pacer>) -> Self {
        Self {
            conn,
            mode,
            limits,
            pacer,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                head_sent: 0,
                queued: 0,
                behind: false,
                progress: Progress::new(limits.min_rate, Instant::now()),
                busy: false,
                idle: false,
                done: false,
                sent_total: 0,
                end: None,
                dropped: None,
            }),
            wake: Condvar::new(),
            finished: Condvar::new(),
        }
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
    /// Returns true when this push put the client behind (over its pace mark), so
    /// the caller can tell the pacer who it is.
    pub(crate) fn push(&self, chunk: &mut Chunk<'_>) -> bool {
        let mut st = lock(&self.state);
        if st.end.is_some() || chunk.bytes.is_empty() {
            return false;
        }
        let mut sent = 0;
        if st.queue.is_empty() && !st.busy {
            match self.conn.send_now(&[IoSlice::new(chunk.bytes)]) {
                Ok(n) if n == chunk.bytes.len() => {
                    st.sent_total += n as u64;
                    // All taken, but a TLS connection may hold some of it as
                    // ciphertext the socket did not take: the writer sends that on.
                    if st.idle && self.conn.has_pending() {
                        self.wake.notify_one();
                    }
                    return false;
                }
                Ok(n) => sent = n,
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    self.stop(st, End::Failed(e.kind()));
                    return false;
                }
            }
            st.head_sent = sent;
            st.sent_total += sent as u64;
        }
        if st.queued == 0 {
            st.progress.restart(Instant::now());
        }
        st.queued += chunk.bytes.len() - sent;
        st.queue.push_back(chunk.shared());
        if st.queued > self.limits.hard {
            let why = format!(
                "{} bytes waiting, over the limit of {}",
                st.queued, self.limits.hard
            );
            self.evict(st, why);
            return false;
        }
        let went_behind = !st.behind && st.queued > self.limits.pace_at;
        if went_behind {
            st.behind = true;
            self.pacer.went_behind();
        }
        if st.idle {
            self.wake.notify_one();
        }
        went_behind
    }

    /// Has the writer send what the connection holds pending when nothing else
    /// would: a TLS reply the reader made (an alert, a key update) that the socket
    /// did not take at once.
    pub(crate) fn kick(&self) {
        // Checked first: for plain TCP it is false without taking any lock.
        if self.conn.has_pending() && lock(&self.state).idle {
            self.wake.notify_one();
        }
    }

    /// Sends `bytes` to this client alone (a notice, a pong).
    pub(crate) fn push_bytes(&self, bytes: &[u8]) {
        self.push(&mut Chunk::new(bytes));
    }

    /// Stops taking chunks, for the reason `end`. The first reason given stays, except
    /// that a pending [`End::Flush`] may be hardened into a cut.
    pub(crate) fn end(&self, end: End) {
        let st = lock(&self.state);
        if st.end.is_none() || (st.end == Some(End::Flush) && end != End::Flush) {
            self.stop(st, end);
        }
    }

    /// Queues `bytes` as the last thing sent (a WebSocket client then gets a close
    /// frame), then ends with [`End::Flush`].
    pub(crate) fn push_last(&self, bytes: &[u8]) {
        self.push_bytes(bytes);
        self.push_bytes(&wire::farewell(self.mode));
        self.end(End::Flush);
    }

    /// Bytes handed to the socket so far: a peer that keeps taking them is alive
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

    /// Over the pace mark and not ended.
    pub(crate) fn is_behind(&self) -> bool {
        let st = lock(&self.state);
        st.behind && st.end.is_none()
    }

    /// If the client holds senders back at `now` (it is behind and still draining),
    /// the instant at which it stops doing so unless it takes more bytes.
    pub(crate) fn holds_until(&self, now: Instant) -> Option<Instant> {
        let st = lock(&self.state);
        let until = st.progress.lagging_by(self.limits.grace);
        (st.behind && st.end.is_none() && until > now).then_some(until)
    }

    /// Drops the client as too slow: records why (for the log), and lets the writer
    /// finish the frame in flight and send the notice.
    fn evict(&self, mut st: MutexGuard<'_, State>, why: String) {
        st.dropped = Some(why);
        self.stop(st, End::Evict(ErrorCode::SLOW_CONSUMER));
    }

    fn stop(&self, mut st: MutexGuard<'_, State>, end: End) {
        st.end = Some(end);
        let caught_up = std::mem::take(&mut st.behind);
        if let End::Cut | End::Failed(_) = end {
            // Nothing more is sent: free the backlog now. An eviction leaves it to the
            // writer, which first finishes the frame in flight.
            st.queue.clear();
            st.queued = 0;
            st.head_sent = 0;
        }
        self.wake.notify_one();
        drop(st);
        if caught_up {
            self.pacer.caught_up();
        }
        if let End::Cut | End::Failed(_) = end {
            self.conn.cut();
        }
    }

    /// The writer thread's body: sends what is queued until the outbox ends.
    pub(crate) fn run_writer(&self) {
        let mut batch: Vec<Arc<[u8]>> = Vec::with_capacity(MAX_IOV);
        loop {
            let mut st = lock(&self.state);
            // Ciphertext still inside a TLS connection is backlog too.
            while st.queue.is_empty() && st.end.is_none() && !self.conn.has_pending() {
                st.idle = true;
                st = wait(&self.wake, st);
                st.idle = false;
            }
            match st.end {
                Some(End::Flush) if st.queue.is_empty() => {
                    drop(st);
                    self.conn.finish();
                    return;
                }
                Some(End::Evict(code)) => return self.send_eviction(st, code),
                Some(End::Cut | End::Failed(_)) => return self.conn.cut(),
                Some(End::Flush) | None => {}
            }
            let lag = st.progress.lag(Instant::now());
            if lag > self.limits.stall {
                let why = format!(
                    "{} bytes waiting, nothing taken for {:.1} s",
                    st.queued,
                    lag.as_secs_f64()
                );
                self.evict(st, why);
                continue;
            }
            batch.extend(st.queue.iter().take(MAX_IOV).cloned());
            let head_sent = st.head_sent;
            st.busy = true;
            drop(st);
            let result = write_batch(&self.conn, &batch, head_sent);
            batch.clear();
            let mut st = lock(&self.state);
            st.busy = false;
            let cleared = matches!(st.end, Some(End::Cut | End::Failed(_)));
            match result {
                Ok(_) if cleared => {}
                Ok(n) => {
                    if self.consume(&mut st, n) {
                        drop(st);
                        self.pacer.caught_up();
                    }
                }
                Err(e) if is_transient(&e) => {}
                Err(_) if cleared => {}
                Err(e) => {
                    st.end = Some(End::Failed(e.kind()));
                    let caught_up = std::mem::take(&mut st.behind);
                    drop(st);
                    if caught_up {
                        self.pacer.caught_up();
                    }
                }
            }
        }
    }

    /// Drops `n` sent bytes from the front of the queue; returns true when that
    /// brought the client back under its pace mark.
    fn consume(&self, st: &mut State, mut n: usize) -> bool {
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
        let caught_up = st.behind && st.queued <= self.limits.pace_at;
        if caught_up {
            st.behind = false;
        }
        caught_up
    }

    /// Finishes the frame in flight, frees the queue, sends the notice with the code,
    /// and closes: all within [`EVICT_GRACE`].
    fn send_eviction(&self, mut st: MutexGuard<'_, State>, code: ErrorCode) {
        let mut bytes = match st.queue.front() {
            Some(head) if st.head_sent > 0 => {
                let end = frame_end(self.mode, head, st.head_sent);
                head[st.head_sent..end].to_vec()
            }
            _ => Vec::new(),
        };
        st.queue = VecDeque::new();
        st.queued = 0;
        st.head_sent = 0;
        drop(st);
        let text = evict_text(code, &self.limits);
        bytes.extend(wire::error(self.mode, code, &text));
        bytes.extend(wire::farewell(self.mode));
        // The socket is full (that is why the client is dropped): let it take these
        // few bytes beyond its usual limit.
        let _ = relax_send_limits(self.conn.tcp());
        let deadline = Instant::now() + EVICT_GRACE;
        // For TLS the notice is a record after the last whole frame, then
        // close_notify (`finish`); then the connection is cut.
        if crate::conn::send_all(&self.conn, &bytes, deadline).is_ok() {
            self.conn.finish();
        }
        self.conn.cut();
    }

    /// Records that the writer thread has returned (normally or by a panic).
    pub(crate) fn writer_exited(&self) {
        lock(&self.state).done = true;
        self.finished.notify_all();
    }

    /// Waits, up to `deadline`, for the writer to finish sending; true if it has.
    pub(crate) fn wait_done(&self, deadline: Instant) -> bool {
        let st = lock(&self.state);
        wait_until(&self.finished, st, deadline, |st| !st.done).done
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

/// One gathered send of the batch, the first chunk from `head_sent` on (an empty
/// batch flushes what a TLS connection holds pending). Blocks for at most
/// [`WRITER_TICK`], waiting for the socket to take something.
fn write_batch(conn: &Conn, batch: &[Arc<[u8]>], head_sent: usize) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    for (i, chunk) in batch.iter().enumerate() {
        let from = if i == 0 { head_sent } else { 0 };
        slices[i] = IoSlice::new(chunk.get(from..).unwrap_or_default());
    }
    let deadline = Instant::now() + WRITER_TICK;
    loop {
        let sent = if batch.is_empty() {
            match conn.flush_pending() {
                Ok(true) => Ok(0),
                Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e),
            }
        } else {
            conn.send_now(&slices[..batch.len()])
        };
        match sent {
            Err(e) if is_transient(&e) => {}
            other => return other,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        wait_writable(conn.tcp(), left)?;
    }
}

#[cfg(test)]
mod tests;
