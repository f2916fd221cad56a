//! `POST /userauth/user/tenant/login` and `GET /userauth/user/tenant/balance`.
//!
//! Login is "login or signup" in the seed: the engine keeps no user registry (a user exists
//! once an action of theirs was evaluated), so login only issues a token for the `userId` of
//! the license key's tenant and reads the user's coins (0 for a user never seen).

use axum::extract::{RawQuery, State};
use axum::Json;
use rust_decimal::Decimal;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

use super::access::{Authorized, Licensed};
use super::body;
use super::envelope::{ok, Envelope, ErrorBody, KweggError};
use super::token::{self, Claims};
use super::{LicenseHeaders, TokenHeaders};
use crate::core::decimal;
use crate::core::model::UserKey;
use crate::http::error::ApiError;
use crate::http::request::{self, LimitedBody, Params};
use crate::http::AppState;

/// The login body.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: the handler reads the raw JSON
pub struct LoginBody {
    /// Your user id (1–256 characters).
    #[schema(example = "12")]
    user_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginData {
    /// Send it as `Authorization` with every other request; valid `kwegg.token_ttl_seconds`.
    pub access_token: String,
    pub user: UserData,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserData {
    pub user_id: String,
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub balance: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BalanceData {
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub balance: Decimal,
}

/// The user's coins now: the balance of `kwegg.reward_type`, expired prizes taken out.
pub async fn coins(app: &AppState, tenant: &str, user_id: &str) -> Result<Decimal, KweggError> {
    let Some(shared) = app.catalog().tenant_shared(tenant) else {
        return Ok(Decimal::ZERO);
    };
    let catalog = &*shared;
    let key = UserKey::new(tenant, user_id);
    let record = app
        .store
        .load_users(&[key])
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .next()
        .flatten();
    let state = request::current_state(record, catalog, chrono::Utc::now()).unwrap_or_default();
    Ok(state
        .balances
        .get(app.kwegg.reward_type())
        .copied()
        .unwrap_or_default()
        .normalize())
}

/// Logs a user in: an access token for them, and their coins.
#[utoipa::path(
    post,
    path = "/userauth/user/tenant/login",
    tag = "kwegg",
    params(LicenseHeaders),
    request_body = LoginBody,
    responses(
        (status = 200, description = "The access token and the user's coins", body = Envelope<LoginData>,
         example = json!({"success": true, "message": "Login successfully", "data": {"accessToken": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9…", "user": {"userId": "12", "balance": 0}}})),
        (status = 400, description = "`userId` or `Platform` is missing or invalid; `data.field` names it", body = ErrorBody),
        (status = 401, description = "`License-Key` is missing or unknown", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn login(
    State(app): State<Arc<AppState>>,
    licensed: Licensed,
    body: Result<LimitedBody, ApiError>,
) -> Result<Json<Envelope<LoginData>>, KweggError> {
    let map = body::object(body)?;
    let user_id = body::user_id(&map)?;
    let claims = Claims::new(
        &user_id,
        &licensed.tenant,
        &licensed.platform,
        chrono::Utc::now(),
        app.kwegg.ttl(),
    );
    let balance = coins(&app, &licensed.tenant, &user_id).await?;
    Ok(ok(
        "Login successfully",
        LoginData {
            access_token: token::issue(app.kwegg.secret(), &claims),
            user: UserData { user_id, balance },
        },
    ))
}

/// The user's coins.
#[utoipa::path(
    get,
    path = "/userauth/user/tenant/balance",
    tag = "kwegg",
    params(
        ("userId" = Option<String>, Query, description = "The token's user (the default); another user is a 403"),
        TokenHeaders,
    ),
    responses(
        (status = 200, description = "The balance of the coins' reward type", body = Envelope<BalanceData>,
         example = json!({"success": true, "message": "Balance fetched successfully", "data": {"balance": 0}})),
        (status = 400, description = "`Platform` is missing or invalid", body = ErrorBody),
        (status = 401, description = "`License-Key` or the access token is missing or refused", body = ErrorBody),
        (status = 403, description = "`userId` is not the token's user", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn balance(
    State(app): State<Arc<AppState>>,
    caller: Authorized,
    RawQuery(raw): RawQuery,
) -> Result<Json<Envelope<BalanceData>>, KweggError> {
    let params = Params::parse(raw.as_deref());
    caller.same_user("userId", params.get("userId"))?;
    let balance = coins(&app, &caller.tenant, &caller.user_id).await?;
    Ok(ok("Balance fetched successfully", BalanceData { balance }))
}

/// The balance under the path of the seed's curl example, which leaves out `/userauth`
/// (`{{BaseURL}}/user/tenant/balance?userId=12&=`), so clients copied from it work too.
#[utoipa::path(
    get,
    path = "/user/tenant/balance",
    tag = "kwegg",
    params(
        ("userId" = Option<String>, Query, description = "The token's user (the default); another user is a 403"),
        TokenHeaders,
    ),
    responses(
        (status = 200, description = "As `GET /userauth/user/tenant/balance`", body = Envelope<BalanceData>),
        (status = 401, description = "`License-Key` or the access token is missing or refused", body = ErrorBody),
        (status = 403, description = "`userId` is not the token's user", body = ErrorBody),
    )
)]
pub async fn balance_as_in_the_seeds_curl(
    state: State<Arc<AppState>>,
    caller: Authorized,
    query: RawQuery,
) -> Result<Json<Envelope<BalanceData>>, KweggError> {
    balance(state, caller, query).await
}
