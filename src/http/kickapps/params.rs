//! A KickApps call's parameters, from wherever the client put them.
//!
//! The seed's methods take form-style parameters (`t`, `user_id`, `actionId` …). A GET sends
//! them in the query string; a POST in the query string, the body, or both — a form
//! (`application/x-www-form-urlencoded`, also when no `Content-Type` is sent) or a JSON object
//! (`application/json`). Names are matched exactly, as KickApps did. A name given twice
//! (twice in one place, or in the query and the body) is refused with the parameter's own
//! code when the method reads it (so the token is still checked first): which of two values a
//! client meant cannot be guessed, and taking either would act on a value the client may not
//! have meant.

use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

use super::answer::{codes, KickError};
use crate::http::request::form_urlencoded_pairs;

/// The parameters of one call, by name; values are JSON (strings from a query or a form).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: Map<String, Value>,
    /// Names given more than once: refused when read.
    twice: BTreeSet<String>,
}

/// The error code the seed gives a bad value of `name`; questline's own for the rest.
pub fn code_of(name: &str) -> u16 {
    match name {
        "t" => codes::INVALID_TOKEN,
        "user_id" => codes::INVALID_USER,
        "actionId" => codes::INVALID_ACTION,
        "location" => codes::LOCATION_BLANK,
        "quantity" => codes::QUANTITY_NOT_INTEGER,
        _ => codes::BAD_REQUEST,
    }
}

impl Params {
    /// The query string's parameters and, when there is one, the body's.
    pub fn read(
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Params, KickError> {
        let mut params = Params::default();
        for (name, value) in form_urlencoded_pairs(query.unwrap_or_default()) {
            params.insert(name, Value::String(value));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(params);
        }
        if is_json(headers) {
            let doc: Value = serde_json::from_slice(body).map_err(|e| {
                KickError::new(codes::BAD_REQUEST, format!("body: not valid JSON ({e})"))
            })?;
            let Value::Object(map) = doc else {
                return Err(KickError::new(
                    codes::BAD_REQUEST,
                    "body: expected a JSON object of the method's parameters",
                ));
            };
            for (name, value) in map {
                params.insert(name, value);
            }
        } else {
            let text = std::str::from_utf8(body).map_err(|_| {
                KickError::new(
                    codes::BAD_REQUEST,
                    "body: a form body must be UTF-8 text (send application/x-www-form-urlencoded or application/json)",
                )
            })?;
            for (name, value) in form_urlencoded_pairs(text.trim()) {
                params.insert(name, Value::String(value));
            }
        }
        Ok(params)
    }

    fn insert(&mut self, name: String, value: Value) {
        if self.values.contains_key(&name) {
            self.twice.insert(name);
        } else {
            self.values.insert(name, value);
        }
    }

    /// The value of `name`, if given (blank included); an error when it was given twice.
    pub fn get(&self, name: &str) -> Result<Option<&Value>, KickError> {
        if self.twice.contains(name) {
            return Err(KickError::new(
                code_of(name),
                format!("{name}: given more than once"),
            ));
        }
        Ok(self.values.get(name))
    }

    /// The text of `name`; `None` when absent, null or blank. Numbers are text (an id sent as
    /// a JSON number); any other JSON value is refused with the parameter's code.
    pub fn text(&self, name: &str) -> Result<Option<String>, KickError> {
        match self.get(name)? {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(KickError::new(
                code_of(name),
                format!("{name}: expected a string"),
            )),
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            let media = media.trim().to_ascii_lowercase();
            media == "application/json" || media.ends_with("+json")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn json() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    #[test]
    fn query_form_and_json_are_read_alike() {
        let p = Params::read(
            Some("t=tok&user_id=7&location=forum%20a"),
            &HeaderMap::new(),
            b"",
        )
        .unwrap();
        assert_eq!(p.text("user_id").unwrap().as_deref(), Some("7"));
        assert_eq!(p.text("location").unwrap().as_deref(), Some("forum a"));
        let p = Params::read(
            Some("t=tok"),
            &HeaderMap::new(),
            b"user_id=7&actionId=post_comment&quantity=-2",
        )
        .unwrap();
        assert_eq!(p.text("t").unwrap().as_deref(), Some("tok"));
        assert_eq!(p.text("quantity").unwrap().as_deref(), Some("-2"));
        let p = Params::read(
            None,
            &json(),
            br#"{"t": "tok", "user_id": 7, "quantity": 2}"#,
        )
        .unwrap();
        assert_eq!(p.text("user_id").unwrap().as_deref(), Some("7"));
        assert_eq!(p.get("quantity").unwrap(), Some(&Value::from(2)));
        assert_eq!(p.text("missing").unwrap(), None);
    }

    #[test]
    fn a_name_given_twice_is_refused_with_its_code_when_read() {
        let twice = |query: &str, body: &[u8], name: &str| {
            let p = Params::read(Some(query), &HeaderMap::new(), body).unwrap();
            p.text(name).unwrap_err()
        };
        let e = twice("user_id=1&user_id=2", b"", "user_id");
        assert_eq!(
            (e.code, e.message.as_str()),
            (13, "user_id: given more than once")
        );
        assert_eq!(twice("t=a", b"t=b", "t").code, 1);
        assert_eq!(twice("location=a", b"location=a", "location").code, 8);
        assert_eq!(
            twice("userActionId=1&userActionId=1", b"", "userActionId").code,
            900
        );
        // The others are still read.
        let p = Params::read(Some("t=a&x=1&x=2"), &HeaderMap::new(), b"").unwrap();
        assert_eq!(p.text("t").unwrap().as_deref(), Some("a"));
    }

    #[test]
    fn bodies_that_are_neither_are_refused() {
        let e = Params::read(None, &json(), b"[1]").unwrap_err();
        assert_eq!(e.code, 900);
        assert!(e.message.starts_with("body:"), "{}", e.message);
        assert_eq!(Params::read(None, &json(), b"{").unwrap_err().code, 900);
        assert_eq!(
            Params::read(None, &HeaderMap::new(), &[0xff, 0xfe])
                .unwrap_err()
                .code,
            900
        );
        let p = Params::read(None, &json(), br#"{"actionId": {"a": 1}}"#).unwrap();
        assert_eq!(p.text("actionId").unwrap_err().code, 10);
    }
}
