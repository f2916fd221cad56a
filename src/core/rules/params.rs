//! An occurrence's parameters read as their declared types, or a rejection naming the one at
//! fault.
//!
//! How JSON values map to the four types (producers differ in what they send, and a value in
//! a string is as common as a bare one):
//! - `integer`: a JSON number without a fractional part (`10`, `10.0`, `1e3`) or a string
//!   holding one (`"10"`); `10.5` or `"ten"` is the wrong type;
//! - `float`: any JSON number, or a string holding one, read exactly as a decimal (never
//!   through a binary float);
//! - `string`: a JSON string; a number or boolean is taken as its JSON text (`1234` → `"1234"`);
//! - `boolean`: `true` / `false`, or the strings `"true"` / `"false"`;
//! - `null` is the same as absent; arrays and objects are the wrong type for every type;
//! - numbers beyond a decimal's range (about ±7.9e28) are the wrong type, not an overflow.
//!
//! Parameters the event does not declare are ignored: producers may send more than the rules
//! look at.

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::borrow::Cow;

use crate::core::catalog::{ParamDef, ParamType};
use crate::core::decimal;

/// One parameter's value, of its declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue<'a> {
    Absent,
    Number(Decimal),
    Text(Cow<'a, str>),
    Bool(bool),
}

impl ParamValue<'_> {
    /// The seed's "is empty": not sent, `null`, or an empty string.
    pub fn is_empty(&self) -> bool {
        match self {
            ParamValue::Absent => true,
            ParamValue::Text(t) => t.is_empty(),
            _ => false,
        }
    }
}

/// Why an occurrence is not rewarded at all: its parameters do not fit the event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("parameter '{param}' is mandatory and missing")]
    Missing { param: String },
    #[error("parameter '{param}' must be {}, found {found}", expected_text(*.expected))]
    WrongType {
        param: String,
        expected: ParamType,
        /// The value as sent, cut to a readable length.
        found: String,
    },
}

impl ParamError {
    /// The parameter at fault, for the dead letter's `field`.
    pub fn param(&self) -> &str {
        match self {
            ParamError::Missing { param } | ParamError::WrongType { param, .. } => param,
        }
    }
}

fn expected_text(ty: ParamType) -> &'static str {
    match ty {
        ParamType::Integer => "an integer",
        ParamType::Float => "a number",
        ParamType::String => "a string",
        ParamType::Boolean => "true or false",
    }
}

/// How much of a wrong value a rejection quotes.
const QUOTED_CHARS: usize = 40;

/// Reads every declared parameter, in declaration order.
pub fn read<'a>(
    defs: &[ParamDef],
    params: &'a Map<String, Value>,
) -> Result<Vec<ParamValue<'a>>, ParamError> {
    let mut values = Vec::with_capacity(defs.len());
    for def in defs {
        let value = match params.get(&def.name) {
            None | Some(Value::Null) => ParamValue::Absent,
            Some(v) => typed(def.param_type, v).ok_or_else(|| ParamError::WrongType {
                param: def.name.clone(),
                expected: def.param_type,
                found: quote(v),
            })?,
        };
        if def.mandatory && value == ParamValue::Absent {
            return Err(ParamError::Missing {
                param: def.name.clone(),
            });
        }
        values.push(value);
    }
    Ok(values)
}

fn typed(ty: ParamType, v: &Value) -> Option<ParamValue<'_>> {
    match ty {
        ParamType::Integer => number(v)
            .filter(|n| n.fract().is_zero())
            .map(ParamValue::Number),
        ParamType::Float => number(v).map(ParamValue::Number),
        ParamType::String => match v {
            Value::String(s) => Some(ParamValue::Text(Cow::Borrowed(s))),
            Value::Number(n) => Some(ParamValue::Text(Cow::Owned(n.to_string()))),
            Value::Bool(b) => Some(ParamValue::Text(Cow::Borrowed(if *b {
                "true"
            } else {
                "false"
            }))),
            _ => None,
        },
        ParamType::Boolean => match v {
            Value::Bool(b) => Some(ParamValue::Bool(*b)),
            Value::String(s) if s == "true" => Some(ParamValue::Bool(true)),
            Value::String(s) if s == "false" => Some(ParamValue::Bool(false)),
            _ => None,
        },
    }
}

/// A JSON number or numeric string as an exact decimal; integers skip the text round trip.
fn number(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Decimal::from(i))
            } else if let Some(u) = n.as_u64() {
                Some(Decimal::from(u))
            } else {
                decimal::from_json(v).ok()
            }
        }
        Value::String(s) => decimal::parse_text(s.trim()).ok(),
        _ => None,
    }
}

fn quote(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(name: &str, ty: ParamType, mandatory: bool) -> ParamDef {
        ParamDef {
            name: name.into(),
            param_type: ty,
            mandatory,
        }
    }

    fn one(ty: ParamType, v: Value) -> Result<ParamValue<'static>, ParamError> {
        let params: &'static Map<String, Value> =
            Box::leak(Box::new(json!({ "p": v }).as_object().unwrap().clone()));
        read(&[def("p", ty, false)], params).map(|mut v| v.remove(0))
    }

    fn num(text: &str) -> ParamValue<'static> {
        ParamValue::Number(text.parse().unwrap())
    }

    #[test]
    fn integers_accept_whole_numbers_and_strings_holding_them() {
        for (v, want) in [
            (json!(10), "10"),
            (json!(10.0), "10"),
            (json!(-3), "-3"),
            (json!("10"), "10"),
            (json!(" 7 "), "7"),
            (json!("1e3"), "1000"),
            (json!(u64::MAX), "18446744073709551615"),
        ] {
            assert_eq!(
                one(ParamType::Integer, v.clone()).unwrap(),
                num(want),
                "{v}"
            );
        }
        for v in [
            json!(10.5),
            json!("ten"),
            json!(true),
            json!([1]),
            json!({"a": 1}),
            json!(1e300),
            json!("1e300"),
            json!("99999999999999999999999999999999"),
        ] {
            let err = one(ParamType::Integer, v.clone()).unwrap_err();
            assert!(
                matches!(&err, ParamError::WrongType { param, expected: ParamType::Integer, .. } if param == "p"),
                "{v}: {err}"
            );
        }
    }

    #[test]
    fn floats_are_exact_decimals() {
        assert_eq!(one(ParamType::Float, json!(0.1)).unwrap(), num("0.1"));
        assert_eq!(one(ParamType::Float, json!("2.50")).unwrap(), num("2.50"));
        assert_eq!(one(ParamType::Float, json!(3)).unwrap(), num("3"));
        assert!(one(ParamType::Float, json!("NaN")).is_err());
        assert!(one(ParamType::Float, json!(false)).is_err());
    }

    #[test]
    fn strings_take_numbers_and_booleans_as_their_text() {
        let text = |s: &str| ParamValue::Text(Cow::Owned(s.to_string()));
        assert_eq!(
            one(ParamType::String, json!("PRANK")).unwrap(),
            text("PRANK")
        );
        assert_eq!(one(ParamType::String, json!(1234)).unwrap(), text("1234"));
        assert_eq!(one(ParamType::String, json!(true)).unwrap(), text("true"));
        assert!(one(ParamType::String, json!(["a"])).is_err());
    }

    #[test]
    fn booleans_are_true_or_false() {
        assert_eq!(
            one(ParamType::Boolean, json!(true)).unwrap(),
            ParamValue::Bool(true)
        );
        assert_eq!(
            one(ParamType::Boolean, json!("false")).unwrap(),
            ParamValue::Bool(false)
        );
        for v in [json!(1), json!("yes"), json!("TRUE")] {
            assert!(one(ParamType::Boolean, v.clone()).is_err(), "{v}");
        }
    }

    #[test]
    fn null_is_absent_and_a_missing_mandatory_parameter_is_named() {
        assert_eq!(
            one(ParamType::Integer, Value::Null).unwrap(),
            ParamValue::Absent
        );
        let defs = [
            def("type", ParamType::String, false),
            def("duration", ParamType::Integer, true),
        ];
        for params in [json!({}), json!({"duration": null, "type": "x"})] {
            let err = read(&defs, params.as_object().unwrap()).unwrap_err();
            assert_eq!(err.param(), "duration");
            assert_eq!(
                err.to_string(),
                "parameter 'duration' is mandatory and missing"
            );
        }
        // Undeclared parameters are ignored.
        let params = json!({"duration": 3, "extra": [1, 2]});
        let values = read(&defs, params.as_object().unwrap()).unwrap();
        assert_eq!(values, vec![ParamValue::Absent, num("3")]);
    }

    #[test]
    fn a_wrong_value_is_quoted_shortly() {
        let long = "x".repeat(500);
        let err = one(ParamType::Integer, json!(long)).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("parameter 'p' must be an integer, found \"xxx"),
            "{message}"
        );
        assert!(message.chars().count() < 100, "{message}");
    }
}
