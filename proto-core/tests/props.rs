//! Property tests: round trips of every frame kind, independence from how a stream
//! is cut, robustness on arbitrary bytes, and the safety of sanitised text.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;

use proto_core::{
    encode_text_line, sanitize, ErrorCode, FeedResult, Frame, LineError, Notice, NoticeKind,
    PeerAddr, TelnetReply, TextEvent, MAX_FRAME, MAX_MESSAGE, TEXT_LINE_MAX,
};

/// A frame that owns its text, so a strategy can produce it.
#[derive(Debug, Clone)]
enum Owned {
    Chat(String),
    Broadcast(u64, PeerAddr, String),
    Notice(NoticeKind, Option<PeerAddr>, String),
    Ping(u64),
    Pong(u64),
    Bye,
    Ack(u64),
}

impl Owned {
    fn frame(&self) -> Frame<'_> {
        match self {
            Owned::Chat(text) => Frame::Chat { text },
            Owned::Broadcast(seq, peer, text) => Frame::Broadcast {
                seq: *seq,
                peer: *peer,
                text,
            },
            Owned::Notice(kind, peer, text) => Frame::Notice(Notice {
                kind: *kind,
                peer: *peer,
                text,
            }),
            Owned::Ping(nonce) => Frame::Ping { nonce: *nonce },
            Owned::Pong(nonce) => Frame::Pong { nonce: *nonce },
            Owned::Bye => Frame::Bye,
            Owned::Ack(seq) => Frame::Ack { seq: *seq },
        }
    }
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    let n = frame.encode(&mut buf).expect("a valid frame encodes");
    buf[..n].to_vec()
}

/// Message texts up to the 1024-byte limit: short or long, ASCII or any Unicode.
fn text() -> impl Strategy<Value = String> {
    let unicode = vec(any::<char>(), 0..400).prop_map(|chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > MAX_MESSAGE {
                break;
            }
            s.push(c);
        }
        s
    });
    prop_oneof![
        "[ -~]{0,40}",
        "[a-z]{1000,1024}",
        unicode,
        Just("x".repeat(MAX_MESSAGE)),
    ]
}

fn peer() -> impl Strategy<Value = PeerAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| PeerAddr::V4 { ip, port }),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| PeerAddr::V6 { ip, port }),
    ]
}

fn notice_kind() -> impl Strategy<Value = NoticeKind> {
    prop_oneof![
        Just(NoticeKind::Welcome),
        Just(NoticeKind::Join),
        Just(NoticeKind::Leave),
        Just(NoticeKind::Shutdown),
        any::<u8>().prop_map(|c| NoticeKind::Error(ErrorCode(c))),
    ]
}

fn owned_frame() -> impl Strategy<Value = Owned> {
    prop_oneof![
        text().prop_map(Owned::Chat),
        (any::<u64>(), peer(), text()).prop_map(|(s, p, t)| Owned::Broadcast(s, p, t)),
        (notice_kind(), proptest::option::of(peer()), text())
            .prop_map(|(k, p, t)| Owned::Notice(k, p, t)),
        any::<u64>().prop_map(Owned::Ping),
        any::<u64>().prop_map(Owned::Pong),
        Just(Owned::Bye),
        any::<u64>().prop_map(Owned::Ack),
    ]
}

/// Chunk sizes, from single bytes to several frames at once.
fn sizes() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1..8usize, 1..2000usize], 1..6)
}

/// Bytes that look enough like frames and lines to reach deep into the decoders.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let framish = prop_oneof![
        0u8..9,
        Just(b'\n'),
        Just(b'\r'),
        Just(0x04),
        Just(0xff),
        any::<u8>()
    ];
    prop_oneof![vec(any::<u8>(), 0..3000), vec(framish, 0..3000)]
}

/// The text-mode rules applied to a whole stream, for comparison with LineDecoder.
fn expected_lines(stream: &[u8]) -> Vec<String> {
    stream
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
        .map(|line| {
            let event = if line.len() > MAX_MESSAGE {
                Err(LineError::TooLong)
            } else {
                std::str::from_utf8(line).map_err(|_| LineError::InvalidUtf8)
            };
            format!("{event:?}")
        })
        .collect()
}

fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(c, '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

proptest! {
    #[test]
    #[cfg_attr(miri, ignore)]
    fn every_frame_kind_round_trips(owned in owned_frame()) {
        let frame = owned.frame();
        let bytes = encode(&frame);
        prop_assert_eq!(bytes.len(), frame.encoded_len());
        let mut dec = proto_core::FrameDecoder::new();
        let FeedResult::Complete { item, remaining } = dec.feed(&bytes) else {
            panic!("a whole frame decodes");
        };
        prop_assert!(remaining.is_empty());
        let decoded = item.expect("a valid frame");
        prop_assert_eq!(decoded, frame);
        prop_assert_eq!(encode(&decoded), bytes);
        prop_assert!(dec.is_idle());
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn write_frame_writes_what_encode_writes(owned in owned_frame()) {
        let frame = owned.frame();
        let mut out = [0u8; MAX_FRAME];
        let mut w: &mut [u8] = &mut out;
        proto_core::write_frame(&mut w, &frame).expect("a valid frame is written");
        let written = MAX_FRAME - w.len();
        prop_assert_eq!(&out[..written], &encode(&frame)[..]);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn any_split_of_a_frame_stream_gives_the_same_frames(
        frames in vec(owned_frame(), 0..8),
        sizes in sizes(),
    ) {
        let stream: Vec<u8> = frames.iter().flat_map(|f| encode(&f.frame())).collect();
        let want: Vec<String> = frames
            .iter()
            .map(|f| format!("{:?}", Ok::<_, ()>(f.frame())))
            .collect();
        let whole = common::decode_frames(&stream, &[usize::MAX]);
        prop_assert_eq!(&whole.events, &want);
        prop_assert_eq!(&whole.reencoded, &stream);
        prop_assert!(whole.idle);
        let split = common::decode_frames(&stream, &sizes);
        prop_assert_eq!(split.events, want);
        prop_assert!(split.idle);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn frame_decoder_never_panics_and_ignores_chunking(bytes in noise(), sizes in sizes()) {
        let whole = common::decode_frames(&bytes, &[usize::MAX]);
        let split = common::decode_frames(&bytes, &sizes);
        prop_assert_eq!(split.events, whole.events);
        prop_assert_eq!(split.idle, whole.idle);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn any_split_of_a_line_stream_gives_the_same_lines(
        lines in vec(("[^\n]{0,40}|[a-z]{1020,1030}", prop_oneof!["\n", "\r\n"]), 0..8),
        last in "[^\n]{0,10}",
        sizes in sizes(),
    ) {
        let mut stream: String = lines.iter().map(|(l, end)| format!("{l}{end}")).collect();
        stream.push_str(&last);
        let want = expected_lines(stream.as_bytes());
        prop_assert_eq!(common::decode_lines(stream.as_bytes(), &[usize::MAX]), want.clone());
        prop_assert_eq!(common::decode_lines(stream.as_bytes(), &sizes), want);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn line_decoder_never_panics_and_follows_the_rules(bytes in noise(), sizes in sizes()) {
        prop_assert_eq!(common::decode_lines(&bytes, &sizes), expected_lines(&bytes));
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn sanitized_text_has_no_unsafe_char(text in any::<String>()) {
        let out = sanitize(&text).to_string();
        prop_assert!(!out.chars().any(is_unsafe), "{:?}", out);
        prop_assert!(out.len() <= 4 * text.len());
        if !text.chars().any(is_unsafe) {
            prop_assert_eq!(out, text);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn text_lines_are_one_safe_line(owned in owned_frame()) {
        let frame = owned.frame();
        let mut buf = [0u8; TEXT_LINE_MAX];
        let n = encode_text_line(&mut buf, &frame).expect("TEXT_LINE_MAX suffices");
        let line = std::str::from_utf8(&buf[..n]).expect("UTF-8");
        match frame {
            Frame::Broadcast { peer, .. } => {
                let prefix = format!("[{peer}] ");
                prop_assert!(line.starts_with(&prefix), "{:?}", line);
            }
            Frame::Notice(_) => prop_assert!(line.starts_with("*** "), "{:?}", line),
            _ => prop_assert_eq!(n, 0),
        }
        if n > 0 {
            let body = line.strip_suffix('\n').expect("ends with LF");
            prop_assert!(!body.chars().any(is_unsafe), "{:?}", line);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn peer_header_round_trips(peer in peer(), rest in vec(any::<u8>(), 0..4)) {
        let mut bytes = [0u8; proto_core::PEER_MAX_LEN];
        let n = peer.encode(&mut bytes).expect("PEER_MAX_LEN suffices");
        let mut wire = bytes[..n].to_vec();
        wire.extend_from_slice(&rest);
        let (decoded, left) = PeerAddr::decode(&wire).expect("decodes");
        prop_assert_eq!(decoded, peer);
        prop_assert_eq!(left, &rest[..]);
    }
}

/// Bytes rich in Telnet commands, LFs and CRs, with runs long enough to pass the
/// line limit and the subnegotiation limit.
fn telnetish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => vec(prop_oneof![Just(b'a'), Just(b'\n'), Just(b'\r'), 0xc0u8..0xff], 1..8),
        2 => (0xf0u8..=0xff, 0u8..40).prop_map(|(cmd, opt)| vec![0xff, cmd, opt]),
        1 => Just(vec![0xff, 0xff]),
        1 => Just(vec![0xff, 0xfa]),
        1 => Just(vec![0xff, 0xf0]),
        1 => (1usize..1100).prop_map(|n| vec![b'x'; n]),
    ];
    vec(token, 0..60).prop_map(|tokens| tokens.concat())
}

/// The text-mode input rules (PROTOCOL.md 7.2 and 7.3) applied byte by byte, with no
/// pauses: the events a `TextDecoder` must yield, written as `decode_text` writes them.
fn expected_text(stream: &[u8]) -> Vec<String> {
    #[derive(Clone, Copy)]
    enum T {
        Data,
        Iac,
        Opt(u8),
        Sub(usize),
        SubIac(usize),
    }
    let max_sub = proto_core::TELNET_SUBNEGOTIATION_MAX;
    let mut out = Vec::new();
    let (mut state, mut line, mut discarding) = (T::Data, Vec::new(), false);
    let end_line = |line: &mut Vec<u8>, discarding: &mut bool, out: &mut Vec<String>| {
        let taken = std::mem::take(line);
        if std::mem::take(discarding) {
            return;
        }
        let text = taken.strip_suffix(b"\r").unwrap_or(&taken);
        if text.is_empty() {
            return;
        }
        let event = if text.len() > MAX_MESSAGE {
            Err(LineError::TooLong)
        } else {
            std::str::from_utf8(text).map_err(|_| LineError::InvalidUtf8)
        };
        out.push(format!("{:?}", TextEvent::Message(event)));
    };
    for &b in stream {
        let mut data = None;
        state = match (state, b) {
            (T::Data, 0xff) => T::Iac,
            (T::Data, _) => {
                data = Some(b);
                T::Data
            }
            (T::Iac, 0xff) => {
                data = Some(0xff);
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
                let reply = match (verb, opt) {
                    (0xfd, 6) => Some(TelnetReply::Will(6)),
                    (0xfd, _) => Some(TelnetReply::Wont(opt)),
                    (0xfb, _) => Some(TelnetReply::Dont(opt)),
                    _ => None,
                };
                if let Some(reply) = reply {
                    out.push(format!("{:?}", TextEvent::Reply(reply)));
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
                out.push(format!(
                    "{:?}",
                    TextEvent::Message(Err(LineError::UnendedSubnegotiation))
                ));
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
                    out.push(format!("{:?}", TextEvent::Message(Err(LineError::TooLong))));
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

proptest! {
    #[test]
    #[cfg_attr(miri, ignore)]
    fn text_decoder_follows_the_rules_however_the_stream_is_cut(
        bytes in prop_oneof![telnetish(), noise()],
        sizes in sizes(),
    ) {
        let want = expected_text(&bytes);
        prop_assert_eq!(common::decode_text(&[&bytes], &[usize::MAX]), want.clone());
        prop_assert_eq!(common::decode_text(&[&bytes], &sizes), want);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn without_telnet_commands_text_decoding_is_line_decoding(
        bytes in noise().prop_map(|b| b.into_iter().filter(|&x| x != 0xff).collect::<Vec<u8>>()),
        sizes in sizes(),
    ) {
        let lines: Vec<String> = common::decode_lines(&bytes, &sizes)
            .into_iter()
            .map(|l| format!("Message({l})"))
            .collect();
        prop_assert_eq!(common::decode_text(&[&bytes], &sizes), lines);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn each_send_without_newline_is_one_message(
        sends in vec("[^\n\r]{1,300}", 1..8),
        sizes in sizes(),
    ) {
        let pieces: Vec<&[u8]> = sends.iter().map(|s| s.as_bytes()).collect();
        let want: Vec<String> = sends
            .iter()
            .map(|s| format!("{:?}", TextEvent::Message(Ok(s.as_str()))))
            .collect();
        prop_assert_eq!(common::decode_text(&pieces, &sizes), want);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn pauses_never_cut_a_newline_framed_line(
        lines in vec("[^\n\r]{1,200}", 1..6),
        cuts in vec(any::<prop::sample::Index>(), 0..10),
        telnet in any::<bool>(),
    ) {
        // A first line (or a Telnet command) makes the connection newline-framed;
        // the rest arrives in pieces with pauses anywhere, inside characters too.
        let mut stream: Vec<u8> = if telnet { b"\xff\xf1".to_vec() } else { b"first\n".to_vec() };
        let start = stream.len();
        for l in &lines {
            stream.extend(l.as_bytes());
            stream.push(b'\n');
        }
        let mut at: Vec<usize> = cuts.iter().map(|i| start + i.index(stream.len() - start)).collect();
        at.sort_unstable();
        at.dedup();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in at.into_iter().chain([stream.len()]) {
            pieces.push(&stream[from..cut]);
            from = cut;
        }
        prop_assert_eq!(
            common::decode_text(&pieces, &[usize::MAX]),
            common::decode_text(&[&stream], &[usize::MAX])
        );
    }
}
