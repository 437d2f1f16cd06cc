//! The bench's WebSocket clients (`--ws`): the upgrade, masked text frames out,
//! the server's unmasked frames in. Frame headers are tungstenite's; the handshake's
//! answer is parsed by httparse and its key checked with tungstenite's
//! `derive_accept_key`.
//!
//! The bench reads and writes the socket itself (one mio loop for every
//! connection), so it frames bytes rather than holding a tungstenite `WebSocket`
//! per connection, whose buffers and blocking writes would be measured too.

use std::io::{self, Cursor, Read, Write};
use std::net::SocketAddr;

use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Most bytes of the server's answer to the upgrade.
const MAX_ANSWER: usize = 4096;

/// Upgrades `stream` (blocking, within its read timeout) to a WebSocket at `/ws`.
/// Returns the bytes that followed the answer (the first frames).
///
/// # Errors
/// The socket's error; `InvalidData` if the server did not switch protocols.
pub fn upgrade(stream: &mut (impl Read + Write), addr: &SocketAddr) -> io::Result<Vec<u8>> {
    // Any 16 bytes in base64 will do: the bench is not a browser to be protected.
    let key = "YmVuY2ggY29ubmVjdGlvbg==";
    write!(
        stream,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(bad("closed during the upgrade".into()));
        }
        answer.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let status = response
            .parse(&answer)
            .map_err(|e| bad(format!("answer to the upgrade: {e}")))?;
        let httparse::Status::Complete(len) = status else {
            if answer.len() > MAX_ANSWER {
                return Err(bad("answer to the upgrade too long".into()));
            }
            continue;
        };
        if response.code != Some(101) {
            return Err(bad(format!("upgrade refused: {:?}", response.code)));
        }
        let accept = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"));
        if accept.map(|h| h.value) != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
            return Err(bad("wrong Sec-WebSocket-Accept".into()));
        }
        return Ok(answer.split_off(len));
    }
}

/// Appends `payload` as one masked, final frame of `opcode` (a client must mask).
pub fn queue_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    let header = FrameHeader {
        opcode,
        mask: Some(mask),
        ..FrameHeader::default()
    };
    // Writing into a Vec cannot fail.
    let _ = header.format(payload.len() as u64, out);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// What [`Frames::next`] found.
pub enum Frame<'a> {
    /// A text frame's payload (the server sends each line as one final frame).
    Text(&'a [u8]),
    /// A ping, to be answered with this payload.
    Ping(&'a [u8]),
    /// A close, a pong, or a frame the bench has no use for.
    Other,
}

/// The server's frames, assembled from what is read.
#[derive(Default)]
pub struct Frames {
    buf: Vec<u8>,
    at: usize,
}

impl Frames {
    /// Takes bytes read from the socket.
    pub fn push(&mut self, input: &[u8]) {
        if self.at == self.buf.len() {
            self.buf.clear();
            self.at = 0;
        }
        self.buf.extend_from_slice(input);
    }

    /// The next complete frame, if any; `Err` on a header tungstenite refuses.
    pub fn next(&mut self) -> Result<Option<Frame<'_>>, ()> {
        let mut cursor = Cursor::new(&self.buf[self.at..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(_) => return Err(()),
        };
        let start = self.at + cursor.position() as usize;
        let end = usize::try_from(len).map_err(|_| ())?.saturating_add(start);
        if end > self.buf.len() {
            return Ok(None);
        }
        self.at = end;
        let payload = &self.buf[start..end];
        Ok(Some(match header.opcode {
            OpCode::Data(Data::Text) => Frame::Text(payload),
            OpCode::Control(Control::Ping) => Frame::Ping(payload),
            _ => Frame::Other,
        }))
    }

    /// Forgets the frames already handed out, keeping a partial one.
    pub fn compact(&mut self) {
        self.buf.drain(..self.at);
        self.at = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_come_out_whole() {
        let mut stream = vec![0x81, 5];
        stream.extend(b"hello");
        stream.extend([0x89, 1, b'p']);
        stream.extend([0x81, 126, 0, 200]);
        stream.extend([b'x'; 200]);
        let mut frames = Frames::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(3) {
            frames.push(piece);
            while let Some(frame) = frames.next().unwrap() {
                seen.push(match frame {
                    Frame::Text(t) => format!("text {}", t.len()),
                    Frame::Ping(p) => format!("ping {p:?}"),
                    Frame::Other => "other".into(),
                });
            }
            frames.compact();
        }
        assert_eq!(seen, ["text 5", "ping [112]", "text 200"]);
    }

    #[test]
    fn a_queued_frame_is_masked() {
        let mut out = Vec::new();
        queue_frame(&mut out, OpCode::Data(Data::Text), b"abcd", [1, 2, 3, 4]);
        assert_eq!(
            out,
            [
                0x81,
                0x84,
                1,
                2,
                3,
                4,
                b'a' ^ 1,
                b'b' ^ 2,
                b'c' ^ 3,
                b'd' ^ 4
            ]
        );
    }
}
