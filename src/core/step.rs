//! The record step: what one consumed input does to the state of its owner.
//!
//! This is the only place where per-record logic lives. Every driver calls it: the Kafka
//! worker (each partition against its cache and the store), `replay`, `replay --records`,
//! `demo` and the tests (through the in-memory [`super::engine::Engine`]). A driver decodes a
//! record into an [`Input`], finds the owner's record by [`Input::owner`], calls [`user`],
//! [`resource`] or [`unowned`], and keeps what the returned [`Output`] says: new events,
//! requests and answers for the inventory stage, and the read models (history entries, claim
//! outcomes, first completions). So a difference between two drivers can only come from the
//! order in which they feed inputs, never from the logic.
//!
//! The step also applies the watermark: an input at or below the offset its owner already
//! applied for that topic-partition is a redelivery and changes nothing.

use chrono::{DateTime, Utc};

use super::catalog::Catalog;
use super::decode::{self, Rejection};
use super::evaluator::{self, ClaimCommand, Context, UserInput};
use super::events::{Event, EventBody};
use super::ids;
use super::inventory::{self, Request, Response};
use super::model::{Action, SourceRef, TriggerKey, UserKey};
use super::records::{ClaimRecord, HistoryEntry, ResourceRecord, UserRecord, Watermark};
use super::rules::programmatic::{AmountRequest, AmountResponse};

/// What one consumed record is, once decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A mapped action (or an AddAction command) that counts toward a trigger the catalog
    /// knows, an earning-rule event of its name, or both ([`decode::resolve_action`]).
    Action {
        action: Action,
        trigger_id: Option<u32>,
    },
    /// A claim command.
    Claim(ClaimCommand),
    /// User stage → inventory stage.
    Request(Request),
    /// Inventory stage → user stage.
    Response(Response),
    /// Amount caller → user stage: what a programmatic event's endpoint (or its fallback)
    /// says an occurrence pays.
    Amount(AmountResponse),
    /// A record that cannot be an input: it becomes a dead letter.
    DeadLetter(Rejection),
    /// A record deliberately skipped (an unknown trigger under a lenient mapping).
    Ignored(String),
}

/// Whose state an input changes: one owner per input is what makes every key single-writer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    User(UserKey),
    /// An inventory-stage resource (`tenant/reward/tshirt`, `tenant/winners/5`).
    Resource(String),
}

impl Input {
    pub fn owner(&self) -> Option<Owner> {
        match self {
            Input::Action { action, .. } => {
                Some(Owner::User(UserKey::new(&action.tenant, &action.user_id)))
            }
            Input::Claim(c) => Some(Owner::User(UserKey::new(&c.tenant, &c.user_id))),
            Input::Response(r) => Some(Owner::User(UserKey::new(&r.tenant, &r.user_id))),
            Input::Amount(r) => Some(Owner::User(UserKey::new(&r.tenant, &r.user_id))),
            Input::Request(r) => Some(Owner::Resource(r.resource())),
            Input::DeadLetter(_) | Input::Ignored(_) => None,
        }
    }

    /// The user whose state this input changes, if a user owns it.
    pub fn user(&self) -> Option<UserKey> {
        match self.owner() {
            Some(Owner::User(key)) => Some(key),
            _ => None,
        }
    }
}

/// Where and when the input was consumed: the only source of identity and time.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub source: &'a SourceRef,
    /// The record's timestamp; an action's own `occurredAt` wins over it.
    pub record_time: DateTime<Utc>,
}

/// What became of an input, for metrics and drivers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Outcome {
    /// Evaluated; its effects are in the [`Output`].
    #[default]
    Applied,
    /// Its action or claim id was applied before: nothing changed.
    Duplicate,
    /// At or below its owner's watermark: a redelivery, nothing changed.
    Redelivered,
    /// Skipped on purpose (the reason says why).
    Ignored(String),
    /// Turned into a dead-letter event.
    DeadLettered,
}

/// Everything one input produced. Events are in emission order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub outcome: Outcome,
    pub events: Vec<Event>,
    /// For the inventory stage (keyed by resource).
    pub requests: Vec<Request>,
    /// For the user stage (keyed by user).
    pub responses: Vec<Response>,
    /// For the amount caller: programmatic events' occurrences waiting for their amount.
    pub amount_requests: Vec<AmountRequest>,
    /// New entries of the owner's reward history.
    pub history: Vec<HistoryEntry>,
    /// Final outcomes of claims, kept by claim id.
    pub claims: Vec<ClaimRecord>,
    /// Challenges this user achieved for the first time ("people finished").
    pub first_completions: Vec<FirstCompletion>,
}

/// A user achieved a challenge for the first time: one more of the people who finished it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstCompletion {
    pub tenant: String,
    pub challenge_id: u32,
}

impl Output {
    fn skipped(outcome: Outcome) -> Self {
        Output {
            outcome,
            ..Output::default()
        }
    }

    /// Reward types granted by this input, one entry per grant (for metrics).
    pub fn granted(&self) -> impl Iterator<Item = &str> {
        self.events.iter().filter_map(|e| match &e.body {
            EventBody::RewardGranted { reward_type, .. } => Some(reward_type.as_str()),
            _ => None,
        })
    }
}

/// The watermark key of a topic-partition.
fn mark(source: &SourceRef) -> String {
    format!("{}:{}", source.topic, source.partition)
}

/// Whether `source` is at or below what `applied` already covers; if not, records it.
fn redelivered(applied: &mut Watermark, source: &SourceRef) -> bool {
    let mark = mark(source);
    if applied.get(&mark).is_some_and(|&o| o >= source.offset) {
        return true;
    }
    applied.insert(mark, source.offset);
    false
}

/// The user stage: an action, a claim or an inventory answer, applied to its user's record.
/// `prior_claim`: for a claim, the outcome stored under its id, if any (the driver reads it
/// from its store: claim ids are remembered forever there, not in the user's record).
pub fn user(
    record: &mut UserRecord,
    input: &Input,
    catalog: &Catalog,
    pos: &Position<'_>,
    prior_claim: Option<&ClaimRecord>,
) -> Output {
    let Some(key) = input.user() else {
        return Output::skipped(Outcome::Ignored("not a user input".into()));
    };
    let Some(tenant) = catalog.tenant(&key.tenant) else {
        return Output::skipped(Outcome::Ignored(format!("unknown tenant '{}'", key.tenant)));
    };
    let (trigger, event) = match input {
        Input::Action { action, trigger_id } => {
            let trigger = match trigger_id.map(|id| (id, tenant.trigger(id))) {
                None => None,
                Some((_, Some(t))) => Some(t),
                Some((id, None)) => {
                    return Output::skipped(Outcome::Ignored(format!("unknown trigger {id}")))
                }
            };
            let event = match &action.trigger_id {
                TriggerKey::Name(name) => tenant.event(name),
                TriggerKey::Id(_) => None,
            };
            if trigger.is_none() && event.is_none() {
                return Output::skipped(Outcome::Ignored(format!(
                    "unknown trigger '{}'",
                    action.trigger_id
                )));
            }
            (trigger, event)
        }
        _ => (None, None),
    };
    if redelivered(&mut record.applied, pos.source) {
        return Output::skipped(Outcome::Redelivered);
    }
    let cause = match input {
        Input::Response(r) => r.request_id.clone(),
        Input::Amount(r) => r.request_id.clone(),
        _ => ids::cause_of(pos.source),
    };
    let ctx = Context {
        source: pos.source,
        cause: &cause,
        record_time: pos.record_time,
    };
    let user_input = match input {
        Input::Action { action, .. } => UserInput::Action(action, trigger, event),
        Input::Claim(claim) => UserInput::Claim(claim, prior_claim),
        Input::Response(response) => UserInput::Response(response),
        Input::Amount(response) => UserInput::Amount(response),
        _ => return Output::skipped(Outcome::Ignored("not a user input".into())),
    };
    let effects = evaluator::evaluate(&mut record.state, user_input, tenant, &key.user_id, &ctx);
    let mut out = Output {
        outcome: if effects.duplicate {
            Outcome::Duplicate
        } else {
            Outcome::Applied
        },
        requests: effects.requests,
        amount_requests: effects.amount_requests,
        first_completions: effects
            .first_completions
            .into_iter()
            .map(|challenge_id| FirstCompletion {
                tenant: key.tenant.clone(),
                challenge_id,
            })
            .collect(),
        ..Output::default()
    };
    for event in &effects.events {
        read_models(record, event, &mut out);
    }
    out.events = effects.events;
    out
}

/// History and claim outcomes from a user's new events.
fn read_models(record: &mut UserRecord, event: &Event, out: &mut Output) {
    match &event.body {
        EventBody::ProgressUpdated { .. } | EventBody::DeadLetter { .. } => return,
        EventBody::ClaimCompleted { claim_id, .. } | EventBody::ClaimFailed { claim_id, .. } => {
            out.claims.push(ClaimRecord {
                claim_id: claim_id.clone(),
                event: event.clone(),
            })
        }
        EventBody::MilestoneAchieved { .. }
        | EventBody::RewardGranted { .. }
        | EventBody::RewardRejected { .. }
        | EventBody::RewardExpired { .. } => {}
    }
    out.history.push(HistoryEntry {
        seq: record.history_len,
        event: event.clone(),
    });
    record.history_len += 1;
}

/// The inventory stage: a request answered against its resource's record.
pub fn resource(
    record: &mut ResourceRecord,
    input: &Input,
    catalog: &Catalog,
    pos: &Position<'_>,
) -> Output {
    let Input::Request(request) = input else {
        return Output::skipped(Outcome::Ignored("not an inventory request".into()));
    };
    let Some(tenant) = catalog.tenant(&request.tenant) else {
        return Output::skipped(Outcome::Ignored(format!(
            "unknown tenant '{}'",
            request.tenant
        )));
    };
    if redelivered(&mut record.applied, pos.source) {
        return Output::skipped(Outcome::Redelivered);
    }
    let response = inventory::evaluate(&mut record.state, request, tenant);
    Output {
        responses: vec![response],
        ..Output::default()
    }
}

/// An input no state owns: a dead letter (with the record's original bytes) or a skip.
pub fn unowned(input: &Input, payload: &[u8], pos: &Position<'_>) -> Output {
    match input {
        Input::DeadLetter(rejection) => Output {
            outcome: Outcome::DeadLettered,
            events: vec![decode::dead_letter(
                rejection,
                payload,
                pos.source,
                pos.record_time,
            )],
            ..Output::default()
        },
        Input::Ignored(reason) => Output::skipped(Outcome::Ignored(reason.clone())),
        _ => Output::skipped(Outcome::Ignored("input has an owner".into())),
    }
}
