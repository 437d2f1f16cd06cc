//! In-process tests of the server: a real listener on 127.0.0.1:0 and raw clients.
//!
//! The end-to-end tests of the shipped binaries live in the workspace's `tests/`,
//! and a behaviour is tested in one place. What stays here needs `host_server::run`
//! in-process: `Control::stop` and `run` returning, and clients that read frame by
//! frame on the test's thread, with `sync` (a ping whose pong proves everything
//! before it arrived) to tell that nothing more came, which the end-to-end harness
//! (clients reading on threads of their own) does not offer. Socket helpers are
//! shared with `tests/`.

#[path = "../../../tests/sockets.rs"]
mod sockets;
mod util;

mod binary;
mod limits;
mod room;
mod shutdown;
mod text;
