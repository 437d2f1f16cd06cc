//! The footprint baseline of `room-net`: the same network bring-up, TCP client,
//! Ethernet driver, semihosting and stack-measuring work, with the protocol written
//! out by hand as byte literals instead of proto-core. `size` of this binary
//! subtracted from `size` of `room-net` is what proto-core costs on top of the
//! TCP/IP stack; `size` of this binary minus `room-baseline` is what the stack
//! (smoltcp, the driver and the adapter) costs. It is a measuring stick, not a
//! client: it understands nothing of what it receives.
#![no_std]
#![no_main]

use chatroom_firmware::exit::exit;
use chatroom_firmware::qemu_net::{self, Client};
use chatroom_firmware::{net_interrupts, say, stack};
use cortex_m_rt::entry;
use embedded_io::{Read, Write};

/// Size of the read buffer, as in `room-net`.
const READ_BUF: usize = 256;
/// The protocol v1 preamble.
const PREAMBLE: [u8; 5] = [0, b'C', b'H', b'T', 1];
/// A chat frame carrying "hello over tcp from cortex-m".
const HELLO: &[u8] = b"\x01\x00\x1chello over tcp from cortex-m";
/// A bye frame.
const BYE: [u8; 3] = [6, 0, 0];
/// How the program names itself in its output.
const NAME: &str = "net-baseline";

net_interrupts!();

#[entry]
fn main() -> ! {
    let (ok, used) = stack::measure(run);
    say!("{}: the session used at most {} bytes of stack", NAME, used);
    exit(ok)
}

fn run() -> bool {
    let Some(client) = qemu_net::connect(NAME) else {
        return false;
    };
    // In static RAM, as `room-net` keeps it (inside its frame reader).
    let Some(client) = cortex_m::singleton!(: Client = client) else {
        say!("{}: client created twice", NAME);
        return false;
    };
    let Some(buf) = cortex_m::singleton!(: [u8; READ_BUF] = [0; READ_BUF]) else {
        say!("{}: buffer taken twice", NAME);
        return false;
    };
    if let Err(e) = client.write_all(&PREAMBLE) {
        say!("{}: {}", NAME, e);
        return false;
    }
    client.set_read_timeout(None);
    let _ = client.write_all(HELLO);
    loop {
        let n = match client.read(buf) {
            Ok(0) => {
                say!("{}: the server left", NAME);
                return false;
            }
            Ok(n) => n,
            Err(e) => {
                say!("{}: {}", NAME, e);
                return false;
            }
        };
        say!("[{}] {} bytes", NAME, n);
        if buf[..n].windows(12).any(|w| w == b"bye firmware") {
            let _ = client.write_all(&BYE);
            qemu_net::report(NAME, client);
            return qemu_net::close(NAME, client);
        }
    }
}
