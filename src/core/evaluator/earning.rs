//! Earning-rule events in the user stage: an occurrence pays through its event's rules, or
//! asks the tenant's endpoint (programmatic events), and the amount is credited straight to
//! the balance — no unclaimed milestone per occurrence.
//!
//! What pays is decided by [`crate::core::rules`]; this module applies it to the user's
//! state: lateness, the rule states, the credit with its balance bound, and the pending amount
//! request of a programmatic event.

use chrono::{DateTime, SubsecRound, Utc};

use super::Emitter;
use crate::core::catalog::{EventRules, TenantCatalog};
use crate::core::events::{EventBody, GrantReason, RejectReason};
use crate::core::ids;
use crate::core::model::Action;
use crate::core::rules::programmatic::{self, AmountRequest, AmountResponse};
use crate::core::rules::{self, Payment, RuleOutcome};
use crate::core::state::{Pending, PendingKind, UserState};

/// One occurrence of `event`. Its parameters were checked when the record was decoded; if the
/// catalog changed since and they no longer fit, the occurrence pays nothing.
pub(super) fn apply_occurrence(
    state: &mut UserState,
    action: &Action,
    event: &EventRules,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    rules::prune(&mut state.rules, catalog);
    let at = rule_time(out.occurred_at, out.record_time, catalog);
    let outcome = rules::evaluate_for_user(
        &mut state.rules,
        event,
        &action.params,
        at,
        catalog.time_zone,
    );
    match outcome {
        Ok(RuleOutcome::Pay(payment)) => credit(state, &payment, out),
        Ok(RuleOutcome::Ask { streak_completed }) => {
            let request_id = ids::amount_request_id(out.cause);
            state.pending.insert(
                request_id.clone(),
                Pending {
                    source: out.source.clone().into_owned(),
                    occurred_at: out.occurred_at,
                    what: PendingKind::Amount {
                        event: event.name.clone(),
                        answer: None,
                    },
                },
            );
            out.effects.amount_requests.push(AmountRequest {
                request_id,
                tenant: out.tenant.to_string(),
                user_id: out.user_id.to_string(),
                event: event.name.clone(),
                params: action.params.clone(),
                occurred_at: at,
                streak_completed,
            });
        }
        Ok(RuleOutcome::NotPaid(_)) | Err(_) => {}
    }
}

/// The time rules judge an occurrence by: its event time, but never earlier than the tenant's
/// allowed lateness before the record's time. A backdated occurrence is clamped, not dropped:
/// it still pays, but cannot reopen a cap window or a streak day long past. Cut to whole
/// microseconds, the precision the rule state is stored at.
fn rule_time(
    occurred_at: DateTime<Utc>,
    record_time: DateTime<Utc>,
    catalog: &TenantCatalog,
) -> DateTime<Utc> {
    occurred_at
        .max(record_time - catalog.allowed_lateness)
        .trunc_subsecs(6)
}

/// A programmatic event's recorded amount: paid as recorded, even if the catalog changed since,
/// so a replay pays what the worker paid. An answer without its pending request (answered
/// already, or never asked) changes nothing.
pub(super) fn apply_amount(
    state: &mut UserState,
    response: &AmountResponse,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    if !matches!(
        state.pending.get(&response.request_id),
        Some(Pending { what: PendingKind::Amount { event, .. }, .. }) if *event == response.event
    ) {
        return;
    }
    state.pending.remove(&response.request_id);
    let Some(event) = catalog.event(&response.event) else {
        return; // the event left the catalog while its amount was asked for
    };
    if let RuleOutcome::Pay(payment) = programmatic::settle(event, response) {
        credit(state, &payment, out);
    }
}

/// Credits a payment to the balance, or rejects it when the balance would pass its bound.
fn credit(state: &mut UserState, payment: &Payment<'_>, out: &mut Emitter<'_>) {
    let Some(balance) = state.credit(payment.reward_type, payment.amount) else {
        out.emit(EventBody::RewardRejected {
            reward_type: payment.reward_type.to_string(),
            reason: RejectReason::BalanceLimit,
            challenge_id: None,
            milestone_id: None,
            operation: None,
        });
        return;
    };
    out.emit(EventBody::RewardGranted {
        reward_type: payment.reward_type.to_string(),
        amount: Some(payment.amount),
        code: None,
        reason: GrantReason::Rule {
            event: payment.event.to_string(),
            rule: payment.rule.to_string(),
            priority: payment.priority,
        },
        balance,
    });
}
