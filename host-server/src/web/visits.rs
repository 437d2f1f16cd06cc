//! Addresses that loaded the chat page lately, so a silent connection from one of
//! them can be waited on for longer before it is taken as a text client.
//!
//! A browser opens spare connections to a site it expects to use (Chromium's
//! preconnects) and may leave them silent until it needs them or closes them after
//! some seconds. Taken as text clients after the usual sniff timeout, they would
//! join the room, be announced to everyone, and be sent a welcome that the browser
//! would later read as a broken HTTP answer. From an address that has just loaded
//! the page, a silent connection is most likely such a spare, so it is given the
//! longer `web_spare_wait` to speak first; an `nc` from the same address that types
//! something gets in at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys::lock;

/// How long after loading the page an address counts as a browser's.
const RECENT: Duration = Duration::from_secs(120);

/// Most addresses remembered: past this, the oldest are not replaced and new
/// visitors get the ordinary sniff timeout (memory stays bounded whoever asks).
const MAX_REMEMBERED: usize = 4096;

/// When each address last loaded the page.
#[derive(Debug, Default)]
pub(crate) struct Visits {
    last: Mutex<HashMap<IpAddr, Instant>>,
}

impl Visits {
    /// Notes that `ip` loaded the page at `now`.
    pub(crate) fn note(&self, ip: IpAddr, now: Instant) {
        let mut last = lock(&self.last);
        if last.len() >= MAX_REMEMBERED && !last.contains_key(&ip) {
            last.retain(|_, at| now.saturating_duration_since(*at) < RECENT);
            if last.len() >= MAX_REMEMBERED {
                return;
            }
        }
        last.insert(ip, now);
    }

    /// True if `ip` loaded the page within the last two minutes of `now`.
    pub(crate) fn lately(&self, ip: IpAddr, now: Instant) -> bool {
        lock(&self.last)
            .get(&ip)
            .is_some_and(|at| now.saturating_duration_since(*at) < RECENT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_counts_for_two_minutes_after_its_visit() {
        let visits = Visits::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        let t0 = Instant::now();
        visits.note(a, t0);
        assert!(visits.lately(a, t0 + Duration::from_secs(119)));
        assert!(!visits.lately(a, t0 + RECENT));
        assert!(!visits.lately(b, t0));
    }

    #[test]
    fn the_memory_is_bounded_and_old_visits_make_room() {
        let visits = Visits::default();
        let t0 = Instant::now();
        let ip = |i: usize| IpAddr::from([10, 0, (i >> 8) as u8, i as u8]);
        for i in 0..MAX_REMEMBERED {
            visits.note(ip(i), t0);
        }
        let extra: IpAddr = "192.0.2.9".parse().unwrap();
        visits.note(extra, t0);
        assert!(!visits.lately(extra, t0), "remembered past the bound");
        let later = t0 + RECENT;
        visits.note(extra, later);
        assert!(visits.lately(extra, later));
        assert_eq!(lock(&visits.last).len(), 1);
    }
}
