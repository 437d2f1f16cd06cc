//! Connections to Redis: opened with a timeout, every request bounded by
//! `io_timeout`, so a dead or silent Redis is noticed instead of waited on for ever.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;

use redis::{Connection, RedisError};

use super::BackplaneConfig;
use crate::config::redact;

/// Why the server could not join its room at start.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackplaneError {
    /// The URL is not a Redis URL this build supports.
    Url(String, RedisError),
    /// Redis could not be reached, or refused the connection (for example a wrong
    /// password).
    Connect(String, RedisError),
    /// Redis answered, but opening the room failed.
    Open(String, RedisError),
    /// A backplane thread could not be started.
    Thread(io::Error),
    /// The room has a backplane already.
    AlreadySet,
}

impl fmt::Display for BackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackplaneError::Url(url, e) => write!(f, "backplane URL {url}: {e}"),
            BackplaneError::Connect(url, e) => write!(f, "cannot reach the backplane {url}: {e}"),
            BackplaneError::Open(url, e) => write!(f, "cannot open the room on {url}: {e}"),
            BackplaneError::Thread(e) => write!(f, "cannot start a backplane thread: {e}"),
            BackplaneError::AlreadySet => f.write_str("the room has a backplane already"),
        }
    }
}

impl std::error::Error for BackplaneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackplaneError::Url(_, e)
            | BackplaneError::Connect(_, e)
            | BackplaneError::Open(_, e) => Some(e),
            BackplaneError::Thread(e) => Some(e),
            BackplaneError::AlreadySet => None,
        }
    }
}

/// Opens a connection with `config.io_timeout` for connecting, reading and writing.
pub(crate) fn connect(config: &BackplaneConfig) -> Result<Connection, BackplaneError> {
    let url = redact(&config.url);
    let client = redis::Client::open(config.url.as_str())
        .map_err(|e| BackplaneError::Url(url.clone(), e))?;
    let con = client
        .get_connection_with_timeout(config.io_timeout)
        .map_err(|e| BackplaneError::Connect(url.clone(), e))?;
    con.set_read_timeout(Some(config.io_timeout))
        .and_then(|()| con.set_write_timeout(Some(config.io_timeout)))
        .map_err(|e| BackplaneError::Connect(url, e))?;
    Ok(con)
}

/// A fresh random token of 16 hex digits (the standard library's hasher keys are
/// random per process and per hasher), for server ids and epochs: unique, not secret.
pub(crate) fn random_token() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact("redis://:s3cret@10.0.0.1:6379"),
            "redis://:***@10.0.0.1:6379"
        );
        assert_eq!(
            redact("rediss://chat:s3cret@host:6380/2"),
            "rediss://chat:***@host:6380/2"
        );
        assert_eq!(redact("redis://u:p@ss@h/0"), "redis://u:***@h/0");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 16);
    }
}
