//! Error types, one per operation. Decoding errors are the peer's fault and always
//! recoverable: the decoder has already skipped the offending frame or line.

use core::fmt;

use crate::wire::FrameKind;

/// Why a frame could not be decoded. In every case the decoder has skipped exactly
/// the offending frame (its header announced its length) and the next frame decodes
/// normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecodeError {
    /// The header announced a body longer than its kind allows; the body was skipped.
    TooLong {
        /// The frame's kind.
        kind: FrameKind,
        /// The announced body length.
        len: usize,
    },
    /// The kind byte names no frame of protocol v1; the body was skipped.
    UnknownKind {
        /// The kind byte.
        kind: u8,
        /// The announced body length.
        len: usize,
    },
    /// The body is too short or too long for the fields of its kind.
    BadLength {
        /// The frame's kind.
        kind: FrameKind,
        /// The body length.
        len: usize,
    },
    /// A peer header could not be decoded (or was not in canonical form).
    BadPeer {
        /// The frame's kind.
        kind: FrameKind,
    },
    /// A notice's kind and code bytes name no notice of protocol v1.
    BadNotice {
        /// The notice kind byte.
        kind: u8,
        /// The error code byte.
        code: u8,
    },
    /// A text field inside a body is longer than [`MAX_MESSAGE`](crate::MAX_MESSAGE).
    TextTooLong {
        /// The frame's kind.
        kind: FrameKind,
        /// The text's length in bytes.
        len: usize,
    },
    /// A text field is not valid UTF-8.
    InvalidUtf8 {
        /// The frame's kind.
        kind: FrameKind,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::TooLong { kind, len } => write!(
                f,
                "{kind:?} frame of {len} bytes exceeds the limit of {} bytes",
                kind.max_body()
            ),
            DecodeError::UnknownKind { kind, len } => {
                write!(f, "unknown frame kind 0x{kind:02x} ({len} bytes)")
            }
            DecodeError::BadLength { kind, len } => {
                write!(
                    f,
                    "{kind:?} frame has a body of {len} bytes, which its fields do not fit"
                )
            }
            DecodeError::BadPeer { kind } => {
                write!(f, "{kind:?} frame has a malformed peer header")
            }
            DecodeError::BadNotice { kind, code } => {
                write!(f, "unknown notice kind {kind} with code {code}")
            }
            DecodeError::TextTooLong { kind, len } => write!(
                f,
                "{kind:?} frame carries {len} bytes of text, over the limit of {}",
                crate::MAX_MESSAGE
            ),
            DecodeError::InvalidUtf8 { kind } => write!(f, "{kind:?} frame text is not UTF-8"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// A text is longer than [`MAX_MESSAGE`](crate::MAX_MESSAGE) bytes.
    TextTooLong {
        /// The text's length in bytes.
        len: usize,
    },
    /// The output buffer is shorter than the encoding.
    BufferTooSmall {
        /// The bytes the encoding needs.
        needed: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::TextTooLong { len } => {
                write!(
                    f,
                    "text of {len} bytes exceeds the limit of {}",
                    crate::MAX_MESSAGE
                )
            }
            EncodeError::BufferTooSmall { needed } => {
                write!(f, "output buffer too small: {needed} bytes needed")
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// Why a text-mode line was rejected. The decoder has discarded the line (up to and
/// including its LF) and carries on with the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum LineError {
    /// The line grew past [`MAX_MESSAGE`](crate::MAX_MESSAGE) bytes before its LF. It is
    /// reported once, as soon as the limit is passed; the rest of it is discarded.
    TooLong,
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line held `ff fa`, which begins a Telnet subnegotiation, and no `ff f0`
    /// ended it before the line's LF or within
    /// [`TELNET_SUBNEGOTIATION_MAX`](crate::TELNET_SUBNEGOTIATION_MAX) bytes; the
    /// whole line was discarded (text mode only).
    UnendedSubnegotiation,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong => {
                write!(f, "line exceeds the limit of {} bytes", crate::MAX_MESSAGE)
            }
            LineError::InvalidUtf8 => f.write_str("line is not valid UTF-8"),
            LineError::UnendedSubnegotiation => f.write_str(
                "line holds ff fa, a Telnet subnegotiation (IAC SB) that no ff f0 (IAC SE) ended",
            ),
        }
    }
}

impl core::error::Error for LineError {}

/// Why reading from a stream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ReadError<E> {
    /// The transport failed.
    Transport(E),
    /// The peer closed the connection cleanly, between frames.
    Closed,
    /// The peer closed the connection in the middle of a frame or preamble.
    UnexpectedEof,
    /// A frame was bad; it has been skipped and reading may go on.
    Decode(DecodeError),
    /// The preamble did not start with the magic bytes: the peer is not a chat server.
    BadMagic,
    /// The peer speaks another protocol version.
    UnsupportedVersion {
        /// The version the peer announced.
        version: u8,
    },
}

impl<E: fmt::Debug> fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Transport(e) => write!(f, "transport error: {e:?}"),
            ReadError::Closed => f.write_str("connection closed by peer"),
            ReadError::UnexpectedEof => f.write_str("connection closed in the middle of a frame"),
            ReadError::Decode(e) => write!(f, "bad frame: {e}"),
            ReadError::BadMagic => f.write_str("peer does not speak the chat protocol"),
            ReadError::UnsupportedVersion { version } => write!(
                f,
                "peer speaks protocol version {version}, this side speaks {}",
                crate::VERSION
            ),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for ReadError<E> {}

impl<E> From<DecodeError> for ReadError<E> {
    fn from(e: DecodeError) -> Self {
        ReadError::Decode(e)
    }
}

/// Why writing a frame failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WriteError<E> {
    /// The transport failed.
    Transport(E),
    /// The frame could not be encoded; nothing was written.
    Encode(EncodeError),
}

impl<E: fmt::Debug> fmt::Display for WriteError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Transport(e) => write!(f, "transport error: {e:?}"),
            WriteError::Encode(e) => write!(f, "cannot encode frame: {e}"),
        }
    }
}

impl<E: fmt::Debug> core::error::Error for WriteError<E> {}
