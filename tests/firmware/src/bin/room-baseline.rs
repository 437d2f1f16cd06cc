//! The footprint baseline of `room`: the same UART, semihosting and stack-measuring
//! work, with the protocol written out by hand as byte literals instead of
//! proto-core. `size` of this binary subtracted from `size` of `room` is what
//! proto-core costs. It is a measuring stick, not a client: it understands nothing
//! of what it receives.
#![no_std]
#![no_main]

use chatroom_firmware::exit::exit;
use chatroom_firmware::uart::Uart0;
use chatroom_firmware::{say, stack};
use cortex_m_rt::entry;
use embedded_io::{Read, Write};

/// Size of the UART read buffer, as in `room`.
const READ_BUF: usize = 256;
/// The protocol v1 preamble.
const PREAMBLE: [u8; 5] = [0, b'C', b'H', b'T', 1];
/// A chat frame carrying "hello from cortex-m".
const HELLO: &[u8] = b"\x01\x00\x13hello from cortex-m";
/// A bye frame.
const BYE: [u8; 3] = [6, 0, 0];

#[entry]
fn main() -> ! {
    let Some(mut uart) = Uart0::take() else {
        say!("baseline: UART0 already taken");
        exit(false)
    };
    let Some(buf) = cortex_m::singleton!(: [u8; READ_BUF] = [0; READ_BUF]) else {
        say!("baseline: buffer taken twice");
        exit(false)
    };
    let _ = uart.write_all(&PREAMBLE);
    let _ = uart.write_all(HELLO);
    let mut deepest = 0;
    loop {
        let (read, used) = stack::measure(|| uart.read(buf));
        deepest = deepest.max(used);
        let Ok(n) = read;
        say!("[baseline] {} bytes", n);
        if buf[..n].windows(12).any(|w| w == b"bye firmware") {
            let _ = uart.write_all(&BYE);
            say!("baseline: stack {} bytes", deepest);
            exit(true);
        }
    }
}
