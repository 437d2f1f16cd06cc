//! A polled driver for the Ethernet controller of the LM3S6965 (the Stellaris MAC),
//! as a smoltcp [`Device`], so an embedded TCP/IP stack runs on it.
//!
//! The controller has no DMA: frames go through one 32-bit data register. To send,
//! the driver writes a 2-byte length field and the frame into the transmit FIFO, one
//! word at a time, then sets the transmit request bit. To receive, it reads words
//! from the receive FIFO while the packet counter says a frame is waiting; the first
//! two bytes of a received frame are its length. Nothing here waits for an interrupt:
//! the receive interrupt only wakes the core (see [`on_interrupt`] and
//! `crate::net`), and the driver reads the packet counter itself.
//!
//! Register names and bits are the datasheet's (Stellaris LM3S6965, chapter
//! "Ethernet Controller"). Only offsets 0x000 to 0x03C are touched: QEMU's model of
//! the controller stops the emulator on any other offset.
//!
//! What a real chip needs before [`Eth::take`] that QEMU does not: the EMAC and EPHY
//! clocks enabled in the system control block (`RCGC2`), the MII management clock
//! divider (`MACMDV`), the PHY's link negotiated (over `MACMCTL`/`MACMTXD`/`MACMRXD`)
//! and `MACTCTL.DUPLEX` set to match it, the MAC address copied from the flash user
//! registers `USER0`/`USER1` into `MACIA0`/`MACIA1`, and the LED pins muxed. See
//! `README.md`, "What carries to a real LM3S6965".

use core::ptr;

use cortex_m::interrupt::InterruptNumber;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Base address of the Ethernet controller.
const ETH_BASE: usize = 0x4004_8000;

/// `MACRIS`, Raw Interrupt Status (read): the pending interrupt causes.
const MACRIS: usize = 0x000;
/// `MACIACK`, Interrupt Acknowledge (write, same offset as `MACRIS`): a 1 clears
/// that cause.
const MACIACK: usize = 0x000;
/// `MACIM`, Interrupt Mask: a 1 lets the cause raise the controller's interrupt line.
const MACIM: usize = 0x004;
/// `MACRCTL`, Receive Control: receiver enable, filtering and the FIFO reset.
const MACRCTL: usize = 0x008;
/// `MACTCTL`, Transmit Control: transmitter enable, padding and CRC generation.
const MACTCTL: usize = 0x00C;
/// `MACDATA`, Data: reading pops a word of the receive FIFO, writing pushes a word
/// into the transmit FIFO. Bytes are little-endian within the word.
const MACDATA: usize = 0x010;
/// `MACIA0`, Individual Address 0: bytes 0 to 3 of the station's MAC address.
const MACIA0: usize = 0x014;
/// `MACIA1`, Individual Address 1: bytes 4 and 5 of the MAC address.
const MACIA1: usize = 0x018;
/// `MACNP`, Number of Packets: complete frames waiting in the receive FIFO.
const MACNP: usize = 0x034;
/// `MACTR`, Transmission Request: setting `NEWTX` sends the frame in the transmit
/// FIFO; the bit reads 1 until the frame has left.
const MACTR: usize = 0x038;

/// `MACRIS.RXINT`: a frame was received.
const INT_RX: u32 = 1 << 0;
/// Every `MACRIS` cause: `RXINT`, `TXER`, `TXEMP`, `FOV`, `RXER`, `MDINT`, `PHYINT`.
const INT_ALL: u32 = 0x7F;
/// `MACRCTL.RXEN`: the receiver is on.
const RCTL_RXEN: u32 = 1 << 0;
/// `MACRCTL.BADCRC`: frames with a bad FCS are dropped by the hardware.
const RCTL_BADCRC: u32 = 1 << 3;
/// `MACRCTL.RSTFIFO`: empties the receive FIFO (write with `RXEN` clear).
const RCTL_RSTFIFO: u32 = 1 << 4;
/// `MACTCTL.TXEN`: the transmitter is on.
const TCTL_TXEN: u32 = 1 << 0;
/// `MACTCTL.PADEN`: frames shorter than 60 bytes are padded by the hardware.
const TCTL_PADEN: u32 = 1 << 1;
/// `MACTCTL.CRC`: the hardware appends the FCS.
const TCTL_CRC: u32 = 1 << 2;
/// `MACTR.NEWTX`: start sending / still sending.
const TR_NEWTX: u32 = 1 << 0;

/// The largest frame sent or received, without the FCS: a 14-byte Ethernet header
/// and a 1500-byte IP MTU. Larger received frames are dropped and counted.
pub const MAX_FRAME: usize = 1514;
/// The FIFO prefixes each frame with its 2-byte length field.
const LEN_FIELD: usize = 2;
/// A received frame also carries its 4-byte FCS after the data.
const FCS: usize = 4;
/// The Ethernet header, which the transmit length field does not count.
const ETH_HEADER: usize = 14;
/// Bytes of one frame as it sits in a FIFO: length field, frame, FCS.
const FIFO_FRAME: usize = LEN_FIELD + MAX_FRAME + FCS;
/// Ethertype of ARP, for the ARP counter.
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];

/// The Ethernet controller's interrupt, number 42 in the LM3S6965's vector table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetIrq;

/// The Ethernet controller's interrupt number.
pub const IRQ: u16 = 42;

// SAFETY: 42 is the LM3S6965's Ethernet controller interrupt, a valid NVIC line on
// this chip (it has 0 to 47), which is all `InterruptNumber` requires.
unsafe impl InterruptNumber for EthernetIrq {
    fn number(self) -> u16 {
        IRQ
    }
}

/// Counts of what went through the MAC, for reports and diagnosis.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Frames received and handed to the stack.
    pub rx_frames: u32,
    /// Received frames dropped because their length field was out of range.
    pub rx_dropped: u32,
    /// Received ARP frames (requests and replies): none at all after a connect
    /// attempt means nothing answered the stack's ARP requests.
    pub rx_arp: u32,
    /// Frames sent.
    pub tx_frames: u32,
}

/// One frame buffer each way, as the FIFOs hold them (length field, frame, FCS).
struct Frames {
    rx: [u8; FIFO_FRAME],
    tx: [u8; FIFO_FRAME],
}

/// The Ethernet controller, owned, with one frame buffer each way.
///
/// There is one per program, taken with [`Eth::take`]. The frame buffers (about
/// 3 KiB) live in a static, so the handle itself is small and cheap to move.
pub struct Eth {
    frames: &'static mut Frames,
    counters: Counters,
}

impl Eth {
    /// Takes the controller once (later calls return `None`, so two drivers never
    /// interleave FIFO words), resets its receive FIFO and turns on the receiver and
    /// the transmitter, with the receive interrupt unmasked in the controller. The
    /// NVIC line ([`EthernetIrq`]) is left to the caller.
    ///
    /// The MAC address is whatever `MACIA0`/`MACIA1` hold (QEMU presets them from
    /// `-nic ...,mac=`); see [`Eth::set_mac`].
    pub fn take() -> Option<Self> {
        let frames = cortex_m::singleton!(: Frames = Frames {
            rx: [0; FIFO_FRAME],
            tx: [0; FIFO_FRAME],
        })?;
        write(MACRCTL, RCTL_RSTFIFO);
        write(MACRCTL, RCTL_RXEN | RCTL_BADCRC);
        write(MACTCTL, TCTL_TXEN | TCTL_PADEN | TCTL_CRC);
        write(MACIACK, INT_ALL);
        write(MACIM, INT_RX);
        Some(Self {
            frames,
            counters: Counters::default(),
        })
    }

    /// The station's MAC address, from `MACIA0`/`MACIA1`.
    pub fn mac(&self) -> [u8; 6] {
        let [a, b, c, d] = read(MACIA0).to_le_bytes();
        let [e, f, _, _] = read(MACIA1).to_le_bytes();
        [a, b, c, d, e, f]
    }

    /// Sets the station's MAC address (a real chip starts with zeros there; its
    /// factory address is in the flash registers `USER0`/`USER1`).
    pub fn set_mac(&mut self, mac: [u8; 6]) {
        let [a, b, c, d, e, f] = mac;
        write(MACIA0, u32::from_le_bytes([a, b, c, d]));
        write(MACIA1, u32::from_le_bytes([e, f, 0, 0]));
    }

    /// True if a received frame waits in the FIFO (`MACNP` is not zero).
    pub fn rx_pending(&self) -> bool {
        read(MACNP) != 0
    }

    /// What went through the MAC so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Pops the next received frame into the receive buffer; returns the frame's range there.
    /// Frames whose length field is out of range are drained and counted as dropped.
    fn pop_frame(&mut self) -> Option<core::ops::Range<usize>> {
        while self.rx_pending() {
            let first = read(MACDATA).to_le_bytes();
            // The length field counts itself, the frame and the FCS.
            let total = usize::from(u16::from_le_bytes([first[0], first[1]]));
            let words = total.div_ceil(4).max(1);
            let fits = (LEN_FIELD + ETH_HEADER + FCS..=FIFO_FRAME).contains(&total);
            if !fits {
                // The whole frame must leave the FIFO, or the next frame's words
                // would be read as this one's.
                for _ in 1..words {
                    read(MACDATA);
                }
                self.counters.rx_dropped = self.counters.rx_dropped.wrapping_add(1);
                continue;
            }
            let rx = &mut self.frames.rx;
            rx[..4].copy_from_slice(&first);
            for chunk in rx[4..words * 4].chunks_exact_mut(4) {
                chunk.copy_from_slice(&read(MACDATA).to_le_bytes());
            }
            let frame = LEN_FIELD..total - FCS;
            self.counters.rx_frames = self.counters.rx_frames.wrapping_add(1);
            if rx.get(frame.start + 12..frame.start + 14) == Some(&ETHERTYPE_ARP[..]) {
                self.counters.rx_arp = self.counters.rx_arp.wrapping_add(1);
            }
            return Some(frame);
        }
        None
    }
}

/// Acknowledges every pending cause of the controller's interrupt.
///
/// Call it from the Ethernet interrupt handler (IRQ 42). The interrupt only wakes
/// the core from `WFI`; received frames stay in the FIFO until the stack polls the
/// driver, which counts them with `MACNP`, not with the interrupt status. The line
/// is level-triggered (`MACRIS & MACIM`), so a handler that did not acknowledge
/// would run again at once, forever.
pub fn on_interrupt() {
    write(MACIACK, read(MACRIS));
}

fn read(offset: usize) -> u32 {
    // SAFETY: ETH_BASE + offset is one of the controller's registers listed above
    // (offsets 0x000 to 0x038), each a 32-bit register at a fixed, aligned address.
    // Reading MACDATA pops the receive FIFO, which only `Eth` (taken once) does.
    unsafe { ptr::read_volatile((ETH_BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as for `read`; writes to MACDATA and MACTR come only from `Eth`, and
    // the MACIACK write in `on_interrupt` only clears status bits, which races with
    // nothing the driver relies on.
    unsafe { ptr::write_volatile((ETH_BASE + offset) as *mut u32, value) }
}

impl Device for Eth {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let frame = self.pop_frame()?;
        let Self { frames, counters } = self;
        let Frames { rx, tx } = &mut **frames;
        Some((
            RxToken {
                frame: rx.get(frame).unwrap_or(&[]),
            },
            TxToken { tx, counters },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            tx: &mut self.frames.tx,
            counters: &mut self.counters,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // One frame in each FIFO at a time, as the driver handles it.
        caps.max_burst_size = Some(1);
        caps
    }
}

impl crate::net::Nic for Eth {
    fn rx_pending(&self) -> bool {
        Eth::rx_pending(self)
    }

    fn rx_arp(&self) -> u32 {
        self.counters.rx_arp
    }
}

/// A received frame, already out of the FIFO.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// The right to send one frame.
pub struct TxToken<'a> {
    tx: &'a mut [u8; FIFO_FRAME],
    counters: &'a mut Counters,
}

impl phy::TxToken for TxToken<'_> {
    /// Builds the frame in the buffer, then copies it into the transmit FIFO and
    /// requests its transmission. smoltcp never asks for more than the MTU
    /// ([`MAX_FRAME`]); a longer request is cut to it.
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let result = f(&mut self.tx[LEN_FIELD..LEN_FIELD + len]);
        // The transmit length field counts the bytes after the Ethernet header.
        let data_len = len.saturating_sub(ETH_HEADER) as u16;
        self.tx[..LEN_FIELD].copy_from_slice(&data_len.to_le_bytes());
        // The FIFO holds one frame: wait until the previous one has left. That is at
        // most one frame's time on the wire (1.2 ms at 10 Mbit/s); QEMU sends at once.
        while read(MACTR) & TR_NEWTX != 0 {}
        let used = LEN_FIELD + len;
        for chunk in self.tx[..used.div_ceil(4) * 4].chunks_exact(4) {
            let mut word = [0; 4];
            word.copy_from_slice(chunk);
            write(MACDATA, u32::from_le_bytes(word));
        }
        write(MACTR, TR_NEWTX);
        self.counters.tx_frames = self.counters.tx_frames.wrapping_add(1);
        result
    }
}
