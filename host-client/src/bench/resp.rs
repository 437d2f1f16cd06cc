//! The bench's Redis pub/sub clients (`--redis-pubsub`): commands out as RESP2
//! arrays of bulk strings, the server's replies in. Receivers `SUBSCRIBE` to one
//! channel (while connecting, waiting for Redis to confirm), senders `PUBLISH` to it
//! and read the `:<subscribers>` Redis answers to each.
//!
//! The replies are parsed here rather than by the `redis` crate, whose parser
//! builds an owned `Value` per reply (a vector and a copied payload for every
//! delivery) and reads from a blocking `Read`, so that it cannot tell a reply cut by
//! a non-blocking read from a bad one. The bench decodes millions of deliveries a
//! second on one thread, so, as for WebSocket frames in `ws`, replies are views into
//! the bytes read, and a cut reply waits for the rest. Only what pub/sub answers is
//! understood: simple strings, errors, integers, bulk strings, and arrays of up to
//! four of those (RESP2; nested arrays and RESP3 types are refused).

use std::fmt;
use std::io::{self, Read, Write};

/// The channel every bench connection uses. Messages of other runs on it are told
/// apart by the stamp's run number, as in a chat room.
pub const CHANNEL: &[u8] = b"host-client-bench";

/// Most bytes of one bulk string: bench payloads are at most 1 KiB, so anything far
/// longer is not a reply the bench asked for, and is refused before it is buffered.
const MAX_BULK: usize = 64 * 1024;
/// Most bytes of one line (a simple string, an error, a number, a header) before
/// its CRLF.
const MAX_LINE: usize = 1024;
/// Most items of an array: a pub/sub push has three (`message`, channel, payload),
/// a pattern's `pmessage` four.
const MAX_ITEMS: usize = 4;

/// Appends one command, as Redis takes it: an array of bulk strings.
pub fn queue_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, "*{}\r\n", args.len());
    for arg in args {
        let _ = write!(out, "${}\r\n", arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Why bytes from the server are not a reply the bench understands. The stream
/// cannot be followed past one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadReply {
    /// The first byte of a reply (or array item) is not a RESP2 type this bench reads.
    UnknownType(u8),
    /// A length or an integer is not a decimal number in range.
    BadNumber,
    /// A line longer than [`MAX_LINE`] without its CRLF.
    LineTooLong,
    /// A bulk string longer than [`MAX_BULK`].
    BulkTooLong,
    /// A bulk string not followed by CRLF, or a lone CR in a line.
    MissingCrlf,
    /// An array of more than [`MAX_ITEMS`] items, or of arrays.
    ArrayTooDeep,
}

impl fmt::Display for BadReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReply::UnknownType(b) => write!(f, "unknown reply type byte 0x{b:02x}"),
            BadReply::BadNumber => write!(f, "a length or integer that is not a number"),
            BadReply::LineTooLong => write!(f, "a line longer than {MAX_LINE} bytes"),
            BadReply::BulkTooLong => write!(f, "a bulk string longer than {MAX_BULK} bytes"),
            BadReply::MissingCrlf => write!(f, "a missing CRLF"),
            BadReply::ArrayTooDeep => {
                write!(f, "an array of more than {MAX_ITEMS} items, or nested")
            }
        }
    }
}

impl std::error::Error for BadReply {}

/// One item of an array reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A bulk string.
    Bulk(&'a [u8]),
    /// An integer.
    Integer(i64),
    /// A null bulk string, or a simple string or error inside an array.
    Other,
}

/// One reply, borrowed from the bytes read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`, `+PONG`.
    Simple(&'a [u8]),
    /// `-ERR ...`: the server refused a command.
    Error(&'a [u8]),
    /// `:3`, as PUBLISH answers (the subscribers it reached).
    Integer(i64),
    /// A bulk string (`None`: the null bulk string).
    Bulk(Option<&'a [u8]>),
    /// An array (`None`: the null array) of at most [`MAX_ITEMS`] items.
    Array(Option<Items<'a>>),
}

/// The items of an array reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Items<'a> {
    items: [Item<'a>; MAX_ITEMS],
    len: usize,
}

impl<'a> Items<'a> {
    /// The items, in order.
    pub fn as_slice(&self) -> &[Item<'a>] {
        &self.items[..self.len]
    }
}

impl<'a> Reply<'a> {
    /// The payload, if this is a message published on `channel`.
    pub fn message(&self, channel: &[u8]) -> Option<&'a [u8]> {
        match self.array()? {
            [Item::Bulk(b"message"), Item::Bulk(on), Item::Bulk(payload)] if *on == channel => {
                Some(payload)
            }
            _ => None,
        }
    }

    /// Whether this confirms a SUBSCRIBE to `channel`.
    pub fn subscribed(&self, channel: &[u8]) -> bool {
        matches!(
            self.array(),
            Some([Item::Bulk(b"subscribe"), Item::Bulk(on), Item::Integer(_)]) if *on == channel
        )
    }

    fn array(&self) -> Option<&[Item<'a>]> {
        match self {
            Reply::Array(Some(items)) => Some(items.as_slice()),
            _ => None,
        }
    }
}

impl fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match self {
            Reply::Simple(s) => write!(f, "+{}", text(s)),
            Reply::Error(e) => write!(f, "-{}", text(e)),
            Reply::Integer(n) => write!(f, ":{n}"),
            Reply::Bulk(Some(b)) => write!(f, "${}", text(b)),
            Reply::Bulk(None) | Reply::Array(None) => write!(f, "(nil)"),
            Reply::Array(Some(items)) => write!(f, "an array of {}", items.len),
        }
    }
}

/// The server's replies, assembled from what is read.
#[derive(Default)]
pub struct Replies {
    buf: Vec<u8>,
    at: usize,
}

impl Replies {
    /// Takes bytes read from the socket.
    pub fn push(&mut self, input: &[u8]) {
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
        self.buf.extend_from_slice(input);
    }

    /// The next complete reply, if any.
    ///
    /// # Errors
    /// What is wrong with the bytes; the stream cannot be followed past them (see
    /// [`Replies::clear`]).
    pub fn next(&mut self) -> Result<Option<Reply<'_>>, BadReply> {
        let mut cursor = Cursor {
            buf: &self.buf,
            at: self.at,
        };
        let Some(reply) = cursor.reply()? else {
            return Ok(None);
        };
        self.at = cursor.at;
        Ok(Some(reply))
    }

    /// Forgets the replies already handed out, keeping a partial one.
    pub fn compact(&mut self) {
        self.buf.drain(..self.at);
        self.at = 0;
    }

    /// Forgets everything, after a bad reply.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.at = 0;
    }
}

/// A position in bytes read; each step returns `Ok(None)` when they end too early.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn reply(&mut self) -> Result<Option<Reply<'a>>, BadReply> {
        let Some((kind, line)) = self.line()? else {
            return Ok(None);
        };
        Ok(Some(match kind {
            b'+' => Reply::Simple(line),
            b'-' => Reply::Error(line),
            b':' => Reply::Integer(number(line)?),
            b'$' => match self.bulk(line)? {
                Some(bulk) => Reply::Bulk(bulk),
                None => return Ok(None),
            },
            b'*' => match self.array(line)? {
                Some(items) => Reply::Array(items),
                None => return Ok(None),
            },
            other => return Err(BadReply::UnknownType(other)),
        }))
    }

    /// The type byte and the rest of the next line, without its CRLF. A type byte
    /// RESP2 lacks is refused at once, so that a peer that is not Redis is found
    /// out without waiting for a line end.
    fn line(&mut self) -> Result<Option<(u8, &'a [u8])>, BadReply> {
        let rest = &self.buf[self.at..];
        match rest.first() {
            Some(kind) if !b"+-:$*".contains(kind) => return Err(BadReply::UnknownType(*kind)),
            _ => {}
        }
        let Some(cr) = rest.iter().take(MAX_LINE + 1).position(|&b| b == b'\r') else {
            return match rest.len() > MAX_LINE {
                true => Err(BadReply::LineTooLong),
                false => Ok(None),
            };
        };
        match rest.get(cr + 1) {
            None => Ok(None),
            Some(b'\n') if cr > 0 => {
                self.at += cr + 2;
                Ok(Some((rest[0], &rest[1..cr])))
            }
            Some(_) => Err(BadReply::MissingCrlf),
        }
    }

    /// A bulk string's body after its `$<len>` header; `Ok(None)` if cut,
    /// `Ok(Some(None))` for the null bulk string.
    fn bulk(&mut self, header: &[u8]) -> Result<Option<Option<&'a [u8]>>, BadReply> {
        let len = number(header)?;
        if len == -1 {
            return Ok(Some(None));
        }
        let len = usize::try_from(len).map_err(|_| BadReply::BadNumber)?;
        if len > MAX_BULK {
            return Err(BadReply::BulkTooLong);
        }
        let Some(body) = self.buf.get(self.at..self.at + len + 2) else {
            return Ok(None);
        };
        if &body[len..] != b"\r\n" {
            return Err(BadReply::MissingCrlf);
        }
        self.at += len + 2;
        Ok(Some(Some(&body[..len])))
    }

    /// An array's items after its `*<count>` header; `Ok(None)` if cut.
    fn array(&mut self, header: &[u8]) -> Result<Option<Option<Items<'a>>>, BadReply> {
        let count = number(header)?;
        if count == -1 {
            return Ok(Some(None));
        }
        let count = usize::try_from(count).map_err(|_| BadReply::BadNumber)?;
        if count > MAX_ITEMS {
            return Err(BadReply::ArrayTooDeep);
        }
        let mut items = Items {
            items: [Item::Other; MAX_ITEMS],
            len: count,
        };
        for item in &mut items.items[..count] {
            let Some((kind, line)) = self.line()? else {
                return Ok(None);
            };
            *item = match kind {
                b':' => Item::Integer(number(line)?),
                b'+' | b'-' => Item::Other,
                b'$' => match self.bulk(line)? {
                    Some(Some(bulk)) => Item::Bulk(bulk),
                    Some(None) => Item::Other,
                    None => return Ok(None),
                },
                b'*' => return Err(BadReply::ArrayTooDeep),
                other => return Err(BadReply::UnknownType(other)),
            };
        }
        Ok(Some(Some(items)))
    }
}

/// A decimal integer, as RESP writes lengths and integers.
fn number(text: &[u8]) -> Result<i64, BadReply> {
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        return Err(BadReply::BadNumber);
    }
    let mut n: i64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(BadReply::BadNumber);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(b - b'0')))
            .ok_or(BadReply::BadNumber)?;
    }
    Ok(if negative { -n } else { n })
}

/// Subscribes `stream` (blocking, within its read timeout) to [`CHANNEL`] and waits
/// for Redis to confirm; what followed the confirmation is left in `replies`.
///
/// # Errors
/// The socket's error (`TimedOut` if nothing came back); `InvalidData` if the
/// server answered anything but the confirmation (an error such as `-NOAUTH`, or
/// bytes that are not RESP: not Redis).
pub fn subscribe(stream: &mut (impl Read + Write), replies: &mut Replies) -> io::Result<()> {
    let mut command = Vec::new();
    queue_command(&mut command, &[b"SUBSCRIBE", CHANNEL]);
    stream.write_all(&command)?;
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).map_err(|e| match e.kind() {
            // What a read timeout gives, depending on the platform.
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                io::ErrorKind::TimedOut,
                "no answer to SUBSCRIBE within the connect timeout: not Redis?",
            ),
            _ => e,
        })?;
        if n == 0 {
            return Err(bad("closed before confirming SUBSCRIBE".into()));
        }
        replies.push(&chunk[..n]);
        match replies.next() {
            Ok(None) => {}
            Ok(Some(reply)) if reply.subscribed(CHANNEL) => {
                replies.compact();
                return Ok(());
            }
            Ok(Some(reply)) => return Err(bad(format!("SUBSCRIBE answered with {reply}"))),
            Err(e) => return Err(bad(format!("SUBSCRIBE answered with {e}: not Redis?"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reply in `stream`, fed in pieces of `piece` bytes, described.
    fn replies_in_pieces(stream: &[u8], piece: usize) -> Vec<String> {
        let mut replies = Replies::default();
        let mut seen = Vec::new();
        for chunk in stream.chunks(piece) {
            replies.push(chunk);
            while let Some(reply) = replies.next().unwrap() {
                seen.push(match reply.message(CHANNEL) {
                    Some(payload) => format!("message {}", String::from_utf8_lossy(payload)),
                    None if reply.subscribed(CHANNEL) => "subscribed".into(),
                    None => reply.to_string(),
                });
            }
            replies.compact();
        }
        seen
    }

    #[test]
    fn a_publish_is_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        queue_command(&mut out, &[b"PUBLISH", b"chan", b"hello"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nchan\r\n$5\r\nhello\r\n".as_slice()
        );
    }

    #[test]
    fn replies_split_anywhere_come_out_whole() {
        let mut stream = Vec::new();
        stream.extend(b"*3\r\n$9\r\nsubscribe\r\n$17\r\nhost-client-bench\r\n:1\r\n");
        stream.extend(b"*3\r\n$7\r\nmessage\r\n$17\r\nhost-client-bench\r\n$5\r\nhello\r\n");
        stream.extend(b":100\r\n+OK\r\n-ERR wrong\r\n$-1\r\n*-1\r\n");
        stream.extend(b"*3\r\n$7\r\nmessage\r\n$5\r\nother\r\n$1\r\nx\r\n");
        let payload = "p\r\n".repeat(100);
        stream.extend(
            format!(
                "*3\r\n$7\r\nmessage\r\n$17\r\nhost-client-bench\r\n${}\r\n{payload}\r\n",
                payload.len()
            )
            .as_bytes(),
        );
        let want = [
            "subscribed".to_string(),
            "message hello".into(),
            ":100".into(),
            "+OK".into(),
            "-ERR wrong".into(),
            "(nil)".into(),
            "(nil)".into(),
            "an array of 3".into(),
            format!("message {payload}"),
        ];
        for piece in 1..=stream.len() {
            assert_eq!(replies_in_pieces(&stream, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn bad_bytes_are_refused_not_waited_for() {
        let refused = |bytes: &[u8]| {
            let mut replies = Replies::default();
            replies.push(bytes);
            replies.next().err()
        };
        assert_eq!(refused(b"hello\r\n"), Some(BadReply::UnknownType(b'h')));
        assert_eq!(refused(b":12x\r\n"), Some(BadReply::BadNumber));
        assert_eq!(refused(b":\r\n"), Some(BadReply::BadNumber));
        assert_eq!(
            refused(b":99999999999999999999\r\n"),
            Some(BadReply::BadNumber)
        );
        assert_eq!(refused(b"$-2\r\n"), Some(BadReply::BadNumber));
        assert_eq!(refused(b"$3\r\nabcd\r\n"), Some(BadReply::MissingCrlf));
        assert_eq!(refused(b"+a\rb\r\n"), Some(BadReply::MissingCrlf));
        assert_eq!(refused(b"\r\n"), Some(BadReply::UnknownType(b'\r')));
        assert_eq!(refused(b"$70000\r\n"), Some(BadReply::BulkTooLong));
        assert_eq!(refused(b"*5\r\n"), Some(BadReply::ArrayTooDeep));
        assert_eq!(refused(b"*1\r\n*1\r\n:1\r\n"), Some(BadReply::ArrayTooDeep));
        assert_eq!(refused(b"*1\r\n%1\r\n"), Some(BadReply::UnknownType(b'%')));
        // A line that never ends is refused once it is longer than any reply.
        assert_eq!(refused(&[b'+'; MAX_LINE + 1]), Some(BadReply::LineTooLong));
        assert_eq!(refused(&[b'+'; MAX_LINE]), None);
    }

    #[test]
    fn subscribing_waits_for_the_confirmation_and_keeps_what_follows() {
        struct Peer {
            answer: std::io::Cursor<Vec<u8>>,
            written: Vec<u8>,
        }
        impl Read for Peer {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                // One byte a read: the confirmation arrives cut everywhere.
                let n = buf.len().min(1);
                self.answer.read(&mut buf[..n])
            }
        }
        impl Write for Peer {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.written.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let confirm = b"*3\r\n$9\r\nsubscribe\r\n$17\r\nhost-client-bench\r\n:1\r\n";
        let mut answer = confirm.to_vec();
        answer.extend(b":7\r\n");
        let mut peer = Peer {
            answer: std::io::Cursor::new(answer),
            written: Vec::new(),
        };
        let mut replies = Replies::default();
        subscribe(&mut peer, &mut replies).unwrap();
        assert_eq!(
            peer.written,
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$17\r\nhost-client-bench\r\n".as_slice()
        );
        assert_eq!(
            replies.next(),
            Ok(None),
            "nothing read past the confirmation"
        );

        for (answer, says) in [
            (
                b"-NOAUTH Authentication required.\r\n".as_slice(),
                "-NOAUTH",
            ),
            (b"\0\0\0\x01chat".as_slice(), "not Redis"),
            (b"".as_slice(), "closed"),
        ] {
            let mut peer = Peer {
                answer: std::io::Cursor::new(answer.to_vec()),
                written: Vec::new(),
            };
            let e = subscribe(&mut peer, &mut Replies::default()).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
