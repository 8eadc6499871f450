//! The MANIFEST on disk: read it, replace it atomically. Its bytes are
//! encoded and decoded by [`crate::format::manifest`].

use super::names::MANIFEST_NAME;
use crate::error::{Error, Result};
use crate::format::manifest::Manifest;
use crate::fsio::{sync_dir, write_atomic};
use std::path::Path;

/// Reads the manifest of `dir`; `Ok(None)` if there is none.
pub(crate) fn read(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST_NAME);
    match crate::regular::read_regular(&path) {
        Ok(b) => Manifest::decode(&b).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Reads the manifest of `dir`, which must exist.
pub(crate) fn read_current(dir: &Path) -> Result<Manifest> {
    read(dir)?.ok_or_else(|| no_index(dir))
}

/// Makes `m` the current generation (or its new log bound): the
/// manifest's atomic replacement, durable when this returns.
pub(crate) fn write(dir: &Path, m: &Manifest) -> Result<()> {
    write_atomic(dir, MANIFEST_NAME, &m.encode())?;
    sync_dir(dir)
}

/// The error for a directory without a MANIFEST.
pub(crate) fn no_index(dir: &Path) -> Error {
    Error::io(
        dir.join(MANIFEST_NAME),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no strata index here (MANIFEST missing)",
        ),
    )
}
