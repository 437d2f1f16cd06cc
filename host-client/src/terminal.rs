//! Interactive use on a terminal: a line editor whose prompt line is redrawn below
//! each arriving message, so output never garbles what is being typed.

use std::io::{self, IsTerminal, Write};

use rustix::termios::{tcgetattr, tcsetattr, OptionalActions, Termios};
use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor, ExternalPrinter};

use crate::input::{InputEvent, LineSource, ReaderInput};
use crate::sink::{Sink, WriterSink, DIAG_PREFIX};

/// The prompt shown before the line being typed.
pub const PROMPT: &str = "> ";

/// True when both standard input and standard output are terminals, the case for
/// the line editor; otherwise the client is a plain line filter.
pub fn is_interactive() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

/// Typed lines from the line editor.
pub struct EditorInput {
    editor: DefaultEditor,
}

impl LineSource for EditorInput {
    fn next_event(&mut self) -> InputEvent {
        match self.editor.readline(PROMPT) {
            Ok(line) => {
                // History is a convenience; failing to record a line loses nothing.
                let _ = self.editor.add_history_entry(line.as_str());
                InputEvent::Line(line)
            }
            Err(ReadlineError::Eof) => InputEvent::End,
            Err(ReadlineError::Interrupted) => InputEvent::Interrupted,
            Err(ReadlineError::Io(e)) => InputEvent::Failed(e),
            Err(e) => InputEvent::Failed(io::Error::other(e)),
        }
    }
}

/// Output printed above the line being edited. Diagnostics go there too when
/// standard error is the same terminal; otherwise to standard error.
pub struct EditorSink<P> {
    printer: P,
    diag_on_terminal: bool,
}

impl<P: ExternalPrinter + Send> Sink for EditorSink<P> {
    fn chat(&mut self, line: &str) -> io::Result<()> {
        self.printer
            .print(format!("{line}\n"))
            .map_err(|e| match e {
                ReadlineError::Io(e) => e,
                e => io::Error::other(e),
            })
    }

    fn diag(&mut self, message: &str) {
        let line = format!("{DIAG_PREFIX}{message}\n");
        if !self.diag_on_terminal || self.printer.print(line.clone()).is_err() {
            let _ = io::stderr().write_all(line.as_bytes());
        }
    }
}

/// The terminal's mode as it was before the line editor changed it.
pub struct TerminalMode(Option<Termios>);

impl TerminalMode {
    /// Records the mode of standard input, if it is a terminal.
    pub fn save() -> Self {
        Self(tcgetattr(io::stdin()).ok())
    }

    /// Nothing to restore: the client does not use the line editor.
    pub fn none() -> Self {
        Self(None)
    }

    /// Puts the terminal back as it was. Needed when the client exits while the
    /// line editor, blocked in another thread, holds the terminal in raw mode.
    pub fn restore(&self) {
        if let Some(mode) = &self.0 {
            let _ = tcsetattr(io::stdin(), OptionalActions::Now, mode);
        }
    }

    /// Restores the mode and moves below the prompt line the editor may have left,
    /// so that a final message starts on a line of its own.
    pub fn restore_and_end_line(&self) {
        self.restore();
        if self.0.is_some() {
            let _ = io::stdout().write_all(b"\n");
            let _ = io::stdout().flush();
        }
    }
}

/// The line editor's input and output halves.
///
/// # Errors
/// The editor's error if the terminal cannot be set up.
pub fn editor() -> Result<(EditorInput, Box<dyn Sink>), ReadlineError> {
    // Without bracketed paste, pasted lines are sent one by one, as typed lines are,
    // instead of as one message with newlines inside; and an exit while the editor
    // is active leaves no paste mode behind in the terminal.
    let config = Config::builder().bracketed_paste(false).build();
    let mut editor = DefaultEditor::with_config(config)?;
    let printer = editor.create_external_printer()?;
    let sink = EditorSink {
        printer,
        diag_on_terminal: io::stderr().is_terminal(),
    };
    Ok((EditorInput { editor }, Box::new(sink)))
}

/// Where the binary's typed lines come from and its output goes.
pub struct Console {
    /// Typed lines.
    pub input: Box<dyn LineSource>,
    /// Chat output and diagnostics.
    pub sink: Box<dyn Sink>,
    /// The terminal's mode to put back on exit.
    pub mode: TerminalMode,
}

impl Console {
    /// The line editor when a person is at a terminal ([`is_interactive`]), else plain
    /// standard input and output. A terminal whose editor cannot be set up falls
    /// back to plain lines, with a warning.
    pub fn open() -> Self {
        if is_interactive() {
            let mode = TerminalMode::save();
            match editor() {
                Ok((input, sink)) => {
                    return Self {
                        input: Box::new(input),
                        sink,
                        mode,
                    }
                }
                Err(e) => {
                    eprintln!("{DIAG_PREFIX}warning: no line editor ({e}); reading plain lines")
                }
            }
        }
        Self {
            input: Box::new(ReaderInput::new(io::stdin())),
            sink: Box::new(WriterSink::stdio()),
            mode: TerminalMode::none(),
        }
    }
}
