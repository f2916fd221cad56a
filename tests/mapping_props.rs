//! The shipped mappings and the decoder never panic, whatever the bytes (property-based
//! fuzzing), and a good record always maps to what it says.

mod engine_support;

use engine_support::*;
use proptest::prelude::*;
use questline::core::decode;
use questline::core::mapping::Mapping;
use questline::core::model::TriggerKey;
use serde_json::{json, Value};

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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn no_bytes_make_a_mapping_or_the_decoder_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let catalog = example_catalog();
        for m in shipped() {
            let _ = m.apply(&bytes);
            let _ = decode::decode(&m, &catalog, &bytes);
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
            let _ = decode::decode(&m, &catalog, &bytes);
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
}
