//! Client authentication: `X-ClientId` + `X-Timestamp` + `X-Message` (an HMAC-SHA256).
//!
//! The seed requires `X-ClientId` ("provided client id") and `X-Message` ("provided encrypted
//! message") without saying what the message is. questline makes it a signature of the
//! request, so a captured header cannot be reused for another request or, after a few minutes,
//! at all:
//!
//! ```text
//! X-ClientId:  the client's id (a key of `http.auth.clients`)
//! X-Timestamp: Unix time in seconds, e.g. 1767225600
//! X-Message:   HMAC-SHA256(secret, X-Timestamp + "\n" + METHOD + "\n" + PATH?QUERY + "\n" + BODY)
//!              as lowercase or uppercase hex (64 characters) or standard base64 (44 characters)
//! ```
//!
//! - `METHOD` is the upper-case method (`GET`, `POST`).
//! - `PATH?QUERY` is the request target exactly as sent on the request line, percent-encoding
//!   included, with `?` and the query only when there is one
//!   (`/api/v1/Challenges/GetProgressChallengesInfoForUser?UserId=151631&Page=1`). A proxy in
//!   front of the sidecar must not rewrite it.
//! - `BODY` is the raw body bytes (empty for a `GET`); the timestamp is the header's text.
//! - A request is refused with 401 when a header is missing, the client is unknown, the
//!   timestamp is more than `http.auth.max_skew_seconds` (default 300) away from the server's
//!   clock in either direction, or the signature does not match (compared in constant time).
//!
//! Authentication is on when `http.auth.clients` lists at least one client; `/healthz`,
//! `/readyz`, `/metrics` and `/openapi.json` are always open (probes and scrapers carry no
//! secrets). Replays inside the skew window are not detected here: send `actionId` with
//! actions (deduplicated per user) and `claimId` with claims to make retries harmless.
//!
//! Example (bash): `ts=$(date +%s); sig=$(printf '%s\n%s\n%s\n%s' "$ts" POST
//! /api/v1/Integration/AddAction "$body" | openssl dgst -sha256 -hmac "$secret" -hex | cut -d' ' -f2)`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;

use super::error::ApiError;
use super::request::read_body;
use super::AppState;

pub const CLIENT_ID_HEADER: &str = "x-clientid";
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
pub const MESSAGE_HEADER: &str = "x-message";

type HmacSha256 = Hmac<Sha256>;

/// The signature a client sends in `X-Message`, as lowercase hex.
pub fn sign(
    secret: &str,
    timestamp: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let mac = mac_of(secret, timestamp, method, path_and_query, body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mac_of(
    secret: &str,
    timestamp: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> HmacSha256 {
    // HMAC pads or hashes the key to the block size: every key length is valid, so this
    // cannot fail whatever the configured secret.
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b"\n");
    mac.update(method.to_ascii_uppercase().as_bytes());
    mac.update(b"\n");
    mac.update(path_and_query.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// Decodes `X-Message`: 64 hex digits, or base64 of 32 bytes.
fn decode_signature(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
            .collect();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .filter(|b| b.len() == 32)
}

fn header<'a>(headers: &'a HeaderMap, name: &str, shown: &str) -> Result<&'a str, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::unauthorized(format!("the {shown} header is required")))
}

/// Middleware: checks the signature when authentication is configured, then passes the
/// request on with its body restored.
pub async fn authenticate(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let auth = &app.settings.auth;
    if auth.clients.is_empty() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let checked = async {
        let client = header(&parts.headers, CLIENT_ID_HEADER, "X-ClientId")?;
        let timestamp = header(&parts.headers, TIMESTAMP_HEADER, "X-Timestamp")?;
        let message = header(&parts.headers, MESSAGE_HEADER, "X-Message")?;
        let at: i64 = timestamp.parse().map_err(|_| {
            ApiError::unauthorized("X-Timestamp must be Unix time in whole seconds")
        })?;
        let skew = chrono::Utc::now()
            .timestamp()
            .saturating_sub(at)
            .unsigned_abs();
        if skew > auth.max_skew_seconds {
            return Err(ApiError::unauthorized(format!(
                "X-Timestamp is {skew} s away from the server's clock; at most {} s are allowed",
                auth.max_skew_seconds
            )));
        }
        let wrong = || ApiError::unauthorized("X-ClientId or X-Message is wrong");
        let secret = auth.clients.get(client).ok_or_else(wrong)?;
        let signature = decode_signature(message).ok_or_else(wrong)?;
        let body = read_body(
            &parts.headers,
            body,
            app.settings.max_body_bytes,
            app.body_timeout(),
        )
        .await?;
        let target = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or_else(|| parts.uri.path());
        mac_of(secret, timestamp, parts.method.as_str(), target, &body)
            .verify_slice(&signature)
            .map_err(|_| wrong())?;
        tracing::Span::current().record("client", client);
        Ok(body)
    }
    .await;
    match checked {
        Ok(body) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_of_the_documented_message() {
        let sig = sign(
            "s3cret",
            "1767225600",
            "post",
            "/api/v1/Integration/AddAction",
            b"{}",
        );
        assert_eq!(sig.len(), 64);
        let mut mac = HmacSha256::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1767225600\nPOST\n/api/v1/Integration/AddAction\n{}");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, expected);
    }

    #[test]
    fn signatures_decode_from_hex_and_base64() {
        let sig = sign("k", "1", "GET", "/x", b"");
        let bytes = decode_signature(&sig).unwrap();
        assert_eq!(decode_signature(&sig.to_uppercase()).unwrap(), bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode_signature(&b64).unwrap(), bytes);
        assert_eq!(decode_signature("nothex"), None);
        assert_eq!(decode_signature(""), None);
        assert_eq!(decode_signature(&"zz".repeat(32)), None);
    }
}
