//! The address the server listens on, as a person writes it: an IP address or a
//! host name, with or without a port.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// The port listened on when `--bind` names none.
pub const DEFAULT_PORT: u16 = 9000;

/// Where to listen: `IP:PORT`, `[IPV6]:PORT`, `HOST:PORT`, or any of them without
/// the port, which is then [`DEFAULT_PORT`]. A host name is resolved when the server
/// binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddr {
    /// An IP address and port, used as they are.
    Ip(SocketAddr),
    /// A host name and port; the name is resolved when binding.
    Host {
        /// The host name, as given.
        name: String,
        /// The port.
        port: u16,
    },
}

/// Why a `--bind` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddrError {
    /// The value is empty.
    Empty,
    /// The port is not a number from 0 to 65535.
    BadPort(String),
    /// The host part is neither an IP address nor a host name.
    BadHost(String),
}

impl fmt::Display for BindAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let forms = "expected IP:PORT, [IPV6]:PORT, HOST:PORT, or one of them without \
                     the port (default 9000)";
        match self {
            BindAddrError::Empty => write!(f, "empty address; {forms}"),
            BindAddrError::BadPort(port) => {
                write!(f, "port {port:?} is not a number from 0 to 65535; {forms}")
            }
            BindAddrError::BadHost(host) => {
                write!(
                    f,
                    "{host:?} is neither an IP address nor a host name; {forms}"
                )
            }
        }
    }
}

impl std::error::Error for BindAddrError {}

impl From<SocketAddr> for BindAddr {
    fn from(addr: SocketAddr) -> Self {
        BindAddr::Ip(addr)
    }
}

/// True for a name made of DNS labels (letters, digits, `-` and `_`, separated by
/// dots), so typos like `127.0.0.1;9000` are refused at once rather than failing to
/// resolve later.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn port(text: &str) -> Result<u16, BindAddrError> {
    text.parse()
        .map_err(|_| BindAddrError::BadPort(text.to_string()))
}

impl FromStr for BindAddr {
    type Err = BindAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(BindAddrError::Empty);
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(BindAddr::Ip(addr));
        }
        // Without a port: an IP address, bracketed or not for IPv6.
        let bare = s.strip_prefix('[').and_then(|a| a.strip_suffix(']'));
        if let Ok(ip) = bare.unwrap_or(s).parse::<IpAddr>() {
            return Ok(BindAddr::Ip(SocketAddr::new(ip, DEFAULT_PORT)));
        }
        // `[IPV6]:PORT` whose port is bad, or `IP:PORT` / `HOST:PORT`.
        let (host, port_text) = match s.rsplit_once(':') {
            Some((host, p)) if host.starts_with('[') => {
                let ip = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .and_then(|h| h.parse::<IpAddr>().ok())
                    .ok_or_else(|| BindAddrError::BadHost(host.to_string()))?;
                return Ok(BindAddr::Ip(SocketAddr::new(ip, port(p)?)));
            }
            Some((host, p)) if !host.contains(':') => (host, Some(p)),
            Some(_) => return Err(BindAddrError::BadHost(s.to_string())),
            None => (s, None),
        };
        let port = port_text.map_or(Ok(DEFAULT_PORT), port)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(BindAddr::Ip(SocketAddr::new(ip, port)));
        }
        if !is_host_name(host) {
            return Err(BindAddrError::BadHost(host.to_string()));
        }
        Ok(BindAddr::Host {
            name: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Ip(addr) => write!(f, "{addr}"),
            BindAddr::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

impl BindAddr {
    /// The socket addresses to try, in order: the address itself, or every address
    /// the name resolves to, IPv4 first (most clients are told an IPv4 address, and
    /// a server can listen on only one of them).
    ///
    /// # Errors
    /// The resolver's error, or `NotFound` when the name has no address.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let mut addrs: Vec<SocketAddr> = match self {
            BindAddr::Ip(addr) => return Ok(vec![*addr]),
            BindAddr::Host { name, port } => (name.as_str(), *port).to_socket_addrs()?.collect(),
        };
        addrs.sort_by_key(SocketAddr::is_ipv6);
        addrs.dedup();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "the name resolves to no address",
            ));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> BindAddr {
        BindAddr::Ip(s.parse().unwrap())
    }

    #[test]
    fn every_form_parses() {
        for (text, want) in [
            ("127.0.0.1:9001", ip("127.0.0.1:9001")),
            ("127.0.0.1", ip("127.0.0.1:9000")),
            ("0.0.0.0:0", ip("0.0.0.0:0")),
            ("[::]:9001", ip("[::]:9001")),
            ("[::1]", ip("[::1]:9000")),
            ("::", ip("[::]:9000")),
            (
                "localhost:9001",
                BindAddr::Host {
                    name: "localhost".into(),
                    port: 9001,
                },
            ),
            (
                "my-host.lan",
                BindAddr::Host {
                    name: "my-host.lan".into(),
                    port: 9000,
                },
            ),
        ] {
            assert_eq!(text.parse::<BindAddr>(), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for (text, want) in [
            ("", BindAddrError::Empty),
            ("127.0.0.1:99999", BindAddrError::BadPort("99999".into())),
            ("localhost:", BindAddrError::BadPort(String::new())),
            ("[::1]:x", BindAddrError::BadPort("x".into())),
            ("[nope]:9000", BindAddrError::BadHost("[nope]".into())),
            (
                "nowhere;9000",
                BindAddrError::BadHost("nowhere;9000".into()),
            ),
            ("a..b", BindAddrError::BadHost("a..b".into())),
        ] {
            assert_eq!(text.parse::<BindAddr>(), Err(want), "{text}");
        }
        let message = "1.2.3.4:70000".parse::<BindAddr>().unwrap_err().to_string();
        assert!(
            message.contains("0 to 65535") && message.contains("HOST:PORT"),
            "{message}"
        );
    }

    #[test]
    fn display_round_trips() {
        for text in ["127.0.0.1:9000", "[::1]:7", "localhost:9001"] {
            let addr: BindAddr = text.parse().unwrap();
            assert_eq!(addr.to_string(), text);
            assert_eq!(addr.to_string().parse::<BindAddr>(), Ok(addr));
        }
    }

    #[test]
    fn localhost_resolves_ipv4_first() {
        let addrs = "localhost:0"
            .parse::<BindAddr>()
            .unwrap()
            .resolve()
            .unwrap();
        assert!(!addrs.is_empty());
        let first_v6 = addrs.iter().position(SocketAddr::is_ipv6);
        let last_v4 = addrs.iter().rposition(SocketAddr::is_ipv4);
        if let (Some(v6), Some(v4)) = (first_v6, last_v4) {
            assert!(v4 < v6, "{addrs:?}");
        }
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
