//! Joins the chat room over TCP/IP, through smoltcp on the board's Ethernet
//! controller, and stays until someone writes "bye firmware".
//!
//! The firmware is a host on its own: static address 10.0.2.15/24, gateway
//! 10.0.2.2, and it dials the server at 10.0.2.100:7000. Under QEMU, user-mode
//! networking provides that network and `guestfwd` maps the server's address to a
//! real one, so one image serves every server:
//!
//! ```text
//! qemu-system-arm ... -nic user,model=stellaris,restrict=on,\
//!     guestfwd=tcp:10.0.2.100:7000-tcp:127.0.0.1:PORT -kernel room-net
//! ```
//!
//! QEMU connects to 127.0.0.1:PORT as it starts, so the server must be listening
//! first. The firmware prints what the room says (`[PEER] TEXT`, `*** TEXT`) and
//! exits with status 0 when it has said bye or the server has left, 1 with the
//! reason on any error (no ARP reply, refused, reset, a bad preamble, a panic).
#![no_std]
#![no_main]

use chatroom_firmware::eth::{self, Eth, EthernetIrq};
use chatroom_firmware::exit::exit;
use chatroom_firmware::net::{Buffers, Settings, TcpClient};
use chatroom_firmware::room::{self, End, Stats};
use chatroom_firmware::{clock, say, stack};
use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use proto_core::FrameReader;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

/// The server's address as the firmware sees it; QEMU's `guestfwd` maps it.
const SERVER: (Ipv4Address, u16) = (Ipv4Address::new(10, 0, 2, 100), 7000);
/// The receive buffer, and so the largest window the firmware offers. It is
/// smaller than a maximal frame (`proto_core::MAX_FRAME`, 1055 bytes), so such a
/// frame always arrives in more than one TCP segment.
const TCP_RX: usize = 1024;
/// The send buffer: the firmware's own frames are short (a greeting, pongs, bye);
/// a longer frame is sent in pieces as the server acknowledges them.
const TCP_TX: usize = 512;
/// Size of the read buffer in front of the frame decoder, as in `room`.
const READ_BUF: usize = 256;
/// How long the firmware waits for the server's preamble, in milliseconds.
const PREAMBLE_TIMEOUT_MS: u64 = 5_000;
/// The MAC address used when the controller has none (a real LM3S6965 starts with
/// zeros in `MACIA0`/`MACIA1`; QEMU presets 52:54:00:12:34:56): locally
/// administered, unicast.
const FALLBACK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// The network settings. The seed and port are fixed because this board has no
/// entropy source; a product takes them from one, so that a reboot does not reuse
/// the previous connection's port and sequence numbers.
const SETTINGS: Settings = Settings {
    mac: FALLBACK_MAC,
    address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
    gateway: Some(Ipv4Address::new(10, 0, 2, 2)),
    local_port: 49_152,
    random_seed: 0x6368_6174_726f_6f6d,
    connect_timeout_ms: 3_000,
    read_timeout_ms: None,
    write_timeout_ms: 5_000,
    close_timeout_ms: 2_000,
};

type Client = TcpClient<Eth>;

#[entry]
fn main() -> ! {
    // The whole session runs in a frame of its own, so its stack high-water mark
    // covers everything the firmware does.
    let (ok, used) = stack::measure(run);
    say!("room-net: the session used at most {} bytes of stack", used);
    exit(ok)
}

/// Brings the network up, joins the room and chats; true if it ended cleanly.
fn run() -> bool {
    let Some(mut core) = cortex_m::Peripherals::take() else {
        say!("room-net: core peripherals already taken");
        return false;
    };
    clock::start(&mut core.SYST, clock::QEMU_LM3S6965_HZ);
    let Some(mut nic) = Eth::take() else {
        say!("room-net: Ethernet controller already taken");
        return false;
    };
    let mut settings = SETTINGS;
    match nic.mac() {
        [0, 0, 0, 0, 0, 0] => nic.set_mac(settings.mac),
        mac => settings.mac = mac,
    }
    // SAFETY: the Ethernet interrupt's handler (`DefaultHandler` below) only
    // acknowledges the controller's status register and shares no data with this
    // code, so unmasking it cannot break a critical section.
    unsafe { NVIC::unmask(EthernetIrq) };
    let [a, b, c, d, e, f] = settings.mac;
    say!(
        "room-net: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {} via {}, dialling {}:{}",
        a,
        b,
        c,
        d,
        e,
        f,
        settings.address,
        Ipv4Address::new(10, 0, 2, 2),
        SERVER.0,
        SERVER.1
    );
    let Some(buffers) = cortex_m::singleton!(: Buffers<TCP_RX, TCP_TX> = Buffers::new()) else {
        say!("room-net: buffers taken twice");
        return false;
    };
    let started = clock::now_ms();
    let mut client = match TcpClient::connect(nic, settings, buffers, SERVER) {
        Ok(client) => client,
        Err(e) => {
            say!(
                "room-net: cannot connect to {}:{}: {}",
                SERVER.0,
                SERVER.1,
                e
            );
            return false;
        }
    };
    if let (Some(local), Some(remote)) = client.endpoints() {
        say!(
            "room-net: connected {} -> {} in {} ms",
            local,
            remote,
            clock::now_ms() - started
        );
    }
    // A server that accepted but never speaks must not hang the firmware.
    client.set_read_timeout(Some(PREAMBLE_TIMEOUT_MS));
    if let Err(e) = room::handshake(&mut client) {
        say!("room-net: {}", e);
        return false;
    }
    client.set_read_timeout(None);
    // In static RAM, so the footprint shows the decoder's buffers and the stack.
    let Some(reader) =
        cortex_m::singleton!(: FrameReader<Client, READ_BUF> = FrameReader::new(client))
    else {
        say!("room-net: reader created twice");
        return false;
    };
    let mut stats = Stats::default();
    let end = room::chat(reader, room::HELLO_TCP, &mut stats);
    let client = reader.get_mut();
    let n = client.device().counters();
    say!(
        "room-net: {} frames; stack: next_frame used at most {} bytes, write_frame {} bytes",
        stats.frames,
        stats.max_read_stack,
        stats.max_write_stack
    );
    say!(
        "room-net: ethernet: {} frames in ({} ARP, {} dropped), {} out",
        n.rx_frames,
        n.rx_arp,
        n.rx_dropped,
        n.tx_frames
    );
    match end {
        Ok(End::SaidBye) => say!("room-net: said bye"),
        Ok(End::ServerLeft) => say!("room-net: the server left"),
        Err(e) => {
            say!("room-net: {}", e);
            return false;
        }
    }
    // The bye frame must reach the server before QEMU ends.
    match client.close() {
        Ok(()) => {
            say!("room-net: connection closed");
            true
        }
        Err(e) => {
            say!("room-net: closing: {}", e);
            false
        }
    }
}

#[exception]
fn SysTick() {
    clock::on_tick();
}

#[exception]
// SAFETY: cortex-m-rt requires the default handler to be declared `unsafe`; it
// touches only the Ethernet controller's status register, or exits.
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == eth::IRQ as i16 {
        eth::on_interrupt();
        return;
    }
    say!("room-net: unexpected interrupt {}", irqn);
    exit(false)
}
