//! Who may call a site's admin methods: the `t` parameter, a webmaster / moderator token of
//! the site (`kickapps.sites."<as>".admin_tokens`).
//!
//! Checked before anything else, so a caller without a valid token learns nothing about the
//! other parameters: missing → 44, not an admin token of any site → 1, an admin token of
//! another site → 18 (the seed's "insufficient user permissions for this operation"). A site
//! the configuration does not list has no admins: any token is 1 or 18 there.

use super::answer::{codes, KickError};
use super::config::{Sites, TokenCheck};
use super::params::Params;
use crate::http::request::clip;

/// The tenant of `site` when `params` carry one of its admin tokens.
pub fn admin<'a>(sites: &'a Sites, site: &str, params: &Params) -> Result<&'a str, KickError> {
    let Some(token) = params.text("t")? else {
        return Err(KickError::new(
            codes::TOKEN_REQUIRED,
            "t: is required (a webmaster or moderator token of the site)",
        ));
    };
    match sites.check(site, &token) {
        TokenCheck::Admin { tenant } => Ok(tenant),
        TokenCheck::OtherSite => Err(KickError::new(
            codes::NOT_PERMITTED,
            format!("t: not an admin token of site '{}'", clip(site)),
        )),
        TokenCheck::Unknown => Err(KickError::new(
            codes::INVALID_TOKEN,
            "t: not a valid admin token",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Catalog;
    use crate::http::kickapps::config::{demo_settings, DEMO_ADMIN_TOKEN, DEMO_SITE};
    use axum::http::HeaderMap;

    fn code(site: &str, query: &str) -> Result<String, u16> {
        let catalog =
            Catalog::from_sources(&[("c.toml", "[[triggers]]\nid = 1\nname = \"t\"\n")]).unwrap();
        let sites = Sites::new(&demo_settings(), &catalog).unwrap();
        let params = Params::read(Some(query), &HeaderMap::new(), b"").unwrap();
        admin(&sites, site, &params)
            .map(str::to_string)
            .map_err(|e| e.code)
    }

    #[test]
    fn missing_invalid_and_foreign_tokens_have_their_codes() {
        let good = format!("t={DEMO_ADMIN_TOKEN}");
        assert_eq!(code(DEMO_SITE, &good), Ok("default".to_string()));
        assert_eq!(code(DEMO_SITE, ""), Err(44));
        assert_eq!(code(DEMO_SITE, "t="), Err(44));
        assert_eq!(code(DEMO_SITE, "t=%20"), Err(44));
        assert_eq!(code(DEMO_SITE, "t=wrong"), Err(1));
        assert_eq!(code("9002", &good), Err(18));
        assert_eq!(code("9002", "t=wrong"), Err(1));
    }
}
