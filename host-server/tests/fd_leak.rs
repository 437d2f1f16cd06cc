//! File descriptors never leak: after clients come and go, rudely or not, the
//! server's open-file count returns to where it was. A test binary of its own, so
//! no other test opens files in this process meanwhile.

#[path = "server/util.rs"]
#[allow(dead_code)]
mod util;

use std::thread;
use std::time::{Duration, Instant};

use util::{config, start, Bin, Text};

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
