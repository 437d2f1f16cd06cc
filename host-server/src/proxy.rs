//! The PROXY protocol (haproxy's `proxy-protocol.txt`, v1 and v2) on the listeners of
//! `--proxy-listen`: a trusted front (haproxy, stunnel, nginx) opens each connection
//! with a header that names the client it forwards, and that client's address is the
//! connection's address from then on.
//!
//! Only the header is read off the socket (it is peeked at first), so whatever
//! follows it (a ClientHello, a binary preamble, a text line) is left for the usual
//! sniff. The header is parsed by the `proxy-header` crate.

use std::fmt;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use proxy_header::{ParseConfig, ProxyHeader};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::{recv, RecvFlags};

use crate::sys::{is_transient, wait_readable};

/// Longest header taken: a v1 line is at most 107 bytes, and the spec asks a v2
/// receiver to take at least 536 (addresses and a few TLVs; haproxy sends far less).
pub(crate) const MAX_HEADER: usize = 536;

/// How long to wait at a time for more of a header whose first bytes have come (a
/// peek sees the same bytes again, so readability does not say when more arrive).
const SPLIT_POLL: Duration = Duration::from_millis(10);

/// Why a connection from a front was closed before its header was taken.
#[derive(Debug)]
pub(crate) enum HeaderError {
    /// No complete header within the timeout.
    Timeout(Duration),
    /// The front closed the connection before a complete header.
    Closed,
    /// The bytes are not a PROXY header (or one this server cannot use).
    Malformed(proxy_header::Error),
    /// The header is longer than [`MAX_HEADER`].
    TooLong,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::Timeout(t) => {
                write!(f, "no PROXY header within {:.1} s", t.as_secs_f64())
            }
            HeaderError::Closed => f.write_str("closed before its PROXY header was complete"),
            HeaderError::Malformed(e) => write!(f, "bad PROXY header: {e}"),
            HeaderError::TooLong => write!(f, "PROXY header longer than {MAX_HEADER} bytes"),
            HeaderError::Io(e) => write!(f, "failed while reading its PROXY header: {e}"),
        }
    }
}

/// Reads the PROXY header that opens `stream` within `timeout`, and nothing after
/// it. Returns the client's address: the source the header names, or `None` for
/// `LOCAL` (v2) and `UNKNOWN` (v1), where the front speaks for itself.
///
/// # Errors
/// A [`HeaderError`] saying what was wrong; the caller closes the connection.
pub(crate) fn read_header(
    stream: &TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, HeaderError> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; MAX_HEADER];
    let mut seen = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeaderError::Timeout(timeout));
        }
        match wait_readable(stream, Some(left)) {
            Ok(()) => {}
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(HeaderError::Io(e)),
        }
        let n = match recv(stream, &mut buf, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((0, _)) => return Err(HeaderError::Closed),
            Ok((n, _)) => n,
            Err(e) => match io::Error::from(e) {
                e if is_transient(&e) => continue,
                e => return Err(HeaderError::Io(e)),
            },
        };
        let config = ParseConfig {
            include_tlvs: false,
            ..ParseConfig::default()
        };
        match ProxyHeader::parse(&buf[..n], config) {
            Ok((header, used)) => {
                let source = header.proxied_address().map(|a| a.source);
                take(stream, used)?;
                return Ok(source);
            }
            Err(proxy_header::Error::BufferTooShort) if n == buf.len() => {
                return Err(HeaderError::TooLong)
            }
            Err(proxy_header::Error::BufferTooShort) => {
                if n == seen && peer_closed(stream, SPLIT_POLL.min(left)) {
                    return Err(HeaderError::Closed);
                }
                seen = n;
            }
            Err(e) => return Err(HeaderError::Malformed(e)),
        }
    }
}

/// Waits up to `wait` for the peer to close its sending side; true if it has. A
/// peek keeps seeing the bytes already there, so readability cannot say when more
/// arrive or when the peer gives up: this waits for the hang-up alone.
fn peer_closed(stream: &TcpStream, wait: Duration) -> bool {
    let timeout = Timespec::try_from(wait).ok();
    let mut fds = [PollFd::new(stream, PollFlags::RDHUP)];
    matches!(poll(&mut fds, timeout.as_ref()), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
}

/// Reads the `n` bytes of the header off the socket (they were peeked, so they are
/// there).
fn take(stream: &TcpStream, n: usize) -> Result<(), HeaderError> {
    let mut sink = [0u8; MAX_HEADER];
    let mut s = stream;
    s.read_exact(&mut sink[..n]).map_err(HeaderError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::thread;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, _) = listener.accept().unwrap();
        (outside, inside)
    }

    const WAIT: Duration = Duration::from_secs(5);

    /// What follows the header on `inside`, read with a short timeout.
    fn rest(inside: &mut TcpStream) -> Vec<u8> {
        inside
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = vec![0u8; 64];
        let n = inside.read(&mut got).unwrap_or(0);
        got.truncate(n);
        got
    }

    #[test]
    fn a_v1_line_names_the_client_and_leaves_what_follows() {
        let (mut outside, mut inside) = pair();
        outside
            .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000\r\nhello\n")
            .unwrap();
        let source = read_header(&inside, WAIT).unwrap();
        assert_eq!(source, Some("192.0.2.7:40000".parse().unwrap()));
        assert_eq!(rest(&mut inside), b"hello\n");
    }

    #[test]
    fn a_v2_header_names_an_ipv6_client_and_local_names_nobody() {
        let (mut outside, mut inside) = pair();
        let mut header = Vec::new();
        let addr = proxy_header::ProxiedAddress::stream(
            "[2001:db8::5]:41000".parse().unwrap(),
            "[2001:db8::1]:9000".parse().unwrap(),
        );
        ProxyHeader::with_address(addr)
            .encode_v2(&mut header)
            .unwrap();
        header.extend_from_slice(b"\x16\x03");
        outside.write_all(&header).unwrap();
        let source = read_header(&inside, WAIT).unwrap();
        assert_eq!(source, Some("[2001:db8::5]:41000".parse().unwrap()));
        assert_eq!(rest(&mut inside), b"\x16\x03");

        let (mut outside, inside) = pair();
        let mut local = Vec::new();
        ProxyHeader::with_local().encode_v2(&mut local).unwrap();
        outside.write_all(&local).unwrap();
        assert_eq!(read_header(&inside, WAIT).unwrap(), None);
    }

    #[test]
    fn a_header_split_across_reads_is_put_together() {
        let (mut outside, mut inside) = pair();
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000\r\nafter";
        let writer = thread::spawn(move || {
            for part in line.chunks(7) {
                outside.write_all(part).unwrap();
                thread::sleep(Duration::from_millis(30));
            }
            outside
        });
        let source = read_header(&inside, WAIT).unwrap();
        assert_eq!(source, Some("192.0.2.7:40000".parse().unwrap()));
        let _outside = writer.join().unwrap();
        assert_eq!(rest(&mut inside), b"after");
    }

    #[test]
    fn a_missing_or_bad_header_is_an_error() {
        let (_outside, inside) = pair();
        let err = read_header(&inside, Duration::from_millis(100)).unwrap_err();
        assert!(matches!(err, HeaderError::Timeout(_)), "{err}");

        let (mut outside, inside) = pair();
        outside.write_all(b"hello there\n").unwrap();
        let err = read_header(&inside, WAIT).unwrap_err();
        assert!(matches!(err, HeaderError::Malformed(_)), "{err}");

        let (mut outside, inside) = pair();
        outside.write_all(b"PROXY TCP4 192.0.2.7").unwrap();
        drop(outside);
        let err = read_header(&inside, WAIT).unwrap_err();
        assert!(matches!(err, HeaderError::Closed), "{err}");

        let (mut outside, inside) = pair();
        outside.write_all(b"PROXY TCP4 nonsense here\r\n").unwrap();
        let err = read_header(&inside, WAIT).unwrap_err();
        assert!(matches!(err, HeaderError::Malformed(_)), "{err}");
    }
}
