//! The Kwegg API facade: the Kwegg loyalty API's endpoints, wire-compatible, over the engine.
//!
//! | method | path | module |
//! |---|---|---|
//! | POST | `/userauth/user/tenant/login` | [`users`] |
//! | GET | `/userauth/user/tenant/balance` (also `/user/tenant/balance`, as the seed's curl has it) | [`users`] |
//! | POST | `/core/user/tenant/event/occurence` | [`events`] |
//! | GET | `/core/user/tenant/transactions` | [`transactions`] |
//! | GET | `/core/user/tenant/offers` | [`offers`] |
//! | POST | `/core/user/tenant/offers/redeem` | [`offers`] |
//! | GET | `/core/user/tenant/offers/redemptions/{redemptionId}` | [`offers`] |
//!
//! Like the rest of the sidecar it never writes state: an event occurrence is an action and a
//! redemption a claim, both submitted to the commands topic and evaluated by the user's single
//! writer; balances and transactions are read from the store's read models. What is the
//! facade's own: the seed's headers and envelope ([`access`], [`envelope`]), its access tokens
//! ([`token`], signed and expiring rather than stored), and its configuration ([`config`]).
//! It does not sit behind the sidecar's `X-ClientId` signatures (Kwegg clients authenticate
//! with their license key and token instead).

pub mod access;
pub mod body;
pub mod config;
pub mod envelope;
pub mod events;
pub mod offers;
pub mod token;
pub mod transactions;
pub mod users;

pub use config::{demo_settings, Facade, DEMO_LICENSE_KEY, DEMO_TENANT};

use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The headers of the login and the offers list.
#[derive(Debug, IntoParams)]
#[into_params(names("License-Key", "Platform"), parameter_in = Header)]
#[allow(dead_code)] // documentation only: read by `access`
pub struct LicenseHeaders(
    /// The tenant's license key (`kwegg.license_keys`).
    String,
    /// `ANDROID`, `IOS`, `WEB` or `RAW`, any case.
    String,
);

/// The headers of every request made with an access token.
#[derive(Debug, IntoParams)]
#[into_params(names("License-Key", "Platform", "Authorization"), parameter_in = Header)]
#[allow(dead_code)] // documentation only: read by `access`
pub struct TokenHeaders(
    /// The tenant's license key (`kwegg.license_keys`).
    String,
    /// The platform the token was issued for.
    String,
    /// The login's `accessToken`, bare (as the seed sends it) or as `Bearer <token>`.
    String,
);

/// The facade's routes, documented.
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .routes(routes!(users::login))
        .routes(routes!(users::balance))
        .routes(routes!(users::balance_as_in_the_seeds_curl))
        .routes(routes!(events::occurrence))
        .routes(routes!(transactions::transactions))
        .routes(routes!(offers::list))
        .routes(routes!(offers::redeem))
        .routes(routes!(offers::status))
}
