//! The record step: what one consumed input does to the state of its owner.
//!
//! This is the only place where per-record logic lives. Every driver calls it: the Kafka
//! worker (each partition against its cache and the store), `replay`, `replay --records`,
//! `demo` and the tests (through the in-memory [`super::engine::Engine`]). A driver decodes a
//! record into an [`Input`], finds the owner's record by [`Input::owner`], calls [`user`],
//! [`amount`] (an amount request), [`resource`] or [`unowned`], and keeps what the returned
//! [`Output`] says: new events, requests and answers for the inventory and amount stages, and
//! the read models (history entries, claim outcomes, first completions). So a difference between two drivers can only come from the
//! order in which they feed inputs, never from the logic.
//!
//! The step also applies the watermark: an input at or below the offset its owner already
//! applied for that topic-partition is a redelivery and changes nothing.

use chrono::{DateTime, Utc};
use smol_str::SmolStr;

use super::catalog::Catalog;
use super::decode::{self, Rejection};
use super::evaluator::{self, ClaimCommand, Context, GrantCommand, UserInput};
use super::events::{Event, EventBody};
use super::ids;
use super::inventory::{self, Request, Response};
use super::model::{Action, SourceRef, UserKey};
use super::records::{
    ClaimRecord, HistoryEntry, HistoryPos, ResourceRecord, UserRecord, Watermark,
};
use super::reject::RejectKind;
use super::rules::programmatic::{AmountOutcome, AmountRequest, AmountResponse};
use super::state::{Pending, PendingKind, UserStatusChange};

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
    /// An administrator disables or enables a user.
    UserStatus(UserStatusChange),
    /// A service's grant of an operation (`POST /int/reward`).
    Grant(GrantCommand),
    /// User stage → inventory stage.
    Request(Request),
    /// Inventory stage → user stage.
    Response(Response),
    /// Amount caller → user stage: what a programmatic event's endpoint (or its fallback)
    /// says an occurrence pays.
    Amount(AmountResponse),
    /// User stage → amount caller: an occurrence of a programmatic event whose amount the
    /// tenant's endpoint decides. Owned by its user: whether it still needs a call is in the
    /// user's record ([`amount_call`]), and the decided outcome is recorded there ([`amount`]).
    AmountCall(AmountRequest),
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
            Input::Request(r) => Some(Owner::Resource(r.resource())),
            _ => self.user().map(Owner::User),
        }
    }

    /// The user whose state this input changes, if a user owns it.
    pub fn user(&self) -> Option<UserKey> {
        if let Input::Action { action, .. } = self {
            // The action's names as they are: a copy, not a new name made from the text.
            return Some(UserKey {
                tenant: action.tenant.clone(),
                user_id: action.user_id.clone(),
            });
        }
        self.user_ids()
            .map(|(tenant, user_id)| UserKey::new(tenant, user_id))
    }

    /// The tenant and id of the user who owns this input, borrowed: no key is built.
    pub fn user_ids(&self) -> Option<(&str, &str)> {
        match self {
            Input::Action { action, .. } => Some((&action.tenant, &action.user_id)),
            Input::Claim(c) => Some((&c.tenant, &c.user_id)),
            Input::UserStatus(c) => Some((&c.tenant, &c.user_id)),
            Input::Grant(g) => Some((&g.tenant, &g.user_id)),
            Input::Response(r) => Some((&r.tenant, &r.user_id)),
            Input::Amount(r) => Some((&r.tenant, &r.user_id)),
            Input::AmountCall(r) => Some((&r.tenant, &r.user_id)),
            Input::Request(_) | Input::DeadLetter(_) | Input::Ignored(_) => None,
        }
    }
}

/// Where and when the input was consumed: the only source of identity and time.
#[derive(Debug, Clone, Copy)]
pub struct Position<'a> {
    pub source: &'a SourceRef,
    /// The source's topic-partition as the watermark and the history chain name it
    /// (`topic:partition`, [`input_mark`]). The worker makes it once per topic-partition and
    /// every user's record shares it: a name of over 23 bytes, made for each user, was a cold
    /// heap line that every action compared against and every row write copied.
    pub mark: &'a SmolStr,
    /// The record's timestamp; an action's own `occurredAt` wins over it.
    pub record_time: DateTime<Utc>,
    /// The record's bytes, which a dead letter carries (empty for records the driver made).
    pub payload: &'a [u8],
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
    /// From the amount stage, for the user stage (keyed by user).
    pub amount_responses: Vec<AmountResponse>,
    /// New entries of the owner's reward history.
    pub history: Vec<HistoryEntry>,
    /// Final outcomes of claims, kept by claim id.
    pub claims: Vec<ClaimRecord>,
    /// Challenges this user achieved for the first time ("people finished").
    pub first_completions: Vec<FirstCompletion>,
    /// Why an owned input was refused ([`Outcome::DeadLettered`]); its dead letter is in
    /// `events`. Unowned dead letters carry theirs in [`Input::DeadLetter`].
    pub rejection: Option<Rejection>,
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

/// Room for the watermark key of any Kafka topic-partition: a topic name is at most 249
/// bytes, then `:` and a partition of at most 11 characters.
const MARK_ON_STACK: usize = 272;

/// Calls `f` with the watermark key of `source`, written on the stack. This runs for every
/// action: a formatted `String` per action was an allocation and `fmt`'s machinery each time,
/// and the key is only needed on the heap for a topic-partition a user's watermark does not
/// have yet. (A longer topic name, which Kafka refuses, gets a formatted key.)
fn with_mark<R>(source: &SourceRef, f: impl FnOnce(&str) -> R) -> R {
    let topic = source.topic.as_bytes();
    let mut digits = itoa::Buffer::new();
    let partition = digits.format(source.partition).as_bytes();
    let len = topic.len() + 1 + partition.len();
    if len > MARK_ON_STACK {
        return f(&mark(source));
    }
    let mut buf = [0u8; MARK_ON_STACK];
    buf[..topic.len()].copy_from_slice(topic);
    buf[topic.len()] = b':';
    buf[topic.len() + 1..len].copy_from_slice(partition);
    match std::str::from_utf8(&buf[..len]) {
        Ok(key) => f(key),
        // Unreachable (a topic name and digits), but never a panic.
        Err(_) => f(&mark(source)),
    }
}

/// Whether `source` is at or below what `applied` already covers: a redelivery.
pub fn already_applied(applied: &Watermark, source: &SourceRef) -> bool {
    with_mark(source, |key| {
        applied.get(key).is_some_and(|&o| o >= source.offset)
    })
}

/// The watermark key of `source`'s topic-partition (`topic:partition`), for
/// [`Position::mark`].
pub fn input_mark(source: &SourceRef) -> SmolStr {
    with_mark(source, |mark| SmolStr::new(mark))
}

/// Whether `pos`'s source is at or below what `applied` already covers; if not, records it
/// under the position's shared mark.
fn redelivered(applied: &mut Watermark, pos: &Position<'_>) -> bool {
    let offset = pos.source.offset;
    match applied.get_mut(pos.mark.as_str()) {
        Some(o) if *o >= offset => true,
        Some(o) => {
            *o = offset;
            false
        }
        None => {
            applied.insert(pos.mark.clone(), offset);
            false
        }
    }
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
    let mut out = evaluate_user(record, input, catalog, pos, prior_claim);
    stamp(&mut out, catalog);
    out
}

/// Names, on every event, the version of its tenant's catalog that produced it: the
/// published events and their copies in the read models (history, claim outcomes) alike.
fn stamp(out: &mut Output, catalog: &Catalog) {
    let events = out
        .events
        .iter_mut()
        .chain(out.history.iter_mut().map(|h| &mut h.event))
        .chain(out.claims.iter_mut().map(|c| &mut c.event));
    for event in events {
        event.catalog_version = catalog.tenant(&event.tenant).map_or(0, |t| t.version);
    }
}

fn evaluate_user(
    record: &mut UserRecord,
    input: &Input,
    catalog: &Catalog,
    pos: &Position<'_>,
    prior_claim: Option<&ClaimRecord>,
) -> Output {
    let Some(key) = input.user() else {
        return Output::skipped(Outcome::Ignored("not a user input".into()));
    };
    if let Input::AmountCall(_) = input {
        // Answered by the amount stage ([`amount`]), which knows what the caller decided.
        return Output::skipped(Outcome::Ignored(
            "an amount request: see step::amount".into(),
        ));
    }
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
            let event = tenant.event_for(&action.trigger_id);
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
    // Checked when the command was read; checked again against the catalog evaluating it.
    let operation = match input {
        Input::Grant(grant) => match grant.check(tenant) {
            Ok(operation) => Some(operation),
            Err(e) => return Output::skipped(Outcome::Ignored(e.to_string())),
        },
        _ => None,
    };
    if redelivered(&mut record.applied, pos) {
        return Output::skipped(Outcome::Redelivered);
    }
    match input {
        Input::UserStatus(change) => {
            record.state.disabled = change.disabled;
            return Output::default();
        }
        Input::Action { action, .. } if record.state.disabled => return refused(action, pos),
        _ => {}
    }
    let coordinates;
    let cause: &str = match input {
        Input::Response(r) => &r.request_id,
        Input::Amount(r) => &r.request_id,
        _ => {
            coordinates = ids::CauseText::of(pos.source);
            coordinates.as_str()
        }
    };
    let ctx = Context {
        source: pos.source,
        cause,
        record_time: pos.record_time,
    };
    let user_input = match input {
        Input::Action { action, .. } => UserInput::Action(action, trigger, event),
        Input::Claim(claim) => UserInput::Claim(claim, prior_claim),
        Input::Response(response) => UserInput::Response(response),
        Input::Amount(response) => UserInput::Amount(response),
        Input::Grant(grant) => match operation {
            Some(operation) => UserInput::Grant(grant, operation),
            None => return Output::skipped(Outcome::Ignored("no operation".into())),
        },
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
                tenant: key.tenant.to_string(),
                challenge_id,
            })
            .collect(),
        ..Output::default()
    };
    for event in &effects.events {
        read_models(record, pos, event, &mut out);
    }
    out.events = effects.events;
    out
}

/// What the amount stage must do for an amount request, judged on its user's record: the
/// pending entry the request was sent for says whether it is still open and what was decided.
#[derive(Debug, Clone, PartialEq)]
pub enum AmountCall {
    /// Open and undecided: call the endpoint (or take the fallback) and pass the outcome to
    /// [`amount`].
    Call,
    /// Decided before (a redelivered or repeated request): answer with this again, no call.
    Recorded(AmountOutcome),
    /// Nothing pending under its id (settled already, or never asked): no call, no answer.
    Settled,
}

/// Whether `request` needs a call, from the pending entry in its user's record. A request is
/// published only after its pending entry is durable (commit protocol steps 3–4), so an
/// absent entry means settled, never "not yet written".
pub fn amount_call(record: &UserRecord, request: &AmountRequest) -> AmountCall {
    match record.state.pending.get(&request.request_id) {
        Some(Pending {
            what: PendingKind::Amount { event, answer },
            ..
        }) if *event == request.event => match answer {
            Some(outcome) => AmountCall::Recorded(outcome.clone()),
            None => AmountCall::Call,
        },
        _ => AmountCall::Settled,
    }
}

/// The amount stage: an amount request answered against its user's record. `decided` is the
/// outcome the driver's caller decided for a request [`amount_call`] said to call; it is
/// recorded in the pending entry and sent as the response. A request decided before is
/// answered with the recorded outcome whatever `decided` says; a settled one gets no answer.
/// Without `decided` an undecided request is left as it is (`replay --records`: the response
/// comes from the dump).
pub fn amount(
    record: &mut UserRecord,
    request: &AmountRequest,
    decided: Option<&AmountOutcome>,
    pos: &Position<'_>,
) -> Output {
    if redelivered(&mut record.applied, pos) {
        return Output::skipped(Outcome::Redelivered);
    }
    let (outcome, result) = match amount_call(record, request) {
        AmountCall::Settled => {
            return Output::skipped(Outcome::Ignored("amount request already settled".into()))
        }
        AmountCall::Recorded(outcome) => (Outcome::Duplicate, outcome),
        AmountCall::Call => {
            let Some(decided) = decided else {
                return Output::skipped(Outcome::Ignored("amount request not called".into()));
            };
            if let Some(Pending {
                what: PendingKind::Amount { answer, .. },
                ..
            }) = record.state.pending.get_mut(&request.request_id)
            {
                *answer = Some(decided.clone());
            }
            (Outcome::Applied, decided.clone())
        }
    };
    Output {
        outcome,
        amount_responses: vec![request.respond(result)],
        ..Output::default()
    }
}

/// A disabled user's action: a dead letter, never evaluated. It passed the watermark, so its
/// dead letter goes out with the user's state (the driver's outbox): a crash cannot lose it.
fn refused(action: &Action, pos: &Position<'_>) -> Output {
    let rejection = Rejection::new(
        RejectKind::UserDisabled,
        format!(
            "userId: user '{}' is disabled; the action was not evaluated (enable the user and send it again)",
            super::limits::cut(&action.user_id, 64)
        ),
        Some("userId"),
        Some(&action.user_id),
        &action.tenant,
    );
    Output {
        outcome: Outcome::DeadLettered,
        events: vec![decode::dead_letter(
            &rejection,
            pos.payload,
            pos.source,
            pos.record_time,
        )],
        rejection: Some(rejection),
        ..Output::default()
    }
}

/// History and claim outcomes from a user's new events.
fn read_models(record: &mut UserRecord, pos: &Position<'_>, event: &Event, out: &mut Output) {
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
    let seq = record.history_len;
    let at = HistoryPos {
        input: pos.mark.clone(),
        offset: pos.source.offset,
        index: u32::try_from(out.history.len()).unwrap_or(u32::MAX),
    };
    out.history.push(HistoryEntry {
        seq,
        event: event.clone(),
        place: Some(record.history_chain.push(seq, at)),
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
    if redelivered(&mut record.applied, pos) {
        return Output::skipped(Outcome::Redelivered);
    }
    let response = inventory::evaluate(&mut record.state, request, tenant);
    Output {
        responses: vec![response],
        ..Output::default()
    }
}

/// An input no state owns: a dead letter (with the record's original bytes) or a skip.
pub fn unowned(input: &Input, payload: &[u8], catalog: &Catalog, pos: &Position<'_>) -> Output {
    let mut out = match input {
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
    };
    stamp(&mut out, catalog);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::programmatic::FallbackReason;
    use rust_decimal::Decimal;

    /// The key written on the stack is the formatted one, for the longest topic names Kafka
    /// allows and the widest partitions; a longer name falls back to the formatted key.
    #[test]
    fn watermark_keys_on_the_stack_are_the_formatted_ones() {
        let longest = "t".repeat(249);
        let too_long = "é".repeat(200);
        for (topic, partition) in [
            ("actions", 0),
            ("a.b-c_d", i32::MAX),
            ("", -1),
            (longest.as_str(), i32::MIN),
            (too_long.as_str(), 7),
        ] {
            let source = SourceRef::new(topic, partition, 5);
            assert_eq!(
                with_mark(&source, str::to_string),
                format!("{topic}:{partition}")
            );
        }
        let mut applied = Watermark::new();
        let at = |offset| SourceRef::new(longest.as_str(), 3, offset);
        let mark = input_mark(&at(0));
        assert_eq!(mark, format!("{longest}:3"));
        let redelivered = |applied: &mut Watermark, source: &SourceRef| {
            let pos = Position {
                source,
                mark: &mark,
                record_time: DateTime::UNIX_EPOCH,
                payload: &[],
            };
            redelivered(applied, &pos)
        };
        assert!(!redelivered(&mut applied, &at(5)));
        assert!(redelivered(&mut applied, &at(5)));
        assert!(already_applied(&applied, &at(4)));
        assert!(!already_applied(&applied, &at(6)));
        assert!(!redelivered(&mut applied, &at(6)));
        assert_eq!(applied.get(format!("{longest}:3").as_str()), Some(&6));
        // The watermark keeps the position's mark itself: no copy of it per user.
        assert_eq!(applied.keys().next().unwrap().as_ptr(), mark.as_ptr());
    }

    /// Published events and their copies in the user's history name the same version.
    #[test]
    fn every_copy_of_an_event_names_the_catalog_version_in_force() {
        use crate::core::catalog::{CatalogHistory, CatalogVersion, SourceFile};
        let text = "[[reward_types]]\nreward_type = \"points\"\n[[triggers]]\nid = 1\nname = \"Orders\"\naggregation = \"sum\"\n[[challenges]]\nid = 1\nname = \"First\"\n[[challenges.groups]]\nid = 1\ntriggers = [{ trigger = 1, frequency = 1 }]\n[[challenges.prizes]]\nreward_type = \"points\"\namount = 5\n";
        let mut history = CatalogHistory::from_sources(&[("c.toml", text)]).unwrap();
        let at = "2026-03-01T10:00:00Z".parse().unwrap();
        for version in 1..=2 {
            history
                .apply(CatalogVersion {
                    tenant: "default".into(),
                    version,
                    effective_from: DateTime::<Utc>::UNIX_EPOCH,
                    published_at: at,
                    published_by: "test".into(),
                    files: vec![SourceFile {
                        name: "c.toml".into(),
                        text: text.into(),
                    }],
                })
                .unwrap();
        }
        let action =
            crate::core::model::Action::new("u1", crate::core::model::TriggerKey::Id(1), 3.into());
        let input = Input::Action {
            action,
            trigger_id: Some(1),
        };
        let source = SourceRef::new("t", 0, 1);
        let mark = input_mark(&source);
        let pos = Position {
            source: &source,
            mark: &mark,
            record_time: at,
            payload: &[],
        };
        let out = user(
            &mut UserRecord::default(),
            &input,
            history.at(at),
            &pos,
            None,
        );
        assert!(!out.history.is_empty() && !out.events.is_empty(), "{out:?}");
        assert!(
            out.events.iter().all(|e| e.catalog_version == 2),
            "{:?}",
            out.events
        );
        assert!(
            out.history.iter().all(|h| h.event.catalog_version == 2),
            "{:?}",
            out.history
        );
    }

    fn request() -> AmountRequest {
        AmountRequest {
            request_id: "kwegg.events:0:7#a0".into(),
            tenant: "kwegg".into(),
            user_id: "12".into(),
            event: "ORDER_PLACED".into(),
            params: Default::default(),
            occurred_at: "2026-03-01T10:00:00Z".parse().unwrap(),
            streak_completed: false,
        }
    }

    /// A user whose occurrence at kwegg.events:0:7 waits for its amount.
    fn waiting() -> UserRecord {
        let mut record = UserRecord::default();
        record.state.pending.insert(
            request().request_id,
            Pending {
                source: SourceRef::new("kwegg.events", 0, 7),
                occurred_at: request().occurred_at,
                what: PendingKind::Amount {
                    event: "ORDER_PLACED".into(),
                    answer: None,
                },
            },
        );
        record
    }

    fn at(offset: i64) -> SourceRef {
        SourceRef::new("questline.amount-requests", 0, offset)
    }

    /// The mark of [`at`]'s topic-partition.
    static AT_MARK: SmolStr = SmolStr::new_static("questline.amount-requests:0");

    fn pos(source: &SourceRef) -> Position<'_> {
        assert_eq!(input_mark(source), AT_MARK);
        Position {
            source,
            mark: &AT_MARK,
            record_time: "2026-03-01T10:00:01Z".parse().unwrap(),
            payload: &[],
        }
    }

    fn answered(points: i64) -> AmountOutcome {
        AmountOutcome::Answered {
            points: Decimal::from(points),
        }
    }

    #[test]
    fn an_open_request_is_called_once_and_its_outcome_recorded_and_sent() {
        let mut record = waiting();
        assert_eq!(amount_call(&record, &request()), AmountCall::Call);
        let first = at(1);
        let out = amount(&mut record, &request(), Some(&answered(120)), &pos(&first));
        assert_eq!(out.outcome, Outcome::Applied);
        assert_eq!(out.amount_responses, vec![request().respond(answered(120))]);
        assert_eq!(
            amount_call(&record, &request()),
            AmountCall::Recorded(answered(120))
        );
        // The same request produced again (another offset): the recorded outcome is sent
        // again, whatever a caller would say now.
        let again = at(2);
        let out = amount(&mut record, &request(), Some(&answered(999)), &pos(&again));
        assert_eq!(out.outcome, Outcome::Duplicate);
        assert_eq!(out.amount_responses, vec![request().respond(answered(120))]);
        // The same record delivered again: skipped by the watermark (the outbox re-publishes).
        let out = amount(&mut record, &request(), Some(&answered(999)), &pos(&first));
        assert_eq!(out.outcome, Outcome::Redelivered);
        assert!(out.amount_responses.is_empty());
        assert!(already_applied(&record.applied, &first));
    }

    #[test]
    fn settled_or_unknown_requests_get_no_call_and_no_answer() {
        let mut record = UserRecord::default();
        assert_eq!(amount_call(&record, &request()), AmountCall::Settled);
        let out = amount(&mut record, &request(), Some(&answered(1)), &pos(&at(1)));
        assert!(matches!(out.outcome, Outcome::Ignored(_)));
        assert!(out.amount_responses.is_empty());
        // A pending entry of another event under the id is not this request's.
        let mut other = waiting();
        let mut request = request();
        request.event = "REVIEW_WRITTEN".into();
        assert_eq!(amount_call(&other, &request), AmountCall::Settled);
        assert!(
            amount(&mut other, &request, Some(&answered(1)), &pos(&at(1)))
                .amount_responses
                .is_empty()
        );
    }

    #[test]
    fn without_an_outcome_an_open_request_stays_open() {
        // `replay --records`: the dump's response settles it, not the replay.
        let mut record = waiting();
        let out = amount(&mut record, &request(), None, &pos(&at(1)));
        assert!(matches!(out.outcome, Outcome::Ignored(_)));
        assert!(out.amount_responses.is_empty());
        assert_eq!(amount_call(&record, &request()), AmountCall::Call);
    }

    #[test]
    fn the_recorded_outcome_survives_the_store_encoding() {
        let mut record = waiting();
        let fallback = AmountOutcome::Fallback {
            points: Decimal::from(5),
            reason: FallbackReason::Timeout,
        };
        amount(&mut record, &request(), Some(&fallback), &pos(&at(1)));
        let stored: UserRecord =
            serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(
            amount_call(&stored, &request()),
            AmountCall::Recorded(fallback)
        );
        // Records written before the field existed read as undecided.
        let old = serde_json::json!({"state": {"pending": {"kwegg.events:0:7#a0": {
            "source": {"topic": "kwegg.events", "partition": 0, "offset": 7},
            "occurredAt": "2026-03-01T10:00:00Z",
            "what": {"for": "amount", "event": "ORDER_PLACED"}}}}, "applied": {}});
        let old: UserRecord = serde_json::from_value(old).unwrap();
        assert_eq!(amount_call(&old, &request()), AmountCall::Call);
    }
}
