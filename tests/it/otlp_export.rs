//! Span export over OTLP/HTTP (JSON), to a collector stand-in in the test: the sidecar's
//! `http` span is the child of the request's `traceparent`, the worker's `record` span the
//! child of the `http` span, and the events carry the `record` span's id, all in the
//! request's trace. A request without a `traceparent` starts a trace of its own. The spans
//! buffered at the end are sent by the shutdown flush.

use crate::support::inprocess::{header, Engine};
use axum::routing::post;
use questline::settings::{OtlpProtocol, TelemetrySettings};
use serde_json::Value;
use std::sync::{Arc, Mutex};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A collector stand-in: keeps every span of every `/v1/traces` request.
async fn collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = Arc::clone(&spans);
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let kept = Arc::clone(&kept);
            async move {
                let request: Value = serde_json::from_slice(&body).expect("OTLP JSON");
                let mut kept = kept.lock().unwrap();
                for rs in request["resourceSpans"].as_array().into_iter().flatten() {
                    let service = rs["resource"]["attributes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|a| a["key"] == "service.name")
                        .map(|a| a["value"]["stringValue"].clone());
                    for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                        for span in ss["spans"].as_array().into_iter().flatten() {
                            let mut span = span.clone();
                            span["service"] = service.clone().unwrap_or_default();
                            kept.push(span);
                        }
                    }
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, spans)
}

fn named<'a>(spans: &'a [Value], name: &str, trace: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|s| s["name"] == name && s["traceId"] == trace)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_a_traced_action_are_exported_in_the_callers_trace() {
    let (addr, spans) = collector().await;
    let settings = TelemetrySettings {
        otlp_endpoint: format!("http://{addr}"),
        otlp_protocol: OtlpProtocol::HttpJson,
        service_name: "questline-test".into(),
    };
    let exporter = questline::telemetry::init_tracing_exporting(&settings)
        .expect("exporter")
        .expect("export is on");
    assert!(questline::otlp::exporting());

    let engine = Engine::start().await;
    let topics = engine.settings.topics.clone();
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    engine
        .add_action("traced", &[("traceparent", &traceparent)])
        .await;
    engine.add_action("fresh", &[]).await;
    let command = engine
        .records_of(&topics.commands, "traced")
        .await
        .remove(0);
    let events = engine.records_of(&topics.progress, "traced").await;
    let fresh = engine.records_of(&topics.commands, "fresh").await.remove(0);
    assert!(!events.is_empty());
    // Let the worker finish the batch (its span ends) before the flush.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    engine.stop();
    tokio::task::spawn_blocking(move || exporter.shutdown())
        .await
        .unwrap();

    let spans = spans.lock().unwrap().clone();
    let http = named(&spans, "http", TRACE_ID);
    assert_eq!(http.len(), 1, "{spans:#?}");
    let http = http[0];
    assert_eq!(
        http["parentSpanId"], CALLER_SPAN,
        "child of the caller's span"
    );
    assert_eq!(http["service"], "questline-test");
    let http_id = http["spanId"].as_str().unwrap();
    // The command record names the http span as its parent.
    assert_eq!(
        header(&command, "traceparent"),
        Some(format!("00-{TRACE_ID}-{http_id}-01").as_str())
    );
    let record = named(&spans, "record", TRACE_ID);
    assert_eq!(record.len(), 1, "{spans:#?}");
    assert_eq!(record[0]["parentSpanId"], http_id, "child of the http span");
    let record_id = record[0]["spanId"].as_str().unwrap();
    for event in &events {
        assert_eq!(
            header(event, "traceparent"),
            Some(format!("00-{TRACE_ID}-{record_id}-01").as_str()),
            "the events name the worker's span"
        );
    }

    // Without a traceparent, the sidecar started a trace, exported, that the command carries.
    let fresh_parent = questline::trace_context::TraceParent::parse(
        header(&fresh, "traceparent").expect("a new trace"),
    )
    .unwrap();
    let fresh_trace = fresh_parent.trace_id_hex();
    assert_ne!(fresh_trace, TRACE_ID);
    let fresh_http = named(&spans, "http", &fresh_trace);
    assert_eq!(fresh_http.len(), 1, "{spans:#?}");
    assert_eq!(fresh_http[0]["parentSpanId"], "", "a root span");
    assert_eq!(named(&spans, "record", &fresh_trace).len(), 1);
}
