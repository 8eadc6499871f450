//! Opening the current generation: the one retry loop for a generation
//! switched (and its files removed) while it was being opened, and the
//! mapping of its files.

use super::{manifest, names};
use crate::error::{Error, Result};
use crate::format::bytes::Bytes;
use crate::format::manifest::Manifest;
use std::path::{Path, PathBuf};

/// How many times an open follows a generation switch before giving up
/// with the last attempt's result.
const SWITCH_RETRIES: usize = 3;

/// Opens the generation the MANIFEST of `dir` names with `open`, and
/// returns it with that MANIFEST. If the MANIFEST names another generation
/// once `open` returns (a publish or compaction switched meanwhile and may
/// have removed the files `open` was reading), `open` runs again on the
/// new one, up to [`SWITCH_RETRIES`] times; otherwise its result stands,
/// error or not. The only retry loop of the crate's open paths.
pub(crate) fn open_current<T>(
    dir: &Path,
    mut open: impl FnMut(&Manifest) -> Result<T>,
) -> Result<(T, Manifest)> {
    let mut switches = 0;
    loop {
        let m = manifest::read_current(dir)?;
        let result = open(&m);
        if switches < SWITCH_RETRIES {
            let now = manifest::read(dir)?;
            if now.map(|n| (n.generation, n.build_id)) != Some((m.generation, m.build_id)) {
                switches += 1;
                continue;
            }
        }
        return result.map(|t| (t, m));
    }
}

/// Paths of the files of the generation `m` names.
pub(crate) struct GenerationPaths {
    pub graph: PathBuf,
    pub vectors: PathBuf,
    pub log: PathBuf,
}

/// Where the files of the generation `m` names are.
pub(crate) fn paths(dir: &Path, m: &Manifest) -> GenerationPaths {
    GenerationPaths {
        graph: dir.join(names::graph(m.generation)),
        vectors: dir.join(names::vectors(m.generation)),
        log: dir.join(names::log(m.generation)),
    }
}

/// Maps a regular file read-only.
pub(crate) fn map(path: &Path) -> Result<Bytes> {
    let f = crate::regular::open_regular(path).map_err(|e| Error::io(path, e))?;
    Bytes::map(&f, path)
}

/// Bytes of records in the generation's log (past its header), 0 if it has
/// none.
pub(crate) fn logged_bytes(paths: &GenerationPaths) -> u64 {
    std::fs::metadata(&paths.log)
        .map(|meta| meta.len().saturating_sub(crate::limits::LOG_HEADER as u64))
        .unwrap_or(0)
}
