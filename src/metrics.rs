//! Prometheus metrics: one registry, every metric name documented here. A leaf of the crate
//! (it imports nothing of it), so every layer can count without depending on another.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `questline_records_in_total` | counter | topic | records consumed |
//! | `questline_actions_processed_total` | counter | outcome (`applied`, `duplicate`, `redelivered`, `ignored`) | actions evaluated or skipped |
//! | `questline_duplicates_total` | counter | reason (`action_id`, `claim_id`) | actions and claims dropped because their id was applied before (also in `actions_processed_total{outcome="duplicate"}`) |
//! | `questline_events_out_total` | counter | topic, type | events produced |
//! | `questline_dead_letters_total` | counter | reason: the rejection's kind (`not_json`, `too_large`, `mapping` for a missing or invalid field, `unknown_tenant`, `unknown_trigger`, `params` for an earning-rule event's parameters, `internal` for a malformed command or internal record, `user_disabled` for an action of a disabled user; `output_too_large`: an output the broker refused for its size, replaced by a dead letter) | records dead-lettered |
//! | `questline_rewards_granted_total` | counter | reward_type | `reward.granted` events |
//! | `questline_batch_size` | histogram | | records per batch |
//! | `questline_batch_seconds` | histogram | | batch latency, evaluation start to commit (batches overlap: one is evaluated while the previous one is written, published and committed) |
//! | `questline_batches_written_ahead_total` | counter | | batches written right after their evaluation, while the batch before them was being acknowledged (when the worker keeps up with its input; a poll that fills its batch leaves the write to the next poll) |
//! | `questline_store_seconds` | histogram | op (`load`, `write`, `read`, `checkpoint`) | store latency; `checkpoint`: the embedded store moving its journal into the database, in the background |
//! | `questline_log_seconds` | histogram | op (`publish`, `commit`) | publishing a batch until every record is acknowledged; committing its offsets |
//! | `questline_store_errors_total` | counter | op | failed store calls (the partition pauses) |
//! | `questline_cql_batch_partitions` | histogram | | partitions per CQL batch the ScyllaDB store sends (`store.scylla.partitions_per_batch` at most, unless a partition's own writes fill batches) |
//! | `questline_store_wedged` | gauge | | 1 while the embedded store is closed after an I/O failure (a full disk) and not yet reopened; 0 otherwise |
//! | `questline_rebalances_total` | counter | kind (`assign`, `revoke`) | consumer group rebalances |
//! | `questline_retries_total` | counter | stage (`poll`, `take`, `load`, `write`, `publish`, `commit`) | a stage failed and is tried again (the batch paused and redone, a poll or a commit retried) |
//! | `questline_consumer_lag` | gauge | topic, partition | high watermark − committed position, where the broker reports it |
//! | `questline_amount_calls_total` | counter | outcome (`answered`, or the fallback's reason: `timeout`, `unreachable`, `status`, `bad_answer`, `circuit_open`, `not_programmatic`) | amount requests decided by calling a programmatic event's endpoint, one per request (retries included) |
//! | `questline_amount_call_seconds` | histogram | | one HTTP try to an endpoint, until its answer is read or it fails |
//! | `questline_amount_retries_total` | counter | | tries after the first (timeouts, connection failures, 5xx, 429) |
//! | `questline_amount_breaker_state` | gauge | endpoint (URL without its query) | the endpoint's circuit breaker: 0 closed, 1 open, 2 half-open (one trial call) |
//! | `questline_http_requests_total` | counter | route, status | sidecar requests |
//! | `questline_http_request_seconds` | histogram | route | sidecar latency |
//! | `questline_http_connections` | gauge | | the sidecar's open connections |
//! | `questline_http_connections_evicted_total` | counter | | idle connections closed to make room for new ones (`http.max_connections` reached, or no descriptor left) |
//! | `questline_catalog_versions_total` | counter | | catalog versions read from the catalog log and applied |
//! | `questline_catalog_refused_total` | counter | | records of the catalog log refused (invalid, out of order, unreadable): no reader applies them |
//! | `questline_catalog_uncovered_total` | counter | | batches evaluated without proof that every catalog version in force at their newest record was read (a record stamped further ahead than `catalog.activation_delay`, or the catalog log unreadable) |
//! | `questline_build_info` | gauge | version | always 1; the running release |
//! | `questline_broker_up` | gauge | | 1 when the last check of the Kafka brokers was answered, 0 when it was not (or none was made: no broker); see `kafka::BrokerWatch` |
//! | `questline_partitions_assigned` | gauge | | topic-partitions assigned to this worker |
//! | `questline_partitions_paused` | gauge | | topic-partitions this worker paused while a failed batch is retried |
//! | `questline_process_*` | | | the process collector's CPU, memory, open descriptors and start time (Linux) |

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// The process's metrics. Cheap to clone handles; registered once.
pub struct Metrics {
    pub registry: Registry,
    pub records_in: IntCounterVec,
    pub actions_processed: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub events_out: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub rewards_granted: IntCounterVec,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub batches_written_ahead: IntCounter,
    pub store_seconds: HistogramVec,
    pub log_seconds: HistogramVec,
    pub store_errors: IntCounterVec,
    pub store_wedged: IntGauge,
    pub cql_batch_partitions: Histogram,
    pub rebalances: IntCounterVec,
    pub retries: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub amount_calls: IntCounterVec,
    pub amount_call_seconds: Histogram,
    pub amount_retries: IntCounter,
    pub amount_breaker_state: IntGaugeVec,
    pub http_requests: IntCounterVec,
    pub http_request_seconds: HistogramVec,
    pub http_connections: IntGauge,
    pub http_connections_evicted: IntCounter,
    pub catalog_versions: IntCounter,
    pub catalog_refused: IntCounter,
    pub catalog_uncovered: IntCounter,
    pub broker_up: IntGauge,
    pub partitions_assigned: IntGauge,
    pub partitions_paused: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("unique metric");
    h
}

/// Registers `metric` and hands it back, for the struct to keep.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

/// The `reason` labels of `questline_duplicates_total`.
pub const DUPLICATE_REASONS: [&str; 2] = ["action_id", "claim_id"];

const LATENCY: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

impl Metrics {
    fn new() -> Self {
        let registry =
            Registry::new_custom(Some("questline".into()), None).expect("valid registry");
        let r = &registry;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("batch_size", "Records per batch")
                .buckets(vec![1.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0]),
        )
        .expect("valid metric");
        r.register(Box::new(batch_size.clone()))
            .expect("unique metric");
        let cql_batch_partitions = Histogram::with_opts(
            HistogramOpts::new(
                "cql_batch_partitions",
                "Partitions per CQL batch the ScyllaDB store sends",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0]),
        )
        .expect("valid metric");
        r.register(Box::new(cql_batch_partitions.clone()))
            .expect("unique metric");
        let batch_seconds = Histogram::with_opts(
            HistogramOpts::new("batch_seconds", "Batch latency from poll to commit")
                .buckets(LATENCY.to_vec()),
        )
        .expect("valid metric");
        r.register(Box::new(batch_seconds.clone()))
            .expect("unique metric");
        let consumer_lag = IntGaugeVec::new(
            Opts::new("consumer_lag", "High watermark minus committed position"),
            &["topic", "partition"],
        )
        .expect("valid metric");
        r.register(Box::new(consumer_lag.clone()))
            .expect("unique metric");
        let store_wedged = IntGauge::new(
            "store_wedged",
            "1 while the embedded store is closed after an I/O failure and not yet reopened",
        )
        .expect("valid metric");
        r.register(Box::new(store_wedged.clone()))
            .expect("unique metric");
        let duplicates = counter(
            r,
            "duplicates_total",
            "Actions and claims dropped as duplicates, by the id that identified them",
            &["reason"],
        );
        // Both series exist from the start, so a rate or an alert on either sees 0, not nothing.
        for reason in DUPLICATE_REASONS {
            duplicates.with_label_values(&[reason]);
        }
        let amount_call_seconds = Histogram::with_opts(
            HistogramOpts::new("amount_call_seconds", "One HTTP try to an amount endpoint")
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
        )
        .expect("valid metric");
        r.register(Box::new(amount_call_seconds.clone()))
            .expect("unique metric");
        let amount_retries = IntCounter::new(
            "amount_retries_total",
            "Tries of an amount endpoint after the first",
        )
        .expect("valid metric");
        r.register(Box::new(amount_retries.clone()))
            .expect("unique metric");
        let amount_breaker_state = IntGaugeVec::new(
            Opts::new(
                "amount_breaker_state",
                "Circuit breaker of an amount endpoint: 0 closed, 1 open, 2 half-open",
            ),
            &["endpoint"],
        )
        .expect("valid metric");
        r.register(Box::new(amount_breaker_state.clone()))
            .expect("unique metric");
        let http_connections = IntGauge::new("http_connections", "The sidecar's open connections")
            .expect("valid metric");
        r.register(Box::new(http_connections.clone()))
            .expect("unique metric");
        let http_connections_evicted = IntCounter::new(
            "http_connections_evicted_total",
            "Idle sidecar connections closed to make room for new ones",
        )
        .expect("valid metric");
        r.register(Box::new(http_connections_evicted.clone()))
            .expect("unique metric");
        let plain = |name: &str, help: &str| {
            registered(r, IntCounter::new(name, help).expect("valid metric"))
        };
        let batches_written_ahead = plain(
            "batches_written_ahead_total",
            "Batches written while the batch before them was being acknowledged",
        );
        let catalog_versions = plain(
            "catalog_versions_total",
            "Catalog versions read from the catalog log and applied",
        );
        let catalog_refused = plain(
            "catalog_refused_total",
            "Records of the catalog log that no reader applies",
        );
        let catalog_uncovered = plain(
            "catalog_uncovered_total",
            "Batches evaluated without proof that every catalog version in force was read",
        );
        let gauge = |name: &str, help: &str| {
            registered(r, IntGauge::new(name, help).expect("valid metric"))
        };
        let broker_up = gauge(
            "broker_up",
            "1 when the last check of the Kafka brokers was answered, 0 otherwise",
        );
        let partitions_assigned = gauge(
            "partitions_assigned",
            "Topic-partitions assigned to this worker",
        );
        let partitions_paused = gauge(
            "partitions_paused",
            "Topic-partitions paused while a failed batch is retried",
        );
        let build_info = IntGaugeVec::new(
            Opts::new("build_info", "The running release; always 1"),
            &["version"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        r.register(Box::new(build_info)).expect("unique metric");
        register_process_collector(r);
        Metrics {
            broker_up,
            partitions_assigned,
            partitions_paused,
            catalog_versions,
            catalog_refused,
            catalog_uncovered,
            duplicates,
            records_in: counter(r, "records_in_total", "Records consumed", &["topic"]),
            actions_processed: counter(
                r,
                "actions_processed_total",
                "Actions evaluated or skipped",
                &["outcome"],
            ),
            events_out: counter(r, "events_out_total", "Events produced", &["topic", "type"]),
            dead_letters: counter(
                r,
                "dead_letters_total",
                "Records dead-lettered",
                &["reason"],
            ),
            rewards_granted: counter(
                r,
                "rewards_granted_total",
                "reward.granted events",
                &["reward_type"],
            ),
            batch_size,
            batch_seconds,
            batches_written_ahead,
            store_seconds: histogram(
                r,
                "store_seconds",
                "Store latency",
                &["op"],
                LATENCY.to_vec(),
            ),
            log_seconds: histogram(
                r,
                "log_seconds",
                "Publish (until acknowledged) and commit latency",
                &["op"],
                LATENCY.to_vec(),
            ),
            store_errors: counter(r, "store_errors_total", "Failed store calls", &["op"]),
            store_wedged,
            cql_batch_partitions,
            rebalances: counter(
                r,
                "rebalances_total",
                "Consumer group rebalances",
                &["kind"],
            ),
            retries: counter(
                r,
                "retries_total",
                "Stages failed and tried again, by stage",
                &["stage"],
            ),
            consumer_lag,
            amount_calls: counter(
                r,
                "amount_calls_total",
                "Amount requests decided by calling an endpoint, by outcome",
                &["outcome"],
            ),
            amount_call_seconds,
            amount_retries,
            amount_breaker_state,
            http_requests: counter(
                r,
                "http_requests_total",
                "Sidecar requests",
                &["route", "status"],
            ),
            http_request_seconds: histogram(
                r,
                "http_request_seconds",
                "Sidecar latency",
                &["route"],
                LATENCY.to_vec(),
            ),
            http_connections,
            http_connections_evicted,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding never fails");
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// CPU, memory, descriptors and start time of this process, as `questline_process_*` (the
/// registry's namespace). Only Linux has the collector.
fn register_process_collector(registry: &Registry) {
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
    #[cfg(not(target_os = "linux"))]
    let _ = registry;
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}
