//! The command line: every setting of [`Config`] as a flag, with its default.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;

use crate::backplane::{valid_room_name, BackplaneConfig};
use crate::bind_addr::BindAddr;
use crate::config::Config;
use crate::gate::parse_net;

fn defaults() -> Config {
    Config::default()
}

/// The chatroom server: relays every message to every other connected client.
///
/// Binary clients (host-client), text clients (nc, telnet) and browsers (the chat
/// page at http://ADDR/, which joins through a WebSocket) share one room. On
/// start it prints `listening on ADDR` on stdout. Console commands on stdin: list,
/// close, help. Ctrl-C or SIGTERM sends every client a shutdown notice and exits.
#[derive(Debug, Parser)]
#[command(
    name = "host-server",
    version,
    // So that `--backlog -1` is refused for its value, not taken for a flag.
    allow_negative_numbers = true,
    after_help = "Exit status: 0 after `close`, Ctrl-C or SIGTERM; 1 if it cannot start (it \
cannot listen, or reach its backplane), before it prints `listening on`; 2 on a bad command line."
)]
pub struct Cli {
    /// Address to listen on (see the help text for the LAN forms).
    #[arg(long, value_name = "ADDR", default_value_t = defaults().bind,
          help = "Address to listen on: IP:PORT, [IPV6]:PORT or HOST:PORT, the port \
optional (9000). Use 0.0.0.0:9000 (IPv4) or [::]:9000 (IPv4 and IPv6) to serve a LAN, and \
port 0 for any free port (the real one is printed). A host name listens on the first of \
its addresses that binds, IPv4 first")]
    pub bind: BindAddr,

    /// Listen backlog: connections the kernel queues before the server accepts them.
    #[arg(long, value_name = "N", default_value_t = defaults().backlog,
          value_parser = whole::<u32>(1, 65535))]
    pub backlog: u32,

    /// Most clients at once; one more is told "server full" and closed. Each client
    /// costs one thread and one open file.
    #[arg(long, value_name = "N", default_value_t = defaults().max_clients as u64,
          value_parser = whole::<u64>(1, 1_000_000))]
    pub max_clients: u64,

    /// Most connections one address may hold at once (0: no limit); one more is told
    /// "too many connections from your address" and closed. Loopback peers are exempt
    /// unless --cap-loopback.
    #[arg(long, value_name = "N", default_value_t = defaults().max_per_address as u64,
          value_parser = whole::<u64>(0, 1_000_000))]
    pub max_per_address: u64,

    /// Apply --max-per-address to loopback peers (127.0.0.0/8, ::1) too. They are
    /// exempt by default: behind a local TLS front every client is 127.0.0.1.
    #[arg(long)]
    pub cap_loopback: bool,

    /// Prefix length that makes one IPv6 host for --max-per-address: every address
    /// in one such network counts as the same host (a host is normally given a whole
    /// /64). 128 counts each address on its own.
    #[arg(long, value_name = "BITS", default_value_t = defaults().ipv6_prefix,
          value_parser = whole::<u8>(1, 128))]
    pub ipv6_prefix: u8,

    /// Accept clients only from this network: CIDR such as 192.168.1.0/24 or
    /// fd00::/8, or one address; repeat for more. Others are refused with a notice.
    /// Without it, everyone who reaches the port may join.
    #[arg(long, value_name = "CIDR", value_parser = parse_net)]
    pub allow: Vec<IpNet>,

    /// Bytes that may wait to be sent to one client; a client that falls further
    /// behind is dropped as too slow (it gets a notice saying so).
    #[arg(long, value_name = "BYTES", default_value_t = defaults().outbox_limit as u64,
          value_parser = whole::<u64>(128 * 1024, 1 << 32))]
    pub outbox_limit: u64,

    /// Bytes waiting for one client past which senders wait for it (are read no
    /// further) while it keeps draining; at most half of --outbox-limit.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().pace_at as u64,
          value_parser = whole::<u64>(4096, 1 << 31))]
    pub pace_at: u64,

    /// Bytes per second a client with messages waiting must read to count as
    /// reading; a slower one stops pacing the room and is dropped if it falls too
    /// far behind.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = defaults().min_drain_rate,
          value_parser = whole::<u32>(1, u32::MAX))]
    pub min_drain_rate: u32,

    /// How far behind --min-drain-rate a client may fall before it stops holding
    /// senders back: the longest a reader that stops can delay a flooding sender.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().pace_grace),
          value_parser = whole::<u64>(10, 60_000))]
    pub pace_grace_ms: u64,

    /// Seconds behind --min-drain-rate after which a client with messages waiting is
    /// dropped as too slow (it gets a notice saying so).
    #[arg(long, value_name = "SECS", default_value_t = defaults().stall_timeout.as_secs(),
          value_parser = seconds(1, 86_400))]
    pub stall_timeout: u64,

    /// Messages per second one client may send; faster senders are read more slowly
    /// (TCP makes them wait), never dropped. Off unless given.
    #[arg(long, value_name = "MSGS_PER_SEC", value_parser = rate)]
    pub rate_limit: Option<NonZeroU32>,

    /// Seconds within which a dead peer (half-open connection) is found and dropped:
    /// binary clients are pinged after half of it, text clients watched by TCP keepalive.
    #[arg(long, value_name = "SECS", default_value_t = defaults().dead_peer_timeout.as_secs(),
          value_parser = seconds(2, 86_400))]
    pub dead_peer_timeout: u64,

    /// Milliseconds to wait for a new connection's first bytes to tell a binary client
    /// from a text client; a client silent that long is taken as text.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().sniff_timeout),
          value_parser = whole::<u64>(10, 60_000))]
    pub sniff_timeout_ms: u64,

    /// Milliseconds a text client that has sent no newline yet must be silent for
    /// what it sent to count as one message (clients that send messages without a
    /// newline). Once a client sends a newline, only newlines end its messages.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().text_pause),
          value_parser = whole::<u64>(10, 10_000))]
    pub text_pause_ms: u64,

    /// Milliseconds clients get to receive the shutdown notice after Ctrl-C or SIGTERM
    /// before their connections are cut.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().shutdown_grace),
          value_parser = whole::<u64>(0, 900))]
    pub shutdown_grace_ms: u64,

    /// Stack size of each connection thread, in bytes (small, so thousands fit; at
    /// least 262144 with --tls-cert, for the cryptography).
    #[arg(long, value_name = "BYTES", default_value_t = defaults().thread_stack as u64,
          value_parser = whole::<u64>(32 * 1024, 8 << 20))]
    pub thread_stack: u64,

    /// Threads that send what a client's socket did not take at once; 0: one per core.
    #[arg(long, value_name = "N", default_value_t = defaults().writer_threads as u64,
          value_parser = whole::<u64>(0, 64))]
    pub writer_threads: u64,

    /// Bytes read from a client at a time; also bounds one batch of its messages.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().read_buffer as u64,
          value_parser = whole::<u64>(512, 16 * 1024))]
    pub read_buffer: u64,

    /// Kernel receive buffer per client (SO_RCVBUF): bounds what a flooding client
    /// can park in the server's memory while it is paced.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().recv_buffer as u64,
          value_parser = whole::<u64>(4096, 1 << 30))]
    pub recv_buffer: u64,

    /// Kernel send buffer per client (SO_SNDBUF), in bytes. System autotuning unless given.
    #[arg(long, value_name = "BYTES",
          value_parser = whole::<u64>(4096, 64 << 20))]
    pub send_buffer: Option<u64>,

    /// Milliseconds to pause after a failed accept (e.g. out of file descriptors).
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().accept_pause),
          value_parser = whole::<u64>(1, 10_000))]
    pub accept_pause_ms: u64,

    /// Refused connections (over --max-clients or --max-per-address, or outside
    /// --allow) turned away at once by threads that first wait to see whether the
    /// client is binary; past this, refusals go out in text form.
    #[arg(long, value_name = "N", default_value_t = defaults().max_refusers as u64,
          value_parser = whole::<u64>(0, 1024))]
    pub max_refusers: u64,

    /// With --tls-cert: refused connections that, with every refuser busy, one
    /// thread holds (each up to --sniff-timeout-ms) until their first bytes tell a
    /// TLS client, sent a TLS alert its handshake reads as a refusal, from a plain
    /// one, sent the text notice; past this, the choice is made on what has arrived.
    #[arg(long, value_name = "N", default_value_t = defaults().max_held_refusals as u64,
          value_parser = whole::<u64>(0, 65_536))]
    pub max_held_refusals: u64,

    /// Also listen here for trusted fronts (haproxy send-proxy/send-proxy-v2, stunnel
    /// protocol = proxy): every connection must open with a PROXY v1 or v2 header,
    /// whose client address is then the connection's address (room, --max-per-address,
    /// --allow, log). Repeat for more. The --bind port never reads PROXY headers.
    #[arg(long, value_name = "ADDR")]
    pub proxy_listen: Vec<BindAddr>,

    /// A front allowed on --proxy-listen: CIDR or one address; repeat for more.
    /// Connections from any other peer are closed unheard. Default loopback only
    /// (127.0.0.0/8 and ::1).
    #[arg(long, value_name = "CIDR", value_parser = parse_net, requires = "proxy_listen")]
    pub proxy_trusted: Vec<IpNet>,

    /// Milliseconds a front has to send its PROXY header before the connection is
    /// closed.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().proxy_timeout),
          value_parser = whole::<u64>(100, 60_000), requires = "proxy_listen")]
    pub proxy_timeout_ms: u64,

    /// PEM certificate chain (leaf first) for built-in TLS on the --bind port: a
    /// client that opens with a TLS handshake gets TLS, others stay plain unless
    /// --tls-required. Needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1: RSA, ECDSA or Ed25519).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Refuse clients that do not start TLS (they get a notice in plain text).
    #[arg(long, requires = "tls_cert")]
    pub tls_required: bool,

    /// Milliseconds a TLS handshake may take before the connection is closed.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().tls_handshake_timeout),
          value_parser = whole::<u64>(100, 60_000), requires = "tls_cert")]
    pub tls_handshake_timeout_ms: u64,

    /// Serve no chat page and no WebSocket: every HTTP request is refused with a
    /// text notice. By default `GET /` is the chat page and `GET /ws` joins the room.
    #[arg(long)]
    pub no_web: bool,

    /// An origin, besides the server's own, whose pages may join over a WebSocket,
    /// as in `http://chat.lan:9000` (repeat for more). Pages of other origins get 403.
    #[arg(long, value_name = "ORIGIN", value_parser = crate::web::parse_origin)]
    pub web_origin: Vec<String>,

    /// Most bytes of an HTTP request head; a longer one gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().http_head_limit as u64,
          value_parser = whole::<u64>(1024, 1 << 20))]
    pub http_head_limit: u64,

    /// Milliseconds an HTTP request head may take to arrive; a slower one gets 408.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().http_timeout),
          value_parser = whole::<u64>(10, 600_000))]
    pub http_timeout_ms: u64,

    /// Milliseconds a silent connection from an address that loaded the chat page in
    /// the last two minutes is waited on before it is taken as a text client (a
    /// browser's spare connection would otherwise be announced as a join).
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().web_spare_wait),
          value_parser = whole::<u64>(0, 600_000))]
    pub web_spare_wait_ms: u64,

    /// Redis URL of a room shared by several servers: every server started with the
    /// same Redis and --room is part of one room. Without it the room lives in this
    /// server alone. Forms: redis://host:port, redis://:password@host:port,
    /// redis://user:password@host:port/db.
    #[arg(long, value_name = "URL")]
    pub backplane: Option<String>,

    /// Name of the room in the backplane (letters, digits, - _ .; at most 64).
    #[arg(long, value_name = "NAME", default_value_t = bp_defaults().room,
          value_parser = room_name, requires = "backplane")]
    pub room: String,

    /// About how many messages the backplane keeps (XADD MAXLEN ~). A server that falls
    /// further behind disconnects its clients with a notice. At least 4 times
    /// --backplane-batch, so that one burst is read by every server before it is trimmed.
    #[arg(long, value_name = "N", default_value_t = bp_defaults().retain,
          value_parser = whole::<u64>(1, 1 << 32), requires = "backplane")]
    pub backplane_retain: u64,

    /// Most messages appended by one Redis call, and read by one XREAD.
    #[arg(long, value_name = "N", default_value_t = bp_defaults().batch as u64,
          value_parser = whole::<u64>(16, 65_536), requires = "backplane")]
    pub backplane_batch: u64,

    /// Seconds Redis keeps an append's dedupe key, which answers a retried append at
    /// once; after that, an append whose answer was lost is looked for in the stream.
    #[arg(long, value_name = "SECS", default_value_t = bp_defaults().dedupe.as_secs(),
          value_parser = seconds(1, 86_400), requires = "backplane")]
    pub backplane_dedupe_secs: u64,

    /// Milliseconds a message may wait for the backplane before its sender is answered
    /// for now: told it is delayed (error code 13) if it reached Redis or may have,
    /// and later the truth (delivered, or not delivered with code 10); told it was not
    /// delivered (code 10) if it never left this server.
    #[arg(long, value_name = "MS", default_value_t = millis(bp_defaults().append_timeout),
          value_parser = whole::<u64>(100, 60_000), requires = "backplane")]
    pub backplane_append_timeout_ms: u64,

    /// Milliseconds Redis may leave a request unanswered before the connection is
    /// taken for dead and opened again.
    #[arg(long, value_name = "MS", default_value_t = millis(bp_defaults().io_timeout),
          value_parser = whole::<u64>(300, 60_000), requires = "backplane")]
    pub backplane_timeout_ms: u64,

    /// Milliseconds a server may stay silent (it beats every fifth of this) before
    /// the other servers take its clients out of the room, each with a leave notice
    /// saying why.
    #[arg(long, value_name = "MS", default_value_t = millis(bp_defaults().server_timeout),
          value_parser = whole::<u64>(500, 3_600_000), requires = "backplane")]
    pub backplane_server_timeout_ms: u64,
}

/// A parser of a whole number from `min` to `max` whose error says so (clap's own
/// says "invalid digit found in string" for `1.5` or `-1`).
fn whole<T>(min: T, max: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy + Send + Sync + 'static,
{
    move |text| match text.parse::<T>() {
        Ok(n) if min <= n && n <= max => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// [`whole`], for a number of seconds.
fn seconds(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync {
    move |text| {
        whole(min, max)(text).map_err(|_| format!("expected whole seconds, from {min} to {max}"))
    }
}

/// A `--rate-limit`: at least one message per second; no limit is no flag.
fn rate(text: &str) -> Result<NonZeroU32, String> {
    whole(1, u32::MAX)(text)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(|| {
            format!(
                "expected messages per second, a whole number from 1 to {}; leave the option \
out for no limit",
                u32::MAX
            )
        })
}

/// `--backplane-retain` is at least this many batches.
const RETAIN_BATCHES: u64 = 4;

fn bp_defaults() -> BackplaneConfig {
    BackplaneConfig::default()
}

fn room_name(name: &str) -> Result<String, String> {
    if valid_room_name(name) {
        Ok(name.to_string())
    } else {
        Err("use 1 to 64 letters, digits, '-', '_' or '.'".into())
    }
}

/// Checks a `--backplane` URL the way the Redis client will read it, so that a
/// malformed one is a usage error before the server starts, not a failure after it
/// says it is listening. The message leaves the URL out: it may hold a password.
fn backplane_url(url: &str) -> Result<(), String> {
    const FORMS: &str = "use redis://HOST:PORT, redis://:PASSWORD@HOST:PORT or \
redis://USER:PASSWORD@HOST:PORT/DB";
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("redis" | "rediss" | "redis+unix") => {}
        Some(other) => return Err(format!("{other}:// is not a Redis URL; {FORMS}")),
        None => return Err(format!("not a Redis URL; {FORMS}")),
    }
    redis::IntoConnectionInfo::into_connection_info(url)
        .map(drop)
        .map_err(|e| {
            // The Redis error reads "what - Kind"; the kind says nothing more.
            let e = e.to_string();
            let what = e.split(" - ").next().unwrap_or(&e);
            format!("not a usable Redis URL ({what}); {FORMS}")
        })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Cli {
    /// The settings this command line asks for.
    ///
    /// # Errors
    /// A message saying which settings contradict each other.
    pub fn config(&self) -> Result<Config, String> {
        if self.pace_at.saturating_mul(2) > self.outbox_limit {
            return Err(format!(
                "--pace-at {} must be at most half of --outbox-limit {}",
                self.pace_at, self.outbox_limit
            ));
        }
        if let Some(url) = &self.backplane {
            backplane_url(url).map_err(|e| format!("--backplane: {e}"))?;
        }
        let min_retain = self.backplane_batch.saturating_mul(RETAIN_BATCHES);
        if self.backplane.is_some() && self.backplane_retain < min_retain {
            return Err(format!(
                "--backplane-retain {} is below its minimum {min_retain} ({RETAIN_BATCHES} \
                 times --backplane-batch {}): one burst would be trimmed before every \
                 server read it, and every server would reset its clients",
                self.backplane_retain, self.backplane_batch
            ));
        }
        Ok(Config {
            bind: self.bind.clone(),
            backlog: self.backlog,
            max_clients: size(self.max_clients),
            max_per_address: size(self.max_per_address),
            cap_loopback: self.cap_loopback,
            ipv6_prefix: self.ipv6_prefix,
            allow: self.allow.clone(),
            outbox_limit: size(self.outbox_limit),
            pace_at: size(self.pace_at),
            min_drain_rate: self.min_drain_rate,
            pace_grace: Duration::from_millis(self.pace_grace_ms),
            stall_timeout: Duration::from_secs(self.stall_timeout),
            rate_limit: self.rate_limit,
            dead_peer_timeout: Duration::from_secs(self.dead_peer_timeout),
            sniff_timeout: Duration::from_millis(self.sniff_timeout_ms),
            text_pause: Duration::from_millis(self.text_pause_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            thread_stack: size(self.thread_stack),
            writer_threads: size(self.writer_threads),
            read_buffer: size(self.read_buffer),
            recv_buffer: size(self.recv_buffer),
            send_buffer: self.send_buffer.map(size),
            accept_pause: Duration::from_millis(self.accept_pause_ms),
            max_refusers: size(self.max_refusers),
            max_held_refusals: size(self.max_held_refusals),
            proxy_listen: self.proxy_listen.clone(),
            proxy_trusted: if self.proxy_trusted.is_empty() {
                defaults().proxy_trusted
            } else {
                self.proxy_trusted.clone()
            },
            proxy_timeout: Duration::from_millis(self.proxy_timeout_ms),
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_required: self.tls_required,
            tls_handshake_timeout: Duration::from_millis(self.tls_handshake_timeout_ms),
            web: !self.no_web,
            web_origins: self.web_origin.clone(),
            http_head_limit: size(self.http_head_limit),
            http_timeout: Duration::from_millis(self.http_timeout_ms),
            web_spare_wait: Duration::from_millis(self.web_spare_wait_ms),
            backplane: self.backplane.as_ref().map(|url| BackplaneConfig {
                url: url.clone(),
                room: self.room.clone(),
                retain: self.backplane_retain,
                append_timeout: Duration::from_millis(self.backplane_append_timeout_ms),
                io_timeout: Duration::from_millis(self.backplane_timeout_ms),
                batch: size(self.backplane_batch),
                dedupe: Duration::from_secs(self.backplane_dedupe_secs),
                server_timeout: Duration::from_millis(self.backplane_server_timeout_ms),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_gives_the_defaults() {
        let cli = Cli::try_parse_from(["host-server"]).unwrap();
        assert_eq!(cli.config(), Ok(Config::default()));
    }

    #[test]
    fn flags_set_their_fields() {
        // Every flag with a value of its own, so two swapped fields cannot pass.
        let cli = Cli::try_parse_from([
            "host-server",
            "--bind",
            "[::]:0",
            "--backlog",
            "7",
            "--max-clients",
            "3",
            "--max-per-address",
            "2",
            "--cap-loopback",
            "--ipv6-prefix",
            "56",
            "--allow",
            "10.0.0.0/8",
            "--allow",
            "::1",
            "--outbox-limit",
            "200000",
            "--pace-at",
            "5000",
            "--min-drain-rate",
            "99",
            "--pace-grace-ms",
            "14",
            "--stall-timeout",
            "15",
            "--rate-limit",
            "10",
            "--dead-peer-timeout",
            "4",
            "--sniff-timeout-ms",
            "11",
            "--text-pause-ms",
            "14",
            "--shutdown-grace-ms",
            "12",
            "--thread-stack",
            "40000",
            "--read-buffer",
            "600",
            "--recv-buffer",
            "9000",
            "--send-buffer",
            "8192",
            "--accept-pause-ms",
            "13",
            "--max-refusers",
            "5",
            "--max-held-refusals",
            "6",
            "--proxy-listen",
            "127.0.0.1:0",
            "--proxy-trusted",
            "10.1.0.0/16",
            "--proxy-timeout-ms",
            "1500",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-required",
            "--tls-handshake-timeout-ms",
            "2500",
            "--no-web",
            "--web-origin",
            "http://Chat.lan:80/",
            "--web-origin",
            "https://x.example:8443",
            "--http-head-limit",
            "2048",
            "--http-timeout-ms",
            "15",
            "--web-spare-wait-ms",
            "16",
        ])
        .unwrap();
        let want = Config {
            bind: "[::]:0".parse().unwrap(),
            backlog: 7,
            max_clients: 3,
            max_per_address: 2,
            cap_loopback: true,
            ipv6_prefix: 56,
            allow: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            outbox_limit: 200_000,
            pace_at: 5000,
            min_drain_rate: 99,
            pace_grace: Duration::from_millis(14),
            stall_timeout: Duration::from_secs(15),
            rate_limit: NonZeroU32::new(10),
            dead_peer_timeout: Duration::from_secs(4),
            sniff_timeout: Duration::from_millis(11),
            text_pause: Duration::from_millis(14),
            shutdown_grace: Duration::from_millis(12),
            thread_stack: 40_000,
            writer_threads: 0,
            read_buffer: 600,
            recv_buffer: 9000,
            send_buffer: Some(8192),
            accept_pause: Duration::from_millis(13),
            max_refusers: 5,
            max_held_refusals: 6,
            proxy_listen: vec!["127.0.0.1:0".parse().unwrap()],
            proxy_trusted: vec!["10.1.0.0/16".parse().unwrap()],
            proxy_timeout: Duration::from_millis(1500),
            tls_cert: Some("c.pem".into()),
            tls_key: Some("k.pem".into()),
            tls_required: true,
            tls_handshake_timeout: Duration::from_millis(2500),
            web: false,
            web_origins: vec!["http://chat.lan".into(), "https://x.example:8443".into()],
            http_head_limit: 2048,
            http_timeout: Duration::from_millis(15),
            web_spare_wait: Duration::from_millis(16),
            backplane: None,
        };
        assert_eq!(cli.config(), Ok(want));
    }

    #[test]
    fn a_pace_mark_over_half_the_outbox_limit_is_refused() {
        let args = [
            "host-server",
            "--outbox-limit",
            "200000",
            "--pace-at",
            "100001",
        ];
        let err = Cli::try_parse_from(args).unwrap().config().unwrap_err();
        assert!(err.contains("--pace-at 100001"), "{err}");
        let args = [
            "host-server",
            "--outbox-limit",
            "200000",
            "--pace-at",
            "100000",
        ];
        assert!(Cli::try_parse_from(args).unwrap().config().is_ok());
    }

    #[test]
    fn backplane_flags_set_the_backplane() {
        let cli = Cli::try_parse_from([
            "host-server",
            "--backplane",
            "redis://:pw@10.0.0.1:6379",
            "--room",
            "ops-2",
            "--backplane-retain",
            "500",
            "--backplane-append-timeout-ms",
            "700",
            "--backplane-timeout-ms",
            "900",
            "--backplane-batch",
            "100",
            "--backplane-dedupe-secs",
            "5",
            "--backplane-server-timeout-ms",
            "2500",
        ])
        .unwrap();
        let want = BackplaneConfig {
            url: "redis://:pw@10.0.0.1:6379".into(),
            room: "ops-2".into(),
            retain: 500,
            append_timeout: Duration::from_millis(700),
            io_timeout: Duration::from_millis(900),
            batch: 100,
            dedupe: Duration::from_secs(5),
            server_timeout: Duration::from_millis(2500),
        };
        assert_eq!(cli.config().unwrap().backplane, Some(want));
        // Debug output (and so any log of the config) hides the password.
        assert!(!format!("{:?}", cli.config()).contains("pw"));
    }

    #[test]
    fn a_backplane_url_that_is_not_redis_is_a_usage_error() {
        for (url, says) in [
            ("foo", "not a Redis URL"),
            ("http://h:6379", "http:// is not a Redis URL"),
            ("redis://", "not a usable Redis URL"),
            ("redis://h:6379/x", "Invalid database number"),
            ("redis://:s3cret@h:6379/x", "not a usable Redis URL"),
        ] {
            let cli = Cli::try_parse_from(["host-server", "--backplane", url]).unwrap();
            let err = cli.config().unwrap_err();
            assert!(
                err.starts_with("--backplane: ") && err.contains(says),
                "{url}: {err}"
            );
            assert!(err.contains("redis://HOST:PORT"), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
        for url in [
            "redis://10.0.0.1",
            "redis://u:p@h:6380/2",
            "redis+unix:///tmp/r.sock",
        ] {
            let cli = Cli::try_parse_from(["host-server", "--backplane", url]).unwrap();
            assert!(cli.config().is_ok(), "{url}");
        }
    }

    #[test]
    fn a_retain_below_four_batches_is_refused_with_its_minimum() {
        let parse = |retain: &str, batch: &str| {
            let args = [
                "host-server",
                "--backplane",
                "redis://h",
                "--backplane-retain",
                retain,
                "--backplane-batch",
                batch,
            ];
            Cli::try_parse_from(args).unwrap().config()
        };
        let e = parse("4095", "1024").unwrap_err();
        assert!(e.contains("minimum 4096"), "{e}");
        assert!(parse("4096", "1024").is_ok());
        assert!(parse("64", "16").is_ok());
        assert!(parse("63", "16").is_err());
        let default = Cli::try_parse_from(["host-server", "--backplane", "redis://h"]);
        assert!(default.unwrap().config().is_ok());
    }

    #[test]
    fn backplane_settings_need_a_backplane_and_room_names_are_checked() {
        for args in [
            &["host-server", "--room", "x"][..],
            &["host-server", "--backplane-retain", "1000"],
            &["host-server", "--backplane", "redis://h", "--room", "a}b"],
            &["host-server", "--backplane", "redis://h", "--room", ""],
            &[
                "host-server",
                "--backplane",
                "redis://h",
                "--backplane-retain",
                "0",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        for args in [
            ["host-server", "--backlog", "0"],
            ["host-server", "--max-clients", "0"],
            ["host-server", "--rate-limit", "0"],
            ["host-server", "--outbox-limit", "10"],
            ["host-server", "--bind", "no where"],
            ["host-server", "--dead-peer-timeout", "1"],
            ["host-server", "--sniff-timeout-ms", "9"],
            ["host-server", "--text-pause-ms", "9"],
            ["host-server", "--bind", "127.0.0.1:99999"],
            ["host-server", "--bind", ""],
            ["host-server", "--shutdown-grace-ms", "901"],
            ["host-server", "--thread-stack", "1024"],
            ["host-server", "--read-buffer", "511"],
            ["host-server", "--send-buffer", "100"],
            ["host-server", "--recv-buffer", "100"],
            ["host-server", "--accept-pause-ms", "0"],
            ["host-server", "--max-refusers", "1025"],
            ["host-server", "--max-held-refusals", "65537"],
            ["host-server", "--pace-at", "100"],
            ["host-server", "--min-drain-rate", "0"],
            ["host-server", "--pace-grace-ms", "5"],
            ["host-server", "--stall-timeout", "0"],
            ["host-server", "--max-per-address", "-1"],
            ["host-server", "--allow", "10.0.0.0/33"],
            ["host-server", "--allow", "lan"],
            ["host-server", "--allow", ""],
            ["host-server", "--proxy-trusted", "127.0.0.1"],
            ["host-server", "--proxy-timeout-ms", "99"],
            ["host-server", "--ipv6-prefix", "0"],
            ["host-server", "--ipv6-prefix", "129"],
            ["host-server", "--tls-cert", "c.pem"],
            ["host-server", "--tls-key", "k.pem"],
            ["host-server", "--tls-required", "--stall-timeout=9"],
            ["host-server", "--tls-handshake-timeout-ms", "99"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
