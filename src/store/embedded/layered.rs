//! The embedded store's write path: the journal, the overlays above redb, and the checkpoint
//! that moves rows down into redb.
//!
//! A write appends its batch's rows to the [journal](super::journal) and syncs it — that is
//! the durable point the commit protocol relies on — then puts them into the active
//! [overlay](super::overlay), where readers see them at once: fenced against the overlays'
//! rows, and against redb's when they are read or checkpointed (see the overlay's doc). When
//! the active overlay holds `store.journal_mb` ([`DEFAULT_CHECKPOINT_BYTES`]), or
//! [`CHECKPOINT_INTERVAL`] has passed, it is *frozen*: the journal moves on to a new segment,
//! and a background thread writes the frozen overlay into redb in one durable commit (sorted,
//! each touched page copied once), then retires the segments it covered (keeps one to be
//! reused as a new segment: see the journal's doc). At most one overlay
//! is frozen at a time, so memory is bounded by about twice `store.journal_mb`: a write that
//! finds the active overlay full while the previous one is still being checkpointed waits for
//! it (backpressure), for up to [`FREEZE_WAIT`].
//!
//! # Lock order
//!
//! `journal` (one writer at a time; freezes happen under it) → `layers` → redb's transactions.
//! Readers take `layers` before they begin a redb transaction (writers begin none), and the
//! checkpoint drops the frozen overlay (under `layers`) only after its commit: so whoever does
//! not see the frozen overlay any more sees its rows in redb.

use redb::Durability;
use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::history_log;
use super::journal::{self, Faults, Journal, Rows};
use super::overlay::{Frozen, Layers, RowKey};
use super::priority;
use super::reopen::Reopening;
use super::tables::{outranks, storage_error, ReadTables, WriteTables};
use super::EmbeddedOptions;
use crate::metrics::metrics;
use crate::store::StoreError;

/// The active overlay is frozen and checkpointed once it holds this much (estimated memory),
/// unless `store.journal_mb` says otherwise.
pub(super) const DEFAULT_CHECKPOINT_BYTES: usize = 32 << 20;
/// …or once this long has passed since the last checkpoint, so that an idle store's journal
/// is short and its memory returned.
pub(super) const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a write waits for the previous checkpoint before it fails (transient, retried).
const FREEZE_WAIT: Duration = Duration::from_secs(30);
/// A write's wait for the checkpoint that is worth a warning: a checkpoint falling behind.
const SLOW_CHECKPOINT_WAIT: Duration = Duration::from_secs(1);
/// How long a failed checkpoint waits before it tries again.
const RETRY: Duration = Duration::from_secs(1);

/// Everything behind the store's handle that the checkpoint thread shares.
pub(super) struct Layered {
    pub(super) db: Reopening,
    layers: RwLock<Layers>,
    journal: Mutex<Journal>,
    journal_dir: PathBuf,
    /// The active overlay's size at which it is frozen (`store.journal_mb`).
    checkpoint_bytes: usize,
    signal: Mutex<Signal>,
    changed: Condvar,
    /// Held for a whole checkpoint: the thread's, the last one at close and
    /// [`Layered::checkpoint_now`]'s never interleave, so a checkpoint drops exactly the
    /// frozen overlay it wrote (a freeze cannot replace it while it is pending).
    checkpointing: Mutex<()>,
    /// Per input partition, the highest history chunk the store holds (looked up in redb at
    /// the input's first chunk since the store opened; every chunk written since goes through
    /// [`Layered::merge_history_chunks`], under the journal's lock, which raises it). redb
    /// alone is enough for that first lookup: opening replays the journal into redb, so until
    /// the input's first write the overlays hold none of its chunks. A chunk above the
    /// frontier cannot be stored: its merge reads nothing. Too high is harmless (a lookup that
    /// finds nothing); too low would lose entries, and cannot happen while this process is the
    /// store's only writer (the lock file).
    chunk_frontier: Mutex<FxHashMap<String, i64>>,
}

#[derive(Default)]
struct Signal {
    /// A frozen overlay waits for its checkpoint.
    frozen: bool,
    /// The store is closing: the checkpoint thread stops.
    stop: bool,
    /// Why the last checkpoint failed, until one succeeds.
    failure: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl Layered {
    /// Replays what the journal in `journal_dir` holds into redb, then starts a new segment.
    pub(super) fn open(
        db: Reopening,
        journal_dir: PathBuf,
        faults: Option<Faults>,
        options: EmbeddedOptions,
    ) -> Result<Self, StoreError> {
        let segments = journal::read_all(&journal_dir)?;
        let last = segments.last().map_or(0, |s| s.number);
        let batches: usize = segments.iter().map(|s| s.batches.len()).sum();
        if batches > 0 {
            let started = Instant::now();
            db.with(|db| {
                commit(db, |tables| {
                    for rows in segments.iter().flat_map(|s| &s.batches) {
                        for (key, row) in rows {
                            tables.put(key, row)?;
                        }
                    }
                    Ok(())
                })
            })?;
            tracing::info!(
                batches,
                segments = segments.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "embedded store: replayed the journal into the database"
            );
        }
        for segment in segments.iter().filter(|s| s.dropped_bytes > 0) {
            tracing::warn!(
                segment = segment.number,
                bytes = segment.dropped_bytes,
                "embedded store: dropped the end of a journal segment that was cut short by a \
                 crash or a failed write (it was never acknowledged)"
            );
        }
        if last > 0 {
            journal::retire_through(&journal_dir, last, 0).map_err(|source| {
                StoreError::Journal {
                    action: "delete replayed segments in",
                    path: journal_dir.clone(),
                    source,
                }
            })?;
        }
        let newest =
            journal::newest_number(&journal_dir, last).map_err(|source| StoreError::Journal {
                action: "list kept segments in",
                path: journal_dir.clone(),
                source,
            })?;
        let journal = Journal::create(&journal_dir, newest + 1, faults, options.direct_journal)?;
        tracing::debug!(
            direct = journal.is_direct(),
            "embedded store: journal segment opened (direct: around the page cache)"
        );
        Ok(Layered {
            db,
            layers: RwLock::new(Layers::default()),
            journal: Mutex::new(journal),
            journal_dir,
            checkpoint_bytes: options.checkpoint_bytes,
            signal: Mutex::new(Signal::default()),
            changed: Condvar::new(),
            checkpointing: Mutex::new(()),
            chunk_frontier: Mutex::new(FxHashMap::default()),
        })
    }

    /// Makes `rows` (in the order written) durable, then visible. History chunks bring only
    /// their new entries; each is merged into the chunk's newest row first
    /// ([`history_log::merge`]), under the journal's lock, so writes cannot interleave.
    pub(super) fn write(&self, mut rows: Rows) -> Result<(), StoreError> {
        let mut journal = lock(&self.journal);
        if read_lock(&self.layers).active.bytes() >= self.checkpoint_bytes {
            self.freeze(&mut journal, Some(FREEZE_WAIT))?;
        }
        self.merge_history_chunks(&mut rows)?;
        journal.append(&rows)?;
        // The write reads redb only for a history chunk it continues, but while a wedged
        // database cannot be reopened it fails (transient) as reads do: the batch is in the
        // journal, and the caller's retry appends it again.
        self.db.ensure_open()?;
        let mut layers = write_lock(&self.layers);
        for (key, row) in rows {
            // Fenced against the overlays only: redb's row is compared with it by whoever
            // reads it or checkpoints it (see the overlay's doc).
            layers.write_fenced(&key, row);
        }
        Ok(())
    }

    /// Replaces each history chunk row of `rows` by the chunk's whole newest row with its new
    /// entries merged in: the stored chunk is the one an earlier row of `rows` wrote, else the
    /// layers' or redb's. A batch's chunks are mostly new (the offsets only grow), so only the
    /// chunk a batch continues from the one before is read and rewritten: a chunk past the
    /// highest the store holds for its input ([`Layered::chunk_frontier`]) is known to be new
    /// without a lookup, and a batch whose chunks are all new reads nothing.
    fn merge_history_chunks(&self, rows: &mut Rows) -> Result<(), StoreError> {
        if !rows
            .iter()
            .any(|(key, _)| matches!(key, RowKey::HistoryChunk(..)))
        {
            return Ok(());
        }
        let mut frontier = lock(&self.chunk_frontier);
        let may_be_stored = rows.iter().any(|(key, _)| match key {
            RowKey::HistoryChunk(input, chunk) => frontier
                .get(input.as_str())
                .is_none_or(|newest| chunk <= newest),
            _ => false,
        });
        if may_be_stored {
            self.read(|view| merge_chunks(rows, &mut frontier, Some(view)))
        } else {
            merge_chunks(rows, &mut frontier, None)
        }
    }

    /// Runs `read` over the layers and a redb snapshot taken after them.
    pub(super) fn read<T>(
        &self,
        read_fn: impl FnOnce(&View<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.db.with(|db| {
            let layers = read_lock(&self.layers);
            let txn = db
                .begin_read()
                .map_err(|e| storage_error("reading rows", e))?;
            let tables = ReadTables::open(&txn)?;
            read_fn(&View {
                layers: &layers,
                tables: &tables,
            })
        })
    }

    /// Moves the active overlay to the frozen slot and the journal to a new segment, after
    /// waiting up to `wait` for the previous frozen overlay's checkpoint; with no `wait`, does
    /// nothing while one is pending.
    fn freeze(&self, journal: &mut Journal, wait: Option<Duration>) -> Result<(), StoreError> {
        let started = Instant::now();
        let mut signal = lock(&self.signal);
        while let (true, false, Some(wait)) = (signal.frozen, signal.stop, wait) {
            let waited = started.elapsed();
            if waited >= wait {
                return Err(StoreError::CheckpointBehind {
                    waited,
                    reason: signal.failure.clone(),
                });
            }
            signal = self
                .changed
                .wait_timeout(signal, wait - waited)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if signal.frozen || read_lock(&self.layers).active.is_empty() {
            return Ok(());
        }
        let waited = started.elapsed();
        if wait.is_some() && waited >= SLOW_CHECKPOINT_WAIT {
            tracing::warn!(
                waited_ms = waited.as_millis() as u64,
                "embedded store: a write waited for the checkpoint (a disk slower than the \
                 writes, or, under store.idle_checkpoint, cores kept busy by other processes)"
            );
        } else if wait.is_some() && waited >= Duration::from_millis(1) {
            tracing::debug!(
                waited_ms = waited.as_millis() as u64,
                "embedded store: a write waited for the checkpoint"
            );
        }
        let through_segment = journal.rotate()?;
        let mut layers = write_lock(&self.layers);
        let overlay = std::mem::take(&mut layers.active);
        layers.frozen = Some(Arc::new(Frozen {
            overlay,
            through_segment,
        }));
        signal.frozen = true;
        self.changed.notify_all();
        Ok(())
    }

    /// Writes the frozen overlay, if there is one, into redb; then drops it and the journal
    /// segments it covered.
    fn checkpoint(&self) -> Result<(), StoreError> {
        let _one_at_a_time = lock(&self.checkpointing);
        let Some(frozen) = read_lock(&self.layers).frozen.clone() else {
            return Ok(());
        };
        let started = Instant::now();
        // Until every row is put: the rest is redb's commit (its page checksums and sync).
        let mut put = Duration::ZERO;
        self.db.with(|db| {
            commit(db, |tables| {
                // One key decoded into again and again: its strings' buffers are reused.
                let mut key = RowKey::Outbox(String::new());
                for (encoded, row) in frozen.overlay.iter() {
                    encoded.decode_into(&mut key);
                    tables.put(&key, row)?;
                }
                put = started.elapsed();
                Ok(())
            })
        })?;
        let elapsed = started.elapsed();
        metrics()
            .store_seconds
            .with_label_values(&["checkpoint"])
            .observe(elapsed.as_secs_f64());
        tracing::debug!(
            rows = frozen.overlay.len(),
            bytes = frozen.overlay.bytes(),
            elapsed_ms = elapsed.as_millis() as u64,
            commit_ms = elapsed.saturating_sub(put).as_millis() as u64,
            "embedded store: checkpointed"
        );
        write_lock(&self.layers).frozen = None;
        let retired =
            journal::retire_through(&self.journal_dir, frozen.through_segment, journal::SPARES);
        if let Err(e) = retired {
            // Harmless: the segments are replayed (idempotently) at the next open.
            tracing::warn!(error = %e, "embedded store: cannot retire checkpointed journal segments");
        }
        let mut signal = lock(&self.signal);
        signal.frozen = false;
        signal.failure = None;
        self.changed.notify_all();
        Ok(())
    }

    /// Freezes whatever the active overlay holds and checkpoints it: after this, with no write
    /// in between, redb holds everything and the journal is empty.
    pub(super) fn checkpoint_now(&self) -> Result<(), StoreError> {
        self.checkpoint()?;
        self.freeze(&mut lock(&self.journal), None)?;
        self.checkpoint()
    }

    /// The checkpoint thread's loop: checkpoints each frozen overlay, and freezes the active
    /// one every [`CHECKPOINT_INTERVAL`]; retries a failed checkpoint every [`RETRY`].
    fn run(&self) {
        let mut last_report: Option<Instant> = None;
        loop {
            {
                let signal = lock(&self.signal);
                let signal = if signal.frozen || signal.stop {
                    signal
                } else {
                    self.changed
                        .wait_timeout(signal, CHECKPOINT_INTERVAL)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                };
                if signal.stop {
                    return;
                }
            }
            let result = self.freeze_if_idle().and_then(|()| self.checkpoint());
            if let Err(e) = result {
                if last_report.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(error = %e, "embedded store: checkpoint failed; retrying");
                    last_report = Some(Instant::now());
                }
                let mut signal = lock(&self.signal);
                signal.failure = Some(e.to_string());
                let _ = self
                    .changed
                    .wait_timeout_while(signal, RETRY, |s| !s.stop)
                    .unwrap_or_else(|p| p.into_inner());
            } else {
                last_report = None;
            }
        }
    }

    /// Freezes the active overlay when no frozen one is waiting (the interval passed).
    fn freeze_if_idle(&self) -> Result<(), StoreError> {
        if lock(&self.signal).frozen {
            return Ok(());
        }
        self.freeze(&mut lock(&self.journal), None)
    }
}

/// Runs `write` in one durable redb transaction.
fn commit(
    db: &redb::Database,
    write: impl FnOnce(&mut WriteTables<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let ctx = "checkpointing";
    let mut txn = db.begin_write().map_err(|e| storage_error(ctx, e))?;
    // Explicit even though it is redb's default: the journal is deleted after this returns.
    txn.set_durability(Durability::Immediate);
    {
        let mut tables = WriteTables::open(&txn)?;
        write(&mut tables)?;
    }
    txn.commit().map_err(|e| storage_error(ctx, e))
}

/// [`Layered::merge_history_chunks`]'s merge. `view` is `None` only when the frontier tells
/// that every chunk of `rows` is new (checked under the same lock). Raises the frontier of
/// each input to the highest chunk written; a write that then fails leaves it too high, which
/// costs a lookup and never misses a row.
fn merge_chunks(
    rows: &mut Rows,
    frontier: &mut FxHashMap<String, i64>,
    view: Option<&View<'_>>,
) -> Result<(), StoreError> {
    let mut written: FxHashMap<RowKey, usize> = FxHashMap::default();
    for i in 0..rows.len() {
        let RowKey::HistoryChunk(input, chunk) = &rows[i].0 else {
            continue;
        };
        let merged = match written.get(&rows[i].0) {
            Some(&earlier) => history_log::merge(&rows[i].0, Some(&rows[earlier].1), &rows[i].1)?,
            None => {
                // The highest chunk stored for the input. Without a view every chunk of
                // `rows` was above the frontier before this merge (which may have raised it
                // since), so none is stored and `known` is set.
                let known = frontier.get(input.as_str()).copied();
                let newest = match (known, view) {
                    // redb only: see `Layered::chunk_frontier` for why the overlays hold none.
                    (None, Some(view)) => view.tables.last_chunk(input)?,
                    _ => known,
                };
                let stored = match view {
                    Some(view) if newest.is_some_and(|newest| *chunk <= newest) => {
                        view.get(&rows[i].0)?
                    }
                    _ => None,
                };
                let merged = history_log::merge(&rows[i].0, stored.as_deref(), &rows[i].1)?;
                let highest = newest.map_or(*chunk, |newest| newest.max(*chunk));
                match frontier.get_mut(input.as_str()) {
                    Some(held) => *held = highest,
                    None => {
                        frontier.insert(input.clone(), highest);
                    }
                }
                merged
            }
        };
        if let Some(merged) = merged {
            rows[i].1 = merged;
        }
        written.insert(rows[i].0.clone(), i);
    }
    Ok(())
}

/// The newest rows: the overlays, then redb's snapshot.
pub(super) struct View<'a> {
    pub(super) layers: &'a Layers,
    pub(super) tables: &'a ReadTables,
}

impl View<'_> {
    /// The newest row of `key`, borrowed: an overlay's or redb's snapshot's, whichever
    /// outranks (overlay rows are not fenced against redb's when written).
    pub(super) fn get(&self, key: &RowKey) -> Result<Option<Row<'_>>, StoreError> {
        let stored = self.tables.get(key)?;
        Ok(match (self.layers.get(key), stored) {
            (Some(row), Some(stored)) if !outranks(key, row, Some(stored.value())) => {
                Some(Row::Stored(stored))
            }
            (Some(row), _) => Some(Row::Overlay(row)),
            (None, stored) => stored.map(Row::Stored),
        })
    }
}

/// A row [`View::get`] found, without copying it.
pub(super) enum Row<'a> {
    Overlay(&'a [u8]),
    Stored(redb::AccessGuard<'static, &'static [u8]>),
}

impl std::ops::Deref for Row<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Row::Overlay(row) => row,
            Row::Stored(guard) => guard.value(),
        }
    }
}

/// The checkpoint thread: started with the store, stopped (and a last checkpoint made) when
/// the store closes.
pub(super) struct Checkpointer {
    layered: Arc<Layered>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// `idle_cpu`: the thread runs under the idle scheduling policy (`store.idle_checkpoint`).
    pub(super) fn start(layered: &Arc<Layered>, idle_cpu: bool) -> Result<Self, StoreError> {
        let shared = Arc::clone(layered);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || {
                if let Err(e) = priority::idle_io_for_this_thread() {
                    // Only slower appends while a checkpoint writes (a kernel without
                    // ioprio_set, or a seccomp filter that refuses it).
                    tracing::debug!(error = %e, "embedded store: checkpoint I/O keeps its priority");
                }
                if idle_cpu {
                    if let Err(e) = priority::idle_cpu_for_this_thread() {
                        // Only the checkpoint competing for the cores as before.
                        tracing::debug!(error = %e, "embedded store: checkpoint CPU keeps its priority");
                    }
                }
                shared.run()
            })
            .map_err(|source| StoreError::Journal {
                action: "start the checkpoint thread for",
                path: layered.journal_dir.clone(),
                source,
            })?;
        Ok(Checkpointer {
            layered: Arc::clone(layered),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        lock(&self.layered.signal).stop = true;
        self.layered.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // A clean close leaves the journal empty; if this fails it is replayed at the next open.
        if let Err(e) = self.layered.checkpoint_now() {
            tracing::warn!(error = %e, "embedded store: last checkpoint failed; the journal is replayed at the next open");
        }
    }
}
