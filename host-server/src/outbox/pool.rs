//! The writer pool: a few threads around one `epoll` that send what sockets did not
//! take at once.
//!
//! An outbox is registered here only while it has a backlog (bytes queued, or bytes
//! its connection holds pending), with `EPOLLONESHOT`: one event hands the outbox to
//! one pool thread, which sends what the socket takes now, then re-arms it or, once
//! the backlog is gone, removes it. So an idle or keeping-up client costs the pool
//! nothing, and the pool holds a client (its `Arc<Outbox>`) only while it owes it
//! bytes. Every [`TICK`] one of the threads sweeps the registered outboxes for
//! deadlines no socket event announces: a reader that stopped (the stall timeout),
//! and a dropped client's notice that did not go out in time.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};

use super::{End, Outbox};
use crate::sys::lock;

/// How often deadlines are swept, and the longest a pool thread sleeps.
const TICK: Duration = Duration::from_millis(50);

/// Events taken from `epoll` at once by one thread.
const EVENTS: usize = 256;

/// The key of the eventfd that wakes the threads to stop.
const WAKE_KEY: u64 = u64::MAX;

/// The outboxes with a backlog, and the `epoll` that says when their sockets take more.
pub(crate) struct Pool {
    epoll: OwnedFd,
    /// Written to wake every thread when the pool stops.
    wake: OwnedFd,
    /// The registered outboxes, by key: the only references the pool holds.
    registered: Mutex<HashMap<u64, Arc<Outbox>>>,
    next_key: AtomicU64,
    stop: AtomicBool,
    /// When the next sweep is due; the thread that takes this lock sweeps.
    next_sweep: Mutex<Instant>,
}

impl Pool {
    /// An empty pool with no threads yet (see [`Workers::start`]).
    ///
    /// # Errors
    /// When the system refuses an `epoll` or an eventfd (out of descriptors).
    pub(crate) fn new() -> io::Result<Arc<Self>> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(&epoll, &wake, EventData::new_u64(WAKE_KEY), EventFlags::IN)?;
        Ok(Arc::new(Self {
            epoll,
            wake,
            registered: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            next_sweep: Mutex::new(Instant::now()),
        }))
    }

    /// A key for a new outbox.
    pub(super) fn key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers `outbox` to be sent to when its socket takes more (called under its
    /// lock, once per backlog).
    pub(super) fn register(&self, outbox: Arc<Outbox>) -> io::Result<()> {
        let key = outbox.key;
        let flags = EventFlags::OUT | EventFlags::ONESHOT;
        // In the map before the socket is armed, so its event finds it.
        let fd = outbox.conn.tcp();
        let mut map = lock(&self.registered);
        if let Err(e) = epoll::add(&self.epoll, fd, EventData::new_u64(key), flags) {
            return Err(e.into());
        }
        map.insert(key, outbox);
        Ok(())
    }

    /// Arms a registered outbox's socket again after its event was handled.
    pub(super) fn rearm(&self, outbox: &Outbox) -> io::Result<()> {
        let flags = EventFlags::OUT | EventFlags::ONESHOT;
        let data = EventData::new_u64(outbox.key);
        epoll::modify(&self.epoll, outbox.conn.tcp(), data, flags).map_err(Into::into)
    }

    /// Forgets `outbox` (called under its lock); the caller drops the returned
    /// reference after releasing that lock.
    pub(super) fn deregister(&self, outbox: &Outbox) -> Option<Arc<Outbox>> {
        let _ = epoll::delete(&self.epoll, outbox.conn.tcp());
        lock(&self.registered).remove(&outbox.key)
    }

    /// How many outboxes are registered now.
    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        lock(&self.registered).len()
    }

    /// One pool thread's body: send to the sockets that take more, sweep deadlines,
    /// until the pool stops.
    fn run(&self) {
        let mut events: Vec<Event> = Vec::with_capacity(EVENTS);
        let tick = Timespec::try_from(TICK).unwrap_or_default();
        while !self.stop.load(Ordering::Acquire) {
            events.clear();
            if let Err(e) = epoll::wait(&self.epoll, spare_capacity(&mut events), Some(&tick)) {
                if e != rustix::io::Errno::INTR {
                    tracing::error!("writer pool: epoll_wait failed: {e}");
                    thread::sleep(TICK);
                }
                continue;
            }
            for event in &events {
                let key = event.data.u64();
                if key == WAKE_KEY {
                    continue;
                }
                let outbox = lock(&self.registered).get(&key).cloned();
                if let Some(outbox) = outbox {
                    guarded(&outbox, |o| o.writable());
                }
            }
            self.sweep();
        }
    }

    /// Every [`TICK`], by one thread: the deadlines of the registered outboxes.
    fn sweep(&self) {
        let now = Instant::now();
        {
            let Ok(mut next) = self.next_sweep.try_lock() else {
                return;
            };
            if now < *next {
                return;
            }
            *next = now + TICK;
        }
        let due: Vec<Arc<Outbox>> = lock(&self.registered).values().cloned().collect();
        for outbox in due {
            guarded(&outbox, |o| o.check_deadlines(now));
        }
    }

    /// Cuts and forgets every registered outbox: the server has stopped.
    fn clear(&self) {
        let left: Vec<Arc<Outbox>> = lock(&self.registered).drain().map(|(_, o)| o).collect();
        for outbox in left {
            outbox.end(End::Cut);
        }
    }
}

/// Runs `f` on `outbox`; a panic (a bug) cuts that one client, not the pool thread.
fn guarded(outbox: &Outbox, f: impl FnOnce(&Outbox)) {
    if catch_unwind(AssertUnwindSafe(|| f(outbox))).is_err() {
        tracing::error!("writer pool: panicked while sending to a client; cutting it");
        outbox.end(End::Cut);
    }
}

/// The pool's threads; dropping this stops and joins them and cuts any client the
/// pool still owed bytes.
pub(crate) struct Workers {
    pool: Arc<Pool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` threads (at least one) with `stack` bytes of stack on `pool`.
    ///
    /// # Errors
    /// When a thread cannot be started; those started already are stopped.
    pub(crate) fn start(pool: &Arc<Pool>, count: usize, stack: usize) -> io::Result<Self> {
        let mut workers = Self {
            pool: pool.clone(),
            threads: Vec::new(),
        };
        for i in 0..count.max(1) {
            let pool = pool.clone();
            let thread = thread::Builder::new()
                .name(format!("writer pool {i}"))
                .stack_size(stack)
                .spawn(move || pool.run())?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.pool.stop.store(true, Ordering::Release);
        let _ = rustix::io::write(&self.pool.wake, &1u64.to_ne_bytes());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.pool.clear();
    }
}
