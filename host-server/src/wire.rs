//! The two ways a client hears the server, and building what it hears through
//! proto-core: binary frames or `*** ...` / `[PEER] ...` text lines.

use std::io::Write as _;

use proto_core::{ErrorCode, Frame, Notice, NoticeKind, PeerAddr, TextLine, MAX_MESSAGE, PREAMBLE};

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
    }
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

/// What a connection that is turned away before joining is sent: an error notice,
/// after the preamble for a binary client, which has not had it yet.
pub(crate) fn refusal(mode: Mode, code: ErrorCode, text: &str) -> Vec<u8> {
    let mut bytes = match mode {
        Mode::Binary => PREAMBLE.to_vec(),
        Mode::Text => Vec::new(),
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
