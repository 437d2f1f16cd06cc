//! Where typed lines come from: a line source yields lines and the end of input.

use std::io::{self, Read};

use proto_core::LineDecoder;

/// What the user did next.
#[derive(Debug)]
pub enum InputEvent {
    /// A complete line, without its line ending.
    Line(String),
    /// A line that cannot be sent; the message says why. Input goes on.
    Refused(String),
    /// The input ended (Ctrl-D, or the end of a pipe).
    End,
    /// The user pressed Ctrl-C in the line editor.
    Interrupted,
    /// Reading the input failed.
    Failed(io::Error),
}

/// A source of typed lines, read on the client's input thread.
pub trait LineSource: Send {
    /// Blocks until the next event.
    fn next_event(&mut self) -> InputEvent;
}

/// Size of the read buffer of [`ReaderInput`].
const READ_BUF: usize = 4096;

/// Lines from any byte stream (standard input through a pipe, a file, a test's
/// bytes), split by [`proto_core::LineDecoder`]: memory stays bounded however long a
/// line is, an over-long or non-UTF-8 line is refused without losing the next one,
/// CR before LF is dropped and empty lines are skipped.
#[derive(Debug)]
pub struct ReaderInput<R> {
    reader: R,
    decoder: LineDecoder,
    buf: Box<[u8; READ_BUF]>,
    start: usize,
    end: usize,
    ended: bool,
}

impl<R: Read + Send> ReaderInput<R> {
    /// Reads lines from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            decoder: LineDecoder::new(),
            buf: Box::new([0; READ_BUF]),
            start: 0,
            end: 0,
            ended: false,
        }
    }

    fn event(line: Result<&str, proto_core::LineError>) -> InputEvent {
        match line {
            Ok(line) => InputEvent::Line(line.to_string()),
            Err(e) => InputEvent::Refused(format!("line not sent: {e}")),
        }
    }
}

impl<R: Read + Send> LineSource for ReaderInput<R> {
    fn next_event(&mut self) -> InputEvent {
        loop {
            if self.ended {
                return InputEvent::End;
            }
            if self.start == self.end {
                match self.reader.read(&mut self.buf[..]) {
                    Ok(0) => {
                        self.ended = true;
                        if let Some(last) = self.decoder.finish() {
                            return Self::event(last);
                        }
                        continue;
                    }
                    Ok(n) => (self.start, self.end) = (0, n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return InputEvent::Failed(e),
                }
            }
            let (used, line) = self.decoder.feed(&self.buf[self.start..self.end]);
            self.start += used;
            if let Some(line) = line {
                return Self::event(line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bytes: &[u8]) -> Vec<String> {
        let mut input = ReaderInput::new(bytes);
        let mut out = Vec::new();
        loop {
            match input.next_event() {
                InputEvent::Line(l) => out.push(format!("line {l}")),
                InputEvent::Refused(m) => out.push(format!("refused {m}")),
                InputEvent::End => return out,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn splits_lines_and_returns_the_unterminated_last() {
        assert_eq!(
            events(b"a\r\n\nb c\nlast"),
            ["line a", "line b c", "line last"]
        );
        assert!(events(b"").is_empty());
    }

    #[test]
    fn over_long_and_invalid_lines_are_refused_and_input_goes_on() {
        let mut bytes = vec![b'x'; 5000];
        bytes.extend(b"\n\xff\xfe\nok\n");
        let got = events(&bytes);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("refused") && got[0].contains("1024"));
        assert!(got[1].starts_with("refused") && got[1].contains("UTF-8"));
        assert_eq!(got[2], "line ok");
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes() {
        let mut bytes = vec![b'y'; 1024];
        bytes.push(b'\n');
        assert_eq!(events(&bytes), [format!("line {}", "y".repeat(1024))]);
    }
}
