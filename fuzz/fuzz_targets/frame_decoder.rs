//! Feeds arbitrary bytes, in chunks the fuzzer chooses, to a `FrameDecoder`.
//!
//! Checks that it never panics, that it consumes input as documented, that it yields
//! the same events however the stream is cut, and that every frame it decodes
//! re-encodes to exactly the bytes it was decoded from and renders as one safe text
//! line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto_core::{
    encode_text_line, FeedResult, Frame, FrameDecoder, FrameKind, MAX_FRAME, TEXT_LINE_MAX,
};
use proto_core_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let input = Input::parse(data);
    let chunked = decode(&input);
    if input.sizes.is_empty() {
        // Already decoded whole: nothing to compare.
        return;
    }
    let whole = decode(&Input {
        sizes: &[],
        stream: input.stream,
    });
    assert_eq!(chunked, whole, "events depend on how the stream is cut");
});

/// Decodes the whole input and returns `{:?}` of every event.
fn decode(input: &Input) -> Vec<String> {
    let mut dec = FrameDecoder::new();
    let mut events = Vec::new();
    for (offset, chunk) in input.chunks() {
        let mut rest = chunk;
        while let FeedResult::Complete { item, remaining } = dec.feed(rest) {
            assert!(remaining.len() < rest.len(), "an event from no input");
            rest = remaining;
            match item {
                Ok(frame) => {
                    // A frame's header and body are the last bytes consumed.
                    let end = offset + chunk.len() - rest.len();
                    check_frame(&frame, &input.stream[..end]);
                    events.push(format!("{:?}", frame));
                }
                Err(e) => {
                    let _ = e.to_string();
                    events.push(format!("{e:?}"));
                }
            }
        }
    }
    events
}

/// `consumed` is the stream up to the end of `frame`.
fn check_frame(frame: &Frame, consumed: &[u8]) {
    let mut buf = [0u8; MAX_FRAME];
    let n = frame.encode(&mut buf).expect("a decoded frame encodes");
    assert_eq!(n, frame.encoded_len());
    assert!(n <= consumed.len());
    assert_eq!(
        &buf[..n],
        &consumed[consumed.len() - n..],
        "re-encoding differs from the bytes decoded"
    );
    assert_eq!(FrameKind::from_byte(buf[0]), Some(frame.kind()));

    let mut line = [0u8; TEXT_LINE_MAX];
    let len = encode_text_line(&mut line, frame).expect("TEXT_LINE_MAX always suffices");
    let text = core::str::from_utf8(&line[..len]).expect("text lines are UTF-8");
    if matches!(frame, Frame::Broadcast { .. } | Frame::Notice(_)) {
        let body = text.strip_suffix('\n').expect("a text line ends with LF");
        assert!(
            !body.chars().any(is_unsafe),
            "unsafe character in a text line: {text:?}"
        );
    } else {
        assert_eq!(len, 0);
    }
}

/// The characters a text line must never carry raw: controls other than TAB, and
/// the Unicode bidirectional controls.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
