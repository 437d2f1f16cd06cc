//! The room's keys in Redis and the two Lua scripts that keep them consistent.
//!
//! Keys share one hash tag, `{room:NAME}`, so the scripts stay valid on a Redis
//! Cluster (one room on one shard):
//! - `{room:NAME}:stream`: the messages, IDs `0-1`, `0-2`, ... (the room's order);
//! - `{room:NAME}:epoch`: a random token created with the stream. A stream that is
//!   missing, or an epoch that is missing or different, means Redis lost the room;
//! - `{room:NAME}:servers`: the ids of the servers that joined (entries from others
//!   are not delivered);
//! - `{room:NAME}:m:SERVER:N`: a retried append's dedupe key, kept for
//!   `--backplane-dedupe-secs` (a minute);
//! - `{room:NAME}:voided`: per server, the last append call it gave up on for good
//!   (so a try of it still on its way cannot append it any more); a few bytes per
//!   server start, like `servers`;
//! - `{room:NAME}:roster:EPOCH` and `{room:NAME}:who:EPOCH`: the roster's stream of
//!   joins and leaves and the hash of who is in the room (see `roster`); named by
//!   epoch, so a room started over starts with nobody in it;
//! - `{room:NAME}:alive`: per server, when it last beat (Redis's clock, ms), and
//!   `{room:NAME}:dead`: the servers taken out of the room for their silence.

use redis::{Connection, RedisResult, Script};

use super::entry::{parse_seq, Message as Entry};

/// The names of one room's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Keys {
    pub(crate) stream: String,
    pub(crate) epoch: String,
    pub(crate) servers: String,
    pub(crate) voided: String,
    pub(crate) alive: String,
    pub(crate) dead: String,
    prefix: String,
}

impl Keys {
    pub(crate) fn new(room: &str) -> Self {
        let prefix = format!("{{room:{room}}}");
        Self {
            stream: format!("{prefix}:stream"),
            epoch: format!("{prefix}:epoch"),
            servers: format!("{prefix}:servers"),
            voided: format!("{prefix}:voided"),
            alive: format!("{prefix}:alive"),
            dead: format!("{prefix}:dead"),
            prefix,
        }
    }

    /// The roster stream of the room in epoch `epoch`.
    pub(crate) fn roster(&self, epoch: &str) -> String {
        format!("{}:roster:{epoch}", self.prefix)
    }

    /// The hash of who is in the room in epoch `epoch`: `SERVER:CLIENT` to address.
    pub(crate) fn who(&self, epoch: &str) -> String {
        format!("{}:who:{epoch}", self.prefix)
    }

    /// The dedupe key of append number `n` of server `server`.
    pub(crate) fn dedupe(&self, server: &str, n: u64) -> String {
        format!("{}:m:{server}:{n}", self.prefix)
    }
}

/// Shared by both scripts: returns the room's epoch, first recreating the room if
/// Redis lost it. KEYS[1] stream, KEYS[2] epoch; `cand` a fresh epoch, `floor` the
/// highest sequence number the caller has delivered, so a recreated stream numbers on
/// from there and no client sees a number go backwards. `restart` starts the room
/// over in a new epoch above `floor` (Redis holds less than was delivered from it).
pub(crate) const ENSURE: &str = r#"
local function ensure(cand, floor)
  local e = redis.call('GET', KEYS[2])
  local have = redis.call('EXISTS', KEYS[1]) == 1
  if e and have then return e end
  if not have then
    if tonumber(floor) > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '0', '0-' .. floor, 'r', '')
    else
      redis.call('XGROUP', 'CREATE', KEYS[1], 'init', '0', 'MKSTREAM')
      redis.call('XGROUP', 'DESTROY', KEYS[1], 'init')
    end
  end
  redis.call('SET', KEYS[2], cand)
  return cand
end
local function restart(cand, floor)
  redis.call('DEL', KEYS[1], KEYS[2])
  return ensure(cand, floor)
end
local function seq(id)
  local n = string.match(id, '^0%-(%d+)$')
  if n then return tonumber(n) end
  return -1
end
local function info()
  local raw = redis.call('XINFO', 'STREAM', KEYS[1])
  local out = {}
  for i = 1, #raw, 2 do out[raw[i]] = raw[i + 1] end
  return out
end
"#;

/// KEYS stream, epoch, servers; ARGV candidate epoch, floor, server id, then the
/// caller's cursor (the last ID it read, or '') and that entry's fields e, o, c, b.
/// Returns {epoch, last-generated-id}.
///
/// The room starts over (a new epoch, numbering on above the floor) when Redis holds
/// less than the caller delivered: a last ID below the floor, or the entry at the
/// cursor gone (deleted, not trimmed: entries after it remain before it) or another
/// than the one read. That is Redis come back with an older copy of the room (an
/// older snapshot, a replica that missed writes) in the same epoch.
const OPEN: &str = r#"
local e = ensure(ARGV[1], ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
local i = info()
local top = i['last-generated-id']
local floor = tonumber(ARGV[2])
local rewound = seq(top) < floor
if not rewound and ARGV[4] ~= '' then
  local at = redis.call('XRANGE', KEYS[1], ARGV[4], ARGV[4])
  local first = i['first-entry']
  if #at == 0 then
    -- (a missing reply is false in Lua, not nil)
    rewound = first and seq(first[1]) < seq(ARGV[4]) or false
  else
    local want = {e = ARGV[5], o = ARGV[6], c = ARGV[7], b = ARGV[8]}
    local f = at[1][2]
    local seen = 0
    for j = 1, #f, 2 do
      if want[f[j]] ~= nil then
        if want[f[j]] ~= f[j + 1] then rewound = true end
        seen = seen + 1
      end
    end
    if seen ~= 4 then rewound = true end
  end
end
if rewound then
  e = restart(ARGV[1], math.max(floor, seq(top)))
  top = info()['last-generated-id']
end
return {e, top}
"#;

/// KEYS stream, epoch, dedupe, voided; ARGV believed epoch, candidate epoch, floor,
/// retain, dedupe seconds, server id, call number, then (client, peer, body) per
/// message. The call's first entry carries its number (`n`), so its fate can be
/// found in the stream after its dedupe key expired.
/// Returns {'RESET', epoch}, {'DONE', first id or 'void'} (a retry of an append
/// already decided) or {'OK', first id}.
const APPEND: &str = r#"
local e = ensure(ARGV[2], ARGV[3])
if e ~= ARGV[1] then return {'RESET', e} end
local d = redis.call('GET', KEYS[3])
if d then return {'DONE', d} end
local v = redis.call('HGET', KEYS[4], ARGV[6])
if v and tonumber(v) >= tonumber(ARGV[7]) then return {'DONE', 'void'} end
local first = nil
for i = 8, #ARGV - 2, 3 do
  local id
  if first then
    id = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '0-*',
      'e', e, 'o', ARGV[6], 'c', ARGV[i], 'p', ARGV[i + 1], 'b', ARGV[i + 2])
  else
    id = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '0-*',
      'e', e, 'o', ARGV[6], 'c', ARGV[i], 'p', ARGV[i + 1], 'b', ARGV[i + 2],
      'n', ARGV[7])
  end
  if type(id) == 'table' and id.err then
    if not first and string.find(id.err, 'equal or smaller', 1, true) then
      -- A foreign entry with an ID above 0-N: no 0-* can follow it. Start the
      -- room over (readers see the new epoch and reset).
      return {'RESET', restart(ARGV[2], ARGV[3])}
    end
    return redis.error_reply(id.err)
  end
  if not first then
    first = id
    if seq(id) <= tonumber(ARGV[3]) then
      -- Redis holds less than this server delivered: the number is taken. Start
      -- the room over above the floor (nothing of this call stays).
      return {'RESET', restart(ARGV[2], ARGV[3])}
    end
  end
end
redis.call('SET', KEYS[3], first, 'EX', ARGV[5])
return {'OK', first}
"#;

/// KEYS stream, epoch, dedupe, voided; ARGV server id, call number, floor (the
/// highest sequence number delivered when the call was first sent: its entries come
/// after), most entries to look through, the epoch it was sent in.
/// Settles a call whose answer never came: {'AT', first id} if it was appended,
/// {'VOID', ''} if not, {'UNKNOWN', ''} if Redis no longer holds what would tell (its
/// dedupe key expired and the entries after the floor were trimmed, or the room it
/// was sent to is gone: a new epoch, or no stream). Unless appended, no try of it can
/// append any more: calls up to this number from this server are refused from now on.
const VOID: &str = r#"
local d = redis.call('GET', KEYS[3])
if d == 'void' then return {'VOID', ''} end
if d then return {'AT', d} end
local function bar(fate)
  local v = redis.call('HGET', KEYS[4], ARGV[1])
  if not v or tonumber(v) < tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
  end
  return {fate, ''}
end
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('GET', KEYS[2]) ~= ARGV[5] then
  return bar('UNKNOWN')
end
local floor = tonumber(ARGV[3])
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local from = '(0-' .. ARGV[3]
local seen = 0
while seen < tonumber(ARGV[4]) do
  local batch = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', 256)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    local f = entry[2]
    local o, n = nil, nil
    for j = 1, #f, 2 do
      if f[j] == 'o' then o = f[j + 1] elseif f[j] == 'n' then n = f[j + 1] end
    end
    if o == ARGV[1] and n == ARGV[2] then return {'AT', entry[1]} end
  end
  seen = seen + #batch
  from = '(' .. batch[#batch][1]
end
if seen >= tonumber(ARGV[4]) then return bar('UNKNOWN') end
-- Entries were appended after the floor and the first of them is gone (trimmed:
-- the stream may even be empty now).
local trimmed = #head == 0 or seq(head[1][1]) > floor + 1
if seq(info()['last-generated-id']) > floor and trimmed then return bar('UNKNOWN') end
return bar('VOID')
"#;

/// What opening the room found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) epoch: String,
    /// The sequence number of the last message appended so far.
    pub(crate) tail: u64,
}

/// Registers server `server` in the room and reads its epoch and last sequence
/// number, creating the room (epoch `cand`, numbering on from `floor`) if Redis
/// does not hold it, and starting it over if Redis holds less than was delivered
/// (below `floor`, or not `last`, the last entry read).
pub(crate) fn open(
    con: &mut Connection,
    keys: &Keys,
    server: &str,
    cand: &str,
    floor: u64,
    last: Option<&Entry>,
) -> RedisResult<Opened> {
    let script = Script::new(&format!("{ENSURE}{OPEN}"));
    let mut inv = script.key(&keys.stream);
    inv.key(&keys.epoch)
        .key(&keys.servers)
        .arg(cand)
        .arg(floor)
        .arg(server);
    match last {
        Some(m) => inv
            .arg(format!("0-{}", m.seq))
            .arg(&m.epoch)
            .arg(&m.server)
            .arg(m.client)
            .arg(&m.body),
        None => inv.arg("").arg("").arg("").arg("").arg(""),
    };
    let (epoch, tail): (String, String) = inv.invoke(con)?;
    let tail = parse_seq(tail.as_bytes()).ok_or_else(|| {
        redis::RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "the room's stream has an ID the room did not give",
            tail,
        ))
    })?;
    Ok(Opened { epoch, tail })
}

/// The outcome of an append script call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Appended {
    /// Appended now, or by an earlier try of the same call: the first message's
    /// sequence number (the others follow it without a gap).
    At(u64),
    /// An earlier try gave up on this call for good; nothing was appended.
    Void,
    /// Redis holds another epoch: the room was reset. Nothing was appended.
    Reset(String),
}

/// One message of an append call.
pub(crate) struct Message<'a> {
    pub(crate) client: u64,
    pub(crate) peer: &'a str,
    pub(crate) body: &'a str,
}

/// The append script, built once per writer.
pub(crate) struct Append {
    script: Script,
}

/// The settings of one append call besides the messages.
pub(crate) struct AppendArgs<'a> {
    pub(crate) keys: &'a Keys,
    pub(crate) dedupe: &'a str,
    pub(crate) epoch: &'a str,
    pub(crate) cand: &'a str,
    pub(crate) floor: u64,
    pub(crate) retain: u64,
    pub(crate) server: &'a str,
    /// The call's number among this server's calls.
    pub(crate) call: u64,
    /// Seconds the dedupe key outlives the append.
    pub(crate) dedupe_secs: u64,
}

impl Append {
    pub(crate) fn new() -> Self {
        Self {
            script: Script::new(&format!("{ENSURE}{APPEND}")),
        }
    }

    /// Appends `messages` in one atomic call.
    pub(crate) fn call<'m>(
        &self,
        con: &mut Connection,
        args: &AppendArgs<'_>,
        messages: impl Iterator<Item = Message<'m>>,
    ) -> RedisResult<Appended> {
        let mut inv = self.script.key(&args.keys.stream);
        inv.key(&args.keys.epoch)
            .key(args.dedupe)
            .key(&args.keys.voided)
            .arg(args.epoch)
            .arg(args.cand)
            .arg(args.floor)
            .arg(args.retain)
            .arg(args.dedupe_secs)
            .arg(args.server)
            .arg(args.call);
        for m in messages {
            inv.arg(m.client).arg(m.peer).arg(m.body);
        }
        let (what, value): (String, String) = inv.invoke(con)?;
        let bad = |value: String| {
            redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected answer from the append script",
                value,
            ))
        };
        match (what.as_str(), value.as_str()) {
            ("RESET", _) => Ok(Appended::Reset(value)),
            ("DONE", "void") => Ok(Appended::Void),
            ("OK" | "DONE", id) => parse_seq(id.as_bytes())
                .map(Appended::At)
                .ok_or_else(|| bad(value)),
            _ => Err(bad(value)),
        }
    }
}

/// What became of an append call whose answer never came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Appended: the first message's sequence number.
    At(u64),
    /// Not appended, and now never will be.
    Void,
    /// Redis no longer holds what would tell.
    Unknown,
}

/// An append call whose answer never came, as the void script looks for it.
pub(crate) struct Unsettled<'a> {
    /// Its dedupe key.
    pub(crate) dedupe: &'a str,
    /// The server that sent it, and its number among that server's calls.
    pub(crate) server: &'a str,
    pub(crate) number: u64,
    /// The highest sequence number delivered when it was first sent.
    pub(crate) floor: u64,
    /// The room's epoch when it was first sent.
    pub(crate) epoch: &'a str,
}

/// The void script, built once per writer.
pub(crate) struct Settle {
    script: Script,
}

impl Settle {
    pub(crate) fn new() -> Self {
        Self {
            script: Script::new(&format!("{ENSURE}{VOID}")),
        }
    }

    /// Finds out what became of `call`, making sure that a call not appended never
    /// will be; looks through at most `limit` entries.
    pub(crate) fn call(
        &self,
        con: &mut Connection,
        keys: &Keys,
        call: &Unsettled<'_>,
        limit: u64,
    ) -> RedisResult<Fate> {
        let (what, value): (String, String) = self
            .script
            .key(&keys.stream)
            .key(&keys.epoch)
            .key(call.dedupe)
            .key(&keys.voided)
            .arg(call.server)
            .arg(call.number)
            .arg(call.floor)
            .arg(limit)
            .arg(call.epoch)
            .invoke(con)?;
        match (what.as_str(), parse_seq(value.as_bytes())) {
            ("VOID", _) => Ok(Fate::Void),
            ("UNKNOWN", _) => Ok(Fate::Unknown),
            ("AT", Some(first)) => Ok(Fate::At(first)),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "unexpected answer from the void script",
                format!("{what} {value}"),
            ))),
        }
    }
}

/// The ids of the servers in the room.
pub(crate) fn servers(con: &mut Connection, keys: &Keys) -> RedisResult<Vec<String>> {
    redis::cmd("SMEMBERS").arg(&keys.servers).query(con)
}
