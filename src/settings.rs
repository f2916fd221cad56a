//! Settings: embedded defaults → the `--config` TOML file → `QUESTLINE__…` environment.
//!
//! Keys and defaults are documented in docs/configuration.md. Unknown keys are an error; a bad file fails at
//! startup with its path and line (the file is checked with `toml` first, which knows
//! lines, then layered with the environment by the `config` crate).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub catalog: CatalogSettings,
    pub mappings: MappingSettings,
    pub store: StoreSettings,
    pub http: HttpSettings,
    pub pipeline: PipelineSettings,
    pub amounts: AmountSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    /// Passed to librdkafka as they are (consumer and producer).
    pub properties: BTreeMap<String, String>,
    /// Create missing topics at startup with these settings.
    pub create_topics: bool,
    pub partitions: i32,
    pub replication_factor: i32,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            group_id: "questline".into(),
            properties: BTreeMap::new(),
            create_topics: true,
            partitions: 4,
            replication_factor: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topics {
    pub progress: String,
    pub rewards: String,
    pub dead_letter: String,
    pub commands: String,
    /// Internal: user stage → inventory stage (keyed by resource).
    pub inventory_requests: String,
    /// Internal: inventory stage → user stage (keyed by user).
    pub inventory_responses: String,
    /// Internal: user stage → amount stage, programmatic events' calls (keyed by user).
    pub amount_requests: String,
    /// Internal: amount stage → user stage, the recorded amounts (keyed by user).
    pub amount_responses: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            progress: "questline.progress".into(),
            rewards: "questline.rewards".into(),
            dead_letter: "questline.dead-letter".into(),
            commands: "questline.commands".into(),
            inventory_requests: "questline.inventory-requests".into(),
            inventory_responses: "questline.inventory-responses".into(),
            amount_requests: "questline.amount-requests".into(),
            amount_responses: "questline.amount-responses".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    pub path: PathBuf,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            path: "examples/catalog".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MappingSettings {
    pub dir: PathBuf,
}

impl Default for MappingSettings {
    fn default() -> Self {
        MappingSettings {
            dir: "mappings".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    #[default]
    Embedded,
    Scylla,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    pub path: PathBuf,
    /// The embedded store's page cache, in MiB: what bounds its memory.
    pub cache_mb: usize,
    pub scylla: ScyllaSettings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Embedded,
            path: "./questline-data".into(),
            cache_mb: crate::store::embedded::DEFAULT_CACHE_BYTES >> 20,
            scylla: ScyllaSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScyllaSettings {
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// `local_quorum` (default), `quorum`, `one`, `local_one`, `all`.
    pub consistency: String,
    pub replication_factor: u32,
}

impl Default for ScyllaSettings {
    fn default() -> Self {
        ScyllaSettings {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "questline".into(),
            consistency: "local_quorum".into(),
            replication_factor: 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: String,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// Client authentication (`X-ClientId` + `X-Message`); off when no clients are listed.
    pub auth: AuthSettings,
    /// How catalog image keys become URLs.
    pub images: ImageSettings,
}

/// Image URLs: keys as they are (default), joined to `base_url`, or presigned from a private
/// S3-compatible bucket when `s3` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    pub base_url: Option<String>,
    pub s3: Option<S3Settings>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    #[serde(default)]
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
    #[serde(default = "default_expiry")]
    pub expires_seconds: u64,
}

fn default_expiry() -> u64 {
    3600
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            auth: AuthSettings::default(),
            images: ImageSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Client id → shared secret.
    pub clients: BTreeMap<String, String>,
    /// How old (or how far in the future) a signed timestamp may be.
    pub max_skew_seconds: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            clients: BTreeMap::new(),
            max_skew_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Most records per batch and partition.
    pub batch_size: usize,
    /// How long a batch waits to fill, in milliseconds.
    pub linger_ms: u64,
    /// Users kept in memory per partition (least recently used are evicted).
    pub cache_users: usize,
    /// Backoff bounds when the store or the broker fails (milliseconds).
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            batch_size: 500,
            linger_ms: 5,
            cache_users: 100_000,
            retry_min_ms: 50,
            retry_max_ms: 5_000,
        }
    }
}

/// The amount stage's HTTP caller, which asks programmatic events' endpoints what an
/// occurrence pays (docs/catalog.md, "Programmatic events"). Each call's own timeout is the
/// event's `timeout` in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmountSettings {
    /// Most calls in flight at once, over every partition and endpoint.
    pub concurrency: usize,
    /// Tries after the first when a call times out, cannot connect, or gets a 5xx or 429.
    pub retries: u32,
    /// Backoff before a retry, doubling from min to max, with jitter (milliseconds).
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Consecutive failed calls to one endpoint that open its circuit breaker (0: never).
    pub breaker_threshold: u32,
    /// How long an open breaker pays the fallback without calling, before a trial call
    /// (milliseconds).
    pub breaker_cool_down_ms: u64,
}

impl Default for AmountSettings {
    fn default() -> Self {
        AmountSettings {
            concurrency: 32,
            retries: 2,
            backoff_min_ms: 100,
            backoff_max_ms: 2_000,
            breaker_threshold: 5,
            breaker_cool_down_ms: 30_000,
        }
    }
}

/// A configuration problem: where and what.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl Settings {
    /// Loads defaults, then `file` (when given), then the `QUESTLINE__` environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut builder = config::Config::builder().add_source(
            config::Config::try_from(&Settings::default())
                .map_err(|e| SettingsError(e.to_string()))?,
        );
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SettingsError(format!("{}: {e}", path.display())))?;
            // First with `toml` alone, which reports lines, for errors in the file itself.
            toml::from_str::<Settings>(&text).map_err(|e| {
                let line = e
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                    .unwrap_or(0);
                SettingsError(format!("{}:{line}: {}", path.display(), e.message()))
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        builder = builder.add_source(
            config::Environment::with_prefix("QUESTLINE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("store.scylla.nodes"),
        );
        let merged = builder
            .build()
            .map_err(|e| SettingsError(format!("configuration: {e}")))?;
        merged.try_deserialize::<Settings>().map_err(|e| {
            SettingsError(format!(
                "configuration (file or QUESTLINE__ environment): {e}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contracts() {
        let s = Settings::default();
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(s.kafka.group_id, "questline");
        assert_eq!(s.topics.dead_letter, "questline.dead-letter");
        assert_eq!(s.store.kind, StoreKind::Embedded);
        assert_eq!(s.http.listen, "127.0.0.1:8080");
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_fail_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(&good, "[kafka]\nbrokers = \"10.0.0.1:9092\"\n[kafka.properties]\n\"fetch.wait.max.ms\" = \"20\"\n").unwrap();
        let s = Settings::load(Some(&good)).unwrap();
        assert_eq!(s.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(s.kafka.properties["fetch.wait.max.ms"], "20");
        assert_eq!(s.kafka.group_id, "questline");
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[kafka]\nbrokers = \"x\"\n\n[store]\nkindd = \"scylla\"\n",
        )
        .unwrap();
        let err = Settings::load(Some(&bad)).unwrap_err().to_string();
        assert!(err.contains("bad.toml:5"), "{err}");
        assert!(err.contains("kindd"), "{err}");
    }
}
