//! Socket conditions the tests wait on instead of sleeping, shared by the end-to-end
//! tests here and the in-process tests of `host-server` and `host-client` (which
//! include this file by path).

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A loopback address that refuses connections for as long as this value lives.
///
/// Its socket is bound but never listens, so a connection attempt is reset; and
/// since it holds the port (without `SO_REUSEADDR`), no other socket, such as a
/// listener of a test running in parallel, can take the port meanwhile. A port bound
/// by a listener and released at once has no such guarantee.
pub struct Refusing {
    _socket: socket2::Socket,
    pub addr: SocketAddr,
}

impl Refusing {
    pub fn new() -> Self {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        Self {
            _socket: socket,
            addr,
        }
    }
}

/// Waits until the peer of `stream` (a server on this machine's IPv4 loopback) has
/// read every byte sent to it, so that what is sent next reaches it in another read.
///
/// The condition is the receive queue of the peer's socket, as `/proc/net/tcp`
/// shows it, being empty; it fails the test after `limit`.
pub fn wait_until_read(stream: &TcpStream, limit: Duration) {
    let (ours, theirs) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    let key = format!("{} {}", proc_net_addr(theirs), proc_net_addr(ours));
    let deadline = Instant::now() + limit;
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
        let queued = table.lines().find_map(|l| {
            // "sl: local remote st tx_queue:rx_queue ..."
            let fields: Vec<&str> = l.split_whitespace().collect();
            let addrs = format!("{} {}", fields.get(1)?, fields.get(2)?);
            let (_, rx) = fields.get(4)?.split_once(':')?;
            (addrs == key).then(|| u64::from_str_radix(rx, 16).unwrap())
        });
        match queued {
            Some(0) => return,
            Some(n) => assert!(
                Instant::now() < deadline,
                "the server left {n} bytes unread for {limit:?}"
            ),
            None => panic!("no socket {key} in /proc/net/tcp"),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// An address as `/proc/net/tcp` writes it: the IPv4 address as the kernel stores
/// it, read as a native `u32`, then the port, both in hex.
fn proc_net_addr(addr: SocketAddr) -> String {
    let SocketAddr::V4(v4) = addr else {
        panic!("wait_until_read speaks IPv4 only, not {addr}")
    };
    format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(v4.ip().octets()),
        v4.port()
    )
}
