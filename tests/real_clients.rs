//! Clients nobody in this project wrote: the original assignment's Python client,
//! which sends each message with no newline; `nc`; a newline client on a slow link;
//! and `telnet`, with the exact bytes it sends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::sleep;
use std::time::{Duration, Instant};

use proto_core::Frame;

use crate::util::{BinClient, Got, Server, TextClient, WAIT};

/// A gap between two sends, longer than the server's 200 ms text pause.
const GAP: Duration = Duration::from_millis(300);

/// A client that reads raw bytes, as a Python client's `recv(1024)` or telnet does,
/// so the test sees every byte the server sends, Telnet commands included.
struct Raw {
    stream: TcpStream,
    got: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self {
            stream,
            got: Vec::new(),
        }
    }

    fn peer(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads until everything received contains `want`, failing after [`WAIT`].
    fn until(&mut self, want: &[u8]) {
        let deadline = Instant::now() + WAIT;
        while !contains(&self.got, want) {
            assert!(
                Instant::now() < deadline,
                "never received {:?}; got {:?}",
                String::from_utf8_lossy(want),
                String::from_utf8_lossy(&self.got)
            );
            let mut buf = [0u8; 1024];
            match self.stream.read(&mut buf) {
                Ok(0) => panic!("closed; got {:?}", String::from_utf8_lossy(&self.got)),
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
    }

    /// Reads what arrives within `quiet` of silence.
    fn drain(&mut self, quiet: Duration) {
        self.stream.set_read_timeout(Some(quiet)).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.stream.read(&mut buf) {
            self.got.extend_from_slice(&buf[..n]);
        }
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The chat lines (`[PEER] TEXT`) `client` has received so far from `from`.
fn chat_from(lines: &[u8], from: &str) -> Vec<String> {
    let prefix = format!("[{from}] ");
    String::from_utf8_lossy(lines)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// A server, an `nc`-like listener, and `n` raw clients, each announced to the
/// listener (so every one has joined before the test sends anything).
fn room(n: usize) -> (Server, TextClient, Vec<Raw>) {
    let server = Server::start(&[]);
    let mut listener = TextClient::connect(server.addr);
    listener.expect(|l| l.starts_with("*** welcome"));
    let clients = (0..n)
        .map(|_| {
            let mut c = Raw::connect(server.addr);
            c.until(b"*** welcome");
            let peer = c.peer();
            listener.expect(|l| l.starts_with("*** ") && l.contains(&peer));
            c
        })
        .collect();
    (server, listener, clients)
}

#[test]
fn a_client_that_sends_no_newline_gets_one_message_per_send() {
    let (_server, mut nc, mut clients) = room(1);
    let python = &mut clients[0];
    let peer = python.peer();
    // `sock.send(message.encode())`, once per message typed, the connection open.
    for text in ["hello", "second message", "caf\u{e9} \u{1f600}"] {
        python.send(text.as_bytes());
        assert_eq!(
            nc.expect(|l| l.starts_with('[')),
            format!("[{peer}] {text}"),
            "delivered while the sender stays connected, one message per send"
        );
    }
    // The nc user's newline-ended lines reach the Python client.
    nc.write(b"hi python\n");
    python.until(b"] hi python\n");
    // The same limit and errors as lines: an over-long send is refused with a
    // notice to its sender, and the next send is delivered.
    python.send(&[b'x'; 1500]);
    python.until(b"1024 bytes");
    sleep(GAP);
    python.send(b"after the long one");
    assert_eq!(
        nc.expect(|l| l.starts_with('[')),
        format!("[{peer}] after the long one")
    );
}

#[test]
fn a_line_arriving_in_pieces_with_pauses_stays_whole() {
    let (_server, mut nc, mut clients) = room(2);
    let (slow, rest) = clients.split_first_mut().unwrap();
    let newline_less = &mut rest[0];
    let (slow_peer, other_peer) = (slow.peer(), newline_less.peer());
    // A newline client on a slow link, or telnet in character mode: after its first
    // line, a line whose pieces come 300 ms apart (one inside a UTF-8 character)
    // is still one message.
    slow.send(b"first\n");
    assert_eq!(
        nc.expect(|l| l.starts_with('[')),
        format!("[{slow_peer}] first")
    );
    for piece in [&b"slo"[..], b"w li", b"ne caf\xc3", b"\xa9\r", b"\n"] {
        slow.send(piece);
        sleep(GAP);
    }
    assert_eq!(
        nc.expect(|l| l.starts_with('[')),
        format!("[{slow_peer}] slow line caf\u{e9}")
    );
    // A client with no newline at all: a pause inside a character does not end
    // the message; the pause after it does.
    newline_less.send(b"na\xc3");
    sleep(GAP);
    newline_less.send(b"\xafve");
    assert_eq!(
        nc.expect(|l| l.starts_with('[')),
        format!("[{other_peer}] na\u{ef}ve")
    );
    // Nothing else was relayed from either: no piece became a message of its own.
    nc.write(b"end\n");
    slow.until(b"] end\n");
    assert_eq!(chat_from(&slow.got, &other_peer), ["na\u{ef}ve"]);
    newline_less.until(b"] end\n");
    assert_eq!(
        chat_from(&newline_less.got, &slow_peer),
        ["first", "slow line caf\u{e9}"]
    );
}

#[test]
fn telnet_ctrl_c_is_answered_and_the_user_hears_and_talks_on() {
    let (_server, mut nc, mut clients) = room(1);
    let telnet = &mut clients[0];
    let peer = telnet.peer();
    telnet.send(b"hello from telnet\r\n");
    assert_eq!(
        nc.expect(|l| l.starts_with('[')),
        format!("[{peer}] hello from telnet")
    );
    // Ctrl-C in telnet while a line is half typed: IAC IP, IAC DO TIMING-MARK.
    telnet.send(b"half a li");
    telnet.send(&[0xff, 0xf4, 0xff, 0xfd, 0x06]);
    // IAC WILL TIMING-MARK comes back, so telnet shows the room again.
    telnet.until(&[0xff, 0xfb, 0x06]);
    nc.write(b"can you hear me\n");
    telnet.until(b"] can you hear me\n");
    // The interrupted line is gone; the next is whole and valid UTF-8.
    telnet.send(b"still here\r\n");
    assert_eq!(
        nc.expect(|l| l.starts_with('[')),
        format!("[{peer}] still here")
    );
    // Options are refused: DO ECHO gets WONT ECHO, WILL NAWS gets DONT NAWS.
    telnet.send(&[0xff, 0xfd, 0x01, 0xff, 0xfb, 0x1f]);
    telnet.until(&[0xff, 0xfc, 0x01, 0xff, 0xfe, 0x1f]);
    // The only IAC bytes telnet ever got are the three answers.
    telnet.drain(Duration::from_millis(300));
    let iacs = telnet.got.iter().filter(|&&b| b == 0xff).count();
    assert_eq!(iacs, 3, "{:02x?}", telnet.got);
}

#[test]
fn clients_that_send_no_telnet_command_never_get_one() {
    let (_server, mut nc, mut clients) = room(2);
    let (telnet, rest) = clients.split_first_mut().unwrap();
    let quiet = &mut rest[0];
    telnet.send(&[0xff, 0xfd, 0x06, 0xff, 0xfd, 0x01]);
    telnet.until(&[0xff, 0xfb, 0x06, 0xff, 0xfc, 0x01]);
    telnet.send(b"hi all\r\n");
    quiet.until(b"] hi all\n");
    quiet.send(b"and hello\n");
    nc.expect(|l| l.ends_with("] hi all"));
    nc.expect(|l| l.ends_with("] and hello"));
    quiet.drain(Duration::from_millis(300));
    assert!(!quiet.got.contains(&0xff), "{:02x?}", quiet.got);
}

#[test]
fn an_empty_message_is_no_message_in_either_mode() {
    let server = Server::start(&[]);
    let mut sender = BinClient::join(server.addr);
    let receiver = BinClient::join(server.addr);
    let mut text = TextClient::connect(server.addr);
    text.expect(|l| l.starts_with("*** welcome"));
    let text_peer = text.peer();
    receiver.heard_of(&text_peer);
    sender.heard_of(&text_peer);
    sender.say("one");
    sender.send(&Frame::Chat { text: "" });
    sender.say("two");
    let next_chat = || match receiver.expect(|g| matches!(g, Got::Chat { .. })) {
        Got::Chat { seq, text, .. } => (seq, text),
        _ => unreachable!(),
    };
    let mut chats = vec![next_chat(), next_chat()];
    text.write(b"\n\r\nthree\n");
    chats.push(next_chat());
    // The receiver gets the three messages, numbered one after the other: the empty
    // ones were neither relayed nor numbered.
    let texts: Vec<&str> = chats.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(chats[1].0, chats[0].0 + 1);
    assert_eq!(chats[2].0, chats[1].0 + 1);
    // The sender has two acks and no error for the empty Chat.
    let mut acks = Vec::new();
    while acks.len() < 2 {
        match sender.next() {
            Got::Ack { seq } => acks.push(seq),
            Got::Notice {
                code: Some(code),
                text,
            } => panic!("error {code}: {text}"),
            _ => {}
        }
    }
    assert_eq!(acks, [chats[0].0, chats[1].0]);
    // And the text client saw no `[PEER] ` line with nothing after it.
    let lines: Vec<String> = (0..2)
        .map(|_| text.expect(|l| l.starts_with('[')))
        .collect();
    assert!(
        lines[0].ends_with("] one") && lines[1].ends_with("] two"),
        "{lines:?}"
    );
}
