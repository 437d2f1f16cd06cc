//! Heavier soak runs, ignored by default; run them with
//! `cargo test --release --test integration -- --ignored --nocapture --test-threads 1 soak`.
//! Each prints its figures: messages lost, order violations, peak server memory, time.
//! One at a time: together they would need more threads than this machine allows.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use embedded_io_adapters::std::FromStd;
use proto_core::{Frame, FrameReader};

use crate::util::{proc_kib, BinClient, Got, Server, WAIT};

#[test]
#[ignore]
fn soak_thousand_clients_hundred_messages_each() {
    const CLIENTS: usize = 1000;
    const EACH: usize = 100;
    let server = Server::start(&["--max-clients", "10000"]);
    let started = Instant::now();
    let clients: Vec<BinClient> = (0..CLIENTS)
        .map(|_| BinClient::connect(server.addr))
        .collect();
    for c in &clients {
        c.expect(|g| matches!(g, Got::Notice { .. }));
    }
    let joined = started.elapsed();
    // Each client sends its share while its own thread drains what it receives.
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut lost = 0usize;
                    let mut disorder = 0usize;
                    for k in 0..EACH {
                        c.say(&format!("{i} {k}"));
                    }
                    let want = (CLIENTS - 1) * EACH;
                    let (mut got, mut last_seq) = (0usize, 0u64);
                    while got < want {
                        match c.rx.recv_timeout(WAIT * 6) {
                            Ok(Got::Chat { seq, .. }) => {
                                disorder += usize::from(seq <= last_seq && got > 0);
                                last_seq = seq;
                                got += 1;
                            }
                            Ok(Got::End(_)) | Err(_) => {
                                lost = want - got;
                                break;
                            }
                            Ok(_) => {}
                        }
                    }
                    (lost, disorder)
                })
                .unwrap()
        })
        .collect();
    let (mut lost, mut disorder) = (0, 0);
    for h in handles {
        let (l, d) = h.join().unwrap();
        lost += l;
        disorder += d;
    }
    let pid = server.proc.child.id();
    println!(
        "soak 1000x100: {} deliveries, lost {lost}, order violations {disorder}, \
         peak server RSS {} KiB, joins {:?}, total {:?}",
        CLIENTS * (CLIENTS - 1) * EACH,
        proc_kib(pid, "VmHWM"),
        joined,
        started.elapsed()
    );
    assert_eq!((lost, disorder), (0, 0));
}

#[test]
#[ignore]
fn soak_five_thousand_idle_clients_all_still_receive() {
    const CLIENTS: usize = 5000;
    let server = Server::start(&["--max-clients", "10000"]);
    let pid = server.proc.child.id();
    let before = proc_kib(pid, "VmRSS");
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let s = TcpStream::connect(server.addr).expect("connect idle client");
        let mut w = FromStd::new(s.try_clone().unwrap());
        proto_core::write_preamble(&mut w).unwrap();
        idle.push(s);
    }
    let connected = started.elapsed();
    thread::sleep(Duration::from_secs(2));
    let rss = proc_kib(pid, "VmRSS");
    let mut sender = BinClient::connect(server.addr);
    sender.say("are you all still there?");
    let mut received = 0;
    for s in idle {
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut r = FromStd::new(s);
        if proto_core::read_preamble(&mut r).is_err() {
            continue;
        }
        let mut reader: FrameReader<_, 4096> = FrameReader::new(r);
        loop {
            match reader.next_frame() {
                Ok(Frame::Broadcast {
                    text: "are you all still there?",
                    ..
                }) => {
                    received += 1;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    println!(
        "soak 5000 idle: connected in {connected:?}, {received}/{CLIENTS} received, \
         server RSS {} KiB before, {} KiB with all connected ({:.1} KiB per client), peak {} KiB",
        before,
        rss,
        (rss.saturating_sub(before)) as f64 / CLIENTS as f64,
        proc_kib(pid, "VmHWM")
    );
    let left: Vec<String> = server
        .proc
        .err
        .all()
        .into_iter()
        .filter(|l| l.contains(" left"))
        .collect();
    assert_eq!(
        received,
        CLIENTS,
        "{} left, for example {:?}",
        left.len(),
        &left[..left.len().min(5)]
    );
}
