//! The Kwegg facade's configuration, checked once at startup against the catalog.
//!
//! `[kwegg]` (docs/configuration.md) lists license keys, each mapping to a tenant, the token
//! secret and lifetime, and the coins' reward type. [`Facade::new`] refuses what cannot work —
//! a key for a tenant the catalog does not have, a short secret, a coin type that is not
//! points — so a misconfigured sidecar fails to start instead of answering 500s. The offers
//! are not here: they are the tenant catalog's `[[offers]]`, read from the catalog in force on
//! every request, so they change with the catalog.
//!
//! License keys are kept as SHA-256 digests and looked up by digest: a lookup's timing says
//! nothing about the keys (only about digests, which cannot be steered), and the keys are not
//! kept in memory in the clear.

use chrono::TimeDelta;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

use crate::core::catalog::{Catalog, RewardKind};
use crate::settings::KweggSettings;

/// The demo's license key (`questline demo`): the seed's own example key, so the seed's curl
/// commands run against the demo as they are written.
pub const DEMO_LICENSE_KEY: &str = "TESTONE1234";
/// The tenant the demo's license key maps to (`examples/catalog/kwegg.toml`).
pub const DEMO_TENANT: &str = "kwegg";
/// The shortest accepted `kwegg.secret`, in bytes (the HMAC-SHA256 output size).
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest token lifetime accepted: 30 days.
pub const MAX_TTL_SECONDS: u64 = 30 * 86_400;

/// The `[kwegg]` settings `questline demo` runs with: the demo license key for the example
/// Kwegg tenant (whose catalog has the demo's offers), and a secret drawn for this process only.
pub fn demo_settings() -> KweggSettings {
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    KweggSettings {
        license_keys: BTreeMap::from([(DEMO_LICENSE_KEY.to_string(), DEMO_TENANT.to_string())]),
        secret,
        ..KweggSettings::default()
    }
}

/// The facade's checked configuration.
#[derive(Debug, Clone, Default)]
pub struct Facade {
    /// SHA-256 of a license key → its tenant.
    licenses: HashMap<[u8; 32], String>,
    secret: Vec<u8>,
    ttl: TimeDelta,
    reward_type: String,
    scan_limit: usize,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl Facade {
    /// Checks `settings` against the catalog; every problem, each naming its key.
    pub fn new(settings: &KweggSettings, catalog: &Catalog) -> Result<Facade, String> {
        let mut problems = Vec::new();
        let mut licenses = HashMap::new();
        for (key, tenant) in &settings.license_keys {
            if key.trim().is_empty() || key.trim() != key {
                problems.push(
                    "kwegg.license_keys: a key must not be blank or start or end with spaces"
                        .to_string(),
                );
            }
            match catalog.tenant(tenant) {
                None => problems.push(format!(
                    "kwegg.license_keys: a key maps to tenant '{tenant}', which the catalog does not have"
                )),
                Some(t) => match t.reward_type(&settings.reward_type) {
                    Some(rt) if rt.kind == RewardKind::Points => {}
                    Some(_) => problems.push(format!(
                        "kwegg.reward_type: '{}' of tenant '{tenant}' is not of kind \"points\"",
                        settings.reward_type
                    )),
                    None => problems.push(format!(
                        "kwegg.reward_type: tenant '{tenant}' has no reward type '{}'",
                        settings.reward_type
                    )),
                },
            }
            licenses.insert(digest(key), tenant.clone());
        }
        if !licenses.is_empty() && settings.secret.len() < MIN_SECRET_BYTES {
            problems.push(format!(
                "kwegg.secret: at least {MIN_SECRET_BYTES} bytes are needed to sign access tokens (e.g. `openssl rand -hex 32`)"
            ));
        }
        if !(60..=MAX_TTL_SECONDS).contains(&settings.token_ttl_seconds) {
            problems.push(format!(
                "kwegg.token_ttl_seconds: must be from 60 to {MAX_TTL_SECONDS}, got {}",
                settings.token_ttl_seconds
            ));
        }
        if settings.transactions_scan_limit == 0 {
            problems.push("kwegg.transactions_scan_limit: must be at least 1".to_string());
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(Facade {
            licenses,
            secret: settings.secret.as_bytes().to_vec(),
            ttl: TimeDelta::seconds(i64::try_from(settings.token_ttl_seconds).unwrap_or(86_400)),
            reward_type: settings.reward_type.clone(),
            scan_limit: settings.transactions_scan_limit,
        })
    }

    /// The tenant a license key belongs to.
    pub fn tenant_of(&self, license_key: &str) -> Option<&str> {
        self.licenses.get(&digest(license_key)).map(String::as_str)
    }

    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    pub fn ttl(&self) -> TimeDelta {
        self.ttl
    }

    /// The reward type whose balance is the coins.
    pub fn reward_type(&self) -> &str {
        &self.reward_type
    }

    /// Most history entries read for one transactions page.
    pub fn scan_limit(&self) -> usize {
        self.scan_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let kwegg = include_str!("../../../examples/catalog/kwegg.toml");
        Catalog::from_sources(&[("kwegg.toml", kwegg)]).unwrap()
    }

    #[test]
    fn the_demo_settings_are_valid_and_map_the_seeds_key() {
        let facade = Facade::new(&demo_settings(), &catalog()).unwrap();
        assert_eq!(facade.tenant_of(DEMO_LICENSE_KEY), Some(DEMO_TENANT));
        assert_eq!(facade.tenant_of("testone1234"), None);
        assert_eq!(facade.tenant_of(""), None);
        assert_ne!(demo_settings().secret, demo_settings().secret);
    }

    #[test]
    fn the_default_is_off_and_valid() {
        let facade = Facade::new(&KweggSettings::default(), &catalog()).unwrap();
        assert_eq!(facade.tenant_of(DEMO_LICENSE_KEY), None);
    }

    #[test]
    fn every_problem_names_its_key() {
        let mut s = demo_settings();
        s.secret = "short".into();
        s.license_keys.insert("K2".into(), "nowhere".into());
        s.token_ttl_seconds = 5;
        let err = Facade::new(&s, &catalog()).unwrap_err();
        for expected in [
            "kwegg.secret",
            "tenant 'nowhere'",
            "kwegg.token_ttl_seconds",
        ] {
            assert!(err.contains(expected), "{expected} not in {err}");
        }
        let mut s = demo_settings();
        s.reward_type = "coins".into();
        let err = Facade::new(&s, &catalog()).unwrap_err();
        assert!(err.contains("kwegg.reward_type"), "{err}");
    }
}
