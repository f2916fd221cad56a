//! Redeemable offers: what a user may spend coins on (the Kwegg API's offers).
//!
//! An offer is part of its tenant's catalog, so it changes with `questline catalog push` (or
//! any catalog version) while the sidecars run, like every other item. Redeeming one is a claim
//! of `points` of the facade's coin type (`kwegg.reward_type`); the catalog only says what an
//! offer is, and checks it here.

use rust_decimal::Decimal;
use serde::{de, Deserialize, Deserializer, Serialize};

use crate::core::limits;

/// The longest offer id: a redemption's claim id must stay within 64 characters.
pub const MAX_OFFER_ID_LEN: usize = 36;

/// One `[[offers]]` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// 1–[`MAX_OFFER_ID_LEN`] of `A-Z a-z 0-9 . _ -`, unique in the tenant: what a redemption
    /// names as `offerId`.
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub description: String,
    /// The price in coins: a whole number from 1 to the prize bound (10^15).
    #[serde(deserialize_with = "whole_points")]
    pub points: u64,
}

/// Whether an id is 1–`max` of `A-Z a-z 0-9 . _ -`.
pub fn is_plain_id(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Offer {
    /// The price as the ledger counts it.
    pub fn price(&self) -> Decimal {
        Decimal::from(self.points)
    }

    /// What is wrong with this offer on its own (uniqueness of ids is the caller's).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let id = limits::cut(&self.id, 64);
        if !is_plain_id(&self.id, MAX_OFFER_ID_LEN) {
            problems.push(format!(
                "offer '{id}': id must be 1–{MAX_OFFER_ID_LEN} characters of A-Z a-z 0-9 . _ -"
            ));
        }
        if self.title.trim().is_empty() {
            problems.push(format!("offer '{id}': title must not be blank"));
        }
        if self.points == 0 || self.price() > limits::MAX_AMOUNT {
            problems.push(format!(
                "offer '{id}': points must be from 1 to {}, got {}",
                limits::MAX_AMOUNT,
                self.points
            ));
        }
        problems
    }
}

/// `points`, refusing a fraction or a negative price with what the field wants (serde's own
/// message would only say "expected u64").
fn whole_points<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Whole;
    const WANT: &str = "points must be a whole number of coins, at least 1";
    impl de::Visitor<'_> for Whole {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a whole number of coins, at least 1")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{WANT}, got {v}")))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            Err(E::custom(format!("{WANT}, got {v}")))
        }
    }
    d.deserialize_any(Whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> Offer {
        Offer {
            id: "burger-40".into(),
            title: "40% off a burger".into(),
            brand: "Buffalo Burger".into(),
            description: String::new(),
            points: 100,
        }
    }

    #[test]
    fn ids_are_plain_and_bounded() {
        assert!(is_plain_id("burger-40", MAX_OFFER_ID_LEN));
        assert!(is_plain_id("A.b_c-9", MAX_OFFER_ID_LEN));
        assert!(is_plain_id(&"x".repeat(36), MAX_OFFER_ID_LEN));
        for bad in ["", "a b", "a/b", "é", &"x".repeat(37)] {
            assert!(!is_plain_id(bad, MAX_OFFER_ID_LEN), "{bad:?}");
        }
    }

    #[test]
    fn problems_name_the_offer_and_the_field() {
        assert!(offer().problems().is_empty());
        let bad = Offer {
            id: "a b".into(),
            title: " ".into(),
            points: 0,
            ..offer()
        };
        assert_eq!(
            bad.problems(),
            [
                "offer 'a b': id must be 1–36 characters of A-Z a-z 0-9 . _ -",
                "offer 'a b': title must not be blank",
                "offer 'a b': points must be from 1 to 1000000000000000, got 0",
            ]
        );
        let huge = Offer {
            points: 1_000_000_000_000_001,
            ..offer()
        };
        assert_eq!(huge.problems().len(), 1);
        let max = Offer {
            points: 1_000_000_000_000_000,
            ..offer()
        };
        assert!(max.problems().is_empty());
    }

    #[test]
    fn a_fractional_or_negative_price_says_what_points_wants() {
        let parse = |points: &str| {
            toml::from_str::<Offer>(&format!("id = \"x\"\ntitle = \"t\"\npoints = {points}\n"))
        };
        assert_eq!(parse("7").unwrap().points, 7);
        for bad in ["1.5", "-3", "\"100\""] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("whole number of coins"), "{bad}: {err}");
        }
    }
}
