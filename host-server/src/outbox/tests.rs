//! The outbox over real loopback socket pairs: write-through, queueing, coalescing,
//! limits, pacing, and how it ends.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

use proto_core::{FeedResult, Frame, FrameDecoder, Notice, NoticeKind, PeerAddr};
use socket2::{Domain, SockRef, Socket, Type};

use super::*;
use crate::sys::WRITE_TIMEOUT;

const WAIT: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits {
        hard: 1 << 20,
        pace_at: 64 * 1024,
        min_rate: 8192,
        grace: Duration::from_millis(250),
        stall: Duration::from_secs(10),
    }
}

/// A connected pair: the server's side (small send buffer, bounded writes, as the
/// server sets it) and the peer, whose receive buffer is small when `small_peer`.
fn pair(small_peer: bool) -> (Conn, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let peer = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if small_peer {
        peer.set_recv_buffer_size(4096).unwrap();
    }
    peer.connect(&addr.into()).unwrap();
    let (inside, _) = listener.accept().unwrap();
    inside.set_write_timeout(Some(WRITE_TIMEOUT)).unwrap();
    if small_peer {
        SockRef::from(&inside).set_send_buffer_size(4096).unwrap();
        set_notsent_lowat_for_test(&inside);
    }
    let peer: TcpStream = peer.into();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    (Conn::plain(inside), peer)
}

fn set_notsent_lowat_for_test(stream: &TcpStream) {
    // The server bounds unsent bytes in the kernel (see `sys`); so do these tests,
    // so a stopped peer fills the outbox quickly.
    let _ = crate::sys::configure_notsent_for_tests(stream);
}

/// An outbox with its pacer and a writer pool of one thread (none: nothing sends
/// its backlog).
struct Fixture {
    outbox: Arc<Outbox>,
    pacer: Arc<Pacer>,
    pool: Arc<Pool>,
    _workers: Option<Workers>,
}

fn new_outbox(conn: Conn, mode: Mode, limits: Limits) -> Fixture {
    let fixture = unsent_outbox(conn, mode, limits);
    let workers = Workers::start(&fixture.pool, 1, 64 * 1024).unwrap();
    Fixture {
        _workers: Some(workers),
        ..fixture
    }
}

fn unsent_outbox(conn: Conn, mode: Mode, limits: Limits) -> Fixture {
    let pacer = Arc::new(Pacer::new(limits.grace));
    let pool = Pool::new().unwrap();
    let outbox = Outbox::new(conn, mode, limits, pacer.clone(), pool.clone());
    Fixture {
        outbox,
        pacer,
        pool,
        _workers: None,
    }
}

/// Waits until the outbox has closed (sent its last bytes, or cut).
fn closed(outbox: &Outbox) {
    assert!(outbox.wait_done(Instant::now() + WAIT), "still open");
}

fn queued(outbox: &Outbox) -> usize {
    lock(&outbox.state).queued
}

/// Reads until EOF (or an error such as a reset); returns what arrived.
fn read_all(peer: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match peer.read(&mut buf) {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn broadcast(seq: u64, text: &str) -> Vec<u8> {
    broadcast_in(Mode::Binary, seq, text)
}

fn broadcast_in(mode: Mode, seq: u64, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let peer = PeerAddr::V4 {
        ip: [127, 0, 0, 1],
        port: 1,
    };
    wire::encode_into(mode, &Frame::Broadcast { seq, peer, text }, &mut out);
    out
}

/// The WebSocket frames in `bytes`, which must all be whole.
fn ws_frames(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let len = wire::ws_frame_len(bytes).expect("a whole frame header");
        assert!(len <= bytes.len(), "the stream ended inside a frame");
        let (frame, rest) = bytes.split_at(len);
        frames.push(frame);
        bytes = rest;
    }
    frames
}

#[test]
fn an_idle_outbox_writes_through_without_queueing() {
    let (inside, mut peer) = pair(false);
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(inside, Mode::Text, limits());
    outbox.push(&mut Chunk::new(b"hello\n"));
    assert_eq!(queued(&outbox), 0);
    assert_eq!(outbox.sent_total(), 6);
    let mut got = [0u8; 6];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello\n");
}

#[test]
fn what_the_socket_does_not_take_is_queued_and_sent_in_order_by_the_writer() {
    let (inside, mut peer) = pair(true);
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(inside, Mode::Text, limits());
    let line = |i: usize| format!("{i:05} {}\n", "x".repeat(994));
    for i in 0..200 {
        outbox.push(&mut Chunk::new(line(i).as_bytes()));
    }
    assert!(queued(&outbox) > 0, "a 4 KiB socket took 200 KB at once");
    outbox.end(End::Flush);
    let got = read_all(&mut peer);
    let want: String = (0..200).map(line).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want.as_bytes(), "bytes out of order");
    closed(&outbox);
}

#[test]
fn one_writev_sends_every_queued_chunk() {
    let (inside, mut peer) = pair(false);
    let Fixture { outbox, .. } = unsent_outbox(inside, Mode::Text, limits());
    let mut st = lock(&outbox.state);
    st.queue
        .extend([&b"abc"[..], b"defg", b"hi"].map(Arc::from));
    st.head_sent = 1;
    st.queued = 8;
    assert_eq!(outbox.send_queued(&mut st).unwrap(), (0, 8));
    assert!(st.queue.is_empty());
    drop(st);
    let mut got = [0u8; 8];
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"bcdefghi");
}

#[test]
fn the_hard_limit_drops_at_the_first_byte_past_it() {
    let (inside, _peer) = pair(true);
    let hard = 128 * 1024;
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(
        inside,
        Mode::Binary,
        Limits {
            hard,
            pace_at: 16 * 1024,
            ..limits()
        },
    );
    // Fill the socket until pushes queue, then fill the queue to the limit exactly.
    let frame = broadcast(1, &"y".repeat(1000));
    while queued(&outbox) == 0 {
        outbox.push(&mut Chunk::new(&frame));
    }
    while queued(&outbox) + frame.len() <= hard {
        outbox.push(&mut Chunk::new(&frame));
    }
    let fill = vec![b'z'; hard - queued(&outbox)];
    outbox.push(&mut Chunk::new(&fill));
    assert_eq!(queued(&outbox), hard);
    assert_eq!(outbox.ended(), None, "dropped at the limit, not past it");
    outbox.push(&mut Chunk::new(b"!"));
    assert_eq!(outbox.ended(), Some(End::Evict(ErrorCode::SLOW_CONSUMER)));
    let why = outbox.dropped().unwrap();
    assert!(
        why.contains(&format!("{} bytes waiting", hard + 1)),
        "{why}"
    );
}

#[test]
fn a_dropped_binary_client_gets_its_frame_finished_then_the_notice() {
    let (inside, mut peer) = pair(true);
    let Fixture {
        outbox,
        pacer,
        _workers,
        ..
    } = new_outbox(
        inside,
        Mode::Binary,
        Limits {
            hard: 64 * 1024,
            pace_at: 16 * 1024,
            ..limits()
        },
    );
    let mut seq = 0;
    while outbox.ended().is_none() {
        seq += 1;
        outbox.push(&mut Chunk::new(&broadcast(seq, &"q".repeat(1013))));
    }
    closed(&outbox);
    assert_eq!(queued(&outbox), 0, "the backlog was freed");
    assert_eq!(pacer.behind(), 0);
    let got = read_all(&mut peer);
    let mut decoder = FrameDecoder::new();
    let mut input = &got[..];
    let mut frames = Vec::new();
    while let FeedResult::Complete { item, remaining } = decoder.feed(input) {
        frames.push(format!("{:?}", item.expect("every frame whole")));
        input = remaining;
    }
    assert!(decoder.is_idle(), "the stream ended inside a frame");
    let last = frames.last().expect("frames");
    let want = format!(
        "{:?}",
        Frame::Notice(Notice {
            kind: NoticeKind::Error(ErrorCode::SLOW_CONSUMER),
            peer: None,
            text: "",
        })
    );
    let want_prefix = &want[..want.find("text").unwrap()];
    assert!(last.starts_with(want_prefix), "{last}");
    assert!(frames.len() > 2, "{}", frames.len());
}

#[test]
fn a_dropped_text_client_gets_its_line_finished_then_the_notice() {
    let (inside, mut peer) = pair(true);
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(
        inside,
        Mode::Text,
        Limits {
            hard: 64 * 1024,
            pace_at: 16 * 1024,
            ..limits()
        },
    );
    let line = format!("[127.0.0.1:1] {}\n", "t".repeat(985));
    while outbox.ended().is_none() {
        outbox.push(&mut Chunk::new(line.as_bytes()));
    }
    closed(&outbox);
    let got = String::from_utf8(read_all(&mut peer)).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    let (notice, relayed) = lines.split_last().unwrap();
    assert!(
        notice.starts_with(&format!("*** disconnected: {}", ErrorCode::SLOW_CONSUMER)),
        "{} bytes, {} lines, ends {:?}; dropped: {:?}",
        got.len(),
        lines.len(),
        &got[got.len().saturating_sub(60)..],
        outbox.dropped()
    );
    assert!(relayed.iter().all(|l| *l == &line[..line.len() - 1]));
    assert!(got.ends_with('\n'));
}

#[test]
fn a_dropped_websocket_client_gets_its_frame_finished_then_the_notice_then_a_close() {
    let (inside, mut peer) = pair(true);
    let limits = Limits {
        hard: 64 * 1024,
        pace_at: 16 * 1024,
        ..limits()
    };
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(inside, Mode::WebSocket, limits);
    let frame = broadcast_in(Mode::WebSocket, 1, &"w".repeat(1000));
    // Chunks larger than the socket takes at once, so the drop comes inside one.
    let chunk = frame.repeat(20);
    while outbox.ended().is_none() {
        outbox.push(&mut Chunk::new(&chunk));
    }
    closed(&outbox);
    let got = read_all(&mut peer);
    let frames = ws_frames(&got);
    let [relayed @ .., notice, close] = &frames[..] else {
        panic!("{} frames", frames.len());
    };
    let code = ErrorCode::SLOW_CONSUMER;
    let want = wire::error(Mode::WebSocket, code, &evict_text(code, &limits));
    assert_eq!(*notice, &want[..]);
    assert_eq!(*close, &wire::farewell(Mode::WebSocket)[..]);
    assert!(!relayed.is_empty());
    assert!(relayed.iter().all(|f| *f == &frame[..]));
}

#[test]
fn push_last_sends_the_backlog_then_the_last_bytes_then_a_websocket_close() {
    let (inside, mut peer) = pair(true);
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(inside, Mode::WebSocket, limits());
    let frame = broadcast_in(Mode::WebSocket, 1, &"l".repeat(1000));
    for _ in 0..50 {
        outbox.push(&mut Chunk::new(&frame));
    }
    assert!(queued(&outbox) > 0, "nothing waited for the pool");
    let last = wire::shutdown(Mode::WebSocket);
    outbox.push_last(&last);
    let got = read_all(&mut peer);
    closed(&outbox);
    let frames = ws_frames(&got);
    assert_eq!(frames.len(), 52);
    assert!(frames[..50].iter().all(|f| *f == &frame[..]));
    assert_eq!(frames[50], &last[..]);
    assert_eq!(frames[51], &wire::farewell(Mode::WebSocket)[..]);
}

#[test]
fn a_client_that_stops_reading_is_dropped_after_the_stall_timeout() {
    let (inside, mut peer) = pair(true);
    let stall = Duration::from_millis(600);
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(inside, Mode::Text, Limits { stall, ..limits() });
    let started = Instant::now();
    let line = format!("{}\n", "s".repeat(999));
    // A line every 10 ms, far below the hard limit: only the stall can end this.
    while outbox.ended().is_none() && started.elapsed() < WAIT {
        outbox.push(&mut Chunk::new(line.as_bytes()));
        thread::sleep(Duration::from_millis(10));
    }
    closed(&outbox);
    assert!(started.elapsed() >= stall, "{:?}", started.elapsed());
    let why = outbox.dropped().unwrap();
    assert!(why.contains("nothing taken for"), "{why}");
    let got = String::from_utf8(read_all(&mut peer)).unwrap();
    let last = got.lines().last().unwrap();
    assert!(last.starts_with("*** disconnected"), "{last}");
}

#[test]
fn going_behind_is_reported_once_and_catching_up_releases_the_pacer() {
    let (inside, mut peer) = pair(true);
    let pace_at = 16 * 1024;
    let Fixture {
        outbox,
        pacer,
        pool,
        _workers,
    } = new_outbox(
        inside,
        Mode::Text,
        Limits {
            pace_at,
            ..limits()
        },
    );
    let line = format!("{}\n", "p".repeat(999));
    while queued(&outbox) <= pace_at + 8 * 1024 {
        outbox.push(&mut Chunk::new(line.as_bytes()));
    }
    assert_eq!(pacer.behind(), 1, "counted once");
    assert_eq!(pool.registered(), 1);
    let other = outbox.key() + 1;
    assert!(pacer.held_for(other, Instant::now()).is_some());
    let reader = thread::spawn(move || read_all(&mut peer).len());
    let deadline = Instant::now() + WAIT;
    while pacer.behind() > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(pacer.behind(), 0, "caught up");
    outbox.end(End::Flush);
    closed(&outbox);
    assert!(reader.join().unwrap() > pace_at);
    assert_eq!(
        pool.registered(),
        0,
        "the pool keeps an outbox only while it owes it bytes"
    );
}

/// Fills an outbox that sends nothing of its backlog up to exactly `pace_at` queued.
fn fill_to(outbox: &Outbox, pace_at: usize) {
    let line = format!("{}\n", "g".repeat(999));
    while queued(outbox) + line.len() <= pace_at {
        outbox.push(&mut Chunk::new(line.as_bytes()));
    }
    let fill = vec![b'z'; pace_at - queued(outbox)];
    outbox.push(&mut Chunk::new(&fill));
    assert_eq!(queued(outbox), pace_at);
}

#[test]
fn a_client_that_never_read_holds_senders_for_the_grace_and_never_itself() {
    let (inside, _peer) = pair(true);
    let grace = Duration::from_millis(200);
    let pace_at = 8 * 1024;
    let Fixture { outbox, pacer, .. } = unsent_outbox(
        inside,
        Mode::Text,
        Limits {
            pace_at,
            grace,
            ..limits()
        },
    );
    let before = Instant::now();
    fill_to(&outbox, pace_at);
    outbox.push(&mut Chunk::new(b"!"));
    assert_eq!(pacer.behind(), 1);
    let me = outbox.key();
    let until = pacer
        .held_for(me + 1, Instant::now())
        .expect("holds the others");
    // It never read, so it has nothing banked: one grace from when bytes first waited
    // (rounded up to the end of the pacer's slot).
    assert!(
        until <= Instant::now() + grace + pacer.rounding(),
        "held past the grace"
    );
    assert!(until >= before + grace / 2, "held too briefly");
    // A sender never waits for itself: `wait` would ask `give_up` before waiting.
    assert_eq!(pacer.held_for(me, Instant::now()), None);
    pacer.wait(me, || panic!("the sender waited for itself"));
    // Another sender waits until the hold ends, then goes on.
    pacer.wait(me + 1, || false);
    assert!(Instant::now() >= until, "did not wait for the holder");
    assert_eq!(pacer.held_for(me + 1, Instant::now()), None);
    outbox.end(End::Cut);
    assert_eq!(pacer.behind(), 0, "an ended client holds nobody");
}

#[test]
fn a_pong_that_crosses_the_pace_mark_holds_senders_too() {
    let (inside, _peer) = pair(true);
    let pace_at = 8 * 1024;
    let Fixture { outbox, pacer, .. } = unsent_outbox(
        inside,
        Mode::Binary,
        Limits {
            pace_at,
            ..limits()
        },
    );
    fill_to(&outbox, pace_at);
    assert_eq!(pacer.behind(), 0, "at the mark, not past it");
    let mut pong = Vec::new();
    wire::encode_into(Mode::Binary, &Frame::Pong { nonce: 7 }, &mut pong);
    outbox.push_bytes(&pong);
    assert_eq!(pacer.behind(), 1);
    assert!(pacer.held_for(outbox.key() + 1, Instant::now()).is_some());
}

#[test]
fn flush_sends_everything_then_closes_and_cut_sends_nothing_more() {
    let (inside, mut peer) = pair(true);
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(inside, Mode::Text, limits());
    let line = format!("{}\n", "f".repeat(999));
    for _ in 0..50 {
        outbox.push(&mut Chunk::new(line.as_bytes()));
    }
    outbox.end(End::Flush);
    assert_eq!(read_all(&mut peer).len(), 50 * line.len());
    closed(&outbox);
    assert!(outbox.wait_done(Instant::now() + WAIT));

    let (inside, mut peer) = pair(true);
    let Fixture {
        outbox, _workers, ..
    } = new_outbox(inside, Mode::Text, limits());
    for _ in 0..50 {
        outbox.push(&mut Chunk::new(line.as_bytes()));
    }
    let sent = usize::try_from(outbox.sent_total()).unwrap();
    outbox.end(End::Cut);
    assert_eq!(queued(&outbox), 0, "the backlog was freed");
    closed(&outbox);
    let got = read_all(&mut peer).len();
    assert!(got <= sent, "{got} > {sent}: the cut sent queued bytes");
    assert!(got < 50 * line.len());
}

#[test]
fn frame_ends_are_found_in_both_modes() {
    let text = b"ab\ncde\nf\n";
    assert_eq!(frame_end(Mode::Text, text, 0), 0);
    assert_eq!(frame_end(Mode::Text, text, 1), 3);
    assert_eq!(frame_end(Mode::Text, text, 3), 3);
    assert_eq!(frame_end(Mode::Text, text, 4), 7);
    let mut binary = broadcast(1, "one");
    let first = binary.len();
    binary.extend(broadcast(2, "three"));
    assert_eq!(frame_end(Mode::Binary, &binary, 0), 0);
    assert_eq!(frame_end(Mode::Binary, &binary, 1), first);
    assert_eq!(frame_end(Mode::Binary, &binary, first), first);
    assert_eq!(frame_end(Mode::Binary, &binary, first + 1), binary.len());
}

#[test]
fn websocket_frame_ends_are_found_with_short_and_16_bit_lengths() {
    let mut ws = wire::error(Mode::WebSocket, ErrorCode::TOO_LONG, "short");
    let first = ws.len();
    ws.extend(wire::error(
        Mode::WebSocket,
        ErrorCode::TOO_LONG,
        &"x".repeat(300),
    ));
    assert_eq!(frame_end(Mode::WebSocket, &ws, 0), 0);
    assert_eq!(frame_end(Mode::WebSocket, &ws, 1), first);
    assert_eq!(frame_end(Mode::WebSocket, &ws, first), first);
    assert_eq!(frame_end(Mode::WebSocket, &ws, first + 3), ws.len());
}
