//! librdkafka's client errors, logged without flooding.
//!
//! While the brokers are unreachable every client reports `AllBrokersDown` again at each
//! failed reconnection (several times a second across the worker's clients), and rdkafka's
//! default context logs each one. Here each kind is logged as [`Repeats`] allows: the first,
//! then one a minute with the count left out. The outage itself is reported by the broker
//! watch (`kafka::BrokerWatch`); librdkafka's own log lines (a failed connection and its
//! reason) are already suppressed by librdkafka when identical.

use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use std::time::Instant;

use crate::repeats::Repeats;

/// A client context that logs librdkafka's errors as [`Repeats`] allows.
#[derive(Default)]
pub struct LimitedErrors {
    repeats: Repeats,
}

impl LimitedErrors {
    /// Logs `error` unless one of its kind (the error without librdkafka's varying reason) was
    /// logged less than a minute ago.
    pub fn report(&self, error: &KafkaError, reason: &str) {
        if let Some(left_out) = self.repeats.admit(&error.to_string(), Instant::now()) {
            tracing::warn!(%error, reason, left_out, "kafka client error");
        }
    }
}

impl ClientContext for LimitedErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.report(&error, reason);
    }
}

impl ConsumerContext for LimitedErrors {}
