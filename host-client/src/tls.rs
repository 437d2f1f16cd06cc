//! TLS to a server with built-in TLS (`host-client --tls`): whom to trust (a CA file
//! given with `--ca`, or the platform's roots), the name the certificate must carry,
//! and [`Stream`], the connection the session reads and writes, plain or TLS.
//!
//! The platform's roots come from `rustls-native-certs`, which reads the system's
//! trust store (on Debian `/etc/ssl/certs`, kept by `update-ca-certificates`): a
//! private CA an administrator installed there is trusted, and the roots follow the
//! system's updates without a rebuild, which a compiled-in bundle (`webpki-roots`)
//! would need. A certificate that does not verify is an error, never a fallback to
//! plain text.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustls::crypto::ring;
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::connect::{parse_addr, Target};

/// What `--tls` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only the certificates in this PEM file (a private CA, or the server's
    /// own self-signed certificate); `None`: the platform's roots.
    pub ca: Option<PathBuf>,
    /// The name the server's certificate must carry; `None`: the host of the address
    /// (its IP address when it is one).
    pub server_name: Option<String>,
}

/// Why TLS cannot be set up before connecting.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The `--ca` file cannot be read or holds no usable PEM certificate.
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The platform's trust store holds no usable root.
    NoRoots(String),
    /// The server name is neither a DNS name nor an IP address.
    ServerName(String),
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSetupError::Ca { path, reason } => {
                write!(f, "CA file {}: {reason}", path.display())
            }
            TlsSetupError::NoRoots(why) => write!(
                f,
                "no trusted roots in the platform's store ({why}); give the server's CA with --ca FILE"
            ),
            TlsSetupError::ServerName(name) => write!(
                f,
                "'{name}' cannot be checked against a certificate: use a DNS name or an IP address"
            ),
        }
    }
}

impl std::error::Error for TlsSetupError {}

/// Everything needed to start TLS with one server: the trust and the name.
#[derive(Debug, Clone)]
pub struct TlsSetup {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl TlsSetup {
    /// The setup `options` ask for, to reach the server at `addr` (as typed).
    ///
    /// # Errors
    /// See [`TlsSetupError`].
    pub fn new(options: &TlsOptions, addr: &str) -> Result<Self, TlsSetupError> {
        let roots = match &options.ca {
            Some(path) => ca_roots(path)?,
            None => platform_roots()?,
        };
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::NoRoots(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let host = match (&options.server_name, parse_addr(addr)) {
            (Some(name), _) => name.clone(),
            (None, Ok(Target::Ip(ip))) => ip.ip().to_string(),
            (None, Ok(Target::Name(host, _))) => host.to_string(),
            (None, Err(_)) => addr.to_string(),
        };
        let name =
            ServerName::try_from(host.clone()).map_err(|_| TlsSetupError::ServerName(host))?;
        Ok(Self {
            config: Arc::new(config),
            name,
        })
    }
}

fn ca_roots(path: &std::path::Path) -> Result<RootCertStore, TlsSetupError> {
    let fail = |reason: String| TlsSetupError::Ca {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| fail(pem_reason(e)))? {
        let cert = cert.map_err(|e| fail(pem_reason(e)))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a usable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(roots)
}

fn pem_reason(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not valid PEM: {other:?}"),
    }
}

fn platform_roots() -> Result<RootCertStore, TlsSetupError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = match found.errors.first() {
            Some(e) => e.to_string(),
            None => "it is empty".into(),
        };
        return Err(TlsSetupError::NoRoots(why));
    }
    Ok(roots)
}

/// True when `e` (from [`Stream::handshake`]) says the server's certificate was not
/// accepted, so that the message can say what to do.
pub fn is_certificate_error(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}

/// A connection to the server, plain or TLS. Clones share it: the session reads on
/// one thread and writes on another.
///
/// rustls has no full-duplex split, so a TLS stream shares one `ClientConnection`
/// behind a lock never held while the socket blocks; a second lock keeps the
/// ciphertext of concurrent writers in the order it was made.
#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    tls: Option<Arc<Tls>>,
}

#[derive(Debug)]
struct Tls {
    session: Mutex<ClientConnection>,
    /// Held while ciphertext is made and written, so records leave in order.
    write: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Self {
        Self { tcp, tls: None }
    }
}

impl Stream {
    /// Runs a TLS handshake on `tcp` as `setup` says, within `timeout`.
    ///
    /// # Errors
    /// The socket's errors, a timeout, or rustls's (wrapped as `InvalidData`; see
    /// [`is_certificate_error`]).
    pub fn handshake(tcp: TcpStream, setup: &TlsSetup, timeout: Duration) -> io::Result<Self> {
        let mut session = ClientConnection::new(setup.config.clone(), setup.name.clone())
            .map_err(io::Error::other)?;
        let deadline = Instant::now() + timeout;
        let mut io = &tcp;
        while session.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            tcp.set_read_timeout(Some(left))?;
            tcp.set_write_timeout(Some(left))?;
            if session.complete_io(&mut io)? == (0, 0) && session.is_handshaking() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        tcp.set_write_timeout(None)?;
        Ok(Self {
            tcp,
            tls: Some(Arc::new(Tls {
                session: Mutex::new(session),
                write: Mutex::new(()),
            })),
        })
    }

    /// The socket and the TLS session (if any), for a caller that drives the
    /// connection alone from now on (the bench's event loop).
    ///
    /// # Errors
    /// `Other` if a clone of this stream still shares the session.
    pub fn into_parts(self) -> io::Result<(TcpStream, Option<ClientConnection>)> {
        let session = match self.tls {
            None => None,
            Some(tls) => {
                let tls = Arc::try_unwrap(tls)
                    .map_err(|_| io::Error::other("the TLS session is still shared"))?;
                Some(
                    tls.session
                        .into_inner()
                        .unwrap_or_else(PoisonError::into_inner),
                )
            }
        };
        Ok((self.tcp, session))
    }

    /// The socket.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// True for a TLS connection.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Another handle to the same connection.
    ///
    /// # Errors
    /// The socket's, when it cannot be duplicated.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    /// Shuts the connection down as `how` says; closing the sending side of a TLS
    /// connection sends `close_notify` first.
    ///
    /// # Errors
    /// The socket's.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if let (Some(tls), Shutdown::Write) = (&self.tls, how) {
            let _order = lock(&tls.write);
            let mut out = Vec::new();
            {
                let mut session = lock(&tls.session);
                session.send_close_notify();
                drain(&mut session, &mut out)?;
            }
            (&self.tcp).write_all(&out)?;
        }
        self.tcp.shutdown(how)
    }

    /// Writes whatever rustls wants to send after reading (alerts, key updates).
    fn send_replies(&self, tls: &Tls) -> io::Result<()> {
        let _order = lock(&tls.write);
        let mut out = Vec::new();
        drain(&mut lock(&tls.session), &mut out)?;
        (&self.tcp).write_all(&out)
    }
}

fn drain(session: &mut ClientConnection, out: &mut Vec<u8>) -> io::Result<()> {
    while session.wants_write() {
        session.write_tls(out)?;
    }
    Ok(())
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.clone() else {
            return self.tcp.read(buf);
        };
        let mut cipher = [0u8; 8192];
        loop {
            match lock(&tls.session).reader().read(buf) {
                Ok(n) => return Ok(n),
                // The server closed without close_notify: an end like any other (a
                // frame cut short is still reported as such by the decoder).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let n = self.tcp.read(&mut cipher)?;
            let processed = {
                let mut session = lock(&tls.session);
                let mut rest = &cipher[..n];
                loop {
                    let eof = rest.is_empty();
                    if let Err(e) = session.read_tls(&mut rest) {
                        break Err(e);
                    }
                    if let Err(e) = session.process_new_packets() {
                        break Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if eof || rest.is_empty() {
                        break Ok(());
                    }
                }
            };
            self.send_replies(&tls)?;
            processed?;
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.tcp.write(buf);
        };
        let _order = lock(&tls.write);
        let mut out = Vec::new();
        {
            let mut session = lock(&tls.session);
            session.writer().write_all(buf)?;
            drain(&mut session, &mut out)?;
        }
        (&self.tcp).write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
