//! Feeds arbitrary bytes, in chunks the fuzzer chooses, to a `LineDecoder`, and
//! compares what it yields with a direct reading of the text-mode rules: lines end
//! at LF, one CR before the LF is dropped, empty lines are skipped, a line over
//! `MAX_MESSAGE` bytes is `TooLong`, one that is not UTF-8 is `InvalidUtf8`, and the
//! unterminated last line counts when the stream ends.
//!
//! The same input then goes to a `TextDecoder`, which must agree with a byte-by-byte
//! reading of the Telnet rules in front of the line rules, and which is also fed with
//! a pause after every chunk.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_core::{
    LineDecoder, LineError, TextDecoder, TextEvent, MAX_MESSAGE, TELNET_SUBNEGOTIATION_MAX,
};
use proto_core_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    assert_eq!(decode(&input), expected(input.stream));
    text(&input);
});

fn decode(input: &Input) -> Vec<Result<Vec<u8>, LineError>> {
    let mut dec = LineDecoder::new();
    let mut events = Vec::new();
    for (_, chunk) in input.chunks() {
        let mut at = 0;
        while at < chunk.len() {
            let (used, event) = dec.feed(&chunk[at..]);
            assert!(used >= 1 && used <= chunk.len() - at, "bad consumed count");
            at += used;
            match event {
                Some(line) => events.push(checked(line)),
                None => assert_eq!(at, chunk.len(), "no event yet input left over"),
            }
        }
    }
    if let Some(last) = dec.finish() {
        events.push(checked(last));
    }
    assert!(dec.is_idle(), "not idle after finish");
    events
}

/// Checks a yielded line's own invariants and returns it owned.
fn checked(line: Result<&str, LineError>) -> Result<Vec<u8>, LineError> {
    let line = line?;
    assert!(!line.is_empty(), "empty line yielded");
    assert!(line.len() <= MAX_MESSAGE, "line of {} bytes", line.len());
    assert!(!line.contains('\n'), "line contains LF");
    // A line may still end with CR: only the one CR just before the LF is dropped
    // ("x\r\r\n" is "x\r"), which `expected` models exactly.
    Ok(line.as_bytes().to_vec())
}

/// The events the rules give for the whole stream.
fn expected(stream: &[u8]) -> Vec<Result<Vec<u8>, LineError>> {
    stream
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| {
            if line.len() > MAX_MESSAGE {
                Err(LineError::TooLong)
            } else if core::str::from_utf8(line).is_err() {
                Err(LineError::InvalidUtf8)
            } else {
                Ok(line.to_vec())
            }
        })
        .collect()
}

/// Feeds the same input to a `TextDecoder` (Telnet commands, lines and pause-ended
/// messages). Without pauses, its events must equal a byte-by-byte reading of the
/// rules; with a pause after every chunk, nothing may panic, every message must obey
/// the limits, and a newline-framed connection must ignore the pauses.
fn text(input: &Input) {
    assert_eq!(decode_text(input, false), expected_text(input.stream));
    decode_text(input, true);
}

#[derive(Debug, PartialEq, Eq)]
enum TextEv {
    Message(Result<Vec<u8>, LineError>),
    Reply([u8; 3]),
}

fn decode_text(input: &Input, pauses: bool) -> Vec<TextEv> {
    let mut dec = TextDecoder::new();
    let mut events = Vec::new();
    for (_, chunk) in input.chunks() {
        let mut at = 0;
        while at < chunk.len() {
            let (used, event) = dec.feed(&chunk[at..]);
            assert!(used >= 1 && used <= chunk.len() - at, "bad consumed count");
            at += used;
            match event {
                Some(TextEvent::Message(m)) => events.push(TextEv::Message(checked(m))),
                Some(TextEvent::Reply(r)) => events.push(TextEv::Reply(r.to_bytes())),
                None => assert_eq!(at, chunk.len(), "no event yet input left over"),
            }
        }
        if pauses {
            let framed = dec.is_newline_framed();
            let waits = dec.waits_for_pause();
            if let Some(m) = dec.pause() {
                assert!(waits && !framed, "a pause ended a message it should not");
                events.push(TextEv::Message(checked(m)));
            }
        }
    }
    if let Some(last) = dec.finish() {
        events.push(TextEv::Message(checked(last)));
    }
    events
}

/// The text-mode input rules applied byte by byte, with no pauses.
fn expected_text(stream: &[u8]) -> Vec<TextEv> {
    #[derive(Clone, Copy)]
    enum T {
        Data,
        Iac,
        Opt(u8),
        Sub(usize),
        SubIac(usize),
    }
    let max_sub = TELNET_SUBNEGOTIATION_MAX;
    let mut out = Vec::new();
    let (mut state, mut line, mut discarding) = (T::Data, Vec::new(), false);
    for &b in stream {
        let mut data = None;
        state = match (state, b) {
            (T::Data, 0xff) => T::Iac,
            (T::Data, _) | (T::Iac, 0xff) => {
                data = Some(b);
                T::Data
            }
            (T::Iac, 0xfb..=0xfe) => T::Opt(b),
            (T::Iac, 0xfa) => T::Sub(0),
            (T::Iac, 0xf4 | 0xf5 | 0xf8) => {
                line.clear();
                discarding = false;
                T::Data
            }
            (T::Iac, _) => T::Data,
            (T::Opt(verb), opt) => {
                match (verb, opt) {
                    (0xfd, 6) => out.push(TextEv::Reply([0xff, 0xfb, 6])),
                    (0xfd, _) => out.push(TextEv::Reply([0xff, 0xfc, opt])),
                    (0xfb, _) => out.push(TextEv::Reply([0xff, 0xfe, opt])),
                    _ => {}
                }
                T::Data
            }
            (T::Sub(k), 0xff) => T::SubIac(k + 1),
            (T::SubIac(_), 0xf0) => T::Data,
            // A subnegotiation not ended by IAC SE before an LF (consumed with it)
            // or the limit takes its whole line with it, up to the LF, reported once.
            (T::Sub(k) | T::SubIac(k), _) if b == b'\n' || k + 1 >= max_sub => {
                line.clear();
                discarding = b != b'\n';
                out.push(TextEv::Message(Err(LineError::UnendedSubnegotiation)));
                T::Data
            }
            (T::Sub(k) | T::SubIac(k), _) => T::Sub(k + 1),
        };
        match data {
            Some(b'\n') => end_line(&mut line, &mut discarding, &mut out),
            Some(_) if discarding => {}
            Some(byte) => {
                line.push(byte);
                // The decoder holds 1025 bytes (1024 and a CR): one more is too long.
                if line.len() > MAX_MESSAGE + 1 {
                    out.push(TextEv::Message(Err(LineError::TooLong)));
                    line.clear();
                    discarding = true;
                }
            }
            None => {}
        }
    }
    end_line(&mut line, &mut discarding, &mut out);
    out
}

fn end_line(line: &mut Vec<u8>, discarding: &mut bool, out: &mut Vec<TextEv>) {
    let taken = std::mem::take(line);
    if std::mem::take(discarding) {
        return;
    }
    let text = taken.strip_suffix(b"\r").unwrap_or(&taken);
    if text.is_empty() {
        return;
    }
    out.push(TextEv::Message(if text.len() > MAX_MESSAGE {
        Err(LineError::TooLong)
    } else if core::str::from_utf8(text).is_err() {
        Err(LineError::InvalidUtf8)
    } else {
        Ok(text.to_vec())
    }));
}
