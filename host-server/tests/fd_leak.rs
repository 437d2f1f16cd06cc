//! File descriptors never leak: after clients come and go, rudely or not, the
//! server's open-file count returns to where it was. A test binary of its own, its
//! tests one at a time, so no other test opens files in this process meanwhile.

#[path = "server/util.rs"]
#[allow(dead_code)]
mod util;

use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use util::{config, start, Bin, Text};

/// Held by each test, so the other opens no files while it counts them.
static ALONE: Mutex<()> = Mutex::new(());

fn wait_for(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        thread::sleep(Duration::from_millis(10));
    }
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

#[test]
fn file_descriptors_do_not_leak() {
    let _alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
    let server = start(config());
    let mut anchor = server.binary();
    anchor.sync();
    wait_for(|| server.control.peers().len() == 1);
    let before = open_files();
    for round in 0..3 {
        let mut clients: Vec<Bin> = (0..20).map(|_| server.binary()).collect();
        clients[0].chat("hi");
        if round == 1 {
            // Some leave rudely.
            for c in clients.iter().take(10) {
                socket2::SockRef::from(&c.stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
        }
        drop(clients);
        let mut t = Text::connect(server.addr);
        t.send(b"GET / HTTP/1.0\r\n\r\n");
        t.until_closed();
    }
    wait_for(|| server.control.peers().len() == 1);
    // Closing happens on the connection threads, so give them a moment.
    wait_for(|| open_files() <= before);
}

/// Clients that stop reading during a flood fall behind (the pacer counts them, the
/// writer pool owes them bytes); when they leave, nothing keeps their sockets open.
#[test]
fn clients_that_leave_behind_after_a_flood_leave_no_file_open() {
    let _alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
    let server = start(config());
    let mut flooder = server.binary();
    wait_for(|| server.control.peers().len() == 1);
    let before = open_files();
    let stalled: Vec<std::net::TcpStream> = (0..5)
        .map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            socket.connect(&server.addr.into()).unwrap();
            socket.into()
        })
        .collect();
    wait_for(|| server.control.peers().len() == 6);
    // 300 KB: over the pace mark (64 KiB) for each stalled client, under the limit
    // (1 MiB) that would drop them.
    let line = "f".repeat(1000);
    for _ in 0..300 {
        flooder.chat(&line);
    }
    flooder.sync();
    drop(stalled);
    wait_for(|| server.control.peers().len() == 1);
    wait_for(|| open_files() <= before);
}
