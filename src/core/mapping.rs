//! Field mappings: any producer's JSON → an [`Action`].
//!
//! A mapping file (`mappings/*.toml`) names the topics it applies to and, for each action
//! field, where to find it (an RFC 6901 JSON Pointer), a constant or a default, a value map
//! (a producer's event name → a trigger id) and checks with the producer's own error codes
//! (KickApps' 13 = invalid userId …). Applying a mapping is pure and never panics: a record
//! that cannot be mapped yields a [`MapError`] naming the field, which the pipeline turns
//! into a dead letter.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

use super::decimal;
use super::limits;
use super::model::{Action, TriggerKey, DEFAULT_TENANT};
pub use super::reject::RejectKind;

/// Records larger than this are dead-lettered unless the mapping says otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// One mapping file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// A short name, used in metrics and dead letters.
    pub name: String,
    /// Input topics this mapping reads.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Tenant of every action unless the `tenant` field says otherwise.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default = "default_max_bytes")]
    pub max_record_bytes: usize,
    /// What to do with an action whose trigger the catalog does not know.
    #[serde(default)]
    pub unknown_trigger: UnknownTrigger,
    #[serde(default)]
    pub fields: Fields,
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

fn default_max_bytes() -> usize {
    DEFAULT_MAX_RECORD_BYTES
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownTrigger {
    /// Strict: the record goes to the dead-letter topic with the reason.
    #[default]
    DeadLetter,
    /// Lenient: the record is counted and skipped.
    Ignore,
}

/// Where each action field comes from. Absent entries use the native action's field name.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    pub user_id: Option<FieldSpec>,
    pub trigger_id: Option<FieldSpec>,
    pub value: Option<FieldSpec>,
    pub action_id: Option<FieldSpec>,
    pub occurred_at: Option<FieldSpec>,
    pub params: Option<FieldSpec>,
    pub location: Option<FieldSpec>,
    pub tenant: Option<FieldSpec>,
    pub action_type: Option<FieldSpec>,
}

/// How to read one field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// RFC 6901 JSON Pointer into the record (`/event/name`).
    pub pointer: Option<String>,
    /// A value used for every record (no pointer needed).
    pub constant: Option<Value>,
    /// Used when the pointer finds nothing (or null).
    pub default: Option<Value>,
    /// Missing is an error (user and trigger are always required).
    #[serde(default)]
    pub required: bool,
    /// Source value (as text) → value, e.g. an event name → a trigger id.
    #[serde(default)]
    pub value_map: BTreeMap<String, Value>,
    /// With a value map, a source value it does not list is an error (else passed through).
    #[serde(default)]
    pub strict_map: bool,
    /// Strings longer than this are an error (KickApps: location ≤ 64).
    pub max_len: Option<usize>,
    /// The value must be a whole number (KickApps: quantity is an integer).
    #[serde(default)]
    pub integer: bool,
    /// Epoch numbers in `seconds` or `millis`; `auto` guesses by magnitude.
    #[serde(default)]
    pub epoch_unit: EpochUnit,
    /// The producer's own error codes, reported in the dead letter.
    #[serde(default)]
    pub error_codes: ErrorCodes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochUnit {
    #[default]
    Auto,
    Seconds,
    Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorCodes {
    /// Missing, null or blank.
    pub missing: Option<i32>,
    /// Present but of the wrong type or unparsable.
    pub invalid: Option<i32>,
    /// Longer than `max_len`.
    pub too_long: Option<i32>,
}

/// Why a record could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct MapError {
    /// The action field at fault (`userId`), or `record` for the record as a whole.
    pub field: String,
    pub reason: String,
    pub error_code: Option<i32>,
    /// The record's user id when the mapping could read it (an error in another field): the
    /// dead letter is keyed by it, so a user's bad records can be found.
    pub user_id: Option<String>,
    /// What kind of problem it is, for metric labels and dead-letter headers.
    pub kind: RejectKind,
}

impl MapError {
    fn describe(&self) -> String {
        format!("{}: {}", self.field, self.reason)
    }

    fn record(kind: RejectKind, reason: impl Into<String>) -> Self {
        MapError {
            field: "record".into(),
            reason: reason.into(),
            error_code: None,
            user_id: None,
            kind,
        }
    }
}

/// Problems in a mapping file itself, found by [`Mapping::validate`].
pub fn validate(mapping: &Mapping) -> Vec<String> {
    let mut problems = Vec::new();
    let f = &mapping.fields;
    let all = [
        ("user_id", &f.user_id),
        ("trigger_id", &f.trigger_id),
        ("value", &f.value),
        ("action_id", &f.action_id),
        ("occurred_at", &f.occurred_at),
        ("params", &f.params),
        ("location", &f.location),
        ("tenant", &f.tenant),
        ("action_type", &f.action_type),
    ];
    for (name, spec) in all {
        let Some(spec) = spec else { continue };
        if let Some(p) = &spec.pointer {
            if !p.is_empty() && !p.starts_with('/') {
                problems.push(format!(
                    "fields.{name}.pointer '{p}' is not a JSON Pointer (must start with '/')"
                ));
            } else if let Err(e) = jsonptr::Pointer::parse(p) {
                problems.push(format!(
                    "fields.{name}.pointer '{p}' is not a JSON Pointer: {e}"
                ));
            }
        }
        if spec.pointer.is_none() && spec.constant.is_none() && spec.default.is_none() {
            problems.push(format!(
                "fields.{name} needs a pointer, a constant or a default"
            ));
        }
        if spec.strict_map && spec.value_map.is_empty() {
            problems.push(format!("fields.{name}.strict_map needs a value_map"));
        }
    }
    if mapping.max_record_bytes == 0 {
        problems.push("max_record_bytes must be greater than 0".into());
    }
    if mapping.tenant.len() > limits::MAX_TENANT_BYTES {
        problems.push(format!(
            "tenant must be at most {} bytes",
            limits::MAX_TENANT_BYTES
        ));
    }
    problems
}

/// Field names as producers see them in errors (the action's camelCase names).
const USER_ID: &str = "userId";
const TRIGGER_ID: &str = "triggerId";

/// Checks an action that did not come through a mapping (an `AddAction` command read from the
/// commands topic) against the same bounds as a mapped one. An error in a field other than the
/// user id carries the user id.
pub fn check_bounds(action: &Action) -> Result<(), MapError> {
    within(&action.user_id, limits::MAX_USER_ID_BYTES, None, USER_ID)?;
    Fields::default()
        .check_bounds(action)
        .map_err(|e| MapError {
            user_id: Some(action.user_id.clone()),
            ..e
        })
}

impl Fields {
    /// The documented bounds ([`limits`]) of every field but the user id (checked first, as
    /// it is read): text lengths in bytes, the number and size of `params`. They keep a
    /// record's effects small whatever a producer sends: ids and names end up in state, events
    /// and dead-letter reasons.
    fn check_bounds(&self, action: &Action) -> Result<(), MapError> {
        value_within(action.value, self.value.as_ref())?;
        if let TriggerKey::Name(name) = &action.trigger_id {
            within(
                name,
                limits::MAX_TRIGGER_NAME_BYTES,
                self.trigger_id.as_ref(),
                TRIGGER_ID,
            )?;
        }
        if let Some(id) = &action.action_id {
            within(
                id,
                limits::MAX_ACTION_ID_BYTES,
                self.action_id.as_ref(),
                "actionId",
            )?;
        }
        if let Some(location) = &action.location {
            within(
                location,
                limits::MAX_LOCATION_BYTES,
                self.location.as_ref(),
                "location",
            )?;
        }
        within(
            &action.tenant,
            limits::MAX_TENANT_BYTES,
            self.tenant.as_ref(),
            "tenant",
        )?;
        let params = self.params.as_ref();
        if action.params.len() > limits::MAX_PARAMS {
            return Err(too_long(
                params,
                "params",
                format!(
                    "cannot have more than {} entries, found {}",
                    limits::MAX_PARAMS,
                    action.params.len()
                ),
            ));
        }
        if json_size_over(&action.params, limits::MAX_PARAMS_BYTES) {
            return Err(too_long(
                params,
                "params",
                format!("cannot exceed {} bytes as JSON", limits::MAX_PARAMS_BYTES),
            ));
        }
        Ok(())
    }
}

/// An action's value within the documented bounds of every amount ([`limits::MAX_AMOUNT`] in
/// magnitude, [`limits::MAX_SCALE`] decimal places), checked where it enters (a mapped record,
/// `AddAction`, a command read from the commands topic): past it, sums in the evaluator would
/// approach `Decimal`'s range, so it is a dead letter naming `value`, not something to clamp.
fn value_within(value: Decimal, spec: Option<&FieldSpec>) -> Result<(), MapError> {
    if value.abs() > limits::MAX_AMOUNT {
        return Err(invalid(
            spec,
            "value",
            format!("must be at most 10^15 in magnitude, found {value}"),
        ));
    }
    let scale = value.normalize().scale();
    if scale > limits::MAX_SCALE {
        return Err(invalid(
            spec,
            "value",
            format!(
                "must have at most {} decimal places, found {scale}",
                limits::MAX_SCALE
            ),
        ));
    }
    Ok(())
}

/// A text field of at most `max` bytes. The reason gives sizes, never the text.
fn within(text: &str, max: usize, spec: Option<&FieldSpec>, field: &str) -> Result<(), MapError> {
    if text.len() <= max {
        return Ok(());
    }
    Err(too_long(
        spec,
        field,
        format!("cannot exceed {max} bytes, found {}", text.len()),
    ))
}

fn too_long(spec: Option<&FieldSpec>, field: &str, reason: String) -> MapError {
    MapError {
        field: field.into(),
        reason,
        error_code: spec.and_then(|s| s.error_codes.too_long.or(s.error_codes.invalid)),
        user_id: None,
        kind: RejectKind::TooLarge,
    }
}

/// Whether `value` written as compact JSON is longer than `max` bytes; stops writing as soon
/// as it is, without building the text.
fn json_size_over(value: &impl Serialize, max: usize) -> bool {
    struct Counter {
        left: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.left = self
                .left
                .checked_sub(buf.len())
                .ok_or_else(|| std::io::Error::other("over the limit"))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(&mut Counter { left: max }, value).is_err()
}

impl Mapping {
    /// The native action format: the seed's body, field names as they are.
    pub fn native() -> Mapping {
        Mapping {
            name: "native".into(),
            topics: Vec::new(),
            tenant: default_tenant(),
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            unknown_trigger: UnknownTrigger::DeadLetter,
            fields: Fields::default(),
        }
    }

    /// Maps one record. Never panics, whatever the bytes.
    pub fn apply(&self, bytes: &[u8]) -> Result<Action, MapError> {
        if bytes.len() > self.max_record_bytes {
            return Err(MapError::record(
                RejectKind::TooLarge,
                format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    bytes.len(),
                    self.max_record_bytes
                ),
            ));
        }
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| MapError::record(RejectKind::NotJson, format!("not JSON: {e}")))?;
        if !doc.is_object() {
            return Err(MapError::record(
                RejectKind::NotJson,
                format!(
                    "expected a JSON object, found {}",
                    decimal::json_type_name(&doc)
                ),
            ));
        }
        self.apply_value(&doc)
    }

    /// Maps an already parsed record. The user id is read first, so an error in any other
    /// field carries it.
    pub fn apply_value(&self, doc: &Value) -> Result<Action, MapError> {
        let f = &self.fields;
        let user_id = read(doc, f.user_id.as_ref(), "/userId", USER_ID, true)?;
        let user_id = as_text(user_id, f.user_id.as_ref(), USER_ID)?
            .ok_or_else(|| missing(f.user_id.as_ref(), USER_ID))?;
        // An oversized user id is no user to key the dead letter by.
        within(
            &user_id,
            limits::MAX_USER_ID_BYTES,
            f.user_id.as_ref(),
            USER_ID,
        )?;
        match self
            .after_user(doc)
            .and_then(|action| f.check_bounds(&action).map(|()| action))
        {
            Ok(action) => Ok(Action { user_id, ..action }),
            Err(e) => Err(MapError {
                user_id: Some(user_id),
                ..e
            }),
        }
    }

    /// Every field but the user id (left empty).
    fn after_user(&self, doc: &Value) -> Result<Action, MapError> {
        let f = &self.fields;
        let trigger = read(doc, f.trigger_id.as_ref(), "/triggerId", TRIGGER_ID, true)?
            .ok_or_else(|| missing(f.trigger_id.as_ref(), TRIGGER_ID))?;
        let trigger_id = TriggerKey::from_json(trigger).ok_or_else(|| {
            invalid(
                f.trigger_id.as_ref(),
                TRIGGER_ID,
                format!("expected a trigger id or name, found {}", describe(trigger)),
            )
        })?;
        let value = match read(doc, f.value.as_ref(), "/value", "value", false)? {
            None => Decimal::ONE,
            Some(v) => {
                let d = decimal::from_json(v)
                    .map_err(|e| invalid(f.value.as_ref(), "value", e.to_string()))?;
                if f.value.as_ref().is_some_and(|s| s.integer) && !d.fract().is_zero() {
                    return Err(invalid(
                        f.value.as_ref(),
                        "value",
                        format!("must be an integer, found {d}"),
                    ));
                }
                d
            }
        };
        let action_id = as_text(
            read(doc, f.action_id.as_ref(), "/actionId", "actionId", false)?,
            f.action_id.as_ref(),
            "actionId",
        )?;
        let occurred_at = match read(
            doc,
            f.occurred_at.as_ref(),
            "/occurredAt",
            "occurredAt",
            false,
        )? {
            None => None,
            Some(v) => Some(timestamp(v, f.occurred_at.as_ref())?),
        };
        let params = match read(doc, f.params.as_ref(), "/params", "params", false)? {
            None => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(invalid(
                    f.params.as_ref(),
                    "params",
                    format!("expected an object, found {}", describe(other)),
                ))
            }
        };
        let location = as_text(
            read(doc, f.location.as_ref(), "/location", "location", false)?,
            f.location.as_ref(),
            "location",
        )?;
        let tenant = as_text(
            read(doc, f.tenant.as_ref(), "/tenant", "tenant", false)?,
            f.tenant.as_ref(),
            "tenant",
        )?
        .unwrap_or_else(|| self.tenant.clone());
        let action_type = read(
            doc,
            f.action_type.as_ref(),
            "/actionType",
            "actionType",
            false,
        )?
        .cloned();
        Ok(Action {
            tenant,
            user_id: String::new(),
            trigger_id,
            value,
            action_id,
            occurred_at,
            params,
            location,
            action_type,
        })
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 40 => format!("a string of {} characters", s.chars().count()),
        Value::String(s) => format!("'{s}'"),
        Value::Number(n) => n.to_string(),
        other => decimal::json_type_name(other).to_string(),
    }
}

fn missing(spec: Option<&FieldSpec>, field: &str) -> MapError {
    MapError {
        field: field.into(),
        reason: "is required".into(),
        error_code: spec.and_then(|s| s.error_codes.missing),
        user_id: None,
        kind: RejectKind::Field,
    }
}

fn invalid(spec: Option<&FieldSpec>, field: &str, reason: String) -> MapError {
    MapError {
        field: field.into(),
        reason,
        error_code: spec.and_then(|s| s.error_codes.invalid),
        user_id: None,
        kind: RejectKind::Field,
    }
}

/// The value `pointer` (RFC 6901) points to in `doc`, if any.
///
/// Through jsonptr rather than serde_json's `Value::pointer`, which unescapes every token
/// into a new `String`: that was a quarter to a third of the mapping's time (measured with
/// `cargo bench --bench mapping`: 593 k → 857 k records/s native, 543 k → 710 k KickApps).
/// jsonptr borrows each token unless it holds an escape (`~0`, `~1`).
fn resolve<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    jsonptr::Pointer::parse(pointer).ok()?.resolve(doc).ok()
}

/// Reads a field: constant, else pointer (native name when unmapped), else default;
/// applies the value map; enforces `required` and `max_len`.
fn read<'a>(
    doc: &'a Value,
    spec: Option<&'a FieldSpec>,
    native_pointer: &str,
    field: &str,
    always_required: bool,
) -> Result<Option<&'a Value>, MapError> {
    // Borrowed all the way: a record is mapped without copying any of its values until the
    // action's own fields are built.
    let found = match spec {
        None => resolve(doc, native_pointer),
        Some(s) => match &s.constant {
            Some(c) => Some(c),
            None => s.pointer.as_deref().and_then(|p| resolve(doc, p)),
        },
    };
    let found = match found {
        Some(Value::Null) | None => spec.and_then(|s| s.default.as_ref()),
        Some(Value::String(s)) if s.trim().is_empty() => spec.and_then(|s| s.default.as_ref()),
        Some(v) => Some(v),
    };
    let required = always_required || spec.is_some_and(|s| s.required);
    let Some(value) = found else {
        return if required {
            Err(missing(spec, field))
        } else {
            Ok(None)
        };
    };
    let Some(spec) = spec else {
        return Ok(Some(value));
    };
    let value = if spec.value_map.is_empty() {
        value
    } else {
        let mapped = match value {
            Value::String(s) => spec.value_map.get(s.as_str()),
            Value::Number(n) => spec.value_map.get(&n.to_string()),
            Value::Bool(b) => spec.value_map.get(&b.to_string()),
            other => {
                return Err(invalid(
                    Some(spec),
                    field,
                    format!("cannot map {}", describe(other)),
                ))
            }
        };
        match mapped {
            Some(mapped) => mapped,
            None if spec.strict_map => {
                return Err(invalid(
                    Some(spec),
                    field,
                    format!("{} is not in the value map", describe(value)),
                ))
            }
            None => value,
        }
    };
    if let (Some(max), Value::String(s)) = (spec.max_len, value) {
        let len = s.chars().count();
        if len > max {
            return Err(too_long(
                Some(spec),
                field,
                format!("cannot exceed {max} characters, found {len}"),
            ));
        }
    }
    Ok(Some(value))
}

/// Text fields accept strings and numbers (a user id sent as a number is still an id).
fn as_text(
    value: Option<&Value>,
    spec: Option<&FieldSpec>,
    field: &str,
) -> Result<Option<String>, MapError> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(invalid(
            spec,
            field,
            format!("expected a string, found {}", describe(other)),
        )),
    }
}

/// RFC 3339 text, or an epoch number in seconds or milliseconds.
fn timestamp(value: &Value, spec: Option<&FieldSpec>) -> Result<DateTime<Utc>, MapError> {
    let field = "occurredAt";
    let unit = spec.map(|s| s.epoch_unit).unwrap_or_default();
    let from_epoch = |n: f64| -> Option<DateTime<Utc>> {
        let millis = match unit {
            EpochUnit::Seconds => n * 1000.0,
            EpochUnit::Millis => n,
            // Seconds until 5138 AD are below 1e11; milliseconds since 1973 are above.
            EpochUnit::Auto if n.abs() < 1e11 => n * 1000.0,
            EpochUnit::Auto => n,
        };
        if !millis.is_finite() || millis.abs() > 8.2e15 {
            return None;
        }
        Utc.timestamp_millis_opt(millis as i64).single()
    };
    let parsed = match value {
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .map(|d| d.with_timezone(&Utc))
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().and_then(from_epoch)),
        Value::Number(n) => n.as_f64().and_then(from_epoch),
        _ => None,
    };
    parsed.ok_or_else(|| {
        invalid(
            spec,
            field,
            format!(
                "expected an RFC 3339 time or an epoch number, found {}",
                describe(value)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::str::FromStr;

    fn map(mapping: &Mapping, v: Value) -> Result<Action, MapError> {
        mapping.apply(v.to_string().as_bytes())
    }

    #[test]
    fn native_mapping_reads_the_seed_body() {
        let a = map(
            &Mapping::native(),
            json!({"userId": "151631", "triggerId": 1, "value": 1000}),
        )
        .unwrap();
        assert_eq!(a.user_id, "151631");
        assert_eq!(a.trigger_id, TriggerKey::Id(1));
        assert_eq!(a.value, Decimal::from(1000));
        assert_eq!(a.tenant, "default");
    }

    #[test]
    fn value_defaults_to_one_and_accepts_strings() {
        let m = Mapping::native();
        assert_eq!(
            map(&m, json!({"userId": "u", "triggerId": 1}))
                .unwrap()
                .value,
            Decimal::ONE
        );
        assert_eq!(
            map(
                &m,
                json!({"userId": "u", "triggerId": "1", "value": "1000.00"})
            )
            .unwrap()
            .value,
            Decimal::from(1000)
        );
        assert_eq!(
            map(&m, json!({"userId": 42, "triggerId": 1, "value": 999.5}))
                .unwrap()
                .value,
            Decimal::from_str("999.5").unwrap()
        );
    }

    #[test]
    fn errors_name_the_field() {
        let m = Mapping::native();
        let e = map(&m, json!({"triggerId": 1})).unwrap_err();
        assert_eq!(e.field, "userId");
        let e = map(&m, json!({"userId": "u", "triggerId": 1, "value": "lots"})).unwrap_err();
        assert_eq!(e.field, "value");
        let e = map(&m, json!({"userId": "u", "triggerId": [1]})).unwrap_err();
        assert_eq!(e.field, "triggerId");
        let e = m.apply(b"not json").unwrap_err();
        assert_eq!(e.field, "record");
        assert!(e.reason.starts_with("not JSON"), "{e}");
        let e = m.apply(b"[1,2]").unwrap_err();
        assert!(e.reason.contains("an array"), "{e}");
    }

    #[test]
    fn errors_after_the_user_id_carry_it() {
        let m = Mapping::native();
        let e = map(&m, json!({"userId": 42, "triggerId": 1, "value": "lots"})).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.user_id.as_deref()),
            ("value", Some("42"))
        );
        let e = map(&m, json!({"userId": "u", "triggerId": {}})).unwrap_err();
        assert_eq!(e.user_id.as_deref(), Some("u"));
        let e = map(&m, json!({"userId": true, "triggerId": 1})).unwrap_err();
        assert_eq!((e.field.as_str(), e.user_id), ("userId", None));
        assert_eq!(m.apply(b"{").unwrap_err().user_id, None);
    }

    /// Every bounded field at its limit is accepted, one byte over is an error naming it, with
    /// sizes in the reason (never the text) and the producer's `too_long` code.
    #[test]
    fn oversized_fields_are_errors_naming_the_field() {
        let m = Mapping::native();
        let base = || json!({"userId": "u", "triggerId": "t", "actionId": "a", "location": "l", "tenant": "x"});
        let cases = [
            ("userId", limits::MAX_USER_ID_BYTES),
            ("triggerId", limits::MAX_TRIGGER_NAME_BYTES),
            ("actionId", limits::MAX_ACTION_ID_BYTES),
            ("location", limits::MAX_LOCATION_BYTES),
            ("tenant", limits::MAX_TENANT_BYTES),
        ];
        for (field, max) in cases {
            // 'é' is two bytes: the limits count bytes, not characters.
            let fits = format!("t{}", "é".repeat((max - 1) / 2));
            let mut doc = base();
            doc[field] = json!(fits);
            assert!(map(&m, doc).is_ok(), "{field} of {} bytes", fits.len());
            let over = format!("t{}", "é".repeat(max / 2));
            let mut doc = base();
            doc[field] = json!(over);
            let e = map(&m, doc).unwrap_err();
            assert_eq!(e.field, field);
            assert_eq!(
                e.reason,
                format!("cannot exceed {max} bytes, found {}", over.len())
            );
            let expected_user = (field != "userId").then(|| "u".to_string());
            assert_eq!(e.user_id, expected_user, "{field}");
        }
        let params = |n: usize, len: usize| {
            let map: Map<String, Value> = (0..n)
                .map(|i| (format!("p{i}"), json!("v".repeat(len))))
                .collect();
            json!({"userId": "u", "triggerId": 1, "params": map})
        };
        assert!(map(&m, params(limits::MAX_PARAMS, 10)).is_ok());
        let e = map(&m, params(limits::MAX_PARAMS + 1, 1)).unwrap_err();
        assert_eq!(e.field, "params");
        assert!(e.reason.contains("more than 64 entries"), "{e}");
        let e = map(&m, params(2, limits::MAX_PARAMS_BYTES)).unwrap_err();
        assert_eq!(e.field, "params");
        assert_eq!(e.reason, "cannot exceed 16384 bytes as JSON");
        // The producer's code for a field that is too long.
        let mut kick = Mapping::native();
        kick.fields.user_id = Some(FieldSpec {
            pointer: Some("/userId".into()),
            error_codes: ErrorCodes {
                missing: Some(13),
                invalid: Some(13),
                too_long: None,
            },
            ..Default::default()
        });
        let e = map(&kick, json!({"userId": "u".repeat(300), "triggerId": 1})).unwrap_err();
        assert_eq!((e.field.as_str(), e.error_code), ("userId", Some(13)));
    }

    /// Actions read from the commands topic are held to the same bounds.
    #[test]
    fn actions_not_mapped_are_checked_too() {
        let mut a = Action::new("u", TriggerKey::Name("t".repeat(257)), Decimal::ONE);
        let e = check_bounds(&a).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.user_id.as_deref()),
            ("triggerId", Some("u"))
        );
        a.trigger_id = TriggerKey::Id(1);
        assert_eq!(check_bounds(&a), Ok(()));
        a.user_id = "u".repeat(257);
        let e = check_bounds(&a).unwrap_err();
        assert_eq!((e.field.as_str(), e.user_id), ("userId", None));
    }

    /// An action's value is an amount: at most 10^15 in magnitude, either sign, at most 8
    /// decimal places; past either bound it is an error naming `value`, with the producer's
    /// `invalid` code and the user id. `AddAction` commands read from the commands topic (not
    /// mapped) are held to the same bound.
    #[test]
    fn values_past_the_amount_bound_are_errors_naming_value() {
        let mut m = Mapping::native();
        m.fields.value = Some(FieldSpec {
            pointer: Some("/value".into()),
            error_codes: ErrorCodes {
                invalid: Some(11),
                ..ErrorCodes::default()
            },
            ..FieldSpec::default()
        });
        let doc = |v: Value| json!({"userId": "u", "triggerId": 1, "value": v});
        for fits in [
            json!(1_000_000_000_000_000u64),
            json!("-1000000000000000"),
            json!("0.00000001"),
            json!("12.500000000000"),
        ] {
            assert!(map(&m, doc(fits.clone())).is_ok(), "{fits}");
        }
        for (over, reason) in [
            (
                json!(1_000_000_000_000_001u64),
                "must be at most 10^15 in magnitude, found 1000000000000001",
            ),
            (
                json!("-79228162514264337593543950335"),
                "must be at most 10^15 in magnitude, found -79228162514264337593543950335",
            ),
            (
                json!("0.000000001"),
                "must have at most 8 decimal places, found 9",
            ),
        ] {
            let e = map(&m, doc(over.clone())).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.reason.as_str(), e.error_code),
                ("value", reason, Some(11)),
                "{over}"
            );
            assert_eq!(e.user_id.as_deref(), Some("u"));
            assert_eq!(e.kind, RejectKind::Field);
        }
        let command = Action {
            value: Decimal::from(10_000_000_000_000_000i64),
            ..map(&Mapping::native(), doc(json!(1))).unwrap()
        };
        let e = check_bounds(&command).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.user_id.as_deref()),
            ("value", Some("u"))
        );
    }

    #[test]
    fn a_mapping_tenant_is_bounded() {
        let mut m = Mapping::native();
        m.tenant = "t".repeat(65);
        assert_eq!(
            validate(&m),
            vec!["tenant must be at most 64 bytes".to_string()]
        );
    }

    /// Pointers follow RFC 6901: escaped tokens, array indexes, the root; a bad pointer is
    /// a problem of the mapping file, found at load.
    #[test]
    fn pointers_follow_rfc_6901_and_bad_ones_are_refused_at_load() {
        let doc = json!({"a/b": {"m~n": [10, 20]}, "": 1});
        assert_eq!(resolve(&doc, "/a~1b/m~0n/1"), Some(&json!(20)));
        assert_eq!(resolve(&doc, "/a~1b/m~0n/01"), None);
        assert_eq!(resolve(&doc, "/a~1b/m~0n/-"), None);
        assert_eq!(resolve(&doc, "/a~1b/m~0n/2"), None);
        assert_eq!(resolve(&doc, "/"), Some(&json!(1)));
        assert_eq!(resolve(&doc, ""), Some(&doc));
        assert_eq!(resolve(&doc, "/missing/deeper"), None);

        let mut m = Mapping::native();
        m.fields.user_id = Some(FieldSpec {
            pointer: Some("/user~2id".into()),
            ..Default::default()
        });
        m.fields.value = Some(FieldSpec {
            pointer: Some("value".into()),
            ..Default::default()
        });
        let problems = validate(&m);
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("fields.user_id.pointer '/user~2id' is not a JSON Pointer:")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("(must start with '/')")),
            "{problems:?}"
        );
    }

    #[test]
    fn oversized_records_are_rejected_before_parsing() {
        let mut m = Mapping::native();
        m.max_record_bytes = 10;
        let e = m.apply(br#"{"userId": "u", "triggerId": 1}"#).unwrap_err();
        assert!(e.reason.contains("exceeds the limit of 10 bytes"), "{e}");
    }

    #[test]
    fn timestamps_from_rfc3339_and_epochs() {
        let m = Mapping::native();
        let at = |v: Value| {
            map(&m, json!({"userId": "u", "triggerId": 1, "occurredAt": v}))
                .map(|a| a.occurred_at.unwrap())
        };
        let expected = DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(at(json!("2026-11-25T10:00:00Z")).unwrap(), expected);
        assert_eq!(at(json!("2026-11-25T12:00:00+02:00")).unwrap(), expected);
        assert_eq!(at(json!(expected.timestamp())).unwrap(), expected);
        assert_eq!(at(json!(expected.timestamp_millis())).unwrap(), expected);
        assert_eq!(at(json!("yesterday")).unwrap_err().field, "occurredAt");
        assert!(at(json!(1e300)).is_err());
    }
}
