//! A fault-injecting TCP relay, put between a server and Redis to make the network
//! path between them misbehave the ways real ones do, on command:
//!
//! - [`Mode::Pass`]: bytes go through both ways (what was held goes first);
//! - [`Mode::Freeze`]: nothing goes through either way, nothing is closed (a stopped
//!   host, a cable pulled with no reset): bytes are held and go on when it passes again;
//! - [`Mode::HoldReplies`]: requests go through, replies are held (Redis did the work,
//!   the answer is late);
//! - [`Mode::Blackhole`]: bytes are dropped both ways and never delivered, nothing is
//!   closed (a route to nowhere; new connections are accepted and go nowhere too).
//!
//! [`Relay::cut`] leaves every connection open at that moment silent for good (a
//! connection a middlebox forgot) while newer ones work.
//!
//! Everything runs on loopback; threads end with their connections, and all of them
//! when the relay is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the relay does with bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass = 0,
    Freeze = 1,
    HoldReplies = 2,
    Blackhole = 3,
}

impl Mode {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Mode::Freeze,
            2 => Mode::HoldReplies,
            3 => Mode::Blackhole,
            _ => Mode::Pass,
        }
    }
}

struct Shared {
    mode: AtomicU8,
    /// Connections opened before cut number `n` are silent for good once `cut` > n.
    cut: AtomicU64,
    done: AtomicBool,
    /// Every socket, so that dropping the relay closes them all.
    sockets: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Acquire))
    }
}

/// A relay on a free loopback port to one address.
pub struct Relay {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Relay {
    /// Starts relaying connections made to [`Relay::addr`] to `to`, in [`Mode::Pass`].
    pub fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let shared = Arc::new(Shared {
            mode: AtomicU8::new(Mode::Pass as u8),
            cut: AtomicU64::new(0),
            done: AtomicBool::new(false),
            sockets: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for inside in listener.incoming() {
                if s.done.load(Ordering::Acquire) {
                    return;
                }
                let (Ok(inside), Ok(outside)) = (inside, TcpStream::connect(to)) else {
                    continue;
                };
                let generation = s.cut.load(Ordering::Acquire);
                if let (Ok(a), Ok(b)) = (inside.try_clone(), outside.try_clone()) {
                    s.sockets.lock().unwrap().extend([a, b]);
                }
                let pairs = [
                    (inside.try_clone(), outside.try_clone(), false),
                    (Ok(outside), Ok(inside), true),
                ];
                for (from, to, reply) in pairs {
                    let (Ok(from), Ok(to)) = (from, to) else {
                        continue;
                    };
                    let s = s.clone();
                    thread::spawn(move || pump(from, to, reply, generation, &s));
                }
            }
        });
        Self { addr, shared }
    }

    /// The URL a server is given to reach Redis through this relay.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// From now on, does what `mode` says.
    pub fn set(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::Release);
    }

    /// Leaves every connection open now silent for good; newer ones are not affected.
    pub fn cut(&self) {
        self.shared.cut.fetch_add(1, Ordering::AcqRel);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::Release);
        for s in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(self.addr);
    }
}

/// How often a holding pump looks whether it may go on.
const TICK: Duration = Duration::from_millis(10);

/// Copies `from` to `to` (`reply`: the direction from Redis), as the mode says.
fn pump(mut from: TcpStream, mut to: TcpStream, reply: bool, generation: u64, s: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        loop {
            if s.done.load(Ordering::Acquire) {
                return;
            }
            let held = s.cut.load(Ordering::Acquire) > generation
                || match s.mode() {
                    Mode::Pass => false,
                    Mode::Freeze => true,
                    Mode::HoldReplies => reply,
                    Mode::Blackhole => break,
                };
            if !held {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                break;
            }
            thread::sleep(TICK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::Redis;

    /// Sends an inline `PING` and reads one reply (`+PONG` and CR LF) within `limit`.
    fn ping(stream: &mut TcpStream, limit: Duration) -> Option<String> {
        stream.set_read_timeout(Some(limit)).unwrap();
        stream.write_all(b"PING\r\n").unwrap();
        reply(stream, limit)
    }

    /// Reads one `+PONG` reply within `limit`.
    fn reply(stream: &mut TcpStream, limit: Duration) -> Option<String> {
        stream.set_read_timeout(Some(limit)).unwrap();
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).ok()?;
        Some(String::from_utf8_lossy(&reply).trim().to_string())
    }

    #[test]
    fn the_relay_passes_holds_drops_and_cuts() {
        let redis = Redis::start();
        let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], redis.port)));
        let mut con = TcpStream::connect(relay.addr).unwrap();
        let short = Duration::from_millis(300);
        assert_eq!(ping(&mut con, short).as_deref(), Some("+PONG"));
        for held in [Mode::Freeze, Mode::HoldReplies] {
            relay.set(held);
            let before = redis.cli(&["INFO", "stats"]);
            assert_eq!(ping(&mut con, short), None, "{held:?}");
            let after = redis.cli(&["INFO", "stats"]);
            // Requests reach Redis only when replies alone are held.
            let commands = |info: &str| -> u64 {
                info.lines()
                    .find_map(|l| l.strip_prefix("total_commands_processed:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap()
            };
            // redis-cli's own INFO counts one.
            let reached = commands(&after) - commands(&before) > 1;
            assert_eq!(reached, held == Mode::HoldReplies, "{held:?}");
            relay.set(Mode::Pass);
            // The held reply comes, then the next one as usual.
            assert_eq!(reply(&mut con, short).as_deref(), Some("+PONG"));
            assert_eq!(ping(&mut con, short).as_deref(), Some("+PONG"));
        }
        relay.set(Mode::Blackhole);
        assert_eq!(ping(&mut con, short), None);
        relay.set(Mode::Pass);
        // What went into the hole never comes out.
        assert_eq!(ping(&mut con, short).as_deref(), Some("+PONG"));
        relay.cut();
        assert_eq!(ping(&mut con, short), None);
        let mut fresh = TcpStream::connect(relay.addr).unwrap();
        assert_eq!(ping(&mut fresh, short).as_deref(), Some("+PONG"));
    }
}
