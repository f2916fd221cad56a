//! Limits on the request head (the request line and the headers), answered in the error
//! envelope.
//!
//! hyper refuses a head over its own limits with a bare `414` or `431` and no body, before any
//! of our code runs. So the sidecar's limits are checked here, below hyper's
//! ([`HYPER_MAX_HEAD_BYTES`], [`HYPER_MAX_HEADERS`], which the server configures), and the
//! client gets `{statusCode, statusName, message, field?}` naming what was too large. Only a
//! head beyond hyper's limits, four times ours, still gets hyper's bare answer.
//!
//! | limit | answer |
//! |---|---|
//! | request target over [`MAX_URI_BYTES`] | 414 `UriTooLong` |
//! | more than [`MAX_HEADERS`] header fields | 431 `HeadersTooLarge` |
//! | head over [`MAX_HEAD_BYTES`] | 431 `HeadersTooLarge`, `field` = the largest header |

use axum::extract::Request;
use axum::http::HeaderMap;

use super::error::{ApiError, Kind};

/// The longest request target (`/path?query`) accepted. The progress query's longest
/// legitimate target (a 200-character search in a non-Latin script, percent-encoded) is
/// under 2 KiB.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The largest request head accepted: the request line and every header, as on the wire.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The most header fields accepted (hyper's default limit).
pub const MAX_HEADERS: usize = 100;
/// hyper's own head limit, set above ours so that ours answer first.
pub const HYPER_MAX_HEAD_BYTES: usize = 4 * MAX_HEAD_BYTES;
/// hyper's own header count limit, set above ours so that ours answer first.
pub const HYPER_MAX_HEADERS: usize = 4 * MAX_HEADERS;

/// Checks the head of `req` against the limits.
pub fn check(req: &Request) -> Result<(), ApiError> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    if target > MAX_URI_BYTES {
        return Err(ApiError::new(
            Kind::UriTooLong,
            format!(
                "the request target is {target} bytes long; at most {MAX_URI_BYTES} are allowed"
            ),
        ));
    }
    check_headers(req.headers(), req.method().as_str().len() + target + 11)
}

/// `line` is the request line's length (method, target, version, CRLF).
fn check_headers(headers: &HeaderMap, line: usize) -> Result<(), ApiError> {
    let count = headers.len();
    if count > MAX_HEADERS {
        return Err(ApiError::new(
            Kind::HeadersTooLarge,
            format!("the request has {count} header fields; at most {MAX_HEADERS} are allowed"),
        ));
    }
    // Each field as on the wire: `name: value\r\n`.
    let size = |(name, value): (&axum::http::HeaderName, &axum::http::HeaderValue)| {
        name.as_str().len() + value.len() + 4
    };
    let total = line + headers.iter().map(size).sum::<usize>() + 2;
    if total <= MAX_HEAD_BYTES {
        return Ok(());
    }
    let largest = headers.iter().max_by_key(|field| size(*field));
    let mut error = ApiError::new(
        Kind::HeadersTooLarge,
        format!("the request head is {total} bytes; at most {MAX_HEAD_BYTES} are allowed"),
    );
    if let Some((name, value)) = largest {
        error.message = format!(
            "{}: {} (the largest header, {} bytes)",
            name.as_str(),
            error.message,
            value.len()
        );
        error = error.with_field(name.as_str());
    }
    Err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(target: &str, headers: &[(&str, String)]) -> Request {
        let mut builder = Request::builder().uri(target);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn ordinary_heads_pass() {
        let req = request(
            "/api/v1/users/u/balances?x=1",
            &[("accept-language", "ar, en;q=0.8".into())],
        );
        assert_eq!(check(&req), Ok(()));
        let at_limit = format!("/{}", "a".repeat(MAX_URI_BYTES - 1));
        assert_eq!(check(&request(&at_limit, &[])), Ok(()));
    }

    #[test]
    fn a_long_target_is_414() {
        let long = format!("/{}", "a".repeat(MAX_URI_BYTES));
        let err = check(&request(&long, &[])).unwrap_err();
        assert_eq!(err.kind, Kind::UriTooLong);
        assert!(err.message.contains(&MAX_URI_BYTES.to_string()), "{err}");
    }

    #[test]
    fn too_many_or_too_large_headers_are_431_naming_the_largest() {
        let many: Vec<(String, String)> = (0..=MAX_HEADERS)
            .map(|i| (format!("x-h{i}"), "v".to_string()))
            .collect();
        let many: Vec<(&str, String)> = many.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        let err = check(&request("/", &many)).unwrap_err();
        assert_eq!(err.kind, Kind::HeadersTooLarge);
        assert_eq!(err.field, None);
        let big = check(&request(
            "/",
            &[
                ("x-small", "s".into()),
                ("x-big", "b".repeat(MAX_HEAD_BYTES)),
            ],
        ))
        .unwrap_err();
        assert_eq!(big.kind, Kind::HeadersTooLarge);
        assert_eq!(big.field.as_deref(), Some("x-big"));
        assert!(big.message.starts_with("x-big: "), "{big}");
    }
}
