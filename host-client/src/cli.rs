//! The command line, parsed by clap and turned into a validated [`Config`].

use std::ffi::OsString;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

use crate::bench::Scenario;
use crate::config::{Config, DEFAULT_ADDR, DEFAULT_ATTEMPTS};
use crate::tls::TlsOptions;
use crate::values::{at_least_one, positive_duration, server_addr};

const AFTER_HELP: &str = "\
Each line typed is sent to the room; a line longer than 1024 bytes is refused, not
cut. `exit` alone on a line, end of input (Ctrl-D) or Ctrl-C leaves the room.

Standard output carries only chat: `[PEER] TEXT` for a message, `*** TEXT` for a
notice. Errors go to standard error, prefixed `host-client: `.

Exit status:
  0  left the room (exit, end of input, Ctrl-C)
  1  could not connect (a name that does not resolve included), or the connection
     was lost
  2  usage error";

/// Command-line arguments. The duration defaults repeat those of [`crate::config`]
/// (clap needs them as text); a test checks that they agree.
#[derive(Debug, Parser)]
#[command(
    name = "host-client",
    version,
    about = "Console client of the chatroom",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Something else than chatting.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Server address: `HOST:PORT`, `IP:PORT` or `[IPV6]:PORT` (port 9000 if left
    /// out). The help text says it without the backquotes, which rustdoc needs so
    /// as not to read `[IPV6]` as a link.
    #[arg(default_value = DEFAULT_ADDR, value_parser = server_addr,
          help = "Server address: HOST:PORT, IP:PORT or [IPV6]:PORT (port 9000 if left out)")]
    pub addr: String,

    /// Whatever follows the address, which [`Args::try_parse_checked`] refuses with
    /// a message of its own (clap alone would call it a misplaced subcommand).
    #[arg(hide = true)]
    pub extra: Vec<String>,

    /// Connection attempts in all before giving up (at least 1).
    #[arg(long, value_name = "N", value_parser = at_least_one, allow_negative_numbers = true,
          default_value_t = NonZeroU32::new(DEFAULT_ATTEMPTS).unwrap_or(NonZeroU32::MIN))]
    pub attempts: NonZeroU32,

    /// Pause between two connection attempts (e.g. 100ms, 2s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          default_value = "100ms")]
    pub retry_delay: Duration,

    /// Limit on one TCP connect, and on waiting for the server's preamble (more
    /// than zero).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration,
          default_value = "5s")]
    pub connect_timeout: Duration,

    /// After leaving, how long to wait for the server to close the connection.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
          default_value = "1s")]
    pub linger: Duration,

    /// Connect with TLS (a server started with --tls-cert). The certificate must
    /// verify (against the platform's roots, or --ca) for the address's host name or
    /// IP (or --server-name); if it does not, the client stops, it never falls back
    /// to plain text.
    #[arg(long)]
    pub tls: bool,

    /// Trust only the certificates in this PEM file: the CA that signed the server's
    /// certificate, or a self-signed certificate itself.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,

    /// The name the server's certificate must carry, when it is not the host
    /// connected to (for example when connecting by IP address).
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load-test a chat server, in the spirit of `nats bench`.
    ///
    /// All connections run on one thread around one poll loop (a few threads only
    /// open them); the report gives the bench's own CPU time (and the server's, with
    /// `--server-pid`), so a bench busy nearly all the time shows that it, not the
    /// server, may be the limit. Latency runs from when the bench queues a
    /// message to when a receiver decodes it. Exit status: 0 with a report (losses
    /// and order violations are in the report), 1 if the bench cannot run (no
    /// connection, or the server relays nothing).
    Bench {
        /// The scenario to run.
        #[command(subcommand)]
        scenario: Scenario,
    },
}

impl Args {
    /// The process's arguments, parsed and checked; on a usage error, prints it and
    /// exits with status 2 (as clap does).
    pub fn parse_checked() -> Self {
        Self::try_parse_checked(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `argv` (the program's name first) as clap does, then refuses more than
    /// one address.
    ///
    /// # Errors
    /// clap's error, whose exit code is 2 for a usage error.
    pub fn try_parse_checked<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args = Self::try_parse_from(argv)?;
        if let Some(next) = args.extra.first() {
            let hint = if Self::command().find_subcommand(next).is_some() {
                format!(" (a subcommand comes first: host-client {next} ...)")
            } else {
                String::new()
            };
            let message = format!(
                "one server address is expected, but '{next}' follows '{}'{hint}",
                args.addr
            );
            return Err(Self::command().error(ErrorKind::TooManyValues, message));
        }
        Ok(args)
    }

    /// The settings these arguments ask for.
    pub fn config(&self) -> Config {
        Config {
            addr: self.addr.clone(),
            attempts: self.attempts,
            retry_delay: self.retry_delay,
            connect_timeout: self.connect_timeout,
            linger: self.linger,
            tls: self.tls.then(|| TlsOptions {
                ca: self.ca.clone(),
                server_name: self.server_name.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let argv = std::iter::once("host-client").chain(args.iter().copied());
        Args::try_parse_checked(argv).map(|a| a.config())
    }

    #[test]
    fn defaults_match_the_config_defaults() {
        assert_eq!(parse(&[]).unwrap(), Config::default());
    }

    #[test]
    fn flags_are_parsed() {
        let c = parse(&["[::1]:9001", "--attempts", "5", "--retry-delay", "250ms"]).unwrap();
        assert_eq!(c.addr, "[::1]:9001");
        assert_eq!(c.attempts.get(), 5);
        assert_eq!(c.retry_delay, Duration::from_millis(250));
    }

    #[test]
    fn tls_flags_are_parsed_and_need_tls() {
        let c = parse(&["chat.example:9443", "--tls", "--ca", "chat.crt"]).unwrap();
        assert_eq!(
            c.tls,
            Some(TlsOptions {
                ca: Some("chat.crt".into()),
                server_name: None,
            })
        );
        let c = parse(&["10.0.0.1", "--tls", "--server-name", "chat.example"]).unwrap();
        assert_eq!(c.tls.unwrap().server_name.as_deref(), Some("chat.example"));
        assert!(parse(&["--ca", "chat.crt"]).is_err());
        assert!(parse(&["--server-name", "x"]).is_err());
        assert_eq!(parse(&[]).unwrap().tls, None);
    }

    #[test]
    fn bench_is_a_subcommand() {
        let argv = ["host-client", "bench", "fanout", "-n", "3", "127.0.0.1:9"];
        let args = Args::try_parse_from(argv).unwrap();
        assert!(matches!(
            args.command,
            Some(Command::Bench {
                scenario: Scenario::Fanout { receivers: 3, .. }
            })
        ));
        assert!(Args::try_parse_from(["host-client", "bench"]).is_err());
    }

    #[test]
    fn bench_speaks_one_wire_format_at_a_time() {
        let wire = |extra: &[&str]| {
            let argv = ["host-client", "bench", "fanout"].iter().chain(extra);
            match Args::try_parse_from(argv).map(|a| a.command) {
                Ok(Some(Command::Bench { scenario })) => Ok(scenario.common().wire()),
                Ok(other) => panic!("not a bench: {other:?}"),
                Err(e) => Err(e.kind()),
            }
        };
        use crate::bench::Wire;
        assert_eq!(wire(&["--redis-pubsub"]), Ok(Wire::RedisPubSub));
        assert_eq!(wire(&["--ws"]), Ok(Wire::WebSocket));
        assert_eq!(wire(&[]), Ok(Wire::Binary));
        for other in ["--text", "--ws"] {
            assert_eq!(
                wire(&["--redis-pubsub", other]),
                Err(clap::error::ErrorKind::ArgumentConflict),
                "{other}"
            );
        }
    }

    #[test]
    fn help_documents_exit_statuses() {
        let e = parse(&["--help"]).unwrap_err();
        let help = e.to_string();
        assert!(help.contains("Exit status") && help.contains("usage error"));
    }
}
