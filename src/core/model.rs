//! The action: what every producer's record becomes after mapping, and what the evaluator eats.
//!
//! An action is deliberately small and owned: it crosses the mapping → evaluator boundary once
//! per record, and everything the evaluator needs (tenant, user, trigger, value, event time)
//! is resolved up front so the evaluator never looks at raw JSON.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use smol_str::SmolStr;

use super::decimal::DecimalInput;
use super::interned::InternedName;

/// The tenant every action belongs to when neither the action nor its mapping names one.
pub const DEFAULT_TENANT: &str = "default";

/// How an action names its trigger: the seed uses numbers (1 = Earned Points), KickApps and
/// Kwegg producers use names (`post_comment`, `product_viewed`). Both resolve against the
/// catalog; see [`crate::core::catalog::Catalog::resolve_trigger`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TriggerKey {
    Id(u32),
    Name(String),
}

impl TriggerKey {
    /// Reads a trigger key from a JSON value: a non-negative integer (or a string holding one)
    /// is an id, any other non-empty string is a name.
    pub fn from_json(value: &Value) -> Option<TriggerKey> {
        match value {
            Value::Number(n) => TriggerKey::from_number(n),
            Value::String(s) => TriggerKey::from_text(s),
            _ => None,
        }
    }

    /// A number is an id when it is a whole number that fits.
    pub fn from_number(n: &serde_json::Number) -> Option<TriggerKey> {
        n.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(TriggerKey::Id)
    }

    /// Text is an id when it reads as one, else a name; blank text is neither.
    pub fn from_text(text: &str) -> Option<TriggerKey> {
        let s = text.trim();
        if s.is_empty() {
            None
        } else if let Ok(id) = s.parse::<u32>() {
            Some(TriggerKey::Id(id))
        } else {
            Some(TriggerKey::Name(s.to_string()))
        }
    }
}

impl std::fmt::Display for TriggerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriggerKey::Id(id) => write!(f, "{id}"),
            TriggerKey::Name(name) => f.write_str(name),
        }
    }
}

/// A user action in the native format (the seed's body is one as it is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Action {
    #[serde(default = "default_tenant_name")]
    pub tenant: SmolStr,
    pub user_id: SmolStr,
    pub trigger_id: TriggerKey,
    /// Decimal, from a JSON number or string; 1 when absent (seed: "Default is 1").
    #[serde(default = "one", with = "super::decimal::lenient")]
    pub value: Decimal,
    /// Idempotency key: an action id already applied for this user changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<SmolStr>,
    /// Event time; windows, streaks and caps use it. Defaults to the record timestamp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<DateTime<Utc>>,
    /// Typed event parameters (Kwegg), for rules.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
    /// KickApps: action + location is the action's compound key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The seed marks it "not used"; carried through for producers that send it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_type: Option<ActionType>,
}

/// An action's `actionType` as it came. Producers send a short string (the seed's examples:
/// `"purchase.in_store"`), held inline: as a `serde_json::Value` it was an allocation per
/// action in the mapping, freed on another thread. Any other JSON value is kept as it is.
/// Written back as the same JSON either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ActionType {
    Text(SmolStr),
    Other(Value),
}

impl From<Value> for ActionType {
    fn from(value: Value) -> Self {
        match value {
            Value::String(text) => ActionType::Text(text.into()),
            other => ActionType::Other(other),
        }
    }
}

pub(crate) fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

/// The default tenant as an action names it: inline, so naming it allocates nothing.
fn default_tenant_name() -> SmolStr {
    SmolStr::new_static(DEFAULT_TENANT)
}

fn one() -> Decimal {
    Decimal::ONE
}

impl Action {
    /// A minimal action, as the seed's body: user, trigger, value.
    pub fn new(user_id: impl Into<SmolStr>, trigger: TriggerKey, value: Decimal) -> Self {
        Action {
            tenant: default_tenant_name(),
            user_id: user_id.into(),
            trigger_id: trigger,
            value,
            action_id: None,
            occurred_at: None,
            params: Map::new(),
            location: None,
            action_type: None,
        }
    }

    /// The value as given, for callers that accept `DecimalInput` (tests, builders).
    pub fn with_value(mut self, value: impl Into<DecimalInput>) -> Self {
        self.value = value.into().0;
        self
    }
}

/// Where a piece of input came from: the Kafka coordinates, or `replay` and a line number.
/// Event ids are derived from it, so the same source always yields the same ids.
///
/// The topic is an [`InternedName`]: every event of an input cites its source, and copying an
/// interned name is two words, where an owned `String` was an allocation per event and a
/// shared one an atomic increment (see [`crate::core::interned`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceRef {
    pub topic: InternedName,
    pub partition: i32,
    pub offset: i64,
}

impl SourceRef {
    /// `topic` is interned unless it is already an [`InternedName`].
    pub fn new(topic: impl Into<InternedName>, partition: i32, offset: i64) -> Self {
        SourceRef {
            topic: topic.into(),
            partition,
            offset,
        }
    }
}

/// A user's identity: state is partitioned by (tenant, user).
///
/// The names are `SmolStr`s: held inline up to 23 bytes (most tenants and user ids), so the
/// key every record builds, clones into its batch's rows and compares in the partition's
/// cache costs no allocation and no pointer chase to a heap string. Ordered, hashed and
/// serialized as the strings they hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserKey {
    pub tenant: SmolStr,
    pub user_id: SmolStr,
}

impl UserKey {
    pub fn new(tenant: impl Into<SmolStr>, user_id: impl Into<SmolStr>) -> Self {
        UserKey {
            tenant: tenant.into(),
            user_id: user_id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `actionType` is read and written back as the same JSON, whatever it is; a string is
    /// held as text, anything else as the value.
    #[test]
    fn action_type_round_trips_any_json() {
        for value in [
            json!("purchase.in_store"),
            json!("a type name longer than twenty-three bytes"),
            json!(7),
            json!({"kind": ["x", 1]}),
            json!(null),
        ] {
            let text = json!({"userId": "u", "triggerId": 1, "actionType": value});
            let action: Action = serde_json::from_value(text.clone()).unwrap();
            match (&action.action_type, &value) {
                (None, Value::Null) => {}
                (Some(ActionType::Text(t)), Value::String(s)) => assert_eq!(t, s),
                (Some(ActionType::Other(v)), _) => assert_eq!(v, &value),
                other => panic!("{other:?}"),
            }
            let back = serde_json::to_value(&action).unwrap();
            let expected = if value.is_null() { None } else { Some(&value) };
            assert_eq!(back.get("actionType"), expected);
            // Built from a value (as tests and builders do), it is what reading the JSON gives.
            if !value.is_null() {
                assert_eq!(action.action_type, Some(ActionType::from(value.clone())));
            }
        }
    }
}
