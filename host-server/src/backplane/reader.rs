//! The reader thread: follows the room's stream and delivers it, in order, to this
//! server's clients.
//!
//! It reads with `XREAD BLOCK`, up to `batch` entries per call, from the last ID it
//! read, so after any break it resumes exactly where it was. Each call is answered
//! within the block time when the connection is alive, so a connection that stays
//! silent past `io_timeout` is dead (a stalled network, a killed connection) and is
//! opened again. Every few seconds, and after every reconnect, it reads the room's
//! epoch and last ID: a new epoch, or a last ID below what was delivered, means Redis
//! lost the room. So does the entry last read being gone or another one: Redis came
//! back with an older copy of the stream in the same epoch, and the check starts the
//! room over above what was delivered (see `script`).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use proto_core::ErrorCode;
use redis::{Connection, Value};

use super::entry::{parse_streams, EntryError, Message, RawResult, RosterEntry, StreamId};
use super::link::{self, random_token};
use super::roster::Scripts;
use super::script::{self, Opened};
use super::Common;
use crate::room::{RosterEvent, Sequenced};

/// How often the reader checks the room's epoch and last ID even while entries flow.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Pause between attempts to reach Redis again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// About how many bytes of messages are handed to the room at once: small next to
/// the pace mark (64 KiB by default), so a reader that is draining is never pushed
/// far past it by one read of the stream (up to `batch` entries of up to 1 KiB each).
const DELIVER_BYTES: usize = 16 * 1024;

/// What an entry costs in a client's outbox besides its body (header, peer).
const ENTRY_OVERHEAD: usize = 32;

/// No outbox has this key (the writer pool hands them out counting up from 0): the
/// reader waits for every client that is behind.
const NOBODY: u64 = u64::MAX;

struct Reader<'c> {
    common: &'c Common,
    con: Option<Connection>,
    epoch: String,
    /// The last sequence number of the room read (delivered or skipped).
    last: u64,
    /// The last stream ID read: where the next read starts.
    cursor: StreamId,
    /// The entry at the cursor when it was a message of the room, so a check can
    /// tell whether Redis still holds it (it does not after a rewind).
    at_cursor: Option<Message>,
    /// The append call of this server's own message read last, and its place in
    /// the call (the first message of a call carries the call's number).
    own_call: Option<(u64, usize)>,
    servers: HashSet<String>,
    /// Server ids seen in entries and found not to be in the room.
    strangers: HashSet<String>,
    checked: Instant,
    /// Logged once per outage.
    down: bool,
    /// The roster stream of the epoch followed, and its last entry read.
    roster_key: String,
    roster_at: u64,
    /// Roster entries read but not yet due: each comes after message `after`.
    held: VecDeque<RosterEntry>,
    roster: Scripts,
}

/// The reader thread's body: runs until the room closes. `con` is the connection
/// the room was opened on, `opened` what it found.
pub(crate) fn run(common: &Common, con: Connection, opened: Opened, roster_at: u64) {
    let mut reader = Reader {
        roster_key: common.keys.roster(&opened.epoch),
        roster_at,
        held: VecDeque::new(),
        roster: Scripts::new(),
        common,
        con: Some(con),
        epoch: opened.epoch,
        last: opened.tail,
        cursor: (0, opened.tail),
        at_cursor: None,
        own_call: None,
        servers: HashSet::new(),
        strangers: HashSet::new(),
        checked: Instant::now(),
        down: false,
    };
    reader.servers.insert(common.server_id.clone());
    super::supervise("reader", &common.room, || reader.serve());
}

impl Reader<'_> {
    fn serve(&mut self) {
        let config = &self.common.config;
        // Short enough that a live connection always answers well within io_timeout.
        let block =
            (config.io_timeout / 3).clamp(Duration::from_millis(10), Duration::from_secs(1));
        while !self.common.room.is_closing() {
            if self.con.is_none() && !self.reconnect() {
                thread::sleep(RETRY_PAUSE);
                continue;
            }
            if self.common.reset_seen.swap(false, Ordering::AcqRel)
                || self.checked.elapsed() >= CHECK_EVERY
            {
                self.check();
                continue;
            }
            let Some(con) = self.con.as_mut() else {
                continue;
            };
            let reply = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(config.batch)
                .arg("BLOCK")
                .arg(block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.common.keys.stream)
                .arg(&self.roster_key)
                .arg(format!("{}-{}", self.cursor.0, self.cursor.1))
                .arg(format!("0-{}", self.roster_at))
                .query::<Value>(con);
            match reply {
                Ok(reply) => self.take(&reply),
                Err(e) => {
                    tracing::warn!("backplane: reading the room failed, reconnecting: {e}");
                    self.con = None;
                }
            }
        }
    }

    /// Opens a new connection and checks the room on it.
    fn reconnect(&mut self) -> bool {
        match link::connect(&self.common.config) {
            Ok(con) => {
                if self.down {
                    tracing::info!("backplane: reader reconnected");
                }
                self.down = false;
                self.con = Some(con);
                self.check();
                self.con.is_some()
            }
            Err(e) => {
                if !self.down {
                    tracing::warn!("backplane: reader cannot reach Redis: {e}");
                }
                self.down = true;
                false
            }
        }
    }

    /// Reads the room's epoch and last ID; resets if Redis lost the room.
    fn check(&mut self) {
        let Some(con) = self.con.as_mut() else {
            return;
        };
        let keys = &self.common.keys;
        match script::open(
            con,
            keys,
            &self.common.server_id,
            &random_token(),
            self.last,
            self.at_cursor
                .as_ref()
                .filter(|m| (0, m.seq) == self.cursor),
        ) {
            Ok(opened) => {
                self.checked = Instant::now();
                if opened.epoch != self.epoch || opened.tail < self.last {
                    self.reset(&opened);
                }
            }
            Err(e) => {
                tracing::warn!("backplane: checking the room failed, reconnecting: {e}");
                self.con = None;
            }
        }
    }

    /// Redis lost the room: every client here is told and disconnected, and the
    /// reader starts over at the end of the new stream.
    fn reset(&mut self, opened: &Opened) {
        let old = std::mem::replace(&mut self.epoch, opened.epoch.clone());
        // Who is in the new room, before anyone here is told: a client that
        // reconnects at once is welcomed into the new room, not the old one.
        self.resync_roster();
        self.forget_roster(&old);
        // Senders of messages that left for the old room hear their fate is unknown
        // before they are disconnected.
        let owed = self.common.tracker.reset(opened.tail);
        super::writer::send_owed(self.common, owed);
        let text = "room was reset: the room's backplane lost its history; reconnect";
        let n = self.common.room.disconnect_all(ErrorCode::ROOM_RESET, text);
        tracing::warn!(
            "backplane: the room was reset (epoch {old} -> {}, last {} -> {}); {n} clients disconnected",
            opened.epoch, self.last, opened.tail
        );
        self.common.set_epoch(&opened.epoch);
        self.last = opened.tail;
        self.cursor = (0, opened.tail);
        self.at_cursor = None;
        let delivered = &self.common.delivered;
        delivered.fetch_max(opened.tail, Ordering::AcqRel);
        self.own_call = None;
    }

    /// Lets the roster keys of epoch `epoch`, which nobody reads any more, expire
    /// (servers that have not seen the reset yet may still write to them briefly).
    fn forget_roster(&mut self, epoch: &str) {
        let Some(con) = self.con.as_mut() else {
            return;
        };
        let keys = &self.common.keys;
        for key in [keys.roster(epoch), keys.who(epoch)] {
            if let Err(e) = redis::cmd("EXPIRE").arg(key).arg(60).query::<()>(con) {
                tracing::warn!("backplane: cannot let the old roster expire: {e}");
            }
        }
    }

    /// Learns who is in the room afresh and reads the roster on from there (after a
    /// reset, or a hole in the roster stream). Messages after the snapshot's are
    /// still read and delivered: the clients here were disconnected.
    fn resync_roster(&mut self) {
        self.held.clear();
        self.roster_key = self.common.keys.roster(&self.epoch);
        let Some(con) = self.con.as_mut() else {
            return;
        };
        match self.roster.snapshot(con, &self.common.keys, &self.epoch) {
            Ok(snap) => {
                self.roster_at = snap.roster;
                self.common.room.set_roster(snap.members);
            }
            Err(e) => {
                tracing::warn!("backplane: cannot read who is in the room: {e}; reconnecting");
                self.roster_at = 0;
                self.common.room.set_roster(Vec::new());
                self.con = None;
            }
        }
    }

    /// Takes the roster entries of a read: checks they follow on and holds them
    /// until their place in the order. Returns the highest message number that may
    /// be delivered before more of the roster is read (`u64::MAX` if the read got
    /// all of it).
    fn take_roster(&mut self, entries: Vec<RawResult>) -> u64 {
        let full = entries.len() >= self.common.config.batch;
        for entry in entries {
            let (id, checked) = match entry {
                Ok(raw) => (raw.id, raw.check_roster()),
                Err((Some(id), e)) => (id, Err(e)),
                Err((None, e)) => {
                    tracing::warn!("backplane: roster: {e}");
                    continue;
                }
            };
            let seq = match id {
                (0, seq) if seq > self.roster_at => seq,
                _ => {
                    self.skip(id, &EntryError::ForeignId(id));
                    continue;
                }
            };
            if seq != self.roster_at + 1 {
                // Joins and leaves are gone: who is here is no longer known.
                let text = "room history lost: this server missed joins and leaves; reconnect";
                let n = self.common.room.disconnect_all(ErrorCode::ROOM_RESET, text);
                tracing::warn!(
                    "backplane: roster entries after {} are gone; {n} clients disconnected",
                    self.roster_at
                );
                self.resync_roster();
                return u64::MAX;
            }
            self.roster_at = seq;
            match checked {
                Ok(e) if e.epoch == self.epoch => self.held.push_back(e),
                Ok(_) => self.skip(id, &EntryError::Field("e")),
                Err(e) => self.skip(id, &e),
            }
        }
        match (full, self.held.back()) {
            (true, Some(last)) => last.after,
            (true, None) => self.last,
            (false, _) => u64::MAX,
        }
    }

    /// Delivers `ready`, then every held roster entry that comes before message
    /// `next` (after message `next - 1` or earlier).
    fn roster_before(&mut self, next: u64, ready: &mut Vec<Message>) {
        while self.held.front().is_some_and(|e| e.after < next) {
            self.deliver(ready);
            if let Some(e) = self.held.pop_front() {
                self.common.room.roster(RosterEvent {
                    join: e.join,
                    server: &e.server,
                    client: e.client,
                    peer: e.peer,
                    why: &e.why,
                });
            }
        }
    }

    /// Takes the entries of one `XREAD` reply.
    fn take(&mut self, reply: &Value) {
        let streams = match parse_streams(reply) {
            Ok(streams) => streams,
            Err(e) => {
                tracing::warn!("backplane: {e}; reconnecting");
                self.con = None;
                return;
            }
        };
        let mut entries = Vec::new();
        let mut limit = u64::MAX;
        for (key, got) in streams {
            if key == self.common.keys.stream.as_bytes() {
                entries = got;
            } else if key == self.roster_key.as_bytes() {
                limit = self.take_roster(got);
            }
        }
        let mut ready: Vec<Message> = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry
                .as_ref()
                .is_ok_and(|raw| raw.id.0 == 0 && raw.id.1 > limit)
            {
                // Joins and leaves before it may not all be read yet.
                break;
            }
            let (id, checked) = match entry {
                Ok(raw) => (raw.id, raw.check()),
                Err((Some(id), e)) => (id, Err(e)),
                Err((None, e)) => {
                    // Cannot tell where it is: read the stream again from the cursor.
                    tracing::warn!("backplane: {e}; reconnecting");
                    self.con = None;
                    break;
                }
            };
            self.cursor = self.cursor.max(id);
            let seq = match id {
                (0, seq) if seq > self.last => seq,
                _ => {
                    self.skip(id, &EntryError::ForeignId(id));
                    continue;
                }
            };
            self.roster_before(seq, &mut ready);
            if seq != self.last + 1 {
                self.deliver(&mut ready);
                self.behind(seq - self.last - 1);
            }
            self.last = seq;
            let message = match checked {
                Ok(m) => m,
                Err(e) => {
                    self.skip(id, &e);
                    continue;
                }
            };
            if message.epoch != self.epoch {
                // A new epoch, or a stray entry claiming one: Redis says which.
                self.deliver(&mut ready);
                let before = self.epoch.clone();
                self.rewind(seq);
                self.check();
                if self.epoch != before || self.con.is_none() {
                    // Reset (the rest of this read is moot), or to be read again.
                    return;
                }
                self.last = seq;
                self.cursor = id;
                self.skip(id, &EntryError::Field("e"));
                continue;
            }
            match self.known(&message.server) {
                Some(true) => ready.push(message),
                Some(false) => self.skip(id, &EntryError::UnknownServer),
                None => {
                    self.deliver(&mut ready);
                    return self.rewind(seq);
                }
            }
        }
        let last = self.last;
        self.roster_before(last + 1, &mut ready);
        self.deliver(&mut ready);
    }

    /// Hands `ready` to the room, a slice of at most [`DELIVER_BYTES`] at a time,
    /// each once no client here is behind and still draining (the pacer): the
    /// stream waits in Redis, not in the outboxes, so a reader that keeps reading
    /// gets a flood from any server whole, however fast it was appended, and one
    /// that stopped holds this server back for its grace at most, then is dropped.
    /// Empties `ready`.
    fn deliver(&mut self, ready: &mut Vec<Message>) {
        let mut start = 0;
        while start < ready.len() {
            let (mut end, mut bytes) = (start, 0);
            while end < ready.len() && (end == start || bytes < DELIVER_BYTES) {
                bytes += ready[end].body.len() + ENTRY_OVERHEAD;
                end += 1;
            }
            let room = &self.common.room;
            room.pacer().wait(NOBODY, || room.is_closing());
            self.deliver_now(&ready[start..end]);
            start = end;
        }
        ready.clear();
    }

    /// Hands `ready` (not empty) to the room at once.
    fn deliver_now(&mut self, ready: &[Message]) {
        if let Some(last) = ready.last() {
            self.at_cursor = Some(last.clone());
            let me = &self.common.server_id;
            let batch: Vec<Sequenced<'_>> = ready
                .iter()
                .map(|m| Sequenced {
                    seq: m.seq,
                    peer: m.peer,
                    text: &m.body,
                    origin: (&m.server == me).then_some(m.client),
                })
                .collect();
            self.common.room.deliver(&batch);
            self.common.delivered.fetch_max(last.seq, Ordering::AcqRel);
            let mut own = Vec::new();
            for m in ready.iter().filter(|m| &m.server == me) {
                self.own_call = match (m.call, self.own_call) {
                    (Some(call), _) => Some((call, 0)),
                    (None, Some((call, at))) => Some((call, at + 1)),
                    (None, None) => None,
                };
                own.extend(self.own_call);
            }
            let owed = self.common.tracker.delivered(last.seq, &own);
            super::writer::send_owed(self.common, owed);
        }
    }

    /// A hole of `missed` numbers: they are gone from the stream (this server fell
    /// behind what it retains, or entries were deleted). Every client here would
    /// miss them, so each is told and disconnected.
    fn behind(&mut self, missed: u64) {
        let missed = super::writer::messages(missed as usize);
        let text = format!(
            "room history lost: this server fell {missed} behind what the room keeps; \
             reconnect"
        );
        let n = self
            .common
            .room
            .disconnect_all(ErrorCode::ROOM_RESET, &text);
        tracing::warn!(
            "backplane: {missed} after {} are gone from the stream; {n} clients disconnected",
            self.last
        );
    }

    fn skip(&self, (ms, seq): StreamId, why: &EntryError) {
        tracing::warn!("backplane: entry {ms}-{seq} skipped: {why}");
    }

    /// Makes entry `seq` the next to read, so it is read again after a reconnect.
    fn rewind(&mut self, seq: u64) {
        self.last = seq - 1;
        self.cursor = (0, seq - 1);
    }

    /// True if `server` joined the room (asking Redis once for each new name);
    /// `None` if Redis could not be asked.
    fn known(&mut self, server: &str) -> Option<bool> {
        if self.servers.contains(server) {
            return Some(true);
        }
        if self.strangers.contains(server) {
            return Some(false);
        }
        let con = self.con.as_mut()?;
        match script::servers(con, &self.common.keys) {
            Ok(list) => self.servers.extend(list),
            Err(e) => {
                tracing::warn!("backplane: cannot list the room's servers: {e}");
                self.con = None;
                return None;
            }
        }
        if self.servers.contains(server) {
            return Some(true);
        }
        if self.strangers.len() < 1024 {
            self.strangers.insert(server.to_string());
        }
        Some(false)
    }
}
