//! `POST /api/v1/Integration/AddAction`: validate an action and put it in the commands log.
//!
//! The sidecar never evaluates or writes state (docs/design.md, "Data flow"): it checks the body with the very
//! mapping code the worker uses for native records ([`Mapping::native`]), resolves the
//! trigger against the catalog, and submits [`Command::AddAction`]. The seed's success body
//! is sent only after the sink returned, i.e. once the command is durably in the log; the
//! evaluation happens later, in order with the user's other actions.
//!
//! Field names are matched case-insensitively at the top level (`UserId` as the seed's table
//! spells it, `userId` as its example does; the exact camelCase key wins when both are sent),
//! because the seed's stack (ASP.NET) binds JSON that way and its clients rely on it.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{Map, Value};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::error::{ApiError, Kind, StatusBody};
use super::request::{self, LimitedBody};
use super::AppState;
use crate::core::catalog::{Catalog, ResolveError};
use crate::core::decode::{self, ActionError};
use crate::core::mapping::{CompiledMapping, Mapping};
use crate::core::model::Action;
use crate::pipeline::commands::Command;

/// How long a submit may take before the client gets 503 (the sink has its own timeouts;
/// this bounds a request whatever the sink does). A command that lands after the timeout is
/// still evaluated: clients retry with the same `actionId` / `claimId` to stay exactly-once.
pub const SUBMIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The native action's fields, as the body's keys are canonicalised to them.
const FIELDS: [&str; 9] = [
    "userId",
    "triggerId",
    "value",
    "actionId",
    "occurredAt",
    "params",
    "location",
    "tenant",
    "actionType",
];

/// The native mapping, compiled once for every call.
static NATIVE: LazyLock<CompiledMapping> = LazyLock::new(|| Mapping::native().into());

/// The body of `AddAction` (documentation; the handler validates the raw JSON).
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct AddActionBody {
    /// The user (the seed: "the phone number of the user performing the action").
    user_id: String,
    /// A trigger id of the catalog (1 Earned Points … 6 Hit Tier) or a trigger name.
    #[schema(value_type = Object, example = 1)]
    trigger_id: Value,
    /// Decimal, as a JSON number or a string; default 1; may be negative.
    #[schema(value_type = Option<f64>, example = 1000)]
    value: Option<Value>,
    /// Idempotency key, deduplicated per user: send it to make retries harmless.
    action_id: Option<String>,
    /// RFC 3339 event time; defaults to the log record's timestamp.
    occurred_at: Option<String>,
    /// Typed event parameters for rules.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
    /// KickApps-style location (action + location is the compound key).
    location: Option<String>,
    /// The tenant; defaults to `X-Tenant`, else `default`.
    tenant: Option<String>,
    /// Not used (the seed); carried through.
    #[schema(value_type = Option<Object>)]
    action_type: Option<Value>,
}

/// Renames keys that match a native field case-insensitively to its exact name.
fn canonical_keys(map: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(map.len());
    for (key, value) in map {
        match FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&key)) {
            Some(field) if *field == key => {
                out.insert(key, value);
            }
            Some(field) => {
                if !out.contains_key(*field) {
                    out.insert((*field).to_string(), value);
                }
            }
            None => {
                out.insert(key, value);
            }
        }
    }
    out
}

/// Validates an `AddAction` body into an action whose trigger exists in its tenant.
pub fn parse_action(
    catalog: &Catalog,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Action, ApiError> {
    let map = super::request::json_object(body)?;
    let mut map = canonical_keys(map);
    if !map.contains_key("tenant") {
        if let Some(tenant) = request::tenant_header(headers)? {
            map.insert("tenant".into(), Value::String(tenant));
        }
    }
    let action = NATIVE
        .apply_value(&Value::Object(map))
        .map_err(|e| ApiError::invalid(e.field.clone(), e.to_string()))?;
    request::user_id("userId", Some(&action.user_id))?;
    match decode::resolve_action(catalog, &action) {
        Ok(_) => Ok(action),
        Err(e @ ActionError::Unknown(ResolveError::UnknownTrigger(_))) => Err(ApiError::invalid(
            "triggerId",
            format!("{e} in the catalog"),
        )),
        Err(e) => Err(ApiError::invalid(e.field(), e.to_string())),
    }
}

/// Submits a command, bounded by [`SUBMIT_TIMEOUT`]; 503 when the log does not take it.
pub async fn submit(app: &AppState, command: Command) -> Result<(), ApiError> {
    match tokio::time::timeout(
        SUBMIT_TIMEOUT,
        app.commands
            .submit(&command, super::observe::request_trace().as_ref()),
    )
    .await
    {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::new(
            Kind::Unavailable,
            format!(
                "the command log did not acknowledge within {} s; retry with the same id",
                SUBMIT_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// Accepts a user action: 200 with the seed's success body once it is in the log.
#[utoipa::path(
    post,
    path = "/api/v1/Integration/AddAction",
    tag = "integration",
    request_body = AddActionBody,
    params(("X-Tenant" = Option<String>, Header, description = "Tenant when the body has none")),
    responses(
        (status = 200, description = "In the log; evaluated in order with the user's other actions", body = StatusBody,
         example = json!({"message": "Process completed successfully", "statusCode": 1, "statusName": "Successfully"})),
        (status = 400, description = "A field is missing or invalid (unknown trigger, value not a decimal …); `field` names it", body = StatusBody),
        (status = 401, description = "Authentication is configured and the signature is missing, stale or wrong", body = StatusBody),
        (status = 413, description = "The body exceeds `http.max_body_bytes`", body = StatusBody),
        (status = 503, description = "The command log is unavailable; retry with the same `actionId`", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn add_action(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Json<StatusBody>, ApiError> {
    let action = parse_action(&app.catalog(), &headers, &body)?;
    submit(&app, Command::AddAction(action)).await?;
    Ok(Json(StatusBody::success()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_match_case_insensitively_and_exact_wins() {
        let map = json!({"UserId": "a", "TRIGGERID": 1, "userId": "b", "Value": 5, "extra": true});
        let Value::Object(map) = map else {
            unreachable!()
        };
        let out = canonical_keys(map);
        assert_eq!(out["userId"], "b");
        assert_eq!(out["triggerId"], 1);
        assert_eq!(out["value"], 5);
        assert_eq!(out["extra"], true);
        assert!(!out.contains_key("UserId"));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn catalog() -> Catalog {
            Catalog::from_sources(&[("c.toml", "[[triggers]]\nid = 1\nname = \"t\"\n")]).unwrap()
        }

        proptest! {
            /// Whatever the bytes, the body parser answers Ok or a 400 naming a field.
            #[test]
            fn any_body_is_accepted_or_rejected_by_name(body in prop::collection::vec(any::<u8>(), 0..200)) {
                if let Err(e) = parse_action(&catalog(), &HeaderMap::new(), &body) {
                    prop_assert_eq!(e.kind, Kind::InvalidInput);
                    prop_assert!(e.field.is_some());
                }
            }

            #[test]
            fn any_json_object_is_accepted_or_rejected_by_name(
                user in prop::option::of(".{0,300}"),
                trigger in prop::option::of(prop_oneof![any::<i64>().prop_map(Value::from), ".{0,10}".prop_map(Value::from)]),
                value in prop::option::of(prop_oneof![any::<f64>().prop_map(Value::from), ".{0,10}".prop_map(Value::from)]),
            ) {
                let mut map = Map::new();
                if let Some(u) = user { map.insert("userId".into(), Value::from(u)); }
                if let Some(t) = trigger { map.insert("triggerId".into(), t); }
                if let Some(v) = value { map.insert("value".into(), v); }
                let body = serde_json::to_vec(&Value::Object(map)).unwrap();
                if let Err(e) = parse_action(&catalog(), &HeaderMap::new(), &body) {
                    prop_assert_eq!(e.kind, Kind::InvalidInput);
                    let field = e.field.unwrap();
                    prop_assert!(["userId", "triggerId", "value"].contains(&field.as_str()), "{}", field);
                }
            }
        }
    }
}
