//! The Rokwire admin API: reward types and inventories (and operations) of a tenant, as
//! `/admin/types`, `/admin/inventories` and `/admin/operations` with the building block's field
//! names. Reads answer from the latest catalog version; writes never touch the store: each is
//! an edit of the tenant's catalog files ([`edit`]), checked like `questline check` and
//! published to the catalog log as the tenant's next version, which every worker applies from
//! its `effectiveFrom` on (returned in the `Questline-Catalog-Version` and
//! `Questline-Effective-From` headers).
//!
//! Only the clients listed in `http.auth.admin_clients` may call these routes; with
//! authentication off nobody may.

mod body;
pub mod edit;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::AuthenticatedClient;
use super::error::{ApiError, Kind, StatusBody};
use super::request::{self, LimitedBody};
use super::AppState;
use crate::core::catalog::{
    entity_id, CatalogHistory, Inventory, Operation, RewardKind, RewardType, SourceFile,
    TenantCatalog,
};
use crate::core::inventory::reward_resource;
use crate::core::limits;
use crate::pipeline::catalog_feed::{CatalogFeed, CatalogSource, PublishError, Published};
use body::{Body, Entry};
use edit::{EditError, Section};

/// Names and ids the API accepts, in bytes (as action ids and trigger keys).
const MAX_NAME_BYTES: usize = limits::MAX_TRIGGER_NAME_BYTES;
/// Units an inventory may hold: the bound of every amount (10^15).
const MAX_UNITS: u64 = 1_000_000_000_000_000;

/// The header naming the catalog version a write published.
pub const VERSION_HEADER: &str = "questline-catalog-version";
/// The header naming when that version takes effect (RFC 3339).
pub const EFFECTIVE_HEADER: &str = "questline-effective-from";

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Refused(refusal) => ApiError::new(
                Kind::InvalidInput,
                format!(
                    "the change is refused, nothing was published: {}",
                    refusal.reasons().join("; ")
                ),
            ),
            PublishError::Contended(_) => ApiError::new(Kind::Conflict, e.to_string()),
            PublishError::Log(e) => ApiError::new(
                Kind::Unavailable,
                format!("the catalog log is unavailable: {e}"),
            ),
        }
    }
}

impl From<EditError> for ApiError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::NotFound(message) => ApiError::not_found(message),
            EditError::Unreadable { .. } => ApiError::new(Kind::Internal, e.to_string()),
        }
    }
}

/// The client, if it is an admin; 403 otherwise.
fn require_admin(app: &AppState, client: Option<&AuthenticatedClient>) -> Result<String, ApiError> {
    match client {
        Some(AuthenticatedClient(id)) if app.settings.auth.admin_clients.contains(id) => {
            Ok(id.clone())
        }
        Some(AuthenticatedClient(id)) => Err(ApiError::new(
            Kind::Forbidden,
            format!("client '{id}' is not an admin client (http.auth.admin_clients)"),
        )),
        None => Err(ApiError::new(
            Kind::Forbidden,
            "admin calls need an authenticated admin client: configure http.auth.clients and http.auth.admin_clients",
        )),
    }
}

fn feed(app: &AppState) -> Result<&Arc<CatalogFeed>, ApiError> {
    match &app.catalogs {
        CatalogSource::Live(feed) => Ok(feed),
        CatalogSource::Fixed(_) => Err(ApiError::new(
            Kind::Unavailable,
            "the catalog is read from files only (catalog.follow_log = false): change the files and restart",
        )),
    }
}

/// The tenant named by `X-Tenant` (Rokwire's `org_id`); it need not exist yet for a write.
fn tenant(headers: &HeaderMap) -> Result<String, ApiError> {
    request::tenant_name(headers)
}

/// When an entity written without dates was created: when its tenant's catalog first entered
/// the log.
fn first_published(history: &CatalogHistory, tenant: &str) -> DateTime<Utc> {
    history
        .versions(tenant)
        .find(|v| v.version >= 1)
        .map_or(DateTime::<Utc>::UNIX_EPOCH, |v| v.published_at)
}

/// Publishes an edit and answers with the entity as the new version has it.
async fn publish<T: Serialize>(
    app: &AppState,
    tenant: &str,
    by: &str,
    status: StatusCode,
    edit: impl FnMut(&CatalogHistory) -> Result<Vec<SourceFile>, ApiError>,
    view: impl FnOnce(&CatalogHistory, &TenantCatalog) -> Option<T>,
) -> Result<Response, ApiError> {
    let feed = feed(app)?;
    let published = feed
        .update(tenant, &format!("admin API ({by})"), edit)
        .await?;
    let history = feed.current();
    let catalog = history
        .latest()
        .tenant_shared(tenant)
        .ok_or_else(|| ApiError::new(Kind::Internal, "the published tenant is missing"))?;
    let entity = view(&history, &catalog)
        .ok_or_else(|| ApiError::new(Kind::Internal, "the published entity is missing"))?;
    let mut response = (status, Json(entity)).into_response();
    let (version, from) = match &published {
        Published::Version(info) => (info.version, Some(info.effective_from)),
        Published::Unchanged(version) => (*version, None),
    };
    let headers = response.headers_mut();
    headers.insert(VERSION_HEADER, HeaderValue::from(version));
    if let Some(from) = from {
        if let Ok(value) = HeaderValue::from_str(&from.to_rfc3339()) {
            headers.insert(EFFECTIVE_HEADER, value);
        }
    }
    Ok(response)
}

/// The entity an update changes, as the latest version has it: its name (the field that may
/// not change) and whether it has a `date_created` of its own.
type Found = (String, bool);

/// The name field an update may send but not change, and why.
struct Rename {
    field: &'static str,
    sent: Option<String>,
    why: &'static str,
}

/// The edit that creates an entity in the tenant's admin file, unless `taken` names the field
/// and the entity that already hold its name or id (409).
fn create_edit(
    tenant: String,
    section: Section,
    entry: toml_edit::Table,
    taken: impl Fn(&TenantCatalog) -> Option<(&'static str, String)>,
) -> impl FnMut(&CatalogHistory) -> Result<Vec<SourceFile>, ApiError> {
    move |history| {
        let catalog = history.latest().tenant_shared(&tenant);
        if let Some((field, what)) = catalog.as_deref().and_then(&taken) {
            return Err(ApiError::new(
                Kind::Conflict,
                format!("{what} exists in tenant '{tenant}'"),
            )
            .with_field(field));
        }
        Ok(edit::create(
            &history.files(&tenant),
            &tenant,
            section,
            entry.clone(),
        )?)
    }
}

/// The edit that sets `fields` on the entity `id` where it is written (404 when the latest
/// version has none; 400 when the body renames it). An entity written without a
/// `date_created` gets the date its tenant entered the log.
fn update_edit(
    tenant: String,
    section: Section,
    id: String,
    fields: toml_edit::Table,
    rename: Rename,
    find: impl Fn(&TenantCatalog, &str) -> Option<Found>,
) -> impl FnMut(&CatalogHistory) -> Result<Vec<SourceFile>, ApiError> {
    let noun = section.noun();
    move |history| {
        let catalog = history.latest().tenant_shared(&tenant);
        let Some((name, dated)) = catalog.as_deref().and_then(|c| find(c, &id)) else {
            return Err(ApiError::not_found(format!(
                "no {noun} with id '{}'",
                request::clip(&id)
            )));
        };
        if rename.sent.as_ref().is_some_and(|sent| *sent != name) {
            return Err(ApiError::invalid(
                rename.field,
                format!("cannot be changed: {}", rename.why),
            ));
        }
        let mut fields = fields.clone();
        if !dated {
            fields.insert(
                "date_created",
                toml_edit::value(first_published(history, &tenant).to_rfc3339()),
            );
        }
        Ok(edit::update(
            &history.files(&tenant),
            &tenant,
            section,
            &id,
            &fields,
        )?)
    }
}

// ---- reward types ----------------------------------------------------------------------

/// A reward type, as Rokwire's building block shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RewardTypeView {
    pub id: String,
    pub org_id: String,
    pub reward_type: String,
    pub display_name: String,
    /// `points`, `voucher`, `badge` or `item` (questline's own field).
    #[schema(value_type = String)]
    pub kind: RewardKind,
    pub active: bool,
    pub description: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

fn type_view(history: &CatalogHistory, tenant: &TenantCatalog, t: &RewardType) -> RewardTypeView {
    let created = t
        .date_created
        .unwrap_or_else(|| first_published(history, &tenant.tenant));
    RewardTypeView {
        id: t
            .id
            .clone()
            .unwrap_or_else(|| entity_id(&tenant.tenant, "reward_type", &t.reward_type)),
        org_id: tenant.tenant.clone(),
        reward_type: t.reward_type.clone(),
        display_name: t.display_name.pick(&[]).to_string(),
        kind: t.kind,
        active: t.active,
        description: t.description.pick(&[]).to_string(),
        date_created: created,
        date_updated: t.date_updated.unwrap_or(created),
    }
}

fn find_type<'a>(tenant: &'a TenantCatalog, id: &str) -> Option<&'a RewardType> {
    tenant.reward_types.iter().find(|t| {
        t.id.as_deref().map_or_else(
            || entity_id(&tenant.tenant, "reward_type", &t.reward_type) == id,
            |own| own == id,
        )
    })
}

const TYPE_FIELDS: [&str; 5] = [
    "reward_type",
    "display_name",
    "active",
    "description",
    "kind",
];

fn type_entry(body: &Body, entry: &mut Entry) -> Result<(), ApiError> {
    entry.set_opt("display_name", body.text("display_name")?);
    entry.set_opt("description", body.text("description")?);
    entry.set_opt("active", body.flag("active")?);
    if let Some(kind) = body.text("kind")? {
        if !["points", "voucher", "badge", "item"].contains(&kind.as_str()) {
            return Err(ApiError::invalid(
                "kind",
                "must be points, voucher, badge or item",
            ));
        }
        entry.set("kind", kind);
    }
    Ok(())
}

#[utoipa::path(get, path = "/admin/types", tag = "admin",
    params(("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    responses(
        (status = 200, description = "The tenant's reward types", body = Vec<RewardTypeView>),
        (status = 403, description = "Not an admin client", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn list_types(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let history = app.catalogs.history();
    let views: Vec<RewardTypeView> = history
        .latest()
        .tenant(&tenant)
        .map(|t| {
            t.reward_types
                .iter()
                .map(|r| type_view(&history, t, r))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(views).into_response())
}

#[utoipa::path(get, path = "/admin/types/{id}", tag = "admin",
    params(("id" = String, Path), ("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    responses(
        (status = 200, description = "The reward type", body = RewardTypeView),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 404, description = "No such reward type", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn get_type(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let history = app.catalogs.history();
    let catalog = history.latest().tenant_shared(&tenant);
    catalog
        .as_deref()
        .and_then(|t| find_type(t, &id).map(|r| type_view(&history, t, r)))
        .map(|v| Json(v).into_response())
        .ok_or_else(|| {
            ApiError::not_found(format!("no reward type with id '{}'", request::clip(&id)))
        })
}

#[utoipa::path(post, path = "/admin/types", tag = "admin",
    params(("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    request_body(content = serde_json::Value, description = "`reward_type` (required), `display_name`, `description`, `active` (default true), `kind` (default points)"),
    responses(
        (status = 201, description = "Published as the tenant's next catalog version", body = RewardTypeView),
        (status = 400, description = "Invalid body (`field` names it) or a catalog the change would make invalid", body = StatusBody),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 409, description = "The reward type exists", body = StatusBody),
        (status = 503, description = "The catalog log is unavailable", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn create_type(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let by = require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let body = Body::parse(&bytes, &TYPE_FIELDS)?;
    let name = body.required_text("reward_type")?;
    if name.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid(
            "reward_type",
            format!("at most {} bytes", MAX_NAME_BYTES),
        ));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    let mut entry = Entry::default();
    entry.set("reward_type", name.clone());
    type_entry(&body, &mut entry)?;
    entry.set("id", id.clone());
    entry.set("date_created", now.to_rfc3339());
    entry.set("date_updated", now.to_rfc3339());
    publish(
        &app,
        &tenant,
        &by,
        StatusCode::CREATED,
        create_edit(tenant.clone(), Section::RewardTypes, entry.0, move |c| {
            c.reward_type(&name)
                .is_some()
                .then(|| ("reward_type", format!("reward_type '{name}'")))
        }),
        |history, catalog| find_type(catalog, &id).map(|r| type_view(history, catalog, r)),
    )
    .await
}

#[utoipa::path(put, path = "/admin/types/{id}", tag = "admin",
    params(("id" = String, Path), ("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    request_body(content = serde_json::Value, description = "Any of `display_name`, `description`, `active`, `kind`; `reward_type` may be sent but not changed"),
    responses(
        (status = 200, description = "Published as the tenant's next catalog version", body = RewardTypeView),
        (status = 400, description = "Invalid body, or a catalog the change would make invalid", body = StatusBody),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 404, description = "No such reward type", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn update_type(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let by = require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let body = Body::parse(&bytes, &TYPE_FIELDS)?;
    let mut entry = Entry::default();
    type_entry(&body, &mut entry)?;
    entry.set("date_updated", Utc::now().to_rfc3339());
    let renamed = body.text("reward_type")?;
    publish(
        &app,
        &tenant,
        &by,
        StatusCode::OK,
        update_edit(
            tenant.clone(),
            Section::RewardTypes,
            id.clone(),
            entry.0,
            Rename {
                field: "reward_type",
                sent: renamed,
                why: "balances and history are kept under it; create a new type",
            },
            |c, id| find_type(c, id).map(|t| (t.reward_type.clone(), t.date_created.is_some())),
        ),
        |history, catalog| find_type(catalog, &id).map(|r| type_view(history, catalog, r)),
    )
    .await
}

// ---- inventories -----------------------------------------------------------------------

/// An inventory, as Rokwire's building block shows it; `amount_granted` and
/// `amount_claimed` are the inventory stage's counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryView {
    pub id: String,
    pub org_id: String,
    pub reward_type: String,
    pub in_stock: bool,
    pub amount_total: u64,
    pub amount_granted: u64,
    pub amount_claimed: u64,
    pub grant_depleted: bool,
    pub claim_depleted: bool,
    pub description: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

fn inventory_view(
    history: &CatalogHistory,
    tenant: &str,
    inventory: &Inventory,
    counts: Option<&crate::core::inventory::ResourceState>,
) -> InventoryView {
    let created = inventory
        .date_created
        .unwrap_or_else(|| first_published(history, tenant));
    let count = |map: Option<&std::collections::BTreeMap<String, u64>>| {
        map.and_then(|m| m.get(&inventory.id)).copied().unwrap_or(0)
    };
    InventoryView {
        id: inventory.id.clone(),
        org_id: tenant.to_string(),
        reward_type: inventory.reward_type.clone(),
        in_stock: inventory.in_stock,
        amount_total: inventory.amount_total,
        amount_granted: count(counts.map(|c| &c.granted)),
        amount_claimed: count(counts.map(|c| &c.claimed)),
        grant_depleted: inventory.grant_depleted,
        claim_depleted: inventory.claim_depleted,
        description: inventory.description.clone(),
        date_created: created,
        date_updated: inventory.date_updated.unwrap_or(created),
    }
}

/// The inventory stage's counts of every reward type the inventories supply.
async fn stock(
    app: &AppState,
    tenant: &str,
    inventories: &[&Inventory],
) -> Result<std::collections::BTreeMap<String, crate::core::inventory::ResourceState>, ApiError> {
    let mut types: Vec<String> = inventories.iter().map(|i| i.reward_type.clone()).collect();
    types.sort();
    types.dedup();
    let keys: Vec<String> = types.iter().map(|t| reward_resource(tenant, t)).collect();
    let loaded = app.store.load_resources(&keys).await?;
    Ok(types
        .into_iter()
        .zip(loaded)
        .filter_map(|(t, r)| r.map(|r| (t, r.state)))
        .collect())
}

const INVENTORY_FIELDS: [&str; 8] = [
    "reward_type",
    "amount_total",
    "in_stock",
    "grant_depleted",
    "claim_depleted",
    "description",
    "codes",
    "id",
];

fn inventory_entry(body: &Body, entry: &mut Entry) -> Result<(), ApiError> {
    entry.set_opt(
        "amount_total",
        body.count("amount_total", MAX_UNITS)?
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    );
    entry.set_opt("in_stock", body.flag("in_stock")?);
    entry.set_opt("grant_depleted", body.flag("grant_depleted")?);
    entry.set_opt("claim_depleted", body.flag("claim_depleted")?);
    entry.set_opt("description", body.text("description")?);
    if let Some(codes) = body.texts("codes")? {
        entry.set("codes", toml_edit::Array::from_iter(codes));
    }
    Ok(())
}

#[utoipa::path(get, path = "/admin/inventories", tag = "admin",
    params(("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    responses(
        (status = 200, description = "The tenant's inventories with their counts", body = Vec<InventoryView>),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 503, description = "The store is unavailable", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn list_inventories(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let history = app.catalogs.history();
    let catalog = history.latest().tenant_shared(&tenant);
    let inventories: Vec<&Inventory> = catalog.iter().flat_map(|c| c.inventories.iter()).collect();
    let counts = stock(&app, &tenant, &inventories).await?;
    let views: Vec<InventoryView> = inventories
        .iter()
        .map(|i| inventory_view(&history, &tenant, i, counts.get(&i.reward_type)))
        .collect();
    Ok(Json(views).into_response())
}

#[utoipa::path(get, path = "/admin/inventories/{id}", tag = "admin",
    params(("id" = String, Path), ("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    responses(
        (status = 200, description = "The inventory with its counts", body = InventoryView),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 404, description = "No such inventory", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn get_inventory(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    inventory_answer(&app, &tenant, &id, StatusCode::OK, None).await
}

async fn inventory_answer(
    app: &AppState,
    tenant: &str,
    id: &str,
    status: StatusCode,
    published: Option<Response>,
) -> Result<Response, ApiError> {
    let history = app.catalogs.history();
    let catalog = history.latest().tenant_shared(tenant);
    let Some(inventory) = catalog
        .as_deref()
        .and_then(|c| c.inventories.iter().find(|i| i.id == id))
    else {
        return Err(ApiError::not_found(format!(
            "no inventory with id '{}'",
            request::clip(id)
        )));
    };
    let counts = stock(app, tenant, &[inventory]).await?;
    let view = inventory_view(
        &history,
        tenant,
        inventory,
        counts.get(&inventory.reward_type),
    );
    let mut response = (status, Json(view)).into_response();
    if let Some(published) = published {
        for name in [VERSION_HEADER, EFFECTIVE_HEADER] {
            if let Some(v) = published.headers().get(name) {
                response.headers_mut().insert(name, v.clone());
            }
        }
    }
    Ok(response)
}

#[utoipa::path(post, path = "/admin/inventories", tag = "admin",
    params(("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    request_body(content = serde_json::Value, description = "`reward_type` and `amount_total` (required), `in_stock` (default true), `grant_depleted`, `claim_depleted`, `description`, `codes`; `id` to choose one (else generated)"),
    responses(
        (status = 201, description = "Published as the tenant's next catalog version", body = InventoryView),
        (status = 400, description = "Invalid body (`field` names it) or a catalog the change would make invalid (an unknown reward type)", body = StatusBody),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 409, description = "The id exists", body = StatusBody),
        (status = 503, description = "The catalog log is unavailable", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn create_inventory(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let by = require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let body = Body::parse(&bytes, &INVENTORY_FIELDS)?;
    let reward_type = body.required_text("reward_type")?;
    if !body.has("amount_total") {
        return Err(ApiError::invalid("amount_total", "is required"));
    }
    let id = match body.text("id")? {
        Some(id) if !id.trim().is_empty() && id.len() <= MAX_NAME_BYTES => id,
        Some(_) => {
            return Err(ApiError::invalid(
                "id",
                format!("must not be blank and at most {} bytes", MAX_NAME_BYTES),
            ))
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let now = Utc::now();
    let mut entry = Entry::default();
    entry.set("id", id.clone());
    entry.set("reward_type", reward_type);
    inventory_entry(&body, &mut entry)?;
    entry.set("date_created", now.to_rfc3339());
    entry.set("date_updated", now.to_rfc3339());
    let new_id = id.clone();
    let published = publish(
        &app,
        &tenant,
        &by,
        StatusCode::CREATED,
        create_edit(tenant.clone(), Section::Inventories, entry.0, move |c| {
            c.inventories
                .iter()
                .any(|i| i.id == new_id)
                .then(|| ("id", format!("inventory '{new_id}'")))
        }),
        |_, _| Some(()),
    )
    .await?;
    inventory_answer(&app, &tenant, &id, StatusCode::CREATED, Some(published)).await
}

#[utoipa::path(put, path = "/admin/inventories/{id}", tag = "admin",
    params(("id" = String, Path), ("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    request_body(content = serde_json::Value, description = "Any of `amount_total`, `in_stock`, `grant_depleted`, `claim_depleted`, `description`, `codes`; `reward_type` may be sent but not changed"),
    responses(
        (status = 200, description = "Published as the tenant's next catalog version", body = InventoryView),
        (status = 400, description = "Invalid body, or a catalog the change would make invalid", body = StatusBody),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 404, description = "No such inventory", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn update_inventory(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let by = require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let body = Body::parse(&bytes, &INVENTORY_FIELDS)?;
    if body.text("id")?.is_some_and(|new| new != id) {
        return Err(ApiError::invalid("id", "cannot be changed"));
    }
    let mut entry = Entry::default();
    inventory_entry(&body, &mut entry)?;
    entry.set("date_updated", Utc::now().to_rfc3339());
    let renamed = body.text("reward_type")?;
    let published = publish(
        &app,
        &tenant,
        &by,
        StatusCode::OK,
        update_edit(
            tenant.clone(),
            Section::Inventories,
            id.clone(),
            entry.0,
            Rename {
                field: "reward_type",
                sent: renamed,
                why: "its counts belong to this reward type; create a new inventory",
            },
            |c, id| {
                c.inventories
                    .iter()
                    .find(|i| i.id == id)
                    .map(|i| (i.reward_type.clone(), i.date_created.is_some()))
            },
        ),
        |_, _| Some(()),
    )
    .await?;
    inventory_answer(&app, &tenant, &id, StatusCode::OK, Some(published)).await
}

// ---- operations ------------------------------------------------------------------------

/// An operation, as Rokwire's building block shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationView {
    pub id: String,
    pub org_id: String,
    pub reward_type: String,
    pub code: String,
    pub building_block: String,
    pub amount: u64,
    pub description: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

fn operation_view(history: &CatalogHistory, tenant: &str, op: &Operation) -> OperationView {
    let created = op
        .date_created
        .unwrap_or_else(|| first_published(history, tenant));
    OperationView {
        id: op.id_in(tenant),
        org_id: tenant.to_string(),
        reward_type: op.reward_type.clone(),
        code: op.code.clone(),
        building_block: op.building_block.clone(),
        amount: op.amount,
        description: op.description.clone(),
        date_created: created,
        date_updated: op.date_updated.unwrap_or(created),
    }
}

fn find_operation<'a>(tenant: &'a TenantCatalog, id: &str) -> Option<&'a Operation> {
    tenant
        .operations
        .iter()
        .find(|o| o.id_in(&tenant.tenant) == id)
}

const OPERATION_FIELDS: [&str; 5] = [
    "code",
    "building_block",
    "reward_type",
    "amount",
    "description",
];

fn operation_entry(body: &Body, entry: &mut Entry) -> Result<(), ApiError> {
    entry.set_opt("building_block", body.text("building_block")?);
    entry.set_opt("reward_type", body.text("reward_type")?);
    entry.set_opt(
        "amount",
        body.count("amount", MAX_UNITS)?
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
    );
    entry.set_opt("description", body.text("description")?);
    Ok(())
}

#[utoipa::path(get, path = "/admin/operations", tag = "admin",
    params(("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    responses(
        (status = 200, description = "The tenant's operations", body = Vec<OperationView>),
        (status = 403, description = "Not an admin client", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn list_operations(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let history = app.catalogs.history();
    let views: Vec<OperationView> = history
        .latest()
        .tenant(&tenant)
        .map(|t| {
            t.operations
                .iter()
                .map(|o| operation_view(&history, &tenant, o))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(views).into_response())
}

#[utoipa::path(get, path = "/admin/operations/{id}", tag = "admin",
    params(("id" = String, Path), ("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    responses(
        (status = 200, description = "The operation", body = OperationView),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 404, description = "No such operation", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn get_operation(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let history = app.catalogs.history();
    let catalog = history.latest().tenant_shared(&tenant);
    catalog
        .as_deref()
        .and_then(|t| find_operation(t, &id).map(|o| operation_view(&history, &tenant, o)))
        .map(|v| Json(v).into_response())
        .ok_or_else(|| {
            ApiError::not_found(format!("no operation with id '{}'", request::clip(&id)))
        })
}

#[utoipa::path(post, path = "/admin/operations", tag = "admin",
    params(("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    request_body(content = serde_json::Value, description = "`code`, `building_block` (the service id), `reward_type`, `amount` (required), `description`"),
    responses(
        (status = 201, description = "Published as the tenant's next catalog version", body = OperationView),
        (status = 400, description = "Invalid body (`field` names it) or a catalog the change would make invalid (an unknown reward type)", body = StatusBody),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 409, description = "The code exists", body = StatusBody),
        (status = 503, description = "The catalog log is unavailable", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn create_operation(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let by = require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let body = Body::parse(&bytes, &OPERATION_FIELDS)?;
    let code = body.required_text("code")?;
    body.required_text("building_block")?;
    body.required_text("reward_type")?;
    if !body.has("amount") {
        return Err(ApiError::invalid("amount", "is required"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = Utc::now();
    let mut entry = Entry::default();
    entry.set("code", code.clone());
    operation_entry(&body, &mut entry)?;
    entry.set("id", id.clone());
    entry.set("date_created", now.to_rfc3339());
    entry.set("date_updated", now.to_rfc3339());
    publish(
        &app,
        &tenant,
        &by,
        StatusCode::CREATED,
        create_edit(tenant.clone(), Section::Operations, entry.0, move |c| {
            c.operation(&code)
                .is_some()
                .then(|| ("code", format!("operation '{code}'")))
        }),
        |history, catalog| {
            find_operation(catalog, &id).map(|o| operation_view(history, &catalog.tenant, o))
        },
    )
    .await
}

#[utoipa::path(put, path = "/admin/operations/{id}", tag = "admin",
    params(("id" = String, Path), ("X-Tenant" = Option<String>, Header, description = "The organization (tenant)")),
    request_body(content = serde_json::Value, description = "Any of `building_block`, `reward_type`, `amount`, `description`; `code` may be sent but not changed"),
    responses(
        (status = 200, description = "Published as the tenant's next catalog version", body = OperationView),
        (status = 400, description = "Invalid body, or a catalog the change would make invalid", body = StatusBody),
        (status = 403, description = "Not an admin client", body = StatusBody),
        (status = 404, description = "No such operation", body = StatusBody),
    ),
    security(("clientId" = [], "timestamp" = [], "message" = [])))]
pub async fn update_operation(
    State(app): State<Arc<AppState>>,
    client: Option<Extension<AuthenticatedClient>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    LimitedBody(bytes): LimitedBody,
) -> Result<Response, ApiError> {
    let by = require_admin(&app, client.as_deref())?;
    let tenant = tenant(&headers)?;
    let body = Body::parse(&bytes, &OPERATION_FIELDS)?;
    let mut entry = Entry::default();
    operation_entry(&body, &mut entry)?;
    entry.set("date_updated", Utc::now().to_rfc3339());
    let renamed = body.text("code")?;
    publish(
        &app,
        &tenant,
        &by,
        StatusCode::OK,
        update_edit(
            tenant.clone(),
            Section::Operations,
            id.clone(),
            entry.0,
            Rename {
                field: "code",
                sent: renamed,
                why: "services grant by it and history names it; create a new operation",
            },
            |c, id| find_operation(c, id).map(|o| (o.code.clone(), o.date_created.is_some())),
        ),
        |history, catalog| {
            find_operation(catalog, &id).map(|o| operation_view(history, &catalog.tenant, o))
        },
    )
    .await
}
