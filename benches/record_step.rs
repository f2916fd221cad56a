//! The worker's record step on one core: what its main thread does with a batch of one
//! partition's consumed records (`Partition::process`): decode and map each record, evaluate
//! it for its user, serialize the touched users' rows, the events' JSON and the history rows,
//! and build the outbox. Actions/s here is what one core spends per action before the store
//! and the broker take over (targets and latest figures in docs/benchmarks.md).
//!
//! Why a bench of its own: this step is half of the worker's CPU end to end, and
//! `scripts/bench` moves by ±10 % from run to run on a shared machine, so a change of a few
//! percent there is invisible; here it is not.
//!
//! The workload is `scripts/bench`'s: the example catalog, the seed mapping, 10,000 users
//! over four partitions, native actions alternating triggers 1 and 3, a batch of 2,000
//! records (500 per partition, evaluated partition after partition as the worker does). It
//! runs twice: with a 13-byte input topic name and (`_long_topic`) with a 29-byte one, as
//! `scripts/bench` names its topics; the topic-partition marks every user's watermark and
//! history cite cost more when they are longer than a `SmolStr` holds inline.
//! Every user has state before the measurement (criterion's warm-up evaluates dozens of
//! batches), and all of them stay cached, as in the worker at these sizes. Batches are not written to the store: the store's write runs on other threads in
//! the worker, and the partition's cache holds every user's state meanwhile. But they are
//! freed as the worker frees them: on another thread, and late (the worker's journal holds a
//! batch's rows until the next checkpoint, seconds later; here the last [`HELD`] batches
//! are held), so the record step's allocations do not find the memory the previous batch
//! just gave back, as they would not in the worker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use questline::pipeline::input::Inputs;
use questline::pipeline::log::InRecord;
use questline::pipeline::partition::{Batch, Partition};
use questline::settings::Topics;
use questline::store::embedded::EmbeddedStore;
use questline::store::StateStore;

/// The binary's allocator, tuned as the binary tunes it ([`allocator::tune`]: no transparent
/// huge pages, a 100 ms purge delay). Untuned, a sixth of this bench's samples were the
/// kernel zeroing huge pages the worker never asks for.
#[path = "../src/allocator.rs"]
#[allow(dead_code)] // its tests, compiled here but not run
mod allocator;

/// The input topic's name: its marks (`topic:partition`) short enough to be held inline
/// (`SmolStr`, up to 23 bytes)...
const INPUT: &str = "bench.actions";
/// ...and as `scripts/bench` names it (`bench-PID-STAMP.actions`): its marks longer than 23
/// bytes, so shared on the heap, as with most production topic names.
const LONG_INPUT: &str = "bench-19664-764490123.actions";
const PARTITIONS: u64 = 4;
/// Users per partition.
const USERS: u64 = 2_500;
/// Records per partition and batch.
const BATCH: usize = 500;
/// Partitions' batches held on the other thread before they are freed: 64,000 records, the
/// order of what the worker's journal holds at `scripts/bench`'s rate.
const HELD: usize = 128;

/// A 64-bit mix (splitmix64's finalizer): the same pseudo-random actions in every run.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `offset`-th record of `partition`: an action of one of its users, as `scripts/bench`
/// sends them.
fn record(input: &str, partition: u64, offset: u64) -> InRecord {
    let r = mix(offset ^ partition << 40);
    let user = format!("user-{:06}", (offset % USERS) * PARTITIONS + partition);
    let (trigger, value) = if r & 1 == 0 {
        (1, 50 + (r >> 8) % 200)
    } else {
        (3, 20 + (r >> 8) % 100)
    };
    let payload = format!(
        r#"{{"userId": "{user}", "triggerId": {trigger}, "value": {value}, "actionId": "bench-{offset:09}", "actionType": "purchase.in_store"}}"#
    );
    InRecord {
        topic: input.into(),
        partition: partition as i32,
        offset: offset as i64,
        key: Some(user.into_bytes().into()),
        payload: payload.into_bytes(),
        timestamp: Utc::now(),
        headers: Vec::new(),
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    store: EmbeddedStore,
    inputs: Inputs,
    topics: Topics,
    partitions: Vec<Partition>,
    input: &'static str,
    next_offset: u64,
    _dir: tempfile::TempDir,
}

fn fixture(input: &'static str) -> Fixture {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let catalog = questline::files::load_catalog(&root.join("examples/catalog")).unwrap();
    let mut mapping = questline::files::load_mapping(&root.join("mappings/seed.toml")).unwrap();
    mapping.topics = vec![input.to_string()];
    let topics = Topics::default();
    let inputs = Inputs::new(Arc::new(catalog), &[mapping], &topics);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = EmbeddedStore::open(dir.path().join("store")).unwrap();
    let partitions = (0..PARTITIONS as i32)
        .map(|p| {
            let mut partition = Partition::new("bench", p, USERS as usize * 2);
            let owner = format!("p{p}");
            partition.set_epoch(rt.block_on(store.claim_partition("bench", &owner)).unwrap());
            // The worker's default budget (`pipeline.cache_mb`, 64 MiB), shared.
            partition.set_cache_budget((64 << 20) / PARTITIONS as usize);
            partition
        })
        .collect();
    Fixture {
        rt,
        store,
        inputs,
        topics,
        partitions,
        input,
        next_offset: 0,
        _dir: dir,
    }
}

/// Frees what it is sent on a thread of its own, [`HELD`] sends late.
fn late_dropper() -> std::sync::mpsc::Sender<Batch> {
    let (send, receive) = std::sync::mpsc::channel::<Batch>();
    std::thread::spawn(move || {
        let mut held = std::collections::VecDeque::with_capacity(HELD + 1);
        for batch in receive {
            held.push_back(batch);
            if held.len() > HELD {
                held.pop_front();
            }
        }
    });
    send
}

/// One batch of [`BATCH`] records for each partition, processed partition after partition;
/// the time the processing took.
fn one_batch(f: &mut Fixture, dropper: &std::sync::mpsc::Sender<Batch>) -> Duration {
    let offsets = f.next_offset..f.next_offset + BATCH as u64;
    f.next_offset += BATCH as u64;
    let work: Vec<Vec<InRecord>> = (0..PARTITIONS)
        .map(|p| offsets.clone().map(|o| record(f.input, p, o)).collect())
        .collect();
    let started = Instant::now();
    let batches: Vec<Batch> = f
        .partitions
        .iter_mut()
        .zip(&work)
        .map(|(partition, records)| {
            let processing = partition.process(&f.store, &f.inputs, &f.topics, records);
            f.rt.block_on(processing).unwrap()
        })
        .collect();
    let spent = started.elapsed();
    for batch in batches {
        assert!(batch.stats.dead_letters.is_empty(), "every action is valid");
        assert_eq!(batch.stats.applied, BATCH as u64, "none a duplicate");
        dropper.send(batch).unwrap();
    }
    spent
}

/// `RECORD_STEP_BATCHES=N`: N batches with the long topic name, then exit, for counting
/// instructions (`valgrind --tool=callgrind --toggle-collect='*Partition*process*'`). Under
/// criterion the number of batches depends on the time each takes, and a user's state grows
/// from batch to batch, so counts per batch only compare over the same number of batches.
fn fixed_batches() -> Option<u64> {
    std::env::var("RECORD_STEP_BATCHES").ok()?.parse().ok()
}

fn record_step(c: &mut Criterion) {
    allocator::tune();
    let dropper = late_dropper();
    if let Some(batches) = fixed_batches() {
        let mut f = fixture(LONG_INPUT);
        for _ in 0..batches {
            one_batch(&mut f, &dropper);
        }
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("record_step");
    group.throughput(Throughput::Elements(BATCH as u64 * PARTITIONS));
    group.warm_up_time(Duration::from_secs(3));
    let name = format!("batch_{}_returning_users", BATCH as u64 * PARTITIONS);
    for (input, suffix) in [(INPUT, ""), (LONG_INPUT, "_long_topic")] {
        let mut f = fixture(input);
        group.bench_function(format!("{name}{suffix}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| one_batch(&mut f, &dropper)).sum())
        });
    }
    group.finish();
}

criterion_group!(benches, record_step);
criterion_main!(benches);
