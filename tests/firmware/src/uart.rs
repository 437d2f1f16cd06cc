//! A polling driver for UART0 of the LM3S6965 (a PL011-style UART), as `embedded-io`
//! `Read` and `Write`, so proto-core's blocking helpers run on it unchanged.
//!
//! QEMU connects this UART to whatever `-serial` names, for example a TCP connection
//! to the chat server (`-serial tcp:127.0.0.1:PORT`). QEMU's model needs no baud
//! rate or enable setup; a real board would configure the UART first.

use core::convert::Infallible;
use core::ptr;

use embedded_io::{ErrorType, Read, Write};

/// Base address of UART0.
const UART0_BASE: usize = 0x4000_C000;
/// Data register: reading pops the receive FIFO, writing pushes the transmit FIFO.
const DR: usize = 0x00;
/// Flag register.
const FR: usize = 0x18;
/// Flag: the receive FIFO is empty.
const FR_RXFE: u32 = 1 << 4;
/// Flag: the transmit FIFO is full.
const FR_TXFF: u32 = 1 << 5;
/// Flag: the UART is busy sending.
const FR_BUSY: u32 = 1 << 3;

/// UART0, owned: there is one per program, taken with [`Uart0::take`].
#[derive(Debug)]
pub struct Uart0 {
    _private: (),
}

impl Uart0 {
    /// Takes the UART, once; later calls return `None`, so two drivers never
    /// interleave their bytes.
    pub fn take() -> Option<Self> {
        static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        // Single core and no interrupt touches TAKEN, so a plain swap is enough.
        let was = TAKEN.swap(true, core::sync::atomic::Ordering::Relaxed);
        (!was).then_some(Self { _private: () })
    }

    fn flags(&self) -> u32 {
        // SAFETY: FR is a read-only, always-readable register of UART0, which exists on
        // this board at a fixed, aligned address; reading it has no side effect.
        unsafe { ptr::read_volatile((UART0_BASE + FR) as *const u32) }
    }

    /// Takes one received byte, if the receive FIFO holds one.
    fn try_read_byte(&mut self) -> Option<u8> {
        if self.flags() & FR_RXFE != 0 {
            return None;
        }
        // SAFETY: DR is UART0's data register at a fixed, aligned address; `self` is
        // the only owner of UART0, so no one else pops the FIFO between the flag check
        // and this read. The low 8 bits are the data, the rest are error flags.
        Some(unsafe { ptr::read_volatile((UART0_BASE + DR) as *const u32) } as u8)
    }

    fn write_byte(&mut self, byte: u8) {
        while self.flags() & FR_TXFF != 0 {}
        // SAFETY: DR is UART0's data register at a fixed, aligned address; the transmit
        // FIFO has room (TXFF clear) and `self` is its only writer.
        unsafe { ptr::write_volatile((UART0_BASE + DR) as *mut u32, u32::from(byte)) }
    }
}

impl ErrorType for Uart0 {
    type Error = Infallible;
}

impl Read for Uart0 {
    /// Blocks until at least one byte has arrived, then returns what the FIFO holds,
    /// up to `buf.len()`. A UART has no end of stream, so it never returns 0 for a
    /// non-empty `buf`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        let Some(first) = buf.first_mut() else {
            return Ok(0);
        };
        *first = loop {
            if let Some(byte) = self.try_read_byte() {
                break byte;
            }
        };
        let mut n = 1;
        while let Some(slot) = buf.get_mut(n) {
            let Some(byte) = self.try_read_byte() else {
                break;
            };
            *slot = byte;
            n += 1;
        }
        Ok(n)
    }
}

impl Write for Uart0 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        for &byte in buf {
            self.write_byte(byte);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Infallible> {
        while self.flags() & FR_BUSY != 0 {}
        Ok(())
    }
}
