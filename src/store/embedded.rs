//! The embedded store: the default, a durable single-node store in a local directory.
//!
//! # Why an LSM tree (fjall)
//!
//! The embedded store is what `questline demo` and a single-node `questline run` use, so it
//! must survive `kill -9` and power loss with no operator around, and its write is the
//! worker's critical path: every batch upserts one row per touched user and one per history
//! entry, at keys spread over the whole user population.
//!
//! - **Writes cost what they write.** [fjall](https://docs.rs/fjall) appends a batch to its
//!   journal and inserts it into in-memory tables; sorting into files happens later, in
//!   background threads. A copy-on-write B-tree (redb, which this store used before) rewrites
//!   a 4 KiB leaf page, and the path above it, for nearly every randomly keyed row. On the
//!   worker's pattern (2,000 user rows and 2,000 history rows of ~400 bytes per commit over
//!   10,000 users) a durable commit took 61 ms with redb and 18 ms with fjall on this
//!   project's development machine (`benches/store.rs` has the comparison).
//! - **Durable when it returns.** Every batch is committed with [`PersistMode::SyncAll`]: the
//!   commit protocol (DESIGN §2) stores offsets only after the state is persisted, so
//!   "returned" must mean "on disk".
//! - **Atomic batches.** A whole poll's [`BatchWrite`]s are one journal entry: after a crash a
//!   user's record, its history entries, its claims and the partition outboxes are all from
//!   the same batch, never a mix. Journal recovery drops a torn tail.
//! - **Readers never block the writer**: reads see a snapshot (MVCC).
//!
//! The costs: background flush and compaction threads (they share the machine with the
//! worker), point reads that may look into several files (bloom filters skip most), and
//! memory for the write buffers besides the block cache (see [`EmbeddedStore::open_with_cache`]).
//!
//! # Layout
//!
//! `<dir>/db/` is the fjall database, one keyspace per record kind (below); `<dir>/LOCK` is
//! held (an OS file lock) by the one process that owns the directory and names its pid.
//!
//! Keys are the record's key components in order: a string as its length (u32, big-endian)
//! followed by its UTF-8 bytes, an integer big-endian. The length prefix keeps any id from
//! running into the next component, whatever bytes it holds, and a tenant's rows share the
//! prefix of its encoded name.
//!
//! Every data row is stored as `[format: u8 = 1][write timestamp: i64 big-endian][payload]`
//! (JSON, except the partition outboxes, which are the pipeline's own binary format): the
//! timestamp implements fencing exactly like a CQL cell timestamp (a write never replaces a
//! row stored with a larger one), so a zombie owner cannot clobber its successor's state in
//! either store.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};
use fs2::FileExt;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::codec::{self, decode, encode, page_seqs};
use super::{
    BatchWrite, ClaimRecord, HistoryEntry, ResourceRecord, StateStore, StoreError, UserKey,
    UserRecord,
};

/// The keyspaces, one per record kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    /// Users by (tenant, user id).
    Users,
    /// Inventory-stage resources by resource key.
    Resources,
    /// History entries by (tenant, user id, seq).
    History,
    /// Claim outcomes by (tenant, user id, claim id).
    Claims,
    /// Finished counters by (tenant, challenge id, input partition).
    Finished,
    /// Each partition's outbox (`group/pN`): opaque bytes, replaced by every batch.
    Outbox,
    /// The last epoch handed out per (consumer group, input partition), as i64 big-endian.
    Epochs,
    /// Store metadata: the on-disk format version.
    Meta,
}

impl Table {
    const ALL: [Table; 8] = [
        Table::Users,
        Table::Resources,
        Table::History,
        Table::Claims,
        Table::Finished,
        Table::Outbox,
        Table::Epochs,
        Table::Meta,
    ];

    fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Resources => "resources",
            Table::History => "history",
            Table::Claims => "claims",
            Table::Finished => "finished",
            Table::Outbox => "outbox",
            Table::Epochs => "partition_epochs",
            Table::Meta => "meta",
        }
    }

    /// Users and history take nearly all writes: their in-memory tables are bounded so the
    /// store's memory is (block cache + these), not whatever fjall's defaults allow.
    fn options(self) -> KeyspaceCreateOptions {
        let options = KeyspaceCreateOptions::default();
        match self {
            Table::Users | Table::History => options.max_memtable_size(MEMTABLE_BYTES),
            _ => options.max_memtable_size(SMALL_MEMTABLE_BYTES),
        }
    }
}

/// On-disk format of this code. A directory written by another format is refused at open
/// rather than misread: format 1 kept unpublished events inside user rows, format 2 was the
/// same layout as 3 in a redb file.
const FORMAT_VERSION: u64 = 3;
const FORMAT_KEY: &[u8] = b"format_version";
/// First byte of every stored row.
const ROW_FORMAT: u8 = 1;
const ROW_HEADER: usize = 9;

const DB_DIR: &str = "db";
/// The file of formats 1 and 2; its presence means the directory is from an earlier build.
const REDB_FILE: &str = "questline.redb";
/// The block cache of [`EmbeddedStore::open`] (`store.cache_mb` in configuration).
pub const DEFAULT_CACHE_BYTES: usize = 256 << 20;
/// In-memory table of the users and history keyspaces before it is flushed to a file.
const MEMTABLE_BYTES: u64 = 16 << 20;
const SMALL_MEMTABLE_BYTES: u64 = 4 << 20;
/// Journal kept before the in-memory tables are flushed (fjall's minimum): bounds the disk
/// the journal takes and what recovery replays after a crash.
const MAX_JOURNAL_BYTES: u64 = 64 << 20;
const LOCK_FILE: &str = "LOCK";

/// The embedded [`StateStore`]: cheap to clone, all clones share one open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// Field order matters: the database is closed before the directory lock is released.
struct Inner {
    db: Database,
    tables: Vec<Keyspace>,
    /// Serializes writers: fencing reads each row's stored timestamp before it writes, which
    /// must not interleave with another batch's write of the same row.
    writer: Mutex<()>,
    dir: PathBuf,
    _lock: DirLock,
}

impl Inner {
    fn table(&self, table: Table) -> &Keyspace {
        &self.tables[table as usize]
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in directory `path`.
    ///
    /// Fails with [`StoreError::Setup`] when another process holds the directory (the message
    /// names its pid), when the directory cannot be created, or when it was written by another
    /// format. After a crash, the journal is replayed here, which takes time proportional to
    /// what was not yet flushed (at most [`MAX_JOURNAL_BYTES`]); this is a blocking call meant
    /// for start-up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`EmbeddedStore::open`] with the block cache limited to `cache_bytes`. The store's
    /// memory is that cache plus the in-memory tables: 16 MiB for users and for history (two
    /// of each while one is flushed) and 4 MiB for each other kind.
    pub fn open_with_cache(path: impl AsRef<Path>, cache_bytes: usize) -> Result<Self, StoreError> {
        let dir = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Setup(format!(
                "cannot create the store directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = DirLock::acquire(&dir)?;
        if dir.join(REDB_FILE).exists() {
            return Err(StoreError::Setup(format!(
                "{} holds a store of an earlier questline build ({REDB_FILE}, format 2 or older; \
                 this build writes format {FORMAT_VERSION}) and cannot read it: its unpublished \
                 events cannot be carried over. Stop that build cleanly (SIGTERM publishes \
                 everything) and start this one on a new store directory",
                dir.display()
            )));
        }
        let db_dir = dir.join(DB_DIR);
        let db = Database::builder(&db_dir)
            .cache_size(u64::try_from(cache_bytes).unwrap_or(u64::MAX))
            .max_journaling_size(MAX_JOURNAL_BYTES)
            .open()
            .map_err(|e| storage_error(&format!("opening {}", db_dir.display()), e))?;
        let tables = Table::ALL
            .iter()
            .map(|t| {
                db.keyspace(t.name(), || t.options())
                    .map_err(|e| storage_error("opening keyspaces", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let inner = Inner {
            db,
            tables,
            writer: Mutex::new(()),
            dir,
            _lock: lock,
        };
        check_format(&inner)?;
        Ok(EmbeddedStore {
            inner: Arc::new(inner),
        })
    }

    /// The directory this store owns.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs store work on the blocking pool: every call may touch the disk (and a commit
    /// fsyncs), which must not stall the async workers that drive Kafka and HTTP.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || work(&inner))
            .await
            .map_err(|e| StoreError::Unavailable(format!("embedded store task failed: {e}")))?
    }
}

/// Records the format in a new store; refuses one written by another format.
fn check_format(inner: &Inner) -> Result<(), StoreError> {
    let ctx = "checking the format";
    let meta = inner.table(Table::Meta);
    let stored = meta
        .get(FORMAT_KEY)
        .map_err(|e| storage_error(ctx, e))?
        .map(|v| {
            <[u8; 8]>::try_from(&v[..])
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    key: "meta format_version".into(),
                    reason: format!("{} bytes, not 8", v.len()),
                })
        })
        .transpose()?;
    match stored {
        Some(v) if v > FORMAT_VERSION => Err(StoreError::Setup(format!(
            "the store was written by a newer questline (format {v}, this build reads up to {FORMAT_VERSION})"
        ))),
        Some(v) if v < FORMAT_VERSION => Err(StoreError::Setup(format!(
            "the store was written by a development build of questline (format {v}; this \
             build reads format {FORMAT_VERSION}): its unpublished events cannot be carried \
             over. Stop that build cleanly (SIGTERM publishes everything) and start this \
             one on a new store directory"
        ))),
        Some(_) => Ok(()),
        None => {
            let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes());
            batch.commit().map_err(|e| storage_error(ctx, e))
        }
    }
}

/// Maps a fjall error: I/O trouble is retryable (`Unavailable`: a full disk may be freed),
/// damaged data is `Corrupt`, a store this build cannot open is `Setup`.
fn storage_error(context: &str, e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(e) => StoreError::Unavailable(format!("embedded store, {context}: {e}")),
        fjall::Error::Storage(lsm_error) => match lsm_error {
            fjall::LsmError::Io(e) => {
                StoreError::Unavailable(format!("embedded store, {context}: {e}"))
            }
            other => StoreError::Corrupt {
                key: context.to_string(),
                reason: format!("{other:?}"),
            },
        },
        fjall::Error::Poisoned => StoreError::Unavailable(format!(
            "embedded store, {context}: an earlier write failed to reach the disk, so no \
             further write is accepted; restart the process (it recovers from the journal)"
        )),
        e @ (fjall::Error::Decompress(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_)) => StoreError::Corrupt {
            key: context.to_string(),
            reason: format!("{e:?}"),
        },
        e => StoreError::Setup(format!("embedded store, {context}: {e:?}")),
    }
}

/// Key bytes: see the module's "Layout".
#[derive(Default)]
struct KeyBytes(Vec<u8>);

impl KeyBytes {
    fn str(mut self, s: &str) -> Self {
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    fn u32(mut self, n: u32) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }
}

fn user_key(tenant: &str, user_id: &str) -> Vec<u8> {
    KeyBytes::default().str(tenant).str(user_id).0
}

fn history_key(tenant: &str, user_id: &str, seq: u64) -> Vec<u8> {
    KeyBytes::default().str(tenant).str(user_id).u64(seq).0
}

fn claim_key(tenant: &str, user_id: &str, claim_id: &str) -> Vec<u8> {
    KeyBytes::default().str(tenant).str(user_id).str(claim_id).0
}

fn finished_key(tenant: &str, challenge_id: u32, partition: &str) -> Vec<u8> {
    KeyBytes::default()
        .str(tenant)
        .u32(challenge_id)
        .str(partition)
        .0
}

fn single_key(name: &str) -> Vec<u8> {
    KeyBytes::default().str(name).0
}

fn epoch_key(group: &str, partition: &str) -> Vec<u8> {
    KeyBytes::default().str(group).str(partition).0
}

/// Prefixes a payload with the row header.
fn seal(timestamp: i64, payload: &[u8]) -> Vec<u8> {
    let mut row = Vec::with_capacity(ROW_HEADER + payload.len());
    row.push(ROW_FORMAT);
    row.extend_from_slice(&timestamp.to_be_bytes());
    row.extend_from_slice(payload);
    row
}

/// Splits a stored row into its write timestamp and payload.
fn unseal<'a>(key: &dyn std::fmt::Display, row: &'a [u8]) -> Result<(i64, &'a [u8]), StoreError> {
    match row {
        [ROW_FORMAT, rest @ ..] if rest.len() >= ROW_HEADER - 1 => {
            let (ts, payload) = rest.split_at(ROW_HEADER - 1);
            let ts = i64::from_be_bytes(ts.try_into().expect("split_at gives 8 bytes"));
            Ok((ts, payload))
        }
        [ROW_FORMAT, ..] => Err(StoreError::Corrupt {
            key: key.to_string(),
            reason: format!("row of {} bytes is shorter than its header", row.len()),
        }),
        [other, ..] => Err(StoreError::Corrupt {
            key: key.to_string(),
            reason: format!("unknown row format {other}"),
        }),
        [] => Err(StoreError::Corrupt {
            key: key.to_string(),
            reason: "empty row".to_string(),
        }),
    }
}

fn decode_row<T: serde::de::DeserializeOwned>(
    key: &dyn std::fmt::Display,
    row: &[u8],
) -> Result<T, StoreError> {
    let (_, payload) = unseal(key, row)?;
    decode(key, payload)
}

/// Reads one row from a snapshot and decodes it.
fn read_row<T: serde::de::DeserializeOwned>(
    inner: &Inner,
    snapshot: &Snapshot,
    table: Table,
    key: &[u8],
    label: &dyn std::fmt::Display,
) -> Result<Option<T>, StoreError> {
    match snapshot
        .get(inner.table(table), key)
        .map_err(|e| storage_error("reading", e))?
    {
        Some(row) => decode_row(label, &row).map(Some),
        None => Ok(None),
    }
}

/// Display of a history row's key for error messages (formatted only when one is needed).
struct HistoryLabel<'a>(&'a UserKey, u64);

impl std::fmt::Display for HistoryLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&super::history_label(self.0, self.1))
    }
}

/// Display of a (tenant, user) key for error messages.
struct UserLabel<'a>(&'a str, &'a str);

impl std::fmt::Display for UserLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "user {}/{}", self.0, self.1)
    }
}

/// The rows of one durable commit, fenced row by row as they are added.
///
/// Built while [`Inner::writer`] is held, so the stored timestamps it compares against cannot
/// change under it. A key written twice keeps its later write, as in a database transaction.
struct FencedWrite<'a> {
    inner: &'a Inner,
    rows: HashMap<(Table, Vec<u8>), Vec<u8>>,
    /// Insertion order, so the journal entry is deterministic.
    order: Vec<(Table, Vec<u8>)>,
}

impl<'a> FencedWrite<'a> {
    fn new(inner: &'a Inner) -> Self {
        FencedWrite {
            inner,
            rows: HashMap::new(),
            order: Vec::new(),
        }
    }

    /// Adds `payload` under `key` unless the row already stored (or added to this commit)
    /// carries a larger write timestamp: a newer owner wrote it, and this write is a zombie's.
    ///
    /// A stored row that cannot be read is overwritten (and logged): refusing would wedge the
    /// partition forever on one bad row, and the new value is a complete record.
    fn put(
        &mut self,
        table: Table,
        key: Vec<u8>,
        label: &dyn std::fmt::Display,
        timestamp: i64,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let stored = match self.rows.get(&(table, key.clone())) {
            Some(row) => unseal(label, row).ok().map(|(ts, _)| ts),
            None => self
                .inner
                .table(table)
                .get(&key)
                .map_err(|e| storage_error("writing a batch", e))?
                .and_then(|row| match unseal(label, &row) {
                    Ok((ts, _)) => Some(ts),
                    Err(e) => {
                        tracing::warn!(key = %label, error = %e, "overwriting an unreadable row");
                        None
                    }
                }),
        };
        if let Some(stored) = stored.filter(|&stored| stored > timestamp) {
            tracing::debug!(key = %label, timestamp, stored, "fenced: a newer owner wrote this row");
            return Ok(());
        }
        match self.rows.entry((table, key)) {
            Entry::Occupied(mut row) => *row.get_mut() = seal(timestamp, payload),
            Entry::Vacant(slot) => {
                self.order.push(slot.key().clone());
                slot.insert(seal(timestamp, payload));
            }
        }
        Ok(())
    }

    /// Writes every row as one atomic journal entry and fsyncs it.
    fn commit(mut self) -> Result<(), StoreError> {
        let mut batch = self.inner.db.batch().durability(Some(PersistMode::SyncAll));
        for (table, key) in std::mem::take(&mut self.order) {
            if let Some(row) = self.rows.remove(&(table, key.clone())) {
                batch.insert(self.inner.table(table), key, row);
            }
        }
        batch
            .commit()
            .map_err(|e| storage_error("writing a batch", e))
    }
}

/// Every batch in one durable commit: one fsync per poll instead of one per partition.
fn apply_batches(inner: &Inner, batches: &[BatchWrite]) -> Result<(), StoreError> {
    let _writer = inner
        .writer
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut write = FencedWrite::new(inner);
    for batch in batches {
        add_batch(&mut write, batch)?;
    }
    write.commit()
}

fn add_batch(write: &mut FencedWrite<'_>, batch: &BatchWrite) -> Result<(), StoreError> {
    let ts = batch
        .write_timestamp
        .unwrap_or_else(codec::unfenced_timestamp);
    for (key, payload) in batch.user_rows()? {
        let label = UserLabel(&key.tenant, &key.user_id);
        let row_key = user_key(&key.tenant, &key.user_id);
        write.put(Table::Users, row_key, &label, ts, &payload)?;
    }
    for (key, record) in &batch.resources {
        let label = format!("resource {key}");
        let payload = encode(&label, record)?;
        write.put(Table::Resources, single_key(key), &label, ts, &payload)?;
    }
    for (key, seq, payload) in batch.history_rows()? {
        let label = HistoryLabel(key, seq);
        let row_key = history_key(&key.tenant, &key.user_id, seq);
        write.put(Table::History, row_key, &label, ts, &payload)?;
    }
    for (key, claim) in &batch.claims {
        let label = format!("claim {}/{}/{}", key.tenant, key.user_id, claim.claim_id);
        let payload = encode(&label, claim)?;
        let row_key = claim_key(&key.tenant, &key.user_id, &claim.claim_id);
        write.put(Table::Claims, row_key, &label, ts, &payload)?;
    }
    for count in &batch.finished {
        let label = format!(
            "finished {}/{}/{}",
            count.tenant, count.challenge_id, count.partition
        );
        let payload = encode(&label, &count.count)?;
        let row_key = finished_key(&count.tenant, count.challenge_id, &count.partition);
        write.put(Table::Finished, row_key, &label, ts, &payload)?;
    }
    if let Some(outbox) = &batch.outbox {
        let label = format!("outbox {}", outbox.owner);
        let row_key = single_key(&outbox.owner);
        write.put(Table::Outbox, row_key, &label, ts, &outbox.bytes)?;
    }
    Ok(())
}

#[async_trait]
impl StateStore for EmbeddedStore {
    async fn load_users(&self, keys: &[UserKey]) -> Result<Vec<Option<UserRecord>>, StoreError> {
        let keys = keys.to_vec();
        self.blocking(move |inner| {
            let snapshot = inner.db.snapshot();
            keys.iter()
                .map(|key| {
                    let label = UserLabel(&key.tenant, &key.user_id);
                    let row_key = user_key(&key.tenant, &key.user_id);
                    read_row(inner, &snapshot, Table::Users, &row_key, &label)
                })
                .collect()
        })
        .await
    }

    async fn load_resources(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<ResourceRecord>>, StoreError> {
        let keys = keys.to_vec();
        self.blocking(move |inner| {
            let snapshot = inner.db.snapshot();
            keys.iter()
                .map(|key| {
                    let label = format!("resource {key}");
                    read_row(inner, &snapshot, Table::Resources, &single_key(key), &label)
                })
                .collect()
        })
        .await
    }

    async fn load_outbox(&self, owner: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let owner = owner.to_string();
        self.blocking(move |inner| {
            let label = format!("outbox {owner}");
            match inner
                .table(Table::Outbox)
                .get(single_key(&owner))
                .map_err(|e| storage_error("loading an outbox", e))?
            {
                Some(row) => unseal(&label, &row).map(|(_, bytes)| Some(bytes.to_vec())),
                None => Ok(None),
            }
        })
        .await
    }

    async fn write_batch(&self, batch: &BatchWrite) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Cloned so the encoding, too, happens off the async workers.
        let batch = batch.clone();
        self.blocking(move |inner| apply_batches(inner, std::slice::from_ref(&batch)))
            .await
    }

    async fn write_batches(&self, batches: Vec<BatchWrite>) -> Result<(), StoreError> {
        let batches: Vec<BatchWrite> = batches.into_iter().filter(|b| !b.is_empty()).collect();
        if batches.is_empty() {
            return Ok(());
        }
        self.blocking(move |inner| apply_batches(inner, &batches))
            .await
    }

    async fn history(
        &self,
        key: &UserKey,
        page: u32,
        per_page: u32,
    ) -> Result<(Vec<HistoryEntry>, u64), StoreError> {
        let key = key.clone();
        self.blocking(move |inner| {
            // One snapshot: the count and the entries it pages over are from the same batch.
            let snapshot = inner.db.snapshot();
            let label = UserLabel(&key.tenant, &key.user_id);
            let row_key = user_key(&key.tenant, &key.user_id);
            let total = read_row::<UserRecord>(inner, &snapshot, Table::Users, &row_key, &label)?
                .map_or(0, |record| record.history_len);
            let mut entries = Vec::new();
            for seq in page_seqs(total, page, per_page) {
                let entry_label = HistoryLabel(&key, seq);
                let row_key = history_key(&key.tenant, &key.user_id, seq);
                if let Some(entry) =
                    read_row(inner, &snapshot, Table::History, &row_key, &entry_label)?
                {
                    entries.push(entry);
                }
            }
            Ok((entries, total))
        })
        .await
    }

    async fn claim(
        &self,
        key: &UserKey,
        claim_id: &str,
    ) -> Result<Option<ClaimRecord>, StoreError> {
        let key = key.clone();
        let claim_id = claim_id.to_string();
        self.blocking(move |inner| {
            let label = format!("claim {}/{}/{claim_id}", key.tenant, key.user_id);
            let row_key = claim_key(&key.tenant, &key.user_id, &claim_id);
            read_row(inner, &inner.db.snapshot(), Table::Claims, &row_key, &label)
        })
        .await
    }

    async fn people_finished(&self, tenant: &str) -> Result<BTreeMap<u32, u64>, StoreError> {
        let tenant = tenant.to_string();
        self.blocking(move |inner| {
            let ctx = "reading finished counts";
            // Keys start with the tenant's encoded name: its rows are exactly that prefix.
            let prefix = KeyBytes::default().str(&tenant).0;
            let mut sums = BTreeMap::new();
            for item in inner.table(Table::Finished).prefix(&prefix) {
                let (key, row) = item.into_inner().map_err(|e| storage_error(ctx, e))?;
                let label = format!("finished {tenant}/{key:?}");
                let challenge = key
                    .get(prefix.len()..prefix.len() + 4)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| StoreError::Corrupt {
                        key: label.clone(),
                        reason: "key too short for a challenge id".into(),
                    })?;
                let count: u64 = decode_row(&label, &row)?;
                let sum: &mut u64 = sums.entry(challenge).or_default();
                *sum = sum.saturating_add(count);
            }
            Ok(sums)
        })
        .await
    }

    async fn claim_partition(&self, group: &str, partition: &str) -> Result<i64, StoreError> {
        let group = group.to_string();
        let partition = partition.to_string();
        self.blocking(move |inner| {
            let ctx = "claiming a partition";
            // Under the writer lock: concurrent claims of one partition get distinct epochs.
            let _writer = inner
                .writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let table = inner.table(Table::Epochs);
            let key = epoch_key(&group, &partition);
            let previous = table
                .get(&key)
                .map_err(|e| storage_error(ctx, e))?
                .map(|v| {
                    <[u8; 8]>::try_from(&v[..])
                        .map(i64::from_be_bytes)
                        .map_err(|_| StoreError::Corrupt {
                            key: format!("epoch {group}/{partition}"),
                            reason: format!("{} bytes, not 8", v.len()),
                        })
                })
                .transpose()?;
            let epoch = codec::next_epoch(previous);
            let mut batch = inner.db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(table, key, epoch.to_be_bytes());
            batch.commit().map_err(|e| storage_error(ctx, e))?;
            Ok(epoch)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|inner| {
            inner
                .table(Table::Meta)
                .get(FORMAT_KEY)
                .map(drop)
                .map_err(|e| storage_error("ping", e))
        })
        .await
    }
}

/// The directory lock: an exclusive OS lock on `<dir>/LOCK`, which holds the owner's pid.
///
/// An OS lock (flock) rather than "the file exists": the kernel releases it when the owner
/// dies, even by `kill -9`, so a crash never leaves a stale lock that needs manual cleanup.
/// The file itself is never deleted (deleting a lock file races with a process opening it).
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let setup = |what: &str, e: std::io::Error| {
            StoreError::Setup(format!("cannot {what} {}: {e}", path.display()))
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| setup("open the lock file", e))?;
        if let Err(e) = file.try_lock_exclusive() {
            if e.raw_os_error() != fs2::lock_contended_error().raw_os_error() {
                return Err(setup("lock", e));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let pid = match holder.trim() {
                "" => "unknown".to_string(),
                pid => pid.to_string(),
            };
            return Err(StoreError::Setup(format!(
                "{} is locked by another questline process (pid {pid})",
                dir.display()
            )));
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| setup("write the owner's pid to", e))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Components are length-prefixed: ids that would collide if concatenated do not, and
    /// a tenant's keys share its prefix and no other tenant's.
    #[test]
    fn keys_never_collide_and_tenants_are_prefixes() {
        assert_ne!(user_key("ab", "c"), user_key("a", "bc"));
        assert_ne!(user_key("a\0", "b"), user_key("a", "\0b"));
        let acme = KeyBytes::default().str("acme").0;
        assert!(finished_key("acme", 7, "t:1").starts_with(&acme));
        assert!(!finished_key("acme2", 7, "t:1").starts_with(&acme));
        assert_eq!(
            history_key("t", "u", 258),
            [
                &[0, 0, 0, 1, b't', 0, 0, 0, 1, b'u'][..],
                &258u64.to_be_bytes()
            ]
            .concat()
        );
    }
}
