//! Turning connections away when every refuser thread is busy, on a server that
//! speaks TLS: the refusal must be one the client can read, and the server does not
//! know yet whether it is a TLS client. With no thread free to do a handshake, a TLS
//! client cannot be told in TLS; plain text would read to its handshake as a corrupt
//! record. So one thread holds such connections (at most `max_held_refusals`, each
//! for at most the sniff timeout) until their first bytes arrive:
//!
//! - a TLS record (`16 03`): once the whole ClientHello record is in, it is read off
//!   and answered with a fatal `internal_error` alert, a plaintext record that needs
//!   no handshake state (RFC 8446 §6: before the ServerHello there are no keys, so
//!   alerts go out in the clear), then the connection is closed. The client sees a
//!   clean refusal (an alert received), not a protocol error;
//! - anything else, or nothing within the sniff timeout: the text notice, as before.
//!
//! Past `max_held_refusals`, the choice is made at once on what has already arrived.
//! What the client sent is read off before the close, so the close does not reset
//! the connection under what it was sent.

use std::io;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proto_core::PeerAddr;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::ioctl_fionread;
use rustix::net::{recv, RecvFlags};

use crate::sys::{is_transient, lock, send_now};

/// A fatal `internal_error` alert (RFC 8446 §6): content type 21 (alert), record
/// version 3.3 (what TLS 1.3 puts on every record after the ClientHello, and TLS 1.2
/// on its own), length 2, level 2 (fatal), description 80. `internal_error` says the
/// failure is the server's (it cannot serve now), not the client's parameters.
pub(crate) const INTERNAL_ERROR_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50];

/// The header of a TLS record: type, version, length.
const RECORD_HEADER: usize = 5;

/// Longest the holding thread sleeps before it takes in new connections.
const POLL: Duration = Duration::from_millis(10);

/// Most bytes read off a connection before it is closed (a ClientHello record is at
/// most 16 KiB and its header).
const READ_OFF: usize = 18 * 1024;

/// What a held connection has sent so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Came {
    /// Nothing yet.
    Nothing,
    /// The start of a TLS record, not all of it.
    TlsPart,
    /// A whole TLS record (the ClientHello, by all means).
    Tls,
    /// Something else, or the end of the stream: a plain client.
    Plain,
    /// The connection failed.
    Gone,
}

/// Looks, without taking anything, at what `stream` has sent.
pub(crate) fn what_came(stream: &TcpStream) -> Came {
    let mut head = [0u8; RECORD_HEADER];
    let n = match recv(stream, &mut head, RecvFlags::PEEK | RecvFlags::DONTWAIT) {
        Ok((n, _)) => n,
        Err(e) => match io::Error::from(e) {
            e if is_transient(&e) => return Came::Nothing,
            _ => return Came::Gone,
        },
    };
    let head = &head[..n];
    if n == 0 || head[0] != 0x16 || head.get(1).is_some_and(|&v| v != 0x03) {
        return Came::Plain;
    }
    if n < RECORD_HEADER {
        return Came::TlsPart;
    }
    let len = RECORD_HEADER + usize::from(u16::from_be_bytes([head[3], head[4]]));
    match ioctl_fionread(stream) {
        Ok(have) if have >= len as u64 => Came::Tls,
        Ok(_) => Came::TlsPart,
        Err(_) => Came::Gone,
    }
}

/// A connection waiting for its first bytes.
struct Held {
    stream: TcpStream,
    peer: PeerAddr,
    /// The refusal in text form.
    notice: Vec<u8>,
    until: Instant,
    /// What it had sent when last looked at.
    came: Came,
    _unit: Unit,
}

/// One held connection, counted until dropped.
struct Unit(Arc<AtomicUsize>);

impl Drop for Unit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The holding thread and the way to it.
pub(crate) struct Overflow {
    to_thread: Mutex<Option<mpsc::Sender<Held>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    held: Arc<AtomicUsize>,
    limit: usize,
    wait: Duration,
    /// `--max-refusers`, for the log.
    refusers: usize,
}

impl Overflow {
    /// Starts the thread that holds up to `limit` connections, each for up to `wait`;
    /// `refusers` is the refuser limit the log names.
    pub(crate) fn start(
        limit: usize,
        wait: Duration,
        refusers: usize,
        stack: usize,
    ) -> io::Result<Self> {
        let (to_thread, from_accept) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("overflow refuser".into())
            .stack_size(stack)
            .spawn(move || hold(&from_accept, refusers))?;
        Ok(Self {
            to_thread: Mutex::new(Some(to_thread)),
            thread: Mutex::new(Some(thread)),
            held: Arc::new(AtomicUsize::new(0)),
            limit,
            wait,
            refusers,
        })
    }

    /// Turns `stream` away with `notice` (the refusal in text form), or with a TLS
    /// alert if it turns out to be a TLS client: held until its first bytes come if
    /// fewer than the limit are held, decided on what came so far otherwise.
    pub(crate) fn refuse(&self, stream: TcpStream, peer: PeerAddr, notice: Vec<u8>) {
        if self.held.load(Ordering::Acquire) < self.limit {
            if let Some(to_thread) = lock(&self.to_thread).as_ref() {
                self.held.fetch_add(1, Ordering::AcqRel);
                let held = Held {
                    stream,
                    peer,
                    notice,
                    until: Instant::now() + self.wait,
                    came: Came::Nothing,
                    _unit: Unit(self.held.clone()),
                };
                // The thread only ends once this sender is gone.
                let _ = to_thread.send(held);
                return;
            }
        }
        if let Some(came) = verdict(what_came(&stream), true) {
            answer(&stream, peer, &notice, came, self.refusers);
        }
    }

    /// Stops taking connections; those held are answered within the wait, then the
    /// thread ends and is joined.
    pub(crate) fn stop(&self) {
        drop(lock(&self.to_thread).take());
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

/// The holding thread: takes in connections, waits for their first bytes, answers
/// each once they tell, or at its deadline.
fn hold(from_accept: &mpsc::Receiver<Held>, refusers: usize) {
    let mut held: Vec<Held> = Vec::new();
    loop {
        if held.is_empty() {
            match from_accept.recv() {
                Ok(h) => held.push(h),
                Err(_) => return,
            }
        }
        held.extend(from_accept.try_iter());
        let now = Instant::now();
        held.retain_mut(|h| !settle(h, now, refusers));
        let Some(next) = held.iter().map(|h| h.until).min() else {
            continue;
        };
        let wait = next.saturating_duration_since(now).min(POLL);
        // Only those that sent nothing are polled: one with part of a TLS record is
        // readable already, so it is looked at again after `wait` (at most POLL).
        let mut fds: Vec<PollFd<'_>> = held
            .iter()
            .filter(|h| h.came == Came::Nothing)
            .map(|h| PollFd::new(&h.stream, PollFlags::IN))
            .collect();
        if fds.is_empty() {
            thread::sleep(wait);
        } else {
            let timeout = Timespec::try_from(wait).ok();
            let _ = poll(&mut fds, timeout.as_ref());
        }
    }
}

/// Answers `h` if its first bytes tell what it is, or its time is up; true if done.
fn settle(h: &mut Held, now: Instant, refusers: usize) -> bool {
    h.came = what_came(&h.stream);
    match verdict(h.came, now >= h.until) {
        Some(came) => {
            answer(&h.stream, h.peer, &h.notice, came, refusers);
            true
        }
        None => false,
    }
}

/// What a connection that sent `came` is answered as, if that tells, or once it is
/// `due` (its time is up): the start of a TLS record that never finished is still a
/// TLS client, and one that said nothing is a plain one. `None`: wait.
fn verdict(came: Came, due: bool) -> Option<Came> {
    match came {
        Came::Nothing | Came::TlsPart if !due => None,
        Came::TlsPart => Some(Came::Tls),
        Came::Nothing => Some(Came::Plain),
        came => Some(came),
    }
}

/// Sends a TLS client the alert and any other the text notice, after reading off
/// what it sent, then closes the sending side (the caller drops the socket).
fn answer(stream: &TcpStream, peer: PeerAddr, notice: &[u8], came: Came, refusers: usize) {
    if came == Came::Gone {
        return;
    }
    read_off(stream);
    if came == Came::Tls {
        tracing::info!(
            "{peer}: TLS client turned away with a TLS internal_error alert: every \
             refuser thread is busy (--max-refusers {refusers}), none free for a handshake"
        );
        let _ = send_now(stream, &INTERNAL_ERROR_ALERT);
    } else {
        tracing::info!(
            "{peer}: turned away in text form: every refuser thread is busy \
             (--max-refusers {refusers})"
        );
        let _ = send_now(stream, notice);
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// Reads and discards what has come (at most [`READ_OFF`] bytes), without waiting.
fn read_off(stream: &TcpStream) {
    let mut sink = [0u8; 4096];
    let mut taken = 0;
    while taken < READ_OFF {
        match recv(stream, &mut sink, RecvFlags::DONTWAIT) {
            Ok((0, _)) | Err(_) => return,
            Ok((n, _)) => taken += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, _) = listener.accept().unwrap();
        (inside, client)
    }

    /// Waits until `inside` has `n` bytes to read.
    fn arrived(inside: &TcpStream, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while ioctl_fionread(inside).unwrap() < n {
            assert!(Instant::now() < deadline, "the bytes never came");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_first_bytes_tell_a_tls_client_from_a_plain_one() {
        let (inside, mut client) = pair();
        assert_eq!(what_came(&inside), Came::Nothing);
        // A record header announcing 6 bytes, then 3 of them: not all of it yet.
        client
            .write_all(&[0x16, 0x03, 0x01, 0x00, 0x06, 1, 2, 3])
            .unwrap();
        arrived(&inside, 8);
        assert_eq!(what_came(&inside), Came::TlsPart);
        client.write_all(&[4, 5, 6]).unwrap();
        arrived(&inside, 11);
        assert_eq!(what_came(&inside), Came::Tls);
        // Nothing was taken by looking.
        assert_eq!(ioctl_fionread(&inside).unwrap(), 11);

        let (inside, mut client) = pair();
        client.write_all(b"hello\n").unwrap();
        arrived(&inside, 6);
        assert_eq!(what_came(&inside), Came::Plain);

        let (inside, mut client) = pair();
        client.write_all(&[0x16]).unwrap();
        arrived(&inside, 1);
        assert_eq!(what_came(&inside), Came::TlsPart);

        let (inside, mut client) = pair();
        client.write_all(&[0x16, 0x07]).unwrap();
        arrived(&inside, 2);
        assert_eq!(what_came(&inside), Came::Plain);

        let (inside, client) = pair();
        drop(client);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(what_came(&inside), Came::Plain);
    }

    #[test]
    fn a_held_tls_client_gets_the_alert_and_a_silent_one_the_notice_at_its_deadline() {
        let overflow = Overflow::start(8, Duration::from_millis(300), 0, 64 * 1024).unwrap();
        let peer = PeerAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 1,
        };
        let (inside, mut tls) = pair();
        overflow.refuse(inside, peer, b"notice\n".to_vec());
        let (inside, mut silent) = pair();
        let started = Instant::now();
        overflow.refuse(inside, peer, b"notice\n".to_vec());
        // The hello comes after the connection was handed over, in two pieces: the
        // alert waits for all of it.
        thread::sleep(Duration::from_millis(50));
        tls.write_all(&[0x16, 0x03, 0x01, 0x00, 0x02, 1]).unwrap();
        thread::sleep(Duration::from_millis(50));
        let mut early = [0u8; 1];
        tls.set_nonblocking(true).unwrap();
        assert!(
            tls.read(&mut early).is_err(),
            "answered before the whole hello"
        );
        tls.set_nonblocking(false).unwrap();
        tls.write_all(&[2]).unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).unwrap();
        assert_eq!(got, INTERNAL_ERROR_ALERT);
        let mut got = Vec::new();
        silent.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"notice\n");
        assert!(started.elapsed() >= Duration::from_millis(300));
        overflow.stop();
        assert_eq!(overflow.held.load(Ordering::Acquire), 0);
    }
}
