//! The log port: what the pipeline needs from Kafka, so the same worker loop runs on the
//! real broker (src/kafka) and on the in-process log (`demo`, tests).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A consumed record.
#[derive(Debug, Clone, PartialEq)]
pub struct InRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The record's timestamp (create or log-append time); now when the broker has none.
    pub timestamp: DateTime<Utc>,
}

/// A record to produce. The key decides the partition (librdkafka's murmur2, the Java
/// client's default, so producers in any language agree on where a user lives).
/// Serializable because the partition outbox stores records as they will be produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutRecord {
    pub topic: String,
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// A change of partition ownership, seen between batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebalance {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The broker is unreachable or refused; retried with backoff.
    #[error("log unavailable: {0}")]
    Unavailable(String),
    /// Fatal (bad configuration, fenced producer …).
    #[error("{0}")]
    Fatal(String),
}

#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Up to `max` records from the assigned partitions, waiting at most `linger` for more
    /// once the first arrived (and at most `idle` for the first).
    async fn poll_batch(
        &self,
        max: usize,
        linger: std::time::Duration,
        idle: std::time::Duration,
    ) -> Result<Vec<InRecord>, LogError>;

    /// Produces records and returns once every one is acknowledged (acks=all).
    async fn publish(&self, records: Vec<OutRecord>) -> Result<(), LogError>;

    /// Commits `offset + 1` for each `(topic, partition, offset)` processed.
    async fn commit(&self, processed: &[(String, i32, i64)]) -> Result<(), LogError>;

    /// Ownership changes since the last call.
    fn take_rebalances(&self) -> Vec<Rebalance>;

    /// Stops (`true`) or restarts fetching from every assigned partition: a slow store pauses
    /// consumption instead of growing memory.
    fn set_paused(&self, paused: bool) -> Result<(), LogError>;

    /// Per assigned partition: high watermark − position, where the broker reports it.
    fn lag(&self) -> Vec<(String, i32, i64)> {
        Vec::new()
    }
}
