//! Binary clients: preamble, frames, and every kind of bad frame answered without
//! losing the connection.

use proto_core::{ErrorCode, Frame, NoticeKind, PREAMBLE};
use std::io::Write;
use std::net::TcpStream;

use crate::util::{config, is_notice, start, Bin, Got, READ_TIMEOUT};

fn error_code(got: &Got) -> Option<ErrorCode> {
    match got {
        Got::Notice {
            kind: NoticeKind::Error(code),
            ..
        } => Some(*code),
        _ => None,
    }
}

#[test]
fn bad_frames_get_error_notices_and_the_connection_stays_open() {
    let server = start(config());
    let mut a = server.binary();
    let mut b = server.binary();
    a.sync();
    let too_long = "z".repeat(proto_core::MAX_MESSAGE + 1);
    let mut raw = vec![proto_core::FrameKind::Chat as u8];
    raw.extend((too_long.len() as u16).to_be_bytes());
    raw.extend(too_long.as_bytes());
    raw.extend([0x7f, 0, 2, 1, 2]); // unknown kind
    raw.extend([proto_core::FrameKind::Chat as u8, 0, 2, 0xc3, 0x28]); // bad UTF-8
    raw.extend([proto_core::FrameKind::Ping as u8, 0, 1, 9]); // ping of the wrong size
    (&b.stream).write_all(&raw).unwrap();
    b.send(&Frame::Broadcast {
        seq: 9,
        peer: b.addr,
        text: "forged",
    });
    b.chat("after all that");
    let got = b.sync();
    let codes: Vec<_> = got.iter().map(error_code).collect();
    assert_eq!(
        codes[..5],
        [
            Some(ErrorCode::TOO_LONG),
            Some(ErrorCode::UNKNOWN_FRAME),
            Some(ErrorCode::INVALID_UTF8),
            Some(ErrorCode::MALFORMED),
            Some(ErrorCode::UNKNOWN_FRAME),
        ]
    );
    assert!(matches!(got[5..], [Got::Ack(_)]), "{got:?}");
    let got = a.sync();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(&got[0], Got::Broadcast { text, .. } if text == "after all that"));
}

#[test]
fn bye_closes_the_connection_and_the_room_hears_of_it() {
    let server = start(config());
    let mut a = server.binary();
    let mut b = server.binary();
    a.sync();
    b.send(&Frame::Bye);
    assert_eq!(b.until_closed(), []);
    let left = a.got();
    assert!(is_notice(&left, NoticeKind::Leave, b.addr), "{left:?}");
}

#[test]
fn an_unsupported_version_gets_the_preamble_and_an_error() {
    let server = start(config());
    let stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut hello = PREAMBLE;
    hello[4] = 99;
    (&stream).write_all(&hello).unwrap();
    let mut r = embedded_io_adapters::std::FromStd::new(stream);
    proto_core::read_preamble(&mut r).unwrap();
    let mut reader: proto_core::FrameReader<_> = proto_core::FrameReader::new(r);
    let got = Got::from(reader.next_frame().unwrap());
    assert_eq!(error_code(&got), Some(ErrorCode::UNSUPPORTED_VERSION));
    assert!(reader.next_frame().is_err());
}

#[test]
fn a_silent_binary_client_is_pinged_then_dropped() {
    let mut cfg = config();
    cfg.dead_peer_timeout = std::time::Duration::from_secs(2);
    let server = start(cfg);
    let mut watcher = server.binary();
    let mut mute = Bin::connect(server.addr);
    mute.welcome();
    watcher.sync();
    let mute_addr = mute.addr;
    // The mute client reads but never answers; the watcher answers its pings.
    let mute = std::thread::spawn(move || mute.until_closed());
    let left = watcher.got();
    assert!(is_notice(&left, NoticeKind::Leave, mute_addr), "{left:?}");
    let got = mute.join().unwrap();
    assert!(matches!(got.first(), Some(Got::Ping(_))), "{got:?}");
    assert_eq!(got.last().and_then(error_code), Some(ErrorCode::TIMEOUT));
}
