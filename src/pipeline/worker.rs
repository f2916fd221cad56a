//! The worker loop: poll → evaluate → persist → publish → commit, batch by batch
//! (DESIGN §2). Generic over the log and the store, so the Kafka worker, `demo` and the tests
//! run the same loop.
//!
//! Failure handling is one rule: if persisting, publishing or committing a batch fails, the
//! partitions' caches are dropped, consumption pauses, and the same records are processed
//! again after a backoff. The store's watermark makes the second evaluation skip what was
//! already applied, and the outbox re-publishes what was not yet acknowledged, with the same
//! event ids. Offsets are committed only after both succeeded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

use super::input::Inputs;
use super::log::{InRecord, Log, LogError, Rebalance};
use super::partition::{Batch, Partition, Stats};
use crate::settings::{PipelineSettings, Topics};
use crate::store::{StateStore, StoreError};
use crate::telemetry::metrics;

/// How long an empty poll waits before the loop looks at shutdown and rebalances again.
const IDLE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("store: {0}")]
    Store(String),
}

/// Totals since start, for `demo`, tests and the closing log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub records: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub redelivered: u64,
    pub dead_letters: u64,
    pub batches: u64,
    pub retries: u64,
}

pub struct Worker<L: Log, S: StateStore + ?Sized> {
    log: Arc<L>,
    store: Arc<S>,
    inputs: Inputs,
    topics: Topics,
    settings: PipelineSettings,
    group: String,
    partitions: BTreeMap<i32, Partition>,
    owned: BTreeMap<i32, BTreeSet<String>>,
    totals: Totals,
    shutdown: watch::Receiver<bool>,
}

enum Attempt {
    Done(Vec<Batch>),
    /// The records' partitions were revoked while retrying: drop them, the new owner replays.
    Abandoned,
}

impl<L: Log, S: StateStore + ?Sized> Worker<L, S> {
    pub fn new(
        log: Arc<L>,
        store: Arc<S>,
        inputs: Inputs,
        topics: Topics,
        settings: PipelineSettings,
        group: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Worker {
            log,
            store,
            inputs,
            topics,
            settings,
            group,
            partitions: BTreeMap::new(),
            owned: BTreeMap::new(),
            totals: Totals::default(),
            shutdown,
        }
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs until shutdown is signalled; the batch in flight is finished and committed first.
    pub async fn run(mut self) -> Result<Totals, WorkerError> {
        while !self.stopping() {
            self.step().await?;
        }
        self.flush_all().await;
        tracing::info!(totals = ?self.totals, "worker stopped");
        Ok(self.totals)
    }

    /// One poll and, if it returned records, one batch through the whole protocol.
    pub async fn step(&mut self) -> Result<(), WorkerError> {
        self.apply_rebalances().await;
        let linger = Duration::from_millis(self.settings.linger_ms);
        let records = match self
            .log
            .poll_batch(self.settings.batch_size, linger, IDLE_POLL)
            .await
        {
            Ok(r) => r,
            Err(LogError::Unavailable(e)) => {
                // librdkafka reports broker trouble as events on the consumer queue, one per
                // failed connection attempt: each is drained after a short pause, not a growing
                // backoff, or a backlog of them would outlast the outage itself.
                tracing::warn!(error = %e, "poll failed; retrying");
                tokio::time::sleep(Duration::from_millis(self.settings.retry_min_ms)).await;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        // Ownership changes that came with this poll (librdkafka runs the rebalance callbacks
        // inside it) apply before its records: a partition revoked mid-poll is another
        // member's now, which replays it from the committed offset, so its records here are
        // dropped rather than evaluated, written and committed by a second writer; and one
        // revoked and assigned back starts over with a fresh cache and epoch.
        self.apply_rebalances().await;
        // Lag is refreshed on every poll, idle ones included: a worker that stopped receiving
        // records is exactly when the gauge must not be stuck at its last busy value.
        for (topic, partition, lag) in self.log.lag() {
            metrics()
                .consumer_lag
                .with_label_values(&[&topic, &partition.to_string()])
                .set(lag);
        }
        let polled = records.len();
        let records: Vec<InRecord> = records.into_iter().filter(|r| self.owns(r)).collect();
        if records.len() < polled {
            tracing::info!(
                dropped = polled - records.len(),
                "records of partitions revoked during the poll left to their new owner"
            );
        }
        if records.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let span = tracing::info_span!("batch", records = records.len());
        let _enter = span.enter();
        let m = metrics();
        m.batch_size.observe(records.len() as f64);
        for r in &records {
            m.records_in.with_label_values(&[&r.topic]).inc();
        }
        self.totals.records += records.len() as u64;
        let mut by_partition: BTreeMap<i32, Vec<InRecord>> = BTreeMap::new();
        for r in records {
            by_partition.entry(r.partition).or_default().push(r);
        }
        tracing::debug!(
            offsets = ?by_partition
                .iter()
                .map(|(p, rs)| (*p, rs.iter().map(|r| r.offset).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
            "batch polled"
        );
        drop(_enter);
        match self.process_until_done(by_partition).await? {
            Attempt::Done(batches) => {
                for b in &batches {
                    self.count(&b.stats);
                }
                self.totals.batches += 1;
            }
            Attempt::Abandoned => {
                tracing::info!("batch abandoned after a rebalance; the new owner replays it")
            }
        }
        m.batch_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn count(&mut self, stats: &Stats) {
        let m = metrics();
        self.totals.applied += stats.applied;
        self.totals.duplicates += stats.duplicates;
        self.totals.redelivered += stats.redelivered;
        self.totals.dead_letters += stats.dead_letters.len() as u64;
        m.actions_processed
            .with_label_values(&["applied"])
            .inc_by(stats.applied);
        m.actions_processed
            .with_label_values(&["duplicate"])
            .inc_by(stats.duplicates);
        m.actions_processed
            .with_label_values(&["redelivered"])
            .inc_by(stats.redelivered);
        m.actions_processed
            .with_label_values(&["ignored"])
            .inc_by(stats.ignored);
        for reason in &stats.dead_letters {
            m.dead_letters.with_label_values(&[reason]).inc();
        }
        for reward_type in &stats.granted {
            m.rewards_granted.with_label_values(&[reward_type]).inc();
        }
    }

    async fn process_until_done(
        &mut self,
        mut work: BTreeMap<i32, Vec<InRecord>>,
    ) -> Result<Attempt, WorkerError> {
        let mut backoff = Duration::from_millis(self.settings.retry_min_ms);
        let max = Duration::from_millis(self.settings.retry_max_ms);
        let mut paused = false;
        loop {
            match self.attempt(&work).await {
                Ok(batches) => {
                    if paused {
                        self.log.set_paused(false)?;
                    }
                    return Ok(Attempt::Done(batches));
                }
                Err(reason) => {
                    self.totals.retries += 1;
                    tracing::warn!(%reason, backoff_ms = backoff.as_millis() as u64, "batch failed; pausing and retrying");
                    for p in work.keys() {
                        if let Some(partition) = self.partitions.get_mut(p) {
                            partition.reset();
                        }
                    }
                    if !paused {
                        self.log.set_paused(true)?;
                        paused = true;
                    }
                    if self.wait_or_stop(backoff).await {
                        // Shutting down mid-retry: nothing of this batch was committed; it is
                        // replayed on restart.
                        return Ok(Attempt::Abandoned);
                    }
                    backoff = (backoff * 2).min(max);
                    // Keep the group membership alive while paused, and notice revocations.
                    if let Err(e) = self
                        .log
                        .poll_batch(0, Duration::ZERO, Duration::from_millis(1))
                        .await
                    {
                        tracing::debug!(error = %e, "keep-alive poll failed");
                    }
                    self.apply_rebalances().await;
                    // Keep every record this member still owns, whether or not its partition
                    // was taken yet (a failed claim leaves it untaken): a record dropped here
                    // is never fetched again, since the consumer's position is past it, and
                    // the partition's next commit would skip it. Revoked partitions' records
                    // are the new owner's to replay from the committed offset.
                    for records in work.values_mut() {
                        records.retain(|r| self.owns(r));
                    }
                    work.retain(|_, records| !records.is_empty());
                    if work.is_empty() {
                        if paused {
                            self.log.set_paused(false)?;
                        }
                        return Ok(Attempt::Abandoned);
                    }
                }
            }
        }
    }

    /// Sleeps for `d` unless shutdown comes first; returns true on shutdown.
    async fn wait_or_stop(&mut self, d: Duration) -> bool {
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => false,
            _ = rx.wait_for(|s| *s) => true,
        }
    }

    async fn attempt(&mut self, work: &BTreeMap<i32, Vec<InRecord>>) -> Result<Vec<Batch>, String> {
        // Step 2: evaluate, partition by partition (each a single writer of its users).
        let mut batches = Vec::with_capacity(work.len());
        for (p, records) in work {
            if !self.partitions.contains_key(p) {
                self.take_partition(*p).await.map_err(|e| e.to_string())?;
            }
            let partition = self.partitions.get_mut(p).expect("just taken");
            let load = Instant::now();
            let batch = partition
                .process(self.store.as_ref(), &self.inputs, &self.topics, records)
                .await
                .map_err(|e| {
                    metrics().store_errors.with_label_values(&["load"]).inc();
                    e.to_string()
                })?;
            metrics()
                .store_seconds
                .with_label_values(&["load"])
                .observe(load.elapsed().as_secs_f64());
            batches.push((*p, batch));
        }
        // Step 3: persist every partition's writes in one store call (one transaction and
        // one fsync on the embedded store; concurrent partitions on ScyllaDB).
        let write = Instant::now();
        let writes: Vec<_> = batches
            .iter_mut()
            .map(|(_, b)| std::mem::take(&mut b.write))
            .collect();
        let result = self.store.write_batches(writes).await;
        metrics()
            .store_seconds
            .with_label_values(&["write"])
            .observe(write.elapsed().as_secs_f64());
        if let Err(e) = result {
            metrics().store_errors.with_label_values(&["write"]).inc();
            return Err(e.to_string());
        }
        // Step 4: publish effects and dead letters; wait for every acknowledgement.
        let out: Vec<_> = batches
            .iter_mut()
            .flat_map(|(_, b)| std::mem::take(&mut b.publish))
            .collect();
        let counts: Vec<(String, String)> = out
            .iter()
            .map(|r| {
                let kind = r
                    .headers
                    .iter()
                    .find(|(k, _)| k == "questline-event-type")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| "internal".into());
                (r.topic.clone(), kind)
            })
            .collect();
        self.log.publish(out).await.map_err(|e| e.to_string())?;
        for (topic, kind) in counts {
            metrics()
                .events_out
                .with_label_values(&[&topic, &kind])
                .inc();
        }
        // Step 5: commit the offsets, only now.
        let processed: Vec<_> = batches
            .iter()
            .flat_map(|(_, b)| b.processed.iter().cloned())
            .collect();
        let mut backoff = Duration::from_millis(self.settings.retry_min_ms);
        loop {
            match self.log.commit(&processed).await {
                Ok(()) => {
                    for (p, b) in &batches {
                        if let Some(partition) = self.partitions.get_mut(p) {
                            partition.committed(&b.processed);
                        }
                    }
                    break;
                }
                Err(LogError::Fatal(e)) => return Err(format!("commit: {e}")),
                Err(LogError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "commit failed; retrying");
                    if self.wait_or_stop(backoff).await {
                        break; // already durable and published: a replay skips it by watermark
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(self.settings.retry_max_ms));
                }
            }
        }
        Ok(batches.into_iter().map(|(_, b)| b).collect())
    }

    /// Whether the record's topic-partition is assigned to this member.
    fn owns(&self, record: &InRecord) -> bool {
        self.owned
            .get(&record.partition)
            .is_some_and(|topics| topics.contains(&record.topic))
    }

    async fn take_partition(&mut self, p: i32) -> Result<(), StoreError> {
        let mut partition = Partition::new(&self.group, p, self.settings.cache_users);
        let epoch = self
            .store
            .claim_partition(&self.group, &format!("p{p}"))
            .await?;
        partition.set_epoch(epoch);
        tracing::info!(partition = p, epoch, "partition taken");
        self.partitions.insert(p, partition);
        Ok(())
    }

    async fn apply_rebalances(&mut self) {
        for event in self.log.take_rebalances() {
            match event {
                Rebalance::Assigned(parts) => {
                    metrics().rebalances.with_label_values(&["assign"]).inc();
                    for (topic, p) in parts {
                        self.owned.entry(p).or_default().insert(topic);
                    }
                }
                Rebalance::Revoked(parts) => {
                    metrics().rebalances.with_label_values(&["revoke"]).inc();
                    for (topic, p) in parts {
                        // Another member reports this partition's lag now.
                        let _ = metrics()
                            .consumer_lag
                            .remove_label_values(&[&topic, &p.to_string()]);
                        let now_empty = self.owned.get_mut(&p).is_some_and(|t| {
                            t.remove(&topic);
                            t.is_empty()
                        });
                        if now_empty {
                            self.owned.remove(&p);
                            // Batches are committed before every poll, so nothing is in flight.
                            if let Some(partition) = self.partitions.remove(&p) {
                                tracing::info!(partition = p, "partition revoked; cache dropped");
                                drop(partition);
                            }
                        }
                    }
                }
            }
        }
    }

    /// On shutdown, every batch committed: empty the stored outboxes, so the next owner has
    /// nothing to consider re-publishing. Best effort: a leftover outbox only costs repeats
    /// (same event ids) of events whose cause this owner had not seen committed.
    async fn flush_all(&mut self) {
        let writes: Vec<_> = self
            .partitions
            .values_mut()
            .map(Partition::clear_outbox)
            .collect();
        if let Err(e) = self.store.write_batches(writes).await {
            tracing::warn!(error = %e, "could not clear the outboxes; a restart may re-publish (same event ids)");
        }
    }
}
