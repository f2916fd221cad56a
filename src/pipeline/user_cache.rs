//! The users a partition keeps in memory between batches, least recently used first out,
//! bounded by a count (`pipeline.cache_users`) and by an estimate of the memory they take
//! (the partition's share of `pipeline.cache_mb`).
//!
//! A count alone does not bound memory: a user's state grows with the challenges and rules
//! it takes part in, and a count per partition multiplies with the partitions a worker owns.
//! So each cached user is charged an estimate of its in-memory size, taken from its stored
//! row, the one size the worker computes anyway: [`MEMORY_PER_ROW_BYTE`] bytes per byte of
//! row plus [`ENTRY_OVERHEAD`] for what every user costs however small its row. A user whose row has
//! not been encoded yet (just loaded) is charged [`UNMEASURED_BYTES`] until it is.
//!
//! Eviction never drops a user the batch being evaluated needs: [`UserCache::shrink`] keeps
//! the `keep` most recent users whatever the budget says, so the cache may exceed its budget
//! by one batch's users until the next batch.
//!
//! A cached user's record lives in a [`Slot`] of its own, found by its key once per batch
//! ([`UserCache::promote`], [`UserCache::put`]): the record step then reaches it by the slot
//! for each of the user's records, instead of hashing and comparing the user's key again at
//! every use (five lookups a record before the slots).

use lru::LruCache;

use crate::core::records::UserRecord;
use crate::store::UserKey;

/// Bytes of memory per byte of a user's stored (binary) row: the decoded state's maps,
/// strings and decimals take about this much more than their compact encoding. The row
/// encodings a user keeps of its balances, milestones and pending requests (`RowCached`)
/// add at most one byte per byte of those parts, within this charge's margin: the worker's
/// peak memory did not rise beyond the noise with them (docs/benchmarks.md, A/B runs).
pub const MEMORY_PER_ROW_BYTE: usize = 4;

/// Bytes charged per cached user besides [`MEMORY_PER_ROW_BYTE`]: its key, twice (the cache's
/// node and hash entry), and the state's collections, whose first node is allocated whole
/// however few entries it holds (a B-tree leaf has room for 11). Measured on the end-to-end
/// benchmark as the worker's resident memory per cached user, allocator included: ~3.9 KiB
/// for a user with one action, whose row is a few hundred bytes. Measured while a user's
/// small maps were B-trees; since they are flat vectors a user takes less, so the charge errs
/// on the safe side (the cache keeps somewhat fewer users than its budget would hold).
pub const ENTRY_OVERHEAD: usize = 3 << 10;

/// The charge of a user whose row was not encoded yet (loaded, not yet evaluated).
pub const UNMEASURED_BYTES: usize = 4096;

struct Cached {
    record: UserRecord,
    bytes: usize,
}

/// Where a cached user's record is kept: valid from the [`UserCache::promote`] or
/// [`UserCache::put`] that returned it until the next [`UserCache::shrink`] or
/// [`UserCache::clear`], the only calls that evict. The record step holds a batch's slots
/// from its load to its end, and shrinks only when it loads the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

/// A partition's cached users, with their estimated memory.
pub struct UserCache {
    /// The cached users' slots, least recently used first out.
    order: LruCache<UserKey, Slot>,
    /// The records, by slot; an evicted user's slot holds an empty record until reused.
    slots: Vec<Cached>,
    /// Slots of evicted users, reused before the list grows.
    free: Vec<Slot>,
    /// The sum of the cached users' charges.
    bytes: usize,
    /// Most bytes the cache keeps between batches.
    budget: usize,
    /// Most users the cache keeps between batches.
    max_users: usize,
}

impl UserCache {
    /// A cache of at most `max_users` users and `budget` estimated bytes between batches.
    pub fn new(max_users: usize, budget: usize) -> Self {
        UserCache {
            order: LruCache::unbounded(),
            slots: Vec::new(),
            free: Vec::new(),
            bytes: 0,
            budget,
            max_users,
        }
    }

    /// A new share of the memory budget (the worker's partitions changed); applied at the next
    /// [`UserCache::shrink`].
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The cached users' estimated memory, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.order.clear();
        self.slots.clear();
        self.free.clear();
        self.bytes = 0;
    }

    /// Makes `key` the most recently used, if cached: its slot.
    pub fn promote(&mut self, key: &UserKey) -> Option<Slot> {
        self.order.get(key).copied()
    }

    /// Evicts the least recently used users while the cache is over its budget or its count,
    /// but never below the `keep` most recently used (the batch's own users).
    pub fn shrink(&mut self, keep: usize) {
        while self.order.len() > keep
            && (self.bytes > self.budget || self.order.len() > self.max_users)
        {
            let Some((_, slot)) = self.order.pop_lru() else {
                break;
            };
            let evicted = std::mem::take(&mut self.slots[slot.0 as usize].record);
            let bytes = std::mem::take(&mut self.slots[slot.0 as usize].bytes);
            self.bytes = self.bytes.saturating_sub(bytes);
            self.free.push(slot);
            // Freed after the slot is released: a large state's drop is the eviction's cost.
            drop(evicted);
        }
    }

    /// Caches a loaded user as the most recent, charged [`UNMEASURED_BYTES`] until measured:
    /// its slot. A user cached already keeps its slot and takes `record`.
    pub fn put(&mut self, key: UserKey, record: UserRecord) -> Slot {
        let cached = Cached {
            record,
            bytes: UNMEASURED_BYTES,
        };
        self.bytes += cached.bytes;
        if let Some(&slot) = self.order.get(&key) {
            let replaced = std::mem::replace(&mut self.slots[slot.0 as usize], cached);
            self.bytes = self.bytes.saturating_sub(replaced.bytes);
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot.0 as usize] = cached;
                slot
            }
            None => {
                let slot = Slot(u32::try_from(self.slots.len()).expect("fewer than 2^32 users"));
                self.slots.push(cached);
                slot
            }
        };
        self.order.put(key, slot);
        slot
    }

    /// The record in `slot`, without making its user the most recent: the batch's users
    /// were all made the most recent when the batch was loaded.
    pub fn record_mut(&mut self, slot: Slot) -> &mut UserRecord {
        &mut self.slots[slot.0 as usize].record
    }

    /// Hints the record in `slot` ([`UserRecord::prefetch_hot`]): the worker asks for a
    /// record's user a few records ahead.
    pub fn prefetch(&self, slot: Slot) {
        if let Some(cached) = self.slots.get(slot.0 as usize) {
            cached.record.prefetch_hot();
        }
    }

    pub fn peek(&self, key: &UserKey) -> Option<&UserRecord> {
        let slot = self.order.peek(key)?;
        Some(&self.slots[slot.0 as usize].record)
    }

    /// Charges the user in `slot` from its encoded row's length (see [`MEMORY_PER_ROW_BYTE`]).
    pub fn measured(&mut self, slot: Slot, row_bytes: usize) {
        let cached = &mut self.slots[slot.0 as usize];
        let bytes = row_bytes
            .saturating_mul(MEMORY_PER_ROW_BYTE)
            .saturating_add(ENTRY_OVERHEAD);
        self.bytes = self.bytes.saturating_sub(cached.bytes) + bytes;
        cached.bytes = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> UserKey {
        UserKey::new("t", format!("u{i}"))
    }

    #[test]
    fn the_budget_evicts_the_least_recent_users_but_never_the_batch() {
        let row = 1000;
        let charge = row * MEMORY_PER_ROW_BYTE + ENTRY_OVERHEAD;
        let mut cache = UserCache::new(1_000, 3 * charge);
        for i in 0..5 {
            let slot = cache.put(key(i), UserRecord::default());
            cache.measured(slot, row);
        }
        assert_eq!(cache.bytes(), 5 * charge);
        // A batch of users 0..4: its users stay, over the budget.
        for i in 0..4 {
            assert!(cache.promote(&key(i)).is_some());
        }
        cache.shrink(4);
        assert_eq!(cache.len(), 4);
        assert!(cache.peek(&key(4)).is_none(), "the least recent goes first");
        // The next batch, of user 3 only: back within the budget, the most recent kept.
        assert!(cache.promote(&key(3)).is_some());
        cache.shrink(1);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.bytes(), 3 * charge);
        assert!(cache.peek(&key(3)).is_some());
        assert!(
            cache.peek(&key(0)).is_none(),
            "the least recent of the rest"
        );
        assert!(cache.peek(&key(1)).is_some() && cache.peek(&key(2)).is_some());
    }

    #[test]
    fn the_count_bounds_the_cache_too_and_unmeasured_users_are_charged() {
        let mut cache = UserCache::new(2, usize::MAX);
        for i in 0..4 {
            let slot = cache.put(key(i), UserRecord::default());
            cache.record_mut(slot).history_len = i as u64;
        }
        assert_eq!(cache.bytes(), 4 * UNMEASURED_BYTES);
        cache.shrink(0);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.peek(&key(3)).map(|r| r.history_len), Some(3));
        // A smaller share of the budget applies at the next shrink.
        cache.set_budget(UNMEASURED_BYTES);
        cache.shrink(0);
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_slot_keeps_its_user_until_evicted_and_is_then_reused() {
        let mut cache = UserCache::new(2, usize::MAX);
        let zero = cache.put(key(0), UserRecord::default());
        let one = cache.put(key(1), UserRecord::default());
        assert_ne!(zero, one);
        // User 0, the least recent, is changed through its slot: it stays the least recent.
        cache.record_mut(zero).history_len = 7;
        assert_eq!(cache.peek(&key(0)).map(|r| r.history_len), Some(7));
        // Putting a cached user again keeps its slot and takes the new record.
        let again = UserRecord {
            history_len: 9,
            ..UserRecord::default()
        };
        assert_eq!(cache.put(key(1), again), one);
        assert_eq!(cache.record_mut(one).history_len, 9);
        assert_eq!(cache.bytes(), 2 * UNMEASURED_BYTES);
        // User 2 comes in as the most recent; user 0 goes, and its slot is the next one used.
        let two = cache.put(key(2), UserRecord::default());
        cache.shrink(0);
        assert_eq!(cache.len(), 2);
        assert!(cache.peek(&key(0)).is_none(), "the least recent went first");
        assert_eq!(cache.promote(&key(2)), Some(two));
        let three = cache.put(key(3), UserRecord::default());
        assert_eq!(three, zero, "the evicted user's slot is reused");
        assert_eq!(
            cache.record_mut(three).history_len,
            0,
            "and holds the new user's record"
        );
        assert_eq!(cache.peek(&key(1)).map(|r| r.history_len), Some(9));
    }
}
