//! The Kafka adapter of the log port, on rdkafka (librdkafka).
//!
//! Settings chosen on purpose (each can be overridden by `kafka.properties.*`):
//! - consumer: `enable.auto.commit=false` and offsets committed by the worker only after the
//!   batch is durable and published; `partition.assignment.strategy=range`, which gives the
//!   same partition numbers of every co-partitioned topic to the same member, so a user's
//!   actions, commands and inventory answers meet in one place; `auto.offset.reset=earliest`.
//! - producer: `enable.idempotence=true` (acks=all, no duplicates from producer retries),
//!   `partitioner=murmur2_random`, the Java client's partitioner, so producers in any language
//!   put a user on the same partition, and `compression.type=lz4` ([`PRODUCER_COMPRESSION`]).
//! - statistics every 5 s, from which the per-partition consumer lag is read without a
//!   network round trip.
//! - memory: the consumer prefetches at most [`CONSUMER_QUEUE_KBYTES`] (librdkafka's default,
//!   64 MiB, held a whole backlog's records at once for nothing: the worker takes a batch at a
//!   time), the producer queues at most [`PRODUCER_QUEUE_KBYTES`] (librdkafka's default is
//!   1 GiB); a full queue makes the worker wait, in order (see `publish`), never drop.

mod batches;
mod catalog;
mod errors;
mod health;
mod polled;
mod probe;
mod producer;
mod topics;

pub use catalog::{ensure_catalog_topic, KafkaCatalogLog};
pub use errors::LimitedErrors;
pub use health::BrokerWatch;
pub use producer::{KafkaProducer, Outgoing};
pub use topics::{check_copartitioned, copartitioned, ensure_topics, reach, TopicMetadata};

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use futures::{FutureExt, StreamExt};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance as RdRebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::interned::InternedName;
use crate::pipeline::commands::{command_headers, Command, CommandSink, SubmitError};
use crate::pipeline::log::{
    shared_name, InRecord, Log, LogError, OutRecord, Published, Rebalance, RecordKey,
};
use crate::settings::KafkaSettings;
use crate::trace_context::TraceContext;

/// Shared between librdkafka's callbacks and the worker.
#[derive(Default)]
pub struct WorkerContext {
    rebalances: Mutex<Vec<Rebalance>>,
    lag: Mutex<Vec<(String, i32, i64)>>,
    /// The current assignment: statistics keep reporting a partition for a while after it
    /// was revoked, and its lag is no longer this member's.
    assigned: Mutex<std::collections::BTreeSet<(String, i32)>>,
    /// Per owned partition, the offset the worker last asked to commit (next to read).
    requested: Mutex<BTreeMap<(String, i32), i64>>,
    /// Per partition, the offset the last completed commit wrote. Behind `requested` when a
    /// commit failed or is still in flight — or when librdkafka's internal retry of an older
    /// commit landed after a newer one and put the group's offset back (seen on the mock
    /// cluster with failing OffsetCommit requests).
    confirmed: Mutex<BTreeMap<(String, i32), i64>>,
    /// librdkafka's errors, logged without flooding during an outage.
    errors: LimitedErrors,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WorkerContext {
    /// The requested offsets the broker has not confirmed, of `only` partitions if given.
    fn unconfirmed(&self, only: Option<&[(String, i32)]>) -> TopicPartitionList {
        let requested = locked(&self.requested);
        let confirmed = locked(&self.confirmed);
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in requested.iter() {
            if only.is_some_and(|parts| !parts.iter().any(|(ot, op)| ot == t && op == p)) {
                continue;
            }
            if confirmed.get(&(t.clone(), *p)).is_none_or(|c| c != o) {
                let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
            }
        }
        tpl
    }
}

fn parts(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for WorkerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.report(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        let assigned = locked(&self.assigned);
        let mut lag = Vec::new();
        for (topic, t) in &statistics.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.consumer_lag >= 0 && assigned.contains(&(topic.clone(), *p)) {
                    lag.push((topic.clone(), *p, part.consumer_lag));
                }
            }
        }
        *self.lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }
}

impl ConsumerContext for WorkerContext {
    /// Before partitions go (the worker has no batch in flight: callbacks run inside its
    /// poll, between batches), their last offsets are committed synchronously if the broker
    /// has not confirmed them yet, so the next owner starts where this one stopped instead of
    /// replaying from an older commit still in flight.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &RdRebalance<'_>) {
        if let RdRebalance::Revoke(tpl) = rebalance {
            let revoked = parts(tpl);
            let pending = self.unconfirmed(Some(&revoked));
            if pending.count() > 0 {
                match consumer.commit(&pending, CommitMode::Sync) {
                    Ok(()) => {
                        let mut confirmed = locked(&self.confirmed);
                        for e in pending.elements() {
                            if let Offset::Offset(o) = e.offset() {
                                confirmed.insert((e.topic().to_string(), e.partition()), o);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "commit before revocation failed; the next owner replays from the last commit")
                    }
                }
            }
            let mut requested = locked(&self.requested);
            for p in &revoked {
                requested.remove(p);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &RdRebalance<'_>) {
        let event = match rebalance {
            RdRebalance::Assign(tpl) => {
                locked(&self.assigned).extend(parts(tpl));
                Rebalance::Assigned(parts(tpl))
            }
            RdRebalance::Revoke(tpl) => {
                let revoked = parts(tpl);
                let mut assigned = locked(&self.assigned);
                for p in &revoked {
                    assigned.remove(p);
                }
                locked(&self.lag).retain(|(t, p, _)| assigned.contains(&(t.clone(), *p)));
                Rebalance::Revoked(revoked)
            }
            RdRebalance::Error(e) => {
                tracing::warn!(error = %e, "rebalance error");
                return;
            }
        };
        tracing::info!(?event, "rebalance");
        self.rebalances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event);
    }

    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => {
                let mut confirmed = locked(&self.confirmed);
                for e in offsets.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        confirmed.insert((e.topic().to_string(), e.partition()), o);
                    }
                }
            }
            // At-least-once: a lost commit only means a replay, which the watermark absorbs;
            // and the worker commits again once idle (see `KafkaLog::recommit`).
            Err(e) => tracing::warn!(error = %e, "offset commit failed"),
        }
    }
}

fn base_config(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &settings.brokers);
    config
}

fn apply_properties(
    config: &mut ClientConfig,
    settings: &KafkaSettings,
    allowed: impl Fn(&str) -> bool,
) {
    for (k, v) in &settings.properties {
        if allowed(k) {
            config.set(k, v);
        }
    }
}

/// Properties that only make sense for one side; passing them to the other makes librdkafka
/// log warnings, so each side gets its own. Public so that `scripts/bench`'s pass-through
/// (its latency floor) splits the worker's `kafka.properties` as the worker does.
pub fn consumer_only(key: &str) -> bool {
    key.starts_with("fetch.")
        || key.starts_with("queued.")
        || key.starts_with("session.")
        || key.starts_with("heartbeat.")
        || key.starts_with("max.poll")
        || key.starts_with("auto.offset")
        || key.starts_with("partition.assignment")
        || key.starts_with("group.")
        || key == "isolation.level"
}

/// See [`consumer_only`].
pub fn producer_only(key: &str) -> bool {
    key.starts_with("linger")
        || key.starts_with("batch.")
        || key.starts_with("compression")
        || key.starts_with("acks")
        || key.starts_with("message.timeout")
        || key.starts_with("queue.buffering")
        || key == "partitioner"
        || key == "enable.idempotence"
}

pub use crate::settings::{CONSUMER_QUEUE_KBYTES, PRODUCER_QUEUE_KBYTES};

/// The producer's `linger.ms` unless `kafka.properties` sets another: a batch's records are
/// handed over together, so a short wait is enough to fill librdkafka's requests. Public so
/// that `scripts/bench`'s latency floor produces as the worker does.
pub const PRODUCER_LINGER_MS: &str = "2";

/// The producer's `compression.type` unless `kafka.properties` sets another. A batch's events
/// are JSON of a few shapes, and lz4 takes most of their bytes off the wire and off the
/// broker's disk for little CPU: in `scripts/bench` (docs/benchmarks.md) the worker's CPU per
/// action was the same with it and without, its latency p99 at half its peak lower in 5 of 7
/// alternated pairs, and the broker alone took 1.1–1.7× more of the worker's events with it.
/// Every Kafka client reads lz4 batches. Public so that `scripts/bench` runs the worker's
/// default.
pub const PRODUCER_COMPRESSION: &str = "lz4";

/// The process's producer. One per process, shared by the worker's publishing, the sidecar's
/// commands and the catalog log: every librdkafka client has threads of its own (a main
/// thread, one per broker, a polling thread) that wake even when idle, so each extra client
/// costs an idle worker CPU and memory for nothing.
pub fn producer(settings: &KafkaSettings) -> Result<Arc<KafkaProducer>, LogError> {
    let mut config = base_config(settings);
    config
        .set("queue.buffering.max.kbytes", PRODUCER_QUEUE_KBYTES)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", PRODUCER_LINGER_MS)
        .set("compression.type", PRODUCER_COMPRESSION)
        .set("message.timeout.ms", "30000");
    apply_properties(&mut config, settings, |k| !consumer_only(k));
    KafkaProducer::create(&config)
        .map(Arc::new)
        .map_err(|source| LogError::Client {
            client: "producer",
            source,
        })
}

/// The worker's log: one consumer group member and the process's idempotent producer.
pub struct KafkaLog {
    consumer: StreamConsumer<WorkerContext>,
    producer: Arc<KafkaProducer>,
    /// When unconfirmed offsets were last committed again.
    recommitted: Mutex<std::time::Instant>,
}

/// The most records a poll makes room for at once (450 KB); a larger batch grows its list.
const RESERVED_RECORDS: usize = 4096;

/// How often an idle worker re-sends offsets the broker has not confirmed.
const RECOMMIT_EVERY: Duration = Duration::from_secs(1);

impl KafkaLog {
    pub fn connect(
        settings: &KafkaSettings,
        topics: &[String],
        producer: Arc<KafkaProducer>,
    ) -> Result<Self, LogError> {
        let mut config = base_config(settings);
        config
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("queued.max.messages.kbytes", CONSUMER_QUEUE_KBYTES)
            .set("partition.assignment.strategy", "range")
            .set("statistics.interval.ms", "5000");
        apply_properties(&mut config, settings, |k| !producer_only(k));
        let consumer: StreamConsumer<WorkerContext> = config
            .create_with_context(WorkerContext::default())
            .map_err(|source| LogError::Client {
                client: "consumer",
                source,
            })?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|source| LogError::Subscribe {
                topics: topics.to_vec(),
                source,
            })?;
        Ok(KafkaLog {
            consumer,
            producer,
            recommitted: Mutex::new(std::time::Instant::now()),
        })
    }

    /// `names`: the batch's topic names so far, each interned once and copied into its records.
    fn to_record(
        m: &rdkafka::message::BorrowedMessage<'_>,
        names: &mut Vec<InternedName>,
    ) -> InRecord {
        let timestamp = m
            .timestamp()
            .to_millis()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or_else(Utc::now);
        InRecord {
            topic: shared_name(names, m.topic()),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(RecordKey::from_slice),
            payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            timestamp,
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Commits the last processed offsets synchronously and leaves the group (shutdown).
    pub async fn close(&self) {
        let tpl = {
            let requested = locked(&self.consumer.context().requested);
            let mut tpl = TopicPartitionList::new();
            for ((t, p), o) in requested.iter() {
                let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
            }
            tpl
        };
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync) {
                tracing::warn!(error = %e, "final commit failed; the next owner replays from the last commit");
            }
        }
        // Nothing is left to commit after this one try: the revocation that closing the
        // consumer runs must not commit again. A synchronous commit inside that callback,
        // while librdkafka closes the consumer, waited for an answer nothing was serving any
        // more, and held the process for over 20 s after SIGTERM under load.
        locked(&self.consumer.context().requested).clear();
        let _ = self.producer.flush(Duration::from_secs(10));
        self.consumer.unsubscribe();
    }
}

impl KafkaLog {
    /// While idle: commits again the offsets the broker has not confirmed (a failed async
    /// commit, or an older commit's retry that landed after a newer one), at most once per
    /// [`RECOMMIT_EVERY`]. Without this a stream that goes quiet after a commit error keeps
    /// a stale group offset — lag that never drains, and a replay on the next restart.
    fn recommit(&self) {
        let mut at = locked(&self.recommitted);
        if at.elapsed() < RECOMMIT_EVERY {
            return;
        }
        *at = std::time::Instant::now();
        let pending = self.consumer.context().unconfirmed(None);
        if pending.count() > 0 {
            tracing::debug!(
                partitions = pending.count(),
                "committing unconfirmed offsets again"
            );
            if let Err(e) = self.consumer.commit(&pending, CommitMode::Async) {
                tracing::warn!(error = %e, "offset commit failed");
            }
        }
    }
}

/// A failed broker call; its class comes from librdkafka's error code ([`LogError::class`]).
fn failed(op: &'static str) -> impl Fn(KafkaError) -> LogError {
    move |source| LogError::Kafka { op, source }
}

/// When a wait of `wait` from now ends, for [`next_by`]; `None` for no wait at all.
fn deadline_after(wait: Duration) -> Option<tokio::time::Instant> {
    (!wait.is_zero()).then(|| tokio::time::Instant::now() + wait)
}

/// The stream's next item if it comes by `deadline`; `None` once that passes. With no
/// deadline, only what is ready now.
///
/// No wait arms no timer: tokio's timers tick by the millisecond and a deadline of "now"
/// rounds up to the next tick, so a zero timeout still waited for the timer driver's next
/// turn. The worker polls with no wait while a batch is being written and published, and
/// that wait was ~1.3 ms of every batch cycle's poll (instrumented `scripts/bench`, latency
/// phase), before the batch's own write could start.
async fn next_by<S: futures::Stream + Unpin>(
    deadline: Option<tokio::time::Instant>,
    stream: &mut S,
) -> Option<Option<S::Item>> {
    match deadline {
        None => ready_now(stream),
        Some(deadline) => tokio::time::timeout_at(deadline, stream.next()).await.ok(),
    }
}

/// How many times [`ready_now`] polls: a consumer's stream answers "not yet" when it consumed
/// an event that is not a message (a commit's result, statistics, a rebalance) and asks to be
/// polled again, and a commit's result follows every batch.
const READY_POLLS: usize = 4;

/// The stream's next item if it is ready now, polling past the non-message events before it.
fn ready_now<S: futures::Stream + Unpin>(stream: &mut S) -> Option<Option<S::Item>> {
    (0..READY_POLLS).find_map(|_| stream.next().now_or_never())
}

#[async_trait]
impl Log for KafkaLog {
    async fn poll_batch(
        &self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Result<Vec<InRecord>, LogError> {
        let mut out = Vec::new();
        let mut names = Vec::new();
        // One message stream for the whole batch: each `recv` would register a waker slot of
        // its own and unregister it again, two lock round trips per record.
        let mut stream = self.consumer.stream();
        let first = match next_by(deadline_after(idle), &mut stream).await {
            None => {
                self.recommit();
                return Ok(out);
            }
            Some(None) => return Ok(out), // not reached: a consumer's stream never ends
            Some(Some(Err(e))) => return Err(failed("poll")(e)),
            Some(Some(Ok(m))) => Self::to_record(&m, &mut names),
        };
        if max == 0 {
            // A keep-alive poll while paused should not deliver; if it did, nothing is lost:
            // the record was not committed and is seen again after a restart. Seek back so
            // this member sees it again too.
            let _ = self.consumer.seek(
                &first.topic,
                first.partition,
                Offset::Offset(first.offset),
                Duration::from_secs(1),
            );
            return Ok(out);
        }
        // Room for the whole batch once a record came: grown by doubling, the list of records
        // (128 bytes each) was copied again at each step. Not more than `RESERVED_RECORDS`, so
        // that a large `batch_size` costs memory only when its batches fill.
        out.reserve_exact(max.min(RESERVED_RECORDS));
        out.push(first);
        let deadline = deadline_after(linger);
        while out.len() < max {
            match next_by(deadline, &mut stream).await {
                None | Some(None) => break,
                Some(Some(Err(e))) => {
                    tracing::warn!(error = %e, "consumer error mid-batch");
                    break;
                }
                Some(Some(Ok(m))) => out.push(Self::to_record(&m, &mut names)),
            }
        }
        Ok(out)
    }

    async fn publish(&self, records: &[OutRecord]) -> Result<Published, LogError> {
        self.producer.publish(records).await
    }

    async fn commit(&self, processed: &[(String, i32, i64)]) -> Result<(), LogError> {
        let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for (t, p, o) in processed {
            let slot = next.entry((t.clone(), *p)).or_insert(o + 1);
            *slot = (*slot).max(o + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &next {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))
                .map_err(failed("commit"))?;
        }
        // Async: the batch is already durable and published, so a lost commit costs only a
        // replay that the watermark skips; the final commit on shutdown is synchronous.
        self.consumer
            .commit(&tpl, CommitMode::Async)
            .map_err(failed("commit"))?;
        locked(&self.consumer.context().requested).extend(next);
        Ok(())
    }

    fn take_rebalances(&self) -> Vec<Rebalance> {
        // Revoked partitions left `requested` in `pre_rebalance`, before they went.
        std::mem::take(&mut *locked(&self.consumer.context().rebalances))
    }

    fn set_paused(&self, paused: bool) -> Result<(), LogError> {
        let assignment = self.consumer.assignment().map_err(failed("assignment"))?;
        if paused {
            self.consumer.pause(&assignment).map_err(failed("pause"))
        } else {
            self.consumer.resume(&assignment).map_err(failed("resume"))
        }
    }

    fn lag(&self) -> Vec<(String, i32, i64)> {
        self.consumer
            .context()
            .lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The sidecar's command sink: the commands topic, keyed by user, acknowledged by all
/// in-sync replicas before `submit` returns.
pub struct KafkaCommandSink {
    producer: Arc<KafkaProducer>,
    topic: String,
}

impl KafkaCommandSink {
    pub fn new(producer: Arc<KafkaProducer>, topic: &str) -> Self {
        KafkaCommandSink {
            producer,
            topic: topic.to_string(),
        }
    }
}

#[async_trait]
impl CommandSink for KafkaCommandSink {
    async fn submit(
        &self,
        command: &Command,
        trace: Option<&TraceContext>,
    ) -> Result<(), SubmitError> {
        let payload = serde_json::to_vec(command)?;
        let headers = command_headers(trace);
        let record = Outgoing {
            topic: &self.topic,
            key: command.user_id(),
            payload: &payload,
            headers: &headers,
            partition: None,
        };
        self.producer
            .send(record, Duration::from_secs(10), "submit")
            .await
            .map_err(Into::into)
    }
}

/// Reads header values as text, for tests and tools.
pub fn header_map(headers: Option<&rdkafka::message::BorrowedHeaders>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    if let Some(h) = headers {
        for i in 0..h.count() {
            let header = h.get(i);
            map.insert(
                header.key.to_string(),
                header
                    .value
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// Yields `items` in order, each after `events` polls that consume a non-message event
    /// (pending, waking the task at once, as rdkafka's stream does).
    struct Events {
        items: Vec<u32>,
        events: usize,
        seen: usize,
    }

    impl futures::Stream for Events {
        type Item = u32;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<u32>> {
            if self.items.is_empty() {
                return Poll::Pending;
            }
            if self.seen < self.events {
                self.seen += 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            self.seen = 0;
            Poll::Ready(Some(self.items.remove(0)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_wait_takes_what_is_ready_without_waiting_for_a_timer() {
        assert_eq!(deadline_after(Duration::ZERO), None, "no wait, no deadline");
        let start = tokio::time::Instant::now();
        let mut stream = Events {
            items: vec![7, 8],
            events: 3,
            seen: 0,
        };
        assert_eq!(next_by(None, &mut stream).await, Some(Some(7)));
        assert_eq!(next_by(None, &mut stream).await, Some(Some(8)));
        assert_eq!(next_by(None, &mut stream).await, None);
        // With the clock paused, a timer would have moved it on to its tick.
        assert_eq!(tokio::time::Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_deadline_when_nothing_comes() {
        let start = tokio::time::Instant::now();
        let mut nothing = Events {
            items: Vec::new(),
            events: 0,
            seen: 0,
        };
        let wait = Duration::from_millis(5);
        assert_eq!(next_by(deadline_after(wait), &mut nothing).await, None);
        assert_eq!(tokio::time::Instant::now(), start + wait);
        let deadline = start + Duration::from_millis(8);
        assert_eq!(next_by(Some(deadline), &mut nothing).await, None);
        assert_eq!(tokio::time::Instant::now(), deadline);
    }
}
