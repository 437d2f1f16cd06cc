//! Building the Cortex-M firmware and a `host-server` of its own, and running the
//! firmware under QEMU (`lm3s6965evb`), for the firmware tests (`firmware_room`
//! over the UART, `firmware_net` over TCP/IP).
//!
//! Needs `qemu-system-arm` and the `thumbv7m-none-eabi` Rust target. Without them a
//! test fails and says what to install; it never skips, so a CI that lacks them is
//! noticed.
//!
//! Both programs are built by the tests themselves (at low priority, a no-op when
//! fresh), so a test never runs a stale or missing binary, whatever target directory
//! or profile the outer `cargo test` uses:
//! - the firmware with `cargo build --release --bin NAME` in `tests/firmware` (its
//!   own workspace), into `tests/firmware/target`;
//! - the server with `cargo build -p host-server --bin host-server`, into
//!   `CARGO_TARGET_TMPDIR/firmware-room`, apart from the binaries other tests run.
//!
//! QEMU runs under `timeout` and every wait has a deadline, so a run is bounded
//! (about a minute at most); only the builds take as long as they take.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::{Proc, WAIT};

/// The repository root (the root package's manifest directory).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The target the firmware is built for.
const THUMB: &str = "thumbv7m-none-eabi";
/// Seconds QEMU may run before `timeout` stops it.
pub const QEMU_LIMIT_SECS: u64 = 60;

/// Fails the test, saying what to install, when QEMU or the thumb target is missing.
pub fn require_tools() {
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

/// Builds the firmware program `bin` (release) and returns its ELF.
pub fn build_firmware(bin: &str) -> PathBuf {
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
        .args([
            "build",
            "--release",
            "--locked",
            "--bin",
            bin,
            "--target",
            THUMB,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    run_build(cmd, &format!("the {bin} firmware"));
    let elf = target_dir.join(THUMB).join("release").join(bin);
    assert!(elf.is_file(), "no firmware at {}", elf.display());
    elf
}

/// Builds `host-server` (a no-op when fresh) and returns the executable.
///
/// It builds into a target directory of its own: built in the outer one, with the
/// features `-p host-server` selects rather than those the outer build unified, it
/// could replace the binary the other tests are running.
pub fn build_host_server() -> PathBuf {
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

/// QEMU running a firmware, stopped when dropped.
pub struct Qemu(pub Proc);

impl Qemu {
    /// Starts the firmware `elf` on the `lm3s6965evb` board, with semihosting for
    /// its output and exit status, and `args` for QEMU (how UART0 or the Ethernet
    /// controller reach the server). A server the arguments name must be listening
    /// already: QEMU connects to it as it starts.
    pub fn start<I, S>(elf: &Path, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
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
            .args(args)
            .arg("-kernel")
            .arg(elf);
        Self(Proc::spawn(cmd))
    }

    /// Waits (at most [`QEMU_LIMIT_SECS`]) for QEMU to end and returns its exit
    /// status, the firmware's.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.0.wait_exit(Duration::from_secs(QEMU_LIMIT_SECS))
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

/// A plain TCP client, as `nc` would be: it sends lines and reads lines, and fails
/// the test with every line it saw when an expected one does not come.
pub struct TextClient {
    reader: BufReader<TcpStream>,
    seen: Vec<String>,
}

impl TextClient {
    pub fn connect(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server)
            .unwrap_or_else(|e| panic!("text client cannot connect to {server}: {e}"));
        Self {
            reader: BufReader::new(stream),
            seen: Vec::new(),
        }
    }

    /// The client's own address, as the server shows it in `[PEER]` headers.
    pub fn local_addr(&self) -> SocketAddr {
        self.reader.get_ref().local_addr().expect("local address")
    }

    /// Sends `line` and its newline.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\n").as_bytes());
    }

    /// Sends raw bytes in one write.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let mut stream = self.reader.get_ref();
        stream.write_all(bytes).expect("text client write");
    }

    /// Waits for the next line that satisfies `pred`, skipping others; fails the test
    /// with every line seen if none comes within [`WAIT`].
    pub fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
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

    /// Waits for a line equal to `want`.
    pub fn expect_eq(&mut self, want: &str) -> String {
        self.expect(&format!("== {want:?}"), |l| l == want)
    }
}
