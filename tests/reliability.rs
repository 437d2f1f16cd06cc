//! The reliability promise: every client receives every message broadcast while it is
//! connected, in one and the same server order, or it is disconnected with a reason.

use std::collections::{BTreeMap, HashMap};
use std::thread;
use std::time::Duration;

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::util::{BinClient, Got, Server, WAIT};

/// What one client saw: its broadcasts in arrival order, and the acks of its own.
struct Seen {
    chats: Vec<(u64, String, String)>,
    acks: Vec<u64>,
}

fn collect(client: &BinClient, chats: usize, acks: usize) -> Seen {
    let mut seen = Seen {
        chats: Vec::new(),
        acks: Vec::new(),
    };
    while seen.chats.len() < chats || seen.acks.len() < acks {
        match client.rx.recv_timeout(WAIT * 3) {
            Ok(Got::Chat { seq, peer, text }) => seen.chats.push((seq, peer, text)),
            Ok(Got::Ack { seq }) => seen.acks.push(seq),
            Ok(Got::End(why)) => panic!("connection ended: {why}"),
            Ok(_) => {}
            Err(_) => panic!(
                "stalled at {} chats, {} acks",
                seen.chats.len(),
                seen.acks.len()
            ),
        }
    }
    seen
}

#[test]
fn ten_clients_thousand_messages_each_nothing_lost_one_order() {
    const CLIENTS: usize = 10;
    const EACH: usize = 1000;
    let server = Server::start(&[]);
    let clients: Vec<BinClient> = (0..CLIENTS)
        .map(|_| BinClient::connect(server.addr))
        .collect();
    // Everyone's welcome has arrived and everyone is in the room before the flood.
    let last = clients
        .last()
        .unwrap()
        .stream
        .local_addr()
        .unwrap()
        .to_string();
    for c in &clients[..CLIENTS - 1] {
        c.heard_of(&last);
    }
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                let me = c.peer();
                for k in 0..EACH {
                    c.say(&format!("{i} {k}"));
                }
                (me, collect(&c, (CLIENTS - 1) * EACH, EACH))
            })
        })
        .collect();
    let results: Vec<(String, Seen)> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let mut global: BTreeMap<u64, String> = BTreeMap::new();
    for (me, seen) in &results {
        let mut next_from: HashMap<&str, usize> = HashMap::new();
        for (seq, peer, text) in &seen.chats {
            assert_ne!(peer, me, "own message came back");
            let (sender, k) = text.split_once(' ').unwrap();
            let want = next_from.entry(sender).or_insert(0);
            assert_eq!(
                k.parse::<usize>().unwrap(),
                *want,
                "sender {sender} out of order at {me}"
            );
            *want += 1;
            let first = global.entry(*seq).or_insert_with(|| text.clone());
            assert_eq!(first, text, "clients disagree on message {seq}");
        }
        let mut all: Vec<u64> = seen
            .chats
            .iter()
            .map(|c| c.0)
            .chain(seen.acks.iter().copied())
            .collect();
        assert!(
            seen.chats.windows(2).all(|w| w[0].0 < w[1].0),
            "order broken at {me}"
        );
        all.sort_unstable();
        assert!(
            all.windows(2).all(|w| w[1] == w[0] + 1),
            "sequence gap at {me}"
        );
    }
    assert_eq!(global.len(), CLIENTS * EACH);
}

/// Reads a raw stream until the server closes it; returns the bytes read.
fn read_to_close(mut s: TcpStream, limit: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) => panic!(
                "server did not close the connection: {e} after {} bytes",
                all.len()
            ),
        }
    }
}

/// A binary connection that has sent its preamble and then never reads.
fn stalled(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&proto_core::PREAMBLE).unwrap();
    s
}

#[test]
fn stalled_reader_is_dropped_and_nobody_else_waits() {
    const FLOOD: usize = 20_000;
    let server = Server::start(&["--outbox-limit", "131072"]);
    let reader = BinClient::connect(server.addr);
    let stall = stalled(server.addr);
    let stall_peer = stall.local_addr().unwrap().to_string();
    let mut flooder = BinClient::connect(server.addr);
    reader.heard_of(&stall_peer);
    let body = "f".repeat(1000);
    let body_len = body.len();
    let sending = thread::spawn(move || {
        for k in 0..FLOOD {
            flooder.say(&format!("{k:05} {body}"));
        }
        flooder
    });
    let seen = collect(&reader, FLOOD, 0);
    for (k, (_, _, text)) in seen.chats.iter().enumerate() {
        assert!(
            text.starts_with(&format!("{k:05} ")),
            "message {k} out of order or lost"
        );
    }
    let _flooder = sending.join().unwrap();
    // The stalled client's connection ends, after what fitted of its outbox and the
    // socket buffers (about 4 MB here), far from the whole flood.
    let got = read_to_close(stall, WAIT);
    assert!(
        got.len() < FLOOD * body_len,
        "stalled client was sent {} bytes",
        got.len()
    );
    server.proc.err.expect("the eviction logged", |l| {
        l.contains(&stall_peer) && l.contains("slow")
    });
    // About 4.6 MiB here; holding the flood for the stalled client would take 20 MB.
    let peak = crate::util::proc_kib(server.proc.child.id(), "VmHWM");
    assert!(
        peak < 16 * 1024,
        "server peak RSS {peak} KiB for a 20 MB flood"
    );
}

#[test]
fn a_flooder_does_not_starve_the_others() {
    let server = Server::start(&[]);
    let reader = BinClient::connect(server.addr);
    let mut quiet = BinClient::connect(server.addr);
    let mut flooder = BinClient::connect(server.addr);
    let quiet_peer = quiet.peer();
    let flood_peer = flooder.peer();
    reader.heard_of(&flood_peer);
    quiet.heard_of(&flood_peer);
    const FLOOD: usize = 50_000;
    let sending = thread::spawn(move || {
        for k in 0..FLOOD {
            flooder.say(&format!("flood {k}"));
        }
        flooder
    });
    // Wait until the flood is flowing, then speak once.
    reader.expect(|g| matches!(g, Got::Chat { text, .. } if text == "flood 100"));
    quiet.say("a word in edgeways");
    let mut flood_after = 0;
    loop {
        match reader.next() {
            Got::Chat { peer, text, .. } if peer == quiet_peer => {
                assert_eq!(text, "a word in edgeways");
                break;
            }
            Got::Chat { .. } => flood_after += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        flood_after < FLOOD - 101,
        "the quiet client waited for the whole flood"
    );
    drop(sending.join().unwrap());
}

#[test]
fn rate_limit_slows_a_sender_without_dropping() {
    // The limit applies between reads: what one read brought in is relayed, then the
    // reader sleeps off its debt before reading again. A 4,096-byte read holds at most
    // 142 of these 29-byte frames, so the last read starts only once 2,858 messages
    // have been relayed, and a bucket of 1,000 refilled at 1,000 a second cannot allow
    // that before 1.858 s. Without the limit it all arrives in milliseconds.
    let server = Server::start(&["--rate-limit", "1000", "--read-buffer", "4096"]);
    let reader = BinClient::connect(server.addr);
    let mut sender = BinClient::connect(server.addr);
    let sender_peer = sender.peer();
    reader.heard_of(&sender_peer);
    // The sender's bucket exists (it joined) and holds at most a second's worth.
    let started = std::time::Instant::now();
    let sending = thread::spawn(move || {
        for k in 0..3000 {
            sender.say(&format!("rate limited message {k:05}"));
        }
        sender
    });
    let seen = collect(&reader, 3000, 0);
    let elapsed = started.elapsed();
    let texts: Vec<&str> = seen.chats.iter().map(|c| c.2.as_str()).collect();
    let want: Vec<String> = (0..3000)
        .map(|k| format!("rate limited message {k:05}"))
        .collect();
    assert_eq!(texts, want);
    drop(sending.join().unwrap());
    // A lower bound only: a loaded machine makes it slower, never faster.
    assert!(
        elapsed >= Duration::from_millis(1850),
        "3,000 messages at 1,000 a second arrived in {elapsed:?}"
    );
}
