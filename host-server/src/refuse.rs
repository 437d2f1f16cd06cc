//! Turning a connection away before it is in the room, and closing a connection
//! gently so the peer reads what it was sent last.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::conn::{send_all, Conn};
use crate::sys::is_transient;

/// How long [`refuse`] waits for the socket to take the refusal.
const SEND_FOR: Duration = Duration::from_secs(1);

/// How long [`drain`] reads off what the peer still sends.
const DRAIN_FOR: Duration = Duration::from_millis(250);

/// Sends `bytes` to a connection that is not in the room, then closes it gently: the
/// sending side first (for TLS after a close_notify), then reading off what the peer
/// still sends for a moment, so the close does not reset the connection before the
/// peer reads `bytes`.
pub(crate) fn refuse(conn: &Conn, bytes: &[u8]) {
    let deadline = Instant::now() + SEND_FOR;
    let _ = send_all(conn, bytes, deadline);
    conn.finish();
    // A TLS close_notify the socket did not take at once.
    let _ = send_all(conn, &[], deadline);
    drain(conn.tcp());
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
