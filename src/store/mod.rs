//! The state store port: everything the worker persists and the sidecar reads.
//!
//! Key/value shaped on purpose: every hot-path read and write is by full key (a user, a
//! resource), so the same trait maps onto ScyllaDB partitions and onto an embedded B-tree,
//! and the CQL schema needs no lightweight transactions, ranges or ORDER BY on the hot path.
//! Two implementations ([`embedded`], [`scylla`]) pass one conformance suite
//! (`tests/it/store_conformance.rs`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The stored records are the core's own types: the record step works on them directly.
pub use crate::core::model::UserKey;
pub use crate::core::records::{
    ClaimRecord, HistoryChain, HistoryEntry, HistoryPlace, HistoryPos, ResourceRecord, UserRecord,
    Watermark,
};

pub(crate) mod codec;
use codec::AheadRow;
mod cql_batches;
pub mod cql_schema;
pub mod embedded;
mod error;
pub mod scylla;
mod state_format;
mod wire;

pub use codec::{read_user_row, user_row};

pub use error::{ConfigError, Corruption, ResultShape, StoreError};

/// Per (tenant, challenge, input partition), how many users achieved the challenge. Each
/// partition's owner writes only its own counter (single writer per key); readers sum them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedCount {
    pub tenant: String,
    pub challenge_id: u32,
    pub partition: String,
    pub count: u64,
}

/// All the writes of one batch, applied together by [`StateStore::write_batch`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchWrite {
    pub users: Vec<(UserKey, UserRecord)>,
    pub resources: Vec<(String, ResourceRecord)>,
    pub history: Vec<(UserKey, HistoryEntry)>,
    pub claims: Vec<(UserKey, ClaimRecord)>,
    pub finished: Vec<FinishedCount>,
    /// Replaces the stored outbox of a partition (opaque bytes: `pipeline::outbox`). Stores
    /// without atomic batches write it before everything else, so a half-applied batch never
    /// has state whose records are missing from the outbox.
    pub outbox: Option<OutboxWrite>,
    /// The user and history rows serialized ahead of the write ([`BatchWrite::encode`]);
    /// leave it empty (default) and the store serializes them itself.
    pub encoded: EncodedRows,
    /// Fencing: a write carries its owner's timestamp (derived from the partition's ownership
    /// epoch and the batch's offset) and never overwrites a row written with a larger one,
    /// so a zombie owner cannot clobber its successor's state. `None`: unfenced (tests, demo).
    pub write_timestamp: Option<i64>,
}

impl BatchWrite {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.resources.is_empty()
            && self.history.is_empty()
            && self.claims.is_empty()
            && self.finished.is_empty()
            && self.outbox.is_none()
            && self.encoded.user_rows.is_empty()
            && self.encoded.resource_rows.is_empty()
    }
}

/// Serialized user and history rows of a [`BatchWrite`]: those of its `users` and `history`
/// in their order, and users added as bytes only ([`BatchWrite::push_user_row`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedRows {
    users: Vec<AheadRow>,
    history: Vec<AheadRow>,
    /// Written after the rows of `users`.
    user_rows: Vec<(UserKey, AheadRow)>,
    /// Resources added as bytes only ([`BatchWrite::push_resource_row`]), written after the
    /// batch's `resources`.
    resource_rows: Vec<(String, AheadRow)>,
}

impl BatchWrite {
    /// Serializes the user and history rows now. The worker calls it while it evaluates, so
    /// the store's write, the pipeline's critical path, only moves or copies bytes. Call it last:
    /// rows changed afterwards would be written as they were when encoded.
    pub fn encode(&mut self) -> Result<(), StoreError> {
        self.encode_with(|_| None)
    }

    /// [`BatchWrite::encode`], taking each history entry's event as JSON from `published`
    /// (by event id) where it has it: the bytes the event was published as, so an event is
    /// serialized once for the broker and its history row alike. The row is byte for byte
    /// what serializing the entry would give (`{"seq":N,"event":EVENT}`), so `published` must
    /// return only `serde_json::to_vec` of that very event.
    pub fn encode_with<'a>(
        &mut self,
        published: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<(), StoreError> {
        let mut scratch = Vec::new();
        self.encoded.users = self
            .users
            .iter()
            .map(|(_, record)| AheadRow::user(record, &mut scratch))
            .collect();
        self.encoded.history = self
            .history
            .iter()
            .map(|(key, entry)| match published(&entry.event.event_id) {
                Some(event) => Ok(AheadRow::history(entry.seq, event)),
                None => codec::encode(HistoryLabel(key, entry.seq), entry)
                    .map(|row| AheadRow::copied(&row)),
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Room for `users` rows pushed with [`BatchWrite::push_user_row`]: a batch knows how
    /// many users it touches before it evaluates them, and the list would otherwise grow by
    /// doubling, copying its rows at each step.
    pub fn reserve_user_rows(&mut self, users: usize) {
        self.encoded.user_rows.reserve(users);
    }

    /// Adds a user's row serialized straight from `record`, without copying the record into
    /// the batch: the worker's write needs only the bytes, and its cache keeps the record.
    /// Returns the row's length, from which the cache estimates the record's memory.
    /// `scratch`: a buffer the caller keeps from one row to the next (the row is serialized
    /// there, then copied into one of its exact size).
    pub fn push_user_row(
        &mut self,
        key: UserKey,
        record: &UserRecord,
        scratch: &mut Vec<u8>,
    ) -> usize {
        let row = AheadRow::user(record, scratch);
        let len = row.payload().len();
        self.encoded.user_rows.push((key, row));
        len
    }

    /// Adds a resource's row serialized straight from `record`, as
    /// [`BatchWrite::push_user_row`] does for users: a resource that answers inventory
    /// requests keeps the answers to its last 4,096, and cloning that window into every batch
    /// that touched the resource was an allocation per kept answer (3.9 % of the worker's main
    /// thread's samples in a profile of the end-to-end benchmark), freed again on the store's
    /// thread.
    pub fn push_resource_row(&mut self, key: String, record: &ResourceRecord) {
        self.encoded
            .resource_rows
            .push((key, AheadRow::resource(record)));
    }

    /// Each resource row with its serialized record: those of `resources`, encoded now, then
    /// the rows added as bytes.
    pub(crate) fn resource_rows(&self) -> Result<Vec<(&str, Payload<'_>)>, StoreError> {
        let mut rows = Vec::with_capacity(self.resources.len() + self.encoded.resource_rows.len());
        for (key, record) in &self.resources {
            let row = codec::encode(format_args!("resource {key}"), record)?;
            rows.push((key.as_str(), Payload::Owned(row)));
        }
        rows.extend(
            self.encoded
                .resource_rows
                .iter()
                .map(|(key, row)| (key.as_str(), Payload::Borrowed(row.payload()))),
        );
        Ok(rows)
    }

    /// Every user the batch writes, decoded from its row where it was added as bytes only.
    /// For tests and tools: the write path never decodes.
    pub fn user_records(&self) -> Result<Vec<(UserKey, UserRecord)>, StoreError> {
        let mut users = self.users.clone();
        for (key, row) in &self.encoded.user_rows {
            users.push((
                key.clone(),
                codec::decode(UserLabel::of(key), row.payload())?,
            ));
        }
        Ok(users)
    }

    /// Each user row with its serialized record (encoded now unless [`BatchWrite::encode`]
    /// did it), then the rows added as bytes.
    pub(crate) fn user_rows(&self) -> Result<Vec<(&UserKey, Payload<'_>)>, StoreError> {
        let rows = serialized(&self.users, &self.encoded.users, |key, _| {
            UserLabel::of(key)
        })?;
        Ok(rows
            .into_iter()
            .map(|(key, _, bytes)| (key, bytes))
            .chain(
                self.encoded
                    .user_rows
                    .iter()
                    .map(|(key, row)| (key, Payload::Borrowed(row.payload()))),
            )
            .collect())
    }

    /// Each history row, `(user, seq, serialized entry)`, like [`BatchWrite::user_rows`].
    pub(crate) fn history_rows(&self) -> Result<Vec<(&UserKey, u64, Payload<'_>)>, StoreError> {
        let rows = serialized(&self.history, &self.encoded.history, |key, entry| {
            HistoryLabel(key, entry.seq)
        })?;
        Ok(rows
            .into_iter()
            .map(|(key, entry, bytes)| (key, entry.seq, bytes))
            .collect())
    }
}

impl BatchWrite {
    /// How many rows the batch writes: one per user, resource, history entry, claim outcome
    /// and counter, and its outbox.
    pub(crate) fn row_count(&self) -> usize {
        self.users.len()
            + self.encoded.user_rows.len()
            + self.resources.len()
            + self.encoded.resource_rows.len()
            + self.history.len()
            + self.claims.len()
            + self.finished.len()
            + usize::from(self.outbox.is_some())
    }

    /// The user rows, the history rows and the resource rows, as [`BatchWrite::user_rows`],
    /// [`BatchWrite::history_rows`] and [`BatchWrite::resource_rows`] give them, but taken out
    /// of the batch with their keys, each row behind [`codec::ROW_HEADROOM`] free bytes
    /// (serialized now where it was not ahead): a store that owns the batch keeps the buffers
    /// instead of copying the rows.
    pub(crate) fn take_rows_ahead(&mut self) -> Result<RowsAhead, StoreError> {
        let ready = self.encoded.users.len() == self.users.len()
            && self.encoded.history.len() == self.history.len();
        if !ready {
            self.encode()?;
        }
        let encoded = std::mem::take(&mut self.encoded);
        let mut users: Vec<(UserKey, AheadRow)> = std::mem::take(&mut self.users)
            .into_iter()
            .map(|(key, _)| key)
            .zip(encoded.users)
            .collect();
        users.extend(encoded.user_rows);
        let history = std::mem::take(&mut self.history)
            .into_iter()
            .zip(encoded.history)
            .map(|((key, entry), row)| (key, entry.seq, entry.place, row))
            .collect();
        let mut resources: Vec<(String, AheadRow)> = std::mem::take(&mut self.resources)
            .into_iter()
            .map(|(key, record)| (key, AheadRow::resource(&record)))
            .collect();
        resources.extend(encoded.resource_rows);
        Ok(RowsAhead {
            users,
            history,
            resources,
        })
    }
}

/// A batch's rows, taken out of it ([`BatchWrite::take_rows_ahead`]).
pub(crate) struct RowsAhead {
    pub users: Vec<(UserKey, AheadRow)>,
    /// With their sequence numbers and places.
    pub history: Vec<(UserKey, u64, Option<HistoryPlace>, AheadRow)>,
    pub resources: Vec<(String, AheadRow)>,
}

/// `items` with their serialized values: the `encoded` ones when there is one per item,
/// else serialized now (`label` names an item in errors).
fn serialized<'a, T: codec::Stored, L: std::fmt::Display>(
    items: &'a [(UserKey, T)],
    encoded: &'a [AheadRow],
    label: impl Fn(&'a UserKey, &'a T) -> L,
) -> Result<Vec<(&'a UserKey, &'a T, Payload<'a>)>, StoreError> {
    let ready = encoded.len() == items.len();
    items
        .iter()
        .enumerate()
        .map(|(i, (key, item))| {
            let bytes = if ready {
                Payload::Borrowed(encoded[i].payload())
            } else {
                Payload::Owned(codec::encode(label(key, item), item)?)
            };
            Ok((key, item, bytes))
        })
        .collect()
}

/// A row's serialized value: borrowed when encoded ahead, owned when encoded on the spot.
pub(crate) type Payload<'a> = std::borrow::Cow<'a, [u8]>;

/// How a user row is named in errors. A `Display` rather than a `String` so that naming a
/// row costs nothing until an error is actually reported (rows are named on the hot path).
pub(crate) struct UserLabel<'a>(pub &'a str, pub &'a str);

impl<'a> UserLabel<'a> {
    pub(crate) fn of(key: &'a UserKey) -> Self {
        UserLabel(&key.tenant, &key.user_id)
    }
}

impl std::fmt::Display for UserLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "user {}/{}", self.0, self.1)
    }
}

/// How a history row is named in errors, like [`UserLabel`].
pub(crate) struct HistoryLabel<'a>(pub &'a UserKey, pub u64);

impl std::fmt::Display for HistoryLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "history {}/{}#{}", self.0.tenant, self.0.user_id, self.1)
    }
}

/// A partition's outbox as it replaces the stored one: opaque bytes (`pipeline::outbox`),
/// held behind room for the embedded store's row header. The outbox is a batch's largest
/// row (every event it publishes), and copying it behind that header was 2.8 % of the
/// worker's CPU end to end (docs/benchmarks.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxWrite {
    /// Whose outbox: the consumer group and partition (`group/p3`).
    pub owner: String,
    row: AheadRow,
}

impl OutboxWrite {
    /// The outbox `bytes` of `owner` (copied once, behind the headroom).
    pub fn new(owner: impl Into<String>, bytes: &[u8]) -> Self {
        OutboxWrite {
            owner: owner.into(),
            row: AheadRow::copied(bytes),
        }
    }

    /// The outbox of `owner` that `append` writes, without a copy: `append` is handed a
    /// buffer with room for `capacity` bytes and must only append to it.
    pub fn appended(
        owner: impl Into<String>,
        capacity: usize,
        append: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> Self {
        OutboxWrite {
            owner: owner.into(),
            row: AheadRow::appended(capacity, append),
        }
    }

    /// The outbox's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.row.payload()
    }

    /// The buffer, `header` written into its headroom (the embedded store's stored row).
    pub(crate) fn into_row_behind(self, header: [u8; codec::ROW_HEADROOM]) -> Vec<u8> {
        self.row.behind(header)
    }
}

#[async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// Loads users by key; `None` where a user has no record yet. Same order as `keys`.
    async fn load_users(&self, keys: &[UserKey]) -> Result<Vec<Option<UserRecord>>, StoreError>;

    /// Loads inventory-stage resources by key. Same order as `keys`.
    async fn load_resources(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<ResourceRecord>>, StoreError>;

    /// The outbox last written for `owner` ([`OutboxWrite`]), if any.
    async fn load_outbox(&self, owner: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Applies one batch's writes. Upserts: applying the same batch twice is harmless.
    async fn write_batch(&self, batch: &BatchWrite) -> Result<(), StoreError>;

    /// Applies several batches (one per partition of a poll) — in one transaction where the
    /// store has transactions, concurrently otherwise. Each keeps its own write timestamp.
    async fn write_batches(&self, batches: Vec<BatchWrite>) -> Result<(), StoreError> {
        let results = futures::future::join_all(batches.iter().map(|b| self.write_batch(b))).await;
        results.into_iter().collect()
    }

    /// A page (1-based) of a user's history, newest first, and the total number of entries.
    async fn history(
        &self,
        key: &UserKey,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), StoreError>;

    /// A claim's final status, if it has one yet.
    async fn claim(&self, key: &UserKey, claim_id: &str)
        -> Result<Option<ClaimRecord>, StoreError>;

    /// Per challenge, how many users of the tenant achieved it (all partitions summed).
    async fn people_finished(&self, tenant: &str) -> Result<BTreeMap<u32, u64>, StoreError>;

    /// Takes ownership of an input partition: returns a new epoch, larger than any before,
    /// from which the owner derives its write timestamps.
    async fn claim_partition(&self, group: &str, partition: &str) -> Result<i64, StoreError>;

    /// Cheap reachability check for `/readyz`: fails while the store cannot serve calls (the
    /// embedded store after an I/O failure, until it could reopen its database).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The write timestamp of a batch: epoch in the high bits, offset in the low 40, so every
/// write of a newer owner outranks every write of an older one.
pub fn write_timestamp(epoch: i64, offset: i64) -> i64 {
    (epoch << 40) | (offset & ((1 << 40) - 1))
}
