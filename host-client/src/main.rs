//! `host-client`: the chatroom's console client. See `host-client --help`.
//!
//! A shell over [`host_client::run`] and [`host_client::bench::run`]: it parses the
//! command line, routes Ctrl-C and maps outcomes to exit statuses.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use host_client::bench::{self, Scenario};
use host_client::cli::{Args, Command};
use host_client::sink::DIAG_PREFIX;
use host_client::terminal::Console;
use host_client::{Config, Interrupter, EXIT_FAILURE, EXIT_OK};

fn main() -> ExitCode {
    let args = Args::parse_checked();
    match &args.command {
        Some(Command::Bench { scenario }) => bench(scenario),
        None => chat(&args.config()),
    }
}

fn chat(config: &Config) -> ExitCode {
    // The handler is installed before connecting, so Ctrl-C during the retries ends
    // the client with a message instead of killing it; once connected it says Bye.
    let session: Arc<Mutex<Option<Interrupter>>> = Arc::default();
    let slot = Arc::clone(&session);
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
    let Console { input, sink, mode } = Console::open();
    let outcome = host_client::run(config, input, sink, |interrupter| {
        *session.lock().unwrap_or_else(PoisonError::into_inner) = Some(interrupter);
    });
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

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{DIAG_PREFIX}error: {e}");
    ExitCode::from(EXIT_FAILURE)
}

fn bench(scenario: &Scenario) -> ExitCode {
    match bench::run(scenario) {
        Ok(report) => {
            let json = scenario.common().json;
            println!("{}", if json { report.json() } else { report.human() });
            ExitCode::from(EXIT_OK)
        }
        Err(e) => fail(&e),
    }
}
