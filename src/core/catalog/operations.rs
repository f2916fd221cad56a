//! Rokwire's operations: what a service (a building block) may grant, and how much.
//!
//! An operation names a reward type and an amount under a `code`; only the service named in
//! its `building_block` may grant it (`POST /int/reward`, where the authenticated client id is
//! the service id). The grant itself goes through the same ledger as challenge prizes: the
//! catalog only says what an operation is, and checks it here like every other item.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

use crate::core::limits;

/// The longest operation code or building block id, in bytes (client ids and codes are
/// echoed in every event of a grant, so they are bounded like trigger keys).
pub const MAX_OPERATION_NAME_BYTES: usize = 256;

/// One `[[operations]]` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// Unique per tenant; what a service sends as `code`.
    pub code: String,
    /// The service id (an `http.auth.clients` id) that alone may grant it.
    pub building_block: String,
    pub reward_type: String,
    /// Units granted each time; a positive integer, at most the prize bound (10^15).
    pub amount: u64,
    #[serde(default)]
    pub description: String,
    /// Set by whoever manages the catalog (the admin API); derived from tenant and code when
    /// absent ([`Operation::id_in`]).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub date_created: Option<DateTime<Utc>>,
    #[serde(default)]
    pub date_updated: Option<DateTime<Utc>>,
}

impl Operation {
    /// The operation's id: the catalog's, else the v5 UUID of its tenant and code, so the same
    /// operation has the same id in every process and across restarts.
    pub fn id_in(&self, tenant: &str) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| crate::core::ids::operation_id(tenant, &self.code))
    }

    /// The amount as the ledger counts it.
    pub fn units(&self) -> Decimal {
        Decimal::from(self.amount)
    }

    /// What is wrong with this operation on its own (uniqueness of codes is the caller's).
    pub fn problems(&self, reward_types: &HashSet<String>) -> Vec<String> {
        let mut problems = Vec::new();
        let code = &self.code;
        for (field, value) in [("code", code), ("building_block", &self.building_block)] {
            if value.trim().is_empty() {
                problems.push(format!("operation '{code}': {field} must not be blank"));
            } else if value.trim() != value {
                problems.push(format!(
                    "operation '{code}': {field} must not start or end with whitespace"
                ));
            } else if value.len() > MAX_OPERATION_NAME_BYTES {
                problems.push(format!(
                    "operation '{}': {field} must be at most {MAX_OPERATION_NAME_BYTES} bytes",
                    limits::cut(code, 64)
                ));
            }
        }
        if !reward_types.contains(&self.reward_type) {
            problems.push(format!(
                "operation '{code}': unknown reward_type '{}'",
                self.reward_type
            ));
        }
        if self.amount == 0 || self.units() > limits::MAX_AMOUNT {
            problems.push(format!(
                "operation '{code}': amount must be greater than 0 and at most {}",
                limits::MAX_AMOUNT
            ));
        }
        if self.id.as_ref().is_some_and(|id| id.trim().is_empty()) {
            problems.push(format!("operation '{code}': id must not be blank"));
        }
        if let (Some(created), Some(updated)) = (self.date_created, self.date_updated) {
            if updated < created {
                problems.push(format!(
                    "operation '{code}': date_updated must not be before date_created"
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operation {
        Operation {
            code: "10_posts".into(),
            building_block: "groups".into(),
            reward_type: "tshirt".into(),
            amount: 1,
            description: "Make 10 posts in a group".into(),
            id: None,
            date_created: None,
            date_updated: None,
        }
    }

    #[test]
    fn the_derived_id_is_stable_and_per_tenant() {
        let a = op().id_in("default");
        assert_eq!(a, op().id_in("default"));
        assert_ne!(a, op().id_in("other"));
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 5);
        let given = Operation {
            id: Some("52338e08".into()),
            ..op()
        };
        assert_eq!(given.id_in("default"), "52338e08");
    }

    #[test]
    fn problems_name_the_operation_and_the_field() {
        let types: HashSet<String> = ["tshirt".to_string()].into();
        assert!(op().problems(&types).is_empty());
        let bad = Operation {
            building_block: " ".into(),
            reward_type: "gold".into(),
            amount: 0,
            ..op()
        };
        assert_eq!(
            bad.problems(&types),
            [
                "operation '10_posts': building_block must not be blank",
                "operation '10_posts': unknown reward_type 'gold'",
                "operation '10_posts': amount must be greater than 0 and at most 1000000000000000",
            ]
        );
        let huge = Operation {
            amount: 1_000_000_000_000_001,
            ..op()
        };
        assert_eq!(huge.problems(&types).len(), 1);
    }
}
