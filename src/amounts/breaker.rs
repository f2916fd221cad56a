//! The caller's decisions that involve no IO: one endpoint's circuit breaker, which failures are
//! worth a retry, and the backoff between tries. Time and randomness arrive as values, so the
//! tests drive them exactly.

use std::time::{Duration, Instant};

use crate::core::rules::programmatic::FallbackReason;

/// Where a breaker is, as the `questline_amount_breaker_state` gauge shows it (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed = 0,
    /// Calls are refused (the fallback is paid) until the cool-down ends.
    Open = 1,
    /// The cool-down ended: one trial call is in flight, the others are refused.
    HalfOpen = 2,
}

/// One endpoint's circuit breaker. It opens after `threshold` consecutive failed calls, refuses
/// calls for `cool_down`, then lets one trial call through: its success closes the breaker,
/// its failure opens it for another cool-down. So an endpoint that is down costs one call per
/// cool-down, not a timeout and its retries on every occurrence.
///
/// A failure is a call that ended, after its retries, on a [`retryable`] reason (timeout,
/// unreachable, 5xx, 429): a slow or absent endpoint. An answer out of shape or a 4xx is an
/// endpoint that answers, however wrongly, and does not count.
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: State,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A trial call was let through at `since`; one whose result never came (its batch was
    /// dropped) is given up after a cool-down, and another trial goes.
    HalfOpen {
        since: Instant,
    },
}

impl Breaker {
    /// `threshold` 0: never opens.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            threshold,
            cool_down,
            state: State::Closed { failures: 0 },
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go now (at `now`); the result of a call let through is reported
    /// with [`Breaker::succeeded`] or [`Breaker::failed`].
    pub fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { since: now };
                true
            }
            State::HalfOpen { since } if now >= since + self.cool_down => {
                self.state = State::HalfOpen { since: now };
                true
            }
            State::Open { .. } | State::HalfOpen { .. } => false,
        }
    }

    /// A call that got an answer (in shape or not).
    pub fn succeeded(&mut self, now: Instant) {
        self.record(false, now)
    }

    /// A call that failed, as [`Breaker`] defines it.
    pub fn failed(&mut self, now: Instant) {
        self.record(true, now)
    }

    fn record(&mut self, failed: bool, now: Instant) {
        let open = State::Open {
            until: now + self.cool_down,
        };
        self.state = match (&self.state, failed) {
            (State::Closed { .. }, false) => State::Closed { failures: 0 },
            (State::Closed { failures }, true) => {
                let failures = failures.saturating_add(1);
                if self.threshold > 0 && failures >= self.threshold {
                    open
                } else {
                    State::Closed { failures }
                }
            }
            // A call admitted before the breaker opened: the trial decides, not it.
            (State::Open { .. }, _) => return,
            (State::HalfOpen { .. }, false) => State::Closed { failures: 0 },
            (State::HalfOpen { .. }, true) => open,
        };
    }
}

/// Whether a try that ended so is worth another: the endpoint was slow, unreachable or said
/// so itself (5xx, 429). An answer out of shape or another status would be the same again.
pub fn retryable(reason: &FallbackReason) -> bool {
    match reason {
        FallbackReason::Timeout | FallbackReason::Unreachable { .. } => true,
        FallbackReason::Status { status } => *status >= 500 || *status == 429,
        FallbackReason::BadAnswer { .. }
        | FallbackReason::CircuitOpen
        | FallbackReason::NotProgrammatic
        | FallbackReason::NotCalled => false,
    }
}

/// The wait before retry number `retry` (0 for the first retry): `min` doubled per retry, at
/// most `max`, of which the upper half is scaled by `jitter` (0 to 1), so callers that failed
/// together do not retry together. Always between half the step and the step.
pub fn backoff(retry: u32, min: Duration, max: Duration, jitter: f64) -> Duration {
    let step = min
        .checked_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let half = step / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A number from 0 to 1 for [`backoff`], from the standard library's per-instance random hash
/// keys: enough to spread retries, and no random number crate.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(30);

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::new(3, COOL);
        b.failed(t0);
        b.failed(t0);
        b.succeeded(t0); // the count starts again
        b.failed(t0);
        b.failed(t0);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.admit(t0));
        b.failed(t0);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.admit(t0 + COOL - Duration::from_millis(1)));
    }

    #[test]
    fn after_the_cool_down_one_trial_decides() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.failed(t0);
        let later = t0 + COOL;
        assert!(b.admit(later), "the trial call");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.admit(later), "only one trial at a time");
        b.failed(later);
        assert_eq!(b.state(), BreakerState::Open, "a failed trial opens again");
        assert!(!b.admit(later + COOL / 2));
        let again = later + COOL;
        assert!(b.admit(again));
        b.succeeded(again);
        assert_eq!(b.state(), BreakerState::Closed, "a good trial closes it");
        assert!(b.admit(again));
    }

    #[test]
    fn a_lost_trial_is_replaced_after_a_cool_down_and_stale_results_do_not_reopen() {
        let t0 = Instant::now();
        let mut b = Breaker::new(1, COOL);
        b.failed(t0);
        assert!(b.admit(t0 + COOL));
        assert!(!b.admit(t0 + COOL + COOL / 2));
        assert!(b.admit(t0 + COOL * 2), "the first trial never reported");
        // Results of calls admitted before it opened do not move an open breaker.
        let mut open = Breaker::new(1, COOL);
        open.failed(t0);
        open.succeeded(t0);
        assert_eq!(open.state(), BreakerState::Open);
    }

    #[test]
    fn threshold_zero_never_opens() {
        let t0 = Instant::now();
        let mut b = Breaker::new(0, COOL);
        for _ in 0..100 {
            assert!(b.admit(t0));
            b.failed(t0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn slow_absent_and_overloaded_endpoints_are_retried_and_wrong_answers_are_not() {
        assert!(retryable(&FallbackReason::Timeout));
        assert!(retryable(&FallbackReason::Unreachable {
            detail: "connection refused".into()
        }));
        assert!(retryable(&FallbackReason::Status { status: 500 }));
        assert!(retryable(&FallbackReason::Status { status: 503 }));
        assert!(retryable(&FallbackReason::Status { status: 429 }));
        assert!(!retryable(&FallbackReason::Status { status: 404 }));
        assert!(!retryable(&FallbackReason::Status { status: 302 }));
        assert!(!retryable(&FallbackReason::BadAnswer {
            detail: "no points".into()
        }));
        assert!(!retryable(&FallbackReason::CircuitOpen));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1_000);
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(backoff(0, min, max, 0.0)), 50);
        assert_eq!(ms(backoff(0, min, max, 1.0)), 100);
        assert_eq!(ms(backoff(1, min, max, 0.0)), 100);
        assert_eq!(ms(backoff(2, min, max, 1.0)), 400);
        assert_eq!(ms(backoff(3, min, max, 1.0)), 800);
        assert_eq!(ms(backoff(4, min, max, 1.0)), 1_000, "capped");
        assert_eq!(ms(backoff(40, min, max, 0.5)), 750, "no overflow far out");
        assert_eq!(ms(backoff(1, min, max, 7.0)), 200, "jitter clamped");
        for _ in 0..1000 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
        let spread: std::collections::BTreeSet<u128> = (0..50)
            .map(|_| ms(backoff(3, min, max, jitter())))
            .collect();
        assert!(spread.len() > 5, "jitter varies: {spread:?}");
    }
}
