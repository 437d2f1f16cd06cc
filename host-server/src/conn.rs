//! A client's connection as the room sees it once it is admitted: every byte the
//! server writes to or reads from the client goes through [`Conn`], so the write path
//! (see `outbox`) works on plaintext and does not care what carries it.

use std::io::{self, IoSlice, Read};
use std::net::{Shutdown, TcpStream};

use rustix::net::{sendmsg, SendAncillaryBuffer, SendFlags};

/// A client's connection as the room sees it: plain TCP, or (later) TLS over TCP.
pub(crate) struct Conn {
    tcp: TcpStream,
}

impl Conn {
    /// A plain TCP connection.
    pub(crate) fn plain(tcp: TcpStream) -> Self {
        Self { tcp }
    }

    /// The socket: options, addresses, and its fd for epoll registration.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Never blocks. Hands as much of `bufs` (in order) to the connection as it takes
    /// now and returns how many bytes it took.
    ///
    /// # Errors
    /// `WouldBlock` when it takes none; any other error means the connection failed.
    pub(crate) fn send_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        sendmsg(&self.tcp, bufs, &mut SendAncillaryBuffer::default(), flags).map_err(Into::into)
    }

    /// True when bytes taken by `send_now` are still inside the Conn, not yet in the
    /// socket: never for plain TCP.
    pub(crate) fn has_pending(&self) -> bool {
        false
    }

    /// Never blocks. Pushes pending bytes into the socket; Ok(true) when none remain
    /// (plain TCP keeps none).
    ///
    /// # Errors
    /// The socket's, when it failed.
    pub(crate) fn flush_pending(&self) -> io::Result<bool> {
        Ok(true)
    }

    /// Blocks (within the socket's read timeout). Reads what the client sent.
    ///
    /// # Errors
    /// The socket's; a timeout is `WouldBlock` or `TimedOut`.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.tcp).read(buf)
    }

    /// Ends the sending side cleanly once everything is out.
    pub(crate) fn finish(&self) {
        let _ = self.tcp.shutdown(Shutdown::Write);
    }

    /// Cuts the connection now, both directions, sending nothing more. Errors are
    /// ignored: the peer may be gone already, which is the state wanted.
    pub(crate) fn cut(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn send_now_takes_every_slice_in_order_and_read_reads_them() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, _) = listener.accept().unwrap();
        let (a, b) = (Conn::plain(inside), Conn::plain(outside));
        let bufs = [IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")];
        assert_eq!(a.send_now(&bufs).unwrap(), 5);
        assert!(!a.has_pending());
        a.finish();
        let mut got = Vec::new();
        let mut buf = [0u8; 8];
        loop {
            match b.read(&mut buf).unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        assert_eq!(got, b"abcde");
    }
}
