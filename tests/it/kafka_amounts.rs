//! The amount stage against a real broker (tansu, started by scripts/test) and a real tenant
//! endpoint: an HTTP server this test starts on a free loopback port, answering per path the
//! way endpoints do (promptly, slowly, with a 5xx, out of shape, not at all). The worker is the
//! real `questline run` binary; its catalog points programmatic events at that server.

use crate::support::kafka::*;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One call the endpoint received.
#[derive(Debug, Clone)]
struct Seen {
    case: String,
    body: Value,
    idempotency_key: Option<String>,
    api_key: Option<String>,
}

type Calls = Arc<Mutex<Vec<Seen>>>;

/// The tenant's endpoint: `/ok` answers `{"points": 120}`, `/slow` answers after 3 s (past
/// the catalog's timeout), `/fail` says 500, `/bad` answers another shape, `/down` says 503.
struct Endpoint {
    addr: SocketAddr,
    calls: Calls,
}

impl Endpoint {
    fn start() -> Endpoint {
        let calls: Calls = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let state = Arc::clone(&calls);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let app = Router::new()
                    .route("/{case}", post(answer))
                    .with_state(state);
                axum::serve(listener, app).await.unwrap();
            });
        });
        Endpoint {
            addr: rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            calls,
        }
    }

    fn url(&self, case: &str) -> String {
        format!("http://{}/{case}", self.addr)
    }

    fn calls(&self, case: &str) -> Vec<Seen> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.case == case)
            .cloned()
            .collect()
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

async fn answer(
    State(calls): State<Calls>,
    Path(case): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    calls.lock().unwrap().push(Seen {
        case: case.clone(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        idempotency_key: header("idempotency-key"),
        api_key: header("x-api-key"),
    });
    match case.as_str() {
        "ok" => Json(json!({"points": 120})).into_response(),
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Json(json!({"points": 1})).into_response()
        }
        "fail" => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
        "bad" => Json(json!({"amount": 3})).into_response(),
        "down" => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A tenant whose five programmatic events each call one path of `endpoint`.
fn catalog(endpoint: &Endpoint) -> String {
    let mut text = String::from(
        "tenant = \"shop\"\n\n[[reward_types]]\nreward_type = \"points\"\ndisplay_name = \"Points\"\nkind = \"points\"\n",
    );
    for (event, case) in [
        ("ORDER_OK", "ok"),
        ("ORDER_SLOW", "slow"),
        ("ORDER_FAIL", "fail"),
        ("ORDER_BAD", "bad"),
        ("ORDER_DOWN", "down"),
    ] {
        text.push_str(&format!(
            "\n[[events]]\nname = \"{event}\"\nprogrammatic = {{ url = \"{}\", headers = {{ \"X-Api-Key\" = \"k-1\" }}, body = {{ program = \"spring\" }}, timeout = \"300ms\", fallback_points = 5 }}\n",
            endpoint.url(case)
        ));
    }
    text
}

/// The worker's retries and breaker, small enough for a test: one retry after 20–40 ms; the
/// breaker opens after two failed calls and stays open for the rest of the test.
const AMOUNTS: &str = "\n[amounts]\nretries = 1\nbackoff_min_ms = 40\nbackoff_max_ms = 40\nbreaker_threshold = 2\nbreaker_cool_down_ms = 600000\n";

fn occurrence(user: &str, event: &str) -> (String, String) {
    (
        user.to_string(),
        json!({"tenant": "shop", "userId": user, "event": {"name": event, "params": {"orderId": format!("o-{user}")}}})
            .to_string(),
    )
}

/// The amount responses published so far (at least `count`), by user.
fn responses(broker: &Broker, setup: &Setup, count: usize) -> BTreeMap<String, Value> {
    let records = broker.consume(
        &[setup.topic("amount-responses")],
        count,
        Duration::from_secs(30),
    );
    assert!(records.len() >= count, "{records:#?}");
    records
        .iter()
        .map(|r| {
            assert_eq!(r["key"], r["value"]["userId"], "keyed by user");
            (
                r["value"]["userId"].as_str().unwrap().to_string(),
                r["value"]["outcome"].clone(),
            )
        })
        .collect()
}

#[test]
fn endpoints_answers_and_failures_become_recorded_amounts_paid_once() {
    let Some(broker) = broker() else { return };
    let endpoint = Endpoint::start();
    let catalog_dir = tempfile::tempdir().unwrap();
    let catalog_file = catalog_dir.path().join("shop.toml");
    std::fs::write(&catalog_file, catalog(&endpoint)).unwrap();
    let setup = Setup::with_options(
        &broker,
        "amounts",
        1,
        Options {
            catalog: catalog_file,
            ..Options::default()
        },
    );
    let mut config = std::fs::read_to_string(&setup.config).unwrap();
    config.push_str(AMOUNTS);
    std::fs::write(&setup.config, config).unwrap();
    setup.create_all_topics(&broker, 1);
    let worker = setup.spawn_worker(None);
    let events = setup.topic("kwegg.events");

    // A prompt answer, a slow one, a 500 and a wrong shape, in one go.
    broker.produce(
        &events,
        &[
            occurrence("ok-1", "ORDER_OK"),
            occurrence("slow-1", "ORDER_SLOW"),
            occurrence("fail-1", "ORDER_FAIL"),
            occurrence("bad-1", "ORDER_BAD"),
        ],
    );
    let rewards = broker.consume(&[setup.topic("rewards")], 4, Duration::from_secs(60));
    let granted: BTreeMap<String, Value> = of_type(&rewards, "reward.granted")
        .iter()
        .map(|r| {
            (
                r["value"]["userId"].as_str().unwrap().to_string(),
                r["value"].clone(),
            )
        })
        .collect();
    assert_eq!(granted.len(), 4, "{rewards:#?}\n{}", worker.log_text());
    assert_eq!(granted["ok-1"]["amount"], 120);
    assert_eq!(granted["ok-1"]["reason"]["rule"], "programmatic");
    for user in ["slow-1", "fail-1", "bad-1"] {
        assert_eq!(granted[user]["amount"], 5, "{user}: the fallback");
        assert_eq!(granted[user]["reason"]["rule"], "programmatic-fallback");
    }
    let outcomes = responses(&broker, &setup, 4);
    assert_eq!(
        outcomes["ok-1"],
        json!({"outcome": "answered", "points": 120})
    );
    assert_eq!(
        outcomes["slow-1"],
        json!({"outcome": "fallback", "points": 5, "reason": {"kind": "timeout"}})
    );
    assert_eq!(
        outcomes["fail-1"],
        json!({"outcome": "fallback", "points": 5, "reason": {"kind": "status", "status": 500}})
    );
    assert_eq!(outcomes["bad-1"]["reason"]["kind"], "bad_answer");

    // What the endpoint received: the occurrence as documented, and the tries.
    let ok = endpoint.calls("ok");
    assert_eq!(ok.len(), 1);
    let request_id = format!("{events}:0:0#a0");
    assert_eq!(
        ok[0].body,
        json!({"program": "spring", "requestId": request_id, "userId": "ok-1",
               "event": "ORDER_OK", "params": {"orderId": "o-ok-1"},
               "occurredAt": ok[0].body["occurredAt"]})
    );
    assert!(ok[0].body["occurredAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(ok[0].idempotency_key.as_deref(), Some(request_id.as_str()));
    assert_eq!(ok[0].api_key.as_deref(), Some("k-1"));
    assert_eq!(endpoint.calls("slow").len(), 2, "a timeout is retried once");
    assert_eq!(endpoint.calls("fail").len(), 2, "a 500 is retried once");
    assert_eq!(
        endpoint.calls("bad").len(),
        1,
        "a wrong shape is not retried"
    );
    let fail = endpoint.calls("fail");
    assert_eq!(fail[0].body["requestId"], fail[1].body["requestId"]);

    // An endpoint that keeps failing: after two failed calls its breaker opens, and the third
    // occurrence is paid its fallback without a call. One at a time, so each call sees the
    // breaker as the one before left it.
    for (i, user) in ["down-1", "down-2", "down-3"].iter().enumerate() {
        broker.produce(&events, &[occurrence(user, "ORDER_DOWN")]);
        let outcomes = responses(&broker, &setup, 5 + i);
        assert!(outcomes.contains_key(*user), "{outcomes:#?}");
    }
    let outcomes = responses(&broker, &setup, 7);
    for user in ["down-1", "down-2"] {
        assert_eq!(
            outcomes[user]["reason"],
            json!({"kind": "status", "status": 503})
        );
    }
    assert_eq!(
        outcomes["down-3"],
        json!({"outcome": "fallback", "points": 5, "reason": {"kind": "circuit_open"}})
    );
    assert_eq!(
        endpoint.calls("down").len(),
        4,
        "two calls of two tries, then none"
    );

    // A request produced again after it was settled (what a re-published outbox does): no
    // call, no second payment.
    let requests = broker.consume(
        &[setup.topic("amount-requests")],
        7,
        Duration::from_secs(30),
    );
    assert_eq!(requests.len(), 7);
    let ok_request = requests
        .iter()
        .find(|r| r["value"]["userId"] == "ok-1")
        .unwrap();
    assert_eq!(ok_request["key"], "ok-1");
    broker.produce(
        &setup.topic("amount-requests"),
        &[("ok-1".into(), ok_request["value"].to_string())],
    );
    broker.wait_committed(
        &setup.names.group(),
        &setup.topic("amount-requests"),
        1,
        8,
        Duration::from_secs(30),
        || worker.log_text(),
    );
    assert_eq!(endpoint.calls("ok").len(), 1, "the repeat was not called");
    let all_rewards = broker.drain(
        &[setup.topic("rewards")],
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    let (published, _) = by_event_id(&all_rewards);
    let paid_ok = published
        .values()
        .filter(|e| e["userId"] == "ok-1" && e["type"] == "reward.granted")
        .count();
    assert_eq!(paid_ok, 1);
    assert_eq!(published.len(), 7, "one grant per occurrence");

    // `questline replay --records` on the catalog log, the input topic and the recorded
    // responses pays the same, ids and catalog versions included, without calling anyone.
    let calls_before = endpoint.total();
    let mut dump = broker.dump(
        &[setup.topic("catalog")],
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    dump.push_str(&broker.dump(
        std::slice::from_ref(&events),
        Duration::from_secs(2),
        Duration::from_secs(30),
    ));
    dump.push_str(&broker.dump(
        &[setup.topic("amount-responses")],
        Duration::from_secs(2),
        Duration::from_secs(30),
    ));
    let dump_file = setup.dir.path().join("dump.jsonl");
    std::fs::write(&dump_file, dump).unwrap();
    let replayed = replay_dump(&setup.config, &dump_file, &["reward.granted"]);
    assert_same_events(&replayed, &published);
    assert_eq!(endpoint.total(), calls_before, "replay called an endpoint");

    assert_eq!(worker.terminate(Duration::from_secs(20)), Some(0));
}
