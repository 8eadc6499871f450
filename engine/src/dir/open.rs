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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dir::manifest::write;

    fn manifest(g: u64) -> Manifest {
        Manifest::new(g, u128::from(g) * 7)
    }

    #[test]
    fn an_open_that_races_a_switch_is_retried_on_the_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &manifest(1)).unwrap();
        let mut seen = Vec::new();
        let (got, m) = open_current(dir.path(), |m| {
            seen.push(m.generation);
            if m.generation == 1 {
                // A compaction switches while generation 1 is opened, and
                // its files are gone.
                write(dir.path(), &manifest(2)).unwrap();
                return Err(Error::io(
                    dir.path().join("g00000001.graph"),
                    std::io::ErrorKind::NotFound.into(),
                ));
            }
            Ok(m.generation * 10)
        })
        .unwrap();
        assert_eq!((got, m.generation, seen), (20, 2, vec![1, 2]));
    }

    #[test]
    fn an_error_without_a_switch_is_returned_at_once() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &manifest(3)).unwrap();
        let mut calls = 0;
        let r: Result<(u8, Manifest)> = open_current(dir.path(), |_| {
            calls += 1;
            Err(Error::EmptyInput)
        });
        assert!(matches!(r, Err(Error::EmptyInput)));
        assert_eq!(calls, 1);
    }

    #[test]
    fn switches_are_followed_a_bounded_number_of_times() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &manifest(1)).unwrap();
        let mut calls = 0u64;
        let (got, m) = open_current(dir.path(), |m| {
            calls += 1;
            // Every attempt sees a new switch: the last result stands.
            write(dir.path(), &manifest(m.generation + 1)).unwrap();
            Ok(m.generation)
        })
        .unwrap();
        assert_eq!(calls, SWITCH_RETRIES as u64 + 1);
        assert_eq!((got, m.generation), (calls, calls));
    }

    #[test]
    fn no_manifest_is_a_not_found_error() {
        let dir = tempfile::tempdir().unwrap();
        let r: Result<((), Manifest)> = open_current(dir.path(), |_| Ok(()));
        match r {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}
