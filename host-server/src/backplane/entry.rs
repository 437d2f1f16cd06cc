//! Reading the stream's entries: from Redis's reply to checked messages, with no I/O,
//! so every way an entry can be wrong is tested here.
//!
//! An entry is trusted only as far as it checks out: its ID must be one the room
//! gave (`0-N`), its fields those the append script writes, its body a message a
//! client could have sent. Anything else is skipped with a log line; it never stops
//! the reader.

use std::fmt;
use std::net::SocketAddr;

use proto_core::{PeerAddr, MAX_MESSAGE};
use redis::Value;

/// A stream ID as Redis gives it: milliseconds part and sequence part.
pub(crate) type StreamId = (u64, u64);

/// Parses a stream ID `MS-SEQ`.
pub(crate) fn parse_id(id: &[u8]) -> Option<StreamId> {
    let id = std::str::from_utf8(id).ok()?;
    let (ms, seq) = id.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The room's sequence number in an ID `0-SEQ`; `None` for any other ID.
pub(crate) fn parse_seq(id: &[u8]) -> Option<u64> {
    match parse_id(id)? {
        (0, seq) => Some(seq),
        _ => None,
    }
}

/// An entry of a reply: its fields, or why its shape is wrong (with its ID when
/// that much could be read).
pub(crate) type RawResult = Result<Raw, (Option<StreamId>, EntryError)>;

/// One entry of an `XREAD` reply, its fields not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Raw {
    pub(crate) id: StreamId,
    /// Field names and values, as Redis gave them.
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a reply or an entry was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryError {
    /// The reply is not shaped like an `XREAD` reply.
    Reply(&'static str),
    /// The entry's ID is not `0-N`: it was not appended by the room.
    ForeignId(StreamId),
    /// A field the room writes is missing, or appears twice.
    Field(&'static str),
    /// The sender's address does not parse.
    Peer,
    /// The client id is not a number.
    Client,
    /// The body is longer than a message may be.
    TooLong(usize),
    /// The body is not UTF-8.
    NotUtf8,
    /// The entry names a server that never joined the room.
    UnknownServer,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Reply(what) => write!(f, "malformed XREAD reply: {what}"),
            EntryError::ForeignId((ms, seq)) => {
                write!(f, "ID {ms}-{seq} was not given by the room (IDs are 0-N)")
            }
            EntryError::Field(name) => write!(f, "field {name:?} missing or repeated"),
            EntryError::Peer => f.write_str("the sender's address does not parse"),
            EntryError::Client => f.write_str("the client id is not a number"),
            EntryError::TooLong(n) => {
                write!(f, "body of {n} bytes, more than {MAX_MESSAGE}")
            }
            EntryError::NotUtf8 => f.write_str("body is not UTF-8"),
            EntryError::UnknownServer => f.write_str("written by a server not in the room"),
        }
    }
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The entries of an `XREAD` reply for one stream (`Nil` when the block timed out).
/// An entry whose own shape is wrong is returned as its error, in place, so the
/// reader can still move past it.
#[cfg(test)]
pub(crate) fn parse_reply(reply: &Value) -> Result<Vec<RawResult>, EntryError> {
    Ok(parse_streams(reply)?
        .into_iter()
        .next()
        .map(|(_, entries)| entries)
        .unwrap_or_default())
}

/// One stream's part of an `XREAD` reply: its key and its entries.
pub(crate) type StreamEntries = (Vec<u8>, Vec<RawResult>);

/// The entries of an `XREAD` reply, per stream read.
pub(crate) fn parse_streams(reply: &Value) -> Result<Vec<StreamEntries>, EntryError> {
    let entries_of = |v: &Value| match v {
        Value::Array(entries) => Ok(entries.iter().map(parse_entry).collect()),
        _ => Err(EntryError::Reply("stream without entries")),
    };
    let key_of = |v: &Value| {
        bytes(v)
            .map(<[u8]>::to_vec)
            .ok_or(EntryError::Reply("stream name is not a string"))
    };
    match reply {
        Value::Nil => Ok(Vec::new()),
        // RESP3 shape: {stream: entries}.
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Ok((key_of(k)?, entries_of(v)?)))
            .collect(),
        Value::Array(streams) => streams
            .iter()
            .map(|stream| {
                let Value::Array(pair) = stream else {
                    return Err(EntryError::Reply("stream is not an array"));
                };
                let key = pair
                    .first()
                    .ok_or(EntryError::Reply("stream without a name"))?;
                let entries = pair
                    .get(1)
                    .ok_or(EntryError::Reply("stream without entries"))?;
                Ok((key_of(key)?, entries_of(entries)?))
            })
            .collect(),
        _ => Err(EntryError::Reply("not an array")),
    }
}

fn parse_entry(v: &Value) -> RawResult {
    let Value::Array(parts) = v else {
        return Err((None, EntryError::Reply("entry is not an array")));
    };
    let id = parts
        .first()
        .and_then(bytes)
        .and_then(parse_id)
        .ok_or((None, EntryError::Reply("entry without an ID")))?;
    let list = match parts.get(1) {
        Some(Value::Array(list)) => list,
        // A deleted entry may come back with no fields.
        Some(Value::Nil) | None => {
            return Ok(Raw {
                id,
                fields: Vec::new(),
            })
        }
        Some(_) => return Err((Some(id), EntryError::Reply("fields are not an array"))),
    };
    let mut fields = Vec::with_capacity(list.len() / 2);
    for pair in list.chunks(2) {
        match (pair.first().and_then(bytes), pair.get(1).and_then(bytes)) {
            (Some(k), Some(v)) => fields.push((k.to_vec(), v.to_vec())),
            _ => return Err((Some(id), EntryError::Reply("field is not a string pair"))),
        }
    }
    Ok(Raw { id, fields })
}

/// A checked message of the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) seq: u64,
    /// The epoch it was appended in.
    pub(crate) epoch: String,
    /// The server that appended it.
    pub(crate) server: String,
    /// The sending client's id on that server.
    pub(crate) client: u64,
    pub(crate) peer: PeerAddr,
    pub(crate) body: String,
    /// The number of the append call it opens, for the first message of a call.
    pub(crate) call: Option<u64>,
}

impl Raw {
    fn field(&self, name: &'static str) -> Result<&[u8], EntryError> {
        let mut found = self.fields.iter().filter(|(k, _)| k == name.as_bytes());
        match (found.next(), found.next()) {
            (Some((_, v)), None) => Ok(v),
            _ => Err(EntryError::Field(name)),
        }
    }

    /// Checks the entry against what the append script writes.
    pub(crate) fn check(&self) -> Result<Message, EntryError> {
        let seq = match self.id {
            (0, seq) => seq,
            id => return Err(EntryError::ForeignId(id)),
        };
        let text = |name| {
            std::str::from_utf8(self.field(name)?)
                .map(str::to_string)
                .map_err(|_| EntryError::Field(name))
        };
        let epoch = text("e")?;
        let server = text("o")?;
        let client = text("c")?.parse().map_err(|_| EntryError::Client)?;
        let peer = text("p")?
            .parse::<SocketAddr>()
            .map(PeerAddr::from)
            .map_err(|_| EntryError::Peer)?;
        let body = self.field("b")?;
        if body.len() > MAX_MESSAGE {
            return Err(EntryError::TooLong(body.len()));
        }
        let body = std::str::from_utf8(body)
            .map_err(|_| EntryError::NotUtf8)?
            .to_string();
        let call = match self.field("n") {
            Ok(n) => Some(
                std::str::from_utf8(n)
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .ok_or(EntryError::Field("n"))?,
            ),
            Err(_) => None,
        };
        Ok(Message {
            seq,
            epoch,
            server,
            client,
            peer,
            body,
            call,
        })
    }
}

/// A checked entry of the roster stream: a client joined or left the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RosterEntry {
    /// Its number in the roster stream.
    pub(crate) seq: u64,
    pub(crate) epoch: String,
    /// The room's last message number when it was written: it comes after that
    /// message and before the next, on every server.
    pub(crate) after: u64,
    /// True for a join, false for a leave.
    pub(crate) join: bool,
    /// The server the client is (was) on, and its id there.
    pub(crate) server: String,
    pub(crate) client: u64,
    pub(crate) peer: PeerAddr,
    /// Why it left, if said (empty for a join).
    pub(crate) why: String,
}

/// Longest leave reason taken from an entry.
const MAX_WHY: usize = 256;

impl Raw {
    /// Checks the entry against what the roster scripts write.
    pub(crate) fn check_roster(&self) -> Result<RosterEntry, EntryError> {
        let seq = match self.id {
            (0, seq) => seq,
            id => return Err(EntryError::ForeignId(id)),
        };
        let text = |name| {
            std::str::from_utf8(self.field(name)?)
                .map(str::to_string)
                .map_err(|_| EntryError::Field(name))
        };
        let join = match self.field("k")? {
            b"j" => true,
            b"l" => false,
            _ => return Err(EntryError::Field("k")),
        };
        let why = text("w")?;
        if why.len() > MAX_WHY {
            return Err(EntryError::TooLong(why.len()));
        }
        Ok(RosterEntry {
            seq,
            epoch: text("e")?,
            after: text("a")?.parse().map_err(|_| EntryError::Field("a"))?,
            join,
            server: text("o")?,
            client: text("c")?.parse().map_err(|_| EntryError::Client)?,
            peer: text("p")?
                .parse::<SocketAddr>()
                .map(PeerAddr::from)
                .map_err(|_| EntryError::Peer)?,
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &[u8])]) -> Value {
        let list = fields
            .iter()
            .flat_map(|(k, v)| [bulk(k.as_bytes()), bulk(v)])
            .collect();
        Value::Array(vec![bulk(id.as_bytes()), Value::Array(list)])
    }

    fn reply(entries: Vec<Value>) -> Value {
        Value::Array(vec![Value::Array(vec![
            bulk(b"{room:x}:stream"),
            Value::Array(entries),
        ])])
    }

    fn good(id: &str) -> Value {
        entry(
            id,
            &[
                ("e", b"ep"),
                ("o", b"srv"),
                ("c", b"7"),
                ("p", b"127.0.0.1:4000"),
                ("b", b"hello"),
            ],
        )
    }

    fn checked(v: &Value) -> Vec<Result<Message, EntryError>> {
        parse_reply(v)
            .unwrap()
            .into_iter()
            .map(|r| r.map_err(|(_, e)| e).and_then(|raw| raw.check()))
            .collect()
    }

    #[test]
    fn ids_parse_and_only_0_n_is_a_room_sequence() {
        assert_eq!(parse_id(b"0-12"), Some((0, 12)));
        assert_eq!(parse_id(b"1732000000000-3"), Some((1_732_000_000_000, 3)));
        assert_eq!(parse_seq(b"0-12"), Some(12));
        assert_eq!(parse_seq(b"5-1"), None);
        for bad in [
            &b""[..],
            b"0",
            b"-1",
            b"0-",
            b"a-1",
            b"0-1x",
            b"0-+1",
            b"99999999999999999999-1",
        ] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_good_entry_checks_out() {
        let got = checked(&reply(vec![good("0-3")]));
        assert_eq!(
            got,
            [Ok(Message {
                seq: 3,
                epoch: "ep".into(),
                server: "srv".into(),
                client: 7,
                peer: PeerAddr::from("127.0.0.1:4000".parse::<SocketAddr>().unwrap()),
                body: "hello".into(),
                call: None,
            })]
        );
    }

    #[test]
    fn a_timed_out_block_is_no_entries() {
        assert_eq!(parse_reply(&Value::Nil).unwrap(), []);
    }

    #[test]
    fn bad_entries_are_errors_in_place_and_good_ones_around_them_survive() {
        let long = vec![b'x'; MAX_MESSAGE + 1];
        let v = reply(vec![
            good("0-1"),
            entry("0-2", &[("junk", b"1")]),
            entry(
                "0-3",
                &[
                    ("e", b"ep"),
                    ("o", b"s"),
                    ("c", b"1"),
                    ("p", b"nowhere"),
                    ("b", b"x"),
                ],
            ),
            entry(
                "0-4",
                &[
                    ("e", b"ep"),
                    ("o", b"s"),
                    ("c", b"1"),
                    ("p", b"1.2.3.4:5"),
                    ("b", &long),
                ],
            ),
            entry(
                "0-5",
                &[
                    ("e", b"ep"),
                    ("o", b"s"),
                    ("c", b"1"),
                    ("p", b"1.2.3.4:5"),
                    ("b", b"\xff"),
                ],
            ),
            entry(
                "0-6",
                &[
                    ("e", b"ep"),
                    ("o", b"s"),
                    ("c", b"x"),
                    ("p", b"1.2.3.4:5"),
                    ("b", b""),
                ],
            ),
            good("1700000000000-0"),
            Value::Array(vec![bulk(b"0-8"), Value::Int(3)]),
            Value::Array(vec![bulk(b"0-9"), Value::Array(vec![bulk(b"odd")])]),
            good("0-10"),
        ]);
        let got = checked(&v);
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(EntryError::Field("e")));
        assert_eq!(got[2], Err(EntryError::Peer));
        assert_eq!(got[3], Err(EntryError::TooLong(MAX_MESSAGE + 1)));
        assert_eq!(got[4], Err(EntryError::NotUtf8));
        assert_eq!(got[5], Err(EntryError::Client));
        assert_eq!(got[6], Err(EntryError::ForeignId((1_700_000_000_000, 0))));
        assert!(matches!(got[7], Err(EntryError::Reply(_))));
        assert!(matches!(got[8], Err(EntryError::Reply(_))));
        assert_eq!(got[9].as_ref().map(|m| m.seq), Ok(10));
        // The IDs of the broken ones are still known, so the reader moves past them.
        let raw = parse_reply(&v).unwrap();
        assert_eq!(raw[7].as_ref().unwrap_err().0, Some((0, 8)));
    }

    #[test]
    fn a_repeated_field_is_refused() {
        let v = reply(vec![entry(
            "0-1",
            &[
                ("e", b"ep"),
                ("o", b"s"),
                ("c", b"1"),
                ("p", b"1.2.3.4:5"),
                ("b", b"x"),
                ("p", b"6.6.6.6:6"),
            ],
        )]);
        assert_eq!(checked(&v), [Err(EntryError::Field("p"))]);
    }

    #[test]
    fn roster_entries_check_out_and_bad_ones_are_named() {
        let join = entry(
            "0-4",
            &[
                ("e", b"ep"),
                ("a", b"17"),
                ("k", b"j"),
                ("o", b"srv"),
                ("c", b"3"),
                ("p", b"127.0.0.1:4000"),
                ("w", b""),
            ],
        );
        let raw = parse_reply(&reply(vec![join])).unwrap().remove(0).unwrap();
        let got = raw.check_roster().unwrap();
        assert_eq!((got.seq, got.after, got.join, got.client), (4, 17, true, 3));
        assert_eq!(got.server, "srv");
        let bad = entry(
            "0-5",
            &[
                ("e", b"ep"),
                ("a", b"x"),
                ("k", b"l"),
                ("o", b"srv"),
                ("c", b"3"),
                ("p", b"127.0.0.1:4000"),
                ("w", b"gone"),
            ],
        );
        let raw = parse_reply(&reply(vec![bad])).unwrap().remove(0).unwrap();
        assert_eq!(raw.check_roster(), Err(EntryError::Field("a")));
        let kind = entry("0-6", &[("k", b"q")]);
        let raw = parse_reply(&reply(vec![kind])).unwrap().remove(0).unwrap();
        assert_eq!(raw.check_roster(), Err(EntryError::Field("k")));
    }

    #[test]
    fn a_reply_of_two_streams_keeps_both_by_name() {
        let two = Value::Array(vec![
            Value::Array(vec![bulk(b"a"), Value::Array(vec![good("0-1")])]),
            Value::Array(vec![
                bulk(b"b"),
                Value::Array(vec![good("0-2"), good("0-3")]),
            ]),
        ]);
        let got = parse_streams(&two).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].0.as_slice(), got[0].1.len()), (&b"a"[..], 1));
        assert_eq!((got[1].0.as_slice(), got[1].1.len()), (&b"b"[..], 2));
    }

    #[test]
    fn replies_of_the_wrong_shape_are_errors() {
        assert!(parse_reply(&Value::Int(1)).is_err());
        assert!(parse_reply(&Value::Array(vec![Value::Int(1)])).is_err());
    }
}
