//! The worker loop and the commit protocol (docs/design.md, "Commit protocol") under faults, on the in-process log:
//! an unavailable store, a crash between publishing and committing (duplicate delivery), a
//! crash between writing and publishing, a rebalance, a cache smaller than a batch, a
//! zombie partition owner; and the amount stage's bookkeeping (one call per request across a
//! redone batch, a repeated request and a new owner).
//!
//! Expected events and states come from the pure engine fed the same records at the same
//! coordinates; the catalog (`tests/kafka/catalog.toml`) has per-user challenges only, so the
//! outcome does not depend on how users interleave across partitions.

use crate::support::inprocess::committed_of;
use crate::support::kafka::{actions, assert_same_events, unlimited_catalog};
use crate::support::wait;
use async_trait::async_trait;
use questline::core::catalog::Catalog;
use questline::core::engine::Engine;
use questline::core::events::Stream;
use questline::core::mapping::Mapping;
use questline::core::model::SourceRef;
use questline::pipeline::input::Inputs;
use questline::pipeline::log::{InRecord, Log, LogError, OutRecord, Published, Rebalance};
use questline::pipeline::memory::MemoryLog;
use questline::pipeline::partition::Partition;
use questline::pipeline::worker::{Totals, Worker};
use questline::settings::{PipelineSettings, Topics};
use questline::store::embedded::EmbeddedStore;
use questline::store::{
    BatchWrite, ClaimRecord, HistoryEntry, ResourceRecord, StateStore, StoreError, UserKey,
    UserRecord,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const INPUT: &str = "actions";
const PARTITIONS: i32 = 4;

/// An injected-fault mock of the store (a test double, not a store of its own): the real
/// embedded store behind a switch. While the switch is on, every call fails with a transient
/// [`StoreError::Cql`] (a request timeout), as an unreachable or overloaded ScyllaDB would; calls are
/// counted either way. `writes_to_fail` fails just the next writes, reads unaffected.
struct FlakyStore {
    inner: EmbeddedStore,
    failing: AtomicBool,
    writes_to_fail: AtomicU64,
    failed: AtomicU64,
    calls: AtomicU64,
}

impl FlakyStore {
    fn check_write(&self) -> Result<(), StoreError> {
        let failed = self
            .writes_to_fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match failed {
            Ok(_) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                Err(injected("injected fault: one write fails"))
            }
            Err(_) => Ok(()),
        }
    }

    fn new(inner: EmbeddedStore) -> Self {
        FlakyStore {
            inner,
            failing: AtomicBool::new(false),
            writes_to_fail: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn failed(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    fn check(&self, what: &str) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(injected(format!(
                "injected fault: {what} while the store is down"
            )));
        }
        Ok(())
    }
}

/// The error an unreachable ScyllaDB gives: a request timeout (transient).
fn injected(what: impl Into<String>) -> StoreError {
    StoreError::Cql {
        what: what.into(),
        source: Box::new(scylla::errors::ExecutionError::RequestTimeout(
            Duration::from_secs(5),
        )),
    }
}

#[async_trait]
impl StateStore for FlakyStore {
    async fn load_users(&self, keys: &[UserKey]) -> Result<Vec<Option<UserRecord>>, StoreError> {
        self.check("load_users")?;
        self.inner.load_users(keys).await
    }

    async fn load_resources(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<ResourceRecord>>, StoreError> {
        self.check("load_resources")?;
        self.inner.load_resources(keys).await
    }

    async fn load_outbox(&self, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.check("load_outbox")?;
        self.inner.load_outbox(owner).await
    }

    async fn write_batch(&self, batch: &BatchWrite) -> Result<(), StoreError> {
        self.check("write_batch")?;
        self.check_write()?;
        self.inner.write_batch(batch).await
    }

    async fn write_batches(&self, batches: Vec<BatchWrite>) -> Result<(), StoreError> {
        self.check("write_batches")?;
        self.check_write()?;
        self.inner.write_batches(batches).await
    }

    async fn history(
        &self,
        key: &UserKey,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), StoreError> {
        self.check("history")?;
        self.inner.history(key, page, per_page).await
    }

    async fn claim(
        &self,
        key: &UserKey,
        claim_id: &str,
    ) -> Result<Option<ClaimRecord>, StoreError> {
        self.check("claim")?;
        self.inner.claim(key, claim_id).await
    }

    async fn people_finished(&self, tenant: &str) -> Result<BTreeMap<u32, u64>, StoreError> {
        self.check("people_finished")?;
        self.inner.people_finished(tenant).await
    }

    async fn claim_partition(&self, group: &str, partition: &str) -> Result<i64, StoreError> {
        self.check("claim_partition")?;
        self.inner.claim_partition(group, partition).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check("ping")?;
        self.inner.ping().await
    }
}

/// A log, a store and the engine's view of what they should end up holding.
struct Rig {
    log: Arc<MemoryLog>,
    store: Arc<FlakyStore>,
    inputs: Inputs,
    topics: Topics,
    catalog: Arc<Catalog>,
    mapping: Mapping,
    _dir: tempfile::TempDir,
}

fn settings(batch_size: usize, cache_users: usize) -> PipelineSettings {
    PipelineSettings {
        batch_size,
        linger_ms: 0,
        cache_users,
        retry_min_ms: 10,
        retry_max_ms: 50,
        ..PipelineSettings::default()
    }
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(questline::files::load_catalog(&unlimited_catalog()).unwrap());
        let mut mapping =
            questline::files::load_mapping(&crate::support::root().join("mappings/seed.toml"))
                .unwrap();
        mapping.topics = vec![INPUT.to_string()];
        let topics = Topics::default();
        let inputs = Inputs::new(Arc::clone(&catalog), &[mapping.clone()], &topics);
        let log = MemoryLog::new(PARTITIONS);
        log.subscribe(&inputs.topics());
        let store = Arc::new(FlakyStore::new(
            EmbeddedStore::open(dir.path().join("store")).unwrap(),
        ));
        Rig {
            log,
            store,
            inputs,
            topics,
            catalog,
            mapping,
            _dir: dir,
        }
    }

    fn worker<L: Log>(
        &self,
        log: Arc<L>,
        settings: PipelineSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Worker<L, FlakyStore> {
        Worker::new(
            log,
            Arc::clone(&self.store),
            self.inputs.clone(),
            self.topics.clone(),
            settings,
            "g".into(),
            shutdown,
        )
    }

    fn append(&self, actions: &[(String, String)]) {
        for (key, value) in actions {
            self.log.append(INPUT, key, value.clone().into_bytes());
        }
    }

    fn committed_total(&self) -> i64 {
        committed_of(&self.log, INPUT)
    }

    /// Records of the input topic handed to the worker and not committed yet.
    fn in_flight(&self) -> i64 {
        let committed = self.log.committed();
        self.log
            .positions()
            .iter()
            .filter(|((t, _), _)| t == INPUT)
            .map(|(k, pos)| pos - committed.get(k).copied().unwrap_or(0))
            .sum()
    }

    async fn wait_committed(&self, total: i64, timeout: Duration) {
        wait::committed(total, timeout, || self.committed_total()).await
    }

    /// The engine over every input record so far, in each partition's offset order.
    fn expected(&self) -> (BTreeMap<String, Value>, Engine) {
        let mut engine = Engine::new(Arc::clone(&self.catalog));
        let mut rewards = BTreeMap::new();
        for r in self.log.records(INPUT) {
            let source = SourceRef::new(r.topic, r.partition, r.offset);
            for event in engine
                .process_record(&self.mapping.compile(), &r.payload, &source, r.timestamp)
                .events
            {
                if event.stream() == Stream::Rewards {
                    rewards.insert(
                        event.event_id.to_string(),
                        serde_json::to_value(&event).unwrap(),
                    );
                }
            }
        }
        (rewards, engine)
    }

    /// The rewards topic by event id, and how many records repeated an id. Panics when an id
    /// comes with two different payloads.
    fn rewards(&self) -> (BTreeMap<String, Value>, usize) {
        let mut events = BTreeMap::new();
        let mut copies = 0;
        for r in self.log.records(&self.topics.rewards) {
            let v: Value = serde_json::from_slice(&r.payload).unwrap();
            let id = v["eventId"].as_str().unwrap().to_string();
            match events.get(&id) {
                Some(seen) => {
                    assert_eq!(seen, &v, "event {id} published with two payloads");
                    copies += 1;
                }
                None => {
                    events.insert(id, v);
                }
            }
        }
        (events, copies)
    }

    /// Every user's stored state equals the engine's: nothing applied twice or missed.
    async fn assert_states(&self, engine: &Engine, users: usize) {
        let keys: Vec<UserKey> = (0..users)
            .map(|u| UserKey::new("default", format!("u{u}")))
            .collect();
        let stored = self.store.inner.load_users(&keys).await.unwrap();
        for (key, record) in keys.iter().zip(stored) {
            assert_eq!(
                record.map(|r| r.state).as_ref(),
                engine.user(&key.tenant, &key.user_id),
                "state of {}",
                key.user_id
            );
        }
    }

    /// Exactly the engine's events, each once, and the engine's states.
    async fn assert_exactly_once(&self, users: usize) {
        let (want, engine) = self.expected();
        let (got, copies) = self.rewards();
        assert_same_events(&got, &want);
        assert_eq!(copies, 0, "events published more than once");
        self.assert_states(&engine, users).await;
    }

    /// A new process after a crash: the log redelivers from the committed offsets, and a
    /// worker of `batch_size` runs until `total` input records are committed.
    async fn second_life(&self, batch_size: usize, total: i64) -> Totals {
        self.log.subscribe(&self.inputs.topics());
        let (stop, shutdown) = watch::channel(false);
        let worker =
            spawn(self.worker(Arc::clone(&self.log), settings(batch_size, 1_000), shutdown));
        self.wait_committed(total, Duration::from_secs(20)).await;
        stop.send(true).unwrap();
        worker.await.unwrap()
    }
}

/// Runs `worker` in a task until `stop` is signalled.
fn spawn<L: Log>(worker: Worker<L, FlakyStore>) -> tokio::task::JoinHandle<Totals> {
    tokio::spawn(async move { worker.run().await.expect("the worker loop") })
}

/// Pipelining: batch N+1 is evaluated on top of N while N is written. When N's write fails,
/// N+1's evaluation is void too; both are redone from the store, nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_voids_the_batch_evaluated_behind_it_and_both_are_redone_exactly_once() {
    const USERS: usize = 25;
    let rig = Rig::new();
    let all = actions(600, USERS, 11);
    rig.append(&all[..300]);
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(Arc::clone(&rig.log), settings(20, 1_000), shutdown));
    rig.wait_committed(300, Duration::from_secs(20)).await;
    // Several single write failures while a backlog keeps the pipeline full.
    let write_retries = || {
        questline::metrics::metrics()
            .retries
            .with_label_values(&["write"])
            .get()
    };
    let retries_before = write_retries();
    rig.store.writes_to_fail.store(3, Ordering::SeqCst);
    rig.append(&all[300..]);
    rig.wait_committed(600, Duration::from_secs(20)).await;
    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    assert_eq!(rig.store.writes_to_fail.load(Ordering::SeqCst), 0);
    assert!(totals.retries >= 3, "{totals:?}");
    assert!(
        write_retries() >= retries_before + 3,
        "questline_retries_total{{stage=\"write\"}} counts each redone write"
    );
    assert_eq!(totals.applied, 600, "{totals:?}");
    rig.assert_exactly_once(USERS).await;
}

/// On paused time: its waits (the worker's retry pauses and lingers, the test's own sleeps)
/// advance the clock without taking real time; the store's blocking work holds the clock.
#[tokio::test(start_paused = true)]
async fn an_unavailable_store_pauses_without_committing_or_dead_lettering_and_resumes_by_itself() {
    const USERS: usize = 60;
    const BATCH: usize = 50;
    let rig = Rig::new();
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(Arc::clone(&rig.log), settings(BATCH, 1_000), shutdown));
    let all = actions(800, USERS, 4);
    rig.append(&all[..400]);
    rig.wait_committed(400, Duration::from_secs(20)).await;
    let committed = rig.log.committed();

    // The store goes away; records keep coming.
    rig.store.set_failing(true);
    rig.append(&all[400..]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rig.store.failed() > 2, "the worker kept retrying");
    assert!(rig.log.is_paused(), "consumption paused");
    let in_flight = rig.in_flight();
    // At most two batches: the one that failed finishing and the one evaluated behind it.
    assert!(
        (1..=2 * BATCH as i64).contains(&in_flight),
        "at most two batches in flight, not the backlog: {in_flight}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.in_flight(), in_flight, "no more polled while paused");
    assert_eq!(rig.log.committed(), committed, "no offset progress");
    assert!(
        rig.log.records(&rig.topics.dead_letter).is_empty(),
        "good records are not dead letters"
    );
    let failed = rig.store.failed();

    // It comes back: the worker resumes by itself.
    rig.store.set_failing(false);
    rig.wait_committed(800, Duration::from_secs(20)).await;
    assert!(!rig.log.is_paused());
    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    assert!(totals.retries >= failed.min(3), "{totals:?}");
    assert_eq!(totals.applied, 800, "{totals:?}");
    assert!(rig.log.records(&rig.topics.dead_letter).is_empty());
    rig.assert_exactly_once(USERS).await;
}

/// On paused time: its waits (the worker's retry pauses and lingers, the test's own sleeps)
/// advance the clock without taking real time; the store's blocking work holds the clock.
#[tokio::test(start_paused = true)]
async fn a_store_down_from_the_start_loses_nothing_once_it_comes_up() {
    // Down before the worker could take (claim an epoch for) any partition.
    const USERS: usize = 40;
    let rig = Rig::new();
    rig.store.set_failing(true);
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(Arc::clone(&rig.log), settings(100, 1_000), shutdown));
    let all = actions(300, USERS, 5);
    rig.append(&all);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rig.store.failed() > 2);
    assert_eq!(rig.committed_total(), 0);
    rig.store.set_failing(false);
    rig.wait_committed(300, Duration::from_secs(20)).await;
    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    assert_eq!(totals.applied, 300, "{totals:?}");
    rig.assert_exactly_once(USERS).await;
}

/// A fault injected into the in-process log (a mock: no server fails on cue like this).
enum Fault {
    /// Commits are swallowed: the process "dies" after publishing and before its offsets
    /// reach the log.
    CommitsLost,
    /// Publishing fails: the process "dies" after writing its state and before the broker
    /// acknowledged its events.
    PublishFails,
    /// Partition `revoke` is taken away from the member during its first poll that returns
    /// records, as librdkafka's rebalance callback does inside a poll: the records came with
    /// the poll, the revocation with them.
    RevokedMidPoll {
        revoke: i32,
        topics: Vec<String>,
        fired: AtomicBool,
        events: std::sync::Mutex<Vec<Rebalance>>,
    },
    /// The broker is gone and the member has no partitions: every other poll fails with
    /// `AllBrokersDown`, the others find nothing within the idle wait, as librdkafka's
    /// consumer does while it rejoins its group during an outage.
    BrokerGoneWhileIdle { polls: AtomicU64 },
    /// Every publish is acknowledged this long after it is handed over: a broker with a slow
    /// round trip (an injected delay).
    SlowAcks(Duration),
}

/// The in-process log with one [`Fault`]; everything else is passed through.
struct Faulty {
    log: Arc<MemoryLog>,
    fault: Fault,
}

impl Faulty {
    fn new(log: &Arc<MemoryLog>, fault: Fault) -> Arc<Self> {
        Arc::new(Faulty {
            log: Arc::clone(log),
            fault,
        })
    }

    fn revoked_mid_poll(log: &Arc<MemoryLog>, revoke: i32, topics: Vec<String>) -> Arc<Self> {
        Faulty::new(
            log,
            Fault::RevokedMidPoll {
                revoke,
                topics,
                fired: AtomicBool::new(false),
                events: Default::default(),
            },
        )
    }
}

#[async_trait]
impl Log for Faulty {
    async fn poll_batch(
        &self,
        max: usize,
        linger: Duration,
        idle: Duration,
    ) -> Result<Vec<InRecord>, LogError> {
        if let Fault::BrokerGoneWhileIdle { polls } = &self.fault {
            return match polls.fetch_add(1, Ordering::SeqCst) % 2 {
                0 => Err(LogError::Kafka {
                    op: "poll (injected fault: broker gone)",
                    source: rdkafka::error::KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
                    ),
                }),
                _ => Ok(Vec::new()),
            };
        }
        let records = self.log.poll_batch(max, linger, idle).await?;
        if let Fault::RevokedMidPoll {
            revoke,
            topics,
            fired,
            events,
        } = &self.fault
        {
            if !records.is_empty() && !fired.swap(true, Ordering::SeqCst) {
                let parts = topics.iter().map(|t| (t.clone(), *revoke)).collect();
                events.lock().unwrap().push(Rebalance::Revoked(parts));
            }
        }
        Ok(records)
    }
    async fn publish(&self, records: &[OutRecord]) -> Result<Published, LogError> {
        match self.fault {
            Fault::PublishFails => Err(LogError::Kafka {
                op: "publish (injected fault: broker gone)",
                source: rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
                ),
            }),
            Fault::SlowAcks(delay) => {
                tokio::time::sleep(delay).await;
                self.log.publish(records).await
            }
            _ => self.log.publish(records).await,
        }
    }
    async fn commit(&self, processed: &[(String, i32, i64)]) -> Result<(), LogError> {
        match self.fault {
            Fault::CommitsLost => Ok(()),
            _ => self.log.commit(processed).await,
        }
    }
    fn take_rebalances(&self) -> Vec<Rebalance> {
        let mut taken = self.log.take_rebalances();
        if let Fault::RevokedMidPoll { events, .. } = &self.fault {
            taken.append(&mut events.lock().unwrap());
        }
        taken
    }
    fn set_paused(&self, paused: bool) -> Result<(), LogError> {
        self.log.set_paused(paused)
    }
}

/// Counts the log events whose message is `message` (set as the thread's default subscriber).
struct CountEvents {
    message: &'static str,
    seen: Arc<AtomicU64>,
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(Option<String>);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut message = Message(None);
        event.record(&mut message);
        if message.0.as_deref() == Some(self.message) {
            self.seen.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// An outage while the member has no partitions: failed polls alternate with empty ones, and
/// the failure is logged once, not once per failure (an empty poll is no sign the broker is
/// back). The readiness test on tansu saw 14 lines in 6 s of outage from this.
#[tokio::test(flavor = "current_thread")]
async fn failed_polls_between_empty_ones_are_logged_once() {
    use tracing_subscriber::layer::SubscriberExt;
    let seen = Arc::new(AtomicU64::new(0));
    let _logging =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(CountEvents {
            message: "poll failed; retrying",
            seen: Arc::clone(&seen),
        }));
    let rig = Rig::new();
    let log = Faulty::new(
        &rig.log,
        Fault::BrokerGoneWhileIdle {
            polls: AtomicU64::new(0),
        },
    );
    let (_stop, shutdown) = watch::channel(false);
    let mut worker = rig.worker(Arc::clone(&log), settings(40, 1_000), shutdown);
    for _ in 0..40 {
        worker.step().await.unwrap();
    }
    let Fault::BrokerGoneWhileIdle { polls } = &log.fault else {
        unreachable!()
    };
    assert_eq!(polls.load(Ordering::SeqCst), 40, "20 failed, 20 empty");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "20 failures, one line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_publish_and_commit_redelivers_skips_by_watermark_and_republishes_the_same_ids(
) {
    const USERS: usize = 30;
    let rig = Rig::new();
    let all = actions(200, USERS, 6);
    rig.append(&all);
    // First life: every batch evaluated, written and published; no offset committed.
    let (_stop, shutdown) = watch::channel(false);
    let mut first = rig.worker(
        Faulty::new(&rig.log, Fault::CommitsLost),
        settings(40, 1_000),
        shutdown,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while rig.in_flight() < 200 {
        first.step().await.unwrap();
        assert!(Instant::now() < deadline);
    }
    assert_eq!(first.totals().applied, 200);
    drop(first); // the crash: nothing flushed, nothing committed
    assert_eq!(rig.committed_total(), 0);
    let (want, engine) = rig.expected();
    let (before, copies) = rig.rewards();
    assert_same_events(&before, &want);
    assert_eq!(copies, 0);

    // Second life: the same records again, at the same offsets.
    let totals = rig.second_life(40, 200).await;
    assert_eq!(totals.applied, 0, "nothing applied twice: {totals:?}");
    assert_eq!(totals.redelivered, 200, "{totals:?}");
    let (after, copies) = rig.rewards();
    assert_same_events(&after, &want);
    // The outboxes not yet known to be published went out again, with the same ids and
    // payloads (`rewards` checks): at least once, never a new id.
    assert!(copies > 0, "the uncommitted outboxes were re-published");
    rig.assert_states(&engine, USERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_write_and_publish_publishes_the_stored_outbox_exactly_once() {
    const USERS: usize = 30;
    let rig = Rig::new();
    let all = actions(120, USERS, 7);
    rig.append(&all);
    // First life: the whole input in one batch, state written, publishing fails, and the
    // process stops there (shutdown already requested, so no retry).
    let (_stop, shutdown) = watch::channel(true);
    let mut first = rig.worker(
        Faulty::new(&rig.log, Fault::PublishFails),
        settings(1_000, 1_000),
        shutdown,
    );
    first.step().await.unwrap();
    assert_eq!(first.totals().retries, 1);
    drop(first);
    assert_eq!(rig.committed_total(), 0);
    assert!(rig.rewards().0.is_empty(), "nothing published yet");

    // Second life: the records are skipped by the stored watermark, and the stored outboxes
    // are the events, published once.
    rig.log.set_paused(false).unwrap(); // a new process starts unpaused
    let totals = rig.second_life(1_000, 120).await;
    assert_eq!((totals.applied, totals.redelivered), (0, 120), "{totals:?}");
    rig.assert_exactly_once(USERS).await;
}

/// A batch is written ahead while the one before it is still being published: each goes to
/// one of its partition's two outboxes. A crash with both written and neither published must
/// find both batches' records, and publish each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_two_batches_written_and_unpublished_publishes_both_outboxes_once() {
    const USERS: usize = 30;
    let rig = Rig::new();
    let all = actions(160, USERS, 9);
    rig.append(&all);
    // First life: partition 0's records evaluated and written in two batches, as the worker
    // writes a batch ahead, and the process dies before publishing either.
    let polled = rig
        .log
        .poll_batch(1_000, Duration::ZERO, Duration::ZERO)
        .await
        .unwrap();
    let mine: Vec<InRecord> = polled.into_iter().filter(|r| r.partition == 0).collect();
    assert!(mine.len() > 10, "partition 0 has records: {}", mine.len());
    let (first_half, second_half) = mine.split_at(mine.len() / 2);
    let mut partition = Partition::new("g", 0, 1_000);
    for (ahead, half) in [(false, first_half), (true, second_half)] {
        let mut batch = partition
            .process(rig.store.as_ref(), &rig.inputs, &rig.topics, half)
            .await
            .unwrap();
        if ahead {
            partition.write_ahead_outbox(&mut batch.write);
        }
        assert!(
            !batch.publish.is_empty(),
            "the batch has records to publish"
        );
        rig.store.write_batches(vec![batch.write]).await.unwrap();
    }
    drop(partition);
    assert!(rig.rewards().0.is_empty(), "nothing published yet");

    // Second life: partition 0's records are skipped by the stored watermark, and both stored
    // outboxes are published, each record once; the other partitions are processed afresh.
    let totals = rig.second_life(1_000, 160).await;
    assert_eq!(totals.redelivered, mine.len() as u64, "{totals:?}");
    assert_eq!(totals.applied, (160 - mine.len()) as u64, "{totals:?}");
    rig.assert_exactly_once(USERS).await;
}

/// With acknowledgements slower than a batch's evaluation (an injected 20 ms round trip) and
/// actions arriving steadily, batches are written while the batch before them is being
/// acknowledged, and nothing is lost or published twice. None is with
/// `pipeline.write_ahead = false`, nor in a backlog, where every poll fills its batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_written_ahead_beside_slow_acknowledgements_exactly_once() {
    const USERS: usize = 30;
    for (write_ahead, backlog) in [(true, false), (false, false), (true, true)] {
        let rig = Rig::new();
        let all = actions(400, USERS, 12);
        if backlog {
            rig.append(&all);
        }
        let ahead = || questline::metrics::metrics().batches_written_ahead.get();
        let before = ahead();
        let (stop, shutdown) = watch::channel(false);
        let worker = spawn(rig.worker(
            Faulty::new(&rig.log, Fault::SlowAcks(Duration::from_millis(20))),
            PipelineSettings {
                write_ahead,
                ..settings(if backlog { 20 } else { 1_000 }, 1_000)
            },
            shutdown,
        ));
        if !backlog {
            for chunk in all.chunks(10) {
                rig.append(chunk);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        rig.wait_committed(400, Duration::from_secs(30)).await;
        stop.send(true).unwrap();
        let totals = worker.await.unwrap();
        assert_eq!(totals.applied, 400, "{totals:?}");
        let written_ahead = ahead() - before;
        if write_ahead && !backlog {
            assert!(written_ahead > 0, "{totals:?}");
        } else {
            assert_eq!(written_ahead, 0, "backlog {backlog}: {totals:?}");
        }
        rig.assert_exactly_once(USERS).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_back_to_the_same_member_republishes_nothing() {
    const USERS: usize = 40;
    let rig = Rig::new();
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(Arc::clone(&rig.log), settings(25, 1_000), shutdown));
    let all = actions(400, USERS, 8);
    rig.append(&all[..200]);
    rig.wait_committed(200, Duration::from_secs(20)).await;
    // Every partition revoked and assigned again (a member joined or left).
    rig.log.rebalance();
    rig.append(&all[200..]);
    rig.wait_committed(400, Duration::from_secs(20)).await;
    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    assert_eq!(totals.applied, 400, "{totals:?}");
    rig.assert_exactly_once(USERS).await;
}

/// The worker evaluates a batch while the previous one is still being written, so a user of
/// both must come from the cache, never from the store, even when the cache shrinks back
/// after a batch that grew it: batch A (40 users, not written yet) then batch B (20 users,
/// among them A's least recently used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_of_an_unwritten_batch_is_not_reloaded_when_the_cache_shrinks() {
    let rig = Rig::new();
    let store = &rig.store.inner;
    let record = |offset: i64, user: usize| InRecord {
        topic: INPUT.into(),
        partition: 0,
        offset,
        key: Some(format!("u{user}").into_bytes().into()),
        payload: serde_json::json!({"userId": format!("u{user}"), "triggerId": 1, "value": 10})
            .to_string()
            .into_bytes(),
        timestamp: chrono::Utc::now(),
        headers: Vec::new(),
    };
    let a: Vec<InRecord> = (0..40).map(|u| record(u as i64, u)).collect();
    let mut b: Vec<InRecord> = (40..59).map(|u| record(u as i64, u)).collect();
    b.push(record(59, 0)); // u0: A's first, so least recently used, user
    let mut partition = Partition::new("g", 0, 16);
    let first = partition
        .process(store, &rig.inputs, &rig.topics, &a)
        .await
        .unwrap();
    // A is not written yet (its write is in flight) when B is evaluated.
    let second = partition
        .process(store, &rig.inputs, &rig.topics, &b)
        .await
        .unwrap();
    let u0 = |batch: &questline::pipeline::partition::Batch| {
        batch
            .write
            .user_records()
            .unwrap()
            .into_iter()
            .find(|(k, _)| k.user_id == "u0")
            .map(|(_, r)| r)
            .unwrap()
    };
    let after_a = u0(&first);
    let after_b = u0(&second);
    assert_eq!(after_a.applied[&smol_str::format_smolstr!("{INPUT}:0")], 0);
    assert_eq!(
        after_b.applied[&smol_str::format_smolstr!("{INPUT}:0")],
        59,
        "B continued from A's state"
    );
    let progress =
        |r: &UserRecord| r.state.challenges.values().next().unwrap().triggers[0].accumulated;
    assert_eq!(
        progress(&after_b),
        progress(&after_a) * rust_decimal::Decimal::from(2)
    );
}

/// A batch's history rows are its published events: what the sidecar reads back from the
/// store is, entry for entry, the event the broker got (the rows reuse the published bytes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_rows_are_the_published_events() {
    let rig = Rig::new();
    let store = &rig.store.inner;
    let records: Vec<InRecord> = actions(300, 4, 5)
        .into_iter()
        .enumerate()
        .map(|(offset, (user, payload))| InRecord {
            topic: INPUT.into(),
            partition: 0,
            offset: offset as i64,
            key: Some(user.into_bytes().into()),
            payload: payload.into_bytes(),
            timestamp: chrono::Utc::now(),
            headers: Vec::new(),
        })
        .collect();
    let mut partition = Partition::new("g", 0, 16);
    let batch = partition
        .process(store, &rig.inputs, &rig.topics, &records)
        .await
        .unwrap();
    store.write_batch(&batch.write).await.unwrap();
    let published: std::collections::HashMap<String, serde_json::Value> = batch
        .publish
        .iter()
        .map(|e| serde_json::from_slice::<serde_json::Value>(&e.record.payload).unwrap())
        .map(|v| (v["eventId"].as_str().unwrap().to_string(), v))
        .collect();
    // Every entry is filed by position (the record step placed it), and every user's row
    // leads to its newest one.
    assert!(batch.write.history.iter().all(|(_, e)| e.place.is_some()));
    let mut read = 0;
    for user in ["u0", "u1", "u2", "u3"] {
        let key = UserKey::new("default", user);
        let record = store.load_users(std::slice::from_ref(&key)).await.unwrap()[0]
            .clone()
            .unwrap();
        assert!(record.history_chain.head.is_some(), "{user}");
        let (history, total) = store.history(&key, 1, 1000).await.unwrap();
        assert_eq!(history.len() as u64, total);
        for entry in history {
            let stored = serde_json::to_value(&entry.event).unwrap();
            assert_eq!(Some(&stored), published.get(entry.event.event_id.as_str()));
            read += 1;
        }
    }
    assert_eq!(read, batch.write.history.len());
    assert!(read > 20, "milestones and rewards: {read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cache_smaller_than_a_batch_loses_no_state() {
    // 16 users cached per partition (the minimum), batches touching many more.
    const USERS: usize = 200;
    let rig = Rig::new();
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(Arc::clone(&rig.log), settings(400, 16), shutdown));
    rig.append(&actions(1_200, USERS, 10));
    rig.wait_committed(1_200, Duration::from_secs(30)).await;
    stop.send(true).unwrap();
    worker.await.unwrap();
    rig.assert_exactly_once(USERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_owner_cannot_overwrite_the_state_of_the_partitions_new_owner() {
    let rig = Rig::new();
    let store = &rig.store.inner;
    // One user's actions on partition 0.
    let records: Vec<InRecord> = (0..8)
        .map(|offset| InRecord {
            topic: INPUT.into(),
            partition: 0,
            offset,
            key: Some(b"z".to_vec().into()),
            payload: serde_json::json!({"userId": "z", "triggerId": 1, "value": 60})
                .to_string()
                .into_bytes(),
            timestamp: chrono::Utc::now(),
            headers: Vec::new(),
        })
        .collect();
    let key = UserKey::new("default", "z");
    let load = || async { store.load_users(std::slice::from_ref(&key)).await.unwrap()[0].clone() };

    // The old owner took partition 0, then stalled past its session; the group gave the
    // partition to a new owner, which claimed a newer epoch.
    let mut zombie = Partition::new("g", 0, 100);
    zombie.set_epoch(store.claim_partition("g", "p0").await.unwrap());
    let mut owner = Partition::new("g", 0, 100);
    owner.set_epoch(store.claim_partition("g", "p0").await.unwrap());
    assert!(owner.epoch() > zombie.epoch());

    // The zombie evaluates offsets 0..=5 (loaded before anyone wrote); the new owner
    // evaluates 0..=2 and writes first.
    let late = zombie
        .process(store, &rig.inputs, &rig.topics, &records[..6])
        .await
        .unwrap();
    let first = owner
        .process(store, &rig.inputs, &rig.topics, &records[..3])
        .await
        .unwrap();
    store.write_batch(&first.write).await.unwrap();
    let owners = load().await.unwrap();
    assert_eq!(owners.applied[&smol_str::format_smolstr!("{INPUT}:0")], 2);
    let owners_outbox = store.load_outbox("g/p0").await.unwrap();
    assert!(owners_outbox.is_some());

    // The zombie wakes up and writes: fenced, the new owner's row and outbox stay.
    store.write_batch(&late.write).await.unwrap();
    let after = load().await.unwrap();
    assert_eq!(
        after, owners,
        "the zombie's write overwrote the new owner's state"
    );
    assert_eq!(
        store.load_outbox("g/p0").await.unwrap(),
        owners_outbox,
        "the zombie's write replaced the new owner's outbox"
    );

    // The new owner goes on from where it is; the result is what one owner would have made.
    let second = owner
        .process(store, &rig.inputs, &rig.topics, &records[3..])
        .await
        .unwrap();
    store.write_batch(&second.write).await.unwrap();
    let mut engine = Engine::new(Arc::clone(&rig.catalog));
    for r in &records {
        let source = SourceRef::new(r.topic, r.partition, r.offset);
        engine.process_record(&rig.mapping.compile(), &r.payload, &source, r.timestamp);
    }
    let end = load().await.unwrap();
    assert_eq!(Some(&end.state), engine.user("default", "z"));
    assert_eq!(end.applied[&smol_str::format_smolstr!("{INPUT}:0")], 7);
    // The history the zombie wrote beyond the new owner's is overwritten by the owner's own.
    let (history, total) = store.history(&key, 1, 100).await.unwrap();
    assert_eq!(total, end.history_len);
    assert!(history.iter().all(|h| h.event.source.offset <= 7));
}

/// On paused time: its waits (the worker's retry pauses and lingers, the test's own sleeps)
/// advance the clock without taking real time; the store's blocking work holds the clock.
#[tokio::test(start_paused = true)]
async fn records_of_a_partition_revoked_during_the_poll_are_left_to_its_new_owner() {
    const USERS: usize = 40;
    const REVOKED: i32 = 1;
    let rig = Rig::new();
    rig.append(&actions(300, USERS, 11));
    let log = Faulty::revoked_mid_poll(&rig.log, REVOKED, rig.inputs.topics());
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(log, settings(1_000, 1_000), shutdown));
    let kept: i64 = rig
        .log
        .records(INPUT)
        .iter()
        .filter(|r| r.partition != REVOKED)
        .count() as i64;
    assert!(kept < 300);
    rig.wait_committed(kept, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    // Nothing of the revoked partition evaluated, committed or published by this member.
    assert_eq!(totals.applied, kept as u64, "{totals:?}");
    assert_eq!(rig.committed_total(), kept);
    assert!(!rig
        .log
        .committed()
        .contains_key(&(INPUT.to_string(), REVOKED)));
    let (got, copies) = rig.rewards();
    assert_eq!(copies, 0);
    assert!(got
        .values()
        .all(|e| e["source"]["partition"].as_i64() != Some(REVOKED as i64)));
    // Everything else exactly as the engine has it.
    let (want, _) = rig.expected();
    let want: BTreeMap<String, Value> = want
        .into_iter()
        .filter(|(_, e)| e["source"]["partition"].as_i64() != Some(REVOKED as i64))
        .collect();
    assert_same_events(&got, &want);
}

/// Every input the worker drops as a duplicate is counted, with the id that identified it:
/// `questline_duplicates_total{reason}` and the totals agree, and a redelivery is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_counted_by_the_id_that_identified_them() {
    use questline::core::evaluator::ClaimCommand;
    use questline::pipeline::commands::Command;
    let rig = Rig::new();
    let metric = |reason: &str| {
        questline::metrics::metrics()
            .duplicates
            .with_label_values(&[reason])
            .get()
    };
    let before = (metric("action_id"), metric("claim_id"));
    let action = |id: &str| {
        format!(r#"{{"userId": "u1", "triggerId": 1, "value": 10, "actionId": "{id}"}}"#)
    };
    // a-1 three times (two duplicates), a-2 once, and one action without an id.
    for body in [
        action("a-1"),
        action("a-2"),
        action("a-1"),
        action("a-1"),
        r#"{"userId": "u1", "triggerId": 1, "value": 10}"#.to_string(),
    ] {
        rig.log.append(INPUT, "u1", body.into_bytes());
    }
    // Claim c-1 twice (one duplicate), c-2 once.
    let claim = |id: &str| {
        serde_json::to_vec(&Command::Claim(ClaimCommand {
            claim_id: id.into(),
            tenant: "default".into(),
            user_id: "u1".into(),
            milestone_ids: Vec::new(),
            items: Vec::new(),
        }))
        .unwrap()
    };
    for id in ["c-1", "c-1", "c-2"] {
        rig.log.append(&rig.topics.commands, "u1", claim(id));
    }
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(Arc::clone(&rig.log), settings(2, 1_000), shutdown));
    rig.wait_committed(5, Duration::from_secs(20)).await;
    wait::committed(3, Duration::from_secs(20), || {
        committed_of(&rig.log, &rig.topics.commands)
    })
    .await;
    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    assert_eq!(totals.duplicates, 3, "{totals:?}");
    assert_eq!(
        totals.applied, 5,
        "three actions and two claims: {totals:?}"
    );
    assert_eq!(
        (
            metric("action_id") - before.0,
            metric("claim_id") - before.1
        ),
        (2, 1)
    );
}

/// An amount caller that counts what it is asked and answers every call with 120 points: the
/// partition's bookkeeping is under test here; the HTTP caller is tested against a real
/// endpoint in `tests/kafka_amounts.rs`.
#[derive(Default)]
struct CountingCaller {
    calls: AtomicU64,
}

#[async_trait]
impl questline::amounts::AmountCaller for CountingCaller {
    async fn decide(
        &self,
        calls: Vec<questline::amounts::Call>,
    ) -> Vec<questline::core::rules::programmatic::AmountOutcome> {
        self.calls.fetch_add(calls.len() as u64, Ordering::SeqCst);
        calls
            .iter()
            .map(
                |_| questline::core::rules::programmatic::AmountOutcome::Answered {
                    points: 120.into(),
                },
            )
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amount_request_is_called_once_across_a_redone_batch_a_repeat_and_a_new_owner() {
    let dir = tempfile::tempdir().unwrap();
    let catalog_file = dir.path().join("shop.toml");
    std::fs::write(
        &catalog_file,
        "tenant = \"shop\"\n[[reward_types]]\nreward_type = \"points\"\ndisplay_name = \"P\"\nkind = \"points\"\n\
         [[events]]\nname = \"ORDER_OK\"\nprogrammatic = { url = \"http://127.0.0.1:9/ok\", fallback_points = 5 }\n",
    )
    .unwrap();
    let catalog = Arc::new(questline::files::load_catalog(&catalog_file).unwrap());
    let mapping =
        questline::files::load_mapping(&crate::support::root().join("mappings/kwegg.toml"))
            .unwrap();
    let topics = Topics::default();
    let inputs = Inputs::new(catalog, &[mapping], &topics);
    let store = EmbeddedStore::open(dir.path().join("store")).unwrap();
    let caller = Arc::new(CountingCaller::default());
    let calls = || caller.calls.load(Ordering::SeqCst);
    let record = |topic: &str, offset: i64, payload: Vec<u8>| InRecord {
        topic: topic.into(),
        partition: 0,
        offset,
        key: Some(b"u1".to_vec().into()),
        payload,
        timestamp: chrono::Utc::now(),
        headers: Vec::new(),
    };
    let produced = |batch: &questline::pipeline::partition::Batch, topic: &str| -> Vec<Vec<u8>> {
        batch
            .publish
            .iter()
            .filter(|r| &*r.record.topic == topic)
            .map(|r| r.record.payload.clone())
            .collect()
    };
    let mut owner = Partition::new("g", 0, 16).with_amounts(caller.clone());

    // The occurrence: a pending entry and a request, no call yet.
    let action =
        serde_json::json!({"tenant": "shop", "userId": "u1", "event": {"name": "ORDER_OK"}});
    let asked = owner
        .process(
            &store,
            &inputs,
            &topics,
            &[record("kwegg.events", 0, action.to_string().into_bytes())],
        )
        .await
        .unwrap();
    let request = produced(&asked, &topics.amount_requests);
    assert_eq!(request.len(), 1);
    assert_eq!(calls(), 0);
    store.write_batches(vec![asked.write]).await.unwrap();

    // The request is consumed: one call, its answer sent.
    let consumed = record(&topics.amount_requests, 0, request[0].clone());
    let answered = owner
        .process(&store, &inputs, &topics, std::slice::from_ref(&consumed))
        .await
        .unwrap();
    assert_eq!(calls(), 1);
    let response = produced(&answered, &topics.amount_responses);
    assert_eq!(response.len(), 1);
    let value: Value = serde_json::from_slice(&response[0]).unwrap();
    assert_eq!(
        value["outcome"],
        serde_json::json!({"outcome": "answered", "points": 120})
    );

    // A new owner that takes the partition before that batch is written (a crash) has no
    // record of the outcome: it calls again. This is the at-least-once window.
    let mut successor = Partition::new("g", 0, 16).with_amounts(caller.clone());
    successor
        .process(&store, &inputs, &topics, std::slice::from_ref(&consumed))
        .await
        .unwrap();
    assert_eq!(calls(), 2, "the window between the call and the write");

    // The write fails and the batch is redone from the store: the outcome decided in this
    // process is reused, not asked again.
    owner.reset();
    let redone = owner
        .process(&store, &inputs, &topics, std::slice::from_ref(&consumed))
        .await
        .unwrap();
    assert_eq!(calls(), 2);
    assert_eq!(produced(&redone, &topics.amount_responses), response);
    store.write_batches(vec![redone.write]).await.unwrap();

    // Once written, the outcome is in the user's record: the request produced again (a
    // re-published outbox), even to a new owner, gets the same answer without a call.
    let repeat = record(&topics.amount_requests, 1, request[0].clone());
    let mut next_owner = Partition::new("g", 0, 16).with_amounts(caller.clone());
    let again = next_owner
        .process(&store, &inputs, &topics, &[repeat])
        .await
        .unwrap();
    assert_eq!(calls(), 2);
    assert_eq!(produced(&again, &topics.amount_responses), response);
    store.write_batches(vec![again.write]).await.unwrap();

    // The response pays once; the repeated response changes nothing.
    let settle = next_owner
        .process(
            &store,
            &inputs,
            &topics,
            &[
                record(&topics.amount_responses, 0, response[0].clone()),
                record(&topics.amount_responses, 1, response[0].clone()),
            ],
        )
        .await
        .unwrap();
    let rewards: Vec<Value> = produced(&settle, &topics.rewards)
        .iter()
        .map(|p| serde_json::from_slice(p).unwrap())
        .collect();
    assert_eq!(rewards.len(), 1, "{rewards:#?}");
    assert_eq!(rewards[0]["type"], "reward.granted");
    assert_eq!(rewards[0]["amount"], 120);
    assert_eq!(rewards[0]["reason"]["rule"], "programmatic");
    store.write_batches(vec![settle.write]).await.unwrap();

    // After settlement a repeat of the request is dropped: no call, no answer.
    let late = next_owner
        .process(
            &store,
            &inputs,
            &topics,
            &[record(&topics.amount_requests, 2, request[0].clone())],
        )
        .await
        .unwrap();
    assert_eq!(calls(), 2);
    assert!(produced(&late, &topics.amount_responses).is_empty());
}

/// An output larger than the log accepts (here a dead letter carrying a 60 KB poison record,
/// against a 16 KB limit) can never be published as it is. It is replaced by a small dead
/// letter of its own, and the partition keeps moving and committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_too_large_for_the_log_becomes_a_small_dead_letter_and_the_partition_moves_on() {
    const USERS: usize = 10;
    let rig = Rig::new();
    rig.log.set_max_record_bytes(16 * 1024);
    let before = actions(100, USERS, 11);
    let after = actions(100, USERS, 12);
    rig.append(&before);
    // Not JSON, so its dead letter carries it whole: ~60 KB, over the limit.
    let (partition, offset) = rig.log.append(INPUT, "u3", "x".repeat(60_000).into_bytes());
    rig.append(&after);
    let (stop, shutdown) = watch::channel(false);
    let worker = spawn(rig.worker(Arc::clone(&rig.log), settings(50, 1_000), shutdown));
    rig.wait_committed(201, Duration::from_secs(20)).await;
    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    assert_eq!(totals.applied, 200, "{totals:?}");
    // The poison record's own dead letter (not_json), then the one that replaced it.
    assert_eq!(totals.dead_letters, 2, "{totals:?}");
    assert_eq!(totals.retries, 0, "nothing retried: {totals:?}");
    let dead = rig.log.records(&rig.topics.dead_letter);
    assert_eq!(dead.len(), 1, "only the replacement was published");
    assert!(
        dead[0].payload.len() < 4 * 1024,
        "{} bytes",
        dead[0].payload.len()
    );
    let letter: Value = serde_json::from_slice(&dead[0].payload).unwrap();
    let reason = letter["reason"].as_str().unwrap();
    let bytes: usize = reason
        .strip_prefix("output too large: ")
        .and_then(|r| r.strip_suffix(" bytes"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("reason {reason}"));
    assert!((60_000..61_000).contains(&bytes), "{reason}");
    assert_eq!(letter["output"]["type"], "dead_letter");
    assert_eq!(letter["output"]["topic"], rig.topics.dead_letter);
    assert_eq!(letter["output"]["bytes"], bytes);
    assert_eq!(
        letter["source"],
        serde_json::json!({"topic": INPUT, "partition": partition, "offset": offset})
    );
    assert!(letter["original"].as_str().unwrap().len() <= 1024);
    assert_eq!(
        dead[0].key.as_deref(),
        Some(&b"u3"[..]),
        "the poison record's key, which its dead letter carried"
    );
    rig.assert_exactly_once(USERS).await;
}
