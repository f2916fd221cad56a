//! What a user's caps and streaks remember between occurrences of one event.
//!
//! Stored with the user's state and rewritten with every batch that touches the user, so it is
//! a handful of integers: the time of the last rewarded occurrence (capped events), the
//! streak's current day, its count that day and the consecutive days done (daily streaks), or
//! the count so far (streaks before a deadline). Zeros are left out of the stored JSON.
//! Events without a cap or a streak have no state at all.

use chrono::{DateTime, Datelike, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::core::catalog::{StreakKind, TenantCatalog};

/// One user's state for one event with a cap or a streak.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRuleState {
    /// Event time of the last rewarded occurrence (for a streak: the last counted one), in
    /// microseconds since the epoch; a capped event pays again from this plus the window.
    /// Microseconds hold every time chrono can represent, and the record step judges
    /// occurrences at microsecond precision, so the stored state is exact: a worker that
    /// reloads it decides as one that kept it in memory.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "chrono::serde::ts_microseconds_option"
    )]
    pub last: Option<DateTime<Utc>>,
    /// Daily streak: the tenant-local day (days since 0001-01-01) of the latest counted
    /// occurrence; meaningful when `today` is not 0.
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub day: i32,
    /// Daily streak: occurrences counted on `day`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub today: u32,
    /// Daily streak: consecutive complete days up to `day` (or up to the day before, while
    /// `day` is not complete).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub run: u32,
    /// Streak before a deadline: occurrences counted so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub count: u32,
    /// Streak before a deadline: paid; it never pays again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

impl EventRuleState {
    /// Nothing remembered: the user's state need not keep an entry.
    pub fn is_empty(&self) -> bool {
        *self == EventRuleState::default()
    }
}

/// A user's rule states, by event name.
pub type RuleStates = litemap::LiteMap<String, EventRuleState>;

/// Drops the states of events the catalog no longer has, or no longer caps or streaks.
pub fn prune(states: &mut RuleStates, catalog: &TenantCatalog) {
    states.retain(|name, _| catalog.event(name).is_some_and(|e| e.is_stateful()));
}

/// Where a streak stands after a counted occurrence that did not end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreakProgress {
    #[serde(rename_all = "camelCase")]
    Daily {
        today: u32,
        per_day: u32,
        days_done: u32,
        days: u32,
    },
    #[serde(rename_all = "camelCase")]
    Before { count: u32, needed: u32 },
}

/// Why a streak occurrence is not counted before the cap is even consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreakClosed {
    /// Dated on a day before the streak's latest counted day: days are counted in order.
    Late,
    /// The deadline streak was paid already, or its deadline has passed.
    Over,
}

/// The tenant-local day an instant falls on. At the very ends of representable time, where
/// the local time would fall outside it, the UTC day stands in (chrono would panic there).
pub(super) fn local_day(at: DateTime<Utc>, tz: Tz) -> i32 {
    let utc = at.naive_utc();
    let offset = tz.offset_from_utc_datetime(&utc).fix();
    utc.checked_add_offset(offset)
        .unwrap_or(utc)
        .date()
        .num_days_from_ce()
}

impl EventRuleState {
    /// When the cap pays again, if `at` is too early. An occurrence dated before the last
    /// rewarded one is always too early: payments are spaced by at least the window in event
    /// time, whatever order occurrences arrive in.
    pub(super) fn capped_until(
        &self,
        window: Option<TimeDelta>,
        at: DateTime<Utc>,
    ) -> Option<Option<DateTime<Utc>>> {
        let (window, last) = (window?, self.last?);
        let until = last.checked_add_signed(window);
        match until {
            Some(until) if at >= until => None,
            _ => Some(until),
        }
    }

    /// Whether a streak occurrence can count at all.
    pub(super) fn streak_open(
        &self,
        kind: StreakKind,
        at: DateTime<Utc>,
        day: i32,
    ) -> Result<(), StreakClosed> {
        match kind {
            StreakKind::Daily { .. } if self.today > 0 && day < self.day => Err(StreakClosed::Late),
            StreakKind::Before { before, .. } if self.done || at >= before => {
                Err(StreakClosed::Over)
            }
            _ => Ok(()),
        }
    }

    /// Counts an occurrence; `None` when it ends the streak (which then starts over, or for a
    /// deadline streak is done).
    pub(super) fn advance_streak(&mut self, kind: StreakKind, day: i32) -> Option<StreakProgress> {
        match kind {
            StreakKind::Daily { per_day, days } => {
                if self.today == 0 || day != self.day {
                    // A new day continues the run only if it follows a complete day.
                    let continues = self.today > 0
                        && self.today >= per_day
                        && Some(day) == self.day.checked_add(1);
                    if !continues {
                        self.run = 0;
                    }
                    self.day = day;
                    self.today = 0;
                }
                self.today = self.today.saturating_add(1);
                if self.today == per_day {
                    self.run = self.run.saturating_add(1);
                    if self.run >= days {
                        self.run = 0;
                        return None;
                    }
                }
                Some(StreakProgress::Daily {
                    today: self.today,
                    per_day,
                    days_done: self.run,
                    days,
                })
            }
            StreakKind::Before { count, .. } => {
                self.count = self.count.saturating_add(1);
                if self.count >= count {
                    self.count = 0;
                    self.done = true;
                    return None;
                }
                Some(StreakProgress::Before {
                    count: self.count,
                    needed: count,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_left_out_of_the_stored_form() {
        assert_eq!(
            serde_json::to_string(&EventRuleState::default()).unwrap(),
            "{}"
        );
        let state = EventRuleState {
            last: DateTime::from_timestamp_millis(1_700_000_000_123),
            day: 739_000,
            today: 2,
            run: 3,
            ..Default::default()
        };
        let written = serde_json::to_string(&state).unwrap();
        assert_eq!(
            written,
            r#"{"last":1700000000123000,"day":739000,"today":2,"run":3}"#
        );
        assert_eq!(
            serde_json::from_str::<EventRuleState>(&written).unwrap(),
            state
        );
        let done = EventRuleState {
            done: true,
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&done).unwrap(), r#"{"done":true}"#);
    }

    #[test]
    fn a_cap_window_at_the_end_of_time_blocks_instead_of_overflowing() {
        let state = EventRuleState {
            last: Some(DateTime::<Utc>::MAX_UTC),
            ..Default::default()
        };
        let blocked = state.capped_until(Some(TimeDelta::days(1)), DateTime::<Utc>::MAX_UTC);
        assert_eq!(blocked, Some(None));
    }
}

#[cfg(test)]
mod local_days {
    use super::*;

    #[test]
    fn days_are_local_and_the_ends_of_time_do_not_panic() {
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        let late_evening_utc: DateTime<Utc> = "2026-03-01T19:00:00Z".parse().unwrap();
        assert_eq!(
            local_day(late_evening_utc, kolkata),
            local_day(late_evening_utc, Tz::UTC) + 1
        );
        for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            for tz in [kolkata, Tz::Pacific__Kiritimati, Tz::America__Los_Angeles] {
                local_day(at, tz);
            }
        }
    }
}
