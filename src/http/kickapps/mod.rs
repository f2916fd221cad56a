//! KickApps' AddUserAction over HTTP, and the admin calls that disable and enable a user.
//!
//! | method | path | module |
//! |---|---|---|
//! | GET, POST | `/rest/user/action/add/{as}` | [`add`] |
//! | POST | `/rest/user/disable/{as}`, `/rest/user/enable/{as}` | [`status`] |
//!
//! Like the rest of the sidecar it never writes state: an action and a status change are
//! commands in the commands topic, evaluated by the user's single writer. What is the
//! facade's own: the seed's parameters ([`params`]) and answers with their error codes
//! ([`answer`]), the sites' admin tokens ([`access`], [`config`]), and CORS in place of JSONP
//! ([`cors()`]). These routes do not sit behind the sidecar's `X-ClientId` signatures: the admin
//! token `t` is their authentication, as in KickApps.

pub mod access;
pub mod add;
pub mod answer;
pub mod config;
pub mod params;
pub mod status;

pub use add::mapping;
pub use config::{demo_settings, Sites, DEMO_ADMIN_TOKEN, DEMO_SITE};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The paths, for the routes that answer OPTIONS.
const PATHS: [&str; 3] = [
    "/rest/user/action/add/{as}",
    "/rest/user/disable/{as}",
    "/rest/user/enable/{as}",
];

/// The routes, documented; each path also answers OPTIONS ([`options`]).
pub fn routes() -> OpenApiRouter<Arc<AppState>> {
    let documented = OpenApiRouter::new()
        .routes(routes!(add::add_get, add::add_post))
        .routes(routes!(status::disable))
        .routes(routes!(status::enable));
    PATHS.iter().fold(documented, |router, path| {
        router.route(path, axum::routing::options(options))
    })
}

/// OPTIONS: 204 with the methods. A route of its own (not the router's 405) so that the CORS
/// layer wrapping these routes sees a browser's preflight and answers it; the sidecar's
/// method-not-allowed fallback is not wrapped by route layers.
async fn options() -> impl IntoResponse {
    (
        StatusCode::NO_CONTENT,
        [(header::ALLOW, "GET, POST, OPTIONS")],
    )
}

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// CORS for the KickApps routes, as `kickapps.cors_origins` allows; `None` when it lists no
/// origin (no CORS headers: a page of another origin cannot read the answers).
///
/// No credentials: the token travels as the `t` parameter, never in a cookie, so a page can
/// only act with a token it was given.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked at startup (`Sites::new`): every origin is a valid header value.
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
