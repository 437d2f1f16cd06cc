//! The binary: its first stdout line, console commands, signals and exit statuses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_host-server");

mod readme;

use readme::long_option;

/// The server process, killed if a test fails before it exits.
struct Proc {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["--bind", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .expect("first line names the address")
        .trim()
        .to_string();
    (Proc { child, stdout }, addr)
}

fn client(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Waits (bounded) for the process to exit; returns its status code.
fn exit_code(p: &mut Proc) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the server did not exit");
}

fn read_all(mut s: &TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn console_list_then_close_exits_zero() {
    let (mut p, addr) = spawn(&[]);
    let mut c = client(&addr);
    c.write_all(b"hi\n").unwrap();
    let mut line = [0u8; 9];
    c.read_exact(&mut line).unwrap(); // "*** welco"
    let mut stdin = p.child.stdin.take().unwrap();
    stdin.write_all(b"list\nfrob\nclose\n").unwrap();
    let mut out = String::new();
    for _ in 0..4 {
        p.stdout.read_line(&mut out).unwrap();
    }
    let me = c.local_addr().unwrap().to_string();
    assert!(out.contains("1 connected"), "{out}");
    assert!(out.contains(&me), "{out}");
    assert!(out.contains("unknown command \"frob\""), "{out}");
    assert_eq!(exit_code(&mut p), Some(0));
    read_all(&c);
}

#[test]
fn sigterm_sends_the_shutdown_notice_and_exits_zero() {
    let (mut p, addr) = spawn(&[]);
    // End of input on stdin leaves the server running.
    drop(p.child.stdin.take());
    let c = client(&addr);
    (&c).write_all(b"hello\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(p.child.try_wait().unwrap().is_none());
    let pid = p.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let text = read_all(&c);
    assert!(text.ends_with("*** server shutting down\n"), "{text:?}");
    assert_eq!(exit_code(&mut p), Some(0));
}

#[test]
fn help_explains_the_flags_and_bad_flags_exit_two() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--bind",
        "--backlog",
        "--max-clients",
        "--outbox-limit",
        "--rate-limit",
        "--dead-peer-timeout",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let bad = Command::new(BIN).arg("--max-clients=0").output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn an_address_in_use_exits_one_with_a_message() {
    let (_p, addr) = spawn(&[]);
    let out = Command::new(BIN)
        .args(["--bind", &addr])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // SO_REUSEADDR does not allow two listeners on one port.
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen on"));
}

/// Starts the server with `--bind BIND` alone; returns it and its first stdout line
/// (empty if it exited without one).
fn spawn_bound(bind: &str) -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["--bind", bind])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    (Proc { child, stdout }, first.trim().to_string())
}

#[test]
fn bind_takes_a_host_name_and_a_missing_port() {
    let (_p, first) = spawn_bound("localhost:0");
    let addr: std::net::SocketAddr = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .parse()
        .unwrap();
    // IPv4 first, so clients told 127.0.0.1 (most are) reach it.
    assert!(
        addr.is_ipv4() && addr.ip().is_loopback() && addr.port() != 0,
        "{addr}"
    );
    let s = client(&addr.to_string());
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.starts_with("*** welcome"), "{line:?}");

    // No port: 9000. On a shared machine it may be taken, and then the refusal
    // names it instead.
    let (mut p, first) = spawn_bound("127.0.0.1");
    if first.is_empty() {
        assert_eq!(exit_code(&mut p), Some(1));
        let mut err = String::new();
        p.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(err.contains("cannot listen on 127.0.0.1:9000"), "{err}");
    } else {
        assert_eq!(first, "listening on 127.0.0.1:9000");
    }
}

#[test]
fn a_bad_bind_address_is_a_usage_error_that_says_what_is_allowed() {
    for (bad, says) in [
        ("127.0.0.1:99999", "0 to 65535"),
        ("no where", "neither an IP address nor a host name"),
        ("[::1]:x", "0 to 65535"),
    ] {
        let out = Command::new(BIN).args(["--bind", bad]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(says) && err.contains("HOST:PORT"),
            "{bad}: {err}"
        );
    }
}

/// Relays between its standard streams and an interactive bash on a new
/// pseudo-terminal, as a person at a terminal would type; on the end of its input it
/// kills bash's jobs and exits.
const PTY_SHELL: &str = r#"
import os, pty, select, sys
pid, fd = pty.fork()
if pid == 0:
    os.environ["PS1"] = "$ "
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
inp = True
while True:
    r, _, _ = select.select([fd, 0] if inp else [fd], [], [], 20)
    if not r:
        break
    if fd in r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    if inp and 0 in r:
        data = os.read(0, 4096)
        if data:
            os.write(fd, data)
        else:
            inp = False
            os.write(fd, b"kill -9 %1; exit\n")
"#;

/// Issue 21, point 1: `host-server ... &` in an interactive shell used to be stopped
/// at once (SIGTTIN: its console read the terminal from the background), so no
/// client got even the preamble. The server says once that its console is off, and
/// when it is on again, whatever the log filter (`RUST_LOG`) lets through.
#[test]
fn a_server_in_the_background_of_an_interactive_shell_serves() {
    for log in ["", "RUST_LOG=warn ", "RUST_LOG=off "] {
        serves_in_the_background(log);
    }
}

/// Starts the server with `log` (an environment assignment or nothing) before its
/// command, in the background of an interactive shell, and chats through it.
fn serves_in_the_background(log: &str) {
    let shell = Command::new("python3")
        .args(["-c", PTY_SHELL])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    // Killed if the test fails: the terminal closes, and its hangup ends bash and
    // the server.
    let mut shell = Shell(shell);
    let mut typing = shell.0.stdin.take().unwrap();
    let screen = shell.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(screen).lines().map_while(Result::ok) {
            let _ = tx.send(line.trim_end_matches('\r').to_string());
        }
    });
    // Every line the terminal showed that was not waited for.
    let seen = std::cell::RefCell::new(Vec::new());
    let wait_for = |what: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(line) => seen.borrow_mut().push(line),
                Err(_) => panic!(
                    "{log}: no {what:?} on the terminal; it showed:\n{:#?}",
                    seen.borrow()
                ),
            }
        }
    };
    // `tostop`: a background job that writes to the terminal is stopped too, unless
    // it ignores SIGTTOU; the server's first line and its log must not stop it.
    writeln!(typing, "stty tostop; {log}{BIN} --bind 127.0.0.1:0 &").unwrap();
    let listening = wait_for("listening on ");
    let addr = listening.split("listening on ").nth(1).unwrap().trim();
    wait_for("console off: the server is in the background");

    let a = client(addr);
    let mut a_lines = BufReader::new(a.try_clone().unwrap());
    let mut line = String::new();
    a_lines.read_line(&mut line).unwrap();
    assert!(line.starts_with("*** welcome"), "{line:?}");
    let mut b = client(addr);
    b.write_all(b"from the background\n").unwrap();
    let b_peer = b.local_addr().unwrap();
    loop {
        line.clear();
        a_lines.read_line(&mut line).unwrap();
        if line.starts_with('[') {
            break;
        }
    }
    assert_eq!(line, format!("[{b_peer}] from the background\n"));

    // Brought to the foreground, its console answers; `close` stops it.
    writeln!(typing, "fg").unwrap();
    wait_for("console on");
    let again: Vec<String> = seen
        .borrow()
        .iter()
        .filter(|l| l.contains("console off"))
        .cloned()
        .collect();
    assert!(again.is_empty(), "{log}: said more than once: {again:?}");
    writeln!(typing, "list").unwrap();
    wait_for("2 connected");
    writeln!(typing, "close").unwrap();
    wait_for("closing: dropping every client");
    drop(typing);
    assert!(shell.0.wait().unwrap().success());
}

/// The terminal's relay process, killed when dropped.
struct Shell(Child);

impl Drop for Shell {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the server with `args` and nothing on standard input, to its exit.
fn output(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Issue 21, point 2: `--backplane foo` used to print `listening on`, then fail with
/// `Redis URL did not parse - InvalidClientConfig` and exit 1.
#[test]
fn a_malformed_backplane_url_is_a_usage_error_before_listening() {
    for (url, says) in [
        ("foo", "not a Redis URL"),
        ("http://127.0.0.1:6379", "http:// is not a Redis URL"),
        ("redis://127.0.0.1:6379/zero", "Invalid database number"),
    ] {
        let out = output(&["--bind", "127.0.0.1:0", "--backplane", url]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert!(out.stdout.is_empty(), "{url}: printed {:?}", out.stdout);
        assert!(
            err.contains(says) && err.contains("redis://HOST:PORT"),
            "{url}: {err}"
        );
    }
}

/// Issue 21, point 2: an unreachable Redis was found only after `listening on`.
#[test]
fn an_unreachable_backplane_fails_before_listening() {
    // A port nothing listens on: connections to it are refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://:s3cret@127.0.0.1:{port}");
    let out = output(&["--bind", "127.0.0.1:0", "--backplane", &url]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "printed {:?}", out.stdout);
    assert!(
        err.contains(&format!(
            "cannot reach the backplane redis://:***@127.0.0.1:{port}"
        )),
        "{err}"
    );
}

/// Issue 21, point 3: each of these was refused (exit 2) with a message that did not
/// say what was wrong ("number would be zero for non-zero type", "invalid digit found
/// in string", "invalid IP address syntax", "unexpected argument '-1' found").
#[test]
fn bad_values_are_refused_with_what_is_expected() {
    for (args, says) in [
        (
            &["--rate-limit", "0"][..],
            "expected messages per second, a whole number from 1 to 4294967295; leave the option out for no limit",
        ),
        (&["--stall-timeout", "1.5"], "expected whole seconds, from 1 to 86400"),
        (&["--dead-peer-timeout", "1"], "expected whole seconds, from 2 to 86400"),
        (
            &["--allow", "10.0.0.0/33"],
            "prefix length 33 is over 32, the most for an IPv4 network",
        ),
        (&["--backlog", "-1"], "invalid value '-1' for '--backlog <N>': expected a whole number from 1 to 65535"),
        (&["--max-clients", "many"], "expected a whole number from 1 to 1000000"),
        (&["--writer-threads", "65"], "expected a whole number from 0 to 64"),
        (&["--ipv6-prefix", "129"], "expected a whole number from 1 to 128"),
        (
            &["--proxy-listen", "127.0.0.1:0", "--proxy-timeout-ms", "5s"],
            "expected a whole number from 100 to 60000",
        ),
        (
            &["--tls-cert", "c", "--tls-key", "k", "--tls-handshake-timeout-ms", "-5"],
            "expected a whole number from 100 to 60000",
        ),
    ] {
        let out = output(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// The help of the long option `name` in `help` (`--help`'s output), its lines joined.
fn option_help(help: &str, name: &str) -> String {
    let mut lines = help.lines().skip_while(|l| long_option(l) != Some(name));
    assert!(lines.next().is_some(), "no {name} in {help}");
    lines
        .take_while(|l| long_option(l).is_none())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("[default"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Issue 21, point 4: the help, the log and the README disagreed with the server.
#[test]
fn help_and_log_say_what_the_server_does() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    // Exactly half is accepted (a_pace_mark_over_half_the_outbox_limit_is_refused).
    assert!(help.contains("at most half of --outbox-limit"), "{help}");
    assert!(!help.contains("less than half"), "{help}");
    // Issue 17, point 3: a sender is first told its messages are delayed, then the truth.
    let append = option_help(&help, "--backplane-append-timeout-ms");
    for said in [
        "delayed (error code 13)",
        "later the truth",
        "not delivered",
    ] {
        assert!(append.contains(said), "no {said:?} in {append:?}");
    }

    // An IPv6 network on an IPv4 listener can never match: the log says so.
    let (mut p, addr) = spawn(&["--allow", "::1", "--allow", "127.0.0.1"]);
    let c = client(&addr);
    (&c).write_all(b"hello\n").unwrap();
    let mut welcome = String::new();
    BufReader::new(&c).read_line(&mut welcome).unwrap();
    let pid = p.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert_eq!(exit_code(&mut p), Some(0));
    let mut log = String::new();
    p.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains(&format!(
            "--allow ::1/128 can never match: the server listens on {addr}, IPv4 only"
        )),
        "{log}"
    );
    assert!(!log.contains("--allow 127.0.0.1/32 can never"), "{log}");
    // One connection, not "1 connections".
    assert!(
        log.contains("shutting down: closing 1 connection\n"),
        "{log}"
    );
}

/// Issue 21, point 4: every option of `--help` has its row in the README's table.
#[test]
fn the_readme_lists_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    readme::assert_readme_lists_every_option(&help, "## host-server");
}
