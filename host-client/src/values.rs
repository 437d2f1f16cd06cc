//! Parsers of command-line values, shared by the chat client's and the bench's
//! arguments, so that a value the client could never use is a usage error (exit
//! status 2) with a message that says what is allowed.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::connect::{parse_addr, AddrError};

/// A server address whose syntax is valid (names are resolved when connecting).
///
/// # Errors
/// What is wrong with it (see [`AddrError`]).
pub fn server_addr(text: &str) -> Result<String, AddrError> {
    parse_addr(text).map(|_| text.to_string())
}

/// A count of at least one.
///
/// # Errors
/// A message saying that a whole number from 1 up is expected.
pub fn at_least_one(text: &str) -> Result<NonZeroU32, String> {
    text.parse::<NonZeroU32>()
        .map_err(|_| format!("expected a whole number from 1 to {}", u32::MAX))
}

/// A duration longer than zero, such as `250ms` or `2s`.
///
/// # Errors
/// humantime's message for text that is not a duration; for zero, that it must be
/// longer.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero (e.g. 100ms, 5s)".to_string()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_their_refusals() {
        assert_eq!(at_least_one("3").unwrap().get(), 3);
        for bad in ["-1", "x", ""] {
            assert!(at_least_one(bad).unwrap_err().contains("from 1"), "{bad}");
        }
        assert_eq!(positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(positive_duration("soon").is_err());
        assert_eq!(server_addr("localhost"), Ok("localhost".to_string()));
        assert!(server_addr(":1").is_err());
    }
}
