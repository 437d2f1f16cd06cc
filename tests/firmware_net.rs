//! The firmware client in the room over TCP/IP: proto-core and smoltcp compiled for a
//! Cortex-M3, run by QEMU (`lm3s6965evb`) whose Ethernet controller is on QEMU's
//! user-mode network, chats with a plain text client through a real `host-server`.
//!
//! The firmware (`room-net`) is 10.0.2.15 and dials 10.0.2.100:7000; QEMU's
//! `guestfwd` connects that address to the test's server on loopback, and
//! `restrict=on` keeps the guest from reaching anything else. How the firmware and
//! the server are built and QEMU is run: see [`firmware_util`](crate::firmware_util).

use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::firmware_util::{build_firmware, build_host_server, require_tools, Qemu, TextClient};
use crate::util::{Server, WAIT};

/// The server's `--dead-peer-timeout`: it pings a binary client silent for half of
/// it, and drops one that has not answered by the end of it.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// The address and port the firmware dials.
const SERVER_IN_GUEST: &str = "10.0.2.100:7000";

/// QEMU's arguments for the firmware's network: user-mode networking, the guest
/// restricted to `forward`'s target if there is one.
fn network(forward_to: Option<std::net::SocketAddr>) -> Vec<String> {
    let mut nic = String::from("user,model=stellaris,restrict=on");
    if let Some(addr) = forward_to {
        nic.push_str(&format!(",guestfwd=tcp:{SERVER_IN_GUEST}-tcp:{addr}"));
    }
    vec!["-serial".into(), "none".into(), "-nic".into(), nic]
}

/// A message of exactly 1024 bytes (the protocol's limit), printable and varied so
/// that a lost, doubled or reordered piece shows.
fn longest_line() -> String {
    (0..1024u32)
        .map(|i| char::from(b'!' + (i % 94) as u8))
        .collect()
}

#[test]
fn firmware_joins_the_room_over_tcp_and_chats_with_a_text_client() {
    require_tools();
    let firmware = build_firmware("room-net");
    // A binary client silent for 1 s gets a ping, and is dropped if it has not
    // answered 1 s later.
    let server = Server::start_binary(
        &build_host_server(),
        "127.0.0.1:0",
        &["--dead-peer-timeout", &PEER_TIMEOUT.as_secs().to_string()],
    );
    let mut text = TextClient::connect(server.addr);
    text.expect("the text client's welcome", |l| l.starts_with("*** "));

    // The server listens already: QEMU connects to it as it starts.
    let mut qemu = Qemu::start(&firmware, network(Some(server.addr)));
    let out = &qemu.0.out;
    out.expect("`room-net: connected ...`", |l| {
        l.starts_with("room-net: connected 10.0.2.15:") && l.contains(SERVER_IN_GUEST)
    });
    let joined = out.expect("`room: joined as ADDR`", |l| {
        l.starts_with("room: joined as ")
    });
    let firmware_addr = joined["room: joined as ".len()..].to_owned();
    // The server announces the firmware under the address it told the firmware,
    // and relays the greeting with that peer header.
    text.expect_eq(&format!("*** {firmware_addr} joined"));
    text.expect_eq(&format!("[{firmware_addr}] hello over tcp from cortex-m"));

    // Silence long enough for the server to ping the firmware twice: a firmware that
    // did not answer would be dropped, and would not see what follows.
    std::thread::sleep(PEER_TIMEOUT + PEER_TIMEOUT / 4);

    let me = text.local_addr();
    text.send("hello from the host");
    out.expect_eq(&format!("[{me}] hello from the host"));

    // Three lines in one write, so the server's frames follow each other closely:
    // segments carry the end of one frame and the start of the next. The longest
    // frame (1,055 bytes) exceeds the firmware's 1,024-byte receive window, so it
    // always spans two segments or more.
    let long = longest_line();
    let control = "ctl:\x01\x07\t\x1b[31mred\x1b[0m \u{202e}evil \x7f end";
    text.send_bytes(format!("{long}\n{control}\nbye firmware\n").as_bytes());
    out.expect_eq(&format!("[{me}] {long}"));
    // The firmware shows control characters as escapes (the tab stays a tab).
    out.expect_eq(&format!(
        "[{me}] ctl:\\x01\\x07\t\\x1b[31mred\\x1b[0m \\u{{202e}}evil \\x7f end"
    ));
    out.expect_eq(&format!("[{me}] bye firmware"));
    // QEMU's link loses nothing: a dropped frame means the driver misread the FIFO
    // (TCP's retransmissions would hide that from the chat itself).
    let ethernet = out.expect("`room-net: ethernet: ...`", |l| {
        l.starts_with("room-net: ethernet: ")
    });
    assert!(
        ethernet.contains(" 0 dropped)"),
        "the driver dropped frames: {ethernet}"
    );
    out.expect_eq("room-net: said bye");
    out.expect_eq("room-net: connection closed");
    let status = qemu.wait_exit();
    assert!(
        status.success(),
        "the firmware exited with {status}; stdout {:#?} stderr {:#?}",
        qemu.0.out.all(),
        qemu.0.err.all()
    );
    // Shown with `--nocapture`: the firmware's stack and Ethernet figures.
    println!("firmware output: {:#?}", qemu.0.out.all());
    // The server got the firmware's bye frame and told the room.
    text.expect_eq(&format!("*** {firmware_addr} left"));
}

#[test]
fn firmware_reports_a_missing_server_and_fails() {
    require_tools();
    let firmware = build_firmware("room-net");
    // No guestfwd: nothing on the guest's network answers for 10.0.2.100.
    let mut qemu = Qemu::start(&firmware, network(None));
    let status = qemu.wait_exit();
    let out = qemu.0.out.all_when_closed(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(1),
        "the firmware exited with {status}; stdout {out:#?}"
    );
    assert!(
        out.iter().any(|l| l.starts_with(&format!(
            "room-net: cannot connect to {SERVER_IN_GUEST}: no ARP reply within"
        ))),
        "no readable reason in {out:#?}"
    );
}

#[test]
fn firmware_rejects_a_server_that_does_not_speak_the_protocol() {
    require_tools();
    let firmware = build_firmware("room-net");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    // QEMU connects as it starts; the "server" answers like a web server would.
    let mut qemu = Qemu::start(&firmware, network(Some(addr)));
    let mut conn = accept_within(&listener, WAIT);
    conn.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        .expect("write to QEMU");
    let status = qemu.wait_exit();
    let out = qemu.0.out.all_when_closed(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(1),
        "the firmware exited with {status}; stdout {out:#?}"
    );
    assert!(
        out.iter().any(|l| l
            == "room-net: bad preamble from the server: peer does not speak the chat protocol"),
        "no readable reason in {out:#?}"
    );
}

/// Accepts one connection, failing the test if none comes within `limit`.
fn accept_within(listener: &TcpListener, limit: Duration) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).expect("blocking stream");
                return conn;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("no connection from QEMU within {limit:?}: {e}"),
        }
    }
}
