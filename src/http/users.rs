//! Native user endpoints: balances, reward history, claims (create and status).
//!
//! Reads come from the store's read models (user state, history, claim outcomes); a claim is
//! a command in the log like an action, evaluated by the user's single writer, so two claims
//! racing for the last unit of stock are ordered there and never both granted. A claim's
//! outcome appears once the worker has evaluated it; until then its status is 404 with a
//! message saying so.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::actions::submit;
use super::error::{ApiError, Kind, StatusBody};
use super::request::{self, clip, LimitedBody, Params};
use super::AppState;
use crate::core::catalog::{RewardKind, TenantCatalog};
use crate::core::decimal;
use crate::core::evaluator::{ClaimAmount, ClaimCommand};
use crate::core::events::{ClaimItem, EventBody};
use crate::core::limits;
use crate::core::view::Paging;
use crate::pipeline::commands::Command;
use crate::store::{ClaimRecord, UserKey};

/// Most milestones or items in one claim: a claim is one command and one evaluation.
pub const MAX_CLAIM_LINES: usize = 100;
/// Longest client-chosen claim id.
pub const MAX_CLAIM_ID_LEN: usize = 64;

/// A user's balance of one reward type.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceView {
    pub reward_type: String,
    /// In the `Accept-Language` language where the catalog translates it.
    pub display_name: String,
    pub description: String,
    /// `points`, `voucher`, `badge` or `item`.
    #[schema(value_type = String)]
    pub kind: RewardKind,
    /// Inactive types are never granted; a balance left from before is still shown.
    pub active: bool,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub balance: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalancesResponse {
    pub user_id: String,
    /// Every reward type of the catalog, in catalog order, then any the catalog no longer has.
    pub data: Vec<BalanceView>,
}

/// One page of history, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// Output events (`reward.granted`, `reward.rejected`, `milestone.achieved`,
    /// `claim.completed`, `claim.failed`) as on the rewards topic (see `schemas/`), each with
    /// its `seq`, the 0-based position in the user's history.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
    /// The number of pages.
    pub pages_num: u64,
    /// Entries in the whole history.
    pub count: u64,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: parameters are read by `Params`
pub struct HistoryParams {
    /// 1-based page; default 1.
    #[param(minimum = 1)]
    page: Option<u32>,
    /// 1–100; default 10.
    #[param(minimum = 1, maximum = 100)]
    items_per_page: Option<u32>,
}

/// The body of a claim.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: the handler validates the raw JSON
pub struct ClaimBody {
    /// Optional idempotency key (1–64 of `A-Z a-z 0-9 . _ : -`); a UUID v4 is minted when absent.
    /// Retrying with the same id never claims twice.
    claim_id: Option<String>,
    /// Milestones whose prizes are claimed (they move to history).
    milestone_ids: Option<Vec<String>>,
    /// Amounts of reward types claimed from the balance.
    items: Option<Vec<ClaimItemBody>>,
}

#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct ClaimItemBody {
    reward_type: String,
    /// Decimal, greater than 0.
    #[schema(value_type = f64)]
    amount: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimAccepted {
    pub claim_id: String,
    /// Always `pending`: the outcome is read at the `Location` URL once evaluated.
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimStatus {
    pub claim_id: String,
    /// `completed` or `failed`.
    pub status: String,
    pub items: Vec<ClaimItemView>,
    /// Why a claim failed (`insufficient balance …`, `depleted` …).
    pub reason: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimItemView {
    pub reward_type: String,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub amount: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestone_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inventory_id: Option<String>,
    /// The voucher code, for vouchers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl From<ClaimItem> for ClaimItemView {
    fn from(i: ClaimItem) -> Self {
        ClaimItemView {
            reward_type: i.reward_type,
            amount: i.amount,
            milestone_id: i.milestone_id,
            inventory_id: i.inventory_id,
            code: i.code,
        }
    }
}

/// The `{userId}` path segment, checked.
fn path_user(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(user) = path.map_err(|e| ApiError::invalid("userId", format!("userId: {e}")))?;
    request::user_id("userId", Some(&user))
}

fn valid_claim_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_CLAIM_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn bad_claim_id(id: &str) -> ApiError {
    ApiError::invalid(
        "claimId",
        format!(
            "claimId: '{}' must be 1–{MAX_CLAIM_ID_LEN} characters of A-Z a-z 0-9 . _ : -",
            clip(id)
        ),
    )
}

/// Every reward type's balance for a user (0 for a user the engine has never seen).
#[utoipa::path(
    get,
    path = "/api/v1/users/{userId}/balances",
    tag = "users",
    params(
        ("userId" = String, Path, description = "The user"),
        ("Accept-Language" = Option<String>, Header, description = "Language of display names"),
        ("X-Tenant" = Option<String>, Header, description = "The tenant; `default` when absent"),
    ),
    responses(
        (status = 200, description = "Every reward type of the catalog", body = BalancesResponse),
        (status = 400, description = "Invalid user id or tenant", body = StatusBody),
        (status = 401, description = "Authentication failed", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn balances(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BalancesResponse>, ApiError> {
    let user_id = path_user(path)?;
    let catalog = &*request::tenant(&app, &headers)?;
    let languages = request::languages(&headers);
    let key = UserKey::new(catalog.tenant.clone(), user_id.clone());
    let record = app
        .store
        .load_users(&[key])
        .await?
        .into_iter()
        .next()
        .flatten();
    let state = request::current_state(record, catalog, chrono::Utc::now()).unwrap_or_default();
    Ok(Json(BalancesResponse {
        data: balance_views(catalog, &state.balances, &languages),
        user_id,
    }))
}

fn balance_views(
    catalog: &TenantCatalog,
    balances: &litemap::LiteMap<String, Decimal>,
    languages: &[String],
) -> Vec<BalanceView> {
    let mut views: Vec<BalanceView> = catalog
        .reward_types
        .iter()
        .map(|rt| BalanceView {
            reward_type: rt.reward_type.clone(),
            display_name: rt.display_name.pick(languages).to_string(),
            description: rt.description.pick(languages).to_string(),
            kind: rt.kind,
            active: rt.active,
            balance: balances
                .get(&rt.reward_type)
                .copied()
                .unwrap_or_default()
                .normalize(),
        })
        .collect();
    for (reward_type, balance) in balances {
        if catalog.reward_type(reward_type).is_none() {
            views.push(BalanceView {
                reward_type: reward_type.clone(),
                display_name: reward_type.clone(),
                description: "no longer in the catalog".into(),
                kind: RewardKind::default(),
                active: false,
                balance: balance.normalize(),
            });
        }
    }
    views
}

/// A user's reward history, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/users/{userId}/history",
    tag = "users",
    params(
        ("userId" = String, Path, description = "The user"),
        HistoryParams,
        ("X-Tenant" = Option<String>, Header, description = "The tenant; `default` when absent"),
    ),
    responses(
        (status = 200, description = "One page of history, newest first", body = HistoryPage),
        (status = 400, description = "Invalid user id, page or itemsPerPage; `field` names it", body = StatusBody),
        (status = 401, description = "Authentication failed", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn history(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistoryPage>, ApiError> {
    let user_id = path_user(path)?;
    let p = Params::parse(raw.as_deref());
    let paging = Paging::new(
        p.u32("page")?,
        p.u32("itemsPerPage")?,
        ("page", "itemsPerPage"),
    )?;
    let catalog = &*request::tenant(&app, &headers)?;
    let key = UserKey::new(catalog.tenant.clone(), user_id);
    let (entries, count) = app
        .store
        .history(&key, paging.page(), paging.items_per_page())
        .await?;
    let data = entries
        .into_iter()
        .map(|entry| {
            let mut event = serde_json::to_value(&entry.event).map_err(|e| {
                ApiError::new(Kind::Internal, format!("history entry {}: {e}", entry.seq))
            })?;
            if let Value::Object(map) = &mut event {
                map.insert("seq".into(), Value::from(entry.seq));
            }
            Ok(event)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Json(HistoryPage {
        data,
        pages_num: paging.pages(count),
        count,
    }))
}

/// Validates a claim body into a command for `user_id`.
pub fn parse_claim(
    catalog: &TenantCatalog,
    user_id: &str,
    body: &[u8],
) -> Result<ClaimCommand, ApiError> {
    let map = super::request::json_object(body)?;
    let claim_id = match map.get("claimId") {
        None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
        Some(Value::String(id)) if valid_claim_id(id) => id.clone(),
        Some(Value::String(id)) => return Err(bad_claim_id(id)),
        Some(other) => return Err(bad_claim_id(&other.to_string())),
    };
    let milestone_ids = strings(map.get("milestoneIds"), "milestoneIds")?;
    let mut seen = BTreeSet::new();
    for (i, id) in milestone_ids.iter().enumerate() {
        if !seen.insert(id.as_str()) {
            return Err(ApiError::invalid(
                format!("milestoneIds[{i}]"),
                format!("milestoneIds[{i}]: '{}' is listed twice", clip(id)),
            ));
        }
    }
    let items = items(catalog, map.get("items"))?;
    if milestone_ids.is_empty() && items.is_empty() {
        return Err(ApiError::invalid(
            "milestoneIds",
            "milestoneIds: a claim needs milestoneIds or items",
        ));
    }
    Ok(ClaimCommand {
        claim_id,
        tenant: catalog.tenant.clone(),
        user_id: user_id.to_string(),
        milestone_ids,
        items,
    })
}

fn array<'a>(value: Option<&'a Value>, field: &str) -> Result<&'a [Value], ApiError> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) if a.len() <= MAX_CLAIM_LINES => Ok(a),
        Some(Value::Array(_)) => Err(ApiError::invalid(
            field,
            format!("{field}: at most {MAX_CLAIM_LINES} per claim"),
        )),
        Some(other) => Err(ApiError::invalid(
            field,
            format!(
                "{field}: expected an array, found {}",
                decimal::json_type_name(other)
            ),
        )),
    }
}

fn strings(value: Option<&Value>, field: &str) -> Result<Vec<String>, ApiError> {
    array(value, field)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) if !s.trim().is_empty() && s.len() <= 256 => Ok(s.trim().to_string()),
            _ => Err(ApiError::invalid(
                format!("{field}[{i}]"),
                format!("{field}[{i}]: expected a non-blank string of at most 256 bytes"),
            )),
        })
        .collect()
}

fn items(catalog: &TenantCatalog, value: Option<&Value>) -> Result<Vec<ClaimAmount>, ApiError> {
    array(value, "items")?
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| format!("items[{i}].{name}");
            let Value::Object(item) = item else {
                return Err(ApiError::invalid(
                    format!("items[{i}]"),
                    format!("items[{i}]: expected an object with rewardType and amount"),
                ));
            };
            let reward_type = match item.get("rewardType") {
                Some(Value::String(s)) if catalog.reward_type(s).is_some() => s.clone(),
                Some(Value::String(s)) => {
                    return Err(ApiError::invalid(
                        field("rewardType"),
                        format!("{}: unknown reward type '{}'", field("rewardType"), clip(s)),
                    ))
                }
                _ => {
                    return Err(ApiError::invalid(
                        field("rewardType"),
                        format!("{}: a reward type name is required", field("rewardType")),
                    ))
                }
            };
            let amount = match item.get("amount") {
                None | Some(Value::Null) => {
                    return Err(ApiError::invalid(
                        field("amount"),
                        format!("{}: is required", field("amount")),
                    ))
                }
                Some(v) => decimal::from_json(v).map_err(|e| {
                    ApiError::invalid(field("amount"), format!("{}: {e}", field("amount")))
                })?,
            };
            if amount <= Decimal::ZERO {
                return Err(ApiError::invalid(
                    field("amount"),
                    format!("{}: must be greater than 0", field("amount")),
                ));
            }
            if !limits::is_valid_amount(amount) {
                return Err(ApiError::invalid(
                    field("amount"),
                    format!(
                        "{}: must be at most {} with at most {} decimal places",
                        field("amount"),
                        limits::MAX_AMOUNT,
                        limits::MAX_SCALE
                    ),
                ));
            }
            if catalog.is_limited(&reward_type) && !amount.fract().is_zero() {
                return Err(ApiError::invalid(
                    field("amount"),
                    format!(
                        "{}: '{reward_type}' is counted by an inventory: claim a whole number of units",
                        field("amount")
                    ),
                ));
            }
            Ok(ClaimAmount {
                reward_type,
                amount,
            })
        })
        .collect()
}

/// Percent-encodes a path segment for the `Location` header.
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Claims milestones' prizes or amounts of reward types; 202 with the claim id.
#[utoipa::path(
    post,
    path = "/api/v1/users/{userId}/claims",
    tag = "users",
    params(
        ("userId" = String, Path, description = "The user"),
        ("X-Tenant" = Option<String>, Header, description = "The tenant; `default` when absent"),
    ),
    request_body = ClaimBody,
    responses(
        (status = 200, description = "This claim id already has an outcome: that outcome, unchanged (nothing is claimed again)", body = ClaimStatus),
        (status = 202, description = "In the log; its outcome appears at the `Location` URL once evaluated", body = ClaimAccepted,
         headers(("Location" = String, description = "The claim's status URL"))),
        (status = 400, description = "Invalid body; `field` names the field (`items[0].amount` …)", body = StatusBody),
        (status = 401, description = "Authentication failed", body = StatusBody),
        (status = 413, description = "The body exceeds `http.max_body_bytes`", body = StatusBody),
        (status = 503, description = "The command log is unavailable; retry with the same `claimId`", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn create_claim(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    LimitedBody(body): LimitedBody,
) -> Result<Response, ApiError> {
    let user_id = path_user(path)?;
    let catalog = &*request::tenant(&app, &headers)?;
    let claim = parse_claim(catalog, &user_id, &body)?;
    let claim_id = claim.claim_id.clone();
    // A claim id is exactly-once forever: a retry of one with an outcome gets that outcome
    // (200), and nothing is submitted again. (One still in flight is submitted again and the
    // worker recognises it.)
    let key = UserKey::new(catalog.tenant.clone(), user_id.clone());
    if let Some(record) = app.store.claim(&key, &claim_id).await? {
        return Ok(Json(claim_view(claim_id, record)?).into_response());
    }
    submit(&app, Command::Claim(claim)).await?;
    let location = format!(
        "/api/v1/users/{}/claims/{}",
        encode_segment(&user_id),
        encode_segment(&claim_id)
    );
    let mut response = (
        StatusCode::ACCEPTED,
        Json(ClaimAccepted {
            claim_id,
            status: "pending".into(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// A claim's outcome, once the worker has evaluated it.
#[utoipa::path(
    get,
    path = "/api/v1/users/{userId}/claims/{claimId}",
    tag = "users",
    params(
        ("userId" = String, Path, description = "The user"),
        ("claimId" = String, Path, description = "The id returned by the claim"),
        ("X-Tenant" = Option<String>, Header, description = "The tenant; `default` when absent"),
    ),
    responses(
        (status = 200, description = "Completed or failed, with the items and the reason", body = ClaimStatus),
        (status = 400, description = "Invalid user or claim id", body = StatusBody),
        (status = 401, description = "Authentication failed", body = StatusBody),
        (status = 404, description = "No outcome yet: the claim may not be processed yet (or never existed)", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security((), ("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn claim_status(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ClaimStatus>, ApiError> {
    let Path((user_id, claim_id)) =
        path.map_err(|e| ApiError::invalid("claimId", format!("claimId: {e}")))?;
    let user_id = request::user_id("userId", Some(&user_id))?;
    if !valid_claim_id(&claim_id) {
        return Err(bad_claim_id(&claim_id));
    }
    let catalog = &*request::tenant(&app, &headers)?;
    let key = UserKey::new(catalog.tenant.clone(), user_id.clone());
    let Some(record) = app.store.claim(&key, &claim_id).await? else {
        return Err(ApiError::not_found(format!(
            "claim '{claim_id}' of user '{}' has no outcome yet: it may not be processed yet, retry in a moment",
            clip(&user_id)
        )));
    };
    Ok(Json(claim_view(claim_id, record)?))
}

/// A stored claim outcome as the API shows it.
fn claim_view(claim_id: String, record: ClaimRecord) -> Result<ClaimStatus, ApiError> {
    let occurred_at = record.event.occurred_at;
    let (status, items, reason) = match record.event.body {
        EventBody::ClaimCompleted { items, reason, .. } => ("completed", items, reason),
        EventBody::ClaimFailed { items, reason, .. } => ("failed", items, Some(reason)),
        other => {
            return Err(ApiError::new(
                Kind::Internal,
                format!("claim '{claim_id}' is stored with a {} event", other.kind()),
            ))
        }
    };
    Ok(ClaimStatus {
        claim_id,
        status: status.into(),
        items: items.into_iter().map(ClaimItemView::from).collect(),
        reason,
        occurred_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Catalog;

    fn catalog() -> Catalog {
        Catalog::from_sources(&[(
            "c.toml",
            "[[reward_types]]\nreward_type = \"points\"\n[[triggers]]\nid = 1\nname = \"t\"\n",
        )])
        .unwrap()
    }

    fn field_of(body: &str) -> String {
        let c = catalog();
        let err = parse_claim(c.default_tenant().unwrap(), "u", body.as_bytes()).unwrap_err();
        assert_eq!(err.kind, Kind::InvalidInput);
        err.field.unwrap()
    }

    #[test]
    fn claims_are_validated_field_by_field() {
        assert_eq!(field_of("nope"), "body");
        assert_eq!(field_of("[]"), "body");
        assert_eq!(field_of("{}"), "milestoneIds");
        assert_eq!(field_of(r#"{"milestoneIds": "1-1"}"#), "milestoneIds");
        assert_eq!(
            field_of(r#"{"milestoneIds": ["1-1", ""]}"#),
            "milestoneIds[1]"
        );
        assert_eq!(
            field_of(r#"{"milestoneIds": ["1-1", "1-1"]}"#),
            "milestoneIds[1]"
        );
        assert_eq!(field_of(r#"{"items": [1]}"#), "items[0]");
        assert_eq!(
            field_of(r#"{"items": [{"amount": 1}]}"#),
            "items[0].rewardType"
        );
        assert_eq!(
            field_of(r#"{"items": [{"rewardType": "gold", "amount": 1}]}"#),
            "items[0].rewardType"
        );
        assert_eq!(
            field_of(r#"{"items": [{"rewardType": "points"}]}"#),
            "items[0].amount"
        );
        assert_eq!(
            field_of(r#"{"items": [{"rewardType": "points", "amount": "x"}]}"#),
            "items[0].amount"
        );
        assert_eq!(
            field_of(r#"{"items": [{"rewardType": "points", "amount": 0}]}"#),
            "items[0].amount"
        );
        assert_eq!(
            field_of(r#"{"claimId": "a b", "milestoneIds": ["1-1"]}"#),
            "claimId"
        );
        assert_eq!(
            field_of(r#"{"claimId": 7, "milestoneIds": ["1-1"]}"#),
            "claimId"
        );
    }

    #[test]
    fn a_valid_claim_keeps_or_mints_its_id() {
        let c = catalog();
        let t = c.default_tenant().unwrap();
        let claim = parse_claim(
            t,
            "u",
            br#"{"claimId": "c-1", "items": [{"rewardType": "points", "amount": "2.5"}]}"#,
        )
        .unwrap();
        assert_eq!(claim.claim_id, "c-1");
        assert_eq!(claim.items[0].amount, Decimal::new(25, 1));
        let minted = parse_claim(t, "u", br#"{"milestoneIds": ["1-1"]}"#).unwrap();
        assert_eq!(
            uuid::Uuid::parse_str(&minted.claim_id)
                .unwrap()
                .get_version_num(),
            4
        );
    }

    #[test]
    fn location_segments_are_encoded() {
        assert_eq!(encode_segment("a b/ç"), "a%20b%2F%C3%A7");
    }
}
