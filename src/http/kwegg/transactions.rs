//! `GET /core/user/tenant/transactions?page=&numOfItems=`: the token's user's coin movements,
//! newest first, from their history.
//!
//! | history entry (of the coins' reward type) | entry | type |
//! |---|---|---|
//! | `reward.granted` by an earning rule | `CREDIT` | `EVENT_OCCURENCE` (the seed's spelling) |
//! | `reward.granted` by a milestone | `CREDIT` | `CHALLENGE_REWARD` |
//! | `reward.granted` by an operation | `CREDIT` | `OPERATION` |
//! | `claim.completed` (its items' amounts, summed) | `DEBIT` | `REDEMPTION` |
//! | `reward.expired` | `DEBIT` | `EXPIRY` |
//!
//! Entries that move no coins (rejections, failed claims, milestones, codes and other reward
//! types) are not transactions. So the transactions are a filter of the history, which the
//! store pages only as a whole: a page is cut from the user's transactions found among the
//! newest `kwegg.transactions_scan_limit` history entries (10,000 by default), read in chunks,
//! and `totalCount` counts those. Each entry is read once per request; `id` is the event's
//! deterministic `eventId`, `createdAt` its time.

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::access::Authorized;
use super::envelope::{ok, Envelope, ErrorBody, KweggError};
use super::TokenHeaders;
use crate::core::decimal;
use crate::core::events::{Event, EventBody, GrantReason};
use crate::core::model::UserKey;
use crate::core::view::Paging;
use crate::http::error::ApiError;
use crate::http::request::Params;
use crate::http::AppState;
use crate::store::{StateStore, StoreError};

/// History entries read per store call while scanning.
const CHUNK: u32 = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Entry {
    Credit,
    Debit,
}

/// One coin movement.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    /// The history event's `eventId`.
    pub id: String,
    pub entry: Entry,
    #[serde(serialize_with = "super::envelope::micros")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    /// `EVENT_OCCURENCE`, `CHALLENGE_REWARD`, `OPERATION`, `REDEMPTION` or `EXPIRY`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Coins moved, always positive; `entry` says which way.
    #[serde(serialize_with = "decimal::serialize")]
    #[schema(value_type = f64)]
    pub points: Decimal,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransactionsData {
    pub transactions: Vec<Transaction>,
    /// The user's transactions on every page.
    pub total_count: u64,
}

#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
#[allow(dead_code)] // documentation only: parameters are read by `Params`
pub struct TransactionParams {
    /// 1-based page; default 1.
    #[param(minimum = 1)]
    page: Option<u32>,
    /// 1–100; default 10.
    #[param(minimum = 1, maximum = 100)]
    num_of_items: Option<u32>,
}

/// The transaction a history event stands for, if it moves coins of `reward_type`.
pub fn transaction_of(event: &Event, reward_type: &str) -> Option<Transaction> {
    let (entry, kind, points) = match &event.body {
        EventBody::RewardGranted {
            reward_type: rt,
            amount: Some(amount),
            reason,
            ..
        } if rt == reward_type => {
            let kind = match reason {
                GrantReason::Rule { .. } => "EVENT_OCCURENCE",
                GrantReason::Milestone { .. } => "CHALLENGE_REWARD",
                GrantReason::Operation { .. } => "OPERATION",
            };
            (Entry::Credit, kind, *amount)
        }
        EventBody::ClaimCompleted { items, .. } => {
            let points = items
                .iter()
                .filter(|i| i.reward_type == reward_type)
                .try_fold(Decimal::ZERO, |sum, i| sum.checked_add(i.amount))?;
            (Entry::Debit, "REDEMPTION", points)
        }
        EventBody::RewardExpired {
            reward_type: rt,
            amount: Some(amount),
            ..
        } if rt == reward_type => (Entry::Debit, "EXPIRY", *amount),
        _ => return None,
    };
    (points > Decimal::ZERO).then(|| Transaction {
        id: event.event_id.to_string(),
        entry,
        created_at: event.occurred_at,
        kind,
        points: points.normalize(),
    })
}

/// The user's transactions, newest first, among the newest `limit` history entries.
///
/// The history is read newest first in chunks of [`CHUNK`]. Entries appended while it is
/// read shift the store's pages towards the newer end, so a chunk may repeat entries of the
/// previous one but never skips any; entries are kept by sequence number, below both the
/// history's length at the first read and every sequence number already kept.
pub async fn user_transactions(
    store: &dyn StateStore,
    key: &UserKey,
    reward_type: &str,
    limit: usize,
) -> Result<Vec<Transaction>, StoreError> {
    let mut found = Vec::new();
    // Only entries below this sequence number are still to read: the history's length at the
    // first read, then the oldest entry kept so far.
    let mut below: Option<u64> = None;
    let mut scanned = 0usize;
    // Enough pages for `limit` entries even if each chunk repeated half of the previous one.
    let max_pages = (limit / CHUNK as usize + 1).saturating_mul(2);
    for page in (1..=u32::MAX).take(max_pages) {
        let (entries, total) = store.history(key, page, CHUNK).await?;
        let mut next = *below.get_or_insert(total);
        for entry in entries {
            if entry.seq >= next {
                continue;
            }
            if scanned == limit {
                break;
            }
            next = entry.seq;
            scanned += 1;
            found.extend(transaction_of(&entry.event, reward_type));
        }
        below = Some(next);
        if next == 0 || scanned == limit || u64::from(page) * u64::from(CHUNK) >= total {
            break;
        }
    }
    Ok(found)
}

/// The Kwegg `page` / `numOfItems` query (1-based page), as transactions and offers read it.
pub(super) fn page_of(raw: Option<&str>) -> Result<Paging, KweggError> {
    let params = Params::parse(raw);
    Ok(Paging::new(
        params.u32("page")?,
        params.u32("numOfItems")?,
        ("page", "numOfItems"),
    )
    .map_err(ApiError::from)?)
}

/// One page of the token's user's transactions.
#[utoipa::path(
    get,
    path = "/core/user/tenant/transactions",
    tag = "kwegg",
    params(TransactionParams, TokenHeaders),
    responses(
        (status = 200, description = "Newest first", body = Envelope<TransactionsData>,
         example = json!({"success": true, "message": "Transactions fetched successfully", "data": {"transactions": [{"id": "224b96ae-5c22-4e22-b484-7a15cccaa92d", "entry": "CREDIT", "createdAt": "2021-02-03T16:43:06.482441Z", "type": "EVENT_OCCURENCE", "points": 2}], "totalCount": 5}})),
        (status = 400, description = "`page` or `numOfItems` is out of range, or `Platform` is invalid; `data.field` names it", body = ErrorBody),
        (status = 401, description = "`License-Key` or the access token is missing or refused", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    )
)]
pub async fn transactions(
    State(app): State<Arc<AppState>>,
    caller: Authorized,
    RawQuery(raw): RawQuery,
) -> Result<Json<Envelope<TransactionsData>>, KweggError> {
    let paging = page_of(raw.as_deref())?;
    let key = UserKey::new(caller.tenant.clone(), caller.user_id.clone());
    let mut all = user_transactions(
        app.store.as_ref(),
        &key,
        app.kwegg.reward_type(),
        app.kwegg.scan_limit(),
    )
    .await
    .map_err(ApiError::from)?;
    let total_count = all.len() as u64;
    let range = paging.range(all.len());
    let transactions = all.drain(range).collect();
    Ok(ok(
        "Transactions fetched successfully",
        TransactionsData {
            transactions,
            total_count,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::ClaimItem;
    use crate::core::model::SourceRef;

    fn event(body: EventBody) -> Event {
        Event {
            event_id: "e-1".into(),
            body,
            tenant: "kwegg".into(),
            user_id: "12".into(),
            occurred_at: "2026-05-01T10:00:00.482441Z".parse().unwrap(),
            source: SourceRef::new("t", 0, 1),
            catalog_version: 0,
        }
    }

    fn granted(reward_type: &str, amount: Option<i64>, reason: GrantReason) -> Event {
        event(EventBody::RewardGranted {
            reward_type: reward_type.into(),
            amount: amount.map(Decimal::from),
            code: None,
            reason,
            balance: Decimal::from(100),
        })
    }

    fn rule() -> GrantReason {
        GrantReason::Rule {
            event: "WATCHED_VIDEO".into(),
            rule: "default".into(),
            priority: crate::core::catalog::Priority::Last,
        }
    }

    #[test]
    fn grants_claims_and_expiries_of_the_coins_are_transactions() {
        let t = transaction_of(&granted("points", Some(50), rule()), "points").unwrap();
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            serde_json::json!({"id": "e-1", "entry": "CREDIT", "createdAt": "2026-05-01T10:00:00.482441Z", "type": "EVENT_OCCURENCE", "points": 50})
        );
        let milestone = GrantReason::Milestone {
            challenge_id: 1,
            milestone_id: "1-1".into(),
        };
        assert_eq!(
            transaction_of(&granted("points", Some(5), milestone), "points")
                .unwrap()
                .kind,
            "CHALLENGE_REWARD"
        );
        let item = |rt: &str, amount: i64| ClaimItem {
            reward_type: rt.into(),
            amount: amount.into(),
            milestone_id: None,
            inventory_id: None,
            code: None,
        };
        let claim = event(EventBody::ClaimCompleted {
            claim_id: "c".into(),
            items: vec![item("points", 60), item("voucher", 1), item("points", 40)],
            reason: None,
        });
        let t = transaction_of(&claim, "points").unwrap();
        assert_eq!(
            (t.entry, t.kind, t.points),
            (Entry::Debit, "REDEMPTION", Decimal::from(100))
        );
    }

    #[test]
    fn what_moves_no_coins_is_not_a_transaction() {
        assert_eq!(
            transaction_of(&granted("voucher", Some(1), rule()), "points"),
            None
        );
        assert_eq!(
            transaction_of(&granted("points", None, rule()), "points"),
            None
        );
        let failed = event(EventBody::ClaimFailed {
            claim_id: "c".into(),
            items: vec![],
            reason: "insufficient balance".into(),
        });
        assert_eq!(transaction_of(&failed, "points"), None);
        let other = event(EventBody::ClaimCompleted {
            claim_id: "c".into(),
            items: vec![],
            reason: None,
        });
        assert_eq!(transaction_of(&other, "points"), None);
    }
}
