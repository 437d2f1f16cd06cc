//! The room: broadcast to the others, notices, one order for everyone.

use std::thread;

use proto_core::NoticeKind;

use crate::util::{config, is_notice, start, Bin, Got};

#[test]
fn a_message_reaches_every_other_client_but_not_its_sender() {
    let server = start(config());
    let mut a = server.binary();
    let mut b = server.binary();
    let mut c = server.binary();
    a.sync();
    b.sync();
    a.chat("hello room");
    // Once a's pong is back, its message has been handed to everyone else.
    let back = a.sync();
    assert!(
        !back.iter().any(|g| matches!(g, Got::Broadcast { .. })),
        "the sender got its own message back: {back:?}"
    );
    for reader in [&mut b, &mut c] {
        let got: Vec<_> = reader
            .sync()
            .into_iter()
            .filter(|g| matches!(g, Got::Broadcast { .. }))
            .collect();
        assert_eq!(got.len(), 1, "{got:?}");
        let Got::Broadcast { peer, text, .. } = &got[0] else {
            unreachable!()
        };
        assert_eq!((*peer, text.as_str()), (a.addr, "hello room"));
    }
}

#[test]
fn welcome_join_and_leave_are_announced() {
    let server = start(config());
    let mut a = Bin::connect(server.addr);
    let text = a.welcome();
    assert!(text.contains("nobody else"), "{text}");
    let mut b = Bin::connect(server.addr);
    let welcome = b.welcome();
    assert!(welcome.contains(&a.addr.to_string()), "{welcome}");
    assert!(welcome.contains(&b.addr.to_string()), "{welcome}");
    let joined = a.got();
    assert!(is_notice(&joined, NoticeKind::Join, b.addr), "{joined:?}");
    let b_addr = b.addr;
    drop(b);
    let left = a.got();
    assert!(is_notice(&left, NoticeKind::Leave, b_addr), "{left:?}");
}

#[test]
fn every_client_sees_one_gapless_order() {
    let server = start(config());
    let mut readers = [server.binary(), server.binary()];
    let mut senders: Vec<_> = (0..3).map(|_| server.binary()).collect();
    for c in readers.iter_mut().chain(senders.iter_mut()) {
        c.sync();
    }
    const EACH: usize = 300;
    const SENDERS: usize = 3;
    let handles: Vec<_> = senders
        .drain(..)
        .enumerate()
        .map(|(i, mut s)| {
            thread::spawn(move || {
                for n in 0..EACH {
                    s.chat(&format!("{i}:{n}"));
                }
                // Its own messages come back as acks, the others' as broadcasts.
                let (mut acks, mut others) = (Vec::new(), Vec::new());
                while acks.len() < EACH || others.len() < (SENDERS - 1) * EACH {
                    match s.got() {
                        Got::Ack(seq) => acks.push(seq),
                        Got::Broadcast { seq, .. } => others.push(seq),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                for list in [&acks, &others] {
                    assert!(list.windows(2).all(|p| p[0] < p[1]), "out of order");
                }
                let mut all: Vec<u64> = acks.into_iter().chain(others).collect();
                all.sort_unstable();
                all
            })
        })
        .collect();
    let mut seen = Vec::new();
    for r in &mut readers {
        let mut got = Vec::new();
        while got.len() < SENDERS * EACH {
            if let Got::Broadcast { seq, peer, text } = r.got() {
                got.push((seq, peer, text));
            }
        }
        for pair in got.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + 1, "gap or reorder: {pair:?}");
        }
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "the readers saw different orders");
    let every: Vec<u64> = seen[0].iter().map(|g| g.0).collect();
    for h in handles {
        assert_eq!(
            h.join().unwrap(),
            every,
            "a sender's acks and broadcasts have a gap"
        );
    }
}

#[test]
fn a_burst_of_joins_tells_each_client_only_of_later_arrivals() {
    let server = start(config());
    let mut clients: Vec<Bin> = (0..6)
        .map(|_| {
            let mut c = Bin::connect(server.addr);
            c.welcome();
            c
        })
        .collect();
    let addrs: Vec<_> = clients.iter().map(|c| c.addr).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let joins: Vec<_> = c
            .sync()
            .into_iter()
            .filter_map(|g| match g {
                Got::Notice {
                    kind: NoticeKind::Join,
                    peer,
                    ..
                } => peer,
                _ => None,
            })
            .collect();
        assert_eq!(joins, addrs[i + 1..], "client {i}");
    }
}
