//! The seed's examples as written, caps, streaks, hybrids and programmatic events, each
//! through a catalog parsed from TOML as a tenant would write it.

use super::programmatic::{self, AmountOutcome, AmountRequest, FallbackReason};
use super::*;
use crate::core::catalog::{Catalog, TenantCatalog};
use chrono::TimeZone;
use serde_json::json;

const HEAD: &str = r#"
tenant = "kwegg"
time_zone = "Asia/Kolkata"

[[reward_types]]
reward_type = "points"
"#;

/// The seed's single-statement example, table for table.
const WATCHED_VIDEO: &str = r#"
[[events]]
name = "WATCHED_VIDEO"
params = [{ name = "duration", type = "integer", mandatory = true }]

[[events.rules]]
priority = 1
conditions = [{ param = "duration", op = "equal", value = 10 }]
points = 100

[[events.rules]]
priority = 2
conditions = [{ param = "duration", op = "equal", value = 20 }]
points = 200

[[events.rules]]
priority = 3
conditions = [{ param = "duration", op = "greater_than", value = 20 }]
points = 500

[[events.rules]]
priority = "POSITIVE_INFINITY"
points = 50
"#;

/// The seed's multiple-statement example, table for table.
const WATCHED_VIDEO_BY_TYPE: &str = r#"
[[events]]
name = "WATCHED_VIDEO_BY_TYPE"
params = [
  { name = "type", type = "string" },
  { name = "duration", type = "integer" },
]

[[events.rules]]
priority = 1
conditions = [{ param = "type", op = "equal", value = "PRANK" }]
points = 100

[[events.rules]]
priority = 2
conditions = [
  { param = "type", op = "equal", value = "RECIPE" },
  { param = "duration", op = "less_than", value = 10 },
]
points = 200

[[events.rules]]
priority = 3
conditions = [{ param = "type", op = "equal", value = "RECIPE" }]
points = 500

[[events.rules]]
priority = 4
points = 50
"#;

const OTHERS: &str = r#"
[[events]]
name = "DAILY_CHECK_IN"
cap = "once per 10 minutes"
[[events.rules]]
points = 10

[[events.rules]]
name = "nothing"
priority = 1
conditions = [{ param = "test", op = "equal", value = true }]
points = 0

[[events.params]]
name = "test"
type = "boolean"

[[events]]
name = "APP_OPENED"
streak = { per_day = 2, days = 3 }
[[events.rules]]
points = 100

[[events]]
name = "RECHARGE"
streak = { count = 4, before = "2020-09-30T00:00:00Z" }
[[events.rules]]
points = 200

[[events]]
name = "MOVIE_WATCHED"
params = [{ name = "minutes", type = "float", mandatory = true }]
streak = { days = 10, conditions = [{ param = "minutes", op = "greater_than", value = 9.99 }] }
[[events.rules]]
points = 200

[[events]]
name = "ORDER_PLACED"
cap = "once per hour"
programmatic = { url = "https://tenant.example/points", fallback_points = 5 }
"#;

fn catalog() -> TenantCatalog {
    let text = format!("{HEAD}{WATCHED_VIDEO}{WATCHED_VIDEO_BY_TYPE}{OTHERS}");
    let catalog = Catalog::from_sources(&[("kwegg.toml", text)]).unwrap_or_else(|e| panic!("{e}"));
    catalog.tenant("kwegg").unwrap().clone()
}

fn params(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

const NOON: &str = "2026-03-01T12:00:00Z";

/// Evaluates with a fresh state: what one occurrence alone pays.
fn pays(catalog: &TenantCatalog, event: &str, p: serde_json::Value) -> Option<(String, Decimal)> {
    let event = catalog.event(event).unwrap();
    let outcome = evaluate_occurrence(
        event,
        &mut EventRuleState::default(),
        &params(p),
        at(NOON),
        catalog.time_zone,
    )
    .unwrap();
    match outcome {
        RuleOutcome::Pay(p) => Some((p.rule.to_string(), p.amount)),
        _ => None,
    }
}

fn amount(outcome: &RuleOutcome) -> Option<Decimal> {
    match outcome {
        RuleOutcome::Pay(p) => Some(p.amount),
        _ => None,
    }
}

#[test]
fn the_seeds_single_statement_example_pays_as_written() {
    let c = catalog();
    for (duration, rule, points) in [
        (10, "rule-1", 100),
        (20, "rule-2", 200),
        (30, "rule-3", 500),
        (21, "rule-3", 500),
        (5, "default", 50),
        (15, "default", 50),
    ] {
        assert_eq!(
            pays(&c, "WATCHED_VIDEO", json!({ "duration": duration })),
            Some((rule.to_string(), Decimal::from(points))),
            "duration {duration}"
        );
    }
    let event = c.event("WATCHED_VIDEO").unwrap();
    let outcome = evaluate_occurrence(
        event,
        &mut EventRuleState::default(),
        &params(json!({"duration": "20"})),
        at(NOON),
        c.time_zone,
    );
    assert_eq!(
        outcome,
        Ok(RuleOutcome::Pay(Payment {
            event: "WATCHED_VIDEO",
            reward_type: "points",
            rule: "rule-2",
            priority: Priority::At(2),
            amount: Decimal::from(200),
            streak_completed: false,
        }))
    );
}

#[test]
fn the_seeds_multiple_statement_example_pays_as_written() {
    let c = catalog();
    for (p, rule, points) in [
        (json!({"type": "PRANK", "duration": 50}), "rule-1", 100),
        (json!({"type": "PRANK"}), "rule-1", 100),
        (json!({"type": "RECIPE", "duration": 5}), "rule-2", 200),
        (json!({"type": "RECIPE", "duration": 10}), "rule-3", 500),
        (json!({"type": "RECIPE", "duration": 15}), "rule-3", 500),
        (json!({"type": "RECIPE"}), "rule-3", 500),
        (json!({"type": "COMEDY", "duration": 3}), "default", 50),
        (json!({"type": "recipe", "duration": 3}), "default", 50),
        (json!({}), "default", 50),
    ] {
        assert_eq!(
            pays(&c, "WATCHED_VIDEO_BY_TYPE", p.clone()),
            Some((rule.to_string(), Decimal::from(points))),
            "{p}"
        );
    }
}

#[test]
fn bad_parameters_are_rejected_by_name_and_change_nothing() {
    let c = catalog();
    let event = c.event("MOVIE_WATCHED").unwrap();
    let mut state = EventRuleState::default();
    for (p, param) in [
        (json!({}), "minutes"),
        (json!({"minutes": null}), "minutes"),
        (json!({"minutes": "long"}), "minutes"),
        (json!({"minutes": [12]}), "minutes"),
    ] {
        let err = evaluate_occurrence(event, &mut state, &params(p.clone()), at(NOON), c.time_zone)
            .unwrap_err();
        assert_eq!(err.param(), param, "{p}");
        assert!(state.is_empty(), "{p}: {state:?}");
    }
    let event = c.event("WATCHED_VIDEO").unwrap();
    let err = evaluate_occurrence(
        event,
        &mut state,
        &params(json!({"duration": 10.5})),
        at(NOON),
        c.time_zone,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "parameter 'duration' must be an integer, found 10.5"
    );
}

#[test]
fn a_cap_pays_once_per_window_rolling_from_the_last_rewarded_occurrence() {
    let c = catalog();
    let event = c.event("DAILY_CHECK_IN").unwrap();
    let mut state = EventRuleState::default();
    let mut run = |t: &str, p: serde_json::Value| {
        evaluate_occurrence(event, &mut state, &params(p), at(t), c.time_zone).unwrap()
    };
    assert_eq!(
        amount(&run("2026-03-01T12:00:00Z", json!({}))),
        Some(Decimal::from(10))
    );
    assert_eq!(
        run("2026-03-01T12:09:59.999Z", json!({})),
        RuleOutcome::NotPaid(NotPaid::Capped {
            until: Some(at("2026-03-01T12:10:00Z"))
        })
    );
    // Rolling from the last rewarded occurrence, not from the blocked ones.
    assert_eq!(
        amount(&run("2026-03-01T12:10:00Z", json!({}))),
        Some(Decimal::from(10))
    );
    // Older than the last payment: never paid, whatever its own distance to earlier ones.
    assert!(matches!(
        run("2026-03-01T11:00:00Z", json!({})),
        RuleOutcome::NotPaid(NotPaid::Capped { .. })
    ));
    // A rule of 0 points pays nothing and does not use up the window.
    assert_eq!(
        run("2026-03-01T12:25:00Z", json!({"test": true})),
        RuleOutcome::NotPaid(NotPaid::ZeroPoints {
            rule: "nothing",
            priority: Priority::At(1)
        })
    );
    assert_eq!(
        amount(&run("2026-03-01T12:26:00Z", json!({}))),
        Some(Decimal::from(10))
    );
    assert_eq!(state.last, Some(at("2026-03-01T12:26:00Z")));
}

#[test]
fn a_daily_streak_pays_once_at_its_end_and_starts_over() {
    let c = catalog();
    let event = c.event("APP_OPENED").unwrap();
    let mut state = EventRuleState::default();
    let mut paid = Vec::new();
    // Three days (IST), twice a day: the sixth occurrence ends the streak.
    for (i, t) in [
        "2026-03-01T04:00:00Z",
        "2026-03-01T05:00:00Z",
        "2026-03-02T04:00:00Z",
        "2026-03-02T04:00:01Z",
        "2026-03-02T23:00:00Z", // 04:30 on the 3rd in Kolkata
        "2026-03-03T10:00:00Z",
        "2026-03-03T11:00:00Z", // a third occurrence that day: nothing more
        "2026-03-04T04:00:00Z", // the next streak starts
    ]
    .iter()
    .enumerate()
    {
        let outcome =
            evaluate_occurrence(event, &mut state, &params(json!({})), at(t), c.time_zone).unwrap();
        if let RuleOutcome::Pay(p) = &outcome {
            assert!(p.streak_completed);
            paid.push((i, p.amount));
        }
    }
    assert_eq!(paid, vec![(5, Decimal::from(100))]);
    assert_eq!(
        (state.today, state.run),
        (1, 0),
        "a new streak counts from the day after"
    );
}

#[test]
fn a_missed_day_resets_a_daily_streak() {
    let c = catalog();
    let event = c.event("APP_OPENED").unwrap();
    let mut state = EventRuleState::default();
    let mut run = |t: &str| {
        evaluate_occurrence(event, &mut state, &params(json!({})), at(t), c.time_zone).unwrap()
    };
    for t in ["2026-03-01T04:00:00Z", "2026-03-01T05:00:00Z"] {
        run(t);
    }
    for t in ["2026-03-02T04:00:00Z", "2026-03-02T05:00:00Z"] {
        run(t);
    }
    // The 3rd is missed: the 4th starts again from one day.
    run("2026-03-04T04:00:00Z");
    assert_eq!(
        run("2026-03-04T05:00:00Z"),
        RuleOutcome::NotPaid(NotPaid::StreakProgress(StreakProgress::Daily {
            today: 2,
            per_day: 2,
            days_done: 1,
            days: 3
        }))
    );
    // An incomplete day resets too.
    run("2026-03-05T04:00:00Z");
    run("2026-03-06T04:00:00Z");
    assert_eq!(
        run("2026-03-06T05:00:00Z"),
        RuleOutcome::NotPaid(NotPaid::StreakProgress(StreakProgress::Daily {
            today: 2,
            per_day: 2,
            days_done: 1,
            days: 3
        }))
    );
    // Days count in order: an occurrence dated on an earlier day does not count.
    assert_eq!(
        run("2026-03-05T05:00:00Z"),
        RuleOutcome::NotPaid(NotPaid::LateForStreak)
    );
}

#[test]
fn streak_days_are_the_tenants_days() {
    let c = catalog();
    let event = c.event("APP_OPENED").unwrap();
    // 18:00Z and 18:40Z are one UTC day but two Kolkata days (23:30 and 00:10): two per day
    // for three days is not met by them, and with UTC days it would be.
    let times = [
        "2026-03-01T17:00:00Z",
        "2026-03-01T18:00:00Z",
        "2026-03-01T18:40:00Z",
        "2026-03-01T19:00:00Z",
        "2026-03-02T19:00:00Z",
        "2026-03-02T20:00:00Z",
    ];
    let count_paid = |tz: Tz| {
        let mut state = EventRuleState::default();
        times
            .iter()
            .filter(|t| {
                matches!(
                    evaluate_occurrence(event, &mut state, &params(json!({})), at(t), tz),
                    Ok(RuleOutcome::Pay(_))
                )
            })
            .count()
    };
    assert_eq!(count_paid(c.time_zone), 1);
    assert_eq!(count_paid(Tz::UTC), 0);
    // And the same instants on UTC days: 17:00 and 18:00 make the 1st, 18:40 and 19:00 are
    // extra that day, the 2nd has two: two days of three.
    let mut state = EventRuleState::default();
    for t in times {
        evaluate_occurrence(event, &mut state, &params(json!({})), at(t), Tz::UTC).unwrap();
    }
    assert_eq!((state.run, state.today), (2, 2));
    assert_eq!(
        state.day,
        state::local_day(Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(), Tz::UTC)
    );
}

#[test]
fn a_deadline_streak_pays_once_for_occurrences_before_it() {
    let c = catalog();
    let event = c.event("RECHARGE").unwrap();
    let mut state = EventRuleState::default();
    let mut run = |t: &str| {
        evaluate_occurrence(event, &mut state, &params(json!({})), at(t), c.time_zone).unwrap()
    };
    assert_eq!(
        run("2020-09-30T00:00:00Z"),
        RuleOutcome::NotPaid(NotPaid::StreakOver),
        "the deadline is exclusive"
    );
    for (i, t) in [
        "2020-09-01T00:00:00Z",
        "2020-09-02T00:00:00Z",
        "2020-09-02T00:00:00Z",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            run(t),
            RuleOutcome::NotPaid(NotPaid::StreakProgress(StreakProgress::Before {
                count: i as u32 + 1,
                needed: 4
            }))
        );
    }
    assert_eq!(
        amount(&run("2020-09-29T23:59:59Z")),
        Some(Decimal::from(200))
    );
    assert_eq!(
        run("2020-09-29T23:59:59Z"),
        RuleOutcome::NotPaid(NotPaid::StreakOver)
    );
}

#[test]
fn a_hybrid_streak_counts_only_occurrences_meeting_its_conditions() {
    let c = catalog();
    let event = c.event("MOVIE_WATCHED").unwrap();
    let mut state = EventRuleState::default();
    let day = |d: u32| Utc.with_ymd_and_hms(2026, 3, d, 6, 0, 0).unwrap();
    let mut run = |t: DateTime<Utc>, minutes: serde_json::Value| {
        evaluate_occurrence(
            event,
            &mut state,
            &params(json!({ "minutes": minutes })),
            t,
            c.time_zone,
        )
        .unwrap()
    };
    for d in 1..=9 {
        assert!(matches!(
            run(day(d), json!(10)),
            RuleOutcome::NotPaid(NotPaid::StreakProgress(_))
        ));
    }
    // Five minutes on the 10th does not count, so the 10th is missed.
    assert_eq!(
        run(day(10), json!(5)),
        RuleOutcome::NotPaid(NotPaid::NotCounted)
    );
    assert!(matches!(
        run(day(11), json!("12.5")),
        RuleOutcome::NotPaid(NotPaid::StreakProgress(StreakProgress::Daily {
            days_done: 1,
            ..
        }))
    ));
    for d in 12..=19 {
        assert!(amount(&run(day(d), json!(10))).is_none());
    }
    assert_eq!(amount(&run(day(20), json!(10))), Some(Decimal::from(200)));
}

#[test]
fn a_programmatic_event_asks_once_per_cap_window_and_settles_the_recorded_answer() {
    let c = catalog();
    let event = c.event("ORDER_PLACED").unwrap();
    let mut state = EventRuleState::default();
    let p = params(json!({"total": 99}));
    assert_eq!(
        evaluate_occurrence(event, &mut state, &p, at(NOON), c.time_zone),
        Ok(RuleOutcome::Ask {
            streak_completed: false
        })
    );
    assert!(matches!(
        evaluate_occurrence(
            event,
            &mut state,
            &p,
            at("2026-03-01T12:30:00Z"),
            c.time_zone
        ),
        Ok(RuleOutcome::NotPaid(NotPaid::Capped { .. }))
    ));
    let request = AmountRequest {
        request_id: "kwegg.events:0:1#r0".into(),
        tenant: "kwegg".into(),
        user_id: "12".into(),
        event: event.name.clone(),
        params: p,
        occurred_at: at(NOON),
        streak_completed: false,
    };
    let def = event.programmatic.as_ref().unwrap();
    let answered = request.respond(programmatic::outcome(
        def,
        programmatic::read_answer(200, br#"{"points": 42}"#),
    ));
    assert_eq!(
        programmatic::settle(event, &answered),
        RuleOutcome::Pay(Payment {
            event: "ORDER_PLACED",
            reward_type: "points",
            rule: "programmatic",
            priority: Priority::Last,
            amount: Decimal::from(42),
            streak_completed: false,
        })
    );
    let failed = request.respond(programmatic::outcome(def, Err(FallbackReason::Timeout)));
    assert!(matches!(
        failed.outcome,
        AmountOutcome::Fallback { points, .. } if points == Decimal::from(5)
    ));
    assert!(matches!(
        programmatic::settle(event, &failed),
        RuleOutcome::Pay(Payment { rule: "programmatic-fallback", amount, .. }) if amount == Decimal::from(5)
    ));
}

#[test]
fn only_capped_or_streak_events_keep_state_per_user() {
    let c = catalog();
    let mut states = RuleStates::new();
    let p = params(json!({"duration": 10}));
    let video = c.event("WATCHED_VIDEO").unwrap();
    assert!(
        amount(&evaluate_for_user(&mut states, video, &p, at(NOON), c.time_zone).unwrap())
            .is_some()
    );
    assert!(states.is_empty());
    let check_in = c.event("DAILY_CHECK_IN").unwrap();
    evaluate_for_user(
        &mut states,
        check_in,
        &params(json!({})),
        at(NOON),
        c.time_zone,
    )
    .unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(
        serde_json::to_string(&states).unwrap(),
        format!(
            r#"{{"DAILY_CHECK_IN":{{"last":{}}}}}"#,
            at(NOON).timestamp_micros()
        )
    );
    // A rejected occurrence of a stateful event leaves no entry behind.
    let movie = c.event("MOVIE_WATCHED").unwrap();
    assert!(evaluate_for_user(
        &mut states,
        movie,
        &params(json!({})),
        at(NOON),
        c.time_zone
    )
    .is_err());
    assert_eq!(states.len(), 1);
    // Events gone from the catalog lose their state.
    states.insert(
        "GONE".into(),
        EventRuleState {
            today: 1,
            ..Default::default()
        },
    );
    prune(&mut states, &c);
    assert_eq!(states.keys().collect::<Vec<_>>(), ["DAILY_CHECK_IN"]);
}

#[test]
fn the_example_kwegg_tenant_pays_the_seeds_examples() {
    let text = include_str!("../../../examples/catalog/kwegg.toml");
    let catalog = Catalog::from_sources(&[("kwegg.toml", text)]).unwrap_or_else(|e| panic!("{e}"));
    let c = catalog.tenant("kwegg").unwrap();
    let paid = |event: &str, p: serde_json::Value| pays(c, event, p).map(|(_, amount)| amount);
    for (duration, points) in [(10, 100), (20, 200), (30, 500), (5, 50), (15, 50)] {
        assert_eq!(
            paid("WATCHED_VIDEO", json!({ "duration": duration })),
            Some(Decimal::from(points))
        );
    }
    for (p, points) in [
        (json!({"type": "PRANK"}), 100),
        (json!({"type": "RECIPE", "duration": 5}), 200),
        (json!({"type": "RECIPE", "duration": 12}), 500),
        (json!({"type": "DANCE", "duration": 5}), 50),
    ] {
        assert_eq!(
            paid("VIDEO_WATCHED_BY_TYPE", p),
            Some(Decimal::from(points))
        );
    }
    assert_eq!(paid("REVIEW_WRITTEN", json!({})), Some(Decimal::from(10)));
    assert_eq!(paid("DAILY_CHECK_IN", json!({})), Some(Decimal::from(5)));
    for (event, kind) in [
        ("APP_OPENED", "daily"),
        ("MOBILE_RECHARGE", "before"),
        ("MOVIE_WATCHED", "daily"),
    ] {
        let streak = c.event(event).unwrap().streak.as_ref().unwrap();
        assert_eq!(
            matches!(streak.kind, crate::core::catalog::StreakKind::Daily { .. }),
            kind == "daily"
        );
    }
    assert!(c
        .event("MOVIE_WATCHED")
        .unwrap()
        .streak
        .as_ref()
        .is_some_and(|s| !s.conditions.is_empty()));
    assert!(c.event("ORDER_PLACED").unwrap().programmatic.is_some());
    assert_eq!(c.time_zone.name(), "Asia/Kolkata");
}
