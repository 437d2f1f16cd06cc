//! One connection, from its first bytes to its last: telling binary from text,
//! joining the room, reading messages, and leaving.
//!
//! The session's thread is the connection's reader. It reads at most one buffer at a
//! time, decodes every complete message in it with proto-core, and broadcasts them as
//! one batch, so a busy sender costs one lock and one send per recipient per read, and
//! no sender can hold the room for more than one buffer's worth.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proto_core::{
    looks_like_http, sniff, ErrorCode, LineDecoder, PeerAddr, Sniff, PREAMBLE, VERSION,
};

use crate::control::Stop;
use crate::log::log;
use crate::outbox::{End, Outbox};
use crate::readbuf::ReadBuf;
use crate::reader::{read_binary, read_text, Departure};
use crate::room::Client;
use crate::server::Shared;
use crate::sys::{configure_client, is_timeout};
use crate::wire::{self, Mode};

/// What the first bytes said.
enum Opening {
    /// The peer closed before sending anything.
    Silent,
    /// A client of this mode; `have` bytes of `buf` were read already.
    Speaks(Mode, usize),
    /// A binary client asking for another protocol version.
    WrongVersion(u8),
}

/// Serves one accepted connection until it ends.
pub(crate) fn serve(stream: TcpStream, peer: PeerAddr, shared: &Shared) {
    let config = &shared.config;
    if let Err(e) = configure_client(&stream, config) {
        log(format_args!("{peer}: cannot set socket options: {e}"));
    }
    let mut buf = ReadBuf::new(config.read_buffer);
    let (mode, have) = match opening(&stream, buf.whole(), config.sniff_timeout) {
        Ok(Opening::Speaks(mode, have)) => (mode, have),
        Ok(Opening::Silent) => return,
        Ok(Opening::WrongVersion(version)) => {
            log(format_args!("{peer}: refused, protocol version {version}"));
            let text = format!(
                "{}: this server speaks version {VERSION}, not {version}",
                ErrorCode::UNSUPPORTED_VERSION
            );
            let bytes = wire::refusal(Mode::Binary, ErrorCode::UNSUPPORTED_VERSION, &text);
            return refuse(&stream, &bytes);
        }
        Err(e) => return log(format_args!("{peer}: connection failed at once: {e}")),
    };
    if let Err(e) = start(&stream, mode, &buf.bytes()[..have]) {
        return log(format_args!("{peer}: {e}"));
    }
    let stream = Arc::new(stream);
    let client = Arc::new(Client {
        id: shared.control.room.next_id(),
        peer,
        outbox: Outbox::new(stream, mode, config.outbox_limit),
    });
    let Some(member) = Member::enter(client, shared) else {
        return;
    };
    let departure = match mode {
        Mode::Binary => read_binary(&member.client, &mut buf, have, shared),
        Mode::Text => read_text(&member.client, &mut buf, have, shared),
    };
    member.depart(departure);
}

/// Reads until the mode is known, waiting at most `timeout` for a silent client.
fn opening(stream: &TcpStream, buf: &mut [u8], timeout: Duration) -> io::Result<Opening> {
    stream.set_read_timeout(Some(timeout))?;
    let deadline = Instant::now() + timeout;
    let mut have = 0;
    loop {
        match sniff(&buf[..have]) {
            // Wait for the first line too (within the same time), so an HTTP request
            // is refused before anyone is told of the connection.
            Sniff::Text if buf[..have].contains(&b'\n') || have == buf.len() => {
                return Ok(Opening::Speaks(Mode::Text, have))
            }
            Sniff::Text => {}
            Sniff::Binary { version } if version == VERSION => {
                return Ok(Opening::Speaks(Mode::Binary, have))
            }
            Sniff::Binary { version } => return Ok(Opening::WrongVersion(version)),
            Sniff::NeedMore => {}
        }
        if Instant::now() >= deadline {
            // A silent client, or a stalled prefix of the magic: a human at a terminal.
            return Ok(Opening::Speaks(Mode::Text, have));
        }
        match (&*stream).read(&mut buf[have..]) {
            Ok(0) if have == 0 => return Ok(Opening::Silent),
            Ok(0) => return Ok(Opening::Speaks(Mode::Text, have)),
            Ok(n) => have += n,
            Err(e) if is_timeout(&e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// What stops a connection from joining before it is in the room.
#[derive(Debug)]
enum StartError {
    /// Writing the preamble or setting the socket up failed.
    Io(io::Error),
    /// A text client's first line was an HTTP request.
    Http,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Io(e) => write!(f, "connection failed while starting: {e}"),
            StartError::Http => f.write_str("refused: its first line is an HTTP request"),
        }
    }
}

/// Answers the preamble of a binary client, or turns away a web browser before it
/// is announced to anyone; sets the read timeout for the rest of the connection.
fn start(stream: &TcpStream, mode: Mode, first: &[u8]) -> Result<(), StartError> {
    match mode {
        Mode::Binary => {
            let mut s = stream;
            s.write_all(&PREAMBLE).map_err(StartError::Io)?;
        }
        Mode::Text => {
            let mut probe = LineDecoder::new();
            if let (_, Some(Ok(line))) = probe.feed(first) {
                if looks_like_http(line) {
                    refuse(stream, &http_refusal());
                    return Err(StartError::Http);
                }
            }
            stream.set_read_timeout(None).map_err(StartError::Io)?;
        }
    }
    Ok(())
}

/// The line sent to a client whose first line is an HTTP request.
pub(crate) fn http_refusal() -> Vec<u8> {
    let text = "refused: this is a chat server, not a web server";
    wire::error(Mode::Text, ErrorCode::REFUSED, text)
}

/// Sends `bytes` to a connection that is not in the room, then closes it gently: the
/// sending side first, then reading off what the peer still sends for a moment, so
/// the close does not reset the connection before the peer reads `bytes`.
pub(crate) fn refuse(stream: &TcpStream, bytes: &[u8]) {
    let mut s = stream;
    let _ = s.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    drain(stream);
}

/// Reads and discards what the peer sends, for at most a quarter second.
fn drain(stream: &TcpStream) {
    let deadline = Instant::now() + Duration::from_millis(250);
    let mut sink = [0u8; 1024];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    while Instant::now() < deadline {
        match (&*stream).read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => break,
        }
    }
}

/// A client in the room, with its writer thread. Dropping it (also when the reader
/// panics) takes the client out of the room and ends the writer.
struct Member<'s> {
    client: Arc<Client>,
    shared: &'s Shared,
    writer: Option<JoinHandle<()>>,
    departure: Option<Departure>,
    /// In the room (the join succeeded), so leaving is announced and logged.
    joined: bool,
}

impl<'s> Member<'s> {
    /// Starts the writer and joins the room; `None` if either is impossible.
    fn enter(client: Arc<Client>, shared: &'s Shared) -> Option<Self> {
        let peer = client.peer;
        let writer = spawn_writer(&client, shared.config.thread_stack)
            .map_err(|e| log(format_args!("{peer}: cannot start its writer thread: {e}")))
            .ok()?;
        let mut member = Member {
            client,
            shared,
            writer: Some(writer),
            departure: None,
            joined: false,
        };
        match shared.control.room.join(member.client.clone()) {
            Some(count) => {
                member.joined = true;
                let mode = member.client.outbox.mode();
                log(format_args!("{peer} joined ({mode}; {count} in the room)"));
                Some(member)
            }
            None => {
                // Still sniffing when the server began to stop, so `shut_down` did not
                // see it: after a signal it is owed the same notice as the room.
                if shared.control.stopping() == Some(Stop::Terminate) {
                    let outbox = &member.client.outbox;
                    outbox.push_last(&wire::shutdown(outbox.mode()));
                    member.departure = Some(Departure::TooLate);
                } else {
                    member.departure = Some(Departure::ServerClosing);
                }
                None
            }
        }
    }

    /// Leaves for `departure`.
    fn depart(mut self, departure: Departure) {
        self.departure = Some(departure);
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        let departure = self.departure.take().unwrap_or(Departure::Panicked);
        let outbox = &self.client.outbox;
        if self.joined {
            let why = departure.reason(outbox.ended());
            let room = &self.shared.control.room;
            let count = room.leave(self.client.id, why.as_deref());
            let peer = self.client.peer;
            match &why {
                Some(why) => log(format_args!("{peer} left: {why} ({count} in the room)")),
                None => log(format_args!("{peer} left ({count} in the room)")),
            }
        }
        outbox.end(departure.end());
        let deadline = Instant::now() + self.shared.config.shutdown_grace;
        if !outbox.wait_done(deadline) {
            outbox.end(End::Cut);
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if departure.end() == End::Flush {
            drain(outbox.stream());
        }
    }
}

fn spawn_writer(client: &Arc<Client>, stack: usize) -> io::Result<JoinHandle<()>> {
    let client = client.clone();
    thread::Builder::new()
        .name(format!("writer {}", client.peer))
        .stack_size(stack)
        .spawn(move || {
            let run = std::panic::AssertUnwindSafe(|| client.outbox.run_writer());
            if std::panic::catch_unwind(run).is_err() {
                client.outbox.end(End::Cut);
                log(format_args!("{}: writer thread panicked", client.peer));
            }
            client.outbox.writer_exited();
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Control};
    use std::net::TcpListener;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    #[test]
    fn a_panicking_reader_still_leaves_the_room_and_closes_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, addr) = listener.accept().unwrap();
        let shared = Shared::new(Config::default(), Control::new());
        let client = Arc::new(Client {
            id: 1,
            peer: PeerAddr::from(addr),
            outbox: Outbox::new(Arc::new(inside), Mode::Text, 1 << 20),
        });
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _member = Member::enter(client, &shared).expect("joined");
            assert_eq!(shared.control.peers().len(), 1);
            panic!("a bug in the reader");
        }));
        assert!(result.is_err());
        assert!(shared.control.peers().is_empty());
        outside
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        match outside.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) => assert!(!is_timeout(&e), "connection left open: {e}"),
        }
        assert!(got.starts_with(b"*** welcome"), "{got:?}");
    }
}
