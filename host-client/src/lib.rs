//! The chatroom's console client.
//!
//! It connects to a chat server (retrying a refused connection a few times), sends
//! each line the user types as a chat message and prints what the room says:
//! `[PEER] TEXT` for a message, `*** TEXT` for a notice. Every byte on the wire is
//! encoded and decoded by `proto-core`; this crate is the shell around it.
//!
//! The pieces, each usable on its own (the tests drive them in-process):
//! - [`connect()`] resolves the address, connects with the [`retry`] policy and
//!   exchanges the protocol preamble;
//! - [`Session`] runs a connected session over a [`LineSource`] of typed lines and a
//!   [`Sink`] for output, until the user leaves or the connection is lost;
//! - [`run`] does both, as the binary does;
//! - [`terminal`] supplies the line editor used when a person is at a terminal;
//! - [`tls`] is TLS to a server with built-in TLS (`--tls`);
//! - [`bench`](mod@bench) is the `host-client bench` load generator.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod config;
pub mod connect;
pub mod input;
pub mod line;
pub mod render;
pub mod retry;
pub mod session;
pub mod sink;
pub mod terminal;
pub mod tls;
pub mod values;

use std::fmt;

pub use config::Config;
pub use connect::{connect, connect_with, AttemptError, ConnectError};
pub use input::{InputEvent, LineSource, ReaderInput};
pub use session::{Ending, Interrupter, Session, SessionError};
pub use sink::{Sink, WriterSink};

/// Exit status after leaving the room normally.
pub const EXIT_OK: u8 = 0;
/// Exit status when the client could not connect or lost the connection.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status for a usage error (clap's own).
pub const EXIT_USAGE: u8 = 2;

/// Why the client ended in failure.
#[derive(Debug)]
pub enum ClientError {
    /// It could not connect.
    Connect(ConnectError),
    /// The session failed.
    Session(SessionError),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => e.fmt(f),
            ClientError::Session(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ClientError {}

/// The diagnostic for a failed connection attempt, or `None` when the failure ends
/// the retries at once (the final error then says it all).
pub fn attempt_message(failure: &retry::Failure<'_, AttemptError>) -> Option<String> {
    if failure.error.verdict() == retry::Verdict::Stop {
        return None;
    }
    let next = match failure.retry_in {
        Some(delay) => format!("retrying in {}", humantime::format_duration(delay)),
        None => "no attempts left".to_string(),
    };
    Some(format!(
        "cannot connect (attempt {} of {}): {}; {next}",
        failure.attempt, failure.of, failure.error
    ))
}

/// Connects as `config` says, reporting each failed attempt to `sink`, then runs a
/// session with `input` until it ends. Once connected, and before the session
/// starts, `on_connected` receives the session's [`Interrupter`]: the binary's
/// Ctrl-C handler uses it to leave the room with `Bye`.
///
/// # Errors
/// See [`ClientError`].
pub fn run(
    config: &Config,
    input: Box<dyn LineSource>,
    mut sink: Box<dyn Sink>,
    on_connected: impl FnOnce(Interrupter),
) -> Result<Ending, ClientError> {
    let report = |f: &retry::Failure<'_, AttemptError>| {
        if let Some(message) = attempt_message(f) {
            sink.diag(&message);
        }
    };
    let (stream, _) = connect(config, report).map_err(ClientError::Connect)?;
    let session = Session::new(stream, config.linger);
    on_connected(session.interrupter());
    session.run(input, sink).map_err(ClientError::Session)
}
