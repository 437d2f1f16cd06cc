//! Faults from the network: after each, the server still relays between fresh clients
//! and its count of open files returns to where it was.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::sockets::wait_until_read;
use crate::util::{BinClient, Got, Server, TextClient, WAIT};

/// What the server holds when idle: open files and threads.
type Held = (usize, usize);

fn held(server: &Server) -> Held {
    (server.open_files(), server.threads())
}

/// How long a server may take to work through a fault's connections. A burst of 2,000
/// connections ending at once costs it 4,000 thread exits, and glibc frees thread stacks
/// under one process-wide lock: 0.3-0.5 s on an idle 2-core machine, 1-4 s beside two
/// CPU-bound processes, and over 10 s with the other tests running too. Relaying is
/// checked once that is done.
const RECOVERY: Duration = Duration::from_secs(60);

/// Waits until the server holds no more than `baseline` again, failing after `limit`.
fn settles_to(server: &Server, baseline: Held, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = held(server);
        if now.0 <= baseline.0 && now.1 <= baseline.1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "(files, threads) {now:?}, {baseline:?} before"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Two fresh clients can still talk, and the server lets go of them after.
fn still_relays(server: &Server, baseline: Held) {
    {
        let mut a = BinClient::connect(server.addr);
        let b = BinClient::connect(server.addr);
        let b_peer = b.peer();
        a.heard_of(&b_peer);
        a.say("still relaying");
        b.expect(|g| matches!(g, Got::Chat { text, .. } if text == "still relaying"));
    }
    settles_to(server, baseline, WAIT);
}

/// Runs `fault` against a fresh server, then checks it still relays and leaks nothing.
fn survives(fault: impl FnOnce(SocketAddr)) {
    // A deep listen backlog, so bursts of connections (2,000 idle ones) are queued at
    // once instead of waiting out SYN retries: the faults, not the backlog, are tested.
    let server = Server::start(&["--sniff-timeout-ms", "200", "--backlog", "4096"]);
    // The first clients make the server set up what it keeps for good (its notice
    // thread, say); the baseline is what stays after them.
    still_relays(&server, (usize::MAX, usize::MAX));
    thread::sleep(Duration::from_millis(300));
    let baseline = held(&server);
    fault(server.addr);
    let started = Instant::now();
    settles_to(&server, baseline, RECOVERY);
    eprintln!("the server let go of the fault in {:?}", started.elapsed());
    still_relays(&server, baseline);
}

fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

#[test]
fn client_killed_in_the_middle_of_a_frame() {
    survives(|addr| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&proto_core::PREAMBLE).unwrap();
        s.write_all(&[proto_core::FrameKind::Chat as u8, 0x03, 0x00, b'h', b'a'])
            .unwrap();
        drop(s);
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&proto_core::PREAMBLE).unwrap();
        s.write_all(&[proto_core::FrameKind::Chat as u8, 0x00])
            .unwrap();
        reset(s);
    });
}

#[test]
fn connection_reset_mid_line_drops_the_unterminated_line() {
    let server = Server::start(&[]);
    let mut listener = TextClient::connect(server.addr);
    let mut a = TextClient::connect(server.addr);
    let a_peer = a.peer();
    listener.expect(|l| l.contains(&a_peer));
    a.write(b"complete line\nunterminated and reset");
    // The server has read the unterminated part before the reset, so it is dropped by
    // the server, not lost in the kernel.
    wait_until_read(&a.stream, WAIT);
    // Dropping the whole client closes both of its handles on the socket.
    socket2::SockRef::from(&a.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(a);
    assert_eq!(
        listener.expect(|l| l.starts_with('[')),
        format!("[{a_peer}] complete line")
    );
    let next = listener.line();
    assert!(
        next.starts_with("*** ") && next.contains(&a_peer),
        "after the reset: {next}"
    );
}

#[test]
fn random_bytes_in_both_modes() {
    survives(|addr| {
        // A fixed pseudo-random stream (xorshift), so a failure can be replayed.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut text = TcpStream::connect(addr).unwrap();
        let _ = text.write_all(&bytes);
        let mut binary = TcpStream::connect(addr).unwrap();
        binary.write_all(&proto_core::PREAMBLE).unwrap();
        let _ = binary.write_all(&bytes);
        thread::sleep(Duration::from_millis(200));
    });
}

#[test]
fn a_hundred_kilobyte_line() {
    survives(|addr| {
        let mut t = TextClient::connect(addr);
        let mut line = vec![b'x'; 100 * 1024];
        line.push(b'\n');
        t.write(&line);
        t.expect(|l| l.starts_with("*** ") && l.contains("1024"));
    });
}

#[test]
fn two_thousand_idle_connections() {
    survives(|addr| {
        let idle: Vec<TcpStream> = (0..2000)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        thread::sleep(Duration::from_millis(500));
        drop(idle);
    });
}

#[test]
fn five_hundred_quick_connect_close_cycles() {
    survives(|addr| {
        for i in 0..500 {
            let s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                reset(s);
            }
        }
    });
}
