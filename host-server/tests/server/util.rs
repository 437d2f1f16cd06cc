//! A server run in-process on 127.0.0.1:0, and raw clients that speak to it through
//! proto-core, every read bounded by a timeout.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use host_server::{bind, run, Config, Control, ServerError, Stop};
use proto_core::{
    read_preamble, write_frame, Frame, FrameReader, NoticeKind, PeerAddr, ReadError, PREAMBLE,
};

/// How long any single read may wait before the test fails instead of hanging.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings for tests: a short wait for silent clients, the rest as shipped.
pub fn config() -> Config {
    Config {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)).into(),
        sniff_timeout: Duration::from_millis(100),
        ..Config::default()
    }
}

/// A running server and the handle that stops it.
pub struct Server {
    pub addr: SocketAddr,
    pub control: Control,
    done: mpsc::Receiver<Result<(), ServerError>>,
    stopped: bool,
}

/// Starts a server with `config` on an ephemeral loopback port.
pub fn start(config: Config) -> Server {
    let listener = bind(&config).expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let control = Control::new();
    let (tx, done) = mpsc::channel();
    let c = control.clone();
    thread::spawn(move || {
        let _ = tx.send(run(listener, &config, &c));
    });
    Server {
        addr,
        control,
        done,
        stopped: false,
    }
}

impl Server {
    /// Stops the server and waits for `run` to return, failing the test if it takes
    /// more than a few seconds.
    pub fn stop(&mut self, how: Stop) {
        self.control.stop(how);
        let result = self
            .done
            .recv_timeout(Duration::from_secs(5))
            .expect("run did not return after stop");
        result.expect("run failed");
        self.stopped = true;
    }

    /// A binary client, welcomed.
    pub fn binary(&self) -> Bin {
        let mut c = Bin::connect(self.addr);
        c.welcome();
        c
    }

    /// A text client, welcomed.
    pub fn text(&self) -> Text {
        let mut c = Text::connect(self.addr);
        let welcome = c.line();
        assert!(welcome.starts_with("*** welcome"), "{welcome:?}");
        c
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped {
            self.control.stop(Stop::Close);
            let _ = self.done.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// A frame received by a binary client, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Broadcast {
        seq: u64,
        peer: PeerAddr,
        text: String,
    },
    Notice {
        kind: NoticeKind,
        peer: Option<PeerAddr>,
        text: String,
    },
    Ping(u64),
    Pong(u64),
    Ack(u64),
    Other(String),
}

impl From<Frame<'_>> for Got {
    fn from(f: Frame<'_>) -> Self {
        match f {
            Frame::Broadcast { seq, peer, text } => Got::Broadcast {
                seq,
                peer,
                text: text.into(),
            },
            Frame::Notice(n) => Got::Notice {
                kind: n.kind,
                peer: n.peer,
                text: n.text.into(),
            },
            Frame::Ping { nonce } => Got::Ping(nonce),
            Frame::Pong { nonce } => Got::Pong(nonce),
            Frame::Ack { seq } => Got::Ack(seq),
            other => Got::Other(format!("{other:?}")),
        }
    }
}

/// A binary client on a raw socket.
pub struct Bin {
    reader: FrameReader<FromStd<TcpStream>, 4096>,
    pub stream: TcpStream,
    /// Its address as the server sees it.
    pub addr: PeerAddr,
    nonce: u64,
}

impl Bin {
    /// Connects and exchanges preambles, without waiting for the welcome.
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        (&stream).write_all(&PREAMBLE).unwrap();
        let mut reader = FromStd::new(stream.try_clone().unwrap());
        read_preamble(&mut reader).expect("server preamble");
        Bin {
            addr: PeerAddr::from(stream.local_addr().unwrap()),
            reader: FrameReader::new(reader),
            stream,
            nonce: 0,
        }
    }

    /// The next frame; an error if the connection ends or a read times out.
    pub fn next(&mut self) -> Result<Got, ReadError<io::Error>> {
        self.reader.next_frame().map(Got::from)
    }

    /// The next frame, which must exist; pings are answered and skipped, as a live
    /// client would.
    pub fn got(&mut self) -> Got {
        loop {
            match self.next().expect("a frame") {
                Got::Ping(nonce) => self.send(&Frame::Pong { nonce }),
                got => return got,
            }
        }
    }

    /// Reads the welcome notice and returns its text.
    pub fn welcome(&mut self) -> String {
        match self.got() {
            Got::Notice {
                kind: NoticeKind::Welcome,
                peer,
                text,
            } => {
                assert_eq!(peer, Some(self.addr));
                text
            }
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    pub fn send(&mut self, frame: &Frame<'_>) {
        write_frame(&mut FromStd::new(&self.stream), frame).unwrap();
    }

    pub fn chat(&mut self, text: &str) {
        self.send(&Frame::Chat { text });
    }

    /// Pings and returns every frame that arrived before the pong: since the server
    /// answers in order, nothing sent to this client earlier can be missing.
    pub fn sync(&mut self) -> Vec<Got> {
        self.nonce += 1;
        let nonce = self.nonce;
        self.send(&Frame::Ping { nonce });
        let mut before = Vec::new();
        loop {
            match self.got() {
                Got::Pong(n) if n == nonce => return before,
                other => before.push(other),
            }
        }
    }

    /// Reads until the peer closes (or resets); returns what came before.
    pub fn until_closed(&mut self) -> Vec<Got> {
        let mut before = Vec::new();
        loop {
            match self.next() {
                Ok(got) => before.push(got),
                Err(ReadError::Closed) | Err(ReadError::UnexpectedEof) => return before,
                Err(ReadError::Transport(e)) if e.kind() != io::ErrorKind::WouldBlock => {
                    return before
                }
                Err(e) => panic!("connection did not close: {e:?}"),
            }
        }
    }
}

/// A text client on a raw socket, as `nc` would be.
pub struct Text {
    reader: BufReader<TcpStream>,
    pub stream: TcpStream,
    pub addr: PeerAddr,
}

impl Text {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        Text {
            addr: PeerAddr::from(stream.local_addr().unwrap()),
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// The next line, with its newline; empty at the end of the stream.
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("a line");
        line
    }

    pub fn send(&mut self, bytes: &[u8]) {
        (&self.stream).write_all(bytes).unwrap();
    }

    /// Reads lines until the stream ends; returns them.
    pub fn until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return lines,
                Ok(_) => lines.push(line),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    panic!("connection did not close; got {lines:?}")
                }
                Err(_) => return lines,
            }
        }
    }
}

/// True for a notice of `kind` about `peer`.
pub fn is_notice(got: &Got, kind: NoticeKind, peer: PeerAddr) -> bool {
    matches!(got, Got::Notice { kind: k, peer: Some(p), .. } if *k == kind && *p == peer)
}
