//! Per-request tracing span and Prometheus metrics.
//!
//! Every routed request runs inside an `http` span (method, route template, status, and the
//! authenticated client when there is one), is counted in `questline_http_requests_total
//! {route, status}` and timed in `questline_http_request_seconds{route}`. The route label is
//! the template (`/api/v1/users/{userId}/balances`), never the raw path, so user ids cannot
//! blow up the metric's cardinality; requests that match no route are `unmatched`.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

use crate::telemetry;

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// Middleware (a route layer, so the matched route is known).
pub async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_string();
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route,
        status = tracing::field::Empty,
        client = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    record(&route, &response, started);
    let status = response.status();
    span.record("status", status.as_u16());
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(parent: &span, latency_ms, "request failed");
    } else {
        tracing::debug!(parent: &span, latency_ms, "request served");
    }
    response
}

/// Counts and times one response under `route`.
pub fn record(route: &str, response: &Response, started: Instant) {
    let m = telemetry::metrics();
    m.http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    m.http_request_seconds
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
}
