//! One smoltcp TCP connection as a blocking `embedded-io` stream, so proto-core's
//! `FrameReader` and `write_frame` run on it exactly as they run on the UART.
//!
//! [`TcpClient`] owns a smoltcp interface, the network device and one TCP socket.
//! Every blocking call loops: poll the interface (which moves frames between the
//! device and the socket and runs TCP's timers), see whether the call can complete,
//! and if not, sleep with `WFI` until the next interrupt. The interrupts that wake it
//! are SysTick, once a millisecond ([`crate::clock`]), and the network device's
//! receive interrupt. The core sleeps with interrupts masked and wakes on a pending
//! one, so a frame that arrives between the check and the `WFI` still wakes it.
//!
//! Nothing here is specific to the Stellaris MAC: any smoltcp [`Device`] that can
//! say whether a frame is waiting ([`Nic`]) works, on any Cortex-M with SysTick.
//!
//! Errors say what failed: nothing answered ARP (no host at that address), the
//! handshake timed out, the server refused or reset the connection, or a wait ran
//! past its limit. The server closing its side cleanly is not an error: `read`
//! returns 0, as `embedded-io` specifies for the end of a stream.

use core::fmt;

use cortex_m::{asm, interrupt};
use embedded_io::{ErrorKind, ErrorType, Read, Write};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::phy::Device;
use smoltcp::socket::tcp::{self, RecvError, State};
use smoltcp::time::Duration;
use smoltcp::wire::{EthernetAddress, IpCidr, IpEndpoint, Ipv4Address, Ipv4Cidr};

use crate::clock;

/// A network device the adapter can sleep on.
pub trait Nic: Device {
    /// True if a received frame waits in the device, not yet handed to smoltcp.
    /// The adapter only sleeps when this is false.
    fn rx_pending(&self) -> bool;
    /// How many ARP frames the device has received so far. The adapter compares it
    /// across a failed connect to tell "nothing answered" from "no handshake".
    fn rx_arp(&self) -> u32;
}

/// Where the client sits on the network and how long it waits for what.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The interface's MAC address; it must be unicast.
    pub mac: [u8; 6],
    /// The client's static IPv4 address and prefix, such as 10.0.2.15/24.
    pub address: Ipv4Cidr,
    /// The default gateway, for servers outside the prefix.
    pub gateway: Option<Ipv4Address>,
    /// The local TCP port of the connection.
    pub local_port: u16,
    /// Seeds smoltcp's generator of initial sequence numbers. It should differ on
    /// each boot (a board takes it from a hardware entropy source or noise).
    pub random_seed: u64,
    /// How long `connect` waits for ARP and the TCP handshake, in milliseconds.
    pub connect_timeout_ms: u64,
    /// How long a read waits for data, in milliseconds; `None` waits as long as the
    /// connection lives (a chat can be quiet for hours).
    pub read_timeout_ms: Option<u64>,
    /// How long a write waits for room in the send buffer, and a flush for the
    /// server to acknowledge everything, in milliseconds.
    pub write_timeout_ms: u64,
    /// How long `close` waits for the server to acknowledge the end of the stream.
    pub close_timeout_ms: u64,
}

/// The blocking operation that ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Waiting for ARP and the TCP handshake.
    Connect,
    /// Waiting for data.
    Read,
    /// Waiting for room in the send buffer.
    Write,
    /// Waiting for the server to acknowledge what was sent.
    Flush,
    /// Waiting for the server to acknowledge the end of the stream.
    Close,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Connect => "connect",
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
            Op::Close => "close",
        })
    }
}

/// What went wrong with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The MAC address in the settings is not a unicast address.
    BadMac,
    /// smoltcp cannot dial that server from these settings (port 0, unspecified or
    /// unroutable address).
    Unaddressable,
    /// No ARP frame came back while connecting: nothing on the link answers for the
    /// server's address (or the gateway's).
    NoArpReply {
        /// How long the connect waited.
        after_ms: u64,
    },
    /// ARP was answered but the TCP handshake did not complete in time.
    ConnectTimeout {
        /// How long the connect waited.
        after_ms: u64,
    },
    /// The server answered the connection request with a reset: nothing listens.
    Refused,
    /// The connection was reset (or aborted) after it was established.
    Reset,
    /// The connection is closed for sending (this side closed it).
    NotConnected,
    /// A blocking operation ran past its limit.
    Timeout {
        /// The operation.
        op: Op,
        /// Its limit, in milliseconds.
        after_ms: u64,
    },
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::BadMac => f.write_str("the MAC address is not a unicast address"),
            NetError::Unaddressable => f.write_str("the server's address cannot be dialled"),
            NetError::NoArpReply { after_ms } => write!(
                f,
                "no ARP reply within {after_ms} ms: nothing on the link answers for the server's address"
            ),
            NetError::ConnectTimeout { after_ms } => {
                write!(f, "no answer to the connection request within {after_ms} ms")
            }
            NetError::Refused => f.write_str("connection refused"),
            NetError::Reset => f.write_str("connection reset"),
            NetError::NotConnected => f.write_str("the connection is closed"),
            NetError::Timeout { op, after_ms } => write!(f, "{op} timed out after {after_ms} ms"),
        }
    }
}

impl core::error::Error for NetError {}

impl embedded_io::Error for NetError {
    fn kind(&self) -> ErrorKind {
        match self {
            NetError::BadMac | NetError::Unaddressable => ErrorKind::InvalidInput,
            NetError::NoArpReply { .. } => ErrorKind::AddrNotAvailable,
            NetError::ConnectTimeout { .. } | NetError::Timeout { .. } => ErrorKind::TimedOut,
            NetError::Refused => ErrorKind::ConnectionRefused,
            NetError::Reset => ErrorKind::ConnectionReset,
            NetError::NotConnected => ErrorKind::NotConnected,
        }
    }
}

/// The socket storage and the TCP buffers, in one place so a program can keep them
/// in a static. `RX` bounds the receive window, `TX` how much can wait unsent.
pub struct Buffers<const RX: usize, const TX: usize> {
    sockets: [SocketStorage<'static>; 1],
    rx: [u8; RX],
    tx: [u8; TX],
}

impl<const RX: usize, const TX: usize> Buffers<RX, TX> {
    /// Empty buffers.
    pub const fn new() -> Self {
        Self {
            sockets: [SocketStorage::EMPTY],
            rx: [0; RX],
            tx: [0; TX],
        }
    }
}

impl<const RX: usize, const TX: usize> Default for Buffers<RX, TX> {
    fn default() -> Self {
        Self::new()
    }
}

/// One TCP connection over a smoltcp interface, as a blocking stream.
pub struct TcpClient<D: Nic> {
    iface: Interface,
    device: D,
    sockets: SocketSet<'static>,
    handle: SocketHandle,
    settings: Settings,
}

impl<D: Nic> TcpClient<D> {
    /// Brings the interface up with `settings` and connects to `server`, blocking
    /// until the handshake completes.
    ///
    /// # Errors
    /// [`NetError::BadMac`] or [`NetError::Unaddressable`] for unusable settings,
    /// [`NetError::Refused`] if the server resets the request,
    /// [`NetError::NoArpReply`] or [`NetError::ConnectTimeout`] if nothing
    /// completes it within `settings.connect_timeout_ms`.
    pub fn connect<const RX: usize, const TX: usize>(
        mut device: D,
        settings: Settings,
        buffers: &'static mut Buffers<RX, TX>,
        server: (Ipv4Address, u16),
    ) -> Result<Self, NetError> {
        let mac = EthernetAddress(settings.mac);
        if !mac.is_unicast() {
            return Err(NetError::BadMac);
        }
        let mut config = Config::new(mac.into());
        config.random_seed = settings.random_seed;
        let mut iface = Interface::new(config, &mut device, clock::now());
        iface.update_ip_addrs(|addrs| {
            // The list has room for two addresses and starts empty.
            let _ = addrs.push(IpCidr::Ipv4(settings.address));
        });
        if let Some(gateway) = settings.gateway {
            iface
                .routes_mut()
                .add_default_ipv4_route(gateway)
                .map_err(|_| NetError::Unaddressable)?;
        }
        let Buffers { sockets, rx, tx } = buffers;
        let mut set = SocketSet::new(&mut sockets[..]);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        );
        // proto-core writes a frame in one call; holding back its tail until the
        // previous frame is acknowledged would only add a round trip.
        socket.set_nagle_enabled(false);
        let handle = set.add(socket);
        let remote = IpEndpoint::new(server.0.into(), server.1);
        set.get_mut::<tcp::Socket>(handle)
            .connect(iface.context(), remote, settings.local_port)
            .map_err(|_| NetError::Unaddressable)?;
        let mut client = Self {
            iface,
            device,
            sockets: set,
            handle,
            settings,
        };
        let arp_before = client.device.rx_arp();
        let limit = settings.connect_timeout_ms;
        let connected = client.block_until(Some(limit), Op::Connect, |s| match s.state() {
            State::Established => Some(Ok(())),
            // smoltcp only leaves SYN-SENT for CLOSED on a reset.
            State::Closed => Some(Err(NetError::Refused)),
            _ => None,
        });
        match connected {
            Ok(()) => Ok(client),
            Err(NetError::Timeout { .. }) if client.device.rx_arp() == arp_before => {
                Err(NetError::NoArpReply { after_ms: limit })
            }
            Err(NetError::Timeout { .. }) => Err(NetError::ConnectTimeout { after_ms: limit }),
            Err(e) => Err(e),
        }
    }

    /// Changes how long a read waits for data (`None`: as long as the connection
    /// lives). A client bounds the wait for the server's preamble, then waits
    /// without limit for a quiet room.
    pub fn set_read_timeout(&mut self, ms: Option<u64>) {
        self.settings.read_timeout_ms = ms;
    }

    /// The network device, for its counters.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The local and remote endpoints of the connection.
    pub fn endpoints(&self) -> (Option<IpEndpoint>, Option<IpEndpoint>) {
        let s = self.sockets.get::<tcp::Socket>(self.handle);
        (s.local_endpoint(), s.remote_endpoint())
    }

    /// Ends the stream: waits until the server has acknowledged everything sent,
    /// sends FIN and waits until that is acknowledged too (or the server reset the
    /// connection, which also ends it).
    ///
    /// # Errors
    /// [`NetError::Timeout`] if the server does not acknowledge in time, or the
    /// flush's errors.
    pub fn close(&mut self) -> Result<(), NetError> {
        self.flush()?;
        self.sockets.get_mut::<tcp::Socket>(self.handle).close();
        self.block_until(
            Some(self.settings.close_timeout_ms),
            Op::Close,
            |s| match s.state() {
                State::FinWait2 | State::TimeWait | State::Closed => Some(Ok(())),
                _ => None,
            },
        )
    }

    /// Polls the interface once: frames in and out, TCP timers.
    fn poll(&mut self) {
        self.iface
            .poll(clock::now(), &mut self.device, &mut self.sockets);
    }

    /// Sleeps until the next interrupt, unless the stack has work now.
    fn idle(&mut self) {
        if self.iface.poll_delay(clock::now(), &self.sockets) == Some(Duration::ZERO) {
            return;
        }
        // With interrupts masked, a frame that arrived since the last poll either
        // shows in `rx_pending` or leaves its interrupt pending, and a pending
        // interrupt ends `WFI` at once. Unmasking then runs the handlers.
        interrupt::free(|_| {
            if !self.device.rx_pending() {
                asm::wfi();
            }
        });
    }

    /// Polls and sleeps until `step` gives a result, or `limit_ms` runs out
    /// ([`NetError::Timeout`] for `op`).
    fn block_until<T>(
        &mut self,
        limit_ms: Option<u64>,
        op: Op,
        mut step: impl FnMut(&mut tcp::Socket<'static>) -> Option<Result<T, NetError>>,
    ) -> Result<T, NetError> {
        let deadline = limit_ms.map(|ms| clock::now_ms().saturating_add(ms));
        loop {
            self.poll();
            if let Some(done) = step(self.sockets.get_mut(self.handle)) {
                // Send at once what `step` queued: data, or the window it opened.
                self.poll();
                return done;
            }
            if let (Some(deadline), Some(after_ms)) = (deadline, limit_ms) {
                if clock::now_ms() >= deadline {
                    return Err(NetError::Timeout { op, after_ms });
                }
            }
            self.idle();
        }
    }
}

impl<D: Nic> ErrorType for TcpClient<D> {
    type Error = NetError;
}

impl<D: Nic> Read for TcpClient<D> {
    /// Blocks until data arrives and returns what the receive buffer holds, up to
    /// `buf.len()`; returns 0 once the server has closed its side and everything it
    /// sent has been read.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let limit = self.settings.read_timeout_ms;
        self.block_until(limit, Op::Read, |s| match s.recv_slice(buf) {
            Ok(0) => None,
            Ok(n) => Some(Ok(n)),
            Err(RecvError::Finished) => Some(Ok(0)),
            Err(RecvError::InvalidState) => Some(Err(NetError::Reset)),
        })
    }
}

impl<D: Nic> Write for TcpClient<D> {
    /// Blocks until there is room in the send buffer, queues what fits and starts
    /// sending it.
    fn write(&mut self, buf: &[u8]) -> Result<usize, NetError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let limit = self.settings.write_timeout_ms;
        self.block_until(Some(limit), Op::Write, |s| {
            if !s.may_send() {
                return Some(Err(closed(s)));
            }
            match s.send_slice(buf) {
                Ok(0) => None,
                Ok(n) => Some(Ok(n)),
                Err(_) => Some(Err(closed(s))),
            }
        })
    }

    /// Blocks until the server has acknowledged everything written.
    fn flush(&mut self) -> Result<(), NetError> {
        let limit = self.settings.write_timeout_ms;
        self.block_until(Some(limit), Op::Flush, |s| {
            if s.send_queue() == 0 {
                Some(Ok(()))
            } else if s.state() == State::Closed {
                Some(Err(NetError::Reset))
            } else {
                None
            }
        })
    }
}

/// Why a socket that cannot send cannot: the server reset it, or this side closed.
fn closed(s: &tcp::Socket<'_>) -> NetError {
    if s.state() == State::Closed {
        NetError::Reset
    } else {
        NetError::NotConnected
    }
}
