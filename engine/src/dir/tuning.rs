//! A generation's tuning file on disk (`gNNNNNNNN.tuning`): read it,
//! replace it atomically. Its bytes are
//! encoded and decoded by [`crate::format::tuning`].

use super::names;
use crate::error::{Error, FileKind, Result};
use crate::format::tuning::{decode, encode, tuning_len};
use crate::fsio::{sync_dir, write_atomic};
use crate::tuning::{Tuning, MAX_TUNING_POINTS};
use std::io::Read;
use std::path::Path;

/// The stored points of generation `g` of build `build_id`, validated;
/// `Ok(None)` if it has none.
pub(crate) fn read(dir: &Path, g: u64, build_id: u128) -> Result<Option<Tuning>> {
    let path = dir.join(names::tuning(g));
    let f = match crate::regular::open_regular(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    // A tuning file is small: never read more than the largest one.
    let most = tuning_len(MAX_TUNING_POINTS);
    let mut bytes = Vec::with_capacity(most);
    f.take(most as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(&path, e))?;
    if bytes.len() > most {
        return Err(Error::corrupt(
            FileKind::Tuning,
            "length",
            format!("at most {most} bytes"),
            "more",
        ));
    }
    decode(&bytes, build_id).map(Some)
}

/// Stores `t` as the points of generation `g` of build `build_id`,
/// replacing any: crash-safe (a reader sees the old file or the new one).
pub(crate) fn write(dir: &Path, g: u64, build_id: u128, t: &Tuning) -> Result<()> {
    let bytes = encode(t, build_id)?;
    write_atomic(dir, &names::tuning(g), &bytes)?;
    sync_dir(dir)
}

/// Removes generation `g`'s tuning file, if any.
pub(crate) fn remove(dir: &Path, g: u64) -> Result<()> {
    let path = dir.join(names::tuning(g));
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}
