//! Tracing and Prometheus metrics: one registry, every metric name documented here.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `questline_records_in_total` | counter | topic | records consumed |
//! | `questline_actions_processed_total` | counter | outcome (`applied`, `duplicate`, `redelivered`, `ignored`) | actions evaluated or skipped |
//! | `questline_events_out_total` | counter | topic, type | events produced |
//! | `questline_dead_letters_total` | counter | reason (`mapping`, `unknown_trigger`, `unknown_tenant`, `too_large`, `not_json`; `output_too_large`: an output the broker refused for its size, replaced by a dead letter) | records dead-lettered |
//! | `questline_rewards_granted_total` | counter | reward_type | `reward.granted` events |
//! | `questline_batch_size` | histogram | | records per batch |
//! | `questline_batch_seconds` | histogram | | batch latency, evaluation start to commit (batches overlap: one is evaluated while the previous one is written, published and committed) |
//! | `questline_store_seconds` | histogram | op (`load`, `write`, `read`) | store latency |
//! | `questline_log_seconds` | histogram | op (`publish`, `commit`) | publishing a batch until every record is acknowledged; committing its offsets |
//! | `questline_store_errors_total` | counter | op | failed store calls (the partition pauses) |
//! | `questline_store_wedged` | gauge | | 1 while the embedded store is closed after an I/O failure (a full disk) and not yet reopened; 0 otherwise |
//! | `questline_rebalances_total` | counter | kind (`assign`, `revoke`) | consumer group rebalances |
//! | `questline_consumer_lag` | gauge | topic, partition | high watermark − committed position, where the broker reports it |
//! | `questline_http_requests_total` | counter | route, status | sidecar requests |
//! | `questline_http_request_seconds` | histogram | route | sidecar latency |

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::OnceLock;

/// The process's metrics. Cheap to clone handles; registered once.
pub struct Metrics {
    pub registry: Registry,
    pub records_in: IntCounterVec,
    pub actions_processed: IntCounterVec,
    pub events_out: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub rewards_granted: IntCounterVec,
    pub batch_size: Histogram,
    pub batch_seconds: Histogram,
    pub store_seconds: HistogramVec,
    pub log_seconds: HistogramVec,
    pub store_errors: IntCounterVec,
    pub store_wedged: IntGauge,
    pub rebalances: IntCounterVec,
    pub consumer_lag: IntGaugeVec,
    pub http_requests: IntCounterVec,
    pub http_request_seconds: HistogramVec,
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
        Metrics {
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
            rebalances: counter(
                r,
                "rebalances_total",
                "Consumer group rebalances",
                &["kind"],
            ),
            consumer_lag,
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

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Installs the tracing subscriber: `RUST_LOG` filter (default `info`), JSON lines when
/// `QUESTLINE_LOG_FORMAT=json`, and the scylla driver's noisy metadata refreshes filtered out.
pub fn init_tracing() {
    init_tracing_at("info")
}

/// As [`init_tracing`], with another default level (the demo keeps its output for events).
pub fn init_tracing_at(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},scylla::cluster=off,scylla::network=warn,rdkafka=warn"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var("QUESTLINE_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    let _ = result; // already installed (tests): keep the first
}
