//! The client against a tiny fake server on 127.0.0.1 that speaks proto-core:
//! what it sends for typed lines, how it shows what arrives, how it ends.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroU32;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use host_client::connect::HandshakeError;
use host_client::session::Lost;
use host_client::{
    AttemptError, ClientError, Config, ConnectError, Ending, InputEvent, Interrupter, LineSource,
    ReaderInput, SessionError, Sink,
};
use proto_core::{Frame, NoticeKind, ReadError};

mod common;

use common::{Peer, Refusing, LIMIT};

/// What the client printed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Chat(String),
    Diag(String),
}

struct Capture(Sender<Out>);

impl Sink for Capture {
    fn chat(&mut self, line: &str) -> std::io::Result<()> {
        let _ = self.0.send(Out::Chat(line.to_string()));
        Ok(())
    }
    fn diag(&mut self, message: &str) {
        let _ = self.0.send(Out::Diag(message.to_string()));
    }
}

/// Typed lines fed by the test; the input ends when the sender is dropped, and
/// blocks (like a terminal nobody types at) while it is held.
struct Typed(Receiver<String>);

impl LineSource for Typed {
    fn next_event(&mut self) -> InputEvent {
        match self.0.recv() {
            Ok(line) => InputEvent::Line(line),
            Err(_) => InputEvent::End,
        }
    }
}

fn config(addr: SocketAddr) -> Config {
    Config {
        addr: addr.to_string(),
        attempts: NonZeroU32::new(1).unwrap(),
        retry_delay: Duration::from_millis(10),
        connect_timeout: Duration::from_secs(5),
        linger: Duration::from_millis(500),
        tls: None,
    }
}

/// A client running on its own thread, with its output captured.
struct Client {
    out: Receiver<Out>,
    /// What `run` hands its Ctrl-C hook once connected.
    interrupter: Receiver<Interrupter>,
    done: Receiver<Result<Ending, ClientError>>,
    _thread: JoinHandle<()>,
}

impl Client {
    fn start(config: Config, input: Box<dyn LineSource>) -> Self {
        let (out_tx, out) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        let (interrupter_tx, interrupter) = mpsc::channel();
        let thread = thread::spawn(move || {
            let hook = move |i| interrupter_tx.send(i).unwrap();
            let result = host_client::run(&config, input, Box::new(Capture(out_tx)), hook);
            let _ = done_tx.send(result);
        });
        Self {
            out,
            interrupter,
            done,
            _thread: thread,
        }
    }

    fn result(&self) -> Result<Ending, ClientError> {
        self.done
            .recv_timeout(LIMIT)
            .expect("client did not end in time")
    }

    /// Waits for output matching `pred`, returning it; earlier output is skipped.
    fn expect(&self, what: &str, pred: impl Fn(&Out) -> bool) -> Out {
        loop {
            match self.out.recv_timeout(LIMIT) {
                Ok(out) if pred(&out) => return out,
                Ok(_) => {}
                Err(_) => panic!("no {what} from the client"),
            }
        }
    }

    fn expect_chat(&self, line: &str) {
        self.expect(line, |o| *o == Out::Chat(line.to_string()));
    }

    fn printed(&self) -> Vec<Out> {
        self.out.try_iter().collect()
    }
}

fn chat(text: &str) -> String {
    format!("{:?}", Frame::Chat { text })
}

fn bye() -> String {
    format!("{:?}", Frame::Bye)
}

/// A listener, a client connected to it fed by the returned sender, and the
/// server's side of the connection.
fn connected() -> (Client, Sender<String>, Peer) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (typed, rx) = mpsc::channel();
    let client = Client::start(config(listener.local_addr().unwrap()), Box::new(Typed(rx)));
    let peer = Peer::accept(&listener);
    (client, typed, peer)
}

#[test]
fn typed_lines_become_chat_frames_and_exit_says_bye() {
    let (client, typed, mut peer) = connected();
    for line in ["hello", "", "   ", "  spaced  ", " exit "] {
        typed.send(line.to_string()).unwrap();
    }
    assert_eq!(peer.next().unwrap(), chat("hello"));
    assert_eq!(peer.next().unwrap(), chat("  spaced  "));
    assert_eq!(peer.next().unwrap(), bye());
    assert!(matches!(client.result(), Ok(Ending::Exit)));
    assert!(matches!(peer.next(), Err(ReadError::Closed)));
}

#[test]
fn end_of_input_says_bye() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let input = ReaderInput::new(&b"one\r\ntwo"[..]);
    let client = Client::start(config(listener.local_addr().unwrap()), Box::new(input));
    let mut peer = Peer::accept(&listener);
    assert_eq!(peer.next().unwrap(), chat("one"));
    assert_eq!(peer.next().unwrap(), chat("two"));
    assert_eq!(peer.next().unwrap(), bye());
    assert!(matches!(client.result(), Ok(Ending::EndOfInput)));
}

#[test]
fn over_long_line_is_refused_and_not_sent() {
    let (client, typed, mut peer) = connected();
    typed.send("x".repeat(1025)).unwrap();
    typed.send("y".repeat(1024)).unwrap();
    drop(typed);
    let refusal = client.expect("refusal", |o| matches!(o, Out::Diag(_)));
    let Out::Diag(refusal) = refusal else {
        unreachable!()
    };
    assert!(
        refusal.contains("1025") && refusal.contains("1024"),
        "{refusal}"
    );
    assert_eq!(peer.next().unwrap(), chat(&"y".repeat(1024)));
    assert_eq!(peer.next().unwrap(), bye());
    assert!(matches!(client.result(), Ok(Ending::EndOfInput)));
}

#[test]
fn over_long_piped_line_is_refused_and_not_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut bytes = vec![b'x'; 1025];
    bytes.extend(b"\nok\nexit\n");
    let input = ReaderInput::new(std::io::Cursor::new(bytes));
    let client = Client::start(config(listener.local_addr().unwrap()), Box::new(input));
    let mut peer = Peer::accept(&listener);
    assert_eq!(peer.next().unwrap(), chat("ok"));
    assert_eq!(peer.next().unwrap(), bye());
    assert!(matches!(client.result(), Ok(Ending::Exit)));
    let diags: Vec<_> = client
        .printed()
        .into_iter()
        .filter(|o| matches!(o, Out::Diag(d) if d.contains("1024")))
        .collect();
    assert_eq!(diags.len(), 1, "{diags:?}");
}

#[test]
fn broadcasts_and_notices_are_printed_sanitised() {
    let (client, typed, mut peer) = connected();
    let port = peer.addr.socket_addr().port();
    peer.notice(NoticeKind::Welcome, "welcome");
    peer.broadcast(7, "hi there");
    peer.broadcast(8, "evil\x1b[2J\u{202e}");
    client.expect_chat("*** welcome");
    client.expect_chat(&format!("[127.0.0.1:{port}] hi there"));
    client.expect_chat(&format!("[127.0.0.1:{port}] evil\\x1b[2J\\u{{202e}}"));
    drop(typed);
    assert!(matches!(client.result(), Ok(Ending::EndOfInput)));
    assert!(
        !client.printed().iter().any(|o| matches!(o, Out::Diag(_))),
        "no diagnostics expected"
    );
}

#[test]
fn a_sequence_gap_is_reported_and_reading_goes_on() {
    let (client, _typed, mut peer) = connected();
    peer.broadcast(1, "a");
    peer.broadcast(3, "c");
    peer.broadcast(4, "d");
    let gap = client.expect("gap report", |o| matches!(o, Out::Diag(_)));
    assert_eq!(
        gap,
        Out::Diag("error: broadcast sequence gap: expected 2, got 3".into())
    );
    client.expect_chat(&format!("[{}] d", peer.addr));
}

#[test]
fn acks_of_own_messages_fill_the_sequence() {
    let (client, _typed, mut peer) = connected();
    peer.broadcast(1, "a");
    peer.send(&Frame::Ack { seq: 2 });
    peer.broadcast(3, "c");
    peer.send(&Frame::Ack { seq: 5 });
    peer.broadcast(6, "f");
    client.expect_chat(&format!("[{}] c", peer.addr));
    let gap = client.expect("gap report", |o| matches!(o, Out::Diag(_)));
    assert_eq!(
        gap,
        Out::Diag("error: broadcast sequence gap: expected 4, got 5".into())
    );
    client.expect_chat(&format!("[{}] f", peer.addr));
}

#[test]
fn a_bad_frame_is_reported_and_reading_goes_on() {
    let (client, _typed, mut peer) = connected();
    // A frame of a kind protocol v1 does not define, with a one-byte body.
    peer.writer.inner_mut().write_all(&[0x42, 0, 1, 0]).unwrap();
    peer.broadcast(1, "after");
    let bad = client.expect("bad frame report", |o| matches!(o, Out::Diag(_)));
    assert!(
        matches!(&bad, Out::Diag(d) if d.contains("0x42")),
        "{bad:?}"
    );
    client.expect_chat(&format!("[{}] after", peer.addr));
}

#[test]
fn pings_are_answered() {
    let (_client, _typed, mut peer) = connected();
    peer.send(&Frame::Ping { nonce: 0xfeed });
    assert_eq!(
        peer.next().unwrap(),
        format!("{:?}", Frame::Pong { nonce: 0xfeed })
    );
}

#[test]
fn the_server_closing_ends_the_client_in_failure_while_input_waits() {
    let (client, _typed, peer) = connected();
    drop(peer);
    match client.result() {
        Err(ClientError::Session(SessionError::ConnectionLost {
            how: Lost::Closed | Lost::Io(_),
            server_shut_down: false,
        })) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_shutdown_notice_then_close_is_reported_as_shutdown() {
    let (client, _typed, mut peer) = connected();
    peer.notice(NoticeKind::Shutdown, "server shutting down");
    client.expect_chat("*** server shutting down");
    drop(peer);
    let e = client.result().unwrap_err();
    assert!(e.to_string().contains("shut down"), "{e}");
}

#[test]
fn the_ctrl_c_hook_leaves_with_bye() {
    let (client, _typed, mut peer) = connected();
    let interrupter = client
        .interrupter
        .recv_timeout(LIMIT)
        .expect("run hands over an interrupter once connected");
    interrupter.interrupt();
    assert_eq!(peer.next().unwrap(), bye());
    drop(peer);
    assert!(matches!(client.result(), Ok(Ending::Interrupted)));
}

#[test]
fn a_refused_connection_is_tried_exactly_attempts_times() {
    let refusing = Refusing::new();
    for attempts in [1, 3, 4] {
        let mut cfg = config(refusing.addr);
        cfg.attempts = NonZeroU32::new(attempts).unwrap();
        let (mut tried, mut reported, mut slept) = (0, 0, 0);
        let result = host_client::connect_with(
            &cfg,
            |addr, timeout| {
                tried += 1;
                TcpStream::connect_timeout(addr, timeout)
            },
            |_| slept += 1,
            |f| reported += usize::from(host_client::attempt_message(f).is_some()),
        );
        match result {
            Err(ConnectError::GaveUp {
                attempts: made,
                last: AttemptError::Tcp(_),
                ..
            }) => assert_eq!(made, attempts),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            (tried, reported, slept),
            (attempts, attempts as usize, attempts - 1)
        );
    }
}

#[test]
fn the_client_reports_each_refused_attempt_and_fails() {
    let refusing = Refusing::new();
    let mut cfg = config(refusing.addr);
    cfg.attempts = NonZeroU32::new(3).unwrap();
    let (_typed, rx) = mpsc::channel();
    let client = Client::start(cfg, Box::new(Typed(rx)));
    let e = client.result().unwrap_err();
    assert!(e.to_string().contains("gave up after 3 attempts"), "{e}");
    let refused = client
        .printed()
        .into_iter()
        .filter(|o| matches!(o, Out::Diag(d) if d.contains("refused")))
        .count();
    assert_eq!(refused, 3);
}

#[test]
fn a_server_that_is_not_a_chat_server_is_not_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(listener.local_addr().unwrap());
    cfg.attempts = NonZeroU32::new(3).unwrap();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").unwrap();
        listener.set_nonblocking(true).unwrap();
        thread::sleep(Duration::from_millis(300));
        listener.accept().is_err()
    });
    let result = host_client::connect(&cfg, |_| {});
    assert!(
        matches!(
            result,
            Err(ConnectError::Stopped {
                error: AttemptError::Handshake {
                    error: HandshakeError::NotChatServer,
                    ..
                },
                ..
            })
        ),
        "{result:?}"
    );
    assert!(server.join().unwrap(), "the client tried again");
}

#[test]
fn a_server_that_never_sends_its_preamble_times_out_and_is_retried() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(listener.local_addr().unwrap());
    cfg.attempts = NonZeroU32::new(2).unwrap();
    cfg.connect_timeout = Duration::from_millis(200);
    // Accepted by the kernel's backlog, never answered.
    let mut tried = 0;
    let result = host_client::connect_with(
        &cfg,
        |addr, timeout| {
            tried += 1;
            TcpStream::connect_timeout(addr, timeout)
        },
        |_| {},
        |_| {},
    );
    let Err(e @ ConnectError::GaveUp { attempts: 2, .. }) = result else {
        panic!("unexpected {result:?}");
    };
    assert_eq!(tried, 2);
    let ConnectError::GaveUp { last, .. } = &e else {
        unreachable!()
    };
    assert!(last.to_string().contains("no protocol preamble"), "{last}");
    drop(listener);
}

/// Where the machine has no IPv6 loopback this test can check nothing: it says so on
/// stderr ("skipped: ...") and passes.
#[test]
fn ipv6_loopback_works_or_skips_without_ipv6() {
    let listener = match TcpListener::bind("[::1]:0") {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("skipped: no IPv6 loopback on this machine (binding [::1]:0: {e})");
            return;
        }
    };
    let addr = listener.local_addr().unwrap();
    let (typed, rx) = mpsc::channel();
    let client = Client::start(config(addr), Box::new(Typed(rx)));
    let mut peer = Peer::accept(&listener);
    peer.broadcast(1, "over v6");
    client.expect_chat(&format!("[{}] over v6", peer.addr));
    assert!(peer.addr.to_string().starts_with("[::1]:"));
    typed.send("hi".into()).unwrap();
    assert_eq!(peer.next().unwrap(), chat("hi"));
}
