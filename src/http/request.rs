//! Reading requests: bodies within the size limit, query parameters, the tenant, languages
//! and user ids — each failure a seed-style error naming what was wrong.
//!
//! Query parameters are read by hand rather than with `axum::extract::Query<T>`: axum's
//! rejection would not name the field in our body shape, and ASP.NET (the seed's stack) binds
//! query names case-insensitively, so clients of the seed may send `userId` or `UserID`.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use std::sync::Arc;
use std::time::Duration;

use super::error::ApiError;
use super::AppState;
use crate::core::catalog::TenantCatalog;
use crate::core::model::DEFAULT_TENANT;
use crate::core::view::parse_accept_language;

/// The header that selects a tenant's catalog; the default tenant when absent.
pub const TENANT_HEADER: &str = "x-tenant";
/// The longest user id the sidecar accepts (in a path, a query or a body).
pub const MAX_USER_ID_LEN: usize = 256;

/// Reads a whole body, refusing more than `limit` bytes with 413 (also when the declared
/// `Content-Length` alone exceeds it, before reading anything), and a body that has not
/// arrived in full within `timeout` with 408.
///
/// The timeout covers the whole body, not each chunk (tower-http's `TimeoutBody` restarts its
/// clock on every frame): a client trickling a byte at a time would otherwise hold its
/// connection, and its place among `http.max_connections`, for as long as it liked.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::body_timed_out(timeout))?;
    read.map_err(|e| {
        if exceeds_limit(e.into_inner()) {
            ApiError::too_large(limit)
        } else {
            ApiError::invalid("body", "body: could not be read to the end")
        }
    })
}

/// Whether a body error is the length limit (axum may wrap it more than once).
fn exceeds_limit(mut error: axum::BoxError) -> bool {
    loop {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        match error.downcast::<axum::Error>() {
            Ok(inner) => error = inner.into_inner(),
            Err(_) => return false,
        }
    }
}

/// The request body, at most `http.max_body_bytes` long.
#[derive(Debug, Clone)]
pub struct LimitedBody(pub Bytes);

impl FromRequest<Arc<AppState>> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        read_body(
            &parts.headers,
            body,
            state.settings.max_body_bytes,
            state.body_timeout(),
        )
        .await
        .map(LimitedBody)
    }
}

/// Query parameters, looked up by name case-insensitively (the first occurrence wins).
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw query string (`None` when the URL has none).
    pub fn parse(query: Option<&str>) -> Params {
        let pairs = query
            .map(|q| {
                form_urlencoded_pairs(q)
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect()
            })
            .unwrap_or_default();
        Params(pairs)
    }

    /// The trimmed value of `name`; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        let lower = name.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(k, _)| *k == lower)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// An unsigned integer parameter.
    pub fn u32(&self, name: &str) -> Result<Option<u32>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    ApiError::invalid(
                        name,
                        format!(
                            "{name} must be a whole number from 0 to {}, got '{}'",
                            u32::MAX,
                            clip(v)
                        ),
                    )
                })
            })
            .transpose()
    }

    /// A boolean parameter: `true`/`false` (any case) or `1`/`0`.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(ApiError::invalid(
                    name,
                    format!("{name} must be true or false, got '{}'", clip(v)),
                )),
            })
            .transpose()
    }
}

/// `application/x-www-form-urlencoded` pairs: `+` is a space, `%XX` is a byte, and bytes that
/// do not form UTF-8 are replaced rather than rejected (they then fail validation by name).
pub(crate) fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// At most 40 characters of client input, for error messages.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The tenant's catalog named by `X-Tenant` (the default tenant when absent).
pub fn tenant(state: &AppState, headers: &HeaderMap) -> Result<Arc<TenantCatalog>, ApiError> {
    let name = tenant_name(headers)?;
    state.catalog().tenant_shared(&name).ok_or_else(|| {
        ApiError::invalid(
            "X-Tenant",
            format!("X-Tenant: unknown tenant '{}'", clip(&name)),
        )
    })
}

/// The tenant named by `X-Tenant`, if the header is present.
pub fn tenant_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(TENANT_HEADER) {
        None => Ok(None),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::invalid("X-Tenant", "X-Tenant must be visible ASCII"))?
                .trim();
            Ok((!text.is_empty()).then(|| text.to_string()))
        }
    }
}

pub fn tenant_name(headers: &HeaderMap) -> Result<String, ApiError> {
    Ok(tenant_header(headers)?.unwrap_or_else(|| DEFAULT_TENANT.to_string()))
}

/// The languages of `Accept-Language`, best first; empty when absent or unreadable.
pub fn languages(headers: &HeaderMap) -> Vec<String> {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(parse_accept_language)
        .unwrap_or_default()
}

/// Checks a user id from a path, query or body: not blank, at most [`MAX_USER_ID_LEN`].
pub fn user_id(field: &str, value: Option<&str>) -> Result<String, ApiError> {
    let value = value.map(str::trim).unwrap_or("");
    if value.is_empty() {
        return Err(ApiError::invalid(field, format!("{field} is required")));
    }
    if value.chars().count() > MAX_USER_ID_LEN {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be at most {MAX_USER_ID_LEN} characters"),
        ));
    }
    Ok(value.to_string())
}

/// A request body that must be a JSON object; anything else is a 400 naming the body.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let doc: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("body: not valid JSON ({e})")))?;
    match doc {
        serde_json::Value::Object(map) => Ok(map),
        other => Err(ApiError::invalid(
            "body",
            format!(
                "body: expected a JSON object, found {}",
                crate::core::decimal::json_type_name(&other)
            ),
        )),
    }
}

/// A user's state as of `now`: prizes that expired since the user's last input are taken out
/// of the milestones and the balances, as the worker will do at that user's next input.
pub fn current_state(
    record: Option<crate::store::UserRecord>,
    catalog: &crate::core::catalog::TenantCatalog,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<crate::core::state::UserState> {
    record.map(|r| {
        let mut state = r.state;
        crate::core::evaluator::apply_expiry(&mut state, catalog, now);
        state
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_case_insensitive_and_decoded() {
        let p = Params::parse(Some(
            "UserId=151631&searchquery=earn+1000%21&Page=2&x=%ZZ&ar=%D8%A7",
        ));
        assert_eq!(p.get("userid"), Some("151631"));
        assert_eq!(p.get("SearchQuery"), Some("earn 1000!"));
        assert_eq!(p.u32("Page").unwrap(), Some(2));
        assert_eq!(p.get("x"), Some("%ZZ"));
        assert_eq!(p.get("ar"), Some("ا"));
        assert_eq!(p.get("missing"), None);
        let err = Params::parse(Some("Page=-1")).u32("Page").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("Page"));
        let err = Params::parse(Some("IsAscending=maybe"))
            .bool("IsAscending")
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("IsAscending"));
        assert_eq!(
            Params::parse(Some("IsAscending=FALSE"))
                .bool("isascending")
                .unwrap(),
            Some(false)
        );
        assert_eq!(Params::parse(Some("a=%")).get("a"), Some("%"));
        assert_eq!(Params::parse(Some("a=%4")).get("a"), Some("%4"));
        assert_eq!(Params::parse(Some("a=%41")).get("a"), Some("A"));
        assert_eq!(Params::parse(Some("a=%FF")).get("a"), Some("\u{FFFD}"));
    }

    #[test]
    fn user_ids_are_required_and_bounded() {
        assert_eq!(user_id("UserId", Some(" 151631 ")).unwrap(), "151631");
        assert_eq!(
            user_id("UserId", None).unwrap_err().field.as_deref(),
            Some("UserId")
        );
        assert!(user_id("userId", Some(&"x".repeat(MAX_USER_ID_LEN + 1))).is_err());
    }

    #[test]
    fn clip_counts_characters_not_bytes() {
        assert_eq!(clip("short"), "short");
        assert_eq!(clip(&"ب".repeat(50)).chars().count(), 41);
    }
}
