//! The bench against a tiny relaying server in the test: a thread per text
//! connection forwarding each line to every other connection, as a chat room does.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use host_client::bench::{self, BenchError, Scenario};
use host_client::cli::{Args, Command};

mod common;

use common::Refusing;

/// Starts a text-mode relay on 127.0.0.1 and returns its address.
fn relay() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let clients: Arc<Mutex<Vec<(usize, TcpStream)>>> = Arc::default();
    thread::spawn(move || {
        for (id, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            let writer = stream.try_clone().unwrap();
            clients.lock().unwrap().push((id, writer));
            let clients = Arc::clone(&clients);
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    for (other, w) in clients.lock().unwrap().iter_mut() {
                        if *other != id {
                            let _ = writeln!(w, "<user{id}> {line}");
                        }
                    }
                }
            });
        }
    });
    addr
}

fn scenario(args: &[&str]) -> Scenario {
    let argv = ["host-client", "bench"].iter().chain(args);
    match Args::try_parse_from(argv).unwrap().command {
        Some(Command::Bench { scenario }) => scenario,
        other => panic!("not a bench: {other:?}"),
    }
}

#[test]
fn fanout_counts_every_delivery_in_order() {
    let addr = relay();
    let s = scenario(&[
        "fanout", &addr, "--text", "-n", "4", "-s", "2", "-m", "50", "--size", "40",
    ]);
    let report = bench::run(&s).unwrap();
    assert_eq!(report.expected, 4 * 2 * 50);
    assert_eq!(report.delivered, report.expected, "{}", report.human());
    assert_eq!((report.lost(), report.order_violations), (0, 0));
    assert_eq!((report.decode_errors, report.disconnects), (0, 0));
    let json = report.json();
    assert!(!json.contains('\n'), "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (v["delivered"].as_u64(), v["lost"].as_u64()),
        (Some(400), Some(0))
    );
    let latency = &v["latency_us"];
    assert!(latency["p50"].as_u64() <= latency["max"].as_u64(), "{json}");
}

#[test]
fn idle_connections_are_proven_alive() {
    let addr = relay();
    let s = scenario(&["idle", &addr, "--text", "-c", "5", "-t", "100ms"]);
    let report = bench::run(&s).unwrap();
    assert_eq!(
        (report.delivered, report.expected),
        (5, 5),
        "{}",
        report.human()
    );
}

#[test]
fn a_dead_server_is_an_error_not_a_report() {
    let refusing = Refusing::new();
    let s = scenario(&[
        "fanout",
        &refusing.addr.to_string(),
        "--connect-timeout",
        "1s",
        // One connector tries the connections in order, so the first to fail is the
        // first; with several, which failure is reported first is a race.
        "--connectors",
        "1",
    ]);
    let err = bench::run(&s).expect_err("nothing listens there");
    assert!(matches!(err, BenchError::Connect { index: 0, .. }), "{err}");
}

#[test]
fn a_server_that_relays_nothing_fails_the_readiness_probe() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(2).collect();
        thread::sleep(Duration::from_secs(5));
        drop(held);
    });
    let s = scenario(&[
        "fanout",
        &addr,
        "--text",
        "-n",
        "1",
        "-s",
        "1",
        "--ready-timeout",
        "500ms",
    ]);
    let e = bench::run(&s).unwrap_err();
    assert!(e.to_string().contains("0 of 1 receivers"), "{e}");
}
