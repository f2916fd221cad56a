//! librdkafka's client errors, logged without flooding.
//!
//! While the brokers are unreachable every client reports `AllBrokersDown` again at each
//! failed reconnection (several times a second across the worker's clients) and rdkafka's
//! default logs each one. Here the first error of a kind is logged, then that kind at most
//! once every [`REPEAT_EVERY`], saying how many were left out; the outage itself is reported
//! by the broker watch (`kafka::BrokerWatch`). librdkafka's own log lines (a failed connection
//! with its reason) are already suppressed by librdkafka when identical.

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one kind of error is logged again while it repeats.
pub const REPEAT_EVERY: Duration = Duration::from_secs(60);

/// A client context that logs librdkafka's errors at most once per kind per [`REPEAT_EVERY`].
#[derive(Default)]
pub struct LimitedErrors {
    /// Per kind (the error without librdkafka's varying reason): when it was last logged and
    /// how many of it were left out since.
    seen: Mutex<BTreeMap<String, (Instant, u64)>>,
}

impl LimitedErrors {
    /// Logs `error` unless one of its kind was logged less than [`REPEAT_EVERY`] ago.
    pub fn report(&self, error: &KafkaError, reason: &str) {
        if let Some(left_out) = self.admit(&error.to_string(), Instant::now()) {
            tracing::warn!(%error, reason, left_out, "kafka client error");
        }
    }

    /// `Some(errors of this kind left out since it was last logged)` when this one is logged.
    fn admit(&self, kind: &str, now: Instant) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get_mut(kind) {
            Some((logged, left_out)) if now.saturating_duration_since(*logged) < REPEAT_EVERY => {
                *left_out += 1;
                None
            }
            Some((logged, left_out)) => {
                *logged = now;
                Some(std::mem::take(left_out))
            }
            None => {
                seen.insert(kind.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

impl ClientContext for LimitedErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&error, reason);
    }
}

impl ConsumerContext for LimitedErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_logged_first_then_once_a_minute_with_the_count_left_out() {
        let errors = LimitedErrors::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(s * 500);
        let logged: Vec<(u64, u64)> = (0..300)
            .filter_map(|i| Some((i, errors.admit("AllBrokersDown", at(i))?)))
            .collect();
        // Every half second for 150 s: at 0 s, 60 s (119 left out) and 120 s (119 again).
        assert_eq!(logged, vec![(0, 0), (120, 119), (240, 119)]);
        // Another kind is not held back by the first.
        assert_eq!(errors.admit("Resolve", at(1)), Some(0));
    }
}
