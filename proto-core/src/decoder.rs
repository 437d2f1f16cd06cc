//! The streaming frame decoder: a pure state machine over a fixed buffer.

use heapless::Vec;

use crate::error::DecodeError;
use crate::feed::FeedResult;
use crate::wire::{Frame, FrameKind, FRAME_HEADER_LEN, MAX_BODY};

/// Turns a byte stream of binary frames (after the preamble) into frames.
///
/// Feed it slices of any size, from one byte at a time to many frames at once, with
/// [`FrameDecoder::feed`]. It never does I/O, never allocates and never panics; its
/// memory is one [`MAX_BODY`]-byte buffer (the 1024-byte message plus room for the
/// broadcast's sequence number and peer header) and a few counters.
///
/// A frame whose body lies whole in the slice being fed is parsed in place, without
/// copying; only a frame split across feeds is gathered in the buffer.
///
/// Errors are recoverable: a frame that announces a body over its kind's limit, names
/// an unknown kind, or carries a malformed body is reported once and skipped by its
/// announced length, and decoding goes on with the next frame.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    state: State,
    header: [u8; FRAME_HEADER_LEN],
    header_len: u8,
    body: Vec<u8, MAX_BODY>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a frame header (`header_len` bytes of it so far).
    Header,
    /// Collecting a body of `len` bytes into `body`.
    Body { kind: FrameKind, len: usize },
    /// Discarding the rest of a rejected frame.
    Skip { remaining: usize },
}

/// Where [`FrameDecoder::advance`] stopped, without borrowing anything, so a caller
/// that owns both the decoder and the input (such as [`crate::FrameReader`]) can
/// refill its input in a loop and resolve the frame afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// All input consumed; no frame complete yet.
    NeedMore,
    /// A frame or an error is complete after the first `used` bytes of the input.
    Done { used: usize, event: Event },
}

/// What completed, and where its body lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// A complete body lies in the input at `start..end`.
    InInput {
        kind: FrameKind,
        start: usize,
        end: usize,
    },
    /// A complete body lies in the decoder's buffer.
    InBuffer { kind: FrameKind },
    /// A frame was rejected (and is being, or has been, skipped).
    Error(DecodeError),
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder at the start of a frame stream.
    pub const fn new() -> Self {
        Self {
            state: State::Header,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            body: Vec::new(),
        }
    }

    /// Consumes bytes from the front of `input` until one frame or error is complete,
    /// or `input` runs out.
    ///
    /// Returns [`FeedResult::Consumed`] when all of `input` was taken in without
    /// completing a frame, else the frame (or the error that rejected one) and the
    /// rest of `input`, to feed next.
    #[inline]
    pub fn feed<'d, 'i: 'd>(
        &'d mut self,
        input: &'i [u8],
    ) -> FeedResult<'i, Result<Frame<'d>, DecodeError>> {
        match self.advance(input) {
            Step::NeedMore => FeedResult::Consumed,
            Step::Done { used, event } => FeedResult::Complete {
                item: self.resolve(input, event),
                remaining: &input[used..],
            },
        }
    }

    /// True when the decoder is between frames: the stream could end here cleanly.
    pub fn is_idle(&self) -> bool {
        self.state == State::Header && self.header_len == 0
    }

    /// Forgets any partial frame, as after a reconnect.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// The frame or error `event` completed; `input` is what was passed to
    /// [`FrameDecoder::advance`].
    #[inline]
    pub(crate) fn resolve<'a>(
        &'a self,
        input: &'a [u8],
        event: Event,
    ) -> Result<Frame<'a>, DecodeError> {
        match event {
            Event::InInput { kind, start, end } => Frame::parse(kind, &input[start..end]),
            Event::InBuffer { kind } => Frame::parse(kind, &self.body),
            Event::Error(e) => Err(e),
        }
    }

    /// Takes in bytes from the front of `input` until a frame or error is complete.
    #[inline]
    pub(crate) fn advance(&mut self, input: &[u8]) -> Step {
        let mut used = 0;
        loop {
            match self.state {
                State::Header => {
                    let (n, header) = self.take_header(&input[used..]);
                    used += n;
                    let Some((kind_byte, len)) = header else {
                        return Step::NeedMore;
                    };
                    if let Some(event) = self.start_frame(kind_byte, len, &input[used..]) {
                        return match event {
                            Event::InInput { kind, .. } => {
                                let (start, end) = (used, used + len);
                                let event = Event::InInput { kind, start, end };
                                Step::Done { used: end, event }
                            }
                            event => Step::Done { used, event },
                        };
                    }
                }
                State::Body { kind, len } => {
                    let take = (len - self.body.len()).min(input.len() - used);
                    let gathered = self.body.extend_from_slice(&input[used..used + take]);
                    debug_assert!(
                        gathered.is_ok(),
                        "a body within its kind's limit fits the buffer"
                    );
                    used += take;
                    if self.body.len() < len {
                        return Step::NeedMore;
                    }
                    self.state = State::Header;
                    let event = Event::InBuffer { kind };
                    return Step::Done { used, event };
                }
                State::Skip { remaining } => {
                    let take = remaining.min(input.len() - used);
                    used += take;
                    if take < remaining {
                        self.state = State::Skip {
                            remaining: remaining - take,
                        };
                        return Step::NeedMore;
                    }
                    self.state = State::Header;
                }
            }
        }
    }

    /// Gathers header bytes; returns the bytes used and, once complete, kind and length.
    #[inline]
    fn take_header(&mut self, input: &[u8]) -> (usize, Option<(u8, usize)>) {
        let have = usize::from(self.header_len);
        if have == 0 && input.len() >= FRAME_HEADER_LEN {
            let len = usize::from(u16::from_be_bytes([input[1], input[2]]));
            return (FRAME_HEADER_LEN, Some((input[0], len)));
        }
        let take = (FRAME_HEADER_LEN - have).min(input.len());
        self.header[have..have + take].copy_from_slice(&input[..take]);
        if have + take < FRAME_HEADER_LEN {
            self.header_len = (have + take) as u8;
            return (take, None);
        }
        self.header_len = 0;
        let len = usize::from(u16::from_be_bytes([self.header[1], self.header[2]]));
        (take, Some((self.header[0], len)))
    }

    /// Decides what to do with a frame whose header just completed. `rest` is the
    /// input after the header. Returns `None` when the body must be gathered or
    /// skipped before anything can be reported.
    #[inline]
    fn start_frame(&mut self, kind_byte: u8, len: usize, rest: &[u8]) -> Option<Event> {
        let error = match FrameKind::from_byte(kind_byte) {
            None => DecodeError::UnknownKind {
                kind: kind_byte,
                len,
            },
            Some(kind) if len > kind.max_body() => DecodeError::TooLong { kind, len },
            Some(kind) if rest.len() >= len => {
                return Some(Event::InInput {
                    kind,
                    start: 0,
                    end: len,
                });
            }
            Some(kind) => {
                self.body.clear();
                self.state = State::Body { kind, len };
                return None;
            }
        };
        if len > 0 {
            self.state = State::Skip { remaining: len };
        }
        Some(Event::Error(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Notice, NoticeKind, PeerAddr, MAX_FRAME, MAX_MESSAGE};
    use std::vec::Vec;

    #[derive(Debug, PartialEq)]
    enum Out {
        Frame(std::string::String),
        Err(DecodeError),
    }

    fn decode_in_chunks(bytes: &[u8], chunk: usize) -> Vec<Out> {
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            let mut input = piece;
            while let FeedResult::Complete { item, remaining } = dec.feed(input) {
                match item {
                    Ok(f) => out.push(Out::Frame(std::format!("{f:?}"))),
                    Err(e) => out.push(Out::Err(e)),
                }
                input = remaining;
            }
        }
        out
    }

    fn enc(frame: Frame) -> Vec<u8> {
        let mut buf = [0u8; MAX_FRAME];
        let n = frame.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn every_split_gives_the_same_frames() {
        let long = "é".repeat(MAX_MESSAGE / 2);
        let mut stream = Vec::new();
        stream.extend(enc(Frame::Chat { text: "hello" }));
        stream.extend(enc(Frame::Chat { text: &long }));
        stream.extend(enc(Frame::Bye));
        stream.extend(enc(Frame::Notice(Notice {
            kind: NoticeKind::Leave,
            peer: Some(PeerAddr::V4 {
                ip: [1, 2, 3, 4],
                port: 5,
            }),
            text: "left",
        })));
        let whole = decode_in_chunks(&stream, stream.len());
        assert_eq!(whole.len(), 4);
        for chunk in 1..40 {
            assert_eq!(
                decode_in_chunks(&stream, chunk),
                whole,
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn too_long_frame_is_skipped_exactly() {
        for len in [MAX_MESSAGE + 1, u16::MAX as usize] {
            let mut stream = std::vec![FrameKind::Chat as u8];
            stream.extend((len as u16).to_be_bytes());
            stream.extend(std::iter::repeat_n(b'a', len));
            stream.extend(enc(Frame::Chat { text: "next" }));
            for chunk in [1, 7, 1000, stream.len()] {
                let out = decode_in_chunks(&stream, chunk);
                assert_eq!(
                    out,
                    [
                        Out::Err(DecodeError::TooLong {
                            kind: FrameKind::Chat,
                            len
                        }),
                        Out::Frame(std::format!("{:?}", Frame::Chat { text: "next" })),
                    ]
                );
            }
        }
    }

    #[test]
    fn limit_boundaries() {
        for (len, ok) in [
            (MAX_MESSAGE - 1, true),
            (MAX_MESSAGE, true),
            (MAX_MESSAGE + 1, false),
        ] {
            let mut stream = std::vec![FrameKind::Chat as u8];
            stream.extend((len as u16).to_be_bytes());
            stream.extend(std::iter::repeat_n(b'z', len));
            for chunk in [1, 100, stream.len()] {
                let out = decode_in_chunks(&stream, chunk);
                assert_eq!(
                    matches!(out[..], [Out::Frame(_)]),
                    ok,
                    "len {len} chunk {chunk}"
                );
            }
        }
    }

    #[test]
    fn unknown_kind_and_bad_body_are_skipped() {
        let mut stream = std::vec![0x7f, 0, 3, 1, 2, 3];
        stream.extend([FrameKind::Ping as u8, 0, 2, 9, 9]);
        stream.extend([FrameKind::Chat as u8, 0, 2, 0xc3, 0x28]);
        stream.extend(enc(Frame::Pong { nonce: 42 }));
        let out = decode_in_chunks(&stream, 1);
        assert_eq!(
            out,
            [
                Out::Err(DecodeError::UnknownKind { kind: 0x7f, len: 3 }),
                Out::Err(DecodeError::BadLength {
                    kind: FrameKind::Ping,
                    len: 2
                }),
                Out::Err(DecodeError::InvalidUtf8 {
                    kind: FrameKind::Chat
                }),
                Out::Frame(std::format!("{:?}", Frame::Pong { nonce: 42 })),
            ]
        );
        assert_eq!(decode_in_chunks(&stream, stream.len()), out);
    }

    #[test]
    fn idle_only_between_frames() {
        let mut dec = FrameDecoder::new();
        assert!(dec.is_idle());
        let bytes = enc(Frame::Chat { text: "abc" });
        assert_eq!(dec.feed(&bytes[..2]), FeedResult::Consumed);
        assert!(!dec.is_idle());
        let mut rest = bytes[2..].to_vec();
        rest.push(0xAA);
        assert_eq!(
            dec.feed(&rest),
            FeedResult::Complete {
                item: Ok(Frame::Chat { text: "abc" }),
                remaining: &[0xAA][..]
            }
        );
        assert!(dec.is_idle());
        dec.feed(&bytes[..4]);
        dec.reset();
        assert!(dec.is_idle());
    }
}
