//! Binary clients chatting through the server.

use std::time::Duration;

use crate::util::{Client, Server, TextClient};

#[test]
fn three_clients_each_see_exactly_the_others_messages() {
    let server = Server::start(&[]);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::join(server.addr)).collect();
    // Wait until everyone has seen the later joiners, so no message races a join.
    clients[0]
        .proc
        .out
        .expect("join of the third", |l| l.contains(&clients[2].peer));
    clients[1]
        .proc
        .out
        .expect("join of the third", |l| l.contains(&clients[2].peer));
    for (i, c) in clients.iter_mut().enumerate() {
        c.say(&format!("message from client {i}"));
    }
    for (i, receiver) in clients.iter().enumerate() {
        let mut want: Vec<String> = clients
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, sender)| format!("[{}] message from client {j}", sender.peer))
            .collect();
        let mut got: Vec<String> = (0..want.len())
            .map(|_| {
                receiver
                    .proc
                    .out
                    .expect("a chat line", |l| l.starts_with('['))
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "client {i}");
        let late = receiver
            .proc
            .out
            .drain(std::time::Duration::from_millis(300));
        assert!(
            !late.iter().any(|l| l.starts_with('[')),
            "client {i} got more: {late:?}"
        );
    }
}

#[test]
fn leave_is_announced_to_the_others() {
    let server = Server::start(&[]);
    let mut a = Client::join(server.addr);
    let b = Client::join(server.addr);
    a.proc.out.expect("join of b", |l| l.contains(&b.peer));
    a.proc.send("exit");
    let status = a.proc.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit gave {status:?}");
    b.proc.out.expect("leave notice", |l| {
        l.starts_with("*** ") && l.contains(&a.peer)
    });
}

#[test]
fn text_client_and_binary_client_talk_both_ways() {
    let server = Server::start(&[]);
    let mut bin = Client::join(server.addr);
    let mut text = TextClient::connect(server.addr);
    bin.proc
        .out
        .expect("join of the text client", |l| l.contains(&text.peer()));
    text.write(b"hello from nc\n");
    bin.expect_chat(&text.peer(), "hello from nc");
    bin.say("hello from the console client");
    let want = format!("[{}] hello from the console client", bin.peer);
    text.expect(|l| l == want);
}

/// Where the machine has no IPv6 loopback this test can check nothing: it says so on
/// stderr ("skipped: ...") and passes.
#[test]
fn ipv6_loopback_works_or_skips_without_ipv6() {
    if let Err(e) = std::net::TcpListener::bind("[::1]:0") {
        eprintln!("skipped: no IPv6 loopback on this machine (binding [::1]:0: {e})");
        return;
    }
    let server = Server::start_on("[::1]:0", &[]);
    let mut a = Client::join(server.addr);
    let b = Client::join(server.addr);
    assert!(a.peer.starts_with("[::1]:"), "peer {}", a.peer);
    a.proc.out.expect("join of b", |l| l.contains(&b.peer));
    a.say("over six");
    b.expect_chat(&a.peer, "over six");
}

/// The server's log: a UTC timestamp and a level on every line; joins and leaves at
/// info; `RUST_LOG` filters it.
#[test]
fn the_log_has_a_utc_timestamp_and_a_level_on_every_line() {
    let server = Server::start(&[]);
    let mut t = TextClient::connect(server.addr);
    let peer = t.peer();
    t.expect(|l| l.starts_with("*** welcome"));
    drop(t);
    let left = server
        .proc
        .err
        .expect("the leave", |l| l.contains(&format!("{peer} left")));
    let joined = server
        .proc
        .err
        .all()
        .into_iter()
        .find(|l| l.contains(&format!("{peer} joined")))
        .expect("the join logged");
    for line in [&joined, &left] {
        let (stamp, rest) = line.split_once(' ').expect("a timestamp first");
        // 2026-11-30T14:13:41.045439Z
        assert!(
            stamp.len() > 20 && stamp.as_bytes()[10] == b'T' && stamp.ends_with('Z'),
            "{line}"
        );
        assert!(rest.trim_start().starts_with("INFO "), "{line}");
    }
    // RUST_LOG=warn keeps joins and leaves out: a client joins (info), then resets
    // its connection, which its thread logs after the join as a warning; once the
    // warning is there, the join would be too.
    let mut cmd = std::process::Command::new(crate::util::bin("host-server"));
    cmd.args(["--bind", "127.0.0.1:0"]).env("RUST_LOG", "warn");
    let quiet = crate::util::Proc::spawn(cmd);
    let line = quiet
        .out
        .expect("listening", |l| l.starts_with("listening on "));
    let addr = line["listening on ".len()..].trim().parse().unwrap();
    let mut t = TextClient::connect(addr);
    let peer = t.peer();
    t.expect(|l| l.starts_with("*** welcome"));
    socket2::SockRef::from(&t.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(t);
    let warning = quiet.err.expect("the reset logged", |l| {
        l.contains(&format!("{peer} left: connection failed"))
    });
    assert!(warning.contains(" WARN "), "{warning}");
    let logged = quiet.err.all();
    assert!(
        logged.iter().all(|l| !l.contains(" INFO ")),
        "info lines with RUST_LOG=warn: {logged:?}"
    );
}
