//! The worker loop: poll → evaluate → persist → publish → commit, batch by batch
//! (docs/design.md, "Commit protocol"). Generic over the log and the store, so the Kafka worker, `demo` and the tests
//! run the same loop.
//!
//! # Pipelining
//!
//! Evaluation is CPU work and persisting, publishing and committing are mostly waiting, so
//! the two overlap: while batch N is written, published and committed (a spawned task),
//! batch N+1 is evaluated against the cache, which already holds N's results. When N's
//! acknowledgement is the longer part, N+1 is written as soon as it is evaluated, beside it,
//! and only published at the next poll ([`super::write_ahead`] decides). The order of
//! effects stays that of the sequential protocol: N+1 is written after N's write and
//! published after N's records, into the partition's other outbox (so N's stays until it
//! is committed), and N+2 is polled only once N is committed. Polls happen with nothing
//! being persisted or published (so a rebalance, which librdkafka runs inside the poll,
//! never meets a write or a publish under way): a revoked partition's share of N+1 is
//! simply dropped, for the new owner to replay (its outbox holds the records if it was
//! written). The cache never evicts a user the batch being evaluated needs (see
//! `Partition::load`), so no user is reloaded before its previous write is durable.
//!
//! Failure handling is one rule: if persisting, publishing or committing a batch fails, the
//! partitions' caches are dropped, consumption pauses, and the same records (with those of
//! the batch evaluated behind it) are processed again after a backoff. The store's watermark makes the second evaluation skip what was
//! already applied, and the outbox re-publishes what was not yet acknowledged, with the same
//! event ids. Offsets are committed only after both succeeded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::Instrument;

use super::exclusive::{Exclusive, Verdict};
use super::input::Inputs;
use super::log::{InRecord, Log, LogError, OutRecord, Rebalance};
use super::oversize;
use super::partition::{Batch, Partition, Stats};
use super::protocol::{self, AfterFailure, AfterTooLarge, AfterWait, Redo, Refused};
use super::write_ahead;
use crate::amounts::{AmountCaller, Fallbacks};
use crate::core::model::SourceRef;
use crate::error::ErrorClass;
use crate::metrics::metrics;
use crate::readiness::{Condition, Readiness};
use crate::repeats::Repeats;
use crate::settings::{PipelineSettings, Topics};
use crate::store::{StateStore, StoreError};
use chrono::Utc;

/// How long an empty poll waits before the loop looks at shutdown and rebalances again.
const IDLE_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A batch failed in a way no retry can mend (see `protocol`).
    #[error("batch failed: {0}")]
    Batch(#[from] BatchError),
    /// The embedded store in a group whose partitions are shared with another worker.
    #[error(
        "store.kind = \"embedded\", but consumer group '{group}' shares its partitions with another \
         worker (this one has owned {owned} of {partitions} for {grace_secs} s or more): the embedded \
         store keeps state on this machine only, so users of the partitions that moved would start \
         from zero. Run one worker per group on the embedded store, or use store.kind = \"scylla\" \
         to run several"
    )]
    SharedGroup {
        group: String,
        owned: usize,
        partitions: usize,
        grace_secs: u64,
    },
}

/// Why a batch could not be processed, by the stage that failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("taking partition {partition}: {source}")]
    Take {
        partition: i32,
        #[source]
        source: StoreError,
    },
    #[error("loading state: {0}")]
    Load(#[source] StoreError),
    #[error("persisting: {0}")]
    Write(#[source] StoreError),
    #[error("publishing: {0}")]
    Publish(#[source] LogError),
    /// Even the small dead letter standing for a too-large output was refused: the
    /// producer's `message.max.bytes` is set far too low.
    #[error(
        "publishing: the dead letter standing for a too-large output ({bytes} bytes) is refused \
         for its size too; raise the producer's message.max.bytes"
    )]
    DeadLetterTooLarge { bytes: usize },
    #[error("committing: {0}")]
    Commit(#[source] LogError),
    #[error("the batch task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl BatchError {
    pub fn class(&self) -> ErrorClass {
        match self {
            BatchError::Take { source, .. }
            | BatchError::Load(source)
            | BatchError::Write(source) => source.class(),
            BatchError::Publish(e) | BatchError::Commit(e) => e.class(),
            BatchError::DeadLetterTooLarge { .. } => ErrorClass::Permanent,
            BatchError::Task(_) => ErrorClass::Fatal,
        }
    }

    /// The stage that failed: the `stage` label of `questline_retries_total`.
    pub fn stage(&self) -> &'static str {
        match self {
            BatchError::Take { .. } => "take",
            BatchError::Load(_) => "load",
            BatchError::Write(_) => "write",
            BatchError::Publish(_) | BatchError::DeadLetterTooLarge { .. } => "publish",
            BatchError::Commit(_) => "commit",
            BatchError::Task(_) => "task",
        }
    }
}

/// `/readyz`'s reason before the first assignment; the composition root sets it from the
/// start of startup, so that a worker is never ready before it has partitions.
pub const AWAITING_ASSIGNMENT: &str = "waiting for the consumer group to assign partitions";

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
    /// The batch evaluated last, waiting for the next poll to start its finishing.
    pending: Option<Evaluated>,
    /// Recent durations of finishes' parts, for deciding what is written ahead.
    estimates: write_ahead::Estimates,
    /// What `/readyz` reports: not ready before the first assignment or while paused.
    readiness: Readiness,
    /// Decides programmatic events' amount requests, for every partition.
    amounts: Arc<dyn AmountCaller>,
    /// With the embedded store: the guard that this member owns every partition.
    exclusive: Option<Exclusive>,
    /// Whether the group has assigned this member partitions (even none) yet.
    assigned: bool,
    /// Failed polls repeat every `pipeline.retry_min_ms` while the broker is gone: logged
    /// once, then once a minute with the count; forgotten at the next poll that delivers
    /// records (an idle worker's next outage within the minute shows in `/readyz` and the
    /// broker watch's line, and here with the count).
    poll_failures: Repeats,
}

enum Attempt {
    Done(Vec<(i32, Batch)>),
    /// The records' partitions were revoked while retrying: drop them, the new owner replays.
    Abandoned,
}

/// Records grouped by partition, in offset order within each.
type Work = BTreeMap<i32, Vec<InRecord>>;

/// A batch being persisted, published and committed; its batches come back on success.
type FinishTask = tokio::task::JoinHandle<Result<Finished, BatchError>>;

/// Batches finished (persisted, published, committed), their writes and records taken, and
/// how long the finish's parts took.
struct Finished {
    batches: Vec<(i32, Batch)>,
    /// `None` for batches written ahead (their write was timed where it ran).
    write: Option<Duration>,
    deliver: Duration,
}

/// A batch evaluated (cache updated) but not yet published and committed; persisted too if
/// it was written ahead (see [`super::write_ahead`]).
struct Evaluated {
    work: Work,
    batches: Vec<(i32, Batch)>,
    started: Instant,
    written: bool,
}

/// A batch's finish under way: its task, when it started, and (for a batch not written
/// ahead) a signal when its write is durable, after which the next batch may be written.
struct Finishing {
    task: FinishTask,
    durable: Option<tokio::sync::oneshot::Receiver<()>>,
    since: Instant,
}

/// What persists, publishes and commits batches: owned handles, so it runs as its own task
/// while the worker evaluates the next batch.
struct Finisher<L: Log, S: StateStore + ?Sized> {
    log: Arc<L>,
    store: Arc<S>,
    /// Where an output refused for its size is replaced by a dead letter.
    dead_letter_topic: String,
    retry_min: Duration,
    retry_max: Duration,
    shutdown: watch::Receiver<bool>,
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
            pending: None,
            estimates: write_ahead::Estimates::default(),
            readiness: Readiness::default(),
            amounts: Arc::new(Fallbacks),
            exclusive: None,
            assigned: false,
            poll_failures: Repeats::default(),
        }
    }

    /// Requires this member to own every partition (`guard`): with a store on this machine
    /// only, a group shared with another worker is an error once the guard's grace is over.
    pub fn with_exclusive(mut self, guard: Exclusive) -> Self {
        self.exclusive = Some(guard);
        self
    }

    /// Decides amount requests with `amounts` (`questline run`: the HTTP caller). Without one
    /// every request is paid its event's fallback, reason `not_called`.
    pub fn with_amounts(mut self, amounts: Arc<dyn AmountCaller>) -> Self {
        self.amounts = amounts;
        self
    }

    /// Reports this worker's readiness through `readiness` (the process's shared handle).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Runs until shutdown is signalled; the batch in flight is finished and committed first.
    pub async fn run(mut self) -> Result<Totals, WorkerError> {
        if self.owned.is_empty() {
            self.readiness
                .set(Condition::Assignment, AWAITING_ASSIGNMENT);
        }
        while !self.stopping() {
            self.advance().await?;
        }
        self.settle().await?;
        self.flush_all().await;
        tracing::info!(totals = ?self.totals, "worker stopped");
        Ok(self.totals)
    }

    /// One poll and everything polled so far through the whole protocol: nothing is left
    /// evaluated but unfinished when it returns.
    pub async fn step(&mut self) -> Result<(), WorkerError> {
        self.advance().await?;
        self.settle().await
    }

    /// Finishes the pending batch, if any (on shutdown, and for [`Worker::step`]).
    async fn settle(&mut self) -> Result<(), WorkerError> {
        if let Some(pending) = self.pending.take() {
            let finishing = self.spawn_finish(pending.batches, pending.written);
            self.finished_or_redone(finishing.task, pending.work, pending.started)
                .await?;
        }
        Ok(())
    }

    /// One poll; the batch evaluated by the previous call is persisted, published and
    /// committed while this poll's records are evaluated, which then wait for the next call.
    async fn advance(&mut self) -> Result<(), WorkerError> {
        self.apply_rebalances().await;
        // With a batch waiting, take only what is already fetched: its finishing starts
        // after this poll, and must not sit out a linger or an idle wait.
        let (linger, idle) = if self.pending.is_some() {
            (Duration::ZERO, Duration::ZERO)
        } else {
            (Duration::from_millis(self.settings.linger_ms), IDLE_POLL)
        };
        let records = match self
            .log
            .poll_batch(self.settings.batch_size, linger, idle)
            .await
        {
            Ok(r) => {
                // Only records show the broker serves this member again. An empty poll (the
                // idle wait ran out) also comes between the failures of an outage, once the
                // group revoked the partitions: forgetting there logged every failure again,
                // several lines a second.
                if !r.is_empty() {
                    self.poll_failures.clear();
                }
                r
            }
            Err(e) => {
                let pause = Duration::from_millis(self.settings.retry_min_ms);
                let Some(pause) = protocol::after_poll_failure(e.class(), pause) else {
                    return Err(e.into());
                };
                metrics().retries.with_label_values(&["poll"]).inc();
                if let Some(left_out) = self.poll_failures.admit(&e.to_string(), Instant::now()) {
                    tracing::warn!(error = %e, left_out, "poll failed; retrying");
                }
                self.settle().await?;
                tokio::time::sleep(pause).await;
                return Ok(());
            }
        };
        // Ownership changes that came with this poll (librdkafka runs the rebalance callbacks
        // inside it) apply before its records: a partition revoked mid-poll is another
        // member's now, which replays it from the committed offset, so its records here are
        // dropped rather than evaluated, written and committed by a second writer; and one
        // revoked and assigned back starts over with a fresh cache and epoch.
        self.apply_rebalances().await;
        self.check_exclusive()?;
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
        // Start finishing the previous batch, then evaluate this one meanwhile.
        let mut finishing = self.pending.take().map(|pending| {
            let finishing = self.spawn_finish(pending.batches, pending.written);
            (finishing, pending.work, pending.started)
        });
        if records.is_empty() {
            if let Some((finishing, previous, started)) = finishing {
                self.finished_or_redone(finishing.task, previous, started)
                    .await?;
            }
            return Ok(());
        }
        let started = Instant::now();
        let m = metrics();
        m.batch_size.observe(records.len() as f64);
        for (topic, n) in tally(records.iter().map(|r| r.topic.as_str())) {
            m.records_in.with_label_values(&[topic]).inc_by(n);
        }
        self.totals.records += records.len() as u64;
        let mut work = Work::new();
        for r in records {
            work.entry(r.partition).or_default().push(r);
        }
        tracing::debug!(
            offsets = ?work
                .iter()
                .map(|(p, rs)| (*p, rs.iter().map(|r| r.offset).collect::<Vec<_>>()))
                .collect::<Vec<_>>(),
            "batch polled"
        );
        let evaluated = self
            .evaluate(&work)
            .instrument(tracing::info_span!("evaluate", records = polled))
            .await;
        let evaluated_in = started.elapsed();
        let (evaluated, written) = match (evaluated, finishing.as_mut()) {
            (Ok(batches), Some((finishing, _, _))) => {
                match self
                    .write_ahead(batches, finishing, evaluated_in, polled)
                    .await
                {
                    Ok((batches, ahead)) => (Ok(batches), ahead),
                    Err(e) => (Err(e), false),
                }
            }
            (evaluated, _) => (evaluated, false),
        };
        if let Some((finishing, mut previous, previous_started)) = finishing {
            if let Err(reason) = self.finished(finishing.task, previous_started).await {
                // This batch was evaluated on top of the failed one: both are redone, in
                // offset order, from what the store holds.
                for (p, records) in work {
                    previous.entry(p).or_default().extend(records);
                }
                return self.redo(previous, previous_started, reason).await;
            }
        }
        match evaluated {
            Ok(batches) => {
                self.pending = Some(Evaluated {
                    work,
                    batches,
                    started,
                    written,
                })
            }
            Err(reason) => self.redo(work, started, reason).await?,
        }
        Ok(())
    }

    /// Persists (unless `written` ahead), publishes and commits `batches` in a task of its
    /// own (traced as `finish`).
    fn spawn_finish(&self, mut batches: Vec<(i32, Batch)>, written: bool) -> Finishing {
        let records: usize = batches.iter().map(|(_, b)| b.processed.len()).sum();
        let span = tracing::info_span!("finish", records, written_ahead = written);
        let finisher = self.finisher();
        let (signal, durable) = if written {
            (None, None)
        } else {
            let (signal, durable) = tokio::sync::oneshot::channel();
            (Some(signal), Some(durable))
        };
        let task = async move {
            let write = match signal {
                None => None,
                Some(signal) => {
                    let took = finisher.write(&mut batches).await?;
                    // The receiver is gone when the worker wrote nothing ahead: nothing waits.
                    let _ = signal.send(());
                    Some(took)
                }
            };
            let (batches, deliver) = finisher.deliver(batches).await?;
            Ok(Finished {
                batches,
                write,
                deliver,
            })
        };
        Finishing {
            task: tokio::spawn(task.instrument(span)),
            durable,
            since: Instant::now(),
        }
    }

    /// Writes `batches` (from a poll of `polled` records, evaluated in `evaluated_in`) ahead
    /// if `pipeline.write_ahead` allows it, the poll found the worker keeping up, the
    /// previous batch's `finishing` is still running and [`write_ahead::worth_it`] says so:
    /// after the previous batch's write is durable, beside its delivery. Returns the batches
    /// and whether they were written; an error if the write failed (they are redone).
    async fn write_ahead(
        &mut self,
        mut batches: Vec<(i32, Batch)>,
        finishing: &mut Finishing,
        evaluated_in: Duration,
        polled: usize,
    ) -> Result<(Vec<(i32, Batch)>, bool), BatchError> {
        if !self.settings.write_ahead
            || !write_ahead::keeping_up(polled, self.settings.batch_size)
            || finishing.task.is_finished()
        {
            return Ok((batches, false));
        }
        let was_written = finishing.durable.is_none();
        let remaining = self
            .estimates
            .remaining(was_written, finishing.since.elapsed());
        if !write_ahead::worth_it(&self.estimates, remaining, evaluated_in) {
            return Ok((batches, false));
        }
        // Batches are written in the order they were evaluated: this one after the
        // previous one's write. If that write failed, so does its finish: both are redone.
        if let Some(durable) = finishing.durable.take() {
            if durable.await.is_err() {
                return Ok((batches, false));
            }
        }
        for (p, batch) in &mut batches {
            if let Some(partition) = self.partitions.get_mut(p) {
                partition.write_ahead_outbox(&mut batch.write);
            }
        }
        let took = self.finisher().write(&mut batches).await?;
        self.estimates.observe_write(took);
        metrics().batches_written_ahead.inc();
        Ok((batches, true))
    }

    fn finisher(&self) -> Finisher<L, S> {
        Finisher {
            log: Arc::clone(&self.log),
            store: Arc::clone(&self.store),
            dead_letter_topic: self.topics.dead_letter.clone(),
            retry_min: Duration::from_millis(self.settings.retry_min_ms),
            retry_max: Duration::from_millis(self.settings.retry_max_ms),
            shutdown: self.shutdown.clone(),
        }
    }

    /// Waits for a finishing batch; on success its partitions learn the commit and its stats
    /// are counted. A failure is returned for the caller to redo the batch's records.
    async fn finished(&mut self, task: FinishTask, started: Instant) -> Result<(), BatchError> {
        let finished = task.await.unwrap_or_else(|e| Err(BatchError::Task(e)))?;
        if let Some(took) = finished.write {
            self.estimates.observe_write(took);
        }
        self.estimates.observe_deliver(finished.deliver);
        self.settled(&finished.batches, started);
        Ok(())
    }

    /// Waits for a finishing batch and, if it failed, processes its records (`work`) again.
    async fn finished_or_redone(
        &mut self,
        task: FinishTask,
        work: Work,
        started: Instant,
    ) -> Result<(), WorkerError> {
        match self.finished(task, started).await {
            Ok(()) => Ok(()),
            Err(reason) => self.redo(work, started, reason).await,
        }
    }

    /// After batches were committed: their partitions learn the commit, their stats count.
    fn settled(&mut self, batches: &[(i32, Batch)], started: Instant) {
        for (p, b) in batches {
            if let Some(partition) = self.partitions.get_mut(p) {
                partition.committed(&b.processed);
            }
            self.count(&b.stats);
        }
        self.totals.batches += 1;
        metrics()
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
    }

    /// Processes `work` again through the sequential protocol, after a failure (`reason`)
    /// that voided its evaluation: caches dropped, consumption paused, backoff, retries.
    async fn redo(
        &mut self,
        work: Work,
        started: Instant,
        error: BatchError,
    ) -> Result<(), WorkerError> {
        match self.process_until_done(work, Some(error)).await? {
            Attempt::Done(batches) => self.settled(&batches, started),
            Attempt::Abandoned => {
                tracing::info!("batch abandoned after a rebalance; the new owner replays it")
            }
        }
        Ok(())
    }

    fn count(&mut self, stats: &Stats) {
        let m = metrics();
        self.totals.applied += stats.applied;
        self.totals.duplicates += stats.duplicates.len() as u64;
        self.totals.redelivered += stats.redelivered;
        self.totals.dead_letters += stats.dead_letters.len() as u64;
        m.actions_processed
            .with_label_values(&["applied"])
            .inc_by(stats.applied);
        m.actions_processed
            .with_label_values(&["duplicate"])
            .inc_by(stats.duplicates.len() as u64);
        for reason in &stats.duplicates {
            m.duplicates.with_label_values(&[reason]).inc();
        }
        m.actions_processed
            .with_label_values(&["redelivered"])
            .inc_by(stats.redelivered);
        m.actions_processed
            .with_label_values(&["ignored"])
            .inc_by(stats.ignored);
        for reason in &stats.dead_letters {
            m.dead_letters.with_label_values(&[reason]).inc();
        }
        for (reward_type, n) in tally(stats.granted.iter().map(String::as_str)) {
            m.rewards_granted
                .with_label_values(&[reward_type])
                .inc_by(n);
        }
    }

    /// The sequential protocol, retried until `work` is done or abandoned, as
    /// [`protocol::Redo`] decides. `failed`: the first attempt already failed (a pipelined
    /// batch), so it starts with the backoff.
    async fn process_until_done(
        &mut self,
        mut work: Work,
        failed: Option<BatchError>,
    ) -> Result<Attempt, WorkerError> {
        let mut redo = Redo::new(
            Duration::from_millis(self.settings.retry_min_ms),
            Duration::from_millis(self.settings.retry_max_ms),
        );
        let mut failure = failed;
        loop {
            if let Some(error) = failure.take() {
                let AfterFailure::Redo { wait, pause } = redo.failed(error.class()) else {
                    tracing::error!(%error, class = error.class().as_str(), "batch failed; stopping");
                    return Err(error.into());
                };
                self.totals.retries += 1;
                metrics().retries.with_label_values(&[error.stage()]).inc();
                tracing::warn!(%error, backoff_ms = wait.as_millis() as u64, "batch failed; pausing and retrying");
                for p in work.keys() {
                    if let Some(partition) = self.partitions.get_mut(p) {
                        partition.reset();
                    }
                }
                if pause {
                    self.log.set_paused(true)?;
                    metrics().partitions_paused.set(self.assigned_count());
                    self.readiness.set(
                        Condition::Paused,
                        format!("partitions paused while a failed batch is retried: {error}"),
                    );
                }
                let stopping = self.wait_or_stop(wait).await;
                if !stopping {
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
                }
                match redo.waited(stopping, !work.is_empty()) {
                    AfterWait::Attempt => {}
                    AfterWait::Abandon { resume } => {
                        // Shutting down: nothing of this batch was committed, a restart
                        // replays it. Revoked: the new owner replays it.
                        if resume {
                            self.resume()?;
                        }
                        return Ok(Attempt::Abandoned);
                    }
                }
            }
            let attempt = match self.evaluate(&work).await {
                Ok(batches) => self.finisher().finish(batches).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok(batches) => {
                    if redo.done() {
                        self.resume()?;
                    }
                    return Ok(Attempt::Done(batches));
                }
                Err(error) => failure = Some(error),
            }
        }
    }

    /// Consumption resumes after a redo: the partitions are no longer paused.
    fn resume(&mut self) -> Result<(), WorkerError> {
        self.log.set_paused(false)?;
        metrics().partitions_paused.set(0);
        self.readiness.clear(Condition::Paused);
        Ok(())
    }

    async fn wait_or_stop(&mut self, d: Duration) -> bool {
        sleep_or_stop(&mut self.shutdown.clone(), d).await
    }

    /// Step 2: evaluates each partition's records (each partition the single writer of its
    /// users), taking partitions not taken yet.
    async fn evaluate(&mut self, work: &Work) -> Result<Vec<(i32, Batch)>, BatchError> {
        let mut batches = Vec::with_capacity(work.len());
        for (p, records) in work {
            if !self.partitions.contains_key(p) {
                self.take_partition(*p)
                    .await
                    .map_err(|source| BatchError::Take {
                        partition: *p,
                        source,
                    })?;
            }
            // The user-cache budget is shared equally by the partitions owned now.
            let share = self
                .settings
                .cache_mb
                .saturating_mul(1 << 20)
                .checked_div(self.owned.len().max(1))
                .unwrap_or(usize::MAX);
            let partition = self.partitions.get_mut(p).expect("just taken");
            partition.set_cache_budget(share);
            let load = Instant::now();
            let batch = partition
                .process(self.store.as_ref(), &self.inputs, &self.topics, records)
                .await
                .map_err(|e| {
                    metrics().store_errors.with_label_values(&["load"]).inc();
                    BatchError::Load(e)
                })?;
            metrics()
                .store_seconds
                .with_label_values(&["load"])
                .observe(load.elapsed().as_secs_f64());
            batches.push((*p, batch));
        }
        Ok(batches)
    }

    /// Whether the record's topic-partition is assigned to this member.
    fn owns(&self, record: &InRecord) -> bool {
        self.owned
            .get(&record.partition)
            .is_some_and(|topics| topics.contains(record.topic.as_str()))
    }

    async fn take_partition(&mut self, p: i32) -> Result<(), StoreError> {
        let mut partition = Partition::new(&self.group, p, self.settings.cache_users)
            .with_amounts(Arc::clone(&self.amounts));
        let epoch = self
            .store
            .claim_partition(&self.group, &format!("p{p}"))
            .await?;
        partition.set_epoch(epoch);
        tracing::info!(partition = p, epoch, "partition taken");
        self.partitions.insert(p, partition);
        Ok(())
    }

    /// With the embedded store, stops the worker once its group has been shared longer than
    /// the guard's grace (see [`super::exclusive`]).
    fn check_exclusive(&mut self) -> Result<(), WorkerError> {
        let Some(guard) = self.exclusive.as_mut() else {
            return Ok(());
        };
        let owned = self.assigned.then_some(self.owned.len());
        match guard.observe(owned, Instant::now()) {
            Verdict::Whole | Verdict::Short { new: false, .. } => Ok(()),
            Verdict::Short { owned, new: true } => {
                tracing::warn!(
                    owned,
                    partitions = guard.partitions(),
                    group = %self.group,
                    "the embedded store's worker shares its group with another member; it stops \
                     unless it owns every partition again within the grace period \
                     (store.exclusive_grace_seconds)"
                );
                Ok(())
            }
            Verdict::Shared { owned } => Err(WorkerError::SharedGroup {
                group: self.group.clone(),
                owned,
                partitions: guard.partitions(),
                grace_secs: guard.grace().as_secs(),
            }),
        }
    }

    async fn apply_rebalances(&mut self) {
        for event in self.log.take_rebalances() {
            match event {
                Rebalance::Assigned(parts) => {
                    metrics().rebalances.with_label_values(&["assign"]).inc();
                    // Assigned, even nothing (a group with more members than partitions):
                    // this member is in the group and doing its share.
                    self.readiness.clear(Condition::Assignment);
                    self.assigned = true;
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
                            // Nothing is being persisted or published during a poll. A batch
                            // evaluated (and maybe written ahead) but not published loses this
                            // partition's share: the new owner replays those records from the
                            // committed offset, and publishes a written share's records from
                            // the partition's outbox.
                            let mut applied = Vec::new();
                            if let Some(pending) = self.pending.as_mut() {
                                pending.work.remove(&p);
                                let (share, kept) = std::mem::take(&mut pending.batches)
                                    .into_iter()
                                    .partition(|(id, _)| *id == p);
                                pending.batches = kept;
                                // A written share was applied, durably, by this member: it
                                // counts here, and the new owner counts it as redelivered.
                                if pending.written {
                                    applied = share;
                                }
                            }
                            for (_, batch) in &applied {
                                self.count(&batch.stats);
                            }
                            if let Some(partition) = self.partitions.remove(&p) {
                                tracing::info!(partition = p, "partition revoked; cache dropped");
                                drop(partition);
                            }
                        }
                    }
                }
            }
        }
        metrics().partitions_assigned.set(self.assigned_count());
    }

    /// Topic-partitions assigned to this member.
    fn assigned_count(&self) -> i64 {
        let count: usize = self.owned.values().map(BTreeSet::len).sum();
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    /// On shutdown, every batch committed: empty the stored outboxes, so the next owner has
    /// nothing to consider re-publishing. Best effort: a leftover outbox only costs repeats
    /// (same event ids) of events whose cause this owner had not seen committed.
    async fn flush_all(&mut self) {
        let writes: Vec<_> = self
            .partitions
            .values_mut()
            .flat_map(Partition::clear_outboxes)
            .collect();
        if let Err(e) = self.store.write_batches(writes).await {
            tracing::warn!(error = %e, "could not clear the outboxes; a restart may re-publish (same event ids)");
        }
    }
}

impl<L: Log, S: StateStore + ?Sized> Finisher<L, S> {
    /// Steps 3–5 for evaluated batches: persist, publish, commit, in that order, each only
    /// after the previous one succeeded (a batch redone after a failure). Returns the
    /// batches (their writes and records taken).
    async fn finish(self, mut batches: Vec<(i32, Batch)>) -> Result<Vec<(i32, Batch)>, BatchError> {
        self.write(&mut batches).await?;
        Ok(self.deliver(batches).await?.0)
    }

    /// Step 3 for evaluated batches: persist every partition's writes (taken from the
    /// batches). Returns how long it took.
    async fn write(&self, batches: &mut [(i32, Batch)]) -> Result<Duration, BatchError> {
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
            return Err(BatchError::Write(e));
        }
        Ok(write.elapsed())
    }

    /// Steps 4–5 for written batches: publish, then commit once every record is
    /// acknowledged. Returns the batches (their records taken) and how long it took.
    async fn deliver(
        mut self,
        mut batches: Vec<(i32, Batch)>,
    ) -> Result<(Vec<(i32, Batch)>, Duration), BatchError> {
        let started = Instant::now();
        // Step 4: publish effects and dead letters; wait for every acknowledgement.
        let mut out = Vec::new();
        let mut origins = Vec::new();
        for (i, (_, b)) in batches.iter_mut().enumerate() {
            for entry in std::mem::take(&mut b.publish) {
                out.push(entry.record);
                origins.push((i, entry.cause));
            }
        }
        let publish = Instant::now();
        let letters = self.publish(&out, &origins).await?;
        metrics()
            .log_seconds
            .with_label_values(&["publish"])
            .observe(publish.elapsed().as_secs_f64());
        let sent = out
            .iter()
            .enumerate()
            .filter(|(i, _)| !letters.replaced(*i));
        let kinds = sent.map(|(_, r)| r).chain(&letters.records).map(|r| {
            let kind = r.header("questline-event-type").unwrap_or("internal");
            (&*r.topic, kind)
        });
        for ((topic, kind), n) in tally(kinds) {
            metrics()
                .events_out
                .with_label_values(&[topic, kind])
                .inc_by(n);
        }
        for i in letters.batches {
            batches[i].1.stats.dead_letters.push(oversize::REASON_CLASS);
        }
        // Step 5: commit the offsets, only now: each topic-partition's highest processed
        // offset (one entry per partition, not a copy of every record's).
        let mut highest: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for (t, p, o) in batches.iter().flat_map(|(_, b)| &b.processed) {
            let slot = highest.entry((&**t, *p)).or_insert(*o);
            *slot = (*slot).max(*o);
        }
        let processed: Vec<(String, i32, i64)> = highest
            .into_iter()
            .map(|((t, p), o)| (t.to_string(), p, o))
            .collect();
        let mut backoff = self.retry_min;
        let commit = Instant::now();
        loop {
            match self.log.commit(&processed).await {
                Ok(()) => break,
                Err(e) if !protocol::retry_commit(e.class()) => return Err(BatchError::Commit(e)),
                Err(e) => {
                    metrics().retries.with_label_values(&["commit"]).inc();
                    tracing::warn!(error = %e, "commit failed; retrying");
                    if self.wait_or_stop(backoff).await {
                        break; // already durable and published: a replay skips it by watermark
                    }
                    backoff = (backoff * 2).min(self.retry_max);
                }
            }
        }
        metrics()
            .log_seconds
            .with_label_values(&["commit"])
            .observe(commit.elapsed().as_secs_f64());
        Ok((batches, started.elapsed()))
    }

    async fn wait_or_stop(&mut self, d: Duration) -> bool {
        sleep_or_stop(&mut self.shutdown, d).await
    }

    /// Publishes `out` (each record's batch index and cause in `origins`) and waits for every
    /// acknowledgement. A record refused for its size is handled as
    /// [`protocol::after_too_large`] decides: published again alone, then replaced by a dead
    /// letter of its own ([`oversize`]). Records retried alone go out after the rest of the
    /// batch.
    async fn publish(
        &self,
        out: &[OutRecord],
        origins: &[(usize, SourceRef)],
    ) -> Result<Replaced, BatchError> {
        let mut replaced = Replaced::default();
        let published = self.log.publish(out).await.map_err(BatchError::Publish)?;
        for i in published.too_large {
            let (record, (batch, cause)) = (&out[i], &origins[i]);
            let mut how = Refused::InBatch;
            let mut letter_bytes = 0;
            loop {
                match protocol::after_too_large(how) {
                    AfterTooLarge::PublishAlone => {
                        if self.publish_one(record).await? {
                            break;
                        }
                        how = Refused::Alone;
                    }
                    AfterTooLarge::DeadLetter => {
                        let letter = oversize::dead_letter(
                            record,
                            cause,
                            &self.dead_letter_topic,
                            Utc::now(),
                        );
                        tracing::warn!(
                            topic = %record.topic,
                            key = %record.key,
                            bytes = record.size(),
                            source = %crate::core::ids::cause_of(cause),
                            "output refused as too large; publishing a dead letter in its place"
                        );
                        if self.publish_one(&letter).await? {
                            replaced.indexes.push(i);
                            replaced.batches.push(*batch);
                            replaced.records.push(letter);
                            break;
                        }
                        letter_bytes = letter.size();
                        how = Refused::AsDeadLetter;
                    }
                    AfterTooLarge::Stop => {
                        return Err(BatchError::DeadLetterTooLarge {
                            bytes: letter_bytes,
                        })
                    }
                }
            }
        }
        Ok(replaced)
    }

    /// Publishes one record on its own: whether it was accepted (not refused for its size).
    async fn publish_one(&self, record: &OutRecord) -> Result<bool, BatchError> {
        let published = self
            .log
            .publish(std::slice::from_ref(record))
            .await
            .map_err(BatchError::Publish)?;
        Ok(published.too_large.is_empty())
    }
}

/// The outputs of a publish that were replaced by dead letters ([`oversize`]).
#[derive(Default)]
struct Replaced {
    /// Indexes of the replaced records among those published.
    indexes: Vec<usize>,
    /// The batch (index among the finished batches) each came from.
    batches: Vec<usize>,
    /// The dead letters published in their place.
    records: Vec<OutRecord>,
}

impl Replaced {
    fn replaced(&self, i: usize) -> bool {
        self.indexes.contains(&i)
    }
}

/// Sleeps for `d` unless shutdown comes first; returns true on shutdown.
async fn sleep_or_stop(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    }
}

/// How many times each key occurs, in order of first occurrence: a batch's records have a
/// handful of topics, reward types or event types, so a labelled metric is looked up once
/// per key and batch rather than once per record.
fn tally<K: PartialEq>(keys: impl IntoIterator<Item = K>) -> Vec<(K, u64)> {
    let mut counts: Vec<(K, u64)> = Vec::new();
    for key in keys {
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::tally;

    #[test]
    fn tally_counts_each_key_in_order_of_first_occurrence() {
        assert_eq!(
            tally(["a", "b", "a", "c", "a"]),
            vec![("a", 3), ("b", 1), ("c", 1)]
        );
        assert_eq!(tally(Vec::<(&str, &str)>::new()), vec![]);
    }
}
