//! In-process tests of the server: a real listener on 127.0.0.1:0 and raw clients.

#[path = "../../../tests/sockets.rs"]
mod sockets;
mod util;

mod binary;
mod limits;
mod room;
mod shutdown;
mod text;
