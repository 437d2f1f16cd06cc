//! The read loops of a client in the room: binary frames or text lines in, batches
//! of chat messages out to the room, errors back to the sender alone.

use std::io;
use std::time::{Duration, Instant};

use proto_core::{
    looks_like_http, DecodeError, ErrorCode, FeedResult, Frame, FrameDecoder, LineDecoder,
    LineError, PREAMBLE_LEN,
};

use crate::outbox::End;
use crate::readbuf::ReadBuf;
use crate::room::{Batch, Client};
use crate::server::Shared;
use crate::session::http_refusal;
use crate::sys::is_timeout;
use crate::wire::{self, Mode};

/// Most messages broadcast as one batch, so a batch's encoding stays small next to
/// the outbox limit.
const MAX_BATCH: usize = 64;

/// Why a client left the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// The peer closed the connection.
    Closed,
    /// The peer closed in the middle of a frame; the partial frame was dropped.
    ClosedMidFrame,
    /// A binary client said Bye.
    Bye,
    /// The connection failed (reset, or found dead by TCP keepalive).
    Failed(io::ErrorKind),
    /// A binary client answered nothing, not even a ping, for the dead-peer timeout.
    TimedOut,
    /// A text client's first line was an HTTP request.
    Refused,
    /// The server is shutting down.
    ServerClosing,
    /// The server began shutting down before the client joined; what it was sent
    /// (the shutdown notice) is still delivered.
    TooLate,
    /// The reader thread panicked.
    Panicked,
}

impl Departure {
    /// The reason told to the room and the log, given how the outbox ended (an
    /// eviction or a failed write explains a read that ended at the same time).
    pub(crate) fn reason(self, ended: Option<End>) -> Option<String> {
        match (ended, self) {
            (Some(End::Evict(code)), _) => Some(format!("dropped: {code}")),
            (Some(End::Failed(kind)), _) => Some(format!("connection failed: {kind}")),
            (Some(End::Cut), _) | (_, Departure::ServerClosing | Departure::TooLate) => {
                Some("server closing".to_string())
            }
            (_, Departure::Closed | Departure::Bye) => None,
            (_, Departure::ClosedMidFrame) => Some("closed in the middle of a frame".into()),
            (_, Departure::Failed(kind)) => Some(format!("connection failed: {kind}")),
            (_, Departure::TimedOut) => Some(format!("dropped: {}", ErrorCode::TIMEOUT)),
            (_, Departure::Refused) => Some("refused: HTTP request".into()),
            (_, Departure::Panicked) => Some("internal error".into()),
        }
    }

    /// How the outbox is to end: send what is queued after a clean ending, cut at
    /// once after a failure.
    pub(crate) fn end(self) -> End {
        match self {
            Departure::Closed
            | Departure::ClosedMidFrame
            | Departure::Bye
            | Departure::Refused
            | Departure::TooLate => End::Flush,
            Departure::TimedOut => End::Evict(ErrorCode::TIMEOUT),
            Departure::Failed(_) | Departure::ServerClosing | Departure::Panicked => End::Cut,
        }
    }
}

/// One read: bytes, a clean end, a timeout, or a failure.
enum Got {
    Bytes(usize),
    Eof,
    Timeout,
}

/// Reads into `buf`, waiting at most `timeout` (`None`: for ever).
fn read_some(
    client: &Client,
    buf: &mut ReadBuf,
    timeout: Option<Duration>,
) -> Result<Got, Departure> {
    match buf.read(client.outbox.stream(), timeout) {
        Ok(0) => Ok(Got::Eof),
        Ok(n) => Ok(Got::Bytes(n)),
        Err(e) if is_timeout(&e) => Ok(Got::Timeout),
        Err(e) => Err(Departure::Failed(e.kind())),
    }
}

/// Reads a binary client's frames until it leaves. `buf[..have]` holds the bytes
/// read so far, the preamble first.
pub(crate) fn read_binary(
    client: &Client,
    buf: &mut ReadBuf,
    have: usize,
    shared: &Shared,
) -> Departure {
    let timeout = Some(shared.config.dead_peer_timeout / 2);
    let mut decoder = FrameDecoder::new();
    let mut batch = Batch::default();
    let mut throttle = Throttle::new(shared);
    let (mut start, mut end) = (PREAMBLE_LEN.min(have), have);
    // The nonce of an unanswered ping, and the bytes sent to the client by then.
    let mut pinged: Option<(u64, u64)> = None;
    loop {
        let input = &buf.bytes()[start..end];
        let bye = binary_events(client, &mut decoder, input, &mut batch, shared);
        if bye {
            return Departure::Bye;
        }
        relay(&mut batch, client, shared);
        throttle.pause(batch.take_relayed(), client);
        (start, end) = (0, 0);
        match read_some(client, buf, timeout) {
            Ok(Got::Bytes(n)) => (pinged, end) = (None, n),
            Ok(Got::Eof) if decoder.is_idle() => return Departure::Closed,
            Ok(Got::Eof) => return Departure::ClosedMidFrame,
            Ok(Got::Timeout) => match pinged {
                // Silent, but still taking what it is sent: busy reading, not dead.
                Some((nonce, sent)) if client.outbox.sent_total() > sent => {
                    pinged = Some((ping(client, nonce), client.outbox.sent_total()));
                }
                Some(_) => return Departure::TimedOut,
                None => pinged = Some((ping(client, 0), client.outbox.sent_total())),
            },
            Err(departure) => return departure,
        }
        if client.outbox.ended().is_some_and(|e| e != End::Flush) {
            return Departure::ServerClosing;
        }
    }
}

/// Sends a ping to a silent binary client; returns its nonce.
fn ping(client: &Client, last: u64) -> u64 {
    let nonce = last.wrapping_add(1);
    let mut bytes = Vec::new();
    wire::encode_into(Mode::Binary, &Frame::Ping { nonce }, &mut bytes);
    client.outbox.push_bytes(&bytes);
    nonce
}

/// Broadcasts the batch (if any) and empties it; returns how many messages it held.
/// The batch counts them for the rate limit.
fn relay(batch: &mut Batch, client: &Client, shared: &Shared) -> usize {
    let n = batch.len();
    if n > 0 {
        shared.control.room.broadcast(client, batch);
        batch.clear();
    }
    n
}

/// Handles every complete frame in `input`: chats go into `batch` (broadcast whenever
/// it fills), pings are answered, bad frames get an error notice. Returns true when the
/// client said Bye (the batch before it is broadcast).
fn binary_events(
    client: &Client,
    decoder: &mut FrameDecoder,
    mut input: &[u8],
    batch: &mut Batch,
    shared: &Shared,
) -> bool {
    while let FeedResult::Complete { item, remaining } = decoder.feed(input) {
        match item {
            Ok(Frame::Chat { text }) => batch.push(text),
            Ok(Frame::Ping { nonce }) => {
                // Messages before the ping go out first, and pending notices, so its
                // pong tells the client its messages have been handed to the room and
                // it has heard of everything that happened before.
                if relay(batch, client, shared) == 0 {
                    shared.control.room.flush_notices();
                }
                let mut bytes = Vec::new();
                wire::encode_into(Mode::Binary, &Frame::Pong { nonce }, &mut bytes);
                client.outbox.push_bytes(&bytes);
            }
            Ok(Frame::Pong { .. }) => {}
            Ok(Frame::Bye) => {
                relay(batch, client, shared);
                return true;
            }
            Ok(other) => {
                let text = format!("clients may not send {:?} frames; discarded", other.kind());
                client.outbox.push_bytes(&wire::error(
                    Mode::Binary,
                    ErrorCode::UNKNOWN_FRAME,
                    &text,
                ));
            }
            Err(e) => {
                let text = format!("{e}; discarded");
                client
                    .outbox
                    .push_bytes(&wire::error(Mode::Binary, decode_code(&e), &text));
            }
        }
        if batch.len() >= MAX_BATCH {
            relay(batch, client, shared);
        }
        input = remaining;
    }
    false
}

/// The error code that tells a client what was wrong with its frame.
fn decode_code(e: &DecodeError) -> ErrorCode {
    match e {
        DecodeError::TooLong { .. } | DecodeError::TextTooLong { .. } => ErrorCode::TOO_LONG,
        DecodeError::UnknownKind { .. } => ErrorCode::UNKNOWN_FRAME,
        DecodeError::InvalidUtf8 { .. } => ErrorCode::INVALID_UTF8,
        _ => ErrorCode::MALFORMED,
    }
}

/// Reads a text client's lines until it leaves. `buf[..have]` holds the bytes read
/// so far.
pub(crate) fn read_text(
    client: &Client,
    buf: &mut ReadBuf,
    have: usize,
    shared: &Shared,
) -> Departure {
    let mut decoder = LineDecoder::new();
    let mut batch = Batch::default();
    let mut throttle = Throttle::new(shared);
    let mut first_line = true;
    let mut end = have;
    loop {
        let refused = text_events(
            client,
            &mut decoder,
            &buf.bytes()[..end],
            &mut batch,
            &mut first_line,
            shared,
        );
        if refused {
            client.outbox.push_last(&http_refusal());
            return Departure::Refused;
        }
        relay(&mut batch, client, shared);
        throttle.pause(batch.take_relayed(), client);
        end = match read_some(client, buf, None) {
            Ok(Got::Bytes(n)) => n,
            Ok(Got::Timeout) => 0,
            Ok(Got::Eof) => return text_eof(client, &mut decoder, &mut first_line, shared),
            Err(departure) => return departure,
        };
        if client.outbox.ended().is_some_and(|e| e != End::Flush) {
            return Departure::ServerClosing;
        }
    }
}

/// A clean end: the unterminated last line, if any, is still delivered.
fn text_eof(
    client: &Client,
    decoder: &mut LineDecoder,
    first_line: &mut bool,
    shared: &Shared,
) -> Departure {
    let mut batch = Batch::default();
    let refused = match decoder.finish() {
        Some(event) => text_event(client, event, &mut batch, first_line),
        None => false,
    };
    if refused {
        return Departure::Refused;
    }
    relay(&mut batch, client, shared);
    Departure::Closed
}

/// Handles every complete line in `input`. Returns true when the first line is an
/// HTTP request (nothing after it is read).
fn text_events(
    client: &Client,
    decoder: &mut LineDecoder,
    mut input: &[u8],
    batch: &mut Batch,
    first_line: &mut bool,
    shared: &Shared,
) -> bool {
    while !input.is_empty() {
        let (used, event) = decoder.feed(input);
        if let Some(event) = event {
            if text_event(client, event, batch, first_line) {
                return true;
            }
        }
        if batch.len() >= MAX_BATCH {
            relay(batch, client, shared);
        }
        input = &input[used..];
    }
    false
}

/// Handles one line or line error; true when it is a refused first line.
fn text_event(
    client: &Client,
    event: Result<&str, LineError>,
    batch: &mut Batch,
    first_line: &mut bool,
) -> bool {
    let first = std::mem::replace(first_line, false);
    let (code, text) = match event {
        Ok(line) if first && looks_like_http(line) => return true,
        Ok(line) => {
            batch.push(line);
            return false;
        }
        Err(LineError::TooLong) => (ErrorCode::TOO_LONG, "line too long"),
        Err(LineError::InvalidUtf8) => (ErrorCode::INVALID_UTF8, "line is not valid UTF-8"),
        Err(_) => (ErrorCode::MALFORMED, "bad line"),
    };
    let text = match code {
        ErrorCode::TOO_LONG => format!(
            "{text}: the limit is {} bytes; discarded",
            proto_core::MAX_MESSAGE
        ),
        _ => format!("{text}; discarded"),
    };
    client
        .outbox
        .push_bytes(&wire::error(Mode::Text, code, &text));
    false
}

/// The per-client rate limit: a token bucket of messages. When it runs dry the
/// reader sleeps instead of reading, so the sender is slowed by TCP, never dropped.
struct Throttle {
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    fn new(shared: &Shared) -> Option<Self> {
        shared.config.rate_limit.map(|rate| {
            let per_sec = f64::from(rate.get());
            Throttle {
                per_sec,
                tokens: per_sec,
                last: Instant::now(),
            }
        })
    }
}

/// Extension for an optional throttle: takes `n` tokens, sleeping while in debt.
trait Pause {
    fn pause(&mut self, n: usize, client: &Client);
}

impl Pause for Option<Throttle> {
    fn pause(&mut self, n: usize, client: &Client) {
        let Some(t) = self else {
            return;
        };
        let now = Instant::now();
        let refill = now.duration_since(t.last).as_secs_f64() * t.per_sec;
        t.tokens = (t.tokens + refill).min(t.per_sec) - n as f64;
        t.last = now;
        if t.tokens >= 0.0 {
            return;
        }
        let debt = Duration::from_secs_f64(-t.tokens / t.per_sec);
        let until = now + debt;
        // Sleep in slices so a closing connection is not held up.
        while Instant::now() < until && client.outbox.ended().is_none() {
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
    }
}
