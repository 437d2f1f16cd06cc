//! One connection, from its first bytes to its last: telling binary from text,
//! joining the room, reading messages (see `reader`), and leaving.

use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto_core::{looks_like_http, ErrorCode, LineDecoder, PeerAddr, PREAMBLE, VERSION};

use crate::conn::Conn;
use crate::context::Context;
use crate::control::Stop;
use crate::departure::Departure;
use crate::outbox::{End, Limits, Outbox};
use crate::readbuf::ReadBuf;
use crate::reader::{read_binary, read_text, read_websocket};
use crate::refuse::{drain, refuse};
use crate::room::Client;
use crate::sniff::{opening, Opening, Until};
use crate::sys::{configure_client, wait_readable};
use crate::web::{self, Served};
use crate::wire::{self, Mode};

/// Serves one accepted connection until it ends.
pub(crate) fn serve(stream: TcpStream, peer: PeerAddr, ctx: &Context) {
    let config = &ctx.config;
    if let Err(e) = configure_client(&stream, config) {
        tracing::warn!("{peer}: cannot set socket options: {e}");
    }
    let mut buf = ReadBuf::new(config.read_buffer);
    let mut sniffed = sniff(&stream, &mut buf, config.sniff_timeout);
    if matches!(sniffed, Ok(Opening::Speaks(Mode::Text, 0))) && spare_suspect(&stream, ctx) {
        sniffed = sniff(&stream, &mut buf, config.web_spare_wait);
        if let Ok(Opening::Silent) = sniffed {
            tracing::debug!("{peer}: a silent spare connection of a browser, closed");
        }
    }
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
    let (mode, after_head) = match start(&stream, mode, &buf.bytes()[..have], peer, ctx) {
        Ok(Started::Client(mode)) => (mode, Vec::new()),
        Ok(Started::WebSocket(after_head)) => (Mode::WebSocket, after_head),
        Ok(Started::Served) => return,
        Err(e @ StartError::Http) => return tracing::warn!("{peer}: {e}"),
        Err(e) => return tracing::info!("{peer}: {e}"),
    };
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
        Mode::WebSocket => read_websocket(&member.client, &mut buf, &after_head, ctx),
    };
    member.depart(departure);
}

/// Tells the client's mode within `timeout`. One silent all that time is a text
/// client (a human at a terminal, an idle program), which is given a read buffer
/// only when it speaks.
fn sniff(stream: &TcpStream, buf: &mut ReadBuf, timeout: Duration) -> io::Result<Opening> {
    match wait_readable(stream, Some(timeout)) {
        Err(e) if e.kind() == io::ErrorKind::TimedOut => Ok(Opening::Speaks(Mode::Text, 0)),
        _ => opening(stream, buf.whole(), timeout, Until::FirstLine),
    }
}

/// True when a connection that has said nothing may be a browser's spare: its
/// address loaded the chat page lately (see `web::Visits`).
fn spare_suspect(stream: &TcpStream, ctx: &Context) -> bool {
    let config = &ctx.config;
    let ip = stream.peer_addr().map(|a| a.ip());
    config.web
        && config.web_spare_wait > config.sniff_timeout
        && ip.is_ok_and(|ip| ctx.visits.lately(ip, Instant::now()))
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

/// How a connection starts.
enum Started {
    /// As a client of this mode.
    Client(Mode),
    /// As a WebSocket client, upgraded from HTTP; the bytes that followed the
    /// request head.
    WebSocket(Vec<u8>),
    /// As a web request that has been answered (the page, or an error).
    Served,
}

/// Answers the preamble of a binary client, or a web browser's request (before
/// anyone is told of the connection); sets the read timeout for the rest of the
/// connection.
fn start(
    stream: &TcpStream,
    mode: Mode,
    first: &[u8],
    peer: PeerAddr,
    ctx: &Context,
) -> Result<Started, StartError> {
    let mut started = Started::Client(mode);
    match mode {
        Mode::Binary => {
            let mut s = stream;
            s.write_all(&PREAMBLE).map_err(StartError::Io)?;
        }
        Mode::Text | Mode::WebSocket => {
            let mut probe = LineDecoder::new();
            if let (_, Some(Ok(line))) = probe.feed(first) {
                if looks_like_http(line) && !ctx.config.web {
                    refuse(stream, &wire::http_refusal());
                    return Err(StartError::Http);
                }
                if looks_like_http(line) {
                    match web::serve(stream, first, peer, ctx) {
                        Served::Done => return Ok(Started::Served),
                        Served::Upgraded(after) => started = Started::WebSocket(after),
                    }
                }
            }
            stream.set_read_timeout(None).map_err(StartError::Io)?;
        }
    }
    Ok(started)
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
