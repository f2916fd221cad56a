//! Values that parse but make no sense, refused at startup rather than discovered later: a
//! batch of zero records never fills, a zero backoff retries in a hot loop, an empty client
//! secret lets anyone sign. Each problem names its key; the caller adds where the key was set.
//!
//! Messages never show a secret's value.

use std::net::SocketAddr;

use super::key::KeyPath;
use super::redact::is_secret_property;
use super::{Settings, StoreKind, Topics};

/// One refused value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key at fault.
    pub key: KeyPath,
    /// Other keys the problem involves (the lower bound of a range, the topic it clashes with).
    pub related: Vec<KeyPath>,
    pub reason: String,
}

/// Every problem of `settings`, in key order of the sections.
pub fn problems(settings: &Settings) -> Vec<Problem> {
    let mut out = Problems(Vec::new());
    kafka(settings, &mut out);
    topics(settings, &mut out);
    paths(settings, &mut out);
    store(settings, &mut out);
    http(settings, &mut out);
    pipeline(settings, &mut out);
    amounts(settings, &mut out);
    telemetry(settings, &mut out);
    out.0
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &[&str], reason: impl Into<String>) {
        self.add_related(key, &[], reason);
    }

    fn add_related(&mut self, key: &[&str], related: &[&[&str]], reason: impl Into<String>) {
        self.0.push(Problem {
            key: KeyPath::new(key.iter().copied()),
            related: related
                .iter()
                .map(|k| KeyPath::new(k.iter().copied()))
                .collect(),
            reason: reason.into(),
        });
    }

    fn not_blank(&mut self, key: &[&str], value: &str, what: &str) {
        if value.trim().is_empty() {
            self.add(key, format!("is empty: {what}"));
        }
    }

    fn at_least(&mut self, key: &[&str], value: i64, min: i64, why: &str) {
        if value < min {
            self.add(key, format!("is {value}: must be at least {min} ({why})"));
        }
    }
}

fn kafka(s: &Settings, out: &mut Problems) {
    let k = &s.kafka;
    out.not_blank(
        &["kafka", "brokers"],
        &k.brokers,
        "name the bootstrap servers, host:port[,host:port…]",
    );
    out.not_blank(
        &["kafka", "group_id"],
        &k.group_id,
        "the workers' consumer group",
    );
    out.at_least(
        &["kafka", "partitions"],
        i64::from(k.partitions),
        1,
        "the partitions of topics questline creates",
    );
    if k.replication_factor == 0 || k.replication_factor < -1 {
        out.add(
            &["kafka", "replication_factor"],
            format!(
                "is {}: must be -1 (the broker's default.replication.factor) or at least 1 \
                 (the replicas of topics questline creates)",
                k.replication_factor
            ),
        );
    }
    if k.unreachable_grace_ms == 0 {
        out.add(
            &["kafka", "unreachable_grace_ms"],
            "is 0: must be at least 1, or every failed check of the brokers would make the process not ready",
        );
    }
    for (name, value) in &k.properties {
        if let Some(reason) = librdkafka_refusal(name, value) {
            out.add(&["kafka", "properties", name], reason);
        }
    }
    if let Some(reason) = record_larger_than_queue(&k.properties) {
        out.add(&["kafka", "properties", "message.max.bytes"], reason);
    }
}

/// A record as large as `message.max.bytes` must fit in the producer's queue
/// (`queue.buffering.max.kbytes`, which questline lowers to [`crate::settings::PRODUCER_QUEUE_KBYTES`]):
/// librdkafka answers "queue full" for a record that cannot fit, and the worker, which waits on
/// a full queue rather than drop a record, would wait on that partition for ever.
fn record_larger_than_queue(
    properties: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    // librdkafka's own default for message.max.bytes.
    const MESSAGE_MAX_BYTES: u64 = 1_000_000;
    let number = |name: &str, default: u64| {
        properties
            .get(name)
            .map_or(Some(default), |v| v.trim().parse::<u64>().ok())
    };
    let default_queue = crate::settings::PRODUCER_QUEUE_KBYTES
        .parse()
        .unwrap_or(u64::MAX);
    // A value librdkafka refuses is reported by `librdkafka_refusal`.
    let record = number("message.max.bytes", MESSAGE_MAX_BYTES)?;
    let queue_kib = number("queue.buffering.max.kbytes", default_queue)?;
    (record > queue_kib.saturating_mul(1024)).then(|| {
        format!(
            "is {record} bytes, more than the producer's queue (queue.buffering.max.kbytes = \
             {queue_kib} KiB): a record that large could never be queued and its partition \
             would wait for ever; raise queue.buffering.max.kbytes or lower message.max.bytes"
        )
    })
}

/// What librdkafka says of one property, if it refuses it: an unknown name, a value of the
/// wrong type or out of range, a feature this build lacks (`security.protocol = "ssl"`
/// without OpenSSL). The same check librdkafka makes when the clients are created, made
/// before anything starts.
fn librdkafka_refusal(name: &str, value: &str) -> Option<String> {
    let mut config = rdkafka::ClientConfig::new();
    config.set(name, value);
    let reason = match config.create_native_config() {
        Ok(_) => return None,
        Err(rdkafka::error::KafkaError::ClientConfig(_, reason, _, _)) => reason,
        Err(e) => e.to_string(),
    };
    Some(refusal(name, value, &reason))
}

/// librdkafka's reason for refusing a property. The value is not shown: a misspelt secret
/// (`sasl.pasword`) is not known for one by its name. librdkafka's own reasons name the
/// property, not the value; one that quotes a secret's value is replaced.
fn refusal(name: &str, value: &str, reason: &str) -> String {
    let reason = if is_secret_property(name) && !value.is_empty() && reason.contains(value) {
        "invalid value"
    } else {
        reason
    };
    format!("librdkafka refuses it: {reason}")
}

fn topics(s: &Settings, out: &mut Problems) {
    let t = &s.topics;
    // The worker reads these: one that is also another topic would feed the worker its own
    // records. The outputs may share a topic, which their consumers tell apart by `type`.
    let read = [
        ("commands", &t.commands),
        ("inventory_requests", &t.inventory_requests),
        ("inventory_responses", &t.inventory_responses),
        ("amount_requests", &t.amount_requests),
        ("amount_responses", &t.amount_responses),
        ("catalog", &t.catalog),
    ];
    let written = [
        ("progress", &t.progress),
        ("rewards", &t.rewards),
        ("dead_letter", &t.dead_letter),
    ];
    let all: Vec<(&str, &String)> = read.iter().chain(written.iter()).copied().collect();
    for (field, name) in &all {
        if let Some(reason) = topic_name_problem(name) {
            let derived = Topics::OWNED
                .iter()
                .find(|(key, _)| key == field)
                .is_some_and(|(_, suffix)| **name == format!("{}.{suffix}", s.kafka.group_id));
            if derived {
                out.add_related(
                    &["topics", field],
                    &[&["kafka", "group_id"]],
                    format!(
                        "{reason} (named after kafka.group_id; set topics.{field} to name it \
                         yourself)"
                    ),
                );
            } else {
                out.add(&["topics", field], reason);
            }
        }
    }
    for (i, (field, name)) in read.iter().enumerate() {
        // A clash of two read topics is reported once, at the later one.
        let clash = all
            .iter()
            .enumerate()
            .find(|(j, (_, other))| *j != i && other == name && !(*j < read.len() && *j > i));
        if let Some((_, (other_field, _))) = clash {
            out.add_related(
                &["topics", field],
                &[&["topics", other_field]],
                format!(
                    "is {name:?}, as is topics.{other_field}: the worker reads this topic, so it \
                     must be a topic of its own"
                ),
            );
        }
    }
}

/// Kafka's rules for a topic name.
fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty: name a topic".into());
    }
    if name == "." || name == ".." {
        return Some(format!("is {name:?}: Kafka refuses it as a topic name"));
    }
    if name.len() > 249 {
        return Some(format!(
            "is {} characters long: Kafka allows at most 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "is {name:?}: {c:?} is not allowed in a topic name (letters, digits, '.', '_', '-')"
        ));
    }
    None
}

fn paths(s: &Settings, out: &mut Problems) {
    if s.catalog.path.as_os_str().is_empty() {
        out.add(
            &["catalog", "path"],
            "is empty: the catalog directory, or one catalog file",
        );
    }
    if s.catalog.refresh_ms == 0 {
        out.add(
            &["catalog", "refresh_ms"],
            "is 0: the catalog log would be read in a busy loop",
        );
    }
}

/// A memory size in MiB: at most [`MAX_CACHE_MB`], and at least 1 unless `zero_is_wrong` is
/// `None` (then 0 is allowed); `zero_is_wrong` says why 0 cannot work.
fn memory_mb(out: &mut Problems, key: &[&str], mb: usize, zero_is_wrong: Option<&str>) {
    if let (0, Some(why)) = (mb, zero_is_wrong) {
        out.add(key, format!("is 0: must be at least 1 ({why})"));
    }
    if mb > MAX_CACHE_MB {
        out.add(key, format!("is {mb}: at most {MAX_CACHE_MB} (1 TiB)"));
    }
}

fn store(s: &Settings, out: &mut Problems) {
    let st = &s.store;
    memory_mb(out, &["store", "cache_mb"], st.cache_mb, None);
    memory_mb(
        out,
        &["store", "journal_mb"],
        st.journal_mb,
        Some("every write would wait for a checkpoint"),
    );
    if st.kind == StoreKind::Embedded && st.path.as_os_str().is_empty() {
        out.add(
            &["store", "path"],
            "is empty: the embedded store's directory",
        );
    }
    let sc = &st.scylla;
    if sc.nodes.is_empty() {
        out.add(
            &["store", "scylla", "nodes"],
            "is empty: list at least one contact point, host:port",
        );
    }
    if sc.nodes.iter().any(|n| n.trim().is_empty()) {
        out.add(&["store", "scylla", "nodes"], "has an empty contact point");
    }
    if let Err(e) = crate::store::cql_schema::validate_keyspace(&sc.keyspace) {
        out.add(&["store", "scylla", "keyspace"], e.to_string());
    }
    if let Err(e) = crate::store::scylla::parse_consistency(&sc.consistency) {
        out.add(&["store", "scylla", "consistency"], e.to_string());
    }
    out.at_least(
        &["store", "scylla", "replication_factor"],
        i64::from(sc.replication_factor),
        1,
        "the replicas of the keyspace migrate creates",
    );
    out.at_least(
        &["store", "scylla", "partitions_per_batch"],
        i64::try_from(sc.partitions_per_batch).unwrap_or(i64::MAX),
        1,
        "partitions per CQL batch (1: each partition in a batch of its own)",
    );
}

fn http(s: &Settings, out: &mut Problems) {
    let h = &s.http;
    if let Some(reason) = listen_problem(&h.listen) {
        out.add(&["http", "listen"], reason);
    }
    if h.max_body_bytes == 0 {
        out.add(
            &["http", "max_body_bytes"],
            "is 0: every request with a body would get 413",
        );
    }
    // The sidecar's server checks these too when it starts; here they are refused with
    // where they were set, before anything starts.
    let timeouts = [
        (
            "header_timeout_seconds",
            h.header_timeout_seconds,
            "request head",
        ),
        (
            "body_timeout_seconds",
            h.body_timeout_seconds,
            "request body",
        ),
        ("keep_alive_seconds", h.keep_alive_seconds, "next request"),
    ];
    for (field, seconds, waits_for) in timeouts {
        if seconds == 0 {
            out.add(
                &["http", field],
                format!("is 0: must be at least 1 (seconds to wait for the {waits_for})"),
            );
        }
    }
    if h.max_connections == 0 {
        out.add(
            &["http", "max_connections"],
            "is 0: must be at least 1, or no connection is ever served",
        );
    }
    for (id, secret) in &h.auth.clients {
        let key = ["http", "auth", "clients", id.as_str()];
        if id.is_empty() || id.trim() != id || id.chars().any(|c| !(' '..='~').contains(&c)) {
            out.add(
                &key,
                "is not a client id clients can send: X-ClientId takes printable ASCII, \
                 without spaces around it",
            );
        }
        if secret.trim().is_empty() {
            out.add(
                &key,
                "has an empty secret: anyone could sign as this client",
            );
        }
    }
    if h.auth.max_skew_seconds == 0 {
        out.add(
            &["http", "auth", "max_skew_seconds"],
            "is 0: a signed request would have to reach the sidecar within the second it was \
             signed",
        );
    }
    let images = &h.images;
    if let Some(base) = &images.base_url {
        if base.trim().is_empty() {
            out.add(
                &["http", "images", "base_url"],
                "is empty: set the URL image keys are joined to, or leave the key out",
            );
        }
        if images.s3.is_some() {
            out.add_related(
                &["http", "images", "base_url"],
                &[&["http", "images", "s3"]],
                "is set together with http.images.s3: image URLs are either joined to a base \
                 URL or presigned, keep one",
            );
        }
    }
    if let Some(s3) = &images.s3 {
        let required = [
            ("endpoint", &s3.endpoint),
            ("bucket", &s3.bucket),
            ("region", &s3.region),
            ("access_key", &s3.access_key),
            ("secret_key", &s3.secret_key),
        ];
        for (field, value) in required {
            out.not_blank(
                &["http", "images", "s3", field],
                value,
                "required with http.images.s3",
            );
        }
        let endpoint = s3.endpoint.to_ascii_lowercase();
        let scheme = ["http://", "https://"]
            .iter()
            .find_map(|p| endpoint.strip_prefix(p));
        if !s3.endpoint.trim().is_empty() && scheme.is_none_or(|rest| rest.is_empty()) {
            out.add(
                &["http", "images", "s3", "endpoint"],
                format!(
                    "is {:?}: an http:// or https:// URL, e.g. https://s3.eu-west-1.amazonaws.com",
                    s3.endpoint
                ),
            );
        }
        if s3.expires_seconds == 0 || s3.expires_seconds > MAX_PRESIGNED_SECONDS {
            out.add(
                &["http", "images", "s3", "expires_seconds"],
                format!(
                    "is {}: a presigned URL is valid for 1 to {MAX_PRESIGNED_SECONDS} seconds \
                     (7 days, SigV4's limit)",
                    s3.expires_seconds
                ),
            );
        }
    }
}

/// SigV4's limit on a presigned URL's lifetime.
const MAX_PRESIGNED_SECONDS: u64 = 7 * 24 * 3600;

/// An address `TcpListener::bind` takes: an IP and port, or a host name and port.
fn listen_problem(listen: &str) -> Option<String> {
    if listen.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let port_ok = |host: &str, port: &str| {
        !host.is_empty() && !host.contains(char::is_whitespace) && port.parse::<u16>().is_ok()
    };
    match listen.rsplit_once(':') {
        Some((host, port)) if port_ok(host, port) => None,
        _ => Some(format!(
            "is {listen:?}: an address and port to listen on, e.g. 0.0.0.0:8080 or 127.0.0.1:8080"
        )),
    }
}

/// The largest memory setting in MiB (1 TiB): beyond it a typo, not a machine.
const MAX_CACHE_MB: usize = 1 << 20;

fn pipeline(s: &Settings, out: &mut Problems) {
    let p = &s.pipeline;
    if p.batch_size == 0 {
        out.add(
            &["pipeline", "batch_size"],
            "is 0: must be at least 1 (the most records per batch)",
        );
    }
    memory_mb(
        out,
        &["pipeline", "cache_mb"],
        p.cache_mb,
        Some("MiB of memory for the users kept between batches"),
    );
    if p.retry_min_ms == 0 {
        out.add(
            &["pipeline", "retry_min_ms"],
            "is 0: must be at least 1, or a failing store or broker is retried in a busy loop",
        );
    }
    if p.retry_max_ms < p.retry_min_ms {
        out.add_related(
            &["pipeline", "retry_max_ms"],
            &[&["pipeline", "retry_min_ms"]],
            format!(
                "is {}: the longest backoff cannot be shorter than the first, \
                 pipeline.retry_min_ms = {}",
                p.retry_max_ms, p.retry_min_ms
            ),
        );
    }
}

fn amounts(s: &Settings, out: &mut Problems) {
    let a = &s.amounts;
    if a.concurrency == 0 {
        out.add(
            &["amounts", "concurrency"],
            "is 0: must be at least 1, or no programmatic event's endpoint could be called",
        );
    }
    if a.backoff_max_ms < a.backoff_min_ms {
        out.add_related(
            &["amounts", "backoff_max_ms"],
            &[&["amounts", "backoff_min_ms"]],
            format!(
                "is {}: the longest backoff cannot be shorter than the first, \
                 amounts.backoff_min_ms = {}",
                a.backoff_max_ms, a.backoff_min_ms
            ),
        );
    }
}

fn telemetry(s: &Settings, out: &mut Problems) {
    let endpoint = s.telemetry.otlp_endpoint.trim();
    if !endpoint.is_empty() && !endpoint.starts_with("http://") && !endpoint.starts_with("https://")
    {
        out.add(
            &["telemetry", "otlp_endpoint"],
            format!(
                "is '{endpoint}': must be an http:// or https:// URL (the collector's OTLP/HTTP \
                 address, such as http://collector:4318), or empty for no export"
            ),
        );
    }
    out.not_blank(
        &["telemetry", "service_name"],
        &s.telemetry.service_name,
        "the service name the exported spans carry",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::S3Settings;

    /// The problems of the defaults changed by `change`, as `key: reason` lines.
    fn refused(change: impl FnOnce(&mut Settings)) -> Vec<String> {
        let mut s = Settings::default();
        change(&mut s);
        problems(&s)
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect()
    }

    /// Asserts exactly one problem, on `key`, whose reason contains `words`.
    fn assert_refused(change: impl FnOnce(&mut Settings), key: &str, words: &str) {
        let got = refused(change);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!("{key}: ")) && got[0].contains(words),
            "{got:?} should be {key}: …{words}…"
        );
    }

    fn bucket() -> S3Settings {
        S3Settings {
            endpoint: "https://s3.eu-west-1.amazonaws.com".into(),
            bucket: "images".into(),
            region: "eu-west-1".into(),
            path_style: false,
            access_key: "AKIA".into(),
            secret_key: "secret".into(),
            expires_seconds: 3600,
        }
    }

    #[test]
    fn the_defaults_and_a_full_configuration_are_valid() {
        assert_eq!(problems(&Settings::default()), []);
        let mut s = Settings::default();
        s.http.images.s3 = Some(bucket());
        s.http.auth.clients.insert("MyApp".into(), "s3cret".into());
        s.http.listen = "localhost:0".into();
        s.kafka
            .properties
            .insert("group.instance.id".into(), "worker-0".into());
        s.kafka
            .properties
            .insert("sasl.password".into(), "pw".into());
        s.topics.progress = s.topics.rewards.clone();
        s.pipeline.retry_max_ms = s.pipeline.retry_min_ms;
        assert_eq!(problems(&s), []);
    }

    #[test]
    fn pipeline_values_that_cannot_work() {
        assert_refused(
            |s| s.pipeline.batch_size = 0,
            "pipeline.batch_size",
            "is 0: must be at least 1",
        );
        // Memory sizes in MiB: which key, how to set it, and whether 0 is refused.
        type Field = fn(&mut Settings) -> &mut usize;
        let sizes: [(&str, Field, bool); 3] = [
            ("pipeline.cache_mb", |s| &mut s.pipeline.cache_mb, true),
            ("store.cache_mb", |s| &mut s.store.cache_mb, false),
            ("store.journal_mb", |s| &mut s.store.journal_mb, true),
        ];
        for (key, field, zero_refused) in sizes {
            if zero_refused {
                assert_refused(|s| *field(s) = 0, key, "is 0: must be at least 1");
            } else {
                assert!(
                    refused(|s| *field(s) = 0).is_empty(),
                    "{key} = 0 is allowed"
                );
            }
            assert_refused(
                |s| *field(s) = MAX_CACHE_MB + 1,
                key,
                "at most 1048576 (1 TiB)",
            );
            assert_refused(|s| *field(s) = usize::MAX, key, "at most 1048576 (1 TiB)");
        }
        assert_refused(
            |s| s.pipeline.retry_min_ms = 0,
            "pipeline.retry_min_ms",
            "busy loop",
        );
        assert_refused(
            |s| s.pipeline.retry_max_ms = 10,
            "pipeline.retry_max_ms",
            "retry_min_ms = 50",
        );
        // Both: the zero minimum is the one problem.
        assert_eq!(
            refused(|s| {
                s.pipeline.retry_min_ms = 0;
                s.pipeline.retry_max_ms = 0;
            })
            .len(),
            1
        );
    }

    #[test]
    fn amount_caller_values_that_cannot_work() {
        assert_refused(
            |s| s.amounts.concurrency = 0,
            "amounts.concurrency",
            "is 0: must be at least 1",
        );
        assert_refused(
            |s| s.amounts.backoff_max_ms = 10,
            "amounts.backoff_max_ms",
            "backoff_min_ms = 100",
        );
        // No retries, no breaker: a choice, not a mistake.
        assert_eq!(
            refused(|s| {
                s.amounts.retries = 0;
                s.amounts.breaker_threshold = 0;
            }),
            Vec::<String>::new()
        );
    }

    #[test]
    fn telemetry_values_that_cannot_work() {
        assert_refused(
            |s| s.telemetry.otlp_endpoint = "collector:4318".into(),
            "telemetry.otlp_endpoint",
            "must be an http:// or https:// URL",
        );
        assert_refused(
            |s| s.telemetry.service_name = " ".into(),
            "telemetry.service_name",
            "is empty",
        );
        assert_eq!(
            refused(|s| s.telemetry.otlp_endpoint = "https://collector:4318".into()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn empty_or_unusable_auth_clients() {
        assert_refused(
            |s| {
                s.http.auth.clients.insert("app".into(), String::new());
            },
            "http.auth.clients.app",
            "empty secret: anyone could sign",
        );
        assert_refused(
            |s| {
                s.http.auth.clients.insert("app".into(), " \n".into());
            },
            "http.auth.clients.app",
            "empty secret",
        );
        assert_refused(
            |s| {
                s.http.auth.clients.insert(" app".into(), "s".into());
            },
            "http.auth.clients.\" app\"",
            "X-ClientId",
        );
        assert_refused(
            |s| {
                s.http.auth.clients.insert("appé".into(), "s".into());
            },
            "http.auth.clients.\"appé\"",
            "printable ASCII",
        );
        assert_refused(
            |s| s.http.auth.max_skew_seconds = 0,
            "http.auth.max_skew_seconds",
            "is 0",
        );
    }

    #[test]
    fn http_values_that_cannot_work() {
        assert_refused(
            |s| s.http.listen = "8080".into(),
            "http.listen",
            "0.0.0.0:8080",
        );
        assert_refused(
            |s| s.http.listen = ":8080".into(),
            "http.listen",
            "is \":8080\"",
        );
        assert_refused(
            |s| s.http.listen = "127.0.0.1:99999".into(),
            "http.listen",
            "address and port",
        );
        assert_refused(|s| s.http.max_body_bytes = 0, "http.max_body_bytes", "413");
        assert_refused(
            |s| s.http.header_timeout_seconds = 0,
            "http.header_timeout_seconds",
            "is 0: must be at least 1 (seconds to wait for the request head)",
        );
        assert_refused(
            |s| s.http.body_timeout_seconds = 0,
            "http.body_timeout_seconds",
            "request body",
        );
        assert_refused(
            |s| s.http.keep_alive_seconds = 0,
            "http.keep_alive_seconds",
            "next request",
        );
        assert_refused(
            |s| s.http.max_connections = 0,
            "http.max_connections",
            "is 0",
        );
        assert_refused(
            |s| s.http.images.base_url = Some(" ".into()),
            "http.images.base_url",
            "is empty",
        );
        assert_refused(
            |s| {
                s.http.images.base_url = Some("https://cdn".into());
                s.http.images.s3 = Some(bucket());
            },
            "http.images.base_url",
            "keep one",
        );
    }

    #[test]
    fn an_image_bucket_needs_its_keys_a_url_and_a_sigv4_lifetime() {
        let got = refused(|s| s.http.images.s3 = Some(S3Settings::default()));
        assert_eq!(
            got.iter()
                .map(|l| l.split(':').next().unwrap())
                .collect::<Vec<_>>(),
            [
                "http.images.s3.endpoint",
                "http.images.s3.bucket",
                "http.images.s3.region",
                "http.images.s3.access_key",
                "http.images.s3.secret_key",
            ]
        );
        assert_refused(
            |s| {
                s.http.images.s3 = Some(S3Settings {
                    endpoint: "s3.amazonaws.com".into(),
                    ..bucket()
                })
            },
            "http.images.s3.endpoint",
            "https://",
        );
        for expires in [0, 7 * 24 * 3600 + 1] {
            assert_refused(
                |s| {
                    s.http.images.s3 = Some(S3Settings {
                        expires_seconds: expires,
                        ..bucket()
                    })
                },
                "http.images.s3.expires_seconds",
                "1 to 604800 seconds",
            );
        }
    }

    #[test]
    fn kafka_values_that_cannot_work() {
        assert_refused(
            |s| s.kafka.brokers = " ".into(),
            "kafka.brokers",
            "is empty",
        );
        assert_refused(
            |s| s.kafka.group_id = String::new(),
            "kafka.group_id",
            "is empty",
        );
        assert_refused(|s| s.kafka.partitions = 0, "kafka.partitions", "is 0");
        assert_refused(
            |s| s.kafka.replication_factor = 0,
            "kafka.replication_factor",
            "is 0: must be -1 (the broker's default.replication.factor) or at least 1",
        );
        assert_refused(
            |s| s.kafka.replication_factor = -2,
            "kafka.replication_factor",
            "is -2: must be -1",
        );
        assert_refused(
            |s| s.kafka.unreachable_grace_ms = 0,
            "kafka.unreachable_grace_ms",
            "is 0: must be at least 1",
        );
        // A record of message.max.bytes must fit in the producer's queue.
        assert_refused(
            |s| {
                s.kafka
                    .properties
                    .insert("message.max.bytes".into(), "100000000".into());
            },
            "kafka.properties.\"message.max.bytes\"",
            "is 100000000 bytes, more than the producer's queue (queue.buffering.max.kbytes = 65536 KiB)",
        );
        assert_refused(
            |s| {
                s.kafka
                    .properties
                    .insert("queue.buffering.max.kbytes".into(), "512".into());
            },
            "kafka.properties.\"message.max.bytes\"",
            "is 1000000 bytes, more than the producer's queue (queue.buffering.max.kbytes = 512 KiB)",
        );
        let fits = refused(|s| {
            s.kafka
                .properties
                .insert("message.max.bytes".into(), "100000000".into());
            s.kafka
                .properties
                .insert("queue.buffering.max.kbytes".into(), "200000".into());
        });
        assert!(fits.is_empty(), "{fits:?}");
    }

    #[test]
    fn librdkafka_refuses_unknown_properties_and_bad_values() {
        assert_refused(
            |s| {
                s.kafka.properties.insert("sasl.pasword".into(), "x".into());
            },
            "kafka.properties.\"sasl.pasword\"",
            "No such configuration property",
        );
        assert_refused(
            |s| {
                s.kafka
                    .properties
                    .insert("fetch.wait.max.ms".into(), "soon".into());
            },
            "kafka.properties.\"fetch.wait.max.ms\"",
            "Invalid value for configuration property",
        );
    }

    #[test]
    fn a_refused_property_does_not_show_its_value() {
        // Misspelt: not known for a secret by its name.
        let reason = librdkafka_refusal("sasl.pasword", "hunter2").unwrap();
        assert_eq!(
            reason,
            "librdkafka refuses it: No such configuration property: \"sasl.pasword\""
        );
        // Should librdkafka quote a secret's value, it is left out.
        assert_eq!(
            refusal("sasl.password", "hunter2", "bad value \"hunter2\""),
            "librdkafka refuses it: invalid value"
        );
        assert_eq!(
            refusal("linger.ms", "soon", "Invalid value"),
            "librdkafka refuses it: Invalid value"
        );
    }

    #[test]
    fn topics_must_be_kafka_names_and_the_worker_must_not_read_its_own_output() {
        assert_refused(
            |s| s.topics.rewards = String::new(),
            "topics.rewards",
            "is empty",
        );
        assert_refused(
            |s| s.topics.progress = "questline progress".into(),
            "topics.progress",
            "' ' is not allowed",
        );
        assert_refused(
            |s| s.topics.dead_letter = "x".repeat(250),
            "topics.dead_letter",
            "at most 249",
        );
        assert_refused(
            |s| s.topics.commands = s.topics.progress.clone(),
            "topics.commands",
            "as is topics.progress",
        );
        assert_refused(
            |s| s.topics.inventory_responses = s.topics.inventory_requests.clone(),
            "topics.inventory_responses",
            "as is topics.inventory_requests",
        );
        assert_refused(
            |s| s.topics.amount_responses = s.topics.inventory_responses.clone(),
            "topics.amount_responses",
            "as is topics.inventory_responses",
        );
    }

    #[test]
    fn store_values_that_cannot_work() {
        assert_refused(|s| s.store.path = "".into(), "store.path", "is empty");
        // Not a problem for ScyllaDB, which does not use the path.
        assert_eq!(
            refused(|s| {
                s.store.kind = StoreKind::Scylla;
                s.store.path = "".into();
            }),
            Vec::<String>::new()
        );
        assert_refused(
            |s| s.store.scylla.nodes.clear(),
            "store.scylla.nodes",
            "at least one",
        );
        assert_refused(
            |s| s.store.scylla.keyspace = "Quest-line".into(),
            "store.scylla.keyspace",
            "Quest-line",
        );
        assert_refused(
            |s| s.store.scylla.consistency = "most".into(),
            "store.scylla.consistency",
            "most",
        );
        assert_refused(
            |s| s.store.scylla.replication_factor = 0,
            "store.scylla.replication_factor",
            "is 0",
        );
        assert_refused(
            |s| s.store.scylla.partitions_per_batch = 0,
            "store.scylla.partitions_per_batch",
            "is 0",
        );
        assert_refused(|s| s.catalog.path = "".into(), "catalog.path", "is empty");
    }
}
