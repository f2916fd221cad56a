//! Faults the real test broker cannot be told to make — a broker that goes down mid-stream,
//! requests that fail — on librdkafka's in-process mock cluster, with the worker loop running
//! in this process on the production Kafka adapter (`KafkaLog`) and the embedded store.
//!
//! The mock cluster auto-creates topics but times out on the admin API, so topics are created
//! through the mock's own call and `ensure_topics` is not used. Expected events and states come
//! from the pure engine fed the records at the coordinates the broker acknowledged; the catalog
//! (`tests/kafka/catalog.toml`) has per-user challenges only (see its header).

use crate::support::kafka::{actions, assert_same_events, unlimited_catalog};
use questline::core::engine::Engine;
use questline::core::events::Stream;
use questline::core::mapping::Mapping;
use questline::core::model::SourceRef;
use questline::kafka::KafkaLog;
use questline::pipeline::input::Inputs;
use questline::pipeline::log::Log;
use questline::pipeline::worker::{Totals, Worker};
use questline::settings::{KafkaSettings, PipelineSettings, Topics};
use questline::store::embedded::EmbeddedStore;
use questline::store::{StateStore, UserKey};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

const PARTITIONS: i32 = 4;
const GROUP: &str = "questline-mock";

type Running = tokio::task::JoinHandle<Totals>;

/// An input record as the broker acknowledged it.
struct Produced {
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    payload: String,
}

struct MockRig {
    /// The input topic, named per test: the tests of this file share one metrics registry
    /// when they run as threads of one process.
    input: String,
    settings: KafkaSettings,
    topics: Topics,
    inputs: Inputs,
    catalog: Arc<questline::core::catalog::Catalog>,
    mapping: Mapping,
    store: Arc<EmbeddedStore>,
    _dir: tempfile::TempDir,
}

fn create_topics(cluster: &MockCluster<'_, impl rdkafka::ClientContext>, rig: &MockRig) {
    let topics = &rig.topics;
    for t in [
        &rig.input,
        &topics.progress,
        &topics.rewards,
        &topics.dead_letter,
        &topics.commands,
        &topics.inventory_requests,
        &topics.inventory_responses,
        &topics.amount_requests,
        &topics.amount_responses,
    ] {
        cluster.create_topic(t, PARTITIONS, 1).unwrap();
    }
}

impl MockRig {
    fn new(bootstrap: String, input: &str) -> MockRig {
        let dir = tempfile::tempdir().unwrap();
        let catalog = Arc::new(questline::files::load_catalog(&unlimited_catalog()).unwrap());
        let mut mapping =
            questline::files::load_mapping(&crate::support::root().join("mappings/seed.toml"))
                .unwrap();
        mapping.topics = vec![input.to_string()];
        let topics = Topics::default();
        let inputs = Inputs::new(Arc::clone(&catalog), &[mapping.clone()], &topics);
        let settings = KafkaSettings {
            brokers: bootstrap,
            group_id: GROUP.into(),
            properties: [
                ("fetch.wait.max.ms", "10"),
                ("session.timeout.ms", "6000"),
                ("heartbeat.interval.ms", "500"),
                // The mock cluster refuses nothing; retries come from the faults we inject.
                ("reconnect.backoff.max.ms", "200"),
                // Lag comes from librdkafka's statistics: often enough for a test to see.
                ("statistics.interval.ms", "200"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            // QL_RDKAFKA_DEBUG=fetch,eos,… turns on librdkafka's debug contexts.
            .chain(
                std::env::var("QL_RDKAFKA_DEBUG")
                    .ok()
                    .map(|d| ("debug".to_string(), d)),
            )
            .collect(),
            create_topics: false,
            ..KafkaSettings::default()
        };
        let store = Arc::new(EmbeddedStore::open(dir.path().join("store")).unwrap());
        MockRig {
            input: input.to_string(),
            settings,
            topics,
            inputs,
            catalog,
            mapping,
            store,
            _dir: dir,
        }
    }

    /// A worker on the production adapter: its log (for `close`), its stop switch, its task.
    fn start_worker(&self, batch_size: usize) -> (Arc<KafkaLog>, watch::Sender<bool>, Running) {
        let producer = questline::kafka::producer(&self.settings).unwrap();
        let log =
            Arc::new(KafkaLog::connect(&self.settings, &self.inputs.topics(), producer).unwrap());
        let (stop, shutdown) = watch::channel(false);
        let worker = Worker::new(
            Arc::clone(&log),
            Arc::clone(&self.store),
            self.inputs.clone(),
            self.topics.clone(),
            PipelineSettings {
                batch_size,
                linger_ms: 5,
                cache_users: 1_000,
                retry_min_ms: 20,
                retry_max_ms: 500,
                ..PipelineSettings::default()
            },
            GROUP.into(),
            shutdown,
        );
        let handle = tokio::spawn(async move { worker.run().await.expect("the worker loop") });
        (log, stop, handle)
    }

    /// A producer of input records that reports each one's coordinates (questline's own
    /// producer reports only failures), set like questline's.
    fn producer(&self) -> FutureProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("enable.idempotence", "true")
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "30000")
            .set("reconnect.backoff.max.ms", "200")
            .create()
            .unwrap()
    }

    /// Produces `records`, waiting for every acknowledgement (also across an outage).
    async fn produce(
        producer: &FutureProducer,
        topic: &str,
        records: &[(String, String)],
    ) -> Vec<Produced> {
        let base = chrono::Utc::now().timestamp_millis();
        let mut pending = Vec::new();
        for (i, (key, value)) in records.iter().enumerate() {
            let timestamp_ms = base + i as i64;
            let delivery = producer
                .send_result(
                    FutureRecord::to(topic)
                        .key(key)
                        .payload(value)
                        .timestamp(timestamp_ms),
                )
                .map_err(|(e, _)| e)
                .unwrap();
            pending.push((delivery, timestamp_ms, value.clone()));
        }
        let mut out = Vec::new();
        for (delivery, timestamp_ms, payload) in pending {
            let delivery = delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
            out.push(Produced {
                partition: delivery.partition,
                offset: delivery.offset,
                timestamp_ms,
                payload,
            });
        }
        out
    }

    /// The group's committed offsets of the input topic, summed (read by a non-member).
    fn committed_total(&self) -> i64 {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", GROUP)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&self.input, p);
        }
        match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
            Ok(offsets) => offsets
                .elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum(),
            Err(_) => -1,
        }
    }

    async fn wait_committed(&self, total: i64, timeout: Duration) {
        crate::support::wait::committed(total, timeout, || self.committed_total()).await
    }

    /// Every record of the rewards topic, read from the beginning until 1 s passes idle.
    fn rewards(&self) -> (BTreeMap<String, Value>, usize) {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", "verify")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(&self.topics.rewards, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut events = BTreeMap::new();
        let mut copies = 0;
        let mut last = Instant::now();
        while last.elapsed() < Duration::from_secs(1) {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    last = Instant::now();
                    let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
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
                Some(Err(e)) => panic!("reading the rewards: {e}"),
                None => {}
            }
        }
        (events, copies)
    }

    fn expected(&self, produced: &[Produced]) -> (BTreeMap<String, Value>, Engine) {
        use chrono::TimeZone;
        let mut engine = Engine::new(Arc::clone(&self.catalog));
        let mut records: Vec<&Produced> = produced.iter().collect();
        records.sort_by_key(|r| (r.partition, r.offset));
        let mut rewards = BTreeMap::new();
        for r in records {
            let source = SourceRef::new(&self.input, r.partition, r.offset);
            let at = chrono::Utc.timestamp_millis_opt(r.timestamp_ms).unwrap();
            for event in engine
                .process_record(&self.mapping.compile(), r.payload.as_bytes(), &source, at)
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

    async fn assert_states(&self, engine: &Engine, users: usize) {
        let keys: Vec<UserKey> = (0..users)
            .map(|u| UserKey::new("default", format!("u{u}")))
            .collect();
        let stored = self.store.load_users(&keys).await.unwrap();
        for (key, record) in keys.iter().zip(stored) {
            assert_eq!(
                record.map(|r| r.state).as_ref(),
                engine.user(&key.tenant, &key.user_id),
                "state of {} (a grant applied twice or missed)",
                key.user_id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_going_down_mid_stream_and_coming_back_loses_nothing_and_grants_nothing_twice() {
    const USERS: usize = 80;
    questline::telemetry::init_tracing();
    let cluster = MockCluster::new(1).unwrap();
    let rig = MockRig::new(cluster.bootstrap_servers(), "actions-outage");
    create_topics(&cluster, &rig);
    let all = actions(1_200, USERS, 21);
    let producer = rig.producer();
    // A backlog, worked through in small batches so the broker vanishes mid-way: with a
    // batch's events in flight, commits pending and fetches going on.
    let mut produced = MockRig::produce(&producer, &rig.input, &all[..600]).await;
    let (log, stop, worker) = rig.start_worker(10);
    let started = Instant::now();
    while rig.committed_total() <= 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing processed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_down = rig.committed_total();
    cluster.broker_down(-1).unwrap();
    // The rest is produced while it is down (acknowledged once it is back).
    let second = {
        let producer = producer.clone();
        let (input, rest) = (rig.input.clone(), all[600..].to_vec());
        tokio::spawn(async move { MockRig::produce(&producer, &input, &rest).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.broker_up(-1).unwrap();
    produced.extend(second.await.unwrap());
    rig.wait_committed(1_200, Duration::from_secs(40)).await;

    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    log.close().await;
    let (want, engine) = rig.expected(&produced);
    let (got, copies) = rig.rewards();
    assert_same_events(&got, &want);
    eprintln!(
        "{totals:?}; {} events, {copies} repeated; {at_down} of 600 committed when the broker went down",
        got.len()
    );
    rig.assert_states(&engine, USERS).await;
    drop(producer);
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_produce_fetch_and_commit_requests_are_retried_without_loss_or_double_grants() {
    questline::telemetry::init_tracing();
    const USERS: usize = 60;
    let cluster = MockCluster::new(1).unwrap();
    let rig = MockRig::new(cluster.bootstrap_servers(), "actions-errors");
    create_topics(&cluster, &rig);
    let all = actions(900, USERS, 22);
    let producer = rig.producer();
    let mut produced = MockRig::produce(&producer, &rig.input, &all[..300]).await;
    let (log, stop, worker) = rig.start_worker(100);
    rig.wait_committed(300, Duration::from_secs(30)).await;
    // A graceful stop (final synchronous commit), the rest of the input, then a new worker on
    // the same store and group whose first requests of each kind fail.
    stop.send(true).unwrap();
    let first = worker.await.unwrap();
    log.close().await;
    drop(log);
    assert_eq!(rig.committed_total(), 300);
    produced.extend(MockRig::produce(&producer, &rig.input, &all[300..]).await);

    use RDKafkaRespErr::*;
    // Publishing: retriable errors the idempotent producer retries by itself, then one it
    // cannot: a request refused as too large (a broker limit below the client's refuses all
    // of a request's records), whose records the worker publishes again one by one.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::Fetch,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
        ],
    );
    cluster.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        ],
    );
    let (log, stop, worker) = rig.start_worker(100);
    // Every offset ends up committed — also those whose commit failed, or whose retry landed
    // after a newer commit and set the group's offset back — although the stream is idle.
    rig.wait_committed(900, Duration::from_secs(20)).await;
    // And the lag, from librdkafka's statistics, drains to zero on every input partition.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lag: BTreeMap<i32, i64> = log
            .lag()
            .into_iter()
            .filter(|(t, _, _)| *t == rig.input)
            .map(|(_, p, l)| (p, l))
            .collect();
        if lag.len() == PARTITIONS as usize && lag.values().all(|&l| l == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "input lag stuck at {lag:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gauge follows at the worker's next poll (at most its idle wait later).
    let metric = || {
        questline::metrics::metrics()
            .consumer_lag
            .with_label_values(&[&rig.input, "0"])
            .get()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric() != 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(metric(), 0);

    stop.send(true).unwrap();
    let totals = worker.await.unwrap();
    log.close().await;
    assert_eq!(
        (first.records, totals.records),
        (300, 600),
        "{first:?} {totals:?}"
    );
    // The refused records went out on their own: none was too large itself, so none was
    // replaced by a dead letter, and nothing was lost or published twice (below).
    assert_eq!(totals.dead_letters, 0, "{totals:?}");
    let (want, engine) = rig.expected(&produced);
    let (got, copies) = rig.rewards();
    assert_same_events(&got, &want);
    eprintln!("{totals:?}; {} events, {copies} repeated", got.len());
    rig.assert_states(&engine, USERS).await;
    drop(producer);
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_joining_mid_stream_takes_partitions_losing_nothing_and_applying_nothing_twice(
) {
    questline::telemetry::init_tracing();
    const USERS: usize = 80;
    let cluster = MockCluster::new(1).unwrap();
    let rig = MockRig::new(cluster.bootstrap_servers(), "actions-join");
    create_topics(&cluster, &rig);
    let all = actions(1_200, USERS, 23);
    let producer = rig.producer();
    // One member works through a backlog in small batches; a second joins half-way (the
    // group rebalances while the first is busy) and both share the store, as two processes
    // share ScyllaDB.
    let mut produced = MockRig::produce(&producer, &rig.input, &all[..600]).await;
    let (log_a, stop_a, worker_a) = rig.start_worker(10);
    let started = Instant::now();
    while rig.committed_total() <= 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing processed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_join = rig.committed_total();
    let (log_b, stop_b, worker_b) = rig.start_worker(10);
    produced.extend(MockRig::produce(&producer, &rig.input, &all[600..]).await);
    rig.wait_committed(1_200, Duration::from_secs(40)).await;

    stop_a.send(true).unwrap();
    stop_b.send(true).unwrap();
    let (a, b) = (worker_a.await.unwrap(), worker_b.await.unwrap());
    log_a.close().await;
    log_b.close().await;
    // B consumed from the partitions it took. Whether it applied any of them first depends on
    // timing: the mock broker refuses A's commits during the rebalance, so B may find all of
    // its records already applied (redelivered, skipped by the watermark). Exactness is
    // checked below either way.
    assert!(b.records > 0, "the second member took partitions: {b:?}");
    let (want, engine) = rig.expected(&produced);
    let (got, copies) = rig.rewards();
    assert_same_events(&got, &want);
    eprintln!(
        "{a:?} {b:?}; {} events, {copies} repeated; joined at {at_join} of 600",
        got.len()
    );
    // Each action applied to state exactly once across the two: a record evaluated by one
    // member is skipped by the stored watermark when the other meets it again.
    assert_eq!(
        a.applied + b.applied,
        1_200,
        "each action applied once: {a:?} {b:?}"
    );
    // Events may repeat here, always with the same id and payload: the mock broker refuses
    // offset commits while the group rebalances (REBALANCE_IN_PROGRESS, also for the commit
    // made in the revoke callback), where Kafka accepts them from the current generation,
    // so the partitions' next owner replays from older offsets and re-publishes what it finds
    // in the outboxes above its committed floor. Against tansu a clean leave repeats nothing
    // (tests/kafka_group.rs).
    rig.assert_states(&engine, USERS).await;
    drop(producer);
    drop((log_a, log_b));
}
