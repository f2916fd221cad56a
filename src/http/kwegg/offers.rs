//! Offers: the tenant's redeemable offers, and redeeming one, which is a claim of its price.
//!
//! The seed's "Fetch Offers" and "Redeem an offer" pages both show the admins listing
//! (`GET /userauth/admins/tenant`), so there is no wire format to follow; these endpoints use
//! the Kwegg envelope, headers and paging of the others:
//!
//! - `GET /core/user/tenant/offers?page=&numOfItems=`: the `[[offers]]` of the license key's
//!   tenant in the catalog in force now (`License-Key` and `Platform`, no token: they are the
//!   same for every user). A catalog version that adds, changes or removes an offer shows here
//!   once in force, without a restart.
//! - `POST /core/user/tenant/offers/redeem` `{userId, offerId, redemptionId?}`: a claim of the
//!   offer's `points` coins, submitted to the commands topic like the native claims and
//!   evaluated by the user's single writer, so two redemptions racing for the last coins are
//!   ordered and never both pass. `redemptionId` is the claim id (minted when absent): a retry
//!   with it never redeems twice, and once evaluated returns the outcome.
//! - `GET /core/user/tenant/offers/redemptions/{redemptionId}`: the outcome, `COMPLETED` (a
//!   `DEBIT` in the transactions) or `FAILED` with the reason (`insufficient balance …`).
//!
//! What the engine does not do here: issuing the partner's code or voucher (the tenant
//! fulfils a `COMPLETED` redemption, from the `claim.completed` event), and the seed's
//! partner-brand dashboard (docs/http-api.md, "Kwegg API").

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

use super::access::{Authorized, Licensed};
use super::body;
use super::envelope::{ok, Envelope, ErrorBody, KweggError};
use super::transactions::TransactionParams;
use super::{LicenseHeaders, TokenHeaders};
use crate::core::catalog::{Catalog, Offer};
use crate::core::decimal;
use crate::core::evaluator::{ClaimAmount, ClaimCommand};
use crate::core::events::EventBody;
use crate::core::model::UserKey;
use crate::http::actions::submit;
use crate::http::error::ApiError;
use crate::http::request::{clip, LimitedBody};
use crate::http::AppState;
use crate::pipeline::commands::Command;
use crate::store::ClaimRecord;

/// The longest client-chosen redemption id (the claim id's limit).
pub const MAX_REDEMPTION_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferView {
    pub id: String,
    pub brand: String,
    pub title: String,
    pub description: String,
    /// The price in coins.
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub points: Decimal,
}

impl From<&Offer> for OfferView {
    fn from(o: &Offer) -> Self {
        OfferView {
            id: o.id.clone(),
            brand: o.brand.clone(),
            title: o.title.clone(),
            description: o.description.clone(),
            points: o.price(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OffersData {
    pub offers: Vec<OfferView>,
    pub total_count: u64,
}

/// The body of a redemption (documentation; the handler reads the raw JSON).
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub struct RedeemBody {
    /// The token's user.
    #[schema(example = "12")]
    user_id: String,
    #[schema(example = "burger-40")]
    offer_id: String,
    /// Idempotency key, 1–64 of `A-Z a-z 0-9 . _ : -`; a UUID is minted when absent.
    redemption_id: Option<String>,
}

/// A redemption: pending until the worker evaluated its claim.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redemption {
    pub redemption_id: String,
    /// On the answer to a redemption; not on the status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_id: Option<String>,
    /// `PENDING`, `COMPLETED` or `FAILED`.
    pub status: &'static str,
    /// Coins claimed.
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub points: Decimal,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was evaluated.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::envelope::micros_opt"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<DateTime<Utc>>,
}

/// Whether a redemption id is 1–64 of `A-Z a-z 0-9 . _ : -` (the claim id's rule).
fn valid_redemption_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REDEMPTION_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn bad_redemption_id(id: &str) -> KweggError {
    KweggError::invalid(
        "redemptionId",
        format!(
            "redemptionId: '{}' must be 1–{MAX_REDEMPTION_ID_LEN} characters of A-Z a-z 0-9 . _ : -",
            clip(id)
        ),
    )
}

/// The tenant's offers in `catalog`, in catalog order: none for a tenant it lacks.
fn offers_of<'a>(catalog: &'a Catalog, tenant: &str) -> &'a [Offer] {
    catalog.tenant(tenant).map_or(&[], |t| t.offers.as_slice())
}

/// A stored claim outcome as a redemption, with the coins of `reward_type` it moved.
fn redemption_of(
    claim_id: String,
    record: ClaimRecord,
    reward_type: &str,
) -> Result<Redemption, KweggError> {
    let (status, items, reason) = match record.event.body {
        EventBody::ClaimCompleted { items, .. } => ("COMPLETED", items, None),
        EventBody::ClaimFailed { items, reason, .. } => ("FAILED", items, Some(reason)),
        other => {
            return Err(ApiError::new(
                crate::http::error::Kind::Internal,
                format!("claim '{claim_id}' is stored with a {} event", other.kind()),
            )
            .into())
        }
    };
    let points = items
        .iter()
        .filter(|i| i.reward_type == reward_type)
        .fold(Decimal::ZERO, |sum, i| sum.saturating_add(i.amount));
    Ok(Redemption {
        redemption_id: claim_id,
        offer_id: None,
        status,
        points: points.normalize(),
        reason,
        created_at: Some(record.event.occurred_at),
    })
}

/// The tenant's offers, a page at a time.
#[utoipa::path(
    get,
    path = "/core/user/tenant/offers",
    tag = "kwegg",
    params(TransactionParams, LicenseHeaders),
    responses(
        (status = 200, description = "The tenant's offers in the catalog in force, in catalog order", body = Envelope<OffersData>,
         example = json!({"success": true, "message": "Offers fetched successfully", "data": {"offers": [{"id": "burger-40", "brand": "Buffalo Burger", "title": "40% off a burger", "description": "Show the code at the counter", "points": 100}], "totalCount": 2}})),
        (status = 400, description = "`page`, `numOfItems` or `Platform` is invalid; `data.field` names it", body = ErrorBody),
        (status = 401, description = "`License-Key` is missing or unknown", body = ErrorBody),
    )
)]
pub async fn list(
    State(app): State<Arc<AppState>>,
    licensed: Licensed,
    RawQuery(raw): RawQuery,
) -> Result<Json<Envelope<OffersData>>, KweggError> {
    let paging = super::transactions::page_of(raw.as_deref())?;
    let catalog = app.catalog();
    let offers = offers_of(&catalog, &licensed.tenant);
    Ok(ok(
        "Offers fetched successfully",
        OffersData {
            offers: offers[paging.range(offers.len())]
                .iter()
                .map(OfferView::from)
                .collect(),
            total_count: offers.len() as u64,
        },
    ))
}

/// Redeems an offer: a claim of its price in coins.
#[utoipa::path(
    post,
    path = "/core/user/tenant/offers/redeem",
    tag = "kwegg",
    params(TokenHeaders),
    request_body = RedeemBody,
    responses(
        (status = 200, description = "In the log (`PENDING`); or, for a `redemptionId` already evaluated, its outcome", body = Envelope<Redemption>,
         example = json!({"success": true, "message": "Redemption accepted", "data": {"redemptionId": "0b9e…", "offerId": "burger-40", "status": "PENDING", "points": 100}})),
        (status = 400, description = "`userId`, `offerId` (unknown) or `redemptionId` is invalid; `data.field` names it", body = ErrorBody),
        (status = 401, description = "`License-Key` or the access token is missing or refused", body = ErrorBody),
        (status = 403, description = "`userId` is not the token's user", body = ErrorBody),
        (status = 503, description = "The command log or the store is unavailable; retry with the same `redemptionId`", body = ErrorBody),
    )
)]
pub async fn redeem(
    State(app): State<Arc<AppState>>,
    caller: Authorized,
    body: Result<LimitedBody, ApiError>,
) -> Result<Json<Envelope<Redemption>>, KweggError> {
    let map = body::object(body)?;
    let user_id = body::user_id(&map)?;
    caller.same_user("userId", Some(&user_id))?;
    let offer_id = body::text(&map, "offerId", "offerId")?
        .ok_or_else(|| KweggError::invalid("offerId", "offerId: is required"))?;
    let catalog = app.catalog();
    let offer = offers_of(&catalog, &caller.tenant)
        .iter()
        .find(|o| o.id == offer_id)
        .ok_or_else(|| {
            KweggError::invalid(
                "offerId",
                format!(
                    "offerId: '{}' is not an offer of this tenant",
                    clip(&offer_id)
                ),
            )
        })?;
    let claim_id = match body::text(&map, "redemptionId", "redemptionId")? {
        None => uuid::Uuid::new_v4().to_string(),
        Some(id) if valid_redemption_id(&id) => id,
        Some(id) => return Err(bad_redemption_id(&id)),
    };
    // A claim id is exactly-once forever: one already evaluated answers with its outcome.
    let key = UserKey::new(caller.tenant.clone(), user_id.clone());
    if let Some(record) = app
        .store
        .claim(&key, &claim_id)
        .await
        .map_err(ApiError::from)?
    {
        let mut redemption = redemption_of(claim_id, record, app.kwegg.reward_type())?;
        redemption.offer_id = Some(offer.id.clone());
        return Ok(ok("Redemption already processed", redemption));
    }
    let claim = ClaimCommand {
        claim_id: claim_id.clone(),
        tenant: caller.tenant.clone(),
        user_id,
        milestone_ids: Vec::new(),
        items: vec![ClaimAmount {
            reward_type: app.kwegg.reward_type().to_string(),
            amount: offer.price(),
        }],
    };
    submit(&app, Command::Claim(claim)).await?;
    Ok(ok(
        "Redemption accepted",
        Redemption {
            redemption_id: claim_id,
            offer_id: Some(offer.id.clone()),
            status: "PENDING",
            points: offer.price(),
            reason: None,
            created_at: None,
        },
    ))
}

/// A redemption's outcome, once the worker evaluated it.
#[utoipa::path(
    get,
    path = "/core/user/tenant/offers/redemptions/{redemptionId}",
    tag = "kwegg",
    params(
        ("redemptionId" = String, Path, description = "The id the redemption answered with"),
        TokenHeaders,
    ),
    responses(
        (status = 200, description = "`COMPLETED` or `FAILED` (with the reason)", body = Envelope<Redemption>,
         example = json!({"success": true, "message": "Redemption fetched successfully", "data": {"redemptionId": "r-1", "status": "COMPLETED", "points": 100, "createdAt": "2026-05-01T10:00:00.000000Z"}})),
        (status = 400, description = "`redemptionId` is invalid", body = ErrorBody),
        (status = 401, description = "`License-Key` or the access token is missing or refused", body = ErrorBody),
        (status = 404, description = "No outcome yet: the redemption may not be evaluated yet (or never existed)", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn status(
    State(app): State<Arc<AppState>>,
    caller: Authorized,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Envelope<Redemption>>, KweggError> {
    let Path(claim_id) =
        path.map_err(|e| KweggError::invalid("redemptionId", format!("redemptionId: {e}")))?;
    if !valid_redemption_id(&claim_id) {
        return Err(bad_redemption_id(&claim_id));
    }
    let key = UserKey::new(caller.tenant.clone(), caller.user_id.clone());
    let Some(record) = app
        .store
        .claim(&key, &claim_id)
        .await
        .map_err(ApiError::from)?
    else {
        return Err(KweggError::not_found(format!(
            "redemption '{claim_id}' has no outcome yet: it may not be processed yet, retry in a moment"
        )));
    };
    Ok(ok(
        "Redemption fetched successfully",
        redemption_of(claim_id, record, app.kwegg.reward_type())?,
    ))
}
