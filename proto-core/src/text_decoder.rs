//! Everything a text client sends, turned into chat messages: Telnet commands taken
//! out, lines split, and messages of clients that send no newline ended by a pause.

use crate::error::LineError;
use crate::line::{self, LineDecoder};
use crate::telnet::{self, TelnetDecoder, TelnetReply};

/// What a text connection's bytes gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TextEvent<'a> {
    /// A message (a line, or what came before a pause), or why one was refused.
    Message(Result<&'a str, LineError>),
    /// An answer to a Telnet option request, to be sent to the client as it is.
    Reply(TelnetReply),
}

/// Decodes a text-mode connection: a [`TelnetDecoder`] in front of a
/// [`LineDecoder`], and the rule for clients that end their messages with no
/// newline.
///
/// The rule: a connection is *pause-framed* until it sends its first LF or its first
/// Telnet command, and *newline-framed* from then on, for good. While pause-framed,
/// the host calls [`pause`](Self::pause) when the client has sent nothing for a
/// while (the server waits 200 ms by default), and the partial message held so far
/// becomes a message, unless it ends inside a UTF-8 character, which waits for the
/// rest of its bytes. A newline-framed connection's lines are never cut by a pause,
/// however slowly their pieces arrive.
///
/// Limits, errors and the treatment of CR are those of [`LineDecoder`], for lines
/// and for pause-ended messages alike. A line in which a subnegotiation (`ff fa`)
/// begins and is not ended (see [`TelnetDecoder`]) is discarded whole, up to its LF,
/// with [`LineError::UnendedSubnegotiation`]. It does no I/O, never allocates and never
/// panics.
#[derive(Debug, Clone, Default)]
pub struct TextDecoder {
    telnet: TelnetDecoder,
    lines: LineDecoder,
    /// An LF has been seen.
    newline: bool,
}

impl TextDecoder {
    /// A decoder at the start of a connection.
    pub const fn new() -> Self {
        Self {
            telnet: TelnetDecoder::new(),
            lines: LineDecoder::new(),
            newline: false,
        }
    }

    /// Consumes bytes from the front of `input` until one event is complete or
    /// `input` runs out.
    ///
    /// Returns how many bytes were consumed (at least one, unless `input` is empty)
    /// and the event, if any. When the event is `None`, all of `input` was consumed.
    pub fn feed<'a>(&'a mut self, input: &'a [u8]) -> (usize, Option<TextEvent<'a>>) {
        let mut at = 0;
        while at < input.len() {
            let (n, step) = self.telnet.advance(&input[at..]);
            match step {
                telnet::Step::Nothing => at += n,
                telnet::Step::Reply(reply) => return (at + n, Some(TextEvent::Reply(reply))),
                telnet::Step::DiscardLine => {
                    self.lines.discard_line();
                    at += n;
                }
                // A stray `ff fa` broke the line: it goes whole, and its sender is
                // told, rather than have its two ends glued together.
                telnet::Step::UnendedSubnegotiation(line_ended) => {
                    if line_ended {
                        self.newline = true;
                        self.lines.discard_line();
                    } else {
                        self.lines.discard_rest_of_line();
                    }
                    let error = Err(LineError::UnendedSubnegotiation);
                    return (at + n, Some(TextEvent::Message(error)));
                }
                telnet::Step::Data(start, end) => {
                    let run = &input[at + start..at + end];
                    if !self.newline && memchr::memchr(b'\n', run).is_some() {
                        self.newline = true;
                    }
                    let (used, step) = self.lines.advance(run);
                    if step == line::Step::NeedMore {
                        at += n;
                        continue;
                    }
                    // A line ended inside the run (only an over-long line's error
                    // can, as a run ends at its first LF). The rest of the run holds
                    // no IAC (a run ends where a command begins, and `end` is `n`), so
                    // the Telnet decoder reads it as data again on the next call.
                    let consumed = at + start + used;
                    let event = self.lines.resolve(run, step).map(TextEvent::Message);
                    return (consumed, event);
                }
            }
        }
        (at, None)
    }

    /// The client has sent nothing for the pause time: if the connection is still
    /// pause-framed, the partial message ends here and is returned (or the error of
    /// an over-long one ends). Does nothing on a newline-framed connection.
    ///
    /// A pause ends a subnegotiation begun in the message (a stray `ff fa`) as an LF
    /// would: the message is discarded with [`LineError::UnendedSubnegotiation`], and
    /// the next send is a message of its own again.
    pub fn pause(&mut self) -> Option<Result<&str, LineError>> {
        if !self.waits_for_pause() {
            return None;
        }
        if self.telnet.in_subnegotiation() {
            self.telnet.abandon_subnegotiation();
            self.lines.discard_line();
            return Some(Err(LineError::UnendedSubnegotiation));
        }
        self.lines.end_line()
    }

    /// True when [`pause`](Self::pause) would end something now: the connection is
    /// pause-framed and holds a partial message that does not end inside a
    /// character, or is inside a subnegotiation. A host waits for a pause only then,
    /// and otherwise blocks.
    pub fn waits_for_pause(&self) -> bool {
        let partial = !self.lines.is_idle() && !ends_mid_char(self.lines.partial());
        !self.is_newline_framed() && (partial || self.telnet.in_subnegotiation())
    }

    /// True once the client has sent an LF or a Telnet command: its messages end at
    /// LF only.
    pub fn is_newline_framed(&self) -> bool {
        self.newline || self.telnet.is_telnet()
    }

    /// True once the client has sent a Telnet command.
    pub fn is_telnet(&self) -> bool {
        self.telnet.is_telnet()
    }

    /// Ends the stream: returns the unterminated last message, if there is one. Call
    /// it when the client closed cleanly.
    pub fn finish(&mut self) -> Option<Result<&str, LineError>> {
        self.lines.finish()
    }

    /// True when nothing is held: the stream could end here losing nothing.
    pub fn is_idle(&self) -> bool {
        self.lines.is_idle() && self.telnet.is_idle()
    }
}

/// True if `bytes` ends with the first one to three bytes of a multi-byte UTF-8
/// character, which more bytes could complete.
fn ends_mid_char(bytes: &[u8]) -> bool {
    let tail = bytes.get(bytes.len().saturating_sub(3)..).unwrap_or(&[]);
    let Some(lead) = tail.iter().rposition(|&b| b & 0xc0 != 0x80) else {
        return false;
    };
    match tail.get(lead..).map(core::str::from_utf8) {
        Some(Err(e)) => e.error_len().is_none(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Msg(Result<String, LineError>),
        Reply([u8; 3]),
    }

    fn msg(s: &str) -> Ev {
        Ev::Msg(Ok(s.into()))
    }

    /// Feeds each piece whole, with a pause after every piece but the last, then
    /// ends the stream.
    fn run(pieces: &[&[u8]]) -> Vec<Ev> {
        run_chunked(pieces, usize::MAX)
    }

    fn run_chunked(pieces: &[&[u8]], chunk: usize) -> Vec<Ev> {
        let mut dec = TextDecoder::new();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            for mut input in piece.chunks(chunk.max(1)) {
                while !input.is_empty() {
                    let (used, ev) = dec.feed(input);
                    assert!((1..=input.len()).contains(&used));
                    match ev {
                        Some(TextEvent::Message(m)) => out.push(Ev::Msg(m.map(String::from))),
                        Some(TextEvent::Reply(r)) => out.push(Ev::Reply(r.to_bytes())),
                        None => assert_eq!(used, input.len()),
                    }
                    input = &input[used..];
                }
            }
            if i + 1 < pieces.len() {
                let waits = dec.waits_for_pause();
                let ended = dec.pause().map(|m| m.map(String::from));
                if !waits {
                    assert_eq!(
                        ended, None,
                        "pause() acted though waits_for_pause() was false"
                    );
                }
                out.extend(ended.map(Ev::Msg));
            }
        }
        out.extend(dec.finish().map(|m| Ev::Msg(m.map(String::from))));
        out
    }

    #[test]
    fn without_newlines_each_send_is_a_message() {
        assert_eq!(
            run(&[b"hello", b"second", b"third\r"]),
            [msg("hello"), msg("second"), msg("third")]
        );
    }

    #[test]
    fn after_the_first_newline_pauses_never_cut_a_line() {
        let pieces: &[&[u8]] = &[b"first\n", b"sl", b"ow li", b"ne\r", b"\n"];
        assert_eq!(run(pieces), [msg("first"), msg("slow line")]);
        // A UTF-8 character split by a pause, after a first line.
        assert_eq!(
            run(&[b"hi\n", b"caf\xc3", b"\xa9!\n"]),
            [msg("hi"), msg("caf\u{e9}!")]
        );
    }

    #[test]
    fn a_pause_inside_a_character_waits_for_the_rest_even_before_a_newline() {
        for split in [1, 2, 3] {
            let smile = "\u{1f600}".as_bytes();
            let first = [b"ok ".as_slice(), &smile[..split]].concat();
            assert_eq!(
                run(&[&first, &smile[split..], b"next"]),
                [msg("ok \u{1f600}"), msg("next")],
                "split after {split}"
            );
        }
        // Invalid bytes are not a character in progress: the pause ends them.
        assert_eq!(
            run(&[b"a\xe0\x80", b"b"]),
            [Ev::Msg(Err(LineError::InvalidUtf8)), msg("b")]
        );
    }

    #[test]
    fn telnet_is_newline_framed_from_its_first_command() {
        let pieces: &[&[u8]] = &[b"\xff\xfd\x06", b"sl", b"ow\r\n"];
        assert_eq!(run(pieces), [Ev::Reply([0xff, 0xfb, 0x06]), msg("slow")]);
    }

    #[test]
    fn telnet_ctrl_c_discards_the_line_and_answers_the_timing_mark() {
        let input = b"one\r\nhalf typed\xff\xf4\xff\xfd\x06two\r\n";
        for chunk in 1..=input.len() {
            assert_eq!(
                run_chunked(&[input], chunk),
                [msg("one"), Ev::Reply([0xff, 0xfb, 0x06]), msg("two")],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_line_with_a_stray_sb_is_discarded_whole_and_reported() {
        // As `nc` sends a line holding a Latin-1 "ÿú", then the next line.
        let input = b"x\xff\xfa garbage\nnext line\n";
        for chunk in 1..=input.len() {
            assert_eq!(
                run_chunked(&[input], chunk),
                [
                    Ev::Msg(Err(LineError::UnendedSubnegotiation)),
                    msg("next line")
                ],
                "chunk {chunk}"
            );
        }
        // Abandoned at the limit, with no LF: the rest of the line goes too, and a
        // pause (the client sent no LF yet) ends it.
        let mut long = b"ab\xff\xfa".to_vec();
        long.extend([b's'; telnet::TELNET_SUBNEGOTIATION_MAX + 10]);
        assert_eq!(
            run(&[&long, b"fresh"]),
            [Ev::Msg(Err(LineError::UnendedSubnegotiation)), msg("fresh")]
        );
        // A client that sends no newline: the pause ends the subnegotiation, and the
        // sends after it are messages again.
        assert_eq!(
            run(&[b"x\xff\xfa garbage", b"hello", b"\xff\xfa", b"world"]),
            [
                Ev::Msg(Err(LineError::UnendedSubnegotiation)),
                msg("hello"),
                Ev::Msg(Err(LineError::UnendedSubnegotiation)),
                msg("world")
            ]
        );
        let mut dec = TextDecoder::new();
        let _ = dec.feed(b"\xff\xfa\x01");
        assert!(
            !dec.is_newline_framed(),
            "a stray ff fa is no Telnet command"
        );
    }

    #[test]
    fn an_escaped_ff_is_data_and_fails_utf8() {
        assert_eq!(
            run(&[b"a\xff\xffb\nok\n"]),
            [Ev::Msg(Err(LineError::InvalidUtf8)), msg("ok")]
        );
    }

    #[test]
    fn limits_apply_to_pause_ended_messages() {
        let fits = [b'a'; 1024];
        let over = [b'b'; 1025];
        assert_eq!(
            run(&[&fits, &over, b"after"]),
            [
                msg(&"a".repeat(1024)),
                Ev::Msg(Err(LineError::TooLong)),
                msg("after")
            ]
        );
    }

    #[test]
    fn a_pause_with_nothing_held_does_nothing() {
        let mut dec = TextDecoder::new();
        assert!(!dec.waits_for_pause());
        assert_eq!(dec.pause(), None);
        let (_, ev) = dec.feed(b"x");
        assert_eq!(ev, None);
        assert!(dec.waits_for_pause());
        assert_eq!(dec.pause(), Some(Ok("x")));
        assert!(dec.is_idle() && !dec.waits_for_pause());
    }

    #[test]
    fn ends_mid_char_cases() {
        for (bytes, mid) in [
            (&b""[..], false),
            (b"abc", false),
            (b"\xc3", true),
            (b"x\xe2\x82", true),
            (b"\xf0\x9f\x98", true),
            (b"\xf0\x9f\x98\x80", false),
            (b"\x80\x80\x80", false),
            (b"\xe0\x80", false),
            (b"\xff", false),
        ] {
            assert_eq!(ends_mid_char(bytes), mid, "{bytes:02x?}");
        }
    }
}
