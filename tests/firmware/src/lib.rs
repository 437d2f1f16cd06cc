//! Support for running `proto-core` on a Cortex-M3, as QEMU's `lm3s6965evb` board.
//!
//! The firmware in this crate proves that the protocol core is what it claims to be:
//! `no_std`, allocation-free and small enough for a microcontroller. Its programs,
//! all run under QEMU:
//!
//! - the `conformance` test (`src/bin/conformance/`) runs the protocol test vectors
//!   shared with the host tests, on the target, and exits with status 0 only if every
//!   one passes;
//! - the `room` binary joins the chat room over the board's UART0, which QEMU
//!   connects to the host server's TCP port;
//! - the `room-net` binary joins the chat room as a TCP/IP host of its own, through
//!   smoltcp on the board's Ethernet controller.
//!
//! This library holds what they need: a polling UART driver implementing
//! `embedded-io` ([`uart`]), a polled Ethernet driver implementing smoltcp's `Device`
//! ([`eth`]), a SysTick millisecond clock ([`clock`]), one smoltcp TCP socket as a
//! blocking `embedded-io` stream ([`net`]) and the `room-net` programs' network
//! bring-up under QEMU ([`qemu_net`]), one console for human-readable output
//! that goes either through semihosting or through defmt ([`console`], [`say!`]),
//! exit through semihosting with handlers that turn a panic or a hard fault into a
//! failing exit status ([`exit`]), stack painting to measure stack depth ([`stack`]),
//! and the room session itself, over any transport ([`room`]).
#![no_std]

pub mod clock;
pub mod console;
pub mod eth;
pub mod exit;
pub mod net;
pub mod qemu_net;
pub mod room;
pub mod stack;
pub mod uart;
