//! What the process interns comes from its deployment, never from a client.

use crate::support::http::status_json;
use crate::support::inprocess::Engine;
use questline::core::interned::InternedName;
use serde_json::json;

/// Interned names are never freed (`core::interned`), so a name interned from a request's
/// text would grow the process with every new value. An action submitted through the
/// sidecar, with text never seen before in each field a client sets, is evaluated by the real
/// worker through to its events; none of that text was interned, while the topics the worker
/// read and wrote were.
#[tokio::test]
async fn a_clients_text_is_never_interned() {
    let engine = Engine::start().await;
    let tag = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    let texts: Vec<String> = ["user", "action", "location", "type", "topic"]
        .iter()
        .map(|field| format!("interning-{field}-{tag}"))
        .collect();
    let body = json!({
        "userId": texts[0],
        "triggerId": 1,
        "value": 200,
        "actionId": texts[1],
        "location": texts[2],
        "ActionType": texts[3],
        "topic": texts[4],
    });
    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/Integration/AddAction", engine.base()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    let progress = &engine.settings.topics.progress;
    let events = engine.records_of(progress, &texts[0]).await;
    assert!(!events.is_empty(), "the action was evaluated");
    let balance = format!("{}/user/balance?user_id={}", engine.base(), texts[0]);
    let (status, _) = status_json(reqwest::get(balance).await.unwrap()).await;
    assert_eq!(status, 200);
    for text in &texts {
        assert!(!InternedName::is_interned(text), "{text} was interned");
    }
    for topic in [&engine.settings.topics.commands, progress] {
        assert!(
            InternedName::is_interned(topic),
            "{topic} is the deployment's"
        );
    }
    engine.stop();
}
