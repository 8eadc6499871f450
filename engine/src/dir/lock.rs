//! The writer lock: an advisory lock on the directory's `LOCK` file, held
//! by the one process that may change the directory (a writer, a build
//! or publish replacing the index).

use super::names::LOCK_NAME;
use crate::error::{Error, Result};
use std::fs::{File, TryLockError};
use std::path::Path;

/// The directory's writer lock, held until dropped.
pub(crate) struct WriterLock {
    _file: File,
}

/// Takes the directory's writer lock; [`Error::WriterLocked`] if another
/// holder has it.
pub(crate) fn lock(dir: &Path) -> Result<WriterLock> {
    let path = dir.join(LOCK_NAME);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(WriterLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(Error::WriterLocked(dir.to_path_buf())),
        Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Whether another holder has the writer lock of `dir` now (without
/// creating the lock file; a snapshot that may change right after).
pub(crate) fn is_locked(dir: &Path) -> Result<bool> {
    let path = dir.join(LOCK_NAME);
    let file = match File::options().write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(&path, e)),
    };
    match file.try_lock() {
        Ok(()) => Ok(false),
        Err(TryLockError::WouldBlock) => Ok(true),
        Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_is_locked_tells() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_locked(dir.path()).unwrap(), "no lock file yet");
        assert!(
            !dir.path().join(LOCK_NAME).exists(),
            "not created by asking"
        );
        let held = lock(dir.path()).unwrap();
        assert!(is_locked(dir.path()).unwrap());
        assert!(matches!(lock(dir.path()), Err(Error::WriterLocked(_))));
        drop(held);
        assert!(!is_locked(dir.path()).unwrap());
        let _again = lock(dir.path()).unwrap();
    }
}
