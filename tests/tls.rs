//! Built-in TLS on the room's own port: TLS clients of every kind (a rustls client,
//! `openssl s_client`, `ncat --ssl`, `socat`) share the room with plain ones under
//! their real addresses; the handshake is bounded and counted; `--tls-required`
//! turns plain clients away in plain text; RSA (PKCS#1), Ed25519 and chained
//! certificates serve as well as ECDSA ones; a bad certificate stops the start; a TLS
//! client dropped as too slow still reads its notice, then a close_notify; the chat
//! page and its WebSocket work over TLS (`https://`, `wss://`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::util::{bin, first_peer, Client, Proc, Server, TextClient, WAIT};

/// A directory with `chat.crt` and `chat.key`: a self-signed ECDSA P-256
/// certificate for `chat.example` and 127.0.0.1, made with the command the README
/// gives.
pub(crate) fn certificate(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chat-tls-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "365",
            "-keyout",
            "chat.key",
            "-out",
            "chat.crt",
            "-subj",
            "/CN=chat.example",
            "-addext",
            "subjectAltName=DNS:chat.example,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .current_dir(&dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success());
    dir
}

pub(crate) fn tls_server(dir: &Path, extra: &[&str]) -> Server {
    let crt = dir.join("chat.crt");
    let key = dir.join("chat.key");
    let mut args = vec![
        "--tls-cert",
        crt.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// A text client over TLS (rustls), trusting `dir`'s certificate.
struct TlsText {
    stream: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsText {
    fn connect(addr: SocketAddr, dir: &Path) -> Self {
        Self::over(TcpStream::connect(addr).unwrap(), dir)
    }

    fn over(tcp: TcpStream, dir: &Path) -> Self {
        Self::trusting(tcp, &dir.join("chat.crt"))
    }

    /// Over `tcp`, trusting the certificates in `ca` alone.
    fn trusting(tcp: TcpStream, ca: &Path) -> Self {
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("chat.example").unwrap();
        let session = ClientConnection::new(Arc::new(config), name).unwrap();
        Self {
            stream: StreamOwned::new(session, tcp),
            buf: Vec::new(),
        }
    }

    fn peer(&self) -> String {
        self.stream.sock.local_addr().unwrap().to_string()
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
        self.stream.flush().unwrap();
    }

    fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("TLS client: connection closed"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("TLS client: no line: {e}"),
            }
        }
    }

    fn expect(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line();
            if pred(&line) {
                return line;
            }
        }
    }
}

/// A text client over TLS in the room at `addr`, trusting `dir`'s certificate, whose
/// socket asks for a receive buffer of `recv_buffer` and waits up to `timeout` for a
/// read: its stream (reading plaintext) and what it read so far, its welcome first.
pub(crate) fn text_reader(
    addr: SocketAddr,
    dir: &Path,
    recv_buffer: usize,
    timeout: Duration,
) -> (StreamOwned<ClientConnection, TcpStream>, Vec<u8>) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut client = TlsText::over(socket.into(), dir);
    let welcome = client.line();
    assert!(welcome.starts_with("*** welcome"), "{welcome}");
    client.stream.sock.set_read_timeout(Some(timeout)).unwrap();
    let mut first = format!("{welcome}\n").into_bytes();
    first.append(&mut client.buf);
    (client.stream, first)
}

fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn tls_clients_of_every_kind_and_plain_clients_share_the_room() {
    let dir = certificate("room");
    let server = tls_server(&dir, &[]);
    let port = server.addr.port().to_string();
    let crt = dir.join("chat.crt");
    let crt = crt.to_str().unwrap();
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"plain here\n");
    plain.expect(|l| l.starts_with("*** welcome"));

    let mut rustls = TlsText::connect(server.addr, &dir);
    rustls.write(b"from rustls\n");
    let welcome = rustls.expect(|l| l.starts_with("*** welcome"));
    assert!(welcome.contains(&format!("you are {}", rustls.peer())));
    assert_eq!(
        plain.expect(|l| l.starts_with('[')),
        format!("[{}] from rustls", rustls.peer())
    );
    plain.write(b"to everyone\n");
    assert_eq!(
        rustls.expect(|l| l.starts_with('[')),
        format!("[{}] to everyone", plain.peer())
    );

    // host-client, in binary mode over TLS.
    let mut client = Client::join_with(server.addr, &["--tls", "--ca", crt]);
    let welcome_peer = client.peer.clone();
    client.say("from host-client");
    assert_eq!(
        plain.expect(|l| l.starts_with('[')),
        format!("[{welcome_peer}] from host-client")
    );
    plain.write(b"back to host-client\n");
    client.expect_chat(&plain.peer(), "back to host-client");
    server.proc.err.expect("binary TLS join logged", |l| {
        l.contains(&format!("{welcome_peer} joined (binary over TLS"))
    });

    let connect = format!("127.0.0.1:{port}");
    let mut tools = vec![(
        "openssl",
        vec![
            "s_client",
            "-connect",
            &connect,
            "-CAfile",
            crt,
            "-verify_return_error",
            "-verify_hostname",
            "chat.example",
            "-quiet",
        ],
    )];
    let socat_addr = format!("OPENSSL:127.0.0.1:{port},cafile={crt},commonname=chat.example");
    if has_program("ncat") {
        tools.push((
            "ncat",
            vec![
                "--ssl",
                "--ssl-verify",
                "--ssl-trustfile",
                crt,
                "--ssl-servername",
                "chat.example",
                "127.0.0.1",
                &port,
            ],
        ));
    }
    if has_program("socat") {
        tools.push(("socat", vec!["-", &socat_addr]));
    }
    for (program, args) in tools {
        // These tools send what is typed once the handshake is done; the server's
        // welcome comes once the first line is in.
        let mut cmd = Command::new(program);
        cmd.args(&args);
        let mut proc = Proc::spawn(cmd);
        proc.send(&format!("hello from {program}"));
        let welcome = proc
            .out
            .expect("welcome over TLS", |l| l.starts_with("*** welcome"));
        let peer = first_peer(&welcome).unwrap();
        assert_eq!(
            plain.expect(|l| l.starts_with('[')),
            format!("[{peer}] hello from {program}"),
            "{program}"
        );
        plain.write(format!("back to {program}\n").as_bytes());
        proc.out
            .expect_eq(&format!("[{}] back to {program}", plain.peer()));
        server.proc.err.expect("TLS join logged", |l| {
            l.contains(&format!("{peer} joined (text over TLS"))
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_handshake_that_never_finishes_is_closed_and_counted_meanwhile() {
    let dir = certificate("slow");
    let server = tls_server(
        &dir,
        &["--tls-handshake-timeout-ms", "600", "--max-clients", "1"],
    );
    // A ClientHello's first bytes, then nothing.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x00]).unwrap();
    thread::sleep(Duration::from_millis(100));
    // While it is in its handshake, it holds the one slot.
    let mut other = TextClient::connect(server.addr);
    other.write(b"hello?\n");
    let line = other.line();
    assert!(line.contains("server full"), "{line}");
    // It is closed at the timeout, and the log says why.
    let started = Instant::now();
    stalled.set_read_timeout(Some(WAIT)).unwrap();
    let mut sink = Vec::new();
    let _ = stalled.read_to_end(&mut sink);
    assert!(started.elapsed() < WAIT);
    server.proc.err.expect("timeout logged", |l| {
        l.contains("TLS handshake not done within 0.6 s")
    });
    // Then the slot is free again.
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = TextClient::connect(server.addr);
        c.write(b"hi\n");
        if c.line().starts_with("*** welcome") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was not given back");
        thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn handshakes_not_done_count_toward_the_per_address_cap() {
    use crate::util::connect_from;
    let dir = certificate("percap");
    let server = tls_server(
        &dir,
        &[
            "--tls-handshake-timeout-ms",
            "3000",
            "--max-per-address",
            "2",
            "--cap-loopback",
        ],
    );
    let host = "127.0.0.2".parse().unwrap();
    // Two connections from 127.0.0.2 that open a handshake and never finish it: one
    // sends a ClientHello's first 4 bytes, the other the two bytes that mark TLS.
    let mut stalled = Vec::new();
    for first in [&[0x16, 0x03, 0x01, 0x00][..], &[0x16, 0x03][..]] {
        let mut tcp = connect_from(server.addr, host);
        tcp.write_all(first).unwrap();
        stalled.push(tcp);
    }
    // While they are in their handshakes, 127.0.0.2 holds its two: a third is
    // refused with the cap's notice, in plain text to a plain client and over TLS to
    // a TLS one.
    let mut plain = TextClient::connect_from(server.addr, host);
    plain.write(b"hello?\n");
    let line = plain.line();
    assert!(
        line.starts_with("*** too many connections from your address"),
        "{line}"
    );
    assert!(line.contains("127.0.0.2 already holds 2"), "{line}");
    let mut tls = TlsText::over(connect_from(server.addr, host), &dir);
    tls.write(b"hello?\n");
    let line = tls.line();
    assert!(
        line.contains("too many connections from your address"),
        "{line}"
    );
    server.proc.err.expect("cap refusal logged", |l| {
        l.contains("127.0.0.2 already holds 2 connections")
    });
    // Another address is not held back: the room itself is not full.
    let mut other = TlsText::over(
        connect_from(server.addr, "127.0.0.3".parse().unwrap()),
        &dir,
    );
    other.write(b"hi\n");
    other.expect(|l| l.starts_with("*** welcome"));
    // At the timeout both are closed, and 127.0.0.2 gets its slots back.
    for tcp in &mut stalled {
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let mut sink = Vec::new();
        let _ = tcp.read_to_end(&mut sink);
    }
    let mut logged: Vec<String> = (0..2)
        .map(|_| {
            let line = server.proc.err.expect("timeout logged", |l| {
                l.contains("TLS handshake not done within 3.0 s")
            });
            first_peer(&line).unwrap()
        })
        .collect();
    let mut peers: Vec<String> = stalled
        .iter()
        .map(|t| t.local_addr().unwrap().to_string())
        .collect();
    logged.sort();
    peers.sort();
    assert_eq!(logged, peers);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = TlsText::over(connect_from(server.addr, host), &dir);
        c.write(b"back\n");
        if c.line().starts_with("*** welcome") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "127.0.0.2 did not get its slots back"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_required_refuses_plain_clients_in_plain_text() {
    let dir = certificate("required");
    let server = tls_server(&dir, &["--tls-required"]);
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"hello?\n");
    let line = plain.line();
    assert!(
        line.starts_with("*** refused: this server takes TLS connections only"),
        "{line}"
    );
    assert!(plain.closed());
    server.proc.err.expect("refusal logged", |l| {
        l.contains("refused, not TLS (--tls-required)")
    });
    // A browser that typed http:// is sent to https:// on the same port.
    let mut browser = TcpStream::connect(server.addr).unwrap();
    browser.set_read_timeout(Some(WAIT)).unwrap();
    let host = format!("chat.example:{}", server.addr.port());
    browser
        .write_all(format!("GET /?room HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .unwrap();
    let mut answer = String::new();
    let _ = browser.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains(&format!("\r\nLocation: https://{host}/?room\r\n")),
        "{answer}"
    );
    let mut tls = TlsText::connect(server.addr, &dir);
    tls.write(b"hi\n");
    tls.expect(|l| l.starts_with("*** welcome"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_certificate_or_key_stops_the_start_naming_the_file() {
    let dir = certificate("bad");
    let other = certificate("other");
    let crt = dir.join("chat.crt");
    let key = dir.join("chat.key");
    let wrong_key = other.join("chat.key");
    let missing = dir.join("missing.pem");
    let cases: [(&Path, &Path, &str); 4] = [
        (&missing, &key, "TLS certificate"),
        (&crt, &missing, "TLS key"),
        (&key, &key, "TLS certificate"),
        (&crt, &wrong_key, "cannot be used with certificate"),
    ];
    for (cert, key, says) in cases {
        let out = Command::new(bin("host-server"))
            .args(["--bind", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cert:?} {key:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
        let named = if says == "TLS key" { key } else { cert };
        assert!(err.contains(named.to_str().unwrap()), "{err}");
        if key == wrong_key.as_path() {
            // A pair that does not match names both files.
            assert!(err.contains(key.to_str().unwrap()), "{err}");
        }
        // It stopped before listening.
        assert!(out.stdout.is_empty());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}

/// The kinds of certificate a server is tried with besides the README's ECDSA P-256.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A self-signed RSA 2048 certificate; its key file is PKCS#1 (`RSA PRIVATE KEY`).
    Rsa,
    /// A self-signed Ed25519 certificate; its key file is PKCS#8.
    Ed25519,
    /// A leaf signed by an intermediate signed by a root (all ECDSA P-256): the
    /// certificate file holds the leaf then the intermediate, and clients trust the
    /// root alone.
    Chain,
}

/// A directory with `chat.crt` and `chat.key` of `kind` for `chat.example` and
/// 127.0.0.1, made with rcgen, and the file a client is to trust.
fn certificate_of(kind: Kind) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = std::env::temp_dir().join(format!("chat-tls-{kind:?}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = vec!["chat.example".to_string(), "127.0.0.1".to_string()];
    let named = |cn: &str, names: Vec<String>| {
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
    };
    let crt = dir.join("chat.crt");
    let key = dir.join("chat.key");
    match kind {
        Kind::Rsa => {
            // ring cannot make RSA keys, so openssl makes it and rcgen signs with it.
            let pkcs8 = dir.join("rsa.pk8");
            let openssl = |args: &[&str]| {
                let status = Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .expect("run openssl");
                assert!(status.success(), "openssl {args:?}");
            };
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "rsa.pk8",
            ]);
            openssl(&["pkey", "-in", "rsa.pk8", "-traditional", "-out", "chat.key"]);
            let pem = std::fs::read_to_string(&pkcs8).unwrap();
            let pair = KeyPair::from_pem(&pem).unwrap();
            let cert = named("chat.example", names).self_signed(&pair).unwrap();
            std::fs::write(&crt, cert.pem()).unwrap();
            let written = std::fs::read_to_string(&key).unwrap();
            assert!(written.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
            (dir, crt)
        }
        Kind::Ed25519 => {
            let pair = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            let cert = named("chat.example", names).self_signed(&pair).unwrap();
            std::fs::write(&crt, cert.pem()).unwrap();
            std::fs::write(&key, pair.serialize_pem()).unwrap();
            (dir, crt)
        }
        Kind::Chain => {
            let ca = |cn: &str| {
                let mut params = named(cn, Vec::new());
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params
            };
            let root_key = KeyPair::generate().unwrap();
            let root = ca("chat test root").self_signed(&root_key).unwrap();
            let root_issuer = Issuer::new(ca("chat test root"), root_key);
            let mid_key = KeyPair::generate().unwrap();
            let mid = ca("chat test intermediate")
                .signed_by(&mid_key, &root_issuer)
                .unwrap();
            let mid_issuer = Issuer::new(ca("chat test intermediate"), mid_key);
            let leaf_key = KeyPair::generate().unwrap();
            let leaf = named("chat.example", names)
                .signed_by(&leaf_key, &mid_issuer)
                .unwrap();
            std::fs::write(&crt, format!("{}{}", leaf.pem(), mid.pem())).unwrap();
            std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
            let root_file = dir.join("root.crt");
            std::fs::write(&root_file, root.pem()).unwrap();
            (dir, root_file)
        }
    }
}

#[test]
fn rsa_ed25519_and_chained_certificates_serve_tls_clients() {
    for kind in [Kind::Rsa, Kind::Ed25519, Kind::Chain] {
        println!("certificate: {kind:?}");
        let (dir, ca) = certificate_of(kind);
        let server = tls_server(&dir, &[]);
        let mut rustls = TlsText::trusting(TcpStream::connect(server.addr).unwrap(), &ca);
        rustls.write(b"hello\n");
        rustls.expect(|l| l.starts_with("*** welcome"));
        // The server sent its whole chain: the client could not have built a path
        // to the root it trusts without the intermediate.
        let sent = rustls.stream.conn.peer_certificates().unwrap().len();
        assert_eq!(sent, if let Kind::Chain = kind { 2 } else { 1 }, "{kind:?}");

        let mut client = Client::join_with(server.addr, &["--tls", "--ca", ca.to_str().unwrap()]);
        let peer = client.peer.clone();
        client.say(&format!("{kind:?} from host-client"));
        assert_eq!(
            rustls.expect(|l| l.starts_with('[')),
            format!("[{peer}] {kind:?} from host-client"),
        );
        rustls.write(format!("{kind:?} back\n").as_bytes());
        client.expect_chat(&rustls.peer(), &format!("{kind:?} back"));
        server.proc.err.expect("binary TLS join logged", |l| {
            l.contains(&format!("{peer} joined (binary over TLS"))
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_tls_client_dropped_as_too_slow_reads_its_notice_then_close_notify() {
    let dir = certificate("slowreader");
    let server = tls_server(&dir, &["--stall-timeout", "2"]);
    // A TLS reader with a small receive buffer that stops reading after its welcome.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut stalled = TlsText::over(socket.into(), &dir);
    stalled.write(b"hi\n");
    stalled.expect(|l| l.starts_with("*** welcome"));
    let me = stalled.peer();
    // A plain flooder: 3 MB of numbered lines, far over the 1 MiB outbox limit.
    let mut flood = TcpStream::connect(server.addr).unwrap();
    let writer = thread::spawn(move || {
        let mut chunk = String::new();
        for k in 0..6000 {
            chunk.push_str(&format!("flood {k:05} {}\n", "x".repeat(480)));
            if chunk.len() > 60_000 {
                if flood.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
                chunk.clear();
            }
        }
        let _ = flood.write_all(chunk.as_bytes());
        thread::sleep(Duration::from_secs(1));
    });
    server.proc.err.expect("the TLS reader dropped", |l| {
        l.contains(&me) && l.contains("left: dropped")
    });
    // Everything it was sent: whole lines, the notice last, then a clean end.
    let mut got = std::mem::take(&mut stalled.buf);
    let end = stalled.stream.read_to_end(&mut got);
    assert!(end.is_ok(), "no close_notify after the notice: {end:?}");
    let text = String::from_utf8(got).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.last().unwrap();
    assert!(last.starts_with("*** disconnected: too slow"), "{last}");
    for line in &lines[..lines.len() - 1] {
        assert!(
            line.starts_with("*** ") || (line.starts_with('[') && line.len() > 480),
            "cut line before the notice: {line:?}"
        );
    }
    writer.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs host-client with `args` and an empty input; returns its exit code and its
/// standard error.
fn host_client(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin("host-client"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn host_client_refuses_a_certificate_that_does_not_verify_and_never_falls_back() {
    let dir = certificate("wrongca");
    let other = certificate("wrongca-other");
    let server = tls_server(&dir, &[]);
    let addr = server.addr.to_string();
    let wrong = other.join("chat.crt");
    let right = dir.join("chat.crt");
    // Another CA; the right CA but another name; no CA (the platform's roots).
    for args in [
        vec![addr.as_str(), "--tls", "--ca", wrong.to_str().unwrap()],
        vec![
            addr.as_str(),
            "--tls",
            "--ca",
            right.to_str().unwrap(),
            "--server-name",
            "elsewhere.example",
        ],
        vec![addr.as_str(), "--tls"],
    ] {
        let (code, err) = host_client(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(err.contains("certificate is not accepted"), "{err}");
    }
    // Only the refused handshakes reached the server: nobody joined in plain text.
    let mut plain = TextClient::connect(server.addr);
    plain.write(b"hi\n");
    let welcome = plain.expect(|l| l.starts_with("*** welcome"));
    assert!(welcome.contains("nobody else is here"), "{welcome}");
    assert!(!server
        .proc
        .err
        .all()
        .iter()
        .any(|l| l.contains(" joined (binary")));

    // --tls against a server without TLS is an error too.
    let plain_server = Server::start(&[]);
    let (code, err) = host_client(&[
        &plain_server.addr.to_string(),
        "--tls",
        "--ca",
        right.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("TLS"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other);
}

#[test]
fn the_bench_runs_over_tls_in_every_mode() {
    let dir = certificate("bench");
    let server = tls_server(&dir, &["--tls-required"]);
    let crt = dir.join("chat.crt");
    // Binary, text, and WebSocket clients over TLS (wss://).
    for mode in [&[][..], &["--text"][..], &["--ws"][..]] {
        let mut args = vec![
            "bench".to_string(),
            "fanout".into(),
            "-n".into(),
            "3".into(),
            "-s".into(),
            "2".into(),
            "-m".into(),
            "20".into(),
            "--tls".into(),
            "--ca".into(),
            crt.to_str().unwrap().into(),
            "--json".into(),
            server.addr.to_string(),
        ];
        args.extend(mode.iter().map(|s| s.to_string()));
        let out = Command::new(bin("host-client"))
            .args(&args)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{report} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // --tls-required: every one of them really was TLS, and all 120 arrived.
        assert!(report.contains("\"delivered\":120,\"lost\":0"), "{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tls_client_turned_away_is_told_why_over_tls() {
    let dir = certificate("full");
    let server = tls_server(&dir, &["--max-clients", "1"]);
    let mut inside = TlsText::connect(server.addr, &dir);
    inside.write(b"hi\n");
    inside.expect(|l| l.starts_with("*** welcome"));
    // A text client over TLS reads the refusal in TLS, then a clean end.
    let mut refused = TlsText::connect(server.addr, &dir);
    refused.write(b"hello?\n");
    let line = refused.line();
    assert!(line.contains("the room holds 1 clients"), "{line}");
    let mut rest = Vec::new();
    refused.stream.read_to_end(&mut rest).expect("close_notify");
    // host-client --tls says it was refused and exits 1.
    let crt = dir.join("chat.crt");
    let mut cmd = Command::new(bin("host-client"));
    cmd.arg(server.addr.to_string())
        .args(["--tls", "--ca", crt.to_str().unwrap()]);
    let mut client = Proc::spawn(cmd);
    client.err.expect("the refusal", |l| {
        l.contains("refused the connection") && l.contains("the room holds 1 clients")
    });
    assert_eq!(client.wait_exit(WAIT).code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_every_refuser_busy_a_tls_client_gets_an_alert_and_a_plain_one_the_notice() {
    let dir = certificate("overflow");
    let server = tls_server(&dir, &["--max-clients", "1", "--max-refusers", "0"]);
    let mut inside = TlsText::connect(server.addr, &dir);
    inside.write(b"hi\n");
    inside.expect(|l| l.starts_with("*** welcome"));
    // No refuser thread to do a handshake: the TLS client's handshake ends on a
    // fatal internal_error alert, a refusal it can read, not a corrupt record.
    for _ in 0..3 {
        let mut refused = TlsText::connect(server.addr, &dir);
        let mut buf = [0u8; 64];
        let err = refused
            .stream
            .read(&mut buf)
            .expect_err("a handshake refused");
        let tls_error = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .unwrap_or_else(|| panic!("not a TLS error: {err:?}"));
        assert_eq!(
            *tls_error,
            rustls::Error::AlertReceived(rustls::AlertDescription::InternalError),
            "{err}"
        );
        let peer = refused.peer();
        server.proc.err.expect("the alert logged", |l| {
            l.contains(&peer)
                && l.contains("internal_error alert")
                && l.contains("--max-refusers 0")
        });
    }
    // Plain clients still get the text notice: one that says nothing (after the
    // wait for a TLS hello), and one that speaks first.
    for first in [&b""[..], b"hello?\n"] {
        let mut plain = TcpStream::connect(server.addr).unwrap();
        plain.set_read_timeout(Some(WAIT)).unwrap();
        plain.write_all(first).unwrap();
        let mut got = String::new();
        plain.read_to_string(&mut got).unwrap();
        assert!(got.contains("the room holds 1 clients"), "{got:?}");
    }
    // The room heard of none of them.
    inside.write(b"still here\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tls_client_reads_the_shutdown_notice_then_close_notify() {
    let dir = certificate("shutdown");
    let mut server = tls_server(&dir, &[]);
    let mut client = TlsText::connect(server.addr, &dir);
    client.write(b"hi\n");
    client.expect(|l| l.starts_with("*** welcome"));
    server.proc.signal("TERM");
    let line = client.expect(|l| l.starts_with("*** "));
    assert!(line.contains("shutting down"), "{line}");
    let mut rest = Vec::new();
    client
        .stream
        .read_to_end(&mut rest)
        .expect("the stream ends with close_notify");
    assert!(server.proc.wait_exit(WAIT).success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_passes_through_a_proxy_front_with_the_forwarded_address() {
    let dir = certificate("passthrough");
    let server = tls_server(&dir, &["--proxy-listen", "127.0.0.1:0"]);
    let line = server.proc.out.expect("`PROXY fronts on ADDR`", |l| {
        l.starts_with("PROXY fronts on ")
    });
    let front: SocketAddr = line["PROXY fronts on ".len()..].trim().parse().unwrap();
    // A front that passes TLS through: its header, then the client's ClientHello.
    let mut tcp = TcpStream::connect(front).unwrap();
    tcp.write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 9000\r\n")
        .unwrap();
    let mut client = TlsText::over(tcp, &dir);
    client.write(b"hi\n");
    let welcome = client.expect(|l| l.starts_with("*** welcome"));
    assert!(welcome.contains("you are 192.0.2.7:40000"), "{welcome}");
    server.proc.err.expect("join over TLS via the front", |l| {
        l.contains("192.0.2.7:40000 joined (text over TLS; via PROXY front")
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A WebSocket over TLS to `/ws` (`wss://`), trusting `dir`'s certificate, with
/// `Host: host` and `Origin: origin`; the socket and its address as the server sees
/// it, or the handshake's error.
fn wss(
    addr: SocketAddr,
    dir: &Path,
    host: &str,
    origin: &str,
) -> Result<(WebSocket<StreamOwned<ClientConnection, TcpStream>>, String), String> {
    let client = TlsText::connect(addr, dir);
    let peer = client.peer();
    let mut request = format!("wss://{host}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Origin", origin.parse().unwrap());
    match tungstenite::client::client(request, client.stream) {
        Ok((socket, _)) => Ok((socket, peer)),
        Err(e) => Err(e.to_string()),
    }
}

/// The next text message of a WebSocket.
fn ws_text(socket: &mut WebSocket<StreamOwned<ClientConnection, TcpStream>>) -> String {
    loop {
        match socket.read().expect("read a message") {
            Message::Text(text) => return text.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

#[test]
fn the_page_comes_over_https_and_the_room_over_wss() {
    let dir = certificate("web");
    let server = tls_server(&dir, &[]);
    let host = format!("chat.example:{}", server.addr.port());
    // The page, over TLS, then a clean end.
    let mut page = TlsText::connect(server.addr, &dir);
    page.write(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
    let mut answer = Vec::new();
    page.stream
        .read_to_end(&mut answer)
        .expect("the page, then close_notify");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("<title>Chat room</title>"), "{answer}");
    let mut nc = TextClient::connect(server.addr);
    nc.write(b"hi\n");
    nc.expect(|l| l.starts_with("*** welcome"));
    // Fetched over TLS, the page's own origin is https://HOST: an http:// page of
    // the same host is another site.
    let refused = wss(server.addr, &dir, &host, &format!("http://{host}")).err();
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("403")),
        "{refused:?}"
    );
    let (mut ws, ws_peer) =
        wss(server.addr, &dir, &host, &format!("https://{host}")).expect("upgrade over TLS");
    let welcome = ws_text(&mut ws);
    assert!(
        welcome.starts_with(&format!("*** welcome, you are {ws_peer};")),
        "{welcome}"
    );
    nc.expect(|l| l == format!("*** {ws_peer} joined"));
    ws.send(Message::text("over wss")).unwrap();
    assert_eq!(nc.line(), format!("[{ws_peer}] over wss"));
    nc.write(b"back over plain text\n");
    assert_eq!(
        ws_text(&mut ws),
        format!("[{}] back over plain text", nc.peer())
    );
    server.proc.err.expect("the join over TLS", |l| {
        l.contains(&format!("{ws_peer} joined (websocket over TLS"))
    });
    let _ = std::fs::remove_dir_all(&dir);
}
