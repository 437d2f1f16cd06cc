//! The peer header: the sender's IP address and port, encoded with postcard.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use serde::{Deserialize, Serialize};

/// The longest postcard encoding of a [`PeerAddr`]: a 1-byte variant tag, 16 address
/// bytes and a port varint of at most 3 bytes.
pub const PEER_MAX_LEN: usize = 1 + 16 + 3;

/// A peer's address as the room sees it: IPv4 or IPv6 address and port.
///
/// It prints as `127.0.0.1:50432` or `[::1]:50432`. An IPv4-mapped IPv6 address
/// (`::ffff:127.0.0.1`, as a dual-stack listener reports IPv4 peers) is stored as the
/// IPv4 address it maps, so an IPv4 peer always prints the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PeerAddr {
    /// An IPv4 peer.
    V4 {
        /// Address octets, most significant first.
        ip: [u8; 4],
        /// TCP port.
        port: u16,
    },
    /// An IPv6 peer.
    V6 {
        /// Address octets, most significant first.
        ip: [u8; 16],
        /// TCP port.
        port: u16,
    },
}

impl PeerAddr {
    /// Writes the postcard encoding into `out`, returning the bytes written, or `None`
    /// if `out` is too short (it never is at [`PEER_MAX_LEN`] bytes).
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        postcard::to_slice(self, out).ok().map(|used| used.len())
    }

    /// Reads a postcard-encoded peer from the front of `bytes`, returning it and the
    /// bytes after it. Only the canonical encoding (the one [`PeerAddr::encode`]
    /// writes) is accepted, so a decoded peer always re-encodes to the same bytes.
    #[inline]
    pub fn decode(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let (peer, rest) = postcard::take_from_bytes::<PeerAddr>(bytes).ok()?;
        // A varint has one shortest encoding per value and every other encoding of it
        // is longer, so the bytes are canonical exactly when they are as short as the
        // canonical encoding; no need to encode again and compare.
        (bytes.len() - rest.len() == peer.encoded_len()).then_some((peer, rest))
    }

    /// The number of bytes [`PeerAddr::encode`] writes: the variant tag, the address
    /// and the port varint (7 bits per byte).
    #[inline]
    pub const fn encoded_len(&self) -> usize {
        let (ip, port) = match *self {
            PeerAddr::V4 { port, .. } => (4, port),
            PeerAddr::V6 { port, .. } => (16, port),
        };
        let port_len = match port {
            0..=0x7f => 1,
            0x80..=0x3fff => 2,
            _ => 3,
        };
        1 + ip + port_len
    }

    /// The standard library's form of this address.
    pub fn socket_addr(&self) -> SocketAddr {
        match *self {
            PeerAddr::V4 { ip, port } => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
            PeerAddr::V6 { ip, port } => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        match *self {
            PeerAddr::V4 { port, .. } | PeerAddr::V6 { port, .. } => port,
        }
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        let port = addr.port();
        match addr.ip().to_canonical() {
            IpAddr::V4(ip) => PeerAddr::V4 {
                ip: ip.octets(),
                port,
            },
            IpAddr::V6(ip) => PeerAddr::V6 {
                ip: ip.octets(),
                port,
            },
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.socket_addr(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn v4(a: [u8; 4], port: u16) -> PeerAddr {
        PeerAddr::V4 { ip: a, port }
    }

    #[test]
    fn prints_like_std() {
        assert_eq!(v4([127, 0, 0, 1], 50432).to_string(), "127.0.0.1:50432");
        let v6: SocketAddr = "[::1]:50432".parse().unwrap();
        assert_eq!(PeerAddr::from(v6).to_string(), "[::1]:50432");
    }

    #[test]
    fn mapped_ipv4_is_stored_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9000".parse().unwrap();
        assert_eq!(PeerAddr::from(mapped), v4([127, 0, 0, 1], 9000));
        assert_eq!(PeerAddr::from(mapped).to_string(), "127.0.0.1:9000");
    }

    #[test]
    fn golden_encodings() {
        let mut buf = [0u8; PEER_MAX_LEN];
        let n = v4([127, 0, 0, 1], 50432).encode(&mut buf).unwrap();
        // variant 0, four octets, port 50432 = 0xC500 as a varint: 0x80 0x8A 0x03
        assert_eq!(&buf[..n], &[0x00, 127, 0, 0, 1, 0x80, 0x8A, 0x03]);
        let widest = PeerAddr::V6 {
            ip: [0xff; 16],
            port: u16::MAX,
        };
        assert_eq!(widest.encode(&mut buf), Some(PEER_MAX_LEN));
    }

    #[test]
    fn encoded_len_is_what_encode_writes() {
        let mut buf = [0u8; PEER_MAX_LEN];
        for port in [0, 1, 0x7f, 0x80, 0x3fff, 0x4000, u16::MAX] {
            for peer in [v4([1, 2, 3, 4], port), PeerAddr::V6 { ip: [7; 16], port }] {
                assert_eq!(peer.encode(&mut buf), Some(peer.encoded_len()), "{peer:?}");
            }
        }
    }

    #[test]
    fn decode_returns_the_rest() {
        let bytes = [0x00, 10, 0, 0, 7, 0x05, b'h', b'i'];
        let (peer, rest) = PeerAddr::decode(&bytes).unwrap();
        assert_eq!(peer, v4([10, 0, 0, 7], 5));
        assert_eq!(rest, b"hi");
    }

    #[test]
    fn decode_refuses_non_canonical_and_bad_input() {
        // port 5 as an overlong varint
        assert_eq!(PeerAddr::decode(&[0x00, 1, 2, 3, 4, 0x85, 0x00]), None);
        // unknown variant
        assert_eq!(PeerAddr::decode(&[0x02, 1, 2, 3, 4, 0x05]), None);
        // truncated
        assert_eq!(PeerAddr::decode(&[0x01, 1, 2, 3]), None);
        assert_eq!(PeerAddr::decode(&[]), None);
    }
}
