//! Who may connect, decided from the peer's address alone before anything else is
//! done with the connection: the allow list (`--allow`) and which addresses the
//! per-address cap (`--max-per-address`) counts. Pure: the counting itself is in
//! `context`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// What the address of a new connection allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Outside every network of the allow list: refuse it before it is counted.
    NotAllowed,
    /// Admit it without counting it against its address (no cap, or an exempt
    /// loopback peer).
    Uncounted,
    /// Admit it if this host holds fewer than the cap.
    Counted(Host),
}

/// What the per-address cap counts as one host: an IPv4 address (IPv4-mapped IPv6
/// already made IPv4), or an IPv6 network of the configured prefix length, as one
/// IPv6 host usually holds a whole /64 and can pick any address in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Host {
    /// The address, host bits beyond `prefix` cleared.
    ip: IpAddr,
    /// Bits of `ip` that name the host (32 for IPv4).
    prefix: u8,
}

impl Host {
    /// The host `ip` belongs to when IPv6 hosts are counted by `/ipv6_prefix`.
    pub(crate) fn of(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = ipv6_prefix.min(128);
                let net = Ipv6Net::new(v6, prefix).map_or(v6, |n| n.network());
                Self {
                    ip: IpAddr::V6(net),
                    prefix,
                }
            }
            v4 => Self { ip: v4, prefix: 32 },
        }
    }
}

impl From<IpAddr> for Host {
    /// The single address `ip`.
    fn from(ip: IpAddr) -> Self {
        Self::of(ip, 128)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V6(_) if self.prefix < 128 => write!(f, "{}/{}", self.ip, self.prefix),
            ip => write!(f, "{ip}"),
        }
    }
}

/// The default of `--ipv6-prefix`: a /64 is what one IPv6 host (or one home) is
/// normally given, and it can use any address in it.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;

/// How the per-address cap is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap {
    /// Connections one host may hold (0 for no cap).
    pub(crate) max: usize,
    /// Whether loopback peers are counted too.
    pub(crate) loopback: bool,
    /// Prefix length that makes one IPv6 host (128: each address).
    pub(crate) ipv6_prefix: u8,
}

/// The entry of a peer at `ip` under an allow list (`allow`, empty for everyone)
/// and the per-address `cap`.
pub(crate) fn entry(ip: IpAddr, allow: &[IpNet], cap: Cap) -> Entry {
    // A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d; they are the same
    // host as a.b.c.d, for the allow list and for the count.
    let ip = ip.to_canonical();
    if !allow.is_empty() && !allow.iter().any(|net| net.contains(&ip)) {
        return Entry::NotAllowed;
    }
    // Behind a local TLS front every client is 127.0.0.1, and local users are the
    // machine's own: loopback is exempt unless asked otherwise.
    if cap.max == 0 || (ip.is_loopback() && !cap.loopback) {
        return Entry::Uncounted;
    }
    Entry::Counted(Host::of(ip, cap.ipv6_prefix))
}

/// The networks of `allow` no client of a listener on `local` can come from: IPv6
/// networks, on an IPv4 listener. (An IPv6 listener is dual-stack and takes both.)
pub(crate) fn never_admitted(allow: &[IpNet], local: SocketAddr) -> impl Iterator<Item = &IpNet> {
    allow
        .iter()
        .filter(move |net| local.is_ipv4() && matches!(net, IpNet::V6(_)))
}

/// Parses an `--allow` value: a network in CIDR form (`192.168.1.0/24`,
/// `fd00::/8`) or a single address (a network of one). Host bits are cleared, and an
/// IPv4-mapped IPv6 network becomes the IPv4 network it names, as peers do.
///
/// # Errors
/// A message saying what form is expected.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    let net = match (s.parse::<IpNet>(), s.parse::<IpAddr>()) {
        (Ok(net), _) => net,
        (Err(_), Ok(ip)) => IpNet::from(ip),
        (Err(e), Err(_)) => {
            let what = prefix_error(s).unwrap_or_else(|| e.to_string());
            return Err(format!(
                "{what}: use an address or a network in CIDR form, such as 192.168.1.0/24 or fd00::/8"
            ));
        }
    };
    Ok(canonical(net).trunc())
}

/// What is wrong with the prefix length of `ADDRESS/LEN` whose address is valid
/// (ipnet only says "invalid IP address syntax").
fn prefix_error(s: &str) -> Option<String> {
    let (addr, len) = s.split_once('/')?;
    let (max, family) = match addr.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => (32, "IPv4"),
        IpAddr::V6(_) => (128, "IPv6"),
    };
    Some(match len.parse::<u8>() {
        Ok(len) => format!("prefix length {len} is over {max}, the most for an {family} network"),
        Err(_) => format!("'{len}' after the / is not a prefix length from 0 to {max}"),
    })
}

/// An IPv4-mapped IPv6 network (`::ffff:192.168.1.0/120`) as its IPv4 network.
fn canonical(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4);
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// The default cap of 16, loopback exempt unless `loopback`, IPv6 hosts by /128
    /// (each address) so that addresses are what the older tests compare.
    fn cap(max: usize, loopback: bool) -> Cap {
        Cap {
            max,
            loopback,
            ipv6_prefix: 128,
        }
    }

    fn counted(s: &str) -> Entry {
        Entry::Counted(Host::from(ip(s)))
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| parse_net(s).unwrap()).collect()
    }

    #[test]
    fn without_an_allow_list_everyone_enters_and_is_counted() {
        assert_eq!(
            entry(ip("192.0.2.7"), &[], cap(16, false)),
            counted("192.0.2.7")
        );
        assert_eq!(
            entry(ip("2001:db8::1"), &[], cap(16, false)),
            counted("2001:db8::1")
        );
    }

    #[test]
    fn the_allow_list_refuses_addresses_outside_every_network() {
        let allow = nets(&["192.168.1.0/24", "::1/128", "fd00::/8"]);
        for inside in ["192.168.1.1", "192.168.1.255", "::1", "fd12::3"] {
            assert_ne!(entry(ip(inside), &allow, cap(16, false)), Entry::NotAllowed);
        }
        for outside in ["192.168.2.1", "10.0.0.1", "127.0.0.1", "fe80::1", "::2"] {
            assert_eq!(
                entry(ip(outside), &allow, cap(16, false)),
                Entry::NotAllowed,
                "{outside}"
            );
        }
    }

    #[test]
    fn ipv4_mapped_peers_are_their_ipv4_address() {
        let allow = nets(&["192.168.1.0/24"]);
        assert_eq!(
            entry(ip("::ffff:192.168.1.9"), &allow, cap(16, false)),
            counted("192.168.1.9")
        );
        assert_eq!(
            entry(ip("::ffff:10.0.0.1"), &allow, cap(16, false)),
            Entry::NotAllowed
        );
        // Mapped loopback is loopback, so it is exempt too.
        assert_eq!(
            entry(ip("::ffff:127.0.0.1"), &[], cap(16, false)),
            Entry::Uncounted
        );
    }

    #[test]
    fn loopback_is_exempt_unless_capped_and_zero_turns_the_cap_off() {
        for lo in ["127.0.0.1", "127.0.0.2", "::1"] {
            assert_eq!(entry(ip(lo), &[], cap(16, false)), Entry::Uncounted);
            assert_eq!(
                entry(ip(lo), &[], cap(16, true)),
                Entry::Counted(Host::from(ip(lo)))
            );
        }
        assert_eq!(entry(ip("192.0.2.7"), &[], cap(0, true)), Entry::Uncounted);
        // The allow list applies to loopback like to any address.
        let allow = nets(&["127.0.0.2"]);
        assert_eq!(
            entry(ip("127.0.0.3"), &allow, cap(16, false)),
            Entry::NotAllowed
        );
        assert_eq!(
            entry(ip("127.0.0.2"), &allow, cap(16, false)),
            Entry::Uncounted
        );
    }

    #[test]
    fn ipv6_hosts_are_counted_by_their_prefix() {
        let by_64 = Cap {
            ipv6_prefix: 64,
            ..cap(16, false)
        };
        let a = entry(ip("2001:db8:1:2:aaaa::1"), &[], by_64);
        let b = entry(ip("2001:db8:1:2:bbbb::7"), &[], by_64);
        let other = entry(ip("2001:db8:1:3::1"), &[], by_64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        let Entry::Counted(host) = a else {
            panic!("{a:?}")
        };
        assert_eq!(host.to_string(), "2001:db8:1:2::/64");
        // 128 is the old rule: each address is a host.
        assert_ne!(
            entry(ip("2001:db8:1:2:aaaa::1"), &[], cap(16, false)),
            entry(ip("2001:db8:1:2:bbbb::7"), &[], cap(16, false))
        );
        assert_eq!(Host::of(ip("2001:db8::1"), 128).to_string(), "2001:db8::1");
        // IPv4, mapped or not, is one address whatever the prefix.
        assert_eq!(
            entry(ip("::ffff:192.0.2.7"), &[], by_64),
            counted("192.0.2.7")
        );
        assert_eq!(Host::of(ip("192.0.2.7"), 48).to_string(), "192.0.2.7");
    }

    #[test]
    fn allow_values_parse_as_networks_or_single_addresses() {
        assert_eq!(
            parse_net("192.168.1.0/24"),
            Ok("192.168.1.0/24".parse().unwrap())
        );
        assert_eq!(
            parse_net("192.168.1.77/24"),
            Ok("192.168.1.0/24".parse().unwrap())
        );
        assert_eq!(parse_net("10.1.2.3"), Ok("10.1.2.3/32".parse().unwrap()));
        assert_eq!(parse_net("::1"), Ok("::1/128".parse().unwrap()));
        assert_eq!(parse_net("fd00::/8"), Ok("fd00::/8".parse().unwrap()));
        assert_eq!(
            parse_net("::ffff:192.168.1.0/120"),
            Ok("192.168.1.0/24".parse().unwrap())
        );
        for bad in [
            "",
            "192.168.1.0/33",
            "::/129",
            "192.168.1",
            "lan",
            "1.2.3.4/",
        ] {
            let err = parse_net(bad).unwrap_err();
            assert!(err.contains("CIDR"), "{bad}: {err}");
        }
        let allow = nets(&["192.168.1.0/24", "::1", "::ffff:10.0.0.0/104"]);
        let on = |addr: &str| {
            never_admitted(&allow, addr.parse().unwrap())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(on("0.0.0.0:9000"), ["::1/128"]);
        assert!(on("[::]:9000").is_empty());
        let err = parse_net("10.0.0.0/33").unwrap_err();
        assert!(err.starts_with("prefix length 33 is over 32"), "{err}");
        let err = parse_net("::/129").unwrap_err();
        assert!(err.starts_with("prefix length 129 is over 128"), "{err}");
        let err = parse_net("1.2.3.4/x").unwrap_err();
        assert!(
            err.starts_with("'x' after the / is not a prefix length"),
            "{err}"
        );
    }
}
