//! Harness for tests against the real broker that `scripts/test` starts (tansu): the real
//! `questline run` binary as a child process, and an independent Python client
//! (confluent-kafka) to produce inputs and read outputs.
#![allow(dead_code)]

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub bootstrap: String,
    pub python: String,
}

/// The broker started by `scripts/test`; without it the test is skipped with a notice, except
/// under CI, where a missing broker is a failure (so CI can never pass vacuously).
pub fn broker() -> Option<Broker> {
    match (
        std::env::var("QUESTLINE_TEST_KAFKA"),
        std::env::var("QL_PYTHON"),
    ) {
        (Ok(bootstrap), Ok(python)) => Some(Broker { bootstrap, python }),
        _ if std::env::var_os("CI").is_some() => {
            panic!("QUESTLINE_TEST_KAFKA/QL_PYTHON unset under CI: run scripts/test")
        }
        _ => {
            eprintln!("skipped: no test broker (run scripts/test, which starts tansu)");
            None
        }
    }
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
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
    pub fn create_topics(&self, partitions: i32, topics: &[String]) {
        let status = Command::new(&self.python)
            .arg(client())
            .args(["create", &self.bootstrap, &partitions.to_string()])
            .args(topics)
            .status()
            .unwrap();
        assert!(status.success(), "creating topics {topics:?}");
    }

    /// Produces `(key, value)` records with the independent client.
    pub fn produce(&self, topic: &str, records: &[(String, String)]) {
        let mut child = Command::new(&self.python)
            .arg(client())
            .args(["produce", &self.bootstrap, topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        {
            let mut stdin = std::io::BufWriter::new(child.stdin.take().unwrap());
            for (k, v) in records {
                assert!(!v.contains('\n') && !k.contains('\t'));
                writeln!(stdin, "{k}\t{v}").unwrap();
            }
        }
        assert!(child.wait().unwrap().success(), "produce to {topic}");
    }

    /// Reads up to `count` records from `topics` (from the beginning), waiting up to `timeout`.
    pub fn consume(&self, topics: &[String], count: usize, timeout: Duration) -> Vec<Value> {
        let out = Command::new(&self.python)
            .arg(client())
            .args([
                "consume",
                &self.bootstrap,
                &count.to_string(),
                &timeout.as_secs_f64().to_string(),
            ])
            .args(topics)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Value {
        let out = Command::new(&self.python)
            .arg(client())
            .args([
                "committed",
                &self.bootstrap,
                group,
                topic,
                &partitions.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// A worker configuration in a temporary directory: its own topics, group, mappings and store.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub names: Names,
    pub config: PathBuf,
}

impl Setup {
    /// Writes the shipped mappings with their topics renamed, and a config file.
    pub fn new(broker: &Broker, test: &str, partitions: i32) -> Setup {
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
[topics]
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
[store]
path = "{store}"
[http]
listen = "127.0.0.1:0"
[pipeline]
linger_ms = 5
batch_size = 200
"#,
                bootstrap = broker.bootstrap,
                group = names.group(),
                progress = t("progress"),
                rewards = t("rewards"),
                dead = t("dead-letter"),
                commands = t("commands"),
                requests = t("inventory-requests"),
                responses = t("inventory-responses"),
                catalog = root().join("examples/catalog").display(),
                mappings = mappings.display(),
                store = dir.path().join("store").display(),
            ),
        )
        .unwrap();
        Setup { dir, names, config }
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

    /// Every input topic, created up front with `partitions` partitions (co-partitioned).
    pub fn create_all_topics(&self, broker: &Broker, partitions: i32) {
        let all: Vec<String> = [
            "questline.actions",
            "kickapps.user-actions",
            "kwegg.events",
            "progress",
            "rewards",
            "dead-letter",
            "commands",
            "inventory-requests",
            "inventory-responses",
        ]
        .iter()
        .map(|n| self.topic(n))
        .collect();
        broker.create_topics(partitions, &all);
    }

    /// Starts `questline run` with this config; `store` overrides the store directory.
    pub fn spawn_worker(&self, store: Option<&Path>) -> WorkerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_questline"));
        cmd.args(["run", "--config"]).arg(&self.config);
        if let Some(s) = store {
            cmd.env("QUESTLINE__STORE__PATH", s);
        }
        let log = self.dir.path().join(format!(
            "worker-{}.log",
            Instant::now().elapsed().as_nanos() ^ rand_suffix()
        ));
        let file = std::fs::File::create(&log).unwrap();
        cmd.env("RUST_LOG", "info,scylla=off,rdkafka=warn")
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

    /// SIGTERM, and the exit code (None if it had to be killed after `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> Option<i32> {
        self.signal("-TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("worker log:\n{}", self.log_text());
        None
    }

    pub fn kill9(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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

/// Records of `type` among consumed outputs.
pub fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["value"]["type"] == kind)
        .collect()
}
