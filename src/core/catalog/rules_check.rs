//! `[[events]]` as written → the compiled form the rule evaluator walks, with every problem
//! named.
//!
//! Two stages on purpose: the written form ([`EventDef`]) is what files, schemas and listings
//! show; the compiled form ([`EventRules`]) has its rules sorted by priority, conditions
//! pointing at parameters by index and values already of their parameter's type, so
//! evaluating an occurrence compares values and never re-reads the catalog's JSON.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::collections::HashSet;

use super::rules::*;
use super::{Inventory, RewardKind, RewardType, TenantCatalog};
use crate::core::{decimal, limits};

/// The longest programmatic call the catalog may ask for.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The body fields every programmatic call carries; a catalog's `body` may not redefine them.
pub const CALL_FIELDS: [&str; 5] = ["requestId", "userId", "event", "params", "occurredAt"];

/// One event, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRules {
    pub name: String,
    pub reward_type: String,
    pub params: Vec<ParamDef>,
    /// By ascending priority, the default rule last; empty for a programmatic event.
    pub rules: Vec<Rule>,
    pub cap: Option<TimeDelta>,
    pub streak: Option<Streak>,
    pub programmatic: Option<ProgrammaticDef>,
}

impl EventRules {
    /// Whether evaluating this event reads or writes per-user state (a cap or a streak).
    pub fn is_stateful(&self) -> bool {
        self.cap.is_some() || self.streak.is_some()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The rule's name, or `default` / `rule-<priority>`; unique in the event.
    pub label: String,
    pub priority: Priority,
    /// ANDed; empty for the default rule.
    pub conditions: Vec<Condition>,
    pub points: Decimal,
}

/// A statement with its parameter resolved to an index into [`EventRules::params`].
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub param: usize,
    pub test: Test,
}

/// A statement's operation with its value already of the parameter's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    IsEmpty,
    IsNotEmpty,
    NumberEqual(Decimal),
    LessThan(Decimal),
    GreaterThan(Decimal),
    TextEqual(String),
    Contains(String),
    StartsWith(String),
    EndsWith(String),
    BoolEqual(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Streak {
    pub kind: StreakKind,
    /// Only occurrences meeting all of them count (empty: all count).
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreakKind {
    /// `per_day` occurrences on each of `days` consecutive days of the tenant's time zone.
    Daily { per_day: u32, days: u32 },
    /// `count` occurrences dated before `before`.
    Before { count: u32, before: DateTime<Utc> },
}

/// The compiled events of a tenant, by name.
#[derive(Debug, Clone, Default)]
pub(super) struct EventIndex(FxHashMap<String, EventRules>);

impl TenantCatalog {
    /// The compiled rules of the event producers call `name` (exact, case-sensitive match).
    pub fn event(&self, name: &str) -> Option<&EventRules> {
        self.event_rules.0.get(name)
    }

    /// The event an action's trigger key names, if any: only a name can be an event.
    pub fn event_for(&self, key: &crate::core::model::TriggerKey) -> Option<&EventRules> {
        match key {
            crate::core::model::TriggerKey::Name(name) => self.event(name),
            crate::core::model::TriggerKey::Id(_) => None,
        }
    }

    pub(super) fn set_event_rules(&mut self, events: Vec<EventRules>) {
        self.events.sort_by(|a, b| a.name.cmp(&b.name));
        self.event_rules = EventIndex(events.into_iter().map(|e| (e.name.clone(), e)).collect());
    }
}

/// Reads a tenant's `time_zone`: an IANA name such as `Asia/Kolkata`.
pub(super) fn time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "time_zone: '{name}' is not an IANA time zone name (e.g. \"Asia/Kolkata\", \"UTC\")"
        )
    })
}

/// The reward types an event may pay in: declared, points, and not limited by an inventory
/// (rule payments are credited directly, they never wait for the inventory stage).
pub(super) struct Payable<'a> {
    known: HashSet<&'a str>,
    payable: HashSet<&'a str>,
}

impl<'a> Payable<'a> {
    pub(super) fn new(
        types: impl Iterator<Item = &'a RewardType>,
        inventories: impl Iterator<Item = &'a Inventory>,
    ) -> Self {
        let limited: HashSet<&str> = inventories.map(|i| i.reward_type.as_str()).collect();
        let mut known = HashSet::new();
        let mut payable = HashSet::new();
        for t in types {
            known.insert(t.reward_type.as_str());
            if t.kind == RewardKind::Points && !limited.contains(t.reward_type.as_str()) {
                payable.insert(t.reward_type.as_str());
            }
        }
        Payable { known, payable }
    }
}

/// Validates one event; every problem, each prefixed with the event's name.
pub(super) fn compile_event(def: &EventDef, payable: &Payable) -> Result<EventRules, Vec<String>> {
    let mut c = Checker {
        problems: Vec::new(),
        def,
    };
    c.name();
    c.reward_type(payable);
    c.params();
    let rules = c.rules();
    let streak = def.streak.as_ref().and_then(|s| c.streak(s));
    if let Some(p) = &def.programmatic {
        c.programmatic(p);
    }
    if c.problems.is_empty() {
        Ok(EventRules {
            name: def.name.clone(),
            reward_type: def.reward_type.clone(),
            params: def.params.clone(),
            rules,
            cap: def.cap.window(),
            streak,
            programmatic: def.programmatic.clone(),
        })
    } else {
        let name = &def.name;
        Err(c
            .problems
            .into_iter()
            .map(|p| format!("event '{name}': {p}"))
            .collect())
    }
}

struct Checker<'a> {
    problems: Vec<String>,
    def: &'a EventDef,
}

impl Checker<'_> {
    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    fn name(&mut self) {
        let name = &self.def.name;
        if name.trim().is_empty() {
            self.problem("name must not be empty");
        } else if name.trim() != name {
            self.problem("name must not start or end with spaces");
        } else if name.parse::<u32>().is_ok() {
            self.problem("name must not be a number (numbers name triggers by id)");
        }
    }

    fn reward_type(&mut self, payable: &Payable) {
        let t = self.def.reward_type.as_str();
        if !payable.known.contains(t) {
            self.problem(format!("unknown reward_type '{t}'"));
        } else if !payable.payable.contains(t) {
            self.problem(format!(
                "reward_type '{t}' cannot be paid by rules: it must be of kind \"points\" and have no inventory"
            ));
        }
    }

    fn params(&mut self) {
        let mut seen = HashSet::new();
        for p in &self.def.params {
            if p.name.trim().is_empty() {
                self.problem("a parameter's name must not be empty");
            } else if !seen.insert(p.name.as_str()) {
                self.problem(format!("parameter '{}' is declared twice", p.name));
            }
        }
    }

    fn rules(&mut self) -> Vec<Rule> {
        let def = self.def;
        if def.programmatic.is_some() {
            if !def.rules.is_empty() {
                self.problem(
                    "a programmatic event takes its amount from the endpoint: it has no rules",
                );
            }
            return Vec::new();
        }
        let defaults = def.rules.iter().filter(|r| r.conditions.is_empty()).count();
        if defaults == 0 {
            self.problem("needs a default rule (a rule without conditions)");
        } else if defaults > 1 {
            self.problem(format!(
                "has {defaults} default rules (rules without conditions); it needs exactly one"
            ));
        }
        let highest = def
            .rules
            .iter()
            .filter(|r| !r.conditions.is_empty())
            .filter_map(|r| r.priority)
            .max();
        let mut priorities = HashSet::new();
        let mut labels = HashSet::new();
        let mut rules = Vec::with_capacity(def.rules.len());
        for (i, r) in def.rules.iter().enumerate() {
            let is_default = r.conditions.is_empty();
            let priority = match (r.priority, is_default) {
                (Some(p), _) => p,
                (None, true) => Priority::Last,
                (None, false) => {
                    self.problem(format!("rule {}: needs a priority", i + 1));
                    continue;
                }
            };
            let label = match &r.name {
                Some(name) => name.clone(),
                None if is_default => "default".to_string(),
                None => format!("rule-{priority}"),
            };
            let what = format!("rule '{label}' (priority {priority})");
            if r.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
                self.problem(format!("{what}: name must not be empty"));
            }
            let priority_taken = !priorities.insert(priority);
            if priority_taken {
                self.problem(format!("{what}: another rule has priority {priority}"));
            }
            // Unnamed rules are named by priority: a clash of those is the one above.
            if !labels.insert(label.clone()) && (r.name.is_some() || !priority_taken) {
                self.problem(format!("{what}: another rule has the name '{label}'"));
            }
            if is_default {
                if highest.is_some_and(|h| priority <= h) {
                    self.problem(format!(
                        "{what}: the default rule comes last; its priority must be greater than every other rule's, or \"{POSITIVE_INFINITY}\""
                    ));
                }
            } else if priority == Priority::Last {
                self.problem(format!(
                    "{what}: only the default rule (no conditions) has priority \"{POSITIVE_INFINITY}\""
                ));
            }
            self.points(&what, "points", r.points);
            let conditions = self.conditions(&what, &r.conditions);
            rules.push(Rule {
                label,
                priority,
                conditions,
                points: r.points,
            });
        }
        rules.sort_by_key(|r| (r.conditions.is_empty(), r.priority));
        rules
    }

    fn points(&mut self, what: &str, field: &str, points: Decimal) {
        if !(points.is_zero() || limits::is_valid_amount(points)) {
            self.problem(format!(
                "{what}: {field} must be 0, or above 0 and at most {} with at most {} decimal places, found {points}",
                limits::MAX_AMOUNT,
                limits::MAX_SCALE
            ));
        }
    }

    fn conditions(&mut self, what: &str, statements: &[Statement]) -> Vec<Condition> {
        let mut conditions = Vec::with_capacity(statements.len());
        for (i, s) in statements.iter().enumerate() {
            let at = format!(
                "{what}: condition {} ({} {})",
                i + 1,
                s.param,
                s.op.as_str()
            );
            match compile_statement(&self.def.params, s) {
                Ok(c) => conditions.push(c),
                Err(e) => self.problem(format!("{at}: {e}")),
            }
        }
        conditions
    }

    fn streak(&mut self, s: &StreakDef) -> Option<Streak> {
        let kind = match (s.per_day, s.days, s.count, s.before) {
            (per_day, Some(days), None, None) => {
                let per_day = per_day.unwrap_or(1);
                if per_day == 0 || days == 0 {
                    self.problem("streak: per_day and days must be at least 1");
                }
                if days > MAX_CAP_DAYS {
                    self.problem(format!("streak: days must be at most {MAX_CAP_DAYS}"));
                }
                StreakKind::Daily { per_day, days }
            }
            (None, None, Some(count), Some(before)) => {
                if count == 0 {
                    self.problem("streak: count must be at least 1");
                }
                StreakKind::Before { count, before }
            }
            _ => {
                self.problem(
                    "streak: give either days (and per_day, default 1) or count and before",
                );
                return None;
            }
        };
        let conditions = self.conditions("streak", &s.conditions);
        Some(Streak { kind, conditions })
    }

    fn programmatic(&mut self, p: &ProgrammaticDef) {
        let url_ok = ["http://", "https://"].iter().any(|scheme| {
            p.url
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        }) && !p.url.chars().any(|c| c.is_whitespace() || c.is_control());
        if !url_ok {
            self.problem(format!(
                "programmatic: url must be an http:// or https:// URL, found '{}'",
                p.url
            ));
        }
        for (name, value) in &p.headers {
            let token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                self.problem(format!("programmatic: '{name}' is not a header name"));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                self.problem(format!(
                    "programmatic: header '{name}' has control characters in its value"
                ));
            }
        }
        for field in CALL_FIELDS {
            if p.body.contains_key(field) {
                self.problem(format!(
                    "programmatic: body may not set '{field}' (every call carries it)"
                ));
            }
        }
        if p.timeout.0.is_zero() || p.timeout.0 > MAX_TIMEOUT {
            self.problem(format!(
                "programmatic: timeout must be above 0 and at most {}",
                humantime::format_duration(MAX_TIMEOUT)
            ));
        }
        self.points("programmatic", "fallback_points", p.fallback_points);
    }
}

fn compile_statement(params: &[ParamDef], s: &Statement) -> Result<Condition, String> {
    let Some(index) = params.iter().position(|p| p.name == s.param) else {
        return Err(format!("unknown parameter '{}'", s.param));
    };
    let ty = params[index].param_type;
    if !ty.allows(s.op) {
        return Err(format!(
            "'{}' does not apply to {} parameters",
            s.op.as_str(),
            ty.as_str()
        ));
    }
    let test = match (s.op.takes_value(), &s.value) {
        (false, Some(_)) => return Err("takes no value".into()),
        (false, None) if s.op == ConditionOp::IsEmpty => Test::IsEmpty,
        (false, None) => Test::IsNotEmpty,
        (true, None) => return Err(format!("needs a {} value", ty.as_str())),
        (true, Some(value)) => typed_test(s.op, ty, value)?,
    };
    Ok(Condition { param: index, test })
}

/// A catalog value must be of the parameter's type as TOML spells it: an integer for integer
/// parameters, a number (or a decimal string, as elsewhere in the catalog) for floats, a
/// string for strings, `true`/`false` for booleans.
fn typed_test(op: ConditionOp, ty: ParamType, value: &Value) -> Result<Test, String> {
    let wrong = || {
        format!(
            "value {value} is not {}",
            match ty {
                ParamType::Integer => "an integer",
                ParamType::Float => "a number",
                ParamType::String => "a string",
                ParamType::Boolean => "true or false",
            }
        )
    };
    let number = || -> Result<Decimal, String> {
        match (ty, value) {
            (ParamType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
                decimal::from_json(value).map_err(|_| wrong())
            }
            (ParamType::Float, Value::Number(_) | Value::String(_)) => {
                decimal::from_json(value).map_err(|_| wrong())
            }
            _ => Err(wrong()),
        }
    };
    let text = || match value {
        Value::String(s) => Ok(s.clone()),
        _ => Err(wrong()),
    };
    Ok(match (op, ty) {
        (ConditionOp::Equal, ParamType::Boolean) => match value {
            Value::Bool(b) => Test::BoolEqual(*b),
            _ => return Err(wrong()),
        },
        (ConditionOp::Equal, ParamType::String) => Test::TextEqual(text()?),
        (ConditionOp::Equal, _) => Test::NumberEqual(number()?),
        (ConditionOp::LessThan, _) => Test::LessThan(number()?),
        (ConditionOp::GreaterThan, _) => Test::GreaterThan(number()?),
        (ConditionOp::Contains, _) => Test::Contains(text()?),
        (ConditionOp::StartsWith, _) => Test::StartsWith(text()?),
        (ConditionOp::EndsWith, _) => Test::EndsWith(text()?),
        (ConditionOp::IsEmpty, _) => Test::IsEmpty,
        (ConditionOp::IsNotEmpty, _) => Test::IsNotEmpty,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Catalog;

    const HEAD: &str = "tenant = \"kwegg\"\n\n[[reward_types]]\nreward_type = \"points\"\n";

    /// The seed's multiple-statement example; the cases below break it.
    const EVENT: &str = r#"
[[events]]
name = "WATCHED_VIDEO"
params = [
  { name = "type", type = "string" },
  { name = "duration", type = "integer", mandatory = true },
]
[[events.rules]]
priority = 1
conditions = [{ param = "type", op = "equal", value = "PRANK" }]
points = 100
[[events.rules]]
priority = 2
conditions = [{ param = "type", op = "equal", value = "RECIPE" }, { param = "duration", op = "less_than", value = 10 }]
points = 200
[[events.rules]]
priority = 3
conditions = [{ param = "type", op = "equal", value = "RECIPE" }]
points = 500
[[events.rules]]
priority = 4
points = 50
"#;

    fn errors(event: &str) -> Vec<String> {
        match Catalog::from_sources(&[("k.toml", format!("{HEAD}{event}"))]) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[track_caller]
    fn refused(event: &str, needle: &str) {
        let errors = errors(event);
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "expected an error containing '{needle}', got {errors:#?}"
        );
        // Every error has the file and a line inside the events (after the 4-line head).
        for e in &errors {
            let line: usize = e
                .split(':')
                .nth(1)
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            assert!(e.starts_with("k.toml:") && line >= 5, "{e}");
        }
    }

    #[test]
    fn the_seed_example_is_accepted_and_compiled_in_priority_order() {
        assert_eq!(errors(EVENT), Vec::<String>::new());
        let catalog = Catalog::from_sources(&[("k.toml", format!("{HEAD}{EVENT}"))]).unwrap();
        let tenant = catalog.tenant("kwegg").unwrap();
        let event = tenant.event("WATCHED_VIDEO").unwrap();
        let labels: Vec<&str> = event.rules.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["rule-1", "rule-2", "rule-3", "default"]);
        assert!(
            tenant.event("watched_video").is_none(),
            "names match case-sensitively"
        );
        assert_eq!(tenant.time_zone, chrono_tz::Tz::UTC);
    }

    #[test]
    fn rule_errors_are_named_with_file_and_line() {
        let errors = errors(&EVENT.replace(
            "priority = 4\n",
            "priority = 4\nconditions = [{ param = \"duration\", op = \"is_empty\" }]\n",
        ));
        assert_eq!(
            errors,
            ["k.toml:6: event 'WATCHED_VIDEO': needs a default rule (a rule without conditions)"]
        );
    }

    #[test]
    fn broken_rules_are_refused() {
        let cases = [
            (
                EVENT.replace("op = \"less_than\"", "op = \"contains\""),
                "rule 'rule-2' (priority 2): condition 2 (duration contains): 'contains' does not apply to integer parameters",
            ),
            (
                EVENT.replace("value = 10", "value = \"ten\""),
                "condition 2 (duration less_than): value \"ten\" is not an integer",
            ),
            (EVENT.replace("value = 10", "value = 10.5"), "value 10.5 is not an integer"),
            (
                EVENT.replace("value = \"PRANK\"", "value = 3"),
                "value 3 is not a string",
            ),
            (EVENT.replace("priority = 3", "priority = 2"), "another rule has priority 2"),
            (
                EVENT
                    .replace("priority = 1\n", "name = \"recipe\"\npriority = 1\n")
                    .replace("priority = 3\n", "name = \"recipe\"\npriority = 3\n"),
                "rule 'recipe' (priority 3): another rule has the name 'recipe'",
            ),
            (
                EVENT.replace("param = \"type\", op = \"equal\", value = \"PRANK\"", "param = \"kind\", op = \"equal\", value = \"PRANK\""),
                "unknown parameter 'kind'",
            ),
            (EVENT.replace("priority = 4", "priority = 2"), "the default rule comes last"),
            (EVENT.replace("priority = 4\n", ""), ""),
            (
                EVENT.replace("priority = 3\n", ""),
                "rule 3: needs a priority",
            ),
            (
                EVENT.replace("priority = 1\n", "priority = \"POSITIVE_INFINITY\"\n"),
                "only the default rule (no conditions) has priority",
            ),
            (
                format!("{EVENT}[[events.rules]]\npoints = 5\n"),
                "has 2 default rules",
            ),
            (EVENT.replace("points = 50", "points = -1"), "points must be 0, or above 0"),
            (
                EVENT.replace("points = 50", "points = 1000000000000001"),
                "points must be 0, or above 0 and at most 1000000000000000",
            ),
            (
                EVENT.replace("points = 50", "points = 0.000000001"),
                "with at most 8 decimal places",
            ),
            (
                EVENT.replace("op = \"less_than\", value = 10", "op = \"is_empty\", value = 10"),
                "takes no value",
            ),
            (
                EVENT.replace("op = \"less_than\", value = 10", "op = \"less_than\""),
                "needs a integer value",
            ),
            (
                EVENT.replace("{ name = \"type\", type = \"string\" },", "{ name = \"duration\", type = \"string\" },"),
                "parameter 'duration' is declared twice",
            ),
            (
                format!("{EVENT}{EVENT}"),
                "duplicate event 'WATCHED_VIDEO'",
            ),
            (EVENT.replace("\"WATCHED_VIDEO\"", "\"42\""), "must not be a number"),
            (EVENT.replace("\"WATCHED_VIDEO\"", "\" X\""), "must not start or end with spaces"),
            (
                EVENT.replace("name = \"WATCHED_VIDEO\"", "name = \"WATCHED_VIDEO\"\nreward_type = \"coins\""),
                "unknown reward_type 'coins'",
            ),
        ];
        for (text, needle) in &cases {
            if needle.is_empty() {
                // Leaving the default's priority out is the seed's POSITIVE_INFINITY.
                assert_eq!(errors(text), Vec::<String>::new());
            } else {
                refused(text, needle);
            }
        }
    }

    #[test]
    fn reward_types_paid_by_rules_are_direct_points() {
        let limited = format!(
            "{HEAD}[[inventories]]\nid = \"i\"\nreward_type = \"points\"\namount_total = 3\n{EVENT}"
        );
        let err = Catalog::from_sources(&[("k.toml", limited)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be paid by rules"), "{err}");
        let badge = format!(
            "{HEAD}[[reward_types]]\nreward_type = \"badge\"\nkind = \"badge\"\n{}",
            EVENT.replace(
                "name = \"WATCHED_VIDEO\"",
                "name = \"WATCHED_VIDEO\"\nreward_type = \"badge\""
            )
        );
        let err = Catalog::from_sources(&[("k.toml", badge)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be paid by rules"), "{err}");
    }

    #[test]
    fn caps_streaks_and_programmatic_settings_are_checked() {
        let plain = "[[events]]\nname = \"E\"\n";
        let rule = "[[events.rules]]\npoints = 1\n";
        let cases = [
            (format!("{plain}cap = \"once per fortnight\"\n{rule}"), "cap: expected"),
            (format!("{plain}streak = {{ per_day = 2 }}\n{rule}"), "streak: give either days"),
            (
                format!("{plain}streak = {{ days = 2, count = 3 }}\n{rule}"),
                "streak: give either days",
            ),
            (format!("{plain}streak = {{ days = 0 }}\n{rule}"), "at least 1"),
            (
                format!("{plain}streak = {{ count = 3 }}\n{rule}"),
                "streak: give either days",
            ),
            (
                format!("{plain}streak = {{ days = 2, conditions = [{{ param = \"x\", op = \"equal\", value = 1 }}] }}\n{rule}"),
                "streak: condition 1 (x equal): unknown parameter 'x'",
            ),
            (
                format!("{plain}programmatic = {{ url = \"ftp://x\" }}\n"),
                "url must be an http:// or https:// URL",
            ),
            (
                format!("{plain}programmatic = {{ url = \"https://x\" }}\n{rule}"),
                "a programmatic event takes its amount from the endpoint",
            ),
            (
                format!("{plain}programmatic = {{ url = \"https://x\", body = {{ userId = 1 }} }}\n"),
                "body may not set 'userId'",
            ),
            (
                format!("{plain}programmatic = {{ url = \"https://x\", timeout = \"0s\" }}\n"),
                "timeout must be above 0 and at most 1m",
            ),
            (
                format!("{plain}programmatic = {{ url = \"https://x\", timeout = \"soon\" }}\n"),
                "timeout: 'soon' is not a duration",
            ),
            (
                format!("{plain}programmatic = {{ url = \"https://x\", headers = {{ \"Bad Name\" = \"v\" }} }}\n"),
                "is not a header name",
            ),
            (
                format!("{plain}programmatic = {{ url = \"https://x\", method = \"GET\" }}\n"),
                "unknown variant `GET`",
            ),
            (format!("{plain}{rule}bogus = 1\n"), "unknown field `bogus`"),
        ];
        for (text, needle) in &cases {
            refused(text, needle);
        }
        assert_eq!(
            errors(&format!("{plain}cap = \"once per 2 hours\"\nstreak = {{ count = 2, before = \"2026-01-01T00:00:00Z\" }}\n{rule}")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_tenants_time_zone_is_an_iana_name_its_files_agree_on() {
        let with = |tz: &str| format!("tenant = \"kwegg\"\ntime_zone = \"{tz}\"\n");
        let catalog = Catalog::from_sources(&[
            ("a.toml", with("Asia/Kolkata")),
            ("b.toml", with("Asia/Kolkata")),
            ("c.toml", "tenant = \"kwegg\"\n".to_string()),
        ])
        .unwrap();
        assert_eq!(
            catalog.tenant("kwegg").unwrap().time_zone,
            chrono_tz::Tz::Asia__Kolkata
        );
        let err = Catalog::from_sources(&[("a.toml", with("Mars/Olympus"))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.toml:2: time_zone: 'Mars/Olympus' is not an IANA time zone name (e.g. \"Asia/Kolkata\", \"UTC\")"
        );
        let err = Catalog::from_sources(&[
            ("a.toml", with("Asia/Kolkata")),
            ("b.toml", with("Europe/Paris")),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.toml:2: time_zone 'Europe/Paris' differs from the tenant's value in a.toml:2"
        );
    }
}
