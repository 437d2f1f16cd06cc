//! The client's settings, each with its documented default.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::tls::TlsOptions;

/// The server address used when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9000";

/// The port used when an address names a host without a port.
pub const DEFAULT_PORT: u16 = 9000;

/// Connection attempts made before giving up, by default.
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// The pause between two connection attempts, by default.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// How long one TCP connect, and then the server's preamble, may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the client waits, after sending `Bye`, for the server to close, by default.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(1);

/// Everything a client session needs to know, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The server: `host:port`, `ip:port` or `[ipv6]:port`; a bare host gets
    /// [`DEFAULT_PORT`].
    pub addr: String,
    /// Connection attempts in all, at least one.
    pub attempts: NonZeroU32,
    /// The pause between two attempts.
    pub retry_delay: Duration,
    /// The limit on one TCP connect and, separately, on waiting for the server's preamble.
    pub connect_timeout: Duration,
    /// How long to wait for the server to close after `Bye` before closing anyway.
    pub linger: Duration,
    /// TLS to a server with built-in TLS (`--tls`); `None`: plain TCP.
    pub tls: Option<TlsOptions>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: DEFAULT_ADDR.to_string(),
            attempts: NonZeroU32::new(DEFAULT_ATTEMPTS).unwrap_or(NonZeroU32::MIN),
            retry_delay: DEFAULT_RETRY_DELAY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            linger: DEFAULT_LINGER,
            tls: None,
        }
    }
}
