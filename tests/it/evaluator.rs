//! The evaluator's rules, one test each, on the shipped example catalog.

use crate::support::engine::*;
use questline::core::catalog::Catalog;
use questline::core::events::{EventBody, RejectReason};
use questline::core::mapping::Mapping;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::Arc;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn progress(events: &[questline::core::events::Event]) -> Vec<(Decimal, Decimal, Decimal)> {
    of_kind(events, "progress.updated")
        .into_iter()
        .map(|b| match b {
            EventBody::ProgressUpdated {
                accumulated,
                action_left,
                progress,
                ..
            } => (*accumulated, *action_left, *progress),
            _ => unreachable!(),
        })
        .collect()
}

#[test]
fn the_seeds_worked_example_holds_exactly() {
    let mut t = Driver::new();
    let e = t.act("151631", json!(1), json!(200));
    assert_eq!(progress(&e), vec![(d("200"), d("800"), d("20"))]);
    let e = t.act("151631", json!(1), json!(300));
    assert_eq!(progress(&e), vec![(d("500"), d("500"), d("50"))]);
    let e = t.act("151631", json!(1), json!(500));
    assert_eq!(progress(&e), vec![(d("1000"), d("0"), d("100"))]);
    assert_eq!(
        kinds(&e),
        ["progress.updated", "milestone.achieved", "reward.granted"]
    );
    let v = json(&e);
    assert_eq!(v[1]["milestoneId"], "1-1");
    assert_eq!(
        v[1]["prizes"][0]["description"],
        "You have won 40% off Buffalo Burger"
    );
    assert_eq!(v[1]["prizes"][0]["expirationDate"], "2026-12-25T10:00:00Z");
    assert_eq!(v[2]["code"], "BURGER-0001");
    assert_eq!(v[2]["balance"], 1);
    // The milestone is awarded unclaimed: it waits in the user's state with its code.
    let user = t.engine.user("default", "151631").unwrap();
    assert_eq!(user.milestones.len(), 1);
    assert_eq!(
        user.milestones[0].prizes[0].value.as_deref(),
        Some("BURGER-0001")
    );
}

#[test]
fn values_are_decimals_end_to_end() {
    let mut t = Driver::new();
    let e = t.act("u", json!(1), json!("1000.00"));
    assert_eq!(progress(&e), vec![(d("1000"), d("0"), d("100"))]);
    let mut t = Driver::new();
    let e = t.act("u", json!(1), json!(999.5));
    assert_eq!(progress(&e), vec![(d("999.5"), d("0.5"), d("99.95"))]);
    assert_eq!(json(&e)[0]["progress"], json!(99.95));
    assert_eq!(kinds(&e), ["progress.updated"], "99.95 % is not done");
}

#[test]
fn a_non_repeatable_challenge_is_done_after_its_milestone() {
    let mut t = Driver::new();
    t.act("u", json!(1), json!(1000));
    let e = t.act("u", json!(1), json!(1000));
    assert!(
        e.is_empty(),
        "finished challenges take no more progress: {e:?}"
    );
}

#[test]
fn an_action_id_already_applied_changes_nothing() {
    let mut t = Driver::new();
    let first = t.send(json!({"userId": "u", "triggerId": 1, "value": 300, "actionId": "a-1"}));
    assert_eq!(first.events.len(), 1);
    let before = t.engine.user("default", "u").cloned();
    let again = t.send(json!({"userId": "u", "triggerId": 1, "value": 300, "actionId": "a-1"}));
    assert!(again.duplicate);
    assert!(again.events.is_empty());
    assert_eq!(t.engine.user("default", "u").cloned(), before);
}

#[test]
fn negative_quantities_adjust_progress_but_never_below_zero() {
    let mut t = Driver::new();
    let kick = mapping("kickapps");
    let send = |t: &mut Driver, q: i64| {
        t.send_with(
            &kick,
            json!({"user_id": "k", "actionId": "post_comment", "location": "forum", "quantity": q}),
        )
    };
    assert_eq!(
        progress(&send(&mut t, 3).events),
        vec![(d("3"), d("2"), d("60"))]
    );
    assert_eq!(
        progress(&send(&mut t, -1).events),
        vec![(d("2"), d("3"), d("40"))]
    );
    assert_eq!(
        progress(&send(&mut t, -10).events),
        vec![(d("0"), d("5"), d("0"))]
    );
    assert!(
        send(&mut t, -1).events.is_empty(),
        "already at zero: nothing changes"
    );
}

#[test]
fn action_and_location_form_the_compound_key() {
    let mut t = Driver::new();
    let kick = mapping("kickapps");
    let forum = t.send_with(
        &kick,
        json!({"user_id": "k", "actionId": "post_comment", "location": "forum"}),
    );
    let other = t.send_with(
        &kick,
        json!({"user_id": "k", "actionId": "post_comment", "location": "blog"}),
    );
    let challenge = |e: &[questline::core::events::Event]| json(e)[0]["challengeId"].clone();
    assert_eq!(
        challenge(&forum.events),
        json!(5),
        "forum comments count toward challenge 5"
    );
    assert_eq!(
        challenge(&other.events),
        json!(6),
        "comments elsewhere toward challenge 6"
    );
}

/// A numeric actionId is the compound key with its location too: trigger 20 is the forum's
/// `post_comment`, so action 20 in the blog is no forum comment.
#[test]
fn a_numeric_action_id_honours_the_location() {
    let mut t = Driver::new();
    let kick = mapping("kickapps");
    let blog = t.send_with(
        &kick,
        json!({"user_id": "k", "actionId": 20, "location": "blog"}),
    );
    let v = json(&blog.events);
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["type"], "dead_letter");
    assert_eq!(v[0]["field"], "triggerId");
    assert_eq!(v[0]["reason"], "triggerId: unknown trigger '20@blog'");
    let forum = t.send_with(
        &kick,
        json!({"user_id": "k", "actionId": 20, "location": "forum"}),
    );
    assert_eq!(json(&forum.events)[0]["challengeId"], json!(5));
}

#[test]
fn and_binds_tighter_than_or_between_groups() {
    // Challenge 4: (2 subscriptions AND 1 redemption) OR (balance >= 5000).
    let mut t = Driver::new();
    t.act("a", json!(2), json!(2));
    assert!(of_kind(&t.act("a", json!(2), json!(0)), "milestone.achieved").is_empty());
    let e = t.act("a", json!(4), json!(1));
    assert_eq!(
        of_kind(&e, "milestone.achieved").len(),
        1,
        "first group satisfied"
    );

    let mut t = Driver::new();
    let e = t.act("b", json!(5), json!(5200));
    assert_eq!(
        of_kind(&e, "milestone.achieved").len(),
        1,
        "second group alone satisfies OR"
    );

    let mut t = Driver::new();
    t.act("c", json!(2), json!(5));
    let e = t.act("c", json!(5), json!(10));
    assert!(
        of_kind(&e, "milestone.achieved").is_empty(),
        "neither side complete"
    );
}

#[test]
fn join_in_order_follows_the_documented_precedence() {
    use questline::core::catalog::Operator::{And, Or};
    use questline::core::evaluator::join_in_order;
    // A OR B AND C == A OR (B AND C)
    assert!(join_in_order([(And, true), (Or, false), (And, false)]));
    assert!(!join_in_order([(And, false), (Or, true), (And, false)]));
    assert!(join_in_order([(And, false), (Or, true), (And, true)]));
    // A AND B OR C == (A AND B) OR C
    assert!(join_in_order([(And, false), (And, true), (Or, true)]));
    assert!(!join_in_order(Vec::new()));
}

#[test]
fn a_match_trigger_needs_the_exact_value_in_one_action() {
    let mut t = Driver::new();
    t.act("u", json!(1), json!(1000)); // unlocks challenge 3 (parent 1)
    assert!(
        t.act("u", json!(6), json!(2)).is_empty(),
        "tier 2 is not tier 3"
    );
    let e = t.act("u", json!(6), json!(3));
    assert_eq!(progress(&e), vec![(d("3"), d("0"), d("100"))]);
    assert_eq!(of_kind(&e, "milestone.achieved").len(), 1);
}

#[test]
fn a_child_challenge_is_locked_until_its_parent_is_achieved() {
    let mut t = Driver::new();
    assert!(
        t.act("u", json!(6), json!(3)).is_empty(),
        "challenge 3 is locked"
    );
    t.act("u", json!(1), json!(1000));
    assert_eq!(
        of_kind(&t.act("u", json!(6), json!(3)), "milestone.achieved").len(),
        1
    );
}

#[test]
fn windows_use_event_time() {
    let mut t = Driver::new();
    let outside = t.send(json!({"userId": "u", "triggerId": "post_comment", "location": "blog", "occurredAt": "2025-06-01T00:00:00Z"}));
    assert!(
        outside.events.is_empty(),
        "challenge 6 runs during 2026 only"
    );
    let inside = t.send(json!({"userId": "u", "triggerId": "post_comment", "location": "blog", "occurredAt": "2026-06-01T00:00:00Z"}));
    assert_eq!(inside.events.len(), 1);
    assert_eq!(
        json(&inside.events)[0]["occurredAt"],
        "2026-06-01T00:00:00Z"
    );
}

#[test]
fn repeatable_challenges_start_over_and_carry_the_excess() {
    // Challenge 2: redeem 100, repeatable, overshoot carries, 2 wins a day.
    let mut t = Driver::new();
    let e = t.act("u", json!(3), json!(250));
    assert_eq!(
        of_kind(&e, "milestone.achieved").len(),
        2,
        "250 is two wins of 100"
    );
    let state = t.engine.user("default", "u").unwrap();
    assert_eq!(state.challenges[&2].triggers[0].accumulated, d("50"));
    assert_eq!(state.balance("points"), d("20"));
    let v = json(&e);
    let milestones: Vec<_> = v
        .iter()
        .filter(|e| e["type"] == "milestone.achieved")
        .map(|e| e["milestoneId"].clone())
        .collect();
    assert_eq!(milestones, [json!("2-1"), json!("2-2")]);
}

#[test]
fn the_per_user_cap_stops_prizes_and_says_why() {
    let mut t = Driver::new();
    t.act("u", json!(3), json!(200)); // two wins: the daily cap
    let e = t.act("u", json!(3), json!(100));
    assert!(of_kind(&e, "milestone.achieved").is_empty());
    assert!(of_kind(&e, "reward.granted").is_empty());
    let rejected = of_kind(&e, "reward.rejected");
    assert!(matches!(
        rejected[..],
        [EventBody::RewardRejected {
            reason: RejectReason::Capped,
            ..
        }]
    ));
    // The next day the cap starts over.
    t.now = at(26, 10);
    let e = t.act("u", json!(3), json!(100));
    assert_eq!(of_kind(&e, "milestone.achieved").len(), 1);
}

#[test]
fn the_global_winners_cap_admits_exactly_max_winners() {
    // Challenge 5: max_winners = 2; prize: a t-shirt from a stock of 2.
    let mut t = Driver::new();
    let kick = mapping("kickapps");
    let mut results = Vec::new();
    for user in ["a", "b", "c"] {
        let e = t.send_with(&kick, json!({"user_id": user, "actionId": "post_comment", "location": "forum", "quantity": 5}));
        results.push(e.events);
    }
    for winner in &results[..2] {
        assert_eq!(
            kinds(winner),
            ["progress.updated", "milestone.achieved", "reward.granted"]
        );
        assert_eq!(json(winner)[2]["rewardType"], "tshirt");
    }
    assert_eq!(kinds(&results[2]), ["progress.updated", "reward.rejected"]);
    assert_eq!(json(&results[2])[1]["reason"], "limit");
    // The loser's challenge is closed: more comments change nothing.
    let e = t.send_with(
        &kick,
        json!({"user_id": "c", "actionId": "post_comment", "location": "forum"}),
    );
    assert!(e.events.is_empty());
}

#[test]
fn a_depleted_voucher_pool_rejects_the_prize_but_awards_the_milestone() {
    let mut t = Driver::new();
    let mut codes = Vec::new();
    for user in ["a", "b", "c", "d"] {
        let e = t.act(user, json!(1), json!(1000));
        codes.push(json(&e).last().unwrap().clone());
    }
    assert_eq!(codes[0]["code"], "BURGER-0001");
    assert_eq!(codes[2]["code"], "BURGER-0003");
    assert_eq!(codes[3]["type"], "reward.rejected");
    assert_eq!(codes[3]["reason"], "depleted");
    let d_state = t.engine.user("default", "d").unwrap();
    assert_eq!(d_state.milestones.len(), 1);
    assert!(
        d_state.milestones[0].prizes.is_empty(),
        "the rejected prize is not shown"
    );
}

#[test]
fn an_inactive_reward_type_is_rejected_and_the_others_granted() {
    let mut t = Driver::new();
    let e = t.act("u", json!("order_food"), json!(3));
    let v = json(&e);
    assert_eq!(
        kinds(&e),
        [
            "progress.updated",
            "milestone.achieved",
            "reward.rejected",
            "reward.granted"
        ]
    );
    assert_eq!(v[2]["reason"], "inactive");
    assert_eq!(v[2]["rewardType"], "legacy_coins");
    assert_eq!(v[3]["amount"], 30);
}

#[test]
fn hidden_challenges_still_count() {
    let mut t = Driver::new();
    let mut last = Vec::new();
    for i in 0..10 {
        last = t
            .send(json!({"userId": "12", "triggerId": "product_viewed", "params": {"id": format!("view-{i}")}}))
            .events;
    }
    assert_eq!(of_kind(&last, "milestone.achieved").len(), 1);
}

/// The seed's own Kwegg example puts a product id in `params.id`: it names what the occurrence
/// is about, not the occurrence, so the same product again must pay again. Only the
/// occurrence's own `event.id` is an idempotency key. Through the shipped Kwegg mapping, into
/// the `kwegg` tenant's earning rules (`REVIEW_WRITTEN` pays 10 per review).
#[test]
fn kwegg_reviews_of_the_same_product_pay_and_only_event_ids_deduplicate() {
    let mut t = Driver::new();
    let kwegg = mapping("kwegg");
    let review =
        json!({"userId": "12", "event": {"name": "REVIEW_WRITTEN", "params": {"id": "1234"}}});
    let mut paid = Vec::new();
    for _ in 0..3 {
        let p = t.send_with(&kwegg, review.clone());
        assert!(
            !p.duplicate,
            "a second review of product 1234 is not a duplicate"
        );
        paid.extend(
            json(&p.events)
                .into_iter()
                .filter(|e| e["type"] == "reward.granted"),
        );
    }
    let amounts: Vec<_> = paid
        .iter()
        .map(|e| (e["tenant"].clone(), e["amount"].clone()))
        .collect();
    assert_eq!(amounts, vec![(json!("kwegg"), json!(10)); 3], "{paid:#?}");
    assert_eq!(
        t.engine.user("kwegg", "12").unwrap().balance("points"),
        30.into()
    );

    let occurrence = json!({"userId": "13", "event": {"id": "occ-1", "name": "REVIEW_WRITTEN", "params": {"id": "1234"}}});
    assert!(!t.send_with(&kwegg, occurrence.clone()).duplicate);
    let again = t.send_with(&kwegg, occurrence);
    assert!(again.duplicate, "the same event.id twice is one occurrence");
    assert!(again.events.is_empty());
    assert_eq!(
        t.engine.user("kwegg", "13").unwrap().balance("points"),
        10.into()
    );
}

#[test]
fn claims_move_milestones_to_history_and_spend_the_balance() {
    let mut t = Driver::new();
    t.act("u", json!(3), json!(100)); // milestone 2-1: 10 points
    let e = t.claim("u", "c-1", &["2-1"], &[]);
    let v = json(&e);
    assert_eq!(v[0]["type"], "claim.completed");
    assert_eq!(v[0]["items"][0]["amount"], 10);
    let state = t.engine.user("default", "u").unwrap();
    assert!(state.milestones.is_empty());
    assert_eq!(state.balance("points"), Decimal::ZERO);
    // Claiming it again fails and says why; so does claiming more than the balance.
    let v = json(&t.claim("u", "c-2", &["2-1"], &[]));
    assert_eq!(v[0]["type"], "claim.failed");
    assert!(v[0]["reason"].as_str().unwrap().contains("already claimed"));
    let v = json(&t.claim("u", "c-3", &[], &[("points", 5)]));
    assert!(
        v[0]["reason"]
            .as_str()
            .unwrap()
            .contains("insufficient balance"),
        "{v:?}"
    );
    // The same claim id twice is one claim.
    assert!(t.claim("u", "c-3", &[], &[("points", 5)]).is_empty());
}

#[test]
fn a_claim_of_an_inventory_item_goes_through_the_inventory_stage() {
    let mut t = Driver::new();
    let kick = mapping("kickapps");
    t.send_with(
        &kick,
        json!({"user_id": "a", "actionId": "post_comment", "location": "forum", "quantity": 5}),
    );
    assert_eq!(
        t.engine.user("default", "a").unwrap().balance("tshirt"),
        Decimal::ONE
    );
    let v = json(&t.claim("a", "shirt", &[], &[("tshirt", 1)]));
    assert_eq!(v[0]["type"], "claim.completed");
    let stock = t.engine.resource("default/reward/tshirt").unwrap();
    assert_eq!(stock.claimed["tshirts-fall"], 1);
}

#[test]
fn unknown_triggers_and_bad_records_become_dead_letters_naming_the_field() {
    let mut t = Driver::new();
    let e = t.send(json!({"userId": "u", "triggerId": 999, "value": 1}));
    let v = json(&e.events);
    assert_eq!(v[0]["type"], "dead_letter");
    assert_eq!(v[0]["field"], "triggerId");
    assert_eq!(v[0]["userId"], "u");
    let kick = mapping("kickapps");
    let e = t.send_with(
        &kick,
        json!({"user_id": "k", "actionId": "post_comment", "location": "x".repeat(65)}),
    );
    let v = json(&e.events);
    assert_eq!(
        v[0]["errorCode"], 20,
        "KickApps: location cannot exceed 64 characters"
    );
    let e = t.send_with(
        &kick,
        json!({"user_id": "k", "actionId": "post_comment", "location": "forum", "quantity": 1.5}),
    );
    assert_eq!(
        json(&e.events)[0]["errorCode"],
        11,
        "KickApps: quantity must be an integer"
    );
    let e = t.send_with(
        &kick,
        json!({"actionId": "post_comment", "location": "forum"}),
    );
    assert_eq!(
        json(&e.events)[0]["errorCode"],
        13,
        "KickApps: invalid userId"
    );
}

/// A record with a readable user id and a bad field is dead-lettered under that user (the
/// dead letter is keyed by it, and support can find it); a record whose user id cannot be read
/// has none.
#[test]
fn field_error_dead_letters_carry_the_user_id_the_mapping_could_read() {
    let mut t = Driver::new();
    let kick = mapping("kickapps");
    let dead = |t: &mut Driver, m: &Mapping, record: Value| {
        json(&t.send_with(m, record).events)[0].clone()
    };
    let v = dead(
        &mut t,
        &kick,
        json!({"user_id": 151631, "actionId": "post_comment", "location": "forum", "quantity": 1.5}),
    );
    assert_eq!(
        (v["type"].as_str(), v["field"].as_str()),
        (Some("dead_letter"), Some("value"))
    );
    assert_eq!(v["userId"], "151631");
    let native = Mapping::native();
    let v = dead(
        &mut t,
        &native,
        json!({"userId": " u7 ", "triggerId": 1, "occurredAt": "yesterday"}),
    );
    assert_eq!(
        (v["field"].as_str(), v["userId"].as_str()),
        (Some("occurredAt"), Some("u7"))
    );
    let v = dead(&mut t, &native, json!({"userId": ["u"], "triggerId": 1}));
    assert_eq!(
        (v["field"].as_str(), v["userId"].as_str()),
        (Some("userId"), Some(""))
    );
}

#[test]
fn event_ids_are_deterministic_and_unique() {
    let run = || {
        let mut t = Driver::new();
        let mut ids = Vec::new();
        for user in ["a", "b", "c", "d"] {
            for e in t.act(user, json!(1), json!(1000)) {
                ids.push(e.event_id);
            }
        }
        ids
    };
    let first = run();
    assert_eq!(first, run());
    let unique: std::collections::HashSet<_> = first.iter().collect();
    assert_eq!(unique.len(), first.len());
}

/// A catalog that exercises every path of the action evaluator at once: decimal frequencies,
/// match comparators, carry and discard, day/week/month caps, a parent, a window, one trigger
/// in two groups, an inactive reward type, a voucher pool and a limited challenge.
const PINNED: &str = r#"
[[reward_types]]
reward_type = "points"
[[reward_types]]
reward_type = "coins"
active = false
[[reward_types]]
reward_type = "voucher"
kind = "voucher"
[[reward_types]]
reward_type = "item"
kind = "item"
[[inventories]]
id = "vouchers"
reward_type = "voucher"
amount_total = 2
codes = ["V-1", "V-2"]
[[inventories]]
id = "items"
reward_type = "item"
amount_total = 3
[[triggers]]
id = 1
name = "sum one"
[[triggers]]
id = 2
name = "sum two"
[[triggers]]
id = 3
name = "at least"
aggregation = "match"
comparator = "gte"
[[triggers]]
id = 4
name = "below"
aggregation = "match"
comparator = "lt"
[[triggers]]
id = 5
name = "exactly"
aggregation = "match"
[[triggers]]
id = 6
name = "sum six"
[[challenges]]
id = 10
name = "carry weekly"
repeatable = true
overshoot = "carry"
max_per_user = 3
cap_period = "week"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = "99.5" }, { trigger = 2, frequency = "0.3" }]
[[challenges.groups]]
id = 2
operator = "OR"
triggers = [{ trigger = 6, frequency = "1234.567" }]
[[challenges.prizes]]
reward_type = "points"
amount = "7.25"
[[challenges.prizes]]
reward_type = "coins"
[[challenges]]
id = 11
name = "discard monthly"
repeatable = true
max_per_user = 2
cap_period = "month"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 1000 }, { trigger = 3, operator = "OR", frequency = 50 }]
[[challenges.prizes]]
reward_type = "points"
expires_after_days = 10
[[challenges]]
id = 12
name = "child"
parent = 10
[[challenges.groups]]
id = 1
triggers = [{ trigger = 4, frequency = 0 }, { trigger = 5, frequency = 42 }]
[[challenges.prizes]]
reward_type = "voucher"
[[challenges]]
id = 13
name = "limited"
max_winners = 3
[[challenges.groups]]
id = 1
triggers = [{ trigger = 6, frequency = 17 }]
[[challenges.prizes]]
reward_type = "item"
[[challenges]]
id = 14
name = "window daily"
repeatable = true
max_per_user = 1
cap_period = "day"
start = "2026-11-20T00:00:00Z"
end = "2026-12-20T00:00:00Z"
[[challenges.groups]]
id = 1
triggers = [{ trigger = 2, frequency = 5 }]
[[challenges.prizes]]
reward_type = "points"
amount = 3
expires_at = "2027-01-01T00:00:00Z"
[[challenges]]
id = 15
name = "one trigger, two groups"
repeatable = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 10 }]
[[challenges.groups]]
id = 2
triggers = [{ trigger = 1, frequency = 20 }]
[[challenges.prizes]]
reward_type = "points"
amount = 2
"#;

/// A fixed pseudo-random run of actions and claims, as `(events, final states)` JSON text.
fn pinned_run(mut t: Driver, triggers: &[u32], steps: usize) -> String {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let values = [
        json!(1),
        json!(7),
        json!(42),
        json!(50),
        json!(120),
        json!("0.3"),
        json!("12.345"),
        json!("-40"),
        json!(0),
        json!(2000),
        json!("1234.567"),
        json!("0.0001"),
    ];
    let mut out = String::new();
    for step in 0..steps {
        t.now += chrono::Duration::minutes(next(60) as i64);
        let user = format!("u{}", next(6));
        let events = if next(25) == 0 {
            let claim_id = format!("c{step}");
            t.claim(&user, &claim_id, &[], &[("points", 1 + next(60) as i64)])
        } else {
            let mut record = json!({
                "userId": user,
                "triggerId": triggers[next(triggers.len() as u64) as usize],
                "value": values[next(values.len() as u64) as usize],
            });
            // Trigger 20 is the forum's only (KickApps' compound key): its actions say so.
            if record["triggerId"] == 20 {
                record["location"] = json!("forum");
            }
            if next(4) == 0 {
                record["actionId"] = json!(format!("a{}", next(40)));
            }
            if next(5) == 0 {
                record["occurredAt"] = json!(t.now - chrono::Duration::days(next(40) as i64));
            }
            t.send(record).events
        };
        for e in &events {
            out += &serde_json::to_string(e).unwrap();
            out.push('\n');
        }
    }
    let mut users: Vec<_> = t.engine.users().collect();
    users.sort_by(|a, b| a.0.cmp(b.0));
    // States by value (Debug), not by their stored JSON: how a state is serialized may
    // change (smaller rows) without the evaluator's behaviour changing.
    for (key, state) in users {
        out += &format!("{:?} {state:?}\n", (&key.tenant, &key.user_id));
    }
    out
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Pins the evaluator's whole output (event ids, payloads and the users' states) for a long
/// mixed run, byte for byte, so that an optimisation cannot change behaviour unnoticed. If
/// this fails after a deliberate change of semantics, check the diff of the run's text before
/// updating the digest. (Last update: a user's balances, pending requests, rule states and
/// watermark became `LiteMap`s, whose Debug text differs from a `BTreeMap`'s; with that text
/// rewritten as a `BTreeMap` prints it, both runs' texts are byte for byte the previous ones,
/// so no event or state changed. Before that, `UserState::disabled` joined the Debug text.)
#[test]
fn a_long_mixed_run_is_pinned_byte_for_byte() {
    let pinned = Arc::new(Catalog::from_sources(&[("pinned.toml", PINNED)]).unwrap());
    let text = pinned_run(Driver::with(pinned), &[1, 2, 3, 4, 5, 6], 3000);
    assert_eq!(
        (text.lines().count(), sha256_hex(&text)),
        (
            5797,
            "ed7190feaeeb2058cea66346c45bae930e7cf8376116978c2ee0bc2a2e38cbac".to_string()
        )
    );
    let text = pinned_run(Driver::new(), &[1, 2, 3, 4, 5, 6, 20, 21, 30, 31], 3000);
    assert_eq!(
        (text.lines().count(), sha256_hex(&text)),
        (
            1131,
            "4bc976c00ee7da42f711043cb88d21189a90814955bd5e57eb72c69591adf5b3".to_string()
        )
    );
}
