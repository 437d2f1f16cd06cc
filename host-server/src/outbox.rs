//! One client's outbound path: a bounded queue of shared chunks, write-through into
//! the socket when nothing is queued, and a writer thread for what the socket does
//! not take at once.
//!
//! Broadcasters call [`Outbox::push`] while holding the room's lock, so chunks enter
//! every queue in the room's one order. When the queue is empty and the writer is idle,
//! `push` sends straight into the socket with a non-blocking send: at ordinary load no
//! thread is woken at all. Whatever the socket does not take is queued (a reference to
//! the shared chunk, never a copy) and the writer thread sends everything queued with
//! one `writev`. A queue that grows past its limit means the client is not reading: it
//! is dropped with a `SLOW_CONSUMER` notice, and its memory freed at once.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use proto_core::ErrorCode;

use crate::sys::{cut, is_transient, lock, send_now, wait};
use crate::wire::{self, Mode};

/// Most chunks handed to one `writev`.
const MAX_IOV: usize = 64;

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
    /// Dropped by the server: queued data is discarded, the error notice with this
    /// code is sent if the stream is between frames, and the connection is cut.
    Evict(ErrorCode),
    /// Writing to the socket failed: the connection is gone.
    Failed(io::ErrorKind),
    /// Cut now, sending nothing more.
    Cut,
}

struct State {
    queue: VecDeque<Arc<[u8]>>,
    /// Bytes of `queue[0]` already sent.
    head_sent: usize,
    /// Bytes in the queue not yet sent.
    queued: usize,
    /// The writer is sending outside the lock; broadcasters must queue, not send.
    busy: bool,
    /// The writer is asleep on the condition variable.
    idle: bool,
    /// The writer thread has returned.
    done: bool,
    /// Bytes handed to the socket so far.
    sent_total: u64,
    /// Everything sent so far ends on a chunk (so frame or line) boundary; only
    /// then may an eviction notice follow.
    aligned: bool,
    end: Option<End>,
}

/// A client's outbound queue and the socket it drains into.
pub(crate) struct Outbox {
    stream: Arc<TcpStream>,
    mode: Mode,
    limit: usize,
    state: Mutex<State>,
    wake: Condvar,
}

impl Outbox {
    /// An empty outbox for a client of `mode` that may hold `limit` unsent bytes.
    pub(crate) fn new(stream: Arc<TcpStream>, mode: Mode, limit: usize) -> Self {
        Self {
            stream,
            mode,
            limit,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                head_sent: 0,
                queued: 0,
                busy: false,
                idle: false,
                done: false,
                aligned: true,
                sent_total: 0,
                end: None,
            }),
            wake: Condvar::new(),
        }
    }

    /// The client's mode.
    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The socket.
    pub(crate) fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `chunk` after everything pushed before it. Never blocks on the network.
    pub(crate) fn push(&self, chunk: &mut Chunk<'_>) {
        let mut st = lock(&self.state);
        if st.end.is_some() || chunk.bytes.is_empty() {
            return;
        }
        let mut sent = 0;
        if st.queue.is_empty() && !st.busy {
            match send_now(&self.stream, chunk.bytes) {
                Ok(n) if n == chunk.bytes.len() => {
                    st.sent_total += n as u64;
                    return;
                }
                Ok(n) => sent = n,
                Err(e) if is_transient(&e) => {}
                Err(e) => return self.stop(st, End::Failed(e.kind())),
            }
            st.head_sent = sent;
            st.sent_total += sent as u64;
        }
        st.queued += chunk.bytes.len() - sent;
        st.queue.push_back(chunk.shared());
        if st.queued > self.limit {
            return self.stop(st, End::Evict(ErrorCode::SLOW_CONSUMER));
        }
        if st.idle {
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

    /// Queues `bytes` as the last thing sent, then ends with [`End::Flush`].
    pub(crate) fn push_last(&self, bytes: &[u8]) {
        self.push_bytes(bytes);
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

    /// True once the writer thread has returned.
    pub(crate) fn is_done(&self) -> bool {
        lock(&self.state).done
    }

    fn stop(&self, mut st: MutexGuard<'_, State>, end: End) {
        if let End::Evict(_) | End::Cut | End::Failed(_) = end {
            // Free the backlog now: a stalled reader must not hold memory. If the
            // writer is busy, it works out the alignment when its write returns.
            st.aligned = !st.busy && st.head_sent == 0;
            st.queue.clear();
            st.queued = 0;
            st.head_sent = 0;
        }
        st.end = Some(end);
        self.wake.notify_one();
        drop(st);
        if let End::Cut | End::Failed(_) = end {
            cut(&self.stream);
        }
    }

    /// The writer thread's body: sends what is queued until the outbox ends.
    pub(crate) fn run_writer(&self) {
        let mut batch: Vec<Arc<[u8]>> = Vec::with_capacity(MAX_IOV);
        loop {
            let mut st = lock(&self.state);
            while st.queue.is_empty() && st.end.is_none() {
                st.idle = true;
                st = wait(&self.wake, st);
                st.idle = false;
            }
            if st.end.is_some() && (st.end != Some(End::Flush) || st.queue.is_empty()) {
                let (end, aligned) = (st.end, st.aligned);
                drop(st);
                self.finish(end, aligned);
                break;
            }
            batch.extend(st.queue.iter().take(MAX_IOV).cloned());
            let head_sent = st.head_sent;
            st.busy = true;
            drop(st);
            let result = write_batch(&self.stream, &batch, head_sent);
            let mut st = lock(&self.state);
            st.busy = false;
            let cleared = st.end.is_some_and(|e| e != End::Flush);
            match result {
                Ok(n) if cleared => st.aligned = on_boundary(&batch, head_sent, n),
                Ok(n) => consume(&mut st, n),
                Err(e) if is_transient(&e) => {}
                Err(_) if cleared => st.aligned = head_sent == 0,
                Err(e) => st.end = Some(End::Failed(e.kind())),
            }
            batch.clear();
        }
    }

    /// Records that the writer thread has returned (normally or by a panic).
    pub(crate) fn writer_exited(&self) {
        lock(&self.state).done = true;
    }

    /// Closes the connection the way `end` says.
    fn finish(&self, end: Option<End>, aligned: bool) {
        match end {
            Some(End::Flush) => {
                let _ = self.stream.shutdown(Shutdown::Write);
            }
            Some(End::Evict(code)) => {
                if aligned {
                    let notice = wire::error(self.mode, code, &evict_text(code, self.limit));
                    // What the socket takes of it: the reader has stopped reading.
                    let _ = send_now(&self.stream, &notice);
                }
                cut(&self.stream);
            }
            _ => cut(&self.stream),
        }
    }

    /// Waits, up to `deadline`, for the writer to finish sending.
    pub(crate) fn wait_done(&self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            if self.is_done() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.is_done()
    }
}

/// The text of the notice sent to an evicted client.
fn evict_text(code: ErrorCode, limit: usize) -> String {
    if code == ErrorCode::SLOW_CONSUMER {
        format!("disconnected: {code} (more than {limit} bytes were waiting for you)")
    } else {
        format!("disconnected: {code}")
    }
}

/// One `writev` of the batch, the first chunk from `head_sent` on. Blocks for at most
/// the socket's write timeout.
fn write_batch(stream: &TcpStream, batch: &[Arc<[u8]>], head_sent: usize) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    for (i, chunk) in batch.iter().enumerate() {
        let from = if i == 0 { head_sent } else { 0 };
        slices[i] = IoSlice::new(chunk.get(from..).unwrap_or_default());
    }
    let mut s = stream;
    s.write_vectored(&slices[..batch.len()])
}

/// Drops `n` sent bytes from the front of the queue.
fn consume(st: &mut State, mut n: usize) {
    st.queued = st.queued.saturating_sub(n);
    st.sent_total += n as u64;
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
}

/// True when writing `n` bytes of `batch`, the first chunk from `head_sent` on,
/// ends exactly at the end of a chunk (or wrote nothing at a boundary).
fn on_boundary(batch: &[Arc<[u8]>], head_sent: usize, n: usize) -> bool {
    let mut at = 0;
    for (i, chunk) in batch.iter().enumerate() {
        if at == n {
            return i > 0 || head_sent == 0;
        }
        at += chunk.len() - if i == 0 { head_sent } else { 0 };
    }
    at == n
}
