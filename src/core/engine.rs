//! An in-memory driver of the record step: both stages' state in maps, inputs in the order
//! they are given.
//!
//! `replay`, `replay --records`, the tests and the benchmarks use it to run the worker's own
//! per-record logic ([`super::step`]) without a log or a store. It has two ways of treating
//! the inventory stage's traffic:
//! - [`Internal::Loopback`] (`replay`, tests): a request is answered at once and the answer
//!   fed back, first in first out, after the input that caused it. Only the order of internal
//!   records can then differ from a worker's, so limited resources (the last unit of stock,
//!   a winners cap) may go to a different user when several race for them.
//! - Programmatic events' amount requests go through the amount stage's step
//!   ([`step::amount`]) in loopback, answered by [`Amounts`], or with the event's fallback
//!   when none is given: the engine never calls an endpoint.
//! - [`Internal::Recorded`] (`replay --records`): internal records come from the input, as the
//!   worker consumed them, and the engine's own requests and answers are dropped. Fed a dump
//!   of every topic a worker read, it reproduces that worker's winners exactly.

use chrono::{DateTime, Utc};
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;

use super::catalog::{Catalog, CatalogHistory};
use super::decode::{self, Decoded};
use super::evaluator::ClaimCommand;
use super::events::Event;
use super::mapping::CompiledMapping;
use super::model::{Action, SourceRef, UserKey};
use super::records::{ClaimRecord, HistoryEntry, ResourceRecord, UserRecord};
use super::rules::programmatic::{AmountOutcome, AmountRequest, FallbackReason};
use super::state::UserState;
use super::step::{self, Input, Outcome, Output, Owner, Position};

/// How the engine treats the inventory stage's requests and answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Internal {
    /// Answered and fed back in-process, first in first out.
    #[default]
    Loopback,
    /// Dropped: the input carries the internal records a worker consumed.
    Recorded,
}

/// The topic names of loopback traffic; only watermarks ever see them.
const LOOPBACK_REQUESTS: &str = "questline.internal.requests";
const LOOPBACK_RESPONSES: &str = "questline.internal.responses";
const LOOPBACK_AMOUNTS: &str = "questline.internal.amounts";
const LOOPBACK_AMOUNT_REQUESTS: &str = "questline.internal.amount-requests";

/// How the engine answers a programmatic event's amount request in loopback: the engine never
/// calls an endpoint itself (it is pure), so a driver that wants answers passes a function.
#[derive(Clone)]
pub struct Amounts(Arc<dyn Fn(&AmountRequest) -> AmountOutcome + Send + Sync>);

impl Amounts {
    pub fn new(answer: impl Fn(&AmountRequest) -> AmountOutcome + Send + Sync + 'static) -> Self {
        Amounts(Arc::new(answer))
    }
}

impl std::fmt::Debug for Amounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Amounts(..)")
    }
}

/// Both stages' state, in memory, and the read models a store would keep.
#[derive(Debug, Clone)]
pub struct Engine {
    /// The catalog versions; each input is evaluated with the one in force at its time.
    catalogs: Arc<CatalogHistory>,
    internal: Internal,
    /// None: every amount request is answered with its event's fallback (`not_called`).
    amounts: Option<Amounts>,
    users: FxHashMap<UserKey, UserRecord>,
    resources: FxHashMap<String, ResourceRecord>,
    claims: FxHashMap<(UserKey, String), ClaimRecord>,
    history: FxHashMap<UserKey, Vec<HistoryEntry>>,
    finished: FxHashMap<(String, u32), u64>,
    /// Offsets of loopback records (one partition each).
    loopback_offset: i64,
}

/// What became of one record, as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    pub events: Vec<Event>,
    pub duplicate: bool,
    pub ignored: Option<String>,
}

impl Processed {
    fn of(outcome: &Outcome, events: Vec<Event>) -> Self {
        Processed {
            events,
            duplicate: *outcome == Outcome::Duplicate,
            ignored: match outcome {
                Outcome::Ignored(reason) => Some(reason.clone()),
                _ => None,
            },
        }
    }
}

impl Engine {
    /// An engine that answers inventory requests in-process.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Engine::with_internal(catalog, Internal::Loopback)
    }

    pub fn with_internal(catalog: Arc<Catalog>, internal: Internal) -> Self {
        Engine::with_history(
            Arc::new(CatalogHistory::fixed((*catalog).clone())),
            internal,
        )
    }

    /// An engine evaluating each input with the catalog version in force at its time.
    pub fn with_history(catalogs: Arc<CatalogHistory>, internal: Internal) -> Self {
        Engine {
            catalogs,
            internal,
            amounts: None,
            users: FxHashMap::default(),
            resources: FxHashMap::default(),
            claims: FxHashMap::default(),
            history: FxHashMap::default(),
            finished: FxHashMap::default(),
            loopback_offset: 0,
        }
    }

    /// Answers programmatic events' amount requests with `amounts` (loopback only).
    pub fn with_amounts(mut self, amounts: Amounts) -> Self {
        self.amounts = Some(amounts);
        self
    }

    /// The catalog in force at `at`.
    pub fn catalog_at(&self, at: DateTime<Utc>) -> &Arc<Catalog> {
        self.catalogs.at(at)
    }

    /// Applies the next catalog version of a tenant (a record of the catalog log).
    pub fn apply_catalog(
        &mut self,
        version: super::catalog::CatalogVersion,
    ) -> Result<(), super::catalog::Refusal> {
        Arc::make_mut(&mut self.catalogs).apply(version).map(|_| ())
    }

    /// The catalog with every version applied.
    pub fn catalog(&self) -> &Catalog {
        self.catalogs.latest()
    }

    pub fn user(&self, tenant: &str, user_id: &str) -> Option<&UserState> {
        self.users
            .get(&UserKey::new(tenant, user_id))
            .map(|r| &r.state)
    }

    pub fn users(&self) -> impl Iterator<Item = (&UserKey, &UserState)> {
        self.users.iter().map(|(k, r)| (k, &r.state))
    }

    pub fn resource(&self, key: &str) -> Option<&super::inventory::ResourceState> {
        self.resources.get(key).map(|r| &r.state)
    }

    /// A user's history, oldest first.
    pub fn history(&self, tenant: &str, user_id: &str) -> &[HistoryEntry] {
        self.history
            .get(&UserKey::new(tenant, user_id))
            .map_or(&[], Vec::as_slice)
    }

    /// A claim's stored outcome.
    pub fn claim(&self, tenant: &str, user_id: &str, claim_id: &str) -> Option<&ClaimRecord> {
        self.claims
            .get(&(UserKey::new(tenant, user_id), claim_id.to_string()))
    }

    /// How many users of `tenant` achieved `challenge`.
    pub fn people_finished(&self, tenant: &str, challenge: u32) -> u64 {
        self.finished
            .get(&(tenant.to_string(), challenge))
            .copied()
            .unwrap_or(0)
    }

    /// Maps, resolves and evaluates one record; a bad one becomes a dead-letter event.
    pub fn process_record(
        &mut self,
        mapping: &CompiledMapping,
        bytes: &[u8],
        source: &SourceRef,
        record_time: DateTime<Utc>,
    ) -> Processed {
        let input = match decode::decode(mapping, self.catalogs.at(record_time), bytes) {
            Ok(Decoded::Action { action, trigger_id }) => Input::Action { action, trigger_id },
            Ok(Decoded::Ignored { reason }) => Input::Ignored(reason),
            Err(rejection) => Input::DeadLetter(rejection),
        };
        self.process(&input, bytes, source, record_time)
    }

    /// Evaluates an action already resolved ([`decode::resolve_action`]).
    pub fn process_action(
        &mut self,
        action: &Action,
        trigger_id: Option<u32>,
        source: &SourceRef,
        record_time: DateTime<Utc>,
    ) -> Processed {
        let input = Input::Action {
            action: action.clone(),
            trigger_id,
        };
        self.process(&input, &[], source, record_time)
    }

    /// Evaluates a claim command.
    pub fn process_claim(
        &mut self,
        claim: &ClaimCommand,
        source: &SourceRef,
        record_time: DateTime<Utc>,
    ) -> Processed {
        self.process(&Input::Claim(claim.clone()), &[], source, record_time)
    }

    /// One decoded input through the record step (`payload`: the record's bytes, which a
    /// dead letter carries), then, in loopback, the inventory traffic it caused.
    pub fn process(
        &mut self,
        input: &Input,
        payload: &[u8],
        source: &SourceRef,
        record_time: DateTime<Utc>,
    ) -> Processed {
        let mark = step::input_mark(source);
        let pos = Position {
            source,
            mark: &mark,
            record_time,
            payload,
        };
        let first = self.step(input, payload, &pos);
        let outcome = first.outcome.clone();
        let mut events = Vec::new();
        let mut queue: VecDeque<Input> = VecDeque::new();
        self.keep(first, &mut events, &mut queue);
        while let Some(internal) = queue.pop_front() {
            let topic = match internal {
                Input::Request(_) => LOOPBACK_REQUESTS,
                Input::AmountCall(_) => LOOPBACK_AMOUNT_REQUESTS,
                Input::Amount(_) => LOOPBACK_AMOUNTS,
                _ => LOOPBACK_RESPONSES,
            };
            self.loopback_offset += 1;
            let source = SourceRef::new(topic, 0, self.loopback_offset);
            let mark = step::input_mark(&source);
            let pos = Position {
                source: &source,
                mark: &mark,
                record_time,
                payload: &[],
            };
            let out = self.step(&internal, &[], &pos);
            self.keep(out, &mut events, &mut queue);
        }
        Processed::of(&outcome, events)
    }

    fn step(&mut self, input: &Input, payload: &[u8], pos: &Position<'_>) -> Output {
        if let Input::AmountCall(request) = input {
            return self.amount_step(request, pos);
        }
        let catalog = self.catalogs.at(pos.record_time);
        match input.owner() {
            Some(Owner::User(key)) => {
                let prior = match input {
                    Input::Claim(claim) => self.claims.get(&(key.clone(), claim.claim_id.clone())),
                    _ => None,
                };
                let record = self.users.entry(key).or_default();
                step::user(record, input, catalog, pos, prior)
            }
            Some(Owner::Resource(key)) => {
                let record = self.resources.entry(key).or_default();
                step::resource(record, input, catalog, pos)
            }
            None => step::unowned(input, payload, catalog, pos),
        }
    }

    /// The amount stage: in loopback the request is decided here ([`Engine::answer`]) when
    /// its user's record says it needs a call; recorded, it is left to the dump's response.
    fn amount_step(&mut self, request: &AmountRequest, pos: &Position<'_>) -> Output {
        let key = UserKey::new(&request.tenant, &request.user_id);
        let needs_call = self
            .users
            .get(&key)
            .is_some_and(|r| step::amount_call(r, request) == step::AmountCall::Call);
        let decided = (self.internal == Internal::Loopback && needs_call)
            .then(|| self.answer(request, pos.record_time));
        let record = self.users.entry(key).or_default();
        step::amount(record, request, decided.as_ref(), pos)
    }

    /// The loopback answer to an amount request: the driver's function, else the event's
    /// fallback.
    fn answer(&self, request: &AmountRequest, at: DateTime<Utc>) -> AmountOutcome {
        if let Some(amounts) = &self.amounts {
            return amounts.0(request);
        }
        let fallback = self
            .catalogs
            .at(at)
            .tenant(&request.tenant)
            .and_then(|t| t.event(&request.event))
            .and_then(|e| e.programmatic.as_ref())
            .map_or(rust_decimal::Decimal::ZERO, |p| p.fallback_points);
        AmountOutcome::Fallback {
            points: fallback,
            reason: FallbackReason::NotCalled,
        }
    }

    /// Keeps an output's read models and events; queues its internal records in loopback.
    fn keep(&mut self, out: Output, events: &mut Vec<Event>, queue: &mut VecDeque<Input>) {
        for entry in out.history {
            let key = UserKey::new(&*entry.event.tenant, &*entry.event.user_id);
            self.history.entry(key).or_default().push(entry);
        }
        for claim in out.claims {
            let key = UserKey::new(&*claim.event.tenant, &*claim.event.user_id);
            self.claims.insert((key, claim.claim_id.clone()), claim);
        }
        for done in out.first_completions {
            *self
                .finished
                .entry((done.tenant, done.challenge_id))
                .or_default() += 1;
        }
        events.extend(out.events);
        if self.internal == Internal::Loopback {
            queue.extend(out.requests.into_iter().map(Input::Request));
            queue.extend(out.responses.into_iter().map(Input::Response));
            queue.extend(out.amount_requests.into_iter().map(Input::AmountCall));
            queue.extend(out.amount_responses.into_iter().map(Input::Amount));
        }
    }
}
