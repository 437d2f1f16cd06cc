//! One connection, from its first bytes to its last: telling binary from text,
//! joining the room, reading messages (see `reader`), and leaving.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use proto_core::{looks_like_http, ErrorCode, LineDecoder, PeerAddr, PREAMBLE, VERSION};

use crate::conn::Conn;
use crate::context::Context;
use crate::control::Stop;
use crate::departure::Departure;
use crate::outbox::{End, Limits, Outbox};
use crate::readbuf::ReadBuf;
use crate::reader::{read_binary, read_text};
use crate::refuse::{drain, refuse};
use crate::room::Client;
use crate::sniff::{opening, Opening, Until};
use crate::sys::{configure_client, wait_readable};
use crate::wire::{self, Mode};

/// Serves one accepted connection until it ends.
pub(crate) fn serve(stream: TcpStream, peer: PeerAddr, ctx: &Context) {
    let config = &ctx.config;
    if let Err(e) = configure_client(&stream, config) {
        tracing::warn!("{peer}: cannot set socket options: {e}");
    }
    let mut buf = ReadBuf::new(config.read_buffer);
    let sniffed = match wait_readable(&stream, Some(config.sniff_timeout)) {
        // Silent for the whole sniff: a text client (a human at a terminal, an idle
        // program), which is given a read buffer only when it speaks.
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(Opening::Speaks(Mode::Text, 0)),
        _ => opening(&stream, buf.whole(), config.sniff_timeout, Until::FirstLine),
    };
    let (mode, have) = match sniffed {
        Ok(Opening::Speaks(mode, have)) => (mode, have),
        Ok(Opening::Silent) => return,
        Ok(Opening::WrongVersion(version)) => {
            tracing::warn!("{peer}: refused, protocol version {version}");
            let text = format!(
                "{}: this server speaks version {VERSION}, not {version}",
                ErrorCode::UNSUPPORTED_VERSION
            );
            let bytes = wire::refusal(Mode::Binary, ErrorCode::UNSUPPORTED_VERSION, &text);
            return refuse(&stream, &bytes);
        }
        Err(e) => return tracing::info!("{peer}: connection failed at once: {e}"),
    };
    match start(&stream, mode, &buf.bytes()[..have]) {
        Ok(()) => {}
        Err(e @ StartError::Http) => return tracing::warn!("{peer}: {e}"),
        Err(e) => return tracing::info!("{peer}: {e}"),
    }
    let client = Arc::new(Client {
        id: ctx.room.next_id(),
        peer,
        outbox: Outbox::new(
            Conn::plain(stream),
            mode,
            Limits::of(config),
            ctx.room.pacer().clone(),
            ctx.pool.clone(),
        ),
    });
    let Some(member) = Member::enter(client, ctx) else {
        return;
    };
    let departure = match mode {
        Mode::Binary => read_binary(&member.client, &mut buf, have, ctx),
        Mode::Text => read_text(&member.client, &mut buf, have, ctx),
    };
    member.depart(departure);
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
                    refuse(stream, &wire::http_refusal());
                    return Err(StartError::Http);
                }
            }
            stream.set_read_timeout(None).map_err(StartError::Io)?;
        }
    }
    Ok(())
}

/// A client in the room. Dropping it (also when the reader panics) takes the client
/// out of the room and ends its outbox.
struct Member<'s> {
    client: Arc<Client>,
    ctx: &'s Context,
    departure: Option<Departure>,
    /// In the room (the join succeeded), so leaving is announced and logged.
    joined: bool,
}

impl<'s> Member<'s> {
    /// Joins the room; `None` if the server is shutting down.
    fn enter(client: Arc<Client>, ctx: &'s Context) -> Option<Self> {
        let peer = client.peer;
        let mut member = Member {
            client,
            ctx,
            departure: None,
            joined: false,
        };
        match ctx.room.join(member.client.clone()) {
            Some(count) => {
                member.joined = true;
                let mode = member.client.outbox.mode();
                tracing::info!("{peer} joined ({mode}; {count} in the room)");
                Some(member)
            }
            None => {
                // Still sniffing when the server began to stop, so `shut_down` did not
                // see it: after a signal it is owed the same notice as the room.
                if ctx.control.stopping() == Some(Stop::Terminate) {
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
            let closing = self.ctx.control.stopping().is_some();
            let mut why = departure.reason(outbox.ended(), closing);
            if let (Some(why), Some(dropped)) = (&mut why, outbox.dropped()) {
                why.push_str(&format!(": {dropped}"));
            }
            let count = self.ctx.room.leave(self.client.id, why.as_deref());
            let peer = self.client.peer;
            match &why {
                Some(why) if Departure::is_trouble(why) => {
                    tracing::warn!("{peer} left: {why} ({count} in the room)");
                }
                Some(why) => tracing::info!("{peer} left: {why} ({count} in the room)"),
                None => tracing::info!("{peer} left ({count} in the room)"),
            }
        }
        outbox.end(departure.end());
        let deadline = Instant::now() + self.ctx.config.shutdown_grace;
        if !outbox.wait_done(deadline) {
            outbox.end(End::Cut);
        }
        if departure.end() == End::Flush {
            drain(outbox.conn().tcp());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::is_transient;
    use crate::{Config, Control};
    use std::io::Read;
    use std::net::TcpListener;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::time::Duration;

    #[test]
    fn a_panicking_reader_still_leaves_the_room_and_closes_its_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut outside = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (inside, addr) = listener.accept().unwrap();
        let ctx = Context::new(Config::default(), Control::new()).unwrap();
        let client = Arc::new(Client {
            id: 1,
            peer: PeerAddr::from(addr),
            outbox: Outbox::new(
                Conn::plain(inside),
                Mode::Text,
                Limits::of(&ctx.config),
                ctx.room.pacer().clone(),
                ctx.pool.clone(),
            ),
        });
        let result = catch_unwind(AssertUnwindSafe(|| {
            let _member = Member::enter(client, &ctx).expect("joined");
            assert_eq!(ctx.control.peers().len(), 1);
            panic!("a bug in the reader");
        }));
        assert!(result.is_err());
        assert!(ctx.control.peers().is_empty());
        outside
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        match outside.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) => assert!(!is_transient(&e), "connection left open: {e}"),
        }
        assert!(got.starts_with(b"*** welcome"), "{got:?}");
    }
}
