//! Who may connect: one address cannot take every slot (`--max-per-address`), and
//! `--allow` keeps out everyone outside the listed networks. On loopback, Linux lets
//! a client bind any 127.x.y.z, so 127.0.0.2 and 127.0.0.3 act as two hosts.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::{bin, BinClient, Got, Server, TextClient, WAIT};

const HOST_A: &str = "127.0.0.2";
const HOST_B: &str = "127.0.0.3";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Waits until `done` holds, at most [`WAIT`]; fails the test with `what` otherwise.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "not reached in time: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// The server's open files and threads once they stop changing: the refuser threads
/// and their sockets are gone, the room's clients are settled.
fn settled(server: &Server) -> (usize, usize) {
    let mut last = (server.open_files(), server.threads());
    let mut stable_since = Instant::now();
    let deadline = Instant::now() + WAIT;
    while stable_since.elapsed() < Duration::from_millis(300) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        let now = (server.open_files(), server.threads());
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
    }
    last
}

/// Waits until the server is back at `baseline` open files and threads.
fn back_to(server: &Server, baseline: (usize, usize)) {
    wait_for(
        &format!(
            "files and threads back to {baseline:?} (now {:?})",
            (server.open_files(), server.threads())
        ),
        || (server.open_files(), server.threads()) == baseline,
    );
}

/// A binary client from `src` is told `code` with a text containing `says`, and the
/// connection is closed.
fn binary_refused(server: &Server, src: &str, code: u8, says: &str) {
    let c = BinClient::connect_from(server.addr, ip(src));
    let got = c.next();
    assert!(
        matches!(&got, Got::Notice { code: Some(c), text } if *c == code && text.contains(says)),
        "{got:?}"
    );
    assert!(matches!(c.next(), Got::End(_)));
}

/// A text client from `src` is told, on a `*** ` line starting with `starts`, and
/// the connection is closed.
fn text_refused(server: &Server, src: &str, starts: &str) -> String {
    let mut c = TextClient::connect_from(server.addr, ip(src));
    c.write(b"hello?\n");
    let line = c.line();
    assert!(line.starts_with(&format!("*** {starts}")), "{line}");
    assert!(c.closed());
    line
}

#[test]
fn one_address_is_capped_and_other_addresses_still_join() {
    let server = Server::start(&["--max-per-address", "3", "--cap-loopback"]);
    let first = BinClient::join_from(server.addr, ip(HOST_A));
    let mut a: Vec<BinClient> = (0..2)
        .map(|_| BinClient::join_from(server.addr, ip(HOST_A)))
        .collect();
    first.heard_of(&a[1].peer());
    let baseline = settled(&server);

    // The fourth from 127.0.0.2 is refused, in binary and in text, again and again.
    for _ in 0..3 {
        binary_refused(
            &server,
            HOST_A,
            12,
            "too many connections from your address",
        );
        let line = text_refused(&server, HOST_A, "too many connections from your address");
        assert!(line.contains("127.0.0.2 already holds 3"), "{line}");
    }
    // The log says who and how many.
    server.proc.err.expect("logged refusal", |l| {
        l.contains("127.0.0.2 already holds 3 connections")
    });
    // Refusals cost nothing that outlives them.
    back_to(&server, baseline);

    // Another address still joins.
    let b = BinClient::join_from(server.addr, ip(HOST_B));
    first.heard_of(&b.peer());

    // One of the three leaves; then 127.0.0.2 may have a third again. The count is
    // given back when the leaver's thread ends, just after its leave is announced.
    let leaver = a.pop().unwrap();
    let left = leaver.peer();
    drop(leaver);
    first.expect(|g| matches!(g, Got::Notice { code: None, text } if text.contains(&left) && text.contains("left")));
    let deadline = Instant::now() + WAIT;
    let again = loop {
        let c = BinClient::connect_from(server.addr, ip(HOST_A));
        match c.next() {
            Got::Notice { code: None, text } if text.starts_with("welcome") => break c,
            Got::Notice { code: Some(12), .. } if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            other => panic!("a new client from 127.0.0.2 after a leave got {other:?}"),
        }
    };
    let again_peer = again.peer();

    // The one in the room since the start heard of the joins and the leave, and of
    // nobody refused: every notice it got names a client that was let in.
    let mut admitted: Vec<String> = a.iter().map(BinClient::peer).collect();
    admitted.extend([left, b.peer(), again_peer.clone()]);
    first.heard_of(&again_peer);
    let mut seen = vec![];
    while let Ok(got) = first.rx.recv_timeout(Duration::from_millis(200)) {
        seen.push(got);
    }
    for got in &seen {
        if let Got::Notice { text, .. } = got {
            assert!(admitted.iter().any(|p| text.contains(p)), "{text}");
        }
    }
}

#[test]
fn loopback_is_exempt_from_the_cap_by_default() {
    let server = Server::start(&["--max-per-address", "2"]);
    let clients: Vec<BinClient> = (0..4)
        .map(|_| BinClient::join_from(server.addr, ip(HOST_A)))
        .collect();
    assert_eq!(clients.len(), 4);
    let mut text = TextClient::connect_from(server.addr, ip(HOST_A));
    text.write(b"hi\n");
    assert!(text.line().starts_with("*** welcome"));
}

#[test]
fn only_the_allowed_networks_join() {
    let server = Server::start(&["--allow", "127.0.0.2/32"]);
    let baseline = settled(&server);
    for _ in 0..3 {
        binary_refused(&server, HOST_B, 9, "is not allowed");
        let line = text_refused(&server, HOST_B, "refused: your address 127.0.0.3");
        assert!(line.contains("not allowed"), "{line}");
    }
    // The allow list does not imply loopback's usual 127.0.0.1.
    text_refused(&server, "127.0.0.1", "refused: your address 127.0.0.1");
    server
        .proc
        .err
        .expect("logged refusal", |l| l.contains("not in the allow list"));
    back_to(&server, baseline);

    let a = BinClient::join_from(server.addr, ip(HOST_A));
    let mut text = TextClient::connect_from(server.addr, ip(HOST_A));
    text.write(b"hi\n");
    assert!(text.line().starts_with("*** welcome"));
    a.heard_of(&text.peer());
}

#[test]
fn ipv4_mapped_peers_count_and_are_allowed_as_their_ipv4_address() {
    // An IPv6 listener on an IPv4-mapped loopback address takes IPv4 clients, whose
    // addresses it sees as ::ffff:127.0.0.x, as a dual-stack [::]:9000 does.
    let server = Server::start_on(
        "[::ffff:127.0.0.1]:0",
        &[
            "--max-per-address",
            "1",
            "--cap-loopback",
            "--allow",
            "127.0.0.2/32",
        ],
    );
    let v4 = SocketAddr::from(([127, 0, 0, 1], server.addr.port()));
    let v4_server = Server { addr: v4, ..server };
    let _a = BinClient::join_from(v4, ip(HOST_A));
    binary_refused(
        &v4_server,
        HOST_A,
        12,
        "127.0.0.2 already holds 1 connection,",
    );
    text_refused(
        &v4_server,
        HOST_B,
        "refused: your address 127.0.0.3 is not allowed",
    );
}

#[test]
fn a_bad_allow_network_is_a_usage_error() {
    for bad in ["10.0.0.0/33", "lan", "192.168.1"] {
        let out = Command::new(bin("host-server"))
            .args(["--bind", "127.0.0.1:0", "--allow", bad])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--allow {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--allow"), "{err}");
    }
}
