//! Plain text clients, as `nc` or `telnet` would connect.

use crate::util::{Server, TextClient};

fn pair() -> (Server, TextClient, TextClient) {
    let server = Server::start(&[]);
    let mut a = TextClient::connect(server.addr);
    let b = TextClient::connect(server.addr);
    let b_peer = b.peer();
    a.expect(|l| l.starts_with("*** ") && l.contains(&b_peer));
    (server, a, b)
}

#[test]
fn lines_are_framed_per_line_not_per_read() {
    let (_server, mut a, mut b) = pair();
    let a_peer = a.peer();
    a.write(b"one\ntwo\n");
    assert_eq!(b.expect(|l| l.starts_with('[')), format!("[{a_peer}] one"));
    assert_eq!(b.line(), format!("[{a_peer}] two"));
    for piece in [&b"spl"[..], b"it li", b"ne\r", b"\n"] {
        a.write(piece);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(b.line(), format!("[{a_peer}] split line"));
}

#[test]
fn control_characters_are_escaped_and_no_header_can_be_forged() {
    let (_server, mut a, mut b) = pair();
    let a_peer = a.peer();
    a.write(b"\x1b[31mred\x1b[0m \xe2\x80\xae evil\n");
    assert_eq!(
        b.expect(|l| l.starts_with('[')),
        format!("[{a_peer}] \\x1b[31mred\\x1b[0m \\u{{202e}} evil")
    );
}

#[test]
fn over_long_line_gets_an_error_and_the_connection_stays_open() {
    let (_server, mut a, mut b) = pair();
    let a_peer = a.peer();
    let mut long = vec![b'x'; 100_000];
    long.push(b'\n');
    a.write(&long);
    a.expect(|l| l.starts_with("*** ") && l.contains("1024"));
    a.write(&[b'y'; 1024]);
    a.write(b"\r\n");
    assert_eq!(
        b.expect(|l| l.starts_with('[')),
        format!("[{a_peer}] {}", "y".repeat(1024))
    );
}

#[test]
fn invalid_utf8_gets_an_error_notice() {
    let (_server, mut a, mut b) = pair();
    let a_peer = a.peer();
    // Not UTF-8, and not Telnet commands either (those start with ff).
    a.write(b"\xfe\xc3\x28\nafter\n");
    a.expect(|l| l.starts_with("*** ") && l.to_lowercase().contains("utf-8"));
    assert_eq!(
        b.expect(|l| l.starts_with('[')),
        format!("[{a_peer}] after")
    );
}

#[test]
fn unterminated_last_line_is_delivered_on_clean_close() {
    let (_server, a, mut b) = pair();
    let a_peer = a.peer();
    let mut a = a;
    a.write(b"no newline at the end");
    a.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(
        b.expect(|l| l.starts_with('[')),
        format!("[{a_peer}] no newline at the end")
    );
}

#[test]
fn http_request_is_refused_and_closed() {
    let server = Server::start(&[]);
    let mut web = TextClient::connect(server.addr);
    web.write(b"POST /chat HTTP/1.1\r\nHost: example.com\r\n\r\nhi\n");
    assert!(web.closed(), "server kept the HTTP connection open");
    let mut a = TextClient::connect(server.addr);
    let mut b = TextClient::connect(server.addr);
    let b_peer = b.peer();
    a.expect(|l| l.starts_with("*** ") && l.contains(&b_peer));
    a.write(b"fine\n");
    let line = b.expect(|l| l.starts_with('['));
    assert!(line.ends_with("] fine"), "{line}");
}
