//! The `host-client` binary through pipes, against a tiny fake server: exit
//! statuses, stdout carrying only chat, stderr carrying diagnostics.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use proto_core::{Frame, Notice, NoticeKind};

mod common;
#[path = "../../host-server/tests/readme/mod.rs"]
mod readme;

use common::{Peer, Refusing, LIMIT};

/// A running client binary with its stdout and stderr read line by line.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    err: Receiver<String>,
}

fn lines(stream: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Proc {
    fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_host-client"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let out = lines(child.stdout.take().unwrap());
        let err = lines(child.stderr.take().unwrap());
        Self {
            child,
            stdin,
            out,
            err,
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        while start.elapsed() < LIMIT {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        panic!("client did not exit in time");
    }

    fn all_err(&self) -> Vec<String> {
        // The reader thread ends at EOF, after the process has exited.
        let mut all = Vec::new();
        while let Ok(line) = self.err.recv_timeout(LIMIT) {
            all.push(line);
        }
        all
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

fn welcome(peer: &mut Peer) {
    peer.send(&Frame::Notice(Notice {
        kind: NoticeKind::Welcome,
        peer: Some(peer.addr),
        text: "welcome",
    }));
}

#[test]
fn piped_lines_are_sent_and_exit_leaves_with_status_0() {
    let (listener, addr) = listen();
    let mut p = Proc::spawn(&[&addr]);
    let mut peer = Peer::accept(&listener);
    welcome(&mut peer);
    assert_eq!(p.out.recv_timeout(LIMIT).unwrap(), "*** welcome");
    let from = peer.addr;
    peer.send(&Frame::Broadcast {
        seq: 1,
        peer: from,
        text: "tab\there, bell\x07",
    });
    assert_eq!(
        p.out.recv_timeout(LIMIT).unwrap(),
        format!("[{from}] tab\there, bell\\x07")
    );
    p.send("hello");
    p.send("exit");
    assert_eq!(
        peer.next().unwrap(),
        format!("{:?}", Frame::Chat { text: "hello" })
    );
    assert_eq!(peer.next().unwrap(), format!("{:?}", Frame::Bye));
    drop(peer);
    assert_eq!(p.wait().code(), Some(0));
    assert!(p.all_err().is_empty());
}

#[test]
fn end_of_input_leaves_with_status_0() {
    let (listener, addr) = listen();
    let mut p = Proc::spawn(&[&addr]);
    let mut peer = Peer::accept(&listener);
    p.stdin = None;
    assert_eq!(peer.next().unwrap(), format!("{:?}", Frame::Bye));
    drop(peer);
    assert_eq!(p.wait().code(), Some(0));
}

#[test]
fn sigint_says_bye_and_leaves_with_status_0() {
    let (listener, addr) = listen();
    let mut p = Proc::spawn(&[&addr]);
    let mut peer = Peer::accept(&listener);
    // The handler is installed once connected: the welcome's arrival proves it.
    welcome(&mut peer);
    p.out.recv_timeout(LIMIT).unwrap();
    let kill = Command::new("kill")
        .args(["-INT", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(peer.next().unwrap(), format!("{:?}", Frame::Bye));
    drop(peer);
    assert_eq!(p.wait().code(), Some(0));
}

#[test]
fn sigint_while_connecting_exits_1_with_a_message() {
    let (listener, addr) = listen();
    let mut p = Proc::spawn(&[&addr, "--connect-timeout", "30s"]);
    // Accepted but never greeted: the client waits for the server's preamble.
    let (_silent, _) = listener.accept().unwrap();
    let kill = Command::new("kill")
        .args(["-INT", &p.child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(p.wait().code(), Some(1));
    let err = p.all_err();
    assert!(
        err.iter()
            .any(|l| l == "host-client: error: interrupted before connecting"),
        "{err:?}"
    );
}

#[test]
fn losing_the_server_exits_1_even_while_stdin_stays_open() {
    let (listener, addr) = listen();
    let mut p = Proc::spawn(&[&addr]);
    let peer = Peer::accept(&listener);
    drop(peer);
    assert_eq!(p.wait().code(), Some(1));
    let err = p.all_err();
    assert!(
        err.iter()
            .any(|l| l.starts_with("host-client: error: connection lost")),
        "{err:?}"
    );
}

#[test]
fn a_refused_connection_exits_1_after_the_attempts() {
    let refusing = Refusing::new();
    let mut p = Proc::spawn(&[
        &refusing.addr.to_string(),
        "--attempts",
        "2",
        "--retry-delay",
        "10ms",
    ]);
    assert_eq!(p.wait().code(), Some(1));
    let err = p.all_err();
    let refused = err.iter().filter(|l| l.contains("refused")).count();
    assert_eq!(refused, 2, "{err:?}");
    assert!(
        err.iter().all(|l| l.starts_with("host-client: ")),
        "{err:?}"
    );
    assert!(p.out.recv_timeout(LIMIT).is_err(), "stdout must stay empty");
}

/// Runs the client with `args`, checks that it exits with the usage status and
/// prints nothing on standard output, and returns its standard error as one string.
fn usage_error(args: &[&str]) -> String {
    let mut p = Proc::spawn(args);
    assert_eq!(
        p.wait().code(),
        Some(i32::from(host_client::EXIT_USAGE)),
        "{args:?}"
    );
    assert!(p.out.recv_timeout(LIMIT).is_err(), "stdout must stay empty");
    p.all_err().join("\n")
}

#[test]
fn usage_errors_exit_2_and_help_lists_exit_statuses() {
    for bad in [
        &["--retry-delay", "later"][..],
        &["--attempts", "x"],
        &["--bogus"],
    ] {
        usage_error(bad);
    }
    let mut p = Proc::spawn(&["--help"]);
    assert_eq!(p.wait().code(), Some(0));
    let help: Vec<String> = p.out.iter().collect();
    assert!(help.iter().any(|l| l.contains("Exit status")), "{help:?}");
}

#[test]
fn a_port_out_of_range_is_a_usage_error() {
    let err = usage_error(&["127.0.0.1:99999"]);
    assert!(
        err.contains("'99999' is not a number from 1 to 65535"),
        "{err}"
    );
}

#[test]
fn a_zero_connect_timeout_is_a_usage_error() {
    let err = usage_error(&["--connect-timeout", "0s"]);
    assert!(
        err.contains("--connect-timeout") && err.contains("longer than zero"),
        "{err}"
    );
}

#[test]
fn zero_attempts_says_what_is_allowed() {
    let err = usage_error(&["--attempts", "0"]);
    assert!(err.contains("a whole number from 1"), "{err}");
}

#[test]
fn a_second_address_says_one_is_expected() {
    let err = usage_error(&["a", "b"]);
    assert!(
        err.contains("one server address is expected, but 'b' follows 'a'"),
        "{err}"
    );
}

#[test]
fn bench_idle_offers_no_stalled_readers() {
    let mut p = Proc::spawn(&["bench", "idle", "--help"]);
    assert_eq!(p.wait().code(), Some(0));
    let help = p.out.iter().collect::<Vec<_>>().join("\n");
    assert!(help.contains("--connections"), "{help}");
    assert!(!help.contains("--stalled"), "{help}");
    let err = usage_error(&["bench", "idle", "--stalled", "1"]);
    assert!(err.contains("--stalled"), "{err}");
    for scenario in ["fanout", "latency"] {
        let mut p = Proc::spawn(&["bench", scenario, "--help"]);
        assert_eq!(p.wait().code(), Some(0));
        assert!(p.out.iter().any(|l| l.contains("--stalled")), "{scenario}");
    }
}

/// Issue 21, point 3: clap took `-1` for a flag and suggested `-- -1`, which would
/// have made `-1` the server address.
#[test]
fn a_negative_attempt_count_says_what_is_allowed() {
    let err = usage_error(&["--attempts", "-1"]);
    assert!(
        err.contains("invalid value '-1' for '--attempts <N>': expected a whole number from 1"),
        "{err}"
    );
    assert!(!err.contains("-- -1"), "{err}");
}

/// Issue 21, point 3: a name that does not resolve was called an "invalid server
/// address" (exit 1); it is well formed, so not a usage error, and the message says
/// what failed.
#[test]
fn a_name_that_does_not_resolve_exits_1_saying_so() {
    // .invalid never resolves (RFC 6761).
    let mut p = Proc::spawn(&["no.such.host.invalid"]);
    assert_eq!(p.wait().code(), Some(1));
    let err = p.all_err().join("\n");
    assert!(
        err.starts_with(
            "host-client: error: cannot resolve the server address 'no.such.host.invalid': "
        ),
        "{err}"
    );
    assert!(!err.contains("invalid server address"), "{err}");
}

fn error_notice(peer: &mut Peer, code: proto_core::ErrorCode, text: &str) {
    peer.send(&Frame::Notice(Notice {
        kind: NoticeKind::Error(code),
        peer: None,
        text,
    }));
}

/// Issue 21, point 5: a refused client printed the server's notice, then
/// `error: connection lost: the server closed the connection`; it says once that it
/// was refused.
#[test]
fn a_refusal_is_said_once_as_a_refusal() {
    let (listener, addr) = listen();
    let mut p = Proc::spawn(&[&addr]);
    let mut peer = Peer::accept(&listener);
    error_notice(
        &mut peer,
        proto_core::ErrorCode::TOO_MANY_FROM_ADDRESS,
        "too many connections from your address: 127.0.0.1 holds 16",
    );
    drop(peer);
    assert_eq!(p.wait().code(), Some(1));
    assert_eq!(
        p.all_err(),
        ["host-client: error: the server refused the connection: too many connections from your address: 127.0.0.1 holds 16"]
    );
    assert!(p.out.recv_timeout(LIMIT).is_err(), "stdout must stay empty");
}

/// An error notice before the welcome that is not a refusal is still shown, first.
#[test]
fn an_error_notice_before_the_welcome_is_shown_when_the_welcome_follows() {
    let (listener, addr) = listen();
    let mut p = Proc::spawn(&[&addr]);
    let mut peer = Peer::accept(&listener);
    error_notice(&mut peer, proto_core::ErrorCode::MALFORMED, "odd");
    welcome(&mut peer);
    assert_eq!(p.out.recv_timeout(LIMIT).unwrap(), "*** odd");
    assert_eq!(p.out.recv_timeout(LIMIT).unwrap(), "*** welcome");
    p.send("exit");
    // The client leaves before the server goes away: on a loaded machine, a close
    // that came first would be read before `exit` and end the client with status 1.
    while peer.next().is_ok() {}
    drop(peer);
    assert_eq!(p.wait().code(), Some(0));
}

/// Issue 21, point 5: `::1:9000` was taken as the IPv6 address `::1:9000` on port
/// 9000, without a hint.
#[test]
fn an_ipv6_address_with_a_port_and_no_brackets_suggests_them() {
    let err = usage_error(&["::1:9000"]);
    assert!(
        err.contains("write [::1]:9000 for port 9000 of ::1"),
        "{err}"
    );
}

/// Every option of `--help` has its row in the README's table.
#[test]
fn the_readme_lists_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_host-client"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    readme::assert_readme_lists_every_option(&help, "## host-client");
}
