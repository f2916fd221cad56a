//! Earning rules alone: occurrences/s on one core for a Kwegg-style tenant of 50 events with 5
//! rules each (targets in docs/benchmarks.md).
//!
//! Each event declares three parameters (an integer, a string, a boolean) and has four
//! conditional rules of one to three statements plus its default; every fifth event is capped
//! and every tenth has a daily streak, so per-user state is read and written too. Occurrences
//! carry their parameters already parsed, as the worker's actions do, and are spread over
//! 10,000 users; each is looked up by event name and evaluated with the user's rule states.
//! The second benchmark runs the same occurrences through the user-stage evaluator (the record
//! step's core): rule states inside the user's state, the credit and its event.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use questline::core::catalog::Catalog;
use questline::core::evaluator::{evaluate, Context, UserInput};
use questline::core::model::{Action, SourceRef, TriggerKey};
use questline::core::rules::{evaluate_for_user, RuleOutcome, RuleStates};
use questline::core::state::UserState;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

/// The allocator the `questline` binary runs (src/allocator.rs), so the bench measures what
/// the worker does: with glibc's, this bench measured a quarter to a third less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS: usize = 50;
const USERS: usize = 10_000;
const OCCURRENCES: usize = 100_000;

/// User index, event name, parsed parameters, event time.
type Occurrence = (usize, String, Map<String, Value>, DateTime<Utc>);

fn catalog() -> Catalog {
    let mut text = String::from(
        "tenant = \"kwegg\"\ntime_zone = \"Asia/Kolkata\"\n[[reward_types]]\nreward_type = \"points\"\n",
    );
    for e in 0..EVENTS {
        text += &format!(
            "[[events]]\nname = \"EVENT_{e}\"\nparams = [{{ name = \"duration\", type = \"integer\", mandatory = true }}, {{ name = \"type\", type = \"string\" }}, {{ name = \"premium\", type = \"boolean\" }}]\n"
        );
        if e % 5 == 0 {
            text += "cap = \"once per 10 minutes\"\n";
        }
        if e % 10 == 5 {
            text += "streak = { per_day = 2, days = 7 }\n";
        }
        text += &format!(
            r#"[[events.rules]]
priority = 1
conditions = [{{ param = "type", op = "equal", value = "PRANK" }}, {{ param = "premium", op = "equal", value = true }}]
points = 100
[[events.rules]]
priority = 2
conditions = [{{ param = "type", op = "equal", value = "RECIPE" }}, {{ param = "duration", op = "less_than", value = 10 }}]
points = 200
[[events.rules]]
priority = 3
conditions = [{{ param = "type", op = "starts_with", value = "REC" }}, {{ param = "duration", op = "greater_than", value = {e} }}, {{ param = "premium", op = "is_not_empty" }}]
points = 300
[[events.rules]]
priority = 4
conditions = [{{ param = "duration", op = "equal", value = 20 }}]
points = 500
[[events.rules]]
points = 50
"#
        );
    }
    Catalog::from_sources(&[("bench.toml", text)]).unwrap()
}

fn bench(c: &mut Criterion) {
    let catalog = catalog();
    let tenant = catalog.tenant("kwegg").unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let types = ["PRANK", "RECIPE", "RECAP", "COMEDY"];
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    let occurrences: Vec<Occurrence> = (0..OCCURRENCES)
        .map(|i| {
            let user = next() as usize % USERS;
            let event = format!("EVENT_{}", next() as usize % EVENTS);
            let mut params = json!({
                "duration": next() % 60,
                "type": types[next() as usize % types.len()],
            });
            if next() % 2 == 0 {
                params["premium"] = json!(next() % 2 == 0);
            }
            // About two weeks of traffic, in order.
            let at = start + TimeDelta::seconds(i as i64 * 12);
            (user, event, params.as_object().unwrap().clone(), at)
        })
        .collect();
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(OCCURRENCES as u64));
    group.sample_size(20);
    group.bench_function("50_events_5_rules_10k_users", |b| {
        b.iter_batched_ref(
            || vec![RuleStates::new(); USERS],
            |states| {
                let mut paid = 0u64;
                for (user, event, params, at) in &occurrences {
                    let event = tenant.event(event).unwrap();
                    let outcome =
                        evaluate_for_user(&mut states[*user], event, params, *at, tenant.time_zone);
                    if let Ok(RuleOutcome::Pay(_)) = outcome {
                        paid += 1;
                    }
                }
                std::hint::black_box(paid)
            },
            BatchSize::LargeInput,
        )
    });
    // The same occurrences through the user-stage evaluator, as the record step runs them:
    // lateness, rule states in the user's state, the credit and its `reward.granted` event.
    let actions: Vec<(usize, Action)> = occurrences
        .iter()
        .map(|(user, event, params, at)| {
            let mut action = Action::new(
                format!("user-{user}"),
                TriggerKey::Name(event.clone()),
                Decimal::ONE,
            );
            action.tenant = "kwegg".into();
            action.params = params.clone();
            action.occurred_at = Some(*at);
            (*user, action)
        })
        .collect();
    let source = SourceRef::new("bench", 0, 0);
    let now = start + TimeDelta::days(15);
    group.bench_function("through_the_evaluator_10k_users", |b| {
        b.iter_batched_ref(
            || vec![UserState::default(); USERS],
            |states| {
                let mut events = 0usize;
                for (user, action) in &actions {
                    let TriggerKey::Name(name) = &action.trigger_id else {
                        unreachable!()
                    };
                    let ctx = Context {
                        source: &source,
                        cause: "bench:0:0",
                        record_time: now,
                    };
                    let effects = evaluate(
                        &mut states[*user],
                        UserInput::Action(action, None, tenant.event(name)),
                        tenant,
                        &action.user_id,
                        &ctx,
                    );
                    events += effects.events.len();
                }
                std::hint::black_box(events)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
