//! Limits: the client cap, slow consumers, refusers past their cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use proto_core::{ErrorCode, NoticeKind};

use crate::util::{config, is_notice, start, Bin, Got, Text};

#[test]
fn a_client_past_the_limit_is_told_the_server_is_full_and_nobody_notices() {
    let mut cfg = config();
    cfg.max_clients = 2;
    let server = start(cfg);
    let mut a = server.binary();
    let mut b = server.binary();
    a.sync();
    // Binary form for a binary client...
    let mut third = Bin::connect(server.addr);
    let got = third.until_closed();
    assert!(
        matches!(
            &got[..],
            [Got::Notice {
                kind: NoticeKind::Error(ErrorCode::SERVER_FULL),
                ..
            }]
        ),
        "{got:?}"
    );
    // ...text form for a text client.
    let mut fourth = Text::connect(server.addr);
    let lines = fourth.until_closed();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("*** server full"), "{lines:?}");
    assert_eq!(a.sync(), []);
    assert_eq!(b.sync(), []);
    // A place freed is a place taken.
    drop(b);
    let left = a.got();
    assert!(matches!(
        left,
        Got::Notice {
            kind: NoticeKind::Leave,
            ..
        }
    ));
    // The place is free once b's threads have ended, a moment after it left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Bin::connect(server.addr);
        match c.got() {
            Got::Notice {
                kind: NoticeKind::Welcome,
                ..
            } => break,
            got => assert!(Instant::now() < deadline, "still full: {got:?}"),
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_stalled_reader_is_dropped_while_the_others_get_everything() {
    let mut cfg = config();
    cfg.outbox_limit = 128 * 1024;
    cfg.send_buffer = Some(8192);
    let server = start(cfg);
    let mut stalled = Bin::connect(server.addr);
    stalled.welcome();
    let stalled_addr = stalled.addr;
    let mut fast = server.binary();
    let mut sender = server.binary();
    fast.sync();
    const COUNT: usize = 3000;
    let text = "m".repeat(1000);
    // The sender keeps at most WINDOW messages ahead of the fast reader, so only the
    // stalled reader falls behind.
    const WINDOW: usize = 32;
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let reader = thread::spawn(move || {
        let mut seqs = Vec::new();
        let mut dropped = false;
        while seqs.len() < COUNT {
            match fast.got() {
                Got::Broadcast { seq, .. } => {
                    seqs.push(seq);
                    counter.store(seqs.len(), Ordering::Release);
                }
                got if is_notice(&got, NoticeKind::Leave, stalled_addr) => dropped = true,
                other => panic!("unexpected {other:?}"),
            }
        }
        (seqs, dropped, fast)
    });
    for n in 0..COUNT {
        while n >= received.load(Ordering::Acquire) + WINDOW {
            assert!(!reader.is_finished(), "the fast reader stopped early");
            thread::yield_now();
        }
        sender.chat(&text);
    }
    let (seqs, mut dropped, mut fast) = reader.join().unwrap();
    for pair in seqs.windows(2) {
        assert_eq!(pair[1], pair[0] + 1);
    }
    if !dropped {
        let got = fast.got();
        dropped = is_notice(&got, NoticeKind::Leave, stalled_addr);
    }
    assert!(dropped, "the room was not told the stalled client left");
    // Now the stalled client reads: whole frames in order, then the end.
    let got = stalled.until_closed();
    let broadcasts: Vec<u64> = got
        .iter()
        .filter_map(|g| match g {
            Got::Broadcast { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    assert!(broadcasts.len() < COUNT, "it was never dropped");
    for pair in broadcasts.windows(2) {
        assert_eq!(pair[1], pair[0] + 1);
    }
}

#[test]
fn past_max_refusers_a_newcomer_is_turned_away_at_once_in_text() {
    let mut cfg = config();
    cfg.max_clients = 1;
    cfg.max_refusers = 0;
    let server = start(cfg);
    let mut a = server.binary();
    a.sync();
    // With no refuser thread to wait for its preamble, even a binary client gets the
    // text form, with no preamble before it.
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(&mut s, &proto_core::PREAMBLE).unwrap();
    let mut got = Vec::new();
    // The server closes without reading the preamble, which may reset the connection
    // once the bytes are in: what arrived before that is what counts.
    let _ = std::io::Read::read_to_end(&mut s, &mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("*** server full"), "{got:?}");
    assert_eq!(a.sync(), []);
}
