//! The amount stage: asking programmatic events' endpoints what an occurrence pays, as a stage
//! of its own beside the user and inventory stages (docs/design.md, "The amount stage").
//!
//! How a call flows, and why each step is where it is:
//!
//! 1. The user stage (pure) meets an occurrence of a programmatic event: it keeps a pending
//!    entry in the user's record and emits an [`AmountRequest`] (id `<cause>#a0`), produced
//!    with the batch to the internal `questline.amount-requests` topic, keyed by user. The
//!    request is published only after the pending entry is durable (commit protocol 3–4).
//! 2. The worker consumes the request like any input (the topic is co-partitioned by user, so
//!    it reaches the partition that owns the user). Before evaluating the batch, the partition
//!    asks [`crate::core::step::amount_call`] whether the request is still open and undecided
//!    (its pending entry holds no answer yet); those are handed to an [`AmountCaller`], all of
//!    the batch's at once. The HTTP caller ([`http::HttpCaller`]) runs them concurrently under
//!    a process-wide limit, each try bounded by the event's `timeout`, retrying slow,
//!    unreachable and 5xx/429 endpoints with jittered exponential backoff, behind a circuit
//!    breaker per endpoint ([`breaker`]). It never fails: whatever goes wrong becomes the
//!    event's fallback with its reason.
//! 3. The record step ([`crate::core::step::amount`], pure) records the decided outcome in the
//!    pending entry and emits an [`AmountResponse`], produced to `questline.amount-responses`
//!    (keyed by user) with the batch: state, outbox, publish, commit, as for every record.
//! 4. The user stage consumes the response and settles it once: the pending entry goes, the
//!    amount is credited (`reward.granted`, rule `programmatic` or `programmatic-fallback`).
//!
//! **The endpoint is called once per occurrence, with one exception.** A redelivered request
//! (below the user's watermark) is skipped and the outbox re-publishes its response; a request
//! produced twice (the outbox re-published after a crash) finds the answer recorded in its
//! pending entry and is answered with it again; one that arrives after its settlement finds no
//! pending entry and is dropped. Inside one process, an outcome is also remembered across
//! retries of a failed batch (store or broker down), so those do not call again. The exception:
//! a crash or a lost partition between the call and the batch's durable write loses the
//! outcome, and the new owner calls again. Delivery to the endpoint is therefore at-least-once;
//! it receives the deterministic `requestId` (also as `Idempotency-Key`) to recognise a repeat.
//!
//! The recorded response is what replays read: `questline replay --records` settles the
//! responses of the dump and calls nothing, so it pays what the worker paid.

pub mod breaker;
pub mod http;

use async_trait::async_trait;
use rust_decimal::Decimal;

use crate::core::catalog::ProgrammaticDef;
use crate::core::rules::programmatic::{AmountOutcome, AmountRequest, FallbackReason};

/// One request to decide, with its event's endpoint as the catalog has it now (`None`: the
/// event is no longer programmatic).
#[derive(Debug, Clone)]
pub struct Call {
    pub request: AmountRequest,
    pub def: Option<ProgrammaticDef>,
}

/// Decides amount requests: the port the worker's partitions call through.
#[async_trait]
pub trait AmountCaller: Send + Sync {
    /// One outcome per call, in order: the endpoint's answer, or the fallback and why. Never
    /// fails: a failure is a fallback.
    async fn decide(&self, calls: Vec<Call>) -> Vec<AmountOutcome>;
}

/// The outcome of a call whose event is no longer programmatic: nothing to call, nothing to
/// pay (the settlement pays nothing either if the event left the catalog).
pub fn not_programmatic() -> AmountOutcome {
    AmountOutcome::Fallback {
        points: Decimal::ZERO,
        reason: FallbackReason::NotProgrammatic,
    }
}

/// A caller that never calls: every request gets its event's fallback, reason `not_called`.
/// The default of a worker built without a caller (tests and tools); `questline run` and
/// `demo` use [`http::HttpCaller`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Fallbacks;

#[async_trait]
impl AmountCaller for Fallbacks {
    async fn decide(&self, calls: Vec<Call>) -> Vec<AmountOutcome> {
        calls
            .into_iter()
            .map(|call| match call.def {
                Some(def) => AmountOutcome::Fallback {
                    points: def.fallback_points,
                    reason: FallbackReason::NotCalled,
                },
                None => not_programmatic(),
            })
            .collect()
    }
}
