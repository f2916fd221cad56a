//! The shipped mappings and the decoder never panic, whatever the bytes (property-based
//! fuzzing), a good record always maps to what it says, and a field over its documented bound
//! (`core::limits`) is always dead-lettered naming that field, in a dead letter of bounded size.

use crate::support::engine::*;
use proptest::prelude::*;
use questline::core::decode::{self, Rejection};
use questline::core::events::{EventBody, MAX_ORIGINAL_BYTES};
use questline::core::limits;
use questline::core::mapping::Mapping;
use questline::core::model::{SourceRef, TriggerKey};
use serde_json::{json, Map, Value};

fn shipped() -> Vec<Mapping> {
    vec![
        Mapping::native(),
        mapping("seed"),
        mapping("kickapps"),
        mapping("kwegg"),
    ]
}

/// Arbitrary JSON, biased toward the field names the mappings read.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        ".{0,20}".prop_map(Value::from),
        // Past every text bound, now and then.
        "[a-zé ]{200,700}".prop_map(Value::from),
        Just(Value::from("2026-11-25T10:00:00Z")),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        let keys = prop::sample::select(vec![
            "userId",
            "user_id",
            "triggerId",
            "actionId",
            "location",
            "quantity",
            "value",
            "occurredAt",
            "params",
            "event",
            "name",
            "tenant",
            "timestamp",
            "x",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The bounded text fields of an action and their limits in bytes.
const BOUNDED: [(&str, usize); 5] = [
    ("userId", limits::MAX_USER_ID_BYTES),
    ("triggerId", limits::MAX_TRIGGER_NAME_BYTES),
    ("actionId", limits::MAX_ACTION_ID_BYTES),
    ("location", limits::MAX_LOCATION_BYTES),
    ("tenant", limits::MAX_TENANT_BYTES),
];

/// Text of `len` bytes or up to two less (a three-byte character may not fit), starting with a
/// letter (so a trigger is a name), without surrounding whitespace.
fn text_of(len: usize, seed: u64) -> String {
    let mut out = String::from("k");
    let mut i = seed;
    while out.len() < len {
        i = i.wrapping_mul(6364136223846793005).wrapping_add(1);
        let c = ['a', 'é', '9', '-', '日'][(i >> 33) as usize % 5];
        if out.len() + c.len_utf8() > len {
            break;
        }
        out.push(c);
    }
    out
}

fn dead_letter_of(rejection: &Rejection, bytes: &[u8]) -> (String, usize) {
    let event = decode::dead_letter(
        rejection,
        bytes,
        &SourceRef::new("t", 0, 1),
        chrono::Utc::now(),
    );
    let size = serde_json::to_vec(&event).unwrap().len();
    match event.body {
        EventBody::DeadLetter { reason, .. } => (reason, size),
        other => panic!("not a dead letter: {other:?}"),
    }
}

/// Cases per property: 2,000 in the suite; `QL_MAPPING_CASES` for long runs (docs/testing.md).
fn cases() -> u32 {
    crate::support::props::cases_from("QL_MAPPING_CASES", 2000)
}

proptest! {
    #![proptest_config(crate::support::props::config(cases()))]

    #[test]
    fn no_bytes_make_a_mapping_or_the_decoder_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let catalog = example_catalog();
        for m in shipped() {
            let _ = m.apply(&bytes);
            let _ = decode::decode(&m.compile(), &catalog, &bytes);
        }
    }

    #[test]
    fn no_json_makes_a_mapping_or_the_decoder_panic(doc in arb_json()) {
        let catalog = example_catalog();
        let bytes = doc.to_string().into_bytes();
        for m in shipped() {
            if let Err(e) = m.apply(&bytes) {
                prop_assert!(!e.field.is_empty() && !e.reason.is_empty());
            }
            let _ = decode::decode(&m.compile(), &catalog, &bytes);
        }
    }

    #[test]
    fn a_good_native_action_maps_to_what_it_says(
        user in "[a-zA-Z0-9]{1,20}",
        trigger in 1u32..7,
        units in -1_000_000i64..1_000_000,
        scale in 0u32..4,
    ) {
        let value = rust_decimal::Decimal::new(units, scale);
        for v in [json!(value.to_string()), serde_json::from_str::<Value>(&value.to_string()).unwrap()] {
            let doc = json!({"userId": user, "triggerId": trigger, "value": v});
            let a = Mapping::native().apply(doc.to_string().as_bytes()).unwrap();
            prop_assert_eq!(&a.user_id, &user);
            prop_assert_eq!(&a.trigger_id, &TriggerKey::Id(trigger));
            prop_assert_eq!(a.value, value);
        }
    }

    /// One field past its bound, the others fine: the record is dead-lettered naming that
    /// field, and the dead letter carries the user id unless that is the field at fault.
    #[test]
    fn an_oversized_field_is_dead_lettered_naming_it(
        which in 0..BOUNDED.len(),
        extra in 1usize..2_000,
        seed in any::<u64>(),
    ) {
        let catalog = example_catalog();
        let (field, max) = BOUNDED[which];
        let mut doc = json!({"userId": "u1", "triggerId": "post_comment", "actionId": "a", "location": "forum", "tenant": "default"});
        // One more byte at least, whatever character ends it (up to two bytes may not fit).
        doc[field] = json!(text_of(max + 3 + extra, seed));
        let bytes = doc.to_string().into_bytes();
        let rejection = decode::decode(&Mapping::native().compile(), &catalog, &bytes).unwrap_err();
        prop_assert_eq!(rejection.field.as_deref(), Some(field));
        let expected_user = if field == "userId" { None } else { Some("u1") };
        prop_assert_eq!(rejection.user_id.as_deref(), expected_user);
        let (reason, _) = dead_letter_of(&rejection, &bytes);
        prop_assert!(reason.starts_with(&format!("{field}: cannot exceed {max} bytes")), "{}", reason);
    }

    /// Any decimal a producer can write (up to `Decimal`'s 96-bit mantissa and 28 places),
    /// as a number or a string: within 10^15 and 8 places it maps exactly, past either it is
    /// dead-lettered naming `value` with the user id.
    #[test]
    fn a_value_maps_exactly_within_its_bound_and_is_dead_lettered_past_it(
        lo in any::<u32>(),
        mid in any::<u32>(),
        hi in prop_oneof![Just(0u32), 0u32..0x10_0000, any::<u32>()],
        negative in any::<bool>(),
        scale in 0u32..=28,
        as_string in any::<bool>(),
    ) {
        let value = rust_decimal::Decimal::from_parts(lo, mid, hi, negative, scale);
        let text = value.to_string();
        let v = if as_string { json!(text) } else { serde_json::from_str::<Value>(&text).unwrap() };
        let doc = json!({"userId": "u1", "triggerId": 1, "value": v});
        let within = value.abs() <= limits::MAX_AMOUNT && value.normalize().scale() <= limits::MAX_SCALE;
        match decode::decode(&Mapping::native().compile(), &example_catalog(), doc.to_string().as_bytes()) {
            // Whatever maps is within the bound. A string is exact; a JSON number is read
            // through f64, so past 17 digits it maps (or is refused) as its rounded self.
            Ok(decode::Decoded::Action { action, .. }) => {
                prop_assert!(action.value.abs() <= limits::MAX_AMOUNT, "{}", action.value);
                prop_assert!(action.value.normalize().scale() <= limits::MAX_SCALE, "{}", action.value);
                if as_string {
                    prop_assert!(within, "{} mapped", text);
                    prop_assert_eq!(action.value, value);
                }
            }
            Ok(other) => prop_assert!(false, "{:?}", other),
            Err(rejection) => {
                prop_assert!(!within || !as_string, "{} refused: {}", text, rejection.reason);
                prop_assert_eq!(rejection.field.as_deref(), Some("value"), "{}", rejection.reason);
                prop_assert_eq!(rejection.user_id.as_deref(), Some("u1"));
            }
        }
    }

    /// Too many params, or params too large, are dead-lettered naming `params`.
    #[test]
    fn oversized_params_are_dead_lettered_naming_them(count in 0usize..200, len in 0usize..600) {
        let catalog = example_catalog();
        let params: Map<String, Value> = (0..count).map(|i| (format!("p{i}"), json!("v".repeat(len)))).collect();
        let size = serde_json::to_vec(&params).unwrap().len();
        let doc = json!({"userId": "u1", "triggerId": 1, "params": params});
        let result = decode::decode(&Mapping::native().compile(), &catalog, doc.to_string().as_bytes());
        if count > limits::MAX_PARAMS || size > limits::MAX_PARAMS_BYTES {
            let rejection = result.unwrap_err();
            prop_assert_eq!(rejection.field.as_deref(), Some("params"));
        } else {
            prop_assert!(result.is_ok(), "{:?}", result);
        }
    }

    /// Whatever the lengths, a record that maps is within every bound, and every dead letter's
    /// reason is within its own.
    #[test]
    fn a_mapped_action_is_within_every_bound(
        lens in prop::array::uniform5(1usize..600),
        seed in any::<u64>(),
    ) {
        let catalog = example_catalog();
        let mut doc = json!({});
        for ((field, _), len) in BOUNDED.iter().zip(lens) {
            doc[*field] = json!(text_of(len, seed));
        }
        let bytes = doc.to_string().into_bytes();
        for m in shipped() {
            if let Ok(a) = m.apply(&bytes) {
                prop_assert!(a.user_id.len() <= limits::MAX_USER_ID_BYTES);
                prop_assert!(a.tenant.len() <= limits::MAX_TENANT_BYTES);
                prop_assert!(a.action_id.as_ref().is_none_or(|s| s.len() <= limits::MAX_ACTION_ID_BYTES));
                prop_assert!(a.location.as_ref().is_none_or(|s| s.len() <= limits::MAX_LOCATION_BYTES));
                if let TriggerKey::Name(n) = &a.trigger_id {
                    prop_assert!(n.len() <= limits::MAX_TRIGGER_NAME_BYTES);
                }
            }
            if let Err(rejection) = decode::decode(&m.compile(), &catalog, &bytes) {
                let (reason, _) = dead_letter_of(&rejection, &bytes);
                prop_assert!(reason.len() <= limits::MAX_REASON_BYTES);
                prop_assert!(rejection.user_id.as_ref().is_none_or(|u| u.len() <= limits::MAX_USER_ID_BYTES));
            }
        }
    }
}

/// A 900 KB trigger name makes a small dead letter: the reason gives sizes, not the name, and
/// the original is cut to its own bound.
#[test]
fn a_huge_trigger_name_makes_a_small_dead_letter() {
    let catalog = example_catalog();
    let doc = json!({"userId": "u1", "triggerId": "t".repeat(900_000)});
    let bytes = doc.to_string().into_bytes();
    let rejection = decode::decode(&Mapping::native().compile(), &catalog, &bytes).unwrap_err();
    let (reason, size) = dead_letter_of(&rejection, &bytes);
    assert_eq!(reason, "triggerId: cannot exceed 256 bytes, found 900000");
    assert!(
        size < MAX_ORIGINAL_BYTES + 1024,
        "dead letter of {size} bytes"
    );
}

/// A reason that quotes the input (an unknown trigger and its location, each within bounds)
/// is cut to `MAX_REASON_BYTES`.
#[test]
fn reasons_quoting_the_input_are_cut() {
    let catalog = example_catalog();
    let doc = json!({"userId": "u1", "triggerId": "t".repeat(256), "location": "l".repeat(256)});
    let bytes = doc.to_string().into_bytes();
    let rejection = decode::decode(&Mapping::native().compile(), &catalog, &bytes).unwrap_err();
    assert!(rejection.reason.len() > limits::MAX_REASON_BYTES);
    let (reason, _) = dead_letter_of(&rejection, &bytes);
    assert_eq!(reason.len(), limits::MAX_REASON_BYTES);
    assert!(
        reason.starts_with("triggerId: unknown trigger 'ttt"),
        "{reason}"
    );
    assert!(reason.ends_with('…'), "{reason}");
    let (reason, _) = dead_letter_of(
        &Rejection::new(
            questline::core::reject::RejectKind::Field,
            "x".repeat(900_000),
            None,
            None,
            "default",
        ),
        b"{}",
    );
    assert_eq!(reason.len(), limits::MAX_REASON_BYTES);
}
