//! The ledger's invariants on the record step: bounded numbers, claims exactly-once forever,
//! stock counted once whichever path claims it, expiry, lateness and bounded unclaimed lists.
//! Each test names the defect it pins (they all failed before the ledger work).

use crate::support::engine::*;
use questline::core::catalog::Catalog;
use questline::core::events::{EventBody, RejectReason};
use questline::core::model::{Action, TriggerKey};
use rust_decimal::Decimal;
use serde_json::json;
use std::str::FromStr;
use std::sync::Arc;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const LEDGER: &str = r#"
[[reward_types]]
reward_type = "points"
[[reward_types]]
reward_type = "tshirt"
kind = "item"
[[inventories]]
id = "tshirts"
reward_type = "tshirt"
amount_total = 1
grant_depleted = true
claim_depleted = false

[[triggers]]
id = 1
name = "points earned"
[[triggers]]
id = 2
name = "posts"
[[triggers]]
id = 3
name = "tier"
aggregation = "match"
comparator = "gte"
[[triggers]]
id = 4
name = "visits"

# 10 points for every 100 earned, prizes expire after 30 days.
[[challenges]]
id = 1
name = "Earner"
repeatable = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 100 }]
[[challenges.prizes]]
reward_type = "points"
amount = 10
expires_after_days = 30

# A t-shirt for 5 posts (stock 1; grants go on when depleted, claims do not).
[[challenges]]
id = 2
name = "Poster"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 2, frequency = 5 }]
[[challenges.prizes]]
reward_type = "tshirt"

# An AND that a huge value on one side leaves unmet.
[[challenges]]
id = 3
name = "Both"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 1000 }, { trigger = 3, operator = "AND", frequency = 5 }]

# A window that closed on 2026-11-01.
[[challenges]]
id = 4
name = "October"
end = "2026-11-01T00:00:00Z"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 4, frequency = 1 }]
[[challenges.prizes]]
reward_type = "points"
amount = 5

# A point per visit, credited at once.
[[challenges]]
id = 5
name = "Per visit"
repeatable = true
auto_claim = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 4, frequency = 1 }]
[[challenges.prizes]]
reward_type = "points"
amount = 1

# Per-post badges, at most 3 unclaimed.
[[challenges]]
id = 6
name = "Post badges"
repeatable = true
max_unclaimed = 3
[[challenges.groups]]
id = 1
triggers = [{ trigger = 2, frequency = 1 }]
[[challenges.prizes]]
reward_type = "points"
amount = 1
"#;

fn driver() -> Driver {
    Driver::with(Arc::new(
        Catalog::from_sources(&[("ledger.toml", LEDGER)]).unwrap(),
    ))
}

fn balance(t: &Driver, user: &str) -> Decimal {
    t.engine
        .user("default", user)
        .map(|s| s.balance("points"))
        .unwrap_or_default()
}

/// Issue item 1: 2 × (2^96 − 1) points in one claim panicked the evaluator (crash loop).
#[test]
fn a_claim_of_the_largest_decimals_fails_cleanly() {
    let mut t = driver();
    t.act("u", json!(1), json!(100));
    let max = "79228162514264337593543950335";
    let claim = questline::core::evaluator::ClaimCommand {
        claim_id: "big".into(),
        tenant: "default".into(),
        user_id: "u".into(),
        milestone_ids: vec![],
        items: vec![
            questline::core::evaluator::ClaimAmount {
                reward_type: "points".into(),
                amount: d(max),
            },
            questline::core::evaluator::ClaimAmount {
                reward_type: "points".into(),
                amount: d(max),
            },
        ],
    };
    let source = t.next_source();
    let events = t.engine.process_claim(&claim, &source, t.now).events;
    let EventBody::ClaimFailed { reason, .. } = &events[0].body else {
        panic!("{events:?}")
    };
    assert!(reason.contains("at most"), "{reason}");
    assert_eq!(balance(&t, "u"), d("10"));
}

/// Issue item 1: a huge value on an unmet AND trigger, then +1, overflowed the accumulator.
/// Such a value no longer gets past the mapping (next test), so it is handed to the evaluator
/// directly: the evaluator must stay safe whatever reaches it.
#[test]
fn huge_values_saturate_instead_of_overflowing() {
    let mut t = driver();
    let action = |value: &str| Action {
        tenant: "default".into(),
        user_id: "u".into(),
        trigger_id: TriggerKey::Id(1),
        value: d(value),
        action_id: None,
        occurred_at: None,
        params: Default::default(),
        location: None,
        action_type: None,
    };
    for value in ["79228162514264337593543950335", "1"] {
        let source = t.next_source();
        let events = t
            .engine
            .process_action(&action(value), Some(1), &source, t.now)
            .events;
        assert!(!events.is_empty(), "{value}");
    }
    let state = t.engine.user("default", "u").unwrap();
    let both = &state.challenges[&3].triggers[0];
    assert_eq!(both.accumulated, questline::core::limits::MAX_ACCUMULATED);
}

/// The documented bound of an action's value (10^15 in magnitude, 8 decimal places) holds
/// where the value enters: past it, the record is a dead letter naming `value` and nothing of
/// the user's changes; at it, the action counts.
#[test]
fn values_past_the_bound_are_dead_letters_naming_value() {
    let mut t = driver();
    for value in [
        json!("79228162514264337593543950335"),
        json!(1_000_000_000_000_001u64),
        json!("-1000000000000001"),
        json!("0.000000001"),
    ] {
        let events = t.act("u", json!(1), value.clone());
        let [event] = events.as_slice() else {
            panic!("{value}: {events:?}")
        };
        let EventBody::DeadLetter { field, reason, .. } = &event.body else {
            panic!("{value}: {event:?}")
        };
        assert_eq!(field.as_deref(), Some("value"), "{value}");
        assert!(reason.starts_with("value: must"), "{reason}");
        assert_eq!(&*event.user_id, "u");
    }
    assert!(t.engine.user("default", "u").is_none(), "nothing applied");
    let events = t.act("u", json!(1), json!(1_000_000_000_000_000u64));
    assert!(kinds(&events).contains(&"milestone.achieved"), "{events:?}");
}

/// Issue item 4: a claim id retried after 64 other actions paid again.
#[test]
fn a_claim_id_is_exactly_once_forever() {
    let mut t = driver();
    t.act("u", json!(1), json!(300)); // 3 milestones, 30 points
    let first = t.claim("u", "c-1", &[], &[("points", 10)]);
    assert_eq!(kinds(&first), ["claim.completed"]);
    for i in 0..100 {
        t.send(json!({"userId": "u", "triggerId": 4, "actionId": format!("a{i}")}));
    }
    let before = balance(&t, "u");
    let again = t.claim("u", "c-1", &[], &[("points", 10)]);
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(balance(&t, "u"), before);
    // A completed milestone claim retried stays completed.
    let m = t.claim("u", "c-2", &["1-1"], &[]);
    assert_eq!(kinds(&m), ["claim.completed"]);
    for i in 0..100 {
        t.send(json!({"userId": "u", "triggerId": 4, "actionId": format!("b{i}")}));
    }
    assert!(t.claim("u", "c-2", &["1-1"], &[]).is_empty());
    let stored = t.engine.claim("default", "u", "c-2").unwrap();
    assert_eq!(stored.event.kind(), "claim.completed");
}

/// Issue items 5 and 7: a milestone claim skipped the inventory (stock, claim_depleted,
/// amount_claimed), and claim items never named their inventory.
#[test]
fn milestone_claims_go_through_the_inventory_like_item_claims() {
    let mut t = driver();
    for user in ["a", "b"] {
        for _ in 0..5 {
            t.act(user, json!(2), json!(1));
        }
    }
    // Both won a t-shirt (the second past the stock: grants go on when depleted).
    let resource = t.engine.resource("default/reward/tshirt").unwrap();
    assert_eq!(resource.granted["tshirts"], 2);
    // The first claim takes the one unit; it names its inventory.
    let a = t.claim("a", "ca", &["2-1"], &[]);
    let EventBody::ClaimCompleted { items, .. } = &a[0].body else {
        panic!("{a:?}")
    };
    assert_eq!(items[0].inventory_id.as_deref(), Some("tshirts"));
    // The second, through its milestone too, is refused: claims do not go on when depleted.
    let b = t.claim("b", "cb", &["2-1"], &[]);
    let EventBody::ClaimFailed { reason, .. } = &b[0].body else {
        panic!("{b:?}")
    };
    assert_eq!(reason, "depleted");
    let resource = t.engine.resource("default/reward/tshirt").unwrap();
    assert_eq!(resource.claimed["tshirts"], 1);
    // The refused claim gave the milestone and the balance back.
    let state = t.engine.user("default", "b").unwrap();
    assert!(state.milestones.iter().any(|m| m.milestone_id == "2-1"));
    assert_eq!(state.balance("tshirt"), d("1"));
}

/// Issue item 6: fractional item claims consumed whole units of stock.
#[test]
fn inventory_backed_items_are_claimed_in_whole_units() {
    let mut t = driver();
    for _ in 0..5 {
        t.act("a", json!(2), json!(1));
    }
    let events = t.claim("a", "zero", &[], &[("tshirt", 0)]);
    assert_eq!(kinds(&events), ["claim.failed"]);
    let claim = questline::core::evaluator::ClaimCommand {
        claim_id: "half".into(),
        tenant: "default".into(),
        user_id: "a".into(),
        milestone_ids: vec![],
        items: vec![questline::core::evaluator::ClaimAmount {
            reward_type: "tshirt".into(),
            amount: d("0.5"),
        }],
    };
    let source = t.next_source();
    let events = t.engine.process_claim(&claim, &source, t.now).events;
    let EventBody::ClaimFailed { reason, .. } = &events[0].body else {
        panic!("{events:?}")
    };
    assert!(reason.contains("whole number of units"), "{reason}");
    assert!(t
        .engine
        .resource("default/reward/tshirt")
        .unwrap()
        .claimed
        .is_empty());
}

/// Issue item 8: an expired prize was claimed months later.
#[test]
fn expired_prizes_leave_the_balance_and_cannot_be_claimed() {
    let mut t = driver();
    t.act("u", json!(1), json!(100));
    assert_eq!(balance(&t, "u"), d("10"));
    t.now += chrono::Duration::days(31);
    let events = t.claim("u", "late", &["1-1"], &[]);
    assert_eq!(kinds(&events), ["reward.expired", "claim.failed"]);
    let EventBody::RewardExpired {
        amount, balance: b, ..
    } = &events[0].body
    else {
        unreachable!()
    };
    assert_eq!((*amount, *b), (Some(d("10")), d("0")));
    let EventBody::ClaimFailed { reason, .. } = &events[1].body else {
        unreachable!()
    };
    assert!(reason.contains("expired"), "{reason}");
    assert!(t.engine.user("default", "u").unwrap().milestones.is_empty());
}

/// Issue item 9: a backdated occurredAt paid on a challenge that ended long ago.
#[test]
fn backdated_actions_cannot_pay_on_challenges_closed_before_the_lateness_bound() {
    let mut t = driver();
    // now is 2026-11-25; the October challenge closed on 2026-11-01.
    let late = t.send(json!({"userId": "u", "triggerId": 4, "occurredAt": "2026-10-15T00:00:00Z"}));
    assert!(of_kind(&late.events, "milestone.achieved")
        .iter()
        .all(|m| !matches!(
            m,
            EventBody::MilestoneAchieved {
                challenge_id: 4,
                ..
            }
        )));
    // Within the allowed lateness (24 h) it still counts.
    let mut t2 = driver();
    t2.now = chrono::DateTime::parse_from_rfc3339("2026-11-01T10:00:00Z")
        .unwrap()
        .into();
    let on_time =
        t2.send(json!({"userId": "u", "triggerId": 4, "occurredAt": "2026-10-31T23:00:00Z"}));
    assert!(of_kind(&on_time.events, "milestone.achieved")
        .iter()
        .any(|m| matches!(
            m,
            EventBody::MilestoneAchieved {
                challenge_id: 4,
                ..
            }
        )));
}

/// Issue item 10: per-event rewards piled up unclaimed milestones without bound.
#[test]
fn auto_claimed_prizes_leave_no_milestone_and_unclaimed_lists_are_bounded() {
    let mut t = driver();
    for _ in 0..300 {
        t.act("u", json!(4), json!(1));
    }
    let state = t.engine.user("default", "u").unwrap();
    assert!(state.milestones.iter().all(|m| m.challenge_id != 5));
    assert_eq!(state.balance("points"), d("300"));
    // Post badges: at most 3 unclaimed, then rejected until the user claims.
    let mut rejected = 0;
    for _ in 0..5 {
        for e in t.act("v", json!(2), json!(1)) {
            if let EventBody::RewardRejected {
                reason: RejectReason::UnclaimedLimit,
                challenge_id: Some(6),
                ..
            } = e.body
            {
                rejected += 1;
            }
        }
    }
    let state = t.engine.user("default", "v").unwrap();
    let unclaimed = state
        .milestones
        .iter()
        .filter(|m| m.challenge_id == 6)
        .count();
    assert_eq!((unclaimed, rejected), (3, 2));
    t.claim("v", "c", &["6-1"], &[]);
    let events = t.act("v", json!(2), json!(1));
    assert_eq!(of_kind(&events, "milestone.achieved").len(), 1);
}
