//! Field mappings: any producer's JSON → an [`Action`].
//!
//! A mapping file (`mappings/*.toml`) names the topics it applies to and, for each action
//! field, where to find it (an RFC 6901 JSON Pointer), a constant or a default, a value map
//! (a producer's event name → a trigger id) and checks with the producer's own error codes
//! (KickApps' 13 = invalid userId …). Applying a mapping is pure and never panics: a record
//! that cannot be mapped yields a [`MapError`] naming the field, which the pipeline turns
//! into a dead letter.
//!
//! A mapping is compiled once ([`Mapping::compile`], [`CompiledMapping`]) and applied to
//! every record of its topics.

mod bounds;
mod compiled;
mod doc;
mod error;
mod pointer;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use super::limits;
use super::model::{Action, DEFAULT_TENANT};
pub use super::reject::RejectKind;
pub use bounds::check_bounds;
pub use compiled::CompiledMapping;
pub use error::MapError;

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

    /// Compiles this mapping to apply it to many records.
    pub fn compile(&self) -> CompiledMapping {
        CompiledMapping::new(self.clone())
    }

    /// Maps one record. Never panics, whatever the bytes. Compiles the mapping first: to map
    /// many records, [`Mapping::compile`] once and apply the [`CompiledMapping`].
    pub fn apply(&self, bytes: &[u8]) -> Result<Action, MapError> {
        self.compile().apply(bytes)
    }

    /// Maps an already parsed record (compiling the mapping first, as [`Mapping::apply`]).
    pub fn apply_value(&self, doc: &Value) -> Result<Action, MapError> {
        self.compile().apply_value(doc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::TriggerKey;
    use chrono::{DateTime, Utc};
    use rust_decimal::Decimal;
    use serde_json::{json, Map};
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
        a.user_id = "u".repeat(257).into();
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

    /// A bad pointer is a problem of the mapping file, found at load (how pointers resolve:
    /// the `pointer` module's tests).
    #[test]
    fn bad_pointers_are_refused_at_load() {
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
