//! A client's read buffer, held only while the client is sending.
//!
//! Most clients of a big room are silent most of the time, and a buffer per client
//! would be most of an idle client's memory. So the buffer is released whenever the
//! socket has been read dry, the reader then waits for readability without one, and a
//! fresh buffer is taken (usually the one another reader just released) when bytes
//! arrive. A busy sender keeps its buffer from one read to the next. A reader idle for
//! longer also gives back the stack it is not using (see `stack`).

use std::io;
use std::time::Duration;

use crate::conn::Conn;
use crate::stack::{self, IDLE_AFTER};
use crate::sys::wait_readable;

/// A read buffer of a fixed size that exists only while there is something to read.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    size: usize,
}

impl ReadBuf {
    /// A buffer of `size` bytes (at least one), taken when bytes first arrive.
    pub(crate) fn new(size: usize) -> Self {
        Self {
            buf: Vec::new(),
            size: size.max(1),
        }
    }

    /// The buffer's bytes (empty while released).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The whole buffer, allocating it if it was released.
    pub(crate) fn whole(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; self.size];
        }
        &mut self.buf
    }

    /// Reads what `conn` has into the buffer, waiting up to `timeout` (`None`: as
    /// long as it takes) for bytes. Returns the count, 0 at the end of the stream.
    ///
    /// The buffer is released only when `conn` has no plaintext left (for TLS, none
    /// decrypted and waiting either), so waiting for the socket is then right. A TLS
    /// connection is always asked first: plaintext already inside its session does
    /// not make the socket readable.
    ///
    /// # Errors
    /// `TimedOut` when nothing arrived in time; the connection's errors.
    pub(crate) fn read(&mut self, conn: &Conn, timeout: Option<Duration>) -> io::Result<usize> {
        if conn.is_tls() {
            self.whole();
        }
        if !self.buf.is_empty() {
            match conn.read_now(&mut self.buf[..]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.buf = Vec::new(),
                other => return other,
            }
        }
        wait_idle(conn, timeout)?;
        conn.read(self.whole())
    }
}

/// Waits until `conn` is readable, at most `timeout` (`None`: for ever); a wait
/// that outlasts [`IDLE_AFTER`] gives the thread's unused stack back first.
///
/// # Errors
/// `TimedOut` when nothing arrived in time; the errors of `poll`.
fn wait_idle(conn: &Conn, timeout: Option<Duration>) -> io::Result<()> {
    if timeout.is_some_and(|t| t <= IDLE_AFTER) {
        return wait_readable(conn.tcp(), timeout);
    }
    match wait_readable(conn.tcp(), Some(IDLE_AFTER)) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            stack::release();
            wait_readable(conn.tcp(), timeout.map(|t| t.saturating_sub(IDLE_AFTER)))
        }
        done => done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn released_when_read_dry_and_taken_again_when_bytes_arrive() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, _) = listener.accept().unwrap();
        let inside = Conn::plain(inside);
        let mut buf = ReadBuf::new(16);
        outside.write_all(b"hello").unwrap();
        assert_eq!(buf.read(&inside, Some(Duration::from_secs(5))).unwrap(), 5);
        assert_eq!(&buf.bytes()[..5], b"hello");
        let quiet = buf.read(&inside, Some(Duration::from_millis(20)));
        assert_eq!(quiet.unwrap_err().kind(), io::ErrorKind::TimedOut);
        assert!(buf.bytes().is_empty(), "kept while idle");
        outside.write_all(b"again").unwrap();
        assert_eq!(buf.read(&inside, Some(Duration::from_secs(5))).unwrap(), 5);
        assert_eq!(&buf.bytes()[..5], b"again");
        drop(outside);
        assert_eq!(buf.read(&inside, Some(Duration::from_secs(5))).unwrap(), 0);
    }
}
