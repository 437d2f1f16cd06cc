//! The bench's event loop: every connection on one thread, driven by mio.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::conn::{Conn, Incoming, Role, Wire, OUT_HIGH_WATER};
use super::payload::Stamp;
use super::stats::Stats;
use crate::render::SeqTracker;

/// The sender number that marks a readiness probe rather than a measured message.
const PROBE: u32 = u32::MAX;

/// Why a bench could not run.
#[derive(Debug)]
pub enum BenchError {
    /// Connection number `index` could not be opened.
    Connect {
        /// Which connection (receivers first, then senders).
        index: usize,
        /// The error.
        source: io::Error,
    },
    /// Not every receiver got a probe message within the limit.
    NotReady {
        /// Receivers that did.
        ready: usize,
        /// Receivers in all.
        of: usize,
    },
    /// The server's address is malformed or names no host that could be resolved.
    Address(crate::connect::ConnectError),
    /// The event loop failed.
    Poll(io::Error),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Connect { index, source } => {
                write!(f, "cannot open connection {index}: {source}")
            }
            BenchError::NotReady { ready, of } => write!(
                f,
                "only {ready} of {of} receivers got the readiness probe; is the server relaying?"
            ),
            BenchError::Address(e) => e.fmt(f),
            BenchError::Poll(e) => write!(f, "event loop failed: {e}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// Who connects, and how senders are paced.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How the connections speak.
    pub wire: Wire,
    /// Connect with TLS, as this says.
    pub tls: Option<crate::tls::TlsSetup>,
    /// Receiving connections.
    pub receivers: usize,
    /// Sending connections.
    pub senders: usize,
    /// Connections that never read.
    pub stalled: usize,
    /// Messages per sender in flight at most (see [`Engine::can_send`]).
    pub window: u64,
    /// Limit on each connect and handshake.
    pub timeout: Duration,
    /// Threads opening connections at once.
    pub connectors: usize,
}

/// Receivers and senders, all on one poll loop.
pub struct Engine {
    poll: Poll,
    events: Events,
    /// The events of the last poll as (connection, readable, writable).
    ready_scratch: Vec<(usize, bool, bool)>,
    conns: Vec<Option<Conn>>,
    receivers: usize,
    run: u32,
    start: Instant,
    buf: Box<[u8]>,
    seq: Vec<SeqTracker>,
    ready: Vec<bool>,
    /// Messages sent per sender.
    sent: Vec<u64>,
    /// Most messages per sender not yet received by (on average) every receiver.
    window: u64,
    /// Connections that never read: the stalled readers of the room.
    stalled: Vec<Conn>,
    /// What the receivers saw.
    pub stats: Stats,
    /// Connections the server closed or that failed during the run.
    pub disconnects: u64,
    /// How long opening every connection took (set by the caller).
    pub connected: Duration,
}

impl Engine {
    /// Opens `receivers` then `senders` connections to `addrs` (connection i to
    /// `addrs[i % addrs.len()]`), then `stalled` ones
    /// that are never read. What arrives while connecting (each newcomer is announced
    /// to everyone already there) is read as it comes, so no connection falls behind
    /// before the run starts. Each sender may have `window` messages in flight.
    ///
    /// # Errors
    /// The first connection that fails, or the poller's error.
    pub fn connect(addrs: &[SocketAddr], plan: &Plan) -> Result<Self, BenchError> {
        let Plan {
            receivers,
            senders,
            stalled,
            window,
            ..
        } = *plan;
        let start = Instant::now();
        let mut engine = Self {
            poll: Poll::new().map_err(BenchError::Poll)?,
            events: Events::with_capacity(1024),
            ready_scratch: Vec::with_capacity(1024),
            conns: Vec::with_capacity(receivers + senders),
            receivers,
            run: std::process::id() ^ start.elapsed().subsec_nanos(),
            start,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            seq: vec![SeqTracker::new(); receivers],
            ready: vec![false; receivers],
            sent: vec![0; senders],
            window: window.max(1),
            stalled: Vec::with_capacity(stalled),
            stats: Stats::new(receivers, senders),
            disconnects: 0,
            connected: Duration::ZERO,
        };
        engine.conns.resize_with(receivers + senders, || None);
        engine.connect_all(addrs, plan)?;
        Ok(engine)
    }

    /// Opens every connection with `plan.connectors` threads, each connecting one
    /// at a time, while this thread registers them and reads what arrives.
    fn connect_all(&mut self, addrs: &[SocketAddr], plan: &Plan) -> Result<(), BenchError> {
        let total = plan.receivers + plan.senders + plan.stalled;
        let next = AtomicUsize::new(0);
        let (wire, timeout, tls) = (plan.wire, plan.timeout, plan.tls.as_ref());
        let (receivers, senders) = (plan.receivers, plan.senders);
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(usize, io::Result<Conn>)>();
            for _ in 0..plan.connectors.clamp(1, total.max(1)) {
                let (tx, next) = (tx.clone(), &next);
                scope.spawn(move || loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        break;
                    }
                    let addr = addrs[index % addrs.len()];
                    let role = match index >= receivers && index < receivers + senders {
                        true => Role::Sends,
                        false => Role::Receives,
                    };
                    if tx
                        .send((index, Conn::open(&addr, wire, role, tls, timeout)))
                        .is_err()
                    {
                        break;
                    }
                });
            }
            drop(tx);
            let mut result = Ok(());
            loop {
                let got = match rx.recv_timeout(Duration::from_millis(1)) {
                    Ok((index, conn)) => conn
                        .and_then(|conn| self.adopt(index, conn))
                        .map_err(|source| BenchError::Connect { index, source }),
                    Err(mpsc::RecvTimeoutError::Timeout) => Ok(()),
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                };
                if let Err(e) = got.and_then(|()| self.pump(Duration::ZERO)) {
                    // Stop the connectors; the first error is the one reported.
                    next.store(total, Ordering::Relaxed);
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
            result
        })
    }

    /// Takes connection `index` into the loop (or, past the senders, holds it
    /// without ever reading it).
    fn adopt(&mut self, index: usize, mut conn: Conn) -> io::Result<()> {
        if index >= self.conns.len() {
            self.stalled.push(conn);
            return Ok(());
        }
        let interest = Interest::READABLE | Interest::WRITABLE;
        self.poll
            .registry()
            .register(&mut conn.stream, Token(index), interest)?;
        self.conns[index] = Some(conn);
        Ok(())
    }

    /// Microseconds since the engine started.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Whether sender `sender` (from 0) may send now: its window is not full and
    /// its connection has room for more queued bytes.
    pub fn can_send(&self, sender: usize) -> bool {
        let received = self.stats.per_sender[sender] / self.receivers.max(1) as u64;
        self.sent[sender].saturating_sub(received) < self.window
            && self.conns[self.receivers + sender]
                .as_ref()
                .is_some_and(|c| c.pending() < OUT_HIGH_WATER)
    }

    /// Queues and writes message `seq` of `sender`, `size` bytes long.
    pub fn send(&mut self, sender: usize, seq: u64, size: usize) {
        let stamp = Stamp {
            run: self.run,
            sender: sender as u32,
            seq,
            sent_us: self.now_us(),
        };
        self.sent[sender] += 1;
        self.send_stamp(self.receivers + sender, stamp, size);
    }

    fn send_stamp(&mut self, index: usize, stamp: Stamp, size: usize) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        conn.queue_chat(&stamp.encode(size));
        if conn.flush().is_err() {
            self.drop_conn(index);
        }
    }

    /// Sends readiness probes from the first sender until every receiver has seen
    /// one, or `limit` passes.
    ///
    /// # Errors
    /// [`BenchError::NotReady`] if some receiver saw none.
    pub fn probe(&mut self, limit: Duration) -> Result<(), BenchError> {
        let start = Instant::now();
        let mut round = 0;
        while start.elapsed() < limit {
            let stamp = Stamp {
                run: self.run,
                sender: PROBE,
                seq: round,
                sent_us: self.now_us(),
            };
            self.send_stamp(self.receivers, stamp, 0);
            round += 1;
            let until = Instant::now() + Duration::from_millis(200);
            while Instant::now() < until {
                self.pump(Duration::from_millis(20))?;
                if self.ready.iter().all(|&r| r) {
                    return Ok(());
                }
            }
        }
        Err(BenchError::NotReady {
            ready: self.ready.iter().filter(|&&r| r).count(),
            of: self.receivers,
        })
    }

    /// Waits up to `timeout` for events and handles them.
    ///
    /// # Errors
    /// The poller's error.
    pub fn pump(&mut self, timeout: Duration) -> Result<(), BenchError> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(BenchError::Poll(e)),
        }
        // Copied out because handling an event needs `self` mutably; the scratch is
        // kept so the bench's hot loop does not allocate per poll.
        let mut ready = std::mem::take(&mut self.ready_scratch);
        ready.clear();
        ready.extend(
            self.events
                .iter()
                .map(|e| (e.token().0, e.is_readable(), e.is_writable())),
        );
        for &(index, readable, writable) in &ready {
            if writable {
                if let Some(Err(_)) = self.conns[index].as_mut().map(Conn::flush) {
                    self.drop_conn(index);
                }
            }
            if readable {
                self.read(index);
            }
        }
        self.ready_scratch = ready;
        Ok(())
    }

    fn read(&mut self, index: usize) {
        let now_us = self.now_us();
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        let (run, stats) = (self.run, &mut self.stats);
        let receiver = (index < self.receivers).then_some(index);
        let (seq, ready) = (&mut self.seq, &mut self.ready);
        let mut on = |incoming: Incoming<'_>| {
            // A refusal answers a sender's command, so it counts from any connection;
            // what senders receive of others' messages is not measured.
            if let Incoming::Refused = incoming {
                stats.refused += 1;
            }
            let Some(r) = receiver else { return };
            match incoming {
                Incoming::Bad => stats.decode_errors += 1,
                Incoming::Refused => {}
                Incoming::Message { text, seq: s } => {
                    if let Some(s) = s {
                        if seq[r].check(s).is_err() {
                            stats.seq_gaps += 1;
                        }
                    }
                    match Stamp::find(text) {
                        Some(st) if st.run == run && st.sender == PROBE => ready[r] = true,
                        Some(st) if st.run == run => stats.record(r as u32, st, now_us),
                        _ => {}
                    }
                }
            }
        };
        match conn.receive(&mut self.buf, &mut on) {
            Ok(true) => {}
            Ok(false) | Err(_) => self.drop_conn(index),
        }
    }

    fn drop_conn(&mut self, index: usize) {
        if let Some(mut conn) = self.conns[index].take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.disconnects += 1;
        }
    }
}
