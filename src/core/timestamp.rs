//! Instants in events, written as RFC 3339 text without going through `fmt`.
//!
//! Every event carries `occurredAt`, and chrono's `Serialize` writes it through a `Display`
//! implementation and serde's `collect_str`: a formatter per field, each digit through `fmt`,
//! the text then escaped character by character. This writes the same text into a stack buffer
//! and hands serde one string: exactly chrono's form (`SecondsFormat::AutoSi` with `Z`, the
//! fraction in 0, 3, 6 or 9 digits), checked against chrono by a property test. Instants chrono
//! writes differently (years outside 0–9999, leap seconds) are left to chrono.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serializer;

/// `#[serde(serialize_with = "...")]` for a `DateTime<Utc>`.
pub fn rfc3339<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; 30];
    match write(t, &mut buf).and_then(|text| std::str::from_utf8(text).ok()) {
        Some(text) => serializer.serialize_str(text),
        None => serde::Serialize::serialize(t, serializer),
    }
}

/// `#[serde(serialize_with = "...")]` for an `Option<DateTime<Utc>>`.
pub fn rfc3339_opt<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serializer.serialize_some(&Rfc3339(t)),
        None => serializer.serialize_none(),
    }
}

struct Rfc3339<'a>(&'a DateTime<Utc>);

impl serde::Serialize for Rfc3339<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        rfc3339(self.0, serializer)
    }
}

/// `t` as chrono writes it, in `buf`; `None` where chrono's form is not the common one. The
/// text is ASCII: bytes, so that the events' writer copies them without checking them again.
///
/// The date and time are read from the instant once, and every field has a fixed place (the
/// year has four digits here): through `DateTime`'s accessors each field converted the instant
/// to local time again, and each digit took a power of ten and a division. 840 instructions
/// an instant against 260 (callgrind, the record step bench).
pub(crate) fn write<'b>(t: &DateTime<Utc>, buf: &'b mut [u8; 30]) -> Option<&'b [u8]> {
    let naive = t.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    let year = date.year();
    let nanos = time.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    let seconds = time.num_seconds_from_midnight();
    let year = year as u32;
    two_digits(buf, 0, year / 100);
    two_digits(buf, 2, year % 100);
    buf[4] = b'-';
    two_digits(buf, 5, date.month());
    buf[7] = b'-';
    two_digits(buf, 8, date.day());
    buf[10] = b'T';
    two_digits(buf, 11, seconds / 3600);
    buf[13] = b':';
    two_digits(buf, 14, seconds / 60 % 60);
    buf[16] = b':';
    two_digits(buf, 17, seconds % 60);
    let (mut fraction, width) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    let mut len = 19;
    if width > 0 {
        buf[len] = b'.';
        for place in (len + 1..=len + width).rev() {
            buf[place] = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        len += 1 + width;
    }
    buf[len] = b'Z';
    Some(&buf[..=len])
}

/// `value` (below 100) as two digits at `at`.
fn two_digits(buf: &mut [u8; 30], at: usize, value: u32) {
    buf[at] = b'0' + (value / 10) as u8;
    buf[at + 1] = b'0' + (value % 10) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn ours(t: &DateTime<Utc>) -> String {
        let mut out = Vec::new();
        rfc3339(t, &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_chronos_forms() {
        let t = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(ours(&t), "\"2026-01-02T03:04:05Z\"");
        let ms = t + chrono::Duration::milliseconds(120);
        assert_eq!(ours(&ms), "\"2026-01-02T03:04:05.120Z\"");
        let us = t + chrono::Duration::microseconds(7);
        assert_eq!(ours(&us), "\"2026-01-02T03:04:05.000007Z\"");
        let ns = t + chrono::Duration::nanoseconds(1);
        assert_eq!(ours(&ns), "\"2026-01-02T03:04:05.000000001Z\"");
    }

    #[test]
    fn leaves_other_years_to_chrono() {
        let t = Utc.with_ymd_and_hms(12026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(ours(&t), serde_json::to_string(&t).unwrap());
        assert!(ours(&t).starts_with("\"+12026-"));
    }

    #[test]
    fn an_absent_instant_is_null() {
        let mut out = Vec::new();
        rfc3339_opt(&None, &mut serde_json::Serializer::new(&mut out)).unwrap();
        assert_eq!(out, b"null");
    }

    proptest! {
        /// The same text as chrono's own `Serialize`, for any instant it can hold, leap
        /// seconds included.
        #[test]
        fn matches_chrono(
            secs in -62_135_596_800i64..253_402_300_799 + 86_400 * 365 * 3,
            nanos in prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1_000),
                0u32..2_000_000_000,
            ],
        ) {
            if let Some(t) = DateTime::from_timestamp(secs, nanos) {
                prop_assert_eq!(ours(&t), serde_json::to_string(&t).unwrap());
                let some = Some(t);
                let mut out = Vec::new();
                rfc3339_opt(&some, &mut serde_json::Serializer::new(&mut out)).unwrap();
                prop_assert_eq!(out, serde_json::to_vec(&some).unwrap());
            }
        }
    }
}
