//! The Kwegg envelope: `{success, message, data}` for every answer, errors included.
//!
//! The seed answers `{"success": true, "message": "Login successfully", "data": {…}}`. Errors
//! use the same shape with `success: false`, an HTTP status that says the class (400 bad
//! input, 401 license key or token, 403 another user, 404, 413, 503), a message that names the
//! header or field at fault, and `data: {"field": …}` when one field is at fault, so programs
//! need not parse the message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::ApiError;

/// Every Kwegg answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Envelope<T> {
    pub success: bool,
    pub message: String,
    /// The answer's data; `null` when there is none (an event occurrence).
    pub data: T,
}

/// A successful answer: 200 with `message` and `data`.
pub fn ok<T: Serialize>(message: &str, data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        success: true,
        message: message.into(),
        data,
    })
}

/// A time as the seed writes it: RFC 3339 in UTC with microseconds
/// (`2021-02-03T16:43:06.482441Z`).
pub fn micros<S: serde::Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// [`micros`] for an optional time.
pub fn micros_opt<S: serde::Serializer>(
    at: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => micros(at, serializer),
        None => serializer.serialize_none(),
    }
}

/// What an error carries in `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ErrorData {
    /// The header or field at fault (`License-Key`, `userId`, `event.params.duration` …).
    pub field: String,
}

/// The body of every Kwegg error (documentation).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Always `false`.
    pub success: bool,
    pub message: String,
    /// `{"field": …}` when one header or field is at fault, else null.
    pub data: Option<ErrorData>,
}

/// A refused Kwegg request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KweggError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

impl KweggError {
    fn with_field(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let message = if message.starts_with(field) {
            message
        } else {
            format!("{field}: {message}")
        };
        KweggError {
            status,
            message,
            field: Some(field.to_string()),
        }
    }

    /// 400: a field or header is missing or invalid.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        KweggError::with_field(StatusCode::BAD_REQUEST, field, message)
    }

    /// 401: the license key or the access token is missing or refused.
    pub fn unauthorized(field: &str, message: impl Into<String>) -> Self {
        KweggError::with_field(StatusCode::UNAUTHORIZED, field, message)
    }

    /// 403: the token is valid but for another user.
    pub fn forbidden(field: &str, message: impl Into<String>) -> Self {
        KweggError::with_field(StatusCode::FORBIDDEN, field, message)
    }

    /// 404 without a field.
    pub fn not_found(message: impl Into<String>) -> Self {
        KweggError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            field: None,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            success: false,
            message: self.message.clone(),
            data: self.field.clone().map(|field| ErrorData { field }),
        }
    }
}

impl std::fmt::Display for KweggError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The sidecar's shared readers (bodies, paging, the store, the log) fail with [`ApiError`]:
/// the same status, message and field, in this envelope.
impl From<ApiError> for KweggError {
    fn from(e: ApiError) -> Self {
        KweggError {
            status: e.kind.http(),
            message: e.message,
            field: e.field,
        }
    }
}

impl IntoResponse for KweggError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::Kind;

    #[test]
    fn errors_are_the_envelope_with_the_field() {
        let e = KweggError::invalid("userId", "is required");
        let json = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"success": false, "message": "userId: is required", "data": {"field": "userId"}})
        );
        let e = KweggError::not_found("nothing here");
        let json = serde_json::to_value(e.body()).unwrap();
        assert_eq!(json["data"], serde_json::Value::Null);
    }

    #[test]
    fn shared_errors_keep_their_status_and_field() {
        let e = KweggError::from(ApiError::invalid(
            "numOfItems",
            "numOfItems must be between 1 and 100",
        ));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.field.as_deref(), Some("numOfItems"));
        let e = KweggError::from(ApiError::new(Kind::Unavailable, "down"));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn times_have_microseconds_like_the_seeds() {
        #[derive(Serialize)]
        struct T(#[serde(serialize_with = "micros")] DateTime<Utc>);
        let at: DateTime<Utc> = "2021-02-03T16:43:06.482441123Z".parse().unwrap();
        assert_eq!(
            serde_json::to_value(T(at)).unwrap(),
            "2021-02-03T16:43:06.482441Z"
        );
        let whole: DateTime<Utc> = "2021-02-03T16:43:06Z".parse().unwrap();
        assert_eq!(
            serde_json::to_value(T(whole)).unwrap(),
            "2021-02-03T16:43:06.000000Z"
        );
    }

    #[test]
    fn success_is_the_seeds_envelope() {
        let Json(body) = ok(
            "Balance fetched successfully",
            serde_json::json!({"balance": 0}),
        );
        assert_eq!(
            serde_json::to_value(body).unwrap(),
            serde_json::json!({"success": true, "message": "Balance fetched successfully", "data": {"balance": 0}})
        );
    }
}
