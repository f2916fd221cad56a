//! Per-request tracing span and Prometheus metrics.
//!
//! Every routed request runs inside an `http` span (method, route template, status, and the
//! authenticated client when there is one), is counted in `questline_http_requests_total
//! {route, status}` and timed in `questline_http_request_seconds{route}`. The route label is
//! the template (`/api/v1/users/{userId}/balances`), never the raw path, so user ids cannot
//! blow up the metric's cardinality; requests that match no route are `unmatched`.
//!
//! The request's W3C trace context (`traceparent`, `tracestate`) is read here: the `http`
//! span continues it ([`crate::otlp::continue_trace`]), and the handler's commands carry the
//! result into their records ([`request_trace`]). An invalid `traceparent` is ignored.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use tracing::Instrument;

use crate::trace_context::TraceContext;

tokio::task_local! {
    /// The trace context the commands of the request being handled carry on.
    static REQUEST_TRACE: Option<TraceContext>;
}

/// The trace context of the request being handled, if it has one (see the module's doc).
/// Read where commands are submitted, so that no handler passes it along by hand.
pub fn request_trace() -> Option<TraceContext> {
    REQUEST_TRACE.try_with(Clone::clone).ok().flatten()
}

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
    let trace = crate::otlp::continue_trace(&span, TraceContext::from_http(req.headers()).as_ref());
    let started = Instant::now();
    let response = REQUEST_TRACE
        .scope(trace, next.run(req).instrument(span.clone()))
        .await;
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
    let m = crate::metrics::metrics();
    m.http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    m.http_request_seconds
        .with_label_values(&[route])
        .observe(started.elapsed().as_secs_f64());
}
