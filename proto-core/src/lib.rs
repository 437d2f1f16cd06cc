//! The chatroom's wire protocol, for hosts and microcontrollers alike.
//!
//! `proto-core` owns every byte that crosses the wire between a chat client and the
//! chat server: the connection preamble, the binary frames (protocol v1, specified byte
//! by byte in `PROTOCOL.md`), the peer header naming a message's sender, and the
//! line-based text mode spoken by plain `nc`/`telnet` clients. The host crates never
//! format or parse wire bytes themselves; they call into this crate.
//!
//! It is `#![no_std]`, needs no allocator and contains no `unsafe`, so the same code
//! runs on a server and on a Cortex-M behind a small TCP stack:
//!
//! - [`FrameDecoder`] and [`LineDecoder`] are pure state machines that do no I/O. They
//!   are fed byte slices of any size and yield complete frames or lines out of fixed,
//!   bounded buffers, recovering from every kind of bad input without losing sync.
//! - [`Frame::encode`] writes a frame into a caller's buffer; [`write_frame`] writes
//!   one to any [`embedded_io::Write`]; [`FrameReader`] reads frames from any
//!   [`embedded_io::Read`].
//! - [`TextDecoder`] reads a text client: [`TelnetDecoder`] takes Telnet's in-band
//!   commands out and says what to answer, the [`LineDecoder`] splits lines, and a
//!   client that sends no newline has its messages ended by pauses.
//! - [`sanitize`] renders untrusted text so that it cannot drive or disguise a terminal.
//!
//! Nothing in this crate panics on input from the network; the fuzz targets in the
//! workspace's `fuzz/` directory hold it to that.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod decoder;
mod error;
mod feed;
mod io;
mod line;
mod sanitize;
mod telnet;
mod text;
mod text_decoder;
mod wire;

pub use decoder::FrameDecoder;
pub use error::{DecodeError, EncodeError, LineError, ReadError, WriteError};
pub use feed::FeedResult;
pub use io::{read_preamble, write_frame, write_preamble, FrameReader};
pub use line::LineDecoder;
pub use sanitize::{sanitize, Sanitized};
pub use telnet::{TelnetDecoder, TelnetEvent, TelnetReply, TELNET_SUBNEGOTIATION_MAX, TIMING_MARK};
pub use text::{encode_text_line, looks_like_http, TextLine, TEXT_LINE_MAX};
pub use text_decoder::{TextDecoder, TextEvent};
pub use wire::{
    sniff, ErrorCode, Frame, FrameKind, Notice, NoticeKind, PeerAddr, Sniff, FRAME_HEADER_LEN,
    MAGIC, MAX_BODY, MAX_FRAME, PEER_MAX_LEN, PREAMBLE, PREAMBLE_LEN, VERSION,
};

/// The largest message text, in bytes of UTF-8, that a client may send and the server
/// will relay. One constant for every part of the system.
pub const MAX_MESSAGE: usize = 1024;
