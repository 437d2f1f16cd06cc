//! Text clients: what the server does with a text client's first bytes before it
//! joins the room, and how it names it.

use std::time::Duration;

use crate::sockets::wait_until_read;
use crate::util::{config, start, Text, READ_TIMEOUT};

/// The one line an HTTP client gets before the server closes its connection.
const HTTP_REFUSAL: &str = "*** refused: this is a chat server, not a web server\n";

/// The settings with the web routes off, as `--no-web` sets them.
fn no_web() -> host_server::Config {
    host_server::Config {
        web: false,
        ..config()
    }
}

#[test]
fn with_no_web_an_http_request_is_refused_and_nobody_hears_of_it() {
    let server = start(no_web());
    let mut b = server.binary();
    let mut web = Text::connect(server.addr);
    web.send(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(web.until_closed(), [HTTP_REFUSAL]);
    let got = b.sync();
    assert!(
        got.is_empty(),
        "the room heard of the refused client: {got:?}"
    );
}

/// Where the machine has no IPv6 this test can check nothing: it says so on stderr
/// ("skipped: ...") and passes.
#[test]
fn ipv4_clients_of_a_dual_stack_listener_show_as_ipv4_or_skip_without_ipv6() {
    // Asked of std, not of the server's own `bind`, so that a broken `bind` fails
    // the test instead of skipping it.
    if let Err(e) = std::net::TcpListener::bind("[::]:0") {
        eprintln!("skipped: no IPv6 on this machine (binding [::]:0: {e})");
        return;
    }
    let mut cfg = config();
    cfg.bind = "[::]:0".parse().unwrap();
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
fn the_page_and_an_unknown_path_are_answered_and_nobody_hears_of_them() {
    let server = start(config());
    let mut b = server.binary();
    let mut page = Text::connect(server.addr);
    page.send(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let got = page.until_closed().concat();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("new WebSocket(url)"), "no script in the page");
    let mut other = Text::connect(server.addr);
    other.send(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let got = other.until_closed().concat();
    assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
    assert!(!got.contains("<html"), "{got}");
    assert_eq!(b.sync(), []);
}

#[test]
fn with_no_web_an_http_request_split_across_reads_is_still_refused_before_joining() {
    let mut cfg = no_web();
    // Long enough that the server is still waiting for the first line when the rest
    // of it comes, however loaded the machine.
    cfg.sniff_timeout = Duration::from_secs(3);
    let server = start(cfg);
    let mut b = server.binary();
    let mut web = Text::connect(server.addr);
    web.send(b"GE");
    // The rest arrives in another read.
    wait_until_read(&web.stream, READ_TIMEOUT);
    web.send(b"T /index.html HTTP/1.1\r\n\r\n");
    assert_eq!(web.until_closed(), [HTTP_REFUSAL]);
    assert_eq!(b.sync(), []);
}
