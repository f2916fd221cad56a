//! What both stores share: record encoding, history paging, write clocks.
//!
//! Kept in one place so the two implementations cannot drift apart on the details the
//! conformance suite checks (page arithmetic, which timestamp an unfenced write gets, how bad
//! bytes are reported).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::StoreError;

/// Serializes a record as JSON.
///
/// JSON rather than a compact binary format such as postcard: the stored types use
/// `#[serde(flatten)]`, internally tagged enums (`#[serde(tag = "type")]`) and lenient decimal
/// fields, all of which need a self-describing format (`deserialize_any`); postcard and bincode
/// cannot read them back. JSON also keeps stored rows readable with `cqlsh` and redb tooling,
/// and a user's hot state is small (targets in docs/benchmarks.md), so the size cost is modest.
pub(crate) fn encode<T: Serialize>(key: impl Display, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode {
        key: key.to_string(),
        source,
    })
}

/// Deserializes a stored record; bad bytes are a [`StoreError::Corrupt`], never a panic.
pub(crate) fn decode<T: DeserializeOwned>(
    key: impl Display,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::corrupt(key, e))
}

/// The sequence numbers on one page of a history of `total` entries, newest (highest) first.
///
/// `page` is 1-based (0 is read as 1); a page past the end is empty. Computed from the count
/// alone, so pages are stable while no entry is added, and both stores read the page by exact
/// keys: no range scan, no ORDER BY (which the CQL test server would ignore anyway).
pub(crate) fn page_seqs(total: u64, page: u32, per_page: u32) -> Vec<u64> {
    let page = u64::from(page.max(1));
    let per_page = u64::from(per_page);
    let skip = (page - 1).saturating_mul(per_page);
    if skip >= total {
        return Vec::new();
    }
    let newest = total - 1 - skip;
    let count = per_page.min(newest + 1);
    (0..count).map(|i| newest - i).collect()
}

/// Microseconds since the Unix epoch, strictly increasing within this process.
///
/// The timestamp of an unfenced write (`write_timestamp: None`). CQL's default is the same
/// clock (the driver or the server stamps writes with the current time in microseconds), and
/// the embedded store follows it so both stores order unfenced and fenced writes alike. Strictly
/// increasing so two unfenced writes in the same microsecond still have an order (ScyllaDB would
/// otherwise break the tie by comparing values).
pub(crate) fn unfenced_timestamp() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = wall_clock_micros();
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

fn wall_clock_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The smallest epoch [`super::StateStore::claim_partition`] may hand out now.
///
/// A fenced write's timestamp is `epoch << 40 | offset` ([`super::write_timestamp`]); an
/// unfenced one is the wall clock in microseconds (≈ 2^50.6 today). If epochs started at 1,
/// every fenced write would be *older* than any unfenced write made before it — a worker
/// started on a store that `demo` (unfenced) had written would have all its writes silently
/// dropped. Starting each claim at an epoch whose timestamps lie above the current clock makes
/// fenced writes after a claim outrank every unfenced write before it. 2^23 epochs fit in an
/// i64 timestamp, so this leaves millions of claims of headroom.
pub(crate) fn clock_epoch() -> i64 {
    (wall_clock_micros() >> 40) + 1
}

/// The epoch a claim returns, given the largest one handed out before (if any).
pub(crate) fn next_epoch(previous: Option<i64>) -> i64 {
    let floor = clock_epoch();
    match previous {
        Some(prev) => (prev + 1).max(floor),
        None => floor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_newest_first_and_end_cleanly() {
        assert_eq!(page_seqs(5, 1, 2), vec![4, 3]);
        assert_eq!(page_seqs(5, 2, 2), vec![2, 1]);
        assert_eq!(page_seqs(5, 3, 2), vec![0]);
        assert!(page_seqs(5, 4, 2).is_empty());
        assert_eq!(page_seqs(5, 0, 2), vec![4, 3]);
        assert!(page_seqs(0, 1, 10).is_empty());
        assert!(page_seqs(5, 1, 0).is_empty());
        assert!(page_seqs(10, u32::MAX, u32::MAX).is_empty());
    }

    #[test]
    fn unfenced_timestamps_increase() {
        let a = unfenced_timestamp();
        let b = unfenced_timestamp();
        assert!(b > a);
    }

    #[test]
    fn claimed_epochs_outrank_the_clock() {
        let epoch = next_epoch(None);
        assert!(super::super::write_timestamp(epoch, 0) > unfenced_timestamp());
        assert_eq!(next_epoch(Some(epoch + 10)), epoch + 11);
    }
}
