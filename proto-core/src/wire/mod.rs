//! The binary protocol v1: preamble, frame header, frame bodies and the peer header.
//!
//! A binary connection opens with the [`PREAMBLE`] in each direction, then carries
//! frames. Every frame is a 3-byte header followed by its body:
//!
//! ```text
//! +--------+-------------------+------------------------+
//! | kind:1 | body length:2 (BE)| body: `length` bytes   |
//! +--------+-------------------+------------------------+
//! ```
//!
//! The length is always present and always trusted for resynchronisation: whatever is
//! wrong with a frame (unknown kind, a length over the kind's limit, a malformed
//! body), the decoder reports it once and skips exactly `length` body bytes, so the next
//! frame is read correctly. `PROTOCOL.md` is the byte-level specification.

mod frame;
mod peer;

pub use frame::{ErrorCode, Frame, Notice, NoticeKind};
pub use peer::{PeerAddr, PEER_MAX_LEN};

use crate::MAX_MESSAGE;

/// The magic bytes that open a binary connection. The first byte is NUL, which no
/// text client types and which is not a telnet command byte, so the server can tell a
/// binary client from a text client on the first byte.
pub const MAGIC: [u8; 4] = [0x00, b'C', b'H', b'T'];

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;

/// Length of the connection preamble: [`MAGIC`] then the version byte.
pub const PREAMBLE_LEN: usize = MAGIC.len() + 1;

/// The preamble of protocol v1, sent first by both sides of a binary connection.
pub const PREAMBLE: [u8; PREAMBLE_LEN] = [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], VERSION];

/// Length of a frame header: kind (1 byte) and body length (2 bytes, big-endian).
pub const FRAME_HEADER_LEN: usize = 3;

/// Length of a broadcast's sequence number field.
pub(crate) const SEQ_LEN: usize = 8;

/// Length of a notice's fixed fields: notice kind and error code.
pub(crate) const NOTICE_FIXED_LEN: usize = 2;

/// Length of a ping or pong body: the nonce.
pub(crate) const NONCE_LEN: usize = 8;

/// The largest frame body of protocol v1: a broadcast carrying [`MAX_MESSAGE`] bytes
/// of text after its sequence number and the longest peer header.
pub const MAX_BODY: usize = SEQ_LEN + PEER_MAX_LEN + MAX_MESSAGE;

/// The largest encoded frame of protocol v1, header included.
pub const MAX_FRAME: usize = FRAME_HEADER_LEN + MAX_BODY;

/// The kind of a frame, its first byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum FrameKind {
    /// Client to server: a chat message to relay.
    Chat = 0x01,
    /// Server to client: a relayed message with its sender and sequence number.
    Broadcast = 0x02,
    /// Server to client: join, leave, welcome, shutdown or error.
    Notice = 0x03,
    /// Either direction: a liveness probe, answered by a pong with the same nonce.
    Ping = 0x04,
    /// Either direction: the answer to a ping.
    Pong = 0x05,
    /// Either direction: the sender is leaving; the connection closes after it.
    Bye = 0x06,
    /// Server to client: the sequence number the server gave the client's own chat
    /// message, which the client does not receive back as a broadcast.
    Ack = 0x07,
}

impl FrameKind {
    /// The kind whose code is `byte`, if protocol v1 defines one.
    #[inline]
    pub const fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0x01 => Self::Chat,
            0x02 => Self::Broadcast,
            0x03 => Self::Notice,
            0x04 => Self::Ping,
            0x05 => Self::Pong,
            0x06 => Self::Bye,
            0x07 => Self::Ack,
            _ => return None,
        })
    }

    /// The largest body this kind may announce; a longer one is `TooLong`.
    #[inline]
    pub const fn max_body(self) -> usize {
        match self {
            Self::Chat => MAX_MESSAGE,
            Self::Broadcast => MAX_BODY,
            Self::Notice => NOTICE_FIXED_LEN + 1 + PEER_MAX_LEN + MAX_MESSAGE,
            Self::Ping | Self::Pong => NONCE_LEN,
            Self::Ack => SEQ_LEN,
            Self::Bye => 0,
        }
    }
}

/// What the first bytes of a connection say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Sniff {
    /// The bytes so far are a prefix of the preamble; more are needed to decide.
    NeedMore,
    /// A binary client: the magic matched, followed by this version byte. The caller
    /// checks the version against [`VERSION`]. Binary frames start after
    /// [`PREAMBLE_LEN`] bytes.
    Binary {
        /// The protocol version the peer asked for.
        version: u8,
    },
    /// Not the magic: a text client. Every byte seen so far is text.
    Text,
}

/// Classifies a connection from its first bytes (any number of them).
pub fn sniff(first: &[u8]) -> Sniff {
    let n = first.len().min(MAGIC.len());
    if first[..n] != MAGIC[..n] {
        return Sniff::Text;
    }
    match first.get(MAGIC.len()) {
        Some(&version) => Sniff::Binary { version },
        None => Sniff::NeedMore,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_decides_on_first_differing_byte() {
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(&[0]), Sniff::NeedMore);
        assert_eq!(sniff(&PREAMBLE[..4]), Sniff::NeedMore);
        assert_eq!(sniff(&PREAMBLE), Sniff::Binary { version: VERSION });
        assert_eq!(
            sniff(&[0, b'C', b'H', b'T', 9, 1, 2]),
            Sniff::Binary { version: 9 }
        );
        assert_eq!(sniff(b"hello"), Sniff::Text);
        assert_eq!(sniff(&[0, b'X']), Sniff::Text);
        assert_eq!(sniff(&[0xff, 0xfd, 0x03]), Sniff::Text);
    }

    #[test]
    fn kinds_round_trip_through_their_byte() {
        for byte in 0..=u8::MAX {
            if let Some(kind) = FrameKind::from_byte(byte) {
                assert_eq!(kind as u8, byte);
            }
        }
        assert_eq!(FrameKind::from_byte(0), None);
        assert_eq!(FrameKind::from_byte(8), None);
    }

    #[test]
    fn largest_kind_body_is_max_body() {
        let kinds = [FrameKind::Chat, FrameKind::Broadcast, FrameKind::Notice];
        assert_eq!(kinds.iter().map(|k| k.max_body()).max(), Some(MAX_BODY));
        assert!(MAX_BODY <= u16::MAX as usize);
    }
}
