//! How received frames are shown, and the check on broadcast sequence numbers.

use std::fmt;

use proto_core::{Frame, TextLine};

/// The line printed on standard output for a frame, or `None` for frames that print
/// nothing (pings, pongs, byes).
///
/// A broadcast prints as `[PEER] TEXT`, a notice as `*** TEXT`, exactly as the server
/// writes them to text clients ([`TextLine`]); the text is passed through
/// `sanitize` so that no control character reaches the terminal.
pub fn render(frame: &Frame<'_>) -> Option<String> {
    TextLine::of(frame).map(|line| line.to_string())
}

/// A jump in the broadcast sequence: some broadcasts were lost or reordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqGap {
    /// The sequence number that should have come.
    pub expected: u64,
    /// The one that came.
    pub got: u64,
}

impl fmt::Display for SeqGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "broadcast sequence gap: expected {}, got {}",
            self.expected, self.got
        )
    }
}

impl std::error::Error for SeqGap {}

/// Checks that sequence numbers, of the broadcasts received and of the acks of the
/// client's own messages together, rise by exactly one while connected.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    next: Option<u64>,
}

impl SeqTracker {
    /// A tracker that accepts any first sequence number.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `seq`. After a gap the tracker follows the new numbering, so one
    /// gap is reported once.
    ///
    /// # Errors
    /// [`SeqGap`] if `seq` is not the successor of the previous one.
    pub fn check(&mut self, seq: u64) -> Result<(), SeqGap> {
        let expected = self.next.replace(seq.wrapping_add(1));
        match expected {
            Some(expected) if expected != seq => Err(SeqGap { expected, got: seq }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto_core::{ErrorCode, Notice, NoticeKind, PeerAddr};

    const PEER: PeerAddr = PeerAddr::V4 {
        ip: [127, 0, 0, 1],
        port: 4242,
    };

    fn notice(kind: NoticeKind, text: &str) -> Frame<'_> {
        Frame::Notice(Notice {
            kind,
            peer: Some(PEER),
            text,
        })
    }

    #[test]
    fn broadcasts_and_notices() {
        let b = Frame::Broadcast {
            seq: 1,
            peer: PEER,
            text: "hello",
        };
        assert_eq!(render(&b).as_deref(), Some("[127.0.0.1:4242] hello"));
        let v6 = Frame::Broadcast {
            seq: 1,
            peer: PeerAddr::V6 {
                ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                port: 7,
            },
            text: "hi",
        };
        assert_eq!(render(&v6).as_deref(), Some("[[::1]:7] hi"));
        let join = notice(NoticeKind::Join, "127.0.0.1:4242 joined");
        assert_eq!(render(&join).as_deref(), Some("*** 127.0.0.1:4242 joined"));
        let err = notice(NoticeKind::Error(ErrorCode::TOO_LONG), "too long");
        assert_eq!(render(&err).as_deref(), Some("*** too long"));
        for quiet in [
            Frame::Ping { nonce: 1 },
            Frame::Pong { nonce: 1 },
            Frame::Bye,
        ] {
            assert_eq!(render(&quiet), None);
        }
    }

    #[test]
    fn control_characters_are_escaped() {
        let b = Frame::Broadcast {
            seq: 1,
            peer: PEER,
            text: "a\x1b[2Jb\nc",
        };
        assert_eq!(
            render(&b).as_deref(),
            Some("[127.0.0.1:4242] a\\x1b[2Jb\\x0ac")
        );
        let n = notice(NoticeKind::Leave, "bye\r");
        assert_eq!(render(&n).as_deref(), Some("*** bye\\x0d"));
    }

    #[test]
    fn sequence_gaps_are_reported_once() {
        let mut t = SeqTracker::new();
        assert_eq!(t.check(41), Ok(()));
        assert_eq!(t.check(42), Ok(()));
        assert_eq!(
            t.check(44),
            Err(SeqGap {
                expected: 43,
                got: 44
            })
        );
        assert_eq!(t.check(45), Ok(()));
        assert_eq!(
            t.check(45),
            Err(SeqGap {
                expected: 46,
                got: 45
            })
        );
    }
}
