//! The bench's results, for people or as one JSON line.

use std::time::Duration;

use serde::Serialize;

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
    /// Commands the server answered with an error (Redis pub/sub: PUBLISH refused).
    pub refused: u64,
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
            mode: common.wire().name(),
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
        self.share_of_core(self.cpu_measured)
    }

    pub(super) fn finish(&mut self, engine: &mut Engine, expected: u64, elapsed: Duration) {
        self.expected = expected;
        self.delivered = engine.stats.delivered;
        self.order_violations = engine.stats.order_violations;
        self.seq_gaps = engine.stats.seq_gaps;
        self.decode_errors = engine.stats.decode_errors;
        self.refused = engine.stats.refused;
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

    /// One JSON object on one line; keys for what was not measured are left out.
    pub fn json(&self) -> String {
        let server_rss = self.server_rss.map(|(before, held)| RssJson {
            server_rss_before_kib: before / 1024,
            server_rss_held_kib: held / 1024,
            server_rss_per_conn_kib: self.per_connection(before, held) / 1024.0,
        });
        let server_cpu = self.server_cpu.map(|cpu| CpuJson {
            server_cpu_s: cpu.as_secs_f64(),
            server_busy: self.share_of_core(cpu),
            server_cpu_ns_per_delivery: self.server_ns_per_delivery(),
        });
        let json = Json {
            scenario: self.scenario,
            mode: self.mode,
            receivers: self.receivers,
            senders: self.senders,
            messages: self.messages,
            size: self.size,
            expected: self.expected,
            delivered: self.delivered,
            lost: self.lost(),
            order_violations: self.order_violations,
            seq_gaps: self.seq_gaps,
            decode_errors: self.decode_errors,
            refused: self.refused,
            disconnects: self.disconnects,
            connect_s: self.connect.as_secs_f64(),
            setup_s: self.setup.as_secs_f64(),
            elapsed_s: self.elapsed.as_secs_f64(),
            deliveries_per_s: self.rate_per_s(),
            latency_us: self.latency,
            bench_cpu_s: self.cpu.as_secs_f64(),
            bench_busy: self.busy(),
            rate: self.rate,
            window: self.window,
            stalled: self.stalled,
            server_rss,
            server_cpu,
            held_s: self.held.map(|h| h.as_secs_f64()),
        };
        // Every field is a number, a string or a struct of them: nothing can fail.
        serde_json::to_string(&json).unwrap_or_else(|e| unreachable!("bench report as JSON: {e}"))
    }

    /// The human-readable report, several lines.
    pub fn human(&self) -> String {
        let mut lines = vec![self.headline(), self.setup_line()];
        lines.extend(self.held_line());
        lines.push(self.deliveries_line());
        let refused = match self.refused {
            0 => String::new(),
            n => format!(", {n} commands refused"),
        };
        lines.push(format!(
            "  order       {} violations, {} sequence gaps, {} decode errors{refused}, {} disconnects",
            self.order_violations, self.seq_gaps, self.decode_errors, self.disconnects
        ));
        let ms = |us: u64| us as f64 / 1000.0;
        let l = &self.latency;
        lines.push(format!(
            "  latency     p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            ms(l.p50),
            ms(l.p99),
            ms(l.p999),
            ms(l.max)
        ));
        lines.push(self.bench_cpu_line());
        lines.extend(self.server_lines());
        if self.stalled > 0 {
            lines.push(format!(
                "  stalled     {} connections never read",
                self.stalled
            ));
        }
        lines.join("\n")
    }

    /// What ran: scenario, mode, connections and messages.
    fn headline(&self) -> String {
        let each = if self.scenario == "fanout" {
            " each"
        } else {
            ""
        };
        let paced = self
            .rate
            .map_or(String::new(), |r| format!(", paced at {r}/s"));
        format!(
            "{} ({}): {} receivers, {} senders, {} messages{each} of {} bytes{paced}",
            self.scenario, self.mode, self.receivers, self.senders, self.messages, self.size,
        )
    }

    fn setup_line(&self) -> String {
        format!(
            "  setup       {:.3} s to connect everyone ({} connections), {:.3} s to reach every receiver",
            self.connect.as_secs_f64(),
            self.receivers + self.senders + self.stalled,
            self.setup.as_secs_f64()
        )
    }

    fn held_line(&self) -> Option<String> {
        self.held.map(|held| {
            format!(
                "  held        {} connections for {}; afterwards {} of them received the message",
                self.receivers,
                humantime::format_duration(held),
                self.delivered
            )
        })
    }

    fn deliveries_line(&self) -> String {
        format!(
            "  deliveries  {} of {} (lost {}) in {:.3} s: {:.0} deliveries/s",
            self.delivered,
            self.expected,
            self.lost(),
            self.elapsed.as_secs_f64(),
            self.rate_per_s()
        )
    }

    fn bench_cpu_line(&self) -> String {
        let mut line = format!(
            "  bench cpu   {:.3} s in all; {:.3} s while measuring, {:.0}% of one core",
            self.cpu.as_secs_f64(),
            self.cpu_measured.as_secs_f64(),
            100.0 * self.busy()
        );
        if self.busy() > 0.9 {
            line.push_str(" (the bench itself may have limited the rate)");
        }
        line
    }

    /// The server's CPU and memory, for what was measured.
    fn server_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(cpu) = self.server_cpu {
            let mut line = format!(
                "  server cpu  {:.3} s while measuring, {:.0}% of one core",
                cpu.as_secs_f64(),
                100.0 * self.share_of_core(cpu)
            );
            if let Some(ns) = self.server_ns_per_delivery() {
                line.push_str(&format!(", {ns:.0} ns per delivery"));
            }
            lines.push(line);
        }
        if let Some((before, held)) = self.server_rss {
            lines.push(format!(
                "  server rss  {:.1} MiB before connecting, {:.1} MiB holding them: {:.2} KiB per connection",
                before as f64 / 1048576.0,
                held as f64 / 1048576.0,
                self.per_connection(before, held) / 1024.0
            ));
        }
        lines
    }

    /// The server's resident memory per held connection in bytes, if measured.
    pub fn rss_per_connection(&self) -> Option<f64> {
        self.server_rss
            .map(|(before, held)| self.per_connection(before, held))
    }

    fn per_connection(&self, rss_before: u64, rss_held: u64) -> f64 {
        let conns = (self.receivers + self.senders + self.stalled).max(1);
        rss_held.saturating_sub(rss_before) as f64 / conns as f64
    }

    /// The server's CPU time while measuring per delivery received, in
    /// nanoseconds: what a delivery cost it, comparable across servers and runs
    /// of different speeds.
    pub fn server_ns_per_delivery(&self) -> Option<f64> {
        let cpu = self.server_cpu?;
        (self.delivered > 0).then(|| cpu.as_nanos() as f64 / self.delivered as f64)
    }

    /// The share of one core the server used while measuring, if known.
    pub fn server_busy(&self) -> Option<f64> {
        self.server_cpu.map(|cpu| self.share_of_core(cpu))
    }

    fn share_of_core(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.wall_measured.as_secs_f64().max(1e-9)
    }
}

/// The `--json` line: [`Report`]'s fields under stable names, durations in seconds.
#[derive(Serialize)]
struct Json<'a> {
    scenario: &'a str,
    mode: &'a str,
    receivers: usize,
    senders: usize,
    messages: u64,
    size: usize,
    expected: u64,
    delivered: u64,
    lost: u64,
    order_violations: u64,
    seq_gaps: u64,
    decode_errors: u64,
    refused: u64,
    disconnects: u64,
    connect_s: f64,
    setup_s: f64,
    elapsed_s: f64,
    deliveries_per_s: f64,
    latency_us: Latency,
    bench_cpu_s: f64,
    bench_busy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<u64>,
    stalled: usize,
    #[serde(flatten)]
    server_rss: Option<RssJson>,
    #[serde(flatten)]
    server_cpu: Option<CpuJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    held_s: Option<f64>,
}

/// The server's memory, for `idle` with `--server-pid`.
#[derive(Serialize)]
struct RssJson {
    server_rss_before_kib: u64,
    server_rss_held_kib: u64,
    server_rss_per_conn_kib: f64,
}

/// The server's CPU time while measuring, with `--server-pid`.
#[derive(Serialize)]
struct CpuJson {
    server_cpu_s: f64,
    server_busy: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_ns_per_delivery: Option<f64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn idle_report() -> Report {
        Report {
            scenario: "idle",
            mode: "text",
            receivers: 99,
            senders: 1,
            messages: 1,
            size: 32,
            held: Some(Duration::from_secs(2)),
            expected: 99,
            delivered: 98,
            elapsed: Duration::from_millis(250),
            latency: Latency {
                p50: 1500,
                p99: 2500,
                p999: 2600,
                max: 2600,
            },
            wall_measured: Duration::from_secs(1),
            server_cpu: Some(Duration::from_millis(500)),
            server_rss: Some((1 << 20, (1 << 20) + 100 * 1024)),
            ..Report::default()
        }
    }

    #[test]
    fn json_names_every_figure_and_leaves_out_what_was_not_measured() {
        let v: serde_json::Value = serde_json::from_str(&idle_report().json()).unwrap();
        assert_eq!(v["scenario"], "idle");
        assert_eq!(
            (v["expected"].as_u64(), v["lost"].as_u64()),
            (Some(99), Some(1))
        );
        assert_eq!(v["latency_us"]["p99"], 2500);
        assert_eq!(v["held_s"], 2.0);
        assert_eq!(v["server_busy"], 0.5);
        assert_eq!(
            v["server_cpu_ns_per_delivery"].as_f64().map(f64::round),
            Some(5102041.0)
        );
        assert_eq!(v["server_rss_held_kib"], 1124);
        assert_eq!(v["server_rss_per_conn_kib"], 1.0);
        assert_eq!(v["deliveries_per_s"], 392.0);
        for absent in ["rate", "window"] {
            assert!(v.get(absent).is_none(), "{absent}: {v}");
        }
        let bare: serde_json::Value = serde_json::from_str(&Report::default().json()).unwrap();
        for absent in [
            "held_s",
            "server_cpu_s",
            "server_busy",
            "server_rss_before_kib",
        ] {
            assert!(bare.get(absent).is_none(), "{absent}: {bare}");
        }
    }

    #[test]
    fn human_report_says_what_was_measured_line_by_line() {
        let text = idle_report().human();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "idle (text): 99 receivers, 1 senders, 1 messages of 32 bytes"
        );
        assert_eq!(
            lines[2],
            "  held        99 connections for 2s; afterwards 98 of them received the message"
        );
        assert_eq!(
            lines[3],
            "  deliveries  98 of 99 (lost 1) in 0.250 s: 392 deliveries/s"
        );
        assert_eq!(
            lines[5],
            "  latency     p50 1.500 ms, p99 2.500 ms, p99.9 2.600 ms, max 2.600 ms"
        );
        assert_eq!(
            lines[7],
            "  server cpu  0.500 s while measuring, 50% of one core, 5102041 ns per delivery"
        );
        assert!(lines[8].ends_with("1.00 KiB per connection"), "{text}");
        assert_eq!(lines.len(), 9, "{text}");
        assert!(!Report::default().human().contains("server"));
    }
}
