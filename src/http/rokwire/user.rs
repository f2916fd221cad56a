//! `GET /user/balance`, `GET /user/history`, `GET|POST /user/claims`: a user's side of the
//! Rokwire API, named by `?user_id=` ([`super`] says why).
//!
//! Balances are the user's stored balances (expired prizes taken out, as everywhere). History
//! entries are the user's `reward.granted` events and claims their `claim.completed` /
//! `claim.failed` events, both read from the history the worker keeps: among the newest
//! [`super::SCAN_LIMIT`] history entries, newest first, cut by `offset` and `limit`. A claim is
//! the native claim ([`crate::http::users::parse_claim`]) with Rokwire's field names: one
//! command in the log, exactly once per id.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use utoipa::ToSchema;

use super::{idempotency_id, query_user, recent_history, window};
use crate::core::decimal;
use crate::core::events::{Event, EventBody, GrantReason};
use crate::http::actions::submit;
use crate::http::error::{ApiError, StatusBody};
use crate::http::request::{self, LimitedBody, Params};
use crate::http::AppState;
use crate::pipeline::commands::Command;
use crate::store::UserKey;

/// A user's balance of one reward type.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Balance {
    pub org_id: String,
    pub user_id: String,
    pub reward_type: String,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub amount: Decimal,
}

/// One grant of the user's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// The `reward.granted` event's id.
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub reward_type: String,
    /// The operation's code; null for grants of challenges and earning rules.
    pub code: Option<String>,
    /// The service that granted it; null for grants of challenges and earning rules.
    pub building_block: Option<String>,
    /// Units granted (1 for a voucher code).
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub amount: Decimal,
    pub description: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// One line of a claim.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ClaimItem {
    pub reward_type: String,
    /// The inventory the units were claimed from; null for reward types without one.
    pub inventory_id: Option<String>,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub amount: Decimal,
}

/// A claim record.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Claim {
    /// The claim id (the request's `id` or `Idempotency-Key`).
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub items: Vec<ClaimItem>,
    /// `pending` (in the log), `completed` or `failed`.
    pub status: String,
    /// Why a claim failed, else empty.
    pub description: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// The body of `POST /user/claims` (documentation; the handler validates the raw JSON).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ClaimBody {
    /// `[{reward_type, amount}]`, amounts greater than 0 (whole units for a reward type with an inventory).
    items: Vec<Value>,
    /// The claim's idempotency id (1–64 of `A-Z a-z 0-9 . _ : -`), or send `Idempotency-Key`.
    id: Option<String>,
}

fn user_key(app: &AppState, headers: &HeaderMap, params: &Params) -> Result<UserKey, ApiError> {
    let catalog = request::tenant(app, headers)?;
    Ok(UserKey::new(catalog.tenant.clone(), query_user(params)?))
}

/// The user's balance of every reward type of the organization (0 where none was granted).
#[utoipa::path(
    get,
    path = "/user/balance",
    tag = "rokwire",
    params(
        ("user_id" = String, Query, description = "The user"),
        ("X-Tenant" = Option<String>, Header, description = "The organization; `default` when absent"),
    ),
    responses(
        (status = 200, description = "One balance per reward type", body = Vec<Balance>),
        (status = 400, description = "`user_id` or `X-Tenant` is missing or invalid", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn balance(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<Balance>>, ApiError> {
    let key = user_key(&app, &headers, &Params::parse(raw.as_deref()))?;
    let catalog = &*request::tenant(&app, &headers)?;
    let record = app
        .store
        .load_users(std::slice::from_ref(&key))
        .await?
        .into_iter()
        .next()
        .flatten();
    let state = request::current_state(record, catalog, Utc::now()).unwrap_or_default();
    let mut names: Vec<&str> = catalog
        .reward_types
        .iter()
        .map(|r| r.reward_type.as_str())
        .collect();
    names.extend(
        state
            .balances
            .keys()
            .map(String::as_str)
            .filter(|n| catalog.reward_type(n).is_none()),
    );
    Ok(Json(
        names
            .into_iter()
            .map(|name| Balance {
                org_id: key.tenant.to_string(),
                user_id: key.user_id.to_string(),
                reward_type: name.to_string(),
                amount: state.balance(name).normalize(),
            })
            .collect(),
    ))
}

/// A `reward.granted` event as a Rokwire history entry.
fn history_entry(event: &Event) -> Option<HistoryEntry> {
    let EventBody::RewardGranted {
        reward_type,
        amount,
        reason,
        ..
    } = &event.body
    else {
        return None;
    };
    let (code, building_block, description) = match reason {
        GrantReason::Operation {
            code,
            building_block,
            description,
            ..
        } => (
            Some(code.clone()),
            Some(building_block.clone()),
            description.clone(),
        ),
        GrantReason::Milestone { milestone_id, .. } => {
            (None, None, format!("milestone {milestone_id}"))
        }
        GrantReason::Rule { event, rule, .. } => {
            (None, None, format!("earning rule {rule} of {event}"))
        }
    };
    Some(HistoryEntry {
        id: event.event_id.to_string(),
        org_id: event.tenant.to_string(),
        user_id: event.user_id.to_string(),
        reward_type: reward_type.clone(),
        code,
        building_block,
        amount: amount.unwrap_or(Decimal::ONE).normalize(),
        description,
        date_created: event.occurred_at,
        date_updated: event.occurred_at,
    })
}

/// A `claim.completed` / `claim.failed` event as a Rokwire claim.
fn claim_of(event: &Event) -> Option<Claim> {
    let (claim_id, items, status, description) = match &event.body {
        EventBody::ClaimCompleted {
            claim_id, items, ..
        } => (claim_id, items, "completed", String::new()),
        EventBody::ClaimFailed {
            claim_id,
            items,
            reason,
        } => (claim_id, items, "failed", reason.clone()),
        _ => return None,
    };
    Some(Claim {
        id: claim_id.clone(),
        org_id: event.tenant.to_string(),
        user_id: event.user_id.to_string(),
        items: items
            .iter()
            .map(|i| ClaimItem {
                reward_type: i.reward_type.clone(),
                inventory_id: i.inventory_id.clone(),
                amount: i.amount.normalize(),
            })
            .collect(),
        status: status.into(),
        description,
        date_created: event.occurred_at,
        date_updated: event.occurred_at,
    })
}

/// The user's grants, newest first.
#[utoipa::path(
    get,
    path = "/user/history",
    tag = "rokwire",
    params(
        ("user_id" = String, Query, description = "The user"),
        ("limit" = Option<u32>, Query, description = "1–100; default 20"),
        ("offset" = Option<u32>, Query, description = "Entries to skip; default 0"),
        ("X-Tenant" = Option<String>, Header, description = "The organization; `default` when absent"),
    ),
    responses(
        (status = 200, description = "Grants among the user's newest 1000 history entries, newest first", body = Vec<HistoryEntry>),
        (status = 400, description = "`user_id`, `limit`, `offset` or `X-Tenant` is invalid", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn history(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let key = user_key(&app, &headers, &params)?;
    let (limit, offset) = window(&params)?;
    let entries = recent_history(&app, &key).await?;
    Ok(Json(
        entries
            .iter()
            .filter_map(|e| history_entry(&e.event))
            .skip(offset)
            .take(limit)
            .collect(),
    ))
}

/// The user's evaluated claims, newest first.
#[utoipa::path(
    get,
    path = "/user/claims",
    tag = "rokwire",
    params(
        ("user_id" = String, Query, description = "The user"),
        ("limit" = Option<u32>, Query, description = "1–100; default 20"),
        ("offset" = Option<u32>, Query, description = "Claims to skip; default 0"),
        ("X-Tenant" = Option<String>, Header, description = "The organization; `default` when absent"),
    ),
    responses(
        (status = 200, description = "Completed and failed claims among the user's newest 1000 history entries, newest first", body = Vec<Claim>),
        (status = 400, description = "`user_id`, `limit`, `offset` or `X-Tenant` is invalid", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn list_claims(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Vec<Claim>>, ApiError> {
    let params = Params::parse(raw.as_deref());
    let key = user_key(&app, &headers, &params)?;
    let (limit, offset) = window(&params)?;
    let entries = recent_history(&app, &key).await?;
    Ok(Json(
        entries
            .iter()
            .filter_map(|e| claim_of(&e.event))
            .skip(offset)
            .take(limit)
            .collect(),
    ))
}

/// Rokwire's field names in a native claim error (`items[0].rewardType` → `…reward_type`).
fn rokwire_names(mut e: ApiError) -> ApiError {
    fn rename(text: &str) -> String {
        text.replace("rewardType", "reward_type")
            .replace("claimId", "id")
    }
    e.message = rename(&e.message);
    e.field = e.field.as_deref().map(rename);
    e
}

/// Claims amounts of reward types from the user's balance: 202 `pending`, or 200 with the
/// outcome when this id was evaluated before (nothing is claimed again).
#[utoipa::path(
    post,
    path = "/user/claims",
    tag = "rokwire",
    request_body = ClaimBody,
    params(
        ("user_id" = String, Query, description = "The user"),
        ("Idempotency-Key" = Option<String>, Header, description = "The claim's id; a retry with it never claims twice"),
        ("X-Tenant" = Option<String>, Header, description = "The organization; `default` when absent"),
    ),
    responses(
        (status = 200, description = "This id already has an outcome: that outcome, unchanged", body = Claim),
        (status = 202, description = "In the log; listed by GET /user/claims once evaluated", body = Claim),
        (status = 400, description = "Invalid body; `field` names the field (`items[0].amount` …)", body = StatusBody),
        (status = 503, description = "The command log is unavailable; retry with the same id", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn create_claim(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let key = user_key(&app, &headers, &Params::parse(raw.as_deref()))?;
    let catalog = &*request::tenant(&app, &headers)?;
    let map = request::json_object(&body)?;
    let id = idempotency_id(&headers, map.get("id"))?;
    let items = match map.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => Value::Array(
            items
                .iter()
                .map(|item| match item {
                    Value::Object(line) => json!({
                        "rewardType": line.get("reward_type").cloned().unwrap_or(Value::Null),
                        "amount": line.get("amount").cloned().unwrap_or(Value::Null),
                    }),
                    other => other.clone(),
                })
                .collect(),
        ),
        Some(Value::Array(_)) | None => {
            return Err(ApiError::invalid(
                "items",
                "items: a claim needs items [{reward_type, amount}]",
            ))
        }
        Some(other) => other.clone(),
    };
    let native = json!({"claimId": id, "items": items}).to_string();
    let claim = crate::http::users::parse_claim(catalog, &key.user_id, native.as_bytes())
        .map_err(rokwire_names)?;
    if let Some(record) = app.store.claim(&key, &claim.claim_id).await? {
        if let Some(outcome) = claim_of(&record.event) {
            return Ok(Json(outcome).into_response());
        }
    }
    let now = Utc::now();
    let pending = Claim {
        id: claim.claim_id.clone(),
        org_id: key.tenant.to_string(),
        user_id: key.user_id.to_string(),
        items: claim
            .items
            .iter()
            .map(|i| ClaimItem {
                reward_type: i.reward_type.clone(),
                inventory_id: None,
                amount: i.amount.normalize(),
            })
            .collect(),
        status: "pending".into(),
        description: String::new(),
        date_created: now,
        date_updated: now,
    };
    submit(&app, Command::Claim(claim)).await?;
    Ok((StatusCode::ACCEPTED, Json(pending)).into_response())
}
