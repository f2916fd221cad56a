//! The documented bounds of every number and name the engine accepts, in one place.
//!
//! Values from producers, amounts in the catalog and in claims, balances and counters all have
//! a ceiling well inside `rust_decimal`'s range (about 7.9 × 10^28), so no sum the engine
//! computes can overflow: inputs are checked against these bounds at the edges (mapping, HTTP,
//! catalog), and the evaluator's own arithmetic is checked and saturates at them. The numbers
//! are chosen for real programs: 10^15 points is far beyond any loyalty balance, and the
//! headroom between the bounds is what keeps every intermediate sum representable.

use chrono::Duration;
use rust_decimal::Decimal;

/// 10^15: the largest magnitude of an action's value, a prize amount, a claimed amount or
/// the points a rule pays.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// 10^18: the largest balance of one reward type. A grant that would pass it is rejected
/// (`balance_limit`), so a million maximal grants still fit.
pub const MAX_BALANCE: Decimal = Decimal::from_parts(0xA764_0000, 0x0DE0_B6B3, 0, false, 0);

/// 10^20: sum triggers stop accumulating here. A target is at most [`MAX_AMOUNT`], so a
/// saturated accumulator still meets every target and nothing is lost that could count.
pub const MAX_ACCUMULATED: Decimal = Decimal::from_parts(0x6310_0000, 0x6BC7_5E2D, 0x5, false, 0);

/// The most decimal places a value or amount may carry.
pub const MAX_SCALE: u32 = 8;

/// How many milestones of one challenge a user may hold unclaimed unless the challenge says
/// otherwise (`max_unclaimed`); completions past it are rejected until the user claims.
pub const DEFAULT_MAX_UNCLAIMED: u32 = 100;

/// The longest user id an action may carry, in bytes of UTF-8. The sidecar's queries take user
/// ids of up to 256 characters, so every user the worker accepts can be looked up.
pub const MAX_USER_ID_BYTES: usize = 256;

/// The longest action id (idempotency key), in bytes.
pub const MAX_ACTION_ID_BYTES: usize = 256;

/// The longest tenant name, in bytes.
pub const MAX_TENANT_BYTES: usize = 64;

/// The longest trigger name an action may send (and a catalog trigger `key`), in bytes.
pub const MAX_TRIGGER_NAME_BYTES: usize = 256;

/// The longest location (and a catalog trigger `location`), in bytes.
pub const MAX_LOCATION_BYTES: usize = 256;

/// The most top-level entries an action's `params` may have.
pub const MAX_PARAMS: usize = 64;

/// The largest an action's `params` may be, as compact JSON, in bytes.
pub const MAX_PARAMS_BYTES: usize = 16 * 1024;

/// The longest reason a dead letter carries, in bytes: reasons may quote the input (an unknown
/// trigger's name), and a dead letter must stay small whatever the record held.
pub const MAX_REASON_BYTES: usize = 512;

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut (the
/// ellipsis counts toward `max`, and is left out when `max` cannot hold it).
pub fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return std::borrow::Cow::Borrowed(text);
    }
    let ellipsis = if max >= ELLIPSIS.len() { ELLIPSIS } else { "" };
    let mut end = max - ellipsis.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}{ellipsis}", &text[..end]))
}

/// How far an action's `occurredAt` may lie before its record's time and still count toward a
/// challenge that has closed since, unless the tenant says otherwise (`allowed_lateness`).
pub fn default_allowed_lateness() -> Duration {
    Duration::hours(24)
}

/// How far an action's `occurredAt` may lie after its record's time (a producer's clock
/// running ahead); later ones count as happening at the record's time.
pub fn max_future_skew() -> Duration {
    Duration::minutes(5)
}

/// `a + b`, kept within `0..=MAX_ACCUMULATED` whatever the inputs (sum triggers never go
/// below zero, and a huge value cannot overflow the accumulator).
///
/// The bounds are checked on the sum's sign and mantissa rather than with `clamp`: every
/// action accumulates into each trigger it counts toward, and `Decimal`'s general comparison
/// (out of line, rescaling, reading back the sum just written) was 6.5 % of the evaluator
/// bench's samples.
///
/// Operands of one scale (every value of a trigger whose producers send one precision) are
/// added as integers and bounded in registers: through `checked_add` the sum was stored and
/// its mantissa read back in wider loads than it was written with, which the CPU cannot
/// forward from its store buffer; that one reload was 12 % of the evaluator bench's samples.
#[inline]
pub fn accumulate(a: Decimal, b: Decimal) -> Decimal {
    let scale = a.scale();
    if scale == b.scale() {
        if let Some(&max) = MAX_ACCUMULATED_AT_SCALE.get(scale as usize) {
            // Both mantissas are below 2^96, so their sum cannot overflow an i128.
            // A zero sum is left to `checked_add`, whose zero keeps an operand's sign.
            let sum = a.mantissa() + b.mantissa();
            if sum < 0 {
                return Decimal::ZERO;
            } else if sum.unsigned_abs() > max {
                return MAX_ACCUMULATED;
            } else if sum > 0 {
                return Decimal::from_i128_with_scale(sum, scale);
            }
        }
    }
    let Some(sum) = a.checked_add(b) else {
        return if b.is_sign_negative() {
            Decimal::ZERO
        } else {
            MAX_ACCUMULATED
        };
    };
    if sum.is_sign_negative() && !sum.is_zero() {
        Decimal::ZERO
    } else if above_max_accumulated(sum) {
        MAX_ACCUMULATED
    } else {
        sum
    }
}

/// `10^(20 + s)` for the scales `s` at which a mantissa (below `2^96`, ~7.9 × 10^28) can
/// still exceed [`MAX_ACCUMULATED`] (10^20): at scale 9 and above no value can.
const MAX_ACCUMULATED_AT_SCALE: [u128; 9] = {
    let mut powers = [0u128; 9];
    let mut power = 100_000_000_000_000_000_000u128;
    let mut s = 0;
    while s < 9 {
        powers[s] = power;
        power *= 10;
        s += 1;
    }
    powers
};

/// Whether a non-negative `value` is above [`MAX_ACCUMULATED`].
fn above_max_accumulated(value: Decimal) -> bool {
    MAX_ACCUMULATED_AT_SCALE
        .get(value.scale() as usize)
        .is_some_and(|&max| value.mantissa().unsigned_abs() > max)
}

/// Whether `amount` is a valid positive amount: above zero, at most [`MAX_AMOUNT`], at most
/// [`MAX_SCALE`] decimal places.
pub fn is_valid_amount(amount: Decimal) -> bool {
    amount > Decimal::ZERO && amount <= MAX_AMOUNT && amount.normalize().scale() <= MAX_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::decimal::test_decimal;
    use proptest::prelude::*;
    use std::str::FromStr;

    #[test]
    fn the_constants_are_the_documented_powers_of_ten() {
        assert_eq!(MAX_AMOUNT, Decimal::from_str("1000000000000000").unwrap());
        assert_eq!(
            MAX_BALANCE,
            Decimal::from_str("1000000000000000000").unwrap()
        );
        assert_eq!(
            MAX_ACCUMULATED,
            Decimal::from_str("100000000000000000000").unwrap()
        );
    }

    /// The table the bounds check reads is [`MAX_ACCUMULATED`] at each scale it covers, and
    /// beyond them no mantissa reaches it.
    #[test]
    fn the_bounds_table_is_the_maximum_at_each_scale() {
        for (scale, &max) in MAX_ACCUMULATED_AT_SCALE.iter().enumerate() {
            let at_scale = Decimal::from_i128_with_scale(max as i128, scale as u32);
            assert_eq!(at_scale, MAX_ACCUMULATED, "scale {scale}");
        }
        let largest_mantissa = Decimal::MAX.mantissa().unsigned_abs();
        let next = MAX_ACCUMULATED_AT_SCALE[MAX_ACCUMULATED_AT_SCALE.len() - 1] * 10;
        assert!(largest_mantissa < next);
    }

    #[test]
    fn accumulation_saturates_instead_of_overflowing() {
        assert_eq!(accumulate(Decimal::MAX, Decimal::MAX), MAX_ACCUMULATED);
        assert_eq!(accumulate(Decimal::ZERO, Decimal::MIN), Decimal::ZERO);
        assert_eq!(
            accumulate(Decimal::from(5), Decimal::from(-7)),
            Decimal::ZERO
        );
        assert_eq!(
            accumulate(Decimal::from(5), Decimal::from(7)),
            Decimal::from(12)
        );
    }

    #[test]
    fn cut_keeps_short_text_and_cuts_long_text_on_a_character_boundary() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcdef", 5), "ab…");
        // 'é' is two bytes: never split.
        let accents = "é".repeat(10);
        let cut_text = cut(&accents, 8);
        assert_eq!(cut_text, "éé…");
        assert!(cut_text.len() <= 8);
        assert_eq!(cut("abcdef", 3), "…");
        assert_eq!(cut("abcdef", 1), "a");
        assert_eq!(cut("abcdef", 0), "");
        assert!(cut(&"x".repeat(900_000), MAX_REASON_BYTES).len() <= MAX_REASON_BYTES);
    }

    #[test]
    fn amounts_are_positive_bounded_and_of_limited_scale() {
        assert!(is_valid_amount(Decimal::ONE));
        assert!(is_valid_amount(MAX_AMOUNT));
        assert!(is_valid_amount(Decimal::from_str("0.00000001").unwrap()));
        assert!(!is_valid_amount(Decimal::ZERO));
        assert!(!is_valid_amount(Decimal::from(-1)));
        assert!(!is_valid_amount(MAX_AMOUNT + Decimal::ONE));
        assert!(!is_valid_amount(Decimal::from_str("0.000000001").unwrap()));
        assert!(!is_valid_amount(Decimal::MAX));
    }

    /// Any decimal, and values within a few units of the last place of [`MAX_ACCUMULATED`]
    /// at every scale where a mantissa can reach it.
    fn decimal() -> impl Strategy<Value = Decimal> {
        let arbitrary = (any::<(u32, u32, u32, bool)>(), 0u32..=28).prop_map(
            |((lo, mid, hi, negative), scale)| Decimal::from_parts(lo, mid, hi, negative, scale),
        );
        let near_max =
            (0u32..=8, -3i128..=3, any::<bool>()).prop_map(|(scale, delta, negative)| {
                let mantissa = 10i128.pow(20 + scale) + delta;
                Decimal::from_i128_with_scale(if negative { -mantissa } else { mantissa }, scale)
            });
        prop_oneof![
            arbitrary,
            near_max,
            Just(Decimal::ZERO),
            Just(-Decimal::ZERO)
        ]
    }

    /// Two decimals of one scale (the fast path's operands): small values of either sign,
    /// pairs that cancel to zero of either sign, and values near [`MAX_ACCUMULATED`].
    fn same_scale_pair() -> impl Strategy<Value = (Decimal, Decimal)> {
        let mantissa = prop_oneof![
            -1_000_000i128..=1_000_000,
            Just(0),
            Just((1i128 << 96) - 1),
            Just(-((1i128 << 96) - 1)),
        ];
        let any_scale = (mantissa.clone(), mantissa, 0u32..=28);
        // The maximum at the pair's own scale, give or take a few units of the last place.
        let near_max = (0u32..=8, -3i128..=3, -3i128..=3)
            .prop_map(|(scale, d, b)| (10i128.pow(20 + scale) + d, b, scale));
        let operands = prop_oneof![any_scale, near_max];
        (operands, any::<bool>(), any::<bool>()).prop_map(
            |((a, b, scale), cancel, negative_zero)| {
                let b = if cancel { -a } else { b };
                (
                    test_decimal(a, scale, negative_zero),
                    test_decimal(b, scale, negative_zero),
                )
            },
        )
    }

    proptest! {
        /// The bounds checked on sign and mantissa (or, for operands of one scale, on the
        /// integer sum) give `clamp`'s result, to the bit.
        #[test]
        fn accumulation_is_the_clamped_sum(
            (a, b) in prop_oneof![(decimal(), decimal()), same_scale_pair()]
        ) {
            let sum = a.checked_add(b).unwrap_or(if b.is_sign_negative() {
                Decimal::MIN
            } else {
                Decimal::MAX
            });
            let clamped = sum.clamp(Decimal::ZERO, MAX_ACCUMULATED);
            let accumulated = accumulate(a, b);
            prop_assert_eq!(accumulated.serialize(), clamped.serialize(), "{} + {}", a, b);
        }
    }
}
