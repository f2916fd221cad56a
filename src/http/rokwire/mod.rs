//! The Rokwire Rewards Building Block's API on the sidecar (snake_case, tenant = `org_id`,
//! named by `X-Tenant` as elsewhere): services grant operations, users read their balance,
//! history and claims and claim.
//!
//! | method | path | module |
//! |---|---|---|
//! | POST | `/int/reward` | [`reward`] |
//! | GET | `/user/balance`, `/user/history`, `/user/claims` | [`user`] |
//! | POST | `/user/claims` | [`user`] |
//!
//! Thin adapters over the native machinery: a grant is a [`crate::pipeline::commands::Command::Grant`]
//! in the log and a claim a [`crate::pipeline::commands::Command::Claim`], both evaluated by the
//! user's single writer; balances come from the user's stored state and history and claims
//! from the user's history (which holds every grant and every claim outcome). No second ledger.
//!
//! **Which user.** The `/user/*` routes name the user with the `user_id` query parameter. The
//! query is part of what a client signs (`PATH?QUERY`), so a signed request cannot be replayed
//! for another user; a header would not be signed. The caller is the application acting for
//! the user (Rokwire's clients hold the user's session; this sidecar has none).

pub mod reward;
pub mod user;

use axum::http::HeaderMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::request::{clip, Params};
use super::AppState;
use crate::core::evaluator::{valid_grant_id, MAX_GRANT_ID_LEN};
use crate::store::{HistoryEntry, UserKey};

/// The header a client may send its idempotency id in (or an `id` field of the body).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// How many of a user's newest history entries the history and claims listings look at.
/// The store pages the whole history; these listings are filters of it.
pub const SCAN_LIMIT: u32 = 1000;
/// History entries read per store call while scanning.
const CHUNK: u32 = 100;

/// The demo's service clients: the building blocks of the example operations, with the
/// secrets the documentation's curl commands sign with. Authentication is optional, so the
/// rest of the demo's API answers unsigned requests as before; `POST /int/reward` needs one.
pub const DEMO_CLIENTS: [(&str, &str); 2] = [
    ("groups", "demo-groups-secret"),
    ("surveys", "demo-surveys-secret"),
];

/// The admin client of `questline demo` (id, secret): it may call `/admin/*`.
pub const DEMO_ADMIN: (&str, &str) = ("admin", "demo-admin-secret");

/// `http.auth` of `questline demo`: [`DEMO_CLIENTS`] and [`DEMO_ADMIN`], optional.
pub fn demo_auth() -> crate::settings::AuthSettings {
    crate::settings::AuthSettings {
        clients: DEMO_CLIENTS
            .iter()
            .chain(std::iter::once(&DEMO_ADMIN))
            .map(|(id, secret)| (id.to_string(), secret.to_string()))
            .collect(),
        optional: true,
        admin_clients: vec![DEMO_ADMIN.0.to_string()],
        ..Default::default()
    }
}

/// The routes, for the authenticated API router (they need `X-ClientId` when it is on).
pub fn routes() -> OpenApiRouter<std::sync::Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(reward::grant))
        .routes(routes!(user::balance))
        .routes(routes!(user::history))
        .routes(routes!(user::list_claims, user::create_claim))
}

/// The request's idempotency id: `Idempotency-Key`, or the body's `id`, the same when both
/// are sent; a fresh UUID (no deduplication) when neither is.
pub fn idempotency_id(
    headers: &HeaderMap,
    body_id: Option<&serde_json::Value>,
) -> Result<String, ApiError> {
    let bad = |shown: &str| {
        ApiError::invalid(
            "id",
            format!(
                "id: '{}' must be 1–{MAX_GRANT_ID_LEN} characters of A-Z a-z 0-9 . _ : -",
                clip(shown)
            ),
        )
    };
    let header = match headers.get(IDEMPOTENCY_HEADER) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| bad("(not visible ASCII)"))?.trim();
            if !valid_grant_id(text) {
                return Err(bad(text).with_field("Idempotency-Key"));
            }
            Some(text.to_string())
        }
    };
    let body = match body_id {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) if valid_grant_id(id) => Some(id.clone()),
        Some(serde_json::Value::String(id)) => return Err(bad(id)),
        Some(other) => return Err(bad(&other.to_string())),
    };
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(ApiError::invalid(
            "id",
            format!(
                "id: '{}' differs from the Idempotency-Key '{}'; send one, or the same",
                clip(&b),
                clip(&h)
            ),
        )),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

/// The user a `/user/*` request is about: the `user_id` query parameter.
pub fn query_user(params: &Params) -> Result<String, ApiError> {
    super::request::user_id("user_id", params.get("user_id"))
}

/// `limit` (1–100, default 20) and `offset` (default 0) of a listing.
pub fn window(params: &Params) -> Result<(usize, usize), ApiError> {
    let limit = params.u32("limit")?.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit: must be 1–100"));
    }
    let offset = params.u32("offset")?.unwrap_or(0);
    Ok((limit as usize, offset as usize))
}

/// The user's newest history entries, newest first, at most [`SCAN_LIMIT`].
pub async fn recent_history(app: &AppState, key: &UserKey) -> Result<Vec<HistoryEntry>, ApiError> {
    let mut entries = Vec::new();
    let mut page = 1;
    loop {
        let (chunk, total) = app.store.history(key, page, CHUNK).await?;
        let done = chunk.len() < CHUNK as usize;
        entries.extend(chunk);
        if done || entries.len() as u64 >= total || entries.len() >= SCAN_LIMIT as usize {
            break;
        }
        page += 1;
    }
    entries.truncate(SCAN_LIMIT as usize);
    Ok(entries)
}
