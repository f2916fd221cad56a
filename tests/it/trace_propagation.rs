//! W3C trace context through the log without span export (the default): a `traceparent`
//! sent with AddAction is on the command record and, unchanged, on every event the action
//! causes; an invalid one is ignored; payloads are the same with or without one.

use crate::support::inprocess::{header, Engine};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_sent_with_add_action_ends_on_the_events_it_causes() {
    let engine = Engine::start().await;
    let topics = engine.settings.topics.clone();
    engine
        .add_action(
            "traced",
            &[("traceparent", TRACEPARENT), ("tracestate", "vendor=abc")],
        )
        .await;
    let commands = engine.records_of(&topics.commands, "traced").await;
    assert_eq!(commands.len(), 1);
    assert_eq!(header(&commands[0], "traceparent"), Some(TRACEPARENT));
    assert_eq!(header(&commands[0], "tracestate"), Some("vendor=abc"));

    let events = engine.records_of(&topics.progress, "traced").await;
    assert!(!events.is_empty(), "the action made progress events");
    for event in &events {
        assert_eq!(header(event, "traceparent"), Some(TRACEPARENT), "{event:?}");
        assert_eq!(header(event, "tracestate"), Some("vendor=abc"));
    }

    // The same action untraced, and with an invalid traceparent: no trace headers, and
    // events that differ from the traced ones only by user (same shape, same size).
    engine.add_action("plain", &[]).await;
    engine
        .add_action(
            "bad",
            &[(
                "traceparent",
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )],
        )
        .await;
    let bad_commands = engine.records_of(&topics.commands, "bad").await;
    assert_eq!(header(&bad_commands[0], "traceparent"), None);
    for user in ["plain", "bad"] {
        let untraced = engine.records_of(&topics.progress, user).await;
        assert_eq!(untraced.len(), events.len());
        for (u, t) in untraced.iter().zip(&events) {
            assert_eq!(header(u, "traceparent"), None);
            assert_eq!(header(u, "tracestate"), None);
            let same = String::from_utf8(t.payload.clone())
                .unwrap()
                .replace("traced", user);
            let mut expected: serde_json::Value = serde_json::from_str(&same).unwrap();
            let mut got: serde_json::Value = serde_json::from_slice(&u.payload).unwrap();
            // Ids and coordinates differ by input; the rest of the payload is the same.
            for v in [&mut expected, &mut got] {
                v["eventId"] = serde_json::Value::Null;
                v["occurredAt"] = serde_json::Value::Null;
                v["source"] = serde_json::Value::Null;
            }
            assert_eq!(got, expected);
        }
    }
    engine.stop();
}
