//! The KickApps sites' configuration, checked once at startup against the catalog.
//!
//! `[kickapps.sites."<as>"]` (docs/configuration.md) maps a site id to its tenant and lists the
//! admin (webmaster / moderator) tokens of the site. [`Sites::new`] refuses what cannot work —
//! a tenant the catalog does not have, a blank token, one token listed for two sites (a call
//! with it could not say which site's admin it is) — so a misconfigured sidecar fails to start
//! instead of answering errors.
//!
//! Tokens are kept as SHA-256 digests and looked up by digest, like the Kwegg license keys: a
//! lookup's timing says nothing about the tokens, and they are not kept in memory in the clear.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

use crate::core::catalog::Catalog;
use crate::settings::{KickappsSettings, KickappsSite};

/// The demo's site id (`questline demo`).
pub const DEMO_SITE: &str = "8001";
/// The demo site's admin token.
pub const DEMO_ADMIN_TOKEN: &str = "demo-admin-token";
/// The demo site's tenant: the example catalog's KickApps triggers (`post_comment`).
pub const DEMO_TENANT: &str = "default";
/// The longest site id accepted (it is a path segment and a label in messages).
pub const MAX_SITE_LEN: usize = 64;

/// The `[kickapps]` settings `questline demo` runs with: one site with one admin token, and
/// CORS for any origin so a page served elsewhere can try the calls.
pub fn demo_settings() -> KickappsSettings {
    KickappsSettings {
        sites: BTreeMap::from([(
            DEMO_SITE.to_string(),
            KickappsSite {
                tenant: DEMO_TENANT.into(),
                admin_tokens: vec![DEMO_ADMIN_TOKEN.into()],
            },
        )]),
        cors_origins: vec!["*".into()],
    }
}

/// What an admin token says about a call to a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck<'a> {
    /// An admin of this site: the site's tenant.
    Admin { tenant: &'a str },
    /// A valid admin token, of another site.
    OtherSite,
    /// Not an admin token of any site.
    Unknown,
}

/// The checked sites.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    /// SHA-256 of an admin token → its site.
    tokens: HashMap<[u8; 32], String>,
    /// Site id → tenant.
    tenants: BTreeMap<String, String>,
    cors_origins: Vec<String>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sites {
    /// Checks `settings` against the catalog; every problem, each naming its key.
    pub fn new(settings: &KickappsSettings, catalog: &Catalog) -> Result<Sites, String> {
        let mut problems = Vec::new();
        let mut tokens: HashMap<[u8; 32], String> = HashMap::new();
        let mut tenants = BTreeMap::new();
        for (site, config) in &settings.sites {
            let at = format!("kickapps.sites.\"{site}\"");
            if site.is_empty()
                || site.len() > MAX_SITE_LEN
                || !site
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                problems.push(format!(
                    "{at}: a site id must be 1–{MAX_SITE_LEN} of A-Z a-z 0-9 . _ -"
                ));
            }
            if catalog.tenant(&config.tenant).is_none() {
                problems.push(format!(
                    "{at}.tenant: '{}' is not a tenant of the catalog",
                    config.tenant
                ));
            }
            if config.admin_tokens.is_empty() {
                problems.push(format!(
                    "{at}.admin_tokens: list at least one token, or leave the site out"
                ));
            }
            for (i, token) in config.admin_tokens.iter().enumerate() {
                if token.trim().is_empty() || token.trim() != token {
                    problems.push(format!(
                        "{at}.admin_tokens[{i}]: a token must not be blank or start or end with spaces"
                    ));
                    continue;
                }
                if let Some(other) = tokens.insert(digest(token), site.clone()) {
                    if other != *site {
                        problems.push(format!(
                            "{at}.admin_tokens[{i}]: the same token is an admin token of site '{other}'; give each site its own"
                        ));
                    }
                }
            }
            tenants.insert(site.clone(), config.tenant.clone());
        }
        for (i, origin) in settings.cors_origins.iter().enumerate() {
            let valid = origin == "*"
                || origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"))
                    .is_some_and(|host| {
                        !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
                    });
            if !valid {
                problems.push(format!(
                    "kickapps.cors_origins[{i}]: '{origin}' is not an origin (scheme://host[:port], no path) or \"*\""
                ));
            }
        }
        if settings.cors_origins.len() > 1 && settings.cors_origins.iter().any(|o| o == "*") {
            problems.push(
                "kickapps.cors_origins: \"*\" allows every origin; list it alone".to_string(),
            );
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Sites {
            tokens,
            tenants,
            cors_origins: settings.cors_origins.clone(),
        })
    }

    /// What `token` may do on `site`.
    pub fn check(&self, site: &str, token: &str) -> TokenCheck<'_> {
        match self.tokens.get(&digest(token)) {
            None => TokenCheck::Unknown,
            Some(of) if of == site => match self.tenants.get(site) {
                Some(tenant) => TokenCheck::Admin { tenant },
                None => TokenCheck::Unknown,
            },
            Some(_) => TokenCheck::OtherSite,
        }
    }

    /// The origins CORS allows (`*` for any); empty when CORS is off.
    pub fn cors_origins(&self) -> &[String] {
        &self.cors_origins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::from_sources(&[("c.toml", "[[triggers]]\nid = 1\nname = \"t\"\n")]).unwrap()
    }

    fn site(tenant: &str, tokens: &[&str]) -> KickappsSite {
        KickappsSite {
            tenant: tenant.into(),
            admin_tokens: tokens.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn the_demo_settings_are_valid_and_tokens_belong_to_their_site() {
        let sites = Sites::new(&demo_settings(), &catalog()).unwrap();
        assert_eq!(
            sites.check(DEMO_SITE, DEMO_ADMIN_TOKEN),
            TokenCheck::Admin {
                tenant: DEMO_TENANT
            }
        );
        assert_eq!(sites.check(DEMO_SITE, "nope"), TokenCheck::Unknown);
        assert_eq!(sites.check(DEMO_SITE, ""), TokenCheck::Unknown);
        assert_eq!(
            sites.check(DEMO_SITE, &DEMO_ADMIN_TOKEN.to_uppercase()),
            TokenCheck::Unknown
        );
        // A token of the demo site used on another (even an unconfigured) site.
        assert_eq!(sites.check("9002", DEMO_ADMIN_TOKEN), TokenCheck::OtherSite);
    }

    #[test]
    fn off_by_default() {
        let sites = Sites::new(&KickappsSettings::default(), &catalog()).unwrap();
        assert_eq!(
            sites.check(DEMO_SITE, DEMO_ADMIN_TOKEN),
            TokenCheck::Unknown
        );
        assert!(sites.cors_origins().is_empty());
    }

    #[test]
    fn every_problem_names_its_key() {
        let settings = KickappsSettings {
            sites: BTreeMap::from([
                ("8001".to_string(), site("nowhere", &["a", " b"])),
                ("9002".to_string(), site("default", &["a"])),
                ("bad site".to_string(), site("default", &[])),
            ]),
            cors_origins: vec![
                "https://ok.example".into(),
                "ftp://x".into(),
                "https://x/path".into(),
                "*".into(),
            ],
        };
        let err = Sites::new(&settings, &catalog()).unwrap_err();
        for expected in [
            "kickapps.sites.\"8001\".tenant: 'nowhere'",
            "kickapps.sites.\"8001\".admin_tokens[1]",
            "kickapps.sites.\"9002\".admin_tokens[0]: the same token is an admin token of site '8001'",
            "kickapps.sites.\"bad site\": a site id",
            "kickapps.sites.\"bad site\".admin_tokens: list at least one",
            "kickapps.cors_origins[1]",
            "kickapps.cors_origins[2]",
            "list it alone",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
        assert!(!err.contains("cors_origins[0]"), "{err}");
    }
}
