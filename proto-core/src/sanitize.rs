//! Rendering untrusted text so that it cannot drive or disguise a terminal.

use core::fmt;

/// Text wrapped for safe display; see [`sanitize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sanitized<'a>(&'a str);

/// Wraps `text` so that displaying it shows every dangerous character as a visible
/// escape instead of sending it to the terminal.
///
/// Escaped: the C0 controls except TAB (so also ESC, CR and LF: no message can forge
/// a second line), DEL, the C1 controls U+0080 to U+009F, and the Unicode
/// bidirectional controls (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to
/// U+2069) that can make text read differently from how it is stored. ASCII controls
/// print as `\x1b`, the others as `\u{202e}`. Everything else is shown as it is.
///
/// The escaped form is at most four times as long as the text.
pub fn sanitize(text: &str) -> Sanitized<'_> {
    Sanitized(text)
}

/// True for the characters [`sanitize`] escapes.
pub(crate) fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\0'..='\x08' | '\x0a'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}'
        | '\u{61c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl fmt::Display for Sanitized<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Runs of safe characters are written whole. Splitting on char boundaries
        // with `split_at_checked`, not by indexing, keeps str-slicing panic paths (and
        // the Unicode tables their messages need) out of firmware builds.
        let mut rest = self.0;
        let mut chars = rest.char_indices();
        while let Some((at, c)) = chars.find(|&(_, c)| is_unsafe(c)) {
            let Some((safe, tail)) = rest.split_at_checked(at) else {
                return Err(fmt::Error);
            };
            f.write_str(safe)?;
            if c.is_ascii() {
                write!(f, "\\x{:02x}", c as u32)?;
            } else {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            }
            let Some((_, after)) = tail.split_at_checked(c.len_utf8()) else {
                return Err(fmt::Error);
            };
            rest = after;
            chars = rest.char_indices();
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn escapes_controls_and_bidi() {
        assert_eq!(sanitize("plain\ttext é ✓").to_string(), "plain\ttext é ✓");
        assert_eq!(sanitize("\x1b[2Jboom").to_string(), "\\x1b[2Jboom");
        assert_eq!(
            sanitize("a\r\nb\0\x7f").to_string(),
            "a\\x0d\\x0ab\\x00\\x7f"
        );
        assert_eq!(sanitize("\u{85}\u{9b}").to_string(), "\\u{85}\\u{9b}");
        assert_eq!(
            sanitize("x\u{202e}y\u{2066}z").to_string(),
            "x\\u{202e}y\\u{2066}z"
        );
    }

    #[test]
    fn output_never_contains_unsafe_chars_and_is_bounded() {
        for c in [
            '\0', '\n', '\x1b', '\x7f', '\u{80}', '\u{9f}', '\u{202a}', '\u{2069}',
        ] {
            let text: std::string::String = std::iter::repeat_n(c, 10).collect();
            let out = sanitize(&text).to_string();
            assert!(!out.chars().any(is_unsafe), "{out:?}");
            assert!(out.len() <= 4 * text.len());
        }
    }
}
