//! The JSON Schemas in `schemas/` are the product contract; these tests fail when they and the
//! code drift apart:
//!
//! - every schema file is a draft 2020-12 schema with the `$id` its file name promises, uses
//!   only known keywords, requires only properties it declares, and compiles with every `$ref`
//!   resolved locally (the documents are registered with each other; nothing is fetched);
//! - every event `questline replay` writes for the example actions validates against the
//!   schema of its `type` (and the `events` union), and a sample of every event variant,
//!   optional fields filled in, validates too; the event schemas are open for consumers, so
//!   here they are checked closed (`unevaluatedProperties: false` added) to catch a field the
//!   code writes and the schema does not know, and the reverse is checked by comparing names;
//! - the good example actions validate against `action.v1`, the bad ones that are type errors
//!   do not, and hand-written actions are accepted or rejected by the schema and the code alike;
//! - serialized commands of each variant validate against `command.v1`;
//! - topic dump lines (`replay --records`) written by the code validate against
//!   `kafka-record.v1`, and hand-written lines are accepted or rejected by the schema and the
//!   code alike;
//! - the example catalog and the shipped mappings validate against `catalog.v1` / `mapping.v1`,
//!   the parsed model written back as JSON does too, and broken files (unknown key, wrong enum
//!   value, …) are rejected by the schema and the code alike;
//! - every enum in a schema is the code's enum (each variant the code writes is listed, each
//!   listed name is read), and every `default` a schema states is the one the code fills in.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command as Process;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::support::{questline_bin, root};
use jsonschema::{Draft, Resource, Validator};
use questline::cli::replay::DumpedRecord;
use questline::core::catalog::{
    Aggregation, CapPeriod, Catalog, Challenge, Comparator, ConditionOp, EventDef, HttpMethod,
    Inventory, Operator, Overshoot, ParamDef, ParamType, Priority, Prize, ProgrammaticDef,
    RewardKind, RewardType, RuleDef, StreakDef, TriggerDef, TriggerGroup, TriggerRequirement,
};
use questline::core::decimal;
use questline::core::evaluator::{ClaimAmount, ClaimCommand, GrantCommand};
use questline::core::events::OperationRef;
use questline::core::events::{
    ClaimItem, Event, EventBody, GrantReason, OriginalEncoding, PrizeInfo, RefusedOutput,
    RejectReason,
};
use questline::core::mapping::{self, EpochUnit, FieldSpec, Mapping, UnknownTrigger};
use questline::core::model::{Action, SourceRef, TriggerKey};
use questline::pipeline::commands::Command;
use questline::pipeline::log::InRecord;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

const BASE: &str = "https://questline.dev/schemas/";
const META: &str = "https://json-schema.org/draft/2020-12/schema";
const ENVELOPE: &str = "event-envelope.v1.json";

/// Every output event type; each has `schemas/<type>.v1.json`.
const EVENT_TYPES: [&str; 8] = [
    "progress.updated",
    "milestone.achieved",
    "reward.granted",
    "reward.rejected",
    "reward.expired",
    "claim.completed",
    "claim.failed",
    "dead_letter",
];

/// The schema files besides the per-type event files.
const OTHER_SCHEMAS: [&str; 7] = [
    "action.v1.json",
    "command.v1.json",
    "kafka-record.v1.json",
    ENVELOPE,
    "events.v1.json",
    "catalog.v1.json",
    "mapping.v1.json",
];

fn type_file(kind: &str) -> String {
    format!("{kind}.v1.json")
}

/// `action.v1.json` → `https://questline.dev/schemas/action/v1.json`.
fn id_of(file: &str) -> String {
    let stem = file.strip_suffix(".json").expect("a .json file");
    let (name, version) = stem.rsplit_once('.').expect("a <name>.v<N>.json file");
    format!("{BASE}{name}/{version}.json")
}

/// Every `schemas/*.json`, by file name.
fn schemas() -> &'static BTreeMap<String, Value> {
    static DOCS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let mut docs = BTreeMap::new();
        for entry in std::fs::read_dir(root().join("schemas")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(&path).unwrap();
                let doc: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("schemas/{name} is not JSON: {e}"));
                docs.insert(name, doc);
            }
        }
        docs
    })
}

fn doc(file: &str) -> &'static Value {
    schemas()
        .get(file)
        .unwrap_or_else(|| panic!("schemas/{file} is missing"))
}

/// Compiles `file` with every other schema document registered under its `$id`, formats
/// asserted. `transform` is applied to every document first.
fn compile(file: &str, transform: fn(&str, &Value) -> Value) -> Validator {
    let mut options = jsonschema::options();
    options
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true);
    for (name, d) in schemas() {
        if name != file {
            let resource = Resource::from_contents(transform(name, d))
                .unwrap_or_else(|e| panic!("schemas/{name}: {e}"));
            options.with_resource(id_of(name), resource);
        }
    }
    options
        .build(&transform(file, doc(file)))
        .unwrap_or_else(|e| panic!("schemas/{file} does not compile: {e}"))
}

/// The schemas as they are.
fn validator(file: &str) -> &'static Validator {
    static CACHE: OnceLock<BTreeMap<String, Validator>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            schemas()
                .keys()
                .map(|f| (f.clone(), compile(f, |_, d| d.clone())))
                .collect()
        })
        .get(file)
        .unwrap_or_else(|| panic!("schemas/{file} is missing"))
}

/// The schemas with every object closed: catches a field the code writes that the schema does
/// not declare, although the published event schemas leave room for additions.
fn strict_validator(file: &str) -> &'static Validator {
    static CACHE: OnceLock<BTreeMap<String, Validator>> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            schemas()
                .keys()
                .map(|f| (f.clone(), compile(f, |name, d| closed(d, name == ENVELOPE))))
                .collect()
        })
        .get(file)
        .unwrap_or_else(|| panic!("schemas/{file} is missing"))
}

/// Adds `unevaluatedProperties: false` to every object schema that declares properties and says
/// nothing about others. The envelope's root is left open: the event types extend it.
///
/// Also spells every same-document `$ref` (`#/$defs/…`) with the document's `$id` in front,
/// which means the same: jsonschema 0.26 resolves such refs against the wrong document when
/// `unevaluatedProperties` follows a `$ref` into another one.
fn closed(schema: &Value, skip_root: bool) -> Value {
    fn walk(v: &Value, id: &str, is_root: bool, skip_root: bool) -> Value {
        match v {
            Value::Object(map) => {
                let mut out: Map<String, Value> = map
                    .iter()
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("$ref", Value::String(r)) if r.starts_with('#') => {
                            (k.clone(), Value::String(format!("{id}{r}")))
                        }
                        _ => (k.clone(), walk(v, id, false, skip_root)),
                    })
                    .collect();
                let object_schema = map.get("type") == Some(&json!("object"))
                    && map.contains_key("properties")
                    && !map.contains_key("additionalProperties")
                    && !map.contains_key("unevaluatedProperties");
                if object_schema && !(is_root && skip_root) {
                    out.insert("unevaluatedProperties".into(), Value::Bool(false));
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| walk(v, id, false, skip_root))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let id = schema["$id"].as_str().expect("an $id");
    walk(schema, id, true, skip_root)
}

fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{e} (at '{}')", e.instance_path))
        .collect()
}

#[track_caller]
fn assert_valid(validator: &Validator, file: &str, instance: &Value) {
    let errors = errors(validator, instance);
    assert!(
        errors.is_empty(),
        "{instance}\n  does not validate against schemas/{file}:\n  {}",
        errors.join("\n  ")
    );
}

#[track_caller]
fn assert_invalid(validator: &Validator, file: &str, instance: &Value) {
    assert!(
        !validator.is_valid(instance),
        "{instance}\n  validates against schemas/{file} but should not"
    );
}

/// The names a schema object declares in `properties`.
fn property_names(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties in {schema}"))
        .keys()
        .cloned()
        .collect()
}

fn keys(instance: &Value) -> BTreeSet<String> {
    instance.as_object().unwrap().keys().cloned().collect()
}

/// The code writes exactly the fields the schema declares (`instance` has every optional field
/// filled in).
#[track_caller]
fn assert_same_names(what: &str, schema: BTreeSet<String>, instance: &Value) {
    let written = keys(instance);
    assert_eq!(
        schema, written,
        "{what}: the schema declares {schema:?} but the code writes {written:?}"
    );
}

// --- the schema files themselves -------------------------------------------------------------

/// The draft 2020-12 keywords (core, applicator, unevaluated, validation, meta-data, format,
/// content): anything else in a schema position is a typo that validators silently ignore.
const KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$vocabulary",
    "$comment",
    "$defs",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "prefixItems",
    "items",
    "contains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "type",
    "enum",
    "const",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxContains",
    "minContains",
    "maxProperties",
    "minProperties",
    "required",
    "dependentRequired",
    "format",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "title",
    "description",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "examples",
];

fn lint(schema: &Value, path: &str, problems: &mut Vec<String>) {
    let Value::Object(map) = schema else {
        if !schema.is_boolean() {
            problems.push(format!("{path}: not a schema: {schema}"));
        }
        return;
    };
    for (key, value) in map {
        let at = format!("{path}/{key}");
        if !KEYWORDS.contains(&key.as_str()) {
            problems.push(format!("{path}: unknown keyword '{key}'"));
        }
        match key.as_str() {
            "properties" | "patternProperties" | "$defs" | "dependentSchemas" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    lint(sub, &format!("{at}/{name}"), problems);
                }
            }
            "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    lint(sub, &format!("{at}/{i}"), problems);
                }
            }
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "propertyNames"
            | "unevaluatedItems"
            | "unevaluatedProperties"
            | "contentSchema" => lint(value, &at, problems),
            _ => {}
        }
    }
    if let (Some(Value::Object(props)), Some(Value::Array(required))) =
        (map.get("properties"), map.get("required"))
    {
        for name in required {
            if !props.contains_key(name.as_str().unwrap_or_default()) {
                problems.push(format!("{path}: requires {name} but does not declare it"));
            }
        }
    }
}

#[test]
fn every_schema_file_is_a_valid_draft_2020_12_schema() {
    let expected: BTreeSet<String> = EVENT_TYPES
        .iter()
        .map(|t| type_file(t))
        .chain(OTHER_SCHEMAS.iter().map(|s| s.to_string()))
        .collect();
    let present: BTreeSet<String> = schemas().keys().cloned().collect();
    assert_eq!(present, expected, "the set of schemas/*.json changed");

    let meta = jsonschema::options()
        .with_draft(Draft::Draft202012)
        .build(&json!({ "$ref": META }))
        .expect("the draft 2020-12 meta-schema is built in");
    for (file, schema) in schemas() {
        assert_eq!(schema["$schema"], json!(META), "schemas/{file}: $schema");
        assert_eq!(schema["$id"], json!(id_of(file)), "schemas/{file}: $id");
        for key in ["title", "description"] {
            assert!(schema[key].is_string(), "schemas/{file}: no {key}");
        }
        let errors = errors(&meta, schema);
        assert!(
            errors.is_empty(),
            "schemas/{file} is not a valid draft 2020-12 schema:\n  {}",
            errors.join("\n  ")
        );
        let mut problems = Vec::new();
        lint(schema, "#", &mut problems);
        assert!(
            problems.is_empty(),
            "schemas/{file}:\n  {}",
            problems.join("\n  ")
        );
        // Compiles, every $ref resolved against the other documents (no network).
        validator(file);
        strict_validator(file);
    }

    // The inputs are closed, as the code's `deny_unknown_fields`.
    for file in [
        "action.v1.json",
        "command.v1.json",
        "kafka-record.v1.json",
        "catalog.v1.json",
        "mapping.v1.json",
    ] {
        let mut open = Vec::new();
        open_objects(doc(file), "#", &mut open);
        assert!(open.is_empty(), "schemas/{file}: open objects {open:?}");
    }
}

/// Object schemas that declare properties but not `additionalProperties: false` (one that is
/// a `oneOf` of closed objects is closed by them).
fn open_objects(v: &Value, path: &str, found: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if map.get("type") == Some(&json!("object"))
                && map.contains_key("properties")
                && !map.contains_key("oneOf")
                && map.get("additionalProperties") != Some(&json!(false))
            {
                found.push(path.to_string());
            }
            for (k, v) in map {
                open_objects(v, &format!("{path}/{k}"), found);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                open_objects(v, &format!("{path}/{i}"), found);
            }
        }
        _ => {}
    }
}

// --- output events ----------------------------------------------------------------------------

fn replay_events() -> Vec<Value> {
    let out = Process::new(questline_bin())
        .current_dir(root())
        .args([
            "replay",
            "--catalog",
            "examples/catalog",
            "--input",
            "examples/actions.jsonl",
            "--now",
            "2026-11-25T10:00:00Z",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

#[test]
fn every_replayed_event_validates_against_the_schema_of_its_type() {
    let events = replay_events();
    assert!(!events.is_empty(), "replay wrote no events");
    let mut seen = BTreeSet::new();
    for event in &events {
        let kind = event["type"]
            .as_str()
            .unwrap_or_else(|| panic!("no type: {event}"));
        let file = type_file(kind);
        assert!(
            schemas().contains_key(&file),
            "event type '{kind}' has no schemas/{file}"
        );
        assert_valid(strict_validator(&file), &file, event);
        assert_valid(validator("events.v1.json"), "events.v1.json", event);
        seen.insert(kind.to_string());
    }
    // The example actions exercise the common types (claims come from the sidecar).
    for kind in [
        "progress.updated",
        "milestone.achieved",
        "reward.granted",
        "reward.rejected",
        "dead_letter",
    ] {
        assert!(
            seen.contains(kind),
            "replay no longer writes {kind}: {seen:?}"
        );
    }
}

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn event(body: EventBody) -> Event {
    Event {
        event_id: "c40c65f6-c1eb-57b4-96bc-48af9a57b714".into(),
        body,
        tenant: "default".into(),
        user_id: "151631".into(),
        occurred_at: "2026-11-25T10:00:00Z".parse().unwrap(),
        source: SourceRef::new("questline.actions", 3, 42),
        catalog_version: 2,
    }
}

fn claim_item(milestone: bool) -> ClaimItem {
    ClaimItem {
        reward_type: "voucher_burger".into(),
        amount: Decimal::ONE,
        milestone_id: milestone.then(|| "1-1".into()),
        inventory_id: milestone.then(|| "burger-2026".into()),
        code: milestone.then(|| "BURGER-0001".into()),
    }
}

/// Fails to compile when `EventBody` gains a variant: give it a sample below and a schema.
fn kind_of(body: &EventBody) -> &'static str {
    match body {
        EventBody::ProgressUpdated { .. } => "progress.updated",
        EventBody::MilestoneAchieved { .. } => "milestone.achieved",
        EventBody::RewardGranted { .. } => "reward.granted",
        EventBody::RewardRejected { .. } => "reward.rejected",
        EventBody::RewardExpired { .. } => "reward.expired",
        EventBody::ClaimCompleted { .. } => "claim.completed",
        EventBody::ClaimFailed { .. } => "claim.failed",
        EventBody::DeadLetter { .. } => "dead_letter",
    }
}

/// One event of every variant with every optional field filled in (the first of each type),
/// then other shapes: the other grant reasons, decimals written as strings, base64 originals.
fn sample_events() -> Vec<Event> {
    let bodies = vec![
        EventBody::ProgressUpdated {
            challenge_id: 1,
            group_id: 1,
            trigger_id: 1,
            trigger_frequency: d("1000"),
            accumulated: d("999.999"),
            action_left: d("0.001"),
            progress: d("99.99"),
        },
        EventBody::MilestoneAchieved {
            challenge_id: 1,
            milestone_id: "1-1".into(),
            prizes: vec![
                PrizeInfo {
                    value: Some("BURGER-0001".into()),
                    expiration_date: Some("2026-12-25T10:00:00Z".parse().unwrap()),
                    description: "40% off".into(),
                    reward_type: "voucher_burger".into(),
                },
                PrizeInfo {
                    value: None,
                    expiration_date: None,
                    description: String::new(),
                    reward_type: "points".into(),
                },
            ],
        },
        EventBody::RewardGranted {
            reward_type: "points".into(),
            amount: Some(d("500")),
            code: Some("BURGER-0002".into()),
            reason: GrantReason::Milestone {
                challenge_id: 3,
                milestone_id: "3-1".into(),
            },
            balance: d("500"),
        },
        EventBody::RewardRejected {
            reward_type: "tshirt".into(),
            reason: RejectReason::Limit,
            challenge_id: Some(5),
            milestone_id: Some("5-1".into()),
            // Never with a challenge in practice: the sample shows every field at once.
            operation: Some(Box::new(OperationRef {
                code: "10_posts".into(),
                building_block: "groups".into(),
                amount: d("10"),
                description: "Make 10 posts in a group".into(),
                grant_id: "g-2".into(),
            })),
        },
        EventBody::RewardExpired {
            reward_type: "points".into(),
            amount: Some(d("10")),
            code: Some("BURGER-0002".into()),
            challenge_id: 2,
            milestone_id: "2-1".into(),
            expiration_date: "2026-12-25T10:00:00Z".parse().unwrap(),
            balance: d("0"),
        },
        EventBody::ClaimCompleted {
            claim_id: "claim-1".into(),
            items: vec![claim_item(true), claim_item(false)],
            reason: Some("claimed".into()),
        },
        EventBody::ClaimFailed {
            claim_id: "claim-2".into(),
            items: vec![claim_item(true)],
            reason: "depleted".into(),
        },
        EventBody::DeadLetter {
            reason: "userId: is required".into(),
            error_code: Some(13),
            field: Some("userId".into()),
            original: r#"{"triggerId": 1}"#.into(),
            encoding: OriginalEncoding::Utf8,
            truncated_from: Some(questline::core::events::MAX_ORIGINAL_BYTES + 1),
            output: Some(Box::new(RefusedOutput {
                topic: "questline.rewards".into(),
                key: "151631".into(),
                kind: Some("milestone.achieved".into()),
                event_id: Some("c40c65f6-c1eb-57b4-96bc-48af9a57b714".into()),
                bytes: 1_048_577,
            })),
        },
        // Other shapes.
        EventBody::ProgressUpdated {
            challenge_id: 6,
            group_id: 2,
            trigger_id: 6,
            trigger_frequency: d("-3"),
            accumulated: d("-3"),
            action_left: d("12345678901234567.5"),
            progress: d("0"),
        },
        EventBody::RewardGranted {
            reward_type: "voucher_burger".into(),
            amount: None,
            code: Some("BURGER-0001".into()),
            reason: GrantReason::Rule {
                event: "WATCHED_VIDEO".into(),
                rule: "welcome".into(),
                priority: Priority::At(3),
            },
            balance: d("1234567890.123456789"),
        },
        EventBody::RewardGranted {
            reward_type: "points".into(),
            amount: Some(d("-1234567890.123456789")),
            code: None,
            reason: GrantReason::Operation {
                code: "adjust".into(),
                building_block: "groups".into(),
                amount: d("-1234567890.123456789"),
                description: "Make 10 posts in a group".into(),
                grant_id: "g-1".into(),
            },
            balance: d("0.5"),
        },
        EventBody::RewardRejected {
            reward_type: "legacy_coins".into(),
            reason: RejectReason::Inactive,
            challenge_id: None,
            milestone_id: None,
            operation: None,
        },
        EventBody::ClaimCompleted {
            claim_id: "claim-3".into(),
            items: vec![],
            reason: None,
        },
        EventBody::DeadLetter {
            reason: "record: not JSON".into(),
            error_code: None,
            field: None,
            original: questline::core::events::encode_original(&[0xff, 0xfe, 0x00]).0,
            encoding: OriginalEncoding::Base64,
            truncated_from: None,
            output: None,
        },
    ];
    bodies.into_iter().map(event).collect()
}

#[test]
fn every_event_variant_validates_and_declares_exactly_its_fields() {
    let envelope = property_names(doc(ENVELOPE));
    let mut first_of_kind = BTreeMap::new();
    for e in sample_events() {
        let kind = kind_of(&e.body);
        let file = type_file(kind);
        let json = serde_json::to_value(&e).unwrap();
        assert_valid(strict_validator(&file), &file, &json);
        assert_valid(strict_validator("events.v1.json"), "events.v1.json", &json);
        first_of_kind.entry(kind).or_insert(json);
    }
    let kinds: BTreeSet<&str> = first_of_kind.keys().copied().collect();
    assert_eq!(
        kinds,
        EVENT_TYPES.into_iter().collect(),
        "a variant has no sample"
    );

    for (kind, json) in &first_of_kind {
        let schema = doc(&type_file(kind));
        let declared = property_names(schema).union(&envelope).cloned().collect();
        assert_same_names(kind, declared, json);
        assert_eq!(
            schema["properties"]["type"]["const"],
            json!(kind),
            "{kind}: type"
        );
    }
    let defs = &doc(ENVELOPE)["$defs"];
    let completed = &first_of_kind["claim.completed"];
    assert_same_names(
        "claim item",
        property_names(&defs["claimItem"]),
        &completed["items"][0],
    );
    assert_same_names(
        "source",
        property_names(&defs["source"]),
        &completed["source"],
    );
    let prize = &doc("milestone.achieved.v1.json")["$defs"]["prize"];
    assert_same_names(
        "prize",
        property_names(prize),
        &first_of_kind["milestone.achieved"]["prizes"][0],
    );
}

#[test]
fn event_schemas_reject_what_the_contract_rules_out() {
    let sample = |kind: &str| {
        sample_events()
            .into_iter()
            .find(|e| kind_of(&e.body) == kind)
            .map(|e| serde_json::to_value(e).unwrap())
            .unwrap()
    };
    let with = |kind: &str, pointer: &str, value: Value| {
        let mut v = sample(kind);
        *v.pointer_mut(pointer).unwrap() = value;
        v
    };
    let without = |kind: &str, field: &str| {
        let mut v = sample(kind);
        v.as_object_mut().unwrap().remove(field);
        v
    };
    let bad = [
        (
            "progress.updated",
            with("progress.updated", "/progress", json!(100.5)),
        ),
        (
            "progress.updated",
            with("progress.updated", "/actionLeft", json!(-1)),
        ),
        (
            "progress.updated",
            with("progress.updated", "/accumulated", json!("lots")),
        ),
        (
            "progress.updated",
            with("progress.updated", "/type", json!("milestone.achieved")),
        ),
        (
            "progress.updated",
            with("progress.updated", "/eventId", json!("not-a-uuid")),
        ),
        (
            "progress.updated",
            with("progress.updated", "/occurredAt", json!("yesterday")),
        ),
        (
            "progress.updated",
            with("progress.updated", "/source/offset", json!(-1)),
        ),
        ("progress.updated", without("progress.updated", "eventId")),
        ("progress.updated", without("progress.updated", "source")),
        (
            "milestone.achieved",
            without("milestone.achieved", "prizes"),
        ),
        (
            "reward.granted",
            with("reward.granted", "/reason/kind", json!("gift")),
        ),
        ("reward.granted", {
            let mut v = without("reward.granted", "amount");
            v.as_object_mut().unwrap().remove("code");
            v
        }),
        (
            "reward.rejected",
            with("reward.rejected", "/reason", json!("expired")),
        ),
        (
            "reward.expired",
            without("reward.expired", "expirationDate"),
        ),
        ("claim.failed", without("claim.failed", "reason")),
        (
            "dead_letter",
            with("dead_letter", "/encoding", json!("latin1")),
        ),
        ("dead_letter", {
            let mut v = with("dead_letter", "/encoding", json!("base64"));
            v["original"] = json!("not base64!");
            v
        }),
    ];
    for (kind, instance) in &bad {
        let file = type_file(kind);
        assert_invalid(validator(&file), &file, instance);
        assert_invalid(validator("events.v1.json"), "events.v1.json", instance);
    }

    // Open for consumers: a field added later does not break v1 (the closed check catches it
    // here, so the schema gets updated).
    let mut extended = sample("progress.updated");
    extended["streak"] = json!(3);
    assert_valid(
        validator("progress.updated.v1.json"),
        "progress.updated.v1.json",
        &extended,
    );
    assert_invalid(
        strict_validator("progress.updated.v1.json"),
        "progress.updated.v1.json",
        &extended,
    );
    // But an unknown type is not a v1 event.
    let mut unknown = sample("progress.updated");
    unknown["type"] = json!("streak.extended");
    assert_invalid(validator("events.v1.json"), "events.v1.json", &unknown);
}

// --- actions ----------------------------------------------------------------------------------

/// Accepted by both readers of the native format: the native mapping (`replay`, the worker)
/// and serde (the commands topic, the sidecar).
fn code_accepts_action(action: &Value) -> bool {
    Mapping::native()
        .apply(action.to_string().as_bytes())
        .is_ok()
        && serde_json::from_value::<Action>(action.clone()).is_ok()
}

#[test]
fn example_actions_validate_unless_they_are_type_errors() {
    const FILE: &str = "action.v1.json";
    let text = std::fs::read_to_string(root().join("examples/actions.jsonl")).unwrap();
    // Dead letters by line: replay's source offset is the 1-based line number.
    let dead: BTreeMap<u64, Value> = replay_events()
        .into_iter()
        .filter(|e| e["type"] == "dead_letter")
        .map(|e| (e["source"]["offset"].as_u64().unwrap(), e))
        .collect();
    let (mut good, mut type_errors, mut catalog_errors) = (0, 0, 0);
    for (i, line) in text.lines().enumerate() {
        let number = i as u64 + 1;
        let Ok(action) = serde_json::from_str::<Value>(line) else {
            assert!(dead.contains_key(&number), "line {number} is not JSON");
            continue; // not JSON: nothing for a schema to say
        };
        match dead.get(&number) {
            None => {
                assert_valid(validator(FILE), FILE, &action);
                assert!(
                    serde_json::from_value::<Action>(action.clone()).is_ok(),
                    "line {number} validates but the commands reader rejects it"
                );
                good += 1;
            }
            Some(letter) => {
                let reason = letter["reason"].as_str().unwrap();
                if reason.contains("unknown trigger") || reason.contains("unknown tenant") {
                    // Well-formed; only the catalog knows its triggers and tenants.
                    assert_valid(validator(FILE), FILE, &action);
                    catalog_errors += 1;
                } else {
                    assert_invalid(validator(FILE), FILE, &action);
                    type_errors += 1;
                }
            }
        }
    }
    assert!(
        good > 0 && type_errors > 0 && catalog_errors > 0,
        "the examples changed: {good} good, {type_errors} type errors, {catalog_errors} unknown"
    );
}

fn full_action() -> Action {
    let mut action = Action::new("151631", TriggerKey::Name("post_comment".into()), d("2.5"));
    action.tenant = "acme".into();
    action.action_id = Some("pos-1".into());
    action.occurred_at = Some("2026-03-01T09:30:00Z".parse().unwrap());
    action
        .params
        .insert("restaurant".into(), json!("Buffalo Burger"));
    action.location = Some("forum".into());
    action.action_type = Some(json!(7).into());
    action
}

#[test]
fn action_schema_and_code_agree() {
    const FILE: &str = "action.v1.json";
    let schema = validator(FILE);

    let full = serde_json::to_value(full_action()).unwrap();
    assert_same_names("action", property_names(doc(FILE)), &full);

    let accepted = [
        json!({"userId": "151631", "triggerId": 1, "value": 1000}),
        json!({"userId": "151631", "triggerId": 1}),
        json!({"userId": "u", "triggerId": 1, "value": "1000.00"}),
        json!({"userId": "u", "triggerId": 1, "value": "1.5e3"}),
        json!({"userId": "u", "triggerId": 1, "value": "2E-2"}),
        json!({"userId": "u", "triggerId": 1, "value": -3}),
        json!({"userId": "u", "triggerId": 1, "value": 999.5}),
        json!({"userId": "u", "triggerId": 4294967295u32}),
        json!({"userId": "u", "triggerId": "post_comment", "location": "forum"}),
        json!({"userId": "u", "triggerId": 1, "occurredAt": "2026-11-25T12:00:00+02:00"}),
        json!({"userId": "u", "triggerId": 1, "params": {}, "actionType": null}),
        json!({"userId": "u".repeat(256), "triggerId": "t".repeat(256), "actionId": "a".repeat(256), "location": "l".repeat(256)}),
        serde_json::to_value(Action::new("u", TriggerKey::Id(6), d("3"))).unwrap(),
        full,
    ];
    for action in &accepted {
        assert_valid(schema, FILE, action);
        assert!(code_accepts_action(action), "the code rejects {action}");
    }

    let rejected = [
        json!({"triggerId": 1, "value": 1}),
        json!({"userId": "u", "value": 1}),
        json!({"userId": "", "triggerId": 1}),
        json!({"userId": 42, "triggerId": 1}),
        json!({"userId": "u", "triggerId": 1, "value": "lots"}),
        json!({"userId": "u", "triggerId": 1, "value": "1,000"}),
        json!({"userId": "u", "triggerId": 1, "value": true}),
        json!({"userId": "u", "triggerId": 1, "value": null}),
        json!({"userId": "u", "triggerId": -1}),
        json!({"userId": "u", "triggerId": 1.5}),
        json!({"userId": "u", "triggerId": [1]}),
        json!({"userId": "u", "triggerId": ""}),
        json!({"userId": "u", "triggerId": 1, "occurredAt": "yesterday"}),
        json!({"userId": "u", "triggerId": 1, "params": [1]}),
        json!({"userId": "u", "triggerId": 1, "location": 5}),
        json!({"userId": "u", "triggerId": 1, "userid": "typo"}),
        json!({"userId": "u".repeat(257), "triggerId": 1}),
        json!({"userId": "u", "triggerId": "t".repeat(257)}),
        json!({"userId": "u", "triggerId": 1, "actionId": "a".repeat(257)}),
        json!({"userId": "u", "triggerId": 1, "location": "l".repeat(257)}),
        json!({"userId": "u", "triggerId": 1, "tenant": "t".repeat(65)}),
        json!({"userId": "u", "triggerId": 1, "params": (0..65).map(|i| (format!("p{i}"), json!(i))).collect::<Map<String, Value>>()}),
    ];
    for action in &rejected {
        assert_invalid(schema, FILE, action);
        assert!(!code_accepts_action(action), "the code accepts {action}");
    }

    // Every decimal string the schema admits is one the engine reads.
    for text in [
        "1", "-3", "0.1", "1000.00", "1.5e3", "1E3", "2e-2", "1.5e+3", "", " 1", "1.", ".5", "+1",
        "1,000", "NaN", "inf", "1e", "0x10", "--1",
    ] {
        let action = json!({"userId": "u", "triggerId": 1, "value": text});
        if schema.is_valid(&action) {
            assert!(
                decimal::parse_text(text).is_ok() && code_accepts_action(&action),
                "the schema admits value '{text}' but the engine cannot read it"
            );
        }
    }
}

// --- commands ---------------------------------------------------------------------------------

#[test]
fn serialized_commands_validate() {
    const FILE: &str = "command.v1.json";
    let schema = validator(FILE);
    let defs = &doc(FILE)["$defs"];

    let add_full = serde_json::to_value(Command::AddAction(full_action())).unwrap();
    let add_min = serde_json::to_value(Command::AddAction(Action::new(
        "151631",
        TriggerKey::Id(1),
        d("1000"),
    )))
    .unwrap();
    let claim = serde_json::to_value(Command::Claim(ClaimCommand {
        claim_id: "claim-1".into(),
        tenant: "default".into(),
        user_id: "151631".into(),
        milestone_ids: vec!["1-1".into()],
        items: vec![
            ClaimAmount {
                reward_type: "points".into(),
                amount: d("250"),
            },
            ClaimAmount {
                reward_type: "points".into(),
                amount: d("1234567890.123456789"),
            },
        ],
    }))
    .unwrap();
    let grant = serde_json::to_value(Command::Grant(GrantCommand {
        grant_id: "posts-151631-1".into(),
        tenant: "default".into(),
        user_id: "151631".into(),
        code: "10_posts".into(),
        building_block: "groups".into(),
        description: Some("Posted in Chess club".into()),
    }))
    .unwrap();
    let status = serde_json::to_value(Command::UserStatus(
        questline::core::state::UserStatusChange {
            tenant: "default".into(),
            user_id: "kick-9".into(),
            disabled: true,
        },
    ))
    .unwrap();
    for command in [&add_full, &add_min, &claim, &status, &grant] {
        assert_valid(schema, FILE, command);
    }
    assert_same_names("userStatus", property_names(&defs["userStatus"]), &status);
    assert_same_names("grant", property_names(&defs["grant"]), &grant);
    assert_same_names("addAction", property_names(&defs["addAction"]), &add_full);
    assert_same_names("claim", property_names(&defs["claim"]), &claim);
    assert_same_names(
        "claim item",
        property_names(&defs["claimAmount"]),
        &claim["items"][0],
    );
    // addAction is the action with the tag beside it.
    let mut action_fields = property_names(doc("action.v1.json"));
    action_fields.insert("command".into());
    assert_eq!(property_names(&defs["addAction"]), action_fields);
    let variants: BTreeSet<String> = [&add_min, &claim, &status, &grant]
        .iter()
        .map(|c| c["command"].as_str().unwrap().to_string())
        .collect();
    let tags: BTreeSet<String> = doc(FILE)["properties"]["command"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    assert_eq!(tags, variants);

    let rejected = [
        json!({"command": "refund", "userId": "u"}),
        json!({"userId": "u", "triggerId": 1}),
        json!({"command": "addAction", "userId": "u", "triggerId": 1, "claimId": "c"}),
        json!({"command": "claim", "claimId": "c", "userId": "u", "triggerId": 1}),
        json!({"command": "claim", "userId": "u"}),
        json!({"command": "claim", "claimId": "c", "userId": "u", "items": [{"rewardType": "points"}]}),
        json!({"command": "userStatus", "userId": "u"}),
        json!({"command": "userStatus", "userId": "u", "disabled": "yes"}),
        json!({"command": "userStatus", "userId": "u", "disabled": true, "triggerId": 1}),
    ];
    for command in &rejected {
        assert_invalid(schema, FILE, command);
        assert!(
            serde_json::from_value::<Command>(command.clone()).is_err(),
            "the code accepts {command}"
        );
    }
}

// --- topic dumps (`replay --records`) ---------------------------------------------------------

fn code_accepts_dump_line(line: &Value) -> bool {
    DumpedRecord::parse(line.to_string().as_bytes(), chrono::Utc::now()).is_ok()
}

#[test]
fn kafka_record_schema_and_code_agree() {
    const FILE: &str = "kafka-record.v1.json";
    let schema = validator(FILE);
    let record = |payload: &[u8], key: Option<&str>| InRecord {
        topic: "questline.actions".into(),
        partition: 3,
        offset: 42,
        key: key.map(|k| k.as_bytes().into()),
        payload: payload.to_vec(),
        timestamp: "2026-11-25T10:00:00.123Z".parse().unwrap(),
        headers: Vec::new(),
    };
    // What the code writes: text values, binary values, no key.
    let text = serde_json::to_value(DumpedRecord::of(&record(
        br#"{"userId": "151631", "triggerId": 1}"#,
        Some("151631"),
    )))
    .unwrap();
    let binary = serde_json::to_value(DumpedRecord::of(&record(&[0xff, 0xfe, 0], None))).unwrap();
    for line in [&text, &binary] {
        assert_valid(schema, FILE, line);
        assert_valid(strict_validator(FILE), FILE, line);
    }
    let mut written = keys(&text);
    written.extend(keys(&binary));
    assert_eq!(written, property_names(doc(FILE)));

    let accepted = [
        json!({"topic": "t", "partition": 0, "offset": 0}),
        json!({"topic": "t", "partition": 0, "offset": 0, "timestamp": null, "key": null, "value": null}),
        json!({"topic": "t", "partition": 2147483647, "offset": 9223372036854775807i64, "value": ""}),
        json!({"topic": "t", "partition": 1, "offset": 7, "timestamp": 253402300799999i64, "value": "x"}),
        json!({"topic": "t", "partition": 1, "offset": 7, "valueBase64": "/w=="}),
        json!({"topic": "t", "partition": 1, "offset": 7, "valueBase64": ""}),
        json!({"topic": "t", "partition": 1, "offset": 7, "value": null, "valueBase64": "e30="}),
        text,
        binary,
    ];
    for line in &accepted {
        assert_valid(schema, FILE, line);
        assert!(code_accepts_dump_line(line), "the code rejects {line}");
    }
    let rejected = [
        json!({"partition": 0, "offset": 0}),
        json!({"topic": "t", "offset": 0}),
        json!({"topic": "t", "partition": 0}),
        json!({"topic": "", "partition": 0, "offset": 0}),
        json!({"topic": "t", "partition": -1, "offset": 0}),
        json!({"topic": "t", "partition": 2147483648i64, "offset": 0}),
        json!({"topic": "t", "partition": 0, "offset": -1}),
        json!({"topic": "t", "partition": 0, "offset": 1.5}),
        json!({"topic": "t", "partition": 0, "offset": "1"}),
        json!({"topic": "t", "partition": 0, "offset": 0, "timestamp": -1}),
        json!({"topic": "t", "partition": 0, "offset": 0, "timestamp": 253402300800000i64}),
        json!({"topic": "t", "partition": 0, "offset": 0, "timestamp": "2026-11-25T10:00:00Z"}),
        json!({"topic": "t", "partition": 0, "offset": 0, "key": 5}),
        json!({"topic": "t", "partition": 0, "offset": 0, "value": {"userId": "u"}}),
        json!({"topic": "t", "partition": 0, "offset": 0, "value": "x", "valueBase64": "eA=="}),
        json!({"topic": "t", "partition": 0, "offset": 0, "valueBase64": "e30"}),
        json!({"topic": "t", "partition": 0, "offset": 0, "valueBase64": "not base64!"}),
        json!({"topic": "t", "partition": 0, "offset": 0, "valueBase64": null}),
        json!({"topic": "t", "partition": 0, "offset": 0, "headers": {}}),
    ];
    for line in &rejected {
        assert_invalid(schema, FILE, line);
        assert!(!code_accepts_dump_line(line), "the code accepts {line}");
    }
}

// --- catalog and mappings ---------------------------------------------------------------------

/// A TOML file as JSON. A bare TOML datetime becomes an object, which no schema here accepts:
/// the code does not either.
fn toml_json(text: &str) -> Value {
    toml::from_str(text).unwrap_or_else(|e| panic!("not TOML: {e}\n{text}"))
}

fn toml_files(dir: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {dir}/*.toml");
    files
}

fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// A small catalog both the code and the schema accept; the cases below break it.
const CATALOG: &str = r#"
tenant = "acme"
time_zone = "Europe/Paris"

[[reward_types]]
reward_type = "points"
display_name = { en = "Points", ar = "نقاط" }
kind = "points"

[[categories]]
id = 1
name = "Points"

[[triggers]]
id = 1
key = "earn"
name = "Earned Points"
type = 2
aggregation = "sum"

[[triggers]]
id = 2
name = "Tier"
aggregation = "match"
comparator = "gte"

[[challenges]]
id = 1
name = "Earn 1000 Points"
category = 1
start = "2026-01-01T00:00:00Z"
repeatable = true
overshoot = "carry"
cap_period = "day"
max_per_user = 2
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = "1000.50" }, { trigger = 2, operator = "or", frequency = 3 }]
[[challenges.prizes]]
reward_type = "points"
amount = 2.5
expires_at = "2027-01-01T00:00:00Z"

[[events]]
name = "WATCHED_VIDEO"
description = "Watch a video"
reward_type = "points"
params = [{ name = "duration", type = "integer", mandatory = true }, { name = "type", type = "string" }]
cap = "once per 10 minutes"
streak = { days = 3, per_day = 2, conditions = [{ param = "type", op = "is_not_empty" }] }
[[events.rules]]
name = "long"
priority = 1
conditions = [{ param = "duration", op = "greater_than", value = 20 }]
points = 500
[[events.rules]]
priority = "POSITIVE_INFINITY"
points = 50

[[events]]
name = "ORDER_PLACED"
programmatic = { url = "https://tenant.example/points", method = "PUT", headers = { "X-Api-Key" = "k" }, body = { program = "p" }, timeout = "500ms", fallback_points = "2.5" }

[[offers]]
id = "burger-40"
title = "40% off a burger"
brand = "Buffalo Burger"
description = "Show the code at the counter"
points = 100
"#;

/// The group's triggers line in [`CATALOG`].
const TRIGGERS: &str = r#"triggers = [{ trigger = 1, frequency = "1000.50" }, { trigger = 2, operator = "or", frequency = 3 }]"#;

fn catalog_accepts(text: &str) -> bool {
    Catalog::from_sources(&[("c.toml", text)]).is_ok()
}

#[test]
fn catalog_files_validate_and_broken_ones_do_not() {
    const FILE: &str = "catalog.v1.json";
    let schema = validator(FILE);
    let files = toml_files("examples/catalog");
    for (name, text) in &files {
        let json = toml_json(text);
        let errors = errors(schema, &json);
        assert!(
            errors.is_empty(),
            "examples/catalog/{name} does not validate against schemas/{FILE}:\n  {}",
            errors.join("\n  ")
        );
    }
    assert!(catalog_accepts(CATALOG));
    assert_valid(schema, FILE, &toml_json(CATALOG));
    // KickApps' numeric actionIds as keys, with a location.
    let numeric = CATALOG.replace("key = \"earn\"", "key = \"42\"\nlocation = \"forum\"");
    assert!(catalog_accepts(&numeric));
    assert_valid(schema, FILE, &toml_json(&numeric));

    let broken = [
        ("unknown trigger field", CATALOG.replace("type = 2\n", "type = 2\nbogus = 3\n")),
        ("unknown challenge field", CATALOG.replace("category = 1\n", "category = 1\nbogus = 3\n")),
        ("unknown group field", CATALOG.replace("[[challenges.groups]]\nid = 1\n", "[[challenges.groups]]\nid = 1\nbogus = 3\n")),
        ("unknown requirement field", CATALOG.replace("trigger = 2, ", "trigger = 2, bogus = 3, ")),
        ("unknown prize field", CATALOG.replace("amount = 2.5\n", "amount = 2.5\nbogus = 3\n")),
        ("unknown reward type field", CATALOG.replace("kind = \"points\"\n", "kind = \"points\"\nbogus = 3\n")),
        ("unknown category field", CATALOG.replace("name = \"Points\"\n", "name = \"Points\"\nbogus = 3\n")),
        ("unknown inventory field", format!("{CATALOG}\n[[inventories]]\nid = \"i\"\nreward_type = \"points\"\namount_total = 1\nstock = 3\n")),
        ("unknown table", format!("{CATALOG}\n[[rewards]]\nid = 1\n")),
        (
            "wrong cap_period",
            CATALOG.replace("\"day\"", "\"fortnight\""),
        ),
        ("wrong aggregation", CATALOG.replace("\"match\"", "\"avg\"")),
        ("wrong comparator", CATALOG.replace("\"gte\"", "\"ge\"")),
        ("wrong operator", CATALOG.replace("\"or\"", "\"XOR\"")),
        (
            "wrong kind",
            CATALOG.replace("kind = \"points\"", "kind = \"coupon\""),
        ),
        ("wrong overshoot", CATALOG.replace("\"carry\"", "\"keep\"")),
        (
            "carry without repeatable",
            CATALOG.replace("repeatable = true\n", ""),
        ),
        (
            "bare TOML datetime",
            CATALOG.replace("\"2026-01-01T00:00:00Z\"", "2026-01-01T00:00:00Z"),
        ),
        (
            "not a time",
            CATALOG.replace("\"2026-01-01T00:00:00Z\"", "\"New Year\""),
        ),
        (
            "numeric key not written as sent",
            CATALOG.replace("key = \"earn\"", "key = \"042\""),
        ),
        (
            "numeric key with a sign",
            CATALOG.replace("key = \"earn\"", "key = \"+42\""),
        ),
        (
            "key with surrounding whitespace",
            CATALOG.replace("key = \"earn\"", "key = \" earn\""),
        ),
        ("blank key", CATALOG.replace("key = \"earn\"", "key = \"  \"")),
        (
            "key too long",
            CATALOG.replace("key = \"earn\"", &format!("key = \"{}\"", "k".repeat(257))),
        ),
        (
            "location too long",
            CATALOG.replace("key = \"earn\"", &format!("key = \"earn\"\nlocation = \"{}\"", "l".repeat(257))),
        ),
        (
            "tenant too long",
            CATALOG.replace("tenant = \"acme\"", &format!("tenant = \"{}\"", "t".repeat(65))),
        ),
        (
            "location without key",
            CATALOG.replace("key = \"earn\"", "location = \"forum\""),
        ),
        (
            "no groups",
            CATALOG
                .replace(&format!("[[challenges.groups]]\nid = 1\n{TRIGGERS}\n"), "")
                .replace("max_per_user = 2\n", "max_per_user = 2\ngroups = []\n"),
        ),
        ("empty group", CATALOG.replace(TRIGGERS, "triggers = []")),
        (
            "zero cap",
            CATALOG.replace("max_per_user = 2", "max_per_user = 0"),
        ),
        (
            "negative id",
            CATALOG.replace("[[categories]]\nid = 1", "[[categories]]\nid = -1"),
        ),
        (
            "frequency not a number",
            CATALOG.replace("\"1000.50\"", "\"lots\""),
        ),
        ("missing name", CATALOG.replace("name = \"Tier\"\n", "")),
        (
            "localized text of numbers",
            CATALOG.replace("name = \"Points\"", "name = { en = 1 }"),
        ),
        ("unknown event field", CATALOG.replace("cap = \"once per 10 minutes\"\n", "cap = \"once per 10 minutes\"\nbogus = 1\n")),
        ("wrong condition op", CATALOG.replace("\"greater_than\"", "\"greater\"")),
        ("wrong param type", CATALOG.replace("\"integer\"", "\"int\"")),
        ("wrong cap", CATALOG.replace("once per 10 minutes", "once per fortnight")),
        ("streak of both kinds", CATALOG.replace("per_day = 2,", "count = 2,")),
        ("statement without value", CATALOG.replace("op = \"greater_than\", value = 20", "op = \"greater_than\"")),
        ("is_not_empty with a value", CATALOG.replace("op = \"is_not_empty\"", "op = \"is_not_empty\", value = 1")),
        ("negative priority", CATALOG.replace("priority = 1\n", "priority = -1\n")),
        ("conditional rule without priority", CATALOG.replace("priority = 1\n", "")),
        ("programmatic with rules", format!("{CATALOG}[[events.rules]]\npoints = 1\n")),
        ("event without rules", CATALOG.replace("[[events.rules]]\npriority = \"POSITIVE_INFINITY\"\npoints = 50\n", "").replace("[[events.rules]]\nname = \"long\"\npriority = 1\nconditions = [{ param = \"duration\", op = \"greater_than\", value = 20 }]\npoints = 500\n", "")),
        ("GET endpoint", CATALOG.replace("\"PUT\"", "\"GET\"")),
        ("reserved body field", CATALOG.replace("program = \"p\"", "userId = \"p\"")),
        ("not a timeout", CATALOG.replace("\"500ms\"", "\"soon\"")),
        ("not an http url", CATALOG.replace("https://tenant.example", "ftp://tenant.example")),
        ("numeric event name", CATALOG.replace("\"ORDER_PLACED\"", "\"42\"")),
        ("unknown offer field", CATALOG.replace("points = 100\n", "points = 100\nprice = 1\n")),
        ("offer id with a space", CATALOG.replace("\"burger-40\"", "\"burger 40\"")),
        ("offer id too long", CATALOG.replace("\"burger-40\"", &format!("\"{}\"", "b".repeat(37)))),
        ("offer of 0 points", CATALOG.replace("points = 100\n", "points = 0\n")),
        ("offer of fractional points", CATALOG.replace("points = 100\n", "points = 2.5\n")),
        ("offer price past the bound", CATALOG.replace("points = 100\n", "points = 1000000000000001\n")),
        ("offer with a blank title", CATALOG.replace("\"40% off a burger\"", "\" \"")),
        ("offer without points", CATALOG.replace("points = 100\n", "")),
        (
            "empty reward type",
            CATALOG.replace(
                "reward_type = \"points\"\ndisplay_name",
                "reward_type = \" \"\ndisplay_name",
            ),
        ),
    ];
    for (what, text) in &broken {
        assert!(!catalog_accepts(text), "{what}: the code accepts\n{text}");
        let json = toml_json(text);
        assert!(
            !schema.is_valid(&json),
            "{what}: the schema accepts\n{json}"
        );
    }
}

#[test]
fn the_parsed_catalog_written_back_validates_field_for_field() {
    const FILE: &str = "catalog.v1.json";
    let defs = &doc(FILE)["$defs"];
    let mut sources = toml_files("examples/catalog");
    sources.push(("small.toml".into(), CATALOG.into()));
    let catalog = Catalog::from_sources(&sources).unwrap();
    for tenant in catalog.tenants() {
        let file = json!({
            "tenant": tenant.tenant,
            "reward_types": tenant.reward_types,
            "inventories": tenant.inventories,
            "categories": tenant.categories,
            "triggers": tenant.triggers,
            "challenges": tenant.challenges,
            "time_zone": tenant.time_zone.name(),
            "allowed_lateness": humantime::format_duration(
                tenant.allowed_lateness.to_std().expect("lateness is positive")
            )
            .to_string(),
            "events": tenant.events,
            "operations": tenant.operations,
            "offers": tenant.offers,
        });
        // TOML has no null: an absent option is how a file says None.
        assert_valid(validator(FILE), FILE, &without_nulls(file.clone()));
        assert_eq!(keys(&file), property_names(doc(FILE)), "catalog file keys");
        for (list, def) in [
            ("reward_types", "rewardType"),
            ("inventories", "inventory"),
            ("categories", "category"),
            ("triggers", "trigger"),
            ("challenges", "challenge"),
            ("operations", "operation"),
            ("offers", "offer"),
        ] {
            for item in file[list].as_array().unwrap() {
                assert_same_names(def, property_names(&defs[def]), item);
            }
        }
        for challenge in file["challenges"].as_array().unwrap() {
            for group in challenge["groups"].as_array().unwrap() {
                assert_same_names("group", property_names(&defs["group"]), group);
                for requirement in group["triggers"].as_array().unwrap() {
                    assert_same_names(
                        "requirement",
                        property_names(&defs["requirement"]),
                        requirement,
                    );
                }
            }
            for prize in challenge["prizes"].as_array().unwrap() {
                assert_same_names("prize", property_names(&defs["prize"]), prize);
            }
        }
        let statements = |list: &Value| {
            for statement in list.as_array().unwrap() {
                assert_same_names("statement", property_names(&defs["statement"]), statement);
            }
        };
        for event in file["events"].as_array().unwrap() {
            assert_same_names("event", property_names(&defs["event"]), event);
            for param in event["params"].as_array().unwrap() {
                assert_same_names("param", property_names(&defs["param"]), param);
            }
            for rule in event["rules"].as_array().unwrap() {
                assert_same_names("rule", property_names(&defs["rule"]), rule);
                statements(&rule["conditions"]);
            }
            if !event["streak"].is_null() {
                assert_same_names("streak", property_names(&defs["streak"]), &event["streak"]);
                statements(&event["streak"]["conditions"]);
            }
            if !event["programmatic"].is_null() {
                let programmatic = &event["programmatic"];
                assert_same_names(
                    "programmatic",
                    property_names(&defs["programmatic"]),
                    programmatic,
                );
            }
        }
    }
}

/// A mapping using every key.
const FULL_MAPPING: &str = r#"
name = "full"
topics = ["a", "b"]
tenant = "acme"
max_record_bytes = 10
unknown_trigger = "ignore"

[fields.user_id]
pointer = "/u"
required = true
error_codes = { missing = 1, invalid = 2, too_long = 3 }
[fields.trigger_id]
pointer = "/event/name"
value_map = { A = "a", B = 2 }
strict_map = true
[fields.value]
pointer = "/q"
default = 1
integer = true
[fields.action_id]
pointer = ""
[fields.occurred_at]
pointer = "/t"
epoch_unit = "millis"
[fields.params]
default = {}
[fields.location]
pointer = "/l"
max_len = 64
[fields.tenant]
constant = "acme"
[fields.action_type]
pointer = "/type"
"#;

fn mapping_accepts(text: &str) -> bool {
    toml::from_str::<Mapping>(text).is_ok_and(|m| mapping::validate(&m).is_empty())
}

#[test]
fn mapping_files_validate_and_broken_ones_do_not() {
    const FILE: &str = "mapping.v1.json";
    let schema = validator(FILE);
    let defs = &doc(FILE)["$defs"];
    let files = toml_files("mappings");
    for (name, text) in &files {
        assert!(
            mapping_accepts(text),
            "mappings/{name}: the code rejects it"
        );
        let json = toml_json(text);
        let errors = errors(schema, &json);
        assert!(
            errors.is_empty(),
            "mappings/{name} does not validate against schemas/{FILE}:\n  {}",
            errors.join("\n  ")
        );
        // Written back from the model, every field present.
        let written = serde_json::to_value(toml::from_str::<Mapping>(text).unwrap()).unwrap();
        assert_valid(schema, FILE, &without_nulls(written.clone()));
        assert_same_names("mapping", property_names(doc(FILE)), &written);
        let fields_schema = &doc(FILE)["properties"]["fields"];
        assert_same_names("fields", property_names(fields_schema), &written["fields"]);
        for spec in written["fields"].as_object().unwrap().values() {
            if !spec.is_null() {
                assert_same_names("field spec", property_names(&defs["fieldSpec"]), spec);
                assert_same_names(
                    "error codes",
                    property_names(&defs["fieldSpec"]["properties"]["error_codes"]),
                    &spec["error_codes"],
                );
            }
        }
    }

    assert!(mapping_accepts(FULL_MAPPING));
    let full = toml_json(FULL_MAPPING);
    assert_valid(schema, FILE, &full);

    let seed = &files.iter().find(|(n, _)| n == "seed.toml").unwrap().1;
    let broken = [
        ("unknown key", format!("bogus = 1\n{seed}")),
        ("unknown field", format!("{seed}\n[fields.user]\npointer = \"/u\"\n")),
        ("unknown spec key", seed.replace("pointer = \"/userId\"", "path = \"/userId\"")),
        ("wrong unknown_trigger", seed.replace("\"dead_letter\"", "\"drop\"")),
        ("wrong epoch_unit", format!("{seed}\nepoch_unit = \"nanos\"\n")),
        ("not a pointer", seed.replace("pointer = \"/userId\"", "pointer = \"userId\"")),
        ("no source", format!("{seed}\n[fields.location]\nrequired = true\n")),
        ("strict_map without a map", format!("{seed}\n[fields.location]\npointer = \"/l\"\nstrict_map = true\n")),
        ("zero max_record_bytes", format!("max_record_bytes = 0\n{seed}")),
        ("no name", seed.replace("name = \"seed\"\n", "")),
        ("wrong error code", format!("{seed}\n[fields.location]\npointer = \"/l\"\nerror_codes = {{ missing = \"13\" }}\n")),
    ];
    for (what, text) in &broken {
        assert!(!mapping_accepts(text), "{what}: the code accepts\n{text}");
        assert!(
            !schema.is_valid(&toml_json(text)),
            "{what}: the schema accepts\n{text}"
        );
    }
}

// --- enums and defaults -----------------------------------------------------------------------

/// The serialized name of every variant of a unit enum; fails to compile when the enum gains a
/// variant, so that the new name gets into the schema.
macro_rules! variant_names {
    ($ty:ident: $($variant:ident),+ $(,)?) => {{
        let _exhaustive = |v: $ty| match v {
            $($ty::$variant => ()),+
        };
        [$($ty::$variant),+]
            .iter()
            .map(|v| serde_json::to_value(v).unwrap().as_str().unwrap().to_string())
            .collect::<BTreeSet<String>>()
    }};
}

/// Every name the code writes is in the schema's enum, and every name in the schema's enum is
/// one the code reads (aliases included).
#[track_caller]
fn assert_enum<T: DeserializeOwned>(what: &str, schema: &Value, written: BTreeSet<String>) {
    let listed: BTreeSet<String> = schema["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no enum in {schema}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(
        written.is_subset(&listed),
        "{what}: the code writes {written:?}, the schema lists {listed:?}"
    );
    for name in &listed {
        assert!(
            serde_json::from_value::<T>(json!(name)).is_ok(),
            "{what}: the schema lists '{name}', the code does not read it"
        );
    }
}

#[test]
fn schema_enums_are_the_code_enums() {
    let catalog = &doc("catalog.v1.json")["$defs"];
    assert_enum::<RewardKind>(
        "reward kind",
        &catalog["rewardType"]["properties"]["kind"],
        variant_names!(RewardKind: Points, Voucher, Badge, Item),
    );
    assert_enum::<Aggregation>(
        "aggregation",
        &catalog["trigger"]["properties"]["aggregation"],
        variant_names!(Aggregation: Sum, Match),
    );
    assert_enum::<Comparator>(
        "comparator",
        &catalog["trigger"]["properties"]["comparator"],
        variant_names!(Comparator: Eq, Gte, Gt, Lte, Lt),
    );
    assert_enum::<Operator>(
        "operator",
        &catalog["operator"],
        variant_names!(Operator: And, Or),
    );
    assert_enum::<CapPeriod>(
        "cap_period",
        &catalog["challenge"]["properties"]["cap_period"],
        variant_names!(CapPeriod: Total, Day, Week, Month),
    );
    assert_enum::<Overshoot>(
        "overshoot",
        &catalog["challenge"]["properties"]["overshoot"],
        variant_names!(Overshoot: Discard, Carry),
    );
    assert_enum::<ParamType>(
        "param type",
        &catalog["param"]["properties"]["type"],
        variant_names!(ParamType: Integer, Float, String, Boolean),
    );
    assert_enum::<ConditionOp>(
        "condition op",
        &catalog["statement"]["properties"]["op"],
        variant_names!(ConditionOp: Equal, LessThan, GreaterThan, Contains, StartsWith, EndsWith, IsEmpty, IsNotEmpty),
    );
    assert_enum::<HttpMethod>(
        "programmatic method",
        &catalog["programmatic"]["properties"]["method"],
        variant_names!(HttpMethod: Post, Put, Patch),
    );
    let mapping = doc("mapping.v1.json");
    assert_enum::<UnknownTrigger>(
        "unknown_trigger",
        &mapping["properties"]["unknown_trigger"],
        variant_names!(UnknownTrigger: DeadLetter, Ignore),
    );
    assert_enum::<EpochUnit>(
        "epoch_unit",
        &mapping["$defs"]["fieldSpec"]["properties"]["epoch_unit"],
        variant_names!(EpochUnit: Auto, Seconds, Millis),
    );
    assert_enum::<RejectReason>(
        "reward.rejected reason",
        &doc("reward.rejected.v1.json")["properties"]["reason"],
        variant_names!(
            RejectReason: Depleted,
            Capped,
            Inactive,
            Limit,
            BalanceLimit,
            UnclaimedLimit
        ),
    );
    assert_enum::<OriginalEncoding>(
        "dead_letter encoding",
        &doc("dead_letter.v1.json")["properties"]["encoding"],
        variant_names!(OriginalEncoding: Utf8, Base64),
    );
}

/// Every `default` the schema states is what the code fills in when the field is absent.
#[track_caller]
fn assert_defaults(what: &str, schema: &Value, written: Value) {
    let mut stated = 0;
    for (name, property) in schema["properties"].as_object().unwrap() {
        if let Some(default) = property.get("default") {
            assert_eq!(
                &written[name], default,
                "{what}.{name}: the schema's default is not the code's"
            );
            stated += 1;
        }
    }
    assert!(stated > 0, "{what}: no defaults to check");
}

fn from_toml<T: DeserializeOwned + Serialize>(text: &str) -> Value {
    let parsed: T = toml::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    serde_json::to_value(parsed).unwrap()
}

#[test]
fn schema_defaults_are_the_code_defaults() {
    let catalog = &doc("catalog.v1.json")["$defs"];
    let cases = [
        (
            "reward type",
            &catalog["rewardType"],
            from_toml::<RewardType>("reward_type = \"points\""),
        ),
        (
            "inventory",
            &catalog["inventory"],
            from_toml::<Inventory>("id = \"i\"\nreward_type = \"t\"\namount_total = 1"),
        ),
        (
            "trigger",
            &catalog["trigger"],
            from_toml::<TriggerDef>("id = 1\nname = \"t\""),
        ),
        (
            "challenge",
            &catalog["challenge"],
            from_toml::<Challenge>("id = 1\nname = \"c\"\ngroups = []"),
        ),
        (
            "group",
            &catalog["group"],
            from_toml::<TriggerGroup>("id = 1\ntriggers = []"),
        ),
        (
            "requirement",
            &catalog["requirement"],
            from_toml::<TriggerRequirement>("trigger = 1\nfrequency = 5"),
        ),
        (
            "prize",
            &catalog["prize"],
            from_toml::<Prize>("reward_type = \"points\""),
        ),
        (
            "event",
            &catalog["event"],
            from_toml::<EventDef>("name = \"E\""),
        ),
        (
            "param",
            &catalog["param"],
            from_toml::<ParamDef>("name = \"p\"\ntype = \"string\""),
        ),
        ("rule", &catalog["rule"], from_toml::<RuleDef>("points = 1")),
        (
            "streak",
            &catalog["streak"],
            from_toml::<StreakDef>("days = 1"),
        ),
        (
            "programmatic",
            &catalog["programmatic"],
            from_toml::<ProgrammaticDef>("url = \"https://x\""),
        ),
        (
            "mapping",
            doc("mapping.v1.json"),
            from_toml::<Mapping>("name = \"m\""),
        ),
        (
            "field spec",
            &doc("mapping.v1.json")["$defs"]["fieldSpec"],
            from_toml::<FieldSpec>(""),
        ),
        (
            "action",
            doc("action.v1.json"),
            serde_json::to_value(
                serde_json::from_value::<Action>(json!({"userId": "u", "triggerId": 1})).unwrap(),
            )
            .unwrap(),
        ),
        (
            "claim",
            &doc("command.v1.json")["$defs"]["claim"],
            serde_json::to_value(
                serde_json::from_value::<Command>(
                    json!({"command": "claim", "claimId": "c", "userId": "u"}),
                )
                .unwrap(),
            )
            .unwrap(),
        ),
        (
            "kafka record",
            doc("kafka-record.v1.json"),
            serde_json::to_value(
                serde_json::from_value::<DumpedRecord>(
                    json!({"topic": "t", "partition": 0, "offset": 0}),
                )
                .unwrap(),
            )
            .unwrap(),
        ),
    ];
    for (what, schema, written) in cases {
        assert_defaults(what, schema, written);
    }
}
