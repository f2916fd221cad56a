//! Reading Kwegg request bodies: the JSON object and its text fields, each failure a 400
//! naming the field as the seed spells it (`userId`, `event.name`, `offerId`).

use serde_json::{Map, Value};

use super::envelope::KweggError;
use crate::core::decimal::json_type_name;
use crate::http::error::ApiError;
use crate::http::request::{self, LimitedBody};

/// The body as a JSON object (a body over `http.max_body_bytes` is a 413).
pub fn object(body: Result<LimitedBody, ApiError>) -> Result<Map<String, Value>, KweggError> {
    let LimitedBody(bytes) = body?;
    Ok(request::json_object(&bytes)?)
}

/// An optional text field: a string (trimmed) or a number as written; `None` when absent,
/// null or blank.
pub fn text(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, KweggError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(KweggError::invalid(
            field,
            format!(
                "{field}: expected a string, found {}",
                json_type_name(other)
            ),
        )),
    }
}

/// The `userId` of a body: required, 1–256 characters.
pub fn user_id(map: &Map<String, Value>) -> Result<String, KweggError> {
    let user = text(map, "userId", "userId")?;
    Ok(request::user_id("userId", user.as_deref())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn user_ids_are_strings_or_numbers_and_required() {
        assert_eq!(user_id(&map(json!({"userId": " 12 "}))).unwrap(), "12");
        assert_eq!(user_id(&map(json!({"userId": 12}))).unwrap(), "12");
        for bad in [
            json!({}),
            json!({"userId": ""}),
            json!({"userId": null}),
            json!({"userId": [1]}),
        ] {
            let e = user_id(&map(bad)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("userId"));
            assert_eq!(e.status.as_u16(), 400);
        }
    }
}
