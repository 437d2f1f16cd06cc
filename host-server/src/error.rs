//! What can stop the server from starting.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::backplane::BackplaneError;
use crate::bind_addr::BindAddr;
use crate::tls::TlsError;

/// Why the server could not start or keep listening.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be created, bound or put into listening state.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: io::Error,
    },
    /// The host name of `--bind` could not be resolved.
    Resolve {
        /// The address asked for.
        addr: BindAddr,
        /// What the resolver said.
        source: io::Error,
    },
    /// The listener given to [`crate::run`] could not be made non-blocking.
    Listener(io::Error),
    /// A thread the server needs could not be started.
    Thread(io::Error),
    /// The writer pool's `epoll` could not be made (out of file descriptors).
    Pool(io::Error),
    /// The room's backplane could not be joined.
    Backplane(BackplaneError),
    /// The TLS certificate or key cannot be used.
    Tls(TlsError),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            ServerError::Resolve { addr, source } => {
                write!(f, "cannot resolve {addr} to listen on: {source}")
            }
            ServerError::Listener(e) => write!(f, "cannot use the listening socket: {e}"),
            ServerError::Thread(e) => write!(f, "cannot start a thread: {e}"),
            ServerError::Pool(e) => write!(f, "cannot set up the writer pool: {e}"),
            ServerError::Backplane(e) => write!(f, "{e}"),
            ServerError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServerError::Bind { source, .. } | ServerError::Resolve { source, .. } => Some(source),
            ServerError::Listener(e) | ServerError::Thread(e) | ServerError::Pool(e) => Some(e),
            ServerError::Backplane(e) => Some(e),
            ServerError::Tls(e) => Some(e),
        }
    }
}
