//! Plain text clients, as `nc` or `telnet` would connect.

use crate::sockets::wait_until_read;
use crate::util::{Server, TextClient, WAIT};

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
        // The server has read this piece before the next is sent.
        wait_until_read(&a.stream, WAIT);
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
    assert_eq!(
        a.expect(|l| l.starts_with("*** ")),
        "*** line too long: the limit is 1024 bytes; discarded"
    );
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
    assert_eq!(
        a.expect(|l| l.starts_with("*** ")),
        "*** line is not valid UTF-8; discarded"
    );
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

/// Issue 18, point 4: `ff fa` (Telnet's IAC SB: a Latin-1 "ÿú", pasted binary) used to
/// make the server swallow every line after it, up to 1 KiB, with no notice.
#[test]
fn a_stray_telnet_subnegotiation_costs_one_line_and_says_so() {
    let (_server, mut a, mut b) = pair();
    let a_peer = a.peer();
    // The exact bytes `nc` sends for these two lines, one read each.
    a.write(b"x\xff\xfa garbage\n");
    wait_until_read(&a.stream, WAIT);
    a.write(b"next line\n");
    assert_eq!(
        a.expect(|l| l.starts_with("*** ")),
        "*** line held ff fa, which starts a Telnet subnegotiation, and no ff f0 ended it; discarded"
    );
    assert_eq!(
        b.expect(|l| l.starts_with('[')),
        format!("[{a_peer}] next line")
    );
}

/// The same for a client that sends no newline: a pause ends the subnegotiation as an
/// LF does, so the next send is a message again.
#[test]
fn a_stray_telnet_subnegotiation_from_a_client_without_newlines_ends_at_a_pause() {
    let (_server, mut a, mut b) = pair();
    let a_peer = a.peer();
    a.write(b"x\xff\xfa garbage");
    assert!(
        a.expect(|l| l.starts_with("*** ")).contains("ff fa"),
        "the notice names the bytes"
    );
    a.write(b"hello");
    assert_eq!(
        b.expect(|l| l.starts_with('[')),
        format!("[{a_peer}] hello")
    );
}
