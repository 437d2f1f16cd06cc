//! The chatroom server: many clients, one room, every message relayed to everyone else.
//!
//! Clients speak either the binary protocol of `proto-core` (the host client, a
//! microcontroller) or plain text lines (`nc`, `telnet`); the server tells them apart
//! by their first bytes and puts them in the same room. A browser gets the chat page
//! at `GET /` and joins through a WebSocket at `GET /ws` on the same port (see `web`),
//! hearing the text lines in WebSocket frames. Chat messages and lines are read and
//! written through `proto-core`.
//!
//! Design, for many clients and fast fan-out:
//! - each connection has one thread, its reader (its session), with a small stack;
//!   the read buffer is held only while the client is sending;
//! - the room's one lock assigns every broadcast a sequence number and hands it to
//!   every recipient's bounded outbox in that order, so all clients see one order;
//! - a broadcast is encoded once per wire form and shared; an outbox sends straight
//!   into the socket when nothing is queued (write-through) and otherwise leaves the
//!   rest to a small writer pool around one `epoll`, which coalesces everything
//!   queued for a client into one `writev` when its socket takes more;
//! - a sender waits while some client it sends to is behind but still reading, so a
//!   flood moves at its readers' pace; a client that has stopped reading is dropped
//!   with a notice (see `outbox`), so it costs nobody else time or unbounded memory.
//!
//! With a backplane ([`BackplaneConfig`]), several servers form one room: a Redis
//! stream gives every message its place in the order, and each server delivers the
//! stream to its own clients (see the `backplane` module).
//!
//! [`run`] serves a listener until its [`Control`] says stop, so tests run the server
//! in-process on `127.0.0.1:0`; the binary is a thin shell around it.
#![deny(missing_docs)]

// Modules in the order a connection meets them; each group depends only on the
// groups below it (the settings, the stop handle and the helpers at the bottom are
// used throughout).

// The accept loop, counting connections in the shared context; who may connect.
mod accept;
mod context;
mod gate;

// A new connection: the PROXY header of a front's, its mode from its first bytes,
// or a refusal.
mod proxy;
mod sniff;

mod overflow;
mod refuse;

// A client's life: join, read, leave; its connection.
mod session;

mod departure;

// Its connection (plain or TLS) and TLS handshake.
mod conn;
mod tls;

// A browser: the chat page, and the WebSocket it joins through.
mod visits;
mod web;

// Its read loops: messages in, batches to the room, the rate limit.
mod readbuf;
mod reader;
mod throttle;

// The room's one order, and each client's outbox; across servers, the backplane
// that gives the order.
mod room;

mod backplane;

mod outbox;

// The bytes on the wire.
mod wire;

// Settings, the stop handle, the console, errors, operating-system helpers.
mod bind_addr;
mod cli;
mod config;
mod console;
mod control;
mod error;
mod stack;
mod sys;

pub use accept::{bind, bind_fronts, check, run, run_with_fronts};
pub use backplane::{probe as probe_backplane, valid_room_name, BackplaneConfig, BackplaneError};
pub use bind_addr::{BindAddr, BindAddrError, DEFAULT_PORT};
pub use cli::Cli;
pub use config::Config;
pub use console::{console, stdin_console};
pub use control::{Control, Stop};
pub use error::ServerError;
pub use sys::raise_fd_limit;
pub use tls::TlsError;
pub use web::parse_origin;
