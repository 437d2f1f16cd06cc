//! One connection, from its first bytes to its last: telling binary from text,
//! joining the room, reading messages (see `reader`), and leaving.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto_core::{looks_like_http, ErrorCode, LineDecoder, PeerAddr, PREAMBLE, VERSION};

use crate::conn::{send_all, Conn};
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
use crate::tls::{handshake, starts_tls};
use crate::web::{self, Served};
use crate::wire::{self, Mode};

/// Serves one accepted connection until it ends. `front` is the PROXY front it came
/// through, if any (`peer` is then the client the front named).
pub(crate) fn serve(stream: TcpStream, peer: PeerAddr, front: Option<SocketAddr>, ctx: &Context) {
    let mut buf = ReadBuf::new(ctx.config.read_buffer);
    let Some(joined) = join(stream, peer, front, &mut buf, ctx) else {
        return;
    };
    let Joined {
        member,
        mode,
        have,
        after_head,
    } = joined;
    let departure = match mode {
        Mode::Binary => read_binary(&member.client, &mut buf, have, ctx),
        Mode::Text => read_text(&member.client, &mut buf, have, ctx),
        Mode::WebSocket => read_websocket(&member.client, &mut buf, &after_head, ctx),
    };
    member.depart(departure);
}

/// A client that has joined the room, and what its read loop starts from.
struct Joined<'s> {
    member: Member<'s>,
    mode: Mode,
    /// Bytes of the read buffer already read (the first ones, sniffed).
    have: usize,
    /// A WebSocket's bytes that came after its upgrade request.
    after_head: Vec<u8>,
}

/// Secures, sniffs and starts a connection and joins it to the room; `None` when it
/// ended on the way (answered, refused or failed, and logged).
///
/// Never inlined into [`serve`]: its frames (a TLS handshake, the sniff, the web's
/// answers) are deep, and an idle reader's stack is [`serve`]'s frame and what it
/// waits in, not the deepest path a connection took (see `stack`).
#[inline(never)]
fn join<'s>(
    stream: TcpStream,
    peer: PeerAddr,
    front: Option<SocketAddr>,
    buf: &mut ReadBuf,
    ctx: &'s Context,
) -> Option<Joined<'s>> {
    let config = &ctx.config;
    if let Err(e) = configure_client(&stream, config) {
        tracing::warn!("{peer}: cannot set socket options: {e}");
    }
    let started = Instant::now();
    let conn = secure(stream, peer, ctx)?;
    // A plain client's wait for its first bytes (to see whether it starts TLS) is
    // part of its sniff; a TLS client's sniff starts after its handshake.
    let sniff_for = match conn.is_tls() {
        true => config.sniff_timeout,
        false => config.sniff_timeout.saturating_sub(started.elapsed()),
    };
    let mut sniffed = sniff(&conn, buf, sniff_for.max(MIN_SNIFF));
    if matches!(sniffed, Ok(Opening::Speaks(Mode::Text, 0))) && spare_suspect(peer, ctx) {
        sniffed = sniff(&conn, buf, config.web_spare_wait);
        if let Ok(Opening::Silent) = sniffed {
            tracing::debug!("{peer}: a silent spare connection of a browser, closed");
        }
    }
    let (mode, have) = match sniffed {
        Ok(Opening::Speaks(mode, have)) => (mode, have),
        Ok(Opening::Silent) => return None,
        Ok(Opening::WrongVersion(version)) => {
            tracing::warn!("{peer}: refused, protocol version {version}");
            let text = format!(
                "{}: this server speaks version {VERSION}, not {version}",
                ErrorCode::UNSUPPORTED_VERSION
            );
            let bytes = wire::refusal(Mode::Binary, ErrorCode::UNSUPPORTED_VERSION, &text);
            refuse(&conn, &bytes);
            return None;
        }
        Err(e) => {
            tracing::info!("{peer}: connection failed at once: {e}");
            return None;
        }
    };
    if config.tls_required && !conn.is_tls() {
        tracing::warn!("{peer}: refused, not TLS (--tls-required)");
        let first = &buf.bytes()[..have];
        if config.web && mode == Mode::Text && web::is_request(first) {
            // A browser that typed http:// is sent to https://, on the same port.
            web::insist_on_tls(&conn, first, peer, ctx);
            return None;
        }
        let text = format!(
            "{}: this server takes TLS connections only; connect with TLS \
             (host-client --tls, openssl s_client, ncat --ssl)",
            ErrorCode::REFUSED
        );
        refuse(&conn, &wire::refusal(mode, ErrorCode::REFUSED, &text));
        return None;
    }
    let (mode, after_head) = match start(&conn, mode, &buf.bytes()[..have], peer, ctx) {
        Ok(Started::Client(mode)) => (mode, Vec::new()),
        Ok(Started::WebSocket(after_head)) => (Mode::WebSocket, after_head),
        Ok(Started::Served) => return None,
        Err(e @ StartError::Http) => {
            tracing::warn!("{peer}: {e}");
            return None;
        }
        Err(e) => {
            tracing::info!("{peer}: {e}");
            return None;
        }
    };
    let client = Arc::new(Client {
        id: ctx.room.next_id(),
        peer,
        outbox: Outbox::new(
            conn,
            mode,
            Limits::of(config),
            ctx.room.pacer().clone(),
            ctx.pool.clone(),
        ),
    });
    let member = Member::enter(client, front, ctx)?;
    Some(Joined {
        member,
        mode,
        have,
        after_head,
    })
}

/// Tells the client's mode within `timeout`. One silent all that time is a text
/// client (a human at a terminal, an idle program), which is given a read buffer
/// only when it speaks.
fn sniff(conn: &Conn, buf: &mut ReadBuf, timeout: Duration) -> io::Result<Opening> {
    // Plaintext that came in with the end of a TLS handshake is inside the session
    // already and does not make the socket readable: a TLS client goes straight to
    // the read, which looks there first.
    if !conn.is_tls() {
        let waited = wait_readable(conn.tcp(), Some(timeout));
        if matches!(waited, Err(e) if e.kind() == io::ErrorKind::TimedOut) {
            return Ok(Opening::Speaks(Mode::Text, 0));
        }
    }
    opening(conn, buf.whole(), timeout, Until::FirstLine)
}

/// The shortest sniff: a plain client that took the whole sniff timeout to show it
/// is not TLS still gets a moment for its first bytes.
const MIN_SNIFF: Duration = Duration::from_millis(10);

/// How long the preamble may take to go out to a binary client.
const PREAMBLE_WAIT: Duration = Duration::from_secs(1);

/// The connection as the room will use it: with TLS configured, a client whose
/// first bytes open a TLS handshake gets its handshake now (within
/// `tls_handshake_timeout`); any other is plain. `None` when the handshake failed or
/// the connection did (logged).
pub(crate) fn secure(stream: TcpStream, peer: PeerAddr, ctx: &Context) -> Option<Conn> {
    let Some(tls) = &ctx.tls else {
        return Some(Conn::plain(stream));
    };
    match starts_tls(&stream, ctx.config.sniff_timeout) {
        Ok(true) => match handshake(stream, tls, ctx.config.tls_handshake_timeout) {
            Ok(conn) => Some(conn),
            Err(e) => {
                tracing::info!("{peer}: {e}");
                None
            }
        },
        Ok(false) => Some(Conn::plain(stream)),
        Err(e) => {
            tracing::info!("{peer}: connection failed at once: {e}");
            None
        }
    }
}

/// True when a connection that has said nothing may be a browser's spare: its
/// address (the forwarded one behind a PROXY front) loaded the chat page lately (see
/// `visits`).
fn spare_suspect(peer: PeerAddr, ctx: &Context) -> bool {
    let config = &ctx.config;
    config.web
        && config.web_spare_wait > config.sniff_timeout
        && ctx.visits.lately(peer.socket_addr().ip(), Instant::now())
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
    conn: &Conn,
    mode: Mode,
    first: &[u8],
    peer: PeerAddr,
    ctx: &Context,
) -> Result<Started, StartError> {
    let mut started = Started::Client(mode);
    match mode {
        Mode::Binary => {
            let deadline = Instant::now() + PREAMBLE_WAIT;
            send_all(conn, &PREAMBLE, deadline).map_err(StartError::Io)?;
        }
        Mode::Text | Mode::WebSocket => {
            let mut probe = LineDecoder::new();
            if let (_, Some(Ok(line))) = probe.feed(first) {
                if looks_like_http(line) && !ctx.config.web {
                    refuse(conn, &wire::http_refusal());
                    return Err(StartError::Http);
                }
                if looks_like_http(line) {
                    match web::serve(conn, first, peer, ctx) {
                        Served::Done => return Ok(Started::Served),
                        Served::Upgraded(after) => started = Started::WebSocket(after),
                    }
                }
            }
            conn.tcp().set_read_timeout(None).map_err(StartError::Io)?;
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
    /// Joins the room; `None` if the server is shutting down. The join is logged
    /// with the PROXY `front` the client came through, if any.
    fn enter(client: Arc<Client>, front: Option<SocketAddr>, ctx: &'s Context) -> Option<Self> {
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
                let tls = if member.client.outbox.conn().is_tls() {
                    " over TLS"
                } else {
                    ""
                };
                match front {
                    Some(front) => tracing::info!(
                        "{peer} joined ({mode}{tls}; via PROXY front {}; {count} in the room)",
                        PeerAddr::from(front)
                    ),
                    None => tracing::info!("{peer} joined ({mode}{tls}; {count} in the room)"),
                }
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
            let _member = Member::enter(client, None, &ctx).expect("joined");
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
