//! The operator's console on stdin: `close`, `list`, `help`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use crate::control::{Control, Stop};

/// How often a console in the background looks whether it is in the foreground again.
const BACKGROUND_POLL: Duration = Duration::from_millis(250);

const HELP: &str = "commands:
  list   show the connected peers (the whole room, across servers)
  close  drop every client at once and stop the server
  help   show this help";

/// Reads commands from `input` and answers on `output` until `close` or the end of
/// input. The end of input (the server runs in the background, or under a service
/// manager) leaves the server running.
///
/// # Errors
/// A failure to read `input` or write `output`.
pub fn console(
    mut input: impl BufRead,
    mut output: impl Write,
    control: &Control,
) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        match text.trim() {
            "" => {}
            "close" => {
                writeln!(output, "closing: dropping every client")?;
                output.flush()?;
                control.stop(Stop::Close);
                return Ok(());
            }
            "list" => list(&mut output, control)?,
            "help" => writeln!(output, "{HELP}")?,
            other => writeln!(
                output,
                "unknown command {other:?}; type help for the commands"
            )?,
        }
        output.flush()?;
    }
}

/// Standard input as the console should read it: on a terminal, only while this
/// process is in the terminal's foreground process group.
///
/// A process in the background of a shell (`host-server &`) that reads its terminal
/// is stopped by the shell's job control (SIGTTIN), and a stopped server serves
/// nobody. So while the server is in the background the console reads nothing: it
/// says so once on standard error, looks every 250 ms whether `fg` has brought the
/// server to the foreground, and then reads again. SIGTTIN is ignored, so a read
/// already waiting when the server is sent to the background (Ctrl-Z, then `bg`)
/// fails with EIO instead of stopping the server, and is treated the same way;
/// SIGTTOU is ignored too, so the log goes on under `stty tostop`.
/// Standard input that is not a terminal (a pipe, `/dev/null`) is read as it is.
pub fn stdin_console() -> impl BufRead {
    let terminal = rustix::termios::isatty(io::stdin().as_fd());
    if terminal {
        ignore_job_control_stops();
    }
    BufReader::new(Foreground {
        terminal,
        off: false,
    })
}

/// Ignores SIGTTIN, so that reading the terminal from the background fails (EIO)
/// rather than stops the process, and SIGTTOU, so that the log still reaches a
/// terminal set to stop background writers (`stty tostop`).
fn ignore_job_control_stops() {
    for (signal, name) in [(libc::SIGTTIN, "SIGTTIN"), (libc::SIGTTOU, "SIGTTOU")] {
        // SAFETY: SIG_IGN installs no handler, so no code runs in signal context; it
        // changes only this process's disposition of a job-control signal, which
        // nothing else in the server relies on.
        let previous = unsafe { libc::signal(signal, libc::SIG_IGN) };
        if previous == libc::SIG_ERR {
            tracing::warn!(
                "cannot ignore {name}: {}; the server may stop if put in the background",
                io::Error::last_os_error()
            );
        }
    }
}

/// Standard input, read only while in the terminal's foreground (see
/// [`stdin_console`]).
struct Foreground {
    /// Standard input is a terminal.
    terminal: bool,
    /// The console is off (the process is in the background), and has said so.
    off: bool,
}

impl Foreground {
    /// True when standard input is a terminal whose foreground process group is
    /// not this process's.
    fn in_background(&self) -> bool {
        self.terminal
            && rustix::termios::tcgetpgrp(io::stdin().as_fd())
                .is_ok_and(|fg| fg != rustix::process::getpgrp())
    }

    /// Notes whether the process is in the background, saying so on a change.
    fn note(&mut self, background: bool) {
        if background && !self.off {
            say(
                "console off: the server is in the background of its terminal; \
                 it serves clients as usual, and `fg` turns the console back on",
            );
        } else if !background && self.off {
            say("console on: type help for the commands");
        }
        self.off = background;
    }
}

/// Writes `what` as one line on standard error, as the server's other words to the
/// person at the terminal (`host-server: error: ...`) are: not a log line, so no
/// `RUST_LOG` filter hides it. A standard error that cannot be written is no
/// reason to stop the console.
fn say(what: &str) {
    let line = format!("host-server: {what}\n");
    let _ = io::stderr().lock().write_all(line.as_bytes());
}

impl Read for Foreground {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let background = self.in_background();
            self.note(background);
            if !background {
                match io::stdin().lock().read(buf) {
                    Err(e) if e.raw_os_error() == Some(libc::EIO) && self.in_background() => {
                        self.note(true);
                    }
                    read => return read,
                }
            }
            std::thread::sleep(BACKGROUND_POLL);
        }
    }
}

/// Everyone in the room; in a room across servers, those on another server with its
/// id (the id each server logs at start).
fn list(output: &mut impl Write, control: &Control) -> io::Result<()> {
    let peers = control.listing();
    match peers.len() {
        0 => writeln!(output, "no clients connected"),
        n => {
            writeln!(output, "{n} connected:")?;
            peers.iter().try_for_each(|p| match &p.server {
                None => writeln!(output, "  {}", p.peer),
                Some(server) => writeln!(output, "  {}  on server {server}", p.peer),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(input: &str) -> (String, Control) {
        let control = Control::new();
        let mut out = Vec::new();
        console(input.as_bytes(), &mut out, &control).unwrap();
        (String::from_utf8(out).unwrap(), control)
    }

    #[test]
    fn close_stops_and_ends_the_console() {
        let (out, control) = session("list\nclose\nhelp\n");
        assert_eq!(
            out,
            "no clients connected\nclosing: dropping every client\n"
        );
        assert_eq!(control.stopping(), Some(Stop::Close));
    }

    #[test]
    fn end_of_input_leaves_the_server_running() {
        let (out, control) = session("help\n");
        assert!(out.contains("close"));
        assert_eq!(control.stopping(), None);
    }

    #[test]
    fn unknown_command_is_named() {
        let (out, _) = session("  frobnicate \n");
        assert_eq!(
            out,
            "unknown command \"frobnicate\"; type help for the commands\n"
        );
    }
}
