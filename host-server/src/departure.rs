//! Why a client left the room: what its read loop ended with, told to the room and
//! the log, and how its outbox is to end.

use std::io;

use proto_core::ErrorCode;

use crate::outbox::End;
use crate::web::WsError;

/// Why a client left the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Departure {
    /// The peer closed the connection.
    Closed,
    /// The peer closed in the middle of a frame; the partial frame was dropped.
    ClosedMidFrame,
    /// A binary client said Bye.
    Bye,
    /// The connection failed (reset, or found dead by TCP keepalive).
    Failed(io::ErrorKind),
    /// A binary client answered nothing, not even a ping, for the dead-peer timeout.
    TimedOut,
    /// A text client's first line was an HTTP request.
    Refused,
    /// A WebSocket client broke the framing; it was sent a close frame (1002).
    BadFrames(WsError),
    /// The server is shutting down.
    ServerClosing,
    /// The server began shutting down before the client joined; what it was sent
    /// (the shutdown notice) is still delivered.
    TooLate,
    /// The reader thread panicked.
    Panicked,
}

impl Departure {
    /// The reason told to the room and the log, given how the outbox ended (an
    /// eviction or a failed write explains a read that ended at the same time) and
    /// whether the server is shutting down (which explains every leave then).
    pub(crate) fn reason(self, ended: Option<End>, closing: bool) -> Option<String> {
        match (ended, self) {
            (Some(End::Evict(code)), _) => Some(format!("dropped: {code}")),
            (Some(End::Failed(kind)), _) => Some(format!("connection failed: {kind}")),
            (Some(End::Cut), _) | (_, Departure::ServerClosing | Departure::TooLate) => {
                Some("server closing".to_string())
            }
            _ if closing => Some("server closing".to_string()),
            (_, Departure::Closed | Departure::Bye) => None,
            (_, Departure::ClosedMidFrame) => Some("closed in the middle of a frame".into()),
            (_, Departure::Failed(kind)) => Some(format!("connection failed: {kind}")),
            (_, Departure::TimedOut) => Some(format!("dropped: {}", ErrorCode::TIMEOUT)),
            (_, Departure::Refused) => Some("refused: HTTP request".into()),
            (_, Departure::BadFrames(e)) => Some(format!("dropped: WebSocket protocol error: {e}")),
            (_, Departure::Panicked) => Some("internal error".into()),
        }
    }

    /// How the outbox is to end: send what is queued after a clean ending, cut at
    /// once after a failure.
    pub(crate) fn end(self) -> End {
        match self {
            Departure::Closed
            | Departure::ClosedMidFrame
            | Departure::Bye
            | Departure::Refused
            | Departure::BadFrames(_)
            | Departure::TooLate => End::Flush,
            Departure::TimedOut => End::Evict(ErrorCode::TIMEOUT),
            Departure::Failed(_) | Departure::ServerClosing | Departure::Panicked => End::Cut,
        }
    }

    /// True when the client is being dropped or failed, which the log shows as a
    /// warning; a client that left on its own or was closed by the server is info.
    pub(crate) fn is_trouble(reason: &str) -> bool {
        reason.starts_with("dropped")
            || reason.starts_with("connection failed")
            || reason.starts_with("internal")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn during_shutdown_every_leave_says_server_closing() {
        for departure in [Departure::Closed, Departure::Bye, Departure::ServerClosing] {
            for ended in [None, Some(End::Flush), Some(End::Cut)] {
                assert_eq!(
                    departure.reason(ended, true).as_deref(),
                    Some("server closing"),
                    "{departure:?} {ended:?}"
                );
            }
        }
        assert_eq!(Departure::Closed.reason(Some(End::Flush), false), None);
    }

    #[test]
    fn an_eviction_explains_the_leave_even_during_shutdown() {
        let evicted = Some(End::Evict(ErrorCode::SLOW_CONSUMER));
        let why = Departure::Closed.reason(evicted, true).unwrap();
        assert_eq!(why, format!("dropped: {}", ErrorCode::SLOW_CONSUMER));
        assert!(Departure::is_trouble(&why));
        assert!(!Departure::is_trouble("server closing"));
    }
}
