//! The text-mode wire format: lines the server writes to `nc`/`telnet` clients, and
//! the check that turns away web browsers.

use core::fmt::{self, Write as _};

use crate::error::EncodeError;
use crate::sanitize::sanitize;
use crate::wire::{Frame, PeerAddr};
use crate::MAX_MESSAGE;

/// The longest line [`encode_text_line`] writes: a fully escaped maximal message
/// (each byte may become four) with the longest peer prefix and the newline.
pub const TEXT_LINE_MAX: usize = 4 * MAX_MESSAGE + 64;

/// The text-mode line of a frame, without its newline: `[PEER] TEXT` for a
/// broadcast, `*** TEXT` for a notice, the text passed through [`sanitize`]. Its
/// [`Display`](fmt::Display) is the one definition of the format, for the server's
/// text clients and for any console that prints frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLine<'a> {
    /// The sender of a broadcast; `None` for a notice.
    peer: Option<PeerAddr>,
    text: &'a str,
}

impl<'a> TextLine<'a> {
    /// The line for `frame`, or `None` for frames that text clients never see (chat,
    /// ping, pong, bye, ack).
    pub fn of(frame: &Frame<'a>) -> Option<Self> {
        match frame {
            Frame::Broadcast { peer, text, .. } => Some(Self {
                peer: Some(*peer),
                text,
            }),
            Frame::Notice(n) => Some(Self {
                peer: None,
                text: n.text,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for TextLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.peer {
            Some(peer) => write!(f, "[{peer}] {}", sanitize(self.text)),
            None => write!(f, "*** {}", sanitize(self.text)),
        }
    }
}

/// Writes the text-mode form of `frame` ([`TextLine`] and a newline) into `out` and
/// returns its length. Frames that text clients never see write nothing and
/// return 0.
///
/// # Errors
/// [`EncodeError::BufferTooSmall`] if `out` is too short; a buffer of
/// [`TEXT_LINE_MAX`] bytes never is.
pub fn encode_text_line(out: &mut [u8], frame: &Frame<'_>) -> Result<usize, EncodeError> {
    let mut w = SliceWriter { out, at: 0 };
    let written = match TextLine::of(frame) {
        Some(line) => writeln!(w, "{line}"),
        None => Ok(()),
    };
    match written {
        Ok(()) => Ok(w.at),
        Err(fmt::Error) => Err(EncodeError::BufferTooSmall {
            needed: TEXT_LINE_MAX,
        }),
    }
}

struct SliceWriter<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self
            .at
            .checked_add(s.len())
            .filter(|&e| e <= self.out.len())
            .ok_or(fmt::Error)?;
        self.out[self.at..end].copy_from_slice(s.as_bytes());
        self.at = end;
        Ok(())
    }
}

const HTTP_METHODS: [&str; 9] = [
    "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "CONNECT", "PATCH", "TRACE",
];

/// True if `line`, the first line of a text connection, looks like the start of an
/// HTTP request (`GET / HTTP/1.1`, `POST /path`, or a `Host:` header). Such a
/// connection must be refused: otherwise a web page could make a visitor's browser
/// post its request lines into the room.
pub fn looks_like_http(line: &str) -> bool {
    let has_prefix = |p: &str| {
        line.get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    };
    if has_prefix("host:") || line.contains(" HTTP/") {
        return true;
    }
    HTTP_METHODS.iter().any(|m| {
        line.strip_prefix(m)
            .and_then(|rest| rest.strip_prefix(' '))
            .is_some_and(|target| target.starts_with(['/', '*']) || target.starts_with("http"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Notice, NoticeKind, PeerAddr};

    fn line(frame: Frame) -> std::string::String {
        let mut buf = [0u8; TEXT_LINE_MAX];
        let n = encode_text_line(&mut buf, &frame).unwrap();
        std::string::String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn broadcast_and_notice_lines() {
        let peer = PeerAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 50432,
        };
        assert_eq!(
            line(Frame::Broadcast {
                seq: 1,
                peer,
                text: "hi\n[1.2.3.4:5] forged"
            }),
            "[127.0.0.1:50432] hi\\x0a[1.2.3.4:5] forged\n"
        );
        let notice = Notice {
            kind: NoticeKind::Join,
            peer: Some(peer),
            text: "x joined",
        };
        assert_eq!(line(Frame::Notice(notice)), "*** x joined\n");
        assert_eq!(line(Frame::Bye), "");
    }

    #[test]
    fn worst_case_fits_and_small_buffer_errors() {
        let text: std::string::String = std::iter::repeat_n('\x1b', MAX_MESSAGE).collect();
        let peer = PeerAddr::V6 {
            ip: [0xff; 16],
            port: 65535,
        };
        let frame = Frame::Broadcast {
            seq: 0,
            peer,
            text: &text,
        };
        assert!(line(frame).len() <= TEXT_LINE_MAX);
        let mut small = [0u8; 10];
        assert_eq!(
            encode_text_line(&mut small, &frame),
            Err(EncodeError::BufferTooSmall {
                needed: TEXT_LINE_MAX
            })
        );
    }

    #[test]
    fn http_is_recognised_and_chat_is_not() {
        for l in [
            "GET / HTTP/1.1",
            "POST /submit HTTP/1.0",
            "Host: example.com",
            "host:x",
            "OPTIONS * HTTP/1.1",
        ] {
            assert!(looks_like_http(l), "{l}");
        }
        for l in [
            "hello",
            "GET is a verb",
            "post /",
            "hostile: no",
            "get / lowercase",
        ] {
            assert!(!looks_like_http(l), "{l}");
        }
    }
}
