//! The text-mode line decoder, for plain `nc`/`telnet` clients.

use heapless::Vec;

use crate::error::LineError;
use crate::MAX_MESSAGE;

/// Room for a maximal line plus the CR that may precede its LF.
const LINE_BUF: usize = MAX_MESSAGE + 1;

/// Splits a byte stream into chat lines.
///
/// Lines end with LF; a CR just before the LF is dropped; empty lines are skipped.
/// A line whose text passes [`MAX_MESSAGE`] bytes yields [`LineError::TooLong`] once
/// and is discarded up to its LF; a line that is not UTF-8 yields
/// [`LineError::InvalidUtf8`]. Either way decoding goes on with the next line.
///
/// Like [`crate::FrameDecoder`] it does no I/O, never allocates and never panics; its
/// memory is one buffer of `MAX_MESSAGE + 1` bytes. Lines that lie whole in the slice
/// being fed are returned in place, without copying.
#[derive(Debug, Clone, Default)]
pub struct LineDecoder {
    buf: Vec<u8, LINE_BUF>,
    /// The buffer holds a line already returned; clear it before the next feed.
    returned: bool,
    /// Inside an over-long line: drop everything up to the next LF.
    discarding: bool,
}

/// What [`LineDecoder::advance`] found; offsets are into the input it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    NeedMore,
    InInput(usize, usize),
    InBuffer,
    Error(LineError),
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineDecoder {
    /// A decoder at the start of a stream.
    pub const fn new() -> Self {
        Self {
            buf: Vec::new(),
            returned: false,
            discarding: false,
        }
    }

    /// Consumes bytes from the front of `input` until one line or error is complete,
    /// or `input` runs out.
    ///
    /// Returns how many bytes were consumed and, if one was completed, the line
    /// (without its LF or CR) or the error. When the second element is `None`, all of
    /// `input` was consumed.
    pub fn feed<'a>(&'a mut self, input: &'a [u8]) -> (usize, Option<Result<&'a str, LineError>>) {
        let (used, step) = self.advance(input);
        (used, self.resolve(input, step))
    }

    /// The line or error `step` stands for; `input` is the slice `step` came from.
    pub(crate) fn resolve<'a>(
        &'a self,
        input: &'a [u8],
        step: Step,
    ) -> Option<Result<&'a str, LineError>> {
        let line = match step {
            Step::NeedMore => return None,
            Step::Error(e) => return Some(Err(e)),
            Step::InInput(start, end) => &input[start..end],
            Step::InBuffer => strip_cr(&self.buf),
        };
        Some(core::str::from_utf8(line).map_err(|_| LineError::InvalidUtf8))
    }

    /// Ends the stream: returns the unterminated last line, if there is one, as if
    /// its LF had arrived. Call it when the peer closed cleanly; after a reset, drop
    /// the decoder instead.
    pub fn finish(&mut self) -> Option<Result<&str, LineError>> {
        self.end_line()
    }

    /// Ends the line being received as if its LF had arrived, and goes on decoding:
    /// returns the partial line held, if there is one; an over-long line being
    /// discarded ends here without a second error. For a stream whose messages are
    /// not ended by LF (see `TextDecoder`).
    pub fn end_line(&mut self) -> Option<Result<&str, LineError>> {
        // A returned line is dropped and a discarded one ends, as for any LF.
        self.feed(b"\n").1
    }

    /// Throws away the line being received (for Telnet's Interrupt Process): the
    /// next byte starts a new line. An over-long line being discarded ends too.
    pub fn discard_line(&mut self) {
        self.buf.clear();
        self.returned = false;
        self.discarding = false;
    }

    /// Throws away the line being received and the rest of it up to its LF, as for
    /// an over-long line, but without an error of its own (for a line a Telnet
    /// decoder found broken).
    pub(crate) fn discard_rest_of_line(&mut self) {
        self.discard_line();
        self.discarding = true;
    }

    /// The bytes of the unterminated line received so far (empty when none is, or
    /// while an over-long line is being discarded).
    pub fn partial(&self) -> &[u8] {
        if self.returned || self.discarding {
            &[]
        } else {
            &self.buf
        }
    }

    /// True when no partial line is held: the stream could end here losing nothing.
    pub fn is_idle(&self) -> bool {
        (self.buf.is_empty() || self.returned) && !self.discarding
    }

    /// One step of [`feed`](Self::feed), without borrowing the result.
    pub(crate) fn advance(&mut self, input: &[u8]) -> (usize, Step) {
        if self.returned {
            self.buf.clear();
            self.returned = false;
        }
        let mut used = 0;
        while used < input.len() {
            let rest = &input[used..];
            let Some(lf) = memchr::memchr(b'\n', rest) else {
                return (input.len(), self.hold(rest));
            };
            let (start, end, next) = (used, used + lf, used + lf + 1);
            used = next;
            if core::mem::take(&mut self.discarding) {
                continue;
            }
            if self.buf.is_empty() {
                let line = strip_cr(&input[start..end]);
                match line.len() {
                    0 => continue,
                    n if n > MAX_MESSAGE => return (used, Step::Error(LineError::TooLong)),
                    n => return (used, Step::InInput(start, start + n)),
                }
            }
            if self.buf.extend_from_slice(&input[start..end]).is_err() {
                self.buf.clear();
                return (used, Step::Error(LineError::TooLong));
            }
            match strip_cr(&self.buf).len() {
                0 => self.buf.clear(),
                n if n > MAX_MESSAGE => {
                    self.buf.clear();
                    return (used, Step::Error(LineError::TooLong));
                }
                _ => {
                    self.returned = true;
                    return (used, Step::InBuffer);
                }
            }
        }
        (used, Step::NeedMore)
    }

    /// Keeps an unterminated piece of a line, or starts discarding if it overflows.
    fn hold(&mut self, piece: &[u8]) -> Step {
        if self.discarding {
            return Step::NeedMore;
        }
        if self.buf.extend_from_slice(piece).is_err() {
            self.buf.clear();
            self.discarding = true;
            return Step::Error(LineError::TooLong);
        }
        Step::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn lines(bytes: &[u8], chunk: usize) -> Vec<Result<String, LineError>> {
        let mut dec = LineDecoder::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            let mut input = piece;
            while !input.is_empty() {
                let (used, ev) = dec.feed(input);
                if let Some(ev) = ev {
                    out.push(ev.map(String::from));
                }
                input = &input[used..];
            }
        }
        if let Some(last) = dec.finish() {
            out.push(last.map(String::from));
        }
        out
    }

    fn ok(s: &str) -> Result<String, LineError> {
        Ok(s.into())
    }

    #[test]
    fn splits_strips_and_skips() {
        let input = b"one\r\ntwo\n\n\r\nthree\rx\nlast";
        for chunk in 1..=input.len() {
            assert_eq!(
                lines(input, chunk),
                [ok("one"), ok("two"), ok("three\rx"), ok("last")],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn limit_counts_text_not_cr() {
        for (len, fits) in [(1023, true), (1024, true), (1025, false)] {
            let text = "a".repeat(len);
            for ending in ["\n", "\r\n"] {
                let input = std::format!("{text}{ending}after\n");
                for chunk in [1, 3, 1000, input.len()] {
                    let got = lines(input.as_bytes(), chunk);
                    let first = if fits {
                        ok(&text)
                    } else {
                        Err(LineError::TooLong)
                    };
                    assert_eq!(
                        got,
                        [first, ok("after")],
                        "len {len} {ending:?} chunk {chunk}"
                    );
                }
            }
        }
    }

    #[test]
    fn over_long_line_reported_once_and_discarded() {
        let mut input = std::vec![b'x'; 100_000];
        input.extend(b"\nok\n");
        for chunk in [1, 10, 4096, input.len()] {
            assert_eq!(lines(&input, chunk), [Err(LineError::TooLong), ok("ok")]);
        }
    }

    #[test]
    fn invalid_utf8_is_an_error_and_decoding_goes_on() {
        let input = b"\xff\xfe\nfine\n";
        for chunk in [1, input.len()] {
            assert_eq!(
                lines(input, chunk),
                [Err(LineError::InvalidUtf8), ok("fine")]
            );
        }
    }

    #[test]
    fn finish_after_discarding_or_returned_gives_nothing() {
        let mut dec = LineDecoder::new();
        let (_, ev) = dec.feed(b"hi\n");
        assert_eq!(ev, Some(Ok("hi")));
        assert!(dec.is_idle());
        assert_eq!(dec.finish(), None);
        let big = [b'y'; 2000];
        let (_, ev) = dec.feed(&big);
        assert_eq!(ev, Some(Err(LineError::TooLong)));
        assert!(!dec.is_idle());
        assert_eq!(dec.finish(), None);
        assert!(dec.is_idle());
    }

    #[test]
    fn partial_end_line_and_discard_line() {
        let mut dec = LineDecoder::new();
        assert_eq!(dec.feed(b"abc"), (3, None));
        assert_eq!(dec.partial(), b"abc");
        assert_eq!(dec.end_line(), Some(Ok("abc")));
        assert_eq!(dec.partial(), b"");
        assert_eq!(dec.feed(b"thrown"), (6, None));
        dec.discard_line();
        assert!(dec.is_idle());
        assert_eq!(
            dec.feed(
                b"kept
"
            )
            .1,
            Some(Ok("kept"))
        );
        // Discarding an over-long line ends at a discard or at end_line.
        assert_eq!(dec.feed(&[b'z'; 1100]).1, Some(Err(LineError::TooLong)));
        assert_eq!(dec.partial(), b"");
        dec.discard_line();
        assert_eq!(
            dec.feed(
                b"fresh
"
            )
            .1,
            Some(Ok("fresh"))
        );
        assert_eq!(dec.feed(&[b'z'; 1100]).1, Some(Err(LineError::TooLong)));
        assert_eq!(dec.end_line(), None);
        assert_eq!(
            dec.feed(
                b"again
"
            )
            .1,
            Some(Ok("again"))
        );
    }
}
