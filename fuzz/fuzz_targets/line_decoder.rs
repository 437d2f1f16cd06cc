//! Feeds arbitrary bytes, in chunks the fuzzer chooses, to a `LineDecoder`, and
//! compares what it yields with a direct reading of the text-mode rules: lines end
//! at LF, one CR before the LF is dropped, empty lines are skipped, a line over
//! `MAX_MESSAGE` bytes is `TooLong`, one that is not UTF-8 is `InvalidUtf8`, and the
//! unterminated last line counts when the stream ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_core::{LineDecoder, LineError, MAX_MESSAGE};
use proto_core_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    assert_eq!(decode(&input), expected(input.stream));
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
