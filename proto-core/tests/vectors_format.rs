//! Reader for `vectors.txt`, the protocol's shared test vectors.
//!
//! Written with `core` alone and no allocator, so that the host tests
//! (`tests/vectors.rs`, as `mod vectors_format;`) and the firmware conformance test
//! (through `#[path = ".../proto-core/tests/vectors_format.rs"] mod vectors_format;`)
//! read the file with the same code. Cargo also builds this file as a test binary of
//! its own, which runs the self-tests at the bottom.
//!
//! - [`vectors`] iterates over the vectors of a file, in order.
//! - [`decode_input`] turns an INPUT field (hex with `XX*N` runs) into bytes in a
//!   caller's buffer; [`input_len`] says how large that buffer must be.
//! - [`events`] splits an EXPECTED field into its events.
//! - [`matches`] compares formatted output with one expected event without
//!   allocating, expanding the `{c*N}` runs of the EXPECTED field as it goes;
//!   [`Expanded`] yields the expanded bytes for a caller that wants to print them.

// Each including crate uses a different part of this module.
#![allow(dead_code)]

use core::fmt;

/// Which decoder a vector exercises (the DECODER field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decoder {
    /// `frame`: INPUT is a frame stream fed whole to a `FrameDecoder`.
    Frame,
    /// `line`: INPUT is fed whole to a `LineDecoder`, then `finish()` is called.
    Line,
    /// `peer`: INPUT is given to `PeerAddr::decode`.
    Peer,
    /// `text`: INPUT is one frame; EXPECTED is `{:?}` of its `encode_text_line` output.
    Text,
    /// `sniff`: INPUT is the first bytes of a connection; EXPECTED is `{:?}` of `sniff`.
    Sniff,
    /// `telnet`: INPUT is what a text client sends, fed to a `TextDecoder`, then
    /// `finish()`; EXPECTED is `{:?}` of each `TextEvent`.
    Telnet,
}

impl Decoder {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "frame" => Self::Frame,
            "line" => Self::Line,
            "peer" => Self::Peer,
            "text" => Self::Text,
            "sniff" => Self::Sniff,
            "telnet" => Self::Telnet,
            _ => return None,
        })
    }
}

/// One vector: a line of the file split into its fields (spaces around them trimmed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vector<'a> {
    /// The 1-based line number in the file, for messages.
    pub line: usize,
    /// The DECODER field.
    pub decoder: Decoder,
    /// The NAME field.
    pub name: &'a str,
    /// The INPUT field, still in hex; see [`decode_input`].
    pub input: &'a str,
    /// The EXPECTED field; see [`events`] and [`matches`].
    pub expected: &'a str,
}

/// What is wrong with the vector file, and on which line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The line does not have exactly four ` | `-separated fields.
    Fields {
        /// The 1-based line number.
        line: usize,
    },
    /// The DECODER field names no known decoder.
    UnknownDecoder {
        /// The 1-based line number.
        line: usize,
    },
}

/// What is wrong with an INPUT field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// A token is not hex pairs nor `XX*N`.
    BadToken,
    /// The caller's buffer cannot hold the decoded bytes.
    BufferTooSmall {
        /// The bytes needed.
        needed: usize,
    },
}

/// The vectors of a file, in order; comment (`#`) and blank lines are skipped.
pub fn vectors(text: &str) -> Vectors<'_> {
    Vectors {
        lines: text.lines(),
        line: 0,
    }
}

/// Iterator returned by [`vectors`].
pub struct Vectors<'a> {
    lines: core::str::Lines<'a>,
    line: usize,
}

impl<'a> Iterator for Vectors<'a> {
    type Item = Result<Vector<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let text = self.lines.next()?;
            self.line += 1;
            let trimmed = text.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            return Some(parse_vector(self.line, text));
        }
    }
}

fn parse_vector(line: usize, text: &str) -> Result<Vector<'_>, FormatError> {
    let mut fields = text.split(" | ").map(str::trim);
    let (Some(decoder), Some(name), Some(input), Some(expected), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(FormatError::Fields { line });
    };
    let decoder = Decoder::from_name(decoder).ok_or(FormatError::UnknownDecoder { line })?;
    Ok(Vector {
        line,
        decoder,
        name,
        input,
        expected,
    })
}

/// The number of bytes an INPUT field decodes to.
///
/// # Errors
/// [`InputError::BadToken`] if a token is malformed.
pub fn input_len(input: &str) -> Result<usize, InputError> {
    input.split_whitespace().try_fold(0usize, |total, token| {
        let (_, count) = parse_token(token)?;
        total.checked_add(count).ok_or(InputError::BadToken)
    })
}

/// Decodes an INPUT field into the front of `out`, returning the number of bytes.
///
/// Tokens are separated by whitespace. A token is either an even number of hex digits
/// (`01`, `0401`, `7f000001`) or a run `XX*N`: the byte `XX` repeated `N` times.
///
/// # Errors
/// [`InputError::BadToken`] for a malformed token, [`InputError::BufferTooSmall`] if
/// `out` is too short.
pub fn decode_input(input: &str, out: &mut [u8]) -> Result<usize, InputError> {
    let needed = input_len(input)?;
    if needed > out.len() {
        return Err(InputError::BufferTooSmall { needed });
    }
    let mut at = 0;
    for token in input.split_whitespace() {
        let (kind, count) = parse_token(token)?;
        match kind {
            Token::Run(byte) => out[at..at + count].fill(byte),
            Token::Hex(digits) => {
                for (i, pair) in digits.as_bytes().chunks(2).enumerate() {
                    out[at + i] = hex_byte(pair).ok_or(InputError::BadToken)?;
                }
            }
        }
        at += count;
    }
    Ok(at)
}

enum Token<'a> {
    Hex(&'a str),
    Run(u8),
}

/// Classifies a token and returns the number of bytes it stands for.
fn parse_token(token: &str) -> Result<(Token<'_>, usize), InputError> {
    if let Some((byte, count)) = token.split_once('*') {
        let byte = hex_byte(byte.as_bytes()).ok_or(InputError::BadToken)?;
        let count = count.parse().map_err(|_| InputError::BadToken)?;
        return Ok((Token::Run(byte), count));
    }
    let valid = token.len().is_multiple_of(2) && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid {
        return Err(InputError::BadToken);
    }
    Ok((Token::Hex(token), token.len() / 2))
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let [hi, lo] = pair else { return None };
    let digit = |d: u8| char::from(d).to_digit(16);
    Some((digit(*hi)? * 16 + digit(*lo)?) as u8)
}

/// The EXPECTED field written when a vector yields no event.
pub const NO_EVENTS: &str = "(none)";

/// The events of an EXPECTED field, in order (none for [`NO_EVENTS`]).
pub fn events(expected: &str) -> impl Iterator<Item = &str> {
    let all = if expected == NO_EVENTS { "" } else { expected };
    all.split(" ; ").filter(|e| !e.is_empty())
}

/// The bytes of an expected event with its `{c*N}` runs expanded: `{a*1024}` stands
/// for 1024 `a`s. `c` is one ASCII character other than a space; anything else
/// between braces stands for itself.
#[derive(Clone)]
pub struct Expanded<'a> {
    rest: &'a [u8],
    run: (u8, usize),
}

/// Expands the `{c*N}` runs of an expected event; see [`Expanded`].
pub fn expand(event: &str) -> Expanded<'_> {
    Expanded {
        rest: event.as_bytes(),
        run: (0, 0),
    }
}

/// Reads a run `{c*N}` at the front of `bytes`, returning `c`, `N` and its length.
fn run_at(bytes: &[u8]) -> Option<(u8, usize, usize)> {
    let [b'{', c, b'*', tail @ ..] = bytes else {
        return None;
    };
    if *c == b' ' || !c.is_ascii_graphic() {
        return None;
    }
    let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || tail.get(digits) != Some(&b'}') {
        return None;
    }
    let count = core::str::from_utf8(&tail[..digits]).ok()?.parse().ok()?;
    Some((*c, count, 3 + digits + 1))
}

impl Iterator for Expanded<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        loop {
            if self.run.1 > 0 {
                self.run.1 -= 1;
                return Some(self.run.0);
            }
            if let Some((c, count, len)) = run_at(self.rest) {
                self.rest = &self.rest[len..];
                self.run = (c, count);
                continue;
            }
            let (&first, rest) = self.rest.split_first()?;
            self.rest = rest;
            return Some(first);
        }
    }
}

/// True if `actual`, once formatted, is exactly the expected `event` (with its runs
/// expanded). Compares as it formats, so it needs no buffer.
pub fn matches(event: &str, actual: fmt::Arguments<'_>) -> bool {
    let mut cmp = Comparer {
        want: expand(event),
        equal: true,
    };
    let written = fmt::write(&mut cmp, actual).is_ok();
    written && cmp.equal && cmp.want.next().is_none()
}

struct Comparer<'a> {
    want: Expanded<'a>,
    equal: bool,
}

impl fmt::Write for Comparer<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if self.want.next() != Some(b) {
                self.equal = false;
                // Stop formatting early: the answer is known.
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn splits_fields_and_skips_comments() {
        let text = "# header\n\nframe | bye | 06 0000 | Ok(Bye)\n  # indented comment\nline | x | 0a | (none)\n";
        let all: Vec<_> = vectors(text).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[0],
            Vector {
                line: 3,
                decoder: Decoder::Frame,
                name: "bye",
                input: "06 0000",
                expected: "Ok(Bye)"
            }
        );
        assert_eq!((all[1].line, all[1].decoder), (5, Decoder::Line));
    }

    #[test]
    fn reports_bad_lines() {
        let bad = |t: &str| vectors(t).next().unwrap().unwrap_err();
        assert_eq!(bad("frame | x | 00"), FormatError::Fields { line: 1 });
        assert_eq!(
            bad("frame | x | 00 | a | b"),
            FormatError::Fields { line: 1 }
        );
        assert_eq!(
            bad("\nnope | x | 00 | a"),
            FormatError::UnknownDecoder { line: 2 }
        );
    }

    #[test]
    fn decodes_hex_and_runs() {
        let mut buf = [0u8; 16];
        let n = decode_input("01 0a0B 61*3  ff*0 7f", &mut buf).unwrap();
        assert_eq!(&buf[..n], &[0x01, 0x0a, 0x0b, b'a', b'a', b'a', 0x7f]);
        assert_eq!(input_len("00*20 01"), Ok(21));
        assert_eq!(
            decode_input("00*20", &mut buf),
            Err(InputError::BufferTooSmall { needed: 20 })
        );
        for bad in ["0", "0g", "123", "1*2", "61*x", "61*"] {
            assert_eq!(input_len(bad), Err(InputError::BadToken), "{bad}");
        }
    }

    #[test]
    fn splits_events() {
        assert_eq!(
            events("A ; B(1) ; C").collect::<Vec<_>>(),
            ["A", "B(1)", "C"]
        );
        assert_eq!(events(NO_EVENTS).count(), 0);
    }

    #[test]
    fn expands_runs_and_compares() {
        let got: Vec<u8> = expand("x{a*3}y{ z }{b*}{-*2}").collect();
        assert_eq!(got, b"xaaay{ z }{b*}--");
        assert!(matches(
            "Ok(\"{a*4}\")",
            format_args!("{:?}", Ok::<_, ()>("aaaa"))
        ));
        assert!(!matches(
            "Ok(\"{a*4}\")",
            format_args!("{:?}", Ok::<_, ()>("aaa"))
        ));
        assert!(!matches(
            "Ok(\"{a*4}\")",
            format_args!("{:?}", Ok::<_, ()>("aaaaa"))
        ));
        assert!(matches(
            "Chat { text: \"hi\" }",
            format_args!("Chat {{ text: {:?} }}", "hi")
        ));
    }
}
