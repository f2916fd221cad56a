//! Earning rules: what one occurrence of a tenant's event pays, decided purely.
//!
//! `(event's compiled rules, the user's state for that event, params, event time, the
//! tenant's time zone) -> outcome`. Nothing here reads a clock or calls anything; the record
//! step credits what [`evaluate_occurrence`] says and, for a programmatic event, sends the
//! request that [`programmatic`] describes.
//!
//! Semantics (the catalog documentation says the same for users):
//! - the parameters are read as their declared types first ([`params`]); a missing mandatory
//!   parameter or a value of the wrong type rejects the occurrence, naming the parameter, and
//!   changes nothing;
//! - exactly one rule pays an occurrence: the first, by ascending priority, whose ANDed
//!   conditions all hold, else the default rule; a rule of 0 points pays nothing and does not
//!   count as rewarded;
//! - a cap (`once per n minutes|hours|days`) pays again only once the window has passed since
//!   the last rewarded occurrence, by event time; an occurrence dated before the last rewarded
//!   one is never paid, so no two payments are ever closer than the window;
//! - an event with a streak pays only at the streak's end, through its rules evaluated on the
//!   occurrence that ends it. Occurrences count when they meet the streak's conditions (and
//!   its cap, when it also has one). A daily streak counts days of the tenant's time zone in
//!   order: a day without `per_day` counted occurrences resets it, and after paying it starts
//!   over the next day. A streak before a deadline counts occurrences dated before it and pays
//!   once, ever;
//! - a programmatic event passes the same cap and streak checks, then asks the tenant's
//!   endpoint for the amount instead of a rule.

pub mod params;
pub mod programmatic;
pub mod state;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Map, Value};

use super::catalog::{EventRules, Priority, Rule, Test};
pub use params::{ParamError, ParamValue};
pub use state::{prune, EventRuleState, RuleStates, StreakProgress};

/// What one occurrence comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleOutcome<'c> {
    /// Credit `amount` of the event's reward type, citing the rule that paid.
    Pay(Payment<'c>),
    /// A programmatic event's occurrence is rewarded: ask the endpoint how much
    /// ([`programmatic::AmountRequest`]) and settle its answer with [`programmatic::settle`].
    Ask {
        streak_completed: bool,
    },
    NotPaid(NotPaid<'c>),
}

/// A payment, with what `reward.granted` says about its cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment<'c> {
    pub event: &'c str,
    pub reward_type: &'c str,
    /// The paying rule's name (`default`, `rule-<priority>` when unnamed; `programmatic` or
    /// `programmatic-fallback` for an endpoint's amount).
    pub rule: &'c str,
    pub priority: Priority,
    pub amount: Decimal,
    /// Paid at the end of a streak.
    pub streak_completed: bool,
}

/// Why a valid occurrence pays nothing (worth telling the user, never an error).
#[derive(Debug, Clone, PartialEq)]
pub enum NotPaid<'c> {
    /// The rule that matched pays 0 points.
    ZeroPoints { rule: &'c str, priority: Priority },
    /// Inside the cap's window; the event pays again from `until` (none: never, the window
    /// reaches past the end of representable time).
    Capped { until: Option<DateTime<Utc>> },
    /// Does not meet the streak's conditions, so it does not count toward it.
    NotCounted,
    /// Counted toward a streak that has not ended yet.
    StreakProgress(StreakProgress),
    /// Dated on a day before the streak's latest counted day: days count in order.
    LateForStreak,
    /// The deadline streak was paid already, or its deadline has passed.
    StreakOver,
    /// The event has no rules (only possible for hand-built, unvalidated rules).
    NoRule,
}

/// Evaluates one occurrence of `event` at event time `at`, updating the user's state for
/// that event. On a rejection the state is unchanged.
pub fn evaluate_occurrence<'c>(
    event: &'c EventRules,
    state: &mut EventRuleState,
    params: &Map<String, Value>,
    at: DateTime<Utc>,
    tz: Tz,
) -> Result<RuleOutcome<'c>, ParamError> {
    let values = params::read(&event.params, params)?;
    if let Some(streak) = &event.streak {
        if !all_hold(&streak.conditions, &values) {
            return Ok(RuleOutcome::NotPaid(NotPaid::NotCounted));
        }
        let day = state::local_day(at, tz);
        match state.streak_open(streak.kind, at, day) {
            Err(state::StreakClosed::Late) => {
                return Ok(RuleOutcome::NotPaid(NotPaid::LateForStreak))
            }
            Err(state::StreakClosed::Over) => return Ok(RuleOutcome::NotPaid(NotPaid::StreakOver)),
            Ok(()) => {}
        }
        if let Some(until) = state.capped_until(event.cap, at) {
            return Ok(RuleOutcome::NotPaid(NotPaid::Capped { until }));
        }
        if event.cap.is_some() {
            state.last = Some(at);
        }
        if let Some(progress) = state.advance_streak(streak.kind, day) {
            return Ok(RuleOutcome::NotPaid(NotPaid::StreakProgress(progress)));
        }
        if event.programmatic.is_some() {
            return Ok(RuleOutcome::Ask {
                streak_completed: true,
            });
        }
        return Ok(pay(event, matching_rule(event, &values), true));
    }
    if event.programmatic.is_some() {
        if let Some(until) = state.capped_until(event.cap, at) {
            return Ok(RuleOutcome::NotPaid(NotPaid::Capped { until }));
        }
        if event.cap.is_some() {
            state.last = Some(at);
        }
        return Ok(RuleOutcome::Ask {
            streak_completed: false,
        });
    }
    let rule = matching_rule(event, &values);
    if rule.is_some_and(|r| r.points > Decimal::ZERO) {
        if let Some(until) = state.capped_until(event.cap, at) {
            return Ok(RuleOutcome::NotPaid(NotPaid::Capped { until }));
        }
        if event.cap.is_some() {
            state.last = Some(at);
        }
    }
    Ok(pay(event, rule, false))
}

/// As [`evaluate_occurrence`], on the user's states of all events: an entry is kept only for
/// events with a cap or a streak, and only while it remembers something.
pub fn evaluate_for_user<'c>(
    states: &mut RuleStates,
    event: &'c EventRules,
    params: &Map<String, Value>,
    at: DateTime<Utc>,
    tz: Tz,
) -> Result<RuleOutcome<'c>, ParamError> {
    if !event.is_stateful() {
        return evaluate_occurrence(event, &mut EventRuleState::default(), params, at, tz);
    }
    if let Some(state) = states.get_mut(&event.name) {
        let outcome = evaluate_occurrence(event, state, params, at, tz);
        if state.is_empty() {
            states.remove(&event.name);
        }
        return outcome;
    }
    let mut state = EventRuleState::default();
    let outcome = evaluate_occurrence(event, &mut state, params, at, tz);
    if !state.is_empty() {
        states.insert(event.name.clone(), state);
    }
    outcome
}

/// The first rule by priority whose conditions all hold; the default rule (last) always does.
fn matching_rule<'c>(event: &'c EventRules, values: &[ParamValue]) -> Option<&'c Rule> {
    event
        .rules
        .iter()
        .find(|rule| all_hold(&rule.conditions, values))
}

fn pay<'c>(
    event: &'c EventRules,
    rule: Option<&'c Rule>,
    streak_completed: bool,
) -> RuleOutcome<'c> {
    match rule {
        None => RuleOutcome::NotPaid(NotPaid::NoRule),
        Some(rule) if rule.points <= Decimal::ZERO => RuleOutcome::NotPaid(NotPaid::ZeroPoints {
            rule: &rule.label,
            priority: rule.priority,
        }),
        Some(rule) => RuleOutcome::Pay(Payment {
            event: &event.name,
            reward_type: &event.reward_type,
            rule: &rule.label,
            priority: rule.priority,
            amount: rule.points,
            streak_completed,
        }),
    }
}

fn all_hold(conditions: &[super::catalog::Condition], values: &[ParamValue]) -> bool {
    conditions.iter().all(|c| {
        let value = values.get(c.param).unwrap_or(&ParamValue::Absent);
        holds(&c.test, value)
    })
}

fn holds(test: &Test, value: &ParamValue) -> bool {
    use ParamValue::{Bool, Number, Text};
    match (test, value) {
        (Test::IsEmpty, v) => v.is_empty(),
        (Test::IsNotEmpty, v) => !v.is_empty(),
        (Test::NumberEqual(x), Number(n)) => n == x,
        (Test::LessThan(x), Number(n)) => n < x,
        (Test::GreaterThan(x), Number(n)) => n > x,
        (Test::TextEqual(x), Text(t)) => t == x,
        (Test::Contains(x), Text(t)) => t.contains(x.as_str()),
        (Test::StartsWith(x), Text(t)) => t.starts_with(x.as_str()),
        (Test::EndsWith(x), Text(t)) => t.ends_with(x.as_str()),
        (Test::BoolEqual(x), Bool(b)) => b == x,
        _ => false,
    }
}
