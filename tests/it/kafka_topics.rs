//! Topic creation at startup (`kafka.create_topics`): `questline run` asks for the topics it
//! reads and writes with the configured partitions and replication, leaves existing ones as
//! they are, fails with a message naming the refused topics, the broker's reasons and the
//! remedy when the broker refuses (exit 1: the configuration is valid, the broker's ACLs
//! refused it at run time), and sends no CreateTopics request with
//! `kafka.create_topics = false`.
//!
//! librdkafka's in-process mock cluster cannot refuse a CreateTopics request: it has no
//! handler for that API (`rdkafka_mock_handlers.c` of librdkafka 2.12 lists none), so
//! `request_errors` on api key 19 are never consulted and the admin request times out. The
//! tests use it for that case (a broker that never answers), and a minimal broker of their own
//! (ApiVersions, Metadata and CreateTopics, nothing else) for the per-topic refusals
//! TopicAuthorizationFailed and ClusterAuthorizationFailed.

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

/// A Kafka broker that answers just enough of the protocol for an admin client (ApiVersions,
/// Metadata, CreateTopics), answers the creation of each topic with the error code its
/// [`Answer`] gives, and records what it is asked. Any other request closes the connection.
struct RefusingBroker {
    address: String,
    /// Api keys of every request, in arrival order.
    api_keys: Arc<Mutex<Vec<i16>>>,
    /// The topics of every CreateTopics request.
    create_requests: Arc<Mutex<Vec<Vec<Requested>>>>,
}

impl RefusingBroker {
    fn start(answer: Answer) -> RefusingBroker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let broker = RefusingBroker {
            address: address.clone(),
            api_keys: Arc::default(),
            create_requests: Arc::default(),
        };
        let (keys, creates) = (
            Arc::clone(&broker.api_keys),
            Arc::clone(&broker.create_requests),
        );
        let port: i32 = address.rsplit(':').next().unwrap().parse().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (keys, creates) = (Arc::clone(&keys), Arc::clone(&creates));
                std::thread::spawn(move || serve(stream, port, answer, &keys, &creates));
            }
        });
        broker
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
            // This broker alone, as the controller, and no topics.
            API_METADATA => {
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
                body.i32(0);
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

/// Every topic `questline run` reads or writes with the default topic names and the shipped
/// mappings, sorted.
fn worker_topics() -> Vec<String> {
    let mut topics: Vec<String> = [
        "questline.actions",
        "kickapps.user-actions",
        "kwegg.events",
        "questline.commands",
        "questline.inventory-requests",
        "questline.inventory-responses",
        "questline.amount-requests",
        "questline.amount-responses",
        "questline.progress",
        "questline.rewards",
        "questline.dead-letter",
    ]
    .iter()
    .map(|t| t.to_string())
    .collect();
    topics.sort();
    topics
}

/// Starts `questline run --config CONFIG` and waits until it is past startup (its log says
/// "worker starting") and its clients talk to `broker`, or it exits, or 30 s pass; then stops
/// it. Whether it got there, and its log.
fn worker_starts(config: &Path, broker: &RefusingBroker) -> (bool, String) {
    let log = config.with_file_name("worker.log");
    let mut child = Command::new(questline_bin())
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info,rdkafka=off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let running = matches!(child.try_wait(), Ok(None));
        let started = text.contains("worker starting") && running;
        if (started && broker.api_keys().contains(&API_METADATA))
            || !running
            || Instant::now() > deadline
        {
            break started;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    (started, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn a_refused_topic_creation_fails_startup_naming_the_topics_and_the_remedy_with_exit_1() {
    // One topic exists already (left as it is), one is refused for the cluster, the others
    // for the topic.
    let broker = RefusingBroker::start(|topic| match topic {
        "questline.actions" => TOPIC_ALREADY_EXISTS,
        "questline.rewards" => CLUSTER_AUTHORIZATION_FAILED,
        _ => TOPIC_AUTHORIZATION_FAILED,
    });
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
    // What it asked for: every topic it reads or writes, with the configured partitions and
    // replication.
    let requests = broker.create_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let mut asked: Vec<Requested> = requests[0].clone();
    asked.sort_by(|a, b| a.name.cmp(&b.name));
    let want: Vec<Requested> = worker_topics()
        .into_iter()
        .map(|name| Requested {
            name,
            partitions: 6,
            replication: 3,
        })
        .collect();
    assert_eq!(asked, want);
    // What it says: the refused topics by the broker's reason, and the remedy.
    let topic_refused: Vec<String> = worker_topics()
        .into_iter()
        .filter(|t| t != "questline.actions" && t != "questline.rewards")
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
    let broker = RefusingBroker::start(|_| TOPIC_ALREADY_EXISTS);
    let dir = tempfile::tempdir().unwrap();
    let (started, log) = worker_starts(&config(dir.path(), &broker.address, true), &broker);
    assert!(started, "the worker did not start:\n{log}");
    assert_eq!(broker.create_requests().len(), 1);
}

#[test]
fn with_create_topics_false_the_worker_sends_no_create_topics_request() {
    // The broker would refuse; the worker does not ask.
    let broker = RefusingBroker::start(|_| TOPIC_AUTHORIZATION_FAILED);
    let dir = tempfile::tempdir().unwrap();
    let (started, log) = worker_starts(&config(dir.path(), &broker.address, false), &broker);
    assert!(started, "the worker did not start:\n{log}");
    let keys = broker.api_keys();
    assert!(keys.contains(&API_METADATA), "{keys:?}");
    assert!(!keys.contains(&API_CREATE_TOPICS), "{keys:?}");
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
        "questline.actions".to_string(),
        "questline.rewards".to_string(),
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
