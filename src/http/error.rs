//! Seed-style response bodies: `{statusCode, statusName, message}` for every outcome.
//!
//! The seed answers success with `{"message": "Process completed successfully",
//! "statusCode": 1, "statusName": "Successfully"}` and says errors carry a non-1 `statusCode`
//! and a message. Every error of the sidecar — validation, auth, not found, oversized body,
//! log or store unavailable, even a wrong method or an unknown path — uses that one shape, so
//! a client has a single error path. `field` is added (an extension, never a rename) when one
//! input field is at fault, so programs need not parse the message.
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
        response
    }
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
        ];
        let mut codes: Vec<i32> = kinds.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&1));
    }
}
