//! End-to-end benchmark against a real Kafka-protocol broker (targets in docs/benchmarks.md): the rate at which
//! the broker can be produced to and consumed raw by librdkafka, the rate of the real
//! `questline run` worker on the same broker, the produce-to-event latency at half that rate,
//! and the worker's peak memory.
//!
//! ```text
//! scripts/bench                                   # builds, starts tansu, runs this
//! target/release/examples/bench_e2e --broker 127.0.0.1:9092 \
//!     --questline target/release/questline [--actions 200000] [--users 10000]
//! ```
//!
//! Options: `--actions N` (200000), `--users M` (10000), `--partitions P` (4),
//! `--batch-size B` (worker `pipeline.batch_size`, 2000), `--linger-ms L` (worker
//! `pipeline.linger_ms`, 5), `--latency-secs S` (10), `--latency-rate R` (actions/s of the
//! latency phase; default half the worker's measured rate), `--latency-users returning|fresh`
//! (whose actions: the throughput phase's users, the default, or new ones), `--warmup W` (200),
//! `--compression C` (the worker's librdkafka `compression.type`, questline's own by default: `lz4`),
//! `--worker-property KEY=VALUE` (a librdkafka property for the worker, repeatable), `--no-floor`
//! (skip phase 7), `--keep` (keep the worker's directory: config, store, log), `--cql HOST:PORT`
//! (the worker on the CQL store there, in a keyspace of its own made by `questline migrate`,
//! instead of the embedded store) and `--cql-pid PID` (that server's process here: its CPU per
//! action is reported too).
//!
//! Phases, all on topics with a unique prefix:
//! 1. produce N native actions (keyed by user id, idempotent producer, acks=all);
//! 2. raw consume them with a plain librdkafka consumer (the ceiling);
//! 3. the worker: spawned on its own input topic, joined (a warm-up is produced and waited
//!    for), then N actions produced and timed from the first send until the group's
//!    committed offsets reach the end. The worker commits only after the batch's state is
//!    durable in the embedded store and every event is acknowledged, so that is the rate with
//!    everything done. Its CPU per action counts what it does after the commit (the store's
//!    checkpoint) until it is back to the idle rate measured before the burst, less that rate;
//! 4. latency: actions at half the worker's rate, of the throughput phase's users (the same
//!    workload as the rate's) or, with `--latency-users fresh`, of new users; every output event is
//!    matched to its input by `source.partition`/`source.offset`; latency = the event's
//!    CreateTime (set by the worker's producer) − the action's CreateTime, and also the time
//!    it reached a consumer here;
//! 5. the worker's peak RSS (VmHWM), SIGTERM, exit status;
//! 6. the broker's own bound: the worker's events read back in phase 4 are produced again,
//!    alone, uncompressed and with lz4; the better rate divided by the events per action is
//!    the most any worker could do on this broker (and the ratio it could reach).
//! 7. the test bed's latency floor (`--no-floor` skips it): records produced as phase 4
//!    produces actions, at its rate, are copied by a pass-through (a plain consumer and an
//!    idempotent producer with the worker's client settings, no batching, no store); the
//!    copy's CreateTime − the original's is what the broker and the clients alone cost.
//!
//! The table gives each figure of docs/benchmarks.md's targets with its target, and the hot
//! state: the stored size of a user with 10 active challenges and a full action-id window.

use anyhow::{anyhow, bail, Context as _, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------------------------
// Options

struct Options {
    broker: String,
    questline: PathBuf,
    actions: usize,
    users: usize,
    partitions: i32,
    batch_size: usize,
    linger_ms: u64,
    latency_secs: f64,
    latency_rate: Option<f64>,
    /// Whose actions the latency phase sends: the throughput phase's users (the workload whose
    /// peak sets the rate) or users never seen before (a state row and a history row created
    /// per action: a heavier workload than the peak's).
    latency_fresh: bool,
    warmup: usize,
    /// The worker's `compression.type` (librdkafka), questline's own by default.
    compression: String,
    keep: bool,
    /// Print the latency phase second by second, beside the worker's metrics of that second.
    latency_series: bool,
    /// Measure the test bed's latency floor (phase 7); `--no-floor` skips it.
    floor: bool,
    /// `--worker-property KEY=VALUE` (repeatable): librdkafka properties added to the
    /// worker's `[kafka.properties]`, to compare client settings on the same build.
    worker_properties: Vec<(String, String)>,
    /// `--cql HOST:PORT`: the worker's store is the CQL store on that server (a keyspace of
    /// its own, created with `questline migrate`) instead of the embedded one.
    cql: Option<String>,
    /// `--cql-pid PID`: the CQL server's process on this machine, whose CPU per action the
    /// table then gives beside the worker's.
    cql_pid: Option<u32>,
}

impl Options {
    /// Whose actions the latency phase sends, as `--latency-users` names them.
    fn latency_users(&self) -> &'static str {
        if self.latency_fresh {
            "fresh"
        } else {
            "returning"
        }
    }
}

fn parse_args() -> Result<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut map: HashMap<String, String> = HashMap::new();
    let mut keep = false;
    let mut latency_series = false;
    let mut floor = true;
    let mut worker_properties = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        match a.as_str() {
            "--keep" => keep = true,
            "--latency-series" => latency_series = true,
            "--no-floor" => floor = false,
            "--worker-property" => {
                let v = args
                    .get(i + 1)
                    .ok_or_else(|| anyhow!("--worker-property needs KEY=VALUE"))?;
                let (key, value) = v
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--worker-property: KEY=VALUE, not {v:?}"))?;
                worker_properties.push((key.to_string(), value.to_string()));
                i += 1;
            }
            "-h" | "--help" => {
                println!(
                    "bench_e2e --broker HOST:PORT --questline PATH [--actions N] [--users M] \
                     [--partitions P] [--batch-size B] [--linger-ms L] [--latency-secs S] \
                     [--latency-rate R] [--latency-users returning|fresh] [--warmup W] \
                     [--compression none|lz4|zstd|...] [--latency-series] [--no-floor] [--worker-property KEY=VALUE]... \
                     [--cql HOST:PORT [--cql-pid PID]] [--keep]"
                );
                std::process::exit(0);
            }
            _ if a.starts_with("--") => {
                let v = args
                    .get(i + 1)
                    .ok_or_else(|| anyhow!("{a} needs a value"))?;
                map.insert(a[2..].to_string(), v.clone());
                i += 1;
            }
            _ => bail!("unexpected argument {a:?} (see --help)"),
        }
        i += 1;
    }
    fn num<T: std::str::FromStr>(map: &HashMap<String, String>, k: &str, d: T) -> Result<T> {
        match map.get(k) {
            None => Ok(d),
            Some(v) => v
                .replace('_', "")
                .parse()
                .map_err(|_| anyhow!("--{k}: not a number: {v}")),
        }
    }
    let broker = map
        .get("broker")
        .cloned()
        .or_else(|| std::env::var("QUESTLINE_TEST_KAFKA").ok())
        .ok_or_else(|| anyhow!("--broker HOST:PORT is required (or QUESTLINE_TEST_KAFKA)"))?;
    let questline = map
        .get("questline")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/questline"));
    if !questline.is_file() {
        bail!(
            "questline binary not found at {} (--questline)",
            questline.display()
        );
    }
    let o = Options {
        broker,
        questline,
        actions: num(&map, "actions", 200_000)?,
        users: num(&map, "users", 10_000)?,
        partitions: num(&map, "partitions", 4)?,
        batch_size: num(&map, "batch-size", 2_000)?,
        linger_ms: num(&map, "linger-ms", 5)?,
        latency_secs: num(&map, "latency-secs", 10.0)?,
        latency_rate: map
            .get("latency-rate")
            .map(|v| {
                v.parse()
                    .map_err(|_| anyhow!("--latency-rate: not a number: {v}"))
            })
            .transpose()?,
        latency_fresh: match map.get("latency-users").map(String::as_str) {
            None | Some("returning") => false,
            Some("fresh") => true,
            Some(other) => bail!("--latency-users: returning or fresh, not {other:?}"),
        },
        warmup: num(&map, "warmup", 200)?,
        compression: map
            .get("compression")
            .cloned()
            .unwrap_or_else(|| questline::kafka::PRODUCER_COMPRESSION.into()),
        keep,
        latency_series,
        floor,
        worker_properties,
        cql: map.get("cql").cloned(),
        cql_pid: map
            .get("cql-pid")
            .map(|v| v.parse().map_err(|_| anyhow!("--cql-pid: not a PID: {v}")))
            .transpose()?,
    };
    if o.actions == 0 || o.users == 0 || o.partitions <= 0 || o.warmup == 0 {
        bail!("--actions, --users, --partitions and --warmup must be positive");
    }
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn log(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

/// splitmix64: deterministic values without a random-number dependency.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// CPU time `d` spread over `n` actions, in µs each.
fn micros_per_action(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1e6 / n.max(1) as f64
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k/s", r / 1e3)
    } else {
        format!("{r:.0} /s")
    }
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

fn proc_field(pid: u32, field: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_string())
}

/// The worker's CPU for the actions of phase 3: in all, and the part spent after their offsets
/// were committed (deferred background work). What an idle worker spends anyway (librdkafka's
/// clients polling and their timers) is not the actions' cost: over the wait after the commit,
/// the idle rate measured before the burst is taken off.
#[derive(Debug, Clone)]
struct WorkerCpu {
    total: Duration,
    deferred: Duration,
    /// The idle worker's CPU per second of wall time.
    idle_per_sec: Duration,
    /// From the burst's start to the commit, by kind of thread, largest first; threads that
    /// ended meanwhile (the blocking pool's idle ones) under "ended threads".
    by_thread: Vec<(&'static str, Duration)>,
    /// Minor page faults over the same span as `total` (burst and deferred work): memory the
    /// worker touches for the first time, or again after its allocator returned it. A count,
    /// so it moves far less with the machine's load than CPU time does.
    minor_faults: u64,
}

/// The idle worker's CPU per second of wall time, over `window`.
fn idle_cpu_rate(pid: u32, window: Duration) -> Option<Duration> {
    let start = cpu_time(pid)?;
    std::thread::sleep(window);
    Some(
        cpu_time(pid)?
            .saturating_sub(start)
            .div_f64(window.as_secs_f64()),
    )
}

/// The process's CPU time once it is back to its idle rate (within 10 ms over half a second),
/// waiting first for the embedded store's checkpoint interval (5 s) so that a journal left
/// behind by a burst is checkpointed; at most 30 s. Returns it with the moment it was read.
fn settled_cpu(pid: u32, idle_per_sec: Duration) -> Option<(Duration, Instant)> {
    std::thread::sleep(Duration::from_secs(6));
    let deadline = Instant::now() + Duration::from_secs(24);
    let step = Duration::from_millis(500);
    let quiet = idle_per_sec.div_f64(2.0) + Duration::from_millis(10);
    let mut last = cpu_time(pid)?;
    loop {
        std::thread::sleep(step);
        let now = cpu_time(pid)?;
        if now.saturating_sub(last) <= quiet || Instant::now() >= deadline {
            return Some((now, Instant::now()));
        }
        last = now;
    }
}

/// The kinds of thread [`thread_cpu`] tells apart, as the table names them.
const RECORD_STEP: &str = "record step (main)";
const TOKIO: &str = "tokio workers and blocking pool (store, publish)";
const CHECKPOINT: &str = "store checkpoint";
const LIBRDKAFKA: &str = "librdkafka";

/// The worker's CPU so far by the kind of thread that spent it (threads still alive), from
/// /proc/PID/task: the record step on the main thread, tokio's other threads (its workers and
/// blocking pool: store writes and reads, publishing), the store's checkpoint, librdkafka's
/// threads and the producer's delivery-report polling.
fn thread_cpu(pid: u32) -> HashMap<&'static str, Duration> {
    let mut by_kind: HashMap<&'static str, Duration> = HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_kind;
    };
    for task in tasks.flatten() {
        let tid: u32 = task.file_name().to_string_lossy().parse().unwrap_or(0);
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let kind = match comm.trim() {
            _ if tid == pid => RECORD_STEP,
            "tokio-rt-worker" => TOKIO,
            "store-checkpoin" => CHECKPOINT,
            // questline's own polling threads (`kafka::polled`); rdkafka's `ThreadedProducer`
            // named its "producer polling thread", cut to 15 bytes (releases before it).
            "producer-poll" | "probe-poll" | "producer pollin" => "producer polling",
            c if c.starts_with("rdk:") => LIBRDKAFKA,
            _ => "other",
        };
        if let Some(cpu) = stat_cpu(&task.path().join("stat")) {
            *by_kind.entry(kind).or_default() += cpu;
        }
    }
    by_kind
}

/// CPU time (user + system) the process has used so far, from /proc/PID/stat. A rate on a
/// shared machine moves with whatever else runs; CPU per action much less so.
fn cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu(Path::new(&format!("/proc/{pid}/stat")))
}

/// The minor page faults the process has taken so far (`minflt`, /proc/PID/stat's 10th field).
fn minor_faults(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(7)?.parse().ok()
}

/// CPU time the whole machine has spent busy (every core: /proc/stat's first line, all but
/// idle and iowait), at the kernel's usual 100 ticks a second.
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(Duration::from_millis(busy * 10))
}

/// utime + stime of a process's or a thread's stat file.
fn stat_cpu(path: &Path) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    #[allow(unsafe_code)]
    let per_second = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n,
        _ => 100,
    };
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Producing

/// Delivery reports: the end offset of every partition, failures, and (for the latency phase)
/// each record's CreateTime by partition and offset.
struct Tracker {
    ends: Vec<AtomicI64>,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    stamps: Option<Mutex<HashMap<(i32, i64), i64>>>,
}

impl Tracker {
    fn new(partitions: i32, stamps: bool) -> Self {
        Tracker {
            ends: (0..partitions).map(|_| AtomicI64::new(0)).collect(),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            stamps: stamps.then(|| Mutex::new(HashMap::new())),
        }
    }
    fn ends(&self) -> Vec<i64> {
        self.ends.iter().map(|e| e.load(Ordering::SeqCst)).collect()
    }
}

impl ClientContext for Tracker {}

impl ProducerContext for Tracker {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let (p, o) = (m.partition(), m.offset());
                if let Some(end) = self.ends.get(p as usize) {
                    end.fetch_max(o + 1, Ordering::SeqCst);
                }
                if let (Some(stamps), Some(ts)) = (&self.stamps, m.timestamp().to_millis()) {
                    stamps.lock().unwrap().insert((p, o), ts);
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

type BenchProducer = ThreadedProducer<Tracker>;

/// A producer that has already connected and got its idempotent producer id (one record to
/// `scratch`), so timings start with a ready client.
fn producer(broker: &str, partitions: i32, stamps: bool, scratch: &str) -> Result<BenchProducer> {
    ready_producer(broker, partitions, stamps, scratch, &[])
}

/// [`producer`] with librdkafka properties `overrides` set over the bench's own.
fn ready_producer(
    broker: &str,
    partitions: i32,
    stamps: bool,
    scratch: &str,
    overrides: &[(&str, &str)],
) -> Result<BenchProducer> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("compression.type", "none")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("queue.buffering.max.messages", "500000");
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    let p: BenchProducer = config
        .create_with_context(Tracker::new(partitions, stamps))
        .context("creating the producer")?;
    p.send(BaseRecord::to(scratch).key("warm-up").payload("{}"))
        .map_err(|(e, _)| anyhow!("producing to {scratch}: {e}"))?;
    p.flush(Duration::from_secs(30))
        .context("first produce (connect, producer id)")?;
    if p.context().failed.load(Ordering::SeqCst) > 0 {
        bail!(
            "first produce failed: {}",
            p.context()
                .first_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default()
        );
    }
    if let Some(stamps) = &p.context().stamps {
        stamps.lock().unwrap().clear();
    }
    for e in &p.context().ends {
        e.store(0, Ordering::SeqCst);
    }
    Ok(p)
}

/// A native (seed-shaped) action, ~130 bytes: `(key, payload)`.
fn action(user: &str, trigger: u32, value: u64, action_id: &str) -> (String, String) {
    let payload = format!(
        r#"{{"userId": "{user}", "triggerId": {trigger}, "value": {value}, "actionId": "{action_id}", "actionType": "purchase.in_store"}}"#
    );
    (user.to_string(), payload)
}

/// Sends `record`, waiting while the producer's queue is full.
fn send_waiting<K, P>(p: &BenchProducer, mut record: BaseRecord<'_, K, P>) -> Result<()>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match p.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_micros(500));
            }
            Err((e, _)) => return Err(e.into()),
        }
    }
}

/// Sends `n` records made by `make(i)`, at most `per_sec` a second when given; returns the
/// time from the first send until every record is acknowledged.
fn produce(
    p: &BenchProducer,
    topic: &str,
    n: usize,
    per_sec: Option<f64>,
    mut make: impl FnMut(usize) -> (String, String),
) -> Result<Duration> {
    let before = p.context().failed.load(Ordering::SeqCst);
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        if let Some(r) = per_sec {
            // Paced in 1 ms steps: send what is due, then sleep.
            let due = ((start.elapsed().as_secs_f64() * r) as usize + 1).min(n);
            if i >= due {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        }
        let (key, payload) = make(i);
        let record = BaseRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .timestamp(now_ms());
        send_waiting(p, record).with_context(|| format!("produce to {topic}"))?;
        i += 1;
    }
    p.flush(Duration::from_secs(60))
        .with_context(|| format!("flushing the producer of {topic}"))?;
    let elapsed = start.elapsed();
    let failed = p.context().failed.load(Ordering::SeqCst) - before;
    if failed > 0 {
        bail!(
            "{failed} records to {topic} failed: {}",
            p.context()
                .first_error
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_default()
        );
    }
    Ok(elapsed)
}

// ---------------------------------------------------------------------------------------------
// Consuming

/// The test bed's consumer settings, which every consumer here and the worker's own share:
/// the fetch wait of TEST-SERVERS.md and a quick group session.
const TEST_BED_CONSUMER: [(&str, &str); 3] = [
    ("fetch.wait.max.ms", "10"),
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
];

/// Consumer settings the worker uses (src/kafka), with the test bed's.
fn consumer_config(broker: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range");
    for (key, value) in TEST_BED_CONSUMER {
        c.set(key, value);
    }
    c
}

struct RawResult {
    /// From the first record received to the last.
    steady: Duration,
    /// From subscribe to the last record (join and first fetch included).
    total: Duration,
    bytes: u64,
}

/// A plain librdkafka group member reading `n` records of `topic`: the ceiling.
fn raw_consume(broker: &str, topic: &str, group: &str, n: usize) -> Result<RawResult> {
    let consumer: BaseConsumer = consumer_config(broker, group)
        .create()
        .context("raw consumer")?;
    let start = Instant::now();
    consumer.subscribe(&[topic])?;
    let deadline = start + Duration::from_secs(120);
    let mut first: Option<Instant> = None;
    let (mut count, mut bytes) = (0usize, 0u64);
    while count < n {
        if Instant::now() > deadline {
            bail!("raw consumer read {count} of {n} records in 120 s");
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                bytes += m.payload().map_or(0, |p| p.len() as u64);
                count += 1;
            }
            Some(Err(e)) => log(format!("raw consumer: {e}")),
        }
    }
    let end = Instant::now();
    consumer.unsubscribe();
    Ok(RawResult {
        steady: end - first.unwrap_or(start),
        total: end - start,
        bytes,
    })
}

/// The group's committed offsets on the input topic, read by a client that never joins the
/// group (no subscribe, an explicit partition list): TEST-SERVERS.md warns that committed()
/// on a member whose partitions changed can hang.
struct CommitWatcher {
    consumer: BaseConsumer,
    tpl: TopicPartitionList,
}

impl CommitWatcher {
    fn new(broker: &str, group: &str, topic: &str, partitions: i32) -> Result<Self> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", broker)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .context("commit watcher")?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        Ok(CommitWatcher { consumer, tpl })
    }

    fn committed(&self) -> Result<Vec<i64>> {
        let tpl = self
            .consumer
            .committed_offsets(self.tpl.clone(), Duration::from_secs(5))?;
        let mut out = vec![0; self.tpl.count()];
        for e in tpl.elements() {
            if let (Offset::Offset(o), Some(slot)) =
                (e.offset(), out.get_mut(e.partition() as usize))
            {
                *slot = o;
            }
        }
        Ok(out)
    }
}

fn reached(committed: &[i64], ends: &[i64]) -> bool {
    committed.iter().zip(ends).all(|(c, e)| c >= e)
}

// ---------------------------------------------------------------------------------------------
// The worker process

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the worker exited early ({status}); last lines of its log:\n{}",
                self.tail(30)
            );
        }
        Ok(())
    }

    fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM; the exit code, or None if it had to be killed after `timeout`.
    fn terminate(&mut self, timeout: Duration) -> Result<Option<i32>> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status.code().unwrap_or(-1)));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(None)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Names {
    prefix: String,
}

impl Names {
    fn t(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }

    /// The run's keyspace on a CQL server (`--cql`): its unique prefix as CQL spells names.
    fn keyspace(&self) -> String {
        format!("{}_ks", self.prefix).replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    }
}

/// Writes the worker's config (like tests/it/support/kafka): its own topics and group, the
/// example catalog, the seed mapping on the bench's input topic, the embedded store (or the CQL
/// store, with `--cql`).
fn write_config(
    dir: &Path,
    o: &Options,
    names: &Names,
    input: &str,
    http_port: u16,
) -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mappings = dir.join("mappings");
    std::fs::create_dir_all(&mappings)?;
    let seed = std::fs::read_to_string(root.join("mappings/seed.toml"))?;
    let renamed = seed.replace("\"questline.actions\"", &format!("\"{input}\""));
    if renamed == seed {
        bail!("mappings/seed.toml no longer names \"questline.actions\"");
    }
    std::fs::write(mappings.join("seed.toml"), renamed)?;
    let config = dir.join("questline.toml");
    std::fs::write(
        &config,
        format!(
            r#"[kafka]
brokers = "{broker}"
group_id = "{group}"
partitions = {partitions}
[kafka.properties]
{properties}[topics]
progress = "{progress}"
rewards = "{rewards}"
dead_letter = "{dead}"
commands = "{commands}"
inventory_requests = "{requests}"
inventory_responses = "{responses}"
[catalog]
path = "{catalog}"
[mappings]
dir = "{mappings}"
{store}
[http]
listen = "127.0.0.1:{http_port}"
[pipeline]
linger_ms = {linger}
batch_size = {batch}
"#,
            broker = o.broker,
            group = names.t("worker"),
            partitions = o.partitions,
            progress = names.t("progress"),
            rewards = names.t("rewards"),
            dead = names.t("dead-letter"),
            commands = names.t("commands"),
            requests = names.t("inventory-requests"),
            responses = names.t("inventory-responses"),
            catalog = root.join("examples/catalog").display(),
            mappings = mappings.display(),
            store = match &o.cql {
                None => format!("[store]\npath = {:?}", dir.join("store").display().to_string()),
                Some(addr) => format!(
                    "[store]\nkind = \"scylla\"\n[store.scylla]\nnodes = [{addr:?}]\nkeyspace = {:?}",
                    names.keyspace()
                ),
            },
            linger = o.linger_ms,
            batch = o.batch_size,
            properties = worker_kafka_properties(o)
                .iter()
                .map(|(k, v)| format!("{k:?} = {v:?}\n"))
                .collect::<String>(),
        ),
    )?;
    Ok(config)
}

/// The worker's `[kafka.properties]`: the test bed's consumer settings and `--compression`,
/// each replaced by a `--worker-property` of the same key, then the other `--worker-property`
/// settings. (Written twice, a key would make the worker refuse its configuration as a
/// duplicate.) The latency floor's pass-through takes the same, split as the worker splits
/// them.
fn worker_kafka_properties(o: &Options) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = TEST_BED_CONSUMER
        .iter()
        .copied()
        .chain([("compression.type", o.compression.as_str())])
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (key, value) in &o.worker_properties {
        match properties.iter_mut().find(|(k, _)| k == key) {
            Some(set) => set.1 = value.clone(),
            None => properties.push((key.clone(), value.clone())),
        }
    }
    properties
}

/// Creates the CQL store's keyspace and tables for the worker's config (`questline migrate`).
fn migrate(o: &Options, config: &Path, addr: &str) -> Result<()> {
    log(format!("   questline migrate on the CQL server at {addr}"));
    let out = Command::new(&o.questline)
        .args(["migrate", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} migrate", o.questline.display()))?;
    if !out.status.success() {
        bail!(
            "questline migrate failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn spawn_worker(o: &Options, config: &Path, dir: &Path) -> Result<Worker> {
    let log = dir.join("worker.log");
    let file = std::fs::File::create(&log)?;
    let child = Command::new(&o.questline)
        .args(["run", "--config"])
        .arg(config)
        // BENCH_WORKER_LOG: the worker's RUST_LOG, to look into a run (`--keep` keeps the log).
        .env(
            "RUST_LOG",
            std::env::var("BENCH_WORKER_LOG").unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .env_remove("QUESTLINE__STORE__PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .with_context(|| format!("spawning {}", o.questline.display()))?;
    Ok(Worker { child, log })
}

/// Waits until the group has committed `ends` on the input topic (the worker polls, so this
/// is checked every few milliseconds); `done` says whether `ends` is final yet.
fn wait_committed(
    watcher: &CommitWatcher,
    worker: &mut Worker,
    ends: impl Fn() -> Vec<i64>,
    done: impl Fn() -> bool,
    timeout: Duration,
    what: &str,
) -> Result<Instant> {
    let start = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let finished = done();
        let target = ends();
        let committed = watcher.committed()?;
        if finished && reached(&committed, &target) {
            return Ok(Instant::now());
        }
        worker.check_alive()?;
        if start.elapsed() > timeout {
            bail!(
                "{what}: committed {committed:?} of {target:?} after {timeout:?}; worker log:\n{}",
                worker.tail(20)
            );
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            let c: i64 = committed.iter().sum();
            let t: i64 = target.iter().sum();
            log(format!("{what}: {c} of {t} offsets committed"));
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// The worker's Prometheus metrics (src/telemetry.rs), for a breakdown of its time

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `/metrics` as `series → value` (series with their labels, as rendered).
fn scrape(port: u16) -> Result<HashMap<String, f64>> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .ok_or_else(|| anyhow!("no HTTP body from /metrics"))?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

/// The latency phase second by second (by when the action was sent): its events' latency
/// beside what the worker's metrics counted in that second: batches, records, and the time
/// its store writes, publishes and checkpoints took.
///
/// Returns what the summary line reports of it: the p99 of the events sent in seconds in
/// which the embedded store did not checkpoint, and the share of the phase's batches written
/// ahead.
fn print_latency_series(
    seen: &[Seen],
    stamps: &HashMap<(i32, i64), i64>,
    start_ms: i64,
    scrapes: &[(i64, HashMap<String, f64>)],
) -> SeriesSummary {
    let mut by_second: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    // Milestones by second: a milestone's prizes may go through the inventory stage, whose
    // answer takes two more trips through the broker than the action's own events.
    let mut milestones: HashMap<i64, usize> = HashMap::new();
    for e in seen {
        let (Some(&sent_at), Some(created)) = (stamps.get(&(e.partition, e.offset)), e.created)
        else {
            continue;
        };
        let second = (sent_at - start_ms) / 1_000;
        by_second.entry(second).or_default().push(created - sent_at);
        if e.kind == "milestone.achieved" {
            *milestones.entry(second).or_default() += 1;
        }
    }
    eprintln!(
        "second | events | p50 / p99 / max ms | milestones || worker in that second: batches (written \
         ahead), records, evaluate s, store write s, publish s, checkpoints (s); worker CPU s, \
         machine busy s"
    );
    let mut quiet = Vec::new();
    let (mut batches, mut ahead) = (0.0, 0.0);
    for (second, lat) in by_second {
        let window = scrapes
            .windows(2)
            .find(|w| (w[0].0 - start_ms) / 1_000 == second);
        let delta = |k: &str| {
            window.map_or(0.0, |w| {
                w[1].1.get(k).copied().unwrap_or(0.0) - w[0].1.get(k).copied().unwrap_or(0.0)
            })
        };
        if window.is_some() && delta("questline_store_seconds_count{op=\"checkpoint\"}") == 0.0 {
            quiet.extend_from_slice(&lat);
        }
        batches += delta("questline_batch_seconds_count");
        ahead += delta("questline_batches_written_ahead_total");
        let st = stats(lat);
        let worker = if window.is_some() {
            // How many of a kind took longer than 25 ms (the histogram's buckets).
            let slow = |sum: &str, op: &str| {
                delta(&format!("{sum}_count{{op=\"{op}\"}}"))
                    - delta(&format!("{sum}_bucket{{op=\"{op}\",le=\"0.025\"}}"))
            };
            format!(
                "{:.0} ({:.0}), {:.0}, {:.3}, {:.3}, {:.3}, {:.0} ({:.3}); {:.2}, {:.2}; over 25 ms: {:.0} partition evaluations, {:.0} writes, {:.0} publishes",
                delta("questline_batch_seconds_count"),
                delta("questline_batches_written_ahead_total"),
                delta("questline_batch_size_sum"),
                delta("questline_store_seconds_sum{op=\"load\"}"),
                delta("questline_store_seconds_sum{op=\"write\"}"),
                delta("questline_log_seconds_sum{op=\"publish\"}"),
                delta("questline_store_seconds_count{op=\"checkpoint\"}"),
                delta("questline_store_seconds_sum{op=\"checkpoint\"}"),
                delta("worker_cpu_s"),
                delta("machine_busy_s"),
                slow("questline_store_seconds", "load"),
                slow("questline_store_seconds", "write"),
                slow("questline_log_seconds", "publish"),
            )
        } else {
            String::new()
        };
        eprintln!(
            "{second:>6} | {:>6} | {} / {} / {} | {:>4} || {worker}",
            st.n,
            st.p50,
            st.p99,
            st.max,
            milestones.get(&second).copied().unwrap_or(0)
        );
    }
    SeriesSummary {
        quiet: stats(quiet),
        ahead_share: ahead / batches.max(1.0),
    }
}

/// What `--latency-series` adds to the summary line.
struct SeriesSummary {
    /// The latency of the events sent in seconds without a checkpoint.
    quiet: Stats,
    /// The share of the latency phase's batches written ahead.
    ahead_share: f64,
}

/// Where the worker's time went between two scrapes.
struct Breakdown {
    batches: f64,
    /// Batches written while the batch before them was being acknowledged.
    ahead: f64,
    records: f64,
    events: f64,
    process_s: f64,
    write_s: f64,
    publish_s: f64,
    commit_s: f64,
}

impl Breakdown {
    fn between(a: &HashMap<String, f64>, b: &HashMap<String, f64>) -> Self {
        let d = |k: &str| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0);
        let sum_prefix = |m: &HashMap<String, f64>, p: &str| -> f64 {
            m.iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(_, v)| v)
                .sum()
        };
        Breakdown {
            batches: d("questline_batch_seconds_count"),
            ahead: d("questline_batches_written_ahead_total"),
            records: d("questline_batch_size_sum"),
            events: sum_prefix(b, "questline_events_out_total")
                - sum_prefix(a, "questline_events_out_total"),
            process_s: d("questline_store_seconds_sum{op=\"load\"}"),
            write_s: d("questline_store_seconds_sum{op=\"write\"}"),
            publish_s: d("questline_log_seconds_sum{op=\"publish\"}"),
            commit_s: d("questline_log_seconds_sum{op=\"commit\"}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output events (src/core/events.rs): only what the latency match needs.

#[derive(Deserialize)]
struct OutEvent {
    #[serde(rename = "type")]
    kind: String,
    source: OutSource,
}

#[derive(Deserialize)]
struct OutSource {
    topic: String,
    partition: i32,
    offset: i64,
}

struct Seen {
    rewards_topic: bool,
    kind: String,
    partition: i32,
    offset: i64,
    created: Option<i64>,
    received: i64,
}

fn output_consumer(o: &Options, names: &Names, topics: &[String]) -> Result<BaseConsumer> {
    assigned_consumer(o, &names.t("latency-reader"), topics, &[]).context("output consumer")
}

/// A consumer of every partition of `topics` from their beginning, assigned rather than
/// subscribed: no group join to wait for. `overrides`: properties set over the test bed's.
fn assigned_consumer(
    o: &Options,
    group: &str,
    topics: &[String],
    overrides: &[(&str, &str)],
) -> Result<BaseConsumer> {
    let mut config = consumer_config(&o.broker, group);
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    let consumer: BaseConsumer = config.create()?;
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..o.partitions {
            tpl.add_partition_offset(t, p, Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    Ok(consumer)
}

struct Stats {
    n: usize,
    p50: i64,
    p99: i64,
    max: i64,
}

fn stats(mut v: Vec<i64>) -> Stats {
    v.sort_unstable();
    Stats {
        n: v.len(),
        p50: percentile(&v, 0.50),
        p99: percentile(&v, 0.99),
        max: v.last().copied().unwrap_or(-1),
    }
}

/// Copies every record `from` consumes to `output` as soon as it comes, naming the original
/// (`partition:offset`), until `stop` (phase 7).
fn pass_through(
    from: &BaseConsumer,
    to: &BenchProducer,
    output: &str,
    stop: &AtomicBool,
) -> Result<()> {
    while !stop.load(Ordering::SeqCst) {
        let m = match from.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => m,
            Some(Err(e)) => bail!("the pass-through's consumer: {e}"),
            None => continue,
        };
        // The copy names its original: its partition and offset.
        let payload = format!("{}:{}", m.partition(), m.offset());
        let mut record = BaseRecord::to(output).payload(&payload);
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        send_waiting(to, record).context("the pass-through's producer")?;
    }
    Ok(())
}

/// Phase 7: the test bed's own latency, without the worker. Records are produced to
/// `input` as phase 4 produces actions (the same producer settings, rate and duration), and a
/// pass-through takes each one as soon as it is consumed and produces it again to `output`,
/// with the worker's client settings (the consumer's `fetch.wait.max.ms`; the producer's
/// idempotence, `acks=all` and `linger.ms`) and nothing else: no batch linger, no evaluation,
/// no store. Its latency (the copy's CreateTime − the original's) is what the broker and the
/// clients alone cost on this machine, the floor under phase 4's.
fn latency_floor(
    o: &Options,
    input: &str,
    output: &str,
    scratch: &str,
    group: &str,
    rate: f64,
) -> Result<Stats> {
    let count = ((rate * o.latency_secs) as usize).max(1);
    // The worker's clients: its `[kafka.properties]`, each side taking its own as the
    // worker's clients do (src/kafka); its producer's linger besides.
    let properties = worker_kafka_properties(o);
    let worker = |other_side_only: fn(&str) -> bool| -> Vec<(&str, &str)> {
        properties
            .iter()
            .filter(|(k, _)| !other_side_only(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    };
    let pass_in = assigned_consumer(
        o,
        group,
        &[input.to_string()],
        &worker(questline::kafka::producer_only),
    )?;
    let reader = assigned_consumer(o, &format!("{group}-reader"), &[output.to_string()], &[])?;
    let mut worker_settings = vec![("linger.ms", questline::kafka::PRODUCER_LINGER_MS)];
    worker_settings.extend(worker(questline::kafka::consumer_only));
    let pass_out = ready_producer(&o.broker, o.partitions, false, scratch, &worker_settings)
        .context("the pass-through's producer")?;
    let source = producer(&o.broker, o.partitions, true, scratch)?;
    let stop = AtomicBool::new(false);
    let copies = std::thread::scope(|s| -> Result<Vec<(i32, i64, i64)>> {
        let passing = s.spawn(|| -> Result<()> {
            let passed = pass_through(&pass_in, &pass_out, output, &stop);
            if passed.is_err() {
                stop.store(true, Ordering::SeqCst); // the reader waits for nothing more
            }
            passed
        });
        let reading = s.spawn(|| {
            let mut copies = Vec::with_capacity(count);
            let deadline = Instant::now() + Duration::from_secs_f64(o.latency_secs + 60.0);
            while copies.len() < count && Instant::now() < deadline && !stop.load(Ordering::SeqCst)
            {
                let Some(Ok(m)) = reader.poll(Duration::from_millis(20)) else {
                    continue;
                };
                let original = m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|p| p.split_once(':'))
                    .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
                if let (Some((p, o)), Some(created)) = (original, m.timestamp().to_millis()) {
                    copies.push((p, o, created));
                }
            }
            copies
        });
        let sent = produce(&source, input, count, Some(rate), |i| {
            let user = format!("floor-{}", i % o.users);
            action(&user, 1, 1, &format!("floor-{i}"))
        });
        if sent.is_err() {
            stop.store(true, Ordering::SeqCst); // nothing more will come through
        }
        let copies = reading
            .join()
            .map_err(|_| anyhow!("the floor's reader panicked"))?;
        stop.store(true, Ordering::SeqCst);
        passing
            .join()
            .map_err(|_| anyhow!("the pass-through panicked"))??;
        sent?;
        Ok(copies)
    })?;
    let stamps = source.context().stamps.as_ref().unwrap().lock().unwrap();
    let latencies: Vec<i64> = copies
        .iter()
        .filter_map(|(p, o, created)| stamps.get(&(*p, *o)).map(|sent| created - sent))
        .collect();
    if latencies.len() < count {
        bail!(
            "the latency floor: {} of {count} records came back through the pass-through",
            latencies.len()
        );
    }
    Ok(stats(latencies))
}

// ---------------------------------------------------------------------------------------------

/// The broker's own limit on the worker: every action yields `events_per_action` events
/// of about `event_bytes`, and producing the worker's own events again, alone, with nothing
/// else running, reached `output_rate` (the better of uncompressed and lz4).
struct BrokerBound {
    events_per_action: f64,
    event_bytes: usize,
    /// Produce rate of the worker's own events per `compression.type` tried.
    output_rates: Vec<(&'static str, f64)>,
    /// The best of them.
    output_rate: f64,
}

/// Output events kept from the throughput phase for phase 6 to replay.
const SAMPLED_EVENTS: usize = 5_000;

impl BrokerBound {
    /// Actions/s beyond which the broker could not take the events, even if evaluating,
    /// storing and consuming cost nothing.
    fn worker_cap(&self) -> f64 {
        self.output_rate / self.events_per_action.max(1e-9)
    }
}

struct Report {
    produce_rate: f64,
    raw: RawResult,
    raw_rate: f64,
    worker_produce: Duration,
    worker_elapsed: Duration,
    worker_rate: f64,
    worker_cpu: Option<WorkerCpu>,
    /// The CQL server's CPU over the throughput phase and the worker's settling after it
    /// (`--cql-pid`).
    cql_cpu: Option<Duration>,
    breakdown: Breakdown,
    latency_target_rate: f64,
    latency_sent: usize,
    /// The worker's CPU per action over the latency phase, less its idle rate (µs).
    latency_cpu_per_action: Option<f64>,
    latency_send_rate: f64,
    latency_matched_inputs: usize,
    latency_all: Stats,
    latency_rewards: Stats,
    latency_arrival: Stats,
    /// Each event type's count and latency (action → event CreateTime) in the latency phase.
    kinds: Vec<(String, Stats)>,
    throughput_outputs: usize,
    broker_bound: BrokerBound,
    hwm: String,
    rss: String,
    exit: Option<i32>,
    series: Option<SeriesSummary>,
    /// Phase 7: the test bed's latency floor at the latency phase's rate.
    floor: Option<Stats>,
}

fn main() {
    match run() {
        Ok(ok) => std::process::exit(if ok { 0 } else { 1 }),
        Err(e) => {
            eprintln!("bench: FAILED: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Ok(true) when every phase ran, the worker exited 0 and, with fresh users, every action of
/// the latency phase was matched by an event (targets met or not).
fn run() -> Result<bool> {
    let o = parse_args()?;
    let load_before = loadavg();
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() % 1_000_000_000;
    let names = Names {
        prefix: format!("bench-{}-{stamp}", std::process::id()),
    };
    let raw_topic = names.t("raw-actions");
    let scratch = names.t("scratch");
    let input = names.t("actions");
    let outputs = [names.t("progress"), names.t("rewards")];
    let all_topics: Vec<String> = [
        scratch.clone(),
        raw_topic.clone(),
        input.clone(),
        names.t("progress"),
        names.t("rewards"),
        names.t("dead-letter"),
        names.t("commands"),
        names.t("inventory-requests"),
        names.t("inventory-responses"),
        names.t("floor-in"),
        names.t("floor-out"),
    ]
    .into();
    log(format!(
        "broker {}, {} actions for {} users, {} partitions, prefix {}",
        o.broker, o.actions, o.users, o.partitions, names.prefix
    ));

    // Topics, created up front (tansu does not create them on produce).
    {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &o.broker)
            .create()
            .context("admin client")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let new: Vec<NewTopic<'_>> = all_topics
            .iter()
            .map(|t| NewTopic::new(t, o.partitions, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        for r in rt.block_on(admin.create_topics(new.iter(), &opts))? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => bail!("creating topic {t}: {code}"),
            }
        }
    }

    let users = o.users;
    let run_tag = stamp;
    // Throughput actions: user i % M, triggers 1 (earned points, challenge 1 at 1000) and 3
    // (redeemed points, repeatable challenge 2 at 100, capped twice a day), so the mix makes
    // progress, milestones, rewards, capped rejections and inventory requests.
    let make_action = |tag: &'static str| {
        move |i: usize| {
            let r = mix(i as u64 ^ run_tag as u64);
            let user = format!("user-{:06}", i % users);
            let (trigger, value) = if r & 1 == 0 {
                (1, 50 + (r >> 8) % 200)
            } else {
                (3, 20 + (r >> 8) % 100)
            };
            action(&user, trigger, value, &format!("{tag}-{run_tag}-{i:09}"))
        }
    };

    // ---- 1. produce
    let p1 = producer(&o.broker, o.partitions, false, &scratch)?;
    log(format!("1. producing {} actions to {raw_topic}", o.actions));
    let d = produce(&p1, &raw_topic, o.actions, None, make_action("raw"))?;
    let produce_rate = rate(o.actions, d);
    log(format!(
        "   {} in {:.2} s",
        fmt_rate(produce_rate),
        d.as_secs_f64()
    ));
    drop(p1);

    // ---- 2. raw consume
    log("2. raw consume (plain librdkafka group member, fetch.wait.max.ms=10)");
    let raw = raw_consume(&o.broker, &raw_topic, &names.t("raw-reader"), o.actions)?;
    let raw_rate = rate(o.actions, raw.steady);
    log(format!(
        "   {} (first to last record; {:.2} s with the join)",
        fmt_rate(raw_rate),
        raw.total.as_secs_f64()
    ));

    // ---- 3. worker
    let dir = tempfile::Builder::new()
        .prefix("questline-bench.")
        .tempdir()?;
    let http_port = free_port()?;
    let config = write_config(dir.path(), &o, &names, &input, http_port)?;
    if let Some(addr) = &o.cql {
        migrate(&o, &config, addr)?;
        // The bench leaves it behind: a dev server forgets it, a real cluster keeps it.
        log(format!(
            "   keyspace {} created on {addr} (drop it after the run on a server that persists)",
            names.keyspace()
        ));
    }
    let mut worker = spawn_worker(&o, &config, dir.path())?;
    let pid = worker.child.id();
    log(format!(
        "3. worker (pid {pid}, batch_size {}, linger_ms {}), dir {}",
        o.batch_size,
        o.linger_ms,
        dir.path().display()
    ));
    let watcher = CommitWatcher::new(&o.broker, &names.t("worker"), &input, o.partitions)?;
    let p3 = Arc::new(producer(&o.broker, o.partitions, false, &scratch)?);
    produce(&p3, &input, o.warmup, None, |i| {
        action(&format!("warm-{i}"), 1, 10, &format!("warm-{run_tag}-{i}"))
    })?;
    wait_committed(
        &watcher,
        &mut worker,
        || p3.context().ends(),
        || true,
        Duration::from_secs(90),
        "warm-up",
    )?;
    log(format!(
        "   joined and warm ({} records committed); producing {} actions",
        o.warmup, o.actions
    ));
    let idle_per_sec = idle_cpu_rate(worker.child.id(), Duration::from_secs(3));
    let metrics_before = scrape(http_port).context("worker /metrics")?;
    let cpu_before = cpu_time(worker.child.id());
    let cql_cpu_before = o.cql_pid.and_then(cpu_time);
    let faults_before = minor_faults(worker.child.id());
    let threads_before = thread_cpu(worker.child.id());
    let produced = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let producing = {
        let (p3, produced, input) = (Arc::clone(&p3), Arc::clone(&produced), input.clone());
        let make = make_action("run");
        let n = o.actions;
        std::thread::spawn(move || {
            let r = produce(&p3, &input, n, None, make);
            produced.store(true, Ordering::SeqCst);
            r
        })
    };
    let timeout = Duration::from_secs(60).max(Duration::from_secs_f64(o.actions as f64 / 2_000.0));
    let waited = wait_committed(
        &watcher,
        &mut worker,
        || p3.context().ends(),
        || produced.load(Ordering::SeqCst),
        timeout,
        "worker",
    );
    let worker_produce = producing
        .join()
        .map_err(|_| anyhow!("producer thread panicked"))??;
    let worker_elapsed = waited? - t0;
    let cpu_committed = cpu_time(worker.child.id());
    let committed_at = Instant::now();
    let threads_committed = thread_cpu(worker.child.id());
    let breakdown = Breakdown::between(
        &metrics_before,
        &scrape(http_port).context("worker /metrics")?,
    );
    // Work the worker defers past the commit (the embedded store's checkpoint of its journal)
    // is part of what the actions cost: CPU per action is read once the worker is idle.
    let worker_cpu = idle_per_sec.and_then(|idle_per_sec| {
        let (settled, settled_at) = settled_cpu(worker.child.id(), idle_per_sec)?;
        let faults = minor_faults(worker.child.id())?.saturating_sub(faults_before?);
        let idle = idle_per_sec.mul_f64((settled_at - committed_at).as_secs_f64());
        let after = settled.saturating_sub(cpu_committed?).saturating_sub(idle);
        let burst = cpu_committed?.saturating_sub(cpu_before?);
        let mut by_thread: Vec<(&'static str, Duration)> = threads_committed
            .iter()
            .map(|(kind, cpu)| {
                let before = threads_before.get(kind).copied().unwrap_or_default();
                (*kind, cpu.saturating_sub(before))
            })
            .collect();
        let attributed: Duration = by_thread.iter().map(|(_, cpu)| *cpu).sum();
        by_thread.push(("ended threads", burst.saturating_sub(attributed)));
        by_thread.sort_by_key(|(_, cpu)| std::cmp::Reverse(*cpu));
        Some(WorkerCpu {
            total: burst + after,
            deferred: after,
            idle_per_sec,
            by_thread,
            minor_faults: faults,
        })
    });
    // The CQL server's CPU over the same span: the burst and the worker's settling after it.
    let cql_cpu = o
        .cql_pid
        .and_then(cpu_time)
        .zip(cql_cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let worker_rate = rate(o.actions, worker_elapsed);
    log(format!(
        "   {} ({:.2} s; producing took {:.2} s)",
        fmt_rate(worker_rate),
        worker_elapsed.as_secs_f64(),
        worker_produce.as_secs_f64()
    ));

    // ---- 4. latency
    let reader = output_consumer(&o, &names, &outputs)?;
    // Catch up with the throughput phase's output first, so the reader is idle at the start.
    let mut throughput_outputs = 0usize;
    let mut output_bytes = 0u64;
    // Real events of the throughput phase, replayed by phase 6.
    let mut samples: Vec<(String, String)> = Vec::new();
    let mut idle_since = Instant::now();
    let catch_up = Instant::now();
    while idle_since.elapsed() < Duration::from_millis(1500)
        && catch_up.elapsed() < Duration::from_secs(60)
    {
        match reader.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                throughput_outputs += 1;
                output_bytes += (m.key_len() + m.payload_len()) as u64;
                if samples.len() < SAMPLED_EVENTS {
                    let text = |b: Option<&[u8]>| {
                        String::from_utf8_lossy(b.unwrap_or_default()).into_owned()
                    };
                    samples.push((text(m.key()), text(m.payload())));
                }
                idle_since = Instant::now();
            }
            Some(Err(e)) => log(format!("output reader: {e}")),
            None => {}
        }
    }
    let target = o.latency_rate.unwrap_or(worker_rate / 2.0);
    let count = ((target * o.latency_secs) as usize).max(1);
    log(format!(
        "4. latency: {count} actions of {} users at {} for {:.0} s ({} output events of phase 3 read first)",
        o.latency_users(),
        fmt_rate(target),
        o.latency_secs,
        throughput_outputs
    ));
    let p4 = producer(&o.broker, o.partitions, true, &scratch)?;
    let stop = AtomicBool::new(false);
    let lat_start_ms = now_ms();
    let lat_cpu_start = (cpu_time(worker.child.id()), Instant::now());
    // With --latency-series: the worker's metrics once a second, to set beside each second's
    // latency.
    let scrapes: std::sync::Mutex<Vec<(i64, HashMap<String, f64>)>> = Default::default();
    let worker_pid = worker.child.id();
    let (seen, sent) = std::thread::scope(|s| -> Result<(Vec<Seen>, Duration)> {
        if o.latency_series {
            s.spawn(|| {
                let mut next = lat_start_ms;
                while !stop.load(Ordering::SeqCst) {
                    if now_ms() >= next {
                        if let Ok(mut m) = scrape(http_port) {
                            if let Some(cpu) = cpu_time(worker_pid) {
                                m.insert("worker_cpu_s".into(), cpu.as_secs_f64());
                            }
                            if let Some(busy) = machine_busy() {
                                m.insert("machine_busy_s".into(), busy.as_secs_f64());
                            }
                            scrapes.lock().unwrap().push((now_ms(), m));
                        }
                        next += 1_000;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        let reading = s.spawn(|| {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let m = match reader.poll(Duration::from_millis(20)) {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        log(format!("output reader: {e}"));
                        continue;
                    }
                    None => continue,
                };
                let received = now_ms();
                let created = m.timestamp().to_millis();
                if created.is_some_and(|c| c < lat_start_ms - 1_000) {
                    continue; // late output of phase 3
                }
                let Some(ev) = m
                    .payload()
                    .and_then(|p| serde_json::from_slice::<OutEvent>(p).ok())
                else {
                    continue;
                };
                if ev.source.topic != input {
                    continue; // an inventory answer's event: its source is internal
                }
                seen.push(Seen {
                    rewards_topic: m.topic() == outputs[1],
                    kind: ev.kind,
                    partition: ev.source.partition,
                    offset: ev.source.offset,
                    created,
                    received,
                });
            }
            seen
        });
        let result = (|| -> Result<Duration> {
            let returning = make_action("lat");
            let d = produce(&p4, &input, count, Some(target), |i| {
                if !o.latency_fresh {
                    return returning(i);
                }
                let user = format!("lat-{run_tag}-{i}");
                if i % 2 == 0 {
                    action(&user, 1, 100 + (i as u64 % 800), &format!("lat-{i}"))
                } else {
                    // At least 100: challenge 2 is achieved, so a milestone and a reward.
                    action(&user, 3, 100 + (i as u64 % 100), &format!("lat-{i}"))
                }
            })?;
            let ends = |ends_a: Vec<i64>, ends_b: Vec<i64>| -> Vec<i64> {
                ends_a.iter().zip(&ends_b).map(|(a, b)| *a.max(b)).collect()
            };
            let fin = ends(p3.context().ends(), p4.context().ends());
            wait_committed(
                &watcher,
                &mut worker,
                || fin.clone(),
                || true,
                Duration::from_secs(60),
                "latency",
            )?;
            std::thread::sleep(Duration::from_millis(1500));
            Ok(d)
        })();
        stop.store(true, Ordering::SeqCst);
        let seen = reading
            .join()
            .map_err(|_| anyhow!("reader thread panicked"))?;
        Ok((seen, result?))
    })?;
    // The worker's CPU over the latency phase (until its last offsets are committed and 1.5 s
    // more), less its idle rate over that time, per action sent.
    let latency_cpu = cpu_time(worker.child.id())
        .zip(lat_cpu_start.0)
        .zip(worker_cpu.as_ref())
        .map(|((end, start), cpu)| {
            let idle = cpu
                .idle_per_sec
                .mul_f64(lat_cpu_start.1.elapsed().as_secs_f64());
            end.saturating_sub(start).saturating_sub(idle)
        });
    let stamps = p4
        .context()
        .stamps
        .as_ref()
        .unwrap()
        .lock()
        .unwrap()
        .clone();
    let mut all = Vec::new();
    let mut rewards = Vec::new();
    let mut arrival = Vec::new();
    let mut matched = std::collections::HashSet::new();
    let mut kinds: HashMap<String, Vec<i64>> = HashMap::new();
    for e in &seen {
        let Some(&sent_at) = stamps.get(&(e.partition, e.offset)) else {
            continue;
        };
        matched.insert((e.partition, e.offset));
        let of_kind = kinds.entry(e.kind.clone()).or_default();
        if let Some(c) = e.created {
            of_kind.push(c - sent_at);
            all.push(c - sent_at);
            if e.rewards_topic {
                rewards.push(c - sent_at);
            }
        }
        arrival.push(e.received - sent_at);
    }
    let mut kinds: Vec<(String, Stats)> = kinds.into_iter().map(|(k, v)| (k, stats(v))).collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    let series = o.latency_series.then(|| {
        print_latency_series(&seen, &stamps, lat_start_ms, &scrapes.into_inner().unwrap())
    });
    let latency_sent = stamps.len();
    let latency_cpu_per_action = latency_cpu.map(|cpu| micros_per_action(cpu, latency_sent));

    // ---- 5. memory and shutdown
    let hwm = proc_field(pid, "VmHWM:").unwrap_or_else(|| "?".into());
    let rss = proc_field(pid, "VmRSS:").unwrap_or_else(|| "?".into());
    log(format!("5. worker VmHWM {hwm}, VmRSS {rss}; SIGTERM"));
    let exit = worker.terminate(Duration::from_secs(30))?;

    // ---- 6. what the broker alone can take of the worker's output
    let events_per_action = breakdown.events / o.actions.max(1) as f64;
    let event_bytes = (output_bytes / throughput_outputs.max(1) as u64).max(1) as usize;
    let mut output_rates = Vec::new();
    for compression in ["none", "lz4"] {
        let n = o.actions;
        log(format!(
            "6. broker bound: producing {n} of the worker's events (average {event_bytes} B) to {scratch}, compression {compression}"
        ));
        if samples.is_empty() {
            bail!("no output events were read back to replay");
        }
        let p6 = ready_producer(
            &o.broker,
            o.partitions,
            false,
            &scratch,
            &[("compression.type", compression)],
        )?;
        let d = produce(&p6, &scratch, n, None, |i| {
            samples[i % samples.len()].clone()
        })?;
        output_rates.push((compression, rate(n, d)));
    }
    // The more favourable of the two for the worker.
    let output_rate = output_rates.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    let broker_bound = BrokerBound {
        events_per_action,
        event_bytes,
        output_rates,
        output_rate,
    };
    log(format!(
        "   {} in this phase; {events_per_action:.2} events per action: the broker alone caps the worker at {}",
        fmt_rate(output_rate),
        fmt_rate(broker_bound.worker_cap())
    ));
    // ---- 7. the test bed's latency floor, at the latency phase's rate
    let floor = if o.floor {
        log(format!(
            "7. latency floor: {count} records through a pass-through consumer and producer at {}",
            fmt_rate(target)
        ));
        let floor = latency_floor(
            &o,
            &names.t("floor-in"),
            &names.t("floor-out"),
            &scratch,
            &names.t("floor"),
            target,
        )?;
        log(format!(
            "   p50 / p99 / max {} / {} / {} ms",
            floor.p50, floor.p99, floor.max
        ));
        Some(floor)
    } else {
        None
    };
    if o.keep {
        let kept = dir.keep();
        log(format!("kept {}", kept.display()));
    }

    let report = Report {
        produce_rate,
        raw_rate,
        raw,
        worker_produce,
        worker_elapsed,
        worker_cpu,
        cql_cpu,
        worker_rate,
        breakdown,
        latency_target_rate: target,
        latency_sent,
        latency_cpu_per_action,
        latency_send_rate: rate(latency_sent, sent),
        latency_matched_inputs: matched.len(),
        latency_all: stats(all),
        latency_rewards: stats(rewards),
        latency_arrival: stats(arrival),
        kinds,
        throughput_outputs,
        broker_bound,
        hwm,
        rss,
        exit,
        series,
        floor,
    };
    print!("{}", table(&o, &report, &load_before));
    println!("{}", summary_line(&o, &report));
    // Every fresh user's action causes an event; a returning user's may cause none (a
    // non-repeatable challenge it already achieved), so only fresh users are checked one by
    // one. Every action of both is applied: the phase waits for all its offsets' commits.
    let all_matched = report.latency_matched_inputs == report.latency_sent;
    Ok(report.exit == Some(0) && (all_matched || !o.latency_fresh))
}

/// The stored size of a user's hot state (a target of docs/benchmarks.md), computed with the
/// stores' own encoding: 10 active challenges with a trigger in progress each, as the
/// evaluator leaves them (`benches/evaluator.rs` measures the same through the evaluator),
/// a balance, a one-partition watermark and a full window of remembered action ids.
fn hot_state_bytes() -> usize {
    use questline::core::state::{UserState, RECENT_ACTION_IDS};
    use questline::store::{HistoryChain, HistoryPos};
    let mut state = UserState::default();
    for id in 1..=10 {
        let challenge = state.challenges.entry(id).or_default();
        challenge.trigger_mut(1, id).accumulated = rust_decimal::Decimal::from(70);
    }
    state
        .balances
        .insert("points".into(), rust_decimal::Decimal::from(1200));
    for i in 0..RECENT_ACTION_IDS {
        state.remember_action(&format!("00000000-0000-4000-8000-{i:012}"));
    }
    let record = questline::store::UserRecord {
        state,
        applied: [("questline.actions:3".into(), 1_234_567)]
            .into_iter()
            .collect(),
        history_len: 40,
        // Its way into its history: the newest entry and the block link.
        history_chain: HistoryChain {
            head: Some(HistoryPos::new("questline.actions:3", 1_234_567, 1)),
            block: Some(HistoryPos::new("questline.actions:3", 1_234_001, 0)),
        },
    };
    questline::store::user_row(&record).len()
}

/// The run's figures on one line of `key=value` pairs, for comparing runs
/// (`scripts/bench-ab` collects them): rates in k actions/s, CPU per action in µs (`cpu_us`
/// with the work deferred past the commit, the rest by thread until the commit), latency in
/// ms, peak RSS in MB. A figure the run could not measure is left out.
fn summary_line(o: &Options, r: &Report) -> String {
    let per_action = |d: Duration| micros_per_action(d, o.actions);
    let mut pairs: Vec<(&str, String)> = vec![
        ("rate_kps", format!("{:.1}", r.worker_rate / 1e3)),
        (
            "ratio",
            format!(
                "{:.3}",
                r.worker_rate / r.broker_bound.worker_cap().max(1e-9)
            ),
        ),
    ];
    if let Some(cpu) = &r.worker_cpu {
        pairs.push(("cpu_us", format!("{:.1}", per_action(cpu.total))));
        pairs.push((
            "after_commit_s",
            format!("{:.2}", cpu.deferred.as_secs_f64()),
        ));
        for (kind, key) in [
            (RECORD_STEP, "main_us"),
            (TOKIO, "tokio_us"),
            (LIBRDKAFKA, "rdkafka_us"),
            (CHECKPOINT, "checkpoint_us"),
        ] {
            if let Some((_, d)) = cpu.by_thread.iter().find(|(k, _)| *k == kind) {
                pairs.push((key, format!("{:.1}", per_action(*d))));
            }
        }
    }
    if let Some(cpu) = r.cql_cpu {
        pairs.push(("cql_server_us", format!("{:.1}", per_action(cpu))));
    }
    if let Some(cpu) = r.latency_cpu_per_action {
        pairs.push(("latency_cpu_us", format!("{cpu:.1}")));
    }
    pairs.push(("p50_ms", r.latency_all.p50.to_string()));
    pairs.push(("p99_ms", r.latency_all.p99.to_string()));
    if let Some(series) = &r.series {
        if series.quiet.n > 0 {
            pairs.push(("p99_quiet_ms", series.quiet.p99.to_string()));
        }
        pairs.push((
            "latency_ahead_pct",
            format!("{:.0}", 100.0 * series.ahead_share),
        ));
    }
    if let Some(floor) = &r.floor {
        pairs.push(("floor_p50_ms", floor.p50.to_string()));
        pairs.push(("floor_p99_ms", floor.p99.to_string()));
    }
    pairs.push(("burst_ahead", format!("{:.0}", r.breakdown.ahead)));
    if let Ok(kb) = r.hwm.trim_end_matches("kB").trim().parse::<f64>() {
        pairs.push(("rss_mb", format!("{:.0}", kb * 1024.0 / 1e6)));
    }
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("summary: {}", body.join(" "))
}

fn table(o: &Options, r: &Report, load_before: &str) -> String {
    let mut s = String::new();
    let ratio = r.worker_rate / r.raw_rate;
    let mark = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "questline end to end: {} actions, {} users, {} partitions, batch_size {}, linger_ms {}, {}",
        o.actions,
        o.users,
        o.partitions,
        o.batch_size,
        o.linger_ms,
        match &o.cql {
            None => "embedded store".to_string(),
            Some(addr) => format!("CQL store on {addr}"),
        }
    );
    let _ = writeln!(
        s,
        "machine: {} cores, {}; load average {} before, {} after (shared machine: figures are noisy)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        load_before,
        loadavg()
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "| what | figure | target |");
    let _ = writeln!(s, "|---|---|---|");
    let _ = writeln!(
        s,
        "| produce, idempotent, acks=all, ~{} B actions | {} | |",
        r.raw.bytes / o.actions.max(1) as u64,
        fmt_rate(r.produce_rate)
    );
    let _ = writeln!(
        s,
        "| raw consume, librdkafka, fetch.wait.max.ms=10 (ceiling) | {} | |",
        fmt_rate(r.raw_rate)
    );
    let _ = writeln!(
        s,
        "| worker: first produce to all offsets committed (state durable, events acked) | {} ({:.2} s) | |",
        fmt_rate(r.worker_rate),
        r.worker_elapsed.as_secs_f64()
    );
    if let Some(cpu) = r.cql_cpu {
        let _ = writeln!(
            s,
            "| CQL server CPU (user + system) per action, over the burst and the worker's settling | {:.1} µs ({:.2} s of CPU) | |",
            micros_per_action(cpu, o.actions),
            cpu.as_secs_f64()
        );
    }
    if let Some(cpu) = &r.worker_cpu {
        let per_action = micros_per_action(cpu.total, o.actions);
        let _ = writeln!(
            s,
            "| worker CPU (user + system) per action, deferred work included | {:.1} µs ({:.2} s of CPU in {:.2} s, {:.2} s of it after the commit, beyond the idle rate) | ≤ 8 µs {} |",
            per_action,
            cpu.total.as_secs_f64(),
            r.worker_elapsed.as_secs_f64(),
            cpu.deferred.as_secs_f64(),
            mark(per_action <= 8.0)
        );
        let _ = writeln!(
            s,
            "| worker CPU when idle (measured before the burst) | {:.1} % of a core | |",
            cpu.idle_per_sec.as_secs_f64() * 100.0
        );
        let _ = writeln!(
            s,
            "| worker minor page faults per action, deferred work included | {:.3} ({} in all) | |",
            cpu.minor_faults as f64 / o.actions.max(1) as f64,
            cpu.minor_faults
        );
        let burst: f64 = cpu.by_thread.iter().map(|(_, c)| c.as_secs_f64()).sum();
        let parts: Vec<String> = cpu
            .by_thread
            .iter()
            .filter(|(_, c)| !c.is_zero())
            .map(|(kind, c)| {
                format!(
                    "{kind} {:.1} µs ({:.0} %)",
                    micros_per_action(*c, o.actions),
                    100.0 * c.as_secs_f64() / burst.max(1e-9)
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "| worker CPU per action until the commit, by thread | {} | |",
            parts.join(", ")
        );
    }
    // The old target (worker ≥ 0.5 × raw consume) is out of reach on a shared machine
    // (docs/benchmarks.md); the ratio is kept as a figure.
    let _ = writeln!(s, "| worker / raw | {ratio:.2} | |");
    let bb = &r.broker_bound;
    let _ = writeln!(
        s,
        "| broker alone: produce of the worker's own events (average {} B), compression {} | {} | |",
        bb.event_bytes,
        bb.output_rates
            .iter()
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
            .join(" / "),
        bb.output_rates
            .iter()
            .map(|(_, r)| fmt_rate(*r))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let _ = writeln!(
        s,
        "| broker bound on the worker: the better of those / {:.2} events per action (worker / raw at most) | {} ({:.2}) | |",
        bb.events_per_action,
        fmt_rate(bb.worker_cap()),
        bb.worker_cap() / r.raw_rate
    );
    let bound_ratio = r.worker_rate / bb.worker_cap().max(1e-9);
    let _ = writeln!(
        s,
        "| worker rate ÷ broker bound | {} ÷ {} = {:.3} | ≥ 0.2 {} |",
        fmt_rate(r.worker_rate),
        fmt_rate(bb.worker_cap()),
        bound_ratio,
        mark(bound_ratio >= 0.2)
    );
    let l = &r.latency_all;
    let _ = writeln!(
        s,
        "| latency, {} users, action → event CreateTime, p50 / p99 / max ({} events) | {} / {} / {} ms | p99 ≤ 50 ms {} |",
        o.latency_users(),
        l.n,
        l.p50,
        l.p99,
        l.max,
        mark(l.n > 0 && l.p99 <= 50)
    );
    let w = &r.latency_rewards;
    let _ = writeln!(
        s,
        "| latency, rewards topic only ({} events) | {} / {} / {} ms | |",
        w.n, w.p50, w.p99, w.max
    );
    let a = &r.latency_arrival;
    let _ = writeln!(
        s,
        "| latency, action → received by a consumer ({} events) | {} / {} / {} ms | |",
        a.n, a.p50, a.p99, a.max
    );
    if let Some(f) = &r.floor {
        let _ = writeln!(
            s,
            "| latency floor of the test bed: record → copied by a pass-through consumer and producer with the worker's client settings, CreateTime to CreateTime, same rate ({} records) | {} / {} / {} ms | |",
            f.n, f.p50, f.p99, f.max
        );
    }
    let hwm_mb = r
        .hwm
        .trim_end_matches("kB")
        .trim()
        .parse::<f64>()
        .ok()
        .map(|kb| kb * 1024.0 / 1e6);
    let _ = writeln!(
        s,
        "| worker peak RSS (VmHWM) | {} | ≤ 300 MB {} |",
        r.hwm,
        mark(hwm_mb.is_some_and(|mb| mb <= 300.0))
    );
    let hot = hot_state_bytes();
    let _ = writeln!(
        s,
        "| hot state: stored row of a user with 10 active challenges and a full window of {} action ids | {hot} B | ≤ 1 KiB {} |",
        questline::core::state::RECENT_ACTION_IDS,
        mark(hot <= 1024)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "raw consume with the group join: {:.2} s; worker phase: producing the {} actions took {:.2} s of the {:.2} s",
        r.raw.total.as_secs_f64(),
        o.actions,
        r.worker_produce.as_secs_f64(),
        r.worker_elapsed.as_secs_f64()
    );
    let b = &r.breakdown;
    let e = r.worker_elapsed.as_secs_f64();
    let pct = |x: f64| 100.0 * x / e.max(1e-9);
    let _ = writeln!(
        s,
        "worker phase, from its metrics: {:.0} batches ({:.0} written ahead) of {:.0} records on \
         average ({:.0} records with the internal topics), {:.0} events out ({} read back from \
         progress+rewards, warm-up included)",
        b.batches,
        b.ahead,
        b.records / b.batches.max(1.0),
        b.records,
        b.events,
        r.throughput_outputs
    );
    let _ = writeln!(
        s,
        "  of the {e:.2} s (evaluation overlaps the previous batch's write, publish and commit): \
         evaluate + store reads {:.2} s ({:.0}%), store writes {:.2} s ({:.0}%), publish until \
         acknowledged {:.2} s ({:.0}%), commit {:.2} s ({:.0}%)",
        b.process_s,
        pct(b.process_s),
        b.write_s,
        pct(b.write_s),
        b.publish_s,
        pct(b.publish_s),
        b.commit_s,
        pct(b.commit_s)
    );
    if let Some(cpu) = r.latency_cpu_per_action {
        let _ = writeln!(
            s,
            "latency phase: the worker's CPU per action, less its idle rate: {cpu:.1} µs"
        );
    }
    let _ = writeln!(
        s,
        "latency phase: {} actions sent at {} (target {}), {} of them matched by an event; events: {}",
        r.latency_sent,
        fmt_rate(r.latency_send_rate),
        fmt_rate(r.latency_target_rate),
        r.latency_matched_inputs,
        r.kinds
            .iter()
            .map(|(k, l)| format!("{k} {} (p50 / p99 / max {} / {} / {} ms)", l.n, l.p50, l.p99, l.max))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "worker: VmRSS {} at the end; SIGTERM exit status {}",
        r.rss,
        r.exit
            .map_or("none (killed after 30 s)".into(), |c| c.to_string())
    );
    s
}
