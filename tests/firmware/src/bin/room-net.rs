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

use chatroom_firmware::exit::exit;
use chatroom_firmware::qemu_net::{self, Client};
use chatroom_firmware::room::{self, End, Stats};
use chatroom_firmware::{net_interrupts, say, stack};
use cortex_m_rt::entry;
use proto_core::FrameReader;

/// Size of the read buffer in front of the frame decoder, as in `room`.
const READ_BUF: usize = 256;
/// How the program names itself in its output.
const NAME: &str = "room-net";

net_interrupts!();

#[entry]
fn main() -> ! {
    // The whole session runs in a frame of its own, so its stack high-water mark
    // covers everything the firmware does.
    let (ok, used) = stack::measure(run);
    say!("{}: the session used at most {} bytes of stack", NAME, used);
    exit(ok)
}

/// Joins the room and chats; true if it ended cleanly.
fn run() -> bool {
    let Some(mut client) = qemu_net::connect(NAME) else {
        return false;
    };
    if let Err(e) = room::handshake(&mut client) {
        say!("{}: {}", NAME, e);
        return false;
    }
    // The server has spoken; a room may then be quiet for any length of time.
    client.set_read_timeout(None);
    // In static RAM, so the footprint shows the decoder's buffers.
    let Some(reader) =
        cortex_m::singleton!(: FrameReader<Client, READ_BUF> = FrameReader::new(client))
    else {
        say!("{}: reader created twice", NAME);
        return false;
    };
    let mut stats = Stats::default();
    let end = room::chat(reader, room::HELLO_TCP, &mut stats);
    let client = reader.get_mut();
    say!(
        "{}: {} frames; stack: next_frame used at most {} bytes, write_frame {} bytes",
        NAME,
        stats.frames,
        stats.max_read_stack,
        stats.max_write_stack
    );
    qemu_net::report(NAME, client);
    match end {
        Ok(End::SaidBye) => say!("{}: said bye", NAME),
        Ok(End::ServerLeft) => say!("{}: the server left", NAME),
        Err(e) => {
            say!("{}: {}", NAME, e);
            return false;
        }
    }
    // The bye frame must reach the server before QEMU ends.
    qemu_net::close(NAME, client)
}
