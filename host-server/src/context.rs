//! What every thread of a running server shares: its settings, its stop handle, its
//! room, the writer pool, the counts of connection threads that bound how many may
//! run at once, and the connections each capped address holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::control::Control;
use crate::error::ServerError;
use crate::gate::Host;
use crate::outbox::{Pool, Workers};
use crate::overflow::Overflow;
use crate::room::Room;
use crate::sys::{lock, wait_until};
use crate::visits::Visits;

/// The shared context of one running server.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) control: Control,
    pub(crate) room: Arc<Room>,
    /// Sends what clients' sockets did not take at once.
    pub(crate) pool: Arc<Pool>,
    /// The pool's threads, until [`Context::stop_writers`].
    workers: Mutex<Option<Workers>>,
    /// The TLS configuration, when the server has a certificate (see `tls`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// With TLS: the thread that turns connections away when no refuser is free
    /// (see `overflow`).
    pub(crate) overflow: Option<Overflow>,
    /// Connections being served (in the room or about to be).
    sessions: AtomicUsize,
    /// Threads turning away connections over the limit.
    refusers: AtomicUsize,
    /// Connections held by each address the per-address cap counts; an address
    /// leaves the map with its last connection, so it holds only live ones.
    per_address: Mutex<HashMap<Host, usize>>,
    /// Addresses that loaded the chat page lately (see `visits`).
    pub(crate) visits: Visits,
    /// Signalled when the last counted thread ends, for [`Context::wait_idle`].
    idle_lock: Mutex<()>,
    idle: Condvar,
}

/// Which count a [`Counted`] holds a unit of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counter {
    /// Connections being served.
    Sessions,
    /// Refusals in progress.
    Refusers,
}

impl Context {
    /// The context of a server with `config`, stopped through `control`, with its
    /// writer pool running; `control` is given a view of the new room.
    ///
    /// # Errors
    /// [`ServerError::Pool`] when the pool's `epoll` cannot be made,
    /// [`ServerError::Thread`] when its threads cannot be started.
    pub(crate) fn new(config: Config, control: Control) -> Result<Self, ServerError> {
        let pool = Pool::new().map_err(ServerError::Pool)?;
        let workers = Workers::start(&pool, config.writers(), config.thread_stack)
            .map_err(ServerError::Thread)?;
        let room = Arc::new(Room::new(config.pace_grace));
        control.watch(&room);
        Ok(Self {
            config,
            control,
            room,
            pool,
            workers: Mutex::new(Some(workers)),
            tls: None,
            overflow: None,
            sessions: AtomicUsize::new(0),
            refusers: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            visits: Visits::default(),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        })
    }

    /// Stops the writer pool's threads (every connection is closed by then) and cuts
    /// any client it still owed bytes.
    pub(crate) fn stop_writers(&self) {
        drop(lock(&self.workers).take());
    }

    /// Stops the thread that holds refused connections, once it has answered them.
    pub(crate) fn stop_overflow(&self) {
        if let Some(overflow) = &self.overflow {
            overflow.stop();
        }
    }

    fn counter(&self, which: Counter) -> &AtomicUsize {
        match which {
            Counter::Sessions => &self.sessions,
            Counter::Refusers => &self.refusers,
        }
    }

    /// Counts one more of `which` if fewer than `limit` are counted now. Only the
    /// accept loop counts, so the check cannot race another admission.
    pub(crate) fn count(self: &Arc<Self>, which: Counter, limit: usize) -> Option<Counted> {
        let counter = self.counter(which);
        if counter.load(Ordering::Acquire) >= limit {
            return None;
        }
        counter.fetch_add(1, Ordering::AcqRel);
        Some(Counted(self.clone(), which))
    }

    /// Counts one more connection from `ip` (a host: an address, or an IPv6
    /// network) if it holds fewer than `limit` now; otherwise gives how many it holds.
    pub(crate) fn count_address(
        self: &Arc<Self>,
        ip: Host,
        limit: usize,
    ) -> Result<AddressCounted, usize> {
        let mut held = lock(&self.per_address);
        let n = held.entry(ip).or_insert(0);
        if *n >= limit {
            return Err(*n);
        }
        *n += 1;
        Ok(AddressCounted(self.clone(), ip))
    }

    fn busy(&self) -> usize {
        self.sessions.load(Ordering::Acquire) + self.refusers.load(Ordering::Acquire)
    }

    /// Waits until no counted thread is left, or `deadline`; true if none is.
    pub(crate) fn wait_idle(&self, deadline: Instant) -> bool {
        let guard = lock(&self.idle_lock);
        let _guard = wait_until(&self.idle, guard, deadline, |()| self.busy() > 0);
        self.busy() == 0
    }
}

/// One unit of a count, given back when dropped (also when its thread panics or
/// could not be started).
pub(crate) struct Counted(Arc<Context>, Counter);

impl Counted {
    /// The context it was counted in.
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.0
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.counter(self.1).fetch_sub(1, Ordering::AcqRel) == 1 {
            // Taken so the notification cannot fall between a waiter's check and
            // its sleep.
            let _guard = lock(&self.0.idle_lock);
            self.0.idle.notify_all();
        }
    }
}

/// One connection counted against its address, given back when dropped (also when
/// its thread panics, could not be started, or the connection is refused for
/// another reason after it was counted).
pub(crate) struct AddressCounted(Arc<Context>, Host);

impl Drop for AddressCounted {
    fn drop(&mut self) {
        let mut held = lock(&self.0.per_address);
        if let Some(n) = held.get_mut(&self.1) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Arc<Context> {
        Arc::new(Context::new(Config::default(), Control::new()).unwrap())
    }

    fn host(s: &str) -> Host {
        Host::from(s.parse::<std::net::IpAddr>().unwrap())
    }

    fn held(ctx: &Context, ip: Host) -> Option<usize> {
        lock(&ctx.per_address).get(&ip).copied()
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_gets_units_back_when_dropped() {
        let ctx = context();
        let a = host("192.0.2.1");
        let b = host("192.0.2.2");
        let mut units: Vec<_> = (0..3).map(|_| ctx.count_address(a, 3).unwrap()).collect();
        assert_eq!(ctx.count_address(a, 3).err(), Some(3));
        // Another address is not affected.
        let other = ctx.count_address(b, 3).unwrap();
        units.pop();
        assert_eq!(held(&ctx, a), Some(2));
        let again = ctx.count_address(a, 3).unwrap();
        drop((units, again, other));
        // Nothing is kept for addresses that hold nothing.
        assert!(lock(&ctx.per_address).is_empty());
    }

    #[test]
    fn a_unit_is_given_back_when_its_thread_panics() {
        let ctx = context();
        let a = host("2001:db8::1");
        let unit = ctx.count_address(a, 1).unwrap();
        let joined = std::thread::spawn(move || {
            let _unit = unit;
            panic!("connection thread fails");
        })
        .join();
        assert!(joined.is_err());
        assert_eq!(held(&ctx, a), None);
        assert!(ctx.count_address(a, 1).is_ok());
    }
}
