//! Telnet's in-band commands (RFC 854, 855, 860), stripped from a text connection.
//!
//! A `telnet` client mixes commands into the byte stream: each starts with IAC
//! (`ff`). Pressing Ctrl-C, for example, sends `IAC IP IAC DO TIMING-MARK`
//! (`ff f4 ff fd 06`), and telnet then shows nothing until the server answers the
//! timing mark. [`TelnetDecoder`] separates the data from the commands, says what to
//! answer, and never buffers: its state is a few bytes.

/// Interpret As Command: starts every Telnet command.
const IAC: u8 = 0xff;
const DONT: u8 = 0xfe;
const DO: u8 = 0xfd;
const WONT: u8 = 0xfc;
const WILL: u8 = 0xfb;
/// Subnegotiation begin.
const SB: u8 = 0xfa;
/// Erase Line.
const EL: u8 = 0xf8;
/// Abort Output.
const AO: u8 = 0xf5;
/// Interrupt Process.
const IP: u8 = 0xf4;
/// Subnegotiation end.
const SE: u8 = 0xf0;

/// The TIMING-MARK option (RFC 860), the one option this side agrees to.
pub const TIMING_MARK: u8 = 6;

/// The most bytes of one subnegotiation's body (between `IAC SB` and `IAC SE`)
/// skipped before it is abandoned and the bytes after it count as data again.
///
/// A real subnegotiation is a few bytes (a window size is 5, a terminal type about
/// 20), and none is expected since every option is refused. A stray `ff fa` (a
/// Latin-1 `ÿú`, pasted binary, a TLS ClientHello) is not one: the limit, and the
/// rule that an LF ends a subnegotiation too, keep it from swallowing more than a
/// line, and the decoder reports what it discarded
/// ([`TelnetEvent::UnendedSubnegotiation`]).
pub const TELNET_SUBNEGOTIATION_MAX: usize = 64;

/// An answer to an option request, to be sent back to the peer as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TelnetReply {
    /// `IAC WILL option`: agrees to perform the option (only TIMING-MARK).
    Will(u8),
    /// `IAC WONT option`: refuses to perform the option.
    Wont(u8),
    /// `IAC DONT option`: asks the peer not to perform the option.
    Dont(u8),
}

impl TelnetReply {
    /// The three bytes to send.
    pub const fn to_bytes(self) -> [u8; 3] {
        match self {
            TelnetReply::Will(option) => [IAC, WILL, option],
            TelnetReply::Wont(option) => [IAC, WONT, option],
            TelnetReply::Dont(option) => [IAC, DONT, option],
        }
    }
}

/// What the peer sent, once Telnet commands are taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TelnetEvent<'a> {
    /// Data bytes: a run of the input holding no command and at most one LF, at its
    /// end (`IAC IAC` gives its second byte, a literal `ff`).
    Data(&'a [u8]),
    /// An option request to answer with these bytes.
    Reply(TelnetReply),
    /// `IAC IP` (Interrupt Process), `IAC AO` (Abort Output) or `IAC EL` (Erase
    /// Line): the line being typed is to be thrown away.
    DiscardLine,
    /// A subnegotiation (`IAC SB`, `ff fa`) that was not ended by `IAC SE` before
    /// an LF or before [`TELNET_SUBNEGOTIATION_MAX`] bytes: it was abandoned and its
    /// bytes discarded. What follows is data again. It is most likely no Telnet at
    /// all but a stray `ff fa` in a line, which the caller should drop (whole, up to
    /// its LF) and report, rather than glue its two ends together in silence.
    UnendedSubnegotiation {
        /// An LF ended it; the LF was consumed with it, and ends the line.
        line_ended: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Data,
    /// After IAC.
    Iac,
    /// After IAC and an option verb (WILL, WONT, DO, DONT): the option byte is next.
    Option(u8),
    /// Inside a subnegotiation; `skipped` bytes of it so far.
    Sub { skipped: usize },
    /// After IAC inside a subnegotiation.
    SubIac { skipped: usize },
}

/// What one step of the decoder found; offsets are into the input it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing for the caller (command bytes, or the input ran out).
    Nothing,
    /// Data bytes `input[start..end]`.
    Data(usize, usize),
    /// An answer to send.
    Reply(TelnetReply),
    /// Throw away the line being typed.
    DiscardLine,
    /// A subnegotiation was abandoned; true when an LF (consumed) ended it.
    UnendedSubnegotiation(bool),
}

/// Takes Telnet commands out of a text connection's byte stream.
///
/// Every command is removed: `IAC IAC` is a literal `ff` data byte (which then fails
/// UTF-8 like any other stray `ff`); `IAC DO x` is answered `IAC WONT x` and
/// `IAC WILL x` is answered `IAC DONT x` (this side performs no option), except
/// `IAC DO TIMING-MARK`, answered `IAC WILL TIMING-MARK` so that telnet, which waits
/// for that answer after Ctrl-C, shows the room again; `IAC WONT x` and `IAC DONT x`
/// need no answer; `IAC IP`, `IAC AO` and `IAC EL` discard the line being typed;
/// subnegotiations (`IAC SB ... IAC SE`) and every other command are dropped.
///
/// A subnegotiation ends at `IAC SE`, and is abandoned at an LF or when its body
/// reaches [`TELNET_SUBNEGOTIATION_MAX`] bytes, with a
/// [`TelnetEvent::UnendedSubnegotiation`], so that no line is lost in silence to a
/// stray `ff fa`.
///
/// A connection that never sends `ff` gets nothing but its data back, so a client
/// that is not telnet is never sent a command.
///
/// It does no I/O, never allocates and never panics; commands may be cut anywhere
/// across calls to [`feed`](Self::feed).
#[derive(Debug, Clone, Default)]
pub struct TelnetDecoder {
    state: State,
    /// A command other than `IAC IAC` has been seen: the peer speaks Telnet.
    telnet: bool,
}

impl TelnetDecoder {
    /// A decoder at the start of a stream.
    pub const fn new() -> Self {
        Self {
            state: State::Data,
            telnet: false,
        }
    }

    /// True once the peer has sent a Telnet command (other than an escaped `ff`).
    pub fn is_telnet(&self) -> bool {
        self.telnet
    }

    /// True when no command is half received.
    pub fn is_idle(&self) -> bool {
        self.state == State::Data
    }

    /// True inside a subnegotiation (after `IAC SB`, before its end).
    pub(crate) fn in_subnegotiation(&self) -> bool {
        matches!(self.state, State::Sub { .. } | State::SubIac { .. })
    }

    /// Abandons the subnegotiation being received, if any: what follows is data.
    pub(crate) fn abandon_subnegotiation(&mut self) {
        if self.in_subnegotiation() {
            self.state = State::Data;
        }
    }

    /// Consumes bytes from the front of `input` until one event is found or `input`
    /// runs out.
    ///
    /// Returns how many bytes were consumed (at least one, unless `input` is empty)
    /// and the event, if any. When the event is `None`, all of `input` was consumed.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> (usize, Option<TelnetEvent<'a>>) {
        let mut used = 0;
        loop {
            let (n, step) = self.advance(&input[used..]);
            let start = used;
            used += n;
            match step {
                Step::Nothing if used < input.len() => {}
                Step::Nothing => return (used, None),
                Step::Data(s, e) => {
                    return (used, Some(TelnetEvent::Data(&input[start + s..start + e])))
                }
                Step::Reply(r) => return (used, Some(TelnetEvent::Reply(r))),
                Step::DiscardLine => return (used, Some(TelnetEvent::DiscardLine)),
                Step::UnendedSubnegotiation(line_ended) => {
                    return (
                        used,
                        Some(TelnetEvent::UnendedSubnegotiation { line_ended }),
                    )
                }
            }
        }
    }

    /// One step: consumes a run of data (up to the next IAC, not included, or the
    /// next LF, included) or the bytes of at most one command.
    pub(crate) fn advance(&mut self, input: &[u8]) -> (usize, Step) {
        let mut used = 0;
        while let Some(&byte) = input.get(used) {
            match self.state {
                State::Data => {
                    // A run also ends after an LF, so a caller that splits lines
                    // (`TextDecoder`) gets one line at a time and no byte is scanned
                    // twice, however many lines one read holds.
                    let rest = &input[used..];
                    let run = match memchr::memchr2(IAC, b'\n', rest) {
                        Some(at) if rest[at] == b'\n' => at + 1,
                        Some(at) => at,
                        None => rest.len(),
                    };
                    if run > 0 {
                        return (used + run, Step::Data(used, used + run));
                    }
                    self.state = State::Iac;
                    used += 1;
                }
                State::Iac => {
                    used += 1;
                    self.state = State::Data;
                    if byte == IAC {
                        return (used, Step::Data(used - 1, used));
                    }
                    // A subnegotiation marks the peer as Telnet only once it ends
                    // well: a stray `ff fa` is no sign of a Telnet client.
                    self.telnet |= byte != SB;
                    match byte {
                        WILL | WONT | DO | DONT => self.state = State::Option(byte),
                        SB => self.state = State::Sub { skipped: 0 },
                        IP | AO | EL => return (used, Step::DiscardLine),
                        _ => {}
                    }
                }
                State::Option(verb) => {
                    used += 1;
                    self.state = State::Data;
                    let reply = match verb {
                        DO if byte == TIMING_MARK => Some(TelnetReply::Will(byte)),
                        DO => Some(TelnetReply::Wont(byte)),
                        WILL => Some(TelnetReply::Dont(byte)),
                        _ => None,
                    };
                    if let Some(reply) = reply {
                        return (used, Step::Reply(reply));
                    }
                }
                State::Sub { skipped } => {
                    // Skip to the next IAC or LF in one go, within the limit.
                    let room = TELNET_SUBNEGOTIATION_MAX - skipped;
                    let rest = &input[used..];
                    let window = &rest[..rest.len().min(room)];
                    match memchr::memchr2(IAC, b'\n', window) {
                        Some(at) if window[at] == b'\n' => {
                            self.state = State::Data;
                            return (used + at + 1, Step::UnendedSubnegotiation(true));
                        }
                        Some(at) => {
                            used += at + 1;
                            self.state = State::SubIac {
                                skipped: skipped + at + 1,
                            };
                        }
                        None => {
                            used += window.len();
                            let skipped = skipped + window.len();
                            if skipped >= TELNET_SUBNEGOTIATION_MAX {
                                self.state = State::Data;
                                return (used, Step::UnendedSubnegotiation(false));
                            }
                            self.state = State::Sub { skipped };
                        }
                    }
                }
                State::SubIac { skipped } => {
                    used += 1;
                    let skipped = skipped + 1;
                    self.state = State::Data;
                    match byte {
                        SE => self.telnet = true,
                        b'\n' => return (used, Step::UnendedSubnegotiation(true)),
                        _ if skipped >= TELNET_SUBNEGOTIATION_MAX => {
                            return (used, Step::UnendedSubnegotiation(false))
                        }
                        // IAC IAC is an escaped ff inside the subnegotiation; any other
                        // byte is a malformed one, skipped the same way.
                        _ => self.state = State::Sub { skipped },
                    }
                }
            }
        }
        (used, Step::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Data(Vec<u8>),
        Reply([u8; 3]),
        Discard,
        Unended(bool),
    }

    /// Feeds `bytes` in chunks of `chunk`, merging adjacent data runs.
    fn run(bytes: &[u8], chunk: usize) -> Vec<Ev> {
        let mut dec = TelnetDecoder::new();
        let mut out: Vec<Ev> = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            let mut input = piece;
            while !input.is_empty() {
                let (used, ev) = dec.feed(input);
                assert!((1..=input.len()).contains(&used));
                match ev {
                    Some(TelnetEvent::Data(d)) => {
                        assert!(!d.is_empty());
                        if let Some(Ev::Data(last)) = out.last_mut() {
                            last.extend_from_slice(d);
                        } else {
                            out.push(Ev::Data(d.to_vec()));
                        }
                    }
                    Some(TelnetEvent::Reply(r)) => out.push(Ev::Reply(r.to_bytes())),
                    Some(TelnetEvent::DiscardLine) => out.push(Ev::Discard),
                    Some(TelnetEvent::UnendedSubnegotiation { line_ended }) => {
                        out.push(Ev::Unended(line_ended))
                    }
                    None => assert_eq!(used, input.len()),
                }
                input = &input[used..];
            }
        }
        out
    }

    fn data(d: &[u8]) -> Ev {
        Ev::Data(d.to_vec())
    }

    #[test]
    fn ctrl_c_is_discard_then_will_timing_mark() {
        // What netkit telnet sends when its user presses Ctrl-C.
        let input = b"half a li\xff\xf4\xff\xfd\x06hello\r\n";
        for chunk in 1..=input.len() {
            assert_eq!(
                run(input, chunk),
                [
                    data(b"half a li"),
                    Ev::Discard,
                    Ev::Reply([0xff, 0xfb, 0x06]),
                    data(b"hello\r\n"),
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn options_are_refused() {
        // DO ECHO, WILL NAWS, DO SGA, WONT LINEMODE, DONT ECHO.
        let input = b"\xff\xfd\x01\xff\xfb\x1f\xff\xfd\x03\xff\xfc\x22\xff\xfe\x01";
        assert_eq!(
            run(input, 100),
            [
                Ev::Reply([0xff, 0xfc, 0x01]),
                Ev::Reply([0xff, 0xfe, 0x1f]),
                Ev::Reply([0xff, 0xfc, 0x03]),
            ]
        );
        // WILL TIMING-MARK from the peer is refused like any other WILL.
        assert_eq!(run(b"\xff\xfb\x06", 1), [Ev::Reply([0xff, 0xfe, 0x06])]);
    }

    #[test]
    fn iac_iac_is_one_literal_ff() {
        assert_eq!(run(b"a\xff\xffb", 1), [data(b"a\xffb")]);
        assert_eq!(run(b"\xff\xff\xff\xff", 3), [data(b"\xff\xff")]);
    }

    #[test]
    fn other_commands_and_subnegotiations_are_dropped() {
        // NOP, AYT, BRK, GA, DM, EC; then SB NAWS with an escaped ff inside, SE.
        let input = b"a\xff\xf1\xff\xf6\xff\xf3\xff\xf9\xff\xf2\xff\xf7b\xff\xfa\x1f\x00\xff\xff\x00\x18\xff\xf0c";
        for chunk in [1, 2, 5, input.len()] {
            assert_eq!(run(input, chunk), [data(b"abc")], "chunk {chunk}");
        }
        assert_eq!(
            run(b"x\xff\xf5y\xff\xf8z", 1),
            [data(b"x"), Ev::Discard, data(b"y"), Ev::Discard, data(b"z")]
        );
    }

    #[test]
    fn an_endless_subnegotiation_is_abandoned_at_the_limit() {
        let mut input = std::vec![0xff, 0xfa];
        input.extend(std::iter::repeat_n(b's', TELNET_SUBNEGOTIATION_MAX));
        input.extend(b"after");
        for chunk in [1, 7, input.len()] {
            assert_eq!(
                run(&input, chunk),
                [Ev::Unended(false), data(b"after")],
                "chunk {chunk}"
            );
        }
        // One byte short of the limit, the subnegotiation is still open.
        let mut input = std::vec![0xff, 0xfa];
        input.extend(std::iter::repeat_n(b's', TELNET_SUBNEGOTIATION_MAX - 1));
        input.extend(b"gone");
        assert_eq!(run(&input, 3), [Ev::Unended(false), data(b"one")]);
        // An IAC as the last byte of the body may still be followed by SE.
        let mut input = std::vec![0xff, 0xfa];
        input.extend(std::iter::repeat_n(b's', TELNET_SUBNEGOTIATION_MAX - 1));
        input.extend(b"\xff\xf0ok");
        assert_eq!(run(&input, 5), [data(b"ok")]);
    }

    #[test]
    fn a_stray_sb_ends_at_the_next_lf_and_says_so() {
        // What `nc` sends for a pasted `x\xff\xfa garbage` line and the line after it.
        let input = b"x\xff\xfa garbage\nnext line\n";
        for chunk in 1..=input.len() {
            assert_eq!(
                run(input, chunk),
                [data(b"x"), Ev::Unended(true), data(b"next line\n")],
                "chunk {chunk}"
            );
        }
        // An LF just after an IAC inside the subnegotiation ends it too.
        assert_eq!(
            run(b"\xff\xfaab\xff\nz", 1),
            [Ev::Unended(true), data(b"z")]
        );
        let mut dec = TelnetDecoder::new();
        let _ = dec.feed(b"\xff\xfa\n");
        assert!(!dec.is_telnet(), "a stray ff fa is no Telnet client");
        let _ = dec.feed(b"\xff\xfa\x18\x00\xff\xf0");
        assert!(dec.is_telnet(), "a subnegotiation ended by IAC SE is one");
    }

    #[test]
    fn plain_text_is_untouched_and_marks_no_telnet() {
        let mut dec = TelnetDecoder::new();
        let (used, ev) = dec.feed(b"hello\n");
        assert_eq!((used, ev), (6, Some(TelnetEvent::Data(b"hello\n"))));
        assert!(!dec.is_telnet());
        let _ = dec.feed(b"\xff\xff");
        assert!(!dec.is_telnet(), "an escaped ff is data");
        let _ = dec.feed(b"\xff");
        assert!(!dec.is_idle());
        let _ = dec.feed(b"\xf1");
        assert!(dec.is_telnet() && dec.is_idle());
    }
}
