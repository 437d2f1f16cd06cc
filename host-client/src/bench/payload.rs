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
    ///
    /// Runs once per delivery, so it is written for speed: the payload usually
    /// starts the text (binary mode), and otherwise the mark is looked for at each
    /// `~` rather than with a general substring search.
    pub fn find(line: &str) -> Option<Self> {
        let bytes = line.as_bytes();
        let mut from = 0;
        loop {
            let at = from + bytes[from..].iter().position(|&b| b == b'~')?;
            if bytes[at..].starts_with(MARK.as_bytes()) {
                return Self::parse(&bytes[at + MARK.len()..]);
            }
            from = at + 1;
        }
    }

    /// Reads `run:sender:seq:sent_us~`, the part after the mark.
    fn parse(bytes: &[u8]) -> Option<Self> {
        let mut fields = [0u64; 4];
        let mut at = 0;
        for (i, field) in fields.iter_mut().enumerate() {
            let end = if i == 3 { b'~' } else { b':' };
            let start = at;
            while let Some(&b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
                *field = field.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                at += 1;
            }
            if at == start || bytes.get(at) != Some(&end) {
                return None;
            }
            at += 1;
        }
        Some(Stamp {
            run: u32::try_from(fields[0]).ok()?,
            sender: u32::try_from(fields[1]).ok()?,
            seq: fields[2],
            sent_us: fields[3],
        })
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
        assert_eq!(Stamp::find(&format!("~x~bench {text}")), Some(s));
        assert!(s.encode(1).len() > 1, "never cut below the stamp");
    }

    #[test]
    fn other_text_is_not_a_stamp() {
        for line in [
            "hello",
            "~bench~1:2:3~",
            "~bench~1:2:3:x~",
            "~bench~1:2:3:4:5~",
            "~bench~1::3:4~",
            "~bench~99999999999:2:3:4~",
            "~bench~1:2:3:99999999999999999999999~",
            "~bench~1:2:3:4",
        ] {
            assert_eq!(Stamp::find(line), None, "{line}");
        }
    }
}
