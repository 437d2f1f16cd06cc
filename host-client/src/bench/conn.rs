//! One bench connection: connected and greeted with blocking calls, then driven
//! without blocking by the event loop. Chat bytes are encoded and decoded by
//! proto-core, WebSocket frames by `ws`, Redis's replies by `resp`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use rustls::ClientConnection;

use embedded_io_adapters::std::FromStd;
use proto_core::{
    read_preamble, write_frame, write_preamble, FeedResult, Frame, FrameDecoder, LineDecoder,
};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

use super::{resp, ws};
use crate::tls::{Stream, TlsSetup};

/// How the bench's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// Binary frames after the preamble.
    Binary,
    /// Lines, as `nc`.
    Text,
    /// WebSocket text frames, as a browser.
    WebSocket,
    /// Redis pub/sub: receivers SUBSCRIBE to one channel, senders PUBLISH to it.
    RedisPubSub,
}

impl Wire {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Wire::Binary => "binary",
            Wire::Text => "text",
            Wire::WebSocket => "websocket",
            Wire::RedisPubSub => "redis-pubsub",
        }
    }
}

/// What a connection does in a run; only Redis pub/sub tells the two apart when
/// connecting (a subscribed Redis connection can no longer publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives messages (a stalled connection too: it is meant to receive).
    Receives,
    /// Sends messages.
    Sends,
}

/// Pending output above which the engine stops queueing messages on a connection,
/// so that latency measures the server, not a backlog inside the bench.
pub const OUT_HIGH_WATER: usize = 16 * 1024;

/// What a connection received.
pub enum Incoming<'a> {
    /// A relayed message: a broadcast's text and sequence number (binary mode) or
    /// a whole line (text mode).
    Message {
        /// The text, with the peer prefix in text mode.
        text: &'a str,
        /// The server's sequence number, in binary mode.
        seq: Option<u64>,
    },
    /// A frame or line that could not be decoded.
    Bad,
    /// The server answered a command with an error (Redis pub/sub: a refused PUBLISH).
    Refused,
}

enum Decoder {
    Binary(Box<FrameDecoder>),
    Text(Box<LineDecoder>),
    WebSocket(ws::Frames),
    Resp(resp::Replies),
}

/// A connection to the server under test.
pub struct Conn {
    /// The socket, registered with the event loop.
    pub stream: mio::net::TcpStream,
    /// The TLS session, with `--tls`: driven without blocking like the socket.
    tls: Option<Box<ClientConnection>>,
    decoder: Decoder,
    out: Vec<u8>,
    out_at: usize,
    /// The mask of the next WebSocket frame (any will do; it changes per frame).
    mask: u32,
}

impl Conn {
    /// Connects to `addr` (with `tls`, also the TLS handshake); in binary mode also
    /// exchanges preambles, as a WebSocket upgrades and a Redis receiver subscribes
    /// (waiting at most `timeout` for the server's answer), then switches the socket
    /// to non-blocking.
    ///
    /// # Errors
    /// The connect or handshake error; a server that answers with another preamble,
    /// refuses the upgrade or does not confirm the subscription gives `InvalidData`.
    pub fn open(
        addr: &SocketAddr,
        wire: Wire,
        role: Role,
        tls: Option<&TlsSetup>,
        timeout: Duration,
    ) -> io::Result<Self> {
        let tcp = TcpStream::connect_timeout(addr, timeout)?;
        tcp.set_nodelay(true)?;
        let mut stream = match tls {
            Some(setup) => Stream::handshake(tcp, setup, timeout)?,
            None => Stream::from(tcp),
        };
        let decoder = match wire {
            Wire::Text => Decoder::Text(Box::default()),
            Wire::Binary => {
                stream.tcp().set_read_timeout(Some(timeout))?;
                let mut io = FromStd::new(&mut stream);
                write_preamble(&mut io)?;
                read_preamble(&mut io)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                Decoder::Binary(Box::default())
            }
            Wire::WebSocket => {
                stream.tcp().set_read_timeout(Some(timeout))?;
                let mut frames = ws::Frames::default();
                frames.push(&ws::upgrade(&mut stream, addr)?);
                Decoder::WebSocket(frames)
            }
            Wire::RedisPubSub => {
                let mut replies = resp::Replies::default();
                if role == Role::Receives {
                    stream.tcp().set_read_timeout(Some(timeout))?;
                    resp::subscribe(&mut stream, &mut replies)?;
                }
                Decoder::Resp(replies)
            }
        };
        let (tcp, session) = stream.into_parts()?;
        tcp.set_nonblocking(true)?;
        Ok(Self {
            stream: mio::net::TcpStream::from_std(tcp),
            tls: session.map(Box::new),
            decoder,
            out: Vec::new(),
            out_at: 0,
            mask: 0x9e37_79b9,
        })
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out.len() - self.out_at
    }

    /// Queues a chat message (call [`Conn::flush`] to send it).
    pub fn queue_chat(&mut self, text: &str) {
        match self.decoder {
            Decoder::Binary(_) => {
                // Bench texts are built within the limit and a Vec takes every write.
                let queued = write_frame(&mut FromStd::new(&mut self.out), &Frame::Chat { text });
                debug_assert!(queued.is_ok(), "bench chat not encodable");
            }
            Decoder::Text(_) => {
                self.out.extend_from_slice(text.as_bytes());
                self.out.push(b'\n');
            }
            Decoder::WebSocket(_) => {
                self.mask = self.mask.rotate_left(7) ^ 0x5bd1_e995;
                let mask = self.mask.to_be_bytes();
                ws::queue_frame(
                    &mut self.out,
                    OpCode::Data(Data::Text),
                    text.as_bytes(),
                    mask,
                );
            }
            Decoder::Resp(_) => {
                resp::queue_command(&mut self.out, &[b"PUBLISH", resp::CHANNEL, text.as_bytes()]);
            }
        }
    }

    /// Writes queued bytes until done or the socket is full.
    ///
    /// # Errors
    /// The socket's error.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(session) = &mut self.tls {
            // Queued plaintext is encrypted only once the session's records are all
            // out, so `pending` still counts what the socket has not taken.
            if !write_tls(session, &mut self.stream)? {
                return Ok(());
            }
            if self.out_at < self.out.len() {
                session.writer().write_all(&self.out[self.out_at..])?;
                self.out.clear();
                self.out_at = 0;
                write_tls(session, &mut self.stream)?;
            }
            return Ok(());
        }
        while self.out_at < self.out.len() {
            match self.stream.write(&self.out[self.out_at..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_at = 0;
        Ok(())
    }

    /// Reads all that is available, passing each message to `on`; pings are
    /// answered. Returns `false` once the server has closed the connection.
    ///
    /// # Errors
    /// The socket's error.
    pub fn receive(
        &mut self,
        buf: &mut [u8],
        on: &mut dyn FnMut(Incoming<'_>),
    ) -> io::Result<bool> {
        if self.tls.is_some() {
            return self.receive_tls(buf, on);
        }
        loop {
            let n = match self.stream.read(buf) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.feed(&buf[..n], on);
            self.flush()?;
            if n < buf.len() {
                // A short read emptied the socket: new bytes raise a new readiness
                // event, so the read that would only say WouldBlock is skipped (one
                // syscall less per delivery at paced rates).
                return Ok(true);
            }
        }
    }

    /// [`Conn::receive`] through the TLS session: ciphertext in until the socket is
    /// empty, plaintext out to the decoder. The socket is read in large pieces
    /// (rustls alone would read 4 KiB a call), handed to the session from a slice.
    fn receive_tls(
        &mut self,
        buf: &mut [u8],
        on: &mut dyn FnMut(Incoming<'_>),
    ) -> io::Result<bool> {
        let Some(session) = self.tls.as_mut() else {
            return Ok(true);
        };
        let (cipher, plain) = buf.split_at_mut(buf.len() / 2);
        let mut open = true;
        while open {
            let n = match self.stream.read(cipher) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            open = n > 0;
            let mut rest = &cipher[..n];
            loop {
                session.read_tls(&mut rest)?;
                session
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                loop {
                    match session.reader().read(plain) {
                        Ok(0) => {
                            open = false;
                            break;
                        }
                        Ok(m) => feed(&mut self.decoder, &mut self.out, self.mask, &plain[..m], on),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                            open = false;
                            break;
                        }
                        Err(e) => return Err(e),
                    }
                }
                if rest.is_empty() {
                    break;
                }
            }
        }
        self.flush()?;
        Ok(open)
    }

    fn feed(&mut self, input: &[u8], on: &mut dyn FnMut(Incoming<'_>)) {
        feed(&mut self.decoder, &mut self.out, self.mask, input, on);
    }
}

/// Hands what `input` completes to `on`, and queues in `out` what answers it (pongs).
fn feed(
    decoder: &mut Decoder,
    out: &mut Vec<u8>,
    mask: u32,
    input: &[u8],
    on: &mut dyn FnMut(Incoming<'_>),
) {
    match decoder {
        Decoder::Binary(d) => feed_frames(d, out, input, on),
        Decoder::Text(d) => feed_lines(d, input, on),
        Decoder::WebSocket(frames) => {
            frames.push(input);
            feed_ws(frames, out, mask.to_be_bytes(), on);
        }
        Decoder::Resp(replies) => {
            replies.push(input);
            feed_resp(replies, on);
        }
    }
}

/// Writes the session's records until none is left (true) or the socket is full.
fn write_tls(session: &mut ClientConnection, stream: &mut mio::net::TcpStream) -> io::Result<bool> {
    while session.wants_write() {
        match session.write_tls(stream) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Hands every message on the bench's channel to `on`, and every error reply as
/// refused. The answers to PUBLISH (how many subscribers it reached) are read and
/// passed over: lost deliveries show in the receivers' counts.
fn feed_resp(replies: &mut resp::Replies, on: &mut dyn FnMut(Incoming<'_>)) {
    let mut lost_track = false;
    loop {
        match replies.next() {
            Ok(Some(reply)) => match reply.message(resp::CHANNEL) {
                Some(payload) => match std::str::from_utf8(payload) {
                    Ok(text) => on(Incoming::Message { text, seq: None }),
                    Err(_) => on(Incoming::Bad),
                },
                None if matches!(reply, resp::Reply::Error(_)) => on(Incoming::Refused),
                None => {}
            },
            Ok(None) => break,
            Err(_) => {
                on(Incoming::Bad);
                lost_track = true;
                break;
            }
        }
    }
    match lost_track {
        // Past a bad reply nothing can be found again: its bytes are dropped, and
        // the messages in them count as lost.
        true => replies.clear(),
        false => replies.compact(),
    }
}

/// Hands every text frame in `frames` to `on`, and queues a pong for every ping.
fn feed_ws(
    frames: &mut ws::Frames,
    out: &mut Vec<u8>,
    mask: [u8; 4],
    on: &mut dyn FnMut(Incoming<'_>),
) {
    loop {
        match frames.next() {
            Ok(Some(ws::Frame::Text(payload))) => match std::str::from_utf8(payload) {
                Ok(text) => on(Incoming::Message { text, seq: None }),
                Err(_) => on(Incoming::Bad),
            },
            Ok(Some(ws::Frame::Ping(payload))) => {
                ws::queue_frame(out, OpCode::Control(Control::Pong), payload, mask);
            }
            Ok(Some(ws::Frame::Other)) => {}
            Ok(None) => break,
            Err(()) => {
                on(Incoming::Bad);
                break;
            }
        }
    }
    frames.compact();
}

/// Hands every message in `input` to `on`, and queues a pong in `out` for every ping.
fn feed_frames(
    decoder: &mut FrameDecoder,
    out: &mut Vec<u8>,
    mut input: &[u8],
    on: &mut dyn FnMut(Incoming<'_>),
) {
    while let FeedResult::Complete { item, remaining } = decoder.feed(input) {
        match item {
            Ok(Frame::Broadcast { seq, text, .. }) => on(Incoming::Message {
                text,
                seq: Some(seq),
            }),
            Ok(Frame::Ping { nonce }) => {
                // Writing to a Vec cannot fail, and a pong is always encodable.
                let queued = write_frame(&mut FromStd::new(&mut *out), &Frame::Pong { nonce });
                debug_assert!(queued.is_ok());
            }
            Err(_) => on(Incoming::Bad),
            Ok(_) => {}
        }
        input = remaining;
    }
}

/// Hands every line in `input` to `on`.
fn feed_lines(decoder: &mut LineDecoder, mut input: &[u8], on: &mut dyn FnMut(Incoming<'_>)) {
    while !input.is_empty() {
        let (used, line) = decoder.feed(input);
        match line {
            Some(Ok(text)) => on(Incoming::Message { text, seq: None }),
            Some(Err(_)) => on(Incoming::Bad),
            None => {}
        }
        input = &input[used..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `feed_resp` hands on for `stream`, fed in pieces of `piece` bytes.
    fn incoming(stream: &[u8], piece: usize) -> Vec<String> {
        let mut replies = resp::Replies::default();
        let mut seen = Vec::new();
        for chunk in stream.chunks(piece) {
            replies.push(chunk);
            feed_resp(&mut replies, &mut |i| {
                seen.push(match i {
                    Incoming::Message { text, .. } => text.to_string(),
                    Incoming::Bad => "bad".into(),
                    Incoming::Refused => "refused".into(),
                })
            });
        }
        seen
    }

    #[test]
    fn redis_messages_pass_refusals_count_and_publish_counts_are_read() {
        let mut stream = Vec::new();
        let message = |out: &mut Vec<u8>, channel: &[u8], text: &[u8]| {
            resp::queue_command(out, &[b"message", channel, text]);
        };
        message(&mut stream, resp::CHANNEL, b"one");
        stream.extend(b":100\r\n-ERR max memory\r\n");
        message(&mut stream, b"elsewhere", b"not ours");
        message(&mut stream, resp::CHANNEL, b"\xff\xfe");
        message(&mut stream, resp::CHANNEL, b"two");
        for piece in [1, 7, stream.len()] {
            assert_eq!(
                incoming(&stream, piece),
                ["one", "refused", "bad", "two"],
                "pieces of {piece}"
            );
        }
    }

    #[test]
    fn after_bytes_that_are_not_resp_the_next_read_starts_afresh() {
        let mut stream = b"?garbage\r\n".to_vec();
        resp::queue_command(&mut stream, &[b"message", resp::CHANNEL, b"lost"]);
        let mut next = Vec::new();
        resp::queue_command(&mut next, &[b"message", resp::CHANNEL, b"found"]);
        let mut replies = resp::Replies::default();
        let mut seen = Vec::new();
        for read in [stream, next] {
            replies.push(&read);
            feed_resp(&mut replies, &mut |i| {
                seen.push(match i {
                    Incoming::Message { text, .. } => text.to_string(),
                    _ => "bad".into(),
                })
            });
        }
        assert_eq!(seen, ["bad", "found"]);
    }
}
