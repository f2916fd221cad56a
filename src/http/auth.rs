//! Client authentication: `X-ClientId` + `X-Timestamp` + `X-Message` (an HMAC-SHA256).
//!
//! The seed requires `X-ClientId` ("provided client id") and `X-Message` ("provided encrypted
//! message") without saying what the message is. questline makes it a signature of the
//! request — of everything in it that changes the answer — so a captured header cannot be
//! reused for another request, another tenant or, after a few minutes, at all:
//!
//! ```text
//! X-ClientId:  the client's id (a key of `http.auth.clients`)
//! X-Timestamp: Unix time in seconds, e.g. 1767225600
//! X-Message:   HMAC-SHA256(secret, X-Timestamp + "\n" + METHOD + "\n" + PATH?QUERY + "\n"
//!                                  + X-Tenant + "\n" + Accept-Language + "\n" + BODY)
//!              as lowercase or uppercase hex (64 characters) or standard base64 (44 characters)
//! ```
//!
//! - `METHOD` is the upper-case method (`GET`, `POST`).
//! - `PATH?QUERY` is the request target exactly as sent on the request line, percent-encoding
//!   included, with `?` and the query only when there is one
//!   (`/api/v1/Challenges/GetProgressChallengesInfoForUser?UserId=151631&Page=1`). A proxy in
//!   front of the sidecar must not rewrite it.
//! - `X-Tenant` and `Accept-Language` are those headers' values as sent, without surrounding
//!   spaces, and empty when the header is absent (the first one if sent twice: the one the
//!   sidecar reads). Both change the answer — the tenant's catalog, the language of names —
//!   so both are signed: a signed request cannot be replayed against another tenant.
//! - `BODY` is the raw body bytes (empty for a `GET`); the timestamp is the header's text.
//! - A request is refused with 401 when a header is missing, the client is unknown, the
//!   timestamp is more than `http.auth.max_skew_seconds` (default 300) away from the server's
//!   clock in either direction, or the signature does not match (compared in constant time).
//!
//! Authentication is on when `http.auth.clients` lists at least one client; `/healthz`,
//! `/readyz`, `/metrics` and `/openapi.json` are always open (probes and scrapers carry no
//! secrets). A client whose secret is empty is refused when the table is built ([`Clients`]):
//! an empty HMAC key is a key anyone can use. Replays inside the skew window are not detected
//! here: send `actionId` with actions (deduplicated per user) and `claimId` with claims to
//! make retries harmless.
//!
//! Example (bash, no `X-Tenant` or `Accept-Language`): `ts=$(date +%s); sig=$(printf
//! '%s\n%s\n%s\n%s\n%s\n%s' "$ts" POST /api/v1/Integration/AddAction "" "" "$body" | openssl
//! dgst -sha256 -hmac "$secret" -hex | cut -d' ' -f2)`.

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
use super::request::{read_body, TENANT_HEADER};
use super::AppState;
use crate::settings::AuthSettings;

pub const CLIENT_ID_HEADER: &str = "x-clientid";
pub const TIMESTAMP_HEADER: &str = "x-timestamp";
pub const MESSAGE_HEADER: &str = "x-message";

type HmacSha256 = Hmac<Sha256>;

/// What a signature covers: the timestamp and every part of the request that changes the
/// answer. Clients build one to sign a request; the sidecar builds one from the request it
/// received to check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signed<'a> {
    /// `X-Timestamp` as sent.
    pub timestamp: &'a str,
    /// The method; signed in upper case.
    pub method: &'a str,
    /// The request target as sent on the request line (`/path?query`).
    pub target: &'a str,
    /// `X-Tenant` as sent, "" when absent.
    pub tenant: &'a str,
    /// `Accept-Language` as sent, "" when absent.
    pub accept_language: &'a str,
    /// The raw body, empty for a `GET`.
    pub body: &'a [u8],
}

impl Signed<'_> {
    /// The exact bytes signed: the fields in order, separated by `\n`, the body last (it may
    /// contain newlines itself). Header values are signed without surrounding spaces.
    pub fn message(&self) -> Vec<u8> {
        let method = self.method.to_ascii_uppercase();
        let parts: [&[u8]; 5] = [
            self.timestamp.as_bytes(),
            method.as_bytes(),
            self.target.as_bytes(),
            self.tenant.trim().as_bytes(),
            self.accept_language.trim().as_bytes(),
        ];
        let mut message =
            Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + self.body.len());
        for part in parts {
            message.extend_from_slice(part);
            message.push(b'\n');
        }
        message.extend_from_slice(self.body);
        message
    }

    /// The signature a client sends in `X-Message`, as lowercase hex.
    pub fn sign(&self, secret: &str) -> String {
        self.mac(secret)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn mac(&self, secret: &str) -> HmacSha256 {
        // HMAC pads or hashes the key to the block size: every key length is valid, so this
        // cannot fail whatever the configured secret.
        let mut mac =
            HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
        mac.update(&self.message());
        mac
    }
}

/// The clients allowed to call the API, built once from `http.auth`.
///
/// A client with an empty (or blank) secret is refused: HMAC accepts an empty key, so such a
/// client would be one anyone can sign as. [`Clients::new`] fails on it, naming the client, so
/// the process refuses to start; [`Clients::leaving_out_refused`] (for the infallible
/// `AppState::new`) leaves it out and keeps authentication on, so a bad entry can never open
/// the API to everyone.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    /// Whether requests must be signed: some client is configured, usable or not.
    required: bool,
    secrets: std::collections::BTreeMap<String, String>,
}

impl Clients {
    /// The table, or the first refused client's problem (`http.auth.clients.<id>: …`).
    pub fn new(settings: &AuthSettings) -> Result<Clients, String> {
        let (clients, refused) = Self::build(settings);
        match refused.into_iter().next() {
            Some(problem) => Err(problem),
            None => Ok(clients),
        }
    }

    /// The table without the refused clients (each logged); authentication stays on.
    pub fn leaving_out_refused(settings: &AuthSettings) -> Clients {
        let (clients, refused) = Self::build(settings);
        for problem in refused {
            tracing::error!(%problem, "client refused");
        }
        clients
    }

    fn build(settings: &AuthSettings) -> (Clients, Vec<String>) {
        let mut refused = Vec::new();
        let mut secrets = std::collections::BTreeMap::new();
        for (id, secret) in &settings.clients {
            if secret.trim().is_empty() {
                refused.push(format!(
                    "http.auth.clients.{id}: the secret is empty; every client needs a secret \
                     of its own (e.g. 32 random bytes, hex-encoded)"
                ));
            } else {
                secrets.insert(id.clone(), secret.clone());
            }
        }
        for admin in &settings.admin_clients {
            if !settings.clients.contains_key(admin) {
                refused.push(format!(
                    "http.auth.admin_clients: '{admin}' is not a client of http.auth.clients"
                ));
            }
        }
        let clients = Clients {
            required: !settings.clients.is_empty(),
            secrets,
        };
        (clients, refused)
    }

    /// Whether requests must be signed.
    pub fn required(&self) -> bool {
        self.required
    }

    fn secret(&self, client: &str) -> Option<&str> {
        self.secrets.get(client).map(String::as_str)
    }
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

/// A signed header's value as the signature covers it: trimmed, "" when absent.
fn signed_header<'a>(headers: &'a HeaderMap, name: &str, shown: &str) -> Result<&'a str, ApiError> {
    match headers.get(name) {
        None => Ok(""),
        Some(v) => v.to_str().map(str::trim).map_err(|_| {
            ApiError::unauthorized(format!("{shown} must be visible ASCII in a signed request"))
                .with_field(shown)
        }),
    }
}

/// The client whose signature a request carried, in the request's extensions for the
/// handlers that authorize by client (the admin API, services' grants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedClient(pub String);

/// Middleware: checks the signature when authentication is configured, then passes the
/// request on with its body restored and its client in the extensions.
pub async fn authenticate(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let unsigned = req.headers().get(CLIENT_ID_HEADER).is_none();
    if !app.auth.required() || (app.settings.auth.optional && unsigned) {
        return next.run(req).await;
    }
    let max_skew = app.settings.auth.max_skew_seconds;
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
        if skew > max_skew {
            return Err(ApiError::unauthorized(format!(
                "X-Timestamp is {skew} s away from the server's clock; at most {max_skew} s are allowed"
            )));
        }
        let wrong = || ApiError::unauthorized("X-ClientId or X-Message is wrong");
        let secret = app.auth.secret(client).ok_or_else(wrong)?;
        let signature = decode_signature(message).ok_or_else(wrong)?;
        let tenant = signed_header(&parts.headers, TENANT_HEADER, "X-Tenant")?;
        let accept_language = signed_header(
            &parts.headers,
            axum::http::header::ACCEPT_LANGUAGE.as_str(),
            "Accept-Language",
        )?;
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
        let signed = Signed {
            timestamp,
            method: parts.method.as_str(),
            target,
            tenant,
            accept_language,
            body: &body,
        };
        signed
            .mac(secret)
            .verify_slice(&signature)
            .map_err(|_| wrong())?;
        tracing::Span::current().record("client", client);
        Ok((body, AuthenticatedClient(client.to_string())))
    }
    .await;
    match checked {
        Ok((body, client)) => {
            let mut req = Request::from_parts(parts, Body::from(body));
            req.extensions_mut().insert(client);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(clients: &[(&str, &str)]) -> AuthSettings {
        AuthSettings {
            clients: clients
                .iter()
                .map(|(id, secret)| (id.to_string(), secret.to_string()))
                .collect(),
            ..AuthSettings::default()
        }
    }

    #[test]
    fn signatures_are_hex_of_the_documented_message() {
        let signed = Signed {
            timestamp: "1767225600",
            method: "post",
            target: "/api/v1/Integration/AddAction",
            tenant: " acme ",
            accept_language: "ar, en;q=0.8",
            body: b"{\"a\":\n1}",
        };
        assert_eq!(
            signed.message(),
            b"1767225600\nPOST\n/api/v1/Integration/AddAction\nacme\nar, en;q=0.8\n{\"a\":\n1}"
        );
        let sig = signed.sign("s3cret");
        assert_eq!(sig.len(), 64);
        let mut mac = HmacSha256::new_from_slice(b"s3cret").unwrap();
        mac.update(
            b"1767225600\nPOST\n/api/v1/Integration/AddAction\nacme\nar, en;q=0.8\n{\"a\":\n1}",
        );
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, expected);
        // Absent headers are empty lines; each part changes the signature.
        let get = Signed {
            timestamp: "1",
            method: "GET",
            target: "/x",
            ..Signed::default()
        };
        assert_eq!(get.message(), b"1\nGET\n/x\n\n\n");
        let other_tenant = Signed { tenant: "b", ..get };
        let other_language = Signed {
            accept_language: "ar",
            ..get
        };
        assert_ne!(get.sign("k"), other_tenant.sign("k"));
        assert_ne!(get.sign("k"), other_language.sign("k"));
        assert_ne!(other_tenant.sign("k"), other_language.sign("k"));
    }

    #[test]
    fn signatures_decode_from_hex_and_base64() {
        let sig = Signed {
            timestamp: "1",
            method: "GET",
            target: "/x",
            ..Signed::default()
        }
        .sign("k");
        let bytes = decode_signature(&sig).unwrap();
        assert_eq!(decode_signature(&sig.to_uppercase()).unwrap(), bytes);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        assert_eq!(decode_signature(&b64).unwrap(), bytes);
        assert_eq!(decode_signature("nothex"), None);
        assert_eq!(decode_signature(""), None);
        assert_eq!(decode_signature(&"zz".repeat(32)), None);
    }

    #[test]
    fn empty_secrets_are_refused_and_never_open_the_api() {
        let err = Clients::new(&settings(&[("app", "s3cret"), ("blank", "  ")])).unwrap_err();
        assert!(err.starts_with("http.auth.clients.blank:"), "{err}");
        assert!(Clients::new(&settings(&[("empty", "")])).is_err());
        // Left out, but authentication stays on: nobody can sign as the empty client.
        let lenient = Clients::leaving_out_refused(&settings(&[("empty", "")]));
        assert!(lenient.required());
        assert_eq!(lenient.secret("empty"), None);
        let good = Clients::new(&settings(&[("app", "s3cret")])).unwrap();
        assert_eq!(good.secret("app"), Some("s3cret"));
        assert!(!Clients::new(&settings(&[])).unwrap().required());
    }
}
