//! The server's log: one line per event on stderr.

use std::fmt;
use std::io::Write;

/// Writes one log line to stderr. A failed write is ignored: logging must never
/// take the server down.
pub(crate) fn log(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}
