//! Decimal conversions at the JSON boundary.
//!
//! Values and money are `rust_decimal` end to end. JSON producers send numbers (`1000`,
//! `999.5`) or strings (`"1000.00"`); both are read exactly: a JSON number is parsed from its
//! shortest textual form, never through arithmetic on a float. On output a decimal becomes a
//! JSON number when it has at most 15 significant digits (so every JSON reader, even one that
//! parses into an IEEE double, reads back the same decimal), and a string otherwise.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;
use std::cmp::Ordering;
use std::str::FromStr;

/// Significant digits a double round-trips exactly through its shortest representation.
const EXACT_DOUBLE_DIGITS: u32 = 15;

/// A decimal given by a test or a builder as an integer, a string or a decimal.
#[derive(Debug, Clone, Copy)]
pub struct DecimalInput(pub Decimal);

impl From<i64> for DecimalInput {
    fn from(v: i64) -> Self {
        DecimalInput(Decimal::from(v))
    }
}
impl From<Decimal> for DecimalInput {
    fn from(v: Decimal) -> Self {
        DecimalInput(v)
    }
}
impl From<&str> for DecimalInput {
    fn from(v: &str) -> Self {
        DecimalInput(Decimal::from_str(v).expect("a decimal literal"))
    }
}

/// Why a JSON value is not a decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("expected a decimal number or a string holding one, found {0}")]
    WrongType(&'static str),
    #[error("'{0}' is not a decimal number")]
    Unparsable(String),
}

/// Reads a decimal from a JSON number or string, exactly.
pub fn from_json(value: &Value) -> Result<Decimal, DecimalError> {
    match value {
        Value::Number(n) => from_number(n),
        Value::String(s) => parse_text(s.trim()),
        other => Err(DecimalError::WrongType(json_type_name(other))),
    }
}

/// A JSON number as a decimal: an integer directly, any other number from the digits
/// serde_json prints for it (the shortest that read back as the same double).
pub fn from_number(n: &serde_json::Number) -> Result<Decimal, DecimalError> {
    if let Some(i) = n.as_u64() {
        return Ok(Decimal::from(i));
    }
    if let Some(i) = n.as_i64() {
        return Ok(Decimal::from(i));
    }
    parse_text(&n.to_string())
}

/// Parses `1000`, `1000.00`, `-3`, `1.5e3`; rejects anything else, including NaN and infinities.
pub fn parse_text(text: &str) -> Result<Decimal, DecimalError> {
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| DecimalError::Unparsable(truncate(text, 40)))
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        text.to_string()
    } else {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    }
}

/// The JSON type's name, for error messages.
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The JSON form of a decimal: a number when exact for every reader, else a string.
pub fn to_json(value: Decimal) -> Value {
    let normalized = value.normalize();
    if let Some(i) = json_integer(normalized) {
        return Value::from(i);
    }
    if fits_json_number(normalized) {
        if let Some(f) = normalized.to_f64() {
            if let Some(n) = serde_json::Number::from_f64(f) {
                return Value::Number(n);
            }
        }
    }
    Value::String(normalized.to_string())
}

/// The integer [`to_json`] writes for `normalized` (a normalized decimal), if it writes one:
/// a whole number every reader's double holds exactly. The events' own writer prints these
/// directly (`core::event_json`).
pub fn json_integer(normalized: Decimal) -> Option<i64> {
    // At scale 0 the mantissa is the value (and fits an `i64` when it fits a double).
    (normalized.scale() == 0 && fits_json_number(normalized)).then(|| normalized.mantissa() as i64)
}

/// Whether [`to_json`] writes `normalized` (a normalized decimal) as a number rather than a
/// string: every reader's double holds it exactly, i.e. it has at most
/// [`EXACT_DOUBLE_DIGITS`] significant digits: its mantissa is below 10^15 (a comparison, not
/// a logarithm: this runs for every decimal of every event).
fn fits_json_number(normalized: Decimal) -> bool {
    normalized.mantissa().unsigned_abs() < 10u128.pow(EXACT_DOUBLE_DIGITS)
}

/// Serializes a decimal as [`to_json`] does.
pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&to_json(*value), serializer)
}

/// `#[serde(with = "lenient")]`: accepts numbers and strings, writes as [`to_json`].
pub mod lenient {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        super::serialize(value, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        let value = Value::deserialize(deserializer)?;
        from_json(&value).map_err(serde::de::Error::custom)
    }
}

/// As [`lenient`], for optional decimals.
pub mod lenient_opt {
    use super::*;

    pub fn serialize<S: Serializer>(
        value: &Option<Decimal>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => super::serialize(v, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Decimal>, D::Error> {
        let value = Option::<Value>::deserialize(deserializer)?;
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(v) => from_json(&v).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// `a.cmp(&b)`: for two decimals of one scale, their mantissas compared in registers.
///
/// Why: `Decimal`'s comparison is out of line and takes its operands by reference, so the
/// evaluator stored each fresh sum to the stack field by field to compare it, then read it
/// back whole to emit it, a load the CPU cannot forward from its store buffer: that one reload
/// was a tenth of the evaluator bench's samples. A trigger's values and targets mostly share a
/// scale (whole numbers), so the general comparison is left to the rest.
#[inline]
pub fn compare(a: Decimal, b: Decimal) -> Ordering {
    if a.scale() == b.scale() {
        a.mantissa().cmp(&b.mantissa())
    } else {
        a.cmp(&b)
    }
}

/// What is left of `target` once `done` counts toward it: `target - done`, never below zero,
/// normalized (`10.00 - 5` leaves `5`, not `5.00`), and zero if the difference overflows.
/// Whole numbers are subtracted as integers, for the same reason as [`compare`].
#[inline]
pub fn remaining(target: Decimal, done: Decimal) -> Decimal {
    if target.scale() == 0 && done.scale() == 0 {
        // Both mantissas are below 2^96, so the difference fits an i128; a decimal holds
        // it only below 2^96 (past it the general path's subtraction overflows too).
        let left = target.mantissa() - done.mantissa();
        if left <= 0 {
            return Decimal::ZERO;
        }
        if let Ok(left) = Decimal::try_from_i128_with_scale(left, 0) {
            return left;
        }
    }
    target
        .checked_sub(done)
        .unwrap_or(Decimal::ZERO)
        .max(Decimal::ZERO)
        .normalize()
}

/// Percent of `part` in `whole`, truncated (never rounded up) to two decimals and clamped to
/// 0–100, so 999.999 of 1000 shows 99.99 % and never a premature 100 %.
pub fn percent(part: Decimal, whole: Decimal) -> Decimal {
    // Signs and zeros read directly: `Decimal`'s comparison is out of line (see `compare`).
    if whole.is_sign_negative() || whole.is_zero() {
        return if part.is_sign_positive() && !part.is_zero() {
            Decimal::ONE_HUNDRED
        } else {
            Decimal::ZERO
        };
    }
    if let Some(exact) = percent_exactly(part, whole) {
        return exact;
    }
    let ratio = part
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|p| p.checked_div(whole))
        .unwrap_or(Decimal::ONE_HUNDRED);
    ratio
        .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
        .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero)
        .normalize()
}

/// The largest `whole`, as an integer over `part`'s and its own scale, that
/// [`percent_exactly`] takes.
const EXACT_PERCENT_MAX_DENOMINATOR: u128 = 10u128.pow(20);

/// `10^i` for every `i` that fits in a `u64`.
const POWERS_OF_TEN: [u64; 20] = {
    let mut powers = [1u64; 20];
    let mut i = 1;
    while i < powers.len() {
        powers[i] = powers[i - 1] * 10;
        i += 1;
    }
    powers
};

/// [`percent`] in integer arithmetic, for a non-negative `part` and a positive `whole` of
/// ordinary size; `None` sends the caller to the general decimal path.
///
/// Why: the general path (a 96-bit multiply, a 96-bit division to 28 digits, a rounding and a
/// normalization) was a tenth of the evaluator's time, once per progress event; this is two
/// widening multiplications and usually one 64-bit division.
///
/// Why it is the same number: with `part = p / 10^sp` and `whole = w / 10^sw`, the percent in
/// hundredths is `floor(N / D)` with `N = p * 10^(sw + 4)` and `D = w * 10^sp`. The general
/// path computes `part * 100` exactly (`p < 2^64`, so `p * 100` fits in a decimal's 96 bits),
/// then the quotient rounded at its 26th decimal or finer (a quotient below 100 keeps at least
/// 26 decimals in 96 bits). A true quotient that is not a whole number of hundredths lies at
/// least `1 / (100 * D) >= 10^-22` away from the nearest hundredth, so that rounding cannot
/// carry it across one, and truncating to two decimals gives `floor(N / D)` hundredths in both.
/// Above 100 both clamp to 100. Tested against the general path in `percent_paths_agree`.
fn percent_exactly(part: Decimal, whole: Decimal) -> Option<Decimal> {
    if part.is_sign_negative() || whole.is_sign_negative() {
        return None;
    }
    let p = u64::try_from(part.mantissa()).ok()?;
    let w = u64::try_from(whole.mantissa()).ok().filter(|&w| w > 0)?;
    let whole_scale = *POWERS_OF_TEN.get(whole.scale() as usize + 4)?;
    let part_scale = *POWERS_OF_TEN.get(part.scale() as usize)?;
    let numerator = u128::from(p) * u128::from(whole_scale);
    let denominator = u128::from(w) * u128::from(part_scale);
    if denominator > EXACT_PERCENT_MAX_DENOMINATOR {
        return None;
    }
    let hundredths = match (u64::try_from(numerator), u64::try_from(denominator)) {
        (Ok(n), Ok(d)) => u128::from(n / d),
        _ => numerator / denominator,
    };
    Some(normalized_hundredths(hundredths.min(10_000) as u16))
}

/// `hundredths / 100` without trailing zeros, as [`Decimal::normalize`] leaves it (but without
/// its 96-bit divisions).
fn normalized_hundredths(hundredths: u16) -> Decimal {
    let h = i64::from(hundredths);
    if h % 100 == 0 {
        Decimal::from(h / 100)
    } else if h % 10 == 0 {
        Decimal::new(h / 10, 1)
    } else {
        Decimal::new(h, 2)
    }
}

/// A test's decimal: `mantissa` at `scale`, and a zero negative if `negative_zero` (the sign
/// `rust_decimal` keeps on a zero, which the integer fast paths must reproduce).
#[cfg(test)]
pub(crate) fn test_decimal(mantissa: i128, scale: u32, negative_zero: bool) -> Decimal {
    let mut d = Decimal::from_i128_with_scale(mantissa, scale);
    if mantissa == 0 && negative_zero {
        d.set_sign_negative(true);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_numbers_and_strings_exactly() {
        assert_eq!(from_json(&json!(1000)).unwrap(), Decimal::from(1000));
        assert_eq!(from_json(&json!("1000.00")).unwrap(), Decimal::from(1000));
        assert_eq!(
            from_json(&json!(999.5)).unwrap(),
            Decimal::from_str("999.5").unwrap()
        );
        assert_eq!(
            from_json(&json!(0.1)).unwrap(),
            Decimal::from_str("0.1").unwrap()
        );
        assert_eq!(from_json(&json!("1.5e3")).unwrap(), Decimal::from(1500));
        assert_eq!(from_json(&json!(-3)).unwrap(), Decimal::from(-3));
    }

    #[test]
    fn rejects_non_numbers_naming_the_type() {
        assert_eq!(
            from_json(&json!(true)),
            Err(DecimalError::WrongType("a boolean"))
        );
        assert!(matches!(
            from_json(&json!("ten")),
            Err(DecimalError::Unparsable(_))
        ));
        assert!(matches!(
            from_json(&json!("NaN")),
            Err(DecimalError::Unparsable(_))
        ));
    }

    #[test]
    fn writes_numbers_when_exact_and_strings_otherwise() {
        assert_eq!(to_json(Decimal::from(1000)), json!(1000));
        assert_eq!(to_json(Decimal::from_str("99.95").unwrap()), json!(99.95));
        assert_eq!(to_json(Decimal::from_str("1000.00").unwrap()), json!(1000));
        let long = Decimal::from_str("1234567890.1234567890").unwrap();
        assert_eq!(to_json(long), json!("1234567890.123456789"));
    }

    #[test]
    fn percent_truncates_and_clamps() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(percent(d("999.5"), d("1000")), d("99.95"));
        assert_eq!(percent(d("999.999"), d("1000")), d("99.99"));
        assert_eq!(percent(d("1"), d("3")), d("33.33"));
        assert_eq!(percent(d("2000"), d("1000")), d("100"));
        assert_eq!(percent(d("-5"), d("1000")), d("0"));
    }

    /// The general decimal path of [`percent`], as it was before [`percent_exactly`].
    fn percent_in_decimals(part: Decimal, whole: Decimal) -> Decimal {
        part.checked_mul(Decimal::ONE_HUNDRED)
            .and_then(|p| p.checked_div(whole))
            .unwrap_or(Decimal::ONE_HUNDRED)
            .clamp(Decimal::ZERO, Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::ToZero)
            .normalize()
    }

    fn assert_same_percent(part: Decimal, whole: Decimal) {
        let general = percent_in_decimals(part, whole);
        let got = percent(part, whole);
        // The whole representation (sign, scale, mantissa), not just the value.
        assert_eq!(
            got.serialize(),
            general.serialize(),
            "percent({part}, {whole}) = {got}, not {general}"
        );
    }

    #[test]
    fn percent_paths_agree_at_the_edges() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        for (part, whole) in [
            ("0", "1"),
            ("0.000", "7"),
            ("1", "3"),
            ("2", "3"),
            ("999.999", "1000"),
            ("99999999999999999999", "100000000000000000000"),
            ("1", "100000000000000000000"),
            ("1", "99999999999999999999"),
            ("0.0000000000000000000000000001", "3"),
            ("79228162514264337593543950335", "1"),
            (
                "792281625142643375935439503.35",
                "7.9228162514264337593543950335",
            ),
            // At the integer path's bounds: D = 10^20, p just below 2^64, the largest scales.
            ("1.0000000000000000000", "10"),
            ("0.9999999999999999999", "1"),
            ("18446744073709551615", "18446744073709551616"),
            ("18446744073709551614", "18446744073709551615"),
            ("1", "0.000000000000001"),
            ("2", "3.000000000000000"),
            ("123.456", "0.001"),
            ("1234.567", "1234.567"),
            ("1234.566", "1234.567"),
        ] {
            assert_same_percent(d(part), d(whole));
        }
        // The bounds above are inside the integer path, and just past them is not.
        assert!(percent_exactly(d("1.0000000000000000000"), d("10")).is_some());
        assert!(percent_exactly(d("1"), d("0.000000000000001")).is_some());
        assert!(percent_exactly(d("1.0000000000000000000"), d("10.1")).is_none());
        assert!(percent_exactly(d("1"), d("0.0000000000000001")).is_none());
        assert!(percent_exactly(d("18446744073709551616"), d("1")).is_none());
    }

    /// Decimals of one scale or of two, small or near the 96-bit limit, zeros of either sign.
    fn decimal_pair() -> impl proptest::strategy::Strategy<Value = (Decimal, Decimal)> {
        use proptest::prelude::*;
        let mantissa = prop_oneof![
            -1_000i128..=1_000,
            any::<i64>().prop_map(i128::from),
            Just((1i128 << 96) - 1),
            Just(-((1i128 << 96) - 1)),
            Just(0),
        ];
        let scale = prop_oneof![Just(0u32), 0u32..=28];
        (
            mantissa.clone(),
            mantissa,
            scale.clone(),
            scale,
            any::<(bool, bool)>(),
        )
            .prop_map(|(a, b, sa, sb, (negative_zero_a, negative_zero_b))| {
                (
                    test_decimal(a, sa, negative_zero_a),
                    test_decimal(b, sb, negative_zero_b),
                )
            })
    }

    proptest::proptest! {
        /// The comparison of one scale's mantissas is `Decimal`'s own.
        #[test]
        fn compare_is_decimal_ordering((a, b) in decimal_pair()) {
            proptest::prop_assert_eq!(compare(a, b), a.cmp(&b), "{} vs {}", a, b);
        }

        /// What is left is the general formula's result, to the bit.
        #[test]
        fn remaining_is_the_clamped_normalized_difference((a, b) in decimal_pair()) {
            let general = a
                .checked_sub(b)
                .unwrap_or(Decimal::ZERO)
                .max(Decimal::ZERO)
                .normalize();
            proptest::prop_assert_eq!(
                remaining(a, b).serialize(),
                general.serialize(),
                "{} - {}",
                a,
                b
            );
        }

        #[test]
        fn percent_paths_agree(
            p in 0i64..=i64::MAX,
            sp in 0u32..=28,
            w in 1i64..=i64::MAX,
            sw in 0u32..=28,
            shrink in 0u32..19,
        ) {
            // Small mantissas too, and exact multiples of a hundredth of the whole.
            let w = (w / 10i64.pow(shrink)).max(1);
            let whole = Decimal::new(w, sw);
            assert_same_percent(Decimal::new(p / 10i64.pow(shrink), sp), whole);
            if let Some(exact) = whole.checked_mul(Decimal::new(p % 10_001, 4)) {
                assert_same_percent(exact, whole);
                if let Some(below) = exact.checked_sub(Decimal::new(1, 28)) {
                    assert_same_percent(below.max(Decimal::ZERO), whole);
                }
            }
        }
    }
}
