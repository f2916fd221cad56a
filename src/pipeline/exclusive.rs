//! The embedded store's guard: a worker whose state lives on its own disk must own every
//! partition of the group.
//!
//! Why: the embedded store keeps each user's state in a file of the machine the worker runs
//! on. A second worker started with the same group id takes some partitions over from an
//! empty store of its own: those users start again from zero, and when the partitions come
//! back the first worker's copy is stale. Kafka Streams avoids this with changelog topics;
//! questline's answer for more than one worker is a shared store (ScyllaDB), so a group that
//! shares its partitions between members on the embedded store is refused.
//!
//! It is decided from the assignment, which is what the broker says about the group: a member
//! that owns fewer partitions than the topics have shares them with another. A restarted
//! worker can briefly share its group with its former self (until the broker drops the old
//! session), so sharing is tolerated for a grace period before the worker stops with the
//! error. The decision is pure ([`Exclusive::observe`]), given the time.

use std::time::{Duration, Instant};

/// The guard's state: how many partitions the topics have, and since when this member has
/// owned fewer.
#[derive(Debug, Clone)]
pub struct Exclusive {
    partitions: usize,
    grace: Duration,
    /// Since when the assignment has been short; `None` while it is whole (or not yet made).
    short_since: Option<Instant>,
}

/// What the guard makes of the assignment at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every partition is this member's (or none is assigned yet).
    Whole,
    /// Fewer partitions than the topics have, for less than the grace period; `new` on the
    /// first observation of a short assignment (to say it once).
    Short { owned: usize, new: bool },
    /// Fewer partitions for longer than the grace period: the group is shared.
    Shared { owned: usize },
}

impl Exclusive {
    /// A guard for topics of `partitions` partitions, tolerating a shared group for `grace`.
    pub fn new(partitions: usize, grace: Duration) -> Self {
        Exclusive {
            partitions,
            grace,
            short_since: None,
        }
    }

    /// Judges the assignment at `now`: `owned` partitions, or `None` before the first one.
    pub fn observe(&mut self, owned: Option<usize>, now: Instant) -> Verdict {
        let Some(owned) = owned else {
            return Verdict::Whole;
        };
        if owned >= self.partitions {
            self.short_since = None;
            return Verdict::Whole;
        }
        let new = self.short_since.is_none();
        let since = *self.short_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.grace {
            Verdict::Shared { owned }
        } else {
            Verdict::Short { owned, new }
        }
    }

    /// How long a shared group is tolerated.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// How many partitions the topics have.
    pub fn partitions(&self) -> usize {
        self.partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn a_whole_assignment_or_none_yet_is_never_refused() {
        let mut guard = Exclusive::new(4, GRACE);
        let t0 = Instant::now();
        assert_eq!(guard.observe(None, t0), Verdict::Whole);
        assert_eq!(guard.observe(None, t0 + 10 * GRACE), Verdict::Whole);
        assert_eq!(guard.observe(Some(4), t0 + 10 * GRACE), Verdict::Whole);
    }

    #[test]
    fn a_short_assignment_is_refused_only_after_the_grace() {
        let mut guard = Exclusive::new(4, GRACE);
        let t0 = Instant::now();
        assert_eq!(
            guard.observe(Some(2), t0),
            Verdict::Short {
                owned: 2,
                new: true
            }
        );
        assert_eq!(
            guard.observe(Some(2), t0 + GRACE - Duration::from_millis(1)),
            Verdict::Short {
                owned: 2,
                new: false
            }
        );
        // An empty assignment (more members than partitions) is short too.
        assert_eq!(
            guard.observe(Some(0), t0 + GRACE),
            Verdict::Shared { owned: 0 }
        );
    }

    #[test]
    fn the_grace_starts_again_once_the_assignment_was_whole() {
        let mut guard = Exclusive::new(4, GRACE);
        let t0 = Instant::now();
        guard.observe(Some(1), t0);
        // The former session expired: everything is this member's again.
        assert_eq!(guard.observe(Some(4), t0 + GRACE / 2), Verdict::Whole);
        assert_eq!(
            guard.observe(Some(3), t0 + GRACE),
            Verdict::Short {
                owned: 3,
                new: true
            }
        );
        assert_eq!(
            guard.observe(Some(3), t0 + 2 * GRACE),
            Verdict::Shared { owned: 3 }
        );
    }

    #[test]
    fn a_zero_grace_refuses_the_first_short_assignment() {
        let mut guard = Exclusive::new(2, Duration::ZERO);
        assert_eq!(
            guard.observe(Some(1), Instant::now()),
            Verdict::Shared { owned: 1 }
        );
    }
}
