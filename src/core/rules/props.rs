//! Properties of rule evaluation over generated catalogs and occurrences, each checked
//! against a small model written independently of the evaluator (over the JSON values and the
//! rules as written, or over whole days instead of occurrences).

use super::*;
use crate::core::catalog::{Catalog, TenantCatalog};
use chrono::{NaiveDate, TimeDelta, TimeZone};
use proptest::prelude::*;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ty {
    Integer,
    Text,
    Boolean,
}

/// A value of a parameter's type from a small domain, so conditions match often.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Int(i64),
    Text(&'static str),
    Bool(bool),
}

impl Val {
    fn toml(&self) -> String {
        match self {
            Val::Int(i) => i.to_string(),
            Val::Text(s) => format!("\"{s}\""),
            Val::Bool(b) => b.to_string(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Val::Int(i) => json!(i),
            Val::Text(s) => json!(s),
            Val::Bool(b) => json!(b),
        }
    }
}

const TEXTS: [&str; 5] = ["", "a", "ab", "ba", "b"];

fn value_of(ty: Ty) -> BoxedStrategy<Val> {
    match ty {
        Ty::Integer => (-3i64..=3).prop_map(Val::Int).boxed(),
        Ty::Text => proptest::sample::select(&TEXTS[..])
            .prop_map(Val::Text)
            .boxed(),
        Ty::Boolean => any::<bool>().prop_map(Val::Bool).boxed(),
    }
}

fn ops_of(ty: Ty) -> &'static [&'static str] {
    match ty {
        Ty::Integer => &[
            "equal",
            "less_than",
            "greater_than",
            "is_empty",
            "is_not_empty",
        ],
        Ty::Text => &[
            "equal",
            "contains",
            "starts_with",
            "ends_with",
            "is_empty",
            "is_not_empty",
        ],
        Ty::Boolean => &["equal", "is_empty", "is_not_empty"],
    }
}

#[derive(Debug, Clone)]
struct Stmt {
    param: usize,
    op: &'static str,
    value: Val,
}

#[derive(Debug, Clone)]
struct WrittenRule {
    priority: u32,
    conditions: Vec<Stmt>,
    points: u32,
}

#[derive(Debug, Clone)]
struct Case {
    types: Vec<Ty>,
    rules: Vec<WrittenRule>,
    default_points: u32,
    occurrences: Vec<Vec<Option<Val>>>,
}

fn ty() -> impl Strategy<Value = Ty> {
    prop_oneof![Just(Ty::Integer), Just(Ty::Text), Just(Ty::Boolean)]
}

fn stmt(types: Vec<Ty>) -> impl Strategy<Value = Stmt> {
    (0..types.len()).prop_flat_map(move |param| {
        let t = types[param];
        (proptest::sample::select(ops_of(t)), value_of(t)).prop_map(move |(op, value)| Stmt {
            param,
            op,
            value,
        })
    })
}

fn case() -> impl Strategy<Value = Case> {
    proptest::collection::vec(ty(), 1..=4).prop_flat_map(|types| {
        let rule = (
            proptest::collection::vec(stmt(types.clone()), 1..=3),
            1u32..=1000,
        );
        let occurrence = types
            .iter()
            .map(|&t| proptest::option::of(value_of(t)))
            .collect::<Vec<_>>();
        (
            Just(types.clone()),
            proptest::collection::vec(rule, 0..=6),
            // Distinct priorities, in an order unrelated to the rules' order in the file.
            Just((1u32..=40).collect::<Vec<_>>()).prop_shuffle(),
            1u32..=1000,
            proptest::collection::vec(occurrence, 1..=8),
        )
            .prop_map(
                |(types, rules, priorities, default_points, occurrences)| Case {
                    types,
                    rules: rules
                        .into_iter()
                        .zip(priorities)
                        .map(|((conditions, points), priority)| WrittenRule {
                            priority,
                            conditions,
                            points,
                        })
                        .collect(),
                    default_points,
                    occurrences,
                },
            )
    })
}

impl Case {
    fn catalog(&self) -> TenantCatalog {
        let mut text = String::from(
            "[[reward_types]]\nreward_type = \"points\"\n[[events]]\nname = \"E\"\nparams = [",
        );
        for (i, t) in self.types.iter().enumerate() {
            let t = match t {
                Ty::Integer => "integer",
                Ty::Text => "string",
                Ty::Boolean => "boolean",
            };
            text += &format!("{{ name = \"p{i}\", type = \"{t}\" }}, ");
        }
        text += "]\n";
        // The default first: its place in the file does not matter.
        text += &format!("[[events.rules]]\npoints = {}\n", self.default_points);
        for r in &self.rules {
            text += &format!(
                "[[events.rules]]\npriority = {}\npoints = {}\nconditions = [",
                r.priority, r.points
            );
            for s in &r.conditions {
                text += &format!("{{ param = \"p{}\", op = \"{}\"", s.param, s.op);
                if !s.op.starts_with("is_") {
                    text += &format!(", value = {}", s.value.toml());
                }
                text += " }, ";
            }
            text += "]\n";
        }
        let catalog = Catalog::from_sources(&[("p.toml", text.as_str())])
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        catalog.default_tenant().unwrap().clone()
    }

    fn params(occurrence: &[Option<Val>]) -> Map<String, Value> {
        occurrence
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (format!("p{i}"), v.json())))
            .collect()
    }
}

/// The model: a statement over the value as sent.
fn model_holds(s: &Stmt, sent: &Option<Val>) -> bool {
    let empty = matches!(sent, None | Some(Val::Text("")));
    match (s.op, sent, &s.value) {
        ("is_empty", ..) => empty,
        ("is_not_empty", ..) => !empty,
        ("equal", Some(a), b) => a == b,
        ("less_than", Some(Val::Int(a)), Val::Int(b)) => a < b,
        ("greater_than", Some(Val::Int(a)), Val::Int(b)) => a > b,
        ("contains", Some(Val::Text(a)), Val::Text(b)) => a.contains(b),
        ("starts_with", Some(Val::Text(a)), Val::Text(b)) => a.starts_with(b),
        ("ends_with", Some(Val::Text(a)), Val::Text(b)) => a.ends_with(b),
        _ => false,
    }
}

/// The model: the matching rule of least priority, or the default (`None`).
fn model_rule<'a>(case: &'a Case, occurrence: &[Option<Val>]) -> Option<&'a WrittenRule> {
    case.rules
        .iter()
        .filter(|r| {
            r.conditions
                .iter()
                .all(|s| model_holds(s, &occurrence[s.param]))
        })
        .min_by_key(|r| r.priority)
}

fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every occurrence of a known event is paid by exactly one rule: the matching one of
    /// least priority, whatever order the file lists them in.
    #[test]
    fn exactly_one_rule_pays_and_priority_order_is_respected(case in case()) {
        let catalog = case.catalog();
        let event = catalog.event("E").unwrap();
        for occurrence in &case.occurrences {
            let outcome = evaluate_occurrence(
                event,
                &mut EventRuleState::default(),
                &Case::params(occurrence),
                noon(),
                Tz::UTC,
            )
            .unwrap();
            let RuleOutcome::Pay(payment) = outcome else {
                panic!("not paid: {outcome:?}");
            };
            let expected = model_rule(&case, occurrence);
            match expected {
                Some(rule) => {
                    prop_assert_eq!(payment.priority, Priority::At(rule.priority));
                    prop_assert_eq!(payment.amount, Decimal::from(rule.points));
                }
                None => {
                    prop_assert_eq!(payment.priority, Priority::Last);
                    prop_assert_eq!(payment.rule, "default");
                    prop_assert_eq!(payment.amount, Decimal::from(case.default_points));
                }
            }
        }
    }

    /// The default rule pays exactly when no other rule's conditions all hold.
    #[test]
    fn the_default_pays_when_nothing_else_matches(case in case()) {
        let catalog = case.catalog();
        let event = catalog.event("E").unwrap();
        for occurrence in &case.occurrences {
            let outcome = evaluate_occurrence(
                event,
                &mut EventRuleState::default(),
                &Case::params(occurrence),
                noon(),
                Tz::UTC,
            )
            .unwrap();
            let default_paid = matches!(outcome, RuleOutcome::Pay(Payment { rule: "default", .. }));
            prop_assert_eq!(default_paid, model_rule(&case, occurrence).is_none());
        }
    }

    /// Whatever the order and timing of occurrences, no two payments of a capped event are
    /// closer than the window in event time, and an occurrence a full window after the last
    /// payment is paid.
    #[test]
    fn a_cap_never_pays_twice_inside_its_window(
        minutes in 1u32..=120,
        offsets in proptest::collection::vec(-10_000i64..=20_000, 1..40),
    ) {
        let text = format!(
            "[[reward_types]]\nreward_type = \"points\"\n[[events]]\nname = \"C\"\ncap = \"once per {minutes} minutes\"\n[[events.rules]]\npoints = 1\n"
        );
        let catalog = Catalog::from_sources(&[("c.toml", text)]).unwrap();
        let event = catalog.default_tenant().unwrap().event("C").unwrap();
        let window = TimeDelta::minutes(i64::from(minutes));
        let mut state = EventRuleState::default();
        let mut paid: Vec<DateTime<Utc>> = Vec::new();
        for offset in offsets {
            // Offsets in seconds around noon: bursts, repeats and occurrences out of order.
            let t = noon() + TimeDelta::seconds(offset);
            let outcome =
                evaluate_occurrence(event, &mut state, &Map::new(), t, Tz::UTC).unwrap();
            let model_pays = paid.last().is_none_or(|&last| t >= last + window);
            prop_assert_eq!(matches!(outcome, RuleOutcome::Pay(_)), model_pays, "at {}", t);
            if model_pays {
                paid.push(t);
            }
        }
        for (i, a) in paid.iter().enumerate() {
            for b in &paid[i + 1..] {
                prop_assert!((*b - *a).abs() >= window, "{} and {}", a, b);
            }
        }
    }

    /// A daily streak, fed days in order (some missed, some incomplete, some with extra
    /// occurrences, at any hour of the tenant's day), pays exactly on the occurrence that
    /// completes its last day, once per streak, and starts over after a day without enough.
    #[test]
    fn a_streak_pays_once_at_its_end_and_resets_after_a_missed_day(
        per_day in 1u32..=3,
        days in 1u32..=4,
        plan in proptest::collection::vec((0u32..=4, 1i64..=2, proptest::collection::vec(0u32..86_400, 4)), 1..25),
    ) {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let text = format!(
            "[[reward_types]]\nreward_type = \"points\"\n[[events]]\nname = \"S\"\nstreak = {{ per_day = {per_day}, days = {days} }}\n[[events.rules]]\npoints = 7\n"
        );
        let catalog = Catalog::from_sources(&[("s.toml", text)]).unwrap();
        let event = catalog.default_tenant().unwrap().event("S").unwrap();
        let mut state = EventRuleState::default();
        // The model works per day: consecutive complete days since the last payment or break.
        let mut run = 0u32;
        let mut previous_day: Option<NaiveDate> = None;
        let mut date = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        for (count, step, seconds) in plan {
            // step 1: the next day; step 2: one day skipped.
            date += TimeDelta::days(step);
            if previous_day.is_some_and(|p| date - p > TimeDelta::days(1)) {
                run = 0;
            }
            let mut seconds: Vec<u32> = seconds.into_iter().take(count as usize).collect();
            seconds.sort();
            let mut paid_at = Vec::new();
            for (i, s) in seconds.iter().enumerate() {
                let local = date.and_hms_opt(0, 0, 0).unwrap() + TimeDelta::seconds(i64::from(*s));
                let t = tz.from_local_datetime(&local).single().unwrap().with_timezone(&Utc);
                let outcome = evaluate_occurrence(event, &mut state, &Map::new(), t, tz).unwrap();
                if let RuleOutcome::Pay(p) = outcome {
                    prop_assert!(p.streak_completed);
                    paid_at.push(i as u32 + 1);
                }
            }
            let complete = count >= per_day;
            let expected: Vec<u32> = if complete && run + 1 == days { vec![per_day] } else { vec![] };
            prop_assert_eq!(paid_at, expected, "day {} with {} occurrences", date, count);
            // An incomplete day breaks the run; a paid one starts it over.
            run = if complete && run + 1 < days { run + 1 } else { 0 };
            if count > 0 {
                previous_day = Some(date);
            } else {
                // A day without occurrences is a missed day.
                run = 0;
            }
        }
    }

    /// A deadline streak pays exactly once, on the `count`-th occurrence before the deadline,
    /// and never for occurrences at or after it.
    #[test]
    fn a_deadline_streak_pays_exactly_once(
        count in 1u32..=5,
        offsets in proptest::collection::vec(-100i64..=30, 0..20),
    ) {
        let text = format!(
            "[[reward_types]]\nreward_type = \"points\"\n[[events]]\nname = \"D\"\nstreak = {{ count = {count}, before = \"2026-03-01T12:00:00Z\" }}\n[[events.rules]]\npoints = 7\n"
        );
        let catalog = Catalog::from_sources(&[("d.toml", text)]).unwrap();
        let event = catalog.default_tenant().unwrap().event("D").unwrap();
        let mut state = EventRuleState::default();
        let mut counted = 0;
        for offset in offsets {
            let t = noon() + TimeDelta::minutes(offset);
            let paid = matches!(
                evaluate_occurrence(event, &mut state, &Map::new(), t, Tz::UTC).unwrap(),
                RuleOutcome::Pay(_)
            );
            if t < noon() && counted < count {
                counted += 1;
                prop_assert_eq!(paid, counted == count);
            } else {
                prop_assert!(!paid);
            }
        }
    }

    /// No input panics: any JSON for the parameters, any time; a rejection changes nothing.
    #[test]
    fn any_input_is_an_outcome_or_a_rejection(
        values in proptest::collection::vec(json_value(), 3),
        millis in any::<i64>(),
    ) {
        let catalog = kwegg();
        let t = DateTime::from_timestamp_millis(millis).unwrap_or(DateTime::<Utc>::MIN_UTC);
        for event in ["WATCHED_VIDEO", "MOVIE_WATCHED", "DAILY_CHECK_IN", "APP_OPENED"] {
            let event = catalog.event(event).unwrap();
            let mut params = Map::new();
            for (name, v) in ["duration", "type", "minutes"].iter().zip(&values) {
                params.insert(name.to_string(), v.clone());
            }
            let mut state = EventRuleState { last: Some(t), today: 1, day: 5, ..Default::default() };
            let before = state.clone();
            if evaluate_occurrence(event, &mut state, &params, t, catalog.time_zone).is_err() {
                prop_assert_eq!(state, before);
            }
        }
    }
}

fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,40}".prop_map(Value::from),
        "-?[0-9]{0,40}(\\.[0-9]{0,40})?(e-?[0-9]{1,12})?".prop_map(Value::from),
        Just(json!([1, "a"])),
        Just(json!({"a": 1})),
    ]
}

fn kwegg() -> TenantCatalog {
    let text = r#"
time_zone = "Pacific/Kiritimati"
[[reward_types]]
reward_type = "points"

[[events]]
name = "WATCHED_VIDEO"
params = [{ name = "duration", type = "integer", mandatory = true }, { name = "type", type = "string" }]
[[events.rules]]
priority = 1
conditions = [{ param = "duration", op = "greater_than", value = 20 }, { param = "type", op = "contains", value = "R" }]
points = 500
[[events.rules]]
points = 50

[[events]]
name = "MOVIE_WATCHED"
params = [{ name = "minutes", type = "float" }]
streak = { per_day = 1, days = 2, conditions = [{ param = "minutes", op = "less_than", value = "1e20" }] }
cap = "once per 3650 days"
[[events.rules]]
points = 1

[[events]]
name = "DAILY_CHECK_IN"
cap = "once per 3650 days"
[[events.rules]]
points = 1

[[events]]
name = "APP_OPENED"
params = [{ name = "type", type = "boolean" }]
streak = { count = 2, before = "9999-01-01T00:00:00Z" }
[[events.rules]]
points = 1
"#;
    let catalog = Catalog::from_sources(&[("k.toml", text)]).unwrap_or_else(|e| panic!("{e}"));
    catalog.default_tenant().unwrap().clone()
}
