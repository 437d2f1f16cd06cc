//! The read loops of a client in the room: binary frames or text lines in, batches
//! of chat messages out to the room, errors back to the sender alone.
//!
//! The loop reads at most one buffer at a time, decodes every complete message in it
//! with proto-core, and broadcasts them as one batch, so a busy sender costs one lock
//! and one send per recipient per read, and no sender can hold the room for more than
//! one buffer's worth.

use std::time::{Duration, Instant};

use proto_core::{
    looks_like_http, DecodeError, ErrorCode, FeedResult, Frame, FrameDecoder, LineError,
    TextDecoder, TextEvent, PREAMBLE_LEN,
};

use crate::context::Context;
use crate::departure::Departure;
use crate::outbox::End;
use crate::readbuf::ReadBuf;
use crate::room::{Batch, Client};
use crate::sys::is_transient;
use crate::throttle::Throttle;
use crate::web::{Discard, WsDecoder, WsError, WsEvent};
use crate::wire::{self, Mode};
use tungstenite::protocol::frame::coding::{CloseCode, Control, OpCode};

/// Most messages broadcast as one batch, so a batch's encoding stays small next to
/// the outbox limit.
const MAX_BATCH: usize = 64;

/// One read: bytes, a clean end, or nothing yet.
enum Got {
    Bytes(usize),
    Eof,
    Timeout,
}

/// What a read loop needs: the client, the server, the batch being filled, the
/// count of messages relayed since the rate limit last took them, and the bytes
/// relayed since the sender last waited for the room's readers.
struct Sender<'a> {
    client: &'a Client,
    ctx: &'a Context,
    batch: Batch,
    relayed: usize,
    unpaced: usize,
    throttle: Option<Throttle>,
}

impl<'a> Sender<'a> {
    fn new(client: &'a Client, ctx: &'a Context) -> Self {
        Self {
            client,
            ctx,
            batch: Batch::default(),
            relayed: 0,
            unpaced: 0,
            throttle: ctx.config.rate_limit.map(Throttle::new),
        }
    }

    /// Adds one message, broadcasting the batch when it is full.
    fn push(&mut self, text: &str) {
        self.batch.push(text);
        if self.batch.len() >= MAX_BATCH {
            self.relay();
        }
    }

    /// Broadcasts the batch (if any) and empties it; returns how many messages it held.
    fn relay(&mut self) -> usize {
        let n = self.batch.len();
        if n > 0 {
            self.ctx.room.broadcast(self.client, &self.batch);
            self.unpaced += self.batch.bytes();
            self.batch.clear();
            self.relayed += n;
        }
        n
    }

    /// Relays what is batched, then, once the sender has relayed a read buffer's
    /// worth since it last waited (it floods), holds it back while some other client
    /// is behind and still draining (see `outbox::pacer`); and as the rate limit says.
    /// A quiet sender's lines are not held: what it adds while a reader catches up is
    /// small, and its messages stay prompt even while a reader that has just stopped
    /// holds the flooders back.
    fn relay_and_pause(&mut self) {
        self.relay();
        let relayed = std::mem::take(&mut self.relayed);
        if self.unpaced >= self.ctx.config.read_buffer {
            self.unpaced = 0;
            let stopping = || self.cut_off() || self.ctx.control.stopping().is_some();
            self.ctx
                .room
                .pacer()
                .wait(self.client.outbox.key(), stopping);
        }
        if let Some(throttle) = &mut self.throttle {
            throttle.pause(relayed, &self.client.outbox);
        }
    }

    /// Sends `bytes` to this client alone.
    fn answer(&self, bytes: &[u8]) {
        self.client.outbox.push_bytes(bytes);
    }

    /// Reads into `buf`, waiting at most `timeout` (`None`: for ever).
    fn read(&self, buf: &mut ReadBuf, timeout: Option<Duration>) -> Result<Got, Departure> {
        let read = buf.read(self.client.outbox.conn(), timeout);
        // Reading TLS may have made a reply the socket did not take.
        self.client.outbox.kick();
        match read {
            Ok(0) => Ok(Got::Eof),
            Ok(n) => Ok(Got::Bytes(n)),
            Err(e) if is_transient(&e) => Ok(Got::Timeout),
            Err(e) => Err(Departure::Failed(e.kind())),
        }
    }

    /// True when the server cut this client's outbox (an eviction, a shutdown), so
    /// reading on is pointless.
    fn cut_off(&self) -> bool {
        self.client.outbox.ended().is_some_and(|e| e != End::Flush)
    }
}

/// Reads a binary client's frames until it leaves. `buf[..have]` holds the bytes
/// read so far, the preamble first.
pub(crate) fn read_binary(
    client: &Client,
    buf: &mut ReadBuf,
    have: usize,
    ctx: &Context,
) -> Departure {
    let timeout = Some(ctx.config.dead_peer_timeout / 2);
    // On the heap: with its kilobyte buffer on the stack, an idle reader's wait
    // would need a third stack page (see `stack`).
    let mut decoder = Box::new(FrameDecoder::new());
    let mut sender = Sender::new(client, ctx);
    let (mut start, mut end) = (PREAMBLE_LEN.min(have), have);
    // The nonce of an unanswered ping, and the bytes sent to the client by then.
    let mut pinged: Option<(u64, u64)> = None;
    loop {
        let input = &buf.bytes()[start..end];
        if binary_events(&mut sender, &mut decoder, input) {
            return Departure::Bye;
        }
        sender.relay_and_pause();
        (start, end) = (0, 0);
        match sender.read(buf, timeout) {
            Ok(Got::Bytes(n)) => (pinged, end) = (None, n),
            Ok(Got::Eof) if decoder.is_idle() => return Departure::Closed,
            Ok(Got::Eof) => return Departure::ClosedMidFrame,
            Ok(Got::Timeout) => match pinged {
                // Silent, but still taking what it is sent: busy reading, not dead.
                Some((nonce, sent)) if client.outbox.sent_total() > sent => {
                    pinged = Some((ping(&sender, nonce), client.outbox.sent_total()));
                }
                Some(_) => return Departure::TimedOut,
                None => pinged = Some((ping(&sender, 0), client.outbox.sent_total())),
            },
            Err(departure) => return departure,
        }
        if sender.cut_off() {
            return Departure::ServerClosing;
        }
    }
}

/// Sends a ping to a silent binary client; returns its nonce.
fn ping(sender: &Sender<'_>, last: u64) -> u64 {
    let nonce = last.wrapping_add(1);
    sender.answer(&binary(&Frame::Ping { nonce }));
    nonce
}

/// The binary encoding of `frame`.
fn binary(frame: &Frame<'_>) -> Vec<u8> {
    let mut bytes = Vec::new();
    wire::encode_into(Mode::Binary, frame, &mut bytes);
    bytes
}

/// Handles every complete frame in `input`. Returns true when the client said Bye
/// (the batch before it is broadcast).
fn binary_events(sender: &mut Sender<'_>, decoder: &mut FrameDecoder, mut input: &[u8]) -> bool {
    while let FeedResult::Complete { item, remaining } = decoder.feed(input) {
        match item {
            Ok(frame) if binary_frame(sender, frame) => return true,
            Ok(_) => {}
            Err(e) => {
                let text = format!("{e}; discarded");
                sender.answer(&wire::error(Mode::Binary, decode_code(&e), &text));
            }
        }
        input = remaining;
    }
    false
}

/// Handles one well-formed frame; true when it is a Bye.
fn binary_frame(sender: &mut Sender<'_>, frame: Frame<'_>) -> bool {
    match frame {
        // An empty text is no message, as an empty line is none in text mode: it is
        // not relayed, numbered or acknowledged.
        Frame::Chat { text: "" } => {}
        Frame::Chat { text } => sender.push(text),
        Frame::Ping { nonce } => {
            // Messages before the ping go out first, and pending notices, so its
            // pong tells the client its messages have been handed to the room and
            // it has heard of everything that happened before.
            if sender.relay() == 0 {
                sender.ctx.room.flush_notices();
            }
            // Across servers, its pong also waits for the Acks (or notices) of the
            // messages before it, which come back from the backplane.
            let pong = binary(&Frame::Pong { nonce });
            if let Some(pong) = sender.ctx.room.pong(sender.client.id, pong) {
                sender.answer(&pong);
            }
        }
        Frame::Pong { .. } => {}
        Frame::Bye => {
            sender.relay();
            return true;
        }
        other => {
            let text = format!("clients may not send {:?} frames; discarded", other.kind());
            sender.answer(&wire::error(Mode::Binary, ErrorCode::UNKNOWN_FRAME, &text));
        }
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

/// Reads a WebSocket client's messages until it leaves. `first` holds the bytes
/// that followed its request head.
///
/// Each text message is one chat message; what the decoder discards gets an error
/// notice and the connection goes on. Pings are answered through the outbox, so a
/// pong never cuts into a broadcast. A silent client is pinged after half the
/// dead-peer timeout and dropped if nothing arrives in the other half (a browser
/// answers pings by itself).
pub(crate) fn read_websocket(
    client: &Client,
    buf: &mut ReadBuf,
    first: &[u8],
    ctx: &Context,
) -> Departure {
    let timeout = Some(ctx.config.dead_peer_timeout / 2);
    // On the heap: with its kilobyte buffer on the stack, an idle reader's wait
    // would need a third stack page (see `stack`).
    let mut decoder = Box::new(WsDecoder::new());
    let mut sender = Sender::new(client, ctx);
    // The bytes sent to the client when it was pinged, while the ping is unanswered.
    let mut pinged: Option<u64> = None;
    if let Some(departure) = ws_events(&mut sender, &mut decoder, first) {
        return departure;
    }
    loop {
        sender.relay_and_pause();
        let end = match sender.read(buf, timeout) {
            Ok(Got::Bytes(n)) => {
                pinged = None;
                n
            }
            Ok(Got::Eof) if decoder.is_idle() => return Departure::Closed,
            Ok(Got::Eof) => return Departure::ClosedMidFrame,
            Ok(Got::Timeout) => {
                match pinged {
                    // Silent, but still taking what it is sent: busy, not dead.
                    Some(sent) if client.outbox.sent_total() > sent => {}
                    Some(_) => return Departure::TimedOut,
                    None => {}
                }
                sender.answer(&ws_control(Control::Ping, b""));
                pinged = Some(client.outbox.sent_total());
                0
            }
            Err(departure) => return departure,
        };
        if let Some(departure) = ws_events(&mut sender, &mut decoder, &buf.bytes()[..end]) {
            return departure;
        }
        if sender.cut_off() {
            return Departure::ServerClosing;
        }
    }
}

/// A control frame from the server.
fn ws_control(control: Control, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(2 + payload.len());
    wire::ws_frame(OpCode::Control(control), payload, &mut bytes);
    bytes
}

/// Handles every complete frame in `input`; the departure when the client closed
/// or broke the framing (the batch before it is broadcast).
fn ws_events(
    sender: &mut Sender<'_>,
    decoder: &mut WsDecoder,
    mut input: &[u8],
) -> Option<Departure> {
    while !input.is_empty() {
        let (used, event) = decoder.feed(input);
        input = &input[used..];
        let discard = match event {
            Ok(None | Some(WsEvent::Pong)) => continue,
            Ok(Some(WsEvent::Text(text))) => {
                // A tool that sends lines may leave their newline on.
                let text = text.strip_suffix('\n').unwrap_or(text);
                let text = text.strip_suffix('\r').unwrap_or(text);
                if !text.is_empty() {
                    sender.push(text);
                }
                continue;
            }
            Ok(Some(WsEvent::Ping(payload))) => {
                sender.answer(&ws_control(Control::Pong, payload));
                continue;
            }
            Ok(Some(WsEvent::Close(_))) => {
                sender.relay();
                // The answering close frame, then the end of the connection.
                sender.client.outbox.push_last(&[]);
                return Some(Departure::Closed);
            }
            Ok(Some(WsEvent::Discarded(why))) => why,
            Err(e) => return Some(ws_broken(sender, e)),
        };
        let (code, text) = match discard {
            Discard::TooLong => (
                ErrorCode::TOO_LONG,
                format!(
                    "message too long: the limit is {} bytes; discarded",
                    proto_core::MAX_MESSAGE
                ),
            ),
            Discard::Binary => (
                ErrorCode::MALFORMED,
                "binary messages are not taken, only text; discarded".into(),
            ),
            Discard::InvalidUtf8 => (
                ErrorCode::INVALID_UTF8,
                "message is not valid UTF-8; discarded".into(),
            ),
        };
        sender.answer(&wire::error(Mode::WebSocket, code, &text));
    }
    None
}

/// Ends a connection whose framing broke: what it sent before goes to the room,
/// then it gets a close frame saying "protocol error".
fn ws_broken(sender: &mut Sender<'_>, e: WsError) -> Departure {
    sender.relay();
    let outbox = &sender.client.outbox;
    outbox.push_bytes(&wire::ws_close(CloseCode::Protocol));
    outbox.end(End::Flush);
    Departure::BadFrames(e)
}

/// Reads a text client's messages until it leaves. `buf[..have]` holds the bytes
/// read so far.
///
/// Telnet commands are taken out and answered through the client's outbox. Until
/// the client sends its first LF (or a Telnet command), a pause of
/// `config.text_pause` with nothing arriving ends its message: clients written for
/// the original assignment send each message with no newline.
pub(crate) fn read_text(
    client: &Client,
    buf: &mut ReadBuf,
    have: usize,
    ctx: &Context,
) -> Departure {
    let pause = ctx.config.text_pause;
    // On the heap: with its kilobyte buffer on the stack, an idle reader's wait
    // would need a third stack page (see `stack`).
    let mut decoder = Box::new(TextDecoder::new());
    let mut sender = Sender::new(client, ctx);
    let mut state = TextState::default();
    let mut end = have;
    let mut last_bytes = Instant::now();
    loop {
        let input = &buf.bytes()[..end];
        if text_events(&mut sender, &mut decoder, input, &mut state) {
            client.outbox.push_last(&wire::http_refusal());
            return Departure::Refused;
        }
        sender.relay_and_pause();
        // Wait for the rest of a message only as long as the pause rule allows.
        let timeout = decoder
            .waits_for_pause()
            .then(|| pause.saturating_sub(last_bytes.elapsed()));
        end = match sender.read(buf, timeout) {
            Ok(Got::Bytes(n)) => {
                last_bytes = Instant::now();
                n
            }
            Ok(Got::Timeout) if timeout.is_some() && last_bytes.elapsed() >= pause => {
                if let Some(event) = decoder.pause() {
                    state.note_pause(client);
                    if text_event(&mut sender, event, &mut state.first_line) {
                        client.outbox.push_last(&wire::http_refusal());
                        return Departure::Refused;
                    }
                }
                0
            }
            Ok(Got::Timeout) => 0,
            Ok(Got::Eof) => return text_eof(&mut sender, &mut decoder, &mut state.first_line),
            Err(departure) => return departure,
        };
        if sender.cut_off() {
            return Departure::ServerClosing;
        }
    }
}

/// What the text read loop remembers about its client.
#[derive(Debug)]
struct TextState {
    /// No message has been taken yet: the next is checked for HTTP.
    first_line: bool,
    /// A pause has ended a message (logged once per connection).
    paused: bool,
    /// The client has been seen to speak Telnet (logged once per connection).
    telnet: bool,
}

impl Default for TextState {
    fn default() -> Self {
        Self {
            first_line: true,
            paused: false,
            telnet: false,
        }
    }
}

impl TextState {
    fn note_pause(&mut self, client: &Client) {
        if !std::mem::replace(&mut self.paused, true) {
            tracing::info!(
                "{}: sends messages without newlines; a pause ends each one",
                client.peer
            );
        }
    }

    fn note_telnet(&mut self, client: &Client) {
        if !std::mem::replace(&mut self.telnet, true) {
            tracing::debug!("{}: speaks Telnet; options refused", client.peer);
        }
    }
}

/// A clean end: the unterminated last message, if any, is still delivered.
fn text_eof(
    sender: &mut Sender<'_>,
    decoder: &mut TextDecoder,
    first_line: &mut bool,
) -> Departure {
    if let Some(event) = decoder.finish() {
        if text_event(sender, event, first_line) {
            return Departure::Refused;
        }
    }
    sender.relay();
    Departure::Closed
}

/// Handles every complete message and Telnet command in `input`. Returns true when
/// the first message is an HTTP request (nothing after it is read).
fn text_events(
    sender: &mut Sender<'_>,
    decoder: &mut TextDecoder,
    mut input: &[u8],
    state: &mut TextState,
) -> bool {
    while !input.is_empty() {
        let (used, event) = decoder.feed(input);
        match event {
            Some(TextEvent::Message(message)) => {
                let refused = text_event(sender, message, &mut state.first_line);
                if refused {
                    return true;
                }
            }
            // Only a client that sent a Telnet command gets one back.
            Some(TextEvent::Reply(reply)) => sender.answer(&reply.to_bytes()),
            None => {}
        }
        input = &input[used..];
    }
    if decoder.is_telnet() {
        state.note_telnet(sender.client);
    }
    false
}

/// Handles one line or line error; true when it is a refused first line.
fn text_event(
    sender: &mut Sender<'_>,
    event: Result<&str, LineError>,
    first_line: &mut bool,
) -> bool {
    let first = std::mem::replace(first_line, false);
    let (code, text) = match event {
        Ok(line) if first && looks_like_http(line) => return true,
        Ok(line) => {
            sender.push(line);
            return false;
        }
        Err(LineError::TooLong) => (ErrorCode::TOO_LONG, "line too long"),
        Err(LineError::InvalidUtf8) => (ErrorCode::INVALID_UTF8, "line is not valid UTF-8"),
        Err(LineError::UnendedSubnegotiation) => (
            ErrorCode::MALFORMED,
            "line held ff fa, which starts a Telnet subnegotiation, and no ff f0 ended it",
        ),
        Err(_) => (ErrorCode::MALFORMED, "bad line"),
    };
    let text = match code {
        ErrorCode::TOO_LONG => format!(
            "{text}: the limit is {} bytes; discarded",
            proto_core::MAX_MESSAGE
        ),
        _ => format!("{text}; discarded"),
    };
    sender.answer(&wire::error(Mode::Text, code, &text));
    false
}
