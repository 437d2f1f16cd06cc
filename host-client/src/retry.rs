//! The retry policy for connecting: which failures are worth another attempt, and
//! how many attempts there are in all. Pure logic; the caller supplies the attempt,
//! the clock and the reporting.

use std::io::ErrorKind;
use std::num::NonZeroU32;
use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The failure may be transient (the server is starting, the network is busy):
    /// try again after the delay, if attempts remain.
    Retry,
    /// Trying again cannot help (a bad address, not a chat server): give up now.
    Stop,
}

/// The verdict for a transport error of the given kind.
///
/// Refused, timed out, unreachable, reset and aborted connections are transient;
/// so is a local shortage of ports. Anything else (an invalid address, a permission
/// problem, an unknown error) stops, so the user sees it at once.
pub fn verdict_for(kind: ErrorKind) -> Verdict {
    match kind {
        ErrorKind::ConnectionRefused
        | ErrorKind::TimedOut
        | ErrorKind::WouldBlock
        | ErrorKind::HostUnreachable
        | ErrorKind::NetworkUnreachable
        | ErrorKind::NetworkDown
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::NotConnected
        | ErrorKind::BrokenPipe
        | ErrorKind::UnexpectedEof
        | ErrorKind::AddrNotAvailable
        | ErrorKind::Interrupted => Verdict::Retry,
        _ => Verdict::Stop,
    }
}

/// How many attempts to make, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: NonZeroU32,
    /// The pause after a failed attempt that will be retried.
    pub delay: Duration,
}

/// One failed attempt, as shown to the reporting callback.
#[derive(Debug)]
pub struct Failure<'e, E> {
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The number of attempts in all.
    pub of: u32,
    /// What went wrong.
    pub error: &'e E,
    /// The delay before the next attempt, or `None` if there will be none.
    pub retry_in: Option<Duration>,
}

/// Why [`retry`] ended without success.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryError<E> {
    /// Every attempt failed with a transient error; this is the last one.
    GaveUp {
        /// The attempts made.
        attempts: u32,
        /// The last attempt's error.
        last: E,
    },
    /// An attempt failed with an error that retrying cannot fix.
    Stopped {
        /// The attempt that failed, from 1.
        attempt: u32,
        /// Its error.
        error: E,
    },
}

/// Runs `attempt` until it succeeds, fails with an error `verdict` says to stop on,
/// or the policy's attempts are used up. Every failure is passed to `report` first,
/// then `sleep` is called with the delay if another attempt follows.
pub fn retry<T, E>(
    policy: RetryPolicy,
    mut attempt: impl FnMut(u32) -> Result<T, E>,
    verdict: impl Fn(&E) -> Verdict,
    mut report: impl FnMut(&Failure<'_, E>),
    mut sleep: impl FnMut(Duration),
) -> Result<T, RetryError<E>> {
    let of = policy.attempts.get();
    let mut n = 1;
    loop {
        let error = match attempt(n) {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let stop = verdict(&error) == Verdict::Stop;
        let retry_in = (!stop && n < of).then_some(policy.delay);
        report(&Failure {
            attempt: n,
            of,
            error: &error,
            retry_in,
        });
        match retry_in {
            Some(delay) => sleep(delay),
            None if stop => return Err(RetryError::Stopped { attempt: n, error }),
            None => {
                return Err(RetryError::GaveUp {
                    attempts: n,
                    last: error,
                })
            }
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts: NonZeroU32::new(attempts).unwrap(),
            delay: Duration::from_millis(100),
        }
    }

    /// Runs `retry` with attempts that fail with `kinds` in turn (then succeed), and
    /// returns the result, the attempts made, the failures reported and the sleeps.
    fn run(
        attempts: u32,
        kinds: &[ErrorKind],
    ) -> (
        Result<u32, RetryError<ErrorKind>>,
        u32,
        usize,
        Vec<Duration>,
    ) {
        let (mut made, mut reported, mut slept) = (0, 0, Vec::new());
        let result = retry(
            policy(attempts),
            |n| {
                made += 1;
                assert_eq!(n, made);
                kinds.get(n as usize - 1).map_or(Ok(n), |&k| Err(k))
            },
            |&k| verdict_for(k),
            |_| reported += 1,
            |d| slept.push(d),
        );
        (result, made, reported, slept)
    }

    #[test]
    fn transient_errors_retry_and_others_stop() {
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::TimedOut,
            ErrorKind::HostUnreachable,
            ErrorKind::NetworkUnreachable,
            ErrorKind::ConnectionReset,
        ] {
            assert_eq!(verdict_for(kind), Verdict::Retry, "{kind:?}");
        }
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::PermissionDenied,
            ErrorKind::InvalidData,
            ErrorKind::Other,
        ] {
            assert_eq!(verdict_for(kind), Verdict::Stop, "{kind:?}");
        }
    }

    #[test]
    fn refused_every_time_makes_exactly_the_attempts_allowed() {
        for attempts in [1, 3, 5] {
            let refused = vec![ErrorKind::ConnectionRefused; 10];
            let (result, made, reported, slept) = run(attempts, &refused);
            assert_eq!(
                result,
                Err(RetryError::GaveUp {
                    attempts,
                    last: ErrorKind::ConnectionRefused
                })
            );
            assert_eq!(made, attempts);
            assert_eq!(reported, attempts as usize);
            assert_eq!(
                slept,
                vec![Duration::from_millis(100); attempts as usize - 1]
            );
        }
    }

    #[test]
    fn success_after_failures_ends_the_retries() {
        let (result, made, reported, slept) = run(3, &[ErrorKind::ConnectionRefused; 2]);
        assert_eq!(result, Ok(3));
        assert_eq!((made, reported, slept.len()), (3, 2, 2));
        assert_eq!(run(3, &[]).0, Ok(1));
    }

    #[test]
    fn a_permanent_error_stops_at_once() {
        let kinds = [ErrorKind::ConnectionRefused, ErrorKind::InvalidInput];
        let (result, made, reported, slept) = run(5, &kinds);
        assert_eq!(
            result,
            Err(RetryError::Stopped {
                attempt: 2,
                error: ErrorKind::InvalidInput
            })
        );
        assert_eq!((made, reported, slept.len()), (2, 2, 1));
    }
}
