//! Earning rules through the record step: the example Kwegg tenant's events, each kind of
//! reward (basic, meta-based, capped, streak, hybrid, programmatic), credited to the balance
//! with the rule that paid, and invalid occurrences dead-lettered naming the parameter.

use crate::support::engine::*;
use chrono::{Duration, TimeZone, Utc};
use questline::core::engine::{Amounts, Engine, Internal};
use questline::core::events::{Event, EventBody, GrantReason};
use questline::core::model::SourceRef;
use questline::core::rules::programmatic::{AmountOutcome, AmountResponse, FallbackReason};
use questline::core::step::Input;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const TENANT: &str = "kwegg";

fn occurrence(driver: &mut Driver, user: &str, event: &str, params: Value) -> Vec<Event> {
    let processed = driver.send(json!({
        "tenant": TENANT, "userId": user, "triggerId": event, "params": params,
    }));
    processed.events
}

fn balance(driver: &Driver, user: &str) -> Decimal {
    driver
        .engine
        .user(TENANT, user)
        .map(|s| s.balance("points"))
        .unwrap_or_default()
}

/// `(amount, event, rule, priority as JSON)` of each `reward.granted`.
fn grants(events: &[Event]) -> Vec<(Decimal, String, String, Value)> {
    events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::RewardGranted {
                amount,
                reason:
                    GrantReason::Rule {
                        event,
                        rule,
                        priority,
                    },
                ..
            } => Some((
                amount.unwrap_or_default(),
                event.clone(),
                rule.clone(),
                serde_json::to_value(priority).unwrap(),
            )),
            _ => None,
        })
        .collect()
}

fn paid(events: &[Event]) -> Vec<i64> {
    grants(events)
        .into_iter()
        .map(|(amount, ..)| amount.try_into().unwrap())
        .collect()
}

#[test]
fn the_seeds_duration_rules_pay_every_case() {
    let mut t = Driver::new();
    let cases = [
        (10, 100),
        (20, 200),
        (30, 500),
        (5, 50),
        (21, 500),
        (11, 50),
    ];
    let mut total = 0;
    for (duration, points) in cases {
        let events = occurrence(&mut t, "u1", "WATCHED_VIDEO", json!({"duration": duration}));
        assert_eq!(paid(&events), vec![points], "duration {duration}");
        total += points;
    }
    assert_eq!(balance(&t, "u1"), Decimal::from(total));
    let events = occurrence(&mut t, "u1", "WATCHED_VIDEO", json!({"duration": 5}));
    assert_eq!(
        grants(&events),
        vec![(
            Decimal::from(50),
            "WATCHED_VIDEO".to_string(),
            "default".to_string(),
            json!("POSITIVE_INFINITY")
        )]
    );
    // The balance event carries the running balance.
    let EventBody::RewardGranted { balance: b, .. } = &events[0].body else {
        panic!("a grant first")
    };
    assert_eq!(*b, Decimal::from(total + 50));
}

#[test]
fn the_seeds_type_and_duration_rules_pay_by_priority() {
    let mut t = Driver::new();
    let cases = [
        (json!({"type": "PRANK", "duration": 3}), 100, "prank"),
        (
            json!({"type": "RECIPE", "duration": 5}),
            200,
            "short_recipe",
        ),
        (json!({"type": "RECIPE", "duration": 15}), 500, "recipe"),
        // No duration: "less than 10" does not hold for an absent value, "RECIPE" does.
        (json!({"type": "RECIPE"}), 500, "recipe"),
        (json!({"type": "DOCUMENTARY", "duration": 5}), 50, "default"),
    ];
    for (params, points, rule) in cases {
        let events = occurrence(&mut t, "u2", "VIDEO_WATCHED_BY_TYPE", params.clone());
        let got = grants(&events);
        assert_eq!(got.len(), 1, "{params}");
        assert_eq!(got[0].0, Decimal::from(points), "{params}");
        assert_eq!(got[0].2, rule, "{params}");
    }
}

#[test]
fn an_occurrence_whose_params_do_not_fit_is_a_dead_letter_naming_the_param() {
    let mut t = Driver::new();
    for (params, field) in [
        (json!({}), "params.duration"),
        (json!({"duration": "ten"}), "params.duration"),
        (json!({"duration": 10.5}), "params.duration"),
    ] {
        let events = occurrence(&mut t, "u3", "WATCHED_VIDEO", params.clone());
        assert_eq!(kinds(&events), vec!["dead_letter"], "{params}");
        let EventBody::DeadLetter {
            field: got, reason, ..
        } = &events[0].body
        else {
            unreachable!()
        };
        assert_eq!(got.as_deref(), Some(field), "{params}");
        assert!(reason.contains("duration"), "{reason}");
        assert_eq!(&*events[0].user_id, "u3", "the dead letter keeps the user");
    }
    assert_eq!(balance(&t, "u3"), Decimal::ZERO);
    assert!(
        t.engine.user(TENANT, "u3").is_none(),
        "no state was touched"
    );
}

#[test]
fn an_unknown_event_name_is_still_a_dead_letter() {
    let mut t = Driver::new();
    let events = occurrence(&mut t, "u4", "NOT_AN_EVENT", json!({}));
    assert_eq!(kinds(&events), vec!["dead_letter"]);
}

#[test]
fn a_repeated_action_id_pays_once() {
    let mut t = Driver::new();
    for _ in 0..2 {
        t.send(
            json!({"tenant": TENANT, "userId": "u5", "triggerId": "REVIEW_WRITTEN",
            "actionId": "review-1"}),
        );
    }
    assert_eq!(balance(&t, "u5"), Decimal::from(10));
}

#[test]
fn a_capped_event_pays_once_per_window_by_event_time() {
    let mut t = Driver::new();
    let check_in = |t: &mut Driver, at: chrono::DateTime<Utc>| {
        t.send(
            json!({"tenant": TENANT, "userId": "u6", "triggerId": "DAILY_CHECK_IN",
            "occurredAt": at.to_rfc3339()}),
        )
        .events
    };
    let start = t.now - Duration::hours(20);
    assert_eq!(paid(&check_in(&mut t, start)), vec![5]);
    assert_eq!(
        paid(&check_in(&mut t, start + Duration::hours(5))),
        Vec::<i64>::new()
    );
    // Rolling from the last paid check-in, not the calendar day.
    assert_eq!(
        paid(&check_in(&mut t, start + Duration::hours(24))),
        Vec::<i64>::new()
    );
    t.now += Duration::hours(10);
    assert_eq!(
        paid(&check_in(&mut t, start + Duration::hours(24))),
        vec![5]
    );
    assert_eq!(balance(&t, "u6"), Decimal::from(10));
}

#[test]
fn a_daily_streak_pays_once_at_its_end_and_a_missed_day_resets_it() {
    let mut t = Driver::new();
    // Noon in Kolkata, day after day.
    let day = |n: i64| Utc.with_ymd_and_hms(2026, 11, 1, 6, 30, 0).unwrap() + Duration::days(n);
    let open = |t: &mut Driver, n: i64, minute: i64| {
        t.now = day(n) + Duration::minutes(minute + 1);
        t.send(
            json!({"tenant": TENANT, "userId": "u7", "triggerId": "APP_OPENED",
            "occurredAt": (day(n) + Duration::minutes(minute)).to_rfc3339()}),
        )
        .events
    };
    // Three complete days, then a day with one open only: the streak starts over.
    for n in 0..3 {
        assert!(paid(&open(&mut t, n, 0)).is_empty());
        assert!(paid(&open(&mut t, n, 1)).is_empty());
    }
    assert!(paid(&open(&mut t, 3, 0)).is_empty());
    let mut paid_days = vec![];
    for n in 4..14 {
        open(&mut t, n, 0);
        if !paid(&open(&mut t, n, 1)).is_empty() {
            paid_days.push(n);
        }
    }
    assert_eq!(
        paid_days,
        vec![13],
        "ten complete days from day 4 end on day 13"
    );
    assert_eq!(balance(&t, "u7"), Decimal::from(100));
}

#[test]
fn a_hybrid_streak_counts_only_occurrences_meeting_its_conditions() {
    let mut t = Driver::new();
    let day = |n: i64| Utc.with_ymd_and_hms(2026, 11, 1, 6, 30, 0).unwrap() + Duration::days(n);
    let mut total = vec![];
    for n in 0..10 {
        t.now = day(n) + Duration::minutes(5);
        // A short watch does not count; a long one does.
        t.send(
            json!({"tenant": TENANT, "userId": "u8", "triggerId": "MOVIE_WATCHED",
            "params": {"minutes": 3}, "occurredAt": day(n).to_rfc3339()}),
        );
        let events = t
            .send(json!({"tenant": TENANT, "userId": "u8", "triggerId": "MOVIE_WATCHED",
                "params": {"minutes": 12}, "occurredAt": (day(n) + Duration::minutes(1)).to_rfc3339()}))
            .events;
        total.extend(paid(&events));
    }
    assert_eq!(total, vec![200]);
}

#[test]
fn a_programmatic_event_pays_what_the_endpoint_answers_and_its_fallback_otherwise() {
    let answering = Engine::new(example_catalog()).with_amounts(Amounts::new(|request| {
        assert_eq!(request.event, "ORDER_PLACED");
        assert_eq!(request.params["total"], json!(250));
        AmountOutcome::Answered {
            points: Decimal::from(120),
        }
    }));
    let mut t = Driver::new();
    t.engine = answering;
    let order = |t: &mut Driver, id: &str| {
        t.send(
            json!({"tenant": TENANT, "userId": "u9", "triggerId": "ORDER_PLACED",
            "params": {"orderId": id, "total": 250}}),
        )
        .events
    };
    let events = order(&mut t, "o-1");
    assert_eq!(grants(&events)[0].2, "programmatic");
    assert_eq!(paid(&events), vec![120]);
    // Capped at once per 10 minutes: no second request, no payment.
    assert!(paid(&order(&mut t, "o-2")).is_empty());
    assert_eq!(balance(&t, "u9"), Decimal::from(120));

    let mut fallback = Driver::new();
    let events = order(&mut fallback, "o-1");
    assert_eq!(grants(&events)[0].2, "programmatic-fallback");
    assert_eq!(paid(&events), vec![5]);
}

#[test]
fn recorded_amounts_are_paid_as_recorded_and_only_once() {
    let catalog = example_catalog();
    let mut engine = Engine::with_internal(catalog, Internal::Recorded);
    let source = SourceRef::new("kwegg.events", 0, 1);
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    let mut t = Driver::new();
    let record = json!({"tenant": TENANT, "userId": "u10", "triggerId": "ORDER_PLACED",
        "params": {"orderId": "o-1", "total": 80}});
    let asked = engine.process_record(
        &t.native.compile(),
        record.to_string().as_bytes(),
        &source,
        now,
    );
    assert!(
        asked.events.is_empty(),
        "nothing is paid before the amount is known"
    );
    let response = AmountResponse {
        request_id: "kwegg.events:0:1#a0".into(),
        tenant: TENANT.into(),
        user_id: "u10".into(),
        event: "ORDER_PLACED".into(),
        occurred_at: now,
        streak_completed: false,
        outcome: AmountOutcome::Fallback {
            points: Decimal::from(7),
            reason: FallbackReason::Timeout,
        },
    };
    let amounts = SourceRef::new("questline.internal.amounts", 0, 1);
    let paid_once = engine.process(&Input::Amount(response.clone()), &[], &amounts, now);
    assert_eq!(paid(&paid_once.events), vec![7]);
    // The same answer again (another offset: a second delivery) changes nothing.
    let again = SourceRef::new("questline.internal.amounts", 0, 2);
    let twice = engine.process(&Input::Amount(response), &[], &again, now);
    assert!(twice.events.is_empty());
    t.engine = engine;
    assert_eq!(balance(&t, "u10"), Decimal::from(7));
}

#[test]
fn a_backdated_occurrence_is_judged_at_the_lateness_bound() {
    let mut t = Driver::new();
    let old = t.now - Duration::days(30);
    let check_in = |t: &mut Driver, at: chrono::DateTime<Utc>| {
        paid(
            &t.send(
                json!({"tenant": TENANT, "userId": "u11", "triggerId": "DAILY_CHECK_IN",
            "occurredAt": at.to_rfc3339()}),
            )
            .events,
        )
    };
    let recent = t.now - Duration::hours(1);
    assert_eq!(check_in(&mut t, recent), vec![5]);
    // Dated a month back, it would open a fresh window; clamped, it falls inside the cap.
    assert!(check_in(&mut t, old).is_empty());
}
