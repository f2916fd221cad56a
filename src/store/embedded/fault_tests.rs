//! A full disk, injected: the embedded store fails writes while it lasts, and reopens its
//! database once space is freed.
//!
//! The fault injectors are a redb storage backend wrapping the real file backend, and the
//! journal's fault hook; while the disk is "full" every write and sync of either fails with
//! ENOSPC, as the kernel would report it.

use redb::backends::FileBackend;
use redb::StorageBackend;
use std::fs::OpenOptions;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::error::ErrorClass;
use crate::metrics::metrics;

/// Fault injector: the file backend, failing writes with ENOSPC while `full` is set.
#[derive(Debug)]
struct FullDiskInjector {
    file: FileBackend,
    full: Arc<AtomicBool>,
}

impl FullDiskInjector {
    fn check(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            Ok(())
        }
    }
}

impl StorageBackend for FullDiskInjector {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.file.read(offset, len)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.file.set_len(len)
    }

    fn sync_data(&self, eventual: bool) -> io::Result<()> {
        self.check()?;
        self.file.sync_data(eventual)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.file.write(offset, data)
    }
}

/// Opens the store with every open of its file going through a [`FullDiskInjector`].
fn open_injected(dir: &Path, full: &Arc<AtomicBool>) -> EmbeddedStore {
    let journal_full = Arc::clone(full);
    // Appends and syncs fail; creating an empty segment needs no data blocks, and succeeds.
    let journal_faults: Faults = Arc::new(move |action| {
        if journal_full.load(Ordering::SeqCst) && matches!(action, "append to" | "sync") {
            Err(io::Error::from_raw_os_error(libc::ENOSPC))
        } else {
            Ok(())
        }
    });
    let full = Arc::clone(full);
    EmbeddedStore::open_with(
        dir,
        Box::new(move |path| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            let backend = FullDiskInjector {
                file: FileBackend::new(file)?,
                full: Arc::clone(&full),
            };
            Database::builder().create_with_backend(backend)
        }),
        Some(journal_faults),
        EmbeddedOptions::default(),
    )
    .unwrap()
}

/// A user record at version `n` (its watermark and history length): shared with
/// `recovery_tests`.
pub(super) fn user(n: u64) -> UserRecord {
    UserRecord {
        applied: [("actions:0".into(), n as i64)].into_iter().collect(),
        history_len: n,
        ..UserRecord::default()
    }
}

fn batch(user_id: &str, n: u64) -> BatchWrite {
    BatchWrite {
        users: vec![(UserKey::new("t", user_id), user(n))],
        ..BatchWrite::default()
    }
}

async fn load(store: &EmbeddedStore, user_id: &str) -> Option<UserRecord> {
    store
        .load_users(&[UserKey::new("t", user_id)])
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_writes_and_wedges_the_database_until_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let full = Arc::new(AtomicBool::new(false));
    let store = open_injected(dir.path(), &full);
    store.write_batch(&batch("before", 1)).await.unwrap();
    let epoch = store.claim_partition("g", "p0").await.unwrap();
    assert!(!store.is_wedged());
    store.ping().await.unwrap();

    // The disk fills up: the journal cannot take the batch, and the write fails, transient.
    full.store(true, Ordering::SeqCst);
    let err = store
        .write_batch(&batch("during", 2))
        .await
        .expect_err("the disk is full");
    assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    assert!(
        matches!(err, StoreError::Journal { .. }),
        "the journal's error: {err:?}"
    );
    assert_eq!(
        load(&store, "during").await,
        None,
        "a failed write is not visible"
    );
    // The checkpoint cannot write the database either: it is wedged, and readiness says so.
    let err = store.checkpoint().await.expect_err("the disk is full");
    assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    assert!(store.is_wedged());
    assert_eq!(metrics().store_wedged.get(), 1);
    for _ in 0..2 {
        let err = store
            .write_batch(&batch("during", 2))
            .await
            .expect_err("still full");
        assert_eq!(err.class(), ErrorClass::Transient, "{err:?}");
    }
    let err = store.ping().await.expect_err("readiness says wedged");
    assert!(matches!(err, StoreError::Wedged { .. }), "{err:?}");
    assert!(store.is_wedged());
    assert_eq!(metrics().store_wedged.get(), 1);

    // Space is freed: the same store object recovers on its next call.
    full.store(false, Ordering::SeqCst);
    store.write_batch(&batch("during", 2)).await.unwrap();
    assert!(!store.is_wedged());
    assert_eq!(metrics().store_wedged.get(), 0);
    store.ping().await.unwrap();
    store.checkpoint().await.unwrap();
    assert_eq!(load(&store, "before").await, Some(user(1)));
    assert_eq!(load(&store, "during").await, Some(user(2)));
    // Fencing survived the reopen: the next claim still outranks the one before the fault.
    assert!(store.claim_partition("g", "p0").await.unwrap() > epoch);
    // And the directory stayed locked throughout.
    let err = EmbeddedStore::open(dir.path()).expect_err("still owned");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    drop(store);
    // Closed cleanly: the journal was emptied into the database.
    let segments = std::fs::read_dir(dir.path().join(journal::DIR))
        .unwrap()
        .filter(|e| journal::segment_number(&e.as_ref().unwrap().file_name()).is_some())
        .count();
    assert_eq!(segments, 1, "only the new, empty segment of the last open");
}
