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
use socket2::{Domain, Protocol, Socket, Type};

use crate::backplane;
use crate::config::Config;
use crate::context::{AddressCounted, Context, Counted, Counter};
use crate::control::{Control, Stop};
use crate::error::ServerError;
use crate::gate::{self, Entry};
use crate::outbox::End;
use crate::refuse::refuse;
use crate::session;
use crate::sniff::{opening, Opening, Until};
use crate::sys::{raise_fd_limit, send_now, wait_readable};
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
    let addrs = config
        .bind
        .resolve()
        .map_err(|source| ServerError::Resolve {
            addr: config.bind.clone(),
            source,
        })?;
    let mut failure = None;
    for (i, &addr) in addrs.iter().enumerate() {
        match bind_one(addr, config.backlog) {
            Ok(listener) => {
                if addrs.len() > 1 {
                    tracing::info!(
                        "{} resolves to {}; listening on {addr}",
                        config.bind,
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
        addr: config.bind.clone(),
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
    if let Err(e) = raise_fd_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    listener
        .set_nonblocking(true)
        .map_err(ServerError::Listener)?;
    let ctx = Arc::new(Context::new(config.clone(), control.clone())?);
    let backplane = match &config.backplane {
        Some(bp) => Some(
            backplane::start(bp, &ctx.room, config.thread_stack).map_err(ServerError::Backplane)?,
        ),
        None => None,
    };
    if !config.allow.is_empty() {
        let nets: Vec<String> = config.allow.iter().map(ToString::to_string).collect();
        tracing::info!("accepting clients only from {}", nets.join(", "));
        if let Ok(local) = listener.local_addr() {
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
    let how = accept_loop(&listener, &ctx);
    drop(listener);
    let how = match how {
        Ok(how) => how,
        Err(e) => {
            ctx.room.close();
            ctx.stop_writers();
            let _ = notices.join();
            if let Some(running) = backplane {
                running.join();
            }
            return Err(e);
        }
    };
    shut_down(&ctx, how);
    ctx.stop_writers();
    let _ = notices.join();
    if let Some(running) = backplane {
        running.join();
    }
    Ok(())
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

/// A connection accepted and counted (against its address too, if capped), waiting
/// for its thread.
type Admitted = (TcpStream, PeerAddr, Counted, Option<AddressCounted>);

fn accept_loop(listener: &TcpListener, ctx: &Arc<Context>) -> Result<Stop, ServerError> {
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
        match listener.accept() {
            Ok((stream, addr)) => {
                if let Some(a) = admit(stream, addr, ctx) {
                    let _ = admitted.send(a);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Woken by a connection, or after STOP_POLL to look for a stop request.
                let _ = wait_readable(listener, Some(STOP_POLL));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors, or a connection reset before it was accepted:
                // neither is the listener's fault, so pause and go on.
                tracing::warn!("accept failed: {e}");
                thread::sleep(ctx.config.accept_pause);
            }
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
    let config = &ctx.config;
    let address = match gate::entry(
        addr.ip(),
        &config.allow,
        config.max_per_address,
        config.cap_loopback,
    ) {
        Entry::NotAllowed => {
            tracing::warn!("{peer}: refused, not in the allow list");
            let text = format!(
                "{}: your address {} is not allowed on this server",
                ErrorCode::REFUSED,
                addr.ip().to_canonical()
            );
            turn_away(stream, peer, ErrorCode::REFUSED, text, ctx);
            return None;
        }
        Entry::Uncounted => None,
        Entry::Counted(ip) => match ctx.count_address(ip, config.max_per_address) {
            Ok(counted) => Some(counted),
            Err(held) => {
                let held = match held {
                    1 => "1 connection".to_string(),
                    n => format!("{n} connections"),
                };
                tracing::warn!(
                    "{peer}: refused, {ip} already holds {held} (--max-per-address {})",
                    config.max_per_address
                );
                let text = format!(
                    "{}: {ip} already holds {held}, the most one address may; \
                     close one and try again",
                    ErrorCode::TOO_MANY_FROM_ADDRESS
                );
                turn_away(stream, peer, ErrorCode::TOO_MANY_FROM_ADDRESS, text, ctx);
                return None;
            }
        },
    };
    match ctx.count(Counter::Sessions, config.max_clients) {
        Some(counted) => Some((stream, peer, counted, address)),
        None => {
            // `address` is given back when it is dropped here.
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

/// Starts the thread that serves an admitted connection.
fn start_session((stream, peer, count, address): Admitted, stack: usize) {
    let spawned = thread::Builder::new()
        .name(format!("reader {peer}"))
        .stack_size(stack)
        .spawn(move || {
            let ctx = count.context().clone();
            let _count = count;
            let _address = address;
            if catch_unwind(AssertUnwindSafe(|| session::serve(stream, peer, &ctx))).is_err() {
                tracing::error!("{peer}: connection thread panicked; connection closed");
            }
        });
    if let Err(e) = spawned {
        tracing::error!("{peer}: cannot start a thread, connection closed: {e}");
    }
}

/// Tells a connection that is not admitted why, with error `code` and `text`, and
/// closes it: in the client's own form when a refuser thread is free to wait for its
/// first bytes, in text form at once otherwise. Nobody in the room hears of it.
fn turn_away(stream: TcpStream, peer: PeerAddr, code: ErrorCode, text: String, ctx: &Arc<Context>) {
    let Some(count) = ctx.count(Counter::Refusers, ctx.config.max_refusers) else {
        let _ = send_now(&stream, &wire::refusal(Mode::Text, code, &text));
        return;
    };
    let timeout = ctx.config.sniff_timeout;
    let web = ctx.config.web;
    let _ = thread::Builder::new()
        .name(format!("refuser {peer}"))
        .stack_size(ctx.config.thread_stack)
        .spawn(move || {
            let _count = count;
            // Enough of a first line to tell an HTTP request.
            let mut buf = [0u8; 64];
            let until = if web { Until::FirstLine } else { Until::Mode };
            // A refusal goes out in the client's own form; a binary client that
            // asks for another version is still told in binary, a browser in HTTP.
            let (mode, have) = match opening(&stream, &mut buf, timeout, until) {
                Ok(Opening::Speaks(mode, have)) => (mode, have),
                Ok(Opening::WrongVersion(_)) => (Mode::Binary, 0),
                Ok(Opening::Silent) | Err(_) => (Mode::Text, 0),
            };
            if web && mode == Mode::Text && web::is_request(&buf[..have]) {
                return refuse(&stream, &web::unavailable(&text));
            }
            refuse(&stream, &wire::refusal(mode, code, &text));
        });
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
