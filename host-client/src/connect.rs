//! Reaching the server: resolving the address, connecting with retries, and
//! exchanging the protocol preamble.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use proto_core::{read_preamble, write_preamble, ReadError};

use crate::config::{Config, DEFAULT_PORT};
use crate::retry::{retry, verdict_for, Failure, RetryError, RetryPolicy, Verdict};
use crate::tls::{Stream, TlsSetup, TlsSetupError};

/// Why one connection attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// The TCP connection could not be made to any of the server's addresses; one
    /// error per address tried, in order.
    Tcp(Vec<(SocketAddr, io::Error)>),
    /// The TCP connection was made but the preamble exchange failed.
    Handshake {
        /// The server's address.
        peer: SocketAddr,
        /// What went wrong.
        error: HandshakeError,
    },
}

/// Why the preamble exchange with a connected server failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// Sending our preamble or reading the server's failed (a timeout included).
    Io(io::Error),
    /// The server closed the connection before its preamble was complete.
    Closed,
    /// The server's first bytes are not the protocol's magic: it is not a chat server.
    NotChatServer,
    /// The server speaks another protocol version.
    UnsupportedVersion(u8),
    /// The TLS handshake failed (`--tls`): the certificate did not verify, the
    /// server does not speak TLS, or the connection failed during it.
    Tls(io::Error),
}

/// Why the client could not connect.
#[derive(Debug)]
pub enum ConnectError {
    /// TLS was asked for but cannot be set up (the CA file, the name).
    Tls(TlsSetupError),
    /// The address is malformed (the command line refuses such an address first).
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// The parser's error.
        source: io::Error,
    },
    /// The address is well formed, but its host name could not be resolved (no
    /// such name, or no name server reachable).
    Unresolved {
        /// The address as given.
        addr: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Every attempt failed with a transient error.
    GaveUp {
        /// The address as given.
        addr: String,
        /// The attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: AttemptError,
    },
    /// An attempt failed with an error that retrying cannot fix.
    Stopped {
        /// The address as given.
        addr: String,
        /// The attempt's error.
        error: AttemptError,
    },
}

impl AttemptError {
    /// Whether another attempt may succeed.
    pub fn verdict(&self) -> Verdict {
        match self {
            AttemptError::Tcp(failures) => failures
                .last()
                .map_or(Verdict::Stop, |(_, e)| verdict_for(e.kind())),
            AttemptError::Handshake { error, .. } => match error {
                HandshakeError::Io(e) => verdict_for(e.kind()),
                HandshakeError::Closed => Verdict::Retry,
                HandshakeError::NotChatServer | HandshakeError::UnsupportedVersion(_) => {
                    Verdict::Stop
                }
                // A certificate that does not verify, or a server that is not TLS, is
                // the same on every attempt.
                HandshakeError::Tls(e)
                    if matches!(e.kind(), io::ErrorKind::InvalidData | io::ErrorKind::Other) =>
                {
                    Verdict::Stop
                }
                HandshakeError::Tls(e) => verdict_for(e.kind()),
            },
        }
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Tcp(failures) => {
                for (i, (addr, e)) in failures.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "; " };
                    write!(f, "{sep}{addr}: {e}")?;
                }
                Ok(())
            }
            AttemptError::Handshake { peer, error } => write!(f, "{peer}: {error}"),
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) if is_timeout(e) => {
                f.write_str("no protocol preamble from the server in time")
            }
            HandshakeError::Io(e) => write!(f, "preamble exchange failed: {e}"),
            HandshakeError::Closed => f.write_str("the server closed the connection at once"),
            HandshakeError::NotChatServer => {
                f.write_str("not a chat server (its first bytes are not the protocol's magic)")
            }
            HandshakeError::Tls(e) if crate::tls::is_certificate_error(e) => write!(
                f,
                "TLS: the server's certificate is not accepted ({e}); give the CA that \
                 signed it with --ca FILE, or the name it carries with --server-name NAME"
            ),
            HandshakeError::Tls(e) if is_timeout(e) => {
                f.write_str("TLS handshake not done in time")
            }
            HandshakeError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            HandshakeError::UnsupportedVersion(v) => write!(
                f,
                "the server speaks protocol version {v}, this client speaks {}",
                proto_core::VERSION
            ),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::InvalidAddress { addr, source } => {
                write!(f, "invalid server address '{addr}': {source}")
            }
            ConnectError::Unresolved { addr, source } => {
                write!(f, "cannot resolve the server address '{addr}': {source}")
            }
            ConnectError::GaveUp { addr, attempts, .. } => {
                let s = if *attempts == 1 { "" } else { "s" };
                write!(
                    f,
                    "could not connect to {addr}: gave up after {attempts} attempt{s}"
                )
            }
            ConnectError::Stopped { addr, error } => {
                write!(f, "could not connect to {addr}: {error}")
            }
            ConnectError::Tls(e) => write!(f, "cannot set up TLS: {e}"),
        }
    }
}

impl std::error::Error for AttemptError {}
impl std::error::Error for HandshakeError {}
impl std::error::Error for ConnectError {}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Why a server address is malformed, found before any name lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// The address is empty.
    Empty,
    /// Nothing before the `:` that starts the port.
    NoHost,
    /// The port is not a number from 1 to 65535.
    BadPort(String),
    /// An opening `[` without its `]`, or text after the `]` that is not `:PORT`.
    Brackets,
    /// What stands between `[` and `]` is not an IPv6 address.
    NotIpv6(String),
    /// More than one `:` outside brackets, and not an IPv6 address.
    Colons,
    /// An IPv6 address without brackets whose last group reads as a port, such as
    /// `::1:9000`: it is a valid address, but most likely meant as port 9000 of `::1`.
    Ipv6Port {
        /// The address before the last `:`.
        host: String,
        /// The number after it.
        port: String,
    },
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Empty => f.write_str("the address is empty"),
            AddrError::NoHost => f.write_str("no host before the ':'"),
            AddrError::BadPort(port) => {
                write!(f, "the port '{port}' is not a number from 1 to 65535")
            }
            AddrError::Brackets => {
                f.write_str("write an IPv6 address as [ADDRESS] or [ADDRESS]:PORT")
            }
            AddrError::NotIpv6(inside) => {
                write!(f, "'{inside}' in brackets is not an IPv6 address")
            }
            AddrError::Colons => f.write_str(
                "too many ':' for HOST:PORT; write an IPv6 address in brackets, as [::1]:9000",
            ),
            AddrError::Ipv6Port { host, port } => write!(
                f,
                "an IPv6 address takes brackets: write [{host}]:{port} for port {port} of \
                 {host}, or [{host}:{port}] for the address {host}:{port} itself"
            ),
        }
    }
}

impl std::error::Error for AddrError {}

/// A server address as typed, split before any name lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A host name, to resolve, and a port.
    Name(&'a str, u16),
}

/// Splits `addr` (`host:port`, `ip:port`, `[ipv6]:port`, or any of them without the
/// port, which then defaults to [`DEFAULT_PORT`]) into host and port, without
/// resolving names. The command line checks addresses with it, so that a malformed
/// one is a usage error.
///
/// # Errors
/// See [`AddrError`].
pub fn parse_addr(addr: &str) -> Result<Target<'_>, AddrError> {
    if addr.is_empty() {
        return Err(AddrError::Empty);
    }
    if let Ok(ip) = addr.parse::<IpAddr>() {
        if let Some((host, port)) = ipv6_with_port(addr) {
            return Err(AddrError::Ipv6Port {
                host: host.to_string(),
                port: port.to_string(),
            });
        }
        return Ok(Target::Ip(SocketAddr::new(ip, DEFAULT_PORT)));
    }
    if let Some(rest) = addr.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or(AddrError::Brackets)?;
        let ip: std::net::Ipv6Addr = inside
            .parse()
            .map_err(|_| AddrError::NotIpv6(inside.to_string()))?;
        let port = match after {
            "" => DEFAULT_PORT,
            _ => port(after.strip_prefix(':').ok_or(AddrError::Brackets)?)?,
        };
        return Ok(Target::Ip(SocketAddr::new(IpAddr::V6(ip), port)));
    }
    let Some((host, port_text)) = addr.rsplit_once(':') else {
        return Ok(Target::Name(addr, DEFAULT_PORT));
    };
    if host.contains(':') {
        return Err(AddrError::Colons);
    }
    if host.is_empty() {
        return Err(AddrError::NoHost);
    }
    let port = port(port_text)?;
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => Target::Ip(SocketAddr::new(ip, port)),
        Err(_) => Target::Name(host, port),
    })
}

/// For an IPv6 address written without brackets, the address and port it may have
/// been meant as: its last group is a decimal port and what comes before it is an
/// IPv6 address other than `::` (so `::1` alone stays the loopback address).
fn ipv6_with_port(addr: &str) -> Option<(&str, &str)> {
    let (host, port_text) = addr.rsplit_once(':')?;
    let host_ip = host.parse::<std::net::Ipv6Addr>().ok()?;
    let decimal = port_text.bytes().all(|b| b.is_ascii_digit());
    (decimal && !host_ip.is_unspecified() && port(port_text).is_ok()).then_some((host, port_text))
}

fn port(text: &str) -> Result<u16, AddrError> {
    match text.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(AddrError::BadPort(text.to_string())),
    }
}

/// Resolves `addr` (see [`parse_addr`]) to the addresses to try.
///
/// # Errors
/// [`ConnectError::InvalidAddress`] if it does not parse,
/// [`ConnectError::Unresolved`] if its name resolves to nothing.
pub fn resolve(addr: &str) -> Result<Vec<SocketAddr>, ConnectError> {
    let unresolved = |source| ConnectError::Unresolved {
        addr: addr.to_string(),
        source,
    };
    let (host, port) = match parse_addr(addr) {
        Ok(Target::Ip(ip)) => return Ok(vec![ip]),
        Ok(Target::Name(host, port)) => (host, port),
        Err(e) => {
            return Err(ConnectError::InvalidAddress {
                addr: addr.to_string(),
                source: io::Error::new(io::ErrorKind::InvalidInput, e),
            })
        }
    };
    match (host, port).to_socket_addrs().map(Iterator::collect) {
        Ok(addrs) if Vec::is_empty(&addrs) => Err(unresolved(io::Error::new(
            io::ErrorKind::NotFound,
            "the name resolves to no address",
        ))),
        Ok(addrs) => Ok(addrs),
        Err(e) => Err(unresolved(e)),
    }
}

/// Connects to the server in `config`, retrying as its policy says, and exchanges
/// preambles. Each failed attempt is passed to `report`.
///
/// # Errors
/// See [`ConnectError`].
pub fn connect(
    config: &Config,
    report: impl FnMut(&Failure<'_, AttemptError>),
) -> Result<(Stream, SocketAddr), ConnectError> {
    connect_with(
        config,
        TcpStream::connect_timeout,
        std::thread::sleep,
        report,
    )
}

/// [`connect`], with the TCP connect and the pause supplied by the caller (tests
/// count attempts this way).
///
/// # Errors
/// See [`ConnectError`].
pub fn connect_with(
    config: &Config,
    mut tcp: impl FnMut(&SocketAddr, Duration) -> io::Result<TcpStream>,
    sleep: impl FnMut(Duration),
    report: impl FnMut(&Failure<'_, AttemptError>),
) -> Result<(Stream, SocketAddr), ConnectError> {
    let tls = match &config.tls {
        Some(options) => Some(TlsSetup::new(options, &config.addr).map_err(ConnectError::Tls)?),
        None => None,
    };
    let addrs = resolve(&config.addr)?;
    let policy = RetryPolicy {
        attempts: config.attempts,
        delay: config.retry_delay,
    };
    let timeout = config.connect_timeout;
    let attempt = |_| attempt(&addrs, timeout, tls.as_ref(), &mut tcp);
    retry(policy, attempt, AttemptError::verdict, report, sleep).map_err(|e| {
        let addr = config.addr.clone();
        match e {
            RetryError::GaveUp { attempts, last } => ConnectError::GaveUp {
                addr,
                attempts,
                last,
            },
            RetryError::Stopped { error, .. } => ConnectError::Stopped { addr, error },
        }
    })
}

/// One attempt: each address in turn until a TCP connection is made, then (with
/// `tls`) the TLS handshake and the preamble exchange on that connection.
fn attempt(
    addrs: &[SocketAddr],
    timeout: Duration,
    tls: Option<&TlsSetup>,
    tcp: &mut impl FnMut(&SocketAddr, Duration) -> io::Result<TcpStream>,
) -> Result<(Stream, SocketAddr), AttemptError> {
    let mut failures = Vec::new();
    for addr in addrs {
        match tcp(addr, timeout) {
            Ok(stream) => {
                let failed = |error| AttemptError::Handshake { peer: *addr, error };
                let mut stream = match tls {
                    Some(setup) => Stream::handshake(stream, setup, timeout)
                        .map_err(|e| failed(HandshakeError::Tls(e)))?,
                    None => Stream::from(stream),
                };
                return handshake(&mut stream, timeout)
                    .map(|()| (stream, *addr))
                    .map_err(failed);
            }
            Err(e) => failures.push((*addr, e)),
        }
    }
    Err(AttemptError::Tcp(failures))
}

/// Sends our preamble and checks the server's, waiting at most `timeout` for it.
fn handshake(stream: &mut Stream, timeout: Duration) -> Result<(), HandshakeError> {
    stream
        .tcp()
        .set_read_timeout(Some(timeout))
        .map_err(HandshakeError::Io)?;
    let mut io = FromStd::new(&mut *stream);
    write_preamble(&mut io).map_err(HandshakeError::Io)?;
    read_preamble(&mut io).map_err(|e| match e {
        ReadError::Transport(e) => HandshakeError::Io(e),
        ReadError::BadMagic => HandshakeError::NotChatServer,
        ReadError::UnsupportedVersion { version } => HandshakeError::UnsupportedVersion(version),
        _ => HandshakeError::Closed,
    })?;
    let tcp = stream.tcp();
    tcp.set_read_timeout(None).map_err(HandshakeError::Io)?;
    // Chat lines are small and interactive: send each at once.
    tcp.set_nodelay(true).map_err(HandshakeError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_and_without_port() {
        let one = |a: &str| resolve(a).unwrap()[0].to_string();
        assert_eq!(one("127.0.0.1:9001"), "127.0.0.1:9001");
        assert_eq!(one("[::1]:9001"), "[::1]:9001");
        assert_eq!(one("127.0.0.1"), "127.0.0.1:9000");
        assert_eq!(one("::1"), "[::1]:9000");
        assert_eq!(one("[::1]"), "[::1]:9000");
        assert!(resolve("localhost:9001")
            .unwrap()
            .iter()
            .all(|a| a.port() == 9001 && a.ip().is_loopback()));
    }

    #[test]
    fn malformed_addresses_are_refused_before_any_lookup() {
        let bad_port = |p: &str| Err(AddrError::BadPort(p.into()));
        assert_eq!(parse_addr(""), Err(AddrError::Empty));
        assert_eq!(parse_addr("127.0.0.1:99999"), bad_port("99999"));
        assert_eq!(parse_addr("127.0.0.1:0"), bad_port("0"));
        assert_eq!(parse_addr("localhost:x"), bad_port("x"));
        assert_eq!(parse_addr("[::1]:"), bad_port(""));
        assert_eq!(parse_addr(":9000"), Err(AddrError::NoHost));
        assert_eq!(parse_addr("[::1:9000"), Err(AddrError::Brackets));
        assert_eq!(parse_addr("[::1]9000"), Err(AddrError::Brackets));
        assert_eq!(
            parse_addr("[1.2.3.4]:9000"),
            Err(AddrError::NotIpv6("1.2.3.4".into()))
        );
        assert_eq!(parse_addr("a:b:c"), Err(AddrError::Colons));
        // An IPv6 address whose last group looks like a port asks for brackets.
        let ambiguous = parse_addr("::1:9000").unwrap_err();
        assert_eq!(
            ambiguous,
            AddrError::Ipv6Port {
                host: "::1".into(),
                port: "9000".into()
            }
        );
        assert!(ambiguous.to_string().contains("write [::1]:9000"));
        for plain in ["::1", "::", "fe80::1", "2001:db8::a:b", "::ffff:127.0.0.1"] {
            assert!(matches!(parse_addr(plain), Ok(Target::Ip(_))), "{plain}");
        }
        assert!(matches!(parse_addr("[::1:9000]"), Ok(Target::Ip(_))));
        assert_eq!(
            parse_addr("chat.example:9001"),
            Ok(Target::Name("chat.example", 9001))
        );
        assert_eq!(
            parse_addr("chat.example"),
            Ok(Target::Name("chat.example", 9000))
        );
        assert!(matches!(
            resolve("127.0.0.1:70000"),
            Err(ConnectError::InvalidAddress { .. })
        ));
    }

    #[test]
    fn handshake_verdicts() {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let hs = |error| AttemptError::Handshake { peer, error };
        assert_eq!(hs(HandshakeError::NotChatServer).verdict(), Verdict::Stop);
        assert_eq!(
            hs(HandshakeError::UnsupportedVersion(2)).verdict(),
            Verdict::Stop
        );
        assert_eq!(hs(HandshakeError::Closed).verdict(), Verdict::Retry);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            AttemptError::Tcp(vec![(peer, refused)]).verdict(),
            Verdict::Retry
        );
    }
}
