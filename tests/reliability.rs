//! The reliability promise: every client receives every message broadcast while it is
//! connected, in one and the same server order, or it is disconnected with a reason.

use std::collections::{BTreeMap, HashMap};
use std::thread;
use std::time::Duration;

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
        c.expect(|g| matches!(g, Got::Notice { text, .. } if text.contains(&last)));
    }
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                let me = c.stream.local_addr().unwrap().to_string();
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
