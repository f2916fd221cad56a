//! `POST /rest/user/disable/{as}` and `POST /rest/user/enable/{as}`: an admin disables or
//! enables a user of the site (the seed's error 48, "User is either disabled or blocked").
//!
//! The sidecar never writes state: the change is a [`Command::UserStatus`] in the commands
//! topic, keyed by the user, which the user's single writer applies in order with the user's
//! actions and keeps in the user's state. From then on the worker refuses the user's actions,
//! from any topic, as dead letters (`questline-reject-kind: user_disabled`), and
//! AddUserAction answers 48 after reading the stored state.
//!
//! **The window.** AddUserAction reads the *stored* state, which the change reaches only once
//! the worker has evaluated it (normally within a batch, milliseconds; longer when the worker
//! lags). A call in that window is answered `added` and its action then becomes a dead letter
//! when the worker reaches it behind the change: the user is never credited, but the caller
//! was told `added`. The other way round, a call just after enabling may still get 48 and
//! should be retried. No action is ever counted for a user whose disabling the worker had
//! applied before it.
//!
//! Only POST: a state change behind a GET could be triggered by any page that embeds the URL.

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

use super::access::admin;
use super::answer::{codes, success, Failure, KickError, Success};
use super::params::Params;
use crate::core::limits::MAX_USER_ID_BYTES;
use crate::core::state::UserStatusChange;
use crate::http::actions::submit;
use crate::http::error::ApiError;
use crate::http::request::LimitedBody;
use crate::http::AppState;
use crate::pipeline::commands::Command;

/// A status change's answer (after `"status": 1`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChanged {
    #[schema(example = "kick-9")]
    pub user_id: String,
    /// The status the change sets.
    pub disabled: bool,
}

/// The change a call asks for, once its caller is an admin of the site.
pub fn change_of(
    tenant: &str,
    params: &Params,
    disabled: bool,
) -> Result<UserStatusChange, KickError> {
    let user_id = params
        .text("user_id")?
        .ok_or_else(|| KickError::new(codes::INVALID_USER, "user_id: is required"))?;
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(KickError::new(
            codes::INVALID_USER,
            format!(
                "user_id: cannot exceed {MAX_USER_ID_BYTES} bytes, found {}",
                user_id.len()
            ),
        ));
    }
    Ok(UserStatusChange {
        tenant: tenant.to_string(),
        user_id,
        disabled,
    })
}

async fn change(
    app: &AppState,
    site: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Result<LimitedBody, ApiError>,
    disabled: bool,
) -> Result<Json<Success<StatusChanged>>, KickError> {
    let LimitedBody(body) = body?;
    let params = Params::read(query, headers, &body)?;
    let tenant = admin(&app.kickapps, site, &params)?;
    let change = change_of(tenant, &params, disabled)?;
    let answer = StatusChanged {
        user_id: change.user_id.clone(),
        disabled,
    };
    submit(app, Command::UserStatus(change)).await?;
    Ok(success(answer))
}

/// Disables a user: the worker refuses the user's actions until enabled (error 48 here).
#[utoipa::path(
    post,
    path = "/rest/user/disable/{as}",
    tag = "kickapps",
    params(
        ("as" = String, Path, description = "The site id"),
        ("t" = String, Query, description = "An admin token of the site (or in the body)"),
        ("user_id" = String, Query, description = "The user (or in the body)"),
    ),
    responses(
        (status = 200, description = "In the log; the worker applies it in order with the user's actions", body = Success<StatusChanged>,
         example = json!({"status": 1, "userId": "kick-9", "disabled": true})),
        (status = 400, description = "13: `user_id` (missing, over 256 bytes or given twice); 900: the body", body = Failure),
        (status = 401, description = "44 or 1: the token", body = Failure),
        (status = 403, description = "18: an admin token of another site", body = Failure),
        (status = 503, description = "903: the log is unavailable; retrying is harmless", body = Failure),
    )
)]
pub async fn disable(
    State(app): State<Arc<AppState>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<LimitedBody, ApiError>,
) -> Result<Json<Success<StatusChanged>>, KickError> {
    change(&app, &site, query.as_deref(), &headers, body, true).await
}

/// Enables a user again.
#[utoipa::path(
    post,
    path = "/rest/user/enable/{as}",
    tag = "kickapps",
    params(
        ("as" = String, Path, description = "The site id"),
        ("t" = String, Query, description = "An admin token of the site (or in the body)"),
        ("user_id" = String, Query, description = "The user (or in the body)"),
    ),
    responses(
        (status = 200, description = "In the log", body = Success<StatusChanged>,
         example = json!({"status": 1, "userId": "kick-9", "disabled": false})),
        (status = 400, description = "13: `user_id` (missing, over 256 bytes or given twice); 900: the body", body = Failure),
        (status = 401, description = "44 or 1: the token", body = Failure),
        (status = 403, description = "18: an admin token of another site", body = Failure),
        (status = 503, description = "903: the log is unavailable; retrying is harmless", body = Failure),
    )
)]
pub async fn enable(
    State(app): State<Arc<AppState>>,
    Path(site): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<LimitedBody, ApiError>,
) -> Result<Json<Success<StatusChanged>>, KickError> {
    change(&app, &site, query.as_deref(), &headers, body, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_required_and_bounded() {
        let params = |q: &str| Params::read(Some(q), &HeaderMap::new(), b"").unwrap();
        let change = change_of("default", &params("user_id=kick-9"), true).unwrap();
        assert_eq!(
            change,
            UserStatusChange {
                tenant: "default".into(),
                user_id: "kick-9".into(),
                disabled: true
            }
        );
        assert_eq!(
            change_of("default", &params(""), true).unwrap_err().code,
            13
        );
        let long = format!("user_id={}", "u".repeat(257));
        assert_eq!(
            change_of("default", &params(&long), false)
                .unwrap_err()
                .code,
            13
        );
    }
}
