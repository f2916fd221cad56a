//! Kwegg access tokens: signed and expiring, never stored.
//!
//! The seed's login "returns an access token to authenticate subsequent requests". questline
//! makes it a JSON Web Token signed with HMAC-SHA256 (`kwegg.secret`), so any sidecar of the
//! deployment can check it without a session table, and clients that know JWTs can read it:
//!
//! ```text
//! base64url({"alg":"HS256","typ":"JWT"}) . base64url(claims) . base64url(HMAC-SHA256(secret, header.claims))
//! claims: {"iss": "questline-kwegg", "sub": userId, "ten": tenant, "plt": platform, "iat": secs, "exp": secs}
//! ```
//!
//! A token is accepted only with its signature intact (checked in constant time, before the
//! claims are even parsed), before `exp`, and for the tenant and platform of the request: a
//! token issued through one tenant's `License-Key` is refused with another's. Only the one
//! header above is accepted, so an `alg: none` token or another algorithm never verifies.
//! Revocation before expiry is by rotating `kwegg.secret` (every token then fails).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The only header a token may have.
const HEADER_JSON: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// The issuer every token names.
pub const ISSUER: &str = "questline-kwegg";
/// The longest token read (anything longer is refused before any work).
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token says: who, through which tenant and platform, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user (`userId` of the login).
    pub sub: String,
    /// The tenant the `License-Key` maps to.
    pub ten: String,
    /// The `Platform` of the login (`ANDROID`, `IOS`, `WEB`, `RAW`).
    pub plt: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds: refused from this second on.
    pub exp: i64,
}

impl Claims {
    /// Claims for `user` of `tenant` on `platform`, issued `now`, valid for `ttl`.
    pub fn new(
        user: &str,
        tenant: &str,
        platform: &str,
        now: DateTime<Utc>,
        ttl: TimeDelta,
    ) -> Self {
        let iat = now.timestamp();
        Claims {
            iss: ISSUER.into(),
            sub: user.into(),
            ten: tenant.into(),
            plt: platform.into(),
            iat,
            exp: iat.saturating_add(ttl.num_seconds()),
        }
    }
}

/// Why a token is refused. The messages are for the client: they say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is not one this server issued")]
    Malformed,
    #[error(
        "the access token's signature does not match: it was altered or signed with another secret"
    )]
    BadSignature,
    #[error("the access token expired at {0}; log in again")]
    Expired(String),
    #[error("the access token was issued for another tenant's License-Key")]
    OtherTenant,
    #[error("the access token was issued for Platform {0}")]
    OtherPlatform(String),
}

fn mac(secret: &[u8], signing_input: &str) -> HmacSha256 {
    // HMAC pads or hashes the key to the block size: every key length is valid, so this
    // cannot fail whatever the configured secret.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(signing_input.as_bytes());
    mac
}

/// Signs `claims` into a token.
pub fn issue(secret: &[u8], claims: &Claims) -> String {
    // Claims are strings and integers: serializing them cannot fail.
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER_JSON),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = mac(secret, &signing_input).finalize().into_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// Checks a token's signature and expiry (at `now`) and that it belongs to `tenant` and
/// `platform`; returns its claims.
pub fn verify(
    secret: &[u8],
    token: &str,
    tenant: &str,
    platform: &str,
    now: DateTime<Utc>,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed)?;
    if header != URL_SAFE_NO_PAD.encode(HEADER_JSON) {
        return Err(TokenError::Malformed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Malformed)?;
    mac(secret, signing_input)
        .verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    if claims.iss != ISSUER {
        return Err(TokenError::Malformed);
    }
    if now.timestamp() >= claims.exp {
        let at = DateTime::from_timestamp(claims.exp, 0)
            .map_or_else(|| claims.exp.to_string(), |t| t.to_rfc3339());
        return Err(TokenError::Expired(at));
    }
    if claims.ten != tenant {
        return Err(TokenError::OtherTenant);
    }
    if claims.plt != platform {
        return Err(TokenError::OtherPlatform(claims.plt));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> DateTime<Utc> {
        "2026-05-01T10:00:00Z".parse().unwrap()
    }

    fn token() -> String {
        issue(
            SECRET,
            &Claims::new("12", "kwegg", "RAW", now(), TimeDelta::hours(1)),
        )
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let claims = verify(SECRET, &token(), "kwegg", "RAW", now()).unwrap();
        assert_eq!(claims.sub, "12");
        assert_eq!(claims.exp - claims.iat, 3600);
        let last = now() + TimeDelta::seconds(3599);
        assert!(verify(SECRET, &token(), "kwegg", "RAW", last).is_ok());
        let at_expiry = now() + TimeDelta::hours(1);
        assert_eq!(
            verify(SECRET, &token(), "kwegg", "RAW", at_expiry),
            Err(TokenError::Expired("2026-05-01T11:00:00+00:00".into()))
        );
    }

    #[test]
    fn it_is_a_jwt_with_the_documented_claims() {
        let token = token();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "HS256", "typ": "JWT"}));
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["ten"], "kwegg");
        assert_eq!(claims["plt"], "RAW");
        assert_eq!(claims["iss"], ISSUER);
    }

    #[test]
    fn altered_tokens_and_other_secrets_are_refused() {
        let token = token();
        assert_eq!(
            verify(b"another secret", &token, "kwegg", "RAW", now()),
            Err(TokenError::BadSignature)
        );
        // Someone rewrites the claims to another user and keeps the signature.
        let (_, rest) = token.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims::new(
                "13",
                "kwegg",
                "RAW",
                now(),
                TimeDelta::hours(1),
            ))
            .unwrap(),
        );
        let forged = format!(
            "{}.{forged_claims}.{signature}",
            URL_SAFE_NO_PAD.encode(HEADER_JSON)
        );
        assert_eq!(
            verify(SECRET, &forged, "kwegg", "RAW", now()),
            Err(TokenError::BadSignature)
        );
        // alg "none" and garbage never verify.
        let none = format!(
            "{}.{forged_claims}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        assert_eq!(
            verify(SECRET, &none, "kwegg", "RAW", now()),
            Err(TokenError::Malformed)
        );
        for garbage in ["", "abc", "a.b", "a.b.c", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(
                verify(SECRET, garbage, "kwegg", "RAW", now()),
                Err(TokenError::Malformed),
                "{garbage}"
            );
        }
    }

    #[test]
    fn a_token_belongs_to_its_tenant_and_platform() {
        assert_eq!(
            verify(SECRET, &token(), "other", "RAW", now()),
            Err(TokenError::OtherTenant)
        );
        assert_eq!(
            verify(SECRET, &token(), "kwegg", "WEB", now()),
            Err(TokenError::OtherPlatform("RAW".into()))
        );
    }
}
