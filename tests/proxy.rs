//! The PROXY protocol on `--proxy-listen`: a trusted front's header names the client,
//! whose address is then used for the room, the cap, the allow list and the log;
//! untrusted peers, bad or missing headers are closed unheard; the public port never
//! reads a header. A real haproxy (`send-proxy-v2`) stands in front at the end. A
//! browser behind a front (its page, its WebSocket, its spare connections) is known
//! by the forwarded address too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use socket2::{Domain, Socket, Type};
use tungstenite::client::IntoClientRequest;

use crate::util::{connect_from, free_port, Proc, Server, TextClient, WAIT};

/// A server with one PROXY listener on a free loopback port; returns it and that
/// listener's address.
fn fronted(extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec!["--proxy-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let line = server.proc.out.expect("`PROXY fronts on ADDR`", |l| {
        l.starts_with("PROXY fronts on ")
    });
    let front = line["PROXY fronts on ".len()..].trim().parse().unwrap();
    (server, front)
}

/// A text client through the PROXY listener at `front`, whose header (`header`) is
/// sent in pieces of `piece` bytes.
fn through(front: SocketAddr, header: &[u8], piece: usize) -> TextClient {
    let mut c = TextClient::connect(front);
    for part in header.chunks(piece) {
        c.write(part);
        std::thread::sleep(Duration::from_millis(if piece < header.len() {
            20
        } else {
            0
        }));
    }
    c
}

fn v2(source: &str) -> Vec<u8> {
    // Signature, v2 PROXY, TCP over IPv4 or IPv6, addresses, ports (as haproxy sends).
    let source: SocketAddr = source.parse().unwrap();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21".to_vec();
    match source {
        SocketAddr::V4(a) => {
            h.extend_from_slice(&[0x11, 0, 12]);
            h.extend_from_slice(&a.ip().octets());
            h.extend_from_slice(&[198, 51, 100, 1]);
        }
        SocketAddr::V6(a) => {
            h.extend_from_slice(&[0x21, 0, 36]);
            h.extend_from_slice(&a.ip().octets());
            h.extend_from_slice(
                &"2001:db8::1"
                    .parse::<std::net::Ipv6Addr>()
                    .unwrap()
                    .octets(),
            );
        }
    }
    h.extend_from_slice(&source.port().to_be_bytes());
    h.extend_from_slice(&9000u16.to_be_bytes());
    h
}

#[test]
fn v1_and_v2_headers_name_the_client_in_the_room_and_the_log() {
    let (server, front) = fronted(&[]);
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"hi\n");
    plain.expect(|l| l.starts_with("*** welcome"));

    let mut one = through(
        front,
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000\r\n",
        64,
    );
    let welcome = one.expect(|l| l.starts_with("*** welcome"));
    assert!(welcome.contains("you are 192.0.2.7:40000"), "{welcome}");
    one.write(b"from one\n");
    assert_eq!(
        plain.expect(|l| l.starts_with('[')),
        "[192.0.2.7:40000] from one"
    );
    // The log names the client and the front it came through.
    server.proc.err.expect("join via the front", |l| {
        l.contains("192.0.2.7:40000 joined") && l.contains("via PROXY front 127.0.0.1:")
    });

    // v2, split into pieces of 5 bytes, from an IPv6 client.
    let mut two = through(front, &v2("[2001:db8::5]:41000"), 5);
    let welcome = two.expect(|l| l.starts_with("*** welcome"));
    assert!(welcome.contains("you are [2001:db8::5]:41000"), "{welcome}");
    two.write(b"from two\n");
    assert_eq!(
        plain.expect(|l| l.starts_with('[')),
        "[[2001:db8::5]:41000] from two"
    );

    // LOCAL (a health check) and UNKNOWN: the front's own address.
    let mut unknown = through(front, b"PROXY UNKNOWN\r\n", 64);
    let welcome = unknown.expect(|l| l.starts_with("*** welcome"));
    assert!(
        welcome.contains(&format!("you are {}", unknown.peer())),
        "{welcome}"
    );
}

#[test]
fn the_cap_and_the_allow_list_count_the_forwarded_address() {
    let (server, front) = fronted(&["--max-per-address", "1", "--allow", "192.0.2.0/24"]);
    let header = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000\r\n";
    let mut first = through(front, header, 64);
    first.expect(|l| l.starts_with("*** welcome"));
    // A second from the same forwarded address is over the cap, although the front
    // is loopback (exempt) and its connections are many.
    let mut second = through(
        front,
        b"PROXY TCP4 192.0.2.7 198.51.100.1 40001 9000\r\n",
        64,
    );
    second.write(b"hello?\n");
    let line = second.line();
    assert!(line.contains("192.0.2.7 already holds 1"), "{line}");
    assert!(second.closed());
    server.proc.err.expect("refusal naming the front", |l| {
        l.contains("192.0.2.7:40001 (via 127.0.0.1:") && l.contains("already holds")
    });
    // Outside the allow list.
    let mut outside = through(
        front,
        b"PROXY TCP4 198.51.100.9 198.51.100.1 40000 9000\r\n",
        64,
    );
    outside.write(b"hello?\n");
    let line = outside.line();
    assert!(line.contains("198.51.100.9 is not allowed"), "{line}");
    // The public port's loopback client is outside the allow list too.
    let mut direct = TextClient::connect(server.addr);
    direct.write(b"hello?\n");
    assert!(direct.line().contains("127.0.0.1 is not allowed"));
}

/// Reads until the server closes; true if it sent nothing at all.
fn closed_unheard(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => got.is_empty(),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset && got.is_empty(),
    }
}

#[test]
fn untrusted_peers_and_bad_or_missing_headers_are_closed_unheard() {
    let (server, front) = fronted(&["--proxy-trusted", "127.0.0.1", "--proxy-timeout-ms", "300"]);
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"hi\n");
    plain.expect(|l| l.starts_with("*** welcome"));

    // 127.0.0.2 is not a trusted front: its header is never read.
    let mut untrusted = connect_from(front, "127.0.0.2".parse().unwrap());
    untrusted
        .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000\r\n")
        .unwrap();
    assert!(closed_unheard(&mut untrusted));
    server.proc.err.expect("untrusted front logged", |l| {
        l.contains("127.0.0.2:") && l.contains("not a trusted PROXY front")
    });

    // A header that never comes.
    let mut silent = TcpStream::connect(front).unwrap();
    assert!(closed_unheard(&mut silent));
    server.proc.err.expect("missing header logged", |l| {
        l.contains("no PROXY header within 0.3 s")
    });

    // A line that is not a header.
    let mut bad = TcpStream::connect(front).unwrap();
    bad.write_all(b"hello there\r\n").unwrap();
    assert!(closed_unheard(&mut bad));
    server
        .proc
        .err
        .expect("bad header logged", |l| l.contains("bad PROXY header"));

    // Nobody in the room heard of any of them: the next line the plain client gets
    // is its own echo-free silence, then a newcomer's join.
    let newcomer = TextClient::connect(server.addr);
    let line = plain.expect(|l| l.starts_with("*** "));
    assert!(line.contains(&newcomer.peer()), "{line}");
}

#[test]
fn a_proxy_line_on_the_public_port_is_a_chat_line() {
    let server = Server::start(&["--proxy-listen", "127.0.0.1:0"]);
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"hi\n");
    plain.expect(|l| l.starts_with("*** welcome"));
    let mut forger = TextClient::connect(server.addr);
    forger.write(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000\r\n");
    let welcome = forger.expect(|l| l.starts_with("*** welcome"));
    let me = forger.peer();
    assert!(welcome.contains(&format!("you are {me}")), "{welcome}");
    assert_eq!(
        plain.expect(|l| l.starts_with('[')),
        format!("[{me}] PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000")
    );
}

#[test]
fn haproxy_with_send_proxy_v2_passes_the_real_client_address() {
    let (server, front) = fronted(&[]);
    let listen = free_port();
    let dir = std::env::temp_dir().join(format!("chat-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n    maxconn 100\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 1h\n    timeout server 1h\n\
             frontend chat\n    bind 127.0.0.1:{listen}\n    default_backend room\n\
             backend room\n    server s1 {front} send-proxy-v2\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("haproxy");
    cmd.arg("-db").arg("-f").arg(&cfg);
    let _haproxy = Proc::spawn(cmd);
    let haproxy_addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
    // haproxy needs a moment to listen.
    let deadline = std::time::Instant::now() + WAIT;
    let stream = loop {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        match socket.connect(&haproxy_addr.into()) {
            Ok(()) => break TcpStream::from(socket),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("haproxy does not listen on {haproxy_addr}: {e}"),
        }
    };
    let me = stream.local_addr().unwrap().to_string();
    assert!(me.starts_with("127.0.0.2:"));
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"hi\n");
    plain.expect(|l| l.starts_with("*** welcome"));
    let mut behind = stream;
    behind.write_all(b"through haproxy\n").unwrap();
    assert_eq!(
        plain.expect(|l| l.starts_with('[')),
        format!("[{me}] through haproxy")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ipv6_clients_are_capped_by_their_64_unless_told_otherwise() {
    // Through a front, so the room sees real IPv6 addresses on loopback.
    let (_server, front) = fronted(&["--max-per-address", "1"]);
    let mut first = through(front, &v2("[2001:db8:0:1::aaaa]:41000"), 64);
    first.expect(|l| l.starts_with("*** welcome"));
    // Another address in the same /64 is the same host.
    let mut second = through(front, &v2("[2001:db8:0:1::bbbb]:41001"), 64);
    second.write(b"hello?\n");
    let line = second.line();
    assert!(
        line.contains("2001:db8:0:1::/64 already holds 1 connection"),
        "{line}"
    );
    // Another /64 is another host.
    let mut other = through(front, &v2("[2001:db8:0:2::aaaa]:41002"), 64);
    other.expect(|l| l.starts_with("*** welcome"));

    // --ipv6-prefix 128: each address is a host of its own.
    let (_server, front) = fronted(&["--max-per-address", "1", "--ipv6-prefix", "128"]);
    let mut first = through(front, &v2("[2001:db8:0:1::aaaa]:41000"), 64);
    first.expect(|l| l.starts_with("*** welcome"));
    let mut second = through(front, &v2("[2001:db8:0:1::bbbb]:41001"), 64);
    second.expect(|l| l.starts_with("*** welcome"));
}

/// A connection through the PROXY listener at `front` that says it comes from
/// `source` (a v1 header, sent at once).
fn via(front: SocketAddr, source: &str) -> TcpStream {
    let source: SocketAddr = source.parse().unwrap();
    let mut stream = TcpStream::connect(front).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let header = format!(
        "PROXY TCP4 {} 198.51.100.1 {} 9000\r\n",
        source.ip(),
        source.port()
    );
    stream.write_all(header.as_bytes()).unwrap();
    stream
}

#[test]
fn a_browser_behind_a_front_is_known_by_its_forwarded_address() {
    let (server, front) = fronted(&["--sniff-timeout-ms", "300", "--web-spare-wait-ms", "20000"]);
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"hi\n");
    plain.expect(|l| l.starts_with("*** welcome"));

    // The page, fetched through the front by 192.0.2.7.
    let mut page = via(front, "192.0.2.7:40000");
    page.write_all(b"GET / HTTP/1.1\r\nHost: chat.example\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = page.read_to_end(&mut answer);
    assert!(answer.starts_with(b"HTTP/1.1 200 OK\r\n"));
    server
        .proc
        .err
        .expect("the page served to the client", |l| {
            l.contains("192.0.2.7:40000: served the chat page")
        });

    // Its WebSocket joins under the forwarded address.
    let ws = via(front, "192.0.2.7:40001");
    let request = "ws://chat.example/ws".into_client_request().unwrap();
    let (mut ws, _) = tungstenite::client::client(request, ws).expect("upgrade via the front");
    let welcome = match ws.read().expect("the welcome") {
        tungstenite::Message::Text(text) => text.to_string(),
        other => panic!("expected the welcome, got {other:?}"),
    };
    assert!(
        welcome.starts_with("*** welcome, you are 192.0.2.7:40001;"),
        "{welcome}"
    );
    assert_eq!(plain.line(), "*** 192.0.2.7:40001 joined");

    // A silent connection from the page's address is a spare of its browser, waited
    // on (--web-spare-wait-ms); one from another address behind the same front is a
    // text client after the sniff timeout. The spare opened first, so had it been
    // taken as a text client, its join would come first.
    let mut spare = via(front, "192.0.2.7:40002");
    let _other = via(front, "192.0.2.8:50000");
    assert_eq!(plain.line(), "*** 192.0.2.8:50000 joined");
    // A spare that speaks is in at once.
    spare.write_all(b"typed after all\n").unwrap();
    assert_eq!(plain.line(), "*** 192.0.2.7:40002 joined");
    assert_eq!(plain.line(), "[192.0.2.7:40002] typed after all");
}
