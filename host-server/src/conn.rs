//! A client's connection as the room sees it: plain TCP, or TLS over TCP. Every
//! byte the server reads from or writes to an admitted client goes through [`Conn`],
//! so the outbox (write-through, queue, pacing, the drop notice) and the read loops
//! work on plaintext and never know which it is.
//!
//! rustls has no full-duplex split, so a TLS connection shares one
//! `ServerConnection` between the client's reader and its write path, behind a lock
//! that is never held during socket I/O: the reader reads the socket without it,
//! then locks to decrypt; the write path locks to encrypt into a buffer of pending
//! ciphertext, unlocks, and sends that buffer. The pending buffer has its own lock,
//! held across non-blocking sends only, so ciphertext leaves in the order it was
//! made whichever thread made it (lock order: pending, then session).
//!
//! Nothing here waits for the socket except [`send_all`]: what the socket does not
//! take stays pending, and the outbox keeps the socket registered with its writer
//! pool until [`Conn::has_pending`] is false. That holds for bytes the reader side
//! made too (alerts, key updates, the answer to a client's `close_notify`): the
//! reader asks the outbox to take them on after each read.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::time::Instant;

use rustix::net::{recv, send, sendmsg, RecvFlags, SendAncillaryBuffer, SendFlags};
use rustls::ServerConnection;

use crate::sys::{is_transient, lock, wait_writable};

/// Most plaintext one `send_now` encrypts: one full TLS record, so the ciphertext
/// pending inside a connection stays within one record batch (about 17 KiB).
const MAX_TAKE: usize = 16 * 1024;

/// Bytes of ciphertext read from the socket at a time.
const READ_CHUNK: usize = 4096;

/// Capacity of the pending buffer kept once it is empty; a larger one is freed, so an
/// idle client does not hold a record's worth of memory.
const KEEP_PENDING: usize = 4096;

/// A client's connection as the room sees it: plain TCP, or TLS over TCP.
pub(crate) struct Conn {
    tcp: TcpStream,
    // Boxed: a TLS session is over a kilobyte, and most clients of a big room are
    // plain; inline, every plain client would carry its room.
    tls: Option<Box<Tls>>,
}

/// The TLS state of a connection.
struct Tls {
    /// The session: locked only to encrypt or decrypt, never across socket I/O.
    session: Mutex<ServerConnection>,
    /// Ciphertext made but not yet taken by the socket, in order.
    pending: Mutex<Pending>,
}

/// Ciphertext waiting for the socket: `buf[at..]`.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    at: usize,
    /// `close_notify` is queued: the sending side is shut once everything is out,
    /// by whichever thread sends the last of it.
    finishing: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.at == self.buf.len()
    }

    /// Sends what the socket takes now, without blocking. Ok(()) also when the
    /// socket is full (the rest stays pending).
    fn push(&mut self, tcp: &TcpStream) -> io::Result<()> {
        while !self.is_empty() {
            match send(
                tcp,
                &self.buf[self.at..],
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Ok(n) => self.at += n,
                Err(e) => match io::Error::from(e) {
                    e if e.kind() == io::ErrorKind::Interrupted => {}
                    e if is_transient(&e) => return Ok(()),
                    e => return Err(e),
                },
            }
        }
        self.buf.clear();
        self.at = 0;
        if self.buf.capacity() > KEEP_PENDING {
            self.buf = Vec::new();
        }
        if self.finishing {
            // Errors are ignored: the peer may be gone already.
            let _ = tcp.shutdown(Shutdown::Write);
        }
        Ok(())
    }
}

impl Conn {
    /// A plain TCP connection.
    pub(crate) fn plain(tcp: TcpStream) -> Self {
        Self { tcp, tls: None }
    }

    /// A TLS connection whose handshake `session` has finished (see `tls`).
    pub(crate) fn tls(tcp: TcpStream, session: ServerConnection) -> Self {
        Self {
            tcp,
            tls: Some(Box::new(Tls {
                session: Mutex::new(session),
                pending: Mutex::new(Pending::default()),
            })),
        }
    }

    /// True for a TLS connection.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The socket: options, addresses, and its fd for epoll registration.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Never blocks. Hands as much of `bufs` (plaintext, in order) to the connection
    /// as it takes now and returns how many plaintext bytes it took; Err(WouldBlock)
    /// when it takes none. For TLS, taken bytes are encrypted under a short lock that
    /// is never held during socket I/O, and ciphertext the socket did not take stays
    /// pending inside the Conn (bounded: one record batch, at most ~17 KiB); while
    /// anything is pending, send_now first flushes it and takes no new plaintext
    /// unless the pending bytes all went out.
    pub(crate) fn send_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            let mut control = SendAncillaryBuffer::default();
            let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
            return sendmsg(&self.tcp, bufs, &mut control, flags).map_err(io::Error::from);
        };
        let mut pending = lock(&tls.pending);
        pending.push(&self.tcp)?;
        if !pending.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // At most MAX_TAKE bytes, gathered so that many small chunks make one record
        // (one seal, one header) rather than one record each.
        let mut limited = Vec::with_capacity(bufs.len().min(64));
        let mut total = 0;
        for buf in bufs {
            if total == MAX_TAKE {
                break;
            }
            let take = buf.len().min(MAX_TAKE - total);
            limited.push(IoSlice::new(&buf[..take]));
            total += take;
        }
        let taken = {
            let mut session = lock(&tls.session);
            let taken = session.writer().write_vectored(&limited)?;
            drain_tls(&mut session, &mut pending.buf)?;
            taken
        };
        pending.push(&self.tcp)?;
        if taken == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// True when bytes taken by `send_now` are still inside the Conn, not yet in the
    /// socket (always false for plain TCP). The write path treats this as backlog:
    /// the socket stays registered for writability until it is false.
    pub(crate) fn has_pending(&self) -> bool {
        self.pending_len() > 0
    }

    /// Bytes of ciphertext inside the Conn not yet in the socket (0 for plain TCP).
    pub(crate) fn pending_len(&self) -> usize {
        self.tls.as_ref().map_or(0, |tls| {
            let pending = lock(&tls.pending);
            pending.buf.len() - pending.at
        })
    }

    /// Never blocks. Pushes pending bytes into the socket; Ok(true) when none remain.
    pub(crate) fn flush_pending(&self) -> io::Result<bool> {
        let Some(tls) = &self.tls else {
            return Ok(true);
        };
        let mut pending = lock(&tls.pending);
        pending.push(&self.tcp)?;
        Ok(pending.is_empty())
    }

    /// Blocks (within the socket's read timeout). Reads plaintext: the reader
    /// thread's only way to read the client. For TLS: read the socket without any
    /// lock, then lock to read_tls/process_new_packets/drain plaintext; anything
    /// rustls wants to send in reply is written through the same pending path, in
    /// order. A peer that closes without `close_notify` reads as a clean end.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.tcp).read(buf),
            Some(tls) => self.read_tls(tls, buf, RecvFlags::empty()),
        }
    }

    /// As [`Conn::read`], but never blocks: Err(WouldBlock) when no plaintext is
    /// there yet (for TLS, also when only part of a record has arrived).
    pub(crate) fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => recv(&self.tcp, buf, RecvFlags::DONTWAIT)
                .map(|(n, _)| n)
                .map_err(io::Error::from),
            Some(tls) => self.read_tls(tls, buf, RecvFlags::DONTWAIT),
        }
    }

    fn read_tls(&self, tls: &Tls, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
        let mut cipher = [0u8; READ_CHUNK];
        loop {
            match lock(&tls.session).reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer closed the TCP connection without close_notify: for a chat
                // line protocol that is an ordinary end (the decoders see any cut
                // message), as many clients never send one.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let n = match recv(&self.tcp, &mut cipher, flags) {
                Ok((n, _)) => n,
                Err(e) => return Err(e.into()),
            };
            let processed = {
                let mut session = lock(&tls.session);
                feed(&mut session, &cipher[..n])
            };
            // An alert rustls queued for a bad record goes out before the error does.
            self.send_replies(tls)?;
            processed?;
            if n == 0 {
                // The end of the stream, now known to rustls: the next reader() call
                // says whether it was clean.
                continue;
            }
        }
    }

    /// Sends whatever rustls wants to send after reading (alerts, key updates)
    /// through the pending path, after everything made before it.
    fn send_replies(&self, tls: &Tls) -> io::Result<()> {
        let mut pending = lock(&tls.pending);
        {
            let mut session = lock(&tls.session);
            if !session.wants_write() {
                return Ok(());
            }
            drain_tls(&mut session, &mut pending.buf)?;
        }
        pending.push(&self.tcp)
    }

    /// Ends the sending side cleanly once everything is out (TLS: close_notify, then
    /// shutdown(Write)). Never blocks: for TLS, the `close_notify` joins the pending
    /// ciphertext, and the sending side is shut when the last of it goes out, by this
    /// call or by the [`Conn::flush_pending`] or [`Conn::send_now`] that empties it
    /// (so the caller keeps flushing while [`Conn::has_pending`]). Calling it again
    /// changes nothing.
    pub(crate) fn finish(&self) {
        let Some(tls) = &self.tls else {
            let _ = self.tcp.shutdown(Shutdown::Write);
            return;
        };
        let mut pending = lock(&tls.pending);
        if !pending.finishing {
            pending.finishing = true;
            let mut session = lock(&tls.session);
            session.send_close_notify();
            let _ = drain_tls(&mut session, &mut pending.buf);
        }
        // A failed socket is cut by the caller; nothing more is owed to it.
        let _ = pending.push(&self.tcp);
    }

    /// Cuts the connection now, both directions, sending nothing more.
    pub(crate) fn cut(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

/// Moves the ciphertext rustls has ready into `out`.
fn drain_tls(session: &mut ServerConnection, out: &mut Vec<u8>) -> io::Result<()> {
    while session.wants_write() {
        session.write_tls(out)?;
    }
    Ok(())
}

/// Hands `cipher` to rustls and decrypts what it completes; an empty `cipher` tells
/// rustls the stream has ended.
fn feed(session: &mut ServerConnection, mut cipher: &[u8]) -> io::Result<()> {
    loop {
        let eof = cipher.is_empty();
        session.read_tls(&mut cipher)?;
        session
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if eof || cipher.is_empty() {
            return Ok(());
        }
    }
}

/// Writes all of `bytes` through `conn` before `deadline`, waiting for the socket
/// to take them: for the few writes made outside the outbox (a preamble, a refusal).
///
/// # Errors
/// `TimedOut` at the deadline; the socket's errors.
pub(crate) fn send_all(conn: &Conn, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    loop {
        while !bytes.is_empty() {
            match conn.send_now(&[IoSlice::new(bytes)]) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if is_transient(&e) => break,
                Err(e) => return Err(e),
            }
        }
        if bytes.is_empty() && conn.flush_pending()? {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        wait_writable(conn.tcp(), left)?;
    }
}

#[cfg(test)]
mod tests;
