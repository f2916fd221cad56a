//! Log lines that repeat during an outage, kept to one per kind per interval.
//!
//! While the brokers are unreachable the same failure comes back several times a second
//! (each failed poll, each client's `AllBrokersDown`); logging each one floods the logs
//! and hides everything else. The first of a kind is logged; after that, at most one per
//! interval, saying how many were left out in between.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of repeated line is logged again, by default.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// The most kinds remembered: kinds are error texts, which may carry varying details, and the
/// memory of a long-running process must not grow with them. Past it everything is forgotten
/// (the next of each kind is logged again: a few more lines, never fewer).
const MAX_KINDS: usize = 256;

/// Which repeated lines to log: per kind, when one was last logged and how many were left out.
#[derive(Debug)]
pub struct Repeats {
    every: Duration,
    seen: Mutex<BTreeMap<String, (Instant, u64)>>,
}

impl Default for Repeats {
    fn default() -> Self {
        Repeats {
            every: REPEAT_EVERY,
            seen: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Repeats {
    /// `Some(lines of this kind left out since the last one logged)` when this one is to be
    /// logged: the first of its kind, or the first after the interval.
    pub fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(kind) {
            Some((logged, left_out)) if now.saturating_duration_since(*logged) < self.every => {
                *left_out += 1;
                None
            }
            Some((logged, left_out)) => {
                *logged = now;
                Some(std::mem::take(left_out))
            }
            None => {
                if seen.len() >= MAX_KINDS {
                    seen.clear();
                }
                seen.insert(kind.to_string(), (now, 0));
                Some(0)
            }
        }
    }

    /// Forgets every kind: the condition ended, and the next occurrence is news again.
    /// Cheap when nothing was seen (called after every successful poll).
    pub fn clear(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.is_empty() {
            seen.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_remembered_are_bounded() {
        let repeats = Repeats::default();
        let now = Instant::now();
        for i in 0..(MAX_KINDS * 3) {
            repeats.admit(&format!("error {i}"), now);
        }
        assert!(repeats.seen.lock().unwrap().len() <= MAX_KINDS);
    }

    #[test]
    fn each_kind_is_logged_first_then_once_a_minute_with_the_count_left_out() {
        let repeats = Repeats::default();
        let t0 = Instant::now();
        let at = |i: u64| t0 + Duration::from_millis(i * 500);
        let logged: Vec<(u64, u64)> = (0..300)
            .filter_map(|i| Some((i, repeats.admit("AllBrokersDown", at(i))?)))
            .collect();
        // Every half second for 150 s: at 0 s, 60 s (119 left out) and 120 s (119 again).
        assert_eq!(logged, vec![(0, 0), (120, 119), (240, 119)]);
        // Another kind is not held back by the first.
        assert_eq!(repeats.admit("Resolve", at(1)), Some(0));
        // Once the condition ended, its next occurrence is news again.
        repeats.clear();
        assert_eq!(repeats.admit("AllBrokersDown", at(241)), Some(0));
    }
}
