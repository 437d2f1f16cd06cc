//! Feeds arbitrary bytes, in chunks the fuzzer chooses, to the server's WebSocket
//! frame decoder (`host-server/src/web/frames.rs`), as a client's bytes reach it.
//!
//! Checks that it never panics, that every call takes input or yields an event
//! (no stall), that it yields the same events however the stream is cut, and that
//! they equal a direct reading of RFC 6455 as the server applies it: every client
//! frame masked, no reserved bit or opcode, control frames final and at most 125
//! bytes, continuations only inside a message and no message inside another; text
//! messages unmasked, assembled across fragments and at most `MAX_MESSAGE` bytes,
//! the others discarded once each (too long, binary, not UTF-8). It also checks
//! that the decoder is idle exactly when the stream ended between messages.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_core::MAX_MESSAGE;
use proto_core_fuzz::Input;

// The decoder is internal to the server; it is compiled in as it is, so the fuzz
// crate needs neither host-server nor its dependencies (rustls, redis), only
// tungstenite's frame header parser. Its `#[cfg(test)]` tests are not compiled here.
#[allow(dead_code)]
#[path = "../../host-server/src/web/frames.rs"]
mod frames;

use frames::{Discard, WsDecoder, WsError, WsEvent};

/// A control frame's payload is at most this long (RFC 6455, 5.5).
const CONTROL_MAX: u64 = 125;

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let (chunked, idle) = decode(&input);
    let (want, want_idle) = expected(input.stream);
    assert_eq!(chunked, want, "events differ from the rules");
    if !matches!(want.last(), Some(Ev::Error(_))) {
        assert_eq!(idle, want_idle, "idle at the end is wrong");
    }
    if !input.sizes.is_empty() {
        let whole = decode(&Input {
            sizes: &[],
            stream: input.stream,
        });
        assert_eq!(chunked, whole.0, "events depend on how the stream is cut");
    }
});

/// An event, owned, so events can be compared after the decoder moves on.
#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Text(String),
    Discarded(Discard),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
    /// Fatal: the last event.
    Error(WsError),
}

/// Feeds the stream in its chunks until a framing error; returns the events and
/// whether the decoder was idle at the end.
fn decode(input: &Input) -> (Vec<Ev>, bool) {
    let mut dec = WsDecoder::new();
    let mut events = Vec::new();
    for (_, chunk) in input.chunks() {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (used, event) = dec.feed(rest);
            assert!(used <= rest.len(), "used more than it was given");
            rest = &rest[used..];
            match event {
                Ok(Some(e)) => events.push(owned(e)),
                Ok(None) => assert!(used > 0, "no progress and no event"),
                Err(e) => {
                    let _ = e.to_string();
                    events.push(Ev::Error(e));
                    return (events, false);
                }
            }
        }
    }
    (events, dec.is_idle())
}

fn owned(e: WsEvent) -> Ev {
    match e {
        WsEvent::Text(t) => {
            assert!(t.len() <= MAX_MESSAGE, "a text of {} bytes", t.len());
            Ev::Text(t.to_owned())
        }
        WsEvent::Discarded(d) => Ev::Discarded(d),
        WsEvent::Ping(p) => {
            assert!(p.len() as u64 <= CONTROL_MAX, "a ping of {} bytes", p.len());
            Ev::Ping(p.to_vec())
        }
        WsEvent::Pong => Ev::Pong,
        WsEvent::Close(code) => Ev::Close(code),
    }
}

/// The events RFC 6455's framing, as the server applies it, gives for the whole
/// stream (a frame at a time, nothing held), and whether the stream ended between
/// messages.
fn expected(stream: &[u8]) -> (Vec<Ev>, bool) {
    let mut out = Vec::new();
    // The data message begun and not ended: its text so far, or why it is dropped.
    let mut open: Option<Result<Vec<u8>, Discard>> = None;
    let mut at = 0;
    loop {
        let Some((head, len, header_len)) = header(&stream[at..]) else {
            return (out, at == stream.len() && open.is_none());
        };
        let opcode = head[0] & 0x0f;
        let fin = head[0] & 0x80 != 0;
        let error = if matches!(opcode, 3..=7 | 11..=15) {
            Some(WsError::Reserved)
        } else if head[1] & 0x80 == 0 {
            Some(WsError::Unmasked)
        } else if head[0] & 0x70 != 0 {
            Some(WsError::Reserved)
        } else if opcode >= 8 && (!fin || len > CONTROL_MAX) {
            Some(WsError::BadControl)
        } else if opcode == 0 && open.is_none() {
            Some(WsError::StrayContinuation)
        } else if matches!(opcode, 1 | 2) && open.is_some() {
            Some(WsError::Interleaved)
        } else {
            None
        };
        if let Some(e) = error {
            out.push(Ev::Error(e));
            return (out, false);
        }
        let mask = &stream[at + header_len - 4..at + header_len];
        let body = &stream[at + header_len..];
        if (body.len() as u64) < len {
            // The frame is cut short by the end of the stream: no event from it.
            return (out, false);
        }
        let payload: Vec<u8> = body[..len as usize]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        at += header_len + payload.len();
        match opcode {
            8 => out.push(Ev::Close(
                payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])),
            )),
            9 => out.push(Ev::Ping(payload)),
            10 => out.push(Ev::Pong),
            _ => {
                let message = match (opcode, open.take()) {
                    (1, _) => Ok(payload),
                    (2, _) => Err(Discard::Binary),
                    (_, Some(Ok(mut text))) => {
                        text.extend(payload);
                        Ok(text)
                    }
                    (_, other) => other.expect("a continuation is inside a message"),
                };
                let message = match message {
                    Ok(text) if text.len() > MAX_MESSAGE => Err(Discard::TooLong),
                    other => other,
                };
                if !fin {
                    open = Some(message);
                    continue;
                }
                out.push(match message {
                    Ok(text) => match String::from_utf8(text) {
                        Ok(text) => Ev::Text(text),
                        Err(_) => Ev::Discarded(Discard::InvalidUtf8),
                    },
                    Err(why) => Ev::Discarded(why),
                });
            }
        }
    }
}

/// A complete frame header at the start of `bytes`: its first two bytes, the
/// payload length and the header's length (with the mask, if the mask bit is set).
fn header(bytes: &[u8]) -> Option<([u8; 2], u64, usize)> {
    let head = [*bytes.first()?, *bytes.get(1)?];
    let (len, extra) = match head[1] & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            2,
        ),
        127 => (u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?), 8),
        n => (u64::from(n), 0),
    };
    let header_len = 2 + extra + if head[1] & 0x80 != 0 { 4 } else { 0 };
    (bytes.len() >= header_len).then_some((head, len, header_len))
}
