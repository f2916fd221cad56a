//! `questline replay --records` reproduces the worker, winners included: the real worker runs
//! on tansu with the example catalog while many users race for limited rewards (a challenge
//! with two winner slots, a pool of three voucher codes), then the real `replay --records`
//! runs on a dump of every topic the worker consumed — the input topic and the internal
//! inventory topics — and must name the same winners, with the same event ids and codes.
//!
//! Without the internal topics a replay can only guess the order in which requests for one
//! resource reached its owner; with them it applies the order the worker applied, because both
//! run the same record step (`core::step`).

use crate::support::kafka::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;

const PARTITIONS: i32 = 4;
const USERS: usize = 40;

/// `(user, reward type, code)` of grants, and `(user, reward type, reason)` of rejections, of
/// the limited reward types.
fn winners(events: impl IntoIterator<Item = Value>) -> (BTreeSet<String>, BTreeSet<String>) {
    let limited = ["tshirt", "voucher_burger"];
    let mut granted = BTreeSet::new();
    let mut rejected = BTreeSet::new();
    for e in events {
        let kind = e["rewardType"].as_str().unwrap_or_default();
        if !limited.contains(&kind) {
            continue;
        }
        let user = e["userId"].as_str().unwrap_or_default();
        match e["type"].as_str() {
            Some("reward.granted") => {
                granted.insert(format!("{} {user} {kind} {}", e["eventId"], e["code"]));
            }
            Some("reward.rejected") => {
                rejected.insert(format!("{} {user} {kind} {}", e["eventId"], e["reason"]));
            }
            _ => {}
        }
    }
    (granted, rejected)
}

#[test]
fn replay_of_every_consumed_topic_names_the_workers_winners() {
    let Some(broker) = broker() else { return };
    let setup = Setup::new(&broker, "replay-winners", PARTITIONS);
    setup.create_all_topics(&broker, PARTITIONS);
    let input = setup.topic("questline.actions");
    let requests = setup.topic("inventory-requests");
    let responses = setup.topic("inventory-responses");
    // Every user completes the limited challenge (5 × trigger 20, two winners) and earns the
    // burger voucher (1000 points, three codes), interleaved so users race across partitions.
    let mut records = Vec::new();
    for round in 0..5 {
        for u in 0..USERS {
            let user = format!("u{u}");
            records.push((
                user.clone(),
                json!({"userId": user, "triggerId": 20, "location": "forum", "value": 1})
                    .to_string(),
            ));
            if round == 4 {
                records.push((
                    user.clone(),
                    json!({"userId": user, "triggerId": 1, "value": 1000}).to_string(),
                ));
            }
        }
    }
    let worker = setup.spawn_worker(None);
    wait_until(
        Duration::from_secs(30),
        "the worker to be assigned",
        || worker.assignment().is_some(),
        || worker.log_text(),
    );
    broker.produce(&input, &records);
    let group = setup.names.group();
    broker.wait_committed(
        &group,
        &input,
        PARTITIONS,
        records.len() as i64,
        Duration::from_secs(60),
        || worker.log_text(),
    );
    // The inventory traffic settles after the inputs: wait until every response is consumed.
    let published = || {
        broker.drain(
            &[setup.topic("rewards")],
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
    };
    wait_until(
        Duration::from_secs(60),
        "every limited prize to be decided",
        || {
            let (granted, rejected) = winners(published().into_iter().map(|r| r["value"].clone()));
            granted.len() + rejected.len() >= 2 * USERS
        },
        || worker.log_text(),
    );
    let response_count = broker
        .drain(
            std::slice::from_ref(&responses),
            Duration::from_secs(1),
            Duration::from_secs(20),
        )
        .len();
    broker.wait_committed(
        &group,
        &responses,
        PARTITIONS,
        response_count as i64,
        Duration::from_secs(60),
        || worker.log_text(),
    );
    assert_eq!(worker.terminate(Duration::from_secs(20)), Some(0));

    let (worker_granted, worker_rejected) =
        winners(published().into_iter().map(|r| r["value"].clone()));
    // Two t-shirt winners and three vouchers: the race was real and the stock held.
    let count =
        |set: &BTreeSet<String>, kind: &str| set.iter().filter(|l| l.contains(kind)).count();
    assert_eq!(count(&worker_granted, " tshirt "), 2, "{worker_granted:#?}");
    assert_eq!(
        count(&worker_granted, " voucher_burger "),
        3,
        "{worker_granted:#?}"
    );
    assert_eq!(worker_rejected.len(), 2 * USERS - 5, "{worker_rejected:#?}");

    // The dump, in the order a replay needs: inputs, then requests, then their answers (each
    // owner's records stay in offset order within each topic).
    let idle = Duration::from_secs(2);
    let limit = Duration::from_secs(30);
    let dump = [&input, &requests, &responses]
        .iter()
        .map(|topic| broker.dump(std::slice::from_ref(*topic), idle, limit))
        .collect::<String>();
    let dump_file = setup.dir.path().join("dump.jsonl");
    std::fs::write(&dump_file, dump).unwrap();
    let replayed = replay_dump(
        &setup.config,
        &dump_file,
        &["reward.granted", "reward.rejected"],
    );
    let (replay_granted, replay_rejected) = winners(replayed.into_values());
    assert_eq!(replay_granted, worker_granted, "the same winners and codes");
    assert_eq!(replay_rejected, worker_rejected, "the same losers");
}
