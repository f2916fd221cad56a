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

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::borrow::Cow;

mod earning;
mod operation;
mod period;

pub use operation::{
    valid_grant_id, GrantCommand, GrantError, MAX_GRANT_DESCRIPTION_BYTES, MAX_GRANT_ID_LEN,
};

use super::catalog::{
    Aggregation, Challenge, EventRules, Operation, Operator, Overshoot, TenantCatalog, TriggerDef,
};
use super::decimal;
use super::events::{ClaimItem, Event, EventBody, GrantReason, PrizeInfo, RejectReason};
use super::ids;
use super::inventory::{self, Request, RequestKind};
use super::limits;
use super::model::{Action, SourceRef};
use super::records::ClaimRecord;
use super::rules::programmatic::{AmountRequest, AmountResponse};
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
    /// An action with what the caller resolved it to in the catalog: the trigger it counts
    /// toward, the earning-rule event it is an occurrence of, or both.
    Action(&'a Action, Option<&'a TriggerDef>, Option<&'a EventRules>),
    /// A claim, with the outcome stored under its id if it was evaluated before (a claim id
    /// is exactly-once forever: a retry at any time changes nothing).
    Claim(&'a ClaimCommand, Option<&'a ClaimRecord>),
    Response(&'a inventory::Response),
    /// A programmatic event's amount, recorded by the amount caller.
    Amount(&'a AmountResponse),
    /// A service's grant of an operation (checked against the catalog by the caller).
    Grant(&'a GrantCommand, &'a Operation),
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
    /// For the amount caller (programmatic events).
    pub amount_requests: Vec<AmountRequest>,
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
    /// `tenant` and `user_id` as the events carry them, shared by all of this input's events;
    /// made with the first event.
    names: Option<(SmolStr, SmolStr)>,
    /// An action's own names, when they are `tenant` and `user_id`: the events copy them
    /// (a fixed 24-byte copy for an inline name) instead of building them again from the
    /// text. Built again here and for the batch's user key, they were two thirds of
    /// `SmolStr::new`'s 3.8 % of the worker's main thread in a profile of `scripts/bench`.
    action_names: Option<(&'a SmolStr, &'a SmolStr)>,
    /// How many events this input is expected to emit: the events' vector is sized for them on
    /// the first, instead of growing (and moving every event) as they come.
    expected_events: usize,
    occurred_at: DateTime<Utc>,
    /// Borrowed from the context, except for an inventory response, whose events cite the
    /// input that caused the request (kept in the state, which the response changes).
    source: Cow<'a, SourceRef>,
    /// When the record was consumed: expiry and lateness are judged by it.
    record_time: DateTime<Utc>,
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
        let (tenant, user_id) = self.names.get_or_insert_with(|| match self.action_names {
            Some((tenant, user_id)) => (tenant.clone(), user_id.clone()),
            None => (SmolStr::new(self.tenant), SmolStr::new(self.user_id)),
        });
        if index == 0 {
            self.effects.events.reserve(self.expected_events);
        }
        self.effects.events.push(Event {
            event_id,
            body,
            tenant: tenant.clone(),
            user_id: user_id.clone(),
            occurred_at: self.occurred_at,
            source: SourceRef::clone(&self.source),
            catalog_version: 0,
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
        UserInput::Action(a, ..) => (
            event_time(a.occurred_at, ctx.record_time),
            Cow::Borrowed(ctx.source),
        ),
        UserInput::Response(inventory::Response { request_id, .. })
        | UserInput::Amount(AmountResponse { request_id, .. }) => {
            match state.pending.get(request_id) {
                Some(p) => (p.occurred_at, Cow::Owned(p.source.clone())),
                None => return Effects::default(),
            }
        }
        UserInput::Claim(..) | UserInput::Grant(..) => (ctx.record_time, Cow::Borrowed(ctx.source)),
    };
    let mut out = Emitter {
        cause: ctx.cause,
        event_ids: None,
        tenant: &catalog.tenant,
        user_id,
        names: None,
        action_names: match &input {
            UserInput::Action(a, ..) if a.tenant == catalog.tenant && a.user_id == user_id => {
                Some((&a.tenant, &a.user_id))
            }
            _ => None,
        },
        expected_events: 1,
        occurred_at,
        source,
        record_time: ctx.record_time,
        effects: Effects::default(),
    };
    // A repeated claim changes nothing, not even expiries: it is answered by its stored outcome.
    if let UserInput::Claim(claim, prior) = &input {
        if prior.is_some() || claim_in_flight(state, &claim.claim_id) {
            out.effects.duplicate = true;
            return out.effects;
        }
    }
    expire_prizes(state, catalog, &mut out);
    match input {
        UserInput::Action(action, trigger, event) => {
            apply_action(state, action, trigger, event, catalog, &mut out)
        }
        UserInput::Amount(response) => earning::apply_amount(state, response, catalog, &mut out),
        UserInput::Claim(claim, _) => apply_claim(state, claim, catalog, &mut out),
        UserInput::Response(response) => apply_response(state, response, catalog, &mut out),
        UserInput::Grant(grant, operation) => {
            operation::apply_grant(state, grant, operation, catalog, &mut out)
        }
    }
    out.effects
}

/// An action's event time: its own `occurredAt`, unless that is later than the record's time
/// by more than the allowed clock skew (then the record's time), or none (the record's time).
fn event_time(occurred_at: Option<DateTime<Utc>>, record_time: DateTime<Utc>) -> DateTime<Utc> {
    match occurred_at {
        Some(at) if at <= record_time + limits::max_future_skew() => at,
        _ => record_time,
    }
}

/// Whether a claim with this id is waiting for the inventory stage.
fn claim_in_flight(state: &UserState, claim_id: &str) -> bool {
    state
        .pending
        .values()
        .any(|p| matches!(&p.what, PendingKind::Claim { claim_id: id, .. } if id == claim_id))
}

/// An action counts toward its trigger's challenges, then pays through its event's rules.
fn apply_action(
    state: &mut UserState,
    action: &Action,
    trigger: Option<&TriggerDef>,
    event: Option<&EventRules>,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    if let Some(id) = &action.action_id {
        if !state.remember_action(id) {
            out.effects.duplicate = true;
            return;
        }
    }
    if let Some(trigger) = trigger {
        count_toward_challenges(state, action, trigger, catalog, out);
    }
    if let Some(event) = event {
        earning::apply_occurrence(state, action, event, catalog, out);
    }
}

fn count_toward_challenges(
    state: &mut UserState,
    action: &Action,
    trigger: &TriggerDef,
    catalog: &TenantCatalog,
    out: &mut Emitter<'_>,
) {
    let at = out.occurred_at;
    // A late action (event time before the record's time by more than the tenant's allowed
    // lateness) counts only toward challenges still open at that bound: a backdated
    // `occurredAt` cannot pay on a challenge that closed long ago.
    let late_bound = out.record_time - catalog.allowed_lateness;
    let challenges = catalog.challenges_for_trigger(trigger.id);
    // Mostly one progress event per challenge counted toward (a completion emits more).
    out.expected_events = out.expected_events.max(challenges.len());
    for (challenge, needs_all) in challenges {
        if !challenge.is_open_at(at) || challenge.end.is_some_and(|end| end <= late_bound) {
            continue;
        }
        if challenge.parent.is_some_and(|p| !state.has_achieved(p)) {
            continue; // locked until the parent is achieved
        }
        let cs = state.challenges.entry(challenge.id).or_default();
        if cs.status != ChallengeStatus::Active {
            continue;
        }
        let trigger_met = advance(challenge, cs, trigger, action.value, out);
        // Checked on the entry at hand: most actions complete nothing, and looking the
        // challenge up again for the loop below would cost every one of them. A challenge
        // that needs every requirement is not complete while this trigger's are unmet, which
        // saves reading the others' states (7 % of the evaluator bench's instructions).
        if (trigger_met || !needs_all) && groups_satisfied(challenge, cs, catalog) {
            complete_while_satisfied(state, challenge, catalog, out);
        }
    }
}

/// Counts an action's value toward every requirement of `challenge` on its trigger, emitting
/// progress for each requirement whose state changed. Whether all of them are met now, as
/// `requirement_met` reads them.
fn advance(
    challenge: &Challenge,
    cs: &mut ChallengeState,
    trigger: &TriggerDef,
    value: Decimal,
    out: &mut Emitter<'_>,
) -> bool {
    let mut all_met = true;
    for group in &challenge.groups {
        for req in group.triggers.iter().filter(|r| r.trigger == trigger.id) {
            let tp = cs.trigger_mut(group.id, trigger.id);
            let (accumulated, met) = match trigger.aggregation {
                Aggregation::Sum => {
                    let acc = limits::accumulate(tp.accumulated, value);
                    (acc, decimal::compare(acc, req.frequency).is_ge())
                }
                Aggregation::Match if trigger.comparator.holds(value, req.frequency) => {
                    (value, true)
                }
                Aggregation::Match => (tp.accumulated, tp.met),
            };
            all_met &= met;
            if met == tp.met && decimal::compare(accumulated, tp.accumulated).is_eq() {
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
    all_met
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
            decimal::remaining(frequency, accumulated),
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
        Aggregation::Sum => decimal::compare(tp.accumulated, frequency).is_ge(),
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
                (Overshoot::Carry, Aggregation::Sum) => tp
                    .accumulated
                    .checked_sub(req.frequency)
                    .unwrap_or(Decimal::ZERO)
                    .max(Decimal::ZERO),
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
    let period = period::period_key(challenge.cap_period, out.occurred_at);
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
                operation: None,
            });
        }
        return;
    }
    let unclaimed = state
        .milestones
        .iter()
        .filter(|m| m.challenge_id == challenge.id)
        .count();
    if !challenge.auto_claim && unclaimed >= challenge.max_unclaimed() as usize {
        let cs = state.challenges.entry(challenge.id).or_default();
        use_actions(challenge, cs, catalog);
        for prize in &challenge.prizes {
            out.emit(EventBody::RewardRejected {
                reward_type: prize.reward_type.clone(),
                reason: RejectReason::UnclaimedLimit,
                challenge_id: Some(challenge.id),
                milestone_id: None,
                operation: None,
            });
        }
        return;
    }
    let cs = state.challenges.entry(challenge.id).or_default();
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
    let milestone_id = milestone_id(challenge.id, cs.wins);
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
    // Auto-claimed prizes are credited at once and leave no unclaimed milestone behind.
    let unclaimed = (!challenge.auto_claim).then(|| Milestone {
        milestone_id: milestone_id.clone(),
        challenge_id: challenge.id,
        achieved_at: at,
        prizes: prizes.clone(),
    });
    out.emit(EventBody::MilestoneAchieved {
        challenge_id: challenge.id,
        milestone_id: milestone_id.clone(),
        prizes,
    });
    state.milestones.extend(unclaimed);
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
                operation: None,
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

/// The id of a challenge's `wins`th milestone: `<challenge>-<wins>`. Written with itoa: a
/// `format!` took 700 instructions of every award (callgrind, the record step bench).
/// Exactly as long as the id: it stays in the user's state with each unclaimed milestone.
fn milestone_id(challenge: u32, wins: u32) -> String {
    let (mut challenge_digits, mut wins_digits) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (challenge, wins) = (challenge_digits.format(challenge), wins_digits.format(wins));
    let mut id = String::with_capacity(challenge.len() + 1 + wins.len());
    id.push_str(challenge);
    id.push('-');
    id.push_str(wins);
    id
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
    let Some(balance) = state.credit(reward_type, amount) else {
        drop_prize(state, milestone_id, reward_type);
        out.emit(EventBody::RewardRejected {
            reward_type: reward_type.to_string(),
            reason: RejectReason::BalanceLimit,
            challenge_id: Some(challenge_id),
            milestone_id: Some(milestone_id.to_string()),
            operation: None,
        });
        return;
    };
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
                            operation: None,
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
                    operation: None,
                });
            }
        },
        // Amount requests have ids of their own (`#a`); an inventory answer never names one.
        PendingKind::Amount { .. } => {}
        PendingKind::Operation { grant, reward_type } => {
            operation::apply_answer(state, grant, reward_type, granted, out)
        }
        PendingKind::Claim {
            claim_id,
            mut items,
            milestones,
        } => match &response.outcome {
            inventory::Outcome::Granted { inventory_id, .. } => {
                mark_claimed(state, &milestones);
                // The inventory the units were claimed from, on the items it answered for.
                let limited = limited_type(&items, catalog).map(str::to_string);
                for item in &mut items {
                    if Some(&item.reward_type) == limited.as_ref() {
                        item.inventory_id.clone_from(inventory_id);
                    }
                }
                out.emit(EventBody::ClaimCompleted {
                    claim_id,
                    items,
                    reason: None,
                })
            }
            inventory::Outcome::Rejected { reason } => {
                // Nothing was claimed: the balance and the milestones come back as they were.
                for item in &items {
                    let balance = state.balance(&item.reward_type);
                    let restored = balance.checked_add(item.amount).unwrap_or(balance);
                    state.balances.insert(item.reward_type.clone(), restored);
                }
                state.milestones.extend(milestones);
                out.emit(EventBody::ClaimFailed {
                    claim_id,
                    items,
                    reason: reason.as_str().to_string(),
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
    let items = match claim_items(state, claim, catalog) {
        Ok(items) => items,
        Err((items, reason)) => {
            return out.emit(EventBody::ClaimFailed {
                claim_id: claim.claim_id.clone(),
                items,
                reason,
            })
        }
    };
    // Everything claimed is covered by the balance, per reward type, and debited now; an
    // inventory-backed claim that the inventory refuses gives it back.
    let mut needed: std::collections::BTreeMap<&str, Decimal> = Default::default();
    for item in &items {
        let total = needed.entry(item.reward_type.as_str()).or_default();
        *total = total.checked_add(item.amount).unwrap_or(Decimal::MAX);
    }
    for (reward_type, amount) in &needed {
        if state.balance(reward_type) < *amount {
            let reason = format!(
                "insufficient balance of '{reward_type}': {} available, {} claimed",
                state.balance(reward_type).normalize(),
                amount.normalize()
            );
            return out.emit(EventBody::ClaimFailed {
                claim_id: claim.claim_id.clone(),
                items,
                reason,
            });
        }
    }
    for (reward_type, amount) in &needed {
        let left = state.balance(reward_type) - *amount;
        state.balances.insert(reward_type.to_string(), left);
    }
    // The claimed milestones leave the unclaimed list now (a second claim cannot name them
    // while this one waits for the inventory); a refused claim puts them back.
    let mut claimed = Vec::new();
    for id in &claim.milestone_ids {
        if let Some(i) = state.milestones.iter().position(|m| &m.milestone_id == id) {
            claimed.push(state.milestones.remove(i));
        }
    }
    match limited_type(&items, catalog) {
        Some(reward_type) => {
            let reward_type = reward_type.to_string();
            let amount = needed
                .get(reward_type.as_str())
                .copied()
                .unwrap_or_default();
            out.request(
                state,
                RequestKind::Claim {
                    reward_type,
                    amount,
                },
                PendingKind::Claim {
                    claim_id: claim.claim_id.clone(),
                    items,
                    milestones: claimed,
                },
            );
        }
        None => {
            mark_claimed(state, &claimed);
            out.emit(EventBody::ClaimCompleted {
                claim_id: claim.claim_id.clone(),
                items,
                reason: None,
            })
        }
    }
}

/// Challenges with a claimed milestone: limited ones then leave the progress list.
fn mark_claimed(state: &mut UserState, milestones: &[Milestone]) {
    for m in milestones {
        if !state.claimed_challenges.contains(&m.challenge_id) {
            state.claimed_challenges.push(m.challenge_id);
        }
    }
}

/// The lines a claim takes: each prize of the claimed milestones, then each amount of a reward
/// type. On error, the lines gathered so far and why the claim fails.
fn claim_items(
    state: &UserState,
    claim: &ClaimCommand,
    catalog: &TenantCatalog,
) -> Result<Vec<ClaimItem>, (Vec<ClaimItem>, String)> {
    let mut items: Vec<ClaimItem> = Vec::new();
    if claim.milestone_ids.is_empty() && claim.items.is_empty() {
        return Err((items, "a claim needs milestoneIds or items".into()));
    }
    for (i, id) in claim.milestone_ids.iter().enumerate() {
        if claim.milestone_ids[..i].contains(id) {
            return Err((items, format!("milestone '{id}' is named twice")));
        }
        let Some(m) = state.milestones.iter().find(|m| &m.milestone_id == id) else {
            return Err((
                items,
                format!("milestone '{id}' is unknown, already claimed or expired"),
            ));
        };
        for p in &m.prizes {
            let Some(value) = &p.value else {
                return Err((
                    items,
                    format!("milestone '{id}': a prize is still being issued"),
                ));
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
    for item in &claim.items {
        let Some(rt) = catalog.reward_type(&item.reward_type) else {
            return Err((items, format!("unknown reward type '{}'", item.reward_type)));
        };
        if !limits::is_valid_amount(item.amount) {
            return Err((
                items,
                format!(
                    "amount of '{}' must be greater than 0 and at most {} with at most {} decimal places",
                    item.reward_type,
                    limits::MAX_AMOUNT,
                    limits::MAX_SCALE
                ),
            ));
        }
        if !rt.active {
            return Err((
                items,
                format!("reward type '{}' is inactive", item.reward_type),
            ));
        }
        // Stock is counted in whole units: a fraction of a t-shirt cannot be claimed.
        if catalog.is_limited(&item.reward_type) && !item.amount.fract().is_zero() {
            return Err((
                items,
                format!(
                    "amount of '{}' must be a whole number of units: it is counted by an inventory",
                    item.reward_type
                ),
            ));
        }
        items.push(ClaimItem {
            reward_type: item.reward_type.clone(),
            amount: item.amount,
            milestone_id: None,
            inventory_id: None,
            code: None,
        });
    }
    let mut limited: Vec<String> = items
        .iter()
        .map(|i| i.reward_type.clone())
        .filter(|t| catalog.is_limited(t))
        .collect();
    limited.sort_unstable();
    limited.dedup();
    if limited.len() > 1 {
        return Err((
            items,
            format!(
                "claim one inventory-backed reward type per claim (this claim has {})",
                limited.join(", ")
            ),
        ));
    }
    Ok(items)
}

/// The one inventory-backed reward type among a claim's lines, if any: its units are claimed
/// from the inventory stage, whichever path (item or milestone) names them.
fn limited_type<'a>(items: &'a [ClaimItem], catalog: &TenantCatalog) -> Option<&'a str> {
    items
        .iter()
        .map(|i| i.reward_type.as_str())
        .find(|t| catalog.is_limited(t))
}

/// Removes every unclaimed prize whose expiration date has passed by the record's time and
/// says so (`reward.expired`). Applied at the start of every input of the user, so expiry is
/// a pure function of the inputs and their times.
fn expire_prizes(state: &mut UserState, catalog: &TenantCatalog, out: &mut Emitter<'_>) {
    for expired in apply_expiry(state, catalog, out.record_time) {
        out.emit(EventBody::RewardExpired {
            reward_type: expired.prize.reward_type,
            amount: expired.code.is_none().then_some(expired.amount),
            code: expired.code,
            challenge_id: expired.challenge_id,
            milestone_id: expired.milestone_id,
            expiration_date: expired.prize.expiration_date.unwrap_or(out.record_time),
            balance: expired.balance,
        });
    }
}

/// An unclaimed prize that expired, as [`apply_expiry`] took it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Expired {
    pub challenge_id: u32,
    pub milestone_id: String,
    pub prize: PrizeInfo,
    /// What left the balance (1 for a voucher code).
    pub amount: Decimal,
    pub code: Option<String>,
    /// The balance of the prize's reward type afterwards.
    pub balance: Decimal,
}

/// Takes every unclaimed prize whose expiration date is at or before `now` out of the user's
/// milestones, and its amount out of the balance it was counted in (never below zero).
/// The evaluator applies it to every input; the sidecar applies it to what it reads, so a
/// prize that expired since the user's last input is neither listed nor counted.
pub fn apply_expiry(
    state: &mut UserState,
    catalog: &TenantCatalog,
    now: DateTime<Utc>,
) -> Vec<Expired> {
    let is_due = |p: &PrizeInfo| p.expiration_date.is_some_and(|e| e <= now);
    if state.next_prize_expiry().is_none_or(|first| first > now) {
        return Vec::new();
    }
    let mut gone = Vec::new();
    for milestone in state.milestones.iter_mut() {
        let (due, kept): (Vec<PrizeInfo>, Vec<PrizeInfo>) = std::mem::take(&mut milestone.prizes)
            .into_iter()
            .partition(|p| is_due(p));
        milestone.prizes = kept;
        for prize in due {
            gone.push((
                milestone.challenge_id,
                milestone.milestone_id.clone(),
                prize,
            ));
        }
    }
    state.milestones.retain(|m| !m.prizes.is_empty());
    gone.into_iter()
        .map(|(challenge_id, milestone_id, prize)| {
            let (amount, code) = match (&prize.value, is_voucher(catalog, &prize.reward_type)) {
                (Some(code), true) => (Decimal::ONE, Some(code.clone())),
                (Some(value), false) => (decimal::parse_text(value).unwrap_or(Decimal::ZERO), None),
                (None, _) => (Decimal::ZERO, None),
            };
            let before = state.balance(&prize.reward_type);
            let balance = (before - amount.clamp(Decimal::ZERO, before)).max(Decimal::ZERO);
            state.balances.insert(prize.reward_type.clone(), balance);
            Expired {
                challenge_id,
                milestone_id,
                prize,
                amount,
                code,
                balance,
            }
        })
        .collect()
}

/// Vouchers are counted one per code; their prize value is the code, not an amount.
fn is_voucher(catalog: &TenantCatalog, reward_type: &str) -> bool {
    catalog
        .reward_type(reward_type)
        .is_some_and(|r| r.kind == super::catalog::RewardKind::Voucher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::Catalog;
    use crate::core::model::TriggerKey;

    const CATALOG: &str = r#"
[[reward_types]]
reward_type = "points"
[[triggers]]
id = 1
name = "t"
[[challenges]]
id = 1
name = "c"
repeatable = true
[[challenges.groups]]
id = 1
triggers = [{ trigger = 1, frequency = 1 }]
[[challenges.prizes]]
reward_type = "points"
amount = 10
"#;

    /// A grant that would take a balance past its bound is rejected, and nothing overflows.
    #[test]
    fn a_grant_past_the_balance_bound_is_rejected() {
        let catalog = Catalog::from_sources(&[("c.toml", CATALOG)]).unwrap();
        let tenant = catalog.tenant("default").unwrap();
        let mut state = UserState::default();
        state
            .balances
            .insert("points".into(), limits::MAX_BALANCE - Decimal::from(5));
        let action = Action::new("u", TriggerKey::Id(1), Decimal::ONE);
        let source = SourceRef::new("t", 0, 1);
        let ctx = Context {
            source: &source,
            cause: "t:0:1",
            record_time: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
        };
        let trigger = tenant.trigger(1).unwrap();
        let effects = evaluate(
            &mut state,
            UserInput::Action(&action, Some(trigger), None),
            tenant,
            "u",
            &ctx,
        );
        assert!(effects.events.iter().any(|e| matches!(
            e.body,
            EventBody::RewardRejected {
                reason: RejectReason::BalanceLimit,
                ..
            }
        )));
        assert_eq!(
            state.balance("points"),
            limits::MAX_BALANCE - Decimal::from(5)
        );
        // The prize that was not granted is not listed as claimable either.
        assert!(state.milestones.iter().all(|m| m.prizes.is_empty()));
    }

    /// The earliest prize expiry is kept beside the milestones once asked: a prize won after
    /// that, expiring sooner, still expires on time, and the rest stay.
    #[test]
    fn a_prize_won_after_the_expiry_was_asked_still_expires_on_time() {
        let catalog = Catalog::from_sources(&[("c.toml", CATALOG)]).unwrap();
        let tenant = catalog.tenant("default").unwrap();
        let day = |d: i64| chrono::DateTime::from_timestamp(1_764_000_000 + d * 86_400, 0).unwrap();
        let milestone = |id: &str, expires: i64| Milestone {
            milestone_id: id.into(),
            challenge_id: 1,
            achieved_at: day(0),
            prizes: vec![PrizeInfo {
                value: Some("10".into()),
                expiration_date: Some(day(expires)),
                description: "10 points".into(),
                reward_type: "points".into(),
            }],
        };
        let mut state = UserState::default();
        state.balances.insert("points".into(), Decimal::from(20));
        state.milestones.push(milestone("late", 30));
        assert!(apply_expiry(&mut state, tenant, day(1)).is_empty());
        assert_eq!(state.next_prize_expiry(), Some(day(30)));
        state.milestones.push(milestone("soon", 2));
        assert_eq!(
            state.next_prize_expiry(),
            Some(day(2)),
            "asked again after the change"
        );
        let gone = apply_expiry(&mut state, tenant, day(3));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].milestone_id, "soon");
        assert_eq!(state.balance("points"), Decimal::from(10));
        assert_eq!(state.milestones.len(), 1);
        assert_eq!(state.next_prize_expiry(), Some(day(30)));
        assert_eq!(apply_expiry(&mut state, tenant, day(31)).len(), 1);
        assert_eq!(state.next_prize_expiry(), None);
    }
}
