//! Reading a WebSocket client's frames (RFC 6455): a state machine fed byte slices,
//! with no I/O, in the manner of proto-core's decoders.
//!
//! tungstenite parses each frame header; the payload is unmasked here as it
//! streams in, so a message is held only up to the room's limit. A message over the
//! limit, a binary message or one that is not UTF-8 is discarded to its last frame
//! and reported once, and the connection stays usable, as in text mode; only a
//! broken framing (which would leave the stream impossible to follow) is fatal.
//! tungstenite's own `WebSocket` cannot do that: past its size limits it fails the
//! connection, and it would hold buffers of its own per client.

use std::io::Cursor;

use proto_core::MAX_MESSAGE;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// A control frame's payload is at most this long (RFC 6455, 5.5).
const CONTROL_MAX: usize = 125;

/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
const HEADER_MAX: usize = 14;

/// What a complete frame or message said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsEvent<'a> {
    /// A text message within the room's limit.
    Text(&'a str),
    /// A message that was discarded, and why; the connection goes on.
    Discarded(Discard),
    /// A ping, to be answered with a pong carrying this payload.
    Ping(&'a [u8]),
    /// A pong (or an unsolicited one): proof of life, nothing to do.
    Pong,
    /// The client closes, with this status code if it gave one.
    Close(Option<u16>),
}

/// Why a message was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discard {
    /// Longer than [`MAX_MESSAGE`] bytes.
    TooLong,
    /// A binary message: the room carries text.
    Binary,
    /// A text message that is not UTF-8.
    InvalidUtf8,
}

/// A framing error, after which the stream cannot be followed: the connection is
/// closed with status 1002 (protocol error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WsError {
    /// A client's frame must be masked.
    Unmasked,
    /// A reserved bit is set, or a reserved opcode used (no extension was agreed).
    Reserved,
    /// A control frame longer than 125 bytes or fragmented.
    BadControl,
    /// A continuation frame with no message to continue.
    StrayContinuation,
    /// A new message began before the last one ended.
    Interleaved,
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WsError::Unmasked => "an unmasked frame",
            WsError::Reserved => "a reserved bit or opcode",
            WsError::BadControl => "a control frame too long or fragmented",
            WsError::StrayContinuation => "a continuation frame with no message",
            WsError::Interleaved => "a new message inside another",
        })
    }
}

/// The frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Payload {
    opcode: OpCode,
    is_final: bool,
    mask: [u8; 4],
    /// Bytes of payload read so far, and in all.
    at: u64,
    len: u64,
}

/// The WebSocket frame decoder of one connection.
#[derive(Debug)]
pub(crate) struct WsDecoder {
    /// A frame header cut short by the end of the input.
    header: [u8; HEADER_MAX],
    header_len: usize,
    payload: Option<Payload>,
    /// The message being assembled (a text message within the limit).
    message: Vec<u8>,
    /// A data message has begun and not ended: how it is being taken.
    open: Option<Result<(), Discard>>,
    control: [u8; CONTROL_MAX],
    control_len: usize,
}

impl Default for WsDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl WsDecoder {
    /// A decoder at the start of a stream.
    pub(crate) fn new() -> Self {
        Self {
            header: [0; HEADER_MAX],
            header_len: 0,
            payload: None,
            message: Vec::new(),
            open: None,
            control: [0; CONTROL_MAX],
            control_len: 0,
        }
    }

    /// True between frames and messages: an end of the stream here loses nothing.
    pub(crate) fn is_idle(&self) -> bool {
        self.header_len == 0 && self.payload.is_none() && self.open.is_none()
    }

    /// Takes bytes from `input` until one event is complete. Returns how many bytes
    /// were used and the event, if any; call again with the rest.
    ///
    /// # Errors
    /// A [`WsError`] when the framing is broken; the decoder is then of no further
    /// use.
    pub(crate) fn feed(&mut self, input: &[u8]) -> (usize, Result<Option<WsEvent<'_>>, WsError>) {
        let Some(payload) = self.payload else {
            return match self.header(input) {
                (used, Ok(true)) if self.payload.is_some_and(|p| p.len == 0) => {
                    (used, self.finish())
                }
                (used, Ok(_)) => (used, Ok(None)),
                (used, Err(e)) => (used, Err(e)),
            };
        };
        let want = payload.len - payload.at;
        let used = usize::try_from(want).unwrap_or(usize::MAX).min(input.len());
        self.take(&input[..used]);
        if self.payload.is_some_and(|p| p.at == p.len) {
            (used, self.finish())
        } else {
            (used, Ok(None))
        }
    }

    /// Reads a frame header from `input` (after any part held from before); true
    /// once it is complete and its frame begun.
    fn header(&mut self, input: &[u8]) -> (usize, Result<bool, WsError>) {
        let held = self.header_len;
        let copy = (HEADER_MAX - held).min(input.len());
        self.header[held..held + copy].copy_from_slice(&input[..copy]);
        let mut cursor = Cursor::new(&self.header[..held + copy]);
        let parsed = FrameHeader::parse(&mut cursor);
        let (header, len) = match parsed {
            Ok(Some(found)) => found,
            Ok(None) => {
                self.header_len = held + copy;
                return (copy, Ok(false));
            }
            Err(_) => return (copy, Err(WsError::Reserved)),
        };
        // `parse` read no more than the bytes held and copied.
        let used = usize::try_from(cursor.position()).unwrap_or(held) - held;
        self.header_len = 0;
        (used, self.begin(&header, len).map(|()| true))
    }

    /// Checks a frame's header against the rules and the message in progress.
    fn begin(&mut self, header: &FrameHeader, len: u64) -> Result<(), WsError> {
        let mask = header.mask.ok_or(WsError::Unmasked)?;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(WsError::Reserved);
        }
        match header.opcode {
            OpCode::Control(_) if !header.is_final || len > CONTROL_MAX as u64 => {
                return Err(WsError::BadControl)
            }
            OpCode::Control(_) => self.control_len = 0,
            OpCode::Data(Data::Continue) if self.open.is_none() => {
                return Err(WsError::StrayContinuation)
            }
            OpCode::Data(Data::Continue) => {}
            OpCode::Data(_) if self.open.is_some() => return Err(WsError::Interleaved),
            OpCode::Data(Data::Binary) => self.open = Some(Err(Discard::Binary)),
            OpCode::Data(_) => {
                self.message.clear();
                self.open = Some(Ok(()));
            }
        }
        if matches!(header.opcode, OpCode::Data(_)) && self.open == Some(Ok(())) {
            // A header may claim a length up to u64::MAX: saturate, so such a frame is
            // too long rather than an overflow (a panic, or a wrapped total that lets
            // the message grow past the limit).
            let total = (self.message.len() as u64).saturating_add(len);
            if total > MAX_MESSAGE as u64 {
                self.open = Some(Err(Discard::TooLong));
                self.message = Vec::new();
            }
        }
        self.payload = Some(Payload {
            opcode: header.opcode,
            is_final: header.is_final,
            mask,
            at: 0,
            len,
        });
        Ok(())
    }

    /// Unmasks payload bytes into the message or control buffer, or drops them.
    fn take(&mut self, bytes: &[u8]) {
        let Some(p) = &mut self.payload else { return };
        let keep: Option<&mut [u8]> = match p.opcode {
            OpCode::Control(_) => Some(&mut self.control[self.control_len..]),
            OpCode::Data(_) if self.open == Some(Ok(())) => {
                // Once, the size of the limit: the message never grows past it.
                self.message.reserve_exact(MAX_MESSAGE - self.message.len());
                let from = self.message.len();
                self.message.resize(from + bytes.len(), 0);
                Some(&mut self.message[from..])
            }
            OpCode::Data(_) => None,
        };
        if let Some(keep) = keep {
            for (i, (out, b)) in keep.iter_mut().zip(bytes).enumerate() {
                *out = b ^ p.mask[(p.at as usize + i) % 4];
            }
        }
        if let OpCode::Control(_) = p.opcode {
            self.control_len += bytes.len();
        }
        p.at += bytes.len() as u64;
    }

    /// The frame's payload is complete: the event it ends with, if any.
    fn finish(&mut self) -> Result<Option<WsEvent<'_>>, WsError> {
        let Some(p) = self.payload.take() else {
            return Ok(None);
        };
        let control = &self.control[..self.control_len];
        match p.opcode {
            OpCode::Control(Control::Ping) => Ok(Some(WsEvent::Ping(control))),
            OpCode::Control(Control::Pong) => Ok(Some(WsEvent::Pong)),
            OpCode::Control(Control::Close) => {
                let code = control.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                Ok(Some(WsEvent::Close(code)))
            }
            OpCode::Control(Control::Reserved(_)) => Err(WsError::Reserved),
            OpCode::Data(_) if !p.is_final => Ok(None),
            OpCode::Data(_) => match self.open.take() {
                Some(Ok(())) => Ok(Some(match std::str::from_utf8(&self.message) {
                    Ok(text) => WsEvent::Text(text),
                    Err(_) => WsEvent::Discarded(Discard::InvalidUtf8),
                })),
                Some(Err(why)) => Ok(Some(WsEvent::Discarded(why))),
                None => Ok(None),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client's frame: `first` is FIN, RSV and the opcode.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n < 65536 => {
                out.push(0x80 | 126);
                out.extend((n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend((n as u64).to_be_bytes());
            }
        }
        out.extend(MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    /// Every event in `input`, fed in pieces of `step` bytes, as owned strings.
    fn events(input: &[u8], step: usize) -> Vec<Result<String, WsError>> {
        let mut decoder = WsDecoder::new();
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, event) = decoder.feed(rest);
                match event {
                    Ok(Some(e)) => out.push(Ok(format!("{e:?}"))),
                    Ok(None) => {}
                    Err(e) => return [out, vec![Err(e)]].concat(),
                }
                rest = &rest[used..];
            }
        }
        assert!(decoder.is_idle(), "not idle at the end");
        out
    }

    fn ok(events: &[&str]) -> Vec<Result<String, WsError>> {
        events.iter().map(|e| Ok(e.to_string())).collect()
    }

    #[test]
    fn masked_text_ping_and_close_in_any_pieces() {
        let mut input = frame(0x81, "héllo".as_bytes());
        input.extend(frame(0x89, b"p"));
        input.extend(frame(0x81, b""));
        input.extend(frame(0x88, &[0x03, 0xe8]));
        let want = ok(&[
            "Text(\"héllo\")",
            "Ping([112])",
            "Text(\"\")",
            "Close(Some(1000))",
        ]);
        for step in [1, 2, 3, 7, input.len()] {
            assert_eq!(events(&input, step), want, "step {step}");
        }
    }

    #[test]
    fn a_fragmented_message_with_a_ping_inside_is_one_message() {
        let mut input = frame(0x01, b"one ");
        input.extend(frame(0x89, b""));
        input.extend(frame(0x00, b"two "));
        input.extend(frame(0x80, b"three"));
        assert_eq!(
            events(&input, 5),
            ok(&["Ping([])", "Text(\"one two three\")"])
        );
    }

    #[test]
    fn the_limit_is_1024_bytes_and_over_it_the_message_is_discarded_alone() {
        let at = "a".repeat(MAX_MESSAGE);
        let mut input = frame(0x81, at.as_bytes());
        input.extend(frame(0x81, format!("{at}b").as_bytes()));
        // Over the limit only across fragments.
        input.extend(frame(0x01, at.as_bytes()));
        input.extend(frame(0x80, b"b"));
        input.extend(frame(0x81, b"after"));
        let got = events(&input, 100);
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].as_ref().unwrap().len(), MAX_MESSAGE + 8);
        assert_eq!(
            got[1..],
            ok(&[
                "Discarded(TooLong)",
                "Discarded(TooLong)",
                "Text(\"after\")"
            ])
        );
    }

    #[test]
    fn a_huge_frame_is_skipped_without_holding_it() {
        let big = vec![b'x'; 70_000];
        let mut input = frame(0x82, &big);
        input.extend(frame(0x81, &big));
        input.extend(frame(0x81, b"ok"));
        let mut decoder = WsDecoder::new();
        let mut rest = &input[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let (used, event) = decoder.feed(rest);
            if let Some(e) = event.unwrap() {
                seen.push(format!("{e:?}"));
            }
            assert!(
                decoder.message.capacity() <= MAX_MESSAGE,
                "held a huge frame"
            );
            rest = &rest[used..];
        }
        assert_eq!(
            seen,
            ["Discarded(Binary)", "Discarded(TooLong)", "Text(\"ok\")"]
        );
    }

    /// Found by the `ws_decoder` fuzz target: a continuation whose header claims
    /// u64::MAX bytes, after a fragment, overflowed the message's running total.
    #[test]
    fn a_length_of_u64_max_after_a_fragment_is_too_long() {
        let mut input = frame(0x01, b"abcd");
        input.extend([0x00, 0x80 | 127]);
        input.extend(u64::MAX.to_be_bytes());
        input.extend(MASK);
        input.extend([b'x'; 3000]);
        let mut decoder = WsDecoder::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let (used, event) = decoder.feed(rest);
            assert_eq!(event, Ok(None));
            assert!(used > 0);
            rest = &rest[used..];
        }
        assert_eq!(decoder.open, Some(Err(Discard::TooLong)));
        assert!(decoder.message.capacity() <= MAX_MESSAGE, "held the frame");
    }

    #[test]
    fn bad_utf8_is_discarded_and_the_stream_goes_on() {
        let mut input = frame(0x81, &[0xff, 0xfe]);
        input.extend(frame(0x81, b"fine"));
        assert_eq!(
            events(&input, 3),
            ok(&["Discarded(InvalidUtf8)", "Text(\"fine\")"])
        );
    }

    /// Every event of `input` fed in the pieces `cuts` makes, until an error.
    fn events_cut(input: &[u8], cuts: &[usize]) -> Vec<Result<String, WsError>> {
        let mut decoder = WsDecoder::new();
        let mut out = Vec::new();
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        ends.push(input.len());
        ends.sort_unstable();
        let mut at = 0;
        for end in ends {
            let mut rest = &input[at..end];
            at = end;
            while !rest.is_empty() {
                let (used, event) = decoder.feed(rest);
                assert!(used <= rest.len());
                match event {
                    Ok(Some(e)) => out.push(Ok(format!("{e:?}"))),
                    Ok(None) => assert!(used > 0, "no progress"),
                    Err(e) => return [out, vec![Err(e)]].concat(),
                }
                rest = &rest[used..];
            }
        }
        out
    }

    proptest::proptest! {
        /// Whatever arrives, in whatever pieces, the decoder neither panics nor
        /// stalls, and the pieces do not change what it finds.
        #[test]
        fn any_bytes_in_any_pieces_decode_alike(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            cuts in proptest::collection::vec(0usize..1000, 0..8),
        ) {
            let whole = events_cut(&input, &[]);
            proptest::prop_assert_eq!(events_cut(&input, &cuts), whole);
        }

        /// Valid client frames with texts of any length come out as those texts
        /// (within the limit) or as one "too long" each, in any pieces.
        #[test]
        fn valid_frames_round_trip(
            texts in proptest::collection::vec(".{0,300}", 1..6),
            cuts in proptest::collection::vec(0usize..5000, 0..8),
        ) {
            let input: Vec<u8> = texts.iter().flat_map(|t| frame(0x81, t.as_bytes())).collect();
            let want: Vec<_> = texts
                .iter()
                .map(|t| Ok(match t.len() > MAX_MESSAGE {
                    true => "Discarded(TooLong)".to_string(),
                    false => format!("Text({t:?})"),
                }))
                .collect();
            proptest::prop_assert_eq!(events_cut(&input, &cuts), want);
        }
    }

    #[test]
    fn broken_framing_is_an_error() {
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(events(&unmasked, 9), [Err(WsError::Unmasked)]);
        assert_eq!(events(&frame(0xc1, b"a"), 9), [Err(WsError::Reserved)]);
        assert_eq!(events(&frame(0x83, b"a"), 9), [Err(WsError::Reserved)]);
        assert_eq!(
            events(&frame(0x80, b"a"), 9),
            [Err(WsError::StrayContinuation)]
        );
        assert_eq!(events(&frame(0x09, b""), 9), [Err(WsError::BadControl)]);
        assert_eq!(
            events(&frame(0x89, &[0; 126]), 9),
            [Err(WsError::BadControl)]
        );
        let mut interleaved = frame(0x01, b"a");
        interleaved.extend(frame(0x81, b"b"));
        assert_eq!(events(&interleaved, 9), [Err(WsError::Interleaved)]);
    }
}
