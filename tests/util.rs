//! Helpers that run the real binaries on ephemeral loopback ports.
//!
//! Every wait is bounded: a helper that waits for output gives up after a deadline and
//! fails the test with what it saw, so a broken build fails instead of hanging.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single expectation may wait before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// The path of a workspace binary, built next to this test executable.
///
/// `cargo test --workspace` builds the host crates' binaries because they have
/// integration tests of their own; run `cargo build --workspace` first otherwise.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// Lines a child process printed on one stream, collected by a thread.
pub struct Lines {
    rx: Receiver<String>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    fn spawn<R: Read + Send + 'static>(stream: R) -> Self {
        let (tx, rx) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                log.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { rx, seen }
    }

    /// Waits for the next line that satisfies `pred`, skipping others; panics with
    /// everything seen if none comes within [`WAIT`].
    pub fn expect(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!("no line {what}; saw {:#?}", self.all())
                }
            }
        }
    }

    /// Waits for a line equal to `want`.
    pub fn expect_eq(&self, want: &str) -> String {
        self.expect(&format!("== {want:?}"), |l| l == want)
    }

    /// Every line the stream carried, once it is closed (its process exited and its
    /// output was read to the end), waiting at most `limit` for that. Right after a
    /// process exits, [`Lines::all`] may still miss its last lines: the reading
    /// thread can be behind.
    pub fn all_when_closed(&self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        while self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
        {}
        self.all()
    }

    /// Every line seen so far.
    pub fn all(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Lines not yet consumed by `expect`, waiting at most `quiet` for each new one.
    pub fn drain(&self, quiet: Duration) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.rx.recv_timeout(quiet) {
            out.push(line);
        }
        out
    }
}

/// A child process with its stdin, stdout lines and stderr lines.
pub struct Proc {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let out = Lines::spawn(child.stdout.take().unwrap());
        let err = Lines::spawn(child.stderr.take().unwrap());
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            out,
            err,
        }
    }

    /// Writes a line to the child's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to child stdin");
        stdin.flush().unwrap();
    }

    /// Closes the child's stdin (end of input, as Ctrl-D).
    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// Sends a signal by name (`INT`, `TERM`, `KILL`) to the child.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the child to exit, at most `limit`; panics if it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "process did not exit within {limit:?}; stdout {:#?} stderr {:#?}",
                    self.out.all(),
                    self.err.all()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `host-server` and the address it listens on.
pub struct Server {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts a server on an ephemeral loopback port, with extra arguments.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", extra)
    }

    /// Starts a server bound to `bind`.
    pub fn start_on(bind: &str, extra: &[&str]) -> Self {
        Self::start_binary(&bin("host-server"), bind, extra)
    }

    /// Starts the `host-server` binary at `path` (a test that builds its own copy).
    pub fn start_binary(path: &std::path::Path, bind: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new(path);
        cmd.args(["--bind", bind]).args(extra);
        let proc = Proc::spawn(cmd);
        let line = proc
            .out
            .expect("`listening on ADDR`", |l| l.starts_with("listening on "));
        let addr = line["listening on ".len()..]
            .trim()
            .parse()
            .expect("listening address");
        Self { proc, addr }
    }

    /// How many files the server has open: one more after it accepts a connection.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proc.child.id()))
            .map(|d| d.count())
            .expect("read the server's /proc fd directory")
    }

    /// How many sockets the server holds open: unlike [`Server::open_files`], a
    /// file opened and closed for a moment elsewhere in the server cannot hide a
    /// connection accepted meanwhile.
    pub fn open_sockets(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.proc.child.id()))
            .expect("read the server's /proc fd directory")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
    }

    /// How many threads the server has: one per client in the room, plus its own.
    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.proc.child.id()))
            .map(|d| d.count())
            .expect("read the server's /proc task directory")
    }
}

/// A running `host-client` connected to a server.
pub struct Client {
    pub proc: Proc,
    /// The client's address as the server reports it in the welcome notice.
    pub peer: String,
}

impl Client {
    /// Starts a client against `addr` and waits for its welcome notice.
    pub fn join(addr: SocketAddr) -> Self {
        Self::join_with(addr, &[])
    }

    /// Starts a client with extra arguments and waits for its welcome notice.
    pub fn join_with(addr: SocketAddr, extra: &[&str]) -> Self {
        let mut cmd = Command::new(bin("host-client"));
        cmd.arg(addr.to_string()).args(extra);
        let proc = Proc::spawn(cmd);
        let welcome = proc.out.expect("welcome notice", |l| l.starts_with("*** "));
        let peer = first_peer(&welcome).unwrap_or_else(|| panic!("no address in {welcome:?}"));
        Self { proc, peer }
    }

    /// Sends a chat line.
    pub fn say(&mut self, text: &str) {
        self.proc.send(text);
    }

    /// Waits until this client prints `[from] text`.
    pub fn expect_chat(&self, from: &str, text: &str) {
        self.proc.out.expect_eq(&format!("[{from}] {text}"));
    }
}

/// A free loopback port: bound, read and released, so another process could take
/// it in between, which on a test machine's loopback does not happen in practice.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The first `ip:port` or `[ip6]:port` in a line.
pub fn first_peer(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
        .map(|w| w.trim_end_matches(['.', ':']))
        .find(|w| w.parse::<SocketAddr>().is_ok())
        .map(str::to_string)
}

/// A TCP connection to `addr` from the local address `src`: Linux lets a client bind
/// any 127.x.y.z, so tests on loopback can act as several hosts.
pub fn connect_from(addr: SocketAddr, src: IpAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(src, 0).into())
        .unwrap_or_else(|e| panic!("bind {src}: {e}"));
    socket
        .connect_timeout(&addr.into(), WAIT)
        .unwrap_or_else(|e| panic!("connect from {src} to {addr}: {e}"));
    socket.into()
}

/// A raw text-mode client, as `nc` would be.
pub struct TextClient {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl TextClient {
    pub fn connect(addr: SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).expect("connect text client"))
    }

    /// Connects from the local address `src` (any 127.x.y.z on Linux loopback).
    pub fn connect_from(addr: SocketAddr, src: IpAddr) -> Self {
        Self::over(connect_from(addr, src))
    }

    fn over(stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Self { stream, reader }
    }

    /// This client's address as the server sees it.
    pub fn peer(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    /// Writes raw bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("text client write");
    }

    /// Reads one line (with its LF stripped), failing the test after [`WAIT`].
    pub fn line(&mut self) -> String {
        self.next_line()
            .unwrap_or_else(|| panic!("text client: connection closed"))
    }

    /// Reads one line (with its LF stripped), or `None` if the server closed the
    /// connection; fails the test after [`WAIT`].
    pub fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_string()),
            Err(e) => panic!("text client: no line: {e}"),
        }
    }

    /// Reads lines until one satisfies `pred`.
    pub fn expect(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line();
            if pred(&line) {
                return line;
            }
        }
    }

    /// True if the server closed the connection (EOF) within [`WAIT`], draining lines.
    pub fn closed(&mut self) -> bool {
        let mut sink = Vec::new();
        self.reader.read_to_end(&mut sink).is_ok()
    }
}

/// A frame received by a [`BinClient`], owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A relayed message.
    Chat {
        seq: u64,
        peer: String,
        text: String,
    },
    /// The sequence number of one of this client's own messages.
    Ack { seq: u64 },
    /// A notice, with its error code if it is an error.
    Notice { code: Option<u8>, text: String },
    /// Anything else (ping, pong, bye).
    Other(String),
    /// The connection ended, with the reason.
    End(String),
}

/// A binary-protocol client driven directly by the test, speaking through proto-core.
pub struct BinClient {
    pub stream: TcpStream,
    pub rx: Receiver<Got>,
}

impl Drop for BinClient {
    /// Shuts the socket down, so the reader thread's clone of it does not keep the
    /// connection open after the test is done with the client.
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl BinClient {
    /// Connects, exchanges preambles and starts a thread that collects frames.
    pub fn connect(addr: SocketAddr) -> Self {
        Self::over(TcpStream::connect(addr).expect("connect binary client"))
    }

    /// Connects from the local address `src` (any 127.x.y.z on Linux loopback).
    pub fn connect_from(addr: SocketAddr, src: IpAddr) -> Self {
        Self::over(connect_from(addr, src))
    }

    /// [`BinClient::join`] from the local address `src`.
    pub fn join_from(addr: SocketAddr, src: IpAddr) -> Self {
        let client = Self::connect_from(addr, src);
        client.expect(
            |g| matches!(g, Got::Notice { code: None, text } if text.starts_with("welcome")),
        );
        client
    }

    fn over(stream: TcpStream) -> Self {
        use embedded_io_adapters::std::FromStd;
        use proto_core::{Frame, FrameReader, NoticeKind};
        let mut w = FromStd::new(stream.try_clone().unwrap());
        proto_core::write_preamble(&mut w).unwrap();
        let mut r = FromStd::new(stream.try_clone().unwrap());
        proto_core::read_preamble(&mut r).expect("server preamble");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader: FrameReader<_, 8192> = FrameReader::new(r);
            loop {
                let got = match reader.next_frame() {
                    Ok(Frame::Broadcast { seq, peer, text }) => Got::Chat {
                        seq,
                        peer: peer.to_string(),
                        text: text.to_string(),
                    },
                    Ok(Frame::Ack { seq }) => Got::Ack { seq },
                    Ok(Frame::Notice(n)) => Got::Notice {
                        code: match n.kind {
                            NoticeKind::Error(code) => Some(code.0),
                            _ => None,
                        },
                        text: n.text.to_string(),
                    },
                    Ok(other) => Got::Other(format!("{other:?}")),
                    Err(e) => {
                        let _ = tx.send(Got::End(e.to_string()));
                        break;
                    }
                };
                if tx.send(got).is_err() {
                    break;
                }
            }
        });
        Self { stream, rx }
    }

    /// Connects and waits until the server has let this client into the room, which
    /// is later than the preamble: joins happen in the order sniffing ends, not in the
    /// order of connects.
    pub fn join(addr: SocketAddr) -> Self {
        let client = Self::connect(addr);
        client.expect(
            |g| matches!(g, Got::Notice { code: None, text } if text.starts_with("welcome")),
        );
        client
    }

    /// This client's address as the server sees it.
    pub fn peer(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    /// Waits for a notice naming `peer`: its join, or this client's welcome if `peer`
    /// was in the room first. Either way both are in the room after it.
    pub fn heard_of(&self, peer: &str) -> Got {
        self.expect(|g| matches!(g, Got::Notice { text, .. } if text.contains(peer)))
    }

    /// Sends one chat message.
    pub fn say(&mut self, text: &str) {
        self.send(&proto_core::Frame::Chat { text });
    }

    /// Sends any frame.
    pub fn send(&mut self, frame: &proto_core::Frame<'_>) {
        let mut w = embedded_io_adapters::std::FromStd::new(&mut self.stream);
        proto_core::write_frame(&mut w, frame).expect("write frame");
    }

    /// The next frame, failing the test after [`WAIT`].
    pub fn next(&self) -> Got {
        self.rx
            .recv_timeout(WAIT)
            .expect("no frame from the server")
    }

    /// Frames until one satisfies `pred`.
    pub fn expect(&self, pred: impl Fn(&Got) -> bool) -> Got {
        loop {
            let got = self.next();
            if pred(&got) {
                return got;
            }
        }
    }
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}
