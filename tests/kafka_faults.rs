//! Faults against Kafka: `kill -9` of the real `questline run` binary mid-stream (tansu), and
//! what the real broker cannot be told to do — a broker that goes down, requests that fail —
//! on librdkafka's in-process mock cluster, with the worker loop running in this process.
//!
//! Expected events and states come from the pure engine fed the same records at the same
//! coordinates, with the catalog of `tests/kafka/catalog.toml` (per-user challenges only, so
//! the outcome is independent of how users interleave across partitions; see its header). The
//! kill -9 test also runs the real `questline replay --records` on the input topic as the
//! independent client dumps it, and compares the milestones and grants by event id.

mod kafka_support;

use kafka_support::*;
use questline::core::engine::Engine;
use questline::store::embedded::EmbeddedStore;
use questline::store::{StateStore, UserKey};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;

/// Every user's stored state equals the engine's: nothing applied twice, nothing missed.
fn assert_states_match(store: &EmbeddedStore, engine: &Engine, users: usize) {
    let keys: Vec<UserKey> = (0..users)
        .map(|u| UserKey::new("default", format!("u{u}")))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stored = runtime.block_on(store.load_users(&keys)).unwrap();
    for (key, record) in keys.iter().zip(stored) {
        let want = engine.user(&key.tenant, &key.user_id);
        let got = record.map(|r| r.state);
        assert_eq!(got.as_ref(), want, "state of {}", key.user_id);
        if let Some(state) = &got {
            assert_eq!(
                state.balance("points"),
                want.unwrap().balance("points"),
                "points of {}",
                key.user_id
            );
        }
    }
}

#[test]
fn kill_9_mid_stream_twice_then_restart_on_the_same_store_loses_nothing_and_grants_nothing_twice() {
    let started = Instant::now();
    let Some(broker) = broker() else { return };
    const USERS: usize = 150;
    const ACTIONS: usize = 2_000;
    // The only member of its group: tansu never evicts a SIGKILLed member of a group of two
    // (TEST-SERVERS.md), so a survivor would wait forever; the restart takes its place.
    let setup = Setup::with_options(
        &broker,
        "kill9",
        PARTITIONS,
        Options {
            catalog: unlimited_catalog(),
            // Small batches: many commits per chunk, so a kill lands between and inside them.
            batch_size: 10,
            ..Options::default()
        },
    );
    setup.create_all_topics(&broker, PARTITIONS);
    let input = setup.topic("questline.actions");
    let group = setup.names.group();
    let actions = actions(ACTIONS, USERS, 9);

    // Three rounds: produce a chunk and kill -9 the worker the moment the producer is done,
    // while the worker is still working through the chunk; restart it on the same store.
    let mut worker = setup.spawn_worker(None);
    wait_until(
        Duration::from_secs(30),
        "the worker to be assigned",
        || worker.assignment().is_some(),
        || worker.log_text(),
    );
    let mut kills = Vec::new();
    for (round, chunk) in actions.chunks(ACTIONS / 4).enumerate() {
        wait_until(
            Duration::from_secs(30),
            "the (restarted) worker to be assigned",
            || worker.assignment().is_some(),
            || worker.log_text(),
        );
        broker.produce_unbatched(&input, chunk);
        if round == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        worker.kill9();
        let produced = (round + 1) * chunk.len();
        kills.push((broker.committed_total(&group, &input, PARTITIONS), produced));
        worker = setup.spawn_worker(None);
    }
    broker.wait_committed(
        &group,
        &input,
        PARTITIONS,
        ACTIONS as i64,
        Duration::from_secs(45),
        || worker.log_text(),
    );
    assert_eq!(worker.terminate(Duration::from_secs(20)), Some(0));
    // Mid-stream: at some kill the worker had not committed all that was produced.
    assert!(
        kills
            .iter()
            .any(|&(committed, produced)| committed < produced as i64),
        "(committed, produced) at the kills: {kills:?}"
    );

    let inputs = broker.consume(
        std::slice::from_ref(&input),
        ACTIONS,
        Duration::from_secs(20),
    );
    assert_eq!(inputs.len(), ACTIONS);
    let want = expected(
        &inputs,
        &unlimited_catalog(),
        &setup.dir.path().join("mappings/seed.toml"),
    );
    let rewards = broker.drain(
        &[setup.topic("rewards")],
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    // At least once: a re-published outbox repeats events, always with the same id and payload
    // (`by_event_id` checks); the distinct set is exactly the engine's.
    let (got, copies) = by_event_id(&rewards);
    assert_same_events(&got, &want.rewards);
    eprintln!(
        "{} events, {copies} repeated after the kills ((committed, produced) at the kills: {kills:?})",
        got.len()
    );
    // And `questline replay` itself (the real binary, the worker's configuration) on the input
    // topic as the independent client dumped it: the milestones and grants published across
    // the kills are exactly the replay's, ids and payloads — none lost, none twice.
    let dump = broker.dump(
        std::slice::from_ref(&input),
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    assert_eq!(dump.lines().count(), ACTIONS);
    // The catalog log first: the versions the worker evaluated with.
    let catalog = broker.dump(
        &[setup.topic("catalog")],
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    let dump_file = setup.dir.path().join("input-dump.jsonl");
    std::fs::write(&dump_file, catalog + &dump).unwrap();
    const KINDS: [&str; 2] = ["milestone.achieved", "reward.granted"];
    let replayed = replay_dump(&setup.config, &dump_file, &KINDS);
    let published: BTreeMap<String, Value> = got
        .iter()
        .filter(|(_, event)| KINDS.iter().any(|k| event["type"] == *k))
        .map(|(id, event)| (id.clone(), event.clone()))
        .collect();
    for kind in KINDS {
        assert!(
            replayed.values().any(|e| e["type"] == kind),
            "replay emitted no {kind}"
        );
    }
    assert_same_events(&published, &replayed);
    eprintln!(
        "{} milestones and grants, the same as `questline replay --records` on the dump",
        replayed.len()
    );
    // And the state: no grant applied twice, none missed.
    let store = EmbeddedStore::open(setup.store_dir()).unwrap();
    assert_states_match(&store, &want.engine, USERS);
    eprintln!("took {:?}", started.elapsed());
}
