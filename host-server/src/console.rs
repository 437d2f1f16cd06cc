//! The operator's console on stdin: `close`, `list`, `help`.

use std::io::{self, BufRead, Write};

use crate::control::{Control, Stop};

const HELP: &str = "commands:
  list   show the connected peers
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

fn list(output: &mut impl Write, control: &Control) -> io::Result<()> {
    let peers = control.peers();
    match peers.len() {
        0 => writeln!(output, "no clients connected"),
        n => {
            writeln!(output, "{n} connected:")?;
            peers.iter().try_for_each(|p| writeln!(output, "  {p}"))
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
