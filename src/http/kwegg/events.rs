//! `POST /core/user/tenant/event/occurence` (the seed's spelling): an event occurrence into the
//! commands topic, like AddAction.
//!
//! The body `{"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {"duration": 20}}}`
//! becomes the action `{tenant, userId, triggerId: "WATCHED_VIDEO", params}` of the token's
//! tenant, checked with the worker's own [`decode::resolve_action`] before it is submitted: an
//! event the tenant does not define, or parameters that do not fit its definition (a mandatory
//! one missing, a wrong type), is a 400 naming `event.name` or `event.params.<name>` — nothing
//! that would only become a dead letter is accepted. The answer is sent once the log has
//! the action; the rules pay when the worker evaluates it, in order with the user's other
//! actions, so the balance may take a moment to show it.
//!
//! `event.id`, when sent, is the occurrence's idempotency key (the action's `actionId`): a
//! retry with the same id is recognised and pays nothing twice. Without it a retry is a second
//! occurrence.

use axum::extract::State;
use axum::Json;
use serde_json::{Map, Value};
use smol_str::SmolStr;
use std::sync::Arc;
use utoipa::ToSchema;

use super::access::Authorized;
use super::body;
use super::envelope::{ok, Envelope, ErrorBody, KweggError};
use super::TokenHeaders;
use crate::core::catalog::{Catalog, ResolveError};
use crate::core::decimal::json_type_name;
use crate::core::decode::{self, ActionError};
use crate::core::model::{Action, TriggerKey};
use crate::http::actions::submit;
use crate::http::error::ApiError;
use crate::http::request::{LimitedBody, MAX_USER_ID_LEN};
use crate::http::AppState;
use crate::pipeline::commands::Command;
use rust_decimal::Decimal;

/// The body of an event occurrence (documentation; the handler reads the raw JSON).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct OccurrenceBody {
    /// The token's user.
    #[schema(example = "12")]
    user_id: String,
    event: OccurrenceEvent,
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct OccurrenceEvent {
    /// An event of the tenant's catalog (`[[events]]`), exactly as written there.
    #[schema(example = "WATCHED_VIDEO")]
    name: String,
    /// The event's parameters; mandatory ones must be present, each of its declared type.
    #[schema(value_type = Option<Object>, example = json!({"duration": 20}))]
    params: Option<Value>,
    /// Idempotency key of this occurrence (1–256 characters): a retry with it pays once.
    id: Option<String>,
}

/// Builds the action an occurrence stands for, checked against `tenant`'s catalog.
pub fn parse_occurrence(
    catalog: &Catalog,
    tenant: &str,
    body: &Map<String, Value>,
) -> Result<Action, KweggError> {
    let user_id = body::user_id(body)?;
    let event = match body.get("event") {
        None | Some(Value::Null) => return Err(KweggError::invalid("event", "event: is required")),
        Some(Value::Object(event)) => event,
        Some(other) => {
            return Err(KweggError::invalid(
                "event",
                format!("event: expected an object, found {}", json_type_name(other)),
            ))
        }
    };
    let name = match event.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_string(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(KweggError::invalid("event.name", "event.name: is required"))
        }
        Some(other) => {
            return Err(KweggError::invalid(
                "event.name",
                format!(
                    "event.name: expected a string, found {}",
                    json_type_name(other)
                ),
            ))
        }
    };
    let params = match event.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(other) => {
            return Err(KweggError::invalid(
                "event.params",
                format!(
                    "event.params: expected an object, found {}",
                    json_type_name(other)
                ),
            ))
        }
    };
    let action_id = body::text(event, "id", "event.id")?;
    if action_id
        .as_ref()
        .is_some_and(|id| id.chars().count() > MAX_USER_ID_LEN)
    {
        return Err(KweggError::invalid(
            "event.id",
            format!("event.id: must be at most {MAX_USER_ID_LEN} characters"),
        ));
    }
    let mut action = Action::new(user_id, TriggerKey::Name(name.clone()), Decimal::ONE);
    action.tenant = tenant.into();
    action.action_id = action_id.map(SmolStr::from);
    action.params = params;
    match decode::resolve_action(catalog, &action) {
        Ok(_) => Ok(action),
        Err(ActionError::Unknown(ResolveError::UnknownTrigger(_))) => Err(KweggError::invalid(
            "event.name",
            format!(
                "event.name: '{}' is not an event of this tenant",
                crate::http::request::clip(&name)
            ),
        )),
        Err(e @ ActionError::Param { .. }) => {
            let field = format!("event.{}", e.field());
            Err(KweggError::invalid(&field, format!("event.{e}")))
        }
        // The license key's tenant is checked against the catalog at startup.
        Err(e @ ActionError::Unknown(ResolveError::UnknownTenant(_))) => Err(KweggError::from(
            ApiError::new(crate::http::error::Kind::Internal, e.to_string()),
        )),
    }
}

/// Registers an event occurrence of the token's user.
#[utoipa::path(
    post,
    path = "/core/user/tenant/event/occurence",
    tag = "kwegg",
    params(TokenHeaders),
    request_body = OccurrenceBody,
    responses(
        (status = 200, description = "In the log; the event's rules pay when the worker evaluates it", body = Envelope<Option<Object>>,
         example = json!({"success": true, "message": "Event triggered successfully", "data": null})),
        (status = 400, description = "A field is missing or invalid: `userId`, `event`, `event.name` (not an event of the tenant), `event.params.<name>` (mandatory and missing, or of the wrong type), `event.id`; `data.field` names it", body = ErrorBody),
        (status = 401, description = "`License-Key` or the access token is missing or refused", body = ErrorBody),
        (status = 403, description = "`userId` is not the token's user", body = ErrorBody),
        (status = 413, description = "The body exceeds `http.max_body_bytes`", body = ErrorBody),
        (status = 503, description = "The command log is unavailable; retry with the same `event.id`", body = ErrorBody),
    )
)]
pub async fn occurrence(
    State(app): State<Arc<AppState>>,
    caller: Authorized,
    body: Result<LimitedBody, ApiError>,
) -> Result<Json<Envelope<Option<Value>>>, KweggError> {
    let map = body::object(body)?;
    let action = parse_occurrence(&app.catalog(), &caller.tenant, &map)?;
    caller.same_user("userId", Some(&action.user_id))?;
    submit(&app, Command::AddAction(action)).await?;
    Ok(ok("Event triggered successfully", None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let kwegg = include_str!("../../../examples/catalog/kwegg.toml");
        Catalog::from_sources(&[("kwegg.toml", kwegg)]).unwrap()
    }

    fn parse(body: Value) -> Result<Action, KweggError> {
        let Value::Object(map) = body else {
            unreachable!()
        };
        parse_occurrence(&catalog(), "kwegg", &map)
    }

    fn field_of(body: Value) -> String {
        let e = parse(body).unwrap_err();
        assert_eq!(e.status.as_u16(), 400, "{e}");
        let field = e.field.unwrap();
        assert!(
            e.message.starts_with(&field),
            "{} does not start with {field}",
            e.message
        );
        field
    }

    #[test]
    fn an_occurrence_is_an_action_of_the_tenant() {
        let action = parse(json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {"duration": 20}, "id": "occ-1"}})).unwrap();
        assert_eq!(action.tenant, "kwegg");
        assert_eq!(action.user_id, "12");
        assert_eq!(action.trigger_id, TriggerKey::Name("WATCHED_VIDEO".into()));
        assert_eq!(action.params["duration"], 20);
        assert_eq!(action.action_id.as_deref(), Some("occ-1"));
        assert_eq!(action.value, Decimal::ONE);
        // Params may be left out when the event has no mandatory one.
        let action = parse(json!({"userId": 12, "event": {"name": "DAILY_CHECK_IN"}})).unwrap();
        assert!(action.params.is_empty());
        assert_eq!(action.action_id, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            field_of(json!({"event": {"name": "WATCHED_VIDEO"}})),
            "userId"
        );
        assert_eq!(field_of(json!({"userId": "12"})), "event");
        assert_eq!(
            field_of(json!({"userId": "12", "event": "WATCHED_VIDEO"})),
            "event"
        );
        assert_eq!(field_of(json!({"userId": "12", "event": {}})), "event.name");
        assert_eq!(
            field_of(json!({"userId": "12", "event": {"name": 7}})),
            "event.name"
        );
        assert_eq!(
            field_of(json!({"userId": "12", "event": {"name": "product_viewed"}})),
            "event.name"
        );
        assert_eq!(
            field_of(json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": []}})),
            "event.params"
        );
        assert_eq!(
            field_of(json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {}}})),
            "event.params.duration"
        );
        assert_eq!(
            field_of(
                json!({"userId": "12", "event": {"name": "WATCHED_VIDEO", "params": {"duration": "long"}}})
            ),
            "event.params.duration"
        );
        assert_eq!(
            field_of(json!({"userId": "12", "event": {"name": "DAILY_CHECK_IN", "id": {"a": 1}}})),
            "event.id"
        );
        assert_eq!(
            field_of(
                json!({"userId": "12", "event": {"name": "DAILY_CHECK_IN", "id": "x".repeat(257)}})
            ),
            "event.id"
        );
    }
}
