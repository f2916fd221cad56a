//! Two `questline run` workers in one consumer group against the real broker (tansu), sharing
//! one CQL store (the dev CQL server): each action is evaluated exactly once across them, and
//! when one leaves cleanly mid-stream the survivor takes its partitions and nothing is lost or
//! duplicated.
//!
//! The expected events come from the pure engine fed the input records with their real
//! coordinates, read back from the input topic (event ids derive from them). The catalog is
//! `tests/kafka/catalog.toml`: per-user challenges only — no inventories, winner limits, caps or
//! date windows — so a user's events depend only on that user's own actions in their
//! partition's order, which holds however partitions move between workers. (With shared stock
//! the order in which two workers' users reach the inventory stage would decide who wins, and
//! no single expected set would exist.)

use crate::support::cql::fresh_keyspace;
use crate::support::kafka::*;
use questline::store::scylla::{ScyllaOptions, ScyllaStore};
use questline::store::{StateStore, UserKey};
use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
const USERS: usize = 200;
const ACTIONS: usize = 2_000;

#[test]
fn two_workers_split_the_partitions_and_a_clean_leave_mid_stream_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let Some(broker) = broker() else { return };
    let Some(node) = cql_node() else { return };
    let setup = Setup::with_options(
        &broker,
        "group",
        PARTITIONS,
        Options {
            catalog: unlimited_catalog(),
            store: StoreChoice::Cql {
                node,
                keyspace: fresh_keyspace("ql_group"),
            },
            batch_size: 100,
            linger_ms: 5,
            ..Options::default()
        },
    );
    setup.create_all_topics(&broker, PARTITIONS);
    setup.migrate();
    let input = setup.topic("questline.actions");
    let group = setup.names.group();
    let actions = actions(ACTIONS, USERS, 3);
    let (first, second) = actions.split_at(ACTIONS / 2);

    let a = setup.spawn_worker(None);
    let b = setup.spawn_worker(None);
    let logs = |workers: &[&WorkerProcess]| {
        workers
            .iter()
            .map(|w| format!("--- {}\n{}", w.log.display(), w.log_text()))
            .collect::<String>()
    };
    // Both members hold two partition numbers (of every topic) before anything is produced.
    wait_until(
        Duration::from_secs(30),
        "both workers to hold two partitions each",
        || {
            let (sa, sb) = (a.assignment(), b.assignment());
            matches!((&sa, &sb), (Some(x), Some(y)) if x.len() == 2 && y.len() == 2 && x.is_disjoint(y))
        },
        || logs(&[&a, &b]),
    );

    // Phase 1: both workers, half the actions.
    broker.produce_unbatched(&input, first);
    broker.wait_committed(
        &group,
        &input,
        PARTITIONS,
        first.len() as i64,
        Duration::from_secs(40),
        || logs(&[&a, &b]),
    );
    let inputs = broker.consume(
        std::slice::from_ref(&input),
        first.len(),
        Duration::from_secs(20),
    );
    assert_eq!(inputs.len(), first.len());
    let want = expected(
        &inputs,
        &unlimited_catalog(),
        &setup.dir.path().join("mappings/seed.toml"),
    );
    assert!(
        want.rewards.len() > 500,
        "the catalog should fire often: {}",
        want.rewards.len()
    );
    let rewards = broker.drain(
        &[setup.topic("rewards")],
        Duration::from_secs(2),
        Duration::from_secs(30),
    );
    let (got, copies) = by_event_id(&rewards);
    assert_eq!(copies, 0, "an event published twice by the two workers");
    assert_same_events(&got, &want.rewards);
    // Each evaluated the partitions it was assigned, and only those.
    assert_eq!(Some(a.partitions_taken()), a.assignment());
    assert_eq!(Some(b.partitions_taken()), b.assignment());

    // Phase 2: the rest, in chunks; worker A leaves (SIGTERM) while they are still coming.
    let (tx, rx) = mpsc::channel();
    let producer = {
        let broker = broker.clone();
        let input = input.clone();
        let second = second.to_vec();
        std::thread::spawn(move || {
            for (i, chunk) in second.chunks(100).enumerate() {
                broker.produce_unbatched(&input, chunk);
                let _ = tx.send(i);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    while rx.recv().unwrap() < 2 {}
    let a_log = a.log.clone();
    assert_eq!(
        a.terminate(Duration::from_secs(20)),
        Some(0),
        "SIGTERM: finish, commit, leave, exit 0"
    );
    producer.join().unwrap();
    broker.wait_committed(
        &group,
        &input,
        PARTITIONS,
        ACTIONS as i64,
        Duration::from_secs(40),
        || logs(&[&b]) + &std::fs::read_to_string(&a_log).unwrap_or_default(),
    );
    // The survivor took the leaver's partitions.
    assert_eq!(b.assignment().map(|s| s.len()), Some(4), "{}", logs(&[&b]));
    assert_eq!(b.partitions_taken(), BTreeSet::from([0, 1, 2, 3]));

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
    let (got, copies) = by_event_id(&rewards);
    assert_same_events(&got, &want.rewards);
    assert_eq!(
        copies,
        0,
        "events published twice across the leave\n{}",
        logs(&[&b])
    );
    assert_eq!(b.terminate(Duration::from_secs(20)), Some(0));
    // The totals: every user's state in the shared store equals the engine's (points
    // balance, progress, milestones), whichever member evaluated which of its actions.
    let StoreChoice::Cql { node, keyspace } = &setup.options.store else {
        unreachable!()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stored = runtime.block_on(async {
        let store = ScyllaStore::connect_with(ScyllaOptions::new(vec![node.clone()], keyspace))
            .await
            .unwrap();
        let keys: Vec<UserKey> = (0..USERS)
            .map(|u| UserKey::new("default", format!("u{u}")))
            .collect();
        store.load_users(&keys).await.unwrap()
    });
    for (u, record) in stored.into_iter().enumerate() {
        let user = format!("u{u}");
        assert_eq!(
            record.map(|r| r.state).as_ref(),
            want.engine.user("default", &user),
            "state of {user}"
        );
    }
    eprintln!("took {:?}", started.elapsed());
}
