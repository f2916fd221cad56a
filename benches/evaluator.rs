//! The evaluator alone: actions/s on one core with 100 active challenges (targets in docs/benchmarks.md);
//! and the inventory stage's requests against a resource with a full window of answers.
//!
//! The catalog has 100 challenges over 50 sum triggers (two triggers AND-ed per challenge,
//! so each action advances about four challenges), 10,000 users, and every action's trigger is
//! resolved up front, as the worker does in its decode step.

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use questline::core::catalog::Catalog;
use questline::core::evaluator::{evaluate, Context, UserInput};
use questline::core::inventory::{self, Request, RequestKind, ResourceState, RECENT_REQUESTS};
use questline::core::model::{Action, SourceRef, TriggerKey};
use questline::core::state::UserState;
use rust_decimal::Decimal;

/// The allocator the `questline` binary runs (src/allocator.rs), so the bench measures what
/// the worker does: with glibc's, this bench measured a quarter to a third less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHALLENGES: u32 = 100;
const TRIGGERS: u32 = 50;
const USERS: usize = 10_000;
const ACTIONS: usize = 100_000;

fn catalog() -> Catalog {
    let mut text = String::from("[[reward_types]]\nreward_type = \"points\"\n");
    for t in 1..=TRIGGERS {
        text += &format!("[[triggers]]\nid = {t}\nname = \"t{t}\"\n");
    }
    for c in 1..=CHALLENGES {
        let (a, b) = (c % TRIGGERS + 1, (c * 7) % TRIGGERS + 1);
        let b = if a == b { a % TRIGGERS + 1 } else { b };
        text += &format!(
            "[[challenges]]\nid = {c}\nname = \"c{c}\"\nrepeatable = true\n[[challenges.groups]]\nid = 1\ntriggers = [{{ trigger = {a}, frequency = 500 }}, {{ trigger = {b}, frequency = 300 }}]\n[[challenges.prizes]]\nreward_type = \"points\"\namount = 10\n"
        );
    }
    Catalog::from_sources(&[("bench.toml", text)]).unwrap()
}

fn bench(c: &mut Criterion) {
    let catalog = catalog();
    let tenant = catalog.default_tenant().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let actions: Vec<(usize, Action)> = (0..ACTIONS)
        .map(|_| {
            let user = next() as usize % USERS;
            let trigger = (next() % u64::from(TRIGGERS)) as u32 + 1;
            let value = Decimal::from(next() % 100 + 1);
            (
                user,
                Action::new(format!("user-{user}"), TriggerKey::Id(trigger), value),
            )
        })
        .collect();
    let source = SourceRef::new("bench", 0, 0);
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    let mut group = c.benchmark_group("evaluator");
    group.throughput(Throughput::Elements(ACTIONS as u64));
    group.sample_size(20);
    group.bench_function("100_challenges_10k_users", |b| {
        b.iter_batched_ref(
            || vec![UserState::default(); USERS],
            |states| {
                for (user, action) in &actions {
                    let TriggerKey::Id(id) = action.trigger_id else {
                        unreachable!()
                    };
                    let trigger = tenant.trigger(id).unwrap();
                    let ctx = Context {
                        source: &source,
                        cause: "bench:0:0",
                        record_time: now,
                    };
                    let effects = evaluate(
                        &mut states[*user],
                        UserInput::Action(action, Some(trigger), None),
                        tenant,
                        &action.user_id,
                        &ctx,
                    );
                    std::hint::black_box(effects);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    // The inventory stage with a full window of answered requests (a busy resource): each
    // request is new, so it must be told apart from every answer kept.
    let mut group = c.benchmark_group("inventory");
    const REQUESTS: usize = 1_000;
    group.throughput(Throughput::Elements(REQUESTS as u64));
    group.bench_function("new_requests_full_window", |b| {
        let request = |i: usize| Request {
            request_id: format!("questline.actions:3:{}#r0", 10_000_000 + i),
            tenant: "default".into(),
            user_id: format!("u{}", i % USERS),
            kind: RequestKind::WinnerSlot { challenge_id: 1 },
        };
        let mut full = ResourceState::default();
        for i in 0..RECENT_REQUESTS {
            inventory::evaluate(&mut full, &request(i), tenant);
        }
        let requests: Vec<Request> = (RECENT_REQUESTS..RECENT_REQUESTS + REQUESTS)
            .map(request)
            .collect();
        b.iter_batched(
            || full.clone(),
            |mut state| {
                for r in &requests {
                    std::hint::black_box(inventory::evaluate(&mut state, r, tenant));
                }
                state
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();

    // The hot state's serialized size for a user with 10 active challenges (target: ≤ 1 KiB, docs/benchmarks.md).
    let mut state = UserState::default();
    let ctx = Context {
        source: &source,
        cause: "bench:0:0",
        record_time: now,
    };
    for t in 1..=10u32 {
        let action = Action::new("sized", TriggerKey::Id(t), Decimal::from(7));
        evaluate(
            &mut state,
            UserInput::Action(&action, tenant.trigger(t), None),
            tenant,
            "sized",
            &ctx,
        );
    }
    let size = |state: &UserState| serde_json::to_vec(state).unwrap().len();
    eprintln!(
        "hot state: {} active challenges, {} bytes as JSON",
        state.challenges.len(),
        size(&state)
    );
    // Exactly 10 active challenges: the first ten of that state.
    let mut ten = state.clone();
    let keep: Vec<u32> = ten.challenges.keys().copied().take(10).collect();
    ten.challenges.retain(|id, _| keep.contains(id));
    eprintln!(
        "hot state: {} active challenges, {} bytes as JSON",
        ten.challenges.len(),
        size(&ten)
    );
    // ... and a full window of remembered action ids (a producer that sends them).
    for i in 0..questline::core::state::RECENT_ACTION_IDS {
        ten.remember_action(&format!("action-{i}"));
    }
    eprintln!(
        "hot state: {} active challenges and {} remembered action ids, {} bytes as JSON",
        ten.challenges.len(),
        ten.recent_action_ids.len(),
        size(&ten)
    );
    // As the stores keep it: the binary user row (with a one-partition watermark).
    use questline::store::{HistoryChain, HistoryPos};
    let record = questline::store::UserRecord {
        state: ten,
        applied: [("questline.actions:3".into(), 1_234_567)]
            .into_iter()
            .collect(),
        history_len: 40,
        // Its way into its history: the newest entry and the block link.
        history_chain: HistoryChain {
            head: Some(HistoryPos::new("questline.actions:3", 1_234_567, 1)),
            block: Some(HistoryPos::new("questline.actions:3", 1_234_001, 0)),
        },
    };
    eprintln!(
        "hot state: {} active challenges and {} remembered action ids, {} bytes stored (binary user row)",
        record.state.challenges.len(),
        record.state.recent_action_ids.len(),
        questline::store::user_row(&record).len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
