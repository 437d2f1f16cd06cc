//! Small wrappers over the operating system: locks that survive a panic, the file
//! limit, socket options and the non-blocking send used for write-through.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::SendFlags;
use rustix::process::{getrlimit, setrlimit, Resource};
use socket2::{SockRef, TcpKeepalive};

use crate::config::Config;

/// Locks `mutex`, recovering the guard if another thread panicked while holding it.
///
/// Every structure behind the server's locks stays consistent at each point where a
/// panic could occur (they are plain queues and lists), so the data is still usable;
/// refusing it would turn one connection's bug into a dead server.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar`, recovering the guard as [`lock`] does.
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `condvar` while `waiting` holds, until `deadline` at the latest;
/// recovers the guard as [`lock`] does.
pub(crate) fn wait_until<'a, T>(
    condvar: &Condvar,
    guard: MutexGuard<'a, T>,
    deadline: Instant,
    waiting: impl FnMut(&mut T) -> bool,
) -> MutexGuard<'a, T> {
    let left = deadline.saturating_duration_since(Instant::now());
    match condvar.wait_timeout_while(guard, left, waiting) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

/// Raises the soft limit on open files to the hard limit, so the server can hold as
/// many connections as the system allows. Returns the new soft limit.
///
/// # Errors
/// The error of `setrlimit`, if the limit could not be changed.
pub fn raise_fd_limit() -> io::Result<Option<u64>> {
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return Ok(limit.current);
    }
    limit.current = limit.maximum;
    setrlimit(Resource::Nofile, limit)?;
    Ok(limit.current)
}

/// Sets the options every client socket gets: no Nagle delay (chat lines are small
/// and latency matters), keepalive and a user timeout that find a dead peer within
/// `dead_peer_timeout`, a bounded blocking write (only the preamble and refusals
/// are written blocking, before the client is in the room), and the configured
/// send buffer.
pub(crate) fn configure_client(stream: &TcpStream, config: &Config) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let sock = SockRef::from(stream);
    let total = config.dead_peer_timeout.max(Duration::from_secs(2));
    // Half the budget idle, then four probes spread over the other half.
    let keepalive = TcpKeepalive::new()
        .with_time(total / 2)
        .with_interval((total / 8).max(Duration::from_secs(1)))
        .with_retries(4);
    sock.set_tcp_keepalive(&keepalive)?;
    // Unacknowledged data for this long also means the peer is gone.
    sock.set_tcp_user_timeout(Some(total))?;
    if let Some(size) = config.send_buffer {
        sock.set_send_buffer_size(size)?;
    }
    sock.set_recv_buffer_size(config.recv_buffer)?;
    set_notsent_lowat(stream, NOTSENT_LOWAT)
}

/// Unsent bytes the kernel holds for one client before the socket reports itself
/// full. Without a bound the kernel would queue megabytes for a slow reader, where
/// pacing cannot see them and every later message waits behind them; with it, the
/// backlog stays in the outbox, which the pace mark and the limits govern.
const NOTSENT_LOWAT: u32 = 32 * 1024;

/// Bounds the unsent bytes of a test's socket as the server bounds its clients'.
#[cfg(test)]
pub(crate) fn configure_notsent_for_tests(stream: &TcpStream) -> io::Result<()> {
    set_notsent_lowat(stream, NOTSENT_LOWAT)
}

/// Lifts the bound on unsent bytes, so a client being dropped can be sent the end of
/// its frame and the notice even though its socket is full.
pub(crate) fn relax_send_limits(stream: &TcpStream) -> io::Result<()> {
    set_notsent_lowat(stream, u32::MAX)?;
    // A send buffer set small (`--send-buffer`) may be full too: make room. An
    // autotuned buffer is large already, and setting it would stop the autotuning.
    let sock = SockRef::from(stream);
    let size = sock.send_buffer_size()?;
    if size < 1 << 20 {
        sock.set_send_buffer_size(size + 64 * 1024)?;
    }
    Ok(())
}

/// Sets `TCP_NOTSENT_LOWAT`, which neither std, socket2 nor rustix offer.
fn set_notsent_lowat(stream: &TcpStream, bytes: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is open for the lifetime of `stream`, and the option
    // value points to a live c_int whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The longest a blocking write to a client waits (the preamble, a refusal).
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// Sends as much of `bytes` as the socket takes right now, without blocking.
///
/// # Errors
/// `WouldBlock` when the socket's buffer is full; any other error means the
/// connection has failed.
pub(crate) fn send_now(stream: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    rustix::net::send(stream, bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
        .map_err(io::Error::from)
}

/// True when an operation ended without data and without failing, so it is simply
/// tried again: a read or write timeout, an empty non-blocking socket (`WouldBlock`),
/// or a signal that interrupted the call (`EINTR`).
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Waits until `fd` is readable (bytes, the end of the stream, an error, or for a
/// listener a pending connection), at most `timeout` (`None`: for ever).
pub(crate) fn wait_readable(fd: impl AsFd, timeout: Option<Duration>) -> io::Result<()> {
    // A timeout too long for a timespec is as good as none.
    let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    match poll(&mut fds, timeout.as_ref()) {
        Ok(0) => Err(io::ErrorKind::TimedOut.into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits until `fd` can take more bytes (or has failed), at most `timeout`.
///
/// # Errors
/// `TimedOut` when it cannot within `timeout`; the errors of `poll`.
pub(crate) fn wait_writable(fd: impl AsFd, timeout: Duration) -> io::Result<()> {
    let timeout = Timespec::try_from(timeout).ok();
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    match poll(&mut fds, timeout.as_ref()) {
        Ok(0) => Err(io::ErrorKind::TimedOut.into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_lock_is_recovered() {
        let shared = Arc::new(Mutex::new(vec![1]));
        let poisoner = shared.clone();
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.lock().unwrap();
            panic!("while holding the lock");
        })
        .join();
        assert!(shared.is_poisoned());
        lock(&shared).push(2);
        assert_eq!(*lock(&shared), [1, 2]);
    }
}
