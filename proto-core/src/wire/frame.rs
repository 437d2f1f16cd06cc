//! Frames in their typed form: parsing a body, emitting a whole frame.

use core::fmt;

use heapless::Vec;

use super::{
    FrameKind, PeerAddr, FRAME_HEADER_LEN, NONCE_LEN, NOTICE_FIXED_LEN, PEER_MAX_LEN, SEQ_LEN,
};
use crate::error::{DecodeError, EncodeError};
use crate::MAX_MESSAGE;

/// One frame of protocol v1, borrowing its text from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Frame<'a> {
    /// Client to server: a message for the room.
    Chat {
        /// The message, at most [`MAX_MESSAGE`] bytes.
        text: &'a str,
    },
    /// Server to client: a message relayed from another peer.
    Broadcast {
        /// The server's sequence number: one total order for the whole room.
        seq: u64,
        /// Who sent the message.
        peer: PeerAddr,
        /// The message, at most [`MAX_MESSAGE`] bytes, exactly as its sender wrote it.
        text: &'a str,
    },
    /// Server to client: something happened in the room or to this connection.
    Notice(Notice<'a>),
    /// A liveness probe; the receiver answers with a [`Frame::Pong`] of the same nonce.
    Ping {
        /// Opaque value echoed in the pong.
        nonce: u64,
    },
    /// The answer to a [`Frame::Ping`].
    Pong {
        /// The nonce of the ping being answered.
        nonce: u64,
    },
    /// The sender is leaving and will close the connection.
    Bye,
    /// Server to client: the client's own chat message was given sequence number
    /// `seq`. With it, the broadcasts a client receives and the acks of its own
    /// messages together cover every sequence number, so a gap means a lost message.
    Ack {
        /// The sequence number of the client's message.
        seq: u64,
    },
}

/// A server notice: what happened, to whom, and a human-readable text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Notice<'a> {
    /// What the notice is about.
    pub kind: NoticeKind,
    /// The peer concerned, if any (the newcomer in a welcome, the peer joining or leaving).
    pub peer: Option<PeerAddr>,
    /// The text to show, at most [`MAX_MESSAGE`] bytes.
    pub text: &'a str,
}

/// The kinds of notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum NoticeKind {
    /// Sent once to a newcomer: its own address and who else is in the room.
    Welcome,
    /// A peer joined the room.
    Join,
    /// A peer left the room (the text says why).
    Leave,
    /// The server is shutting down; the connection closes after this notice.
    Shutdown,
    /// Something went wrong with this connection.
    Error(ErrorCode),
}

impl NoticeKind {
    fn to_bytes(self) -> [u8; 2] {
        match self {
            NoticeKind::Welcome => [1, 0],
            NoticeKind::Join => [2, 0],
            NoticeKind::Leave => [3, 0],
            NoticeKind::Shutdown => [4, 0],
            NoticeKind::Error(code) => [5, code.0],
        }
    }

    fn from_bytes(kind: u8, code: u8) -> Option<Self> {
        Some(match (kind, code) {
            (1, 0) => NoticeKind::Welcome,
            (2, 0) => NoticeKind::Join,
            (3, 0) => NoticeKind::Leave,
            (4, 0) => NoticeKind::Shutdown,
            (5, code) => NoticeKind::Error(ErrorCode(code)),
            _ => return None,
        })
    }
}

/// The code of an error notice. Codes this version does not know are kept as they
/// are, so a newer server's errors still reach the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ErrorCode(pub u8);

impl ErrorCode {
    /// A message was longer than [`MAX_MESSAGE`] bytes; it was discarded.
    pub const TOO_LONG: Self = Self(1);
    /// A frame's body was malformed; it was discarded.
    pub const MALFORMED: Self = Self(2);
    /// A frame's kind is not one this server handles; it was discarded.
    pub const UNKNOWN_FRAME: Self = Self(3);
    /// A message was not valid UTF-8; it was discarded.
    pub const INVALID_UTF8: Self = Self(4);
    /// The client asked for a protocol version the server does not speak.
    pub const UNSUPPORTED_VERSION: Self = Self(5);
    /// The room is at its client limit; the connection is closed.
    pub const SERVER_FULL: Self = Self(6);
    /// The client did not read fast enough and its backlog overflowed; it is dropped.
    pub const SLOW_CONSUMER: Self = Self(7);
    /// The client stopped answering; it is dropped.
    pub const TIMEOUT: Self = Self(8);
    /// The request was refused (for example an HTTP request); the connection is closed.
    pub const REFUSED: Self = Self(9);
    /// Messages the server could not hand to the room in time (a room shared by
    /// several servers whose store is unreachable); nobody received them.
    pub const NOT_DELIVERED: Self = Self(10);
    /// The room's history is gone (a shared room's store lost it, or this server fell
    /// too far behind); the connection is closed.
    pub const ROOM_RESET: Self = Self(11);
    /// The client's address already holds as many connections as the server allows
    /// one address; the connection is closed.
    pub const TOO_MANY_FROM_ADDRESS: Self = Self(12);
    /// Messages the server handed to a shared room's store without hearing back in
    /// time: their fate is not known yet. A later Ack (delivered) or `NOT_DELIVERED`
    /// notice says what became of them.
    pub const DELAYED: Self = Self(13);

    /// A short description of the code, or `"error"` for a code this version does not know.
    pub const fn description(self) -> &'static str {
        match self.0 {
            1 => "message too long",
            2 => "malformed frame",
            3 => "unknown frame",
            4 => "invalid UTF-8",
            5 => "unsupported protocol version",
            6 => "server full",
            7 => "too slow to keep up",
            8 => "timed out",
            9 => "refused",
            10 => "not delivered",
            11 => "room reset",
            12 => "too many connections from your address",
            13 => "delayed",
            _ => "error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

#[inline]
fn utf8(kind: FrameKind, bytes: &[u8]) -> Result<&str, DecodeError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(DecodeError::TextTooLong {
            kind,
            len: bytes.len(),
        });
    }
    core::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { kind })
}

#[inline]
fn u64_at(kind: FrameKind, body: &[u8]) -> Result<u64, DecodeError> {
    let bytes: [u8; 8] =
        body.get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(DecodeError::BadLength {
                kind,
                len: body.len(),
            })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Reads the body of a kind that is exactly one u64 (ping, pong, ack).
#[inline]
fn nonce(kind: FrameKind, body: &[u8]) -> Result<u64, DecodeError> {
    if body.len() != NONCE_LEN {
        return Err(DecodeError::BadLength {
            kind,
            len: body.len(),
        });
    }
    u64_at(kind, body)
}

impl<'a> Frame<'a> {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Chat { .. } => FrameKind::Chat,
            Frame::Broadcast { .. } => FrameKind::Broadcast,
            Frame::Notice(_) => FrameKind::Notice,
            Frame::Ping { .. } => FrameKind::Ping,
            Frame::Pong { .. } => FrameKind::Pong,
            Frame::Bye => FrameKind::Bye,
            Frame::Ack { .. } => FrameKind::Ack,
        }
    }

    /// Parses the body of a frame of the given kind. The body's length has already
    /// been checked against [`FrameKind::max_body`] by the decoder, but this checks
    /// every field again, so it is safe on any input.
    #[inline]
    pub fn parse(kind: FrameKind, body: &'a [u8]) -> Result<Self, DecodeError> {
        match kind {
            FrameKind::Chat => Ok(Frame::Chat {
                text: utf8(kind, body)?,
            }),
            FrameKind::Broadcast => Self::parse_broadcast(body),
            FrameKind::Notice => parse_notice(body).map(Frame::Notice),
            FrameKind::Ping => Ok(Frame::Ping {
                nonce: nonce(kind, body)?,
            }),
            FrameKind::Pong => Ok(Frame::Pong {
                nonce: nonce(kind, body)?,
            }),
            FrameKind::Ack => Ok(Frame::Ack {
                seq: nonce(kind, body)?,
            }),
            FrameKind::Bye if body.is_empty() => Ok(Frame::Bye),
            FrameKind::Bye => Err(DecodeError::BadLength {
                kind,
                len: body.len(),
            }),
        }
    }

    /// A broadcast's body: sequence number, peer, text.
    #[inline]
    fn parse_broadcast(body: &'a [u8]) -> Result<Self, DecodeError> {
        let kind = FrameKind::Broadcast;
        let seq = u64_at(kind, body)?;
        let (peer, text) =
            PeerAddr::decode(&body[SEQ_LEN..]).ok_or(DecodeError::BadPeer { kind })?;
        Ok(Frame::Broadcast {
            seq,
            peer,
            text: utf8(kind, text)?,
        })
    }

    /// The number of bytes [`Frame::encode`] writes, header included.
    #[inline]
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body_len()
    }

    #[inline]
    fn body_len(&self) -> usize {
        match self {
            Frame::Chat { text } => text.len(),
            Frame::Broadcast { peer, text, .. } => SEQ_LEN + peer.encoded_len() + text.len(),
            Frame::Notice(n) => {
                let peer = n.peer.as_ref().map_or(0, PeerAddr::encoded_len);
                NOTICE_FIXED_LEN + 1 + peer + n.text.len()
            }
            Frame::Ping { .. } | Frame::Pong { .. } | Frame::Ack { .. } => NONCE_LEN,
            Frame::Bye => 0,
        }
    }

    /// Writes the whole frame, header and body, to the front of `out` and returns the
    /// number of bytes written.
    ///
    /// # Errors
    /// [`EncodeError::TextTooLong`] if a text exceeds [`MAX_MESSAGE`];
    /// [`EncodeError::BufferTooSmall`] if `out` cannot hold the frame (a buffer of
    /// [`MAX_FRAME`](crate::MAX_FRAME) bytes always can).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let (head, text) = self.split()?;
        let needed = head.len() + text.len();
        let Some(out) = out.get_mut(..needed) else {
            return Err(EncodeError::BufferTooSmall { needed });
        };
        let (out_head, out_text) = out.split_at_mut(head.len());
        out_head.copy_from_slice(&head);
        out_text.copy_from_slice(text);
        Ok(needed)
    }

    /// The frame in two parts: its header and fixed fields (at most [`HEAD_MAX`]
    /// bytes, kept on the stack), then its text, borrowed. [`crate::write_frame`]
    /// writes them one after the other, so no frame-sized buffer is needed.
    ///
    /// # Errors
    /// [`EncodeError::TextTooLong`] if the text exceeds [`MAX_MESSAGE`].
    pub(crate) fn split(&self) -> Result<(Head, &'a [u8]), EncodeError> {
        let text = match self {
            Frame::Chat { text } | Frame::Broadcast { text, .. } => text.as_bytes(),
            Frame::Notice(n) => n.text.as_bytes(),
            _ => &[],
        };
        if text.len() > MAX_MESSAGE {
            return Err(EncodeError::TextTooLong { len: text.len() });
        }
        let mut head = Head::new();
        head.put(&[self.kind() as u8]);
        // At most MAX_BODY, well within a u16.
        head.put(&(self.body_len() as u16).to_be_bytes());
        match self {
            Frame::Chat { .. } | Frame::Bye => {}
            Frame::Broadcast { seq, peer, .. } => {
                head.put(&seq.to_be_bytes());
                head.peer(peer);
            }
            Frame::Notice(n) => {
                head.put(&n.kind.to_bytes());
                match &n.peer {
                    Some(peer) => {
                        head.put(&[1]);
                        head.peer(peer);
                    }
                    None => head.put(&[0]),
                }
            }
            Frame::Ping { nonce: n } | Frame::Pong { nonce: n } | Frame::Ack { seq: n } => {
                head.put(&n.to_be_bytes())
            }
        }
        debug_assert_eq!(head.len() + text.len(), self.encoded_len());
        Ok((head, text))
    }
}

/// The most bytes a frame has before its text: the header, then a broadcast's
/// sequence number and longest peer (a notice's fixed fields and peer are shorter).
pub(crate) const HEAD_MAX: usize = FRAME_HEADER_LEN + SEQ_LEN + PEER_MAX_LEN;

/// A frame's header and fixed fields, built on the stack.
pub(crate) struct Head(Vec<u8, HEAD_MAX>);

impl Head {
    fn new() -> Self {
        Self(Vec::new())
    }

    fn put(&mut self, bytes: &[u8]) {
        let fitted = self.0.extend_from_slice(bytes);
        debug_assert!(fitted.is_ok(), "HEAD_MAX holds every frame's fixed fields");
    }

    fn peer(&mut self, peer: &PeerAddr) {
        let mut bytes = [0u8; PEER_MAX_LEN];
        let len = peer.encode(&mut bytes);
        debug_assert!(len.is_some(), "PEER_MAX_LEN holds every peer");
        self.put(&bytes[..len.unwrap_or(0)]);
    }
}

impl core::ops::Deref for Head {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// A notice's body: kind and code, optional peer, text.
#[inline]
fn parse_notice(body: &[u8]) -> Result<Notice<'_>, DecodeError> {
    let [kind, code, rest @ ..] = body else {
        return Err(DecodeError::BadLength {
            kind: FrameKind::Notice,
            len: body.len(),
        });
    };
    let notice_kind = NoticeKind::from_bytes(*kind, *code).ok_or(DecodeError::BadNotice {
        kind: *kind,
        code: *code,
    })?;
    let (peer, text) = decode_optional_peer(rest)?;
    Ok(Notice {
        kind: notice_kind,
        peer,
        text: utf8(FrameKind::Notice, text)?,
    })
}

/// Reads postcard's `Option<PeerAddr>`: a 0 or 1 tag, then the peer if 1.
fn decode_optional_peer(bytes: &[u8]) -> Result<(Option<PeerAddr>, &[u8]), DecodeError> {
    let bad = DecodeError::BadPeer {
        kind: FrameKind::Notice,
    };
    match bytes.split_first() {
        Some((0, rest)) => Ok((None, rest)),
        Some((1, rest)) => PeerAddr::decode(rest).map(|(p, r)| (Some(p), r)).ok_or(bad),
        _ => Err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_FRAME;

    fn encode(frame: &Frame) -> std::vec::Vec<u8> {
        let mut buf = [0u8; MAX_FRAME];
        let n = frame.encode(&mut buf).unwrap();
        assert_eq!(n, frame.encoded_len());
        buf[..n].to_vec()
    }

    fn reparse(bytes: &[u8]) -> Frame<'_> {
        let kind = FrameKind::from_byte(bytes[0]).unwrap();
        let len = u16::from_be_bytes([bytes[1], bytes[2]]) as usize;
        assert_eq!(len, bytes.len() - 3);
        Frame::parse(kind, &bytes[3..]).unwrap()
    }

    #[test]
    fn chat_golden() {
        let f = Frame::Chat { text: "hi" };
        assert_eq!(encode(&f), [0x01, 0x00, 0x02, b'h', b'i']);
    }

    #[test]
    fn broadcast_golden() {
        let f = Frame::Broadcast {
            seq: 7,
            peer: PeerAddr::V4 {
                ip: [127, 0, 0, 1],
                port: 9000,
            },
            text: "yo",
        };
        let bytes = encode(&f);
        // 9000 = 0x2328 → varint 0xA8 0x46
        let want = [
            0x02, 0x00, 0x11, 0, 0, 0, 0, 0, 0, 0, 7, 0x00, 127, 0, 0, 1, 0xA8, 0x46, b'y', b'o',
        ];
        assert_eq!(bytes, want);
        assert_eq!(reparse(&bytes), f);
    }

    #[test]
    fn notice_round_trip_with_and_without_peer() {
        let with = Frame::Notice(Notice {
            kind: NoticeKind::Join,
            peer: Some(PeerAddr::V6 {
                ip: [0; 16],
                port: 1,
            }),
            text: "joined",
        });
        let without = Frame::Notice(Notice {
            kind: NoticeKind::Error(ErrorCode::TOO_LONG),
            peer: None,
            text: "too long",
        });
        for f in [with, without] {
            assert_eq!(reparse(&encode(&f)), f);
        }
        assert_eq!(&encode(&without)[..6], &[0x03, 0x00, 0x0b, 5, 1, 0]);
    }

    #[test]
    fn fixed_size_kinds() {
        assert_eq!(
            encode(&Frame::Ping { nonce: 0x0102 }),
            [4, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(encode(&Frame::Bye), [6, 0, 0]);
        assert_eq!(
            encode(&Frame::Ack { seq: 3 }),
            [7, 0, 8, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(
            reparse(&encode(&Frame::Ack { seq: u64::MAX })),
            Frame::Ack { seq: u64::MAX }
        );
        assert_eq!(
            Frame::parse(FrameKind::Pong, &[1, 2, 3]),
            Err(DecodeError::BadLength {
                kind: FrameKind::Pong,
                len: 3
            })
        );
        assert_eq!(
            Frame::parse(FrameKind::Bye, &[1]),
            Err(DecodeError::BadLength {
                kind: FrameKind::Bye,
                len: 1
            })
        );
    }

    #[test]
    fn encode_refuses_long_text_and_short_buffers() {
        let long = "x".repeat(MAX_MESSAGE + 1);
        let mut buf = [0u8; MAX_FRAME];
        assert_eq!(
            Frame::Chat { text: &long }.encode(&mut buf),
            Err(EncodeError::TextTooLong {
                len: MAX_MESSAGE + 1
            })
        );
        let max = "x".repeat(MAX_MESSAGE);
        assert_eq!(
            Frame::Chat { text: &max }.encode(&mut buf),
            Ok(MAX_MESSAGE + 3)
        );
        assert_eq!(
            Frame::Chat { text: "abc" }.encode(&mut buf[..5]),
            Err(EncodeError::BufferTooSmall { needed: 6 })
        );
    }

    #[test]
    fn parse_rejects_bad_bodies() {
        assert_eq!(
            Frame::parse(FrameKind::Chat, &[0xff]),
            Err(DecodeError::InvalidUtf8 {
                kind: FrameKind::Chat
            })
        );
        assert_eq!(
            Frame::parse(FrameKind::Notice, &[9, 0, 0]),
            Err(DecodeError::BadNotice { kind: 9, code: 0 })
        );
        assert_eq!(
            Frame::parse(FrameKind::Notice, &[1, 0, 2]),
            Err(DecodeError::BadPeer {
                kind: FrameKind::Notice
            })
        );
        assert_eq!(
            Frame::parse(FrameKind::Broadcast, &[0; 7]),
            Err(DecodeError::BadLength {
                kind: FrameKind::Broadcast,
                len: 7
            })
        );
    }
}
