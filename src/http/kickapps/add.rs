//! `GET|POST /rest/user/action/add/{as}`: KickApps' AddUserAction, an action into the log.
//!
//! The parameters are read with the shipped KickApps mapping (`mappings/kickapps.toml`, compiled
//! in) — the one the worker applies to KickApps-shaped Kafka records — so the HTTP method and
//! the topic agree on every rule and error code: `user_id` (13), `actionId` (10), `location`
//! (8 when blank, 20 over 64 characters; with `actionId` the compound key), `quantity` (11;
//! any sign, 1 when left out; negative never takes progress below 0). The action is resolved
//! against the site's tenant with the worker's own [`decode::resolve_action`], so an action
//! the catalog does not know is error 10 here instead of a dead letter later.
//!
//! **Idempotency.** The answer's `userActionId` is the action's id, the one the worker
//! deduplicates on (a user's last 64 action ids): the client's `userActionId` parameter when
//! sent (as the Kafka mapping reads it), else a fresh UUID. The seed's parameters carry no
//! id, and two identical calls are, in KickApps, two actions (a user commenting twice in the
//! forum): an id derived from the parameters would drop the second. A client that retries
//! sends `userActionId`, and a retry with it counts once.
//!
//! **Disabled users.** The user's stored state is read first: a disabled user is error 48,
//! synchronously. The worker checks again when it evaluates the action (a user disabled
//! between the read and the evaluation gets a dead letter, not a count) — see
//! [`super::status`].
//!
//! **JSONP.** `callback` is refused (900): a JSONP answer is a script any site may include,
//! which defeats the same-origin policy; CORS (`kickapps.cors_origins`) lets a page of an
//! allowed origin call the method instead.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};
use utoipa::ToSchema;

use super::access::admin;
use super::answer::{codes, success, Failure, KickError, Success};
use super::params::{code_of, Params};
use crate::core::catalog::{Catalog, ResolveError};
use crate::core::decode::{self, ActionError};
use crate::core::mapping::{CompiledMapping, MapError};
use crate::core::model::{Action, UserKey};
use crate::http::actions::submit;
use crate::http::error::ApiError;
use crate::http::request::{clip, LimitedBody};
use crate::http::AppState;
use crate::pipeline::commands::Command;

/// The shipped KickApps mapping, the worker's for `kickapps.user-actions`.
const MAPPING: &str = include_str!("../../../mappings/kickapps.toml");

/// The parameters the mapping reads (the seed's, and `userActionId`).
const MAPPED: [&str; 5] = [
    "user_id",
    "actionId",
    "location",
    "quantity",
    "userActionId",
];

/// The KickApps mapping, parsed and compiled once; startup calls it, so an error here stops
/// the sidecar from starting rather than failing calls.
pub fn mapping() -> Result<&'static CompiledMapping, String> {
    static PARSED: OnceLock<Result<CompiledMapping, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            crate::files::parse_mapping("mappings/kickapps.toml", MAPPING)
                .map(CompiledMapping::from)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A success's fields (after `"status": 1`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Added {
    /// Always true: the action is in the log.
    pub added: bool,
    /// The action's id: the `userActionId` sent, else a fresh UUID. A retry with it counts once.
    #[schema(example = "comment-4711")]
    pub user_action_id: String,
}

/// The parameter a mapping error's action field came from.
fn param_of(field: &str) -> &str {
    match field {
        "userId" => "user_id",
        "triggerId" => "actionId",
        "value" => "quantity",
        "actionId" => "userActionId",
        other => other,
    }
}

fn mapping_error(e: MapError) -> KickError {
    let param = param_of(&e.field);
    let code = e
        .error_code
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or_else(|| code_of(param));
    KickError::new(code, format!("{param}: {}", e.reason))
}

/// The action a call stands for, checked against `tenant`'s catalog; its id minted when the
/// client sent none.
pub fn action_of(catalog: &Catalog, tenant: &str, params: &Params) -> Result<Action, KickError> {
    if !matches!(params.get("callback"), Ok(None)) {
        return Err(KickError::new(
            codes::BAD_REQUEST,
            "callback: JSONP is not offered (a script any site may include defeats the same-origin policy); \
             call from a page of an origin in kickapps.cors_origins instead",
        ));
    }
    let mut doc = Map::new();
    for name in MAPPED {
        if let Some(value) = params.get(name)? {
            doc.insert(name.to_string(), value.clone());
        }
    }
    let mapping = mapping().map_err(|e| KickError::new(codes::INTERNAL, e))?;
    let mut action = mapping
        .apply_value(&Value::Object(doc))
        .map_err(mapping_error)?;
    action.tenant = tenant.into();
    match decode::resolve_action(catalog, &action) {
        Ok(_) => {}
        Err(ActionError::Unknown(ResolveError::UnknownTrigger(_))) => {
            return Err(KickError::new(
                codes::INVALID_ACTION,
                format!(
                    "actionId: '{}' is not an action of this site{}",
                    clip(&action.trigger_id.to_string()),
                    action
                        .location
                        .as_deref()
                        .map(|l| format!(" at location '{}'", clip(l)))
                        .unwrap_or_default()
                ),
            ))
        }
        Err(e @ ActionError::Param { .. }) => {
            return Err(KickError::new(
                codes::INVALID_ACTION,
                format!("actionId: an earning-rule event this method cannot send ({e})"),
            ))
        }
        Err(e) => return Err(KickError::new(codes::INTERNAL, e.to_string())),
    }
    if action.action_id.is_none() {
        action.action_id = Some(uuid::Uuid::new_v4().to_string().into());
    }
    Ok(action)
}

/// Error 48 when the user's stored state says disabled.
pub async fn ensure_enabled(app: &AppState, tenant: &str, user_id: &str) -> Result<(), KickError> {
    let records = app
        .store
        .load_users(&[UserKey::new(tenant, user_id)])
        .await
        .map_err(|e| KickError::from(ApiError::from(e)))?;
    if records
        .into_iter()
        .flatten()
        .any(|record| record.state.disabled)
    {
        return Err(KickError::new(
            codes::USER_DISABLED,
            format!("user_id: user '{}' is disabled or blocked", clip(user_id)),
        ));
    }
    Ok(())
}

async fn add(
    app: &AppState,
    site: &str,
    params: Params,
) -> Result<Json<Success<Added>>, KickError> {
    let tenant = admin(&app.kickapps, site, &params)?;
    let action = action_of(&app.catalog(), tenant, &params)?;
    ensure_enabled(app, &action.tenant, &action.user_id).await?;
    let user_action_id = action.action_id.as_deref().unwrap_or_default().to_string();
    submit(app, Command::AddAction(action)).await?;
    Ok(success(Added {
        added: true,
        user_action_id,
    }))
}

/// AddUserAction with its parameters in the query string.
#[utoipa::path(
    get,
    path = "/rest/user/action/add/{as}",
    tag = "kickapps",
    params(
        ("as" = String, Path, description = "The site id (`kickapps.sites`)"),
        ("t" = String, Query, description = "An admin (webmaster / moderator) token of the site"),
        ("user_id" = String, Query, description = "The user credited with the action"),
        ("actionId" = String, Query, description = "The action (a trigger's `key` or id); with `location` the compound key"),
        ("location" = String, Query, description = "Where in the community, 1–64 characters"),
        ("quantity" = Option<i64>, Query, description = "An integer of any sign; 1 when left out"),
        ("userActionId" = Option<String>, Query, description = "questline: the action's idempotency id; a retry with it counts once"),
    ),
    responses(
        (status = 200, description = "In the log; the worker evaluates it in order with the user's other actions", body = Success<Added>,
         example = json!({"status": 1, "added": true, "userActionId": "comment-4711"})),
        (status = 400, description = "8, 10, 11, 13, 20: a parameter (also when given twice); 900: `callback`, a bad `userActionId` or body", body = Failure),
        (status = 401, description = "44: `t` missing; 1: not an admin token", body = Failure),
        (status = 403, description = "18: an admin token of another site", body = Failure),
        (status = 409, description = "48: the user is disabled or blocked", body = Failure),
        (status = 503, description = "903: the log or the store is unavailable; retry with the same `userActionId`", body = Failure),
    )
)]
pub async fn add_get(
    State(app): State<Arc<AppState>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Json<Success<Added>>, KickError> {
    let params = Params::read(query.as_deref(), &headers, b"")?;
    add(&app, &site, params).await
}

/// AddUserAction with its parameters in a form or JSON body (and the query string).
#[utoipa::path(
    post,
    path = "/rest/user/action/add/{as}",
    tag = "kickapps",
    params(("as" = String, Path, description = "The site id (`kickapps.sites`)")),
    request_body(
        description = "The GET's parameters as a form (`application/x-www-form-urlencoded`) or a JSON object",
        content(
            (Object = "application/x-www-form-urlencoded"),
            (Object = "application/json", example = json!({"t": "demo-admin-token", "user_id": "kick-1", "actionId": "post_comment", "location": "forum", "quantity": 1})),
        )
    ),
    responses(
        (status = 200, description = "In the log", body = Success<Added>),
        (status = 400, description = "8, 10, 11, 13, 20: a parameter (also when given twice); 900: the body, `callback`, `userActionId`", body = Failure),
        (status = 401, description = "44 or 1: the token", body = Failure),
        (status = 403, description = "18: an admin token of another site", body = Failure),
        (status = 409, description = "48: the user is disabled or blocked", body = Failure),
        (status = 413, description = "900: the body exceeds `http.max_body_bytes`", body = Failure),
        (status = 503, description = "903: the log or the store is unavailable", body = Failure),
    )
)]
pub async fn add_post(
    State(app): State<Arc<AppState>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<LimitedBody, ApiError>,
) -> Result<Json<Success<Added>>, KickError> {
    let LimitedBody(body) = body?;
    let params = Params::read(query.as_deref(), &headers, &body)?;
    add(&app, &site, params).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::TriggerKey;
    use rust_decimal::Decimal;

    fn catalog() -> Catalog {
        let triggers = include_str!("../../../examples/catalog/triggers.toml");
        Catalog::from_sources(&[("triggers.toml", triggers)]).unwrap()
    }

    fn call(query: &str) -> Result<Action, KickError> {
        let params = Params::read(Some(query), &HeaderMap::new(), b"").unwrap();
        action_of(&catalog(), "default", &params)
    }

    fn code(query: &str) -> u16 {
        call(query).unwrap_err().code
    }

    #[test]
    fn the_shipped_mapping_parses() {
        assert_eq!(mapping().unwrap().name(), "kickapps");
    }

    #[test]
    fn a_call_is_the_action_the_kafka_mapping_makes() {
        let action = call(
            "user_id=kick-1&actionId=post_comment&location=forum&quantity=-3&userActionId=c-1",
        )
        .unwrap();
        assert_eq!(action.user_id, "kick-1");
        assert_eq!(action.trigger_id, TriggerKey::Name("post_comment".into()));
        assert_eq!(action.location.as_deref(), Some("forum"));
        assert_eq!(action.value, Decimal::from(-3));
        assert_eq!(action.action_id.as_deref(), Some("c-1"));
        assert_eq!(action.tenant, "default");
        // The same record through the mapping as the worker reads it.
        let record = br#"{"user_id": "kick-1", "actionId": "post_comment", "location": "forum", "quantity": -3, "userActionId": "c-1"}"#;
        assert_eq!(mapping().unwrap().apply(record).unwrap(), action);
        // quantity defaults to 1; without userActionId a fresh id each call.
        let a = call("user_id=kick-1&actionId=post_comment&location=blog").unwrap();
        let b = call("user_id=kick-1&actionId=post_comment&location=blog").unwrap();
        assert_eq!(a.value, Decimal::ONE);
        assert_ne!(a.action_id, b.action_id);
        assert!(a.action_id.is_some());
        // A numeric actionId is the trigger of that id.
        assert!(call("user_id=kick-1&actionId=20&location=forum").is_ok());
    }

    #[test]
    fn each_bad_parameter_has_the_seeds_code_and_is_named() {
        let base = "actionId=post_comment&location=forum";
        for (query, expected, param) in [
            (base.to_string(), 13, "user_id"),
            (format!("user_id=%20&{base}"), 13, "user_id"),
            (format!("user_id={}&{base}", "u".repeat(300)), 13, "user_id"),
            ("user_id=k&location=forum".to_string(), 10, "actionId"),
            (
                "user_id=k&actionId=nope&location=forum".to_string(),
                10,
                "actionId",
            ),
            ("user_id=k&actionId=post_comment".to_string(), 8, "location"),
            (
                "user_id=k&actionId=post_comment&location=".to_string(),
                8,
                "location",
            ),
            (
                format!(
                    "user_id=k&actionId=post_comment&location={}",
                    "l".repeat(65)
                ),
                20,
                "location",
            ),
            (format!("user_id=k&{base}&quantity=1.5"), 11, "quantity"),
            (format!("user_id=k&{base}&quantity=many"), 11, "quantity"),
            (
                format!("user_id=k&{base}&userActionId={}", "a".repeat(300)),
                900,
                "userActionId",
            ),
            (format!("user_id=k&{base}&callback=cb"), 900, "callback"),
        ] {
            let e = call(&query).unwrap_err();
            assert_eq!(e.code, expected, "{query}: {e}");
            assert!(
                e.message.starts_with(&format!("{param}: ")),
                "{query}: {}",
                e.message
            );
        }
        // 64 characters (not bytes) is within the bound.
        assert!(call(&format!(
            "user_id=k&actionId=post_comment&location={}",
            "é".repeat(64)
        ))
        .is_ok());
        assert!(call("user_id=k&actionId=post_comment&location=forum&quantity=0").is_ok());
        assert_eq!(
            code("user_id=k&actionId=post_comment&location=forum&quantity=true"),
            11
        );
    }
}
