//! Built-in TLS on the room's own port: loading the certificate and key at start,
//! telling a TLS client from the first bytes it sends (a handshake record,
//! `16 03`), and the handshake, done by the session thread within its timeout before
//! the connection becomes a [`Conn`] and the usual sniff runs on the plaintext.

use std::fmt;
use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::net::{recv, RecvFlags};
use rustls::crypto::ring;
use rustls::{ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::conn::Conn;
use crate::sys::{is_transient, wait_readable, WRITE_TIMEOUT};

/// The first bytes of a TLS connection: a handshake record (content type 22) of
/// protocol major version 3 (SSL 3.0 to TLS 1.3 all say 3 there).
const HANDSHAKE_RECORD: [u8; 2] = [0x16, 0x03];

/// The least stack a connection thread gets when TLS is on: a handshake (an RSA
/// signature above all) and record encryption in an unoptimised build need more
/// than the 64 KiB plain connections do. Only touched pages cost memory.
pub(crate) const MIN_STACK: usize = 256 * 1024;

/// Why the certificate or key cannot be used; the server does not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file cannot be read or holds no PEM certificate.
    Cert {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the pair: the key does not belong to the certificate, or one
    /// of them is of a kind it does not support.
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Cert { path, reason } => {
                write!(f, "TLS certificate {}: {reason}", path.display())
            }
            TlsError::Key { path, reason } => write!(f, "TLS key {}: {reason}", path.display()),
            TlsError::Pair { cert, key, reason } => write!(
                f,
                "TLS key {} cannot be used with certificate {}: {reason}",
                key.display(),
                cert.display()
            ),
        }
    }
}

impl std::error::Error for TlsError {}

/// Loads a PEM certificate chain (leaf first) and its PEM private key (PKCS#8,
/// PKCS#1 or SEC1: RSA, ECDSA or Ed25519) into a server configuration with rustls's
/// safe defaults (TLS 1.2 and 1.3, ring as the one crypto backend).
///
/// # Errors
/// A [`TlsError`] naming the file that is unreadable, empty or wrong, or the pair
/// when the key does not match the certificate.
pub(crate) fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_error = |reason: String| TlsError::Cert {
        path: cert.to_path_buf(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(pem_reason(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(pem_reason(e)))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: pem_reason(e),
    })?;
    let pair_error = |reason: String| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason,
    };
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| pair_error(e.to_string()))?;
    Ok(Arc::new(config))
}

/// What a PEM parse failure means to the operator.
fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of that kind in it".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// Waits up to `timeout` for a new connection's first two bytes, without taking
/// them; true if they open a TLS handshake. A client that says nothing, or closes, is
/// not a TLS client (TLS clients speak first).
pub(crate) fn starts_tls(stream: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let deadline = Instant::now() + timeout;
    let mut first = [0u8; 2];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        match wait_readable(stream, Some(left)) {
            Ok(()) => {}
            Err(e) if is_transient(&e) => continue,
            Err(e) => return Err(e),
        }
        let n = match recv(stream, &mut first, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
            Ok((n, _)) => n,
            Err(e) => match io::Error::from(e) {
                e if is_transient(&e) => continue,
                e => return Err(e),
            },
        };
        match n {
            0 => return Ok(false),
            1 if first[0] == HANDSHAKE_RECORD[0] => {
                // The second byte is on its way (or the peer is not TLS at all):
                // a peek would see the same byte at once, so wait a moment.
                std::thread::sleep(Duration::from_millis(5).min(left));
            }
            1 => return Ok(false),
            _ => return Ok(first == HANDSHAKE_RECORD),
        }
    }
}

/// Why a TLS handshake did not finish.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// Not finished within the timeout.
    Timeout(Duration),
    /// The peer closed, sent something that is not TLS, or failed the handshake.
    Failed(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Timeout(t) => {
                write!(f, "TLS handshake not done within {:.1} s", t.as_secs_f64())
            }
            HandshakeError::Failed(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// Runs the server side of a TLS handshake on `tcp` within `timeout` (however the
/// peer trickles its bytes), then returns the connection ready for plaintext.
/// Bytes the client sent after its handshake stay in the session for the sniff.
///
/// # Errors
/// A [`HandshakeError`]: the caller logs it and closes the connection.
pub(crate) fn handshake(
    tcp: TcpStream,
    config: &Arc<ServerConfig>,
    timeout: Duration,
) -> Result<Conn, HandshakeError> {
    let mut session = ServerConnection::new(config.clone())
        .map_err(|e| HandshakeError::Failed(io::Error::other(e)))?;
    let deadline = Instant::now() + timeout;
    let mut io = &tcp;
    while session.is_handshaking() || session.wants_write() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::Timeout(timeout));
        }
        tcp.set_read_timeout(Some(left))
            .and_then(|()| tcp.set_write_timeout(Some(left)))
            .map_err(HandshakeError::Failed)?;
        let done = if session.is_handshaking() {
            session.complete_io(&mut io)
        } else {
            // The handshake is done; what is left to send (session tickets) goes out.
            session.write_tls(&mut io).map(|n| (0, n))
        };
        match done {
            Ok((0, 0)) if session.is_handshaking() => {
                return Err(HandshakeError::Failed(io::ErrorKind::UnexpectedEof.into()))
            }
            Ok(_) => {}
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(HandshakeError::Failed(e)),
        }
    }
    tcp.set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(HandshakeError::Failed)?;
    Ok(Conn::tls(tcp, session))
}
