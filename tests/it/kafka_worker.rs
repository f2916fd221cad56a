//! The Kafka worker against a real broker (tansu, started by scripts/test): the real binary,
//! an independent client on the other side.

use crate::support::kafka::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn line(v: Value) -> String {
    v.to_string()
}

#[test]
fn seed_kickapps_and_kwegg_shapes_become_the_expected_events() {
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "shapes", 2);
    setup.create_all_topics(&broker, 2);
    let worker = setup.spawn_worker(None);
    // The seed's walk-through, on the seed's own shape.
    broker.produce(
        &setup.topic("questline.actions"),
        &[200, 300, 500]
            .iter()
            .map(|v| {
                (
                    "151631".to_string(),
                    line(json!({"userId": "151631", "triggerId": 1, "value": v})),
                )
            })
            .collect::<Vec<_>>(),
    );
    // KickApps: five forum comments win a limited t-shirt.
    broker.produce(
        &setup.topic("kickapps.user-actions"),
        &[(
            "kick-1".to_string(),
            line(json!({"user_id": "kick-1", "actionId": "post_comment", "location": "forum", "quantity": 5})),
        )],
    );
    // The default tenant's "Foodie" challenge, by trigger key on the seed's shape: three food
    // orders (the inactive reward type's prize rejected, 30 points granted).
    broker.produce(
        &setup.topic("questline.actions"),
        &(0..3)
            .map(|_| {
                (
                    "12".to_string(),
                    line(json!({"userId": "12", "triggerId": "order_food"})),
                )
            })
            .collect::<Vec<_>>(),
    );
    // Kwegg: an occurrence on the Kwegg mapping's topic is the `kwegg` tenant's, paid by its
    // earning rules (a 20-minute video: 200 coins); the Kwegg test below has the
    // rest of the rules.
    broker.produce(
        &setup.topic("kwegg.events"),
        &[(
            "k-1".to_string(),
            line(json!({"userId": "k-1", "event": {"name": "WATCHED_VIDEO", "params": {"duration": 20}}})),
        )],
    );
    // rewards: milestone + grant for the seed's user and for KickApps (the t-shirt after its
    // inventory round trip), milestone + rejection + grant for the food orders, the Kwegg grant.
    let rewards = broker.consume(&[setup.topic("rewards")], 8, Duration::from_secs(30));
    assert_eq!(rewards.len(), 8, "{rewards:#?}");
    let milestones: BTreeSet<(String, u64)> = of_type(&rewards, "milestone.achieved")
        .iter()
        .map(|r| {
            (
                r["value"]["userId"].as_str().unwrap().to_string(),
                r["value"]["challengeId"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        milestones,
        BTreeSet::from([("151631".into(), 1), ("kick-1".into(), 5), ("12".into(), 8)]),
        "{rewards:#?}"
    );
    let granted: BTreeMap<(String, String), Value> = of_type(&rewards, "reward.granted")
        .iter()
        .map(|r| {
            let v = &r["value"];
            let user = v["userId"].as_str().unwrap().to_string();
            (
                (user, v["rewardType"].as_str().unwrap().to_string()),
                v.clone(),
            )
        })
        .collect();
    let grant = |user: &str, kind: &str| &granted[&(user.to_string(), kind.to_string())];
    assert_eq!(grant("151631", "voucher_burger")["code"], "BURGER-0001");
    assert_eq!(grant("kick-1", "tshirt")["amount"], 1);
    assert_eq!(grant("12", "points")["amount"], 30);
    assert_eq!(grant("12", "points")["tenant"], "default");
    let coins = grant("k-1", "points");
    assert_eq!(coins["tenant"], "kwegg");
    assert_eq!(coins["amount"], 200);
    assert_eq!(
        coins["reason"],
        json!({"kind": "rule", "event": "WATCHED_VIDEO", "rule": "rule-2", "priority": 2})
    );
    let rejected = of_type(&rewards, "reward.rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["value"]["reason"], "inactive");
    // Keyed by user, with the event id and type as headers too.
    for r in &rewards {
        assert_eq!(r["key"], r["value"]["userId"]);
        assert_eq!(r["headers"]["questline-event-id"], r["value"]["eventId"]);
        assert_eq!(r["headers"]["questline-event-type"], r["value"]["type"]);
    }
    // The last progress event of the seed's user shows the walk-through's end state.
    let progress = broker.consume(&[setup.topic("progress")], 100, Duration::from_secs(3));
    let last = progress
        .iter()
        .rev()
        .find(|r| r["value"]["userId"] == "151631")
        .expect("progress for the seed's user");
    assert_eq!(last["value"]["accumulated"], 1000);
    assert_eq!(last["value"]["actionLeft"], 0);
    assert_eq!(last["value"]["progress"], 100);
    assert_eq!(
        worker.terminate(Duration::from_secs(20)),
        Some(0),
        "SIGTERM exits 0"
    );
}

#[test]
fn poison_records_go_to_the_dead_letter_topic_and_the_good_ones_around_them_are_processed() {
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "poison", 1);
    setup.create_all_topics(&broker, 1);
    let worker = setup.spawn_worker(None);
    let big = format!(
        "{{\"userId\": \"p\", \"triggerId\": 1, \"pad\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let records = vec![
        (
            "p".to_string(),
            line(json!({"userId": "p", "triggerId": 1, "value": 100})),
        ),
        ("p".to_string(), "this is not JSON".to_string()),
        ("p".to_string(), big),
        (
            "p".to_string(),
            line(json!({"userId": "p", "triggerId": 1, "value": "a lot"})),
        ),
        (
            "p".to_string(),
            line(json!({"userId": "p", "triggerId": 4242, "value": 1})),
        ),
        (
            "p".to_string(),
            line(json!({"userId": "p", "triggerId": 1, "value": 150})),
        ),
    ];
    broker.produce_with_headers(
        &setup.topic("questline.actions"),
        &records,
        &[("traceparent", "00-4bf92f3577b34da6-01")],
    );
    let dead = broker.consume(&[setup.topic("dead-letter")], 4, Duration::from_secs(30));
    assert_eq!(dead.len(), 4, "{dead:#?}");
    let reasons: Vec<&str> = dead
        .iter()
        .map(|r| r["value"]["reason"].as_str().unwrap())
        .collect();
    assert!(reasons[0].starts_with("record: not JSON"), "{reasons:?}");
    assert!(reasons[1].contains("exceeds the limit"), "{reasons:?}");
    assert!(reasons[2].starts_with("value:"), "{reasons:?}");
    assert!(reasons[3].contains("unknown trigger '4242'"), "{reasons:?}");
    assert_eq!(dead[0]["value"]["original"], "this is not JSON");
    // The typed kind of each, as a header (and the dead-letter metric's label).
    let kinds: Vec<&str> = dead
        .iter()
        .map(|r| r["headers"]["questline-reject-kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds[..4],
        ["not_json", "too_large", "mapping", "unknown_trigger"],
        "{kinds:?}"
    );
    for (i, r) in dead.iter().enumerate() {
        assert_eq!(r["headers"]["questline-reason"], r["value"]["reason"]);
        assert_eq!(
            r["headers"]["questline-source-topic"],
            setup.topic("questline.actions")
        );
        assert_eq!(r["headers"]["questline-source-offset"], (i + 1).to_string());
        // The original key and headers, and Kafka Connect's names for the same facts.
        assert_eq!(r["key"], "p");
        assert_eq!(r["headers"]["traceparent"], "00-4bf92f3577b34da6-01");
        assert_eq!(
            r["headers"]["__connect.errors.topic"],
            setup.topic("questline.actions")
        );
        assert_eq!(r["headers"]["__connect.errors.partition"], "0");
        assert_eq!(r["headers"]["__connect.errors.offset"], (i + 1).to_string());
        assert_eq!(
            r["headers"]["__connect.errors.exception.message"],
            r["value"]["reason"]
        );
    }
    let progress = broker.consume(&[setup.topic("progress")], 2, Duration::from_secs(10));
    let accumulated: Vec<&Value> = progress
        .iter()
        .map(|r| &r["value"]["accumulated"])
        .collect();
    assert_eq!(
        accumulated.last().map(|v| (*v).clone()),
        Some(json!(250)),
        "good records on both sides processed"
    );
    assert_eq!(worker.terminate(Duration::from_secs(20)), Some(0));
}

/// Issue: an output larger than the producer or broker accepts was retried forever — the
/// partition stopped and nothing committed, across restarts. Here the worker's producer takes
/// records of up to 100 kB, and a 200 kB poison record makes a dead letter that carries it
/// whole: that dead letter is refused, a small one stands in for it, and the partition commits
/// past it.
#[test]
fn an_output_larger_than_the_producer_accepts_becomes_a_small_dead_letter_and_the_partition_commits(
) {
    let Some(broker) = broker() else { return };
    let setup = Setup::with_options(
        &broker,
        "oversize",
        1,
        Options {
            properties: vec![("message.max.bytes".into(), "100000".into())],
            ..Options::default()
        },
    );
    setup.create_all_topics(&broker, 1);
    let worker = setup.spawn_worker(None);
    let input = setup.topic("questline.actions");
    let records = vec![
        (
            "big".to_string(),
            line(json!({"userId": "big", "triggerId": 1, "value": 100})),
        ),
        ("big".to_string(), "y".repeat(200_000)),
        (
            "big".to_string(),
            line(json!({"userId": "big", "triggerId": 1, "value": 150})),
        ),
    ];
    broker.produce(&input, &records);
    broker.wait_committed(
        &setup.names.group(),
        &input,
        1,
        3,
        Duration::from_secs(30),
        || worker.log_text(),
    );
    let dead = broker.drain(
        &[setup.topic("dead-letter")],
        Duration::from_secs(2),
        Duration::from_secs(20),
    );
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let letter = &dead[0]["value"];
    let reason = letter["reason"].as_str().unwrap();
    let bytes: usize = reason
        .strip_prefix("output too large: ")
        .and_then(|r| r.strip_suffix(" bytes"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("reason {reason}"));
    assert!(bytes > 200_000, "{reason}");
    assert_eq!(dead[0]["headers"]["questline-reason"], reason);
    assert_eq!(dead[0]["headers"]["questline-source-offset"], "1");
    assert_eq!(letter["output"]["type"], "dead_letter");
    assert_eq!(letter["output"]["topic"], setup.topic("dead-letter"));
    assert_eq!(letter["source"]["topic"], input);
    assert_eq!(letter["source"]["offset"], 1);
    assert!(letter["original"].as_str().unwrap().len() <= 1024);
    assert!(
        !worker
            .log_events("output refused as too large; publishing a dead letter in its place")
            .is_empty(),
        "{}",
        worker.log_text()
    );
    // The records on both sides of it were processed.
    let progress = broker.drain(
        &[setup.topic("progress")],
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    assert_eq!(
        progress.last().map(|r| r["value"]["accumulated"].clone()),
        Some(json!(250)),
        "{progress:#?}"
    );
    assert_eq!(worker.terminate(Duration::from_secs(20)), Some(0));
}

/// A user's actions, commands and internal records meet by partition number: a worker whose
/// topics differ in partition count would split users' state, so it refuses to start, naming
/// every topic's count, with the configuration exit code.
#[test]
fn topics_with_different_partition_counts_refuse_startup() {
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "copartition", 4);
    setup.create_all_topics(&broker, 4);
    let odd = setup.topic("kwegg.events");
    // Created before the others' creation at startup would make it match: 2 partitions.
    let renamed = format!("{odd}-2");
    broker.create_topics(2, std::slice::from_ref(&renamed));
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace(&format!("\"{odd}\""), &format!("\"{renamed}\""));
    let mappings = setup.dir.path().join("mappings/kwegg.toml");
    let mapping = std::fs::read_to_string(&mappings)
        .unwrap()
        .replace(&format!("\"{odd}\""), &format!("\"{renamed}\""));
    std::fs::write(&mappings, mapping).unwrap();
    std::fs::write(&setup.config, text).unwrap();
    let mut worker = setup.spawn_worker(None);
    let code = worker.wait(Duration::from_secs(60));
    let log = worker.log_text();
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("not co-partitioned"), "{log}");
    assert!(log.contains(&format!("'{renamed}' has 2")), "{log}");
    assert!(
        log.contains(&format!("'{}' has 4", setup.topic("questline.actions"))),
        "{log}"
    );
}

/// The embedded store keeps state on one machine: a second worker in the same group would
/// take partitions over from an empty store. Once the group has been shared longer than the
/// grace, a worker stops with the configuration exit code and says to use ScyllaDB.
#[test]
fn a_group_shared_by_two_workers_on_the_embedded_store_is_refused() {
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "exclusive", 4);
    setup.create_all_topics(&broker, 4);
    let text = std::fs::read_to_string(&setup.config).unwrap();
    assert!(text.contains("[store]\n"), "{text}");
    std::fs::write(
        &setup.config,
        text.replace("[store]\n", "[store]\nexclusive_grace_seconds = 2\n"),
    )
    .unwrap();
    let mut first = setup.spawn_worker(None);
    let second_store = setup.dir.path().join("second-store");
    let mut second = setup.spawn_worker(Some(&second_store));
    // Both see a short assignment; at least one stops once the grace is over (the other may
    // get every partition back when it leaves, and then goes on alone).
    let deadline = Instant::now() + Duration::from_secs(90);
    let (code, log) = loop {
        if let Some(code) = first.wait(Duration::from_millis(200)) {
            break (Some(code), first.log_text());
        }
        if let Some(code) = second.wait(Duration::from_millis(200)) {
            break (Some(code), second.log_text());
        }
        if Instant::now() > deadline {
            break (
                None,
                format!("{}\n---\n{}", first.log_text(), second.log_text()),
            );
        }
    };
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("shares its partitions with another"), "{log}");
    assert!(
        log.contains("use store.kind = ") && log.contains("scylla"),
        "{log}"
    );
    for worker in [first, second] {
        let _ = worker.terminate(Duration::from_secs(20));
    }
}

/// One Kwegg occurrence as `(key, JSON, record timestamp in ms)`: `event.occurredAt` and the
/// record's own timestamp are both `at`, so event time is what the record says, days apart,
/// within the tenant's allowed lateness.
fn occurrence(
    user: &str,
    name: &str,
    params: Option<Value>,
    at: chrono::DateTime<chrono::Utc>,
) -> (String, String, i64) {
    let mut event = json!({"name": name, "occurredAt": at.to_rfc3339()});
    if let Some(params) = params {
        event["params"] = params;
    }
    (
        user.to_string(),
        line(json!({"userId": user, "event": event})),
        at.timestamp_millis(),
    )
}

/// Issue 12: Kwegg-shaped records through the shipped `mappings/kwegg.toml`, on its topic,
/// are the `kwegg` tenant's event occurrences (`examples/catalog/kwegg.toml`): each pays by the
/// first matching rule (both of the seed's rule examples), a frequency cap pays once a day by
/// event time, a two-a-day streak pays once at the end of its tenth day; a missing mandatory
/// parameter and an event the tenant does not define are dead letters naming the field.
#[test]
fn kwegg_records_pay_by_the_kwegg_tenants_rules_caps_and_streaks() {
    use chrono::{Duration as Days, TimeZone, Utc};
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "kwegg", 2);
    setup.create_all_topics(&broker, 2);
    let worker = setup.spawn_worker(None);
    // Noon in Kolkata, the tenant's time zone, so two opens an hour apart share a day.
    let noon = Utc.with_ymd_and_hms(2026, 11, 1, 6, 30, 0).unwrap();
    let hours = Days::hours;
    let mut records = Vec::new();
    for duration in [10, 20, 30, 5] {
        let params = json!({"duration": duration});
        records.push(occurrence("video", "WATCHED_VIDEO", Some(params), noon));
    }
    for params in [
        json!({"type": "PRANK"}),
        json!({"type": "RECIPE", "duration": 5}),
        json!({"type": "RECIPE", "duration": 15}),
        json!({"type": "SPORT"}),
    ] {
        records.push(occurrence(
            "typed",
            "VIDEO_WATCHED_BY_TYPE",
            Some(params),
            noon,
        ));
    }
    // The same product reviewed twice: `params.id` is no idempotency key.
    for _ in 0..2 {
        let params = json!({"id": "1234"});
        records.push(occurrence("review", "REVIEW_WRITTEN", Some(params), noon));
    }
    // Once per day, rolling: at noon, an hour later (capped) and a day and an hour later.
    for h in [0, 1, 25] {
        records.push(occurrence(
            "checkin",
            "DAILY_CHECK_IN",
            None,
            noon + hours(h),
        ));
    }
    // Two opens a day for ten days: 100 coins once, at the last open.
    for day in 0..10 {
        for h in [0, 1] {
            let at = noon + Days::days(day) + hours(h);
            let params = json!({"platform": "android"});
            records.push(occurrence("streak", "APP_OPENED", Some(params), at));
        }
    }
    records.push(occurrence("bad", "WATCHED_VIDEO", Some(json!({})), noon));
    records.push(occurrence("bad", "product_viewed", None, noon));
    broker.produce_at(&setup.topic("kwegg.events"), &records);

    let rewards = broker.consume(&[setup.topic("rewards")], 13, Duration::from_secs(30));
    let dead = broker.consume(&[setup.topic("dead-letter")], 2, Duration::from_secs(10));
    // Nothing else comes: the capped check-in and the streak's first 19 opens pay nothing.
    let more = broker.drain(
        &[setup.topic("rewards")],
        Duration::from_secs(2),
        Duration::from_secs(10),
    );
    assert_eq!(more.len(), 13, "{more:#?}");
    assert_eq!(
        worker.terminate(Duration::from_secs(20)),
        Some(0),
        "SIGTERM exits 0"
    );

    // Every grant is the kwegg tenant's, for a rule; per user in the order of its records.
    let mut paid: BTreeMap<String, Vec<(u64, String, String)>> = BTreeMap::new();
    for r in &rewards {
        let v = &r["value"];
        assert_eq!(v["type"], "reward.granted", "{v}");
        assert_eq!(v["tenant"], "kwegg", "{v}");
        assert_eq!(v["reason"]["kind"], "rule", "{v}");
        paid.entry(v["userId"].as_str().unwrap().to_string())
            .or_default()
            .push((
                v["amount"].as_u64().unwrap(),
                v["reason"]["rule"].as_str().unwrap().to_string(),
                v["occurredAt"].as_str().unwrap().to_string(),
            ));
    }
    let at = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let rules = |user: &str| -> Vec<(u64, &str)> {
        paid[user]
            .iter()
            .map(|(a, r, _)| (*a, r.as_str()))
            .collect()
    };
    assert_eq!(
        rules("video"),
        [
            (100, "rule-1"),
            (200, "rule-2"),
            (500, "rule-3"),
            (50, "default")
        ]
    );
    assert_eq!(
        rules("typed"),
        [
            (100, "prank"),
            (200, "short_recipe"),
            (500, "recipe"),
            (50, "default")
        ]
    );
    assert_eq!(rules("review"), [(10, "default"), (10, "default")]);
    let checkins: Vec<(u64, String)> = paid["checkin"]
        .iter()
        .map(|(a, _, t)| (*a, t.clone()))
        .collect();
    assert_eq!(checkins, [(5, at(noon)), (5, at(noon + hours(25)))]);
    let streak: Vec<(u64, String)> = paid["streak"]
        .iter()
        .map(|(a, _, t)| (*a, t.clone()))
        .collect();
    assert_eq!(streak, [(100, at(noon + Days::days(9) + hours(1)))]);
    assert_eq!(paid.len(), 5, "{paid:#?}");

    let mut fields: Vec<(String, String)> = dead
        .iter()
        .map(|r| {
            let v = &r["value"];
            (
                v["field"].as_str().unwrap().to_string(),
                v["tenant"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            ("params.duration".to_string(), "kwegg".to_string()),
            ("triggerId".to_string(), "kwegg".to_string())
        ]
    );
}
