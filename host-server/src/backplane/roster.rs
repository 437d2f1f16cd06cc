//! One roster for the room: who is in it, whichever server they are on.
//!
//! Joins and leaves are entries of a stream of their own, `{room:NAME}:roster:EPOCH`,
//! so they take no message number (clients' numbers stay contiguous). Each entry
//! carries the room's last message number when it was written (`a`): every server
//! delivers it after that message and before the next, so everyone hears every join
//! and leave at the same place in the room's one order. The hash
//! `{room:NAME}:who:EPOCH` (`SERVER:CLIENT` to address) is who is in the room; it and
//! the stream change together in one script, which also makes a repeated join or
//! leave (a retry after a lost reply) write nothing.
//!
//! Every server beats: it writes Redis's time into `{room:NAME}:alive` every fifth of
//! `server_timeout`, and in the same script takes out of the room every server that
//! has not beaten for three fifths of it (judged at a beat, a fifth apart, after the
//! dead server's last beat, a fifth before it died at most: within the timeout),
//! writing the leaves of its clients (once: the
//! script is atomic and removes the server from `alive`). A server whose own previous
//! beat is that old does not judge others: Redis (or its own link to it) was stopped,
//! not they. A server taken out anyway (its link froze) learns it at its next beat
//! and disconnects its clients with a notice; its reader disconnects each of them
//! when it reads its leave, in the room's order.

use std::thread;
use std::time::{Duration, Instant};

use proto_core::{ErrorCode, PeerAddr};
use redis::{Connection, RedisResult, Script};

use super::link;
use super::script::{Keys, ENSURE};
use super::Common;
use crate::room::Member;

/// A change of the roster asked for by this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// Client `client` of this server joined.
    Join { client: u64, peer: PeerAddr },
    /// It left, for reason `why` (empty if none).
    Leave {
        client: u64,
        peer: PeerAddr,
        why: String,
    },
}

/// Reads a stream's last ID (`0-0` for a stream that does not exist).
const LAST: &str = r#"
local function last(key)
  if redis.call('EXISTS', key) == 0 then return 0 end
  local raw = redis.call('XINFO', 'STREAM', key)
  for i = 1, #raw, 2 do
    if raw[i] == 'last-generated-id' then return seq(raw[i + 1]) end
  end
  return 0
end
"#;

/// KEYS stream, epoch, roster, who; ARGV believed epoch, candidate epoch, floor,
/// retain, server id, then (kind j/l, client, peer, why) per change.
/// Returns {'RESET', epoch} or {'OK', entries written}.
const WRITE: &str = r#"
local e = ensure(ARGV[2], ARGV[3])
if e ~= ARGV[1] then return {'RESET', e} end
local after = last(KEYS[1])
local n = 0
for i = 6, #ARGV - 3, 4 do
  local field = ARGV[5] .. ':' .. ARGV[i + 1]
  local changed
  if ARGV[i] == 'j' then
    changed = redis.call('HSETNX', KEYS[4], field, ARGV[i + 2]) == 1
  else
    changed = redis.call('HDEL', KEYS[4], field) == 1
  end
  if changed then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '0-*', 'e', e, 'a', after,
      'k', ARGV[i], 'o', ARGV[5], 'c', ARGV[i + 1], 'p', ARGV[i + 2], 'w', ARGV[i + 3])
    n = n + 1
  end
end
return {'OK', tostring(n)}
"#;

/// KEYS stream, epoch, roster, who. Returns {epoch, last message, last roster entry,
/// who (field, value, ...)}, all read at one instant.
const SNAPSHOT: &str = r#"
local e = redis.call('GET', KEYS[2]) or ''
return {e, tostring(last(KEYS[1])), tostring(last(KEYS[3])), redis.call('HGETALL', KEYS[4])}
"#;

/// KEYS alive, dead, roster, who, epoch, stream; ARGV server id, silence that makes
/// a server dead (ms), beat interval (ms), retain, '1' to leave the room (shutdown),
/// the epoch of the roster keys, the reason given in the leaves.
/// Returns {'OK' | 'DEAD' | 'RETIRED', clients taken out}.
const BEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local e = redis.call('GET', KEYS[5])
local function reap(server, why)
  local after = last(KEYS[6])
  local all = redis.call('HGETALL', KEYS[4])
  local pre = server .. ':'
  local n = 0
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #pre) == pre then
      redis.call('HDEL', KEYS[4], all[i])
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '0-*', 'e', e, 'a', after,
        'k', 'l', 'o', server, 'c', string.sub(all[i], #pre + 1), 'p', all[i + 1],
        'w', why)
      n = n + 1
    end
  end
  return n
end
if ARGV[5] == '1' then
  -- In another epoch than the caller's, its clients are the timeout's to take out.
  if e ~= ARGV[6] then return {'RETIRED', 0} end
  redis.call('HDEL', KEYS[1], me)
  return {'RETIRED', reap(me, 'server shut down')}
end
local dead = redis.call('SREM', KEYS[2], me) == 1
local prev = tonumber(redis.call('HGET', KEYS[1], me) or '0')
redis.call('HSET', KEYS[1], me, now)
local n = 0
-- Judge others only when this server's view is current: it beat recently (else
-- Redis or its link was stopped, not they) and follows the room's epoch.
if e == ARGV[6] and not dead and prev > 0 and now - prev <= 2 * tonumber(ARGV[3]) then
  local alive = redis.call('HGETALL', KEYS[1])
  for i = 1, #alive, 2 do
    if alive[i] ~= me and now - tonumber(alive[i + 1]) > tonumber(ARGV[2]) then
      redis.call('HDEL', KEYS[1], alive[i])
      redis.call('SADD', KEYS[2], alive[i])
      n = n + reap(alive[i], ARGV[7])
    end
  end
end
if dead then return {'DEAD', n} end
return {'OK', n}
"#;

/// The roster's scripts, built once per thread.
pub(crate) struct Scripts {
    write: Script,
    snapshot: Script,
    beat: Script,
}

/// What a roster write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Wrote {
    /// Written (changes that were made already wrote nothing).
    Done,
    /// Redis holds another epoch: the room was reset; nothing was written.
    Reset(String),
}

/// The roster at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) epoch: String,
    /// The last message number and the last roster entry at that instant.
    pub(crate) tail: u64,
    pub(crate) roster: u64,
    pub(crate) members: Vec<Member>,
}

/// What a beat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Beaten; this many clients of dead servers were taken out.
    Ok(u64),
    /// This server had been taken for dead (its clients are out of the room); it
    /// beats again from now on.
    Dead(u64),
    /// This server left the room, with this many clients.
    Retired(u64),
}

fn unexpected(what: &'static str, value: String) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::UnexpectedReturnType, what, value))
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            write: Script::new(&format!("{ENSURE}{LAST}{WRITE}")),
            snapshot: Script::new(&format!("{ENSURE}{LAST}{SNAPSHOT}")),
            beat: Script::new(&format!("{ENSURE}{LAST}{BEAT}")),
        }
    }

    /// Writes `ops` of server `common.server_id` in one atomic call.
    pub(crate) fn write(
        &self,
        con: &mut Connection,
        common: &Common,
        floor: u64,
        ops: &[Op],
    ) -> RedisResult<Wrote> {
        let keys = &common.keys;
        let epoch = common.epoch();
        let mut inv = self.write.key(&keys.stream);
        inv.key(&keys.epoch)
            .key(keys.roster(&epoch))
            .key(keys.who(&epoch))
            .arg(&epoch)
            .arg(link::random_token())
            .arg(floor)
            .arg(common.config.retain)
            .arg(&common.server_id);
        for op in ops {
            match op {
                Op::Join { client, peer } => inv.arg("j").arg(client).arg(peer.to_string()).arg(""),
                Op::Leave { client, peer, why } => {
                    inv.arg("l").arg(client).arg(peer.to_string()).arg(why)
                }
            };
        }
        let (what, value): (String, String) = inv.invoke(con)?;
        match what.as_str() {
            "RESET" => Ok(Wrote::Reset(value)),
            "OK" => Ok(Wrote::Done),
            _ => Err(unexpected(
                "unexpected answer from the roster script",
                value,
            )),
        }
    }

    /// Reads who is in the room of epoch `epoch`, with the positions of both streams.
    pub(crate) fn snapshot(
        &self,
        con: &mut Connection,
        keys: &Keys,
        epoch: &str,
    ) -> RedisResult<Snapshot> {
        let (epoch_now, tail, roster, who): (String, u64, u64, Vec<(String, String)>) = self
            .snapshot
            .key(&keys.stream)
            .key(&keys.epoch)
            .key(keys.roster(epoch))
            .key(keys.who(epoch))
            .invoke(con)?;
        let members = who
            .into_iter()
            .filter_map(|(field, peer)| {
                let (server, client) = field.rsplit_once(':')?;
                Some(Member {
                    server: server.into(),
                    client: client.parse().ok()?,
                    peer: peer.parse::<std::net::SocketAddr>().ok()?.into(),
                })
            })
            .collect();
        Ok(Snapshot {
            epoch: epoch_now,
            tail,
            roster,
            members,
        })
    }

    /// Beats for this server (or, with `retire`, takes it and its clients out of
    /// the room).
    pub(crate) fn beat(
        &self,
        con: &mut Connection,
        common: &Common,
        retire: bool,
    ) -> RedisResult<Beat> {
        let keys = &common.keys;
        let epoch = common.epoch();
        let timeout = common.config.server_timeout;
        let interval = beat_interval(timeout);
        let (what, n): (String, u64) = self
            .beat
            .key(&keys.alive)
            .key(&keys.dead)
            .key(keys.roster(&epoch))
            .key(keys.who(&epoch))
            .key(&keys.epoch)
            .key(&keys.stream)
            .arg(&common.server_id)
            .arg((timeout - 2 * interval).as_millis() as u64)
            .arg(interval.as_millis() as u64)
            .arg(common.config.retain)
            .arg(if retire { "1" } else { "0" })
            .arg(&epoch)
            .arg(format!(
                "its server stopped answering for {:.1} s",
                timeout.as_secs_f64()
            ))
            .invoke(con)?;
        match what.as_str() {
            "OK" => Ok(Beat::Ok(n)),
            "DEAD" => Ok(Beat::Dead(n)),
            "RETIRED" => Ok(Beat::Retired(n)),
            _ => Err(unexpected("unexpected answer from the beat script", what)),
        }
    }
}

/// How often a server beats: a fifth of the time after which it is taken for dead,
/// so the leaves of a dead server's clients are written within that time.
pub(crate) fn beat_interval(timeout: Duration) -> Duration {
    timeout / 5
}

/// Pause between attempts to reach Redis again.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The heartbeat thread's body: beats until the room closes, then takes this
/// server's clients out of the room (they are not told one by one at shutdown).
pub(crate) fn heartbeat(common: &Common) {
    let scripts = Scripts::new();
    let interval = beat_interval(common.config.server_timeout);
    let mut con: Option<Connection> = None;
    let mut next = Instant::now();
    while !common.room.is_closing() {
        if Instant::now() < next {
            thread::sleep((next - Instant::now()).min(Duration::from_millis(50)));
            continue;
        }
        if con.is_none() {
            con = link::connect(&common.config).ok();
        }
        let Some(c) = con.as_mut() else {
            next = Instant::now() + RETRY_PAUSE;
            continue;
        };
        match scripts.beat(c, common, false) {
            Ok(Beat::Ok(0)) => next = Instant::now() + interval,
            Ok(Beat::Ok(n)) => {
                tracing::warn!(
                    "backplane: a server stopped beating; {n} of its clients left the room"
                );
                next = Instant::now() + interval;
            }
            Ok(Beat::Dead(_)) => {
                let text = "this server lost its link to the room for too long and the other \
                            servers took its clients out of the room; reconnect";
                let n = common.room.disconnect_all(ErrorCode::ROOM_RESET, text);
                tracing::warn!(
                    "backplane: this server was taken for dead by the room; {n} clients disconnected"
                );
                next = Instant::now() + interval;
            }
            Ok(Beat::Retired(_)) => next = Instant::now() + interval,
            Err(e) => {
                tracing::warn!("backplane: heartbeat failed, reconnecting: {e}");
                con = None;
                next = Instant::now() + RETRY_PAUSE;
            }
        }
    }
    // Only on a connection that answered: a shutdown does not wait on an
    // unreachable Redis (the timeout then takes the clients out).
    let retired = con.map(|mut c| scripts.beat(&mut c, common, true));
    match retired {
        Some(Ok(Beat::Retired(n))) => {
            tracing::info!("backplane: left the room with {n} clients");
        }
        _ => tracing::warn!(
            "backplane: could not leave the room; the other servers take this server's \
             clients out after --backplane-server-timeout-ms"
        ),
    }
}
