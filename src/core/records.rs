//! The records the record step works on and the store keeps: a user's state with its
//! watermark, an inventory resource's, and the read models the step derives (history entries,
//! claim outcomes).
//!
//! They live in the core, not the store, because deciding what they contain is engine logic:
//! the store only serializes them.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;

use super::events::Event;
use super::inventory::ResourceState;
use super::state::UserState;

/// Per input partition (`"topic:partition"`), the highest offset already applied. A record
/// at or below it is a redelivery and is skipped (docs/design.md, commit protocol step 2).
///
/// The names are `SmolStr`s: every action compares its own with its user's, so a name is the
/// partition worker's one mark for its topic-partition (`step::Position::mark`), inline up to
/// 23 bytes and one shared allocation beyond, never a heap copy of the user's own (a cold
/// line at each action). Serialized as strings.
pub type Watermark = litemap::LiteMap<SmolStr, i64>;

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
    /// Where the newest history entries are: how the embedded store finds a user's history.
    #[serde(default, skip_serializing_if = "HistoryChain::is_empty")]
    pub history_chain: HistoryChain,
}

impl UserRecord {
    /// Hints what an action of this user reads first: the record itself, its watermark's
    /// entries and the state's hot parts ([`UserState::prefetch_hot`]). The worker calls it
    /// for a record's user a few records ahead of evaluating it.
    pub fn prefetch_hot(&self) {
        super::prefetch::value(self, 8);
        if let Some((name, _)) = self.applied.first() {
            super::prefetch::value(name, 1);
        }
        self.state.prefetch_hot();
    }
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
    /// Where the embedded store files the entry and how it links to the user's older ones
    /// (the record step sets it; [`HistoryChain`] says why). Not part of the entry's JSON:
    /// entries read back from a store, and entries written without it (tools, tests), have
    /// none, and a store files those by user and sequence number.
    #[serde(skip)]
    pub place: Option<HistoryPlace>,
}

impl HistoryEntry {
    /// An entry with no [`HistoryPlace`].
    pub fn new(seq: u64, event: Event) -> Self {
        HistoryEntry {
            seq,
            event,
            place: None,
        }
    }
}

/// Where a history entry is filed: the input that caused it (its topic-partition and offset)
/// and its index among that input's history entries. Unique per entry (an input has one
/// owner, whose key the stored row's key adds), and in the order the entries were made
/// within each topic-partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPos {
    /// `topic:partition`, as in the watermark.
    pub input: SmolStr,
    pub offset: i64,
    pub index: u32,
}

impl HistoryPos {
    pub fn new(input: &str, offset: i64, index: u32) -> Self {
        HistoryPos {
            input: input.into(),
            offset,
            index,
        }
    }
}

/// A new history entry's [`HistoryPos`] and its links to older entries of the same user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPlace {
    pub at: HistoryPos,
    /// The user's previous entry (sequence number one less), if it was filed by position.
    pub prev: Option<HistoryPos>,
    /// The last entry of the block before this entry's ([`HistoryChain::BLOCK`]), if that
    /// entry was filed by position: a reader jumps back a block at a time.
    pub block: Option<HistoryPos>,
}

/// How a user's history is found when its entries are filed by position, in the order they
/// were made, rather than by user.
///
/// Why: the embedded store's B-tree rewrites every page it inserts into. Filed by (user,
/// sequence number), each checkpoint inserted a row into a page of every active user's
/// history, scattered over a table that outgrows the page cache. Filed by position (in chunks
/// of an input partition's offsets: `store::embedded::history_log`), a checkpoint's entries
/// go to the end of the table: the worker's CPU per action fell by 0.8–2.3 µs and its peak
/// memory by 34–76 MB (docs/benchmarks.md). The user's row, which every batch rewrites
/// anyway, holds the way in: the newest entry; and each entry links to the one before it and
/// to the last one of the block of [`HistoryChain::BLOCK`] entries before its own, so reaching
/// any page takes one read per block skipped and at most a block's steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryChain {
    /// The newest entry, when it was filed by position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HistoryPos>,
    /// The newest entry's block link ([`HistoryPlace::block`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block: Option<HistoryPos>,
}

impl HistoryChain {
    /// Entries per block: a reader walks at most this many links within a block.
    pub const BLOCK: u64 = 64;

    pub fn is_empty(&self) -> bool {
        self.head.is_none() && self.block.is_none()
    }

    /// Files entry `seq` (the next one: the user's history length) at `at`: its links, and
    /// the chain now ending with it.
    pub fn push(&mut self, seq: u64, at: HistoryPos) -> HistoryPlace {
        let prev = self.head.take();
        // The first entry of a block links to its predecessor, the last of the block before;
        // every other entry shares its predecessor's link.
        let block = if seq.is_multiple_of(Self::BLOCK) {
            prev.clone()
        } else {
            self.block.take()
        };
        self.head = Some(at.clone());
        self.block = block.clone();
        HistoryPlace { at, prev, block }
    }
}

/// A claim's final status, as `claim.completed` / `claim.failed` said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub claim_id: String,
    pub event: Event,
}
