//! Settings: built-in defaults → the `--config` TOML files, in order → the environment;
//! then refused if a value makes no sense.
//!
//! Keys and defaults are documented in docs/configuration.md. Every error names where it
//! is: a file's problems their file and line (each file is read by `toml` alone first, which
//! knows lines), the environment's the variable, a refused value its key and where that key
//! was set. The parts, one concern each:
//!
//! - [`env`]: which variables are settings, and the key each one sets;
//! - [`layers`]: the files and the environment merged, and where each key came from;
//! - [`validate`]: the values that parse but cannot work;
//! - [`redact`]: secrets hidden for display (`questline config`).

mod env;
mod key;
mod layers;
mod redact;
mod validate;

pub use env::property_name;
pub use key::KeyPath;
pub use redact::{is_secret_property, REDACTED};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
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
    pub kwegg: KweggSettings,
    pub amounts: AmountSettings,
    pub kickapps: KickappsSettings,
    pub telemetry: TelemetrySettings,
}

/// librdkafka's `queued.max.messages.kbytes` as questline sets it: what the consumer
/// prefetches, over all partitions. A few batches' worth of ~200-byte actions (a batch of
/// 2,000 is ~0.4 MiB), and more than `fetch.max.bytes` needs (librdkafka lowers it to this).
pub const CONSUMER_QUEUE_KBYTES: &str = "16384";

/// librdkafka's `queue.buffering.max.kbytes` as questline sets it: records produced and not yet
/// acknowledged. The worker produces one batch's events at a time and waits for them.
pub const PRODUCER_QUEUE_KBYTES: &str = "65536";

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
    /// Replicas of the topics questline creates; `-1` (the default) asks for the broker's
    /// `default.replication.factor`, which a managed cluster sets right (3 on most) and a
    /// one-broker development cluster sets to 1. Needs Kafka 2.4 or later (KIP-464).
    pub replication_factor: i32,
    /// How long the brokers may be unreachable before the process reports itself not ready
    /// (`/readyz` 503): long enough that a broker restart or a leader move does not take the
    /// pods out of service, short enough that an outage shows.
    pub unreachable_grace_ms: u64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            brokers: "127.0.0.1:9092".into(),
            group_id: "questline".into(),
            properties: BTreeMap::new(),
            create_topics: true,
            partitions: 4,
            replication_factor: -1,
            unreachable_grace_ms: 10_000,
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
    /// The catalog log: one partition, compacted, every version of every tenant's catalog.
    pub catalog: String,
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
            catalog: "questline.catalog".into(),
        }
    }
}

impl Topics {
    /// The topics a deployment owns and nobody else should read or write — the commands, the
    /// internal stages' requests and responses, the catalog log — with the key that names
    /// each and the suffix after the group id.
    pub const OWNED: [(&'static str, &'static str); 6] = [
        ("commands", "commands"),
        ("inventory_requests", "inventory-requests"),
        ("inventory_responses", "inventory-responses"),
        ("amount_requests", "amount-requests"),
        ("amount_responses", "amount-responses"),
        ("catalog", "catalog"),
    ];

    /// The owned topics' fields, in the order of [`Topics::OWNED`].
    fn owned_mut(&mut self) -> [&mut String; 6] {
        [
            &mut self.commands,
            &mut self.inventory_requests,
            &mut self.inventory_responses,
            &mut self.amount_requests,
            &mut self.amount_responses,
            &mut self.catalog,
        ]
    }

    /// Names each owned topic that `is_set` says the configuration leaves unnamed
    /// `<group>.<suffix>` (`questline.commands` for the default group): two deployments on one
    /// cluster, with their own group ids, then never read each other's commands, internal
    /// records or catalog versions, as Kafka Streams prefixes its internal topics with the
    /// application id. The outputs keep their names: other teams consume them.
    pub fn name_owned_by_group(&mut self, group: &str, is_set: impl Fn(&str) -> bool) {
        for ((key, suffix), topic) in Self::OWNED.into_iter().zip(self.owned_mut()) {
            if !is_set(key) {
                *topic = format!("{group}.{suffix}");
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// The files every process starts with: each tenant's version 0.
    pub path: PathBuf,
    /// Whether to follow the catalog log (`topics.catalog`) for later versions.
    pub follow_log: bool,
    /// How long after it is published a version takes effect: how far ahead of a worker's
    /// clock a record may be stamped and still be evaluated exactly as replay would.
    pub activation_delay_seconds: u64,
    /// How often every process reads the catalog log for new versions.
    pub refresh_ms: u64,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            path: "examples/catalog".into(),
            follow_log: true,
            activation_delay_seconds: 5,
            refresh_ms: 1000,
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
    /// The embedded store's journal: rows held in memory before a checkpoint writes them into
    /// the database, in MiB. Up to twice this is held (one overlay being checkpointed while
    /// the next fills).
    pub journal_mb: usize,
    /// Whether the embedded store writes its journal around the OS's page cache (`O_DIRECT`)
    /// where the file system allows it: a batch is then handed to the disk from the store's
    /// own buffer instead of being copied into the page cache first.
    pub direct_journal: bool,
    /// Whether the embedded store's checkpoint thread runs under Linux's idle scheduling
    /// policy (`SCHED_IDLE`): it then uses only the CPU time no other thread wants, so its work
    /// every few seconds stops slowing the record step and the publishing. Turn it off where
    /// other processes keep the machine's cores busy, or the checkpoint can starve and writes
    /// wait for it.
    pub idle_checkpoint: bool,
    /// How long a worker on the embedded store may share its consumer group with another
    /// member before it stops (a restarted worker shares it with its former self until the
    /// broker drops the old session).
    pub exclusive_grace_seconds: u64,
    pub scylla: ScyllaSettings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Embedded,
            path: "./questline-data".into(),
            cache_mb: crate::store::embedded::DEFAULT_CACHE_BYTES >> 20,
            journal_mb: crate::store::embedded::DEFAULT_CHECKPOINT_BYTES >> 20,
            direct_journal: true,
            idle_checkpoint: true,
            exclusive_grace_seconds: 60,
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
    /// Partitions whose replicas are the same nodes written in one unlogged CQL batch (see
    /// `store::cql_batches`); 1 writes each partition in a batch of its own.
    pub partitions_per_batch: usize,
}

impl Default for ScyllaSettings {
    fn default() -> Self {
        ScyllaSettings {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "questline".into(),
            consistency: "local_quorum".into(),
            replication_factor: 1,
            partitions_per_batch: crate::store::scylla::DEFAULT_PARTITIONS_PER_BATCH,
        }
    }
}

/// Span export (docs/operations.md, "Tracing"). Trace context headers are carried whether
/// or not spans are exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The OTLP/HTTP collector's base URL (`http://collector:4318`); spans go to its
    /// `/v1/traces`. Empty: no export, unless `OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set.
    pub otlp_endpoint: String,
    /// How spans are encoded on the wire.
    pub otlp_protocol: OtlpProtocol,
    /// The `service.name` of the exported spans; `OTEL_SERVICE_NAME` wins when set.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            otlp_endpoint: String::new(),
            otlp_protocol: OtlpProtocol::HttpProtobuf,
            service_name: "questline".into(),
        }
    }
}

/// OTLP over HTTP, in the names `OTEL_EXPORTER_OTLP_PROTOCOL` uses (gRPC is not built in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// Protobuf, the OTLP default.
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    #[serde(rename = "http/json")]
    HttpJson,
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
    /// Seconds a connection has to send a whole request head, counted from when it opened or
    /// its previous response was sent; then it is closed.
    pub header_timeout_seconds: u64,
    /// Seconds a request body has to arrive in full once the sidecar reads it; then 408.
    pub body_timeout_seconds: u64,
    /// Seconds a connection is kept open after a response, waiting for its next request.
    pub keep_alive_seconds: u64,
    /// Most connections open at once; a new one beyond takes the longest-idle one's place.
    pub max_connections: usize,
}

/// Image URLs: keys as they are (default), joined to `base_url`, or presigned from a private
/// S3-compatible bucket when `s3` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageSettings {
    pub base_url: Option<String>,
    pub s3: Option<S3Settings>,
}

/// Every key defaults, so a later file or a variable can set one key of a bucket an earlier
/// file describes; the required ones are checked once all layers are merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub path_style: bool,
    pub access_key: String,
    pub secret_key: String,
    pub expires_seconds: u64,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            endpoint: String::new(),
            bucket: String::new(),
            region: String::new(),
            path_style: false,
            access_key: String::new(),
            secret_key: String::new(),
            expires_seconds: 3600,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            auth: AuthSettings::default(),
            images: ImageSettings::default(),
            header_timeout_seconds: 10,
            body_timeout_seconds: 10,
            keep_alive_seconds: 5,
            max_connections: 512,
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
    /// The clients (ids of `clients`) that may call the admin API (`/admin/*`).
    pub admin_clients: Vec<String>,
    /// With clients listed: `false` (default) refuses unsigned requests; `true` lets a request
    /// without `X-ClientId` through unauthenticated (signed ones are still checked), so that
    /// only the endpoints that need a client's identity (`POST /int/reward`) require one.
    pub optional: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            clients: BTreeMap::new(),
            max_skew_seconds: 300,
            admin_clients: Vec::new(),
            optional: false,
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
    /// Memory for the users kept in memory, in MiB, over all the partitions a worker owns
    /// (each gets an equal share); estimated from each user's stored row
    /// (docs/operations.md, "Sizing"). With `cache_users`, whichever is reached first.
    pub cache_mb: usize,
    /// Backoff bounds when the store or the broker fails (milliseconds).
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// Whether a batch may be written while the batch before it is being acknowledged, when
    /// that is the longer part of the cycle (`pipeline::write_ahead`): lower latency at low
    /// and medium rates; off, every batch is written at the next poll.
    pub write_ahead: bool,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            batch_size: 500,
            linger_ms: 5,
            cache_users: 100_000,
            cache_mb: 64,
            retry_min_ms: 50,
            retry_max_ms: 5_000,
            write_ahead: true,
        }
    }
}

/// The Kwegg API facade of the sidecar (docs/http-api.md, "Kwegg API"). Off until a license
/// key is listed: every login is then refused as an unknown `License-Key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KweggSettings {
    /// License key → tenant: what a tenant's clients send as `License-Key`.
    pub license_keys: BTreeMap<String, String>,
    /// Signs the access tokens (HMAC-SHA256); at least 32 bytes once a license key is listed.
    /// Every sidecar of a deployment needs the same one.
    pub secret: String,
    /// How long an access token is accepted after the login that issued it.
    pub token_ttl_seconds: u64,
    /// The reward type whose balance is the user's coins (balance, transactions, offers).
    pub reward_type: String,
    /// Most history entries read to list a user's transactions (newest first).
    pub transactions_scan_limit: usize,
    /// Retired: offers are the tenant catalog's `[[offers]]`. Setting it stops the start
    /// with a message that says so, instead of offers silently not being listed.
    #[serde(skip_serializing)]
    pub offers: OffersMoved,
}

impl Default for KweggSettings {
    fn default() -> Self {
        KweggSettings {
            license_keys: BTreeMap::new(),
            secret: String::new(),
            token_ttl_seconds: 86_400,
            reward_type: "points".into(),
            transactions_scan_limit: 10_000,
            offers: OffersMoved,
        }
    }
}

/// KickApps' AddUserAction on the sidecar (docs/http-api.md, "KickApps AddUserAction"). Off
/// until a site is listed: every call is then refused as an invalid token.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KickappsSettings {
    /// Site id (the `{as}` of the paths) → its tenant and admin tokens.
    pub sites: BTreeMap<String, KickappsSite>,
    /// Origins whose pages may call the KickApps routes from a browser (CORS); `*` for any.
    /// Empty: no CORS headers, so only same-origin pages and servers can read the answers.
    pub cors_origins: Vec<String>,
}

/// One KickApps site (an affiliate's community).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KickappsSite {
    /// The catalog tenant whose triggers the site's actions count toward.
    pub tenant: String,
    /// The webmaster / moderator tokens (`t`) that may call the site's admin methods. In the
    /// environment, one variable with the tokens separated by commas.
    #[serde(deserialize_with = "list_or_commas")]
    pub admin_tokens: Vec<String>,
}

impl Default for KickappsSite {
    fn default() -> Self {
        KickappsSite {
            tenant: crate::core::model::DEFAULT_TENANT.into(),
            admin_tokens: Vec::new(),
        }
    }
}

/// A list of strings, or one string of comma-separated items (how the environment gives a
/// list whose key the defaults cannot type: a site id is the operator's).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(d)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
    })
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

/// What the retired `kwegg.offers` holds: nothing, since no value is accepted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffersMoved;

/// Where the offers went, as a file or variable that still sets `kwegg.offers` is told.
pub const OFFERS_MOVED: &str =
    "kwegg.offers: offers moved to the tenant catalog's [[offers]] tables (see docs/catalog.md)";

impl<'de> Deserialize<'de> for OffersMoved {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(OFFERS_MOVED))
    }
}

/// A configuration problem: where and what.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

impl Settings {
    /// Loads the defaults, then `files` in order (a later one wins), then the process's
    /// environment; refuses values that make no sense.
    pub fn load(files: &[impl AsRef<Path>]) -> Result<Settings, SettingsError> {
        Settings::load_from(files, std::env::vars_os())
    }

    /// [`Settings::load`] with the environment given, not read from the process.
    pub fn load_from(
        files: &[impl AsRef<Path>],
        environment: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Settings, SettingsError> {
        let mut layers = layers::Layers::default();
        for file in files {
            layers.add_file(file.as_ref())?;
        }
        layers.add_env(env::settings_from_env(environment)?)?;
        let mut settings = layers.settings()?;
        let group = settings.kafka.group_id.clone();
        settings.topics.name_owned_by_group(&group, |key| {
            layers.origin(&KeyPath::new(["topics", key])).is_some()
        });
        let problems = validate::problems(&settings);
        if problems.is_empty() {
            return Ok(settings);
        }
        let lines: Vec<String> = problems
            .iter()
            .map(|p| {
                let keys: Vec<&KeyPath> = std::iter::once(&p.key).chain(&p.related).collect();
                match layers.origin_near(&keys) {
                    Some(origin) => format!("{origin}: {}: {}", p.key, p.reason),
                    None => format!("{}: {}", p.key, p.reason),
                }
            })
            .collect();
        Err(SettingsError(match lines.as_slice() {
            [one] => one.clone(),
            _ => format!(
                "{} configuration problems:\n  {}",
                lines.len(),
                lines.join("\n  ")
            ),
        }))
    }

    /// These settings with every secret replaced by [`REDACTED`], for display.
    pub fn redacted(&self) -> Settings {
        redact::redacted(self)
    }

    /// These settings as a TOML file would write them.
    pub fn to_toml(&self) -> Result<String, SettingsError> {
        toml::to_string(self).map_err(|e| SettingsError(format!("settings as TOML: {e}")))
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
        assert_eq!(s.kafka.replication_factor, -1, "the broker's default");
        assert_eq!(s.topics.dead_letter, "questline.dead-letter");
        assert_eq!(s.store.kind, StoreKind::Embedded);
        assert_eq!(s.http.listen, "127.0.0.1:8080");
        // The memory bounds (docs/operations.md, "Sizing"): 64 MiB of cached users, 64 MiB
        // of store cache, 32 MiB of journal per overlay.
        assert_eq!(s.pipeline.cache_mb, 64);
        assert_eq!(s.store.cache_mb, 64);
        assert_eq!(s.store.journal_mb, 32);
    }

    /// `Settings::load_from` the files with `vars` as the whole environment.
    fn load(files: &[&Path], vars: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::load_from(files, vars.iter().map(|(k, v)| (k.into(), v.into()))).map_err(|e| e.0)
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_fail_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let good = write(dir.path(), "good.toml", "[kafka]\nbrokers = \"10.0.0.1:9092\"\n[kafka.properties]\n\"fetch.wait.max.ms\" = \"20\"\n");
        let s = load(&[&good], &[]).unwrap();
        assert_eq!(s.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(s.kafka.properties["fetch.wait.max.ms"], "20");
        assert_eq!(s.kafka.group_id, "questline");
        let bad = write(
            dir.path(),
            "bad.toml",
            "[kafka]\nbrokers = \"x\"\n\n[store]\nkindd = \"scylla\"\n",
        );
        let err = load(&[&bad], &[]).unwrap_err();
        assert!(err.contains("bad.toml:5"), "{err}");
        assert!(err.contains("kindd"), "{err}");
    }

    #[test]
    fn files_layer_in_order_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let base = write(
            dir.path(),
            "base.toml",
            "[kafka]\nbrokers = \"a:9092\"\ngroup_id = \"base\"\n[pipeline]\nbatch_size = 100\n",
        );
        let site = write(dir.path(), "site.toml", "[kafka]\ngroup_id = \"site\"\n");
        let s = load(
            &[&base, &site],
            &[
                ("QUESTLINE__PIPELINE__BATCH_SIZE", "200"),
                ("QUESTLINE_KAFKA_PROPERTY_GROUP_INSTANCE_ID", "worker-0"),
                ("QUESTLINE_HTTP_AUTH_CLIENT_MyApp", "s3cret"),
            ],
        )
        .unwrap();
        assert_eq!(s.kafka.brokers, "a:9092");
        assert_eq!(s.kafka.group_id, "site");
        assert_eq!(s.pipeline.batch_size, 200);
        assert_eq!(s.kafka.properties["group.instance.id"], "worker-0");
        assert_eq!(s.http.auth.clients["MyApp"], "s3cret");
        // The other order: base wins.
        let s = load(&[&site, &base], &[]).unwrap();
        assert_eq!(s.kafka.group_id, "base");
    }

    /// Offers moved to the catalog: a file (or variable) still setting `kwegg.offers` is
    /// refused with where they went, not with a bare "unknown field".
    #[test]
    fn kwegg_offers_are_refused_with_where_they_moved() {
        let dir = tempfile::tempdir().unwrap();
        let old = write(
            dir.path(),
            "old.toml",
            "[kwegg]\ntoken_ttl_seconds = 3600\n\n[[kwegg.offers]]\nid = \"burger-40\"\ntenant = \"kwegg\"\ntitle = \"T\"\npoints = 100\n",
        );
        let err = load(&[&old], &[]).unwrap_err();
        assert!(err.contains("old.toml:4: "), "{err}");
        assert!(err.contains(OFFERS_MOVED), "{err}");
        let err = load(&[] as &[&Path], &[("QUESTLINE__KWEGG__OFFERS", "x")]).unwrap_err();
        assert_eq!(err, format!("QUESTLINE__KWEGG__OFFERS: {OFFERS_MOVED}"));
        // Without it the settings load, and `questline config` does not show the key.
        let s = load(&[] as &[&Path], &[]).unwrap();
        assert!(!s.to_toml().unwrap().contains("offers"));
    }

    #[test]
    fn owned_topics_are_named_after_the_group_unless_set() {
        let dir = tempfile::tempdir().unwrap();
        // The default group keeps the names every earlier release used.
        let s = load(&[], &[]).unwrap();
        assert_eq!(s.topics.commands, "questline.commands");
        assert_eq!(s.topics.catalog, "questline.catalog");
        assert_eq!(s.topics.amount_responses, "questline.amount-responses");
        let file = write(
            dir.path(),
            "shop.toml",
            "[kafka]\ngroup_id = \"shop\"\n[topics]\ninventory_requests = \"legacy.requests\"\n",
        );
        let s = load(
            &[&file],
            &[("QUESTLINE__TOPICS__AMOUNT_REQUESTS", "from-env.requests")],
        )
        .unwrap();
        assert_eq!(s.topics.commands, "shop.commands");
        assert_eq!(s.topics.inventory_responses, "shop.inventory-responses");
        assert_eq!(s.topics.amount_responses, "shop.amount-responses");
        assert_eq!(s.topics.catalog, "shop.catalog");
        assert_eq!(s.topics.inventory_requests, "legacy.requests");
        assert_eq!(s.topics.amount_requests, "from-env.requests");
        // Outputs are other teams' inputs: their names do not follow the group.
        assert_eq!(s.topics.rewards, "questline.rewards");
        assert_eq!(s.topics.dead_letter, "questline.dead-letter");
        // A group id that is no topic name is reported where the group id is set.
        let bad = write(
            dir.path(),
            "bad.toml",
            "[kafka]\n\ngroup_id = \"my shop\"\n",
        );
        let err = load(&[&bad], &[]).unwrap_err();
        assert!(err.contains("bad.toml:3"), "{err}");
        assert!(err.contains("topics.commands"), "{err}");
        assert!(err.contains("named after kafka.group_id"), "{err}");
    }

    #[test]
    fn kickapps_sites_come_from_files_and_their_tokens_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "kick.toml",
            "[kickapps]\ncors_origins = [\"https://community.example\"]\n[kickapps.sites.\"8001\"]\ntenant = \"default\"\nadmin_tokens = [\"from-the-file\"]\n",
        );
        let s = load(&[&file], &[]).unwrap();
        assert_eq!(s.kickapps.sites["8001"].admin_tokens, ["from-the-file"]);
        assert_eq!(s.kickapps.cors_origins, ["https://community.example"]);
        // The environment replaces the list (comma-separated) and may add a whole site.
        let tokens = dir.path().join("tokens");
        std::fs::write(&tokens, "t-one, t-two\n").unwrap();
        let s = load(
            &[&file],
            &[
                (
                    "QUESTLINE__KICKAPPS__SITES__8001__ADMIN_TOKENS_FILE",
                    tokens.to_str().unwrap(),
                ),
                ("QUESTLINE__KICKAPPS__SITES__9002__ADMIN_TOKENS", "t-three"),
            ],
        )
        .unwrap();
        assert_eq!(s.kickapps.sites["8001"].admin_tokens, ["t-one", "t-two"]);
        assert_eq!(s.kickapps.sites["8001"].tenant, "default");
        assert_eq!(s.kickapps.sites["9002"].admin_tokens, ["t-three"]);
        assert_eq!(s.kickapps.sites["9002"].tenant, "default");
    }

    #[test]
    fn a_refused_value_names_the_file_and_line_that_set_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = write(
            dir.path(),
            "base.toml",
            "[pipeline]\nbatch_size = 0\nretry_min_ms = 100\n",
        );
        let fix = write(
            dir.path(),
            "fix.toml",
            "# a comment\n[pipeline]\nbatch_size = 10\n",
        );
        let err = load(&[&base], &[]).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{}:2: pipeline.batch_size: is 0: must be at least 1 (the most records per batch)",
                base.display()
            )
        );
        assert!(load(&[&base, &fix], &[]).is_ok());
        // The user cache's memory budget: refused where it was set.
        let budget = write(dir.path(), "budget.toml", "[pipeline]\n\ncache_mb = 0\n");
        let err = load(&[&fix, &budget], &[]).unwrap_err();
        assert!(
            err.starts_with(&format!("{}:3: pipeline.cache_mb: is 0", budget.display())),
            "{err}"
        );
        let err = load(&[&fix], &[("QUESTLINE__PIPELINE__BATCH_SIZE", "0")]).unwrap_err();
        assert!(
            err.starts_with("QUESTLINE__PIPELINE__BATCH_SIZE: pipeline.batch_size: is 0"),
            "{err}"
        );
        // A problem of two keys, one of them a default: where the other was set.
        let err = load(&[&fix], &[("QUESTLINE__PIPELINE__RETRY_MIN_MS", "9000")]).unwrap_err();
        assert!(
            err.starts_with("QUESTLINE__PIPELINE__RETRY_MIN_MS: pipeline.retry_max_ms: is 5000"),
            "{err}"
        );
    }

    #[test]
    fn several_problems_are_listed_one_per_line() {
        let err = load(
            &[] as &[&Path],
            &[
                ("QUESTLINE__PIPELINE__BATCH_SIZE", "0"),
                ("QUESTLINE_HTTP_AUTH_CLIENT_MyApp", ""),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "2 configuration problems:\n  QUESTLINE_HTTP_AUTH_CLIENT_MyApp: http.auth.clients.MyApp: \
             has an empty secret: anyone could sign as this client\n  QUESTLINE__PIPELINE__BATCH_SIZE: \
             pipeline.batch_size: is 0: must be at least 1 (the most records per batch)"
        );
    }

    #[test]
    fn an_empty_secret_file_is_refused_naming_its_variable() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "secret", "\n");
        let err = load(
            &[] as &[&Path],
            &[(
                "QUESTLINE_HTTP_AUTH_CLIENT_MyApp_FILE",
                empty.to_str().unwrap(),
            )],
        )
        .unwrap_err();
        assert!(
            err.starts_with("QUESTLINE_HTTP_AUTH_CLIENT_MyApp_FILE: http.auth.clients.MyApp: has an empty secret"),
            "{err}"
        );
    }

    #[test]
    fn the_effective_toml_loads_back_and_hides_secrets() {
        let s = load(
            &[] as &[&Path],
            &[
                ("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD", "kafka-pw"),
                ("QUESTLINE_KAFKA_PROPERTY_SASL_USERNAME", "questline"),
                ("QUESTLINE_HTTP_AUTH_CLIENT_MyApp", "client-secret"),
            ],
        )
        .unwrap();
        let text = s.redacted().to_toml().unwrap();
        assert!(
            !text.contains("kafka-pw") && !text.contains("client-secret"),
            "{text}"
        );
        assert!(
            text.contains("\"sasl.password\" = \"<redacted>\""),
            "{text}"
        );
        assert!(text.contains("\"sasl.username\" = \"questline\""), "{text}");
        assert!(text.contains("MyApp = \"<redacted>\""), "{text}");
        // Unredacted, it is a configuration file of the same settings.
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "effective.toml", &s.to_toml().unwrap());
        assert_eq!(load(&[&file], &[]).unwrap(), s);
    }

    /// `_FILE` at the end of a variable always means "read the value from this file", so no
    /// key may end in `_file`.
    #[test]
    fn no_key_ends_in_file() {
        fn walk(table: &toml::Table, path: &str, found: &mut Vec<String>) {
            for (k, v) in table {
                let key = format!("{path}{k}");
                if k.to_ascii_lowercase().ends_with("_file") {
                    found.push(key.clone());
                }
                if let toml::Value::Table(t) = v {
                    walk(t, &format!("{key}."), found);
                }
            }
        }
        let mut full = Settings::default();
        full.http.images.s3 = Some(S3Settings::default());
        full.http.images.base_url = Some(String::new());
        let toml::Value::Table(table) = toml::Value::try_from(&full).unwrap() else {
            panic!("settings are a table");
        };
        let mut found = Vec::new();
        walk(&table, "", &mut found);
        assert!(table.contains_key("pipeline"));
        assert_eq!(found, Vec::<String>::new());
    }
}
