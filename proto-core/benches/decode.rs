//! Throughput of the decoders and the encoder on long streams of chat traffic, fed
//! the way a server reads a socket: in 64 KiB reads that cut frames and lines
//! anywhere.
//!
//! `cargo bench -p proto-core` reports bytes/s for the 1024-byte messages and
//! frames/s (elements) for the 16-byte ones.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use proto_core::{
    FeedResult, Frame, FrameDecoder, LineDecoder, PeerAddr, TextDecoder, TextEvent, MAX_FRAME,
};

/// The size of one socket read.
const READ: usize = 64 * 1024;

/// About this many bytes of stream per iteration.
const STREAM_BYTES: usize = 4 << 20;

const PEER: PeerAddr = PeerAddr::V4 {
    ip: [127, 0, 0, 1],
    port: 50432,
};

fn encode(frame: &Frame, out: &mut Vec<u8>) {
    let mut buf = [0u8; MAX_FRAME];
    let n = frame.encode(&mut buf).expect("valid frame");
    out.extend_from_slice(&buf[..n]);
}

/// A stream of `count` frames built by `frame(i)`.
fn stream<'t>(count: usize, frame: impl Fn(u64) -> Frame<'t>) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..count as u64 {
        encode(&frame(i), &mut out);
    }
    out
}

/// Decodes the whole stream in `READ`-byte reads; returns the frames decoded.
fn decode_frames(stream: &[u8]) -> usize {
    let mut dec = FrameDecoder::new();
    let mut frames = 0;
    for read in stream.chunks(READ) {
        let mut input = read;
        while let FeedResult::Complete { item, remaining } = dec.feed(input) {
            if let Ok(frame) = item {
                black_box(&frame);
                frames += 1;
            }
            input = remaining;
        }
    }
    frames
}

/// Splits the whole stream into lines in `READ`-byte reads; returns the lines.
fn decode_lines(stream: &[u8]) -> usize {
    let mut dec = LineDecoder::new();
    let mut lines = 0;
    for read in stream.chunks(READ) {
        let mut input = read;
        while !input.is_empty() {
            let (used, event) = dec.feed(input);
            if let Some(Ok(line)) = event {
                black_box(line);
                lines += 1;
            }
            input = &input[used..];
        }
    }
    lines
}

/// The same through a `TextDecoder`, as the server reads text clients (Telnet
/// commands taken out, then lines); returns the lines.
fn decode_text(stream: &[u8]) -> usize {
    let mut dec = TextDecoder::new();
    let mut lines = 0;
    for read in stream.chunks(READ) {
        let mut input = read;
        while !input.is_empty() {
            let (used, event) = dec.feed(input);
            if let Some(TextEvent::Message(Ok(line))) = event {
                black_box(line);
                lines += 1;
            }
            input = &input[used..];
        }
    }
    lines
}

fn bench_decode(c: &mut Criterion) {
    let long = "m".repeat(1024);
    let short = "sixteen bytes ok";
    assert_eq!(short.len(), 16);
    let mut group = c.benchmark_group("decode");
    for text in [long.as_str(), short] {
        let count = STREAM_BYTES / (text.len() + 3);
        let chats = stream(count, |_| Frame::Chat { text });
        let broadcasts = stream(count, |seq| Frame::Broadcast {
            seq,
            peer: PEER,
            text,
        });
        assert_eq!(decode_frames(&chats), count);
        assert_eq!(decode_frames(&broadcasts), count);
        for (kind, bytes) in [("chat", &chats), ("broadcast", &broadcasts)] {
            let id = format!("{kind}_{}", text.len());
            group.throughput(Throughput::Bytes(bytes.len() as u64));
            group.bench_with_input(BenchmarkId::new("bytes", &id), bytes, |b, s| {
                b.iter(|| decode_frames(s))
            });
            group.throughput(Throughput::Elements(count as u64));
            group.bench_with_input(BenchmarkId::new("frames", &id), bytes, |b, s| {
                b.iter(|| decode_frames(s))
            });
        }
        let mut lines = Vec::new();
        for _ in 0..count {
            lines.extend_from_slice(text.as_bytes());
            lines.extend_from_slice(b"\r\n");
        }
        assert_eq!(decode_lines(&lines), count);
        group.throughput(Throughput::Bytes(lines.len() as u64));
        let id = format!("line_{}", text.len());
        group.bench_with_input(BenchmarkId::new("bytes", &id), &lines, |b, s| {
            b.iter(|| decode_lines(s))
        });
        assert_eq!(decode_text(&lines), count);
        let id = format!("text_{}", text.len());
        group.bench_with_input(BenchmarkId::new("bytes", &id), &lines, |b, s| {
            b.iter(|| decode_text(s))
        });
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let long = "m".repeat(1024);
    let mut group = c.benchmark_group("encode");
    for text in [long.as_str(), "sixteen bytes ok"] {
        let frame = Frame::Broadcast {
            seq: 1 << 40,
            peer: PEER,
            text,
        };
        const BATCH: usize = 1024;
        let mut out = vec![0u8; BATCH * frame.encoded_len()];
        group.throughput(Throughput::Elements(BATCH as u64));
        let id = format!("broadcast_{}", text.len());
        group.bench_function(BenchmarkId::new("frames", &id), |b| {
            b.iter(|| {
                let mut at = 0;
                for seq in 0..BATCH as u64 {
                    let f = Frame::Broadcast {
                        seq,
                        peer: PEER,
                        text,
                    };
                    at += f.encode(&mut out[at..]).expect("room for the batch");
                }
                black_box(&out);
                at
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);
criterion_main!(benches);
