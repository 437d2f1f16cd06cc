//! Every limit of the server, with its default and the reason for it.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::backplane::BackplaneConfig;

/// The server's settings. [`Config::default`] gives the documented defaults; the
/// command line (see `cli`) overrides them one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (used by [`crate::bind`]; [`crate::run`] takes a bound
    /// listener). Default `127.0.0.1:9000`; `0.0.0.0:9000` or `[::]:9000` serve a LAN,
    /// the latter dual-stack.
    pub bind: SocketAddr,
    /// Listen backlog: connections the kernel queues before they are accepted.
    /// Default 128.
    pub backlog: u32,
    /// Most connections served at once; one more is told the server is full and
    /// closed. Default 8000: each client costs two threads and one file, and the
    /// machines this runs on allow 20,000 of each.
    pub max_clients: usize,
    /// Bytes waiting to be sent to one client before it is dropped as too slow.
    /// Default 1 MiB. This bounds the memory a stalled reader can hold.
    pub outbox_limit: usize,
    /// Messages per second one client may send; more are not dropped but read later,
    /// so TCP slows the sender down. `None` (the default) means no limit.
    pub rate_limit: Option<NonZeroU32>,
    /// A dead peer (a half-open connection) is found and dropped within this time.
    /// Binary clients are pinged after half of it of silence and dropped if nothing
    /// arrives in the other half; text clients are watched by TCP keepalive tuned to
    /// the same total. Default 60 s.
    pub dead_peer_timeout: Duration,
    /// How long to wait for a new connection's first bytes to tell a binary client
    /// (which sends its preamble at once) from a text client (which may type nothing
    /// for a while). Default 500 ms; after it, a silent client is taken as text.
    pub sniff_timeout: Duration,
    /// After Ctrl-C or SIGTERM, how long clients get to receive the shutdown notice
    /// before their connections are cut. Default 500 ms.
    pub shutdown_grace: Duration,
    /// Stack size of each connection's threads. Default 64 KiB, so thousands of
    /// clients fit in memory.
    pub thread_stack: usize,
    /// Bytes read from a client at a time; also bounds one batch of its messages.
    /// Default 4 KiB.
    pub read_buffer: usize,
    /// Kernel send buffer size per client (`SO_SNDBUF`); `None` (the default) keeps
    /// the system's autotuning.
    pub send_buffer: Option<usize>,
    /// Pause after a failed `accept` (for example out of file descriptors) before
    /// trying again. Default 100 ms.
    pub accept_pause: Duration,
    /// Refused connections (room full) handled at once, each by a short-lived thread
    /// that waits to see whether the client is binary. Past this, refusals are sent
    /// at once in text form. Default 64.
    pub max_refusers: usize,
    /// The Redis that carries a room shared by several servers (`--backplane`);
    /// `None` (the default) keeps the room inside this server.
    pub backplane: Option<BackplaneConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 9000)),
            backlog: 128,
            max_clients: 8000,
            outbox_limit: 1 << 20,
            rate_limit: None,
            dead_peer_timeout: Duration::from_secs(60),
            sniff_timeout: Duration::from_millis(500),
            shutdown_grace: Duration::from_millis(500),
            thread_stack: 64 * 1024,
            read_buffer: 4096,
            send_buffer: None,
            accept_pause: Duration::from_millis(100),
            max_refusers: 64,
            backplane: None,
        }
    }
}
