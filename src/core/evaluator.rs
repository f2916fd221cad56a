//! The user-stage evaluator: `(state, input, catalog, context) -> (state', effects)`.
//!
//! Pure: no IO, no clock, no randomness; time arrives in [`Context`]. The worker, `replay`,
//! `demo` and the tests all call [`evaluate`], which is why a replay reproduces the worker's
//! output byte for byte and a crash can be recovered by evaluating again.
//!
//! Semantics (docs/catalog.md, "How challenges are evaluated", says the same for users):
//! - a sum trigger accumulates values, never below zero; a match trigger is met by one
//!   action whose value satisfies its comparator against the target;
//! - inside a group, and between groups, triggers are joined in `order` by their operator,
//!   AND binding tighter than OR (`A OR B AND C` is `A OR (B AND C)`);
//! - a challenge counts an action only inside its window (event time) and once unlocked;
//! - on completion the per-user cap is checked first (`capped`), then a limited challenge asks
//!   the inventory stage for a winner slot (`limit`), then the milestone is awarded unclaimed
//!   and its prizes issued; the met triggers' actions are marked used (overshoot policy).

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use super::catalog::{
    Aggregation, CapPeriod, Challenge, Operator, Overshoot, TenantCatalog, TriggerDef,
};
use super::decimal;
use super::events::{ClaimItem, Event, EventBody, GrantReason, PrizeInfo, RejectReason};
use super::ids;
use super::inventory::{self, Request, RequestKind};
use super::model::{Action, SourceRef};
use super::state::{ChallengeState, ChallengeStatus, Milestone, Pending, PendingKind, UserState};

/// The most completions one action can cause on one challenge; the rest of a huge value
/// stays accumulated and completes on the next action.
pub const MAX_COMPLETIONS_PER_ACTION: usize = 100;

/// A claim command, as the sidecar produces it to the commands topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimCommand {
    pub claim_id: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub user_id: String,
    /// Milestones whose prizes are claimed (they move to history).
    #[serde(default)]
    pub milestone_ids: Vec<String>,
    /// Amounts of reward types claimed from the balance.
    #[serde(default)]
    pub items: Vec<ClaimAmount>,
}

fn default_tenant() -> String {
    super::model::DEFAULT_TENANT.to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimAmount {
    pub reward_type: String,
    #[serde(with = "super::decimal::lenient")]
    pub amount: Decimal,
}

/// What the user stage evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum UserInput<'a> {
    /// An action whose trigger the caller already resolved against the catalog.
    Action(&'a Action, &'a TriggerDef),
    Claim(&'a ClaimCommand),
    Response(&'a inventory::Response),
}

/// Where and when an input happened; the only source of time and identity.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub source: &'a SourceRef,
    /// Root of every id minted for this input (see [`ids`]).
    pub cause: &'a str,
    /// The record's timestamp; an action's own `occurredAt` wins over it.
    pub record_time: DateTime<Utc>,
}

/// The effects of one input.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Effects {
    pub events: Vec<Event>,
    pub requests: Vec<Request>,
    /// The input was already applied (same action id); nothing changed.
    pub duplicate: bool,
    /// Challenges the user achieved for the first time with this input.
    pub first_completions: Vec<u32>,
}

/// Collects effects, minting their deterministic ids in order.
struct Emitter<'a> {
    cause: &'a str,
    /// Made on the first event: inputs that emit nothing never build it.
    event_ids: Option<ids::EventIds>,
    tenant: &'a str,
    user_id: &'a str,
    occurred_at: DateTime<Utc>,
    /// Borrowed from the context, except for an inventory response, whose events cite the
    /// input that caused the request (kept in the state, which the response changes).
    source: Cow<'a, SourceRef>,
    effects: Effects,
}

impl Emitter<'_> {
    fn emit(&mut self, body: EventBody) {
        let index = self.effects.events.len();
        let cause = self.cause;
        let event_id = self
            .event_ids
            .get_or_insert_with(|| ids::EventIds::new(cause))
            .id(index);
        self.effects.events.push(Event {
            event_id,
            body,
            tenant: self.tenant.to_string(),
            user_id: self.user_id.to_string(),
            occurred_at: self.occurred_at,
            source: SourceRef::clone(&self.source),
        });
    }

    fn request(&mut self, state: &mut UserState, kind: RequestKind, what: PendingKind) {
        let request_id = ids::request_id(self.cause, self.effects.requests.len());
        state.pending.insert(
            request_id.clone(),
            Pending {
                source: SourceRef::clone(&self.source),
                occurred_at: self.occurred_at,
                what,
            },
        );
        self.effects.requests.push(Request {
            request_id,
            tenant: self.tenant.to_string(),
            user_id: self.user_id.to_string(),
            kind,
        });
    }
}

/// Evaluates one input for one user. `tenant`/`user_id` name the state's owner.
pub fn evaluate(
    state: &mut UserState,
    input: UserInput<'_>,
    catalog: &TenantCatalog,
    user_id: &str,
    ctx: &Context<'_>,
) -> Effects {
    let (occurred_at, source) = match &input {
        UserInput::Action(a, _) => (
            a.occurred_at.unwrap_or(ctx.record_time),
            Cow::Borrowed(ctx.source),
        ),
        UserInput::Response(r) => match state.pending.get(&r.request_id) {
            Some(p) => (p.occurred_at, Cow::Owned(p.source.clone())),
            None => return Effects::default(),
        },
        UserInput::Claim(_) => (ctx.record_time, Cow::Borrowed(ctx.source)),
    };
    let mut out = Emitter {
        cause: ctx.cause,
        event_ids: None,
        tenant: &catalog.tenant,
        user_id,
        occurred_at,
        source,
        effects: Effects::default(),
    };
    match input {
        UserInput::Action(action, trigger) => {
            apply_action(state, action, trigger, catalog, &mut out)
        }
        UserInput::Claim(claim) => apply_claim(state, claim, catalog, &mut out),
        UserInput::Response(response) => apply_response(state, response, catalog, &mut out),
    }
    out.effects
}

fn apply_action(
    state: &mut UserState,
    action: &Action,
    trigger: &TriggerDef,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    if let Some(id) = &action.action_id {
        if !state.remember_action(id) {
            out.effects.duplicate = true;
            return;
        }
    }
    let at = out.occurred_at;
    for challenge in catalog.challenges_for_trigger(trigger.id) {
        if !challenge.is_open_at(at) {
            continue;
        }
        if challenge.parent.is_some_and(|p| !state.has_achieved(p)) {
            continue; // locked until the parent is achieved
        }
        let cs = state.challenges.entry(challenge.id).or_default();
        if cs.status != ChallengeStatus::Active {
            continue;
        }
        advance(challenge, cs, trigger, action.value, out);
        // Checked on the entry at hand: most actions complete nothing, and looking the
        // challenge up again for the loop below would cost every one of them.
        if groups_satisfied(challenge, cs, catalog) {
            complete_while_satisfied(state, challenge, catalog, out);
        }
    }
}

/// Counts an action's value toward every requirement of `challenge` on its trigger, emitting
/// progress for each requirement whose state changed.
fn advance(
    challenge: &Challenge,
    cs: &mut ChallengeState,
    trigger: &TriggerDef,
    value: Decimal,
    out: &mut Emitter<'_>,
) {
    for group in &challenge.groups {
        for req in group.triggers.iter().filter(|r| r.trigger == trigger.id) {
            let tp = cs.trigger_mut(group.id, trigger.id);
            let (accumulated, met) = match trigger.aggregation {
                Aggregation::Sum => {
                    let acc = (tp.accumulated + value).max(Decimal::ZERO);
                    (acc, acc >= req.frequency)
                }
                Aggregation::Match if trigger.comparator.holds(value, req.frequency) => {
                    (value, true)
                }
                Aggregation::Match => (tp.accumulated, tp.met),
            };
            if accumulated == tp.accumulated && met == tp.met {
                continue;
            }
            tp.accumulated = accumulated;
            tp.met = met;
            out.emit(progress_body(
                challenge.id,
                group.id,
                trigger,
                req.frequency,
                accumulated,
                met,
            ));
        }
    }
}

/// Completes `challenge` for as long as it stays active and satisfied. One action can
/// complete a repeatable challenge more than once when the excess carries over (250 toward
/// 100 is two wins and 50); bounded so that no input can make an evaluation unbounded.
fn complete_while_satisfied(
    state: &mut UserState,
    challenge: &Challenge,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    for _ in 0..MAX_COMPLETIONS_PER_ACTION {
        let cs = state.challenges.entry(challenge.id).or_default();
        if cs.status != ChallengeStatus::Active || !groups_satisfied(challenge, cs, catalog) {
            break;
        }
        complete(state, challenge, catalog, out);
    }
}

fn progress_body(
    challenge_id: u32,
    group_id: u32,
    trigger: &TriggerDef,
    frequency: Decimal,
    accumulated: Decimal,
    met: bool,
) -> EventBody {
    let (action_left, progress) = progress_of(trigger.aggregation, frequency, accumulated, met);
    EventBody::ProgressUpdated {
        challenge_id,
        group_id,
        trigger_id: trigger.id,
        trigger_frequency: frequency,
        accumulated,
        action_left,
        progress,
    }
}

/// `(actionLeft, progress %)` of one trigger: for a sum, what is left of the frequency and the
/// share done; for a match trigger, 1 action left and 0 % until met, then 0 and 100 %.
pub fn progress_of(
    aggregation: Aggregation,
    frequency: Decimal,
    accumulated: Decimal,
    met: bool,
) -> (Decimal, Decimal) {
    match aggregation {
        Aggregation::Sum => (
            (frequency - accumulated).max(Decimal::ZERO).normalize(),
            decimal::percent(accumulated, frequency),
        ),
        Aggregation::Match if met => (Decimal::ZERO, Decimal::ONE_HUNDRED),
        Aggregation::Match => (Decimal::ONE, Decimal::ZERO),
    }
}

/// Whether a trigger requirement is met in this state.
fn requirement_met(
    cs: &ChallengeState,
    group: u32,
    trigger: u32,
    frequency: Decimal,
    agg: Aggregation,
) -> bool {
    cs.trigger(group, trigger).is_some_and(|tp| match agg {
        Aggregation::Sum => tp.accumulated >= frequency,
        Aggregation::Match => tp.met,
    })
}

/// Joins `(operator, value)` pairs in order, AND binding tighter than OR. The first
/// operator is ignored; an empty list is false.
pub fn join_in_order(items: impl IntoIterator<Item = (Operator, bool)>) -> bool {
    let mut any = false;
    let mut run: Option<bool> = None;
    for (op, value) in items {
        run = Some(match (run, op) {
            (None, _) => value,
            (Some(r), Operator::And) => r && value,
            (Some(r), Operator::Or) => {
                any |= r;
                value
            }
        });
    }
    any || run.unwrap_or(false)
}

fn groups_satisfied(challenge: &Challenge, cs: &ChallengeState, catalog: &TenantCatalog) -> bool {
    join_in_order(challenge.groups.iter().map(|g| {
        let met = join_in_order(g.triggers.iter().map(|t| {
            let agg = catalog
                .trigger(t.trigger)
                .map(|d| d.aggregation)
                .unwrap_or_default();
            (
                t.operator,
                requirement_met(cs, g.id, t.trigger, t.frequency, agg),
            )
        }));
        (g.operator, met)
    }))
}

/// The cap period an event time falls in (`None` for all-time caps).
fn period_key(period: CapPeriod, at: DateTime<Utc>) -> Option<String> {
    match period {
        CapPeriod::Total => None,
        CapPeriod::Day => Some(at.format("%Y-%m-%d").to_string()),
        CapPeriod::Week => {
            let w = at.iso_week();
            Some(format!("{}-W{:02}", w.year(), w.week()))
        }
        CapPeriod::Month => Some(at.format("%Y-%m").to_string()),
    }
}

/// Marks the actions of met triggers used: they never count again (`discard`), or only their
/// excess does (`carry`). A finished, non-repeatable challenge keeps its final state to show.
fn use_actions(challenge: &Challenge, cs: &mut ChallengeState, catalog: &TenantCatalog) {
    for group in &challenge.groups {
        for req in &group.triggers {
            let agg = catalog
                .trigger(req.trigger)
                .map(|d| d.aggregation)
                .unwrap_or_default();
            if !requirement_met(cs, group.id, req.trigger, req.frequency, agg) {
                continue;
            }
            let tp = cs.trigger_mut(group.id, req.trigger);
            tp.met = false;
            tp.accumulated = match (challenge.overshoot, agg) {
                (Overshoot::Carry, Aggregation::Sum) => tp.accumulated - req.frequency,
                _ => Decimal::ZERO,
            };
        }
    }
    cs.triggers.retain(|t| !t.accumulated.is_zero() || t.met);
}

fn complete(
    state: &mut UserState,
    challenge: &Challenge,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    let cs = state.challenges.entry(challenge.id).or_default();
    let period = period_key(challenge.cap_period, out.occurred_at);
    if cs.period != period {
        cs.period = period;
        cs.period_wins = 0;
    }
    if challenge
        .max_per_user
        .is_some_and(|max| cs.period_wins >= max)
    {
        use_actions(challenge, cs, catalog);
        for prize in &challenge.prizes {
            out.emit(EventBody::RewardRejected {
                reward_type: prize.reward_type.clone(),
                reason: RejectReason::Capped,
                challenge_id: Some(challenge.id),
                milestone_id: None,
            });
        }
        return;
    }
    if challenge.is_limited() {
        cs.status = ChallengeStatus::AwaitingSlot;
        out.request(
            state,
            RequestKind::WinnerSlot {
                challenge_id: challenge.id,
            },
            PendingKind::WinnerSlot {
                challenge_id: challenge.id,
            },
        );
        return;
    }
    award(state, challenge, catalog, out);
}

fn expiration(prize: &super::catalog::Prize, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    prize.expires_at.or_else(|| {
        prize
            .expires_after_days
            .map(|d| at + chrono::Duration::days(i64::from(d)))
    })
}

/// Awards the milestone (unclaimed) and issues its prizes.
fn award(
    state: &mut UserState,
    challenge: &Challenge,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    let cs = state.challenges.entry(challenge.id).or_default();
    cs.wins += 1;
    cs.period_wins += 1;
    if cs.wins == 1 {
        out.effects.first_completions.push(challenge.id);
    }
    let milestone_id = format!("{}-{}", challenge.id, cs.wins);
    if challenge.repeatable {
        use_actions(challenge, cs, catalog);
        cs.status = ChallengeStatus::Active;
    } else {
        cs.status = ChallengeStatus::Finished;
    }
    let at = out.occurred_at;
    let prizes: Vec<PrizeInfo> = challenge
        .prizes
        .iter()
        .map(|p| {
            let voucher = is_voucher(catalog, &p.reward_type);
            PrizeInfo {
                value: (!voucher).then(|| p.amount.normalize().to_string()),
                expiration_date: expiration(p, at),
                description: p.description.pick(&[]).to_string(),
                reward_type: p.reward_type.clone(),
            }
        })
        .collect();
    out.emit(EventBody::MilestoneAchieved {
        challenge_id: challenge.id,
        milestone_id: milestone_id.clone(),
        prizes: prizes.clone(),
    });
    state.milestones.push(Milestone {
        milestone_id: milestone_id.clone(),
        challenge_id: challenge.id,
        achieved_at: at,
        prizes,
    });
    for prize in &challenge.prizes {
        let active = catalog
            .reward_type(&prize.reward_type)
            .is_some_and(|r| r.active);
        if !active {
            drop_prize(state, &milestone_id, &prize.reward_type);
            out.emit(EventBody::RewardRejected {
                reward_type: prize.reward_type.clone(),
                reason: RejectReason::Inactive,
                challenge_id: Some(challenge.id),
                milestone_id: Some(milestone_id.clone()),
            });
        } else if catalog.is_limited(&prize.reward_type) {
            out.request(
                state,
                RequestKind::Grant {
                    reward_type: prize.reward_type.clone(),
                    amount: prize.amount,
                },
                PendingKind::Prize {
                    challenge_id: challenge.id,
                    milestone_id: milestone_id.clone(),
                    reward_type: prize.reward_type.clone(),
                    amount: prize.amount,
                },
            );
        } else {
            grant(
                state,
                &prize.reward_type,
                prize.amount,
                None,
                challenge.id,
                &milestone_id,
                out,
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn grant(
    state: &mut UserState,
    reward_type: &str,
    amount: Decimal,
    code: Option<String>,
    challenge_id: u32,
    milestone_id: &str,
    out: &mut Emitter<'_>,
) {
    let balance = state.balances.entry(reward_type.to_string()).or_default();
    *balance += amount;
    let balance = *balance;
    out.emit(EventBody::RewardGranted {
        reward_type: reward_type.to_string(),
        amount: code.is_none().then_some(amount),
        code,
        reason: GrantReason::Milestone {
            challenge_id,
            milestone_id: milestone_id.to_string(),
        },
        balance,
    });
}

/// Removes a prize that will never be issued from its unclaimed milestone.
fn drop_prize(state: &mut UserState, milestone_id: &str, reward_type: &str) {
    if let Some(m) = state
        .milestones
        .iter_mut()
        .find(|m| m.milestone_id == milestone_id)
    {
        if let Some(i) = m.prizes.iter().position(|p| p.reward_type == reward_type) {
            m.prizes.remove(i);
        }
    }
}

fn apply_response(
    state: &mut UserState,
    response: &inventory::Response,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    let Some(pending) = state.pending.remove(&response.request_id) else {
        return; // answered already: a redelivered response changes nothing
    };
    let granted = match &response.outcome {
        inventory::Outcome::Granted { code, .. } => Ok(code.clone()),
        inventory::Outcome::Rejected { reason } => Err(*reason),
    };
    match pending.what {
        PendingKind::WinnerSlot { challenge_id } => {
            let Some(challenge) = catalog.challenge(challenge_id) else {
                return;
            };
            match granted {
                Ok(_) => award(state, challenge, catalog, out),
                Err(reason) => {
                    state.challenges.entry(challenge_id).or_default().status =
                        ChallengeStatus::Closed;
                    for prize in &challenge.prizes {
                        out.emit(EventBody::RewardRejected {
                            reward_type: prize.reward_type.clone(),
                            reason,
                            challenge_id: Some(challenge_id),
                            milestone_id: None,
                        });
                    }
                }
            }
        }
        PendingKind::Prize {
            challenge_id,
            milestone_id,
            reward_type,
            amount,
        } => match granted {
            Ok(code) => {
                if let Some(code) = &code {
                    set_prize_value(state, &milestone_id, &reward_type, code);
                }
                let counted = if code.is_some() { Decimal::ONE } else { amount };
                grant(
                    state,
                    &reward_type,
                    counted,
                    code,
                    challenge_id,
                    &milestone_id,
                    out,
                );
            }
            Err(reason) => {
                drop_prize(state, &milestone_id, &reward_type);
                out.emit(EventBody::RewardRejected {
                    reward_type,
                    reason,
                    challenge_id: Some(challenge_id),
                    milestone_id: Some(milestone_id),
                });
            }
        },
        PendingKind::Claim { claim_id, items } => match granted {
            Ok(_) => out.emit(EventBody::ClaimCompleted {
                claim_id,
                items,
                reason: None,
            }),
            Err(reason) => {
                for item in &items {
                    *state.balances.entry(item.reward_type.clone()).or_default() += item.amount;
                }
                out.emit(EventBody::ClaimFailed {
                    claim_id,
                    items,
                    reason: serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                });
            }
        },
    }
}

fn set_prize_value(state: &mut UserState, milestone_id: &str, reward_type: &str, code: &str) {
    if let Some(m) = state
        .milestones
        .iter_mut()
        .find(|m| m.milestone_id == milestone_id)
    {
        if let Some(p) = m
            .prizes
            .iter_mut()
            .find(|p| p.reward_type == reward_type && p.value.is_none())
        {
            p.value = Some(code.to_string());
        }
    }
}

fn apply_claim(
    state: &mut UserState,
    claim: &ClaimCommand,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    if !state.remember_action(&format!("claim:{}", claim.claim_id)) {
        out.effects.duplicate = true;
        return;
    }
    let mut items: Vec<ClaimItem> = Vec::new();
    let fail = |out: &mut Emitter<'_>, items: Vec<ClaimItem>, reason: String| {
        out.emit(EventBody::ClaimFailed {
            claim_id: claim.claim_id.clone(),
            items,
            reason,
        })
    };
    if claim.milestone_ids.is_empty() && claim.items.is_empty() {
        return fail(out, items, "a claim needs milestoneIds or items".into());
    }
    for id in &claim.milestone_ids {
        let Some(m) = state.milestones.iter().find(|m| &m.milestone_id == id) else {
            return fail(
                out,
                items,
                format!("milestone '{id}' is unknown or already claimed"),
            );
        };
        for p in &m.prizes {
            let Some(value) = &p.value else {
                return fail(
                    out,
                    items,
                    format!("milestone '{id}': a prize is still being issued"),
                );
            };
            let (amount, code) = if is_voucher(catalog, &p.reward_type) {
                (Decimal::ONE, Some(value.clone()))
            } else {
                (decimal::parse_text(value).unwrap_or(Decimal::ONE), None)
            };
            items.push(ClaimItem {
                reward_type: p.reward_type.clone(),
                amount,
                milestone_id: Some(id.clone()),
                inventory_id: None,
                code,
            });
        }
    }
    let mut limited = Vec::new();
    for item in &claim.items {
        let Some(rt) = catalog.reward_type(&item.reward_type) else {
            return fail(
                out,
                items,
                format!("unknown reward type '{}'", item.reward_type),
            );
        };
        if item.amount <= Decimal::ZERO {
            return fail(
                out,
                items,
                format!("amount of '{}' must be greater than 0", item.reward_type),
            );
        }
        if !rt.active {
            return fail(
                out,
                items,
                format!("reward type '{}' is inactive", item.reward_type),
            );
        }
        if catalog.is_limited(&item.reward_type) {
            limited.push(item.clone());
        }
        items.push(ClaimItem {
            reward_type: item.reward_type.clone(),
            amount: item.amount,
            milestone_id: None,
            inventory_id: None,
            code: None,
        });
    }
    if limited.len() > 1 {
        return fail(
            out,
            items,
            "claim one inventory-backed reward type per claim".into(),
        );
    }
    // Everything claimed must be covered by the balance, per reward type.
    let mut needed: std::collections::BTreeMap<&str, Decimal> = Default::default();
    for item in &items {
        *needed.entry(item.reward_type.as_str()).or_default() += item.amount;
    }
    for (reward_type, amount) in &needed {
        if state.balance(reward_type) < *amount {
            let reason = format!(
                "insufficient balance of '{reward_type}': {} available, {} claimed",
                state.balance(reward_type).normalize(),
                amount.normalize()
            );
            return fail(out, items, reason);
        }
    }
    for (reward_type, amount) in needed {
        *state.balances.entry(reward_type.to_string()).or_default() -= amount;
    }
    for id in &claim.milestone_ids {
        if let Some(i) = state.milestones.iter().position(|m| &m.milestone_id == id) {
            let m = state.milestones.remove(i);
            if !state.claimed_challenges.contains(&m.challenge_id) {
                state.claimed_challenges.push(m.challenge_id);
            }
        }
    }
    if let Some(item) = limited.pop() {
        out.request(
            state,
            RequestKind::Claim {
                reward_type: item.reward_type,
                amount: item.amount,
            },
            PendingKind::Claim {
                claim_id: claim.claim_id.clone(),
                items,
            },
        );
    } else {
        out.emit(EventBody::ClaimCompleted {
            claim_id: claim.claim_id.clone(),
            items,
            reason: None,
        });
    }
}

/// Vouchers are counted one per code; their prize value is the code, not an amount.
fn is_voucher(catalog: &TenantCatalog, reward_type: &str) -> bool {
    catalog
        .reward_type(reward_type)
        .is_some_and(|r| r.kind == super::catalog::RewardKind::Voucher)
}
