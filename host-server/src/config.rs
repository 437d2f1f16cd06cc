//! Every limit of the server, with its default and the reason for it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net};

use crate::bind_addr::{BindAddr, DEFAULT_PORT};

/// The server's settings. [`Config::default`] gives the documented defaults; the
/// command line (see `cli`) overrides them one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to listen on (used by [`crate::bind`]; [`crate::run`] takes a bound
    /// listener). Default `127.0.0.1:9000`; `0.0.0.0:9000` or `[::]:9000` serve a LAN,
    /// the latter dual-stack. A host name and a missing port (9000) are accepted.
    pub bind: BindAddr,
    /// Listen backlog: connections the kernel queues before they are accepted.
    /// Default 128.
    pub backlog: u32,
    /// Most connections served at once; one more is told the server is full and
    /// closed. Default 16,000: each client costs one thread and one file, and the
    /// machines this runs on allow 20,000 of each.
    pub max_clients: usize,
    /// Most connections one address may hold at once; one more is told "too many
    /// connections from your address" and closed, and nobody in the room hears of
    /// it. 0 turns the cap off. Default 16: enough for a household or a small office
    /// behind one NAT address, far too few for one host to take every slot of
    /// `max_clients`. IPv4-mapped IPv6 peers count as their IPv4 address; loopback
    /// peers are exempt unless `cap_loopback`.
    pub max_per_address: usize,
    /// Whether loopback peers (127.0.0.0/8, ::1) are counted by `max_per_address`.
    /// Default false: behind a local TLS front every client is 127.0.0.1, and local
    /// users are the machine's own.
    pub cap_loopback: bool,
    /// The prefix length that makes one IPv6 host for `max_per_address`: all
    /// addresses in one such network count as one host. Default 64, since a host
    /// (or a home) is normally given a whole /64 and can pick any address in it; 128
    /// counts each address on its own.
    pub ipv6_prefix: u8,
    /// The networks clients may connect from; a connection from outside all of them
    /// is refused with a notice before it is counted or announced. Empty (the
    /// default) lets everyone who reaches the port in. Loopback is not implied: list
    /// `127.0.0.1/32` too if a local TLS front forwards clients.
    pub allow: Vec<IpNet>,
    /// Bytes waiting to be sent to one client before it is dropped as too slow.
    /// Default 1 MiB. This bounds the memory a stalled reader can hold.
    pub outbox_limit: usize,
    /// Bytes waiting for one client past which every sender waits (is read no
    /// further) until that client has drained below it again, as long as the client
    /// keeps draining. Default 64 KiB: at a reader's pace of 2 MB/s that is 30 ms of
    /// messages queued ahead of a newcomer's, and it is small next to `outbox_limit`.
    /// Must be less than half of `outbox_limit`.
    pub pace_at: usize,
    /// Bytes a second a client with bytes waiting must take to count as draining.
    /// Default 8 KiB/s: a 115,200-baud serial link (about 11.5 KB/s) keeps up, a reader
    /// that trickles a few bytes a second does not.
    pub min_drain_rate: u32,
    /// How far behind its drain rate a client may fall (no bytes taken for this long,
    /// or too few) before it stops holding senders back. Default 250 ms: a reader
    /// that takes a big bite every 100 ms keeps pacing the room even when its thread
    /// runs late, and one that has just stopped holds back, once and for at most this
    /// long, only senders that have relayed a read buffer since they last waited
    /// (flooders), not a quiet client.
    pub pace_grace: Duration,
    /// How far behind its drain rate a client with bytes waiting may fall before it is
    /// dropped as too slow. Default 10 s, as long as a busy reader might pause; under
    /// a flood, `outbox_limit` drops a stopped reader sooner.
    pub stall_timeout: Duration,
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
    /// How long a text client that has not sent a newline yet must stay silent for
    /// the bytes it sent to count as one message. Clients written for the original
    /// assignment send each message with no newline; once a client sends a newline
    /// (or a Telnet command), only newlines end its messages. Default 200 ms: a
    /// message is delivered promptly, and one `send` arrives as one burst.
    pub text_pause: Duration,
    /// After Ctrl-C or SIGTERM, how long clients get to receive the shutdown notice
    /// before their connections are cut. Default 500 ms.
    pub shutdown_grace: Duration,
    /// Stack size of each connection's thread (and the writer pool's). Default 64 KiB,
    /// so thousands of clients fit in memory; with TLS at least 256 KiB, for the
    /// cryptography.
    pub thread_stack: usize,
    /// Threads of the writer pool, which sends what a client's socket did not take at
    /// once (write-through from the broadcasting thread sends the rest). Default 0:
    /// one per core.
    pub writer_threads: usize,
    /// Bytes read from a client at a time; also bounds one batch of its messages.
    /// Default 4 KiB.
    pub read_buffer: usize,
    /// Kernel receive buffer size per client (`SO_RCVBUF`). Default 128 KiB, far more
    /// than chat needs. It bounds what a flooding client can park in the server's
    /// kernel while it is paced (the system's autotuning would let it grow to tens
    /// of megabytes).
    pub recv_buffer: usize,
    /// Kernel send buffer size per client (`SO_SNDBUF`); `None` (the default) keeps
    /// the system's autotuning.
    pub send_buffer: Option<usize>,
    /// Pause after a failed `accept` (for example out of file descriptors) before
    /// trying again. Default 100 ms.
    pub accept_pause: Duration,
    /// Refused connections (room full, too many from one address, outside the allow
    /// list) handled at once, each by a short-lived thread that waits to see whether
    /// the client is binary. Past this, refusals are sent at once in text form.
    /// Default 64.
    pub max_refusers: usize,
    /// With TLS (`tls_cert`), refused connections that, with every refuser thread
    /// busy, one thread holds (each up to `sniff_timeout`) until their first bytes
    /// tell a TLS client, sent a TLS alert it can read, from a plain one, sent the
    /// text notice. Past this, the choice is made on what has already arrived.
    /// Default 1024.
    pub max_held_refusals: usize,
    /// Extra listeners for trusted fronts (`--proxy-listen`): every connection on
    /// them must open with a PROXY protocol header (v1 or v2) naming the client the
    /// front forwards, and that client's address is used everywhere (the room, the
    /// per-address cap, `allow`, the log). Empty (the default): none. The main
    /// listener never reads PROXY headers.
    pub proxy_listen: Vec<BindAddr>,
    /// The peers allowed to connect to the PROXY listeners; a connection from any
    /// other is closed unheard. Default loopback only (127.0.0.0/8, ::1): a front on
    /// the same machine.
    pub proxy_trusted: Vec<IpNet>,
    /// How long a front has to send its PROXY header before the connection is
    /// closed. Default 5 s.
    pub proxy_timeout: Duration,
    /// The PEM certificate chain (leaf first) and private key for built-in TLS
    /// (`--tls-cert`, `--tls-key`): a client whose first bytes open a TLS handshake
    /// gets TLS on the same port. `None` (the default): no TLS.
    pub tls_cert: Option<PathBuf>,
    /// The private key for `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// Refuse clients that do not start TLS, with a notice in plain text. Default
    /// false: plain and TLS clients share the port.
    pub tls_required: bool,
    /// How long a TLS handshake may take before the connection is closed. Default
    /// 5 s; connections in their handshake count toward `max_clients` and
    /// `max_per_address`.
    pub tls_handshake_timeout: Duration,
    /// Whether the port also serves the room to browsers: `GET /` answers with the
    /// chat page and `GET /ws` joins the room over a WebSocket. Default true; false
    /// (`--no-web`) refuses every HTTP request with a text notice, as before.
    pub web: bool,
    /// Origins, besides the server's own, whose pages may open a WebSocket to the
    /// room (`--web-origin`), normalised: lower case, no default port. Default none.
    pub web_origins: Vec<String>,
    /// Most bytes of one HTTP request head; a longer one gets 431. Default 8 KiB,
    /// ample for a browser's request (about 600 bytes).
    pub http_head_limit: usize,
    /// How long a request head may take to arrive; a slower one gets 408. Default 5 s.
    pub http_timeout: Duration,
    /// How long a silent connection from an address that loaded the chat page in the
    /// last two minutes is waited on, instead of `sniff_timeout`, before it is taken
    /// as a text client. Browsers open spare connections and leave them silent for
    /// up to about 20 s before they use or close them; taken as text clients, they
    /// would be announced to the room. Default 30 s; 0 waits no longer than
    /// `sniff_timeout`. A text client from that address that sends a byte is in at once.
    pub web_spare_wait: Duration,
    /// The Redis that carries a room shared by several servers (`--backplane`);
    /// `None` (the default) keeps the room inside this server.
    pub backplane: Option<BackplaneConfig>,
}

impl Config {
    /// Threads the writer pool runs: `writer_threads`, or one per core.
    pub(crate) fn writers(&self) -> usize {
        match self.writer_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: BindAddr::Ip(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT))),
            backlog: 128,
            max_clients: 16_000,
            max_per_address: 16,
            cap_loopback: false,
            ipv6_prefix: crate::gate::DEFAULT_IPV6_PREFIX,
            allow: Vec::new(),
            outbox_limit: 1 << 20,
            pace_at: 64 * 1024,
            min_drain_rate: 8 * 1024,
            pace_grace: Duration::from_millis(250),
            stall_timeout: Duration::from_secs(10),
            rate_limit: None,
            dead_peer_timeout: Duration::from_secs(60),
            sniff_timeout: Duration::from_millis(500),
            text_pause: Duration::from_millis(200),
            shutdown_grace: Duration::from_millis(500),
            thread_stack: 64 * 1024,
            writer_threads: 0,
            read_buffer: 4096,
            recv_buffer: 128 * 1024,
            send_buffer: None,
            accept_pause: Duration::from_millis(100),
            max_refusers: 64,
            max_held_refusals: 1024,
            proxy_listen: Vec::new(),
            proxy_trusted: vec![
                IpNet::from(Ipv4Net::new_assert(Ipv4Addr::LOCALHOST, 8)),
                IpNet::from(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            ],
            proxy_timeout: Duration::from_secs(5),
            tls_cert: None,
            tls_key: None,
            tls_required: false,
            tls_handshake_timeout: Duration::from_secs(5),
            web: true,
            web_origins: Vec::new(),
            http_head_limit: 8192,
            http_timeout: Duration::from_secs(5),
            web_spare_wait: Duration::from_secs(30),
            backplane: None,
        }
    }
}

/// Where the room lives and how it is kept: the `--backplane` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct BackplaneConfig {
    /// The Redis URL: `redis://host:port`, `redis://:password@host:port`,
    /// `redis://user:password@host:port/db`, `redis+unix:///path`.
    pub url: String,
    /// The room's name: servers with the same Redis and name form one room.
    /// Default `lobby`; letters, digits, `-`, `_` and `.`, at most 64.
    pub room: String,
    /// About how many messages the stream keeps (`XADD MAXLEN ~`). A server that
    /// falls further behind than this loses the room and disconnects its clients.
    /// Default 100,000 (some 15 MB of Redis memory with short messages).
    pub retain: u64,
    /// How long a message may wait to be appended while Redis cannot be reached
    /// before its sender is told it was not delivered. Default 2 s.
    pub append_timeout: Duration,
    /// How long Redis may leave a request unanswered before the connection is taken
    /// for dead and opened again. Bounds how long a silently dead connection goes
    /// unnoticed. Default 3 s.
    pub io_timeout: Duration,
    /// Most messages appended by one script call, and read by one `XREAD`.
    /// Default 1024.
    pub batch: usize,
    /// How long Redis keeps an append's dedupe key, which answers a retried append
    /// at once. Once it is gone, an append whose answer was lost is looked for in the
    /// stream instead. Default 60 s.
    pub dedupe: Duration,
    /// How long a server may stay silent (no heartbeat) before the others take its
    /// clients out of the room, each with a leave naming the reason. Default 10 s.
    pub server_timeout: Duration,
}

impl Default for BackplaneConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            room: "lobby".into(),
            retain: 100_000,
            append_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(3),
            batch: 1024,
            dedupe: Duration::from_secs(60),
            server_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for BackplaneConfig {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackplaneConfig")
            .field("url", &redact(&self.url))
            .field("room", &self.room)
            .field("retain", &self.retain)
            .field("append_timeout", &self.append_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("batch", &self.batch)
            .field("dedupe", &self.dedupe)
            .field("server_timeout", &self.server_timeout)
            .finish()
    }
}

/// `url` with any password replaced by `***`, for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let host_end = rest.find('/').unwrap_or(rest.len());
    match rest[..host_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}
