//! Seed-style response bodies: `{statusCode, statusName, message}` for every outcome.
//!
//! The seed answers success with `{"message": "Process completed successfully",
//! "statusCode": 1, "statusName": "Successfully"}` and says errors carry a non-1 `statusCode`
//! and a message. Every error of the sidecar — validation, auth, not found, oversized body,
//! log or store unavailable, even a wrong method, an unknown path, a request head over the
//! limits or a body that never arrives — uses that one shape, so a client has a single error
//! path. `field` is added (an extension, never a rename) when one input field is at fault, so
//! programs need not parse the message. Error responses that the HTTP stack builds itself
//! (axum's rejections, a layer's refusal) are given the shape on their way out by
//! [`ensure_envelope`].
//!
//! | statusCode | statusName | HTTP |
//! |---|---|---|
//! | 1 | `Successfully` | 200 / 202 |
//! | 2 | `InvalidInput` | 400 |
//! | 3 | `Unauthorized` | 401 |
//! | 4 | `NotFound` | 404 |
//! | 5 | `MethodNotAllowed` | 405 |
//! | 6 | `PayloadTooLarge` | 413 |
//! | 7 | `ServiceUnavailable` | 503 |
//! | 8 | `InternalError` | 500 |
//! | 9 | `UriTooLong` | 414 |
//! | 10 | `HeadersTooLarge` | 431 |
//! | 11 | `RequestTimeout` | 408 |

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::core::view::QueryError;
use crate::error::ErrorClass;
use crate::pipeline::commands::SubmitError;
use crate::store::StoreError;

/// The seed's success message.
pub const SUCCESS_MESSAGE: &str = "Process completed successfully";
/// The seed's success `statusName`.
pub const SUCCESS_NAME: &str = "Successfully";

/// The seed's status body, for success (`statusCode` 1) and every error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    pub message: String,
    /// 1 on success; see the table in the module docs for the others.
    pub status_code: i32,
    pub status_name: String,
    /// The input field at fault, when one is (`userId`, `ItemsPerPage`, `items[0].amount` …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl StatusBody {
    /// The seed's success body.
    pub fn success() -> Self {
        StatusBody {
            message: SUCCESS_MESSAGE.into(),
            status_code: 1,
            status_name: SUCCESS_NAME.into(),
            field: None,
        }
    }
}

/// The kinds of failure, each with its `statusCode`, `statusName` and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    InvalidInput,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    Unavailable,
    Internal,
    UriTooLong,
    HeadersTooLarge,
    RequestTimeout,
    /// Authenticated, but not allowed to do this (a service granting another's operation,
    /// a client that is not an admin calling the admin API).
    Forbidden,
    /// The entity exists (an admin create with a taken name or id).
    Conflict,
}

impl Kind {
    pub fn code(self) -> i32 {
        match self {
            Kind::InvalidInput => 2,
            Kind::Unauthorized => 3,
            Kind::NotFound => 4,
            Kind::MethodNotAllowed => 5,
            Kind::PayloadTooLarge => 6,
            Kind::Unavailable => 7,
            Kind::Internal => 8,
            Kind::UriTooLong => 9,
            Kind::HeadersTooLarge => 10,
            Kind::RequestTimeout => 11,
            Kind::Forbidden => 12,
            Kind::Conflict => 13,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::InvalidInput => "InvalidInput",
            Kind::Unauthorized => "Unauthorized",
            Kind::NotFound => "NotFound",
            Kind::MethodNotAllowed => "MethodNotAllowed",
            Kind::PayloadTooLarge => "PayloadTooLarge",
            Kind::Unavailable => "ServiceUnavailable",
            Kind::Internal => "InternalError",
            Kind::UriTooLong => "UriTooLong",
            Kind::HeadersTooLarge => "HeadersTooLarge",
            Kind::RequestTimeout => "RequestTimeout",
            Kind::Forbidden => "Forbidden",
            Kind::Conflict => "Conflict",
        }
    }

    pub fn http(self) -> StatusCode {
        match self {
            Kind::InvalidInput => StatusCode::BAD_REQUEST,
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::UriTooLong => StatusCode::URI_TOO_LONG,
            Kind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::Conflict => StatusCode::CONFLICT,
        }
    }

    /// The kind of an HTTP error status: its own where there is one; any other client error
    /// is `InvalidInput`, any other server error `InternalError` (the status itself is kept).
    pub fn of_status(status: StatusCode) -> Kind {
        match status {
            StatusCode::UNAUTHORIZED => Kind::Unauthorized,
            StatusCode::FORBIDDEN => Kind::Forbidden,
            StatusCode::CONFLICT => Kind::Conflict,
            StatusCode::NOT_FOUND => Kind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Kind::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => Kind::RequestTimeout,
            StatusCode::PAYLOAD_TOO_LARGE => Kind::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => Kind::UriTooLong,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Kind::HeadersTooLarge,
            StatusCode::SERVICE_UNAVAILABLE => Kind::Unavailable,
            s if s.is_server_error() => Kind::Internal,
            _ => Kind::InvalidInput,
        }
    }
}

/// A failed request: becomes an HTTP status and a seed-style body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming the field at fault; the message starts with the field's name.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        let message = if message.starts_with(field.as_str()) {
            message
        } else {
            format!("{field}: {message}")
        };
        ApiError {
            kind: Kind::InvalidInput,
            message,
            field: Some(field),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(Kind::NotFound, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError::new(Kind::Unauthorized, message)
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            Kind::PayloadTooLarge,
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 408: the body did not arrive in time. The connection is closed after the answer: the
    /// rest of the body may still be on its way and cannot be told from the next request.
    pub fn body_timed_out(timeout: std::time::Duration) -> Self {
        ApiError::new(
            Kind::RequestTimeout,
            format!(
                "body: the request body did not arrive within {} s",
                timeout.as_secs_f64()
            ),
        )
        .with_field("body")
    }

    /// The same error, naming `field` as the input at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn body(&self) -> StatusBody {
        StatusBody {
            message: self.message.clone(),
            status_code: self.kind.code(),
            status_name: self.kind.name().into(),
            field: self.field.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.kind.http(), Json(self.body())).into_response();
        if self.kind == Kind::Unavailable {
            // The log or the store is expected back soon; tell well-behaved clients when to retry.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.kind == Kind::RequestTimeout {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Gives an error response without the envelope one: a 4xx or 5xx whose body is not JSON
/// (axum's own rejections, the default 404 of a router without a fallback, a layer's
/// refusal) gets `{statusCode, statusName, message}` for its status, keeping its status and
/// its other headers (`Allow`, `Retry-After`). The sidecar's own errors pass unchanged.
pub fn ensure_envelope(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let kind = Kind::of_status(status);
    let reason = status.canonical_reason().unwrap_or("error");
    let message = format!("{} {reason}", status.as_u16());
    let body = ApiError::new(kind, message).body();
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(json))
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::invalid(e.field, e.message)
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        ApiError::new(Kind::Unavailable, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.class() {
            ErrorClass::Transient | ErrorClass::Fatal => {
                ApiError::new(Kind::Unavailable, e.to_string())
            }
            ErrorClass::Permanent => {
                // The details are for operators (logged), not for clients.
                tracing::error!(error = %e, "store returned a corrupt record");
                ApiError::new(
                    Kind::Internal,
                    "a stored record could not be read; the operators have been told",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_field_first() {
        let e = ApiError::invalid("userId", "is required");
        assert_eq!(e.message, "userId: is required");
        assert_eq!(e.body().status_code, 2);
        let e = ApiError::invalid("ItemsPerPage", "ItemsPerPage must be between 1 and 100");
        assert_eq!(e.message, "ItemsPerPage must be between 1 and 100");
        let json = serde_json::to_value(e.body()).unwrap();
        assert_eq!(json["statusName"], "InvalidInput");
        assert_eq!(json["field"], "ItemsPerPage");
    }

    #[test]
    fn success_is_the_seeds_body_exactly() {
        let json = serde_json::to_value(StatusBody::success()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"message": "Process completed successfully", "statusCode": 1, "statusName": "Successfully"})
        );
    }

    #[test]
    fn every_error_code_is_distinct_and_not_one() {
        let kinds = [
            Kind::InvalidInput,
            Kind::Unauthorized,
            Kind::NotFound,
            Kind::MethodNotAllowed,
            Kind::PayloadTooLarge,
            Kind::Unavailable,
            Kind::Internal,
            Kind::UriTooLong,
            Kind::HeadersTooLarge,
            Kind::RequestTimeout,
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&1));
        for kind in kinds {
            assert_eq!(Kind::of_status(kind.http()), kind, "{kind:?}");
        }
    }

    async fn json_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn bare_error_responses_get_the_envelope_and_keep_their_headers() {
        let bare = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET,HEAD")
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("Method Not Allowed"))
            .unwrap();
        let wrapped = ensure_envelope(bare);
        assert_eq!(wrapped.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(wrapped.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(wrapped.headers()[header::CONTENT_TYPE], "application/json");
        let json = json_of(wrapped).await;
        assert_eq!(json["statusCode"], 5);
        assert_eq!(json["statusName"], "MethodNotAllowed");
        assert_eq!(json["message"], "405 Method Not Allowed");
        // A 4xx without a kind of its own keeps its status, as InvalidInput.
        let teapot = Response::builder()
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
            .body(Body::empty())
            .unwrap();
        let wrapped = ensure_envelope(teapot);
        assert_eq!(wrapped.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(json_of(wrapped).await["statusName"], "InvalidInput");
    }

    #[tokio::test]
    async fn enveloped_and_successful_responses_pass_unchanged() {
        let ours = ApiError::invalid("userId", "userId is required").into_response();
        let json = json_of(ensure_envelope(ours)).await;
        assert_eq!(json["field"], "userId");
        let ok = Response::builder()
            .status(StatusCode::OK)
            .body(Body::from("plain"))
            .unwrap();
        let passed = ensure_envelope(ok);
        let bytes = axum::body::to_bytes(passed.into_body(), 100).await.unwrap();
        assert_eq!(&bytes[..], b"plain");
    }
}
