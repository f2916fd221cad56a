//! KickApps' answers: `{"status": 1, …}` on success, `{"status": -1, "errorId": "…", "error":
//! "…"}` on failure, with the seed's error codes.
//!
//! **HTTP status.** KickApps answered every call with 200 and the outcome in the body, because
//! its JSONP mode (a `<script>` tag) could not read a status. questline offers no JSONP, so
//! the status says the class of the outcome and the body stays the seed's: a client that
//! reads the body sees KickApps' answer whatever the status, and proxies, retries and the
//! sidecar's metrics (`questline_http_requests_total{route,status}`) see a failure as one.
//! Each code has one status ([`KickError::status`]): 401 for the token missing or unknown (44,
//! 1), 403 for another site's token (18), 400 for a parameter (8, 10, 11, 13, 20), 409 for a
//! disabled user (48: the state of the user, not the caller's rights, refuses it — which keeps
//! it apart from 18 in the metrics). Codes the seed does not list are questline's own, from
//! 900 ([`codes`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::{ApiError, Kind};

/// The error codes: the seed's, then questline's own from 900.
pub mod codes {
    /// The seed: invalid token.
    pub const INVALID_TOKEN: u16 = 1;
    /// The seed: location cannot be null or blank.
    pub const LOCATION_BLANK: u16 = 8;
    /// The seed: invalid actionId or actionId missing.
    pub const INVALID_ACTION: u16 = 10;
    /// The seed: quantity must be an integer.
    pub const QUANTITY_NOT_INTEGER: u16 = 11;
    /// The seed: invalid userId.
    pub const INVALID_USER: u16 = 13;
    /// The seed: insufficient user permissions for this operation.
    pub const NOT_PERMITTED: u16 = 18;
    /// The seed: location cannot exceed 64 characters.
    pub const LOCATION_TOO_LONG: u16 = 20;
    /// The seed: token required.
    pub const TOKEN_REQUIRED: u16 = 44;
    /// The seed: user is either disabled or blocked.
    pub const USER_DISABLED: u16 = 48;
    /// questline: the request cannot be read (a body that is not JSON or a form, too large or
    /// too slow; `callback`; a bad or repeated `userActionId`).
    pub const BAD_REQUEST: u16 = 900;
    /// questline: the log or the store is unavailable; retry (with the same `userActionId`).
    pub const UNAVAILABLE: u16 = 903;
    /// questline: an internal error.
    pub const INTERNAL: u16 = 999;
}

/// A success: `{"status": 1, …the method's fields}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Success<T> {
    /// Always 1.
    pub status: i8,
    #[serde(flatten)]
    pub data: T,
}

/// `data` as a success.
pub fn success<T: Serialize>(data: T) -> Json<Success<T>> {
    Json(Success { status: 1, data })
}

/// A failure's body (documentation and serialization).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// Always -1.
    #[schema(example = -1)]
    pub status: i8,
    /// The error code as a string, as the seed writes it.
    #[schema(example = "8")]
    pub error_id: String,
    /// What is wrong, starting with the parameter at fault.
    #[schema(example = "location: is required")]
    pub error: String,
}

/// A refused KickApps call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KickError {
    pub code: u16,
    pub message: String,
    /// The HTTP status, when it is not the code's own (413 and 408 for a body).
    status: Option<StatusCode>,
}

impl KickError {
    /// `code`, with a message naming the parameter at fault.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        KickError {
            code,
            message: message.into(),
            status: None,
        }
    }

    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        if let Some(status) = self.status {
            return status;
        }
        match self.code {
            codes::TOKEN_REQUIRED | codes::INVALID_TOKEN => StatusCode::UNAUTHORIZED,
            codes::NOT_PERMITTED => StatusCode::FORBIDDEN,
            codes::USER_DISABLED => StatusCode::CONFLICT,
            codes::UNAVAILABLE => StatusCode::SERVICE_UNAVAILABLE,
            codes::INTERNAL => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    pub fn body(&self) -> Failure {
        Failure {
            status: -1,
            error_id: self.code.to_string(),
            error: self.message.clone(),
        }
    }
}

impl std::fmt::Display for KickError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (error {})", self.message, self.code)
    }
}

/// The sidecar's own errors (a body too large or too slow, the log or the store down) in
/// KickApps' shape, keeping their HTTP status.
impl From<ApiError> for KickError {
    fn from(e: ApiError) -> Self {
        let code = match e.kind {
            Kind::Unavailable => codes::UNAVAILABLE,
            Kind::Internal => codes::INTERNAL,
            _ => codes::BAD_REQUEST,
        };
        KickError {
            code,
            message: e.message.clone(),
            status: Some(e.kind.http()),
        }
    }
}

impl IntoResponse for KickError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(self.body())).into_response();
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::REQUEST_TIMEOUT => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_has_its_status_and_the_seeds_body() {
        for (code, status) in [
            (44, 401),
            (1, 401),
            (18, 403),
            (8, 400),
            (10, 400),
            (11, 400),
            (13, 400),
            (20, 400),
            (48, 409),
            (900, 400),
            (903, 503),
            (999, 500),
        ] {
            let e = KickError::new(code, "x: y");
            assert_eq!(e.status().as_u16(), status, "{code}");
            let body = serde_json::to_value(e.body()).unwrap();
            assert_eq!(
                body,
                serde_json::json!({"status": -1, "errorId": code.to_string(), "error": "x: y"})
            );
        }
    }

    #[test]
    fn the_sidecars_errors_keep_their_status() {
        let e = KickError::from(ApiError::too_large(10));
        assert_eq!((e.code, e.status().as_u16()), (900, 413));
        let e = KickError::from(ApiError::new(Kind::Unavailable, "down"));
        assert_eq!((e.code, e.status().as_u16()), (903, 503));
        let response = e.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
