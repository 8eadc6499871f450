//! Garbage collection: removing the files of generations that are no
//! longer current, once nothing in this process maps them.

use super::names;
use crate::fsio::is_temp_name;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Removes every file of generation `g` (failures are harmless: a file
/// that stays is removed by the next writer's [`remove_other_generations`]).
pub(crate) fn remove_generation(dir: &Path, g: u64) {
    for name in names::all(g) {
        let _ = fs::remove_file(dir.join(name));
    }
}

/// Removes data files, logs and temporary files of generations other than
/// `current` (left by a compaction interrupted before or after its switch).
/// Only for the holder of the writer lock.
pub(crate) fn remove_other_generations(dir: &Path, current: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = match names::generation_of(name) {
            Some(g) => g != current,
            None => is_temp_name(name),
        };
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The files of one open generation: removed when the generation was
/// marked [`GenerationFiles::retire`]d and the last holder drops it (a
/// search in flight keeps them until it finishes).
pub(crate) struct GenerationFiles {
    dir: PathBuf,
    number: u64,
    obsolete: AtomicBool,
}

impl GenerationFiles {
    pub(crate) fn new(dir: &Path, number: u64) -> GenerationFiles {
        GenerationFiles {
            dir: dir.to_path_buf(),
            number,
            obsolete: AtomicBool::new(false),
        }
    }

    /// The generation number.
    pub(crate) fn number(&self) -> u64 {
        self.number
    }

    /// A newer generation is current: remove these files once unused.
    pub(crate) fn retire(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for GenerationFiles {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            remove_generation(&self.dir, self.number);
        }
    }
}
