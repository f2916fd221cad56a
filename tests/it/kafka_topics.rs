//! Topics at startup (`kafka.create_topics`): `questline run` never creates the input topics
//! (their producers own them) and waits for them before it subscribes, not ready and saying
//! which; it asks for its own topics (commands, inventory and amount requests and responses)
//! with the input topics' partition count and for its outputs with the configured partitions,
//! all with the configured replication; it leaves existing ones as they are, fails with a
//! message naming the refused topics, the broker's reasons and the remedy when the broker
//! refuses (exit 1: the configuration is valid, the broker's ACLs refused it at run time), and
//! sends no CreateTopics request with `kafka.create_topics = false`.
//!
//! librdkafka's in-process mock cluster cannot refuse a CreateTopics request: it has no
//! handler for that API (`rdkafka_mock_handlers.c` of librdkafka 2.12 lists none), so
//! `request_errors` on api key 19 are never consulted and the admin request times out. The
//! tests use it for that case (a broker that never answers), and a minimal broker of their own
//! (ApiVersions, Metadata and CreateTopics, nothing else) for the per-topic refusals
//! TopicAuthorizationFailed and ClusterAuthorizationFailed and for topics that appear while
//! the worker waits. The end-to-end case (a late input topic, then rewards) runs on tansu.

use crate::support::kafka::{get, http_addr, WorkerProcess};
use crate::support::{questline_bin, root};
use questline::settings::KafkaSettings;
use rdkafka::mocking::MockCluster;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;

/// The broker's answer to the creation of a topic, by its name.
type Answer = fn(&str) -> i16;

const API_METADATA: i16 = 3;
const API_API_VERSIONS: i16 = 18;
const API_CREATE_TOPICS: i16 = 19;

/// A topic of a CreateTopics request.
#[derive(Debug, Clone, PartialEq)]
struct Requested {
    name: String,
    partitions: i32,
    replication: i16,
}

/// The topics a [`RefusingBroker`] has, with their partition counts.
type Existing = Arc<Mutex<Vec<(String, i32)>>>;

/// A Kafka broker that answers just enough of the protocol for an admin client (ApiVersions,
/// Metadata, CreateTopics), lists the topics it has, answers the creation of each topic with
/// the error code its [`Answer`] gives (a topic created without error joins its topics), and
/// records what it is asked. Any other request closes the connection.
struct RefusingBroker {
    address: String,
    /// Api keys of every request, in arrival order.
    api_keys: Arc<Mutex<Vec<i16>>>,
    /// The topics of every CreateTopics request.
    create_requests: Arc<Mutex<Vec<Vec<Requested>>>>,
    existing: Existing,
}

impl RefusingBroker {
    /// A broker that has the topics `existing` (name, partitions).
    fn start(answer: Answer, existing: &[(&str, i32)]) -> RefusingBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let broker = RefusingBroker {
            address: address.clone(),
            api_keys: Arc::default(),
            create_requests: Arc::default(),
            existing: Arc::new(Mutex::new(
                existing.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            )),
        };
        let (keys, creates, existing) = (
            Arc::clone(&broker.api_keys),
            Arc::clone(&broker.create_requests),
            Arc::clone(&broker.existing),
        );
        let port: i32 = address.rsplit(':').next().unwrap().parse().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (keys, creates, existing) = (
                    Arc::clone(&keys),
                    Arc::clone(&creates),
                    Arc::clone(&existing),
                );
                std::thread::spawn(move || serve(stream, port, answer, &keys, &creates, &existing));
            }
        });
        broker
    }

    /// A topic created by someone else (its producers).
    fn add_topic(&self, name: &str, partitions: i32) {
        self.existing
            .lock()
            .unwrap()
            .push((name.to_string(), partitions));
    }

    fn api_keys(&self) -> Vec<i16> {
        self.api_keys.lock().unwrap().clone()
    }

    fn create_requests(&self) -> Vec<Vec<Requested>> {
        self.create_requests.lock().unwrap().clone()
    }
}

/// Answers the requests of one connection until the client closes it or asks for something
/// this broker does not speak.
fn serve(
    mut stream: TcpStream,
    port: i32,
    answer: Answer,
    keys: &Mutex<Vec<i16>>,
    creates: &Mutex<Vec<Vec<Requested>>>,
    existing: &Mutex<Vec<(String, i32)>>,
) {
    loop {
        let mut size = [0u8; 4];
        if stream.read_exact(&mut size).is_err() {
            return;
        }
        let mut request = vec![0u8; i32::from_be_bytes(size) as usize];
        if stream.read_exact(&mut request).is_err() {
            return;
        }
        let mut r = Reader(&request);
        let (api_key, version, correlation) = (r.i16(), r.i16(), r.i32());
        r.string(); // client id
        keys.lock().unwrap().push(api_key);
        let mut body = Writer::default();
        match api_key {
            // v3 is flexible, but its response header has no tags (KIP-511).
            API_API_VERSIONS => {
                let apis = [
                    (API_METADATA, 0, 4),
                    (API_API_VERSIONS, 0, 3),
                    (API_CREATE_TOPICS, 0, 4),
                ];
                body.i16(0);
                if version >= 3 {
                    body.uvarint(apis.len() as u32 + 1);
                } else {
                    body.i32(apis.len() as i32);
                }
                for (key, min, max) in apis {
                    body.i16(key).i16(min).i16(max);
                    if version >= 3 {
                        body.uvarint(0);
                    }
                }
                if version >= 1 {
                    body.i32(0);
                }
                if version >= 3 {
                    body.uvarint(0);
                }
            }
            // This broker alone, as the controller, and the topics asked for (every one it has
            // when asked for all), those it does not have with UNKNOWN_TOPIC_OR_PARTITION.
            API_METADATA => {
                let count = r.i32();
                let asked: Vec<String> = (0..count.max(0)).map(|_| r.string()).collect();
                let have = existing.lock().unwrap().clone();
                let listed: Vec<(String, Option<i32>)> = if count < 0 || asked.is_empty() {
                    have.into_iter().map(|(t, n)| (t, Some(n))).collect()
                } else {
                    asked
                        .into_iter()
                        .map(|t| {
                            let n = have.iter().find(|(h, _)| *h == t).map(|(_, n)| *n);
                            (t, n)
                        })
                        .collect()
                };
                if version >= 3 {
                    body.i32(0);
                }
                body.i32(1).i32(1).string("127.0.0.1").i32(port);
                if version >= 1 {
                    body.i16(-1); // rack
                }
                if version >= 2 {
                    body.i16(-1); // cluster id
                }
                if version >= 1 {
                    body.i32(1); // controller
                }
                body.i32(listed.len() as i32);
                for (topic, partitions) in &listed {
                    let error = if partitions.is_some() {
                        0
                    } else {
                        UNKNOWN_TOPIC_OR_PARTITION
                    };
                    body.i16(error).string(topic);
                    if version >= 1 {
                        body.bool(false); // internal
                    }
                    let partitions = partitions.unwrap_or(0);
                    body.i32(partitions);
                    for p in 0..partitions {
                        // No error, the index, this broker as the leader, replicas and ISR.
                        body.i16(0).i32(p).i32(1).i32(1).i32(1).i32(1).i32(1);
                    }
                }
            }
            API_CREATE_TOPICS => {
                let mut topics = Vec::new();
                for _ in 0..r.i32() {
                    let name = r.string();
                    let (partitions, replication) = (r.i32(), r.i16());
                    for _ in 0..r.i32() {
                        r.i32();
                        for _ in 0..r.i32() {
                            r.i32();
                        }
                    }
                    for _ in 0..r.i32() {
                        r.string();
                        r.string();
                    }
                    topics.push(Requested {
                        name,
                        partitions,
                        replication,
                    });
                }
                if version >= 2 {
                    body.i32(0);
                }
                body.i32(topics.len() as i32);
                for t in &topics {
                    body.string(&t.name).i16(answer(&t.name));
                    if version >= 1 {
                        body.string("refused by the test broker");
                    }
                }
                let mut have = existing.lock().unwrap();
                for t in &topics {
                    if answer(&t.name) == 0 && !have.iter().any(|(h, _)| *h == t.name) {
                        have.push((t.name.clone(), t.partitions));
                    }
                }
                creates.lock().unwrap().push(topics);
            }
            _ => return,
        }
        let mut response = Writer::default();
        response.i32(body.0.len() as i32 + 4).i32(correlation);
        response.0.extend(body.0);
        if stream.write_all(&response.0).is_err() {
            return;
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().unwrap()
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
    /// A (nullable) STRING: i16 length, -1 for null.
    fn string(&mut self) -> String {
        let len = self.i16();
        if len < 0 {
            return String::new();
        }
        let (text, rest) = self.0.split_at(len as usize);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }
}

#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.i16(s.len() as i16);
        self.0.extend(s.as_bytes());
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(u8::from(v));
        self
    }
    fn uvarint(&mut self, mut v: u32) -> &mut Self {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
        self
    }
}

/// A worker configuration against `brokers` in `dir`: the shipped catalog and mappings, its
/// own store, any free port for its endpoints.
/// The worker's configuration against the test's broker; the catalog is the files alone
/// (`follow_log = false`): these brokers answer topic creation and metadata, not the fetches the
/// catalog log needs.
fn config(dir: &Path, brokers: &str, create_topics: bool) -> std::path::PathBuf {
    let path = dir.join("questline.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{brokers}\"\ncreate_topics = {create_topics}\npartitions = 6\n\
             replication_factor = 3\n[kafka.properties]\n\"socket.timeout.ms\" = \"5000\"\n\
             [catalog]\npath = \"{}\"\nfollow_log = false\n[mappings]\ndir = \"{}\"\n[store]\npath = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n",
            root().join("examples/catalog").display(),
            root().join("mappings").display(),
            dir.join("store").display()
        ),
    )
    .unwrap();
    path
}

/// The input topics of the shipped mappings: their producers create them, never the worker.
const INPUTS: [&str; 3] = ["questline.actions", "kickapps.user-actions", "kwegg.events"];

/// The topics of its own the worker reads beside the inputs, with the default names.
const OWNED_READ: [&str; 5] = [
    "questline.commands",
    "questline.inventory-requests",
    "questline.inventory-responses",
    "questline.amount-requests",
    "questline.amount-responses",
];

const OUTPUTS: [&str; 3] = [
    "questline.progress",
    "questline.rewards",
    "questline.dead-letter",
];

/// The partition count of the input topics the brokers of these tests have: not the
/// configured 6, which only the outputs get.
const INPUT_PARTITIONS: i32 = 3;

/// The input topics, existing with [`INPUT_PARTITIONS`].
fn inputs() -> Vec<(&'static str, i32)> {
    INPUTS.iter().map(|t| (*t, INPUT_PARTITIONS)).collect()
}

/// What the worker must ask to create, sorted: its own topics with the inputs' partition
/// count, the outputs with the configured one, every one with the configured replication;
/// no input topic.
fn wanted() -> Vec<Requested> {
    let mut want: Vec<Requested> = OWNED_READ
        .iter()
        .map(|t| (t, INPUT_PARTITIONS))
        .chain(OUTPUTS.iter().map(|t| (t, 6)))
        .map(|(name, partitions)| Requested {
            name: name.to_string(),
            partitions,
            replication: 3,
        })
        .collect();
    want.sort_by(|a, b| a.name.cmp(&b.name));
    want
}

/// The topics of the only CreateTopics request `broker` got, sorted.
fn asked(broker: &RefusingBroker) -> Vec<Requested> {
    let requests = broker.create_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let mut asked = requests[0].clone();
    asked.sort_by(|a, b| a.name.cmp(&b.name));
    asked
}

/// Starts `questline run --config CONFIG`, logging JSON lines.
fn spawn(config: &Path) -> WorkerProcess {
    let log = config.with_file_name(format!("worker-{}.log", std::process::id()));
    let child = Command::new(questline_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info,rdkafka=off")
        .env("QUESTLINE_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    WorkerProcess { child, log }
}

/// Waits until `worker` is past startup (its log says "worker starting") and its clients talk
/// to `broker`, or it exits, or 30 s pass. Whether it got there.
fn started(worker: &mut WorkerProcess, broker: &RefusingBroker) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running = worker.is_running();
        let started = worker.log_text().contains("worker starting") && running;
        if (started && broker.api_keys().contains(&API_METADATA))
            || !running
            || Instant::now() > deadline
        {
            return started;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `questline run --config CONFIG` and waits until it is past startup ([`started`]);
/// then stops it. Whether it got there, and its log.
fn worker_starts(config: &Path, broker: &RefusingBroker) -> (bool, String) {
    let mut worker = spawn(config);
    let started = started(&mut worker, broker);
    let log = worker.log_text();
    worker.kill9();
    (started, log)
}

/// Polls `/readyz` until it answers 503 with `reason` in its body; panics after 30 s.
fn wait_not_ready(worker: &mut WorkerProcess, reason: &str) {
    let addr = http_addr(worker);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (0, String::new());
    while Instant::now() < deadline {
        assert!(worker.is_running(), "exited:\n{}", worker.log_text());
        last = get(addr, "/readyz");
        if last.0 == 503 && last.1.contains(reason) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "/readyz never said {reason:?}; last {} {}\n{}",
        last.0,
        last.1,
        worker.log_text()
    );
}

#[test]
fn a_refused_topic_creation_fails_startup_naming_the_topics_and_the_remedy_with_exit_1() {
    // One topic exists already (left as it is), one is refused for the cluster, the others
    // for the topic.
    let broker = RefusingBroker::start(
        |topic| match topic {
            "questline.progress" => TOPIC_ALREADY_EXISTS,
            "questline.rewards" => CLUSTER_AUTHORIZATION_FAILED,
            _ => TOPIC_AUTHORIZATION_FAILED,
        },
        &inputs(),
    );
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(questline_bin())
        .args(["run", "--config"])
        .arg(config(dir.path(), &broker.address, true))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A runtime failure, not a configuration error: the file is valid, and the same file
    // works against a broker that lets this client create topics.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // What it asked for: its own topics and outputs, never an input topic.
    assert_eq!(asked(&broker), wanted());
    // What it says: the refused topics by the broker's reason (in the request's order), and
    // the remedy.
    let topic_refused: Vec<String> = broker.create_requests()[0]
        .iter()
        .map(|r| r.name.clone())
        .filter(|t| t != "questline.progress" && t != "questline.rewards")
        .map(|t| format!("'{t}'"))
        .collect();
    let message = format!(
        "questline: cannot create topic 'questline.rewards': ClusterAuthorizationFailed \
         (Broker: Cluster authorization failed); cannot create topics {}: \
         TopicAuthorizationFailed (Broker: Topic authorization failed). Create the topics \
         yourself or allow this client to create them, or set kafka.create_topics = false to \
         skip creating them.",
        topic_refused.join(", ")
    );
    assert!(
        stderr.lines().any(|l| l == message),
        "want the line\n{message}\nin\n{stderr}"
    );
}

#[test]
fn topics_that_exist_already_are_left_as_they_are() {
    let broker = RefusingBroker::start(|_| TOPIC_ALREADY_EXISTS, &inputs());
    let dir = tempfile::tempdir().unwrap();
    let (started, log) = worker_starts(&config(dir.path(), &broker.address, true), &broker);
    assert!(started, "the worker did not start:\n{log}");
    assert_eq!(asked(&broker), wanted());
}

#[test]
fn with_create_topics_false_the_worker_sends_no_create_topics_request() {
    // The broker would refuse; the worker does not ask.
    let mut existing = inputs();
    existing.extend(OWNED_READ.iter().map(|t| (*t, INPUT_PARTITIONS)));
    let broker = RefusingBroker::start(|_| TOPIC_AUTHORIZATION_FAILED, &existing);
    let dir = tempfile::tempdir().unwrap();
    let (started, log) = worker_starts(&config(dir.path(), &broker.address, false), &broker);
    assert!(started, "the worker did not start:\n{log}");
    let keys = broker.api_keys();
    assert!(keys.contains(&API_METADATA), "{keys:?}");
    assert!(!keys.contains(&API_CREATE_TOPICS), "{keys:?}");
}

#[test]
fn a_worker_waits_for_a_missing_input_topic_not_ready_naming_it_then_creates_only_its_own() {
    let broker = RefusingBroker::start(|_| 0, &inputs()[..2]);
    let dir = tempfile::tempdir().unwrap();
    let mut worker = spawn(&config(dir.path(), &broker.address, true));
    wait_not_ready(
        &mut worker,
        "waiting for the topics it reads to be created: 'kwegg.events'",
    );
    // Some checks later: still waiting, nothing created, and the wait logged once.
    std::thread::sleep(Duration::from_secs(3));
    assert!(worker.is_running(), "{}", worker.log_text());
    assert!(!worker.log_text().contains("worker starting"));
    assert!(
        !broker.api_keys().contains(&API_CREATE_TOPICS),
        "{:?}",
        broker.create_requests()
    );
    let waits = worker
        .log_text()
        .lines()
        .filter(|l| l.contains("waiting for the topics it reads to be created"))
        .count();
    assert_eq!(waits, 1, "{}", worker.log_text());
    // The brokers answer meanwhile: a missing topic is no outage.
    let (_, metrics) = get(http_addr(&worker), "/metrics");
    assert!(
        metrics.lines().any(|l| l == "questline_broker_up 1"),
        "{metrics}"
    );

    // Its producers create it: the worker goes on, and creates its own topics with the
    // inputs' partition count, its outputs with the configured one, no input topic.
    broker.add_topic("kwegg.events", INPUT_PARTITIONS);
    assert!(started(&mut worker, &broker), "{}", worker.log_text());
    assert_eq!(asked(&broker), wanted());
    let (status, body) = get(http_addr(&worker), "/readyz");
    assert!(
        status == 503 && !body.contains("waiting for the topics"),
        "{status} {body}"
    );
}

#[test]
fn sigterm_while_waiting_for_input_topics_exits_0() {
    let broker = RefusingBroker::start(|_| 0, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut worker = spawn(&config(dir.path(), &broker.address, true));
    wait_not_ready(
        &mut worker,
        "waiting for the topics it reads to be created: 'kickapps.user-actions', \
         'kwegg.events', 'questline.actions'",
    );
    let log = worker.log.clone();
    assert_eq!(
        worker.terminate(Duration::from_secs(10)),
        Some(0),
        "{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    assert!(broker.create_requests().is_empty());
}

/// Against tansu: a worker started before its input topics exist waits, not ready and saying
/// which; once they are created (with 3 partitions, where `kafka.partitions` says 2) and
/// written to, it processes the actions — and created its own topics with the inputs'
/// partition count, its outputs with `kafka.partitions`.
#[test]
fn on_tansu_a_worker_started_before_its_input_topics_processes_them_once_they_exist() {
    use crate::support::kafka::{broker, walk_through_rewards, Setup};
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "late-inputs", 2);
    let mut worker = setup.spawn_worker(None);
    let missing: Vec<String> = {
        let mut topics = setup.input_topics();
        topics.sort();
        topics.iter().map(|t| format!("'{t}'")).collect()
    };
    wait_not_ready(
        &mut worker,
        &format!(
            "waiting for the topics it reads to be created: {}",
            missing.join(", ")
        ),
    );
    broker.create_topics(INPUT_PARTITIONS, &setup.input_topics());
    // The worker goes on by itself, and creates its outputs: the test's reader of the rewards
    // subscribes only once they exist (librdkafka would not see a later topic for minutes).
    crate::support::wait_until(
        Duration::from_secs(30),
        "the worker to subscribe",
        || !worker.log_events("worker starting").is_empty(),
        || worker.log_text(),
    );
    walk_through_rewards(&broker, &setup, &worker);
    let settings = KafkaSettings {
        brokers: broker.bootstrap.clone(),
        ..KafkaSettings::default()
    };
    let metadata = questline::kafka::TopicMetadata::new(&settings).unwrap();
    let counts = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(metadata.partition_counts(
            &[setup.owned_read_topics(), setup.outputs()].concat(),
            Duration::from_secs(10),
        ))
        .unwrap();
    let want: Vec<(String, Option<i32>)> = setup
        .owned_read_topics()
        .into_iter()
        .map(|t| (t, Some(INPUT_PARTITIONS)))
        .chain(setup.outputs().into_iter().map(|t| (t, Some(2))))
        .collect();
    assert_eq!(counts, want);
    assert_eq!(worker.terminate(Duration::from_secs(20)), Some(0));
}

#[tokio::test]
async fn a_broker_that_never_answers_create_topics_fails_with_the_topics_and_the_remedy() {
    // librdkafka's mock cluster: no CreateTopics handler, so the request times out.
    let cluster = MockCluster::new(1).unwrap();
    let settings = KafkaSettings {
        brokers: cluster.bootstrap_servers(),
        properties: [("socket.timeout.ms".to_string(), "3000".to_string())]
            .into_iter()
            .collect(),
        ..KafkaSettings::default()
    };
    let topics = vec![
        ("questline.actions".to_string(), 4),
        ("questline.rewards".to_string(), 4),
    ];
    let error = questline::kafka::ensure_topics(&settings, &topics)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("cannot create topics 'questline.actions', 'questline.rewards': "),
        "{error}"
    );
    assert!(
        error.ends_with(
            ". Create the topics yourself or allow this client to create them, or set \
             kafka.create_topics = false to skip creating them."
        ),
        "{error}"
    );
}
