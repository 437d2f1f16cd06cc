//! The network of the `room-net` programs under QEMU, and their bring-up: start the
//! clock, take the Ethernet controller, unmask its interrupt and dial the server.
//!
//! QEMU's user-mode network puts the board at 10.0.2.15/24 behind a gateway at
//! 10.0.2.2; `guestfwd` maps 10.0.2.100:7000 to the real server, so one firmware
//! image serves every server:
//!
//! ```text
//! qemu-system-arm ... -nic user,model=stellaris,restrict=on,\
//!     guestfwd=tcp:10.0.2.100:7000-tcp:127.0.0.1:PORT
//! ```
//!
//! A program that uses [`connect`] must also install the interrupt handlers with
//! [`net_interrupts!`](crate::net_interrupts).

use smoltcp::wire::{Ipv4Address, Ipv4Cidr};

use crate::eth::{Eth, EthernetIrq};
use crate::net::{Buffers, Settings, TcpClient};
use crate::{clock, say};

/// The server's address as the firmware sees it; QEMU's `guestfwd` maps it.
pub const SERVER: (Ipv4Address, u16) = (Ipv4Address::new(10, 0, 2, 100), 7000);
/// QEMU's user-mode gateway.
pub const GATEWAY: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
/// The receive buffer, and so the largest window the firmware offers. It is
/// smaller than a maximal frame (`proto_core::MAX_FRAME`, 1055 bytes), so such a
/// frame always arrives in more than one TCP segment.
pub const TCP_RX: usize = 1024;
/// The send buffer: the firmware's own frames are short (a greeting, pongs, bye);
/// a longer one is sent in pieces as the server acknowledges them.
pub const TCP_TX: usize = 512;
/// How long the firmware waits for the server's preamble, in milliseconds.
pub const PREAMBLE_TIMEOUT_MS: u64 = 5_000;
/// The MAC address used when the controller has none (a real LM3S6965 starts with
/// zeros in `MACIA0`/`MACIA1`; QEMU presets 52:54:00:12:34:56): locally
/// administered, unicast.
pub const FALLBACK_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];

/// The network settings. The seed and port are fixed because this board has no
/// entropy source; a product takes them from one, so that a reboot does not reuse
/// the previous connection's port and sequence numbers.
pub const SETTINGS: Settings = Settings {
    mac: FALLBACK_MAC,
    address: Ipv4Cidr::new(Ipv4Address::new(10, 0, 2, 15), 24),
    gateway: Some(GATEWAY),
    local_port: 49_152,
    random_seed: 0x6368_6174_726f_6f6d,
    connect_timeout_ms: 3_000,
    read_timeout_ms: None,
    write_timeout_ms: 5_000,
    close_timeout_ms: 2_000,
};

/// The TCP client of these programs.
pub type Client = TcpClient<Eth>;

/// Brings the network up and connects to [`SERVER`], saying what it does as
/// `NAME: ...` lines. Returns `None` after saying why it failed.
///
/// Reads time out after [`PREAMBLE_TIMEOUT_MS`], so a server that accepts but never
/// speaks cannot hang the program; lift that with `set_read_timeout(None)` once the
/// server has spoken.
pub fn connect(name: &str) -> Option<Client> {
    let Some(mut core) = cortex_m::Peripherals::take() else {
        say!("{}: core peripherals already taken", name);
        return None;
    };
    clock::start(&mut core.SYST, clock::QEMU_LM3S6965_HZ);
    let Some(mut nic) = Eth::take() else {
        say!("{}: Ethernet controller already taken", name);
        return None;
    };
    let mut settings = SETTINGS;
    match nic.mac() {
        [0, 0, 0, 0, 0, 0] => nic.set_mac(settings.mac),
        mac => settings.mac = mac,
    }
    settings.read_timeout_ms = Some(PREAMBLE_TIMEOUT_MS);
    // SAFETY: the Ethernet interrupt's handler (installed by `net_interrupts!`) only
    // acknowledges the controller's status register and shares no data with this
    // code, so unmasking it cannot break a critical section.
    unsafe { cortex_m::peripheral::NVIC::unmask(EthernetIrq) };
    let [a, b, c, d, e, f] = settings.mac;
    say!(
        "{}: mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {} via {}, dialling {}:{}",
        name,
        a,
        b,
        c,
        d,
        e,
        f,
        settings.address,
        GATEWAY,
        SERVER.0,
        SERVER.1
    );
    let Some(buffers) = cortex_m::singleton!(: Buffers<TCP_RX, TCP_TX> = Buffers::new()) else {
        say!("{}: buffers taken twice", name);
        return None;
    };
    let started = clock::now_ms();
    let client = match TcpClient::connect(nic, settings, buffers, SERVER) {
        Ok(client) => client,
        Err(e) => {
            say!(
                "{}: cannot connect to {}:{}: {}",
                name,
                SERVER.0,
                SERVER.1,
                e
            );
            return None;
        }
    };
    if let (Some(local), Some(remote)) = client.endpoints() {
        say!(
            "{}: connected {} -> {} in {} ms",
            name,
            local,
            remote,
            clock::now_ms() - started
        );
    }
    Some(client)
}

/// Says what went through the Ethernet controller.
pub fn report(name: &str, client: &Client) {
    let n = client.device().counters();
    say!(
        "{}: ethernet: {} frames in ({} ARP, {} dropped), {} out",
        name,
        n.rx_frames,
        n.rx_arp,
        n.rx_dropped,
        n.tx_frames
    );
}

/// Closes the connection, so that everything sent reaches the server before the
/// program ends; true if it closed cleanly.
pub fn close(name: &str, client: &mut Client) -> bool {
    match client.close() {
        Ok(()) => {
            say!("{}: connection closed", name);
            true
        }
        Err(e) => {
            say!("{}: closing: {}", name, e);
            false
        }
    }
}

/// Installs the interrupt handlers the network needs: SysTick counts milliseconds
/// ([`clock::on_tick`]), and the Ethernet interrupt (IRQ 42, through cortex-m-rt's
/// `DefaultHandler`, as this crate has no device crate listing interrupts)
/// acknowledges the controller ([`crate::eth::on_interrupt`]). Any other interrupt
/// is unexpected and ends the program with a failure.
#[macro_export]
macro_rules! net_interrupts {
    () => {
        #[cortex_m_rt::exception]
        fn SysTick() {
            $crate::clock::on_tick();
        }

        #[cortex_m_rt::exception]
        // SAFETY: cortex-m-rt requires the default handler to be declared `unsafe`;
        // it touches only the Ethernet controller's status register, or exits.
        unsafe fn DefaultHandler(irqn: i16) {
            if irqn == $crate::eth::IRQ as i16 {
                $crate::eth::on_interrupt();
                return;
            }
            $crate::say!("unexpected interrupt {}", irqn);
            $crate::exit::exit(false)
        }
    };
}
