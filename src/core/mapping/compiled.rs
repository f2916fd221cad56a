//! A mapping compiled once, when it is loaded, and applied to every record.
//!
//! A [`Mapping`] is the file as written; applying it as such re-derived the same things for
//! every field of every record: each JSON Pointer parsed and split, each value map searched as
//! the ordered map it is kept in for writing files back, absent fields' native pointers parsed
//! too. A [`CompiledMapping`] does all that once: pointers are pre-split tokens
//! ([`Pointer`]), value maps are hash maps, and every field, mapped or not, is read the same
//! way. The worker, `replay`, the demo and the sidecar's KickApps and Rokwire endpoints hold
//! compiled mappings.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use smol_str::SmolStr;

use super::bounds::{self, within, BoundCodes};
use super::doc::Doc;
use super::error::{describe, invalid, missing, too_long};
use super::pointer::Pointer;
use super::{
    EpochUnit, ErrorCodes, FieldSpec, MapError, Mapping, RejectKind, UnknownTrigger, TRIGGER_ID,
    USER_ID,
};
use crate::core::decimal;
use crate::core::limits;
use crate::core::model::{Action, ActionType, TriggerKey};

/// A [`Mapping`] ready to apply to many records ([`Mapping::compile`]). Applying it gives
/// exactly what applying the mapping itself gives.
#[derive(Debug, Clone)]
pub struct CompiledMapping {
    source: Mapping,
    user_id: Field,
    trigger_id: Field,
    value: Field,
    action_id: Field,
    occurred_at: Field,
    params: Field,
    location: Field,
    tenant: Field,
    action_type: Field,
    bounds: BoundCodes,
}

impl From<Mapping> for CompiledMapping {
    fn from(mapping: Mapping) -> Self {
        CompiledMapping::new(mapping)
    }
}

/// Where a field's value comes from.
#[derive(Debug, Clone)]
enum Source {
    /// The same value for every record.
    Constant(Doc<'static>),
    /// A place in the record.
    Pointer(Pointer),
    /// Nowhere: only the default, if any (a field with neither pointer nor constant, or a
    /// pointer that does not parse in a mapping built in code without validation).
    Nowhere,
}

/// One action field, compiled from its [`FieldSpec`] or, when the mapping has none, the
/// native field of the same name (every check off, no producer codes).
#[derive(Debug, Clone)]
struct Field {
    /// The action's field name as producers see it in errors (`userId`).
    name: &'static str,
    source: Source,
    default: Option<Doc<'static>>,
    required: bool,
    value_map: FxHashMap<String, Doc<'static>>,
    strict_map: bool,
    max_len: Option<usize>,
    integer: bool,
    epoch_unit: EpochUnit,
    codes: ErrorCodes,
}

impl Field {
    /// `native`: the pointer of an unmapped field; `always_required`: the user and the trigger.
    fn compile(
        spec: Option<&FieldSpec>,
        name: &'static str,
        native: &str,
        always_required: bool,
    ) -> Field {
        let pointer = |text: &str| Pointer::parse(text).map_or(Source::Nowhere, Source::Pointer);
        let Some(spec) = spec else {
            return Field {
                name,
                source: pointer(native),
                default: None,
                required: always_required,
                value_map: FxHashMap::default(),
                strict_map: false,
                max_len: None,
                integer: false,
                epoch_unit: EpochUnit::default(),
                codes: ErrorCodes::default(),
            };
        };
        let source = match (&spec.constant, &spec.pointer) {
            (Some(constant), _) => Source::Constant(Doc::owned(constant)),
            (None, Some(text)) => pointer(text),
            (None, None) => Source::Nowhere,
        };
        Field {
            name,
            source,
            default: spec.default.as_ref().map(Doc::owned),
            required: always_required || spec.required,
            value_map: spec
                .value_map
                .iter()
                .map(|(k, v)| (k.clone(), Doc::owned(v)))
                .collect(),
            strict_map: spec.strict_map,
            max_len: spec.max_len,
            integer: spec.integer,
            epoch_unit: spec.epoch_unit,
            codes: spec.error_codes,
        }
    }

    /// Reads the field: constant, else pointer, else default (for nothing, null or blank);
    /// applies the value map; enforces `required` and `max_len`. Borrowed all the way: a
    /// record is mapped without copying any of its values until the action's own fields are
    /// built.
    fn read<'a>(&'a self, doc: &'a Doc<'a>) -> Result<Option<&'a Doc<'a>>, MapError> {
        let found = match &self.source {
            Source::Constant(c) => Some(c),
            Source::Pointer(p) => p.resolve(doc),
            Source::Nowhere => None,
        };
        let found = match found {
            Some(Doc::Null) | None => self.default.as_ref(),
            Some(Doc::String(s)) if s.trim().is_empty() => self.default.as_ref(),
            Some(v) => Some(v),
        };
        let Some(value) = found else {
            return if self.required {
                Err(self.missing())
            } else {
                Ok(None)
            };
        };
        let value = self.map_value(value)?;
        if let (Some(max), Doc::String(s)) = (self.max_len, value) {
            let len = s.chars().count();
            if len > max {
                return Err(too_long(
                    &self.codes,
                    self.name,
                    format!("cannot exceed {max} characters, found {len}"),
                ));
            }
        }
        Ok(Some(value))
    }

    /// The value map's value for `value` (looked up as text), or `value` itself when the map
    /// does not list it and is not strict.
    fn map_value<'a>(&'a self, value: &'a Doc<'a>) -> Result<&'a Doc<'a>, MapError> {
        if self.value_map.is_empty() {
            return Ok(value);
        }
        let mapped = match value {
            Doc::String(s) => self.value_map.get(s.as_ref()),
            Doc::Number(n) => self.value_map.get(&n.to_string()),
            Doc::Bool(b) => self.value_map.get(if *b { "true" } else { "false" }),
            other => return Err(self.invalid(format!("cannot map {}", describe(other)))),
        };
        match mapped {
            Some(mapped) => Ok(mapped),
            None if self.strict_map => {
                Err(self.invalid(format!("{} is not in the value map", describe(value))))
            }
            None => Ok(value),
        }
    }

    /// Reads a text field: strings (trimmed) and numbers (a user id sent as a number is
    /// still an id), as any string type: names an action carries as `SmolStr`s (tenant,
    /// user id, action id) are made straight from the record's text, inline when short,
    /// instead of through a heap `String` each.
    fn text_as<T: for<'s> From<&'s str> + From<String>>(
        &self,
        doc: &Doc<'_>,
    ) -> Result<Option<T>, MapError> {
        match self.read(doc)? {
            None => Ok(None),
            Some(Doc::String(s)) => Ok(Some(T::from(s.trim()))),
            Some(Doc::Number(n)) => Ok(Some(T::from(n.to_string()))),
            Some(other) => {
                Err(self.invalid(format!("expected a string, found {}", describe(other))))
            }
        }
    }

    /// RFC 3339 text, or an epoch number in seconds or milliseconds.
    fn timestamp(&self, value: &Doc<'_>) -> Result<DateTime<Utc>, MapError> {
        let unit = self.epoch_unit;
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
            Doc::String(s) => DateTime::parse_from_rfc3339(s.trim())
                .map(|d| d.with_timezone(&Utc))
                .ok()
                .or_else(|| s.trim().parse::<f64>().ok().and_then(from_epoch)),
            Doc::Number(n) => n.as_f64().and_then(from_epoch),
            _ => None,
        };
        parsed.ok_or_else(|| {
            self.invalid(format!(
                "expected an RFC 3339 time or an epoch number, found {}",
                describe(value)
            ))
        })
    }

    fn missing(&self) -> MapError {
        missing(&self.codes, self.name)
    }

    fn invalid(&self, reason: String) -> MapError {
        invalid(&self.codes, self.name, reason)
    }
}

impl CompiledMapping {
    /// Compiles `mapping`. Never fails: [`super::validate`] finds what is wrong in a mapping
    /// file at load, and a pointer that does not parse (in a mapping built in code) finds
    /// nothing, as it always did.
    pub fn new(source: Mapping) -> CompiledMapping {
        let f = &source.fields;
        let field = |spec: &Option<FieldSpec>, name, native, always_required| {
            Field::compile(spec.as_ref(), name, native, always_required)
        };
        let compiled = CompiledMapping {
            user_id: field(&f.user_id, USER_ID, "/userId", true),
            trigger_id: field(&f.trigger_id, TRIGGER_ID, "/triggerId", true),
            value: field(&f.value, "value", "/value", false),
            action_id: field(&f.action_id, "actionId", "/actionId", false),
            occurred_at: field(&f.occurred_at, "occurredAt", "/occurredAt", false),
            params: field(&f.params, "params", "/params", false),
            location: field(&f.location, "location", "/location", false),
            tenant: field(&f.tenant, "tenant", "/tenant", false),
            action_type: field(&f.action_type, "actionType", "/actionType", false),
            bounds: BoundCodes::default(),
            source,
        };
        CompiledMapping {
            bounds: BoundCodes {
                value: compiled.value.codes,
                trigger_id: compiled.trigger_id.codes,
                action_id: compiled.action_id.codes,
                location: compiled.location.codes,
                tenant: compiled.tenant.codes,
                params: compiled.params.codes,
            },
            ..compiled
        }
    }

    /// The mapping as written in its file.
    pub fn source(&self) -> &Mapping {
        &self.source
    }

    /// The mapping's name, used in metrics and dead letters.
    pub fn name(&self) -> &str {
        &self.source.name
    }

    /// The input topics this mapping reads.
    pub fn topics(&self) -> &[String] {
        &self.source.topics
    }

    /// The tenant of every action unless the `tenant` field says otherwise.
    pub fn tenant(&self) -> &str {
        &self.source.tenant
    }

    /// What to do with an action whose trigger the catalog does not know.
    pub fn unknown_trigger(&self) -> UnknownTrigger {
        self.source.unknown_trigger
    }

    /// The producer's `invalid` code of an action field (`triggerId`, `tenant` …), for
    /// errors found after mapping (an unknown trigger or tenant).
    pub fn invalid_code(&self, field: &str) -> Option<i32> {
        let field = match field {
            USER_ID => &self.user_id,
            TRIGGER_ID => &self.trigger_id,
            "value" => &self.value,
            "actionId" => &self.action_id,
            "occurredAt" => &self.occurred_at,
            "params" => &self.params,
            "location" => &self.location,
            "tenant" => &self.tenant,
            "actionType" => &self.action_type,
            _ => return None,
        };
        field.codes.invalid
    }

    /// Maps one record. Never panics, whatever the bytes.
    pub fn apply(&self, bytes: &[u8]) -> Result<Action, MapError> {
        let max = self.source.max_record_bytes;
        if bytes.len() > max {
            return Err(MapError::record(
                RejectKind::TooLarge,
                format!(
                    "record of {} bytes exceeds the limit of {max} bytes",
                    bytes.len()
                ),
            ));
        }
        let doc = Doc::parse(bytes)
            .map_err(|e| MapError::record(RejectKind::NotJson, format!("not JSON: {e}")))?;
        if !matches!(doc, Doc::Object(_)) {
            return Err(MapError::record(
                RejectKind::NotJson,
                format!("expected a JSON object, found {}", doc.type_name()),
            ));
        }
        self.apply_doc(&doc)
    }

    /// Maps an already parsed record (the sidecar's requests).
    pub fn apply_value(&self, doc: &Value) -> Result<Action, MapError> {
        self.apply_doc(&Doc::borrowing(doc))
    }

    /// Maps a parsed record. The user id is read first, so an error in any other field
    /// carries it.
    fn apply_doc(&self, doc: &Doc<'_>) -> Result<Action, MapError> {
        let user_id: SmolStr = self
            .user_id
            .text_as(doc)?
            .ok_or_else(|| self.user_id.missing())?;
        // An oversized user id is no user to key the dead letter by.
        within(
            &user_id,
            limits::MAX_USER_ID_BYTES,
            &self.user_id.codes,
            USER_ID,
        )?;
        match self
            .after_user(doc)
            .and_then(|action| bounds::after_user(&action, &self.bounds).map(|()| action))
        {
            Ok(action) => Ok(Action { user_id, ..action }),
            Err(e) => Err(MapError {
                user_id: Some(user_id.to_string()),
                ..e
            }),
        }
    }

    /// Every field but the user id (left empty).
    fn after_user(&self, doc: &Doc<'_>) -> Result<Action, MapError> {
        let trigger = self
            .trigger_id
            .read(doc)?
            .ok_or_else(|| self.trigger_id.missing())?;
        let trigger_id = match trigger {
            Doc::Number(n) => TriggerKey::from_number(n),
            Doc::String(s) => TriggerKey::from_text(s),
            _ => None,
        };
        let trigger_id = trigger_id.ok_or_else(|| {
            self.trigger_id.invalid(format!(
                "expected a trigger id or name, found {}",
                describe(trigger)
            ))
        })?;
        let value = match self.value.read(doc)? {
            None => Decimal::ONE,
            Some(v) => {
                let d = match v {
                    Doc::Number(n) => decimal::from_number(n),
                    Doc::String(s) => decimal::parse_text(s.trim()),
                    other => Err(decimal::DecimalError::WrongType(other.type_name())),
                }
                .map_err(|e| self.value.invalid(e.to_string()))?;
                if self.value.integer && !d.fract().is_zero() {
                    return Err(self.value.invalid(format!("must be an integer, found {d}")));
                }
                d
            }
        };
        let action_id = self.action_id.text_as(doc)?;
        let occurred_at = match self.occurred_at.read(doc)? {
            None => None,
            Some(v) => Some(self.occurred_at.timestamp(v)?),
        };
        let params = match self.params.read(doc)? {
            None => Map::new(),
            Some(Doc::Object(members)) => Doc::object_map(members),
            Some(other) => {
                return Err(self
                    .params
                    .invalid(format!("expected an object, found {}", describe(other))))
            }
        };
        let location = self.location.text_as(doc)?;
        let tenant = self
            .tenant
            .text_as(doc)?
            .unwrap_or_else(|| SmolStr::new(&self.source.tenant));
        let action_type = self.action_type.read(doc)?.map(|doc| match doc {
            Doc::String(text) => ActionType::Text(SmolStr::new(text)),
            other => ActionType::Other(other.to_value()),
        });
        Ok(Action {
            tenant,
            user_id: SmolStr::default(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(pointer: &str) -> FieldSpec {
        FieldSpec {
            pointer: Some(pointer.into()),
            ..FieldSpec::default()
        }
    }

    /// Value maps look sources up as text (strings, numbers, booleans); a strict map refuses
    /// what it does not list with the field's code; constants win over pointers; a default
    /// fills what is missing and goes through the map too.
    #[test]
    fn value_maps_constants_and_defaults() {
        let mut m = Mapping::native();
        m.fields.trigger_id = Some(FieldSpec {
            value_map: [
                ("signup".to_string(), json!(1)),
                ("7".to_string(), json!("seven")),
                ("true".to_string(), json!(2)),
            ]
            .into_iter()
            .collect(),
            strict_map: true,
            default: Some(json!("signup")),
            error_codes: ErrorCodes {
                invalid: Some(10),
                ..ErrorCodes::default()
            },
            ..spec("/event")
        });
        m.fields.tenant = Some(FieldSpec {
            constant: Some(json!("acme")),
            ..spec("/tenant")
        });
        let m = m.compile();
        let trigger = |event: Value| {
            m.apply_value(&json!({"userId": "u", "event": event, "tenant": "other"}))
                .map(|a| (a.trigger_id, a.tenant))
        };
        assert_eq!(
            trigger(json!("signup")),
            Ok((TriggerKey::Id(1), "acme".into()))
        );
        assert_eq!(
            trigger(json!(7)).unwrap().0,
            TriggerKey::Name("seven".into())
        );
        assert_eq!(trigger(json!(true)).unwrap().0, TriggerKey::Id(2));
        assert_eq!(trigger(Value::Null).unwrap().0, TriggerKey::Id(1));
        let e = trigger(json!("login")).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.reason.as_str(), e.error_code),
            ("triggerId", "'login' is not in the value map", Some(10))
        );
        assert_eq!(
            trigger(json!([1])).unwrap_err().reason,
            "cannot map an array"
        );
    }

    /// A pointer that does not parse (a mapping built in code, never validated) finds nothing,
    /// as it did when pointers were parsed per record: the default, else missing.
    #[test]
    fn an_unparsable_pointer_finds_nothing() {
        let mut m = Mapping::native();
        m.fields.value = Some(FieldSpec {
            default: Some(json!(5)),
            ..spec("value")
        });
        let a = m
            .compile()
            .apply_value(&json!({"userId": "u", "triggerId": 1, "value": 9}))
            .unwrap();
        assert_eq!(a.value, Decimal::from(5));
    }

    /// The mapping holds a string `actionType` as text and anything else as the value: the
    /// same `ActionType` that reading the value gives (`ActionType::from`), from raw bytes
    /// and from a parsed document alike.
    #[test]
    fn action_type_is_what_the_model_reads_from_the_value() {
        let mapping = super::super::Mapping::native().compile();
        for value in [
            json!("purchase.in_store"),
            json!(7),
            json!({"kind": ["x", 1]}),
        ] {
            let doc = json!({"userId": "u", "triggerId": 1, "actionType": value});
            let expected = Some(ActionType::from(value.clone()));
            let from_bytes = mapping.apply(doc.to_string().as_bytes()).unwrap();
            assert_eq!(from_bytes.action_type, expected, "{value}");
            assert_eq!(mapping.apply_value(&doc).unwrap().action_type, expected);
        }
    }
}
