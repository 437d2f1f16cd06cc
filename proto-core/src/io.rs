//! Blocking helpers over `embedded-io`, so a host's `TcpStream` (through
//! `embedded-io-adapters`) and a microcontroller's TCP socket share one code path.

use embedded_io::{Read, Write};

use crate::decoder::{FrameDecoder, Step};
use crate::error::{ReadError, WriteError};
use crate::wire::{sniff, Frame, Sniff, PREAMBLE, PREAMBLE_LEN, VERSION};

/// Writes the protocol v1 preamble.
///
/// # Errors
/// The transport's error.
pub fn write_preamble<W: Write>(w: &mut W) -> Result<(), W::Error> {
    w.write_all(&PREAMBLE)
}

/// Reads the peer's preamble and checks it is protocol v1.
///
/// Reads exactly [`PREAMBLE_LEN`] bytes, so frames that follow stay in the stream.
///
/// # Errors
/// [`ReadError::BadMagic`] if the peer is not speaking this protocol,
/// [`ReadError::UnsupportedVersion`] for another version, [`ReadError::Closed`] or
/// [`ReadError::UnexpectedEof`] if the stream ends, or the transport's error.
pub fn read_preamble<R: Read>(r: &mut R) -> Result<(), ReadError<R::Error>> {
    let mut got = [0u8; PREAMBLE_LEN];
    let mut have = 0;
    loop {
        match sniff(&got[..have]) {
            Sniff::NeedMore => {}
            Sniff::Binary { version: VERSION } => return Ok(()),
            Sniff::Binary { version } => return Err(ReadError::UnsupportedVersion { version }),
            Sniff::Text => return Err(ReadError::BadMagic),
        }
        debug_assert!(have < PREAMBLE_LEN, "sniff decides on a whole preamble");
        match r.read(&mut got[have..]).map_err(ReadError::Transport)? {
            0 if have == 0 => return Err(ReadError::Closed),
            0 => return Err(ReadError::UnexpectedEof),
            n => have += n,
        }
    }
}

/// Encodes `frame` and writes it whole.
///
/// The header and fixed fields go out in one write and the text in another, straight
/// from the frame, so no frame-sized buffer is needed on the stack. On a transport
/// that sends every write at once (a TCP socket with `TCP_NODELAY`), put a buffer in
/// front of it to send the frame in one segment.
///
/// # Errors
/// [`WriteError::Encode`] if the frame is invalid (nothing is written), or the
/// transport's error.
pub fn write_frame<W: Write>(w: &mut W, frame: &Frame<'_>) -> Result<(), WriteError<W::Error>> {
    let (head, text) = frame.split().map_err(WriteError::Encode)?;
    w.write_all(&head).map_err(WriteError::Transport)?;
    if !text.is_empty() {
        w.write_all(text).map_err(WriteError::Transport)?;
    }
    Ok(())
}

/// Reads frames from a blocking stream, through a [`FrameDecoder`].
///
/// `N` is the size of the read buffer; a larger one makes fewer reads when frames
/// arrive in bursts, a smaller one saves RAM on a microcontroller.
#[derive(Debug)]
pub struct FrameReader<R, const N: usize = 512> {
    reader: R,
    decoder: FrameDecoder,
    buf: [u8; N],
    start: usize,
    end: usize,
}

impl<R: Read, const N: usize> FrameReader<R, N> {
    /// Wraps `reader`, which must be positioned after the preamble.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            decoder: FrameDecoder::new(),
            buf: [0; N],
            start: 0,
            end: 0,
        }
    }

    /// Blocks until the next frame arrives.
    ///
    /// # Errors
    /// [`ReadError::Decode`] for a bad frame, which has been skipped: call again to go
    /// on. [`ReadError::Closed`] when the peer closed between frames,
    /// [`ReadError::UnexpectedEof`] when it closed inside one, or the transport's error.
    pub fn next_frame(&mut self) -> Result<Frame<'_>, ReadError<R::Error>> {
        loop {
            if self.start == self.end {
                let n = self
                    .reader
                    .read(&mut self.buf)
                    .map_err(ReadError::Transport)?;
                if n == 0 {
                    let idle = self.decoder.is_idle();
                    return Err(if idle {
                        ReadError::Closed
                    } else {
                        ReadError::UnexpectedEof
                    });
                }
                (self.start, self.end) = (0, n);
            }
            let (start, end) = (self.start, self.end);
            match self.decoder.advance(&self.buf[start..end]) {
                Step::NeedMore => self.start = end,
                Step::Done { used, event } => {
                    self.start = start + used;
                    let input = &self.buf[start..end];
                    return self
                        .decoder
                        .resolve(input, event)
                        .map_err(ReadError::Decode);
                }
            }
        }
    }

    /// The underlying stream, for writing or shutting down.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// Gives back the underlying stream; bytes read but not yet decoded are lost.
    pub fn into_inner(self) -> R {
        self.reader
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecodeError, MAX_FRAME};
    use std::vec::Vec;

    /// A reader that hands out at most `step` bytes per read, to exercise refills.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl embedded_io::ErrorType for Trickle<'_> {
        type Error = core::convert::Infallible;
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn stream(frames: &[Frame]) -> Vec<u8> {
        let mut out = [0u8; 8192];
        let mut w: &mut [u8] = &mut out;
        write_preamble(&mut w).unwrap();
        for f in frames {
            write_frame(&mut w, f).unwrap();
        }
        let left = w.len();
        out[..out.len() - left].to_vec()
    }

    /// A writer that keeps each write apart.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);

    impl embedded_io::ErrorType for Writes {
        type Error = core::convert::Infallible;
    }

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }

        fn flush(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    #[test]
    fn the_text_is_written_from_the_frame_not_copied_into_a_buffer_first() {
        let text = "t".repeat(crate::MAX_MESSAGE);
        let peer = crate::PeerAddr::V6 {
            ip: [0xff; 16],
            port: u16::MAX,
        };
        let frames = [
            Frame::Chat { text: &text },
            Frame::Broadcast {
                seq: u64::MAX,
                peer,
                text: &text,
            },
            Frame::Bye,
        ];
        for frame in frames {
            let mut w = Writes::default();
            write_frame(&mut w, &frame).unwrap();
            let mut encoded = [0u8; MAX_FRAME];
            let n = frame.encode(&mut encoded).unwrap();
            assert_eq!(w.0.concat(), &encoded[..n], "{frame:?}");
            let lens: Vec<usize> = w.0.iter().map(Vec::len).collect();
            let expected = match frame {
                Frame::Bye => std::vec![n],
                _ => std::vec![n - text.len(), text.len()],
            };
            assert_eq!(lens, expected, "{frame:?}");
        }
    }

    #[test]
    fn a_frame_that_cannot_be_encoded_writes_nothing() {
        let text = "x".repeat(crate::MAX_MESSAGE + 1);
        let mut out = [0u8; 2 * MAX_FRAME];
        let mut w: &mut [u8] = &mut out;
        assert_eq!(
            write_frame(&mut w, &Frame::Chat { text: &text }),
            Err(WriteError::Encode(crate::EncodeError::TextTooLong {
                len: crate::MAX_MESSAGE + 1
            }))
        );
        assert_eq!(w.len(), 2 * MAX_FRAME, "bytes were written");
    }

    #[test]
    fn reads_back_what_was_written_over_short_reads() {
        let frames = [
            Frame::Chat { text: "a" },
            Frame::Ping { nonce: 9 },
            Frame::Bye,
        ];
        let bytes = stream(&frames);
        for step in [1, 2, 5, 100] {
            let mut t = Trickle { data: &bytes, step };
            read_preamble(&mut t).unwrap();
            let mut r: FrameReader<_, 16> = FrameReader::new(t);
            for f in &frames {
                assert_eq!(r.next_frame().as_ref(), Ok(f));
            }
            assert_eq!(r.next_frame(), Err(ReadError::Closed));
        }
    }

    #[test]
    fn bad_frame_is_reported_then_reading_goes_on() {
        let mut bytes = stream(&[]);
        bytes.extend([0x42, 0, 1, 0]);
        bytes.extend(&stream(&[Frame::Bye])[PREAMBLE_LEN..]);
        let mut r: FrameReader<_> = FrameReader::new(&bytes[PREAMBLE_LEN..]);
        assert_eq!(
            r.next_frame(),
            Err(ReadError::Decode(DecodeError::UnknownKind {
                kind: 0x42,
                len: 1
            }))
        );
        assert_eq!(r.next_frame(), Ok(Frame::Bye));
    }

    #[test]
    fn eof_inside_a_frame_is_unexpected() {
        let bytes = stream(&[Frame::Chat { text: "hello" }]);
        let cut = &bytes[PREAMBLE_LEN..bytes.len() - 1];
        let mut r: FrameReader<_> = FrameReader::new(cut);
        assert_eq!(r.next_frame(), Err(ReadError::UnexpectedEof));
    }

    #[test]
    fn preamble_errors() {
        assert_eq!(
            read_preamble(&mut &b"GET / HTTP/1.1"[..]),
            Err(ReadError::BadMagic)
        );
        assert_eq!(
            read_preamble(&mut &[0, b'C', b'H', b'T', 2][..]),
            Err(ReadError::UnsupportedVersion { version: 2 })
        );
        assert_eq!(read_preamble(&mut &[][..]), Err(ReadError::Closed));
        assert_eq!(
            read_preamble(&mut &[0, b'C'][..]),
            Err(ReadError::UnexpectedEof)
        );
    }
}
