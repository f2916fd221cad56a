//! Shared helpers for the sidecar's integration tests: a real router on a free port, an
//! embedded store filled with state the real engine computed, and a recording command sink.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use questline::core::catalog::Catalog;
use questline::core::engine::Engine;
use questline::core::evaluator::{ClaimAmount, ClaimCommand};
use questline::core::events::{Event, EventBody};
use questline::core::mapping::Mapping;
use questline::core::model::SourceRef;
use questline::http::{self, AppState};
use questline::pipeline::commands::{Command, CommandSink, SubmitError};
use questline::settings::HttpSettings;
use questline::store::embedded::EmbeddedStore;
use questline::store::{
    BatchWrite, ClaimRecord, FinishedCount, HistoryEntry, StateStore, UserKey, UserRecord,
};
use questline::trace_context::TraceContext;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A mock [`CommandSink`]: records every submitted command instead of producing it to a log,
/// and can be switched to fail like an unavailable log. Tests assert on what the sidecar
/// submitted; the lead's full-loop test covers the real log.
#[derive(Debug, Default)]
pub struct RecordingSink {
    commands: Mutex<Vec<Command>>,
    failing: AtomicBool,
}

impl RecordingSink {
    pub fn commands(&self) -> Vec<Command> {
        self.commands.lock().unwrap().clone()
    }

    /// From now on, every submit fails with `Unavailable`.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

#[async_trait]
impl CommandSink for RecordingSink {
    async fn submit(&self, command: &Command, _: Option<&TraceContext>) -> Result<(), SubmitError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(SubmitError::Unavailable(
                questline::pipeline::log::LogError::Kafka {
                    op: "submit (mock log is down)",
                    source: rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::AllBrokersDown,
                    ),
                },
            ));
        }
        self.commands.lock().unwrap().push(command.clone());
        Ok(())
    }
}

pub use super::example_catalog;

/// The event time of the fixture's actions (inside challenge 6's 2026 window).
pub fn fixture_time() -> DateTime<Utc> {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

/// Runs the fixture's story through the real engine and returns what the worker would have
/// stored: user records, history, claim outcomes and finished counters.
///
/// - `u200`: 200 points (the seed's walk-through: 800 left, 20 %); `u500`: 200 + 300.
/// - `151631`: 1000 points (milestone 1-1, a burger voucher) then tier 3 (challenge 3, 500
///   points); both milestones unclaimed.
/// - `kick-7`: wins the limited challenge 5 and claims its t-shirt (claim `claim-kick-7`);
///   `kick-8`: wins it too and has not claimed.
/// - `viewer`: achieves the hidden challenge 7.
/// - `poor`: claims 100 points with none (claim `claim-poor` fails).
pub fn fixture_batch(catalog: Arc<Catalog>) -> BatchWrite {
    let mut engine = Engine::new(catalog);
    let native = Mapping::native().compile();
    let at = fixture_time();
    let mut offset = 0;
    let mut events: Vec<Event> = Vec::new();
    let mut source = || {
        offset += 1;
        SourceRef::new("fixture", 0, offset)
    };
    let actions = [
        json!({"userId": "u200", "triggerId": 1, "value": 200}),
        json!({"userId": "u500", "triggerId": 1, "value": 200}),
        json!({"userId": "u500", "triggerId": 1, "value": 300}),
        json!({"userId": "151631", "triggerId": 1, "value": 200}),
        json!({"userId": "151631", "triggerId": 1, "value": 300}),
        json!({"userId": "151631", "triggerId": 1, "value": 500}),
        json!({"userId": "151631", "triggerId": 6, "value": 3}),
        json!({"userId": "kick-7", "triggerId": "post_comment", "location": "forum", "value": 5}),
        json!({"userId": "kick-8", "triggerId": "post_comment", "location": "forum", "value": 6}),
        json!({"userId": "viewer", "triggerId": "product_viewed", "value": 10}),
    ];
    for action in actions {
        let processed =
            engine.process_record(&native, action.to_string().as_bytes(), &source(), at);
        assert!(processed.ignored.is_none(), "{action}: {processed:?}");
        events.extend(processed.events);
    }
    let claims = [
        ("kick-7", "claim-kick-7", vec!["5-1".to_string()], vec![]),
        (
            "poor",
            "claim-poor",
            vec![],
            vec![ClaimAmount {
                reward_type: "points".into(),
                amount: 100.into(),
            }],
        ),
    ];
    for (user, claim_id, milestone_ids, items) in claims {
        let claim = ClaimCommand {
            claim_id: claim_id.into(),
            tenant: "default".into(),
            user_id: user.into(),
            milestone_ids,
            items,
        };
        events.extend(engine.process_claim(&claim, &source(), at).events);
    }
    batch_of(&engine, &events)
}

/// The store writes of an engine run, as the pipeline records its read models.
fn batch_of(engine: &Engine, events: &[Event]) -> BatchWrite {
    let mut batch = BatchWrite::default();
    let mut history_len: BTreeMap<UserKey, u64> = BTreeMap::new();
    let mut finished: BTreeMap<u32, u64> = BTreeMap::new();
    for event in events {
        let key = UserKey::new(event.tenant.clone(), event.user_id.clone());
        match &event.body {
            EventBody::ProgressUpdated { .. } | EventBody::DeadLetter { .. } => continue,
            EventBody::ClaimCompleted { claim_id, .. }
            | EventBody::ClaimFailed { claim_id, .. } => {
                batch.claims.push((
                    key.clone(),
                    ClaimRecord {
                        claim_id: claim_id.clone(),
                        event: event.clone(),
                    },
                ));
            }
            EventBody::MilestoneAchieved {
                challenge_id,
                milestone_id,
                ..
            } if milestone_id.ends_with("-1") => {
                *finished.entry(*challenge_id).or_default() += 1;
            }
            _ => {}
        }
        let seq = history_len.entry(key.clone()).or_default();
        batch
            .history
            .push((key, HistoryEntry::new(*seq, event.clone())));
        *seq += 1;
    }
    for (key, state) in engine.users() {
        let record = UserRecord {
            state: state.clone(),
            history_len: history_len.get(key).copied().unwrap_or(0),
            ..Default::default()
        };
        batch.users.push((key.clone(), record));
    }
    for (challenge_id, count) in finished {
        batch.finished.push(FinishedCount {
            tenant: "default".into(),
            challenge_id,
            partition: "p0".into(),
            count,
        });
    }
    batch
}

/// The real sidecar on a free loopback port, over a fixture-filled embedded store.
pub struct Server {
    pub base: String,
    pub sink: Arc<RecordingSink>,
    pub ready: http::Readiness,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(HttpSettings::default(), http::images::ImageUrls::default()).await
    }

    pub async fn start_with(settings: HttpSettings, images: http::images::ImageUrls) -> Server {
        let catalog = example_catalog();
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .write_batch(&fixture_batch(Arc::clone(&catalog)))
            .await
            .unwrap();
        let sink = Arc::new(RecordingSink::default());
        let mut state = AppState::new(
            catalog,
            Arc::new(store),
            Arc::clone(&sink) as Arc<dyn CommandSink>,
            settings,
        );
        state.images = images;
        let ready = state.ready.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, state, async move {
            let _ = rx.await;
        }));
        Server {
            base,
            sink,
            ready,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    pub async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .unwrap();
        status_json(response).await
    }

    pub async fn get_with(&self, path_and_query: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.client.get(self.url(path_and_query));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        status_json(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        status_json(response).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// The status and the JSON body (`Value::Null` when the body is not JSON).
pub async fn status_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The ids of a progress page, in order.
pub fn ids(page: &Value) -> Vec<u64> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {page}"))
        .iter()
        .map(|c| c["id"].as_u64().unwrap())
        .collect()
}

/// A challenge of a progress page, by id.
pub fn challenge(page: &Value, id: u64) -> Value {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("challenge {id} not in {page}"))
}

/// Asserts a seed-style error body: non-1 statusCode, a statusName, the field named.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, field: Option<&str>) {
    assert_eq!(status, expected_status, "{body}");
    assert_ne!(body["statusCode"], 1, "{body}");
    assert!(body["statusCode"].is_i64(), "{body}");
    assert!(body["statusName"].is_string(), "{body}");
    let message = body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"));
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{body}");
        assert!(
            message.contains(field),
            "message does not name {field}: {body}"
        );
    }
}

pub const PROGRESS: &str = "/api/v1/Challenges/GetProgressChallengesInfoForUser";
pub const ADD_ACTION: &str = "/api/v1/Integration/AddAction";

/// A mock [`StateStore`] that is down: every call fails with a transient error (a request
/// timeout), as a store that cannot be reached does. For the sidecar's 503 paths.
#[derive(Debug, Default)]
pub struct DownStore;

fn down() -> questline::store::StoreError {
    questline::store::StoreError::Cql {
        what: "mock store is down".into(),
        source: Box::new(scylla::errors::ExecutionError::RequestTimeout(
            std::time::Duration::from_secs(5),
        )),
    }
}

#[async_trait]
impl StateStore for DownStore {
    async fn load_users(
        &self,
        _: &[UserKey],
    ) -> Result<Vec<Option<UserRecord>>, questline::store::StoreError> {
        Err(down())
    }
    async fn load_resources(
        &self,
        _: &[String],
    ) -> Result<Vec<Option<questline::store::ResourceRecord>>, questline::store::StoreError> {
        Err(down())
    }
    async fn load_outbox(&self, _: &str) -> Result<Option<Vec<u8>>, questline::store::StoreError> {
        Err(down())
    }
    async fn write_batch(&self, _: &BatchWrite) -> Result<(), questline::store::StoreError> {
        Err(down())
    }
    async fn history(
        &self,
        _: &UserKey,
        _: u32,
        _: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), questline::store::StoreError> {
        Err(down())
    }
    async fn claim(
        &self,
        _: &UserKey,
        _: &str,
    ) -> Result<Option<ClaimRecord>, questline::store::StoreError> {
        Err(down())
    }
    async fn people_finished(
        &self,
        _: &str,
    ) -> Result<BTreeMap<u32, u64>, questline::store::StoreError> {
        Err(down())
    }
    async fn claim_partition(&self, _: &str, _: &str) -> Result<i64, questline::store::StoreError> {
        Err(down())
    }
    async fn ping(&self) -> Result<(), questline::store::StoreError> {
        Err(down())
    }
}

/// The real router over a [`DownStore`]; returns its base URL and the shutdown sender.
pub async fn start_with_down_store() -> (String, oneshot::Sender<()>) {
    let state = AppState::new(
        example_catalog(),
        Arc::new(DownStore),
        Arc::new(RecordingSink::default()),
        HttpSettings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, state, async move {
        let _ = rx.await;
    }));
    (base, tx)
}

/// Sends raw bytes on a new connection and returns the status line's code and the body.
pub async fn raw_request(base: &str, request: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer before the whole request is written (413 on the declared size):
    // a write error after that is expected, the answer is what counts.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut response),
    )
    .await;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
