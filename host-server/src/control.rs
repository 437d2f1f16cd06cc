//! The handle through which the outside (console, signal handler, tests) stops a
//! running server and looks into its room.

use std::sync::{Arc, Mutex};

use proto_core::PeerAddr;

use crate::room::Room;
use crate::sys::lock;

/// How the server is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The console's `close`: every connection is dropped at once, without a notice.
    Close,
    /// Ctrl-C or SIGTERM: every client is sent a Shutdown notice ("server shutting
    /// down"), then its connection is closed.
    Terminate,
}

/// A cloneable handle on one server: the shutdown signal passed to [`crate::run`],
/// and a view of its room for the console's `list`.
#[derive(Clone)]
pub struct Control {
    stop: Arc<Mutex<Option<Stop>>>,
    pub(crate) room: Arc<Room>,
}

impl Default for Control {
    fn default() -> Self {
        Self::new()
    }
}

impl Control {
    /// A handle for a server not yet running.
    pub fn new() -> Self {
        Self {
            stop: Arc::new(Mutex::new(None)),
            room: Arc::new(Room::new()),
        }
    }

    /// Asks the server to stop. The first request wins; [`crate::run`] returns once
    /// every connection is closed (normally within a second; a connection still being
    /// sniffed is waited for until its sniff timeout ends).
    pub fn stop(&self, how: Stop) {
        lock(&self.stop).get_or_insert(how);
    }

    /// The stop request, if one was made.
    pub fn stopping(&self) -> Option<Stop> {
        *lock(&self.stop)
    }

    /// The addresses of the clients in the room now.
    pub fn peers(&self) -> Vec<PeerAddr> {
        self.room.peers()
    }
}
