//! The embedded store's write latency while its checkpoints run: the tail that
//! `scripts/bench` sees in the seconds of a checkpoint, without Kafka, the broker or the
//! evaluation around it (docs/benchmarks.md, "How to measure").
//!
//! ```text
//! cargo run --release --example store_tail -- [--secs 20] [--users 10000] [--batch 2000] \
//!     [--every-ms 25] [--dir DIR]
//! ```
//!
//! Writes a batch every `--every-ms` (as the worker does at ~80 k actions/s: each of
//! `--batch` users of `--users` written again, with one new history entry each, filed by
//! position as the worker files them), for `--secs`, into a store in `--dir` (default: a
//! temporary directory in the working directory, removed at the end). Each batch's
//! `write_batch` is timed from its call to its return (append, sync, overlay: the batch's
//! durable point). Prints the distribution, how many took over 10 and 25 ms, and the
//! checkpoints the store made.

use anyhow::{bail, Context as _, Result};
use rust_decimal::Decimal;
use std::time::{Duration, Instant};

#[path = "../benches/fixtures/progress_event.rs"]
mod fixtures;
use fixtures::progress_event;
use questline::core::state::{ChallengeState, ChallengeStatus, TriggerProgress, UserState};
use questline::store::embedded::EmbeddedStore;
use questline::store::{
    BatchWrite, HistoryChain, HistoryEntry, HistoryPos, StateStore, UserKey, UserRecord,
};

const TENANT: &str = "acme";
const INPUT: &str = "questline.actions:3";

struct Options {
    secs: u64,
    users: usize,
    batch: usize,
    every: Duration,
    dir: Option<std::path::PathBuf>,
}

fn options() -> Result<Options> {
    let mut o = Options {
        secs: 20,
        users: 10_000,
        batch: 2_000,
        every: Duration::from_millis(25),
        dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .with_context(|| format!("{flag}: {value}"))
        };
        match flag.as_str() {
            "--secs" => o.secs = number()?,
            "--users" => o.users = number()? as usize,
            "--batch" => o.batch = number()? as usize,
            "--every-ms" => o.every = Duration::from_millis(number()?),
            "--dir" => o.dir = Some(value.into()),
            _ => bail!("unknown option {flag} (see the doc at the top of examples/store_tail.rs)"),
        }
    }
    if o.batch == 0 || o.batch > o.users {
        bail!("--batch must be between 1 and --users");
    }
    Ok(o)
}

/// User `i` with ten challenges in progress, as returning users of the benchmark are.
fn record(i: usize, round: usize) -> UserRecord {
    let challenges = (1..=10u32)
        .map(|c| {
            let progress = TriggerProgress {
                group: 1,
                trigger: c,
                accumulated: Decimal::new((round * 10 + c as usize) as i64, 1),
                met: false,
            };
            let state = ChallengeState {
                triggers: smallvec::smallvec![progress],
                wins: 0,
                period_wins: 0,
                period: None,
                status: ChallengeStatus::Active,
            };
            (c, state)
        })
        .collect();
    UserRecord {
        state: UserState {
            challenges,
            ..Default::default()
        },
        applied: litemap::LiteMap::from_iter([(INPUT.into(), (round * 100_000 + i) as i64)]),
        history_len: round as u64,
        history_chain: Default::default(),
    }
}

/// The history entry of user `i`'s action at `offset`: one progress event.
fn entry(i: usize, offset: i64) -> HistoryEntry {
    let id = format!("{offset:016x}-0000-5000-8000-{i:012x}");
    let event = progress_event(TENANT, format!("user-{i:07}"), offset, id);
    let at = HistoryPos {
        input: INPUT.into(),
        offset,
        index: 0,
    };
    let mut entry = HistoryEntry::new(0, event);
    entry.place = Some(HistoryChain::default().push(0, at));
    entry
}

/// Batch `n`: the next `batch` users in turn, each with a new history entry.
fn batch(o: &Options, n: usize) -> BatchWrite {
    let (mut users, mut history) = (Vec::with_capacity(o.batch), Vec::with_capacity(o.batch));
    for j in 0..o.batch {
        let i = (n * o.batch + j) % o.users;
        let key = UserKey::new(TENANT, format!("user-{i:07}"));
        let offset = (n * o.batch + j) as i64;
        history.push((key.clone(), entry(i, offset)));
        users.push((key, record(i, n)));
    }
    BatchWrite {
        users,
        history,
        ..Default::default()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[at - 1]
}

fn main() -> Result<()> {
    let o = options()?;
    let temporary;
    let dir = match &o.dir {
        Some(dir) => dir.clone(),
        None => {
            // In the working directory: on a disk, where /tmp may be a tmpfs.
            temporary = tempfile::tempdir_in(".")?;
            temporary.path().join("store")
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = EmbeddedStore::open(&dir)?;
    // Built ahead, so the loop's pace is the store's alone.
    let total = (o.secs * 1000 / o.every.as_millis().max(1) as u64) as usize;
    eprintln!("store_tail: building {total} batches of {} users", o.batch);
    let batches: Vec<BatchWrite> = (0..total).map(|n| batch(&o, n)).collect();
    let checkpoints = || {
        questline::metrics::metrics()
            .store_seconds
            .with_label_values(&["checkpoint"])
            .get_sample_count()
    };
    let checkpoints_before = checkpoints();
    let mut took = Vec::with_capacity(total);
    let started = Instant::now();
    for (n, b) in batches.iter().enumerate() {
        let due = started + o.every * n as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = Instant::now();
        rt.block_on(store.write_batch(b))?;
        took.push(at.elapsed());
    }
    let elapsed = started.elapsed();
    let made = checkpoints() - checkpoints_before;
    drop(store);
    took.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let over = |limit: u64| {
        took.iter()
            .filter(|d| d.as_millis() > u128::from(limit))
            .count()
    };
    println!(
        "store_tail: {} batches of {} users in {:.1} s ({} checkpoints): write p50 {:.1} / p90 {:.1} / p99 {:.1} / p99.9 {:.1} / max {:.1} ms; over 10 ms: {}, over 25 ms: {}",
        took.len(),
        o.batch,
        elapsed.as_secs_f64(),
        made,
        ms(percentile(&took, 0.5)),
        ms(percentile(&took, 0.9)),
        ms(percentile(&took, 0.99)),
        ms(percentile(&took, 0.999)),
        ms(took[took.len() - 1]),
        over(10),
        over(25),
    );
    Ok(())
}
