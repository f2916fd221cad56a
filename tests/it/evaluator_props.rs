//! Properties of the evaluator over random action sequences (proptest).

use crate::support::engine::*;
use proptest::prelude::*;
use questline::core::catalog::Catalog;
use questline::core::engine::Engine;
use questline::core::events::{Event, EventBody};
use questline::core::mapping::Mapping;
use questline::core::model::SourceRef;
use rust_decimal::Decimal;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A catalog with no shared resources (no inventories, no winners caps), so that one user's
/// results cannot depend on another's: the property "order across users does not matter"
/// holds exactly there. Shared resources are ordered by the inventory stage by design.
const INDEPENDENT: &str = r#"
[[reward_types]]
reward_type = "points"
[[triggers]]
id = 1
name = "Earned Points"
[[triggers]]
id = 2
name = "Visits"
[[triggers]]
id = 6
name = "Hit Tier"
aggregation = "match"
[[challenges]]
id = 1
name = "Earn 1000"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 1000 }]
[[challenges.prizes]]
reward_type = "points"
amount = 100
[[challenges]]
id = 2
name = "Repeat visits"
repeatable = true
max_per_user = 3
overshoot = "carry"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 2, frequency = 7 }, { trigger = 1, operator = "OR", frequency = 300 }]
[[challenges.prizes]]
reward_type = "points"
amount = 5
[[challenges]]
id = 3
name = "Tier after points"
parent = 1
[[challenges.groups]]
id = 1
triggers = [{ trigger = 6, frequency = 3 }]
"#;

fn independent_catalog() -> Arc<Catalog> {
    Arc::new(Catalog::from_sources(&[("props.toml", INDEPENDENT)]).unwrap())
}

#[derive(Debug, Clone)]
struct Act {
    user: u8,
    trigger: u32,
    value: i64,
    action_id: Option<u16>,
}

fn act() -> impl Strategy<Value = Act> {
    (
        0u8..4,
        prop::sample::select(vec![1u32, 2, 6]),
        -300i64..1500,
        prop::option::of(0u16..50),
    )
        .prop_map(|(user, trigger, value, action_id)| Act {
            user,
            trigger,
            value,
            action_id,
        })
}

fn record(a: &Act) -> Vec<u8> {
    let mut v =
        json!({"userId": format!("user-{}", a.user), "triggerId": a.trigger, "value": a.value});
    if let Some(id) = a.action_id {
        v["actionId"] = json!(format!("act-{}-{id}", a.user));
    }
    v.to_string().into_bytes()
}

/// Runs the acts, each at its own offset (its index), returning all events.
fn run(engine: &mut Engine, acts: &[(usize, Act)]) -> Vec<Event> {
    let mapping = Mapping::native();
    let mut events = Vec::new();
    for (offset, a) in acts {
        let source = SourceRef::new("props", 0, *offset as i64);
        events.extend(
            engine
                .process_record(&mapping.compile(), &record(a), &source, at(25, 10))
                .events,
        );
    }
    events
}

proptest! {
    #![proptest_config(crate::support::props::config(256))]

    #[test]
    fn progress_stays_within_0_and_100_and_action_left_is_never_negative(acts in prop::collection::vec(act(), 1..80)) {
        let mut engine = Engine::new(example_catalog());
        let indexed: Vec<_> = acts.into_iter().enumerate().collect();
        for event in run(&mut engine, &indexed) {
            if let EventBody::ProgressUpdated { progress, action_left, accumulated, .. } = event.body {
                prop_assert!(progress >= Decimal::ZERO && progress <= Decimal::ONE_HUNDRED, "{progress}");
                prop_assert!(action_left >= Decimal::ZERO, "{action_left}");
                prop_assert!(accumulated >= Decimal::ZERO, "{accumulated}");
            }
        }
        for (_, state) in engine.users() {
            for balance in state.balances.values() {
                prop_assert!(*balance >= Decimal::ZERO);
            }
        }
    }

    #[test]
    fn replaying_a_prefix_with_the_same_action_ids_changes_nothing(
        acts in prop::collection::vec(act(), 1..60),
        cut in 0usize..60,
    ) {
        // Every action carries an id here, as a producer retrying would.
        let acts: Vec<Act> = acts.into_iter().enumerate().map(|(i, mut a)| { a.action_id = Some(i as u16); a }).collect();
        let indexed: Vec<_> = acts.into_iter().enumerate().collect();
        let mut engine = Engine::new(independent_catalog());
        run(&mut engine, &indexed);
        let before: BTreeMap<_, _> = engine.users().map(|(k, v)| (k.clone(), v.clone())).collect();
        let cut = cut.min(indexed.len());
        // Redelivered at new offsets (a producer retry, not a Kafka redelivery).
        let again: Vec<_> = indexed[..cut].iter().map(|(i, a)| (i + 1000, a.clone())).collect();
        let events = run(&mut engine, &again);
        prop_assert!(events.is_empty(), "{events:?}");
        let after: BTreeMap<_, _> = engine.users().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(before, after);
    }

    #[test]
    fn the_order_of_different_users_actions_does_not_change_any_users_result(
        acts in prop::collection::vec(act(), 1..80),
        seed in any::<u64>(),
    ) {
        let indexed: Vec<_> = acts.into_iter().enumerate().collect();
        // Interleave users differently while keeping each user's own order.
        let mut by_user: BTreeMap<u8, Vec<(usize, Act)>> = BTreeMap::new();
        for (i, a) in &indexed {
            by_user.entry(a.user).or_default().push((*i, a.clone()));
        }
        let mut shuffled = Vec::new();
        let mut rng = seed;
        let mut queues: Vec<_> = by_user.into_values().map(|v| v.into_iter()).collect();
        while !queues.is_empty() {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let pick = (rng >> 33) as usize % queues.len();
            match queues[pick].next() {
                Some(x) => shuffled.push(x),
                None => { queues.remove(pick); }
            }
        }
        let mut a = Engine::new(independent_catalog());
        let mut b = Engine::new(independent_catalog());
        let events_a = run(&mut a, &indexed);
        let events_b = run(&mut b, &shuffled);
        let per_user = |events: Vec<Event>| {
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for e in events {
                m.entry(e.user_id.to_string()).or_default().push(serde_json::to_string(&e).unwrap());
            }
            m
        };
        prop_assert_eq!(per_user(events_a), per_user(events_b));
        let states = |e: &Engine| e.users().map(|(k, v)| (k.clone(), v.clone())).collect::<BTreeMap<_, _>>();
        prop_assert_eq!(states(&a), states(&b));
    }
}
