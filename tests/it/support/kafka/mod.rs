//! Harness for tests against the real broker that `scripts/test` starts (tansu): the real
//! `questline run` binary as a child process, and an independent Python client
//! (confluent-kafka) to produce inputs and read outputs.

mod tansu;
pub use super::cql::cql_node;
pub use super::{free_port, questline_bin, root, wait_until};
pub use tansu::*;

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Broker {
    pub bootstrap: String,
    pub python: String,
    /// librdkafka properties the independent client adds to its own (TLS, SASL), passed to
    /// `client.py` as JSON in `QL_KAFKA_CLIENT_CONFIG`.
    pub client_config: Vec<(String, String)>,
}

/// The broker started by `scripts/test`; without it the test is skipped with a notice, except
/// under CI, where a missing broker is a failure (so CI can never pass vacuously).
pub fn broker() -> Option<Broker> {
    match (
        std::env::var("QUESTLINE_TEST_KAFKA"),
        std::env::var("QL_PYTHON"),
    ) {
        (Ok(bootstrap), Ok(python)) => Some(Broker {
            bootstrap,
            python,
            client_config: Vec::new(),
        }),
        _ if std::env::var_os("CI").is_some() => {
            panic!("QUESTLINE_TEST_KAFKA/QL_PYTHON unset under CI: run scripts/test")
        }
        _ => {
            eprintln!("skipped: no test broker (run scripts/test, which starts tansu)");
            None
        }
    }
}

fn client() -> PathBuf {
    root().join("tests/kafka/client.py")
}

/// Unique names so tests sharing one broker never see each other's records.
pub struct Names {
    pub prefix: String,
}

impl Names {
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Names {
            prefix: format!("{test}-{}-{}", std::process::id(), nanos % 1_000_000_000),
        }
    }
    pub fn topic(&self, name: &str) -> String {
        format!("{}.{name}", self.prefix)
    }
    pub fn group(&self) -> String {
        format!("{}.group", self.prefix)
    }
}

impl Broker {
    /// `python client.py`, with this broker's client configuration in its environment.
    fn client(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(client());
        if !self.client_config.is_empty() {
            let config: serde_json::Map<String, Value> = self
                .client_config
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            cmd.env("QL_KAFKA_CLIENT_CONFIG", Value::Object(config).to_string());
        }
        cmd
    }

    pub fn create_topics(&self, partitions: i32, topics: &[String]) {
        let status = self
            .client()
            .args(["create", &self.bootstrap, &partitions.to_string()])
            .args(topics)
            .status()
            .unwrap();
        assert!(status.success(), "creating topics {topics:?}");
    }

    /// Produces `(key, value)` records with the independent client.
    pub fn produce(&self, topic: &str, records: &[(String, String)]) {
        self.produce_with(topic, records, false, &[])
    }

    /// Like [`Broker::produce`], every record with `headers`.
    pub fn produce_with_headers(
        &self,
        topic: &str,
        records: &[(String, String)],
        headers: &[(&str, &str)],
    ) {
        self.produce_with(topic, records, false, headers)
    }

    /// Produces one record per record batch: what tests that resume mid-topic (restarts,
    /// rebalances) need on tansu 0.6.0, whose fetch at an offset inside a batch skips to the
    /// next batch (see `client.py`); Kafka has no such gap.
    pub fn produce_unbatched(&self, topic: &str, records: &[(String, String)]) {
        self.produce_with(topic, records, true, &[])
    }

    /// Produces `(key, value, timestamp)` records, each with its own record timestamp
    /// (milliseconds since the epoch): event time that lies days apart, for streaks and caps.
    pub fn produce_at(&self, topic: &str, records: &[(String, String, i64)]) {
        let lines: Vec<String> = records
            .iter()
            .map(|(k, v, at)| {
                assert!(!v.contains(['\n', '\t']) && !k.contains('\t'));
                format!("{k}\t{v}\t{at}")
            })
            .collect();
        self.produce_lines(topic, &lines, false, &[], true)
    }

    fn produce_with(
        &self,
        topic: &str,
        records: &[(String, String)],
        unbatched: bool,
        headers: &[(&str, &str)],
    ) {
        let lines: Vec<String> = records
            .iter()
            .map(|(k, v)| {
                assert!(!v.contains('\n') && !k.contains('\t'));
                format!("{k}\t{v}")
            })
            .collect();
        self.produce_lines(topic, &lines, unbatched, headers, false)
    }

    /// `client.py produce` with `lines` on its standard input.
    fn produce_lines(
        &self,
        topic: &str,
        lines: &[String],
        unbatched: bool,
        headers: &[(&str, &str)],
        timestamped: bool,
    ) {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let mut child = self
            .client()
            .env("QL_PRODUCE_HEADERS", Value::Object(headers).to_string())
            .env("QL_PRODUCE_TIMESTAMPS", if timestamped { "1" } else { "0" })
            .args(["produce", &self.bootstrap, topic])
            .args(unbatched.then_some("unbatched"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        {
            let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
            for line in lines {
                writeln!(stdin, "{line}").unwrap();
            }
        }
        assert!(child.wait().unwrap().success(), "produce to {topic}");
    }

    /// Reads up to `count` records from `topics` (from the beginning), waiting up to `timeout`.
    pub fn consume(&self, topics: &[String], count: usize, timeout: Duration) -> Vec<Value> {
        let args = [count.to_string(), timeout.as_secs_f64().to_string()];
        json_lines(&self.run_client("consume", &args, topics))
    }

    /// Every record of `topics`, until `idle` passes without a new one (at most `timeout`).
    pub fn drain(&self, topics: &[String], idle: Duration, timeout: Duration) -> Vec<Value> {
        let args = [
            idle.as_secs_f64().to_string(),
            timeout.as_secs_f64().to_string(),
        ];
        json_lines(&self.run_client("drain", &args, topics))
    }

    /// Like [`Broker::drain`], as a topic dump: one `questline replay --records` line per
    /// record (`schemas/kafka-record.v1.json`), the values' exact bytes, as text.
    pub fn dump(&self, topics: &[String], idle: Duration, timeout: Duration) -> String {
        let args = [
            idle.as_secs_f64().to_string(),
            timeout.as_secs_f64().to_string(),
        ];
        self.run_client("dump", &args, topics)
    }

    /// `client.py COMMAND BOOTSTRAP ARGS... TOPICS...`: its standard output; panics with its
    /// standard error when it fails.
    fn run_client(&self, command: &str, args: &[String], topics: &[String]) -> String {
        let out = self
            .client()
            .args([command, &self.bootstrap])
            .args(args)
            .args(topics)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The group's committed offsets of `topic`, summed over its partitions (0 where none).
    pub fn committed_total(&self, group: &str, topic: &str, partitions: i32) -> i64 {
        let offsets = self.committed(group, topic, partitions);
        offsets
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap().max(0))
            .sum()
    }

    /// Waits until the group has committed `total` records of `topic`; panics after `timeout`
    /// with `context()` (worker logs) in the message.
    pub fn wait_committed(
        &self,
        group: &str,
        topic: &str,
        partitions: i32,
        total: i64,
        timeout: Duration,
        context: impl Fn() -> String,
    ) {
        wait_until(
            timeout,
            &format!("{total} records of {topic} committed by {group}"),
            || {
                let now = self.committed_total(group, topic, partitions);
                assert!(now <= total, "committed {now} of {total} records");
                now == total
            },
            context,
        )
    }

    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Value {
        let args = [group.to_string(), topic.to_string(), partitions.to_string()];
        serde_json::from_str(&self.run_client("committed", &args, &[])).unwrap()
    }
}

/// One JSON value a line.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Where a worker keeps its state.
#[derive(Debug, Clone)]
pub enum StoreChoice {
    /// The embedded store in `<setup dir>/store`.
    Embedded,
    /// A CQL store (the dev CQL server of `scripts/test`), in a keyspace of its own: what
    /// several workers of one group share, since each embedded store belongs to one process.
    Cql { node: String, keyspace: String },
}

/// What a [`Setup`] writes into the worker's configuration.
#[derive(Debug, Clone)]
pub struct Options {
    pub catalog: PathBuf,
    pub store: StoreChoice,
    pub batch_size: usize,
    pub linger_ms: u64,
    /// More `[kafka.properties]` for the worker (TLS, SASL, limits).
    pub properties: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            catalog: root().join("examples/catalog"),
            store: StoreChoice::Embedded,
            batch_size: 200,
            linger_ms: 5,
            properties: Vec::new(),
        }
    }
}

/// The catalog of the fault tests: per-user challenges only (see its header).
pub fn unlimited_catalog() -> PathBuf {
    root().join("tests/kafka/catalog.toml")
}

/// A worker configuration in a temporary directory: its own topics, group, mappings and store.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub names: Names,
    pub config: PathBuf,
    pub options: Options,
}

impl Setup {
    /// Writes the shipped mappings with their topics renamed, and a config file.
    pub fn new(broker: &Broker, test: &str, partitions: i32) -> Setup {
        Self::with_options(broker, test, partitions, Options::default())
    }

    pub fn with_options(broker: &Broker, test: &str, partitions: i32, options: Options) -> Setup {
        let names = Names::new(test);
        let dir = tempfile::tempdir().unwrap();
        let mappings = dir.path().join("mappings");
        std::fs::create_dir(&mappings).unwrap();
        for (file, topic) in [
            ("seed.toml", "questline.actions"),
            ("kickapps.toml", "kickapps.user-actions"),
            ("kwegg.toml", "kwegg.events"),
        ] {
            let text = std::fs::read_to_string(root().join("mappings").join(file)).unwrap();
            let renamed = text.replace(
                &format!("\"{topic}\""),
                &format!("\"{}\"", names.topic(topic)),
            );
            std::fs::write(mappings.join(file), renamed).unwrap();
        }
        let config = dir.path().join("questline.toml");
        let t = |n: &str| names.topic(n);
        let store = match &options.store {
            StoreChoice::Embedded => format!(
                "[store]\npath = \"{}\"\n",
                dir.path().join("store").display()
            ),
            StoreChoice::Cql { node, keyspace } => format!(
                "[store]\nkind = \"scylla\"\n[store.scylla]\nnodes = [\"{node}\"]\nkeyspace = \"{keyspace}\"\nconsistency = \"one\"\nreplication_factor = 1\n"
            ),
        };
        std::fs::write(
            &config,
            format!(
                r#"[kafka]
brokers = "{bootstrap}"
group_id = "{group}"
partitions = {partitions}
[kafka.properties]
"fetch.wait.max.ms" = "20"
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
{properties}[topics]
progress = "{progress}"
rewards = "{rewards}"
dead_letter = "{dead}"
commands = "{commands}"
inventory_requests = "{requests}"
inventory_responses = "{responses}"
amount_requests = "{amount_requests}"
amount_responses = "{amount_responses}"
catalog = "{catalog_log}"
[catalog]
path = "{catalog}"
activation_delay_seconds = 2
refresh_ms = 200
[mappings]
dir = "{mappings}"
{store}[http]
listen = "127.0.0.1:0"
[pipeline]
linger_ms = {linger}
batch_size = {batch}
"#,
                bootstrap = broker.bootstrap,
                group = names.group(),
                progress = t("progress"),
                rewards = t("rewards"),
                dead = t("dead-letter"),
                commands = t("commands"),
                requests = t("inventory-requests"),
                responses = t("inventory-responses"),
                amount_requests = t("amount-requests"),
                amount_responses = t("amount-responses"),
                catalog_log = t("catalog"),
                catalog = options.catalog.display(),
                mappings = mappings.display(),
                linger = options.linger_ms,
                batch = options.batch_size,
                properties = options
                    .properties
                    .iter()
                    .map(|(k, v)| format!(
                        "{} = {}\n",
                        toml::Value::String(k.clone()),
                        toml::Value::String(v.clone())
                    ))
                    .collect::<String>(),
            ),
        )
        .unwrap();
        Setup {
            dir,
            names,
            config,
            options,
        }
    }

    /// `questline migrate` with this config (creates the CQL keyspace and tables).
    pub fn migrate(&self) {
        let out = Command::new(questline_bin())
            .args(["migrate", "--config"])
            .arg(&self.config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "migrate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The embedded store's directory (with [`StoreChoice::Embedded`]).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn topic(&self, name: &str) -> String {
        self.names.topic(name)
    }

    pub fn outputs(&self) -> Vec<String> {
        vec![
            self.topic("progress"),
            self.topic("rewards"),
            self.topic("dead-letter"),
        ]
    }

    /// The input topics of the shipped mappings, renamed: the worker never creates them.
    pub fn input_topics(&self) -> Vec<String> {
        ["questline.actions", "kickapps.user-actions", "kwegg.events"]
            .iter()
            .map(|n| self.topic(n))
            .collect()
    }

    /// The topics of its own the worker reads beside the inputs (co-partitioned with them).
    pub fn owned_read_topics(&self) -> Vec<String> {
        [
            "commands",
            "inventory-requests",
            "inventory-responses",
            "amount-requests",
            "amount-responses",
        ]
        .iter()
        .map(|n| self.topic(n))
        .collect()
    }

    /// Every topic the worker reads or writes (but the catalog log), created up front with
    /// `partitions` partitions (co-partitioned): the input topics, which the worker never
    /// creates, and its own, which it would create itself.
    pub fn create_all_topics(&self, broker: &Broker, partitions: i32) {
        let mut all = self.input_topics();
        all.extend(self.owned_read_topics());
        all.extend(self.outputs());
        broker.create_topics(partitions, &all);
    }

    /// Starts `questline run` with this config; `store` overrides the store directory.
    pub fn spawn_worker(&self, store: Option<&Path>) -> WorkerProcess {
        match store {
            Some(s) => self.spawn_worker_with(&[("QUESTLINE__STORE__PATH", s.as_os_str())]),
            None => self.spawn_worker_with(&[]),
        }
    }

    /// Starts `questline run` with this config and `env` (settings as `QUESTLINE__…`).
    pub fn spawn_worker_with(&self, env: &[(&str, &std::ffi::OsStr)]) -> WorkerProcess {
        self.spawn_command(&["run"], env)
    }

    /// Starts `questline ARGS… --config CONFIG` (`run --serve`, `serve`) with `env`, logging
    /// JSON lines to a file of its own.
    pub fn spawn_command(&self, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> WorkerProcess {
        let mut cmd = Command::new(questline_bin());
        cmd.args(args).arg("--config").arg(&self.config);
        cmd.envs(env.iter().copied());
        let log = self.dir.path().join(format!(
            "worker-{}.log",
            Instant::now().elapsed().as_nanos() ^ rand_suffix()
        ));
        let file = std::fs::File::create(&log).unwrap();
        cmd.env(
            "RUST_LOG",
            std::env::var("QL_WORKER_LOG")
                .unwrap_or_else(|_| "info,scylla=off,rdkafka=warn".into()),
        )
        .env("QUESTLINE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(file);
        WorkerProcess {
            child: cmd.spawn().unwrap(),
            log,
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub struct WorkerProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, and the exit code (None if it had to be killed after `timeout`, or was ended
    /// by a signal). Anything but exit 0 prints the exit status and the worker's log, so a
    /// failed assertion on the code shows why.
    pub fn terminate(mut self, timeout: Duration) -> Option<i32> {
        self.signal("-TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                if !status.success() {
                    eprintln!("worker exited ({status}); its log:\n{}", self.log_text());
                }
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!(
            "worker still running {timeout:?} after SIGTERM, killed; its log:\n{}",
            self.log_text()
        );
        None
    }

    /// Waits for the worker to exit by itself: its exit code (None if it still runs after
    /// `timeout`, or was ended by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        self.wait_status(timeout).and_then(|status| status.code())
    }

    /// Waits for the worker to exit by itself: how it ended (None if it still runs after
    /// `timeout`); its `Debug` names a signal, which [`Self::wait`]'s code cannot.
    pub fn wait_status(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The worker's log lines (JSON, see `spawn_worker`) whose message is `message`.
    pub fn log_events(&self, message: &str) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["fields"]["message"] == message)
            .collect()
    }

    /// Partition numbers this worker has taken (claimed an epoch for) so far.
    pub fn partitions_taken(&self) -> BTreeSet<i64> {
        self.log_events("partition taken")
            .iter()
            .filter_map(|v| v["fields"]["partition"].as_i64())
            .collect()
    }

    /// The partition numbers of this worker's latest assignment, if it has one.
    pub fn assignment(&self) -> Option<BTreeSet<i64>> {
        let last = self.log_events("rebalance").into_iter().rev().find(|v| {
            v["fields"]["event"]
                .as_str()
                .is_some_and(|e| e.starts_with("Assigned"))
        })?;
        let text = last["fields"]["event"].as_str()?.to_string();
        // `Assigned([("topic", 0), ("topic", 1)])`: the number before each `)`.
        Some(
            text.split(')')
                .filter_map(|chunk| chunk.rsplit(", ").next()?.trim().parse().ok())
                .collect(),
        )
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 GET: the status and the body (a failed connection is status 0).
pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The address the worker's HTTP server listens on, from its log (JSON lines), waiting up to
/// a minute for it.
pub fn http_addr(worker: &WorkerProcess) -> SocketAddr {
    let mut addr = None;
    wait_until(
        Duration::from_secs(60),
        "the worker's HTTP server",
        || {
            addr = worker
                .log_events("sidecar listening")
                .first()
                .and_then(|e| e["fields"]["addr"].as_str()?.parse().ok());
            addr.is_some()
        },
        || worker.log_text(),
    );
    addr.expect("waited for it")
}

/// The seed's walk-through (200 + 300 + 500 points for user 151631) through `client`, and
/// the rewards it must produce: the "Earn 1000 Points" milestone and its voucher.
pub fn walk_through_rewards(client: &Broker, setup: &Setup, worker: &WorkerProcess) {
    client.produce(
        &setup.topic("questline.actions"),
        &[200, 300, 500]
            .iter()
            .map(|v| {
                (
                    "151631".to_string(),
                    serde_json::json!({"userId": "151631", "triggerId": 1, "value": v}).to_string(),
                )
            })
            .collect::<Vec<_>>(),
    );
    let rewards = client.consume(&[setup.topic("rewards")], 2, Duration::from_secs(40));
    let kinds: Vec<&str> = rewards
        .iter()
        .filter_map(|r| r["value"]["type"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["milestone.achieved", "reward.granted"],
        "{rewards:#?}\nworker log:\n{}",
        worker.log_text()
    );
    assert_eq!(rewards[0]["value"]["challengeId"], 1);
    assert_eq!(rewards[1]["value"]["code"], "BURGER-0001");
    for r in &rewards {
        assert_eq!(r["key"], "151631");
    }
}

/// Records of `type` among consumed outputs.
pub fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["value"]["type"] == kind)
        .collect()
}

/// `count` actions of the seed's shape for `users` users (`u0` … ), as `(key, JSON)`:
/// about 70% earn 1–120 points (trigger 1), the rest are check-ins (trigger 2), so every user
/// fires many milestones of the unlimited catalog. Deterministic for a `seed`.
pub fn actions(count: usize, users: usize, seed: u64) -> Vec<(String, String)> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    (0..count)
        .map(|_| {
            let user = format!("u{}", next() % users as u64);
            let action = if next() % 10 < 7 {
                serde_json::json!({"userId": user, "triggerId": 1, "value": 1 + next() % 120})
            } else {
                serde_json::json!({"userId": user, "triggerId": 2, "value": 1})
            };
            (user, action.to_string())
        })
        .collect()
}

/// What the pure engine makes of the input records, read back from the input topic with their
/// real coordinates (so event ids, which derive from them, match the worker's).
pub struct Expected {
    /// The rewards topic's events (milestones, grants, rejections) by event id, as JSON.
    pub rewards: std::collections::BTreeMap<String, Value>,
    pub engine: questline::core::engine::Engine,
}

/// Feeds `inputs` (records from [`Broker::consume`]/[`Broker::drain`] of one input topic)
/// through the engine in each partition's offset order — the order a worker applies them in
/// per user — with the mapping at `mapping` and the catalog at `catalog`.
pub fn expected(inputs: &[Value], catalog: &Path, mapping: &Path) -> Expected {
    use chrono::TimeZone;
    use questline::core::events::Stream;
    // As the worker sees it: its files bootstrapped the catalog log as version 1.
    let mut history = questline::files::load_catalog_history(catalog).unwrap();
    let tenants: Vec<String> = history.tenant_names().map(str::to_string).collect();
    for tenant in tenants {
        let version = history
            .bootstrap_version(&tenant, chrono::Utc::now(), "test")
            .unwrap();
        history.apply(version).unwrap();
    }
    let mapping = questline::files::load_mapping(mapping).unwrap().compile();
    let mut engine = questline::core::engine::Engine::with_history(
        std::sync::Arc::new(history),
        questline::core::engine::Internal::Loopback,
    );
    let mut records: Vec<&Value> = inputs.iter().collect();
    records.sort_by_key(|r| (r["partition"].as_i64(), r["offset"].as_i64()));
    let mut rewards = std::collections::BTreeMap::new();
    for r in records {
        let source = questline::core::model::SourceRef::new(
            r["topic"].as_str().unwrap(),
            r["partition"].as_i64().unwrap() as i32,
            r["offset"].as_i64().unwrap(),
        );
        let at = chrono::Utc
            .timestamp_millis_opt(r["timestamp"].as_i64().unwrap())
            .unwrap();
        let bytes = serde_json::to_vec(&r["value"]).unwrap();
        let processed = engine.process_record(&mapping, &bytes, &source, at);
        for event in processed.events {
            if event.stream() == Stream::Rewards {
                let old = rewards.insert(
                    event.event_id.to_string(),
                    serde_json::to_value(&event).unwrap(),
                );
                assert!(old.is_none(), "the engine minted {} twice", event.event_id);
            }
        }
    }
    Expected { rewards, engine }
}

/// `questline replay --records --config CONFIG` (the real binary) on the topic dump at `dump`:
/// its output events, by event id, of the types in `kinds`. Panics on an id minted twice.
pub fn replay_dump(
    config: &Path,
    dump: &Path,
    kinds: &[&str],
) -> std::collections::BTreeMap<String, Value> {
    let out = Command::new(questline_bin())
        .args(["replay", "--records", "--config"])
        .arg(config)
        .arg("--input")
        .arg(dump)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "questline replay --records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut events = std::collections::BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        if kinds.iter().any(|k| event["type"] == *k) {
            let id = event["eventId"].as_str().unwrap().to_string();
            let old = events.insert(id.clone(), event);
            assert!(old.is_none(), "replay minted {id} twice");
        }
    }
    events
}

/// The events of consumed output records by event id, and how many records carried an id
/// already seen. Panics if one event id comes with two different payloads: a redelivered
/// event must be the same event.
pub fn by_event_id(records: &[Value]) -> (std::collections::BTreeMap<String, Value>, usize) {
    let mut events = std::collections::BTreeMap::new();
    let mut copies = 0;
    for r in records {
        let id = r["value"]["eventId"]
            .as_str()
            .expect("an eventId")
            .to_string();
        assert!(!id.is_empty(), "empty eventId in {r}");
        assert_eq!(
            r["headers"]["questline-event-id"].as_str(),
            Some(id.as_str()),
            "header and payload ids differ"
        );
        match events.get(&id) {
            Some(seen) => {
                assert_eq!(seen, &r["value"], "event {id} published with two payloads");
                copies += 1;
            }
            None => {
                events.insert(id, r["value"].clone());
            }
        }
    }
    (events, copies)
}

/// Asserts that `got` holds exactly the expected events (ids and payloads), naming the first
/// few differences.
pub fn assert_same_events(
    got: &std::collections::BTreeMap<String, Value>,
    want: &std::collections::BTreeMap<String, Value>,
) {
    let missing: Vec<&Value> = want
        .iter()
        .filter(|(id, _)| !got.contains_key(*id))
        .map(|(_, v)| v)
        .collect();
    let unexpected: Vec<&Value> = got
        .iter()
        .filter(|(id, _)| !want.contains_key(*id))
        .map(|(_, v)| v)
        .collect();
    let differ: Vec<(&Value, &Value)> = want
        .iter()
        .filter_map(|(id, w)| got.get(id).filter(|g| *g != w).map(|g| (g, w)))
        .collect();
    assert!(
        missing.is_empty() && unexpected.is_empty() && differ.is_empty(),
        "{} expected events, {} published: {} missing (first: {:#?}), {} unexpected (first: {:#?}), \
         {} with other payloads (first, got/want: {:#?})",
        want.len(),
        got.len(),
        missing.len(),
        missing.first(),
        unexpected.len(),
        unexpected.first(),
        differ.len(),
        differ.first()
    );
}
