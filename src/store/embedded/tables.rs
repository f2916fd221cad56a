//! The embedded store's redb tables, its sealed rows and the fenced upsert.
//!
//! Every data row is stored as `[format: u8 = 1][write timestamp: i64 big-endian][payload]`;
//! the timestamp implements fencing exactly like a CQL cell timestamp: a write never replaces
//! a row stored with a larger one, so a zombie owner cannot clobber its successor's state.

use redb::{AccessGuard, ReadOnlyTable, ReadTransaction, Table, TableDefinition, WriteTransaction};
use std::fmt;

use super::overlay::RowKey;
use crate::store::codec::{self, decode};
use crate::store::{Corruption, StoreError};

/// Users by (tenant, user id).
pub(super) const USERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("users");
/// Inventory-stage resources by resource key.
pub(super) const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
/// History entries filed by user: (tenant, user id, seq). Entries written without a place
/// (by tools and tests, and by versions before the history log) are here.
pub(super) const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("history");
/// History entries filed by position, in the order they were made within each input
/// partition: chunks of entries by (input `topic:partition`, chunk). See `history_log`.
pub(super) const HISTORY_LOG: TableDefinition<(&str, i64), &[u8]> =
    TableDefinition::new("history_log");
/// Claim outcomes by (tenant, user id, claim id).
pub(super) const CLAIMS: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("claims");
/// Finished counters by (tenant, challenge id, input partition).
pub(super) const FINISHED: TableDefinition<(&str, u32, &str), &[u8]> =
    TableDefinition::new("finished");
/// Each partition's outbox (`group/pN`): opaque bytes, replaced by every batch.
pub(super) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// The last epoch handed out per (consumer group, input partition).
pub(super) const EPOCHS: TableDefinition<(&str, &str), i64> =
    TableDefinition::new("partition_epochs");
/// Store metadata: the on-disk format version.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// First byte of every stored row.
const ROW_FORMAT: u8 = 1;
/// The format byte and the write timestamp; rows serialized ahead leave room for it.
const ROW_HEADER: usize = 9;
const _: () = assert!(ROW_HEADER == crate::store::codec::ROW_HEADROOM);

/// A redb failure during `op`. Its class comes from the redb error ([`StoreError::class`]):
/// I/O trouble is transient (a full disk may be freed; it also makes the store reopen its
/// database), a value over redb's limit is that row's problem, anything else is fatal.
pub(super) fn storage_error(op: &'static str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Embedded {
        op,
        source: Box::new(e.into()),
    }
}

/// Prefixes a payload with the row header.
pub(super) fn seal(timestamp: i64, payload: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(ROW_HEADER + payload.len());
    row.extend_from_slice(&row_header(timestamp));
    row.extend_from_slice(payload);
    row
}

/// The header [`seal`] puts in front of a row written at `timestamp`.
pub(super) fn row_header(timestamp: i64) -> [u8; ROW_HEADER] {
    let mut header = [ROW_FORMAT; ROW_HEADER];
    header[1..].copy_from_slice(&timestamp.to_be_bytes());
    header
}

/// Splits a stored row into its write timestamp and payload.
pub(super) fn unseal<'a>(
    key: &dyn fmt::Display,
    row: &'a [u8],
) -> Result<(i64, &'a [u8]), StoreError> {
    match row {
        [ROW_FORMAT, rest @ ..] if rest.len() >= ROW_HEADER - 1 => {
            let (ts, payload) = rest.split_at(ROW_HEADER - 1);
            let ts = i64::from_be_bytes(ts.try_into().expect("split_at gives 8 bytes"));
            Ok((ts, payload))
        }
        [ROW_FORMAT, ..] => Err(StoreError::corrupt(
            key,
            Corruption::Short { len: row.len() },
        )),
        [other, ..] => Err(StoreError::corrupt(key, Corruption::Format(*other))),
        [] => Err(StoreError::corrupt(key, Corruption::Empty)),
    }
}

pub(super) fn decode_row<T: codec::Stored>(
    key: &dyn fmt::Display,
    row: &[u8],
) -> Result<T, StoreError> {
    let (_, payload) = unseal(key, row)?;
    decode(key, payload)
}

/// Whether `row` may replace `stored` (fencing): not when the stored row carries a larger
/// write timestamp. A stored row that cannot be read is replaced (and logged): refusing would
/// wedge the partition for ever on one bad row, and the new value is a complete record.
pub(super) fn outranks(key: &RowKey, row: &[u8], stored: Option<&[u8]>) -> bool {
    let Some(stored) = stored else { return true };
    let Ok((timestamp, _)) = unseal(key, row) else {
        return true;
    };
    match unseal(key, stored) {
        Ok((newer, _)) if newer > timestamp => {
            tracing::debug!(%key, timestamp, stored = newer, "fenced: a newer owner wrote this row");
            false
        }
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(%key, error = %e, "overwrote an unreadable row");
            true
        }
    }
}

/// How a row is named in logs and errors: `user t/u`, `history t/u#3`, `outbox g/p0` …
impl fmt::Display for RowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowKey::User(t, u) => write!(f, "user {t}/{u}"),
            RowKey::Resource(k) => write!(f, "resource {k}"),
            RowKey::History(t, u, seq) => write!(f, "history {t}/{u}#{seq}"),
            RowKey::Claim(t, u, c) => write!(f, "claim {t}/{u}/{c}"),
            RowKey::Finished(t, c, p) => write!(f, "finished {t}/{c}/{p}"),
            RowKey::Outbox(o) => write!(f, "outbox {o}"),
            RowKey::HistoryChunk(i, c) => write!(f, "history chunk {i}#{c}"),
        }
    }
}

/// Creates every table (so read transactions never meet a missing one).
pub(super) fn create_all(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(USERS)?;
    txn.open_table(RESOURCES)?;
    txn.open_table(HISTORY)?;
    txn.open_table(HISTORY_LOG)?;
    txn.open_table(CLAIMS)?;
    txn.open_table(FINISHED)?;
    txn.open_table(EPOCHS)?;
    txn.open_table(OUTBOX)?;
    Ok(())
}

/// The data tables of a write transaction, for fenced upserts by [`RowKey`].
pub(super) struct WriteTables<'t> {
    users: Table<'t, (&'static str, &'static str), &'static [u8]>,
    resources: Table<'t, &'static str, &'static [u8]>,
    history: Table<'t, (&'static str, &'static str, u64), &'static [u8]>,
    history_log: Table<'t, LogKey, &'static [u8]>,
    claims: Table<'t, (&'static str, &'static str, &'static str), &'static [u8]>,
    finished: Table<'t, (&'static str, u32, &'static str), &'static [u8]>,
    outbox: Table<'t, &'static str, &'static [u8]>,
}

impl<'t> WriteTables<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        let e = |e| storage_error("writing rows", e);
        Ok(WriteTables {
            users: txn.open_table(USERS).map_err(e)?,
            resources: txn.open_table(RESOURCES).map_err(e)?,
            history: txn.open_table(HISTORY).map_err(e)?,
            history_log: txn.open_table(HISTORY_LOG).map_err(e)?,
            claims: txn.open_table(CLAIMS).map_err(e)?,
            finished: txn.open_table(FINISHED).map_err(e)?,
            outbox: txn.open_table(OUTBOX).map_err(e)?,
        })
    }

    /// Writes a sealed row unless the stored one outranks it ([`outranks`]).
    pub(super) fn put(&mut self, key: &RowKey, row: &[u8]) -> Result<(), StoreError> {
        match key {
            RowKey::User(t, u) => put(&mut self.users, &(t.as_str(), u.as_str()), key, row),
            RowKey::Resource(k) => put(&mut self.resources, &k.as_str(), key, row),
            RowKey::History(t, u, seq) => {
                put(&mut self.history, &(t.as_str(), u.as_str(), *seq), key, row)
            }
            RowKey::Claim(t, u, c) => put(
                &mut self.claims,
                &(t.as_str(), u.as_str(), c.as_str()),
                key,
                row,
            ),
            RowKey::Finished(t, c, p) => {
                put(&mut self.finished, &(t.as_str(), *c, p.as_str()), key, row)
            }
            RowKey::Outbox(o) => put(&mut self.outbox, &o.as_str(), key, row),
            RowKey::HistoryChunk(i, c) => put(&mut self.history_log, &(i.as_str(), *c), key, row),
        }
    }
}

/// The key type of [`HISTORY_LOG`].
type LogKey = (&'static str, i64);

/// Inserts first and looks at what it replaced: one B-tree descent per row. A replaced row
/// that outranks the new one (a zombie's write arriving late: rare) is put back.
fn put<'k, K: redb::Key + 'static>(
    table: &mut Table<'_, K, &'static [u8]>,
    redb_key: &K::SelfType<'k>,
    key: &RowKey,
    row: &[u8],
) -> Result<(), StoreError> {
    let ctx = "writing rows";
    let replaced = table
        .insert(redb_key, row)
        .map_err(|e| storage_error(ctx, e))?
        .and_then(|old| {
            let old = old.value();
            (!outranks(key, row, Some(old))).then(|| old.to_vec())
        });
    if let Some(newer) = replaced {
        table
            .insert(redb_key, newer.as_slice())
            .map_err(|e| storage_error(ctx, e))?;
    }
    Ok(())
}

/// The data tables of a read transaction, for point reads by [`RowKey`].
pub(super) struct ReadTables {
    users: ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    resources: ReadOnlyTable<&'static str, &'static [u8]>,
    history: ReadOnlyTable<(&'static str, &'static str, u64), &'static [u8]>,
    history_log: ReadOnlyTable<LogKey, &'static [u8]>,
    claims: ReadOnlyTable<(&'static str, &'static str, &'static str), &'static [u8]>,
    pub(super) finished: ReadOnlyTable<(&'static str, u32, &'static str), &'static [u8]>,
    outbox: ReadOnlyTable<&'static str, &'static [u8]>,
}

impl ReadTables {
    pub(super) fn open(txn: &ReadTransaction) -> Result<Self, StoreError> {
        let e = |e| storage_error("reading rows", e);
        Ok(ReadTables {
            users: txn.open_table(USERS).map_err(e)?,
            resources: txn.open_table(RESOURCES).map_err(e)?,
            history: txn.open_table(HISTORY).map_err(e)?,
            history_log: txn.open_table(HISTORY_LOG).map_err(e)?,
            claims: txn.open_table(CLAIMS).map_err(e)?,
            finished: txn.open_table(FINISHED).map_err(e)?,
            outbox: txn.open_table(OUTBOX).map_err(e)?,
        })
    }

    /// The stored row of `key`, if any, borrowed from redb.
    pub(super) fn get(
        &self,
        key: &RowKey,
    ) -> Result<Option<AccessGuard<'static, &'static [u8]>>, StoreError> {
        let found = match key {
            RowKey::User(t, u) => self.users.get((t.as_str(), u.as_str())),
            RowKey::Resource(k) => self.resources.get(k.as_str()),
            RowKey::History(t, u, seq) => self.history.get((t.as_str(), u.as_str(), *seq)),
            RowKey::Claim(t, u, c) => self.claims.get((t.as_str(), u.as_str(), c.as_str())),
            RowKey::Finished(t, c, p) => self.finished.get((t.as_str(), *c, p.as_str())),
            RowKey::Outbox(o) => self.outbox.get(o.as_str()),
            RowKey::HistoryChunk(i, c) => self.history_log.get((i.as_str(), *c)),
        };
        found.map_err(|e| storage_error("reading rows", e))
    }

    /// The highest history chunk stored for `input`, if any.
    pub(super) fn last_chunk(&self, input: &str) -> Result<Option<i64>, StoreError> {
        let e = |e| storage_error("reading rows", e);
        let mut chunks = self
            .history_log
            .range((input, i64::MIN)..=(input, i64::MAX))
            .map_err(e)?;
        Ok(match chunks.next_back() {
            Some(found) => Some(found.map_err(e)?.0.value().1),
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserRecord;

    #[test]
    fn rows_round_trip_and_bad_rows_are_corrupt() {
        let row = seal(-5, b"{}");
        assert_eq!(unseal(&"k", &row).unwrap(), (-5, &b"{}"[..]));
        for bad in [&b""[..], &[1u8, 0, 0][..], &[7u8; 20][..]] {
            assert!(matches!(unseal(&"k", bad), Err(StoreError::Corrupt { .. })));
        }
        assert!(matches!(
            decode_row::<UserRecord>(&"k", &seal(1, b"not json")),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_row_outranks_older_equal_and_unreadable_rows_only() {
        let key = RowKey::Outbox("g/p0".into());
        let row = seal(10, b"x");
        assert!(outranks(&key, &row, None));
        assert!(outranks(&key, &row, Some(&seal(9, b"y"))));
        assert!(
            outranks(&key, &row, Some(&seal(10, b"y"))),
            "a replay writes again"
        );
        assert!(!outranks(&key, &row, Some(&seal(11, b"y"))));
        assert!(outranks(&key, &row, Some(b"garbage")));
    }
}
