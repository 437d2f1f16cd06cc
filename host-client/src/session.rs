//! A connected chat session: a receiving thread prints what the server sends and
//! answers its pings; an input thread sends what the user types; the caller's thread
//! waits for whichever ends the session first.

use std::fmt;
use std::io::{self, BufWriter};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use proto_core::{write_frame, Frame, FrameReader, NoticeKind, ReadError, WriteError, MAX_FRAME};

use crate::input::{InputEvent, LineSource};
use crate::line::{classify, too_long_message, LineAction};
use crate::render::{render, SeqTracker};
use crate::sink::Sink;
use crate::tls::Stream;

/// Size of the receiving thread's read buffer.
const READ_BUF: usize = 4096;

/// How a session ended normally: the client left, sending `Bye`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The user typed `exit`.
    Exit,
    /// The input ended (Ctrl-D, or the end of a pipe).
    EndOfInput,
    /// Ctrl-C, or a termination signal.
    Interrupted,
    /// Standard output was closed (for example the reader of a pipe went away).
    OutputClosed,
}

/// How the connection was lost.
#[derive(Debug)]
pub enum Lost {
    /// The server closed the connection between frames.
    Closed,
    /// The server closed the connection in the middle of a frame.
    Truncated,
    /// Reading from or writing to the connection failed (reset, broken pipe, …).
    Io(io::Error),
}

/// Why a session ended in failure.
#[derive(Debug)]
pub enum SessionError {
    /// The connection to the server was lost.
    ConnectionLost {
        /// How.
        how: Lost,
        /// The server had announced that it was shutting down.
        server_shut_down: bool,
    },
    /// The server turned the client away (full, too many connections from its
    /// address, address not allowed): it sent an error notice instead of a welcome,
    /// and closed the connection. Holds the notice's text.
    Refused(String),
    /// Reading the user's input failed.
    Input(io::Error),
    /// Writing chat output failed.
    Output(io::Error),
    /// The session could not be set up (cloning the socket, starting a thread).
    Setup(io::Error),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::ConnectionLost {
                server_shut_down: true,
                ..
            } => f.write_str("the server shut down"),
            SessionError::ConnectionLost { how, .. } => match how {
                Lost::Closed => f.write_str("connection lost: the server closed the connection"),
                Lost::Truncated => f.write_str(
                    "connection lost: the server closed the connection in the middle of a frame",
                ),
                Lost::Io(e) => write!(f, "connection lost: {e}"),
            },
            SessionError::Refused(why) => {
                // The server's own text may say "refused: ..." already.
                let why = why.strip_prefix("refused: ").unwrap_or(why);
                write!(f, "the server refused the connection: {why}")
            }
            SessionError::Input(e) => write!(f, "cannot read input: {e}"),
            SessionError::Output(e) => write!(f, "cannot write output: {e}"),
            SessionError::Setup(e) => write!(f, "cannot start the session: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

/// What the session's threads tell the waiting thread.
enum Event {
    /// Leave: send `Bye` and close, then end with this outcome.
    Leave(Result<Ending, SessionError>),
    /// The connection is gone; end with this error.
    Lost(SessionError),
    /// The receiving thread saw the connection close after the client left.
    ReceiverDone,
}

/// Ends a running session from another thread, as Ctrl-C does.
#[derive(Debug, Clone)]
pub struct Interrupter(Sender<Event>);

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Event")
    }
}

impl Interrupter {
    /// Asks the session to send `Bye`, close and end with [`Ending::Interrupted`].
    pub fn interrupt(&self) {
        // The session may already be over, and then there is nothing to interrupt.
        let _ = self.0.send(Event::Leave(Ok(Ending::Interrupted)));
    }
}

type Writer = Arc<Mutex<FromStd<BufWriter<Stream>>>>;
type SharedSink = Arc<Mutex<Box<dyn Sink>>>;

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while printing leaves nothing half-updated that matters.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state the session's threads share.
#[derive(Clone)]
struct Shared {
    writer: Writer,
    sink: SharedSink,
    events: Sender<Event>,
    leaving: Arc<AtomicBool>,
}

impl Shared {
    fn send(&self, frame: &Frame<'_>) -> Result<(), io::Error> {
        let mut writer = lock(&self.writer);
        // write_frame writes a frame in parts; the flush sends them in one segment.
        match write_frame(&mut *writer, frame)
            .and_then(|()| embedded_io::Write::flush(&mut *writer).map_err(WriteError::Transport))
        {
            Ok(()) => Ok(()),
            Err(WriteError::Transport(e)) => Err(e),
            // Lines are checked against the limit before they get here.
            Err(WriteError::Encode(e)) => {
                self.diag(&format!("error: message not sent: {e}"));
                Ok(())
            }
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    fn diag(&self, message: &str) {
        lock(&self.sink).diag(message);
    }

    fn leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    fn tell(&self, event: Event) {
        // The waiting thread only stops listening once the session is over.
        let _ = self.events.send(event);
    }
}

/// A connected session, ready to run.
#[derive(Debug)]
pub struct Session {
    stream: Stream,
    events_tx: Sender<Event>,
    events_rx: Receiver<Event>,
    linger: Duration,
}

impl Session {
    /// Takes over a stream (a `TcpStream`, or a TLS [`Stream`]) that has completed
    /// the preamble exchange. After the client leaves, it waits up to `linger` for
    /// the server to close.
    pub fn new(stream: impl Into<Stream>, linger: Duration) -> Self {
        let (events_tx, events_rx) = mpsc::channel();
        Self {
            stream: stream.into(),
            events_tx,
            events_rx,
            linger,
        }
    }

    /// A handle that ends the session as Ctrl-C does.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter(self.events_tx.clone())
    }

    /// Runs the session until the user leaves or the connection is lost.
    ///
    /// The input thread is not waited for: it may be blocked reading a terminal. It
    /// sends nothing once the session is over.
    ///
    /// # Errors
    /// See [`SessionError`]; every failure has already closed the connection.
    pub fn run(
        self,
        input: Box<dyn LineSource>,
        sink: Box<dyn Sink>,
    ) -> Result<Ending, SessionError> {
        self.start(input, sink)
            .map_err(SessionError::Setup)
            .and_then(|(shared, receiver)| {
                let outcome = self.wait(&shared);
                // Wakes the receiving thread if it is still reading.
                let _ = self.stream.shutdown(Shutdown::Both);
                let _ = receiver.join();
                outcome
            })
    }

    /// Starts the receiving and input threads.
    fn start(
        &self,
        input: Box<dyn LineSource>,
        sink: Box<dyn Sink>,
    ) -> io::Result<(Shared, thread::JoinHandle<()>)> {
        let reader = FrameReader::<_, READ_BUF>::new(FromStd::new(self.stream.try_clone()?));
        let shared = Shared {
            writer: Arc::new(Mutex::new(FromStd::new(BufWriter::with_capacity(
                MAX_FRAME,
                self.stream.try_clone()?,
            )))),
            sink: Arc::new(Mutex::new(sink)),
            events: self.events_tx.clone(),
            leaving: Arc::new(AtomicBool::new(false)),
        };
        let receiver = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("receiver".into())
                .spawn(move || receive(reader, &shared))?
        };
        {
            let shared = shared.clone();
            thread::Builder::new()
                .name("input".into())
                .spawn(move || read_input(input, &shared))?;
        }
        Ok((shared, receiver))
    }

    /// Waits for the end; when the client leaves, says `Bye` and lingers.
    fn wait(&self, shared: &Shared) -> Result<Ending, SessionError> {
        let outcome = match self.events_rx.recv() {
            Ok(Event::Leave(outcome)) => outcome,
            Ok(Event::Lost(error)) => {
                shared.leaving.store(true, Ordering::SeqCst);
                return Err(error);
            }
            Ok(Event::ReceiverDone) | Err(_) => Err(SessionError::ConnectionLost {
                how: Lost::Closed,
                server_shut_down: false,
            }),
        };
        shared.leaving.store(true, Ordering::SeqCst);
        if let Err(e) = shared.send(&Frame::Bye) {
            shared.diag(&format!("could not say goodbye to the server: {e}"));
            return outcome;
        }
        // Closing only our half lets the server read the Bye before it sees the end,
        // and lets broadcasts already on their way still be printed.
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self.events_rx.recv_timeout(self.linger);
        outcome
    }
}

/// The input thread: sends typed lines until the user leaves.
fn read_input(mut input: Box<dyn LineSource>, shared: &Shared) {
    loop {
        let event = input.next_event();
        if shared.leaving() {
            return;
        }
        let line = match event {
            InputEvent::Line(line) => line,
            InputEvent::Refused(message) => {
                shared.diag(&message);
                continue;
            }
            InputEvent::End => return shared.tell(Event::Leave(Ok(Ending::EndOfInput))),
            InputEvent::Interrupted => return shared.tell(Event::Leave(Ok(Ending::Interrupted))),
            InputEvent::Failed(e) => return shared.tell(Event::Leave(Err(SessionError::Input(e)))),
        };
        match classify(&line) {
            LineAction::Send(text) => {
                if let Err(e) = shared.send(&Frame::Chat { text }) {
                    return shared.tell(Event::Lost(SessionError::ConnectionLost {
                        how: Lost::Io(e),
                        server_shut_down: false,
                    }));
                }
            }
            LineAction::Skip => {}
            LineAction::Exit => return shared.tell(Event::Leave(Ok(Ending::Exit))),
            LineAction::TooLong { len } => shared.diag(&too_long_message(len)),
        }
    }
}

/// What the receiving thread remembers between frames.
#[derive(Default)]
struct Received {
    seq: SeqTracker,
    server_shut_down: bool,
    /// The server has welcomed the client: it is in the room.
    welcomed: bool,
    /// An error notice that came before the welcome, held back as its line and its
    /// text: if the server then closes, it was a refusal, said once in the error; if
    /// the welcome follows, its line is printed first.
    held: Option<(String, String)>,
}

impl Received {
    /// Acts on one frame from the server (checks, answers), before it is printed.
    fn note(&mut self, frame: &Frame<'_>, shared: &Shared) -> Result<(), Lost> {
        match *frame {
            // The acks of our own messages fill the numbers our broadcasts skip.
            Frame::Broadcast { seq, .. } | Frame::Ack { seq } => {
                if let Err(gap) = self.seq.check(seq) {
                    shared.diag(&format!("error: {gap}"));
                }
            }
            Frame::Notice(n) if n.kind == NoticeKind::Shutdown => self.server_shut_down = true,
            Frame::Notice(n) if n.kind == NoticeKind::Welcome => self.welcomed = true,
            Frame::Ping { nonce } => shared.send(&Frame::Pong { nonce }).map_err(Lost::Io)?,
            Frame::Chat { .. } => shared.diag("error: the server sent a chat frame; ignored"),
            _ => {}
        }
        Ok(())
    }
}

/// The receiving thread: prints what arrives until the connection ends, then tells
/// the waiting thread.
fn receive(mut reader: FrameReader<FromStd<Stream>, READ_BUF>, shared: &Shared) {
    let mut state = Received::default();
    let how = loop {
        let frame = match reader.next_frame() {
            Ok(frame) => frame,
            Err(ReadError::Decode(e)) => {
                shared.diag(&format!("error: bad frame from the server, skipped: {e}"));
                continue;
            }
            Err(ReadError::Transport(e)) => break Lost::Io(e),
            Err(ReadError::UnexpectedEof) => break Lost::Truncated,
            Err(_) => break Lost::Closed,
        };
        if let Err(lost) = state.note(&frame, shared) {
            break lost;
        }
        let Some(line) = render(&frame) else { continue };
        if let Frame::Notice(n) = &frame {
            if matches!(n.kind, NoticeKind::Error(_)) && !state.welcomed && state.held.is_none() {
                state.held = Some((line, proto_core::sanitize(n.text).to_string()));
                continue;
            }
        }
        let held = state.held.take().map(|(line, _)| line);
        if let Err(e) = held
            .into_iter()
            .chain(Some(line))
            .try_for_each(|line| lock(&shared.sink).chat(&line))
        {
            let outcome = if e.kind() == io::ErrorKind::BrokenPipe {
                Ok(Ending::OutputClosed)
            } else {
                Err(SessionError::Output(e))
            };
            return shared.tell(Event::Leave(outcome));
        }
    };
    if shared.leaving() {
        shared.tell(Event::ReceiverDone);
    } else if let Some((_, why)) = state.held {
        shared.tell(Event::Lost(SessionError::Refused(why)));
    } else {
        shared.tell(Event::Lost(SessionError::ConnectionLost {
            how,
            server_shut_down: state.server_shut_down,
        }));
    }
}
