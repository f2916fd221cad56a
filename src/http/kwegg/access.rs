//! Who is calling: the seed's `License-Key`, `Platform` and `Authorization` headers.
//!
//! - `License-Key` names the tenant (`kwegg.license_keys`); missing or unknown is a 401.
//! - `Platform` is the client's platform, `ANDROID`, `IOS`, `WEB` or `RAW` (the seed's list and
//!   its examples' value), in any case; missing or another value is a 400.
//! - `Authorization` is the access token of the login, as the seed sends it (the bare token) or
//!   as `Bearer <token>`; missing, altered, expired, or issued for another tenant or platform is
//!   a 401 (log in again).
//!
//! The token names its user: a request about another user (`userId` in the query or the body)
//! is a 403, so one user's token cannot read or spend another's coins.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::sync::Arc;

use super::config::Facade;
use super::envelope::KweggError;
use super::token;
use crate::http::request::clip;
use crate::http::AppState;

/// The platforms the seed names, plus `RAW` (its examples' value).
pub const PLATFORMS: [&str; 4] = ["ANDROID", "IOS", "WEB", "RAW"];

/// A request with a known license key and platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Licensed {
    pub tenant: String,
    /// Upper case, one of [`PLATFORMS`].
    pub platform: String,
}

/// A licensed request with a valid access token: the user it was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    pub tenant: String,
    pub platform: String,
    pub user_id: String,
}

impl Authorized {
    /// Refuses (403) a request about another user than the token's; `None` is the token's user.
    pub fn same_user(&self, field: &str, user_id: Option<&str>) -> Result<(), KweggError> {
        match user_id {
            Some(u) if u != self.user_id => Err(KweggError::forbidden(
                field,
                format!(
                    "{field}: '{}' is not the user this access token was issued for",
                    clip(u)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A header's trimmed text; `None` when absent or blank.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, &'static str> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|t| Some(t.trim()).filter(|t| !t.is_empty()))
            .map_err(|_| "must be visible ASCII"),
    }
}

/// Checks `License-Key` and `Platform`.
pub fn licensed(facade: &Facade, headers: &HeaderMap) -> Result<Licensed, KweggError> {
    let key = header(headers, "license-key")
        .map_err(|e| KweggError::unauthorized("License-Key", e))?
        .ok_or_else(|| {
            KweggError::unauthorized(
                "License-Key",
                "License-Key: the header is required (your tenant's license key)",
            )
        })?;
    let tenant = facade.tenant_of(key).ok_or_else(|| {
        KweggError::unauthorized("License-Key", "License-Key: unknown license key")
    })?;
    let platform = header(headers, "platform")
        .map_err(|e| KweggError::invalid("Platform", e))?
        .ok_or_else(|| {
            KweggError::invalid(
                "Platform",
                format!(
                    "Platform: the header is required: one of {}",
                    PLATFORMS.join(", ")
                ),
            )
        })?;
    let platform = PLATFORMS
        .iter()
        .find(|p| p.eq_ignore_ascii_case(platform))
        .ok_or_else(|| {
            KweggError::invalid(
                "Platform",
                format!(
                    "Platform: '{}' is not one of {}",
                    clip(platform),
                    PLATFORMS.join(", ")
                ),
            )
        })?;
    Ok(Licensed {
        tenant: tenant.to_string(),
        platform: (*platform).to_string(),
    })
}

/// Checks `License-Key`, `Platform` and the access token in `Authorization` at `now`.
pub fn authorized(
    facade: &Facade,
    headers: &HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Authorized, KweggError> {
    let Licensed { tenant, platform } = licensed(facade, headers)?;
    let value = header(headers, "authorization")
        .map_err(|e| KweggError::unauthorized("Authorization", e))?
        .ok_or_else(|| {
            KweggError::unauthorized(
                "Authorization",
                "Authorization: the header is required: the accessToken of the login",
            )
        })?;
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    let claims = token::verify(facade.secret(), token, &tenant, &platform, now)
        .map_err(|e| KweggError::unauthorized("Authorization", format!("Authorization: {e}")))?;
    Ok(Authorized {
        tenant,
        platform,
        user_id: claims.sub,
    })
}

impl FromRequestParts<Arc<AppState>> for Licensed {
    type Rejection = KweggError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        licensed(&state.kwegg, &parts.headers)
    }
}

impl FromRequestParts<Arc<AppState>> for Authorized {
    type Rejection = KweggError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        authorized(&state.kwegg, &parts.headers, chrono::Utc::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Catalog;
    use axum::http::HeaderValue;

    fn facade() -> Facade {
        let kwegg = include_str!("../../../examples/catalog/kwegg.toml");
        let catalog = Catalog::from_sources(&[("kwegg.toml", kwegg)]).unwrap();
        Facade::new(&super::super::config::demo_settings(), &catalog).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn field(e: KweggError) -> (u16, String) {
        (e.status.as_u16(), e.field.unwrap())
    }

    #[test]
    fn license_key_then_platform() {
        let f = facade();
        assert_eq!(
            field(licensed(&f, &headers(&[])).unwrap_err()),
            (401, "License-Key".into())
        );
        assert_eq!(
            field(
                licensed(
                    &f,
                    &headers(&[("license-key", "nope"), ("platform", "RAW")])
                )
                .unwrap_err()
            ),
            (401, "License-Key".into())
        );
        assert_eq!(
            field(licensed(&f, &headers(&[("license-key", "TESTONE1234")])).unwrap_err()),
            (400, "Platform".into())
        );
        assert_eq!(
            field(
                licensed(
                    &f,
                    &headers(&[("license-key", "TESTONE1234"), ("platform", "BeOS")])
                )
                .unwrap_err()
            ),
            (400, "Platform".into())
        );
        let ok = licensed(
            &f,
            &headers(&[("license-key", " TESTONE1234 "), ("platform", "android")]),
        )
        .unwrap();
        assert_eq!(
            (ok.tenant.as_str(), ok.platform.as_str()),
            ("kwegg", "ANDROID")
        );
    }

    #[test]
    fn the_token_is_read_bare_or_as_bearer() {
        let f = facade();
        let now = chrono::Utc::now();
        let token = token::issue(
            f.secret(),
            &token::Claims::new("12", "kwegg", "RAW", now, f.ttl()),
        );
        for value in [
            token.clone(),
            format!("Bearer {token}"),
            format!("bearer  {token}"),
        ] {
            let a = authorized(
                &f,
                &headers(&[
                    ("license-key", "TESTONE1234"),
                    ("platform", "raw"),
                    ("authorization", &value),
                ]),
                now,
            )
            .unwrap();
            assert_eq!(a.user_id, "12");
        }
        let missing = authorized(
            &f,
            &headers(&[("license-key", "TESTONE1234"), ("platform", "RAW")]),
            now,
        );
        assert_eq!(field(missing.unwrap_err()), (401, "Authorization".into()));
        let other_platform = authorized(
            &f,
            &headers(&[
                ("license-key", "TESTONE1234"),
                ("platform", "WEB"),
                ("authorization", &token),
            ]),
            now,
        );
        assert_eq!(
            field(other_platform.unwrap_err()),
            (401, "Authorization".into())
        );
    }

    #[test]
    fn another_user_is_forbidden() {
        let a = Authorized {
            tenant: "kwegg".into(),
            platform: "RAW".into(),
            user_id: "12".into(),
        };
        assert!(a.same_user("userId", None).is_ok());
        assert!(a.same_user("userId", Some("12")).is_ok());
        assert_eq!(
            field(a.same_user("userId", Some("13")).unwrap_err()),
            (403, "userId".into())
        );
    }
}
