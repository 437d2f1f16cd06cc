//! Runs every vector of `vectors.txt` (see its header for the format) against
//! proto-core, feeding frame and line inputs whole and in chunks of several sizes.

mod common;
mod vectors_format;

use proto_core::{encode_text_line, sniff, ErrorCode, FeedResult, PeerAddr, TEXT_LINE_MAX};
use vectors_format::{decode_input, events, expand, input_len, matches, vectors, Decoder, Vector};

const VECTORS: &str = include_str!("vectors.txt");

/// The chunk sizes frame and line inputs are fed in; `usize::MAX` feeds them whole.
const CHUNKINGS: &[&[usize]] = &[
    &[usize::MAX],
    &[1],
    &[2],
    &[3],
    &[7],
    &[64],
    &[1000],
    &[1, 5, 2, 1030],
];

/// The largest INPUT the file may hold, so that a microcontroller can hold it too.
const MAX_INPUT: usize = 4096;

fn all_vectors() -> Vec<Vector<'static>> {
    vectors(VECTORS)
        .collect::<Result<_, _>>()
        .expect("vectors.txt is well formed")
}

fn input_bytes(v: &Vector) -> Vec<u8> {
    let len = input_len(v.input).expect("INPUT is valid hex");
    let mut buf = vec![0u8; len];
    let n = decode_input(v.input, &mut buf).expect("INPUT decodes");
    buf.truncate(n);
    buf
}

fn expected_events(v: &Vector) -> Vec<String> {
    events(v.expected)
        .map(|e| String::from_utf8(expand(e).collect()).expect("EXPECTED is UTF-8"))
        .collect()
}

/// Runs one vector and returns the events it yielded when fed whole, or a message
/// saying what went wrong.
fn run(v: &Vector, input: &[u8], want: &[String]) -> Result<Vec<String>, String> {
    match v.decoder {
        Decoder::Frame => run_frame(input, want),
        Decoder::Line => run_line(input, want),
        Decoder::Peer => Ok(vec![match PeerAddr::decode(input) {
            Some((peer, rest)) => format!("{peer} rest={}", rest.len()),
            None => "None".into(),
        }]),
        Decoder::Text => run_text(input).map(|line| vec![line]),
        Decoder::Sniff => Ok(vec![format!("{:?}", sniff(input))]),
        Decoder::Telnet => run_telnet(input, want),
    }
}

fn run_frame(input: &[u8], want: &[String]) -> Result<Vec<String>, String> {
    let whole = common::decode_frames(input, &[usize::MAX]);
    for sizes in CHUNKINGS {
        let got = common::decode_frames(input, sizes).events;
        if got != want {
            return Err(format!("fed in chunks of {sizes:?}, got {got:?}"));
        }
    }
    if whole.all_ok && whole.idle && whole.reencoded != input {
        return Err(format!(
            "re-encoding gives {:02x?}, not the input",
            whole.reencoded
        ));
    }
    Ok(whole.events)
}

fn run_line(input: &[u8], want: &[String]) -> Result<Vec<String>, String> {
    for sizes in CHUNKINGS {
        let got = common::decode_lines(input, sizes);
        if got != want {
            return Err(format!("fed in chunks of {sizes:?}, got {got:?}"));
        }
    }
    Ok(common::decode_lines(input, &[usize::MAX]))
}

fn run_telnet(input: &[u8], want: &[String]) -> Result<Vec<String>, String> {
    for sizes in CHUNKINGS {
        let got = common::decode_text(&[input], sizes);
        if got != want {
            return Err(format!("fed in chunks of {sizes:?}, got {got:?}"));
        }
    }
    Ok(common::decode_text(&[input], &[usize::MAX]))
}

fn run_text(input: &[u8]) -> Result<String, String> {
    let mut dec = proto_core::FrameDecoder::new();
    let frame = match dec.feed(input) {
        FeedResult::Complete {
            item: Ok(frame),
            remaining: [],
        } => frame,
        other => return Err(format!("INPUT is not exactly one frame: {other:?}")),
    };
    let mut buf = [0u8; TEXT_LINE_MAX];
    let n = encode_text_line(&mut buf, &frame).map_err(|e| e.to_string())?;
    let line = std::str::from_utf8(&buf[..n]).map_err(|e| e.to_string())?;
    Ok(format!("{line:?}"))
}

/// Writes long runs of one character in the file's `{c*N}` notation, so that a
/// failure with 1024-byte texts stays readable.
fn runs(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut n = 1;
        while chars.next_if_eq(&c).is_some() {
            n += 1;
        }
        if n >= 16 && c.is_ascii_graphic() {
            out.push_str(&format!("{{{c}*{n}}}"));
        } else {
            out.extend(std::iter::repeat_n(c, n));
        }
    }
    out
}

#[test]
fn every_vector_passes() {
    let mut failures = Vec::new();
    let all = all_vectors();
    for v in &all {
        let input = input_bytes(v);
        let want = expected_events(v);
        let outcome = run(v, &input, &want).and_then(|got| {
            // The firmware compares with `matches`, without expanding: check it agrees.
            let agree = got.len() == want.len()
                && events(v.expected)
                    .zip(&got)
                    .all(|(e, g)| matches(e, format_args!("{g}")));
            match (got == want, agree) {
                (true, true) => Ok(()),
                (true, false) => Err("`matches` disagrees with the expanded EXPECTED".into()),
                (false, _) => Err(format!("got {got:?}")),
            }
        });
        if let Err(why) = outcome {
            failures.push(format!(
                "line {} {:?} {:?}: want {}\n    {}",
                v.line,
                v.decoder,
                v.name,
                runs(&format!("{want:?}")),
                runs(&why)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n  {}",
        failures.len(),
        all.len(),
        failures.join("\n  ")
    );
    println!("{} vectors passed", all.len());
}

#[test]
fn vector_file_is_well_formed() {
    let all = all_vectors();
    let mut names = std::collections::HashSet::new();
    for v in &all {
        let len = input_len(v.input).expect("INPUT is valid hex");
        assert!(len > 0, "line {}: empty INPUT", v.line);
        assert!(len <= MAX_INPUT, "line {}: INPUT of {len} bytes", v.line);
        assert!(
            names.insert((v.decoder, v.name)),
            "line {}: duplicate name {:?}",
            v.line,
            v.name
        );
    }
}

/// The file must keep covering the whole protocol: every frame kind, notice kind,
/// error code, decode error, peer family and boundary.
#[test]
fn vectors_cover_the_protocol() {
    let all = all_vectors();
    let text_of = |d: Decoder| -> String {
        all.iter()
            .filter(|v| v.decoder == d)
            .map(|v| format!("{} || {}\n", v.input, v.expected))
            .collect()
    };
    let frames = text_of(Decoder::Frame);
    let mut needed: Vec<String> = [
        "Ok(Chat ",
        "Ok(Broadcast ",
        "Ok(Notice(",
        "Ok(Ping ",
        "Ok(Pong ",
        "Ok(Bye)",
        "Ok(Ack ",
        "kind: Welcome",
        "kind: Join",
        "kind: Leave",
        "kind: Shutdown",
        "Err(TooLong ",
        "Err(UnknownKind ",
        "Err(BadLength ",
        "Err(BadPeer ",
        "Err(BadNotice ",
        "Err(TextTooLong ",
        "Err(InvalidUtf8 ",
        "peer: V4 ",
        "peer: V6 ",
        "peer: Some(V4 ",
        "peer: Some(V6 ",
        "peer: None",
        "*1023 ",
        "*1024 ",
        "*1025 ",
        ") ; Ok(",
    ]
    .map(String::from)
    .to_vec();
    // Every code this version knows (so a new one cannot be added without a vector).
    let known = (1..=u8::MAX).filter(|&c| ErrorCode(c).description() != "error");
    needed.extend(known.map(|c| format!("kind: Error(ErrorCode({c}))")));
    for n in &needed {
        assert!(frames.contains(n.as_str()), "no frame vector has {n:?}");
    }
    let lines = text_of(Decoder::Line);
    for n in [
        "0d0a",
        "Err(TooLong)",
        "Err(InvalidUtf8)",
        "*1023 ",
        "*1024 ",
        "*1025 ",
    ] {
        assert!(lines.contains(n), "no line vector has {n:?}");
    }
    let telnet = text_of(Decoder::Telnet);
    for n in [
        "Reply(Will(6))",
        "Reply(Wont(",
        "Reply(Dont(",
        "fff4",
        "fff5",
        "fff8",
        "ffff",
        "fffa",
    ] {
        assert!(telnet.contains(n), "no telnet vector has {n:?}");
    }
    for d in [Decoder::Peer, Decoder::Text, Decoder::Sniff] {
        assert!(!text_of(d).is_empty(), "no {d:?} vector");
    }
}

/// PROTOCOL.md's worked examples are indented lines `DECODER | NAME | INPUT |
/// EXPECTED`; each must be a vector of the file, exactly.
#[test]
fn protocol_examples_are_vectors() {
    let spec = include_str!("../PROTOCOL.md");
    let vector_lines: std::collections::HashSet<&str> = VECTORS.lines().collect();
    let examples: Vec<&str> = spec
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .filter(|l| l.split(" | ").count() == 4)
        .collect();
    assert!(examples.len() >= 30, "only {} examples", examples.len());
    for example in examples {
        assert!(
            vector_lines.contains(example),
            "PROTOCOL.md example is not a vector: {example}"
        );
    }
}
