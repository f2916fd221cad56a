//! Earning rules in the catalog language: a tenant's events, their typed parameters, if-then
//! rules, frequency caps, streaks and programmatic amounts.
//!
//! These are the shapes a catalog file holds under `[[events]]`, as written; `rules_check`
//! validates them into the compiled form the evaluator walks ([`super::EventRules`]).
//! `deny_unknown_fields` everywhere, like the rest of the catalog, so a typo is an error with
//! its line instead of a rule that silently never matches.
//!
//! An event is what producers send by name (`WATCHED_VIDEO`); names match exactly,
//! case-sensitively, as they are written here (a mapping's `value_map` can rename what a
//! producer sends). Every occurrence of an event pays through exactly one rule: the first
//! whose conditions all hold, by ascending priority, else the default rule (the one without
//! conditions). A cap or a streak can hold the payment back; a programmatic event asks the
//! tenant's endpoint for the amount instead.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::LocalizedText;

/// One event a tenant rewards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventDef {
    /// What producers send (`WATCHED_VIDEO`), matched exactly; unique in the tenant.
    pub name: String,
    #[serde(default)]
    pub description: LocalizedText,
    /// The points reward type every payment of this event is counted in.
    #[serde(default = "points")]
    pub reward_type: String,
    #[serde(default)]
    pub params: Vec<ParamDef>,
    /// At most one rewarded occurrence per window, rolling from the last one (event time).
    #[serde(default)]
    pub cap: Cap,
    /// Pays once at the end of a streak of occurrences instead of on each occurrence.
    #[serde(default)]
    pub streak: Option<StreakDef>,
    /// The amount comes from the tenant's endpoint instead of a rule.
    #[serde(default)]
    pub programmatic: Option<ProgrammaticDef>,
    /// Needed unless the event is programmatic: one of them, the default, without conditions.
    #[serde(default)]
    pub rules: Vec<RuleDef>,
}

fn points() -> String {
    "points".to_string()
}

/// A parameter an occurrence may carry in its `params`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDef {
    pub name: String,
    #[serde(rename = "type")]
    pub param_type: ParamType,
    /// An occurrence without it is not rewarded (a rejection names the parameter).
    #[serde(default)]
    pub mandatory: bool,
}

/// The seed's four parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    Integer,
    Float,
    String,
    Boolean,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::Integer => "integer",
            ParamType::Float => "float",
            ParamType::String => "string",
            ParamType::Boolean => "boolean",
        }
    }

    /// The seed's table of which operations apply to which type.
    pub fn allows(self, op: ConditionOp) -> bool {
        use ConditionOp::*;
        match op {
            Equal | IsEmpty | IsNotEmpty => true,
            LessThan | GreaterThan => matches!(self, ParamType::Integer | ParamType::Float),
            Contains | StartsWith | EndsWith => self == ParamType::String,
        }
    }
}

/// An if-then rule: when every condition holds, the occurrence pays `points`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    /// Shown as the paying rule in `reward.granted`; defaults to `default` for the default
    /// rule and `rule-<priority>` for the others.
    #[serde(default)]
    pub name: Option<String>,
    /// Lower is tried first; unique in the event. The default rule's may be left out.
    #[serde(default)]
    pub priority: Option<Priority>,
    /// ANDed statements; none makes this the default rule.
    #[serde(default)]
    pub conditions: Vec<Statement>,
    #[serde(with = "crate::core::decimal::lenient")]
    pub points: Decimal,
}

/// A rule's priority: a number, or `"POSITIVE_INFINITY"` (the seed's for the default rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    At(u32),
    Last,
}

/// How the seed writes the default rule's priority.
pub const POSITIVE_INFINITY: &str = "POSITIVE_INFINITY";

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Priority::At(n) => write!(f, "{n}"),
            Priority::Last => f.write_str(POSITIVE_INFINITY),
        }
    }
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Priority::At(n) => serializer.serialize_u32(*n),
            Priority::Last => serializer.serialize_str(POSITIVE_INFINITY),
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Priority;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(
                    f,
                    "a priority: an integer from 0 to {} or \"{POSITIVE_INFINITY}\"",
                    u32::MAX
                )
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Priority, E> {
                u32::try_from(v)
                    .map(Priority::At)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Priority, E> {
                u32::try_from(v)
                    .map(Priority::At)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Priority, E> {
                if v == POSITIVE_INFINITY {
                    Ok(Priority::Last)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// One statement of a condition: `param op value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// A parameter the event declares.
    pub param: String,
    pub op: ConditionOp,
    /// Of the parameter's type; none for `is_empty` and `is_not_empty`.
    #[serde(default)]
    pub value: Option<Value>,
}

/// The seed's logical operations (which apply to which type: [`ParamType::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOp {
    Equal,
    LessThan,
    GreaterThan,
    Contains,
    StartsWith,
    EndsWith,
    IsEmpty,
    IsNotEmpty,
}

impl ConditionOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionOp::Equal => "equal",
            ConditionOp::LessThan => "less_than",
            ConditionOp::GreaterThan => "greater_than",
            ConditionOp::Contains => "contains",
            ConditionOp::StartsWith => "starts_with",
            ConditionOp::EndsWith => "ends_with",
            ConditionOp::IsEmpty => "is_empty",
            ConditionOp::IsNotEmpty => "is_not_empty",
        }
    }

    /// `is_empty` and `is_not_empty` compare with nothing.
    pub fn takes_value(self) -> bool {
        !matches!(self, ConditionOp::IsEmpty | ConditionOp::IsNotEmpty)
    }
}

/// The seed's frequency cap, written as it says it: `"once per 10 minutes"`, `"once per
/// hour"`, `"once per 2 days"`, or `"open"` (every occurrence is rewarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cap {
    #[default]
    Open,
    Every {
        count: u32,
        unit: CapUnit,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapUnit {
    Minute,
    Hour,
    Day,
}

/// The longest cap window: ten years of days.
pub const MAX_CAP_DAYS: u32 = 3650;

impl CapUnit {
    fn seconds(self) -> i64 {
        match self {
            CapUnit::Minute => 60,
            CapUnit::Hour => 3600,
            CapUnit::Day => 86_400,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CapUnit::Minute => "minute",
            CapUnit::Hour => "hour",
            CapUnit::Day => "day",
        }
    }
}

impl Cap {
    /// The window, or none for an open cap.
    pub fn window(self) -> Option<chrono::TimeDelta> {
        match self {
            Cap::Open => None,
            Cap::Every { count, unit } => {
                chrono::TimeDelta::try_seconds(i64::from(count) * unit.seconds())
            }
        }
    }

    fn parse(text: &str) -> Result<Cap, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let unit_of = |word: &str| match word.strip_suffix('s').unwrap_or(word) {
            "minute" => Some(CapUnit::Minute),
            "hour" => Some(CapUnit::Hour),
            "day" => Some(CapUnit::Day),
            _ => None,
        };
        let (count, unit) = match words.as_slice() {
            ["open"] => return Ok(Cap::Open),
            ["once", "per", unit] => (Some(1), unit_of(unit)),
            ["once", "per", count, unit] => (count.parse::<u32>().ok(), unit_of(unit)),
            _ => (None, None),
        };
        match (count, unit) {
            (Some(count), Some(unit))
                if count >= 1
                    && i64::from(count) * unit.seconds()
                        <= i64::from(MAX_CAP_DAYS) * CapUnit::Day.seconds() =>
            {
                Ok(Cap::Every { count, unit })
            }
            _ => Err(format!(
                "cap: expected \"open\" or \"once per <n> minutes|hours|days\" (n from 1, at most {MAX_CAP_DAYS} days), found \"{text}\""
            )),
        }
    }
}

impl std::fmt::Display for Cap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cap::Open => f.write_str("open"),
            Cap::Every { count: 1, unit } => write!(f, "once per {}", unit.name()),
            Cap::Every { count, unit } => write!(f, "once per {count} {}s", unit.name()),
        }
    }
}

impl Serialize for Cap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Cap::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A streak: `per_day` occurrences a day for `days` consecutive days (days in the tenant's
/// time zone), or `count` occurrences before `before`. Only occurrences meeting every one of
/// `conditions` count (a hybrid reward). It pays once, at its end, through the event's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreakDef {
    #[serde(default)]
    pub per_day: Option<u32>,
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub conditions: Vec<Statement>,
}

/// Where a programmatic event gets its amount: the tenant's REST endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgrammaticDef {
    /// `http://` or `https://`.
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Fixed fields sent with every call, next to the occurrence's own (`requestId`,
    /// `userId`, `event`, `params`, `occurredAt`, which it may not redefine).
    #[serde(default)]
    pub body: Map<String, Value>,
    /// How long one call may take (`"2s"`, `"1500ms"`).
    #[serde(default)]
    pub timeout: Timeout,
    /// Paid when the endpoint fails, times out or answers out of shape.
    #[serde(default, with = "crate::core::decimal::lenient")]
    pub fallback_points: Decimal,
}

/// A programmatic call's timeout, written as a duration the way `allowed_lateness` is
/// (`"2s"`, `"1500ms"`); two seconds unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub std::time::Duration);

impl Default for Timeout {
    fn default() -> Self {
        Timeout(std::time::Duration::from_secs(2))
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(Timeout)
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "timeout: '{text}' is not a duration (e.g. \"2s\", \"1500ms\")"
                ))
            })
    }
}

/// The methods a programmatic call may use: the occurrence travels in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Post,
    Put,
    Patch,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_read_as_the_seed_writes_them_and_write_back_the_same() {
        for (text, seconds) in [
            ("open", None),
            ("once per 10 minutes", Some(600)),
            ("once per minute", Some(60)),
            ("once per 1 hour", Some(3600)),
            ("once per hour", Some(3600)),
            ("once  per 2 days", Some(172_800)),
        ] {
            let cap = Cap::parse(text).unwrap();
            assert_eq!(cap.window().map(|w| w.num_seconds()), seconds, "{text}");
            assert_eq!(Cap::parse(&cap.to_string()).unwrap(), cap, "{text}");
        }
        for bad in [
            "",
            "once",
            "once per",
            "once per 0 minutes",
            "once per -1 days",
            "twice per day",
            "once per 10 weeks",
            "once per 3651 days",
            "once per 99999999999 minutes",
        ] {
            assert!(Cap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn priorities_are_numbers_or_positive_infinity() {
        #[derive(Deserialize)]
        struct P {
            p: Priority,
        }
        let read = |t: &str| toml::from_str::<P>(&format!("p = {t}")).map(|p| p.p);
        assert_eq!(read("3").unwrap(), Priority::At(3));
        assert_eq!(read("\"POSITIVE_INFINITY\"").unwrap(), Priority::Last);
        assert!(Priority::At(u32::MAX) < Priority::Last);
        for bad in ["-1", "4294967296", "\"first\"", "1.5", "true"] {
            let err = read(bad).unwrap_err().to_string();
            assert!(err.contains("POSITIVE_INFINITY"), "{bad}: {err}");
        }
        assert_eq!(
            serde_json::to_string(&Priority::Last).unwrap(),
            "\"POSITIVE_INFINITY\""
        );
        assert_eq!(serde_json::to_string(&Priority::At(2)).unwrap(), "2");
    }
}
