//! The three ways a client hears the server, and building what it hears through
//! proto-core: binary frames, `*** ...` / `[PEER] ...` text lines, or the same lines
//! as WebSocket text frames.

use std::io::Write as _;

use proto_core::{
    encode_text_line, ErrorCode, Frame, Notice, NoticeKind, PeerAddr, TextLine, MAX_MESSAGE,
    PREAMBLE, TEXT_LINE_MAX,
};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// How a client speaks, decided from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Protocol v1 frames after the preamble.
    Binary,
    /// Lines of text, as from `nc` or `telnet`.
    Text,
    /// A WebSocket (a browser): each text line, without its newline, in one
    /// unmasked text frame. A form of its own, so that a broadcast is framed once
    /// and the bytes are shared by every WebSocket client like the others' are.
    WebSocket,
}

impl Mode {
    /// Every mode, in the order of [`Mode::index`].
    pub(crate) const ALL: [Mode; 3] = [Mode::Binary, Mode::Text, Mode::WebSocket];

    /// The mode's place in per-mode tables.
    pub(crate) fn index(self) -> usize {
        match self {
            Mode::Binary => 0,
            Mode::Text => 1,
            Mode::WebSocket => 2,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Binary => "binary",
            Mode::Text => "text",
            Mode::WebSocket => "websocket",
        })
    }
}

/// Appends the encoding of `frame` for a client of `mode` to `out`.
///
/// Frames built by the server always fit (texts are cut to [`MAX_MESSAGE`] before
/// they get here), so an encoding error only means nothing is appended.
pub(crate) fn encode_into(mode: Mode, frame: &Frame<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    match mode {
        // Sized exactly, so a broadcast under the room's lock zeroes no spare bytes.
        Mode::Binary => {
            out.resize(start + frame.encoded_len(), 0);
            let written = frame.encode(&mut out[start..]);
            out.truncate(start + written.unwrap_or(0));
        }
        Mode::Text => {
            if let Some(line) = TextLine::of(frame) {
                // Writing into a Vec cannot fail.
                let _ = writeln!(out, "{line}");
            }
        }
        Mode::WebSocket => {
            let mut line = [0u8; TEXT_LINE_MAX];
            // The buffer is the size that always fits; 0 is a frame text clients
            // never see, which a WebSocket client does not see either.
            let n = encode_text_line(&mut line, frame).unwrap_or(0);
            if n > 0 {
                ws_frame(OpCode::Data(Data::Text), &line[..n - 1], out);
            }
        }
    }
}

/// Appends one unmasked, final WebSocket frame (a server's frames are never masked).
pub(crate) fn ws_frame(opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let header = FrameHeader {
        opcode,
        ..FrameHeader::default()
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

/// A WebSocket close frame with `code` and no reason.
pub(crate) fn ws_close(code: CloseCode) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    ws_frame(
        OpCode::Control(Control::Close),
        &u16::from(code).to_be_bytes(),
        &mut out,
    );
    out
}

/// What a client of `mode` is sent after its last message before the server closes
/// its connection: a WebSocket close frame (so a browser tells a close from a
/// failure), nothing for the others.
pub(crate) fn farewell(mode: Mode) -> Vec<u8> {
    match mode {
        Mode::WebSocket => ws_close(CloseCode::Normal),
        Mode::Binary | Mode::Text => Vec::new(),
    }
}

/// The length of the WebSocket frame at the start of `bytes` (header and payload),
/// or `None` if its header is cut short.
pub(crate) fn ws_frame_len(bytes: &[u8]) -> Option<usize> {
    let mut cursor = std::io::Cursor::new(bytes);
    let (_, len) = FrameHeader::parse(&mut cursor).ok().flatten()?;
    let header = usize::try_from(cursor.position()).ok()?;
    header.checked_add(usize::try_from(len).ok()?)
}

/// One broadcast (or batch, or notice) encoded in each mode that some recipient
/// speaks, kept to avoid allocating per batch.
#[derive(Debug, Default)]
pub(crate) struct Encodings {
    bytes: [Vec<u8>; 3],
}

impl Encodings {
    /// Forgets the bytes, keeping the memory.
    pub(crate) fn clear(&mut self) {
        self.bytes.iter_mut().for_each(Vec::clear);
    }

    /// Appends `frame` in every mode `wanted` says.
    pub(crate) fn encode(&mut self, frame: &Frame<'_>, wanted: [bool; 3]) {
        for mode in Mode::ALL {
            if wanted[mode.index()] {
                encode_into(mode, frame, &mut self.bytes[mode.index()]);
            }
        }
    }

    /// The bytes in `mode`.
    pub(crate) fn of(&self, mode: Mode) -> &[u8] {
        &self.bytes[mode.index()]
    }

    /// Appends the bytes of `other`, mode by mode.
    pub(crate) fn append(&mut self, other: &Encodings) {
        for (mine, theirs) in self.bytes.iter_mut().zip(&other.bytes) {
            mine.extend_from_slice(theirs);
        }
    }

    /// Where the next frame will start in each mode.
    pub(crate) fn lens(&self) -> [usize; 3] {
        self.bytes.each_ref().map(Vec::len)
    }
}

/// More than a notice's bytes besides its text take in any mode (header, marker,
/// peer address, framing).
const NOTICE_OVERHEAD: usize = 80;

/// The encoding of a notice for a client of `mode`.
pub(crate) fn notice(mode: Mode, kind: NoticeKind, peer: Option<PeerAddr>, text: &str) -> Vec<u8> {
    let text = clip(text);
    // Sized once: grown step by step, it would leave a freed buffer of each size
    // cached in the thread's allocator (see `stack`).
    let mut out = Vec::with_capacity(text.len() + NOTICE_OVERHEAD);
    encode_into(mode, &Frame::Notice(Notice { kind, peer, text }), &mut out);
    out
}

/// The Shutdown notice a client of `mode` is sent when the server is stopped by a
/// signal.
pub(crate) fn shutdown(mode: Mode) -> Vec<u8> {
    notice(mode, NoticeKind::Shutdown, None, "server shutting down")
}

/// The encoding of an error notice for a client of `mode`.
pub(crate) fn error(mode: Mode, code: ErrorCode, text: &str) -> Vec<u8> {
    notice(mode, NoticeKind::Error(code), None, text)
}

/// What a connection that is turned away before joining is sent: an error notice,
/// after the preamble for a binary client, which has not had it yet.
pub(crate) fn refusal(mode: Mode, code: ErrorCode, text: &str) -> Vec<u8> {
    let mut bytes = match mode {
        Mode::Binary => PREAMBLE.to_vec(),
        Mode::Text | Mode::WebSocket => Vec::new(),
    };
    bytes.extend(error(mode, code, text));
    bytes
}

/// The line sent to a text client whose first line is an HTTP request.
pub(crate) fn http_refusal() -> Vec<u8> {
    let text = "refused: this is a chat server, not a web server";
    error(Mode::Text, ErrorCode::REFUSED, text)
}

/// Cuts `text` to at most [`MAX_MESSAGE`] bytes on a character boundary.
fn clip(text: &str) -> &str {
    if text.len() <= MAX_MESSAGE {
        return text;
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_core::FrameKind;

    #[test]
    fn text_notice_is_a_star_line() {
        let bytes = error(Mode::Text, ErrorCode::TOO_LONG, "too long\x1b");
        assert_eq!(bytes, b"*** too long\\x1b\n");
    }

    #[test]
    fn binary_notice_parses_back() {
        let bytes = notice(Mode::Binary, NoticeKind::Shutdown, None, "bye");
        let kind = FrameKind::from_byte(bytes[0]).unwrap();
        let frame = Frame::parse(kind, &bytes[3..]).unwrap();
        assert_eq!(
            frame,
            Frame::Notice(Notice {
                kind: NoticeKind::Shutdown,
                peer: None,
                text: "bye"
            })
        );
    }

    #[test]
    fn websocket_notice_is_the_text_line_in_one_text_frame() {
        let bytes = error(Mode::WebSocket, ErrorCode::TOO_LONG, "too long\x1b");
        let line = b"*** too long\\x1b";
        assert_eq!(bytes[..2], [0x81, line.len() as u8]);
        assert_eq!(&bytes[2..], line);
        assert_eq!(ws_frame_len(&bytes), Some(bytes.len()));
    }

    #[test]
    fn a_long_websocket_frame_has_a_16_bit_length() {
        let text = "é".repeat(200);
        let bytes = notice(Mode::WebSocket, NoticeKind::Welcome, None, &text);
        let [hi, lo] = u16::try_from(4 + text.len()).unwrap().to_be_bytes();
        assert_eq!(bytes[..4], [0x81, 126, hi, lo]);
        assert_eq!(&bytes[4..8], b"*** ");
        assert_eq!(ws_frame_len(&bytes), Some(bytes.len()));
        assert_eq!(ws_frame_len(&bytes[..3]), None);
        assert_eq!(farewell(Mode::WebSocket), [0x88, 2, 0x03, 0xe8]);
        assert!(farewell(Mode::Text).is_empty());
    }

    #[test]
    fn long_notice_text_is_clipped_on_a_char_boundary() {
        // One ASCII byte first puts byte MAX_MESSAGE inside a two-byte "é", so the
        // cut has to step back one byte.
        let text = format!("a{}", "é".repeat(MAX_MESSAGE));
        let clipped = clip(&text);
        assert_eq!(clipped.len(), MAX_MESSAGE - 1);
        assert!(clipped.ends_with('é'));
        assert!(!notice(Mode::Binary, NoticeKind::Welcome, None, &text).is_empty());
    }
}
