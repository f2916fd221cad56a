//! State store benchmarks: per-batch write rate and point-read rate (docs/design.md, "Stores").
//!
//! A batch is what the worker persists per poll: `BATCH` user records (a realistic user: 10
//! challenges with progress, balances, a milestone, a pending request, a two-partition
//! watermark) plus, in the partition outbox, two progress events per user as they are
//! produced. Stores are pre-filled with
//! 20,000 users (5,000 for CQL) so the B-tree / LSM is not trivially small, and each
//! iteration writes or reads a different slice of them.
//!
//! Groups (throughput in user records per second):
//! - `store/embedded`: the whole [`EmbeddedStore`] path (rows encoded and sealed, the journal's
//!   durable append, the overlay, `spawn_blocking`; the checkpoint into redb runs behind), for
//!   batches of pre-filled users written again (with the journal written around the page
//!   cache, the default, and through it: `_buffered_journal`) and of new users with a first
//!   history row each (every key new to the store).
//! - `store/embedded/history`: a page of 20 entries of a 5,000-entry history, the first and
//!   page 200, for entries filed by position (links followed) and by user (point reads).
//! - `engine/redb`, `engine/fjall`: the two candidate engines alone with the same pre-encoded
//!   bytes, each write batch committed durably (redb `Durability::Immediate`, fjall
//!   `PersistMode::SyncAll`), on two patterns: `BATCH` consecutive users, and the worker's
//!   (`SCATTERED` users at random with one new history row each). Part of the comparison
//!   behind choosing redb; the rest is the whole worker under `scripts/bench` (see
//!   `src/store/embedded.rs`).
//! - `codec`: encode/decode of user records with 10 active challenges and a full window of
//!   action ids, in the stored binary form and in JSON (the form before it): the CPU part of
//!   every store call. Prints the records' sizes. And `binary_reencode_50000_users_cold`: the
//!   row of each of 50,000 users of the end-to-end benchmark's shape (balances, an unclaimed
//!   milestone, a request in flight), rewritten in a scattered order as the worker does, so
//!   the parts the evaluation did not touch are out of the caches (run it with
//!   `--sample-size 10`: an iteration takes ~60 ms).
//! - `store/cql`: the [`ScyllaStore`] against the server in `QUESTLINE_TEST_CQL` (skipped when
//!   unset), e.g. `scripts/test`'s dev CQL server or a real ScyllaDB.
//!
//! Run: `cargo bench --bench store` (add `QUESTLINE_TEST_CQL=host:port` for the CQL group).
//! Fixtures are built lazily, inside the first benchmark that needs them, so listing the
//! benchmarks (`--list`, as cargo-nextest does) costs nothing and prints only the list.
//!
//! # Measured
//!
//! 2026-11-25, the project's 2-core dev machine shared with other builds (so noisy: two runs,
//! medians), batch = 500 user records of 2,214 bytes of JSON on average, 20,000 users stored
//! (5,000 for CQL), criterion medians:
//!
//! | benchmark                               | run 1    | run 2    | per second          |
//! |-----------------------------------------|----------|----------|---------------------|
//! | embedded store, durable batch of 500    | 14.2 ms  | 14.0 ms  | ≈ 35k records, 70 batches |
//! | embedded store, 500 point reads         | 6.7 ms   | 6.2 ms   | 74k–81k reads       |
//! | redb alone, durable batch of 500        | 5.2 ms   | 9.3 ms   | 54k–97k records     |
//! | redb alone, 500 point reads             | 0.36 ms  | 0.51 ms  | 1.0M–1.4M reads     |
//! | fjall alone, SyncAll batch of 500       | 3.6 ms   | 5.3 ms   | 94k–141k records    |
//! | fjall alone, 500 point reads            | 1.06 ms  | 1.27 ms  | 394k–472k reads     |
//! | serde_json encode / decode 500 records  | 1.9 / 4.4 ms | 2.0 / 4.5 ms | 250k / 110k |
//! | clone of a 500-record batch             | 0.70 ms  | 0.75 ms  |                     |
//! | CQL store on kassandra, batch of 500    | 13.6 ms  | 16.0 ms  | 31k–37k records     |
//! | CQL store on kassandra, 500 point reads | 18.3 ms  | 14.0 ms  | 27k–36k reads       |
//!
//! Engines on the worker's scattered pattern (2,000 users + 2,000 history rows of 400 bytes
//! per commit over 10,000 users), same machine, one run, load average ~2.5: redb 64 ms,
//! fjall 26 ms per commit; in that run redb's consecutive batch of 500 took 4.5 ms and
//! fjall's 2.9 ms, 500 point reads 0.31 ms and 0.74 ms.
//!
//! fjall commits a durable batch faster; redb reads 2.5–3.5× faster, and reads (cache misses
//! of the worker, every sidecar query) outnumber writes. In the store, JSON decoding, not
//! the engine, is most of a read (4.4 of 6.2–6.7 ms). The CQL figures are kassandra's (the dev
//! CQL server, dev profile, same machine), not ScyllaDB's; run this bench against a real
//! ScyllaDB (`docker compose -f deploy/docker-compose.yml up -d scylla`) for those.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rust_decimal::Decimal;
use std::cell::OnceCell;
use std::time::Duration;

#[path = "fixtures/progress_event.rs"]
mod fixtures;
use fixtures::progress_event;
use questline::core::state::{ChallengeState, ChallengeStatus, TriggerProgress, UserState};
use questline::pipeline::log::OutRecord;
use questline::pipeline::outbox::{self, OutboxEntry};
use questline::store::embedded::{EmbeddedOptions, EmbeddedStore};
use questline::store::scylla::{ScyllaOptions, ScyllaStore};
use questline::store::{
    BatchWrite, HistoryChain, HistoryEntry, HistoryPos, StateStore, UserKey, UserRecord,
};

const BATCH: usize = 500;
const TENANT: &str = "acme";

/// Users stored before measuring: 20,000 under `cargo bench`; 1,000 when the bench runs as a
/// smoke test (`cargo test --all-targets`, nextest), which passes no `--bench` flag.
fn prefill() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        20_000
    } else {
        1_000
    }
}

fn user_id(i: usize) -> String {
    format!("user-{i:07}")
}

fn record(i: usize) -> UserRecord {
    let challenges = (1..=10u32)
        .map(|c| {
            (
                c,
                ChallengeState {
                    triggers: smallvec::smallvec![TriggerProgress {
                        group: 1,
                        trigger: c,
                        accumulated: Decimal::new(i as i64 * 10 + i64::from(c), 1),
                        met: false,
                    }],
                    wins: c % 3,
                    period_wins: 0,
                    period: Some("2026-W48".into()),
                    status: ChallengeStatus::Active,
                },
            )
        })
        .collect();
    UserRecord {
        state: UserState {
            challenges,
            balances: questline::core::state::RowCached::from_iter([(
                "points".to_string(),
                Decimal::new(i as i64, 0),
            )]),
            recent_action_ids: [format!("a-{i}")].into_iter().collect(),
            ..Default::default()
        },
        applied: litemap::LiteMap::from_iter([
            ("questline.actions:3".into(), i as i64),
            ("questline.actions:0".into(), 17),
        ]),
        history_len: 0,
        history_chain: Default::default(),
    }
}

/// User `i`'s two progress events, as the partition outbox holds them.
fn outbox_entries(i: usize) -> Vec<OutboxEntry> {
    let event = |n: i64| progress_event(TENANT, user_id(i), n, format!("{}-{n}", user_id(i)));
    [event(1), event(2)]
        .into_iter()
        .map(|e| OutboxEntry {
            cause: e.source.clone(),
            record: OutRecord {
                topic: "questline.progress".into(),
                key: e.user_id.clone(),
                payload: serde_json::to_vec(&e).unwrap(),
                headers: vec![questline::pipeline::log::text_header(
                    "questline-event-id",
                    e.event_id.clone(),
                )],
            },
        })
        .collect()
}

/// Batch number `n`: the `n`-th slice of `BATCH` users out of the pre-filled ones.
fn batch(n: usize, population: usize) -> BatchWrite {
    let start = (n * BATCH) % population;
    BatchWrite {
        users: (start..start + BATCH)
            .map(|i| (UserKey::new(TENANT, user_id(i)), record(i)))
            .collect(),
        outbox: Some(outbox::write(
            "bench/p0",
            n as u64,
            &(start..start + BATCH)
                .flat_map(outbox_entries)
                .collect::<Vec<_>>(),
        )),
        ..Default::default()
    }
}

/// Batch `n` of users never written before (ids past any pre-filled population), each with
/// its first history entry.
fn new_users_batch(n: usize) -> BatchWrite {
    let ids = (1_000_000 + n * BATCH)..(1_000_000 + (n + 1) * BATCH);
    BatchWrite {
        users: ids
            .clone()
            .map(|i| (UserKey::new(TENANT, user_id(i)), record(i)))
            .collect(),
        history: ids
            .flat_map(|i| {
                outbox_entries(i).into_iter().take(1).map(move |e| {
                    let event = serde_json::from_slice(&e.record.payload).unwrap();
                    // Filed by position, as the worker files it: a user's first entry.
                    let at = HistoryPos {
                        input: "questline.actions:3".into(),
                        offset: i as i64,
                        index: 0,
                    };
                    let mut entry = HistoryEntry::new(0, event);
                    entry.place = Some(HistoryChain::default().push(0, at));
                    (UserKey::new(TENANT, user_id(i)), entry)
                })
            })
            .collect(),
        ..Default::default()
    }
}

fn keys(n: usize, population: usize) -> Vec<UserKey> {
    let start = (n * BATCH) % population;
    (start..start + BATCH)
        .map(|i| UserKey::new(TENANT, user_id(i)))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn bench_dir() -> tempfile::TempDir {
    // On the target's disk (not a tmpfs), so fsync costs what it costs.
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// The embedded store, pre-filled.
struct EmbeddedFixture {
    rt: tokio::runtime::Runtime,
    store: EmbeddedStore,
    batches: Vec<BatchWrite>,
    key_sets: Vec<Vec<UserKey>>,
    _dir: tempfile::TempDir,
}

/// `direct_journal`: the journal written around the page cache (the default) or through it.
fn embedded_fixture(direct_journal: bool) -> EmbeddedFixture {
    let rt = runtime();
    let dir = bench_dir();
    let options = EmbeddedOptions {
        direct_journal,
        ..EmbeddedOptions::default()
    };
    let store = EmbeddedStore::open_with_options(dir.path().join("store"), options).unwrap();
    let population = prefill();
    let batches: Vec<BatchWrite> = (0..population / BATCH)
        .map(|n| batch(n, population))
        .collect();
    for b in &batches {
        rt.block_on(store.write_batch(b)).unwrap();
    }
    let key_sets = (0..population / BATCH)
        .map(|n| keys(n, population))
        .collect();
    EmbeddedFixture {
        rt,
        store,
        batches,
        key_sets,
        _dir: dir,
    }
}

fn embedded(c: &mut Criterion) {
    let fixture = OnceCell::new();
    let mut group = c.benchmark_group("store/embedded");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    let buffered = OnceCell::new();
    for (name, fixture, direct) in [
        (format!("write_batch_{BATCH}_users"), &fixture, true),
        (
            format!("write_batch_{BATCH}_users_buffered_journal"),
            &buffered,
            false,
        ),
    ] {
        let mut n = 0;
        group.bench_function(name, |b| {
            let f: &EmbeddedFixture = fixture.get_or_init(|| embedded_fixture(direct));
            b.iter(|| {
                n += 1;
                f.rt.block_on(f.store.write_batch(&f.batches[n % f.batches.len()]))
                    .unwrap()
            })
        });
    }
    // New users each time, each with a first history row: every row's key is new to the
    // store, as for users the worker has never seen (its fencing finds no row to compare).
    let mut fresh = 0;
    group.bench_function(format!("write_batch_{BATCH}_new_users_with_history"), |b| {
        let f: &EmbeddedFixture = fixture.get_or_init(|| embedded_fixture(true));
        b.iter_batched(
            || {
                fresh += 1;
                new_users_batch(fresh)
            },
            |batch| f.rt.block_on(f.store.write_batch(&batch)).unwrap(),
            criterion::BatchSize::LargeInput,
        )
    });
    let mut n = 0;
    group.bench_function(format!("load_users_{BATCH}_point_reads"), |b| {
        let f: &EmbeddedFixture = fixture.get_or_init(|| embedded_fixture(true));
        b.iter(|| {
            n += 1;
            let loaded =
                f.rt.block_on(f.store.load_users(&f.key_sets[n % f.key_sets.len()]))
                    .unwrap();
            assert!(loaded.iter().all(Option::is_some));
        })
    });
    group.finish();
}

/// Entries in each history of [`history_pages`].
const HISTORY_ENTRIES: u64 = 5_000;
/// Entries per page read by [`history_pages`] (the sidecar's default page size).
const HISTORY_PAGE: u32 = 20;

/// Two users with [`HISTORY_ENTRIES`] entries each, written in batches of 100 and
/// checkpointed: `by-position`'s filed by position as the worker files them, linked through
/// its row; `by-user`'s filed by (user, sequence number), as earlier formats did.
fn history_fixture() -> (tokio::runtime::Runtime, EmbeddedStore, tempfile::TempDir) {
    let rt = runtime();
    let dir = bench_dir();
    let store = EmbeddedStore::open(dir.path().join("store")).unwrap();
    let event: questline::core::events::Event =
        serde_json::from_slice(&outbox_entries(0)[0].record.payload).unwrap();
    for (user, placed) in [("by-position", true), ("by-user", false)] {
        let key = UserKey::new(TENANT, user);
        let mut record = UserRecord::default();
        while record.history_len < HISTORY_ENTRIES {
            let mut batch = BatchWrite::default();
            for _ in 0..100 {
                let seq = record.history_len;
                let mut entry = HistoryEntry::new(seq, event.clone());
                if placed {
                    // Other users' entries between this user's: every third input.
                    let at = HistoryPos::new("questline.actions:3", seq as i64 * 3, 0);
                    entry.place = Some(record.history_chain.push(seq, at));
                }
                batch.history.push((key.clone(), entry));
                record.history_len += 1;
            }
            batch.users.push((key.clone(), record.clone()));
            rt.block_on(store.write_batch(&batch)).unwrap();
        }
    }
    rt.block_on(store.checkpoint()).unwrap();
    (rt, store, dir)
}

/// A page of a long history through the sidecar's store call, filed by position (links
/// followed: the first page, and page 200, 4,000 entries back) and by user (point reads).
fn history_pages(c: &mut Criterion) {
    let fixture = OnceCell::new();
    let mut group = c.benchmark_group("store/embedded/history");
    group.throughput(Throughput::Elements(u64::from(HISTORY_PAGE)));
    for user in ["by-position", "by-user"] {
        for page in [1, 200] {
            group.bench_function(format!("{user}_page_{page}_of_{HISTORY_PAGE}"), |b| {
                let (rt, store, _) = fixture.get_or_init(history_fixture);
                let key = UserKey::new(TENANT, user);
                b.iter(|| {
                    let (entries, total) = rt
                        .block_on(store.history(&key, page, HISTORY_PAGE))
                        .unwrap();
                    assert_eq!(
                        (entries.len(), total),
                        (HISTORY_PAGE as usize, HISTORY_ENTRIES)
                    );
                })
            });
        }
    }
    group.finish();
}

/// Pre-encoded rows of one batch, as an engine receives them: `(key, value)` pairs.
#[derive(Default)]
struct Encoded {
    users: Vec<(Vec<u8>, Vec<u8>)>,
    history: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Users of a scattered batch (and as many history rows), and their value size: the
/// worker's batch in `scripts/bench` (2,000 actions over 10,000 users, ~400-byte rows).
const SCATTERED: usize = 2_000;
const SCATTERED_VALUE: usize = 400;

fn engine_key(user: usize) -> Vec<u8> {
    format!("{TENANT}\0{}", user_id(user)).into_bytes()
}

/// The store bench's batches: `BATCH` consecutive users each, no history.
fn sequential_batches() -> Vec<Encoded> {
    let population = prefill();
    (0..population / BATCH)
        .map(|n| Encoded {
            users: batch(n, population)
                .users
                .iter()
                .enumerate()
                .map(|(i, (_, rec))| {
                    let mut v = vec![1u8; 9];
                    v.extend(serde_json::to_vec(rec).unwrap());
                    (engine_key((n * BATCH) % population + i), v)
                })
                .collect(),
            history: Vec::new(),
        })
        .collect()
}

/// The worker's pattern: `SCATTERED` users drawn at random from half the pre-filled
/// population (10,000 under `cargo bench`), each with its next history row, so nearly
/// every row lands far from the previous one.
fn scattered_batches() -> Vec<Encoded> {
    let population = prefill() / 2;
    let count = if population >= 10_000 { 40 } else { 3 };
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next_seq = vec![0u64; population];
    let value = vec![b'v'; SCATTERED_VALUE];
    (0..count)
        .map(|_| {
            let mut batch = Encoded::default();
            for _ in 0..SCATTERED {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let user = (rng % population as u64) as usize;
                let seq = next_seq[user];
                next_seq[user] += 1;
                batch.users.push((engine_key(user), value.clone()));
                let history_key = [engine_key(user), seq.to_be_bytes().to_vec()].concat();
                batch.history.push((history_key, value.clone()));
            }
            batch
        })
        .collect()
}

const REDB_USERS: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("users");
const REDB_HISTORY: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("history");

/// Both engines alike: one durable commit per batch.
trait Engine {
    fn write(&self, batch: &Encoded);
    fn read_all(&self, keys: &[(Vec<u8>, Vec<u8>)]);
}

/// An engine with both patterns' batches written once, so they overwrite from then on.
struct EngineFixture<E> {
    engine: E,
    sequential: Vec<Encoded>,
    scattered: Vec<Encoded>,
    _dir: tempfile::TempDir,
}

impl<E: Engine> EngineFixture<E> {
    fn new(open: impl FnOnce(&std::path::Path) -> E) -> Self {
        let dir = bench_dir();
        let fixture = EngineFixture {
            engine: open(dir.path()),
            sequential: sequential_batches(),
            scattered: scattered_batches(),
            _dir: dir,
        };
        for b in fixture.sequential.iter().chain(&fixture.scattered) {
            fixture.engine.write(b);
        }
        fixture
    }
}

/// redb as the embedded store used it before fjall: one durable write transaction per batch.
struct Redb(redb::Database);

impl Engine for Redb {
    fn write(&self, batch: &Encoded) {
        let mut txn = self.0.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate);
        {
            let mut users = txn.open_table(REDB_USERS).unwrap();
            for (k, v) in &batch.users {
                users.insert(k.as_slice(), v.as_slice()).unwrap();
            }
            let mut history = txn.open_table(REDB_HISTORY).unwrap();
            for (k, v) in &batch.history {
                history.insert(k.as_slice(), v.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }

    fn read_all(&self, keys: &[(Vec<u8>, Vec<u8>)]) {
        let txn = self.0.begin_read().unwrap();
        let table = txn.open_table(REDB_USERS).unwrap();
        for (k, _) in keys {
            assert!(table.get(k.as_slice()).unwrap().is_some());
        }
    }
}

/// fjall as the embedded store uses it: every batch synced before the commit returns.
struct Fjall {
    db: fjall::Database,
    users: fjall::Keyspace,
    history: fjall::Keyspace,
}

impl Engine for Fjall {
    fn write(&self, batch: &Encoded) {
        let mut write = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncAll));
        for (k, v) in &batch.users {
            write.insert(&self.users, k.as_slice(), v.as_slice());
        }
        for (k, v) in &batch.history {
            write.insert(&self.history, k.as_slice(), v.as_slice());
        }
        write.commit().unwrap();
    }

    fn read_all(&self, keys: &[(Vec<u8>, Vec<u8>)]) {
        for (k, _) in keys {
            assert!(self.users.get(k.as_slice()).unwrap().is_some());
        }
    }
}

fn open_redb(dir: &std::path::Path) -> Redb {
    Redb(redb::Database::create(dir.join("bench.redb")).unwrap())
}

fn open_fjall(dir: &std::path::Path) -> Fjall {
    let db = fjall::Database::builder(dir).open().unwrap();
    let users = db
        .keyspace("users", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    let history = db
        .keyspace("history", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    Fjall { db, users, history }
}

fn engine_group<E: Engine>(c: &mut Criterion, name: &str, open: fn(&std::path::Path) -> E) {
    let fixture = OnceCell::new();
    let get = || fixture.get_or_init(|| EngineFixture::new(open));
    let mut group = c.benchmark_group(format!("engine/{name}"));
    group.sample_size(20);
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut n = 0;
    group.bench_function(format!("durable_batch_{BATCH}"), |b| {
        let f: &EngineFixture<E> = get();
        b.iter(|| {
            n += 1;
            f.engine.write(&f.sequential[n % f.sequential.len()])
        })
    });
    let mut n = 0;
    group.bench_function(format!("point_reads_{BATCH}"), |b| {
        let f: &EngineFixture<E> = get();
        b.iter(|| {
            n += 1;
            f.engine
                .read_all(&f.sequential[n % f.sequential.len()].users)
        })
    });
    group.throughput(Throughput::Elements(2 * SCATTERED as u64));
    group.sample_size(10);
    let mut n = 0;
    group.bench_function(
        format!("scattered_batch_{SCATTERED}_users_{SCATTERED}_history"),
        |b| {
            let f: &EngineFixture<E> = get();
            b.iter(|| {
                n += 1;
                f.engine.write(&f.scattered[n % f.scattered.len()])
            })
        },
    );
    group.finish();
}

fn engines(c: &mut Criterion) {
    engine_group(c, "redb", open_redb);
    engine_group(c, "fjall", open_fjall);
}

/// Records, their stored bytes, and a whole batch.
struct CodecFixture {
    /// Users with 10 active challenges and a full window of remembered action ids.
    records: Vec<UserRecord>,
    json: Vec<Vec<u8>>,
    binary: Vec<Vec<u8>>,
    whole: BatchWrite,
}

fn codec_fixture() -> CodecFixture {
    let records: Vec<UserRecord> = (0..BATCH)
        .map(|i| {
            let mut r = record(i);
            for a in 0..questline::core::state::RECENT_ACTION_IDS {
                r.state
                    .remember_action(&format!("{i:08}-0000-4000-8000-{a:012}"));
            }
            r
        })
        .collect();
    let json: Vec<Vec<u8>> = records
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap())
        .collect();
    let binary: Vec<Vec<u8>> = records.iter().map(questline::store::user_row).collect();
    let average = |rows: &[Vec<u8>]| rows.iter().map(Vec::len).sum::<usize>() / rows.len();
    eprintln!(
        "codec: user record with 10 active challenges and {} action ids: {} bytes stored \
         (binary), {} bytes as JSON (the previous form)",
        questline::core::state::RECENT_ACTION_IDS,
        average(&binary),
        average(&json)
    );
    CodecFixture {
        records,
        json,
        binary,
        whole: batch(0, BATCH),
    }
}

fn codec(c: &mut Criterion) {
    let fixture = OnceCell::new();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("binary_encode_{BATCH}_records"), |b| {
        let f: &CodecFixture = fixture.get_or_init(codec_fixture);
        b.iter(|| {
            for r in &f.records {
                std::hint::black_box(questline::store::user_row(r));
            }
        })
    });
    group.bench_function(format!("binary_decode_{BATCH}_records"), |b| {
        let f: &CodecFixture = fixture.get_or_init(codec_fixture);
        b.iter(|| {
            for bytes in &f.binary {
                std::hint::black_box(questline::store::read_user_row(bytes).unwrap());
            }
        })
    });
    group.bench_function(format!("json_encode_{BATCH}_records"), |b| {
        let f: &CodecFixture = fixture.get_or_init(codec_fixture);
        b.iter(|| {
            for r in &f.records {
                std::hint::black_box(serde_json::to_vec(r).unwrap());
            }
        })
    });
    group.bench_function(format!("json_decode_{BATCH}_records"), |b| {
        let f: &CodecFixture = fixture.get_or_init(codec_fixture);
        b.iter(|| {
            for bytes in &f.json {
                std::hint::black_box(serde_json::from_slice::<UserRecord>(bytes).unwrap());
            }
        })
    });
    // The embedded store clones a batch to move it onto the blocking pool.
    group.bench_function(format!("clone_batch_{BATCH}_records"), |b| {
        let f: &CodecFixture = fixture.get_or_init(codec_fixture);
        b.iter(|| std::hint::black_box(f.whole.clone()))
    });
    // What the worker pays per user row: many users, each read back from its row, rewritten
    // in a scattered order after one challenge moved, so the parts the evaluation did not
    // touch are not in the CPU's caches.
    group.throughput(Throughput::Elements(COLD_USERS as u64));
    group.bench_function(format!("binary_reencode_{COLD_USERS}_users_cold"), |b| {
        let mut users = cold_population();
        b.iter(|| {
            for i in 0..COLD_USERS {
                let user = &mut users[(i * 7919) % COLD_USERS];
                let challenge = user.state.challenges.get_mut(&1).unwrap();
                challenge.triggers[0].accumulated += Decimal::ONE;
                std::hint::black_box(questline::store::user_row(user));
            }
        })
    });
    group.finish();
}

/// Users of [`codec`]'s cold re-encoding bench: their decoded states are several times a
/// server CPU's last-level cache (32 MiB on the machine of docs/benchmarks.md).
const COLD_USERS: usize = 50_000;

/// [`COLD_USERS`] users as the end-to-end benchmark's look after a while: a few challenges
/// with progress, two balances, an unclaimed milestone with a voucher and a points prize, an
/// inventory request in flight, a full window of action ids; each read back from its row.
/// Every row is read back four times and one copy of each user kept (user i from round
/// i % 4), so users next to each other in the list are not next to each other in memory, as
/// in a worker's cache filled over time; the bench's scattered order does the rest. (One
/// user's own allocations are still made together, as a load makes them.)
fn cold_population() -> Vec<UserRecord> {
    let rows: Vec<Vec<u8>> = (0..COLD_USERS)
        .map(|i| {
            let value = serde_json::json!({
                "state": {
                    "challenges": {
                        "1": {"triggers": [{"group": 1, "trigger": 1, "accumulated": "740", "met": false}]},
                        "2": {"triggers": [{"group": 1, "trigger": 3, "accumulated": "35", "met": false}],
                              "wins": 1, "period_wins": 1, "period": "2026-12-05"},
                        "3": {"triggers": [{"group": 1, "trigger": 6, "accumulated": "1", "met": false}]}
                    },
                    "balances": {"points": format!("{}", 10 + i % 90), "voucher_burger": "1"},
                    "milestones": [{
                        "milestoneId": format!("user-{i:06}:1:0"),
                        "challengeId": 1,
                        "achievedAt": "2026-12-05T10:00:00Z",
                        "prizes": [
                            {"value": format!("BURGER-{i:06}"), "expirationDate": "2027-01-04T10:00:00Z",
                             "description": "A free burger", "rewardType": "voucher_burger"},
                            {"value": "10", "expirationDate": null,
                             "description": "10 bonus points", "rewardType": "points"}
                        ]
                    }],
                    "pending": {
                        format!("questline.actions:3:{i}#r0"): {
                            "source": {"topic": "questline.actions", "partition": 3, "offset": i},
                            "occurredAt": "2026-12-05T10:00:00Z",
                            "what": {"for": "prize", "challenge_id": 1, "milestone_id": format!("user-{i:06}:1:0"),
                                     "reward_type": "voucher_burger", "amount": "1"}
                        }
                    }
                },
                "applied": {"questline.actions:3": i},
                "history_len": 3
            });
            let mut record: UserRecord = serde_json::from_value(value).unwrap();
            for a in 0..questline::core::state::RECENT_ACTION_IDS {
                record.state.remember_action(&format!("{i:08}-{a:04}"));
            }
            questline::store::user_row(&record)
        })
        .collect();
    let mut rounds: Vec<Vec<UserRecord>> = Vec::new();
    for _ in 0..4 {
        rounds.push(
            rows.iter()
                .map(|row| questline::store::read_user_row(row).unwrap())
                .collect(),
        );
    }
    // User i from round i % 4: its neighbours in memory are other users' copies.
    (0..COLD_USERS)
        .map(|i| std::mem::take(&mut rounds[i % 4][i]))
        .collect()
}

/// The CQL store on a fresh keyspace of the server in `QUESTLINE_TEST_CQL`, pre-filled.
struct CqlFixture {
    rt: tokio::runtime::Runtime,
    store: ScyllaStore,
    batches: Vec<BatchWrite>,
    key_sets: Vec<Vec<UserKey>>,
}

fn cql_fixture(addr: &str) -> CqlFixture {
    let rt = runtime();
    let keyspace = format!("qlbench_{}", std::process::id());
    let population = prefill().min(5_000);
    let store = rt.block_on(async {
        let mut options = ScyllaOptions::new(vec![addr.to_string()], keyspace);
        options.replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}".into();
        let store = ScyllaStore::connect_with(options).await.unwrap();
        store.migrate().await.unwrap();
        store
    });
    let batches: Vec<BatchWrite> = (0..population / BATCH)
        .map(|n| batch(n, population))
        .collect();
    for b in &batches {
        rt.block_on(store.write_batch(b)).unwrap();
    }
    let key_sets = (0..population / BATCH)
        .map(|n| keys(n, population))
        .collect();
    CqlFixture {
        rt,
        store,
        batches,
        key_sets,
    }
}

fn cql(c: &mut Criterion) {
    let Ok(addr) = std::env::var("QUESTLINE_TEST_CQL") else {
        eprintln!("store/cql: skipped (set QUESTLINE_TEST_CQL=host:port to run it)");
        return;
    };
    let fixture = OnceCell::new();
    let mut group = c.benchmark_group("store/cql");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let mut n = 0;
    group.bench_function(format!("write_batch_{BATCH}_users"), |b| {
        let f: &CqlFixture = fixture.get_or_init(|| cql_fixture(&addr));
        b.iter(|| {
            n += 1;
            f.rt.block_on(f.store.write_batch(&f.batches[n % f.batches.len()]))
                .unwrap()
        })
    });
    let mut n = 0;
    group.bench_function(format!("load_users_{BATCH}_point_reads"), |b| {
        let f: &CqlFixture = fixture.get_or_init(|| cql_fixture(&addr));
        b.iter(|| {
            n += 1;
            let loaded =
                f.rt.block_on(f.store.load_users(&f.key_sets[n % f.key_sets.len()]))
                    .unwrap();
            assert!(loaded.iter().all(Option::is_some));
        })
    });
    group.finish();
}

criterion_group!(benches, embedded, history_pages, engines, codec, cql);
criterion_main!(benches);
