//! Turning a connection away before it is in the room, and closing a connection
//! gently so the peer reads what it was sent last.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use crate::sys::is_transient;

/// How long [`drain`] reads off what the peer still sends.
const DRAIN_FOR: Duration = Duration::from_millis(250);

/// Sends `bytes` to a connection that is not in the room, then closes it gently: the
/// sending side first, then reading off what the peer still sends for a moment, so
/// the close does not reset the connection before the peer reads `bytes`.
pub(crate) fn refuse(stream: &TcpStream, bytes: &[u8]) {
    let mut s = stream;
    let _ = s.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream);
}

/// Reads and discards what the peer sends, for at most [`DRAIN_FOR`]: closing a
/// socket with unread bytes resets the connection, which can destroy what the peer
/// has not read yet.
pub(crate) fn drain(stream: &TcpStream) {
    let deadline = Instant::now() + DRAIN_FOR;
    let mut sink = [0u8; 1024];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    while Instant::now() < deadline {
        match (&*stream).read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(_) => break,
        }
    }
}
