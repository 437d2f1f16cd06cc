//! Running one vector through the decoder it names and comparing the events.

use core::fmt::{self, Write as _};

use chatroom_firmware::{say, stack};
use heapless::String;
use proto_core::{
    encode_text_line, sniff, FeedResult, FrameDecoder, LineDecoder, PeerAddr, TextDecoder,
    TextEvent, MAX_FRAME, TEXT_LINE_MAX,
};

use crate::vectors_format::{decode_input, events, matches, Decoder, Vector};

/// The largest INPUT the vector file allows.
const INPUT_MAX: usize = 4096;
/// Room for the longest formatted event: a text of 1024 escaped controls (`\u{1b}`
/// is six characters) or a fully escaped text-mode line in `{:?}` form.
const OUT_MAX: usize = 8192;

/// Buffers for one vector at a time, kept in static RAM rather than on the stack.
pub struct Scratch {
    input: [u8; INPUT_MAX],
    out: String<OUT_MAX>,
    encoded: [u8; MAX_FRAME],
    text: [u8; TEXT_LINE_MAX],
    /// The most stack, in bytes, one `FrameDecoder::feed` call has used so far.
    pub max_feed_stack: usize,
}

impl Scratch {
    /// Empty buffers.
    pub const fn new() -> Self {
        Self {
            input: [0; INPUT_MAX],
            out: String::new(),
            encoded: [0; MAX_FRAME],
            text: [0; TEXT_LINE_MAX],
            max_feed_stack: 0,
        }
    }
}

/// Counts of passed and failed vectors.
#[derive(Debug, Default)]
pub struct Tally {
    /// Vectors that passed.
    pub passed: usize,
    /// Vectors that failed (or lines of the file that could not be read).
    pub failed: usize,
}

impl Tally {
    /// Counts one vector.
    pub fn record(&mut self, passed: bool) {
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

/// How frame and line INPUTs are fed: whole, as the vector file specifies, then in
/// pieces, which must yield the same events (as the host test requires), so that the
/// decoders' buffering paths run on the target too.
const CHUNKINGS: [usize; 3] = [usize::MAX, 1, 7];

/// Runs `vector`, prints why it fails if it does, and returns whether it passed.
pub fn vector(vector: &Vector<'_>, scratch: &mut Scratch) -> bool {
    let len = match decode_input(vector.input, &mut scratch.input) {
        Ok(len) => len,
        Err(e) => {
            let Vector { line, name, .. } = *vector;
            say!("FAIL line {} ({}): INPUT: {:?}", line, name, e);
            return false;
        }
    };
    let input = &scratch.input[..len];
    let mut passed = true;
    for chunk in CHUNKINGS {
        let mut checker = checker(vector, chunk, &mut scratch.out);
        match vector.decoder {
            Decoder::Frame => {
                let (all_ok, idle, depth) = frames(input, chunk, &mut checker);
                scratch.max_feed_stack = scratch.max_feed_stack.max(depth);
                if all_ok && idle && !reencodes(input, &mut scratch.encoded) {
                    checker.fail(format_args!("its frames do not re-encode to INPUT"));
                }
            }
            Decoder::Line => lines(input, chunk, &mut checker),
            Decoder::Peer => match PeerAddr::decode(input) {
                Some((peer, rest)) => checker.event(format_args!("{} rest={}", peer, rest.len())),
                None => checker.event(format_args!("None")),
            },
            Decoder::Sniff => checker.event(format_args!("{:?}", sniff(input))),
            Decoder::Text => text_line(input, &mut scratch.text, &mut checker),
            Decoder::Telnet => text_input(input, chunk, &mut checker),
        }
        passed &= checker.finish();
        if !matches!(
            vector.decoder,
            Decoder::Frame | Decoder::Line | Decoder::Telnet
        ) {
            break;
        }
    }
    passed
}

/// Feeds `input` to a frame decoder in pieces of `chunk` bytes, checking each event.
/// Returns whether every event was `Ok`, whether the decoder ended between frames,
/// and the most stack one `feed` call used.
fn frames<'v>(
    input: &[u8],
    chunk: usize,
    checker: &mut Checker<'v, '_, impl Iterator<Item = &'v str>>,
) -> (bool, bool, usize) {
    let mut decoder = FrameDecoder::new();
    let (mut all_ok, mut depth) = (true, 0);
    for mut rest in input.chunks(chunk) {
        loop {
            let d = &mut decoder;
            // The closure moves `d` in, so the event it returns may borrow the decoder.
            let (fed, used_stack) = stack::measure(move || {
                let d = d;
                d.feed(rest)
            });
            depth = depth.max(used_stack);
            let FeedResult::Complete { item, remaining } = fed else {
                break;
            };
            #[cfg(feature = "defmt")]
            defmt::debug!("{=str}: {}", checker.vector.name, item);
            all_ok &= item.is_ok();
            checker.event(format_args!("{:?}", item));
            rest = remaining;
        }
    }
    (all_ok, decoder.is_idle(), depth)
}

/// True if the frames decoded from `input`, encoded again one after the other, give
/// exactly `input`. Called only when every event was `Ok` and no partial frame was
/// left over, as the host test does.
fn reencodes(input: &[u8], buf: &mut [u8; MAX_FRAME]) -> bool {
    let mut decoder = FrameDecoder::new();
    let mut rest = input;
    while !rest.is_empty() {
        let FeedResult::Complete {
            item: Ok(frame),
            remaining,
        } = decoder.feed(rest)
        else {
            return false;
        };
        let used = rest.len() - remaining.len();
        match frame.encode(buf) {
            Ok(n) if buf[..n] == rest[..used] => rest = remaining,
            _ => return false,
        }
    }
    true
}

/// Feeds `input` to a line decoder in pieces of `chunk` bytes, then ends the
/// stream, checking each event.
fn lines<'v>(
    input: &[u8],
    chunk: usize,
    checker: &mut Checker<'v, '_, impl Iterator<Item = &'v str>>,
) {
    let mut decoder = LineDecoder::new();
    for mut rest in input.chunks(chunk) {
        while !rest.is_empty() {
            let (used, event) = decoder.feed(rest);
            if let Some(result) = event {
                checker.event(format_args!("{:?}", result));
            }
            rest = &rest[used..];
        }
    }
    if let Some(result) = decoder.finish() {
        checker.event(format_args!("{:?}", result));
    }
}

/// Feeds `input` to a text-mode decoder (Telnet commands, then lines) in pieces of
/// `chunk` bytes, then ends the stream, checking each event.
fn text_input<'v>(
    input: &[u8],
    chunk: usize,
    checker: &mut Checker<'v, '_, impl Iterator<Item = &'v str>>,
) {
    let mut decoder = TextDecoder::new();
    for mut rest in input.chunks(chunk) {
        while !rest.is_empty() {
            let (used, event) = decoder.feed(rest);
            if let Some(event) = event {
                checker.event(format_args!("{:?}", event));
            }
            rest = &rest[used..];
        }
    }
    if let Some(result) = decoder.finish() {
        checker.event(format_args!("{:?}", TextEvent::Message(result)));
    }
}

/// Decodes the one frame in `input` and checks the text-mode line written for it.
fn text_line<'v>(
    input: &[u8],
    out: &mut [u8],
    checker: &mut Checker<'v, '_, impl Iterator<Item = &'v str>>,
) {
    let mut decoder = FrameDecoder::new();
    let FeedResult::Complete {
        item: Ok(frame),
        remaining: [],
    } = decoder.feed(input)
    else {
        return checker.fail(format_args!("INPUT is not exactly one valid frame"));
    };
    match encode_text_line(out, &frame).map(|n| core::str::from_utf8(&out[..n])) {
        Ok(Ok(line)) => checker.event(format_args!("{:?}", line)),
        Ok(Err(_)) => checker.fail(format_args!("the line written is not UTF-8")),
        Err(e) => checker.fail(format_args!("encode_text_line: {}", e)),
    }
}

/// Compares the events of one vector, in order, with its EXPECTED field.
struct Checker<'v, 'o, E> {
    vector: &'v Vector<'v>,
    /// The piece size the input is fed in, shown in messages unless it is whole.
    chunk: usize,
    expected: E,
    index: usize,
    ok: bool,
    out: &'o mut String<OUT_MAX>,
}

/// A checker of `vector`'s events, for its input fed in pieces of `chunk` bytes.
fn checker<'v, 'o>(
    vector: &'v Vector<'v>,
    chunk: usize,
    out: &'o mut String<OUT_MAX>,
) -> Checker<'v, 'o, impl Iterator<Item = &'v str>> {
    Checker {
        vector,
        chunk,
        expected: events(vector.expected),
        index: 0,
        ok: true,
        out,
    }
}

/// Names a vector in messages: its line, its name, and how its input was fed.
struct Place<'v> {
    vector: &'v Vector<'v>,
    chunk: usize,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} ({})", self.vector.line, self.vector.name)?;
        if self.chunk != usize::MAX {
            write!(f, " fed in pieces of {}", self.chunk)?;
        }
        Ok(())
    }
}

impl<'v, E: Iterator<Item = &'v str>> Checker<'v, '_, E> {
    /// Checks the next event, formatted from `actual`, against the next expected one.
    fn event(&mut self, actual: fmt::Arguments<'_>) {
        self.index += 1;
        self.out.clear();
        let fits = self.out.write_fmt(actual).is_ok();
        let cut = if fits {
            ""
        } else {
            "... (cut: longer than the buffer)"
        };
        match self.expected.next() {
            Some(want) if fits && matches(want, format_args!("{}", self.out)) => {}
            Some(want) => {
                self.ok = false;
                let (place, index, out) = self.place();
                say!("FAIL {place}: event {index}: expected {want}, got {out}{cut}");
            }
            None => {
                self.ok = false;
                let (place, index, out) = self.place();
                say!("FAIL {place}: unexpected event {index}: {out}{cut}");
            }
        }
    }

    /// Where the vector is, the event's number and its formatted text.
    fn place(&self) -> (Place<'v>, usize, &str) {
        let place = Place {
            vector: self.vector,
            chunk: self.chunk,
        };
        (place, self.index, self.out)
    }

    /// Fails the vector for a reason other than a mismatched event.
    fn fail(&mut self, why: fmt::Arguments<'_>) {
        self.ok = false;
        let (place, _, _) = self.place();
        say!("FAIL {}: {}", place, why);
    }

    /// Checks that no expected event is missing; returns whether the vector passed.
    fn finish(mut self) -> bool {
        while let Some(want) = self.expected.next() {
            self.fail(format_args!("missing event: {want}"));
        }
        self.ok
    }
}
