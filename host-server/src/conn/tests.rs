//! `Conn` over TLS alone: a rustls client against a `Conn` over a loopback socket
//! pair, with buffers small enough that the socket fills.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, StreamOwned};
use socket2::SockRef;

use super::*;
use crate::tls::handshake;

const WAIT: Duration = Duration::from_secs(10);

/// A self-signed certificate for `localhost`, as the server's config and the DER a
/// client trusts.
fn certificate() -> (Arc<ServerConfig>, CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    (Arc::new(config), der)
}

type Client = StreamOwned<ClientConnection, TcpStream>;

/// A TLS `Conn` and the rustls client at its other end, the handshake done. With
/// `small`, the server's send side and the client's receive side are small, so the
/// socket fills after a few KiB.
fn tls_pair(small: bool) -> (Conn, Client) {
    let (server_config, der) = certificate();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = thread::spawn(move || {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        if small {
            socket.set_recv_buffer_size(4096).unwrap();
        }
        socket.connect(&addr.into()).unwrap();
        let tcp: TcpStream = socket.into();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let session = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut client = StreamOwned::new(session, tcp);
        while client.conn.is_handshaking() {
            client.conn.complete_io(&mut client.sock).unwrap();
        }
        client
    });
    let (inside, _) = listener.accept().unwrap();
    if small {
        SockRef::from(&inside).set_send_buffer_size(4096).unwrap();
        crate::sys::configure_notsent_for_tests(&inside).unwrap();
    }
    let conn = handshake(inside, &server_config, WAIT).unwrap();
    (conn, client.join().unwrap())
}

/// Sends all of `data` through `conn` with `send_now`, waiting for writability when
/// it takes nothing; returns whether ciphertext was ever left pending.
fn send_everything(conn: &Conn, data: &[u8]) -> bool {
    let mut at = 0;
    let mut saw_pending = false;
    let deadline = Instant::now() + WAIT;
    while at < data.len() || conn.has_pending() {
        assert!(Instant::now() < deadline, "not sent in time");
        let step = if at < data.len() {
            // Two slices, so taking across a slice boundary is exercised.
            let mid = (at + 3000).min(data.len());
            conn.send_now(&[IoSlice::new(&data[at..mid]), IoSlice::new(&data[mid..])])
        } else {
            conn.flush_pending().map(|_| 0)
        };
        match step {
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("send failed: {e}"),
        }
        saw_pending |= conn.has_pending();
        if conn.has_pending() {
            let _ = crate::sys::wait_writable(conn.tcp(), Duration::from_millis(100));
        }
    }
    saw_pending
}

/// Numbered lines, so a reordering or a loss shows.
fn numbered(lines: usize) -> Vec<u8> {
    (0..lines)
        .flat_map(|i| format!("line {i:06} of the test\n").into_bytes())
        .collect()
}

#[test]
fn ciphertext_the_socket_does_not_take_stays_pending_and_leaves_in_order() {
    let (conn, mut client) = tls_pair(true);
    let data = numbered(20_000);
    // Nobody reads yet: the socket fills and ciphertext is left pending, bounded.
    let mut at = 0;
    loop {
        assert!(at < data.len(), "the socket never filled");
        match conn.send_now(&[IoSlice::new(&data[at..])]) {
            Ok(n) => {
                assert!(n <= MAX_TAKE, "took {n} bytes at once");
                at += n;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(conn.has_pending(), "a full socket left nothing pending");
    assert!(at < data.len());
    {
        let pending = lock(&conn.tls.as_ref().unwrap().pending);
        let left = pending.buf.len() - pending.at;
        assert!(left <= MAX_TAKE + 1024, "{left} bytes pending");
    }
    // While something is pending, no new plaintext is taken.
    assert_eq!(
        conn.send_now(&[IoSlice::new(&data[at..])])
            .unwrap_err()
            .kind(),
        ErrorKind::WouldBlock
    );
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        let end = client.read_to_end(&mut got);
        (got, end.map(|_| ()))
    });
    send_everything(&conn, &data[at..]);
    conn.finish();
    // finish never blocks: the close_notify may be pending, and is flushed like
    // any pending bytes; the sending side is shut once it is out.
    send_everything(&conn, &[]);
    let (got, end) = reader.join().unwrap();
    // read_to_end succeeds only on a close_notify: without one rustls reports an
    // unexpected end.
    end.expect("the stream ended with close_notify");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes reordered or changed");
}

#[test]
fn plaintext_is_read_through_the_session_and_read_now_never_blocks() {
    let (conn, mut client) = tls_pair(false);
    let mut buf = [0u8; 64];
    assert_eq!(
        conn.read_now(&mut buf).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    client.write_all(b"hello over TLS\n").unwrap();
    client.flush().unwrap();
    conn.tcp().set_read_timeout(Some(WAIT)).unwrap();
    let n = conn.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello over TLS\n");
    // A reply in the other direction while the reader is idle.
    assert!(!send_everything(&conn, b"welcome\n"));
    let mut reply = [0u8; 8];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"welcome\n");
    // The client's close_notify is a clean end.
    client.conn.send_close_notify();
    client.flush().unwrap();
    assert_eq!(conn.read(&mut buf).unwrap(), 0);
}

#[test]
fn a_plain_conn_never_holds_bytes_back() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let conn = Conn::plain(listener.accept().unwrap().0);
    assert_eq!(
        conn.send_now(&[IoSlice::new(b"ab"), IoSlice::new(b"c")])
            .unwrap(),
        3
    );
    assert!(!conn.has_pending());
    assert!(conn.flush_pending().unwrap());
    conn.finish();
    let mut got = Vec::new();
    outside.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"abc");
}

fn outbox_limits() -> crate::outbox::Limits {
    crate::outbox::Limits {
        hard: 1 << 20,
        pace_at: 64 * 1024,
        min_rate: 1,
        grace: Duration::from_millis(250),
        stall: Duration::from_secs(10),
    }
}

#[test]
fn the_outbox_sends_on_what_a_tls_write_through_left_pending_then_close_notify() {
    use crate::outbox::{End, Outbox, Pacer, Pool, Workers};
    use crate::wire::Mode;
    let (conn, mut client) = tls_pair(true);
    let pool = Pool::new().unwrap();
    let _workers = Workers::start(&pool, 1, crate::tls::MIN_STACK).unwrap();
    let limits = outbox_limits();
    let pacer = Arc::new(Pacer::new(limits.grace));
    let outbox = Outbox::new(conn, Mode::Text, limits, pacer, pool.clone());
    // One chunk the connection takes whole (under one record) but the small socket
    // does not: the rest is ciphertext pending inside the Conn, nothing is queued,
    // and nothing more is pushed after it. Only the pool can send it on.
    let chunk = numbered(500);
    assert!(chunk.len() < MAX_TAKE);
    outbox.push_bytes(&chunk);
    assert!(
        outbox.conn().has_pending(),
        "the socket took it all at once"
    );
    assert_eq!(pool.registered(), 1, "pending ciphertext is not backlog");
    let mut got = vec![0u8; chunk.len()];
    client
        .read_exact(&mut got)
        .expect("all of the chunk arrives");
    assert!(got == chunk);
    // The end of a flushed TLS stream is a close_notify: read_to_end succeeds only
    // on one.
    outbox.end(End::Flush);
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("ended with close_notify");
    assert!(rest.is_empty());
    assert!(outbox.wait_done(Instant::now() + WAIT));
    assert_eq!(pool.registered(), 0);
}

#[test]
fn ciphertext_pending_while_the_outbox_is_idle_goes_out_once_the_reader_kicks() {
    use crate::outbox::{Outbox, Pacer, Pool, Workers};
    use crate::wire::Mode;
    let (conn, mut client) = tls_pair(true);
    // What the reader side can leave in the connection with the socket full (an
    // alert, a key update): bytes pending while no push is under way and the
    // outbox is not in the pool. Made here by a send_now nobody flushes.
    let data = numbered(2_000);
    let mut at = 0;
    while !conn.has_pending() {
        match conn.send_now(&[IoSlice::new(&data[at..])]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(conn.has_pending());
    let pool = Pool::new().unwrap();
    let _workers = Workers::start(&pool, 1, crate::tls::MIN_STACK).unwrap();
    let limits = outbox_limits();
    let pacer = Arc::new(Pacer::new(limits.grace));
    let outbox = Outbox::new(conn, Mode::Text, limits, pacer, pool.clone());
    assert_eq!(pool.registered(), 0);
    // After each read, the reader kicks the outbox.
    outbox.kick();
    assert_eq!(pool.registered(), 1, "pending bytes left to nobody");
    client
        .sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut got = vec![0u8; at];
    client
        .read_exact(&mut got)
        .expect("everything taken reaches the client");
    assert!(got == data[..at]);
    let deadline = Instant::now() + WAIT;
    while pool.registered() > 0 {
        assert!(
            Instant::now() < deadline,
            "still in the pool with nothing owed"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!outbox.conn().has_pending());
}

#[test]
fn a_tls_client_whose_socket_takes_no_pending_ciphertext_is_dropped_after_the_stall_timeout() {
    use crate::outbox::{End, Outbox, Pacer, Pool, Workers};
    use crate::wire::Mode;
    let (conn, client) = tls_pair(true);
    // The client never reads: fill its socket until ciphertext is left pending, and
    // a while later still is (the socket takes no more).
    let data = numbered(20_000);
    let mut at = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        match conn.send_now(&[IoSlice::new(&data[at..])]) {
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(100));
                if !conn.flush_pending().unwrap() {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "the socket never filled");
    }
    let pool = Pool::new().unwrap();
    let _workers = Workers::start(&pool, 1, crate::tls::MIN_STACK).unwrap();
    let stall = Duration::from_millis(600);
    let limits = crate::outbox::Limits {
        stall,
        ..outbox_limits()
    };
    let pacer = Arc::new(Pacer::new(limits.grace));
    let outbox = Outbox::new(conn, Mode::Text, limits, pacer, pool.clone());
    // Idle for longer than the stall timeout first: the clock starts with the
    // backlog, not before.
    thread::sleep(stall + Duration::from_millis(200));
    // The only backlog is that ciphertext: nothing is queued, nothing more is
    // pushed. The reader's kick hands it to the pool.
    let started = Instant::now();
    outbox.kick();
    assert_eq!(pool.registered(), 1);
    assert!(
        outbox.wait_done(Instant::now() + WAIT),
        "a client that takes nothing was never dropped"
    );
    assert!(started.elapsed() >= stall, "{:?}", started.elapsed());
    assert!(matches!(outbox.ended(), Some(End::Evict(_))));
    let why = outbox.dropped().unwrap();
    assert!(why.contains("nothing taken for"), "{why}");
    drop(client);
}

#[test]
fn many_small_chunks_taken_at_once_make_one_record() {
    let (conn, mut client) = tls_pair(false);
    let chunks: Vec<Vec<u8>> = (0..64)
        .map(|i| format!("line {i:04}\n").into_bytes())
        .collect();
    let slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let plain: usize = chunks.iter().map(Vec::len).sum();
    // First the client takes what followed the handshake (session tickets), so that
    // only the new record is on the wire below.
    client
        .sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = client.read(&mut [0u8; 1]);
    assert_eq!(conn.send_now(&slices).unwrap(), plain);
    assert!(!conn.has_pending());
    // The ciphertext on the wire, read raw: one TLS 1.3 record is the plaintext
    // plus 22 bytes (header, content type, tag); a record per chunk would add 22
    // bytes 64 times.
    let mut wire = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = client.sock.read(&mut buf) {
        if n == 0 {
            break;
        }
        wire.extend_from_slice(&buf[..n]);
    }
    assert_eq!(wire.len(), plain + 22, "{} bytes of ciphertext", wire.len());
}
