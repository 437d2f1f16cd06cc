//! The writer thread: appends the sessions' batches to the room's stream.
//!
//! Everything that waited while the previous call was out goes into the next call,
//! up to `batch` messages: one round trip per call, however many senders. One
//! connection, one call at a time, so each sender's messages keep their order.
//!
//! A call that fails on the connection is retried with the same dedupe key (the
//! script returns the first try's result if that one went through) until
//! `append_timeout` after its oldest batch arrived. Then:
//! - if it was never sent, it was not appended: its senders are told so at once;
//! - if it was sent, its fate is unknown until Redis answers again. The first thing
//!   done on the next connection is to void its dedupe key (`SET NX`): if that
//!   succeeds, no try can append it any more and its senders are told it was not
//!   delivered; if the key holds a sequence number, it was appended and is delivered
//!   like any other message. Either way the sender learns the truth.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use proto_core::ErrorCode;
use redis::{Connection, RedisError, RetryMethod};

use super::link::{self, random_token};
use super::script::{self, Append, AppendArgs, Appended, Message};
use super::{Common, Outgoing};
use crate::wire;

/// Pause between attempts to reach Redis again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How often an idle writer looks for the room closing.
const IDLE_TICK: Duration = Duration::from_millis(200);

/// An append call's batches and dedupe key.
struct Call {
    dedupe: String,
    batches: Vec<Outgoing>,
}

struct Writer<'c> {
    common: &'c Common,
    con: Option<Connection>,
    script: Append,
    calls: u64,
    /// Calls sent but not answered, past their time: voided on the next connection.
    doubtful: Vec<Call>,
    last_attempt: Option<Instant>,
    /// Logged once per outage.
    down: bool,
}

/// The writer thread's body: runs until the room closes.
pub(crate) fn run(common: &Common, from_rooms: &Receiver<Outgoing>) {
    let mut writer = Writer {
        common,
        con: None,
        script: Append::new(),
        calls: 0,
        doubtful: Vec::new(),
        last_attempt: None,
        down: false,
    };
    super::supervise("writer", &common.room, || writer.serve(from_rooms));
}

impl Writer<'_> {
    fn serve(&mut self, from_rooms: &Receiver<Outgoing>) {
        while !self.common.room.is_closing() {
            let first = match from_rooms.recv_timeout(IDLE_TICK) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    if !self.doubtful.is_empty() {
                        self.connected();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut count = first.ends.len();
            let mut batches = vec![first];
            while count < self.common.config.batch {
                match from_rooms.try_recv() {
                    Ok(next) => {
                        count += next.ends.len();
                        batches.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.calls += 1;
            let dedupe = self.common.keys.dedupe(&self.common.server_id, self.calls);
            self.send(Call { dedupe, batches });
        }
    }

    /// Appends `call`, retrying until it is appended or refused.
    fn send(&mut self, call: Call) {
        let oldest = call.batches.iter().map(|b| b.since).min();
        let oldest = oldest.unwrap_or_else(Instant::now);
        let mut sent = false;
        loop {
            if self.connected() {
                sent = true;
                match self.append(&call) {
                    Ok(Appended::At(_)) => return,
                    Ok(Appended::Void) => return refuse(self.common, &call, "not delivered"),
                    Ok(Appended::Reset(epoch)) => {
                        tracing::warn!("backplane: the room was reset (epoch {epoch})");
                        self.common.reset_seen.store(true, Ordering::Release);
                        return refuse(self.common, &call, "not delivered: the room was reset");
                    }
                    Err(e) if transient(&e) => {
                        tracing::warn!("backplane: append failed, retrying: {e}");
                        self.con = None;
                    }
                    Err(e) => {
                        tracing::warn!("backplane: append refused by Redis: {e}");
                        return refuse(
                            self.common,
                            &call,
                            "not delivered: the room backplane refused it",
                        );
                    }
                }
            }
            if oldest.elapsed() >= self.common.config.append_timeout
                || self.common.room.is_closing()
            {
                if sent {
                    self.doubtful.push(call);
                } else {
                    refuse(
                        self.common,
                        &call,
                        "not delivered: the room backplane is unavailable",
                    );
                }
                return;
            }
            thread::sleep(RETRY_PAUSE);
        }
    }

    fn append(&mut self, call: &Call) -> Result<Appended, RedisError> {
        let Some(con) = self.con.as_mut() else {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "not connected",
            )));
        };
        let epoch = self.common.epoch();
        let cand = random_token();
        let args = AppendArgs {
            keys: &self.common.keys,
            dedupe: &call.dedupe,
            epoch: &epoch,
            cand: &cand,
            floor: self.common.delivered.load(Ordering::Acquire),
            retain: self.common.config.retain,
            server: &self.common.server_id,
        };
        let peers: Vec<String> = call.batches.iter().map(|b| b.peer.to_string()).collect();
        let messages = call.batches.iter().zip(&peers).flat_map(|(b, peer)| {
            b.messages().map(move |body| Message {
                client: b.client,
                peer,
                body,
            })
        });
        self.script.call(con, &args, messages)
    }

    /// True when connected, after settling the doubtful calls; tries to connect at
    /// most once per [`RETRY_PAUSE`].
    fn connected(&mut self) -> bool {
        if self.con.is_none() {
            if self.last_attempt.is_some_and(|t| t.elapsed() < RETRY_PAUSE) {
                return false;
            }
            self.last_attempt = Some(Instant::now());
            match link::connect(&self.common.config) {
                Ok(con) => {
                    if self.down {
                        tracing::info!("backplane: writer reconnected");
                    }
                    self.down = false;
                    self.con = Some(con);
                }
                Err(e) => {
                    if !self.down {
                        tracing::warn!("backplane: writer cannot reach Redis: {e}");
                    }
                    self.down = true;
                    return false;
                }
            }
        }
        while let Some(call) = self.doubtful.first() {
            let Some(con) = self.con.as_mut() else {
                return false;
            };
            match script::void(con, &call.dedupe) {
                Ok(true) => {}
                Ok(false) => refuse(
                    self.common,
                    call,
                    "not delivered: the room backplane was unavailable",
                ),
                Err(e) => {
                    tracing::warn!("backplane: cannot settle an unanswered append: {e}");
                    self.con = None;
                    return false;
                }
            }
            self.doubtful.remove(0);
        }
        true
    }
}

/// True for an error after which the same call may succeed on a new connection.
fn transient(e: &RedisError) -> bool {
    !matches!(e.retry_method(), RetryMethod::NoRetry) || e.is_timeout() || e.is_io_error()
}

/// Tells each sender of `call` how many of its messages were not delivered, and why.
fn refuse(common: &Common, call: &Call, why: &str) {
    let mut senders: Vec<(u64, usize)> = Vec::new();
    for b in &call.batches {
        match senders.iter_mut().find(|(c, _)| *c == b.client) {
            Some((_, n)) => *n += b.ends.len(),
            None => senders.push((b.client, b.ends.len())),
        }
    }
    for (client, n) in senders {
        let text = if n == 1 {
            format!("error: 1 message {why}")
        } else {
            format!("error: {n} messages {why}")
        };
        common.room.tell(client, |mode| {
            wire::error(mode, ErrorCode::NOT_DELIVERED, &text)
        });
    }
    let total: usize = call.batches.iter().map(|b| b.ends.len()).sum();
    let s = if total == 1 { "" } else { "s" };
    tracing::warn!("backplane: {total} message{s} {why}");
}
