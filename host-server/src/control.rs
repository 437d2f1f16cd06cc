//! The handle through which the outside (console, signal handler, tests) stops a
//! running server and looks into its room.

use std::sync::{Arc, Mutex, Weak};

use proto_core::PeerAddr;

use crate::room::Room;
use crate::sys::lock;

/// How the server is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The console's `close`: every connection is dropped at once, without a notice
    /// (a WebSocket client gets a close frame, so a browser shows a close).
    Close,
    /// Ctrl-C or SIGTERM: every client is sent a Shutdown notice ("server shutting
    /// down"), then its connection is closed.
    Terminate,
}

/// A cloneable handle on one server: the shutdown signal passed to [`crate::run`],
/// and a view of its room for the console's `list`. The room itself belongs to the
/// running server; the handle only looks at it.
#[derive(Clone, Default)]
pub struct Control {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    stop: Mutex<Option<Stop>>,
    room: Mutex<Weak<Room>>,
}

impl Control {
    /// A handle for a server not yet running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the server to stop. The first request wins; [`crate::run`] returns once
    /// every connection is closed (normally within a second; a connection still being
    /// sniffed is waited for until its sniff timeout ends).
    pub fn stop(&self, how: Stop) {
        lock(&self.inner.stop).get_or_insert(how);
    }

    /// The stop request, if one was made.
    pub fn stopping(&self) -> Option<Stop> {
        *lock(&self.inner.stop)
    }

    /// The addresses of the clients in the room now (none while no server runs).
    pub fn peers(&self) -> Vec<PeerAddr> {
        lock(&self.inner.room)
            .upgrade()
            .map(|room| room.peers())
            .unwrap_or_default()
    }

    /// Everyone in the room, with the server each is on when the room spans several
    /// (none while no server runs).
    pub(crate) fn listing(&self) -> Vec<crate::room::Listed> {
        lock(&self.inner.room)
            .upgrade()
            .map(|room| room.listing())
            .unwrap_or_default()
    }

    /// Lets [`Control::peers`] see `room`, the room of the server this handle runs.
    pub(crate) fn watch(&self, room: &Arc<Room>) {
        *lock(&self.inner.room) = Arc::downgrade(room);
    }
}
