//! The catalog changes while workers run: two real workers on tansu follow the catalog log
//! (the first one to start publishes the files as version 1), a version published with `questline catalog push` (a new inventory after the first one ran
//! out, a new challenge) is applied by both from the same instant — every event names the
//! version in force at its record's timestamp — an invalid change is refused and publishes
//! nothing, and `questline replay --records` on a dump that starts with the catalog topic
//! reproduces the workers' events.

use crate::support::kafka::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PARTITIONS: i32 = 4;

/// Version 0: points for orders, a t-shirt (two in stock) for the first shirt action.
const BASE: &str = r#"
[[categories]]
id = 1
name = "Tests"

[[triggers]]
id = 1
name = "Orders"
type = 2
aggregation = "sum"

[[triggers]]
id = 2
name = "Check-ins"
type = 1
aggregation = "sum"

[[triggers]]
id = 3
name = "Shirt day"
type = 1
aggregation = "sum"

[[reward_types]]
reward_type = "points"
kind = "points"

[[reward_types]]
reward_type = "tshirt"
kind = "item"

[[inventories]]
id = "tshirts-1"
reward_type = "tshirt"
amount_total = 2

[[challenges]]
id = 1
name = "Every hundred"
category = 1
repeatable = true
overshoot = "carry"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 100 }]
[[challenges.prizes]]
reward_type = "points"
amount = 10

[[challenges]]
id = 3
name = "Shirt day"
category = 1
[[challenges.groups]]
id = 1
triggers = [{ trigger = 3, frequency = 1 }]
[[challenges.prizes]]
reward_type = "tshirt"
amount = 1
"#;

/// The change adds a second t-shirt inventory, a challenge on check-ins and an operation.
const ADDED: &str = r#"
[[operations]]
code = "late_op"
building_block = "groups"
reward_type = "points"
amount = 3

[[inventories]]
id = "tshirts-2"
reward_type = "tshirt"
amount_total = 3

[[challenges]]
id = 4
name = "Every check-in"
category = 1
repeatable = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 2, frequency = 1 }]
[[challenges.prizes]]
reward_type = "points"
amount = 7
"#;

fn questline(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(questline_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn orders(users: &[String], round: u64) -> Vec<(String, String)> {
    users
        .iter()
        .enumerate()
        .flat_map(|(i, u)| {
            [
                (
                    u.clone(),
                    json!({"userId": u, "triggerId": 1, "value": 40 + (i as u64 + round) % 70})
                        .to_string(),
                ),
                (
                    u.clone(),
                    json!({"userId": u, "triggerId": 2, "value": 1}).to_string(),
                ),
            ]
        })
        .collect()
}

fn shirts(users: &[&str]) -> Vec<(String, String)> {
    users
        .iter()
        .map(|u| {
            (
                u.to_string(),
                json!({"userId": u, "triggerId": 3, "value": 1}).to_string(),
            )
        })
        .collect()
}

#[test]
fn a_published_catalog_version_is_applied_by_every_worker_from_one_instant() {
    let Some(broker) = broker() else { return };
    // Two workers share the state through the CQL store, so partitions may move between them.
    let Some(node) = cql_node() else { return };
    let catalog_dir = tempfile::tempdir().unwrap();
    std::fs::write(catalog_dir.path().join("catalog.toml"), BASE).unwrap();
    let setup = Setup::with_options(
        &broker,
        "catalog-live",
        PARTITIONS,
        Options {
            catalog: catalog_dir.path().to_path_buf(),
            store: StoreChoice::Cql {
                node,
                keyspace: crate::support::cql::fresh_keyspace("ql_catalog"),
            },
            ..Options::default()
        },
    );
    setup.create_all_topics(&broker, PARTITIONS);
    setup.migrate();
    let input = setup.topic("questline.actions");
    let first = setup.spawn_worker(None);
    let second = setup.spawn_worker(None);
    let logs = || format!("{}\n---\n{}", first.log_text(), second.log_text());
    wait_until(
        Duration::from_secs(60),
        "both workers to share the partitions",
        || {
            let (a, b) = (first.assignment(), second.assignment());
            matches!((a, b), (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() && a.len() + b.len() == PARTITIONS as usize)
        },
        logs,
    );
    let users: Vec<String> = (0..24).map(|u| format!("u{u}")).collect();

    // Before: the first two shirts are granted, the next two find the stock gone.
    let mut produced = 0;
    for round in 0..3 {
        let batch = orders(&users, round);
        produced += batch.len();
        broker.produce(&input, &batch);
    }
    // A service's grant of an operation the catalog does not have yet: a dead letter naming
    // the code (the sidecar would have refused it; anyone may produce to the topic).
    let commands = setup.topic("commands");
    let grant = |user: &str, id: &str| {
        (
            user.to_string(),
            json!({"command": "grant", "grantId": id, "userId": user, "code": "late_op", "buildingBlock": "groups"})
                .to_string(),
        )
    };
    broker.produce(&commands, &[grant("g0", "grant-early")]);
    let early = shirts(&["s0", "s1", "s2", "s3"]);
    produced += early.len();
    broker.produce(&input, &early);

    // An invalid change is refused with its file and line, and publishes nothing.
    let bad_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        bad_dir.path().join("broken.toml"),
        format!("{BASE}\n[[challenges]]\nid = 9\nname = \"No groups\"\ncategory = 77\n"),
    )
    .unwrap();
    let refused = questline(
        &["catalog", "push", bad_dir.path().to_str().unwrap()],
        &setup.config,
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("broken.toml"), "{}", text(&refused));

    // The change: files in, version 1 out, in force two seconds later (the test config's
    // activation delay).
    std::fs::write(
        catalog_dir.path().join("catalog.toml"),
        format!("{BASE}{ADDED}"),
    )
    .unwrap();
    let pushed = questline(
        &["catalog", "push", catalog_dir.path().to_str().unwrap()],
        &setup.config,
    );
    assert!(pushed.status.success(), "{}", text(&pushed));
    assert!(
        text(&pushed).contains("tenant 'default': published version 2"),
        "{}",
        text(&pushed)
    );
    let again = questline(
        &["catalog", "push", catalog_dir.path().to_str().unwrap()],
        &setup.config,
    );
    assert!(
        text(&again).contains("tenant 'default': unchanged (version 2)"),
        "{}",
        text(&again)
    );
    let log = questline(&["catalog", "log"], &setup.config);
    let versions: Vec<&str> = std::str::from_utf8(&log.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .collect();
    assert_eq!(
        versions.len(),
        2,
        "the files, then the change: {versions:?}"
    );
    let effective_from: chrono::DateTime<chrono::Utc> =
        versions[1].split('\t').nth(2).unwrap().parse().unwrap();

    // Actions keep flowing across the switch, then the late shirts find the new stock.
    for round in 3..8 {
        let batch = orders(&users, round);
        produced += batch.len();
        broker.produce(&input, &batch);
        std::thread::sleep(Duration::from_millis(400));
    }
    while chrono::Utc::now() < effective_from + chrono::Duration::milliseconds(200) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let late = shirts(&["s4", "s5", "s6"]);
    produced += late.len();
    broker.produce(&input, &late);
    // The same grant once the operation is in force: paid.
    broker.produce(&commands, &[grant("g1", "grant-late")]);
    broker.wait_committed(
        &setup.names.group(),
        &commands,
        PARTITIONS,
        2,
        Duration::from_secs(60),
        logs,
    );
    let group = setup.names.group();
    broker.wait_committed(
        &group,
        &input,
        PARTITIONS,
        produced as i64,
        Duration::from_secs(90),
        logs,
    );
    let rewards = || {
        broker.drain(
            &[setup.topic("rewards")],
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
    };
    wait_until(
        Duration::from_secs(60),
        "every shirt to be decided",
        || {
            rewards()
                .iter()
                .filter(|r| {
                    r["value"]["rewardType"] == "tshirt"
                        && matches!(
                            r["value"]["type"].as_str(),
                            Some("reward.granted" | "reward.rejected")
                        )
                })
                .count()
                >= 7
        },
        logs,
    );
    for worker in [&first, &second] {
        let applied: Vec<i64> = worker
            .log_events("catalog version applied")
            .iter()
            .filter_map(|e| e["fields"]["version"].as_i64())
            .collect();
        assert_eq!(applied, [1, 2], "{}", worker.log_text());
    }

    // Every event names the version in force at its record's timestamp.
    let inputs = broker.drain(
        std::slice::from_ref(&input),
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    let stamped: BTreeMap<(i64, i64), i64> = inputs
        .iter()
        .map(|r| {
            (
                (
                    r["partition"].as_i64().unwrap(),
                    r["offset"].as_i64().unwrap(),
                ),
                r["timestamp"].as_i64().unwrap(),
            )
        })
        .collect();
    let cut = effective_from.timestamp_millis();
    let outputs = broker.drain(
        &[setup.topic("progress"), setup.topic("rewards")],
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    let mut partitions_by_version: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    for record in &outputs {
        let event = &record["value"];
        let source = &event["source"];
        if source["topic"] != input.as_str() {
            continue; // a command, or an inventory answer: checked below and through replay
        }
        let key = (
            source["partition"].as_i64().unwrap(),
            source["offset"].as_i64().unwrap(),
        );
        let version = event["catalogVersion"].as_i64().unwrap();
        let expected = 1 + i64::from(stamped[&key] >= cut);
        assert_eq!(version, expected, "{event}");
        partitions_by_version
            .entry(version)
            .or_default()
            .insert(key.0);
        if event["challengeId"] == 4 {
            assert_eq!(version, 2, "challenge 4 exists from version 2 on: {event}");
        }
    }
    assert!(
        partitions_by_version.get(&2).is_some_and(|p| p.len() >= 2),
        "version 2 applied on partitions of both workers: {partitions_by_version:?}"
    );
    let operation_grants: Vec<&Value> = outputs
        .iter()
        .map(|r| &r["value"])
        .filter(|e| e["type"] == "reward.granted" && e["reason"]["kind"] == "operation")
        .collect();
    assert_eq!(operation_grants.len(), 1, "{operation_grants:?}");
    assert_eq!(
        (
            operation_grants[0]["userId"].as_str(),
            operation_grants[0]["amount"].as_i64(),
            operation_grants[0]["catalogVersion"].as_i64()
        ),
        (Some("g1"), Some(3), Some(2))
    );
    let dead = broker.drain(
        &[setup.topic("dead-letter")],
        Duration::from_secs(1),
        Duration::from_secs(30),
    );
    assert!(
        dead.iter()
            .any(|r| r["value"]["userId"] == "g0" && r["value"]["field"] == "code"),
        "the early grant is a dead letter naming the code: {dead:?}"
    );
    let shirts_granted: BTreeSet<String> = outputs
        .iter()
        .map(|r| &r["value"])
        .filter(|e| e["type"] == "reward.granted" && e["rewardType"] == "tshirt")
        .map(|e| e["userId"].as_str().unwrap().to_string())
        .collect();
    let late_users: BTreeSet<String> = ["s4", "s5", "s6"].iter().map(|s| s.to_string()).collect();
    assert_eq!(
        shirts_granted.len(),
        5,
        "two, then three: {shirts_granted:?}"
    );
    assert!(
        shirts_granted.is_superset(&late_users),
        "{shirts_granted:?}"
    );

    // Replay: the catalog topic first, then what the workers consumed.
    assert_eq!(first.terminate(Duration::from_secs(20)), Some(0));
    assert_eq!(second.terminate(Duration::from_secs(20)), Some(0));
    let idle = Duration::from_secs(2);
    let limit = Duration::from_secs(30);
    let dump = [
        setup.topic("catalog"),
        input.clone(),
        setup.topic("commands"),
        setup.topic("inventory-requests"),
        setup.topic("inventory-responses"),
    ]
    .iter()
    .map(|topic| broker.dump(std::slice::from_ref(topic), idle, limit))
    .collect::<String>();
    let dump_file = setup.dir.path().join("dump.jsonl");
    std::fs::write(&dump_file, dump).unwrap();
    let kinds = ["reward.granted", "reward.rejected", "milestone.achieved"];
    let replayed = replay_dump(&setup.config, &dump_file, &kinds);
    let (worker_events, _) = by_event_id(
        &outputs
            .iter()
            .filter(|r| kinds.iter().any(|k| r["value"]["type"] == *k))
            .cloned()
            .collect::<Vec<Value>>(),
    );
    assert_same_events(&replayed, &worker_events);
}

/// The catalog log's reader on a broker restarted with nothing (tansu in memory): it reads
/// again once the broker is back, the lost topic read as "no versions", and the process lives.
/// Run in this process: the reader used to keep its partition assigned between reads, and
/// librdkafka's background fetch of the vanished topic then crashed the process (SIGSEGV in
/// `rd_kafka_metadata_cache_find`, on the restarted broker's answer), which fails this test
/// with the signal.
#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_reader_outlives_a_broker_restart_that_loses_the_topic() {
    use questline::kafka::{ensure_catalog_topic, KafkaCatalogLog};
    use questline::pipeline::catalog_feed::CatalogLog;
    use questline::settings::KafkaSettings;
    let Some(mut tansu) = PrivateTansu::start() else {
        eprintln!("skipped: no tansu binary (run scripts/test, which installs it)");
        return;
    };
    let names = Names::new("catalog-restart");
    let topic = names.topic("catalog");
    // Fetches every 20 ms, as the test workers' configuration has them (`Setup`): a fetch is
    // then all but sure to reach the restarted broker before librdkafka learns the topic went.
    let settings = KafkaSettings {
        brokers: tansu.addr.to_string(),
        group_id: names.group(),
        properties: [("fetch.wait.max.ms".to_string(), "20".to_string())].into(),
        ..KafkaSettings::default()
    };
    ensure_catalog_topic(&settings, &topic).await.unwrap();
    let producer = questline::kafka::producer(&settings).unwrap();
    let log = KafkaCatalogLog::connect(&settings, &topic, producer).unwrap();
    log.append("kwegg/1/a", b"version 1".to_vec())
        .await
        .unwrap();
    let read = log.read_from(0).await.unwrap();
    assert_eq!(read, vec![(0, b"version 1".to_vec())]);

    tansu.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tansu.restart();
    // Read as the catalog feed follows (every `catalog.refresh_ms`) through the seconds in
    // which librdkafka reconnects; then the reads answer again.
    let restarted = std::time::Instant::now();
    let mut last = None;
    while restarted.elapsed() < Duration::from_secs(30) {
        let read = log.read_from(0).await;
        let settled = restarted.elapsed() > Duration::from_secs(3);
        let answered = read.is_ok();
        last = Some(read);
        if settled && answered {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    match last {
        Some(Ok(records)) => assert!(records.is_empty(), "the topic went: {records:?}"),
        other => panic!(
            "the reader did not read again after the restart: {other:?}\ntansu log:\n{}",
            tansu.log()
        ),
    }
}
