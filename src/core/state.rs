//! Per-user state: the only thing the user-stage evaluator reads and writes.
//!
//! Kept compact on purpose (DESIGN §6: a user's hot state in ≤ 1 KiB for 10 active
//! challenges): only challenges the user has touched are present, triggers are small
//! vectors, and history lives in the store, not here.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

use super::events::{ClaimItem, PrizeInfo};
use super::model::SourceRef;

/// How many recent action ids a user remembers for deduplication. Redelivery of the same
/// Kafka record is caught by the offset watermark whatever this is; this window catches a
/// producer that sends the same `actionId` twice as two records.
pub const RECENT_ACTION_IDS: usize = 64;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub challenges: BTreeMap<u32, ChallengeState>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub balances: BTreeMap<String, Decimal>,
    /// Milestones awarded and not yet claimed (claimed ones move to history).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub milestones: Vec<Milestone>,
    /// Challenges with a claimed milestone; limited ones then leave the progress list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claimed_challenges: Vec<u32>,
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub recent_action_ids: VecDeque<String>,
    /// Inventory requests sent and not yet answered, by request id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<String, Pending>,
}

/// A user's progress on one challenge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChallengeState {
    /// One entry per trigger the user has progressed on, in the challenge's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerProgress>,
    /// Milestones achieved on this challenge, all time.
    #[serde(default)]
    pub wins: u32,
    /// Wins in the current cap period (`period` names it).
    #[serde(default)]
    pub period_wins: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(default)]
    pub status: ChallengeStatus,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengeStatus {
    /// Accepting progress.
    #[default]
    Active,
    /// Completed; waiting for the inventory stage to grant a winner slot (limited challenge).
    AwaitingSlot,
    /// Achieved and not repeatable.
    Finished,
    /// The global winners cap was reached before this user won.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerProgress {
    pub group: u32,
    pub trigger: u32,
    /// Sum triggers: the accumulated value. Match triggers: the last matching value.
    pub accumulated: Decimal,
    #[serde(default)]
    pub met: bool,
}

/// A milestone the user was awarded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Milestone {
    pub milestone_id: String,
    pub challenge_id: u32,
    pub achieved_at: DateTime<Utc>,
    pub prizes: Vec<PrizeInfo>,
}

/// An inventory request in flight, and what to do with its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The action or claim that caused the request; events from the answer cite it.
    pub source: SourceRef,
    /// Its event time: a milestone awarded on the answer is dated by the action, not the answer.
    pub occurred_at: DateTime<Utc>,
    pub what: PendingKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "for", rename_all = "snake_case")]
pub enum PendingKind {
    /// A winner slot for a limited challenge.
    WinnerSlot { challenge_id: u32 },
    /// A prize from an inventory.
    Prize {
        challenge_id: u32,
        milestone_id: String,
        reward_type: String,
        amount: Decimal,
    },
    /// A claim of an inventory-backed reward type; the balance is already reserved.
    Claim {
        claim_id: String,
        items: Vec<ClaimItem>,
    },
}

impl UserState {
    /// Remembers an action id; returns false when it was already applied.
    pub fn remember_action(&mut self, action_id: &str) -> bool {
        if self.recent_action_ids.iter().any(|seen| seen == action_id) {
            return false;
        }
        if self.recent_action_ids.len() >= RECENT_ACTION_IDS {
            self.recent_action_ids.pop_front();
        }
        self.recent_action_ids.push_back(action_id.to_string());
        true
    }

    pub fn balance(&self, reward_type: &str) -> Decimal {
        self.balances.get(reward_type).copied().unwrap_or_default()
    }

    pub fn has_achieved(&self, challenge: u32) -> bool {
        self.challenges.get(&challenge).is_some_and(|c| c.wins > 0)
    }
}

impl ChallengeState {
    pub fn trigger(&self, group: u32, trigger: u32) -> Option<&TriggerProgress> {
        self.triggers
            .iter()
            .find(|t| t.group == group && t.trigger == trigger)
    }

    pub fn trigger_mut(&mut self, group: u32, trigger: u32) -> &mut TriggerProgress {
        let i = match self
            .triggers
            .iter()
            .position(|t| t.group == group && t.trigger == trigger)
        {
            Some(i) => i,
            None => {
                self.triggers.push(TriggerProgress {
                    group,
                    trigger,
                    accumulated: Decimal::ZERO,
                    met: false,
                });
                self.triggers.len() - 1
            }
        };
        &mut self.triggers[i]
    }
}
