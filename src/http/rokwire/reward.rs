//! `POST /int/reward`: a service grants a user an operation.
//!
//! The authenticated client id (`X-ClientId`, verified by [`crate::http::auth`]) is the service
//! id: only the operation's `building_block` may use it, any other client gets 403 and nothing
//! is submitted. The grant is a command in the log, evaluated by the user's single writer
//! through the ledger challenge prizes use (stock, `grant_depleted`, `reward.rejected` with
//! `depleted`), so the answer is 202: accepted, not yet granted. The outcome is the user's
//! history (`GET /user/history`) and the `reward.granted` / `reward.rejected` event.
//!
//! **Exactly once per id.** The grant's id (`Idempotency-Key` or `id`) is remembered with the
//! user's recent action ids (the last 64 ids of actions and grants of that user): a retry with
//! it grants nothing more. A retry after 64 other actions or grants of the same user would
//! grant again; a service retries within seconds, far inside that window. Without an id every
//! request is a new grant.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;

use super::idempotency_id;
use crate::core::decimal;
use crate::core::evaluator::GrantCommand;
use crate::http::actions::submit;
use crate::http::auth::AuthenticatedClient;
use crate::http::error::{ApiError, Kind, StatusBody};
use crate::http::request::{self, LimitedBody};
use crate::http::AppState;
use crate::pipeline::commands::Command;

/// The body of `POST /int/reward` (documentation; the handler validates the raw JSON).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RewardBody {
    /// The user granted.
    user_id: String,
    /// The operation's code.
    code: String,
    /// Shown in the history instead of the operation's description (at most 512 bytes).
    description: Option<String>,
    /// The idempotency id (1–64 of `A-Z a-z 0-9 . _ : -`), or send `Idempotency-Key`.
    id: Option<String>,
}

/// A grant in the log.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GrantAccepted {
    /// The grant's idempotency id.
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub code: String,
    pub building_block: String,
    pub reward_type: String,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub amount: Decimal,
    pub description: String,
    /// Always `pending`: the user's single writer grants it (or refuses it) next.
    pub status: String,
}

fn text(map: &serde_json::Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(other) => Err(ApiError::invalid(
            field,
            format!(
                "{field}: expected a string, found {}",
                decimal::json_type_name(other)
            ),
        )),
    }
}

/// Grants the user the operation `code`, as the authenticated service.
#[utoipa::path(
    post,
    path = "/int/reward",
    tag = "rokwire",
    request_body = RewardBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "The grant's id; a retry with it grants nothing more"),
        ("X-Tenant" = Option<String>, Header, description = "The organization (tenant); `default` when absent"),
    ),
    responses(
        (status = 202, description = "In the log; granted (or refused: `depleted`, `inactive`) by the user's single writer", body = GrantAccepted),
        (status = 400, description = "A field is missing or invalid (`user_id`, `code`, `description`, `id`); `field` names it", body = StatusBody),
        (status = 401, description = "Not a signed request: the client id is the service id", body = StatusBody),
        (status = 403, description = "The client is not the operation's building block; nothing is granted", body = StatusBody),
        (status = 503, description = "The command log is unavailable; retry with the same id", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = []))
)]
pub async fn grant(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<(StatusCode, Json<GrantAccepted>), ApiError> {
    let Some(Extension(AuthenticatedClient(service))) = client else {
        return Err(ApiError::unauthorized(
            "POST /int/reward needs a signed request (X-ClientId, X-Timestamp, X-Message): \
             the client id is the service (building block) granting",
        ));
    };
    let catalog = &*request::tenant(&app, &headers)?;
    let map = request::json_object(&body)?;
    let user_id = request::user_id("user_id", text(&map, "user_id")?.as_deref())?;
    let Some(code) = text(&map, "code")?.filter(|c| !c.is_empty()) else {
        return Err(ApiError::invalid(
            "code",
            "code: an operation code is required",
        ));
    };
    let command = GrantCommand {
        grant_id: idempotency_id(&headers, map.get("id"))?,
        tenant: catalog.tenant.clone(),
        user_id,
        code,
        building_block: service,
        description: text(&map, "description")?,
    };
    let operation = command.check(catalog).map_err(|e| {
        if e.forbidden {
            ApiError::new(Kind::Forbidden, e.message.clone()).with_field(e.field)
        } else {
            ApiError::invalid(e.field, e.to_string())
        }
    })?;
    let reference = command.reference(operation);
    let accepted = GrantAccepted {
        id: command.grant_id.clone(),
        org_id: command.tenant.clone(),
        user_id: command.user_id.clone(),
        code: reference.code,
        building_block: reference.building_block,
        reward_type: operation.reward_type.clone(),
        amount: reference.amount,
        description: reference.description,
        status: "pending".into(),
    };
    submit(&app, Command::Grant(command)).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
