//! The configuration through the real binary: `questline config` prints what the layers and
//! the environment make of it, secrets redacted; `questline run` refuses a value that cannot
//! work with exit code 2 before it connects to anything, naming the file and line or the
//! variable.

use crate::support::questline_bin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `questline ARGS` in `dir` with exactly `vars` as its environment.
fn questline(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    Command::new(questline_bin())
        .current_dir(dir)
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The value at `path`, its keys separated by `/` (librdkafka's names have dots).
fn at<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let keys: Vec<&str> = path.split('/').collect();
    let (last, parents) = keys.split_last()?;
    let mut table = table;
    for key in parents {
        table = table.get(*key)?.as_table()?;
    }
    table.get(*last)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn config_prints_the_layers_and_the_environment_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "base.toml",
        "[kafka]\nbrokers = \"base:9092\"\ngroup_id = \"questline\"\n\n[kafka.properties]\n\
         \"sasl.username\" = \"questline\"\n\n[pipeline]\nbatch_size = 100\nlinger_ms = 7\n",
    );
    write(
        dir.path(),
        "site.toml",
        "[kafka]\nbrokers = \"site:9092\"\n\n[pipeline]\nbatch_size = 200\n",
    );
    write(dir.path(), "sasl-password", "kafka-password\n");
    write(dir.path(), "client-secret", "client-secret-value\n");
    let out = questline(
        dir.path(),
        &["config", "--config", "base.toml", "--config", "site.toml"],
        &[
            (
                "QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE",
                "sasl-password",
            ),
            (
                "QUESTLINE_KAFKA_PROPERTY_GROUP_INSTANCE_ID",
                "questline-worker-0",
            ),
            ("QUESTLINE_HTTP_AUTH_CLIENT_MyApp_FILE", "client-secret"),
            ("QUESTLINE_HTTP_AUTH_CLIENT_other", "other-secret-value"),
            ("QUESTLINE__PIPELINE__LINGER_MS", "3"),
            (
                "QUESTLINE__HTTP__IMAGES__S3__ENDPOINT",
                "https://s3.example.com",
            ),
            ("QUESTLINE__HTTP__IMAGES__S3__BUCKET", "images"),
            ("QUESTLINE__HTTP__IMAGES__S3__REGION", "eu-west-1"),
            ("QUESTLINE__HTTP__IMAGES__S3__ACCESS_KEY", "AKIAEXAMPLE"),
            ("QUESTLINE__HTTP__IMAGES__S3__SECRET_KEY", "s3-secret-value"),
            ("QUESTLINE_LOG_FORMAT", "json"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for secret in [
        "kafka-password",
        "client-secret-value",
        "other-secret-value",
        "s3-secret-value",
    ] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("# ") && first.contains("base.toml, site.toml"),
        "{first}"
    );
    let effective: toml::Table = toml::from_str(&text).unwrap();
    let get = |path: &str| {
        at(&effective, path)
            .cloned()
            .unwrap_or_else(|| panic!("no {path} in\n{text}"))
    };
    assert_eq!(get("kafka/brokers").as_str(), Some("site:9092"));
    assert_eq!(get("pipeline/batch_size").as_integer(), Some(200));
    assert_eq!(get("pipeline/linger_ms").as_integer(), Some(3));
    assert_eq!(
        get("kafka/properties/group.instance.id").as_str(),
        Some("questline-worker-0")
    );
    assert_eq!(
        get("kafka/properties/sasl.username").as_str(),
        Some("questline")
    );
    assert_eq!(
        get("kafka/properties/sasl.password").as_str(),
        Some("<redacted>")
    );
    assert_eq!(get("http/auth/clients/MyApp").as_str(), Some("<redacted>"));
    assert_eq!(get("http/auth/clients/other").as_str(), Some("<redacted>"));
    assert_eq!(
        get("http/images/s3/secret_key").as_str(),
        Some("<redacted>")
    );
    assert_eq!(
        get("http/images/s3/access_key").as_str(),
        Some("AKIAEXAMPLE")
    );
    assert_eq!(get("store/kind").as_str(), Some("embedded"));
}

#[test]
fn run_refuses_a_zero_batch_size_with_exit_2_naming_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "questline.toml",
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n\n[pipeline]\nbatch_size = 0\n",
    );
    let out = questline(dir.path(), &["run", "--config", "questline.toml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "questline: questline.toml:5: pipeline.batch_size: is 0: must be at least 1 \
         (the most records per batch)\n"
    );
    // A later file can fix it; the environment can break it again, and is named.
    write(dir.path(), "fix.toml", "[pipeline]\nbatch_size = 50\n");
    let out = questline(
        dir.path(),
        &[
            "config",
            "--config",
            "questline.toml",
            "--config",
            "fix.toml",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = questline(
        dir.path(),
        &[
            "serve",
            "--config",
            "questline.toml",
            "--config",
            "fix.toml",
        ],
        &[("QUESTLINE__PIPELINE__BATCH_SIZE", "0")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out)
            .starts_with("questline: QUESTLINE__PIPELINE__BATCH_SIZE: pipeline.batch_size: is 0"),
        "{}",
        stderr(&out)
    );
}

/// Offers moved to the tenant catalog: a configuration that still lists `[[kwegg.offers]]`
/// stops the start, saying where they went, rather than serving no offers.
#[test]
fn serve_refuses_kwegg_offers_naming_where_they_moved() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "questline.toml",
        "[kwegg]\ntoken_ttl_seconds = 3600\n\n[[kwegg.offers]]\nid = \"burger-40\"\n\
         tenant = \"kwegg\"\ntitle = \"40% off a burger\"\npoints = 100\n",
    );
    let out = questline(dir.path(), &["serve", "--config", "questline.toml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "questline: questline.toml:4: kwegg.offers: offers moved to the tenant catalog's \
         [[offers]] tables (see docs/catalog.md)\n"
    );
}

#[test]
fn run_refuses_an_empty_client_secret_and_a_zero_backoff_listing_both() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "questline.toml",
        "[pipeline]\nretry_min_ms = 0\n",
    );
    write(dir.path(), "empty", "\n");
    let out = questline(
        dir.path(),
        &["run", "--config", "questline.toml"],
        &[("QUESTLINE_HTTP_AUTH_CLIENT_MyApp_FILE", "empty")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "questline: 2 configuration problems:\n  \
         QUESTLINE_HTTP_AUTH_CLIENT_MyApp_FILE: http.auth.clients.MyApp: has an empty secret: \
         anyone could sign as this client\n  \
         questline.toml:2: pipeline.retry_min_ms: is 0: must be at least 1, or a failing store \
         or broker is retried in a busy loop\n"
    );
}

#[test]
fn environment_mistakes_exit_2_with_the_form_to_use() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("QUESTLINE__KAFKA__PROPERTIES__SASL__PASSWORD", "x")],
            "QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD",
        ),
        (
            &[("QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE", "/nonexistent/questline")],
            "QUESTLINE_KAFKA_PROPERTY_SASL_PASSWORD_FILE: cannot read /nonexistent/questline",
        ),
        (
            &[("QUESTLINE_KAFKA_PROPERTY_SASL_PASWORD", "hunter2")],
            "QUESTLINE_KAFKA_PROPERTY_SASL_PASWORD: kafka.properties.\"sasl.pasword\": librdkafka refuses it: No such configuration property",
        ),
        (
            &[("QUESTLINE__PIPELINE__BATCH_SIZE", "many")],
            "QUESTLINE__PIPELINE__BATCH_SIZE: pipeline.batch_size: expected a whole number",
        ),
    ];
    for (vars, words) in cases {
        let out = questline(dir.path(), &["config"], vars);
        assert_eq!(out.status.code(), Some(2), "{vars:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(words), "{vars:?}: {}", stderr(&out));
        assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}
