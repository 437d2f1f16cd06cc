//! Helpers shared by the integration tests: drive the decoders over a byte stream cut
//! into chunks, and record what they yield as `{:?}` strings.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use proto_core::{FeedResult, FrameDecoder, LineDecoder, TextDecoder, TextEvent, MAX_FRAME};

/// What a [`FrameDecoder`] yielded over a whole stream.
#[derive(Debug, Default)]
pub struct FrameRun {
    /// `{:?}` of every `Result<Frame, DecodeError>` yielded, in order.
    pub events: Vec<String>,
    /// The re-encoding of every frame decoded, concatenated.
    pub reencoded: Vec<u8>,
    /// True if every event was a frame.
    pub all_ok: bool,
    /// True if the decoder ended between frames.
    pub idle: bool,
}

/// Splits `input` into chunks whose sizes cycle through `sizes` (a size of 0 counts
/// as 1, and the last chunk is whatever is left).
pub fn chunks<'a>(input: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = input;
    let mut size = sizes.iter().copied().cycle();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = size.next().unwrap_or(usize::MAX).clamp(1, rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        Some(piece)
    })
}

/// Feeds `input` to a fresh [`FrameDecoder`] in chunks (see [`chunks`]).
pub fn decode_frames(input: &[u8], sizes: &[usize]) -> FrameRun {
    let mut dec = FrameDecoder::new();
    let mut run = FrameRun {
        all_ok: true,
        ..FrameRun::default()
    };
    for mut piece in chunks(input, sizes) {
        while let FeedResult::Complete { item, remaining } = dec.feed(piece) {
            assert!(
                remaining.len() < piece.len(),
                "feed must consume at least one byte"
            );
            match item {
                Ok(frame) => {
                    run.events.push(format!("{:?}", Ok::<_, ()>(frame)));
                    let mut buf = [0u8; MAX_FRAME];
                    let n = frame.encode(&mut buf).expect("a decoded frame encodes");
                    run.reencoded.extend_from_slice(&buf[..n]);
                }
                Err(e) => {
                    run.events.push(format!("{:?}", Err::<(), _>(e)));
                    run.all_ok = false;
                }
            }
            piece = remaining;
        }
    }
    run.idle = dec.is_idle();
    run
}

/// Feeds `input` to a fresh [`LineDecoder`] in chunks (see [`chunks`]), then calls
/// `finish`, and returns `{:?}` of every `Result<&str, LineError>` yielded.
pub fn decode_lines(input: &[u8], sizes: &[usize]) -> Vec<String> {
    let mut dec = LineDecoder::new();
    let mut events = Vec::new();
    for mut piece in chunks(input, sizes) {
        while !piece.is_empty() {
            let (used, event) = dec.feed(piece);
            assert!(
                (1..=piece.len()).contains(&used),
                "feed must consume between 1 byte and all it was given"
            );
            match event {
                Some(line) => events.push(format!("{line:?}")),
                None => assert_eq!(used, piece.len(), "no event but input left over"),
            }
            piece = &piece[used..];
        }
    }
    if let Some(last) = dec.finish() {
        events.push(format!("{last:?}"));
    }
    events
}

/// Feeds each of `pieces` to one [`TextDecoder`] in chunks (see [`chunks`]), with a
/// pause (`TextDecoder::pause`) after every piece but the last, then calls `finish`.
/// Returns `{:?}` of every `TextEvent` yielded; the messages ended by a pause or by
/// `finish` are written as `Message(...)` events too.
pub fn decode_text(pieces: &[&[u8]], sizes: &[usize]) -> Vec<String> {
    let mut dec = TextDecoder::new();
    let mut events = Vec::new();
    for (i, whole) in pieces.iter().enumerate() {
        for mut piece in chunks(whole, sizes) {
            while !piece.is_empty() {
                let (used, event) = dec.feed(piece);
                assert!(
                    (1..=piece.len()).contains(&used),
                    "feed must consume between 1 byte and all it was given"
                );
                match event {
                    Some(event) => events.push(format!("{event:?}")),
                    None => assert_eq!(used, piece.len(), "no event but input left over"),
                }
                piece = &piece[used..];
            }
        }
        if i + 1 < pieces.len() {
            let waits = dec.waits_for_pause();
            let ended = dec.pause();
            assert!(
                waits || ended.is_none(),
                "pause() acted but waits_for_pause() said no"
            );
            if let Some(message) = ended {
                events.push(format!("{:?}", TextEvent::Message(message)));
            }
        }
    }
    if let Some(last) = dec.finish() {
        events.push(format!("{:?}", TextEvent::Message(last)));
    }
    events
}
