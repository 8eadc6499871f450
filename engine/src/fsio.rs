//! The one atomic write: temporary name in the same directory, fsync,
//! rename, and the directory fsync that makes renames durable. A leaf:
//! the directory layer and the log appender both use it.

use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `dir/name` crash-safely: a temporary name in the same
/// directory, fsync, then rename over the final name (the caller fsyncs
/// the directory, [`sync_dir`], once it has renamed all it needs).
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = temp_path(dir, name);
    let fin = dir.join(name);
    let guard = TempFile(Some(tmp.clone()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    f.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &fin).map_err(|e| Error::io(&fin, e))?;
    guard.keep();
    Ok(fin)
}

/// A temporary name for `name` in `dir`: unique per process and call, so
/// concurrent writers never share a temp file; left-over ones are removed
/// when a writer opens the directory ([`is_temp_name`]).
pub(crate) fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".{name}.tmp-{}-{seq}", std::process::id()))
}

/// Whether a file name is one [`temp_path`] makes.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp-")
}

/// Removes a temporary file when dropped, unless [`TempFile::keep`] was
/// called: every error path of a write removes what it left behind.
pub(crate) struct TempFile(pub(crate) Option<PathBuf>);

impl TempFile {
    /// The file was renamed into place (or is wanted): do not remove it.
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Fsyncs a directory so renames inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(())
}
