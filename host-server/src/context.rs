//! What every thread of a running server shares: its settings, its stop handle, its
//! room, and the counts of connection threads that bound how many may run at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::control::Control;
use crate::room::Room;
use crate::sys::{lock, wait_until};

/// The shared context of one running server.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) control: Control,
    pub(crate) room: Arc<Room>,
    /// Connections being served (in the room or about to be).
    sessions: AtomicUsize,
    /// Threads turning away connections over the limit.
    refusers: AtomicUsize,
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
    /// The context of a server with `config`, stopped through `control`; `control`
    /// is given a view of the new room.
    pub(crate) fn new(config: Config, control: Control) -> Self {
        let room = Arc::new(Room::new());
        control.watch(&room);
        Self {
            config,
            control,
            room,
            sessions: AtomicUsize::new(0),
            refusers: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
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
