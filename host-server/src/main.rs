//! The `host-server` binary: command line, signals and console around
//! [`host_server::run`].

use std::io::{self, Write};
use std::process::ExitCode;
use std::thread;

use clap::Parser;
use host_server::{
    bind, bind_fronts, check, console, probe_backplane, run_with_fronts, stdin_console, Cli,
    Control, Stop,
};

fn main() -> ExitCode {
    // Connection threads have small stacks; the default hook may walk and print a
    // backtrace, which needs more. One line says enough, and the thread's own
    // `catch_unwind` keeps the server running.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("internal error: {info}");
    }));
    init_log();
    // Before anything is written, so that a server started in the background of a
    // shell is never stopped for writing its first lines to the terminal (`stty
    // tostop`).
    let console_input = stdin_console();
    let config = match Cli::parse().config() {
        Ok(config) => config,
        Err(e) => {
            use clap::CommandFactory;
            Cli::command()
                .error(clap::error::ErrorKind::ArgumentConflict, e)
                .exit()
        }
    };
    if let Err(e) = check(&config) {
        return fail(&e);
    }
    let listener = match bind(&config) {
        Ok(listener) => listener,
        Err(e) => return fail(&e),
    };
    let fronts = match bind_fronts(&config) {
        Ok(fronts) => fronts,
        Err(e) => return fail(&e),
    };
    // Scripts wait for the `listening on` line: a backplane that cannot be reached
    // is reported before it.
    if let Some(backplane) = &config.backplane {
        if let Err(e) = probe_backplane(backplane) {
            return fail(&e);
        }
    }
    if let Err(e) = announce(&listener, &fronts) {
        return fail(&e);
    }
    let control = Control::new();
    let on_signal = control.clone();
    if let Err(e) = ctrlc::set_handler(move || on_signal.stop(Stop::Terminate)) {
        tracing::warn!("cannot catch Ctrl-C and SIGTERM: {e}");
    }
    let at_console = control.clone();
    // The console thread is left blocked on stdin when the server stops; exiting the
    // process ends it.
    let _ = thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            if let Err(e) = console(console_input, io::stdout(), &at_console) {
                tracing::error!("console: {e}");
            }
        });
    match run_with_fronts(listener, fronts, &config, &control) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Prints where the server listens: `listening on ADDR` first (scripts and tests
/// wait for it), then `PROXY fronts on ADDR` for each `--proxy-listen`.
fn announce(listener: &std::net::TcpListener, fronts: &[std::net::TcpListener]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    for front in fronts {
        writeln!(out, "PROXY fronts on {}", front.local_addr()?)?;
    }
    out.flush()
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("host-server: error: {e}");
    ExitCode::FAILURE
}

/// The log on standard error: a UTC timestamp and a level on every line; `RUST_LOG`
/// filters it (default `info`: joins, leaves, refusals, drops and errors).
fn init_log() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_target(false)
        .init();
}
