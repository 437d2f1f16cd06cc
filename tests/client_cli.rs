//! The console client's own behaviour: leaving, retrying, refusing long lines.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::sockets::Refusing;
use crate::util::{bin, Client, Proc, Server};

fn leave_and_check(how: &str, leave: impl FnOnce(&mut Client)) {
    let server = Server::start(&[]);
    let mut a = Client::join(server.addr);
    let b = Client::join(server.addr);
    a.proc.out.expect("join of b", |l| l.contains(&b.peer));
    leave(&mut a);
    let status = a.proc.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "{how}: {status:?} stderr {:#?}",
        a.proc.err.all()
    );
    b.proc.out.expect("leave notice", |l| {
        l.starts_with("*** ") && l.contains(&a.peer)
    });
}

#[test]
fn exit_command_leaves_with_status_0() {
    leave_and_check("exit", |c| c.proc.send("exit"));
}

#[test]
fn end_of_input_leaves_with_status_0() {
    leave_and_check("Ctrl-D", |c| c.proc.close_stdin());
}

#[test]
fn ctrl_c_leaves_with_status_0() {
    leave_and_check("Ctrl-C", |c| c.proc.signal("INT"));
}

#[test]
fn refused_connection_is_retried_exactly_attempts_times() {
    let refusing = Refusing::new();
    for attempts in [1u32, 3, 5] {
        let mut cmd = Command::new(bin("host-client"));
        cmd.arg(refusing.addr.to_string()).args([
            "--attempts",
            &attempts.to_string(),
            "--retry-delay",
            "150ms",
        ]);
        let started = Instant::now();
        let mut p = Proc::spawn(cmd);
        let status = p.wait_exit(Duration::from_secs(10));
        let elapsed = started.elapsed();
        assert_eq!(status.code(), Some(1), "attempts {attempts}");
        p.err.drain(Duration::from_millis(200));
        let refused = p
            .err
            .all()
            .iter()
            .filter(|l| l.to_lowercase().contains("refused"))
            .count();
        assert_eq!(refused as u32, attempts, "stderr {:#?}", p.err.all());
        let min = Duration::from_millis(150) * (attempts - 1);
        assert!(elapsed >= min, "{attempts} attempts took only {elapsed:?}");
    }
}

#[test]
fn over_long_line_is_refused_locally_and_the_client_goes_on() {
    let server = Server::start(&[]);
    let mut a = Client::join(server.addr);
    let b = Client::join(server.addr);
    a.proc.out.expect("join of b", |l| l.contains(&b.peer));
    a.say(&"x".repeat(1025));
    a.proc
        .err
        .expect("a refusal naming the limit", |l| l.contains("1024"));
    a.say(&"y".repeat(1024));
    b.expect_chat(&a.peer, &"y".repeat(1024));
    assert!(
        !b.proc.out.all().iter().any(|l| l.contains("xxxx")),
        "long line was sent"
    );
}
