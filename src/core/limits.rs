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
pub fn accumulate(a: Decimal, b: Decimal) -> Decimal {
    let sum = a.checked_add(b).unwrap_or(if b.is_sign_negative() {
        Decimal::MIN
    } else {
        Decimal::MAX
    });
    sum.clamp(Decimal::ZERO, MAX_ACCUMULATED)
}

/// Whether `amount` is a valid positive amount: above zero, at most [`MAX_AMOUNT`], at most
/// [`MAX_SCALE`] decimal places.
pub fn is_valid_amount(amount: Decimal) -> bool {
    amount > Decimal::ZERO && amount <= MAX_AMOUNT && amount.normalize().scale() <= MAX_SCALE
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
