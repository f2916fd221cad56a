//! Reading admin request bodies: a JSON object whose every field is checked by name, so an
//! error always names the field at fault and an unknown field is refused, not ignored.

use serde_json::{Map, Value};
use toml_edit::{value, Table};

use crate::http::error::ApiError;

/// The object of a body, with the fields the endpoint accepts.
pub struct Body {
    fields: Map<String, Value>,
}

impl Body {
    pub fn parse(bytes: &[u8], accepted: &[&str]) -> Result<Body, ApiError> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| ApiError::invalid("body", format!("body: not JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(ApiError::invalid("body", "body: must be a JSON object"));
        };
        if let Some(unknown) = fields.keys().find(|k| !accepted.contains(&k.as_str())) {
            return Err(ApiError::invalid(
                unknown.as_str(),
                format!(
                    "{unknown}: unknown field; accepted: {}",
                    accepted.join(", ")
                ),
            ));
        }
        Ok(Body { fields })
    }

    pub fn has(&self, name: &str) -> bool {
        self.fields.contains_key(name)
    }

    pub fn text(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= 4096 => Ok(Some(s.clone())),
            Some(Value::String(_)) => Err(ApiError::invalid(name, "at most 4096 bytes")),
            Some(_) => Err(ApiError::invalid(name, "must be a string")),
        }
    }

    pub fn required_text(&self, name: &str) -> Result<String, ApiError> {
        match self.text(name)? {
            Some(s) if !s.trim().is_empty() => Ok(s),
            _ => Err(ApiError::invalid(name, "is required and must not be blank")),
        }
    }

    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid(name, "must be true or false")),
        }
    }

    /// A whole number from 0 to `max`.
    pub fn count(&self, name: &str, max: u64) -> Result<Option<u64>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v <= max => Ok(Some(v)),
                _ => Err(ApiError::invalid(
                    name,
                    format!("must be a whole number from 0 to {max}"),
                )),
            },
            Some(_) => Err(ApiError::invalid(name, "must be a number")),
        }
    }

    pub fn texts(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::invalid(
                        format!("{name}[{i}]"),
                        "must be a string",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(ApiError::invalid(name, "must be an array of strings")),
        }
    }
}

/// The catalog entry fields a body sets, in TOML.
#[derive(Default)]
pub struct Entry(pub Table);

impl Entry {
    pub fn set(&mut self, key: &str, item: impl Into<toml_edit::Value>) {
        self.0.insert(key, value(item));
    }

    pub fn set_opt<V: Into<toml_edit::Value>>(&mut self, key: &str, item: Option<V>) {
        if let Some(v) = item {
            self.set(key, v);
        }
    }
}
