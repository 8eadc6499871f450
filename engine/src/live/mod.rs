//! A prebuilt index plus its append log: inserts, deletes and upserts that
//! searches see at once, and compaction into a new generation.
//!
//! [`Index`] is what searches use: the memory-mapped generation, a
//! bitset of its deleted ordinals, and the vectors inserted through the log
//! (an in-memory graph over their float32 rows, [`crate::graph::overlay`],
//! linked into the generation's graph when the generation has int8 codes).
//! [`Writer`] is the one process that may change a directory (a lock file
//! enforces it): it appends every operation to the log before applying it,
//! syncs by its [`Durability`], and folds the log into a new generation
//! with [`Writer::compact`].
//!
//! By concept: [`state`] is the overlay of logged changes over one
//! generation and the snapshots searches take of it, [`deleted`] the
//! generation's deleted ordinals, [`reader`] the searchable index and its
//! reload, [`writer`]
//! the single writer, [`flusher`] its group-commit thread, [`linker`] its
//! linking thread, [`range`] range (radius) searches, [`compact`]
//! the fold into a new generation. File names, the lock, the MANIFEST and
//! removing obsolete files are the directory layer's ([`crate::dir`]).

mod auto_compact;
mod compact;
mod deleted;
mod flusher;
mod linker;
mod range;
mod reader;
mod state;
mod writer;

pub use auto_compact::{AutoCompact, AutoCompactStats};
pub use compact::{CompactOptions, CompactReport};
pub use reader::{Index, IndexStats};
pub use writer::{BatchOptions, BatchReport, Durability, Writer, WriterOptions};

use crate::dir::gc::GenerationFiles;
use crate::error::{Error, FileKind, Result};
use crate::format::manifest::Manifest;
use crate::generation::{Generation, OpenOptions};
use crate::log::file::LogHeader;
use crate::log::replay::ReplayReport;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// One open generation: its index, and its files, removed when the
/// generation is retired and no reader in this process holds it any more.
struct OpenGeneration {
    index: Generation,
    files: GenerationFiles,
}

impl OpenGeneration {
    /// Opens the generation `manifest` names (once: callers that may race
    /// a switch go through [`open_current`]), with the caller's read
    /// options (`verify` and `allow_log` are overridden: no full check,
    /// the log is replayed).
    fn open(dir: &Path, manifest: &Manifest, options: &OpenOptions) -> Result<Arc<OpenGeneration>> {
        let options = OpenOptions {
            verify: false,
            allow_log: true,
            ..options.clone()
        };
        let index = Generation::open_generation(dir, manifest, &options)?;
        Ok(Arc::new(OpenGeneration {
            index,
            files: GenerationFiles::new(dir, manifest.generation),
        }))
    }

    fn number(&self) -> u64 {
        self.files.number()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Checks a replayed log against the MANIFEST's lower bound: a log that
/// holds fewer committed records than the MANIFEST recorded lost some.
fn check_bound(manifest: &Manifest, path: &Path, report: &ReplayReport) -> Result<()> {
    match manifest.log {
        Some(b) if report.valid_len < b.len || report.records < b.records => {
            Err(Error::corrupt(
                FileKind::Log,
                format!("length of {}", path.display()),
                format!(
                    "at least {} bytes holding {} committed records (recorded by the MANIFEST)",
                    b.len, b.records
                ),
                format!(
                    "{} bytes of committed records holding {} records, then {} bytes of torn tail: the log was cut or lost data",
                    report.valid_len, report.records, report.torn_bytes
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// The error for a log the MANIFEST requires that is not there (`Ok` if
/// the MANIFEST requires none: a missing log then means no records).
fn missing_log(manifest: &Manifest, path: &Path) -> Result<()> {
    match manifest.log {
        Some(b) => Err(Error::LogMissing {
            path: path.to_path_buf(),
            min_records: b.records,
            min_len: b.len,
        }),
        None => Ok(()),
    }
}

fn log_header(gen: &OpenGeneration) -> LogHeader {
    LogHeader {
        generation: gen.number(),
        build_id: gen.index.build_id(),
        dim: gen.index.dim() as u32,
    }
}
