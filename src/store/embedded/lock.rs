//! The directory lock: one process owns an embedded store directory at a time.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::store::StoreError;

const LOCK_FILE: &str = "LOCK";

/// An exclusive OS lock on `<dir>/LOCK`, which holds the owner's pid.
///
/// An OS lock (`flock`, through the standard library's [`File::try_lock`]) rather than "the
/// file exists": the kernel releases it when the owner dies, even by `kill -9`, so a crash
/// never leaves a stale lock that needs manual cleanup. The file itself is never deleted
/// (deleting a lock file races with a process opening it). Held for the store's whole life,
/// across reopens of its database.
pub(super) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let failed = |action, source| StoreError::LockFile {
            action,
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| failed("open the lock file", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // The owner writes its pid right after locking: an empty or partly written
                // file (it is starting up) reads as an unknown pid.
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                    pid: holder.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(failed("lock", e)),
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .map_err(|e| failed("write the owner's pid to", e))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    #[test]
    fn a_second_lock_names_the_owner_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).err().expect("locked");
        assert!(
            matches!(&err, StoreError::Locked { pid: Some(pid), .. } if *pid == std::process::id()),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Fatal);
        drop(first);
        assert!(DirLock::acquire(dir.path()).is_ok());
    }
}
