//! Stopping: `close` drops everyone at once, Ctrl-C sends a notice first; both end
//! every connection quickly, and `run` returns.

use std::time::{Duration, Instant};

use host_server::Stop;
use proto_core::NoticeKind;

use crate::util::{config, start, Got};

#[test]
fn close_drops_every_connection_at_once() {
    let mut server = start(config());
    let mut b = server.binary();
    let mut t = server.text();
    b.sync();
    let began = Instant::now();
    server.stop(Stop::Close);
    assert_eq!(b.until_closed(), []);
    assert_eq!(t.until_closed(), Vec::<String>::new());
    // Only bounds a hang: the connections must not linger until a timeout.
    assert!(began.elapsed() < Duration::from_secs(3));
    assert!(std::net::TcpStream::connect(server.addr).is_err());
}

#[test]
fn terminate_sends_a_shutdown_notice_then_closes() {
    let mut server = start(config());
    let mut b = server.binary();
    let mut t = server.text();
    b.sync();
    server.stop(Stop::Terminate);
    let got = b.until_closed();
    assert!(
        matches!(&got[..], [.., Got::Notice { kind: NoticeKind::Shutdown, text, .. }] if text == "server shutting down"),
        "{got:?}"
    );
    let lines = t.until_closed();
    assert_eq!(
        lines.last().map(String::as_str),
        Some("*** server shutting down\n")
    );
}
