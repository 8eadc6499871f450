//! Publishing a generation: its data files are put in place durably, then
//! the MANIFEST that names them replaces the old one. A crash at any point
//! leaves either the old or the new generation current
//! (`format-spec/manifest.md`).

use super::{gc, lock, manifest, names};
use crate::error::{Error, FileKind, Result};
use crate::format::manifest::Manifest;
use crate::fsio::{sync_dir, write_atomic, TempFile};
use std::fs;
use std::path::Path;

/// Writes a generation's two data files durably (temp name, fsync,
/// rename, fsync of the directory). They are not current until the
/// MANIFEST names them.
pub(crate) fn write_files(dir: &Path, m: &Manifest, graph: &[u8], vectors: &[u8]) -> Result<()> {
    write_atomic(dir, &names::graph(m.generation), graph)?;
    write_atomic(dir, &names::vectors(m.generation), vectors)?;
    sync_dir(dir)
}

/// Publishes the two files of a build in `dir` (created if missing) as its
/// next generation, under the writer lock; older generations' files are
/// removed after.
pub(crate) fn publish(
    dir: &Path,
    build_id: u128,
    graph: &[u8],
    vectors: &[u8],
) -> Result<Manifest> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Publishing replaces the index under any writer: take the writer lock.
    let _lock = lock::lock(dir)?;
    publish_locked(dir, build_id, |dir, m| write_files(dir, m, graph, vectors))
}

/// The number after `g`, or corruption if there is none.
pub(crate) fn next_generation(g: u64) -> Result<u64> {
    g.checked_add(1)
        .ok_or_else(|| Error::corrupt(FileKind::Manifest, "generation", "below u64::MAX", g))
}

/// [`publish`] for a caller that holds the writer lock of `dir`:
/// `put_files` puts the generation's two data files in place durably
/// ([`write_files`], or a rename of files written beforehand).
pub(crate) fn publish_locked(
    dir: &Path,
    build_id: u128,
    put_files: impl FnOnce(&Path, &Manifest) -> Result<()>,
) -> Result<Manifest> {
    let old = manifest::read(dir)?;
    let generation = match old {
        None => 1,
        Some(o) => next_generation(o.generation)?,
    };
    let m = Manifest::new(generation, build_id);
    // A log or tuning file left under the new generation's number (by a
    // compaction that died before its switch) must not be paired with
    // these files.
    for name in [names::log(generation), names::tuning(generation)] {
        let stale = dir.join(name);
        if let Err(e) = fs::remove_file(&stale) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(stale, e));
            }
        }
    }
    // A failure before the manifest names the new files removes them.
    let new_files =
        [names::graph(generation), names::vectors(generation)].map(|n| TempFile(Some(dir.join(n))));
    put_files(dir, &m)?;
    switch(dir, &m)?;
    new_files.into_iter().for_each(TempFile::keep);
    if let Some(o) = old {
        // Readers that still map the old files keep their pages (unlinked
        // files stay alive while mapped); failure to remove is harmless.
        // The old generation's log goes too: the new build replaced its data.
        gc::remove_generation(dir, o.generation);
    }
    Ok(m)
}

/// Writes the MANIFEST naming `m`. On an error, whether the switch
/// happened is what the MANIFEST says now: `Ok` if it names `m` after all.
pub(crate) fn switch(dir: &Path, m: &Manifest) -> Result<()> {
    match manifest::write(dir, m) {
        Err(e) if manifest::read(dir).ok().flatten() != Some(*m) => Err(e),
        _ => Ok(()),
    }
}
