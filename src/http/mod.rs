//! The HTTP sidecar (axum): progress, AddAction, balances, history, claims and operations.
//!
//! A thin adapter, by design (docs/design.md, "Data flow"): queries read the store's read models and render
//! them with the pure [`crate::core::view`]; actions and claims are validated and *submitted*
//! to the commands log through a [`CommandSink`] — the sidecar never writes state, so the
//! worker stays the single writer of every user and the sidecar can be scaled or restarted
//! freely.
//!
//! | method | path | module |
//! |---|---|---|
//! | GET | `/api/v1/Challenges/GetProgressChallengesInfoForUser` | [`progress`] |
//! | POST | `/api/v1/Integration/AddAction` | [`actions`] |
//! | GET | `/api/v1/users/{userId}/balances` | [`users`] |
//! | GET | `/api/v1/users/{userId}/history` | [`users`] |
//! | POST | `/api/v1/users/{userId}/claims` | [`users`] |
//! | GET | `/api/v1/users/{userId}/claims/{claimId}` | [`users`] |
//! | POST | `/int/reward`; GET `/user/balance`, `/user/history`; GET, POST `/user/claims` | [`rokwire`] |
//! | GET, POST | the Kwegg API: `/userauth/user/tenant/…`, `/core/user/tenant/…` | [`kwegg`] |
//! | GET, POST | KickApps: `/rest/user/action/add/{as}`, `/rest/user/disable|enable/{as}` | [`kickapps`] |
//! | GET | `/healthz`, `/readyz`, `/metrics`, `/openapi.json` | [`ops`] |
//!
//! The router and the OpenAPI document are built from one list of annotated handlers
//! (`utoipa-axum`), so a route cannot exist undocumented. Errors are seed-style bodies
//! ([`error`]); authentication is optional ([`auth`]); every request is traced and measured
//! ([`observe`]). The server around the router ([`server`]) bounds what a client can hold:
//! connections ([`connections`]), time to send a request, the request head ([`head`]).

pub mod actions;
pub mod admin;
pub mod auth;
pub mod connections;
pub mod error;
pub mod head;
pub mod images;
pub mod kickapps;
pub mod kwegg;
pub mod observe;
pub mod ops;
pub mod progress;
pub mod request;
pub mod rokwire;
pub mod server;
pub mod users;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::core::catalog::Catalog;
use crate::pipeline::catalog_feed::CatalogSource;
use crate::pipeline::commands::CommandSink;
use crate::settings::HttpSettings;
use crate::store::{StateStore, StoreError};
use error::{ApiError, Kind};
use images::ImageUrls;

/// Everything the handlers share. Built once by the composition root.
pub struct AppState {
    /// The catalog versions; queries use the one in force now ([`AppState::catalog`]).
    pub catalogs: CatalogSource,
    /// Read models: user state, history, claim outcomes, finished counters.
    pub store: Arc<dyn StateStore>,
    /// Where actions and claims go (the commands topic; the in-process log in `demo`).
    pub commands: Arc<dyn CommandSink>,
    pub settings: HttpSettings,
    /// The process's own readiness (e.g. not ready until the worker caught up).
    pub ready: Readiness,
    /// How catalog image keys become URLs; [`ImageUrls::AsIs`] unless configured.
    pub images: ImageUrls,
    /// The Kwegg API facade's configuration; off (no license key) unless configured.
    pub kwegg: kwegg::Facade,
    /// The KickApps sites and their admin tokens; none unless configured.
    pub kickapps: kickapps::Sites,
    /// The clients of `settings.auth`, checked once ([`auth::Clients`]).
    auth: auth::Clients,
    finished: FinishedCache,
}

/// How long a tenant's "people finished" counters are reused. They are a sum over every
/// user and every partition, shown as a popularity figure: a second of lag is invisible,
/// while reading them on every progress query would double the store calls per request.
/// A user's own progress is never cached.
pub const FINISHED_TTL: Duration = Duration::from_secs(1);

type FinishedCounts = Arc<BTreeMap<u32, u64>>;

/// Per tenant, the finished counters and when they were read.
#[derive(Default)]
struct FinishedCache(Mutex<HashMap<String, (Instant, FinishedCounts)>>);

impl AppState {
    /// A ready state with images returned as the catalog gives them.
    pub fn new(
        catalog: Arc<Catalog>,
        store: Arc<dyn StateStore>,
        commands: Arc<dyn CommandSink>,
        settings: HttpSettings,
    ) -> Self {
        // Startup refuses a bad client table (`check_settings`); this is the second line of
        // defence for callers that skipped it: bad clients are left out, auth stays on.
        let auth = auth::Clients::leaving_out_refused(&settings.auth);
        AppState {
            catalogs: CatalogSource::fixed((*catalog).clone()),
            store,
            commands,
            settings,
            ready: Readiness::default(),
            images: ImageUrls::default(),
            kwegg: kwegg::Facade::default(),
            kickapps: kickapps::Sites::default(),
            auth,
            finished: FinishedCache::default(),
        }
    }

    /// The catalog in force now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalogs.now()
    }

    /// Queries and commands follow the catalog versions of `catalogs` from now on.
    pub fn with_catalogs(mut self, catalogs: CatalogSource) -> Self {
        self.catalogs = catalogs;
        self
    }

    /// How long a request body may take to arrive (`http.body_timeout_seconds`).
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.settings.body_timeout_seconds)
    }

    /// Per challenge, how many users of `tenant` achieved it; at most [`FINISHED_TTL`] old.
    pub async fn people_finished(&self, tenant: &str) -> Result<FinishedCounts, StoreError> {
        let now = Instant::now();
        {
            let cache = self.finished.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, counts)) = cache.get(tenant) {
                if now.duration_since(*at) < FINISHED_TTL {
                    return Ok(Arc::clone(counts));
                }
            }
        }
        let counts = Arc::new(self.store.people_finished(tenant).await?);
        self.finished
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), (now, Arc::clone(&counts)));
        Ok(counts)
    }
}

/// The process-wide readiness handle `/readyz` reports.
pub use crate::readiness::Readiness;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "questline sidecar",
        description = "Progress, actions, balances, history and claims of the questline gamification engine. \
Errors are `{statusCode, statusName, message, field?}`; statusCode 1 is success. \
When authentication is configured, send X-ClientId, X-Timestamp (Unix seconds) and X-Message = \
hex HMAC-SHA256(secret, timestamp + \"\\n\" + METHOD + \"\\n\" + path?query + \"\\n\" + X-Tenant + \"\\n\" + \
Accept-Language + \"\\n\" + body), absent headers signed as empty."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "challenges", description = "The seed's progress query"),
        (name = "integration", description = "The seed's AddAction"),
        (name = "users", description = "Balances, history and claims"),
        (name = "rokwire", description = "The Rokwire Rewards Building Block: operation grants by services, a user's balance, history and claims (snake_case)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "admin", description = "Rokwire's admin API: reward types, inventories, operations; writes publish catalog versions"),
    )
)]
struct ApiDoc;

/// The three headers of client authentication, as OpenAPI security schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, header, description) in [
            (
                "clientId",
                "X-ClientId",
                "The client's id (http.auth.clients)",
            ),
            (
                "timestamp",
                "X-Timestamp",
                "Unix time in seconds; at most http.auth.max_skew_seconds away",
            ),
            (
                "message",
                "X-Message",
                "Hex or base64 HMAC-SHA256 of timestamp\\nMETHOD\\npath?query\\nX-Tenant\\nAccept-Language\\nbody",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    header,
                    description,
                ))),
            );
        }
    }
}

type Shared = Arc<AppState>;

/// The authenticated API: the seed's endpoints and the native user endpoints.
fn api_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(progress::get_progress))
        .routes(routes!(actions::add_action))
        .routes(routes!(users::balances))
        .routes(routes!(users::history))
        .routes(routes!(users::create_claim))
        .routes(routes!(users::claim_status))
        .routes(routes!(admin::list_types, admin::create_type))
        .routes(routes!(admin::get_type, admin::update_type))
        .routes(routes!(admin::list_inventories, admin::create_inventory))
        .routes(routes!(admin::get_inventory, admin::update_inventory))
        .routes(routes!(admin::list_operations, admin::create_operation))
        .routes(routes!(admin::get_operation, admin::update_operation))
        .merge(rokwire::routes())
}

/// The open endpoints: probes, metrics, the document itself.
fn open_routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi))
}

/// The OpenAPI document of every route, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes().split_for_parts();
    let (_, open) = open_routes().split_for_parts();
    doc.merge(open);
    doc.merge(kwegg::routes().split_for_parts().1);
    doc.merge(kickapps::routes().split_for_parts().1);
    doc
}

/// The document as JSON, rendered once per process.
fn openapi_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        openapi().to_pretty_json().unwrap_or_else(|e| {
            format!(r#"{{"error": "the OpenAPI document did not render: {e}"}}"#)
        })
    })
}

/// The sidecar's router.
pub fn router(state: AppState) -> Router {
    let state: Shared = Arc::new(state);
    let (api, _) = api_routes().split_for_parts();
    let api = api
        .route_layer(from_fn_with_state(Arc::clone(&state), auth::authenticate))
        .route_layer(from_fn(observe::observe));
    let (open, _) = open_routes().split_for_parts();
    let open = open.route_layer(from_fn(observe::observe));
    let (kwegg, _) = kwegg::routes().split_for_parts();
    let open = open.merge(kwegg.route_layer(from_fn(observe::observe)));
    let (kick, _) = kickapps::routes().split_for_parts();
    let kick = kick.route_layer(from_fn(observe::observe));
    let kick = match kickapps::cors(state.kickapps.cors_origins()) {
        Some(cors) => kick.layer(cors),
        None => kick,
    };
    let open = open.merge(kick);
    api.merge(open)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_panic| {
            tracing::error!("a request handler panicked");
            ApiError::new(Kind::Internal, "internal error").into_response()
        }))
        .with_state(state)
}

async fn not_found(method: Method, req: Request) -> Response {
    let started = Instant::now();
    let response = ApiError::not_found(format!(
        "no endpoint {method} {}; see /openapi.json",
        request::clip(req.uri().path())
    ))
    .into_response();
    observe::record(observe::UNMATCHED, &response, started);
    response
}

async fn method_not_allowed(method: Method, matched: Option<MatchedPath>) -> Response {
    let started = Instant::now();
    let route = matched
        .as_ref()
        .map_or(observe::UNMATCHED, MatchedPath::as_str);
    let response = ApiError::new(
        Kind::MethodNotAllowed,
        format!("{method} is not allowed on {route}; see /openapi.json"),
    )
    .into_response();
    observe::record(route, &response, started);
    response
}

/// Checks the `[http]` settings the sidecar cannot run with: limits ([`server::Limits`]) and
/// the client table ([`auth::Clients`]). Commands call it at startup, before binding.
pub fn check_settings(settings: &HttpSettings) -> Result<(), String> {
    server::Limits::new(settings)?;
    auth::Clients::new(&settings.auth)?;
    Ok(())
}

/// Serves the sidecar on `listener` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish (graceful shutdown). Refuses to start on settings that
/// [`check_settings`] refuses.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
    check_settings(&state.settings).map_err(invalid)?;
    let limits = server::Limits::new(&state.settings).map_err(invalid)?;
    server::serve(listener, router(state), limits, shutdown).await
}
