//! The room over WebSockets, end to end against the real binary: a WebSocket tool
//! (tungstenite's client, as websocat would be) and raw sockets, with `nc`-like text
//! clients in the same room. What a browser does with the page is in `browser`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::util::{Server, TextClient, WAIT};

/// A WebSocket client on a plain TCP stream.
pub struct Ws {
    pub socket: WebSocket<TcpStream>,
    /// Its address as the server sees it.
    pub peer: String,
}

/// Opens a WebSocket to `/ws`, with `origin` if given.
pub fn try_ws(addr: SocketAddr, origin: Option<&str>) -> Result<Ws, String> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let peer = stream.local_addr().unwrap().to_string();
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().unwrap());
    }
    match tungstenite::client::client(request, stream) {
        Ok((socket, _)) => Ok(Ws { socket, peer }),
        Err(e) => Err(e.to_string()),
    }
}

/// Tries a WebSocket upgrade that is to be refused; the status and body of the
/// refusal.
fn refused_upgrade(addr: SocketAddr) -> (u16, String) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let request = format!("ws://{addr}/ws").into_client_request().unwrap();
    match tungstenite::client::client(request, stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let body = response.body().clone().unwrap_or_default();
            (
                response.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
        Ok(_) => panic!("the upgrade was accepted"),
        Err(e) => panic!("no HTTP refusal: {e}"),
    }
}

impl Ws {
    /// Joins the room: connects and reads the welcome.
    pub fn join(addr: SocketAddr) -> Self {
        let mut ws = try_ws(addr, None).expect("upgrade");
        let welcome = ws.text();
        assert!(
            welcome.starts_with(&format!("*** welcome, you are {};", ws.peer)),
            "{welcome}"
        );
        ws
    }

    /// The next text message (pings are answered by tungstenite on the way).
    pub fn text(&mut self) -> String {
        loop {
            match self.socket.read().expect("read a message") {
                Message::Text(text) => return text.to_string(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected text, got {other:?}"),
            }
        }
    }

    /// Reads text messages until one satisfies `pred`.
    pub fn expect(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let text = self.text();
            if pred(&text) {
                return text;
            }
        }
    }

    pub fn send(&mut self, message: Message) {
        self.socket.send(message).expect("send");
    }

    pub fn say(&mut self, text: &str) {
        self.send(Message::text(text));
    }
}

#[test]
fn a_websocket_tool_and_nc_chat_both_ways_in_the_text_form() {
    let server = Server::start(&[]);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let mut ws = Ws::join(server.addr);
    let ws_peer = ws.peer.clone();
    nc.expect(|l| l == format!("*** {ws_peer} joined"));
    ws.say("hello from a browser\u{1b}[31m");
    assert_eq!(
        nc.line(),
        format!("[{ws_peer}] hello from a browser\\x1b[31m")
    );
    nc.write(b"hello from nc\n");
    assert_eq!(ws.text(), format!("[{}] hello from nc", nc.peer()));
    // A second WebSocket hears the first; the first's line from a tool keeps no newline.
    let mut other = Ws::join(server.addr);
    ws.expect(|t| t == format!("*** {} joined", other.peer));
    ws.say("with a newline\n");
    assert_eq!(other.text(), format!("[{ws_peer}] with a newline"));
    other.say("back");
    assert_eq!(ws.text(), format!("[{}] back", other.peer));
    assert_eq!(nc.line(), format!("*** {} joined", other.peer));
    assert_eq!(nc.line(), format!("[{ws_peer}] with a newline"));
    // A close frame is answered with one, and the room hears a plain leave.
    ws.socket.close(None).unwrap();
    loop {
        match ws.socket.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("no closing handshake: {e}"),
        }
    }
    assert_eq!(nc.line(), format!("[{}] back", other.peer));
    assert_eq!(nc.line(), format!("*** {ws_peer} left"));
}

#[test]
fn over_long_and_binary_messages_get_a_notice_and_the_socket_stays_usable() {
    let server = Server::start(&[]);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let mut ws = Ws::join(server.addr);
    nc.expect(|l| l.ends_with(" joined"));
    ws.say(&"a".repeat(1025));
    let notice = ws.text();
    assert_eq!(
        notice,
        "*** message too long: the limit is 1024 bytes; discarded"
    );
    ws.send(Message::binary(vec![1, 2, 3]));
    assert_eq!(
        ws.text(),
        "*** binary messages are not taken, only text; discarded"
    );
    ws.say(&"b".repeat(1024));
    assert_eq!(nc.line(), format!("[{}] {}", ws.peer, "b".repeat(1024)));
}

#[test]
fn an_upgrade_from_another_origin_gets_403_and_nobody_hears_of_it() {
    let server = Server::start(&["--web-origin", "http://chat.example:8080"]);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let refused = try_ws(server.addr, Some("http://evil.example")).map(|_| ());
    let err = refused.expect_err("joined from another origin");
    assert!(err.contains("403"), "{err}");
    // The server's own origin and an added one may join; the room hears of these
    // first, so it never heard of the refused one.
    let own = format!("http://{}", server.addr);
    let mut joined = Vec::new();
    for origin in [own.as_str(), "http://chat.example:8080"] {
        let ws = try_ws(server.addr, Some(origin)).expect("same origin");
        assert_eq!(nc.line(), format!("*** {} joined", ws.peer));
        joined.push(ws);
    }
    let logged = server
        .proc
        .err
        .expect("the refusal in the log", |l| l.contains("403"));
    assert!(logged.contains("evil.example"), "{logged}");
}

/// A raw WebSocket connection that has been upgraded and reads nothing itself.
fn raw_upgrade(addr: SocketAddr) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in the head");
        got.push(byte[0]);
    }
    (stream, got)
}

/// Everything the server sends until it closes, within [`WAIT`].
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("not closed: {e}; got {} bytes", got.len()),
        }
    }
    panic!("not closed within {WAIT:?}")
}

/// The unmasked frames of a server's stream: (first byte, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (len, at) = match bytes[1] {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => (
                usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(),
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert!(bytes.len() >= at + len, "a frame cut short");
        out.push((bytes[0], bytes[at..at + len].to_vec()));
        bytes = &bytes[at + len..];
    }
    assert!(bytes.is_empty(), "bytes after the last frame");
    out
}

const CLOSE_NORMAL: (u8, [u8; 2]) = (0x88, [0x03, 0xe8]);

#[test]
fn a_silent_websocket_peer_is_pinged_then_dropped_and_one_that_pongs_stays() {
    let server = Server::start(&["--dead-peer-timeout", "2"]);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let (mut dead, head) = raw_upgrade(server.addr);
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    let mut alive = Ws::join(server.addr);
    let t0 = Instant::now();
    // `alive` reads all along, so tungstenite answers the server's pings.
    let reader = std::thread::spawn(move || {
        let timeout = Some(Duration::from_millis(100));
        alive.socket.get_mut().set_read_timeout(timeout).unwrap();
        while t0.elapsed() < Duration::from_secs(3) {
            match alive.socket.read() {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("the live client was dropped: {e}"),
            }
        }
        alive
    });
    let got = frames(&read_to_close(&mut dead));
    let kinds: Vec<u8> = got.iter().map(|f| f.0).collect();
    // The welcome, perhaps the join of `alive`, a ping, the notice, the close frame.
    assert!(kinds.ends_with(&[0x89, 0x81, 0x88]), "{got:?}");
    let notice = String::from_utf8(got[got.len() - 2].1.clone()).unwrap();
    assert_eq!(notice, "*** disconnected: timed out");
    assert_eq!(got[got.len() - 1].1, CLOSE_NORMAL.1);
    assert!(t0.elapsed() >= Duration::from_millis(1500), "dropped early");
    nc.expect(|l| l.contains(" left (dropped: "));
    let mut alive = reader.join().expect("the live client stayed");
    alive.say("still here");
    assert_eq!(nc.line(), format!("[{}] still here", alive.peer));
}

#[test]
fn a_stalled_websocket_reader_gets_a_notice_then_a_close_frame() {
    let server = Server::start(&["--stall-timeout", "1", "--outbox-limit", "131072"]);
    let (mut stalled, _) = raw_upgrade(server.addr);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let line = format!("{}\n", "x".repeat(499));
    // 4 MB: more than the outbox limit and any socket buffers between them.
    for _ in 0..8000 {
        nc.write(line.as_bytes());
    }
    nc.expect(|l| l.contains(" left (dropped: "));
    let got = frames(&read_to_close(&mut stalled));
    let (last, before) = got.split_last().unwrap();
    assert_eq!(
        (last.0, last.1.as_slice()),
        (CLOSE_NORMAL.0, &CLOSE_NORMAL.1[..])
    );
    let notice = String::from_utf8(before.last().unwrap().1.clone()).unwrap();
    assert!(notice.starts_with("*** disconnected: "), "{notice}");
    assert!(
        before.iter().all(|f| f.0 == 0x81),
        "only text frames before"
    );
}

#[test]
fn the_servers_close_gives_a_close_frame() {
    let mut server = Server::start(&[]);
    let mut ws = Ws::join(server.addr);
    server.proc.send("close");
    match ws.socket.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[test]
fn a_websocket_counts_against_the_per_address_cap_like_any_client() {
    let server = Server::start(&["--max-per-address", "1", "--cap-loopback"]);
    let _first = Ws::join(server.addr);
    let (status, body) = refused_upgrade(server.addr);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("already holds 1 connection"), "{body}");
}

#[test]
fn a_websocket_turned_away_from_a_full_room_gets_503_with_the_notice() {
    let server = Server::start(&["--max-clients", "2"]);
    let mut inside = Ws::join(server.addr);
    let mut nc = TextClient::connect(server.addr);
    nc.write(b"hi\n");
    nc.expect(|l| l.starts_with("*** welcome"));
    // The room is full: an upgrade is answered 503 with the notice a text client
    // would get, and the log says why.
    let (status, body) = refused_upgrade(server.addr);
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        "server full: the room holds 2 clients; try again later\n"
    );
    server
        .proc
        .err
        .expect("refusal logged", |l| l.contains("refused, server full"));
    // Nobody in the room heard of it: the WebSocket hears nc join, its first line,
    // then the next one.
    nc.write(b"after the refusal\n");
    let heard: Vec<String> = (0..3).map(|_| inside.text()).collect();
    let nc = nc.peer();
    assert_eq!(
        heard,
        [
            format!("*** {nc} joined"),
            format!("[{nc}] hi"),
            format!("[{nc}] after the refusal")
        ]
    );
}

#[test]
fn the_bench_as_websocket_clients_gets_every_delivery_in_order() {
    use clap::Parser;
    use host_client::bench::{self, Scenario};
    use host_client::cli::{Args, Command};
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    let argv = [
        "host-client",
        "bench",
        "fanout",
        &addr,
        "--ws",
        "-n",
        "4",
        "-s",
        "2",
        "-m",
        "50",
    ];
    let Some(Command::Bench { scenario }) = Args::try_parse_from(argv).unwrap().command else {
        panic!("not a bench");
    };
    assert!(matches!(scenario, Scenario::Fanout { .. }));
    let report = bench::run(&scenario).unwrap();
    assert_eq!(report.mode, "websocket");
    assert_eq!(
        (report.delivered, report.expected),
        (400, 400),
        "{}",
        report.human()
    );
    assert_eq!((report.decode_errors, report.disconnects), (0, 0));
}

/// Sends `request` (maybe unfinished) and returns what the server answers before
/// it closes.
fn http_answer(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request).unwrap();
    String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned()
}

#[test]
fn an_oversized_or_slow_request_head_gets_431_or_408_and_no_web_refuses_http() {
    let server = Server::start(&["--http-head-limit", "1024", "--http-timeout-ms", "300"]);
    let page = http_answer(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(2000)
    );
    let answer = http_answer(server.addr, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let started = Instant::now();
    let answer = http_answer(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < WAIT, "took {:?}", started.elapsed());

    let server = Server::start(&["--no-web"]);
    let answer = http_answer(server.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        answer.starts_with("*** ") && answer.contains("not a web server"),
        "{answer}"
    );
}
