//! Joins the chat room over UART0 and stays until someone writes "bye firmware".
//!
//! Run it under QEMU with UART0 connected to a listening chat server:
//! `qemu-system-arm ... -serial tcp:127.0.0.1:PORT -kernel room`. It prints what the
//! room says (`[PEER] TEXT`, `*** TEXT`) and exits with status 0 when it has said bye
//! or the server has left, 1 on any error.
#![no_std]
#![no_main]

use chatroom_firmware::exit::exit;
use chatroom_firmware::room::{self, End, Stats};
use chatroom_firmware::say;
use chatroom_firmware::uart::Uart0;
use cortex_m_rt::entry;
use proto_core::FrameReader;

/// Size of the UART read buffer in front of the frame decoder.
const READ_BUF: usize = 256;

#[entry]
fn main() -> ! {
    let Some(mut uart) = Uart0::take() else {
        say!("room: UART0 already taken");
        exit(false)
    };
    if let Err(e) = room::handshake(&mut uart) {
        say!("room: {}", e);
        exit(false)
    }
    // In static RAM, so the footprint shows the decoder's buffers.
    let reader = cortex_m::singleton!(: FrameReader<Uart0, READ_BUF> = FrameReader::new(uart));
    let Some(reader) = reader else {
        say!("room: reader created twice");
        exit(false)
    };
    let mut stats = Stats::default();
    let end = room::chat(reader, room::HELLO, &mut stats);
    say!(
        "room: {} frames; stack: next_frame used at most {} bytes, write_frame {} bytes",
        stats.frames,
        stats.max_read_stack,
        stats.max_write_stack
    );
    match end {
        Ok(End::SaidBye) => say!("room: said bye"),
        Ok(End::ServerLeft) => say!("room: the server left"),
        Err(e) => {
            say!("room: {}", e);
            exit(false)
        }
    }
    exit(true)
}
