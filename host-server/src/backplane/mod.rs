//! One room across several servers, carried by a Redis stream.
//!
//! Every server started with the same Redis and room name appends its clients'
//! messages to one stream, `{room:NAME}:stream`, and delivers the stream to its own
//! clients in stream order, its own clients' messages included (there is no local
//! fast path), so every client on every server sees one order. Redis is the
//! sequencer: entries are appended with IDs `0-*`, which Redis numbers 1, 2, 3, ...
//! without holes, and the room's sequence number is the second part of the ID.
//!
//! - The writer thread ([`writer`]) takes the batches of every session and appends
//!   all that waited, up to a limit, with one Lua script call: one round trip per
//!   batch of batches. A retried call carries the same dedupe key, so it never
//!   appends twice.
//! - The tracker ([`tracker`]) holds what each sender is owed; the watch thread
//!   answers every batch not answered within the append timeout: not delivered when
//!   that is certain, delayed otherwise, and the truth follows once Redis answers.
//!   Pongs wait there for the answers to the messages before their Ping.
//! - The reader thread ([`reader`]) reads with `XREAD BLOCK`, many entries per call,
//!   checks that the numbers follow on without a hole and that the epoch (a random
//!   token created with the stream) is unchanged, and hands the entries to the room.
//!   A hole means this server fell behind what the stream retains, a new epoch or a
//!   number going backwards (or the entry last read gone or another) means Redis
//!   lost the room: either way the server's clients are disconnected with a notice
//!   saying so. It hands the entries to the room at the pace of the server's
//!   readers, so a flood waits in the stream, not in memory.
//! - The roster ([`roster`]): joins and leaves go through the writer, in order with
//!   the messages, into a stream of their own that every reader merges into the
//!   room's order; the heartbeat thread beats and takes dead servers' clients out.
//!
//! Redis is trusted: entries are checked so that a stray writer cannot crash or stall
//! a server, but whoever can write to the Redis can write into the room. Protect it
//! with a password or ACL and a private address.

mod entry;
mod link;
mod reader;
mod roster;
mod script;
mod tracker;
mod writer;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proto_core::PeerAddr;

use crate::room::Room;
use tracker::Tracker;

pub use link::BackplaneError;

/// Where the room lives and how it is kept: the `--backplane` settings.
#[derive(Clone, PartialEq, Eq)]
pub struct BackplaneConfig {
    /// The Redis URL: `redis://host:port`, `redis://:password@host:port`,
    /// `redis://user:password@host:port/db`, `redis+unix:///path`.
    pub url: String,
    /// The room's name: servers with the same Redis and name form one room.
    /// Default `lobby`; letters, digits, `-`, `_` and `.`, at most 64.
    pub room: String,
    /// About how many messages the stream keeps (`XADD MAXLEN ~`). A server that
    /// falls further behind than this loses the room and disconnects its clients.
    /// Default 100,000 (some 15 MB of Redis memory with short messages).
    pub retain: u64,
    /// How long a message may wait to be appended while Redis cannot be reached
    /// before its sender is told it was not delivered. Default 2 s.
    pub append_timeout: Duration,
    /// How long Redis may leave a request unanswered before the connection is taken
    /// for dead and opened again. Bounds how long a silently dead connection goes
    /// unnoticed. Default 3 s.
    pub io_timeout: Duration,
    /// Most messages appended by one script call, and read by one `XREAD`.
    /// Default 1024.
    pub batch: usize,
    /// How long Redis keeps an append's dedupe key, which answers a retried append
    /// at once. Once it is gone, an append whose answer was lost is looked for in the
    /// stream instead. Default 60 s.
    pub dedupe: Duration,
    /// How long a server may stay silent (no heartbeat) before the others take its
    /// clients out of the room, each with a leave naming the reason. Default 10 s.
    pub server_timeout: Duration,
}

impl Default for BackplaneConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            room: "lobby".into(),
            retain: 100_000,
            append_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(3),
            batch: 1024,
            dedupe: Duration::from_secs(60),
            server_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for BackplaneConfig {
    /// Shows the URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackplaneConfig")
            .field("url", &link::redact(&self.url))
            .field("room", &self.room)
            .field("retain", &self.retain)
            .field("append_timeout", &self.append_timeout)
            .field("io_timeout", &self.io_timeout)
            .field("batch", &self.batch)
            .field("dedupe", &self.dedupe)
            .field("server_timeout", &self.server_timeout)
            .finish()
    }
}

/// True for a room name the backplane accepts: it goes into Redis key names inside
/// a hash tag, so `{`, `}` and spaces are out.
pub fn valid_room_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// What the reader and writer threads share.
pub(crate) struct Common {
    pub(crate) config: BackplaneConfig,
    pub(crate) keys: script::Keys,
    /// This server's id in the room: random, new at every start.
    pub(crate) server_id: String,
    /// The highest sequence number delivered to this server's clients, so a stream
    /// recreated after a loss starts above it and numbers never go backwards.
    pub(crate) delivered: AtomicU64,
    /// The epoch the reader follows, shared with the writer (which must append in it).
    pub(crate) epoch: std::sync::Mutex<String>,
    /// The writer found the room reset; the reader is to check it at once.
    pub(crate) reset_seen: AtomicBool,
    /// What each sender is owed.
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) room: Arc<Room>,
}

impl Common {
    pub(crate) fn epoch(&self) -> String {
        crate::sys::lock(&self.epoch).clone()
    }

    pub(crate) fn set_epoch(&self, epoch: &str) {
        *crate::sys::lock(&self.epoch) = epoch.to_string();
    }
}

/// One session's batch, on its way to the writer.
pub(crate) struct Outgoing {
    /// The sending client's id on this server.
    pub(crate) client: u64,
    pub(crate) peer: PeerAddr,
    /// The messages, one after another, and where each ends.
    pub(crate) text: String,
    pub(crate) ends: Vec<usize>,
    /// When the session handed it over: it is answered for now (refused or
    /// delayed) after `append_timeout`.
    pub(crate) since: Instant,
    /// Its ticket with the tracker.
    pub(crate) ticket: u64,
}

impl Outgoing {
    pub(crate) fn messages(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(s, e)| &self.text[s..e])
    }
}

/// What the writer is handed, in the order the sessions hand it over.
pub(crate) enum Item {
    /// A session's messages.
    Batch(Outgoing),
    /// A join or a leave of a client of this server.
    Roster(roster::Op),
}

/// The room's way into the backplane: hands batches to the writer thread.
pub(crate) struct Appender {
    to_writer: SyncSender<Item>,
    tracker: Arc<Tracker>,
    /// This server's id in the room.
    server_id: String,
}

impl Appender {
    /// Queues the messages of client `client` for appending. Blocks while the writer
    /// is that far behind (so TCP slows the senders down).
    pub(crate) fn append<'a>(
        &self,
        client: u64,
        peer: PeerAddr,
        messages: impl Iterator<Item = &'a str>,
    ) {
        let mut out = Outgoing {
            client,
            peer,
            text: String::new(),
            ends: Vec::new(),
            since: Instant::now(),
            ticket: 0,
        };
        for m in messages {
            out.text.push_str(m);
            out.ends.push(out.text.len());
        }
        out.ticket = self.tracker.register(client, out.ends.len(), out.since);
        // Fails only once the writer has stopped: the server is shutting down.
        let _ = self.to_writer.send(Item::Batch(out));
    }

    /// Queues the join of client `client` (at `peer`), after everything it queued
    /// before; `why` `None` for a join, the leave's reason (maybe empty) for a leave.
    pub(crate) fn roster(&self, client: u64, peer: PeerAddr, why: Option<&str>) {
        let op = match why {
            None => roster::Op::Join { client, peer },
            Some(why) => roster::Op::Leave {
                client,
                peer,
                why: why.to_string(),
            },
        };
        let _ = self.to_writer.send(Item::Roster(op));
    }

    /// This server's id in the room.
    pub(crate) fn server_id(&self) -> &str {
        &self.server_id
    }

    /// The Pong `bytes` for client `client`, if it may go now; if not, it goes once
    /// the client's messages sent before it are answered (Acked, refused or delayed).
    pub(crate) fn pong(&self, client: u64, bytes: Vec<u8>) -> Option<Vec<u8>> {
        self.tracker.pong(client, bytes)
    }
}

/// The backplane's threads, joined when the server stops.
pub(crate) struct Running {
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Waits for the threads, which end within about `io_timeout` of the room closing.
    pub(crate) fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Batches that may wait for the writer, per server.
const WRITER_QUEUE: usize = 4096;

/// Joins the room `config.room` held in the Redis at `config.url`: opens it (creating
/// it if this is its first server), starts the reader and writer threads, and makes
/// `room` broadcast through them.
///
/// # Errors
/// [`BackplaneError`] if Redis cannot be reached or refuses the room at start.
pub(crate) fn start(
    config: &BackplaneConfig,
    room: &Arc<Room>,
    stack: usize,
) -> Result<Running, BackplaneError> {
    let keys = script::Keys::new(&config.room);
    let server_id = link::random_token();
    let mut first = link::connect(config)?;
    let opened = script::open(
        &mut first,
        &keys,
        &server_id,
        &link::random_token(),
        0,
        None,
    )
    .map_err(|e| BackplaneError::Open(link::redact(&config.url), e))?;
    tracing::info!(
        "backplane: in room {:?} at {} as server {server_id}; epoch {}, {} messages so far",
        config.room,
        link::redact(&config.url),
        opened.epoch,
        opened.tail
    );
    let common = Arc::new(Common {
        config: config.clone(),
        keys,
        server_id,
        delivered: AtomicU64::new(opened.tail),
        epoch: std::sync::Mutex::new(opened.epoch.clone()),
        reset_seen: AtomicBool::new(false),
        tracker: Arc::default(),
        room: room.clone(),
    });
    // Beat once before any client can join, so that this server's clients are
    // always those of a server the others watch; then learn who is in the room.
    let scripts = roster::Scripts::new();
    let open_err = |e| BackplaneError::Open(link::redact(&config.url), e);
    scripts.beat(&mut first, &common, false).map_err(open_err)?;
    let snap = scripts
        .snapshot(&mut first, &common.keys, &opened.epoch)
        .map_err(open_err)?;
    // A reset between the two calls is found by the reader's first check.
    let opened = script::Opened {
        epoch: opened.epoch,
        tail: snap.tail.max(opened.tail),
    };
    common
        .delivered
        .fetch_max(opened.tail, std::sync::atomic::Ordering::AcqRel);
    room.set_roster(snap.members);
    let (to_writer, from_rooms) = mpsc::sync_channel(WRITER_QUEUE);
    let tracker = common.tracker.clone();
    let server_id = common.server_id.clone();
    if !room.set_backplane(Appender {
        to_writer,
        tracker,
        server_id,
    }) {
        return Err(BackplaneError::AlreadySet);
    }
    let roster_at = snap.roster;
    let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
        thread::Builder::new()
            .name(name.into())
            .stack_size(stack.max(256 * 1024))
            .spawn(body)
            .map_err(BackplaneError::Thread)
    };
    let reader_common = common.clone();
    let reader = spawn(
        "backplane reader",
        Box::new(move || reader::run(&reader_common, first, opened, roster_at)),
    )?;
    let beat_common = common.clone();
    let heartbeat = spawn(
        "backplane heartbeat",
        Box::new(move || roster::heartbeat(&beat_common)),
    )?;
    let watch_common = common.clone();
    let watch = spawn(
        "backplane watch",
        Box::new(move || writer::watch(&watch_common)),
    )?;
    let writer = spawn(
        "backplane writer",
        Box::new(move || writer::run(&common, &from_rooms)),
    )?;
    Ok(Running {
        threads: vec![reader, watch, writer, heartbeat],
    })
}

/// Connects to Redis once and pings it: the server checks this at start, so that an
/// unreachable backplane (or a wrong password) is reported before it says it is
/// listening. Joining the room later opens connections of its own.
///
/// # Errors
/// [`BackplaneError`] if the URL is unusable, or Redis cannot be reached or refuses.
pub fn probe(config: &BackplaneConfig) -> Result<(), BackplaneError> {
    let mut con = link::connect(config)?;
    redis::cmd("PING")
        .query::<String>(&mut con)
        .map(drop)
        .map_err(|e| BackplaneError::Connect(link::redact(&config.url), e))
}

/// Keeps `body` running until the room closes, restarting it after a panic (a bug
/// must not leave the room without its reader or writer).
pub(crate) fn supervise(name: &str, room: &Room, mut body: impl FnMut()) {
    while !room.is_closing() {
        let run = std::panic::AssertUnwindSafe(&mut body);
        if std::panic::catch_unwind(run).is_err() {
            tracing::error!("backplane: {name} thread panicked; restarting it");
            thread::sleep(Duration::from_millis(100));
        } else {
            return;
        }
    }
}
