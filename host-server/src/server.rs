//! The listener: binding, the accept loop with its connection cap, and the orderly
//! shutdown of every connection.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use proto_core::{sniff, ErrorCode, PeerAddr, Sniff};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Config;
use crate::control::{Control, Stop};
use crate::error::ServerError;
use crate::log::log;
use crate::outbox::End;
use crate::session::{self, refuse};
use crate::sys::{is_timeout, raise_fd_limit, send_now, wait_readable};
use crate::wire::{self, Mode};

/// How often the accept loop looks for a stop request while no one connects.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long [`run`] waits for connection threads to end after cutting them, on top
/// of the sniff timeout (a connection still being sniffed learns of the stop only
/// when its sniffing ends).
const THREADS_GRACE: Duration = Duration::from_secs(2);

/// What every connection thread shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) control: Control,
    /// Connections being served (in the room or about to be).
    sessions: AtomicUsize,
    /// Threads turning away connections over the limit.
    refusers: AtomicUsize,
}

impl Shared {
    /// The shared state of a server with `config`, controlled by `control`.
    pub(crate) fn new(config: Config, control: Control) -> Self {
        Self {
            config,
            control,
            sessions: AtomicUsize::new(0),
            refusers: AtomicUsize::new(0),
        }
    }
}

/// Opens the listening socket of `config.bind` with `config.backlog`. An IPv6
/// address listens dual-stack, so `[::]:9000` takes IPv4 clients too.
///
/// # Errors
/// [`ServerError::Bind`] if the address cannot be bound or listened on.
pub fn bind(config: &Config) -> Result<TcpListener, ServerError> {
    let addr = config.bind;
    let fail = |source| ServerError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(fail)?;
    }
    // Lets a restarted server bind while old connections linger in TIME_WAIT.
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    let backlog = i32::try_from(config.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(fail)?;
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
        log(format_args!("cannot raise the open-file limit: {e}"));
    }
    listener
        .set_nonblocking(true)
        .map_err(ServerError::Listener)?;
    let shared = Arc::new(Shared::new(config.clone(), control.clone()));
    let notices = spawn_notices(&shared)?;
    let how = accept_loop(&listener, &shared);
    drop(listener);
    let how = match how {
        Ok(how) => how,
        Err(e) => {
            shared.control.room.close();
            let _ = notices.join();
            return Err(e);
        }
    };
    shut_down(&shared, how);
    let _ = notices.join();
    Ok(())
}

/// Starts the thread that sends join and leave notices in bursts (see `room`).
fn spawn_notices(shared: &Shared) -> Result<thread::JoinHandle<()>, ServerError> {
    let room = shared.control.room.clone();
    thread::Builder::new()
        .name("notices".into())
        .stack_size(shared.config.thread_stack)
        .spawn(move || {
            // It returns when the room closes; after a panic it carries on.
            while catch_unwind(AssertUnwindSafe(|| room.send_notices())).is_err() {
                log(format_args!("notice thread panicked; restarting it"));
            }
        })
        .map_err(ServerError::Thread)
}

/// A connection accepted and counted, waiting for its thread.
type Admitted = (TcpStream, PeerAddr, Counted);

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) -> Result<Stop, ServerError> {
    // Threads are started by a thread of their own, so a burst of connections is
    // taken off the kernel's backlog at once instead of overflowing it (an
    // overflow makes a connecting client wait a second for its SYN to be resent).
    let (admitted, starter) = mpsc::channel::<Admitted>();
    let stack = shared.config.thread_stack;
    let starter = thread::Builder::new()
        .name("starter".into())
        .stack_size(stack)
        .spawn(move || starter.iter().for_each(|a| start_session(a, stack)))
        .map_err(ServerError::Thread)?;
    let how = loop {
        if let Some(how) = shared.control.stopping() {
            break how;
        }
        match listener.accept() {
            Ok((stream, addr)) => {
                if let Some(a) = admit(stream, addr, shared) {
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
                log(format_args!("accept failed: {e}"));
                thread::sleep(shared.config.accept_pause);
            }
        }
    };
    drop(admitted);
    let _ = starter.join();
    Ok(how)
}

/// Counts an accepted connection in, or turns it away if the room is full.
fn admit(stream: TcpStream, addr: SocketAddr, shared: &Arc<Shared>) -> Option<Admitted> {
    let peer = PeerAddr::from(addr);
    if let Err(e) = stream.set_nonblocking(false) {
        log(format_args!("{peer}: cannot use the connection: {e}"));
        return None;
    }
    // Only this thread adds sessions, so the check cannot race another admission.
    if shared.sessions.load(Ordering::Acquire) >= shared.config.max_clients {
        refuse_full(stream, peer, shared);
        return None;
    }
    shared.sessions.fetch_add(1, Ordering::AcqRel);
    Some((stream, peer, Counted(shared.clone(), Counter::Sessions)))
}

/// Starts the thread that serves an admitted connection.
fn start_session((stream, peer, count): Admitted, stack: usize) {
    let spawned = thread::Builder::new()
        .name(format!("reader {peer}"))
        .stack_size(stack)
        .spawn(move || {
            let shared = count.0.clone();
            let _count = count;
            if catch_unwind(AssertUnwindSafe(|| session::serve(stream, peer, &shared))).is_err() {
                log(format_args!(
                    "{peer}: connection thread panicked; connection closed"
                ));
            }
        });
    if let Err(e) = spawned {
        log(format_args!(
            "{peer}: cannot start a thread, connection closed: {e}"
        ));
    }
}

/// Which count a [`Counted`] holds a unit of.
#[derive(Clone, Copy)]
enum Counter {
    Sessions,
    Refusers,
}

/// One unit of a count, given back when dropped (also when its thread panics or
/// could not be started).
struct Counted(Arc<Shared>, Counter);

impl Drop for Counted {
    fn drop(&mut self) {
        let counter = match self.1 {
            Counter::Sessions => &self.0.sessions,
            Counter::Refusers => &self.0.refusers,
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells a connection over `max_clients` that the server is full and closes it, in
/// the client's own form when a refuser thread is free to wait for its first bytes,
/// in text form at once otherwise. Nobody in the room hears of it.
fn refuse_full(stream: TcpStream, peer: PeerAddr, shared: &Arc<Shared>) {
    log(format_args!("{peer}: refused, server full"));
    let text = format!(
        "{}: the room holds {} clients; try again later",
        ErrorCode::SERVER_FULL,
        shared.config.max_clients
    );
    if shared.refusers.load(Ordering::Acquire) >= shared.config.max_refusers {
        let _ = send_now(
            &stream,
            &wire::refusal(Mode::Text, ErrorCode::SERVER_FULL, &text),
        );
        return;
    }
    shared.refusers.fetch_add(1, Ordering::AcqRel);
    let count = Counted(shared.clone(), Counter::Refusers);
    let timeout = shared.config.sniff_timeout;
    let _ = thread::Builder::new()
        .name(format!("refuser {peer}"))
        .stack_size(shared.config.thread_stack)
        .spawn(move || {
            let _count = count;
            let mode = first_mode(&stream, timeout);
            refuse(&stream, &wire::refusal(mode, ErrorCode::SERVER_FULL, &text));
        });
}

/// Peeks at a connection's first bytes for at most `timeout` to see how it speaks.
fn first_mode(stream: &TcpStream, timeout: Duration) -> Mode {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 8];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    while Instant::now() < deadline {
        match stream.peek(&mut buf) {
            // The peer closed before it said anything.
            Ok(0) => return Mode::Text,
            Ok(n) => match sniff(&buf[..n]) {
                Sniff::Binary { .. } => return Mode::Binary,
                Sniff::Text => return Mode::Text,
                Sniff::NeedMore => thread::sleep(Duration::from_millis(10)),
            },
            Err(e) if is_timeout(&e) => {}
            Err(_) => return Mode::Text,
        }
    }
    Mode::Text
}

/// Closes every connection the way `how` says, then waits for their threads.
fn shut_down(shared: &Shared, how: Stop) {
    let clients = shared.control.room.close();
    log(format_args!(
        "shutting down: closing {} connections",
        clients.len()
    ));
    if how == Stop::Terminate {
        let deadline = Instant::now() + shared.config.shutdown_grace;
        for client in &clients {
            client
                .outbox
                .push_last(&wire::shutdown(client.outbox.mode()));
        }
        for client in &clients {
            client.outbox.wait_done(deadline);
        }
    }
    for client in &clients {
        client.outbox.end(End::Cut);
    }
    let deadline = Instant::now() + THREADS_GRACE + shared.config.sniff_timeout;
    while Instant::now() < deadline {
        let busy =
            shared.sessions.load(Ordering::Acquire) + shared.refusers.load(Ordering::Acquire);
        if busy == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
}
