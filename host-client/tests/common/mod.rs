//! A tiny fake chat server for the client's tests: the server's side of one
//! accepted connection, speaking proto-core.

// Each test binary that includes this module uses only part of it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use embedded_io_adapters::std::FromStd;
use proto_core::{
    read_preamble, write_frame, write_preamble, Frame, FrameReader, Notice, NoticeKind, PeerAddr,
    ReadError,
};

#[path = "../../../tests/sockets.rs"]
mod sockets;
pub use sockets::Refusing;

/// Bound on every wait, so a broken client fails the test instead of hanging it.
pub const LIMIT: Duration = Duration::from_secs(10);

/// The server's side of one accepted client.
pub struct Peer {
    pub reader: FrameReader<FromStd<TcpStream>>,
    pub writer: FromStd<TcpStream>,
    /// The client's address, as a server would name it.
    pub addr: PeerAddr,
}

impl Peer {
    pub fn accept(listener: &TcpListener) -> Self {
        let (stream, addr) = listener.accept().unwrap();
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut reader = FromStd::new(stream.try_clone().unwrap());
        read_preamble(&mut reader).unwrap();
        let mut writer = FromStd::new(stream);
        write_preamble(&mut writer).unwrap();
        Self {
            reader: FrameReader::new(reader),
            writer,
            addr: PeerAddr::from(addr),
        }
    }

    pub fn send(&mut self, frame: &Frame<'_>) {
        write_frame(&mut self.writer, frame).unwrap();
    }

    /// The next frame from the client, in the owned form the tests compare.
    pub fn next(&mut self) -> Result<String, ReadError<std::io::Error>> {
        self.reader.next_frame().map(|f| format!("{f:?}"))
    }

    pub fn broadcast(&mut self, seq: u64, text: &str) {
        let peer = self.addr;
        self.send(&Frame::Broadcast { seq, peer, text });
    }

    pub fn notice(&mut self, kind: NoticeKind, text: &str) {
        self.send(&Frame::Notice(Notice {
            kind,
            peer: None,
            text,
        }));
    }
}
