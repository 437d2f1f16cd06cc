//! Support for running `proto-core` on a Cortex-M3, as QEMU's `lm3s6965evb` board.
//!
//! The firmware in this crate proves that the protocol core is what it claims to be:
//! `no_std`, allocation-free and small enough for a microcontroller. It has two
//! programs, both run under QEMU:
//!
//! - the `conformance` test (`tests/conformance.rs`) runs the protocol test vectors
//!   shared with the host tests, on the target, and exits with status 0 only if every
//!   one passes;
//! - the `room` binary joins the chat room over the board's UART0, which QEMU
//!   connects to the host server's TCP port.
//!
//! This library holds what both need: a polling UART driver implementing
//! `embedded-io` ([`uart`]), one console for human-readable output that goes either
//! through semihosting or through defmt ([`console`], [`say!`]), exit through
//! semihosting with handlers that turn a panic or a hard fault into a failing exit
//! status ([`exit`]), stack painting to measure stack depth ([`stack`]), and the
//! room session itself ([`room`]).
#![no_std]

pub mod console;
pub mod exit;
pub mod room;
pub mod stack;
pub mod uart;
