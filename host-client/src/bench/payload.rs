//! The bench's message text: who sent it, its number, and when, found again in
//! whatever form the server relays it (a binary broadcast's text, or a text line
//! with a peer prefix such as `[127.0.0.1:5000] ` or ncat's `<user3> `).

use std::fmt::Write as _;

/// Marks the start of a bench payload inside a received line.
const MARK: &str = "~bench~";

/// What a payload says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The run it belongs to, so messages of other runs or people are ignored.
    pub run: u32,
    /// The sending connection's index.
    pub sender: u32,
    /// The message's number for that sender, from 0.
    pub seq: u64,
    /// When it was queued, in microseconds since the bench started.
    pub sent_us: u64,
}

impl Stamp {
    /// The payload text, padded with `x` to `size` bytes when it is shorter.
    pub fn encode(&self, size: usize) -> String {
        let mut text = String::with_capacity(size.max(48));
        let _ = write!(
            text,
            "{MARK}{}:{}:{}:{}~",
            self.run, self.sender, self.seq, self.sent_us
        );
        while text.len() < size {
            text.push('x');
        }
        text
    }

    /// Finds and reads a payload anywhere in `line`.
    pub fn find(line: &str) -> Option<Self> {
        let at = line.find(MARK)? + MARK.len();
        let rest = &line[at..];
        let fields = &rest[..rest.find('~')?];
        let mut it = fields.split(':');
        let stamp = Stamp {
            run: it.next()?.parse().ok()?,
            sender: it.next()?.parse().ok()?,
            seq: it.next()?.parse().ok()?,
            sent_us: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_relayed_forms() {
        let s = Stamp {
            run: 7,
            sender: 3,
            seq: 99,
            sent_us: 123_456,
        };
        let text = s.encode(64);
        assert_eq!(text.len(), 64);
        assert_eq!(Stamp::find(&text), Some(s));
        assert_eq!(Stamp::find(&format!("[127.0.0.1:5000] {text}")), Some(s));
        assert_eq!(Stamp::find(&format!("<user3> {text}")), Some(s));
        assert!(s.encode(1).len() > 1, "never cut below the stamp");
    }

    #[test]
    fn other_text_is_not_a_stamp() {
        for line in [
            "hello",
            "~bench~1:2:3~",
            "~bench~1:2:3:x~",
            "~bench~1:2:3:4:5~",
        ] {
            assert_eq!(Stamp::find(line), None, "{line}");
        }
    }
}
