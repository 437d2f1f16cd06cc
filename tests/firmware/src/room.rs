//! The chat-room session of the `room` firmware, over any `embedded-io` transport.
//!
//! The firmware joins like any binary client: it exchanges preambles, waits for its
//! welcome notice, says its greeting once, shows what the room says, answers pings, and
//! leaves with a bye frame when someone writes a message containing [`TRIGGER`].

use core::fmt;

use embedded_io::{Read, Write};
use proto_core::{
    read_preamble, sanitize, write_frame, write_preamble, Frame, FrameReader, NoticeKind,
    ReadError, WriteError,
};

use crate::{say, stack};

/// The greeting of the `room` firmware, which reaches the room over the UART.
pub const HELLO: &str = "hello from cortex-m";
/// The greeting of the `room-net` firmware, which reaches the room over TCP/IP.
pub const HELLO_TCP: &str = "hello over tcp from cortex-m";
/// A room message containing this makes the firmware say bye and stop.
pub const TRIGGER: &str = "bye firmware";

/// How a session ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Someone wrote [`TRIGGER`]; the firmware sent its bye frame.
    SaidBye,
    /// The server said bye or announced its shutdown.
    ServerLeft,
}

/// What went wrong in a session, and in which step.
#[derive(Debug)]
pub enum RoomError<E> {
    /// Sending the preamble failed.
    SendPreamble(E),
    /// The server's preamble was missing or not protocol v1.
    ReadPreamble(ReadError<E>),
    /// Reading a frame failed (other than a bad frame, which is reported and skipped).
    Read(ReadError<E>),
    /// Writing a frame failed.
    Write(WriteError<E>),
}

impl<E: fmt::Debug + fmt::Display> fmt::Display for RoomError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomError::SendPreamble(e) => write!(f, "cannot send the preamble: {e}"),
            // The transport's own message reads better than proto-core's `{:?}` of it.
            RoomError::ReadPreamble(ReadError::Transport(e)) => {
                write!(f, "no preamble from the server: {e}")
            }
            RoomError::ReadPreamble(e) => write!(f, "bad preamble from the server: {e}"),
            RoomError::Read(ReadError::Transport(e)) => {
                write!(f, "cannot read from the server: {e}")
            }
            RoomError::Read(e) => write!(f, "cannot read from the server: {e}"),
            RoomError::Write(WriteError::Transport(e)) => {
                write!(f, "cannot write to the server: {e}")
            }
            RoomError::Write(e) => write!(f, "cannot write to the server: {e}"),
        }
    }
}

/// Counters and stack figures of a session, for the firmware's closing report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Frames received, bad ones included.
    pub frames: usize,
    /// The most stack one `FrameReader::next_frame` call used (it includes the UART
    /// reads it makes).
    pub max_read_stack: usize,
    /// The most stack one `write_frame` call used.
    pub max_write_stack: usize,
}

/// What to do after showing a frame.
enum Action {
    Nothing,
    SayHello,
    Pong(u64),
    Leave,
    Stop,
}

/// Exchanges preambles: sends ours, then checks the server's.
///
/// # Errors
/// [`RoomError::SendPreamble`] or [`RoomError::ReadPreamble`].
pub fn handshake<T: Read + Write>(io: &mut T) -> Result<(), RoomError<T::Error>> {
    write_preamble(io).map_err(RoomError::SendPreamble)?;
    read_preamble(io).map_err(RoomError::ReadPreamble)
}

/// Takes part in the room until it is told to leave or the server goes: says
/// `hello` once welcomed, shows what the room says, answers pings.
///
/// # Errors
/// [`RoomError::Read`] or [`RoomError::Write`] when the transport fails or the
/// stream ends; a bad frame is shown and skipped.
pub fn chat<T: Read + Write, const N: usize>(
    reader: &mut FrameReader<T, N>,
    hello: &str,
    stats: &mut Stats,
) -> Result<End, RoomError<T::Error>> {
    let mut greeted = false;
    loop {
        let r = &mut *reader;
        // The closure moves `r` in, so the frame it returns may borrow the reader.
        let (next, used) = stack::measure(move || {
            let r = r;
            r.next_frame()
        });
        stats.max_read_stack = stats.max_read_stack.max(used);
        stats.frames += 1;
        let action = match next {
            Ok(frame) => show(&frame, &mut greeted),
            Err(ReadError::Decode(e)) => {
                say!("!!! skipped a bad frame: {}", e);
                Action::Nothing
            }
            Err(e) => return Err(RoomError::Read(e)),
        };
        let reply = match action {
            Action::Nothing => continue,
            Action::Stop => return Ok(End::ServerLeft),
            Action::SayHello => Frame::Chat { text: hello },
            Action::Pong(nonce) => Frame::Pong { nonce },
            Action::Leave => Frame::Bye,
        };
        send(reader.get_mut(), &reply, stats)?;
        if reply == Frame::Bye {
            return Ok(End::SaidBye);
        }
    }
}

/// Shows a frame as the text client does and decides what to do about it.
fn show(frame: &Frame<'_>, greeted: &mut bool) -> Action {
    match frame {
        Frame::Broadcast { peer, text, .. } => {
            say!("[{}] {}", peer, sanitize(text));
            if mentions(text, TRIGGER) {
                return Action::Leave;
            }
            Action::Nothing
        }
        Frame::Notice(notice) => {
            say!("*** {}", sanitize(notice.text));
            match notice.kind {
                NoticeKind::Welcome if !*greeted => {
                    if let Some(me) = notice.peer {
                        say!("room: joined as {}", me);
                    }
                    *greeted = true;
                    Action::SayHello
                }
                NoticeKind::Shutdown => Action::Stop,
                _ => Action::Nothing,
            }
        }
        Frame::Ping { nonce } => Action::Pong(*nonce),
        Frame::Bye => Action::Stop,
        _ => Action::Nothing,
    }
}

fn send<W: Write>(
    w: &mut W,
    frame: &Frame<'_>,
    stats: &mut Stats,
) -> Result<(), RoomError<W::Error>> {
    let (sent, used) = stack::measure(|| write_frame(w, frame));
    stats.max_write_stack = stats.max_write_stack.max(used);
    sent.map_err(RoomError::Write)
}

/// True if `text` contains `word`. A plain window scan: the firmware looks for one
/// short word, which does not need `str::contains`'s larger searcher.
fn mentions(text: &str, word: &str) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|w| w == word.as_bytes())
}
