//! The inventory stage: the single owner of every limited resource.
//!
//! Stock, voucher pools and global winners caps are shared by all users, so they cannot live
//! in any one user's state. The user stage sends a [`Request`] keyed by the resource; one
//! evaluator per resource answers in order, so exactly the stock is granted however many
//! users race for the last unit. Pure, like the user evaluator.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

use super::catalog::TenantCatalog;
use super::events::RejectReason;

/// How many answered request ids a resource remembers, so a redelivered request gets the
/// same answer instead of a second unit.
pub const RECENT_REQUESTS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub request_id: String,
    pub tenant: String,
    pub user_id: String,
    pub kind: RequestKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RequestKind {
    /// Draw `amount` units (and a code, for vouchers) of a reward type.
    Grant {
        reward_type: String,
        amount: Decimal,
    },
    /// Record a claim of `amount` units.
    Claim {
        reward_type: String,
        amount: Decimal,
    },
    /// One of a limited challenge's winner slots.
    WinnerSlot { challenge_id: u32 },
}

impl Request {
    /// The resource this request is about: requests for one resource share an owner.
    pub fn resource(&self) -> String {
        match &self.kind {
            RequestKind::Grant { reward_type, .. } | RequestKind::Claim { reward_type, .. } => {
                reward_resource(&self.tenant, reward_type)
            }
            RequestKind::WinnerSlot { challenge_id } => {
                format!("{}/winners/{challenge_id}", self.tenant)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub request_id: String,
    pub tenant: String,
    pub user_id: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    #[serde(rename_all = "camelCase")]
    Granted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inventory_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
    },
    Rejected {
        reason: RejectReason,
    },
}

/// The counters of one resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    /// Per inventory id: units granted and claimed.
    #[serde(default)]
    pub granted: BTreeMap<String, u64>,
    #[serde(default)]
    pub claimed: BTreeMap<String, u64>,
    /// Winner slots handed out (winners resources).
    #[serde(default)]
    pub winners: u64,
    /// Answers to recent requests, replayed verbatim on redelivery.
    #[serde(default)]
    pub answered: VecDeque<(String, Outcome)>,
}

/// The inventory-stage resource that owns a reward type's stock (all its inventories).
pub fn reward_resource(tenant: &str, reward_type: &str) -> String {
    format!("{tenant}/reward/{reward_type}")
}

/// Answers one request against the resource's state.
pub fn evaluate(state: &mut ResourceState, request: &Request, catalog: &TenantCatalog) -> Response {
    let previous = state
        .answered
        .iter()
        .find(|(id, _)| id == &request.request_id)
        .map(|(_, outcome)| outcome.clone());
    let outcome = previous.unwrap_or_else(|| {
        let outcome = decide(state, request, catalog);
        if state.answered.len() >= RECENT_REQUESTS {
            state.answered.pop_front();
        }
        state
            .answered
            .push_back((request.request_id.clone(), outcome.clone()));
        outcome
    });
    Response {
        request_id: request.request_id.clone(),
        tenant: request.tenant.clone(),
        user_id: request.user_id.clone(),
        outcome,
    }
}

fn units(amount: Decimal) -> u64 {
    amount.ceil().to_u64().unwrap_or(u64::MAX).max(1)
}

fn decide(state: &mut ResourceState, request: &Request, catalog: &TenantCatalog) -> Outcome {
    let rejected = |reason| Outcome::Rejected { reason };
    match &request.kind {
        RequestKind::WinnerSlot { challenge_id } => {
            let cap = catalog.challenge(*challenge_id).and_then(|c| c.max_winners);
            match cap {
                Some(cap) if state.winners >= cap => rejected(RejectReason::Limit),
                _ => {
                    state.winners += 1;
                    Outcome::Granted {
                        inventory_id: None,
                        code: None,
                    }
                }
            }
        }
        RequestKind::Grant {
            reward_type,
            amount,
        } => {
            if catalog.reward_type(reward_type).is_none_or(|r| !r.active) {
                return rejected(RejectReason::Inactive);
            }
            let n = units(*amount);
            let mut depleted_fallback = None;
            for inv in catalog.inventories_of(reward_type) {
                if !inv.in_stock {
                    continue;
                }
                let granted = state.granted.get(&inv.id).copied().unwrap_or(0);
                if granted + n <= inv.amount_total {
                    state.granted.insert(inv.id.clone(), granted + n);
                    let code = inv.codes.get(granted as usize).cloned();
                    return Outcome::Granted {
                        inventory_id: Some(inv.id.clone()),
                        code,
                    };
                }
                if inv.grant_depleted && inv.codes.is_empty() && depleted_fallback.is_none() {
                    depleted_fallback = Some(inv.id.clone());
                }
            }
            match depleted_fallback {
                Some(id) => {
                    *state.granted.entry(id.clone()).or_default() += n;
                    Outcome::Granted {
                        inventory_id: Some(id),
                        code: None,
                    }
                }
                None => rejected(RejectReason::Depleted),
            }
        }
        RequestKind::Claim {
            reward_type,
            amount,
        } => {
            let n = units(*amount);
            for inv in catalog.inventories_of(reward_type) {
                let claimed = state.claimed.get(&inv.id).copied().unwrap_or(0);
                if (inv.in_stock && claimed + n <= inv.amount_total) || inv.claim_depleted {
                    state.claimed.insert(inv.id.clone(), claimed + n);
                    return Outcome::Granted {
                        inventory_id: Some(inv.id.clone()),
                        code: None,
                    };
                }
            }
            rejected(RejectReason::Depleted)
        }
    }
}
