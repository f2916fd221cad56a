//! The name of the cap period an event time falls in (`2026-12-06`, `2026-W49`, `2026-12`):
//! a challenge's state keeps it to know when its per-period wins start again from zero.
//!
//! Every completion of a capped challenge asks for it, so it is written with integer
//! formatting into an inline string (`SmolStr`, no allocation): chrono's `format` parsed its
//! pattern and went through `fmt` each time, 2 % of the worker's main thread. The names are
//! stored in users' states, so they are exactly what the earlier `format("%Y-%m-%d")`,
//! `format("{}-W{:02}", …)` and `format("%Y-%m")` wrote; years outside 0–9999, which chrono
//! writes with a sign, still go through chrono.

use chrono::{DateTime, Datelike, Utc};
use smol_str::{SmolStr, ToSmolStr};

use crate::core::catalog::CapPeriod;

/// The cap period `at` falls in (`None` for all-time caps).
pub fn period_key(period: CapPeriod, at: DateTime<Utc>) -> Option<SmolStr> {
    let mut key = Key::default();
    match period {
        CapPeriod::Total => return None,
        CapPeriod::Day => {
            if !key.year4(at.year()) {
                return Some(at.format("%Y-%m-%d").to_smolstr());
            }
            key.push(b"-");
            key.pad2(at.month());
            key.push(b"-");
            key.pad2(at.day());
        }
        CapPeriod::Week => {
            // `{}` of the ISO year: no padding, a minus sign when negative.
            let week = at.iso_week();
            key.push(itoa::Buffer::new().format(week.year()).as_bytes());
            key.push(b"-W");
            key.pad2(week.week());
        }
        CapPeriod::Month => {
            if !key.year4(at.year()) {
                return Some(at.format("%Y-%m").to_smolstr());
            }
            key.push(b"-");
            key.pad2(at.month());
        }
    }
    Some(SmolStr::new(key.as_str()))
}

/// A key written on the stack: at most `-262144-W52`, 11 bytes.
#[derive(Default)]
struct Key {
    bytes: [u8; 16],
    len: usize,
}

impl Key {
    fn push(&mut self, part: &[u8]) {
        let end = (self.len + part.len()).min(self.bytes.len());
        let n = end - self.len;
        self.bytes[self.len..end].copy_from_slice(&part[..n]);
        self.len = end;
    }

    /// A year of 0–9999 as chrono's `%Y` writes it, zero-padded to four digits; false (and
    /// nothing written) for any other year.
    fn year4(&mut self, year: i32) -> bool {
        let Ok(year) = u32::try_from(year) else {
            return false;
        };
        if year > 9999 {
            return false;
        }
        self.push(&[
            digit(year / 1000),
            digit(year / 100 % 10),
            digit(year / 10 % 10),
            digit(year % 10),
        ]);
        true
    }

    /// A month, a day or a week (1–53) as two digits, as `%m`, `%d` and `{:02}` write them.
    fn pad2(&mut self, value: u32) {
        self.push(&[digit(value / 10), digit(value % 10)]);
    }

    fn as_str(&self) -> &str {
        // Digits, '-' and 'W' only: always UTF-8; never a panic if that changed.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

fn digit(value: u32) -> u8 {
    b'0' + (value % 10) as u8
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
