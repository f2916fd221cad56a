//! The name of the cap period an event time falls in (`2026-12-06`, `2026-W49`, `2026-12`):
//! a challenge's state keeps it to know when its per-period wins start again from zero.
//!
//! Every completion of a capped challenge asks for it, so it is written with integer
//! formatting into an inline string (smol_str's builder: no allocation): chrono's `format` parsed its
//! pattern and went through `fmt` each time, 2 % of the worker's main thread. The names are
//! stored in users' states, so they are exactly what the earlier `format("%Y-%m-%d")`,
//! `format("{}-W{:02}", …)` and `format("%Y-%m")` wrote; years outside 0–9999, which chrono
//! writes with a sign, still go through chrono.

use chrono::{DateTime, Datelike, Utc};
use smol_str::{SmolStr, SmolStrBuilder, ToSmolStr};

use crate::core::catalog::CapPeriod;

/// The cap period `at` falls in (`None` for all-time caps).
pub fn period_key(period: CapPeriod, at: DateTime<Utc>) -> Option<SmolStr> {
    let mut key = SmolStrBuilder::new();
    match period {
        CapPeriod::Total => return None,
        CapPeriod::Day => {
            if !push_year4(&mut key, at.year()) {
                return Some(at.format("%Y-%m-%d").to_smolstr());
            }
            key.push('-');
            push_pad2(&mut key, at.month());
            key.push('-');
            push_pad2(&mut key, at.day());
        }
        CapPeriod::Week => {
            // `{}` of the ISO year: no padding, a minus sign when negative.
            let week = at.iso_week();
            key.push_str(itoa::Buffer::new().format(week.year()));
            key.push_str("-W");
            push_pad2(&mut key, week.week());
        }
        CapPeriod::Month => {
            if !push_year4(&mut key, at.year()) {
                return Some(at.format("%Y-%m").to_smolstr());
            }
            key.push('-');
            push_pad2(&mut key, at.month());
        }
    }
    Some(key.finish())
}

/// A year of 0–9999 as chrono's `%Y` writes it, zero-padded to four digits; false (and
/// nothing written) for any other year.
fn push_year4(key: &mut SmolStrBuilder, year: i32) -> bool {
    match u32::try_from(year) {
        Ok(year @ 0..=9999) => {
            for place in [1000, 100, 10, 1] {
                key.push(digit(year / place));
            }
            true
        }
        _ => false,
    }
}

/// A month, a day or a week (1–53) as two digits, as `%m`, `%d` and `{:02}` write them.
fn push_pad2(key: &mut SmolStrBuilder, value: u32) {
    key.push(digit(value / 10));
    key.push(digit(value));
}

/// The last decimal digit of `value`.
fn digit(value: u32) -> char {
    char::from(b'0' + (value % 10) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    /// What the evaluator wrote before: stored states hold these names.
    fn formatted(period: CapPeriod, at: DateTime<Utc>) -> Option<String> {
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

    const PERIODS: [CapPeriod; 4] = [
        CapPeriod::Total,
        CapPeriod::Day,
        CapPeriod::Week,
        CapPeriod::Month,
    ];

    #[test]
    fn keys_name_the_day_the_iso_week_and_the_month() {
        let at = Utc.with_ymd_and_hms(2026, 12, 6, 23, 59, 59).unwrap();
        assert_eq!(period_key(CapPeriod::Total, at), None);
        assert_eq!(period_key(CapPeriod::Day, at).unwrap(), "2026-12-06");
        assert_eq!(period_key(CapPeriod::Week, at).unwrap(), "2026-W49");
        assert_eq!(period_key(CapPeriod::Month, at).unwrap(), "2026-12");
        // 1 January 2027 is in the last ISO week of 2026.
        let new_year = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(period_key(CapPeriod::Week, new_year).unwrap(), "2026-W53");
        let early = Utc.with_ymd_and_hms(7, 3, 4, 0, 0, 0).unwrap();
        assert_eq!(period_key(CapPeriod::Day, early).unwrap(), "0007-03-04");
    }

    #[test]
    fn years_chrono_writes_with_a_sign_keep_their_names() {
        for year in [-262_143, -1, 10_000, 262_142] {
            let at = Utc.with_ymd_and_hms(year, 1, 2, 3, 4, 5).unwrap();
            for period in PERIODS {
                assert_eq!(
                    period_key(period, at).map(String::from),
                    formatted(period, at),
                    "{period:?} of year {year}"
                );
            }
        }
    }

    proptest! {
        /// Any instant chrono can hold: the same names the formatted keys were.
        #[test]
        fn keys_are_the_formatted_names(
            secs in DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
            recent in 0i64..4_102_444_800,
        ) {
            for at in [secs, recent].map(|s| Utc.timestamp_opt(s, 0).unwrap()) {
                for period in PERIODS {
                    prop_assert_eq!(period_key(period, at).map(String::from), formatted(period, at));
                }
            }
        }
    }
}
