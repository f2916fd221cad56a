//! The embedded store's database, closed and opened again after an I/O failure.
//!
//! When a write fails with an I/O error (a full disk, typically), redb refuses every later
//! operation on that `Database` (`PreviousIo`) until it is closed and opened again; opening
//! repairs the file back to its last commit. Without a reopen the worker would retry forever
//! and stay stuck after the space is freed, until a restart. So an I/O failure marks the
//! handle *wedged*, and the next call closes the database and opens it again. Until that
//! succeeds every call fails with a transient [`StoreError::Wedged`] (the caller backs off and
//! retries), `ping` fails (readiness), and the `questline_store_wedged` gauge is 1.
//!
//! Every call holds the shared side of a lock for as long as it uses the database, and a
//! reopen holds the exclusive side, so no transaction is open while the file changes hands.
//! What the store guarantees is unchanged by a reopen: the directory lock belongs to the store
//! and stays held, and fencing lives in the committed data (row write timestamps, partition
//! epochs), which the repair keeps; the failed transaction was not committed, and the caller
//! writes its batch again.

use redb::Database;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::metrics::metrics;
use crate::store::StoreError;

/// Opens (or creates) the database file: redb's file backend in production; tests wrap it to
/// inject faults.
pub(super) type Opener =
    Box<dyn Fn(&Path) -> Result<Database, redb::DatabaseError> + Send + Sync + 'static>;

pub(super) struct Reopening {
    slot: RwLock<Slot>,
    /// Set by an I/O failure, cleared by a successful reopen. Read without the lock so the
    /// healthy path costs one atomic load.
    wedged: AtomicBool,
    /// Reopen attempts so far: a call that waited for the lock while another call attempted
    /// one does not repeat it at once (see [`Reopening::reopen`]).
    attempts: AtomicU64,
    file: PathBuf,
    open: Opener,
}

struct Slot {
    /// `None` after a reopen failed: the old database is closed, no new one is open yet.
    db: Option<Database>,
    /// Why the last reopen failed.
    failure: Option<Arc<redb::DatabaseError>>,
}

impl Reopening {
    pub(super) fn open(file: PathBuf, open: Opener) -> Result<Self, StoreError> {
        let db = open(&file).map_err(|source| StoreError::Open {
            path: file.clone(),
            source: Box::new(source),
        })?;
        Ok(Reopening {
            slot: RwLock::new(Slot {
                db: Some(db),
                failure: None,
            }),
            wedged: AtomicBool::new(false),
            attempts: AtomicU64::new(0),
            file,
            open,
        })
    }

    /// Whether an I/O failure closed the database and no reopen has succeeded since.
    pub(super) fn is_wedged(&self) -> bool {
        self.wedged.load(Ordering::Acquire)
    }

    /// Reopens a wedged database, or fails while it cannot be: for a call that uses no
    /// transaction (the journal's write) but must fail, and recover, as the others do.
    pub(super) fn ensure_open(&self) -> Result<(), StoreError> {
        self.with(|_| Ok(()))
    }

    /// Runs `work` on the open database, reopening it first if it is wedged. An I/O failure
    /// in `work` wedges it; the error is returned as it is (transient).
    pub(super) fn with<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.is_wedged() {
            self.reopen()?;
        }
        let slot = self.slot.read().unwrap_or_else(|p| p.into_inner());
        let Some(db) = slot.db.as_ref() else {
            // Another call wedged it and failed to reopen between the check and the lock.
            return Err(StoreError::Wedged {
                source: slot.failure.clone(),
            });
        };
        let result = work(db);
        if let Err(e) = &result {
            if needs_reopen(e) {
                self.wedge(e);
            }
        }
        result
    }

    fn wedge(&self, cause: &StoreError) {
        if !self.wedged.swap(true, Ordering::AcqRel) {
            tracing::error!(
                file = %self.file.display(),
                error = %cause,
                "embedded store failed to write or read its file; it is reopened on the next \
                 call, and calls fail until that succeeds (free disk space if it is full)"
            );
            metrics().store_wedged.set(1);
        }
    }

    /// Closes the database and opens it again, unless another call did (or tried) meanwhile.
    fn reopen(&self) -> Result<(), StoreError> {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut slot = self.slot.write().unwrap_or_else(|p| p.into_inner());
        if !self.is_wedged() {
            return Ok(());
        }
        if self.attempts.load(Ordering::Acquire) != seen {
            // Another call tried while this one waited and failed: a repair reads the whole
            // file, so leave the next attempt to the callers' backoff.
            return Err(StoreError::Wedged {
                source: slot.failure.clone(),
            });
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
        // Closed before opening: redb holds a lock of its own on the file.
        drop(slot.db.take());
        match (self.open)(&self.file) {
            Ok(db) => {
                slot.db = Some(db);
                slot.failure = None;
                self.wedged.store(false, Ordering::Release);
                metrics().store_wedged.set(0);
                tracing::info!(file = %self.file.display(), "embedded store reopened");
                Ok(())
            }
            Err(e) => {
                let e = Arc::new(e);
                slot.failure = Some(Arc::clone(&e));
                tracing::warn!(
                    file = %self.file.display(),
                    error = %e,
                    "embedded store could not be reopened yet"
                );
                Err(StoreError::Wedged { source: Some(e) })
            }
        }
    }
}

/// The redb errors after which its `Database` must be closed and opened again.
fn needs_reopen(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Embedded { source, .. }
            if matches!(**source, redb::Error::Io(_) | redb::Error::PreviousIo)
    )
}
