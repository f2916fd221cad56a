//! The records the record step works on and the store keeps: a user's state with its
//! watermark, an inventory resource's, and the read models the step derives (history entries,
//! claim outcomes).
//!
//! They live in the core, not the store, because deciding what they contain is engine logic:
//! the store only serializes them.

use serde::{Deserialize, Serialize};

use super::events::Event;
use super::inventory::ResourceState;
use super::state::UserState;

/// Per input partition (`"topic:partition"`), the highest offset already applied. A record
/// at or below it is a redelivery and is skipped (docs/design.md, commit protocol step 2).
///
/// The names are compact strings, held inline up to 24 bytes (the usual `topic:partition`):
/// every action compares its own with its user's, and a name on the heap made that a cache
/// miss of its own, 5 % of the record step's samples (1.2 % inline). Serialized as strings.
pub type Watermark = litemap::LiteMap<compact_str::CompactString, i64>;

/// Everything stored for one user, written as one unit.
///
/// The records a user's actions produced are not here: they are in the partition's outbox
/// (`store::BatchWrite::outbox`), written in the same batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub state: UserState,
    pub applied: Watermark,
    /// Number of history entries: the next entry's sequence number.
    #[serde(default)]
    pub history_len: u64,
}

/// Everything stored for one inventory-stage resource (`tenant/reward/tshirt` …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub state: ResourceState,
    pub applied: Watermark,
}

/// One entry of a user's reward history (grants, rejections, milestones, claims).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// 0-based position in the user's history; pages are read newest (highest) first.
    pub seq: u64,
    pub event: Event,
}

/// A claim's final status, as `claim.completed` / `claim.failed` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub claim_id: String,
    pub event: Event,
}
