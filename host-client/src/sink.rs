//! Where the client's output goes: chat lines to one place, diagnostics to another.

use std::io::{self, Write};

/// The prefix of every diagnostic line, so it can be told apart from chat output.
pub const DIAG_PREFIX: &str = "host-client: ";

/// A destination for the client's output, shared by its threads.
pub trait Sink: Send {
    /// Prints one line of chat output (a broadcast or a notice), at once.
    ///
    /// # Errors
    /// The output's error; the session then ends.
    fn chat(&mut self, line: &str) -> io::Result<()>;

    /// Reports an error or other diagnostic, best effort.
    fn diag(&mut self, message: &str);
}

/// A sink over two writers: chat lines to `out`, each flushed at once so a reader
/// through a pipe sees it without delay; diagnostics to `err`, prefixed with
/// [`DIAG_PREFIX`].
#[derive(Debug)]
pub struct WriterSink<O, E> {
    out: O,
    err: E,
}

impl<O: Write + Send, E: Write + Send> WriterSink<O, E> {
    /// A sink writing chat to `out` and diagnostics to `err`.
    pub fn new(out: O, err: E) -> Self {
        Self { out, err }
    }
}

impl WriterSink<io::Stdout, io::Stderr> {
    /// Standard output for chat, standard error for diagnostics.
    pub fn stdio() -> Self {
        Self::new(io::stdout(), io::stderr())
    }
}

impl<O: Write + Send, E: Write + Send> Sink for WriterSink<O, E> {
    fn chat(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }

    fn diag(&mut self, message: &str) {
        // Nowhere is left to report a failure to write to standard error.
        let _ = writeln!(self.err, "{DIAG_PREFIX}{message}");
        let _ = self.err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_and_diagnostics_go_to_their_own_writers() {
        let mut sink = WriterSink::new(Vec::new(), Vec::new());
        sink.chat("[1.2.3.4:5] hi").unwrap();
        sink.diag("error: oops");
        assert_eq!(sink.out, b"[1.2.3.4:5] hi\n");
        assert_eq!(sink.err, b"host-client: error: oops\n");
    }
}
