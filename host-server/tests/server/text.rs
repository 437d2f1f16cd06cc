//! Text clients: lines in, `[PEER] TEXT` and `*** ...` lines out, sharing the room
//! with binary clients.

use std::thread;
use std::time::Duration;

use proto_core::NoticeKind;

use crate::util::{config, is_notice, start, Got, Text};

#[test]
fn text_and_binary_clients_see_each_other() {
    let server = start(config());
    let mut t = server.text();
    let mut b = server.binary();
    assert_eq!(t.line(), format!("*** {} joined\n", b.addr));
    t.send(b"from text\n");
    b.chat("from binary \x1b[2J");
    loop {
        match b.got() {
            Got::Broadcast { peer, text, .. } => {
                assert_eq!((peer, text.as_str()), (t.addr, "from text"));
                break;
            }
            Got::Ack(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The escape is sanitised for the text client.
    assert_eq!(t.line(), format!("[{}] from binary \\x1b[2J\n", b.addr));
}

#[test]
fn messages_are_framed_per_line_not_per_read() {
    let server = start(config());
    let mut t = server.text();
    let mut b = server.binary();
    t.line();
    t.send(b"one\r\ntwo\n");
    for piece in [&b"thr"[..], b"ee ", b"pieces", b"\n"] {
        t.send(piece);
        thread::sleep(Duration::from_millis(30));
    }
    let texts: Vec<String> = std::iter::from_fn(|| match b.got() {
        Got::Broadcast { text, .. } => Some(text),
        other => panic!("unexpected {other:?}"),
    })
    .take(3)
    .collect();
    assert_eq!(texts, ["one", "two", "three pieces"]);
}

#[test]
fn an_over_long_line_gets_an_error_and_the_connection_stays_usable() {
    let server = start(config());
    let mut t = server.text();
    let mut b = server.binary();
    t.line();
    let mut long = vec![b'x'; 5000];
    long.extend(b"\nstill here\n");
    t.send(&long);
    let error = t.line();
    assert!(
        error.starts_with("*** message too long") || error.contains("too long"),
        "{error}"
    );
    match b.got() {
        Got::Broadcast { text, .. } => assert_eq!(text, "still here"),
        other => panic!("unexpected {other:?}"),
    }
    // Exactly at the limit is fine.
    let max = "y".repeat(proto_core::MAX_MESSAGE);
    t.send(format!("{max}\n").as_bytes());
    match b.got() {
        Got::Broadcast { text, .. } => assert_eq!(text, max),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn invalid_utf8_gets_an_error() {
    let server = start(config());
    let mut t = server.text();
    // Not UTF-8, and not Telnet commands either (those start with ff).
    t.send(b"\xfe\xc3\x28\n");
    assert!(t.line().contains("UTF-8"));
}

#[test]
fn an_http_request_is_refused_and_nobody_hears_of_it() {
    let server = start(config());
    let mut b = server.binary();
    let mut web = Text::connect(server.addr);
    web.send(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let lines = web.until_closed();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("*** refused"), "{lines:?}");
    let got = b.sync();
    assert!(
        got.is_empty(),
        "the room heard of the refused client: {got:?}"
    );
}

#[test]
fn an_unterminated_last_line_is_delivered_on_a_clean_close() {
    let server = start(config());
    let mut t = server.text();
    let mut b = server.binary();
    t.line();
    t.send(b"no newline");
    t.stream.shutdown(std::net::Shutdown::Write).unwrap();
    match b.got() {
        Got::Broadcast { text, peer, .. } => {
            assert_eq!((text.as_str(), peer), ("no newline", t.addr))
        }
        other => panic!("unexpected {other:?}"),
    }
    let left = b.got();
    assert!(is_notice(&left, NoticeKind::Leave, t.addr), "{left:?}");
}

#[test]
fn an_unterminated_last_line_is_dropped_on_a_reset() {
    let server = start(config());
    let mut t = server.text();
    let mut b = server.binary();
    t.line();
    t.send(b"half a line");
    thread::sleep(Duration::from_millis(100));
    let addr = t.addr;
    socket2::SockRef::from(&t.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(t);
    let left = b.got();
    assert!(is_notice(&left, NoticeKind::Leave, addr), "{left:?}");
}

#[test]
fn ipv4_clients_of_a_dual_stack_listener_show_as_ipv4() {
    let mut cfg = config();
    cfg.bind = "[::]:0".parse().unwrap();
    if host_server::bind(&cfg).is_err() {
        eprintln!("no IPv6 on this machine; skipped");
        return;
    }
    let server = start(cfg);
    let port = server.addr.port();
    let mut t = Text::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    let welcome = t.line();
    assert!(
        welcome.contains(&format!("you are 127.0.0.1:{}", t.addr.port())),
        "{welcome}"
    );
    drop(server);
}

#[test]
fn an_http_request_split_across_reads_is_still_refused_before_joining() {
    let server = start(config());
    let mut b = server.binary();
    let mut web = Text::connect(server.addr);
    web.send(b"GE");
    thread::sleep(Duration::from_millis(20));
    web.send(b"T /index.html HTTP/1.1\r\n\r\n");
    let lines = web.until_closed();
    assert!(
        matches!(&lines[..], [l] if l.starts_with("*** refused")),
        "{lines:?}"
    );
    assert_eq!(b.sync(), []);
}
