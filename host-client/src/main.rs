//! `host-client`: the chatroom's console client. See `host-client --help`.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use clap::Parser;
use host_client::bench::{self, Scenario};
use host_client::cli::{Args, Command};
use host_client::sink::DIAG_PREFIX;
use host_client::terminal::{self, TerminalMode};
use host_client::{
    attempt_message, connect, Interrupter, LineSource, ReaderInput, Session, Sink, WriterSink,
    EXIT_FAILURE, EXIT_OK,
};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(Command::Bench { scenario }) = &args.command {
        return bench(scenario);
    }
    let config = args.config();
    // The handler is installed before connecting, so Ctrl-C during the retries ends
    // the client with a message instead of killing it; once connected it says Bye.
    let session_slot: Arc<Mutex<Option<Interrupter>>> = Arc::default();
    let slot = Arc::clone(&session_slot);
    if let Err(e) = ctrlc::set_handler(move || {
        match slot.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(interrupter) => interrupter.interrupt(),
            None => {
                eprintln!("{DIAG_PREFIX}error: interrupted before connecting");
                std::process::exit(i32::from(EXIT_FAILURE));
            }
        }
    }) {
        eprintln!("{DIAG_PREFIX}warning: Ctrl-C will not say goodbye: {e}");
    }
    let connected = connect(&config, |f| {
        if let Some(message) = attempt_message(f) {
            eprintln!("{DIAG_PREFIX}{message}");
        }
    });
    let stream = match connected {
        Ok((stream, _)) => stream,
        Err(e) => return fail(&e),
    };
    let session = Session::new(stream, config.linger);
    *session_slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(session.interrupter());
    let (input, sink, mode) = io_halves();
    let outcome = session.run(input, sink);
    // Returning from main ends the process, input thread included.
    match outcome {
        Ok(_) => {
            mode.restore();
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            // The editor, blocked in the input thread, may hold the terminal raw,
            // with the prompt line still open.
            mode.restore_and_end_line();
            fail(&e)
        }
    }
}

/// The line editor on a terminal, else plain standard input and output.
fn io_halves() -> (Box<dyn LineSource>, Box<dyn Sink>, TerminalMode) {
    if terminal::is_interactive() {
        let mode = TerminalMode::save();
        match terminal::editor() {
            Ok((input, sink)) => return (Box::new(input), sink, mode),
            Err(e) => eprintln!("{DIAG_PREFIX}warning: no line editor ({e}); reading plain lines"),
        }
    }
    (
        Box::new(ReaderInput::new(std::io::stdin())),
        Box::new(WriterSink::stdio()),
        TerminalMode::none(),
    )
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{DIAG_PREFIX}error: {e}");
    ExitCode::from(EXIT_FAILURE)
}

fn bench(scenario: &Scenario) -> ExitCode {
    match bench::run(scenario) {
        Ok(report) => {
            let json = match scenario {
                Scenario::Fanout { common, .. }
                | Scenario::Latency { common, .. }
                | Scenario::Idle { common, .. } => common.json,
            };
            println!("{}", if json { report.json() } else { report.human() });
            ExitCode::from(EXIT_OK)
        }
        Err(e) => fail(&e),
    }
}
