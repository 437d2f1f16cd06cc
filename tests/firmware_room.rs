//! The firmware client in the room: proto-core compiled for a Cortex-M3, run by QEMU
//! (`lm3s6965evb`) with the board's UART0 connected to a real `host-server` over
//! loopback TCP, chats with a plain text client.
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` Rust target. Without them the
//! test fails and says what to install; it never skips, so a CI that lacks them is
//! noticed.
//!
//! Both programs are built by the test itself (at low priority, a no-op when fresh),
//! so it never runs a stale or missing binary, whatever target directory or profile
//! the outer `cargo test` uses:
//! - the firmware with `cargo build --release --bin room` in `tests/firmware` (its own
//!   workspace), into `tests/firmware/target`;
//! - the server with `cargo build -p host-server --bin host-server`, into
//!   `CARGO_TARGET_TMPDIR/firmware-room`, apart from the binaries other tests run.
//!
//! QEMU runs under `timeout` and every wait has a deadline, so the run itself is
//! bounded (about a minute at most); only the builds take as long as they take.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::{Proc, Server, WAIT};

/// The repository root (the root package's manifest directory).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The target the firmware is built for.
const THUMB: &str = "thumbv7m-none-eabi";
/// Seconds QEMU may run before `timeout` stops it.
const QEMU_LIMIT_SECS: u64 = 60;

#[test]
fn firmware_joins_the_room_and_chats_with_a_text_client() {
    require_tools();
    let firmware = build_firmware();
    let server = Server::start_binary(&build_host_server(), "127.0.0.1:0", &[]);
    let addr = server.addr;
    let mut text = TextClient::connect(addr);
    text.expect("the text client's welcome", |l| l.starts_with("*** "));

    let mut qemu = Qemu::start(&firmware, addr);
    let joined = qemu.0.out.expect("`room: joined as ADDR`", |l| {
        l.starts_with("room: joined as ")
    });
    let firmware_addr = joined["room: joined as ".len()..].to_owned();
    text.expect_eq(&format!("[{firmware_addr}] hello from cortex-m"));

    let me = text.local_addr();
    text.send("hello from the host");
    qemu.0.out.expect_eq(&format!("[{me}] hello from the host"));
    text.send("bye firmware");
    qemu.0.out.expect_eq(&format!("[{me}] bye firmware"));
    qemu.0.out.expect_eq("room: said bye");
    let status = qemu.0.wait_exit(Duration::from_secs(QEMU_LIMIT_SECS));
    assert!(
        status.success(),
        "the firmware exited with {status}; stdout {:#?} stderr {:#?}",
        qemu.0.out.all(),
        qemu.0.err.all()
    );
    // Shown with `--nocapture`: the firmware's stack figures are on its last lines.
    println!("firmware output: {:#?}", qemu.0.out.all());
    // The server got the firmware's bye frame and told the room.
    text.expect_eq(&format!("*** {firmware_addr} left"));
}

/// Fails the test, saying what to install, when QEMU or the thumb target is missing.
fn require_tools() {
    let qemu = Command::new("qemu-system-arm").arg("--version").output();
    assert!(
        qemu.as_ref().is_ok_and(|o| o.status.success()),
        "qemu-system-arm is not runnable ({:?}); this test needs it: \
         `apt-get install qemu-system-arm` (Debian)",
        qemu.map(|o| o.status)
    );
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir", "--target", THUMB])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let has_core = libdir
        .as_deref()
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|mut entries| {
            entries.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("libcore")))
        });
    assert!(
        has_core,
        "the Rust target {THUMB} is not installed (no libcore in {libdir:?}); this test \
         needs it: `rustup target add {THUMB}`"
    );
}

/// The cargo that runs this test, so nested builds use the same toolchain. It runs
/// at the lowest priority, so that it slows the tests running beside it as little as
/// it can.
fn cargo() -> Command {
    let mut cmd = Command::new("nice");
    cmd.args(["-n", "19"])
        .arg(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd
}

/// Runs a build and fails the test with its output if it fails.
fn run_build(mut cmd: Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(
        out.status.success(),
        "building {what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the `room` firmware (release) and returns its ELF.
fn build_firmware() -> PathBuf {
    let dir = Path::new(ROOT).join("tests/firmware");
    let target_dir = dir.join("target");
    let mut cmd = cargo();
    // Flags meant for host builds (a sanitizer, say) must not reach the firmware.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(&dir)
        .args(["build", "--release", "--bin", "room", "--target", THUMB])
        .arg("--target-dir")
        .arg(&target_dir);
    run_build(cmd, "the room firmware");
    let elf = target_dir.join(THUMB).join("release/room");
    assert!(elf.is_file(), "no firmware at {}", elf.display());
    elf
}

/// Builds `host-server` (a no-op when fresh) and returns the executable.
///
/// It builds into a target directory of its own: built in the outer one, with the
/// features `-p host-server` selects rather than those the outer build unified, it
/// could replace the binary the other tests are running.
fn build_host_server() -> PathBuf {
    let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("firmware-room");
    let mut cmd = cargo();
    cmd.current_dir(ROOT)
        .args(["build", "-p", "host-server", "--bin", "host-server"])
        .arg("--target-dir")
        .arg(&target_dir);
    run_build(cmd, "host-server");
    let exe = target_dir.join("debug/host-server");
    assert!(exe.is_file(), "no host-server at {}", exe.display());
    exe
}

/// QEMU running the firmware, stopped when dropped.
struct Qemu(Proc);

impl Qemu {
    /// Starts the firmware with UART0 connected to `server`, which must be listening
    /// already: QEMU connects as it starts.
    fn start(elf: &Path, server: SocketAddr) -> Self {
        let mut cmd = Command::new("timeout");
        cmd.arg(QEMU_LIMIT_SECS.to_string())
            .args([
                "qemu-system-arm",
                "-cpu",
                "cortex-m3",
                "-machine",
                "lm3s6965evb",
            ])
            .args(["-nographic", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-serial")
            .arg(format!("tcp:{server}"))
            .arg("-kernel")
            .arg(elf);
        Self(Proc::spawn(cmd))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // `timeout` passes SIGTERM on to QEMU; the SIGKILL that `Proc` sends next
        // would stop `timeout` alone and leave QEMU running. Only a child not yet
        // reaped is signalled, so its pid cannot have been reused.
        if !matches!(self.0.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.child.id().to_string()])
            .status();
        // Let `timeout` reap QEMU and exit before `Proc` kills it.
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.0.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A plain TCP client, as `nc` would be: it sends lines and reads lines.
struct TextClient {
    reader: BufReader<TcpStream>,
    seen: Vec<String>,
}

impl TextClient {
    fn connect(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server)
            .unwrap_or_else(|e| panic!("text client cannot connect to {server}: {e}"));
        Self {
            reader: BufReader::new(stream),
            seen: Vec::new(),
        }
    }

    /// The client's own address, as the server shows it in `[PEER]` headers.
    fn local_addr(&self) -> SocketAddr {
        self.reader.get_ref().local_addr().expect("local address")
    }

    fn send(&mut self, line: &str) {
        let mut stream = self.reader.get_ref();
        writeln!(stream, "{line}").expect("text client write");
    }

    /// Waits for the next line that satisfies `pred`, skipping others; fails the test
    /// with every line seen if none comes within [`WAIT`].
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = Some(left.max(Duration::from_millis(1)));
            self.reader.get_ref().set_read_timeout(timeout).unwrap();
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => panic!(
                    "text client: server closed; no line {what}; saw {:#?}",
                    self.seen
                ),
                Ok(_) => {
                    let line = line.trim_end_matches('\n').to_owned();
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!(
                        "text client: no line {what} within {WAIT:?}; saw {:#?}",
                        self.seen
                    )
                }
                Err(e) => panic!("text client read: {e}; saw {:#?}", self.seen),
            }
        }
    }

    fn expect_eq(&mut self, want: &str) -> String {
        self.expect(&format!("== {want:?}"), |l| l == want)
    }
}
