//! `host-client bench`: load tests of a chat server, in the spirit of `nats bench`.
//!
//! Every connection runs on one thread around one mio poll loop (while setting up, a
//! few threads open connections and hand them over), so the bench's own cost is small
//! and is reported (its CPU time, and the server's with `--server-pid`) next to the
//! results: when the bench is busy nearly all the time, it, not the server, may be
//! what limits the rate. Each fanout sender has a window of messages in flight, so
//! the bench never overruns its own receivers; `--stalled K` adds connections that
//! never read.
//!
//! - `fanout`: S senders each send M messages as fast as the server takes them; N
//!   receivers count deliveries, losses and order violations and measure latency.
//! - `latency`: the senders share a paced total rate R for T seconds.
//! - `idle`: C connections are held open T seconds, then one message must reach
//!   them all.
//!
//! Latency runs from when the bench queues a message to when a receiver decodes it,
//! on one clock. `--text` speaks the text protocol (plain lines), so servers such as
//! `ncat -l --chat` can be measured too; `--ws` connects as WebSocket clients, the
//! way a browser's page joins; `--redis-pubsub` puts the same load on a Redis server
//! (receivers SUBSCRIBE to one channel, senders PUBLISH to it), to compare fan-out
//! with Redis pub/sub; `--json` prints one machine-readable line.

mod conn;
mod engine;
mod payload;
mod report;
mod resp;
mod stats;
mod ws;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::values::{positive_duration, server_addr};

pub use conn::Wire;
pub use engine::BenchError;
pub use report::Report;

use engine::{Engine, Plan};

/// Settings every scenario shares.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The server under test.
    #[arg(default_value = crate::config::DEFAULT_ADDR, value_parser = server_addr)]
    pub addr: String,
    /// Another server of the same room (`host-server --backplane`): connections are
    /// spread over ADDR and these in turn, receivers and senders alike, so messages
    /// cross servers. Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub spread: Vec<String>,
    /// Speak the text protocol (lines) instead of the binary one.
    #[arg(long)]
    pub text: bool,
    /// Connect with TLS (a server started with --tls-cert); the certificate must
    /// verify as for `host-client --tls`.
    #[arg(long)]
    pub tls: bool,
    /// With --tls, trust only the certificates in this PEM file.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<std::path::PathBuf>,
    /// With --tls, the name the server's certificate must carry.
    #[arg(long, value_name = "NAME", requires = "tls")]
    pub server_name: Option<String>,
    /// Connect as WebSocket clients (a browser's way in: `GET /ws`, text frames);
    /// with --tls, over TLS (`wss://`).
    #[arg(long, conflicts_with = "text")]
    pub ws: bool,
    /// Put the load on a Redis server instead (ADDR is `redis-server`'s): each
    /// receiver SUBSCRIBEs to one channel, each sender PUBLISHes its messages to it.
    /// Deliveries are counted at the receivers, as in a chat room (senders receive
    /// nothing from Redis; from a chat server, each other's messages too).
    #[arg(long, conflicts_with_all = ["text", "ws"])]
    pub redis_pubsub: bool,
    /// Print one JSON line instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
    /// Limit on each connect (and, in binary mode, on the server's preamble).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Limit on the readiness probe: once connected, how long every receiver may take
    /// to get a first message (behind the announcements of everyone joining).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    pub ready_timeout: Duration,
    /// After the last send (for `idle`, the one message), how long to wait for
    /// missing deliveries before counting them lost.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "2s")]
    pub drain: Duration,
    /// Connections opened at once while setting up (each by its own thread, one
    /// connect and handshake at a time). Keep it below the server's listen backlog.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connectors: u16,
    /// The server's process id (on the same machine): its CPU time while measuring
    /// is reported next to the bench's, and for `idle` its memory per connection.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

/// The bench scenarios.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// S senders send M messages each, as fast as the server takes them, to N receivers.
    Fanout {
        /// Shared settings.
        #[command(flatten)]
        common: Common,
        /// Receiving connections.
        #[arg(long, short = 'n', default_value_t = 100)]
        receivers: usize,
        /// Sending connections.
        #[arg(long, short = 's', default_value_t = 10)]
        senders: usize,
        /// Messages per sender.
        #[arg(long, short = 'm', default_value_t = 1000)]
        messages: u64,
        /// Message size in bytes (at most 1024; never below the stamp's length).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=proto_core::MAX_MESSAGE as i64))]
        size: u16,
        /// Flow control: most messages per sender in flight, i.e. sent but not yet
        /// received by every receiver (on average). Keeps the bench from overrunning
        /// its own receivers, so the server is measured at the rate it delivers.
        #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
        window: u64,
        /// Also open K connections that never read: stalled readers in the room, to
        /// measure what they cost everyone else.
        #[arg(long, value_name = "K", default_value_t = 0)]
        stalled: usize,
    },
    /// The senders share a paced total rate for a while.
    Latency {
        /// Shared settings.
        #[command(flatten)]
        common: Common,
        /// Receiving connections.
        #[arg(long, short = 'n', default_value_t = 100)]
        receivers: usize,
        /// Sending connections.
        #[arg(long, short = 's', default_value_t = 1)]
        senders: usize,
        /// Total messages per second, over all senders.
        #[arg(long, short = 'r', default_value_t = 1000)]
        rate: u32,
        /// How long to send.
        #[arg(long, short = 't', value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "5s")]
        duration: Duration,
        /// Message size in bytes (at most 1024).
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=proto_core::MAX_MESSAGE as i64))]
        size: u16,
        /// Also open K connections that never read: stalled readers in the room, to
        /// measure what they cost everyone else.
        #[arg(long, value_name = "K", default_value_t = 0)]
        stalled: usize,
    },
    /// Hold many idle connections, then prove they all still receive.
    Idle {
        /// Shared settings.
        #[command(flatten)]
        common: Common,
        /// Idle connections held.
        #[arg(long, short = 'c', default_value_t = 1000)]
        connections: usize,
        /// How long to hold them.
        #[arg(long, short = 't', value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "10s")]
        duration: Duration,
    },
}

impl Common {
    /// How the connections speak.
    pub fn wire(&self) -> conn::Wire {
        match (self.text, self.ws, self.redis_pubsub) {
            (_, _, true) => conn::Wire::RedisPubSub,
            (_, true, false) => conn::Wire::WebSocket,
            (true, false, false) => conn::Wire::Text,
            (false, false, false) => conn::Wire::Binary,
        }
    }
}

impl Scenario {
    /// The settings every scenario shares.
    pub fn common(&self) -> &Common {
        match self {
            Scenario::Fanout { common, .. }
            | Scenario::Latency { common, .. }
            | Scenario::Idle { common, .. } => common,
        }
    }
}

/// Runs a scenario and returns its report.
///
/// # Errors
/// See [`BenchError`].
pub fn run(scenario: &Scenario) -> Result<Report, BenchError> {
    let cpu_start = report::cpu_time();
    let mut report = match scenario {
        Scenario::Fanout {
            common,
            receivers,
            senders,
            messages,
            size,
            window,
            stalled,
        } => fanout(
            common,
            Load {
                receivers: *receivers,
                senders: *senders,
                stalled: *stalled,
                size: usize::from(*size),
            },
            *messages,
            *window,
        ),
        Scenario::Latency {
            common,
            receivers,
            senders,
            rate,
            duration,
            size,
            stalled,
        } => latency(
            common,
            Load {
                receivers: *receivers,
                senders: *senders,
                stalled: *stalled,
                size: usize::from(*size),
            },
            *rate,
            *duration,
        ),
        Scenario::Idle {
            common,
            connections,
            duration,
        } => idle(common, *connections, *duration),
    }?;
    report.cpu = report::cpu_time().saturating_sub(cpu_start);
    Ok(report)
}

/// Who takes part in a run, and the size of the messages.
#[derive(Debug, Clone, Copy)]
struct Load {
    receivers: usize,
    senders: usize,
    stalled: usize,
    size: usize,
}

/// The first address `addr` resolves to, as the chat client reads addresses.
fn resolve(addr: &str) -> Result<SocketAddr, BenchError> {
    let addrs = crate::connect::resolve(addr).map_err(BenchError::Address)?;
    // `resolve` returns at least one address or an error.
    debug_assert!(!addrs.is_empty());
    Ok(addrs[0])
}

/// Connects everyone and waits until every receiver gets messages; returns the
/// engine and how long that took.
fn start(common: &Common, load: Load, window: u64) -> Result<(Engine, Duration), BenchError> {
    let began = Instant::now();
    let mut addrs = vec![resolve(&common.addr)?];
    for other in &common.spread {
        addrs.push(resolve(other)?);
    }
    let tls = match common.tls {
        true => {
            let options = crate::tls::TlsOptions {
                ca: common.ca.clone(),
                server_name: common.server_name.clone(),
            };
            let setup = crate::tls::TlsSetup::new(&options, &common.addr)
                .map_err(|e| BenchError::Address(crate::connect::ConnectError::Tls(e)))?;
            Some(setup)
        }
        false => None,
    };
    let plan = Plan {
        wire: common.wire(),
        tls,
        receivers: load.receivers,
        senders: load.senders,
        stalled: load.stalled,
        window,
        timeout: common.connect_timeout,
        connectors: usize::from(common.connectors),
    };
    let mut engine = Engine::connect(&addrs, &plan)?;
    engine.connected = began.elapsed();
    engine.probe(common.ready_timeout)?;
    Ok((engine, began.elapsed()))
}

/// When measuring began, and the CPU time the bench and the server had used by then.
struct Clock {
    began: Instant,
    bench: Duration,
    server: Option<(u32, Duration)>,
}

impl Clock {
    fn start(common: &Common) -> Self {
        let server = common
            .server_pid
            .and_then(|pid| report::process_cpu_time(pid).map(|t| (pid, t)));
        Self {
            began: Instant::now(),
            bench: report::cpu_time(),
            server,
        }
    }

    /// Fills in the CPU and wall times measured since [`Clock::start`].
    fn stop(&self, report: &mut Report) {
        report.cpu_measured = report::cpu_time().saturating_sub(self.bench);
        report.wall_measured = self.began.elapsed();
        report.server_cpu = self
            .server
            .and_then(|(pid, t0)| report::process_cpu_time(pid).map(|t| t.saturating_sub(t0)));
    }
}

/// Pumps events until every expected delivery arrived or none came for `drain`.
/// Returns when the last delivery arrived.
fn drain(engine: &mut Engine, expected: u64, drain: Duration) -> Result<Instant, BenchError> {
    let mut last = Instant::now();
    let mut seen = engine.stats.delivered;
    while engine.stats.delivered < expected && last.elapsed() < drain {
        engine.pump(Duration::from_millis(10))?;
        if engine.stats.delivered != seen {
            (seen, last) = (engine.stats.delivered, Instant::now());
        }
    }
    Ok(last)
}

fn fanout(common: &Common, load: Load, messages: u64, window: u64) -> Result<Report, BenchError> {
    let Load {
        receivers,
        senders,
        size,
        ..
    } = load;
    let connected = Load {
        senders: senders.max(1),
        ..load
    };
    let (mut engine, setup) = start(common, connected, window)?;
    let mut sent = vec![0u64; senders];
    let clock = Clock::start(common);
    let mut progress = (engine.stats.delivered, Instant::now());
    while sent.iter().any(|&n| n < messages) {
        for (s, n) in sent.iter_mut().enumerate() {
            while *n < messages && engine.can_send(s) {
                engine.send(s, *n, size);
                *n += 1;
            }
        }
        engine.pump(Duration::from_millis(1))?;
        if engine.stats.delivered != progress.0 {
            progress = (engine.stats.delivered, Instant::now());
        } else if progress.1.elapsed() > common.drain {
            // Deliveries stopped (receivers lost): what was not sent counts as lost.
            break;
        }
    }
    let began = clock.began;
    let expected = receivers as u64 * senders as u64 * messages;
    let last = drain(&mut engine, expected, common.drain)?;
    let mut report = Report::new("fanout", common, load);
    report.messages = messages;
    report.window = Some(window);
    clock.stop(&mut report);
    report.setup = setup;
    report.finish(&mut engine, expected, last.duration_since(began));
    Ok(report)
}

fn latency(
    common: &Common,
    load: Load,
    rate: u32,
    duration: Duration,
) -> Result<Report, BenchError> {
    let load = Load {
        senders: load.senders.max(1),
        ..load
    };
    let Load {
        receivers,
        senders,
        size,
        ..
    } = load;
    let (mut engine, setup) = start(common, load, u64::MAX)?;
    let clock = Clock::start(common);
    let began = clock.began;
    let mut sent = 0u64;
    let mut per_sender = vec![0u64; senders];
    while began.elapsed() < duration {
        let due = (began.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let s = (sent % senders as u64) as usize;
            engine.send(s, per_sender[s], size);
            per_sender[s] += 1;
            sent += 1;
        }
        engine.pump(Duration::from_millis(1))?;
    }
    let expected = receivers as u64 * sent;
    let last = drain(&mut engine, expected, common.drain)?;
    let mut report = Report::new("latency", common, load);
    report.messages = sent;
    report.rate = Some(rate);
    clock.stop(&mut report);
    report.setup = setup;
    report.finish(&mut engine, expected, last.duration_since(began));
    Ok(report)
}

fn idle(common: &Common, connections: usize, duration: Duration) -> Result<Report, BenchError> {
    let rss_before = common.server_pid.and_then(report::process_rss);
    let load = Load {
        receivers: connections,
        senders: 1,
        stalled: 0,
        size: 32,
    };
    let (mut engine, setup) = start(common, load, u64::MAX)?;
    let began = Instant::now();
    while began.elapsed() < duration {
        engine.pump(Duration::from_millis(100))?;
    }
    let rss_held = common.server_pid.and_then(report::process_rss);
    let clock = Clock::start(common);
    let sent_at = clock.began;
    engine.send(0, 0, load.size);
    let expected = connections as u64;
    let last = drain(&mut engine, expected, common.drain)?;
    let mut report = Report::new("idle", common, load);
    report.messages = 1;
    report.held = Some(duration);
    report.server_rss = rss_before.zip(rss_held);
    clock.stop(&mut report);
    report.setup = setup;
    report.finish(
        &mut engine,
        expected,
        last.saturating_duration_since(sent_at),
    );
    Ok(report)
}
