//! Several servers forming one room over a Redis backplane. Every test starts its own
//! `redis-server` on a free loopback port (Debian package `redis-server`; `.ci/run`
//! installs it), and its servers with `--backplane`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::relay::{Mode, Relay};
use crate::util::{free_port, BinClient, Client, Got, Server, TextClient, WAIT};

/// A `redis-server` of a test's own, on a free loopback port, with its files in a
/// scratch directory removed when it is dropped.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    aof: bool,
}

impl Redis {
    /// Starts a Redis with the append-only file on (`appendfsync everysec`).
    pub fn start() -> Self {
        Self::start_with(true)
    }

    /// Starts a Redis keeping nothing on disk.
    pub fn start_volatile() -> Self {
        Self::start_with(false)
    }

    fn start_with(aof: bool) -> Self {
        let port = free_port();
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "chat-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir for redis");
        let mut redis = Self {
            child: None,
            port,
            dir,
            aof,
        };
        redis.launch();
        redis
    }

    /// Starts (again) a redis-server on this port and directory.
    fn launch(&mut self) {
        let appendonly = if self.aof { "yes" } else { "no" };
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", appendonly])
            .args(["--appendfsync", "everysec", "--daemonize", "no"])
            .args(["--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (Debian: apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL servers are given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against this Redis; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// SIGKILLs the redis-server and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (so with the same AOF if on).
    pub fn restart(&mut self) {
        self.launch();
    }

    /// Sends the redis-server signal `sig` (STOP freezes it, CONT wakes it).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} failed");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A host-server in the room at `url`, with extra arguments.
fn server(url: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--backplane", url];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Everything a client received, in order.
#[derive(Debug, Default)]
struct Log {
    /// (seq, peer, text) of broadcasts, and (seq, "", "") for acks of its own.
    seqs: Vec<(u64, String, String)>,
    acks: usize,
    notices: Vec<String>,
    /// The error codes of the notices, `None` for a notice that is not an error.
    codes: Vec<Option<u8>>,
    ended: Option<String>,
}

impl Log {
    fn chats(&self) -> usize {
        self.seqs.len() - self.acks
    }

    fn take(&mut self, got: Got) {
        match got {
            Got::Chat { seq, peer, text } => self.seqs.push((seq, peer, text)),
            Got::Ack { seq } => {
                self.acks += 1;
                self.seqs.push((seq, String::new(), String::new()));
            }
            Got::Notice { code, text } => {
                self.notices.push(text);
                self.codes.push(code);
            }
            Got::Other(_) => {}
            Got::End(why) => self.ended = Some(why),
        }
    }
}

/// Reads `client` until `done` says its log is complete or the connection ends;
/// fails after `limit` without progress.
fn read_until(client: &BinClient, log: &mut Log, limit: Duration, done: impl Fn(&Log) -> bool) {
    while !done(log) && log.ended.is_none() {
        match client.rx.recv_timeout(limit) {
            Ok(got) => log.take(got),
            Err(_) => panic!(
                "stalled: {} chats, {} acks, notices {:?}",
                log.chats(),
                log.acks,
                log.notices
            ),
        }
    }
}

/// Checks the logs of clients that were all in the room for the whole run: each saw
/// one contiguous run of sequence numbers (its own messages as acks), all agree on
/// what each number is, nobody got its own message back, every ack is of a message of
/// its own, and every sender's lines ("SENDER N") are in the room in its send order,
/// none twice. Returns the room's messages by sequence number.
fn one_order(logs: &[(String, &Log)]) -> BTreeMap<u64, (String, String)> {
    let mut room: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for (me, log) in logs {
        for w in log.seqs.windows(2) {
            assert_eq!(
                w[1].0,
                w[0].0 + 1,
                "{me}: {} followed by {}",
                w[0].0,
                w[1].0
            );
        }
        for (seq, peer, text) in log.seqs.iter().filter(|s| !s.1.is_empty()) {
            assert_ne!(peer, me, "{me}: its own message came back");
            let first = room
                .entry(*seq)
                .or_insert_with(|| (peer.clone(), text.clone()));
            assert_eq!(
                first,
                &(peer.clone(), text.clone()),
                "{me}: clients disagree on {seq}"
            );
        }
    }
    for (me, log) in logs {
        for (seq, _, _) in log.seqs.iter().filter(|s| s.1.is_empty()) {
            let (peer, _) = room
                .get(seq)
                .unwrap_or_else(|| panic!("{me}: ack {seq} of nothing"));
            assert_eq!(peer, me, "{me}: acked another's message {seq}");
        }
    }
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (seq, (_, text)) in &room {
        let (sender, n) = text.split_once(' ').expect("numbered line");
        let n: u64 = n.parse().expect("line number");
        if let Some(before) = last.insert(sender, n) {
            assert!(
                n > before,
                "{sender}: line {n} after line {before} (at {seq})"
            );
        }
    }
    room
}

/// One client of a run, as [`check_room`] judges it.
struct Run<'a> {
    peer: String,
    /// The lines it sent, in order ("SENDER N", see [`numbered`]).
    sent: &'a [String],
    log: &'a Log,
}

impl<'a> Run<'a> {
    fn of(client: &BinClient, sent: &'a [String], log: &'a Log) -> Self {
        Run {
            peer: client.peer(),
            sent,
            log,
        }
    }
}

/// The checker of the room's promise, for a run in which every client joined before
/// anything was sent:
/// - every client's numbers are one contiguous run (its own messages as acks), all
///   agree on what each number is, nobody gets its own message, senders' lines are in
///   send order (see [`one_order`]);
/// - a client whose connection ended was told why: an error notice it can read;
/// - every message in the room was acknowledged to its sender and received by every
///   client still connected at the end;
/// - every message not in the room was reported not delivered to its sender (the
///   counts of refused messages match), so a sender to the end heard of each of its
///   messages exactly once: an ack or a refusal.
///
/// Returns the room's messages by sequence number.
fn check_room(runs: &[Run<'_>]) -> BTreeMap<u64, (String, String)> {
    let named: Vec<(String, &Log)> = runs.iter().map(|r| (r.peer.clone(), r.log)).collect();
    let room = one_order(&named);
    for r in runs {
        let me = &r.peer;
        if let Some(why) = &r.log.ended {
            assert!(
                r.log
                    .codes
                    .iter()
                    .any(|c| matches!(c, Some(c) if *c != 10 && *c != 13)),
                "{me}: connection ended ({why}) without a notice saying why: {:?}",
                r.log.notices
            );
            continue;
        }
        let others = room.values().filter(|(peer, _)| peer != me).count();
        assert_eq!(r.log.chats(), others, "{me}: missed messages of the room");
        let mine = room.values().filter(|(peer, _)| peer == me).count();
        assert_eq!(r.log.acks, mine, "{me}: acks");
        let lost = r.sent.len() - mine;
        assert_eq!(
            refused(r.log),
            lost,
            "{me}: {lost} of its messages are not in the room; notices {:?}",
            r.log.notices
        );
    }
    room
}

/// Sends `lines` on a clone of `client`'s stream from a thread of its own.
fn flood(client: &BinClient, lines: Vec<String>) -> thread::JoinHandle<()> {
    paced(client, lines, Duration::ZERO)
}

/// As [`flood`], pausing `pause` after every ten lines.
fn paced(client: &BinClient, lines: Vec<String>, pause: Duration) -> thread::JoinHandle<()> {
    let mut stream = client.stream.try_clone().unwrap();
    thread::spawn(move || {
        for (n, line) in lines.iter().enumerate() {
            if n % 10 == 9 {
                thread::sleep(pause);
            }
            let mut w = embedded_io_adapters::std::FromStd::new(&mut stream);
            if proto_core::write_frame(&mut w, &proto_core::Frame::Chat { text: line }).is_err() {
                return;
            }
        }
    })
}

fn numbered(sender: usize, count: usize) -> Vec<String> {
    (0..count).map(|n| format!("c{sender} {n}")).collect()
}

#[test]
fn one_order_across_three_servers() {
    const EACH: usize = 500;
    let redis = Redis::start();
    let servers: Vec<Server> = (0..3).map(|_| server(&redis.url(), &[])).collect();
    let clients: Vec<BinClient> = servers
        .iter()
        .flat_map(|s| [BinClient::join(s.addr), BinClient::join(s.addr)])
        .collect();
    let lines: Vec<Vec<String>> = (0..clients.len()).map(|i| numbered(i, EACH)).collect();
    let senders: Vec<_> = clients
        .iter()
        .zip(&lines)
        .map(|(c, l)| flood(c, l.clone()))
        .collect();
    let want = (clients.len() - 1) * EACH;
    let mut logs: Vec<Log> = clients.iter().map(|_| Log::default()).collect();
    for (c, log) in clients.iter().zip(&mut logs) {
        read_until(c, log, WAIT, |l| l.chats() == want && l.acks == EACH);
    }
    senders.into_iter().for_each(|s| s.join().unwrap());
    let named: Vec<(String, &Log)> = clients.iter().map(|c| c.peer()).zip(&logs).collect();
    let room = one_order(&named);
    assert_eq!(room.len(), clients.len() * EACH);
    // One run of numbers: the first message of the room is number 1.
    assert_eq!(room.keys().next(), Some(&1));
    assert_eq!(room.keys().last(), Some(&((clients.len() * EACH) as u64)));
}

/// The server ids registered in the room `lobby`, and its epoch.
fn room_ids(redis: &Redis) -> (Vec<String>, String) {
    let servers = redis.cli(&["SMEMBERS", "{room:lobby}:servers"]);
    let epoch = redis.cli(&["GET", "{room:lobby}:epoch"]);
    (servers.lines().map(str::to_string).collect(), epoch)
}

#[test]
fn a_dead_server_loses_only_its_own_clients() {
    const EACH: usize = 300;
    let redis = Redis::start();
    let (a, mut b, c) = (
        server(&redis.url(), &[]),
        server(&redis.url(), &[]),
        server(&redis.url(), &[]),
    );
    let (a1, b1, c1) = (
        BinClient::join(a.addr),
        BinClient::join(b.addr),
        BinClient::join(c.addr),
    );
    let lines = [numbered(0, EACH), numbered(2, EACH)];
    let senders = [flood(&a1, lines[0].clone()), flood(&c1, lines[1].clone())];
    let mut b_log = Log::default();
    read_until(&b1, &mut b_log, WAIT, |l| l.chats() >= 50);
    b.proc.signal("KILL");
    read_until(&b1, &mut b_log, WAIT, |_| false);
    assert!(b_log.ended.is_some(), "b's client still connected");
    let mut logs = [Log::default(), Log::default()];
    for (client, log) in [&a1, &c1].into_iter().zip(&mut logs) {
        read_until(client, log, WAIT, |l| l.chats() == EACH && l.acks == EACH);
    }
    senders.into_iter().for_each(|s| s.join().unwrap());
    let named = [(a1.peer(), &logs[0]), (c1.peer(), &logs[1])];
    assert_eq!(one_order(&named).len(), 2 * EACH);
    // b's client comes back through another server and is heard everywhere.
    let mut back = BinClient::join(a.addr);
    back.say("c9 0");
    for client in [&a1, &c1] {
        client.expect(|g| matches!(g, Got::Chat { text, .. } if text == "c9 0"));
    }
    b.proc.wait_exit(WAIT);
}

#[test]
fn entries_the_room_did_not_write_are_skipped() {
    let redis = Redis::start();
    let (a, b) = (server(&redis.url(), &[]), server(&redis.url(), &[]));
    let (mut a1, mut b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    a1.say("before");
    let Got::Chat { seq: before, .. } =
        b1.expect(|g| matches!(g, Got::Chat { text, .. } if text == "before"))
    else {
        unreachable!()
    };
    let (servers, epoch) = room_ids(&redis);
    let real = servers[0].as_str();
    let long = "x".repeat(proto_core::MAX_MESSAGE + 1);
    let stream = "{room:lobby}:stream";
    let forged: [&[&str]; 5] = [
        &["junk", "1"],
        &[
            "e",
            &epoch,
            "o",
            real,
            "c",
            "1",
            "p",
            "1.2.3.4:5",
            "b",
            &long,
        ],
        &[
            "e",
            &epoch,
            "o",
            "intruder",
            "c",
            "1",
            "p",
            "6.6.6.6:6",
            "b",
            "forged",
        ],
        &[
            "e",
            "bogus",
            "o",
            real,
            "c",
            "1",
            "p",
            "6.6.6.6:6",
            "b",
            "forged",
        ],
        &[
            "e",
            &epoch,
            "o",
            real,
            "c",
            "nope",
            "p",
            "not an address",
            "b",
            "forged",
        ],
    ];
    for fields in forged {
        let mut args = vec!["XADD", stream, "0-*"];
        args.extend_from_slice(fields);
        assert!(redis.cli(&args).starts_with("0-"), "XADD {fields:?}");
    }
    a1.say("after");
    let want = before + 1 + forged.len() as u64;
    let mut log = Log::default();
    read_until(&b1, &mut log, WAIT, |l| l.chats() == 1);
    assert_eq!(log.seqs, [(want, a1.peer(), "after".to_string())]);
    // Both servers logged each entry and still relay both ways.
    for s in [&a, &b] {
        for n in 1..=forged.len() as u64 {
            let id = format!("entry 0-{} skipped", before + n);
            s.proc.err.expect(&id, |l| l.contains(&id));
        }
    }
    b1.say("reply");
    a1.expect(|g| matches!(g, Got::Chat { text, .. } if text == "reply"));
}

/// Two servers with a client each that have heard ten messages; `lose` makes Redis
/// lose the room. Every client is told the room was reset and disconnected, and the
/// room numbers on above what anyone saw.
fn room_lost_is_a_readable_reset(mut redis: Redis, lose: impl FnOnce(&mut Redis)) {
    let (a, b) = (server(&redis.url(), &[]), server(&redis.url(), &[]));
    let (mut a1, b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    for n in 0..10 {
        a1.say(&format!("c0 {n}"));
    }
    let mut logs = [Log::default(), Log::default()];
    read_until(&a1, &mut logs[0], WAIT, |l| l.acks == 10);
    read_until(&b1, &mut logs[1], WAIT, |l| l.chats() == 10);
    lose(&mut redis);
    for (client, log) in [&a1, &b1].into_iter().zip(&mut logs) {
        read_until(client, log, WAIT, |_| false);
        assert!(
            log.notices.iter().any(|n| n.contains("room was reset")),
            "no reset notice: {:?}",
            log.notices
        );
        assert!(
            log.seqs.windows(2).all(|w| w[0].0 < w[1].0),
            "{:?}",
            log.seqs
        );
    }
    numbering_goes_on_above(&a, &b, 10);
}

/// New clients of `a` and `b` after a reset: a message between them is numbered above
/// `delivered`, what clients had seen before.
fn numbering_goes_on_above(a: &Server, b: &Server, delivered: u64) {
    let (mut a2, b2) = (BinClient::join(a.addr), BinClient::join(b.addr));
    a2.say("fresh");
    let Got::Chat { seq, .. } =
        b2.expect(|g| matches!(g, Got::Chat { text, .. } if text == "fresh"))
    else {
        unreachable!()
    };
    assert!(seq > delivered, "numbering went back to {seq}");
}

#[test]
fn redis_restarted_without_its_data_resets_the_room() {
    room_lost_is_a_readable_reset(Redis::start_volatile(), |redis| {
        redis.kill();
        redis.restart();
    });
}

#[test]
fn the_stream_key_deleted_resets_the_room() {
    room_lost_is_a_readable_reset(Redis::start(), |redis| {
        assert_eq!(redis.cli(&["DEL", "{room:lobby}:stream"]), "1");
    });
}

/// Makes the room's stream what an older copy of it would be (an older snapshot, a
/// replica that missed writes): entries after `to` gone and its last ID `0-to`, the
/// epoch untouched.
fn rewind(redis: &Redis, to: u64) {
    let epoch = redis.cli(&["GET", "{room:lobby}:epoch"]);
    let stream = "{room:lobby}:stream";
    let top: u64 = redis
        .cli(&["XINFO", "STREAM", stream])
        .lines()
        .skip_while(|l| *l != "last-generated-id")
        .nth(1)
        .and_then(|id| id.strip_prefix("0-")?.parse().ok())
        .expect("the stream's last ID");
    let ids: Vec<String> = (to + 1..=top).map(|n| format!("0-{n}")).collect();
    let mut del = vec!["XDEL", stream];
    del.extend(ids.iter().map(String::as_str));
    redis.cli(&del);
    assert_eq!(redis.cli(&["XSETID", stream, &format!("0-{to}")]), "OK");
    assert_eq!(redis.cli(&["GET", "{room:lobby}:epoch"]), epoch);
}

/// Two servers with a client each that have heard ten messages; the stream is rewound
/// to `0-5` with its epoch kept, and `then` runs. Every client is told the room was
/// reset (code 11) and disconnected, none gets a number twice or a message from the
/// old copy, and the room numbers on above anything delivered.
fn rewound_room_is_a_reset(then: impl FnOnce(&Redis, &mut BinClient, &[String])) {
    let redis = Redis::start();
    let (a, b) = (server(&redis.url(), &[]), server(&redis.url(), &[]));
    let (mut a1, b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    let lines = numbered(0, 20);
    for line in &lines[..10] {
        a1.say(line);
    }
    let mut logs = [Log::default(), Log::default()];
    read_until(&a1, &mut logs[0], WAIT, |l| l.acks == 10);
    read_until(&b1, &mut logs[1], WAIT, |l| l.chats() == 10);
    rewind(&redis, 5);
    then(&redis, &mut a1, &lines[10..]);
    for (client, log) in [&a1, &b1].into_iter().zip(&mut logs) {
        read_until(client, log, WAIT, |_| false);
        let reset = log.notices.iter().zip(&log.codes);
        assert!(
            reset
                .clone()
                .any(|(n, c)| *c == Some(11) && n.starts_with("room was reset")),
            "no reset notice: {:?}",
            log.notices
        );
    }
    // Whatever a1 sent after the rewind reached nobody: it was refused.
    let runs = [Run::of(&a1, &lines, &logs[0]), Run::of(&b1, &[], &logs[1])];
    assert_eq!(check_room(&runs).len(), 10);
    assert_eq!(logs[1].chats(), 10, "b1 got messages after the rewind");
    numbering_goes_on_above(&a, &b, 10);
}

#[test]
fn a_stream_rewound_with_its_epoch_kept_refuses_appends_below_what_was_delivered() {
    // Sent at once, long before the readers' periodic check: the append script
    // itself must refuse to number them 6, 7, ... again.
    rewound_room_is_a_reset(|_, a1, lines| {
        for line in lines {
            a1.say(line);
        }
    });
}

#[test]
fn a_stream_rewound_with_its_epoch_kept_is_found_by_the_readers() {
    rewound_room_is_a_reset(|_, _, _| {});
}

#[test]
fn a_stream_whose_entry_at_the_cursor_was_replaced_is_a_reset() {
    // Another copy of the room with other messages 6 to 10 (written by the same
    // server, as a server started after the rewind would): the last ID is where the
    // readers are, but the entry there is not the one they read.
    rewound_room_is_a_reset(|redis, _, _| {
        let (servers, epoch) = room_ids(redis);
        let c = redis.cli(&["XREVRANGE", "{room:lobby}:stream", "+", "-", "COUNT", "1"]);
        let client = c
            .lines()
            .skip_while(|l| *l != "c")
            .nth(1)
            .unwrap()
            .to_string();
        for n in 6..=10 {
            let body = format!("other {n}");
            let fields = [
                "e",
                &epoch,
                "o",
                &servers[0],
                "c",
                &client,
                "p",
                "10.0.0.1:1",
                "b",
                &body,
            ];
            let mut args = vec!["XADD", "{room:lobby}:stream", "0-*"];
            args.extend_from_slice(&fields);
            assert_eq!(redis.cli(&args), format!("0-{n}"));
        }
    });
}

/// How many of its messages a client was told were not delivered (error code 10).
fn refused(log: &Log) -> usize {
    log.notices
        .iter()
        .zip(&log.codes)
        .filter(|(_, code)| **code == Some(10))
        .filter_map(|(n, _)| {
            let rest = n.strip_prefix("error: ")?;
            let (count, why) = rest.split_once(' ')?;
            why.contains("not delivered")
                .then(|| count.parse::<usize>().ok())?
        })
        .sum()
}

/// The number of entries in the room's stream.
fn stream_len(redis: &Redis) -> usize {
    let len = redis.cli(&["XLEN", "{room:lobby}:stream"]);
    len.parse().unwrap_or_else(|_| panic!("XLEN: {len:?}"))
}

/// Six clients on three servers each send 500 lines over about a second; Redis is
/// killed (SIGKILL) in the middle and started again with its append-only file after
/// `outage`. Every message is either in the one order everywhere, once, or its sender
/// was told it was not delivered. Returns how many were refused.
fn flood_through_a_redis_restart(outage: Duration, extra: &[&str]) -> usize {
    const EACH: usize = 500;
    let mut redis = Redis::start();
    let servers: Vec<Server> = (0..3).map(|_| server(&redis.url(), extra)).collect();
    let clients: Vec<BinClient> = servers
        .iter()
        .flat_map(|s| [BinClient::join(s.addr), BinClient::join(s.addr)])
        .collect();
    let lines: Vec<Vec<String>> = (0..clients.len()).map(|i| numbered(i, EACH)).collect();
    let senders: Vec<_> = clients
        .iter()
        .zip(&lines)
        .map(|(c, l)| paced(c, l.clone(), Duration::from_millis(20)))
        .collect();
    let mut logs: Vec<Log> = clients.iter().map(|_| Log::default()).collect();
    read_until(&clients[0], &mut logs[0], WAIT, |l| l.chats() >= 300);
    redis.kill();
    thread::sleep(outage);
    redis.restart();
    // Every sender hears of each of its messages: an ack, or a not-delivered notice.
    for (c, log) in clients.iter().zip(&mut logs) {
        read_until(c, log, WAIT, |l| l.acks + refused(l) == EACH);
    }
    let appended: usize = logs.iter().map(|l| l.acks).sum();
    for (c, log) in clients.iter().zip(&mut logs) {
        let want = appended - log.acks;
        read_until(c, log, WAIT, |l| l.chats() == want);
    }
    senders.into_iter().for_each(|s| s.join().unwrap());
    // Nothing arrives late: a last message is the next number everywhere, and the
    // stream holds exactly what was acknowledged and that one (a refused or retried
    // append appearing later would be an entry more).
    let mut last = BinClient::join(servers[1].addr);
    last.say("c9 0");
    for (c, log) in clients.iter().zip(&mut logs) {
        read_until(c, log, WAIT, |l| l.chats() + l.acks == appended + 1);
        let tail = &log.seqs[log.seqs.len().saturating_sub(3)..];
        assert_eq!(tail.last().map(|s| s.2.as_str()), Some("c9 0"), "{tail:?}");
    }
    assert_eq!(stream_len(&redis), appended + 1, "entries in the stream");
    for log in &mut logs {
        log.seqs.pop();
    }
    let runs: Vec<Run<'_>> = clients
        .iter()
        .zip(&lines)
        .zip(&logs)
        .map(|((c, sent), log)| Run {
            peer: c.peer(),
            sent,
            log,
        })
        .collect();
    let room = check_room(&runs);
    assert_eq!(room.len(), appended);
    assert!(
        appended > 300 && appended <= 6 * EACH,
        "appended {appended}"
    );
    let refused: usize = logs.iter().map(refused).sum();
    eprintln!("appended {appended}, refused {refused}");
    refused
}

#[test]
fn redis_killed_and_restarted_mid_flood_loses_nothing() {
    let refused = flood_through_a_redis_restart(Duration::from_millis(300), &[]);
    assert_eq!(
        refused, 0,
        "a restart within the append timeout refuses nothing"
    );
}

#[test]
fn messages_that_cannot_wait_out_a_redis_restart_are_refused_with_a_notice() {
    let refused = flood_through_a_redis_restart(
        Duration::from_millis(1500),
        &["--backplane-append-timeout-ms", "300"],
    );
    assert!(refused > 0, "nothing refused in a 1.5 s outage");
}

#[test]
fn a_server_behind_what_the_stream_keeps_disconnects_its_clients_with_a_notice() {
    let redis = Redis::start();
    let retain = ["--backplane-retain", "100", "--backplane-batch", "16"];
    let (a, b) = (server(&redis.url(), &retain), server(&redis.url(), &retain));
    let (a1, b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    b.proc.signal("STOP");
    // Paced so that a, whose reader runs, keeps up with the trimming.
    paced(&a1, numbered(0, 1000), Duration::from_millis(5))
        .join()
        .unwrap();
    let mut a_log = Log::default();
    read_until(&a1, &mut a_log, WAIT, |l| l.acks == 1000);
    // (b1's join may be among them: the roster is room-wide.)
    assert!(
        a_log.codes.iter().all(Option::is_none),
        "{:?}",
        a_log.notices
    );
    let kept: usize = redis.cli(&["XLEN", "{room:lobby}:stream"]).parse().unwrap();
    assert!(kept < 1000, "the stream kept {kept}");
    b.proc.signal("CONT");
    let mut b_log = Log::default();
    read_until(&b1, &mut b_log, WAIT, |_| false);
    assert!(
        b_log
            .notices
            .iter()
            .any(|n| n.contains("room history lost")),
        "{:?}",
        b_log.notices
    );
    assert_eq!(b_log.chats(), 0, "b's client got part of the history");
    // a's client noticed nothing, and b serves new clients from where the room is.
    let (mut a1, b2) = (a1, BinClient::join(b.addr));
    a1.say("later");
    b2.expect(|g| matches!(g, Got::Chat { seq: 1001, text, .. } if text == "later"));
}

/// The ids of the Redis connections of the servers' readers (blocked in `XREAD`).
fn reader_connections(redis: &Redis) -> Vec<String> {
    redis
        .cli(&["CLIENT", "LIST"])
        .lines()
        .filter(|l| l.contains("cmd=xread"))
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn a_killed_reader_connection_is_reopened_without_loss() {
    const EACH: usize = 400;
    let redis = Redis::start();
    let (a, b) = (server(&redis.url(), &[]), server(&redis.url(), &[]));
    let (a1, b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    let lines = numbered(0, EACH);
    let sender = paced(&a1, lines.clone(), Duration::from_millis(5));
    let mut logs = [Log::default(), Log::default()];
    // Killed while messages flow, so some are on their way when it happens.
    read_until(&b1, &mut logs[1], WAIT, |l| l.chats() >= 50);
    let readers = reader_connections(&redis);
    assert_eq!(readers.len(), 2, "{readers:?}");
    for id in &readers {
        assert_eq!(redis.cli(&["CLIENT", "KILL", "ID", id]), "1");
    }
    read_until(&a1, &mut logs[0], WAIT, |l| l.acks == EACH);
    read_until(&b1, &mut logs[1], WAIT, |l| l.chats() == EACH);
    assert!(logs[1].chats() > 50 && logs[0].acks > 50);
    sender.join().unwrap();
    let none: &[String] = &[];
    let runs = [Run::of(&a1, &lines, &logs[0]), Run::of(&b1, none, &logs[1])];
    assert_eq!(check_room(&runs).len(), EACH);
    for s in [&a, &b] {
        s.proc
            .err
            .expect("a reconnect", |l| l.contains("reading the room failed"));
    }
}

#[test]
fn a_silently_dead_redis_connection_is_noticed_and_nothing_is_lost() {
    let redis = Redis::start();
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], redis.port)));
    let a = server(&redis.url(), &[]);
    let b = server(&relay.url(), &["--backplane-timeout-ms", "1000"]);
    let (mut a1, mut b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    // Both of b's connections (reader and writer) are open before the stall.
    b1.say("c1 0");
    a1.expect(|g| matches!(g, Got::Chat { text, .. } if text == "c1 0"));
    a1.say("c0 0");
    b1.expect(|g| matches!(g, Got::Chat { text, .. } if text == "c0 0"));
    a1.expect(|g| matches!(g, Got::Ack { .. }));
    let started = Instant::now();
    relay.cut();
    let senders = [
        paced(
            &a1,
            (1..101).map(|n| format!("c0 {n}")).collect(),
            Duration::from_millis(10),
        ),
        paced(
            &b1,
            (1..21).map(|n| format!("c1 {n}")).collect(),
            Duration::from_millis(10),
        ),
    ];
    let mut logs = [Log::default(), Log::default()];
    read_until(&a1, &mut logs[0], WAIT, |l| {
        l.acks == 100 && l.chats() == 20
    });
    read_until(&b1, &mut logs[1], WAIT, |l| {
        l.acks == 20 && l.chats() == 100
    });
    let took = started.elapsed();
    senders.into_iter().for_each(|s| s.join().unwrap());
    let named = [(a1.peer(), &logs[0]), (b1.peer(), &logs[1])];
    assert_eq!(one_order(&named).len(), 120);
    assert!(logs.iter().all(|l| refused(l) == 0));
    eprintln!("recovered in {took:?}");
    b.proc
        .err
        .expect("a reconnect", |l| l.contains("reconnect"));
}

/// Issue 21, point 4: one message refused was logged as `backplane: 1 messages not
/// delivered`.
#[test]
fn one_message_not_delivered_is_counted_as_one_in_the_notice_and_the_log() {
    let mut redis = Redis::start();
    let a = server(&redis.url(), &["--backplane-append-timeout-ms", "300"]);
    let mut a1 = BinClient::join(a.addr);
    redis.kill();
    a1.say("lost");
    thread::sleep(Duration::from_millis(600));
    redis.restart();
    a1.expect(|g| {
        matches!(g, Got::Notice { text, .. } if text.starts_with("error: 1 message not delivered"))
    });
    a.proc.err.expect("the log of the refusal", |l| {
        l.contains("backplane: 1 message not delivered")
    });
    let plural: Vec<String> = a
        .proc
        .err
        .all()
        .into_iter()
        .filter(|l| l.contains("1 messages"))
        .collect();
    assert!(plural.is_empty(), "{plural:?}");
}

/// Settings for the fault tests: a short append timeout and Redis timeout, so the
/// tests are short.
const QUICK: [&str; 4] = [
    "--backplane-append-timeout-ms",
    "500",
    "--backplane-timeout-ms",
    "1000",
];

/// The append timeout in [`QUICK`].
const APPEND_TIMEOUT: Duration = Duration::from_millis(500);

/// Reads `client` until an error notice with `code` arrives; returns its text.
fn notice_with(client: &BinClient, log: &mut Log, code: u8) -> String {
    let seen = log.codes.len();
    read_until(client, log, WAIT, |l| l.codes[seen..].contains(&Some(code)));
    let at = seen
        + log.codes[seen..]
            .iter()
            .position(|c| *c == Some(code))
            .unwrap();
    log.notices[at].clone()
}

/// Sends a Ping and reads until its Pong, checking what came before it.
fn ping(client: &mut BinClient, log: &mut Log, nonce: u64) {
    client.send(&proto_core::Frame::Ping { nonce });
    let pong = format!("Pong {{ nonce: {nonce} }}");
    loop {
        match client.rx.recv_timeout(WAIT).expect("no pong") {
            Got::Other(o) if o == pong => return,
            got => log.take(got),
        }
    }
}

#[test]
fn a_frozen_redis_tells_senders_their_messages_are_delayed_and_then_the_truth() {
    let redis = Redis::start();
    let (a, b) = (server(&redis.url(), &QUICK), server(&redis.url(), &QUICK));
    let (mut a1, b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    let mut t1 = TextClient::connect(a.addr);
    t1.expect(|l| l.starts_with("*** welcome"));
    // A person at host-client, which waits this long for the server to close after
    // its Bye: so it exits sooner only if the server closes.
    let mut leaver = Client::join_with(a.addr, &["--linger", "10s"]);
    let joined = format!("*** {} joined", leaver.peer);
    t1.expect(|l| l == joined);
    // And one as nc is, which leaves by ending its input.
    let mut t2 = TextClient::connect(a.addr);
    t2.expect(|l| l.starts_with("*** welcome"));
    let joined = format!("*** {} joined", t2.peer());
    t1.expect(|l| l == joined);
    let lines = numbered(0, 31);
    a1.say(&lines[0]);
    let mut logs = [Log::default(), Log::default()];
    read_until(&a1, &mut logs[0], WAIT, |l| l.acks == 1);
    // The writer has its reply too (the Ack comes through the reader).
    thread::sleep(Duration::from_millis(200));
    redis.signal("STOP");
    let stopped = Instant::now();
    a1.say(&lines[1]);
    t1.write(b"t1 0\n");
    // Whichever of the two messages is in the writer's call is delayed; the other
    // waits behind it and is certainly not delivered, and said so, or delayed too.
    read_until(&a1, &mut logs[0], WAIT, |l| delayed(l) + refused(l) > 0);
    let waited = stopped.elapsed();
    assert!(
        waited < APPEND_TIMEOUT + Duration::from_secs(1),
        "the delay notice took {waited:?}"
    );
    let first = t1.expect(|l| l.starts_with("*** "));
    let t_delayed = first.contains("1 message delayed");
    assert!(
        t_delayed || first.contains("1 message not delivered"),
        "{first}"
    );
    // `exit` works while Redis sleeps, even with a line of its own still owed the
    // truth: the server closes at once and logs that the client left. So does the
    // end of a text client's input.
    let leavers = [leaver.peer.clone(), t2.peer()];
    leaver.say("c2 0");
    leaver.say("exit");
    let left = thread::spawn(move || {
        let asked = Instant::now();
        let status = leaver.proc.wait_exit(WAIT);
        (status, asked.elapsed())
    });
    t2.write(b"t2 0\n");
    t2.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let ended = thread::spawn(move || {
        let asked = Instant::now();
        (t2.closed(), asked.elapsed())
    });
    // Its connection is still read while Redis sleeps: a ping is answered, and more
    // lines are taken and answered (each batch in its own time, none waits for
    // another's connection attempt).
    ping(&mut a1, &mut logs[0], 1);
    for line in &lines[2..] {
        a1.say(line);
        thread::sleep(Duration::from_millis(20));
    }
    read_until(&a1, &mut logs[0], WAIT, |l| refused(l) + delayed(l) >= 30);
    ping(&mut a1, &mut logs[0], 2);
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "Redis woke too early"
    );
    let (status, took) = left.join().unwrap();
    assert!(status.success(), "host-client after `exit`: {status}");
    assert!(
        took < Duration::from_secs(2),
        "the server closed {took:?} after `exit`"
    );
    let (closed, took) = ended.join().unwrap();
    assert!(closed, "the text client's connection was not closed");
    assert!(
        took < Duration::from_secs(2),
        "the server closed {took:?} after the text client's end of input"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(4),
        "Redis woke too early"
    );
    for peer in leavers {
        let said = format!("{peer} left");
        assert!(
            a.proc.err.all().iter().any(|l| l.contains(&said)),
            "no `{said}` in the server's log: {:#?}",
            a.proc.err.all()
        );
    }
    thread::sleep(Duration::from_secs(4).saturating_sub(stopped.elapsed()));
    redis.signal("CONT");
    // The truth: each of a1's messages acked (so delivered) or refused, none both;
    // the text sender hears its delayed line was delivered.
    read_until(&a1, &mut logs[0], WAIT, |l| l.acks + refused(l) == 31);
    if t_delayed {
        let line = t1.expect(|l| l.contains("delivered"));
        assert!(
            line.contains("delayed, delivered now") || line.contains("not delivered"),
            "{line}"
        );
    }
    a1.say("c0 31");
    read_until(&a1, &mut logs[0], WAIT, |l| l.acks + refused(l) == 32);
    read_until(&b1, &mut logs[1], WAIT, |l| {
        l.seqs.last().is_some_and(|s| s.2 == "c0 31")
    });
    // t1's line, if delivered, is in the room like any other.
    let mut sent = lines.clone();
    sent.push("c0 31".into());
    let runs = [Run::of(&a1, &sent, &logs[0]), Run::of(&b1, &[], &logs[1])];
    let room = check_room(&runs);
    eprintln!(
        "delay notice after {waited:?}; {} of 32 delivered",
        room.len()
    );
}

/// How many of its messages a client was told were delayed (error code 13).
fn delayed(log: &Log) -> usize {
    log.notices
        .iter()
        .zip(&log.codes)
        .filter(|(_, code)| **code == Some(13))
        .filter_map(|(n, _)| {
            n.strip_prefix("error: ")?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum()
}

/// Server b reaches Redis through a relay put in `mode` after its client's first
/// message; its client sends one more, then the relay passes again after `held`.
/// Returns b's client's log and whether a's client received that message.
fn one_message_through(mode: Mode, held: Duration) -> (Log, bool) {
    let redis = Redis::start();
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], redis.port)));
    let a = server(&redis.url(), &QUICK);
    let mut opts = QUICK.to_vec();
    opts.extend(["--backplane-dedupe-secs", "1"]);
    let b = server(&relay.url(), &opts);
    let (a1, mut b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    let lines = numbered(1, 2);
    b1.say(&lines[0]);
    let mut logs = [Log::default(), Log::default()];
    read_until(&b1, &mut logs[1], WAIT, |l| l.acks == 1);
    // The writer has its reply too (the Ack comes through the reader).
    thread::sleep(Duration::from_millis(200));
    relay.set(mode);
    let started = Instant::now();
    b1.say(&lines[1]);
    let text = notice_with(&b1, &mut logs[1], 13);
    assert!(text.contains("delayed"), "{text}");
    let waited = started.elapsed();
    assert!(
        waited < APPEND_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
    thread::sleep(held.saturating_sub(started.elapsed()));
    relay.set(Mode::Pass);
    read_until(&b1, &mut logs[1], WAIT, |l| l.acks + refused(l) == 2);
    // Nothing more is owed: the pong comes after the truth, and a's client has
    // heard everything appended before a last message.
    ping(&mut b1, &mut logs[1], 1);
    b1.say("c1 2");
    read_until(&a1, &mut logs[0], WAIT, |l| {
        l.seqs.last().is_some_and(|s| s.2 == "c1 2")
    });
    logs[0].seqs.pop();
    read_until(&b1, &mut logs[1], WAIT, |l| l.acks + refused(l) == 3);
    logs[1].seqs.pop();
    logs[1].acks -= 1;
    let runs = [Run::of(&a1, &[], &logs[0]), Run::of(&b1, &lines, &logs[1])];
    check_room(&runs);
    let [a_log, b_log] = logs;
    let got = a_log.seqs.iter().any(|s| s.2 == lines[1]);
    (b_log, got)
}

#[test]
fn a_delivered_message_whose_reply_was_held_past_its_dedupe_key_is_not_reported_lost() {
    // Redis appends it, the reply is held longer than the dedupe key lives: the
    // sender hears "delayed", then its Ack, never "not delivered".
    let (log, received) = one_message_through(Mode::HoldReplies, Duration::from_millis(3000));
    assert!(received, "a's client did not get the message");
    assert_eq!(refused(&log), 0, "{:?}", log.notices);
    assert_eq!(log.acks, 2);
}

#[test]
fn a_message_lost_on_a_blackholed_link_is_reported_not_delivered_once_redis_answers() {
    let (log, received) = one_message_through(Mode::Blackhole, Duration::from_millis(2000));
    assert!(!received, "a's client got the message");
    assert_eq!(refused(&log), 1, "{:?}", log.notices);
    assert_eq!(log.acks, 1);
}

#[test]
fn a_pong_follows_the_acks_of_the_messages_sent_before_its_ping() {
    let redis = Redis::start();
    let (a, b) = (server(&redis.url(), &[]), server(&redis.url(), &[]));
    let (mut a1, b1) = (BinClient::join(a.addr), BinClient::join(b.addr));
    let mut log = Log::default();
    for round in 0..5u64 {
        for n in 0..20 {
            a1.say(&format!("c0 {}", round * 20 + n));
        }
        ping(&mut a1, &mut log, round);
        assert_eq!(log.acks as u64, (round + 1) * 20, "the pong came first");
    }
    let mut b_log = Log::default();
    read_until(&b1, &mut b_log, WAIT, |l| l.chats() == 100);
}

#[test]
fn a_retain_below_a_few_batches_is_a_usage_error_that_says_the_minimum() {
    let out = Command::new(crate::util::bin("host-server"))
        .args(["--backplane", "redis://127.0.0.1:1"])
        .args(["--backplane-retain", "1000"])
        .output()
        .expect("run host-server");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--backplane-retain 1000 is below its minimum 4096"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "it started: {out:?}");
}

/// How the sender of [`fate_lost`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    Binary,
    Text,
}

/// A client of either kind.
enum Sender {
    Binary(BinClient),
    Text(TextClient),
}

impl Sender {
    fn join(addr: SocketAddr, speaks: Speaks) -> Self {
        match speaks {
            Speaks::Binary => Sender::Binary(BinClient::join(addr)),
            Speaks::Text => {
                let mut t = TextClient::connect(addr);
                t.expect(|l| l.starts_with("*** welcome"));
                Sender::Text(t)
            }
        }
    }

    fn say(&mut self, line: &str) {
        match self {
            Sender::Binary(c) => c.say(line),
            Sender::Text(t) => t.write(format!("{line}\n").as_bytes()),
        }
    }

    /// Reads on until something that `told` records.
    fn read(&mut self, told: &mut Told) {
        match self {
            Sender::Binary(c) => match c.next() {
                Got::Ack { .. } => told.acked = true,
                Got::Notice {
                    code: Some(code),
                    text,
                } => told.notices.push((Some(code), text)),
                Got::End(_) => told.ended = true,
                _ => {}
            },
            Sender::Text(t) => {
                let line = t.next_line();
                match line.as_deref().map(|l| l.strip_prefix("*** error: ")) {
                    None => told.ended = true,
                    Some(Some(error)) => told.notices.push((None, format!("error: {error}"))),
                    Some(None) => {}
                }
            }
        }
    }
}

/// What a sender read about its line in [`fate_lost`]: each error notice (a text
/// client's `*** error` lines, without a code), whether its line was acked, and
/// whether its connection ended.
#[derive(Debug, Default)]
struct Told {
    notices: Vec<(Option<u8>, String)>,
    acked: bool,
    ended: bool,
}

impl Told {
    /// The notices with `code` (any, for a text client) saying `words`.
    fn saying(&self, code: u8, words: &str) -> usize {
        let codes = |c: &Option<u8>| c.is_none_or(|c| c == code);
        let n = self.notices.iter();
        n.filter(|(c, t)| codes(c) && t.contains(words)).count()
    }
}

/// Server b reaches Redis through a relay. Its client's first line goes through;
/// then replies are held, and its second line is appended by Redis (a's client
/// receives it) while b never hears so: b's writer gives up on the reply, and its
/// reader on its connection (with the entry in its held reply). Then `lose` makes
/// Redis lose what would tell (the dedupe key and more), and the relay passes again.
/// Returns what b's client read after its first line, until `done`.
fn fate_lost(speaks: Speaks, lose: impl FnOnce(&Redis), done: impl Fn(&Told) -> bool) -> Told {
    let redis = Redis::start();
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], redis.port)));
    let a = server(&redis.url(), &QUICK);
    let b = server(&relay.url(), &QUICK);
    let a1 = BinClient::join(a.addr);
    let mut b1 = Sender::join(b.addr, speaks);
    let mut a_log = Log::default();
    b1.say("c1 0");
    read_until(&a1, &mut a_log, WAIT, |l| l.chats() == 1);
    let mut told = Told::default();
    if speaks == Speaks::Binary {
        while !told.acked {
            b1.read(&mut told);
        }
        told.acked = false;
    }
    // b's writer and reader have their replies too.
    thread::sleep(Duration::from_millis(300));
    relay.set(Mode::HoldReplies);
    let held = Instant::now();
    b1.say("c1 1");
    read_until(&a1, &mut a_log, WAIT, |l| l.chats() == 2);
    assert_eq!(a_log.seqs[1].2, "c1 1", "{:?}", a_log.seqs);
    // Past the append timeout and the Redis timeout of b's writer and reader (so
    // the held reply with the entry goes nowhere), with a margin.
    thread::sleep(Duration::from_millis(2000).saturating_sub(held.elapsed()));
    let dedupe = redis.cli(&["KEYS", "{room:lobby}:m:*"]);
    for key in dedupe.lines() {
        assert_eq!(redis.cli(&["DEL", key]), "1");
    }
    lose(&redis);
    relay.set(Mode::Pass);
    let deadline = Instant::now() + WAIT;
    while !done(&told) && !told.ended {
        assert!(Instant::now() < deadline, "no last word: {told:?}");
        b1.read(&mut told);
    }
    told
}

/// True once `told` has a last word about a line: a notice not about its delay, or
/// an Ack.
fn last_word(told: &Told) -> bool {
    told.acked
        || told
            .notices
            .iter()
            .any(|(_, n)| !n.contains("not answering"))
}

/// The sender's last word in [`fate_lost`] is that the fate of its line cannot be
/// known (code 13), after it was told the line was delayed; never that it was not
/// delivered (a's client got it), nor an Ack.
fn told_unknown(told: &Told) {
    let delayed = told.saying(13, "1 message delayed: the room backplane is not answering");
    let unknown = "error: 1 message delayed: the room backplane cannot tell whether \
                   they were delivered";
    assert_eq!((delayed, told.saying(13, unknown)), (1, 1), "{told:?}");
    assert_eq!(told.saying(10, "not delivered"), 0, "{told:?}");
    assert!(!told.acked, "{told:?}");
}

/// Trims every entry of the room's stream away (as a flood past
/// `--backplane-retain` would, with no entry after it yet).
fn trim(redis: &Redis) {
    let stream = "{room:lobby}:stream";
    redis.cli(&["XTRIM", stream, "MAXLEN", "0"]);
    assert_eq!(stream_len(redis), 0);
}

#[test]
fn a_sender_whose_unanswered_append_was_trimmed_away_is_told_its_fate_is_unknown() {
    let told = fate_lost(Speaks::Binary, trim, last_word);
    told_unknown(&told);
    assert!(!told.ended, "{told:?}");
}

#[test]
fn a_text_sender_whose_unanswered_line_was_trimmed_away_reads_that_its_fate_is_unknown() {
    let told = fate_lost(Speaks::Text, trim, last_word);
    told_unknown(&told);
}

#[test]
fn a_sender_whose_unanswered_append_went_with_a_reset_room_is_told_its_fate_is_unknown() {
    // Redis loses the room (as one restarted without its data would): b's reader
    // resets the room and disconnects its clients, and its writer finds a new
    // epoch. Whichever comes first, the sender reads that its line's fate is
    // unknown before the reset notice.
    let lose = |redis: &Redis| {
        let keys = ["DEL", "{room:lobby}:stream", "{room:lobby}:epoch"];
        assert_eq!(redis.cli(&keys), "2");
    };
    let told = fate_lost(Speaks::Binary, lose, |_| false);
    assert!(told.ended, "{told:?}");
    let reset = told
        .notices
        .iter()
        .position(|(c, n)| *c == Some(11) && n.starts_with("room was reset"));
    let unknown = told
        .notices
        .iter()
        .position(|(_, n)| n.contains("cannot tell"));
    assert!(unknown < reset && unknown.is_some(), "{told:?}");
    told_unknown(&told);
}
