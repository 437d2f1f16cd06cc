//! The bench's results, for people or as one JSON line.

use std::fmt::Write as _;
use std::time::Duration;

use super::engine::Engine;
use super::stats::Latency;
use super::{Common, Load};

/// What a bench run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `fanout`, `latency` or `idle`.
    pub scenario: &'static str,
    /// `binary` or `text`.
    pub mode: &'static str,
    /// Receiving connections.
    pub receivers: usize,
    /// Sending connections.
    pub senders: usize,
    /// Messages sent in all (fanout: per sender).
    pub messages: u64,
    /// Message size in bytes (the stamp makes very small sizes longer).
    pub size: usize,
    /// The paced total rate, for `latency`.
    pub rate: Option<u32>,
    /// How long connections were held idle, for `idle`.
    pub held: Option<Duration>,
    /// Deliveries expected (receivers × messages).
    pub expected: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// Messages seen out of order (per receiver and sender).
    pub order_violations: u64,
    /// Jumps in the server's broadcast sequence (binary mode).
    pub seq_gaps: u64,
    /// Frames or lines the receivers could not decode.
    pub decode_errors: u64,
    /// Connections lost during the run.
    pub disconnects: u64,
    /// From the first send to the last delivery (idle: from the one send).
    pub elapsed: Duration,
    /// Connecting everyone until every receiver got a first message.
    pub setup: Duration,
    /// Connecting everyone (binary mode: handshakes included), the first part of
    /// `setup`.
    pub connect: Duration,
    /// Queue-to-receipt latency.
    pub latency: Latency,
    /// The bench process's CPU time, for the whole run (connecting included).
    pub cpu: Duration,
    /// The bench's CPU time while measuring (from the first send to the end of the
    /// drain).
    pub cpu_measured: Duration,
    /// The wall time while measuring, which `cpu_measured` is compared with.
    pub wall_measured: Duration,
    /// The server's CPU time while measuring, when its process id was given.
    pub server_cpu: Option<Duration>,
    /// Connections that never read.
    pub stalled: usize,
    /// For `idle` with a server pid: the server's resident memory in bytes before
    /// connecting and while holding the connections.
    pub server_rss: Option<(u64, u64)>,
    /// The flow-control window, for `fanout`.
    pub window: Option<u64>,
}

impl Report {
    pub(super) fn new(scenario: &'static str, common: &Common, load: Load) -> Self {
        Self {
            scenario,
            mode: if common.text { "text" } else { "binary" },
            receivers: load.receivers,
            senders: load.senders,
            size: load.size,
            stalled: load.stalled,
            ..Self::default()
        }
    }

    /// The share of one core the bench used while measuring; near 1 means the
    /// bench itself may have limited the rate.
    pub fn busy(&self) -> f64 {
        self.cpu_measured.as_secs_f64() / self.wall_measured.as_secs_f64().max(1e-9)
    }

    pub(super) fn finish(&mut self, engine: &mut Engine, expected: u64, elapsed: Duration) {
        self.expected = expected;
        self.delivered = engine.stats.delivered;
        self.order_violations = engine.stats.order_violations;
        self.seq_gaps = engine.stats.seq_gaps;
        self.decode_errors = engine.stats.decode_errors;
        self.disconnects = engine.disconnects;
        self.connect = engine.connected;
        self.latency = engine.stats.latency();
        self.elapsed = elapsed;
    }

    /// Deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Deliveries per second over the elapsed time.
    pub fn rate_per_s(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "{{\"scenario\":\"{}\",\"mode\":\"{}\",\"receivers\":{},\"senders\":{},\
             \"messages\":{},\"size\":{},\"expected\":{},\"delivered\":{},\"lost\":{},\
             \"order_violations\":{},\"seq_gaps\":{},\"decode_errors\":{},\"disconnects\":{},\
             \"connect_s\":{:.6},\"setup_s\":{:.6},\"elapsed_s\":{:.6},\"deliveries_per_s\":{:.1},\"latency_us\":{{\"p50\":{},\
             \"p99\":{},\"p999\":{},\"max\":{}}},\"bench_cpu_s\":{:.6},\"bench_busy\":{:.3}",
            self.scenario,
            self.mode,
            self.receivers,
            self.senders,
            self.messages,
            self.size,
            self.expected,
            self.delivered,
            self.lost(),
            self.order_violations,
            self.seq_gaps,
            self.decode_errors,
            self.disconnects,
            self.connect.as_secs_f64(),
            self.setup.as_secs_f64(),
            self.elapsed.as_secs_f64(),
            self.rate_per_s(),
            self.latency.p50,
            self.latency.p99,
            self.latency.p999,
            self.latency.max,
            self.cpu.as_secs_f64(),
            self.busy(),
        );
        if let Some(rate) = self.rate {
            let _ = write!(s, ",\"rate\":{rate}");
        }
        if let Some(window) = self.window {
            let _ = write!(s, ",\"window\":{window}");
        }
        let _ = write!(s, ",\"stalled\":{}", self.stalled);
        if let Some((before, held)) = self.server_rss {
            let _ = write!(
                s,
                ",\"server_rss_before_kib\":{},\"server_rss_held_kib\":{},\"server_rss_per_conn_kib\":{:.2}",
                before / 1024,
                held / 1024,
                self.rss_per_connection().unwrap_or(0.0) / 1024.0
            );
        }
        if let Some(cpu) = self.server_cpu {
            let _ = write!(
                s,
                ",\"server_cpu_s\":{:.3},\"server_busy\":{:.3}",
                cpu.as_secs_f64(),
                self.server_busy().unwrap_or(0.0)
            );
        }
        if let Some(held) = self.held {
            let _ = write!(s, ",\"held_s\":{:.3}", held.as_secs_f64());
        }
        s.push('}');
        s
    }

    /// The human-readable report, several lines.
    pub fn human(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.latency;
        let mut s = format!(
            "{} ({}): {} receivers, {} senders, {} messages{} of {} bytes{}\n",
            self.scenario,
            self.mode,
            self.receivers,
            self.senders,
            self.messages,
            if self.scenario == "fanout" {
                " each"
            } else {
                ""
            },
            self.size,
            self.rate
                .map_or(String::new(), |r| format!(", paced at {r}/s")),
        );
        let _ = writeln!(
            s,
            "  setup       {:.3} s to connect everyone ({} connections), {:.3} s to reach every receiver",
            self.connect.as_secs_f64(),
            self.receivers + self.senders + self.stalled,
            self.setup.as_secs_f64()
        );
        if let Some(held) = self.held {
            let _ = writeln!(
                s,
                "  held        {} connections for {}; afterwards {} of them received the message",
                self.receivers,
                humantime::format_duration(held),
                self.delivered
            );
        }
        let _ = writeln!(
            s,
            "  deliveries  {} of {} (lost {}) in {:.3} s: {:.0} deliveries/s",
            self.delivered,
            self.expected,
            self.lost(),
            self.elapsed.as_secs_f64(),
            self.rate_per_s()
        );
        let _ = writeln!(
            s,
            "  order       {} violations, {} sequence gaps, {} decode errors, {} disconnects",
            self.order_violations, self.seq_gaps, self.decode_errors, self.disconnects
        );
        let _ = writeln!(
            s,
            "  latency     p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            ms(l.p50),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        );
        let _ = write!(
            s,
            "  bench cpu   {:.3} s in all; {:.3} s while measuring, {:.0}% of one core",
            self.cpu.as_secs_f64(),
            self.cpu_measured.as_secs_f64(),
            100.0 * self.busy()
        );
        if self.busy() > 0.9 {
            s.push_str(" (the bench itself may have limited the rate)");
        }
        if let (Some(cpu), Some(busy)) = (self.server_cpu, self.server_busy()) {
            let _ = write!(
                s,
                "\n  server cpu  {:.3} s while measuring, {:.0}% of one core",
                cpu.as_secs_f64(),
                100.0 * busy
            );
        }
        if let (Some((before, held)), Some(per)) = (self.server_rss, self.rss_per_connection()) {
            let _ = write!(
                s,
                "\n  server rss  {:.1} MiB before connecting, {:.1} MiB holding them: {:.2} KiB per connection",
                before as f64 / 1048576.0,
                held as f64 / 1048576.0,
                per / 1024.0
            );
        }
        if self.stalled > 0 {
            let _ = write!(s, "\n  stalled     {} connections never read", self.stalled);
        }
        s
    }

    /// The server's resident memory per held connection in bytes, if measured.
    pub fn rss_per_connection(&self) -> Option<f64> {
        let (before, held) = self.server_rss?;
        let conns = (self.receivers + self.senders + self.stalled).max(1);
        Some(held.saturating_sub(before) as f64 / conns as f64)
    }

    /// The share of one core the server used while measuring, if known.
    pub fn server_busy(&self) -> Option<f64> {
        let wall = self.wall_measured.as_secs_f64().max(1e-9);
        self.server_cpu.map(|cpu| cpu.as_secs_f64() / wall)
    }
}

/// The CPU time (user and system) process `pid` has used so far, from
/// `/proc/PID/stat`; `None` if it cannot be read.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ').skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    // /proc reports clock ticks of USER_HZ, which Linux fixes at 100 on the
    // architectures this runs on.
    Some(Duration::from_millis((user + system) * 10))
}

/// The resident memory of process `pid` in bytes (`VmRSS` of `/proc/PID/status`);
/// `None` if it cannot be read.
pub fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The CPU time this process has used so far.
pub fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
