//! Telling how a new connection speaks from its first bytes: a binary client sends
//! its preamble at once; anything else is a text client, which may also say nothing
//! for a while.

use std::io;
use std::time::{Duration, Instant};

use proto_core::{sniff, Sniff, VERSION};

use crate::conn::Conn;
use crate::sys::is_transient;
use crate::wire::Mode;

/// What the first bytes said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// The peer closed before sending anything.
    Silent,
    /// A client of this mode; the first `n` bytes of the buffer were read already.
    Speaks(Mode, usize),
    /// A binary client asking for another protocol version.
    WrongVersion(u8),
}

/// How long to listen for a text client: its first byte tells its mode, but a
/// session also wants its first line, to refuse an HTTP request before anyone is
/// told of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Until the mode is known.
    Mode,
    /// Until the mode is known and, for a text client, its first line has arrived
    /// (or the buffer is full).
    FirstLine,
}

/// Reads into `buf` until the mode is known, waiting at most `timeout` for a silent
/// client, which is then taken as text (a human at a terminal, or a stalled prefix
/// of the magic). For a TLS connection these are the decrypted bytes.
pub(crate) fn opening(
    conn: &Conn,
    buf: &mut [u8],
    timeout: Duration,
    until: Until,
) -> io::Result<Opening> {
    conn.tcp().set_read_timeout(Some(timeout))?;
    let deadline = Instant::now() + timeout;
    let mut have = 0;
    loop {
        match sniff(&buf[..have]) {
            Sniff::Text
                if until == Until::Mode || buf[..have].contains(&b'\n') || have == buf.len() =>
            {
                return Ok(Opening::Speaks(Mode::Text, have))
            }
            Sniff::Text | Sniff::NeedMore => {}
            Sniff::Binary { version } if version == VERSION => {
                return Ok(Opening::Speaks(Mode::Binary, have))
            }
            Sniff::Binary { version } => return Ok(Opening::WrongVersion(version)),
        }
        if Instant::now() >= deadline {
            return Ok(Opening::Speaks(Mode::Text, have));
        }
        match conn.read(&mut buf[have..]) {
            Ok(0) if have == 0 => return Ok(Opening::Silent),
            Ok(0) => return Ok(Opening::Speaks(Mode::Text, have)),
            Ok(n) => have += n,
            Err(e) if is_transient(&e) => {}
            Err(e) => return Err(e),
        }
    }
}
