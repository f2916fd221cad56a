//! Secrets hidden for display (`questline config`, error messages): librdkafka's passwords,
//! keys and tokens, the sidecar's client secrets, the image bucket's secret key, the Kwegg
//! facade's token secret and license keys, the KickApps sites' admin tokens.
//!
//! librdkafka's properties are free-form, so a property is taken for a secret by its name;
//! the list errs on the side of hiding (a hidden value that was not secret costs a look at
//! the file, a shown secret costs a rotation).

use super::Settings;

/// What a secret's value is shown as.
pub const REDACTED: &str = "<redacted>";

/// Name fragments of librdkafka properties that hold secrets or could: `sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`, `ssl.key.pem`,
/// `sasl.oauthbearer.client.secret`, `sasl.oauthbearer.config` (a JWT's claims and, in some
/// setups, credentials), `sasl.oauthbearer.assertion.private.key.passphrase`,
/// `sasl.oauthbearer.assertion.private.key.pem`, …
const SECRET_FRAGMENTS: [&str; 8] = [
    "password",
    "secret",
    "passphrase",
    "key.pem",
    "private.key",
    "token",
    "credential",
    "oauthbearer.config",
];

/// Whether a librdkafka property holds a secret.
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FRAGMENTS.iter().any(|f| name.contains(f)) || name.ends_with("jaas.config")
}

/// `settings` with every secret replaced by [`REDACTED`].
pub fn redacted(settings: &Settings) -> Settings {
    let mut s = settings.clone();
    for (name, value) in s.kafka.properties.iter_mut() {
        if is_secret_property(name) {
            *value = REDACTED.to_string();
        }
    }
    for secret in s.http.auth.clients.values_mut() {
        *secret = REDACTED.to_string();
    }
    if let Some(s3) = s.http.images.s3.as_mut() {
        s3.secret_key = REDACTED.to_string();
    }
    if !s.kwegg.secret.is_empty() {
        s.kwegg.secret = REDACTED.to_string();
    }
    for site in s.kickapps.sites.values_mut() {
        for token in &mut site.admin_tokens {
            *token = REDACTED.to_string();
        }
    }
    // A license key is the credential itself (the map's key): shown as a numbered placeholder,
    // with the tenant it maps to.
    s.kwegg.license_keys = s
        .kwegg
        .license_keys
        .values()
        .enumerate()
        .map(|(i, tenant)| (format!("{REDACTED}-{}", i + 1), tenant.clone()))
        .collect();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::S3Settings;
    use std::collections::BTreeMap;

    #[test]
    fn secret_properties_are_known_by_name() {
        for name in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "ssl.key.pem",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.oauthbearer.assertion.private.key.passphrase",
            "sasl.oauthbearer.assertion.private.key.pem",
            "sasl.jaas.config",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret_property(name), "{name}");
        }
        for name in [
            "sasl.username",
            "sasl.mechanisms",
            "security.protocol",
            "ssl.key.location",
            "ssl.ca.location",
            "group.instance.id",
            "fetch.wait.max.ms",
            "client.id",
        ] {
            assert!(!is_secret_property(name), "{name}");
        }
    }

    #[test]
    fn every_secret_is_redacted_and_nothing_else() {
        let mut s = Settings::default();
        s.kafka.properties.extend([
            ("sasl.username".to_string(), "questline".to_string()),
            ("sasl.password".to_string(), "kafka-pw".to_string()),
            ("ssl.key.password".to_string(), "key-pw".to_string()),
        ]);
        s.http
            .auth
            .clients
            .insert("MyApp".into(), "client-secret".into());
        s.http.images.s3 = Some(S3Settings {
            access_key: "AKIA".into(),
            secret_key: "s3-secret".into(),
            ..S3Settings::default()
        });
        s.kwegg.secret = "kwegg-token-secret".into();
        s.kwegg
            .license_keys
            .insert("LICENSE-KEY-1".into(), "kwegg".into());
        s.kickapps.sites.insert(
            "8001".into(),
            crate::settings::KickappsSite {
                tenant: "default".into(),
                admin_tokens: vec!["kick-admin-1".into(), "kick-admin-2".into()],
            },
        );
        let r = redacted(&s);
        assert_eq!(
            r.kickapps.sites["8001"].admin_tokens,
            [REDACTED, REDACTED],
            "each token hidden, their number kept"
        );
        assert_eq!(r.kickapps.sites["8001"].tenant, "default");
        assert_eq!(r.kwegg.secret, REDACTED);
        assert_eq!(
            r.kwegg.license_keys,
            BTreeMap::from([(format!("{REDACTED}-1"), "kwegg".to_string())])
        );
        assert_eq!(r.kafka.properties["sasl.username"], "questline");
        assert_eq!(r.kafka.properties["sasl.password"], REDACTED);
        assert_eq!(r.kafka.properties["ssl.key.password"], REDACTED);
        assert_eq!(r.http.auth.clients["MyApp"], REDACTED);
        let s3 = r.http.images.s3.as_ref().unwrap();
        assert_eq!(s3.secret_key, REDACTED);
        assert_eq!(s3.access_key, "AKIA");
        // Nothing else changed.
        let mut back = r.clone();
        back.kafka.properties = s.kafka.properties.clone();
        back.http.auth.clients = s.http.auth.clients.clone();
        back.http.images.s3 = s.http.images.s3.clone();
        back.kwegg = s.kwegg.clone();
        back.kickapps.sites = s.kickapps.sites.clone();
        assert_eq!(back, s);
        let text = toml::to_string(&r).unwrap();
        for secret in [
            "kafka-pw",
            "key-pw",
            "client-secret",
            "s3-secret",
            "kwegg-token-secret",
            "LICENSE-KEY-1",
            "kick-admin-1",
            "kick-admin-2",
        ] {
            assert!(!text.contains(secret), "{secret} in\n{text}");
        }
    }
}
