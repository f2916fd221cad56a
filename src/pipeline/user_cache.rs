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

/// A partition's cached users, with their estimated memory.
pub struct UserCache {
    users: LruCache<UserKey, Cached>,
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
            users: LruCache::unbounded(),
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
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The cached users' estimated memory, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.users.clear();
        self.bytes = 0;
    }

    /// Makes `key` the most recently used, if cached; whether it is.
    pub fn promote(&mut self, key: &UserKey) -> bool {
        self.users.get(key).is_some()
    }

    /// Evicts the least recently used users while the cache is over its budget or its count,
    /// but never below the `keep` most recently used (the batch's own users).
    pub fn shrink(&mut self, keep: usize) {
        while self.users.len() > keep
            && (self.bytes > self.budget || self.users.len() > self.max_users)
        {
            match self.users.pop_lru() {
                Some((_, evicted)) => self.bytes = self.bytes.saturating_sub(evicted.bytes),
                None => break,
            }
        }
    }

    /// Caches a loaded user as the most recent, charged [`UNMEASURED_BYTES`] until measured.
    pub fn put(&mut self, key: UserKey, record: UserRecord) {
        let cached = Cached {
            record,
            bytes: UNMEASURED_BYTES,
        };
        self.bytes += cached.bytes;
        if let Some(replaced) = self.users.put(key, cached) {
            self.bytes = self.bytes.saturating_sub(replaced.bytes);
        }
    }

    /// The cached record of `key`; an empty one, charged [`UNMEASURED_BYTES`] and made the
    /// most recent, if it is not cached. Borrows the key: it is copied only for a user not
    /// cached yet (this runs for every record).
    ///
    /// A cached user keeps its place: the batch's users were all made the most recent when
    /// the batch was loaded ([`UserCache::promote`]), and moving one again would only reorder
    /// the batch's own users, at the cost of rewriting its neighbours' links (two more cold
    /// cache lines per record).
    pub fn get_or_insert_mut(&mut self, key: &UserKey) -> &mut UserRecord {
        if !self.users.contains(key) {
            self.put(key.clone(), UserRecord::default());
        }
        &mut self
            .users
            .peek_mut(key)
            .expect("cached or just inserted")
            .record
    }

    /// Hints the cached record of `key` ([`UserRecord::prefetch_hot`]), without making it
    /// the most recent: the worker asks for a record's user a few records ahead.
    pub fn prefetch(&self, key: &UserKey) {
        if let Some(cached) = self.users.peek(key) {
            cached.record.prefetch_hot();
        }
    }

    pub fn peek(&self, key: &UserKey) -> Option<&UserRecord> {
        self.users.peek(key).map(|cached| &cached.record)
    }

    /// Charges a cached user from its encoded row's length (see [`MEMORY_PER_ROW_BYTE`]).
    pub fn measured(&mut self, key: &UserKey, row_bytes: usize) {
        if let Some(cached) = self.users.peek_mut(key) {
            let bytes = row_bytes
                .saturating_mul(MEMORY_PER_ROW_BYTE)
                .saturating_add(ENTRY_OVERHEAD);
            self.bytes = self.bytes.saturating_sub(cached.bytes) + bytes;
            cached.bytes = bytes;
        }
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
            cache.put(key(i), UserRecord::default());
            cache.measured(&key(i), row);
        }
        assert_eq!(cache.bytes(), 5 * charge);
        // A batch of users 0..4: its users stay, over the budget.
        for i in 0..4 {
            assert!(cache.promote(&key(i)));
        }
        cache.shrink(4);
        assert_eq!(cache.len(), 4);
        assert!(cache.peek(&key(4)).is_none(), "the least recent goes first");
        // The next batch, of user 3 only: back within the budget, the most recent kept.
        assert!(cache.promote(&key(3)));
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
            cache.get_or_insert_mut(&key(i)).history_len = i as u64;
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
    fn taking_a_cached_user_keeps_its_place_and_a_new_one_comes_in_most_recent() {
        let mut cache = UserCache::new(2, usize::MAX);
        cache.put(key(0), UserRecord::default());
        cache.put(key(1), UserRecord::default());
        // User 0, the least recent, is taken and changed: it stays the least recent.
        cache.get_or_insert_mut(&key(0)).history_len = 7;
        // User 2 was not cached: it comes in empty, as the most recent.
        assert_eq!(cache.get_or_insert_mut(&key(2)).history_len, 0);
        cache.shrink(0);
        assert_eq!(cache.len(), 2);
        assert!(cache.peek(&key(0)).is_none(), "the least recent went first");
        assert!(cache.peek(&key(1)).is_some() && cache.peek(&key(2)).is_some());
    }
}
