//! Output events: what downstream services consume, one JSON object per Kafka record.
//!
//! The envelope is common to every type; the body is tagged by `type`. Field names and
//! meanings are the product contract (docs/events.md) and each type has a JSON
//! Schema in `schemas/`. Events are also what the outbox stores, so they round-trip through
//! serde exactly.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use super::catalog::Priority;
use super::model::SourceRef;

/// One output event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Deterministic: derived from the source and the effect's position, so a replay or a
    /// re-publish after a crash carries the same id and consumers can deduplicate.
    pub event_id: super::ids::EventId,
    #[serde(flatten)]
    pub body: EventBody,
    /// Cloned for each event of an input: inline up to 23 bytes (`SmolStr`), shared beyond.
    /// Owned copies were two allocations per event; shared ones (`Arc<str>`) three atomic
    /// increments per event with the source's topic, 5 % of the evaluator bench's samples.
    pub tenant: SmolStr,
    pub user_id: SmolStr,
    #[serde(serialize_with = "super::timestamp::rfc3339")]
    pub occurred_at: DateTime<Utc>,
    pub source: SourceRef,
    /// The version of the tenant's catalog that produced the event (0: the files the workers
    /// started with); see `questline catalog`.
    #[serde(default)]
    pub catalog_version: u64,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }

    /// Progress goes to the progress topic, dead letters to theirs, everything else to rewards.
    pub fn stream(&self) -> Stream {
        match self.body {
            EventBody::ProgressUpdated { .. } => Stream::Progress,
            EventBody::DeadLetter { .. } => Stream::DeadLetter,
            _ => Stream::Rewards,
        }
    }
}

/// Which output topic an event belongs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Progress,
    Rewards,
    DeadLetter,
}

/// A prize as the progress query and `milestone.achieved` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrizeInfo {
    /// Points amount or voucher code; a code arrives once the inventory stage drew one.
    pub value: Option<String>,
    #[serde(serialize_with = "super::timestamp::rfc3339_opt")]
    pub expiration_date: Option<DateTime<Utc>>,
    pub description: String,
    pub reward_type: String,
}

/// Why a reward was granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum GrantReason {
    #[serde(rename_all = "camelCase")]
    Milestone {
        challenge_id: u32,
        milestone_id: String,
    },
    /// An earning rule paid an occurrence of `event`: `rule` is the rule's name (`default`,
    /// `rule-<priority>` when unnamed, `programmatic` or `programmatic-fallback`).
    #[serde(rename_all = "camelCase")]
    Rule {
        event: String,
        rule: String,
        priority: Priority,
    },
    /// A service granted an operation (`POST /int/reward`). Every field but `code` was added
    /// later: events written before carry only the code.
    #[serde(rename_all = "camelCase")]
    Operation {
        code: String,
        #[serde(default)]
        building_block: String,
        /// The operation's amount (a voucher grant is one code).
        #[serde(default, with = "super::decimal::lenient")]
        amount: Decimal,
        /// The request's description, else the operation's.
        #[serde(default)]
        description: String,
        /// The grant's idempotency id: a retry with it grants nothing more.
        #[serde(default)]
        grant_id: String,
    },
}

/// The operation a rejected grant was for (`reward.rejected` of `POST /int/reward`): the same
/// fields as the operation reason of `reward.granted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationRef {
    pub code: String,
    pub building_block: String,
    #[serde(with = "super::decimal::lenient")]
    pub amount: Decimal,
    pub description: String,
    pub grant_id: String,
}

impl OperationRef {
    /// The operation reason of a grant of it.
    pub fn reason(&self) -> GrantReason {
        GrantReason::Operation {
            code: self.code.clone(),
            building_block: self.building_block.clone(),
            amount: self.amount,
            description: self.description.clone(),
            grant_id: self.grant_id.clone(),
        }
    }
}

/// Why a reward was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The inventory is out of stock and does not grant when depleted.
    Depleted,
    /// The user reached the challenge's per-user cap.
    Capped,
    /// The reward type is inactive.
    Inactive,
    /// The challenge's global winners cap was reached.
    Limit,
    /// The grant would take the user's balance past its documented maximum.
    BalanceLimit,
    /// The user holds the challenge's maximum of unclaimed milestones: claim some first.
    UnclaimedLimit,
}

impl RejectReason {
    /// The reason as it is written in events (`depleted`, `balance_limit` …).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Depleted => "depleted",
            RejectReason::Capped => "capped",
            RejectReason::Inactive => "inactive",
            RejectReason::Limit => "limit",
            RejectReason::BalanceLimit => "balance_limit",
            RejectReason::UnclaimedLimit => "unclaimed_limit",
        }
    }
}

/// One line of a claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimItem {
    pub reward_type: String,
    #[serde(with = "super::decimal::lenient")]
    pub amount: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "progress.updated", rename_all = "camelCase")]
    ProgressUpdated {
        challenge_id: u32,
        group_id: u32,
        trigger_id: u32,
        #[serde(with = "super::decimal::lenient")]
        trigger_frequency: Decimal,
        #[serde(with = "super::decimal::lenient")]
        accumulated: Decimal,
        #[serde(with = "super::decimal::lenient")]
        action_left: Decimal,
        #[serde(with = "super::decimal::lenient")]
        progress: Decimal,
    },
    #[serde(rename = "milestone.achieved", rename_all = "camelCase")]
    MilestoneAchieved {
        challenge_id: u32,
        milestone_id: String,
        prizes: Vec<PrizeInfo>,
    },
    #[serde(rename = "reward.granted", rename_all = "camelCase")]
    RewardGranted {
        reward_type: String,
        #[serde(
            default,
            with = "super::decimal::lenient_opt",
            skip_serializing_if = "Option::is_none"
        )]
        amount: Option<Decimal>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        reason: GrantReason,
        #[serde(with = "super::decimal::lenient")]
        balance: Decimal,
    },
    #[serde(rename = "reward.rejected", rename_all = "camelCase")]
    RewardRejected {
        reward_type: String,
        reason: RejectReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        challenge_id: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        milestone_id: Option<String>,
        /// The operation of a service's grant that was refused (`POST /int/reward`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operation: Option<Box<OperationRef>>,
    },
    /// An unclaimed prize passed its expiration date: it left the user's milestones and, when
    /// it had been counted in a balance, its amount left the balance.
    #[serde(rename = "reward.expired", rename_all = "camelCase")]
    RewardExpired {
        reward_type: String,
        #[serde(
            default,
            with = "super::decimal::lenient_opt",
            skip_serializing_if = "Option::is_none"
        )]
        amount: Option<Decimal>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        challenge_id: u32,
        milestone_id: String,
        #[serde(serialize_with = "super::timestamp::rfc3339")]
        expiration_date: DateTime<Utc>,
        #[serde(with = "super::decimal::lenient")]
        balance: Decimal,
    },
    #[serde(rename = "claim.completed", rename_all = "camelCase")]
    ClaimCompleted {
        claim_id: String,
        items: Vec<ClaimItem>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    #[serde(rename = "claim.failed", rename_all = "camelCase")]
    ClaimFailed {
        claim_id: String,
        items: Vec<ClaimItem>,
        reason: String,
    },
    #[serde(rename = "dead_letter", rename_all = "camelCase")]
    DeadLetter {
        reason: String,
        /// The seed-style numbered error, when the mapping declares one (KickApps' 13 …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_code: Option<i32>,
        /// The field at fault, when one is.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        /// The original record: as text when it is UTF-8, else base64; cut to
        /// [`MAX_ORIGINAL_BYTES`] so the dead letter itself always fits in a Kafka record.
        original: String,
        encoding: OriginalEncoding,
        /// The original's full size when `original` was cut.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        truncated_from: Option<usize>,
        /// When the record at fault is one of questline's own outputs, refused by the broker
        /// for its size: what it was (`original` then holds the start of its value). Boxed:
        /// rare, and every event would otherwise carry its size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<RefusedOutput>>,
    },
}

/// An output record the broker refused as too large, which a dead letter stands in for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedOutput {
    /// The topic it was meant for.
    pub topic: String,
    /// Its record key.
    pub key: String,
    /// Its event type, when it is an event (not an internal inventory record).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its event id, when it is an event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Its size in bytes: key, value and headers.
    pub bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OriginalEncoding {
    Utf8,
    Base64,
}

impl EventBody {
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::ProgressUpdated { .. } => "progress.updated",
            EventBody::MilestoneAchieved { .. } => "milestone.achieved",
            EventBody::RewardGranted { .. } => "reward.granted",
            EventBody::RewardRejected { .. } => "reward.rejected",
            EventBody::RewardExpired { .. } => "reward.expired",
            EventBody::ClaimCompleted { .. } => "claim.completed",
            EventBody::ClaimFailed { .. } => "claim.failed",
            EventBody::DeadLetter { .. } => "dead_letter",
        }
    }
}

/// The most of a bad record's bytes a dead letter carries (librdkafka's default maximum
/// message is 1 MB; a 2 MB poison record must not make its own dead letter unpublishable).
pub const MAX_ORIGINAL_BYTES: usize = 256 * 1024;

/// Keeps the original bytes of a bad record: text when it is UTF-8, base64 otherwise, cut to
/// [`MAX_ORIGINAL_BYTES`] (the third value is the full size when cut).
pub fn encode_original(bytes: &[u8]) -> (String, OriginalEncoding, Option<usize>) {
    encode_prefix(bytes, MAX_ORIGINAL_BYTES)
}

/// Like [`encode_original`], cut to `max` bytes.
pub fn encode_prefix(bytes: &[u8], max: usize) -> (String, OriginalEncoding, Option<usize>) {
    if bytes.len() > max {
        let mut end = max;
        // Cut on a character boundary when the record is text.
        if std::str::from_utf8(bytes).is_ok() {
            while std::str::from_utf8(&bytes[..end]).is_err() {
                end -= 1;
            }
        }
        let (text, encoding) = encode_whole(&bytes[..end]);
        return (text, encoding, Some(bytes.len()));
    }
    let (text, encoding) = encode_whole(bytes);
    (text, encoding, None)
}

fn encode_whole(bytes: &[u8]) -> (String, OriginalEncoding) {
    use base64::Engine as _;
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), OriginalEncoding::Utf8),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            OriginalEncoding::Base64,
        ),
    }
}
