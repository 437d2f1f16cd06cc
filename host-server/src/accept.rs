//! The listener: binding, the accept loop with its connection caps (in all, and per
//! address) and its allow list, and the orderly shutdown of every connection. Each admitted connection gets a thread that runs
//! its session (see `session`).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use proto_core::{ErrorCode, PeerAddr};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use socket2::{Domain, Protocol, Socket, Type};

use crate::backplane;
use crate::bind_addr::BindAddr;
use crate::config::Config;
use crate::context::{AddressCounted, Context, Counted, Counter};
use crate::control::{Control, Stop};
use crate::error::ServerError;
use crate::gate::{self, Entry};
use crate::outbox::End;
use crate::overflow::Overflow;
use crate::proxy;
use crate::refuse::refuse;
use crate::session;
use crate::sniff::{opening, Opening, Until};
use crate::sys::{raise_fd_limit, send_now, wait_readable};
use crate::tls;
use crate::web;
use crate::wire::{self, Mode};

/// How often the accept loop looks for a stop request while no one connects.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long [`run`] waits for connection threads to end after cutting them, on top
/// of the sniff timeout (a connection still being sniffed learns of the stop only
/// when its sniffing ends).
const THREADS_GRACE: Duration = Duration::from_secs(2);

/// Opens the listening socket of `config.bind` with `config.backlog`. An IPv6
/// address listens dual-stack, so `[::]:9000` takes IPv4 clients too. A host name
/// is resolved and its addresses tried in turn (IPv4 first): the server listens on
/// the first that binds, which `TcpListener::local_addr` tells.
///
/// # Errors
/// [`ServerError::Resolve`] if the name does not resolve; [`ServerError::Bind`]
/// (for the last address tried) if no address can be bound or listened on.
pub fn bind(config: &Config) -> Result<TcpListener, ServerError> {
    bind_addr(&config.bind, config.backlog)
}

/// Opens the listeners of `config.proxy_listen` (none if it is empty), each as
/// [`bind`] opens the main one; they are passed to [`run_with_fronts`].
///
/// # Errors
/// As [`bind`], for the first address that cannot be listened on.
pub fn bind_fronts(config: &Config) -> Result<Vec<TcpListener>, ServerError> {
    config
        .proxy_listen
        .iter()
        .map(|addr| bind_addr(addr, config.backlog))
        .collect()
}

/// Resolves `wanted` and listens on the first of its addresses that binds.
fn bind_addr(wanted: &BindAddr, backlog: u32) -> Result<TcpListener, ServerError> {
    let addrs = wanted.resolve().map_err(|source| ServerError::Resolve {
        addr: wanted.clone(),
        source,
    })?;
    let mut failure = None;
    for (i, &addr) in addrs.iter().enumerate() {
        match bind_one(addr, backlog) {
            Ok(listener) => {
                if addrs.len() > 1 {
                    tracing::info!(
                        "{wanted} resolves to {}; listening on {addr}",
                        addrs
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                return Ok(listener);
            }
            Err(source) => {
                if i + 1 < addrs.len() {
                    tracing::warn!("cannot listen on {addr}: {source}; trying the next address");
                }
                failure = Some(ServerError::Bind { addr, source });
            }
        }
    }
    // `resolve` never gives an empty list, so there was a failure.
    Err(failure.unwrap_or_else(|| ServerError::Resolve {
        addr: wanted.clone(),
        source: io::ErrorKind::NotFound.into(),
    }))
}

/// Binds and listens on one address.
fn bind_one(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    // Lets a restarted server bind while old connections linger in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Serves clients on `listener` until `control` is told to stop, then closes every
/// connection and returns. The listener may be bound to any address, port 0 included.
///
/// # Errors
/// [`ServerError::Listener`] if the listener cannot be switched to non-blocking mode,
/// [`ServerError::Thread`] if the server's own thread cannot be started.
pub fn run(listener: TcpListener, config: &Config, control: &Control) -> Result<(), ServerError> {
    run_with_fronts(listener, Vec::new(), config, control)
}

/// As [`run`], also serving `fronts` (from [`bind_fronts`]): listeners whose
/// connections come from trusted fronts (`config.proxy_trusted`) and open with a
/// PROXY protocol header naming the client.
///
/// # Errors
/// As [`run`].
pub fn run_with_fronts(
    listener: TcpListener,
    fronts: Vec<TcpListener>,
    config: &Config,
    control: &Control,
) -> Result<(), ServerError> {
    if let Err(e) = raise_fd_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    let mut listeners = vec![(listener, Door::Public)];
    listeners.extend(fronts.into_iter().map(|l| (l, Door::Front)));
    for (listener, _) in &listeners {
        listener
            .set_nonblocking(true)
            .map_err(ServerError::Listener)?;
    }
    let tls = load_tls(config)?;
    let mut config = config.clone();
    if tls.is_some() && config.thread_stack < tls::MIN_STACK {
        // Threads that handshake or encrypt need more stack than plain ones (the
        // pages are only touched by the cryptography, so idle clients cost no more).
        config.thread_stack = tls::MIN_STACK;
    }
    let config = &config;
    // The writer pool's threads encrypt too: they start with the raised stack.
    let mut ctx = Context::new(config.clone(), control.clone())?;
    if tls.is_some() {
        let held = Overflow::start(
            config.max_held_refusals,
            config.sniff_timeout,
            config.max_refusers,
            config.thread_stack,
        );
        ctx.overflow = Some(held.map_err(ServerError::Thread)?);
    }
    ctx.tls = tls;
    let ctx = Arc::new(ctx);
    let backplane = match &config.backplane {
        Some(bp) => Some(
            backplane::start(bp, &ctx.room, config.thread_stack).map_err(ServerError::Backplane)?,
        ),
        None => None,
    };
    if !config.allow.is_empty() {
        let nets: Vec<String> = config.allow.iter().map(ToString::to_string).collect();
        tracing::info!("accepting clients only from {}", nets.join(", "));
        // A front may forward clients of either family, whatever it listens on.
        let public = listeners[0].0.local_addr();
        if let (Ok(local), true) = (public, listeners.len() == 1) {
            for net in gate::never_admitted(&config.allow, local) {
                tracing::warn!(
                    "--allow {net} can never match: the server listens on {local}, IPv4 \
                     only (listen on [::]:{} for IPv6 clients too)",
                    local.port()
                );
            }
        }
    }
    let notices = spawn_notices(&ctx)?;
    if listeners.len() > 1 {
        let nets: Vec<String> = config
            .proxy_trusted
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!("PROXY fronts trusted from {}", nets.join(", "));
    }
    let how = accept_loop(&listeners, &ctx);
    drop(listeners);
    let how = match how {
        Ok(how) => how,
        Err(e) => {
            ctx.room.close();
            ctx.stop_writers();
            ctx.stop_overflow();
            let _ = notices.join();
            if let Some(running) = backplane {
                running.join();
            }
            return Err(e);
        }
    };
    shut_down(&ctx, how);
    ctx.stop_writers();
    ctx.stop_overflow();
    let _ = notices.join();
    if let Some(running) = backplane {
        running.join();
    }
    Ok(())
}

/// Checks what can be checked before listening: that the TLS certificate and key
/// (if any) load and belong together. [`run`] loads them again.
///
/// # Errors
/// [`ServerError::Tls`], naming the file.
pub fn check(config: &Config) -> Result<(), ServerError> {
    load_tls(config).map(drop)
}

/// The TLS configuration `config` asks for, if any.
fn load_tls(config: &Config) -> Result<Option<Arc<rustls::ServerConfig>>, ServerError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => tls::load(cert, key).map(Some).map_err(ServerError::Tls),
        _ => Ok(None),
    }
}

/// Starts the thread that sends join and leave notices in bursts (see `room`).
fn spawn_notices(ctx: &Context) -> Result<thread::JoinHandle<()>, ServerError> {
    let room = ctx.room.clone();
    thread::Builder::new()
        .name("notices".into())
        .stack_size(ctx.config.thread_stack)
        .spawn(move || {
            // It returns when the room closes; after a panic it carries on.
            while catch_unwind(AssertUnwindSafe(|| room.send_notices())).is_err() {
                tracing::error!("notice thread panicked; restarting it");
            }
        })
        .map_err(ServerError::Thread)
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    /// The main listener: the peer is the client.
    Public,
    /// A `--proxy-listen` listener: the peer is a front, and the client is named by
    /// the PROXY header that opens the connection.
    Front,
}

/// A connection accepted and counted (against its address too, if capped), waiting
/// for its thread.
struct Admitted {
    stream: TcpStream,
    /// The peer: the client, or for a front's connection the front until its header
    /// names the client.
    peer: PeerAddr,
    count: Counted,
    address: Option<AddressCounted>,
    /// The front's address, for a connection through a PROXY listener.
    front: Option<SocketAddr>,
}

fn accept_loop(listeners: &[(TcpListener, Door)], ctx: &Arc<Context>) -> Result<Stop, ServerError> {
    // Threads are started by a thread of their own, so a burst of connections is
    // taken off the kernel's backlog at once instead of overflowing it (an
    // overflow makes a connecting client wait a second for its SYN to be resent).
    let (admitted, starter) = mpsc::channel::<Admitted>();
    let stack = ctx.config.thread_stack;
    let starter = thread::Builder::new()
        .name("starter".into())
        .stack_size(stack)
        .spawn(move || starter.iter().for_each(|a| start_session(a, stack)))
        .map_err(ServerError::Thread)?;
    let how = loop {
        if let Some(how) = ctx.control.stopping() {
            break how;
        }
        let mut idle = true;
        for (listener, door) in listeners {
            match listener.accept() {
                Ok((stream, addr)) => {
                    idle = false;
                    let a = match door {
                        Door::Public => admit(stream, addr, ctx),
                        Door::Front => admit_front(stream, addr, ctx),
                    };
                    if let Some(a) = a {
                        let _ = admitted.send(a);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => idle = false,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was
                    // accepted: neither is the listener's fault, so pause and go on.
                    tracing::warn!("accept failed: {e}");
                    thread::sleep(ctx.config.accept_pause);
                }
            }
        }
        if idle {
            // Woken by a connection, or after STOP_POLL to look for a stop request.
            let _ = wait_any_readable(listeners, STOP_POLL);
        }
    };
    drop(admitted);
    let _ = starter.join();
    Ok(how)
}

/// Counts an accepted connection in, or turns it away if its address is not
/// allowed, already holds `max_per_address` connections, or the room is full.
fn admit(stream: TcpStream, addr: SocketAddr, ctx: &Arc<Context>) -> Option<Admitted> {
    let peer = PeerAddr::from(addr);
    if let Err(e) = stream.set_nonblocking(false) {
        tracing::warn!("{peer}: cannot use the connection: {e}");
        return None;
    }
    let address = match address_entry(addr, &peer, ctx) {
        Ok(address) => address,
        Err((code, text)) => {
            turn_away(stream, peer, code, text, ctx);
            return None;
        }
    };
    let (stream, count) = count_session(stream, peer, ctx)?;
    Some(Admitted {
        stream,
        peer,
        count,
        address,
        front: None,
    })
}

/// Counts in a connection on a PROXY listener if its peer is a trusted front and
/// the room is not full; its client's address is checked once the header names it
/// (see [`forwarded`]). An untrusted peer is closed unheard, with a log line.
fn admit_front(stream: TcpStream, addr: SocketAddr, ctx: &Arc<Context>) -> Option<Admitted> {
    let peer = PeerAddr::from(addr);
    let ip = addr.ip().to_canonical();
    if !ctx.config.proxy_trusted.iter().any(|net| net.contains(&ip)) {
        tracing::warn!("{peer}: closed, not a trusted PROXY front (--proxy-trusted)");
        return None;
    }
    if let Err(e) = stream.set_nonblocking(false) {
        tracing::warn!("{peer}: cannot use the connection: {e}");
        return None;
    }
    let (stream, count) = count_session(stream, peer, ctx)?;
    Some(Admitted {
        stream,
        peer,
        count,
        address: None,
        front: Some(addr),
    })
}

/// Counts one more session, or turns the connection away as the room is full.
fn count_session(
    stream: TcpStream,
    peer: PeerAddr,
    ctx: &Arc<Context>,
) -> Option<(TcpStream, Counted)> {
    let config = &ctx.config;
    match ctx.count(Counter::Sessions, config.max_clients) {
        Some(counted) => Some((stream, counted)),
        None => {
            tracing::warn!("{peer}: refused, server full");
            let text = format!(
                "{}: the room holds {} clients; try again later",
                ErrorCode::SERVER_FULL,
                config.max_clients
            );
            turn_away(stream, peer, ErrorCode::SERVER_FULL, text, ctx);
            None
        }
    }
}

/// What the allow list and the per-address cap say of a client at `addr` (`who` in
/// the log): its unit of the cap (if counted), or the code and text of a refusal.
fn address_entry(
    addr: SocketAddr,
    who: &dyn std::fmt::Display,
    ctx: &Arc<Context>,
) -> Result<Option<AddressCounted>, (ErrorCode, String)> {
    let config = &ctx.config;
    let cap = gate::Cap {
        max: config.max_per_address,
        loopback: config.cap_loopback,
        ipv6_prefix: config.ipv6_prefix,
    };
    match gate::entry(addr.ip(), &config.allow, cap) {
        Entry::NotAllowed => {
            tracing::warn!("{who}: refused, not in the allow list");
            let text = format!(
                "{}: your address {} is not allowed on this server",
                ErrorCode::REFUSED,
                addr.ip().to_canonical()
            );
            Err((ErrorCode::REFUSED, text))
        }
        Entry::Uncounted => Ok(None),
        Entry::Counted(ip) => match ctx.count_address(ip, config.max_per_address) {
            Ok(counted) => Ok(Some(counted)),
            Err(held) => {
                let held = match held {
                    1 => "1 connection".to_string(),
                    n => format!("{n} connections"),
                };
                tracing::warn!(
                    "{who}: refused, {ip} already holds {held} (--max-per-address {})",
                    config.max_per_address
                );
                let text = format!(
                    "{}: {ip} already holds {held}, the most one address may; \
                     close one and try again",
                    ErrorCode::TOO_MANY_FROM_ADDRESS
                );
                Err((ErrorCode::TOO_MANY_FROM_ADDRESS, text))
            }
        },
    }
}

/// What the PROXY header of a front's connection decided.
enum Forwarded {
    /// The client it names, admitted, with its unit of the cap if counted.
    Client(PeerAddr, Option<AddressCounted>),
    /// The header was bad or missing (logged): close the connection unheard.
    Closed,
    /// The client it names is refused, with this code and text.
    Refused(PeerAddr, ErrorCode, String),
}

/// Reads the PROXY header of a connection from the front at `front`, and checks the
/// client it names as [`admit`] checks a direct one. Out of line, so that its header
/// buffer is not part of an idle reader's stack (see `stack`).
#[inline(never)]
fn forwarded(stream: &TcpStream, front: SocketAddr, ctx: &Arc<Context>) -> Forwarded {
    let via = PeerAddr::from(front);
    let source = match proxy::read_header(stream, ctx.config.proxy_timeout) {
        Ok(source) => source,
        Err(e) => {
            tracing::warn!("{via}: PROXY front closed: {e}");
            return Forwarded::Closed;
        }
    };
    // LOCAL and UNKNOWN: the front speaks for itself (a health check).
    let addr = source.unwrap_or(front);
    let peer = PeerAddr::from(addr);
    let who = format!("{peer} (via {via})");
    match address_entry(addr, &who, ctx) {
        Ok(address) => Forwarded::Client(peer, address),
        Err((code, text)) => Forwarded::Refused(peer, code, text),
    }
}

/// Starts the thread that serves an admitted connection.
fn start_session(admitted: Admitted, stack: usize) {
    let Admitted {
        stream,
        peer,
        count,
        address,
        front,
    } = admitted;
    let spawned = thread::Builder::new()
        .name(format!("reader {peer}"))
        .stack_size(stack)
        .spawn(move || {
            let ctx = count.context().clone();
            let _count = count;
            let (peer, _address) = match front {
                None => (peer, address),
                Some(front) => match forwarded(&stream, front, &ctx) {
                    Forwarded::Client(peer, address) => (peer, address),
                    Forwarded::Closed => return,
                    Forwarded::Refused(peer, code, text) => {
                        return turn_away(stream, peer, code, text, &ctx);
                    }
                },
            };
            let serve = || session::serve(stream, peer, front, &ctx);
            if catch_unwind(AssertUnwindSafe(serve)).is_err() {
                tracing::error!("{peer}: connection thread panicked; connection closed");
            }
        });
    if let Err(e) = spawned {
        tracing::error!("{peer}: cannot start a thread, connection closed: {e}");
    }
}

/// Tells a connection that is not admitted why, with error `code` and `text`, and
/// closes it: in the client's own form when a refuser thread is free to wait for its
/// first bytes; otherwise in text form, except that with TLS a TLS client gets an
/// alert its handshake can read (see `overflow`). Nobody in the room hears of it.
fn turn_away(stream: TcpStream, peer: PeerAddr, code: ErrorCode, text: String, ctx: &Arc<Context>) {
    let Some(count) = ctx.count(Counter::Refusers, ctx.config.max_refusers) else {
        let notice = wire::refusal(Mode::Text, code, &text);
        match &ctx.overflow {
            Some(overflow) => overflow.refuse(stream, peer, notice),
            None => {
                let _ = send_now(&stream, &notice);
            }
        }
        return;
    };
    let timeout = ctx.config.sniff_timeout;
    let web = ctx.config.web;
    let ctx = ctx.clone();
    let _ = thread::Builder::new()
        .name(format!("refuser {peer}"))
        .stack_size(ctx.config.thread_stack)
        .spawn(move || {
            let _count = count;
            // A refusal goes out in the client's own form, over TLS to a TLS
            // client; a binary client that asks for another version is still told
            // in binary, a browser in HTTP.
            let Some(conn) = session::secure(stream, peer, &ctx) else {
                return;
            };
            // Enough of a first line to tell an HTTP request.
            let mut buf = [0u8; 64];
            let until = if web { Until::FirstLine } else { Until::Mode };
            let (mode, have) = match opening(&conn, &mut buf, timeout, until) {
                Ok(Opening::Speaks(mode, have)) => (mode, have),
                Ok(Opening::WrongVersion(_)) => (Mode::Binary, 0),
                Ok(Opening::Silent) | Err(_) => (Mode::Text, 0),
            };
            if web && mode == Mode::Text && web::is_request(&buf[..have]) {
                return refuse(&conn, &web::unavailable(&text));
            }
            refuse(&conn, &wire::refusal(mode, code, &text));
        });
}

/// Waits until one of `listeners` has a connection waiting, at most `timeout`.
fn wait_any_readable(listeners: &[(TcpListener, Door)], timeout: Duration) -> io::Result<()> {
    if let [(only, _)] = listeners {
        return wait_readable(only, Some(timeout));
    }
    let timeout = Timespec::try_from(timeout).ok();
    let mut fds: Vec<PollFd<'_>> = listeners
        .iter()
        .map(|(l, _)| PollFd::new(l, PollFlags::IN))
        .collect();
    poll(&mut fds, timeout.as_ref())?;
    Ok(())
}

/// Closes every connection the way `how` says, then waits for their threads.
fn shut_down(ctx: &Context, how: Stop) {
    let clients = ctx.room.close();
    let s = if clients.len() == 1 { "" } else { "s" };
    tracing::info!("shutting down: closing {} connection{s}", clients.len());
    // After a signal everyone is told why; after `close`, only WebSocket clients
    // get something (a close frame), so a browser shows a close, not a failure.
    let told: Vec<_> = clients
        .iter()
        .filter(|c| how == Stop::Terminate || c.outbox.mode() == Mode::WebSocket)
        .collect();
    let deadline = Instant::now() + ctx.config.shutdown_grace;
    for client in &told {
        let outbox = &client.outbox;
        match how {
            Stop::Terminate => outbox.push_last(&wire::shutdown(outbox.mode())),
            Stop::Close => outbox.push_last(&[]),
        }
    }
    for client in &told {
        client.outbox.wait_done(deadline);
    }
    for client in &clients {
        client.outbox.end(End::Cut);
    }
    ctx.wait_idle(Instant::now() + THREADS_GRACE + ctx.config.sniff_timeout);
}
