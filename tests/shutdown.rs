//! Ending the server: the console's `close` and signals.

use std::time::{Duration, Instant};

use crate::util::{Client, Server, TextClient};

#[test]
fn close_drops_every_client_and_they_exit_non_zero() {
    let mut server = Server::start(&[]);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::join(server.addr)).collect();
    let mut text = TextClient::connect(server.addr);
    clients[0]
        .proc
        .out
        .expect("join of the text client", |l| l.contains(&text.peer()));
    server.proc.send("close");
    for c in &mut clients {
        let status = c.proc.wait_exit(Duration::from_secs(3));
        assert!(!status.success(), "client exited with {status:?}");
        c.proc.err.drain(Duration::from_millis(300));
        assert!(!c.proc.err.all().is_empty(), "client printed no error");
    }
    assert!(text.closed());
    assert_eq!(
        server.proc.wait_exit(Duration::from_secs(3)).code(),
        Some(0)
    );
}

#[test]
fn sigint_sends_the_shutdown_notice_then_closes() {
    for sig in ["INT", "TERM"] {
        let mut server = Server::start(&[]);
        let mut a = Client::join(server.addr);
        let mut text = TextClient::connect(server.addr);
        a.proc
            .out
            .expect("join of the text client", |l| l.contains(&text.peer()));
        server.proc.signal(sig);
        a.proc.out.expect("shutdown notice", |l| {
            l.starts_with("*** ") && l.contains("shutting down")
        });
        assert!(!a.proc.wait_exit(Duration::from_secs(3)).success());
        text.expect(|l| l.starts_with("*** ") && l.contains("shutting down"));
        assert!(text.closed());
        assert_eq!(
            server.proc.wait_exit(Duration::from_secs(3)).code(),
            Some(0),
            "SIG{sig}"
        );
    }
}

#[test]
fn sigint_reaches_a_connection_still_being_sniffed() {
    // A silent nc is not in the room until its sniff timeout ends (1 s here).
    let mut server = Server::start(&["--sniff-timeout-ms", "1000"]);
    let before = server.open_sockets();
    let mut text = TextClient::connect(server.addr);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.open_sockets() <= before {
        assert!(Instant::now() < deadline, "the server never accepted");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.proc.signal("INT");
    let line = text.line();
    assert!(
        line.starts_with("*** ") && line.contains("shutting down"),
        "{line}"
    );
    assert!(text.closed());
    assert_eq!(
        server.proc.wait_exit(Duration::from_secs(5)).code(),
        Some(0)
    );
}

#[test]
fn end_of_console_input_leaves_the_server_running() {
    let mut server = Server::start(&[]);
    server.proc.close_stdin();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.proc.child.try_wait().unwrap().is_none(),
        "server exited on EOF"
    );
    let mut a = Client::join(server.addr);
    let b = Client::join(server.addr);
    a.proc.out.expect("join of b", |l| l.contains(&b.peer));
    a.say("still here");
    b.expect_chat(&a.peer, "still here");
}
