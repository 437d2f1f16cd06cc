//! The two ways a client hears the server, and building what it hears through
//! proto-core: binary frames or `*** ...` / `[PEER] ...` text lines.

use proto_core::{
    encode_text_line, ErrorCode, Frame, Notice, NoticeKind, PeerAddr, MAX_FRAME, MAX_MESSAGE,
    TEXT_LINE_MAX,
};

/// How a client speaks, decided from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Protocol v1 frames after the preamble.
    Binary,
    /// Lines of text, as from `nc` or `telnet`.
    Text,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Binary => "binary",
            Mode::Text => "text",
        })
    }
}

/// Appends the encoding of `frame` for a client of `mode` to `out`.
///
/// Frames built by the server always fit (texts are cut to [`MAX_MESSAGE`] before
/// they get here), so an encoding error only means nothing is appended.
pub(crate) fn encode_into(mode: Mode, frame: &Frame<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    let room = match mode {
        Mode::Binary => MAX_FRAME,
        Mode::Text => TEXT_LINE_MAX,
    };
    out.resize(start + room, 0);
    let written = match mode {
        Mode::Binary => frame.encode(&mut out[start..]),
        Mode::Text => encode_text_line(&mut out[start..], frame),
    };
    out.truncate(start + written.unwrap_or(0));
}

/// The encoding of a notice for a client of `mode`.
pub(crate) fn notice(mode: Mode, kind: NoticeKind, peer: Option<PeerAddr>, text: &str) -> Vec<u8> {
    let text = clip(text);
    let mut out = Vec::new();
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
    fn long_notice_text_is_clipped_on_a_char_boundary() {
        let text = "é".repeat(MAX_MESSAGE);
        let clipped = clip(&text);
        assert!(clipped.len() <= MAX_MESSAGE);
        assert_eq!(clipped.len(), MAX_MESSAGE);
        assert!(!notice(Mode::Binary, NoticeKind::Welcome, None, &text).is_empty());
    }
}
