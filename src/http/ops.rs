//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.
//!
//! They are never behind authentication: probes and scrapers carry no secrets, and the
//! OpenAPI document describes only what every client may know.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use utoipa::ToSchema;

use super::error::{ApiError, Kind, StatusBody};
use super::AppState;

/// How long `/readyz` waits for the store before calling it unreachable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The Prometheus text exposition format's content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Health {
    /// `ok` (liveness) or `ready` (readiness).
    pub status: String,
}

/// Liveness: the process is up and serving HTTP. Never touches the store.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Health))
)]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: the catalog is loaded, the store answers, and the process says it is ready.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve queries", body = Health),
        (status = 503, description = "Not ready; `message` says why", body = StatusBody),
    )
)]
pub async fn readyz(State(app): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    let mut problems = Vec::new();
    if let Err(reason) = app.ready.check() {
        problems.push(reason);
    }
    if app.catalog().tenants().next().is_none() {
        problems.push("no catalog is loaded".to_string());
    }
    match tokio::time::timeout(PING_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("the store does not answer: {e}")),
        Err(_) => problems.push(format!(
            "the store did not answer within {} s",
            PING_TIMEOUT.as_secs()
        )),
    }
    if problems.is_empty() {
        Ok(Json(Health {
            status: "ready".into(),
        }))
    } else {
        Err(ApiError::new(
            Kind::Unavailable,
            format!("not ready: {}", problems.join("; ")),
        ))
    }
}

/// Every metric of the process (sidecar and, in-process, worker) in Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", content_type = "text/plain", body = String))
)]
pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        crate::metrics::metrics().render(),
    )
        .into_response()
}

/// This document: generated from the handlers and types, never written by hand.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of the sidecar", content_type = "application/json", body = Object))
)]
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi_json(),
    )
        .into_response()
}
