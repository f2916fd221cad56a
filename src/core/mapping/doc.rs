//! A record's JSON as the mapping reads it: strings and member names borrowed from the
//! record's bytes.
//!
//! A mapping reads a handful of a record's members. Parsed into serde_json's `Value`, a record
//! cost a `String` for every member name and every string value and a B-tree node for every
//! object before the mapping read any of them: most of the time of mapping a record
//! (`cargo bench --bench mapping`). A [`Doc`] borrows each string without escapes from the
//! bytes and keeps an object's members in one vector, in the record's order.
//!
//! serde_json still parses the bytes, so what is JSON, the nesting limit and the error
//! messages are serde_json's, and a member found twice reads as `Value` reads it: the last
//! one wins. Values that leave the mapping (an action's `params` and `actionType`) become
//! `Value`s again ([`Doc::to_value`]).

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// A parsed JSON value borrowing from the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Doc<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Doc<'a>>),
    /// Members in the record's order, duplicates included ([`Doc::get`] reads the last).
    Object(Vec<(Cow<'a, str>, Doc<'a>)>),
}

impl<'a> Doc<'a> {
    /// Parses one JSON value, borrowing from `bytes`. Trailing characters other than
    /// whitespace are an error, as for `serde_json::from_slice::<Value>`.
    ///
    /// Bytes that are UTF-8 as a whole, as JSON must be, are checked once and parsed as text:
    /// parsed as bytes, each string was checked on its own as it was read (a record's dozen
    /// of them: 2 % of the record step's instructions, callgrind). Other bytes are parsed as
    /// bytes, so that their error is serde_json's, where it is found.
    pub(crate) fn parse(bytes: &'a [u8]) -> serde_json::Result<Doc<'a>> {
        match std::str::from_utf8(bytes) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(bytes),
        }
    }

    /// A document that borrows the strings of an already parsed `value` (the sidecar's
    /// requests arrive as `Value`s).
    pub(crate) fn borrowing(value: &'a Value) -> Doc<'a> {
        Doc::from_value(value, &|text| Cow::Borrowed(text))
    }

    /// `value` with each member name and string made by `text`.
    fn from_value<'v>(value: &'v Value, text: &impl Fn(&'v str) -> Cow<'a, str>) -> Doc<'a> {
        match value {
            Value::Null => Doc::Null,
            Value::Bool(b) => Doc::Bool(*b),
            Value::Number(n) => Doc::Number(n.clone()),
            Value::String(s) => Doc::String(text(s)),
            Value::Array(items) => {
                Doc::Array(items.iter().map(|v| Doc::from_value(v, text)).collect())
            }
            Value::Object(members) => Doc::Object(
                members
                    .iter()
                    .map(|(k, v)| (text(k), Doc::from_value(v, text)))
                    .collect(),
            ),
        }
    }

    /// The member `key` of an object: the last one of that name, as in a `Value`.
    pub(crate) fn get(&self, key: &str) -> Option<&Doc<'a>> {
        match self {
            Doc::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The element `index` of an array.
    pub(crate) fn element(&self, index: usize) -> Option<&Doc<'a>> {
        match self {
            Doc::Array(items) => items.get(index),
            _ => None,
        }
    }

    /// The same value as a `Value`, owning its strings.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Doc::Null => Value::Null,
            Doc::Bool(b) => Value::Bool(*b),
            Doc::Number(n) => Value::Number(n.clone()),
            Doc::String(s) => Value::String(s.to_string()),
            Doc::Array(items) => Value::Array(items.iter().map(Doc::to_value).collect()),
            Doc::Object(members) => Value::Object(Self::object_map(members)),
        }
    }

    /// An object's members as a `Value` map: a later duplicate replaces an earlier one.
    pub(crate) fn object_map(members: &[(Cow<'a, str>, Doc<'a>)]) -> Map<String, Value> {
        members
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_value()))
            .collect()
    }

    /// What kind of value this is, as errors name it (the words `decimal::json_type_name`
    /// uses for a `Value`).
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Doc::Null => "null",
            Doc::Bool(_) => "a boolean",
            Doc::Number(_) => "a number",
            Doc::String(_) => "a string",
            Doc::Array(_) => "an array",
            Doc::Object(_) => "an object",
        }
    }
}

impl Doc<'static> {
    /// A document owning a copy of `value`: a mapping's constants, defaults and value maps.
    pub(crate) fn owned(value: &Value) -> Doc<'static> {
        Doc::from_value(value, &|text| Cow::Owned(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Doc<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

/// Room for a typical action's members, so its object is allocated once.
const MEMBERS_PRESIZED: usize = 8;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Doc<'de>, E> {
        Ok(Doc::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Doc<'de>, E> {
        Ok(Doc::Number(v.into()))
    }

    /// As `Value` does: a float that is no JSON number (never from JSON text) is null.
    fn visit_f64<E>(self, v: f64) -> Result<Doc<'de>, E> {
        Ok(Number::from_f64(v).map_or(Doc::Null, Doc::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Borrowed(v)))
    }

    /// A string with escapes: serde_json hands over a transient copy.
    fn visit_str<E>(self, v: &str) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Doc<'de>, E> {
        Ok(Doc::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_none<E>(self) -> Result<Doc<'de>, E> {
        Ok(Doc::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Doc<'de>, D::Error> {
        Doc::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(MEMBERS_PRESIZED));
        while let Some(MemberName(name)) = map.next_key()? {
            members.push((name, map.next_value()?));
        }
        Ok(Doc::Object(members))
    }
}

/// An object's member name, borrowed when it has no escapes (serde's own `Cow<str>` always
/// copies).
struct MemberName<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = MemberName<'de>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E>(self, v: String) -> Result<MemberName<'de>, E> {
                Ok(MemberName(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Every kind of value, escapes in names and strings, and nesting: the same `Value` as
    /// serde_json's own parse.
    #[test]
    fn parses_as_value_does() {
        let text = r#"{"a": [1, -2, 3.5, 1.5e10, true, null, "x"], "b\"q": {"c": "line\nbreak"},
            "big": 18446744073709551615, "neg": -9223372036854775808, "e": {}, "f": []}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(Doc::parse(text.as_bytes()).unwrap().to_value(), expected);
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let doc = Doc::parse(br#"{"plain": "v", "esc\u0061ped": "a\tb"}"#).unwrap();
        let Doc::Object(members) = &doc else {
            panic!("an object")
        };
        assert!(matches!(&members[0].0, Cow::Borrowed("plain")));
        assert!(matches!(&members[0].1, Doc::String(Cow::Borrowed("v"))));
        assert!(matches!(&members[1].0, Cow::Owned(name) if name == "escaped"));
        assert!(matches!(&members[1].1, Doc::String(Cow::Owned(s)) if s == "a\tb"));
    }

    /// The last of duplicate members wins, as when serde_json builds a map.
    #[test]
    fn the_last_duplicate_wins() {
        let text = br#"{"k": 1, "other": 2, "k": 3}"#;
        let doc = Doc::parse(text).unwrap();
        assert_eq!(doc.get("k"), Some(&Doc::Number(3.into())));
        let value: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(doc.to_value(), value);
    }

    /// Errors are serde_json's own, word for word, nesting limit included.
    #[test]
    fn errors_are_serde_jsons() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        for text in [
            "",
            "{",
            "{\"a\" 1}",
            "[1,]",
            "1 2",
            "\"\\x\"",
            deep.as_str(),
        ] {
            let ours = Doc::parse(text.as_bytes()).unwrap_err().to_string();
            let theirs = serde_json::from_str::<Value>(text).unwrap_err().to_string();
            assert_eq!(ours, theirs, "{text:?}");
        }
    }

    #[test]
    fn owned_and_borrowing_copies_round_trip() {
        let value = json!({"a": [1, "two", {"three": null}], "b": false});
        assert_eq!(Doc::owned(&value).to_value(), value);
        assert_eq!(Doc::borrowing(&value).to_value(), value);
    }

    proptest! {
        /// Any bytes: parsed or refused exactly as serde_json parses or refuses them into a
        /// `Value`, never a panic.
        #[test]
        fn any_bytes_parse_as_value_does(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let ours = Doc::parse(&bytes).map(|d| d.to_value()).map_err(|e| e.to_string());
            let theirs = serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string());
            prop_assert_eq!(ours, theirs);
        }

        /// JSON-shaped text (members, escapes, duplicates, nesting): the same value.
        #[test]
        fn json_text_parses_as_value_does(text in r#"\{("[a-c\\"]{0,3}": ?(-?[0-9]{1,25}(\.[0-9]{1,3})?|"[a-z\\n]{0,4}"|true|null|\[[0-9,]{0,6}\]|\{"d":1\}), ?){0,5}"z": 0\}"#) {
            let ours = Doc::parse(text.as_bytes()).map(|d| d.to_value()).map_err(|e| e.to_string());
            let theirs = serde_json::from_str::<Value>(&text).map_err(|e| e.to_string());
            prop_assert_eq!(ours, theirs);
        }
    }
}
