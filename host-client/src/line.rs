//! What to do with a line the user typed.

use proto_core::MAX_MESSAGE;

/// The command that ends the session, alone on its line.
pub const EXIT_COMMAND: &str = "exit";

/// What a typed line asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineAction<'a> {
    /// Send this text as a chat message.
    Send(&'a str),
    /// Nothing to send: the line is empty or only whitespace.
    Skip,
    /// The user typed `exit`: leave the room.
    Exit,
    /// The line is longer than [`MAX_MESSAGE`] bytes; it is refused, not cut.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
}

/// Classifies one line of input, given without its line ending.
///
/// `exit` may have whitespace around it. Any other text is sent exactly as typed,
/// provided it fits in [`MAX_MESSAGE`] bytes.
pub fn classify(line: &str) -> LineAction<'_> {
    let trimmed = line.trim();
    if trimmed == EXIT_COMMAND {
        LineAction::Exit
    } else if trimmed.is_empty() {
        LineAction::Skip
    } else if line.len() > MAX_MESSAGE {
        LineAction::TooLong { len: line.len() }
    } else {
        LineAction::Send(line)
    }
}

/// The message shown when a line is refused for its length.
pub fn too_long_message(len: usize) -> String {
    format!("line not sent: it is {len} bytes long, over the limit of {MAX_MESSAGE} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_limit_is_inclusive() {
        let at = |n: usize| "x".repeat(n);
        let (a, b, c) = (at(1023), at(1024), at(1025));
        assert_eq!(classify(&a), LineAction::Send(&a));
        assert_eq!(classify(&b), LineAction::Send(&b));
        assert_eq!(classify(&c), LineAction::TooLong { len: 1025 });
        // Bytes count, not characters: 342 three-byte characters are 1026 bytes.
        let wide = "€".repeat(342);
        assert_eq!(classify(&wide), LineAction::TooLong { len: 1026 });
    }

    #[test]
    fn exit_alone_on_its_line() {
        for line in ["exit", "  exit", "exit \t", "\texit\r"] {
            assert_eq!(classify(line), LineAction::Exit, "{line:?}");
        }
        for line in ["exit now", "Exit", "EXIT", "exits", "e xit"] {
            assert_eq!(classify(line), LineAction::Send(line), "{line:?}");
        }
    }

    #[test]
    fn blank_lines_are_skipped_and_text_is_kept_as_typed() {
        for line in ["", " ", "\t  "] {
            assert_eq!(classify(line), LineAction::Skip, "{line:?}");
        }
        assert_eq!(classify("  hi  "), LineAction::Send("  hi  "));
    }

    #[test]
    fn refusal_names_the_limit() {
        let msg = too_long_message(1025);
        assert!(msg.contains("1025") && msg.contains("1024"), "{msg}");
    }
}
