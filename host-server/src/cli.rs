//! The command line: every setting of [`Config`] as a flag, with its default.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use clap::Parser;

use crate::backplane::{valid_room_name, BackplaneConfig};
use crate::config::Config;

fn defaults() -> Config {
    Config::default()
}

/// The chatroom server: relays every message to every other connected client.
///
/// Binary clients (host-client) and text clients (nc, telnet) share one room. On
/// start it prints `listening on ADDR` on stdout. Console commands on stdin: list,
/// close, help. Ctrl-C or SIGTERM sends every client a shutdown notice and exits.
#[derive(Debug, Parser)]
#[command(
    name = "host-server",
    version,
    after_help = "Exit status: 0 after `close`, Ctrl-C or SIGTERM; 1 if it cannot listen; \
2 on a bad command line."
)]
pub struct Cli {
    /// Address to listen on (see the help text for the LAN forms).
    #[arg(long, value_name = "ADDR", default_value_t = defaults().bind,
          help = "Address to listen on. Use 0.0.0.0:9000 (IPv4) or [::]:9000 (IPv4 and \
IPv6) to serve a LAN, and port 0 for any free port (the real one is printed)")]
    pub bind: SocketAddr,

    /// Listen backlog: connections the kernel queues before the server accepts them.
    #[arg(long, value_name = "N", default_value_t = defaults().backlog,
          value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub backlog: u32,

    /// Most clients at once; one more is told "server full" and closed. Each client
    /// costs two threads and one open file.
    #[arg(long, value_name = "N", default_value_t = defaults().max_clients as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_clients: u64,

    /// Bytes that may wait to be sent to one client; a client that falls further
    /// behind is dropped as too slow (it gets a notice saying so).
    #[arg(long, value_name = "BYTES", default_value_t = defaults().outbox_limit as u64,
          value_parser = clap::value_parser!(u64).range(128 * 1024..=1 << 32))]
    pub outbox_limit: u64,

    /// Messages per second one client may send; faster senders are read more slowly
    /// (TCP makes them wait), never dropped. Off unless given.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate_limit: Option<NonZeroU32>,

    /// Seconds within which a dead peer (half-open connection) is found and dropped:
    /// binary clients are pinged after half of it, text clients watched by TCP keepalive.
    #[arg(long, value_name = "SECS", default_value_t = defaults().dead_peer_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(2..=86_400))]
    pub dead_peer_timeout: u64,

    /// Milliseconds to wait for a new connection's first bytes to tell a binary client
    /// from a text client; a client silent that long is taken as text.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().sniff_timeout),
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub sniff_timeout_ms: u64,

    /// Milliseconds clients get to receive the shutdown notice after Ctrl-C or SIGTERM
    /// before their connections are cut.
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().shutdown_grace),
          value_parser = clap::value_parser!(u64).range(0..=900))]
    pub shutdown_grace_ms: u64,

    /// Stack size of each connection thread, in bytes (small, so thousands fit).
    #[arg(long, value_name = "BYTES", default_value_t = defaults().thread_stack as u64,
          value_parser = clap::value_parser!(u64).range(32 * 1024..=8 << 20))]
    pub thread_stack: u64,

    /// Bytes read from a client at a time; also bounds one batch of its messages.
    #[arg(long, value_name = "BYTES", default_value_t = defaults().read_buffer as u64,
          value_parser = clap::value_parser!(u64).range(512..=16 * 1024))]
    pub read_buffer: u64,

    /// Kernel send buffer per client (SO_SNDBUF), in bytes. System autotuning unless given.
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(4096..=64 << 20))]
    pub send_buffer: Option<u64>,

    /// Milliseconds to pause after a failed accept (e.g. out of file descriptors).
    #[arg(long, value_name = "MS", default_value_t = millis(defaults().accept_pause),
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub accept_pause_ms: u64,

    /// Connections over --max-clients turned away at once by threads that first wait
    /// to see whether the client is binary; past this, refusals go out in text form.
    #[arg(long, value_name = "N", default_value_t = defaults().max_refusers as u64,
          value_parser = clap::value_parser!(u64).range(0..=1024))]
    pub max_refusers: u64,

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
    /// further behind disconnects its clients with a notice.
    #[arg(long, value_name = "N", default_value_t = bp_defaults().retain,
          value_parser = clap::value_parser!(u64).range(100..=1 << 32), requires = "backplane")]
    pub backplane_retain: u64,

    /// Milliseconds a message may wait while the backplane is unreachable before its
    /// sender is told it was not delivered.
    #[arg(long, value_name = "MS", default_value_t = millis(bp_defaults().append_timeout),
          value_parser = clap::value_parser!(u64).range(100..=60_000), requires = "backplane")]
    pub backplane_append_timeout_ms: u64,

    /// Milliseconds Redis may leave a request unanswered before the connection is
    /// taken for dead and opened again.
    #[arg(long, value_name = "MS", default_value_t = millis(bp_defaults().io_timeout),
          value_parser = clap::value_parser!(u64).range(300..=60_000), requires = "backplane")]
    pub backplane_timeout_ms: u64,
}

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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn size(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Cli {
    /// The settings this command line asks for.
    pub fn config(&self) -> Config {
        Config {
            bind: self.bind,
            backlog: self.backlog,
            max_clients: size(self.max_clients),
            outbox_limit: size(self.outbox_limit),
            rate_limit: self.rate_limit,
            dead_peer_timeout: Duration::from_secs(self.dead_peer_timeout),
            sniff_timeout: Duration::from_millis(self.sniff_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            thread_stack: size(self.thread_stack),
            read_buffer: size(self.read_buffer),
            send_buffer: self.send_buffer.map(size),
            accept_pause: Duration::from_millis(self.accept_pause_ms),
            max_refusers: size(self.max_refusers),
            backplane: self.backplane.as_ref().map(|url| BackplaneConfig {
                url: url.clone(),
                room: self.room.clone(),
                retain: self.backplane_retain,
                append_timeout: Duration::from_millis(self.backplane_append_timeout_ms),
                io_timeout: Duration::from_millis(self.backplane_timeout_ms),
                ..bp_defaults()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_gives_the_defaults() {
        let cli = Cli::try_parse_from(["host-server"]).unwrap();
        assert_eq!(cli.config(), Config::default());
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
            "--outbox-limit",
            "200000",
            "--rate-limit",
            "10",
            "--dead-peer-timeout",
            "4",
            "--sniff-timeout-ms",
            "11",
            "--shutdown-grace-ms",
            "12",
            "--thread-stack",
            "40000",
            "--read-buffer",
            "600",
            "--send-buffer",
            "8192",
            "--accept-pause-ms",
            "13",
            "--max-refusers",
            "5",
        ])
        .unwrap();
        let want = Config {
            bind: "[::]:0".parse().unwrap(),
            backlog: 7,
            max_clients: 3,
            outbox_limit: 200_000,
            rate_limit: NonZeroU32::new(10),
            dead_peer_timeout: Duration::from_secs(4),
            sniff_timeout: Duration::from_millis(11),
            shutdown_grace: Duration::from_millis(12),
            thread_stack: 40_000,
            read_buffer: 600,
            send_buffer: Some(8192),
            accept_pause: Duration::from_millis(13),
            max_refusers: 5,
            backplane: None,
        };
        assert_eq!(cli.config(), want);
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
        ])
        .unwrap();
        let want = BackplaneConfig {
            url: "redis://:pw@10.0.0.1:6379".into(),
            room: "ops-2".into(),
            retain: 500,
            append_timeout: Duration::from_millis(700),
            io_timeout: Duration::from_millis(900),
            ..BackplaneConfig::default()
        };
        assert_eq!(cli.config().backplane, Some(want));
        // Debug output (and so any log of the config) hides the password.
        assert!(!format!("{:?}", cli.config()).contains("pw"));
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
                "99",
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
            ["host-server", "--bind", "nowhere"],
            ["host-server", "--dead-peer-timeout", "1"],
            ["host-server", "--sniff-timeout-ms", "9"],
            ["host-server", "--shutdown-grace-ms", "901"],
            ["host-server", "--thread-stack", "1024"],
            ["host-server", "--read-buffer", "511"],
            ["host-server", "--send-buffer", "100"],
            ["host-server", "--accept-pause-ms", "0"],
            ["host-server", "--max-refusers", "1025"],
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
