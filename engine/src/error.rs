//! The one public error type.
//!
//! User mistakes (wrong dimension, NaN, `k = 0`, ...) are kept apart from file
//! corruption, and corruption names the file, the section and what was
//! expected versus what was found, so the message says what to do next.

use std::path::PathBuf;

/// Which file of an index an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The graph file (header, codes, adjacency, ids).
    Graph,
    /// The full-precision vectors file.
    Vectors,
    /// The manifest naming the current generation.
    Manifest,
    /// An input data file (`.fvecs`, `.bvecs`, `.ivecs`, `.npy`).
    Input,
    /// The append log of a generation.
    Log,
    /// A generation's stored operating points (`gNNNNNNNN.tuning`).
    Tuning,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Graph => "graph file",
            FileKind::Vectors => "vectors file",
            FileKind::Manifest => "manifest",
            FileKind::Input => "input file",
            FileKind::Log => "append log",
            FileKind::Tuning => "tuning file",
        })
    }
}

/// Everything that can go wrong in strata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A vector or query has the wrong number of components.
    #[error("dimension mismatch{}: expected {expected}, found {found}", row_suffix(*row))]
    DimensionMismatch {
        /// The dimension of the index.
        expected: usize,
        /// The dimension supplied.
        found: usize,
        /// The offending row of the input, when there is one.
        row: Option<usize>,
    },

    /// A vector or query holds NaN or an infinite component.
    #[error("non-finite component{} at position {component}: vectors must be finite", row_suffix(*row))]
    NonFinite {
        /// The offending row, when the error is about an input vector.
        row: Option<usize>,
        /// The index of the first non-finite component.
        component: usize,
    },

    /// A zero vector under the cosine metric, which has no direction.
    #[error("zero vector{} cannot be used with the cosine metric", row_suffix(*row))]
    ZeroVector {
        /// The offending row, when the error is about an input vector.
        row: Option<usize>,
    },

    /// Two input rows carry the same external id.
    #[error("duplicate id {id} at rows {first_row} and {row}")]
    DuplicateId {
        /// The repeated external id.
        id: u64,
        /// The row where it first appeared.
        first_row: usize,
        /// The row where it appeared again.
        row: usize,
    },

    /// A parameter is out of its valid range.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name.
        name: &'static str,
        /// What is wrong with it and what is allowed.
        reason: String,
    },

    /// An index needs at least one vector.
    #[error("cannot build an index from zero vectors")]
    EmptyInput,

    /// An external id that the index does not hold.
    #[error("unknown id {0}")]
    UnknownId(u64),

    /// The file is not a strata file of the expected kind at all.
    #[error("{file} has bad magic bytes {found:02x?}: not a strata {file}")]
    BadMagic {
        /// Which file.
        file: FileKind,
        /// The first bytes found.
        found: [u8; 8],
    },

    /// The file's format version is not one this build can read.
    #[error("{file} has format version {found}, this build reads versions {oldest}..={newest}: rebuild the index with this version of strata")]
    UnsupportedVersion {
        /// Which file.
        file: FileKind,
        /// The version in the file.
        found: u32,
        /// Oldest version supported.
        oldest: u32,
        /// Newest version supported.
        newest: u32,
    },

    /// The file is damaged or was not written by a correct writer.
    #[error("corrupt {file}, {what}: expected {expected}, found {found}")]
    Corrupt {
        /// Which file.
        file: FileKind,
        /// Which field or section is wrong.
        what: String,
        /// What a valid file holds there.
        expected: String,
        /// What this file holds there.
        found: String,
    },

    /// A stored checksum does not match the bytes it covers.
    #[error("checksum mismatch in {file}, {what}: stored {stored:#010x}, computed {computed:#010x}; the file is damaged")]
    ChecksumMismatch {
        /// Which file.
        file: FileKind,
        /// The header or section whose checksum failed.
        what: String,
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },

    /// The graph and vectors files come from different builds.
    #[error("the vectors file belongs to another build (graph build id {graph:032x}, vectors build id {vectors:032x}): copy both files of the same build")]
    BuildIdMismatch {
        /// The graph file's build id.
        graph: u128,
        /// The vectors file's build id.
        vectors: u128,
    },

    /// Another writer holds the directory's lock.
    #[error(
        "{0} is locked by another writer (one writer per index directory; readers need no lock)"
    )]
    WriterLocked(PathBuf),

    /// The directory has an append log that a plain [`Generation`](crate::Generation) would ignore.
    #[error("{path} holds {records_bytes} bytes of logged inserts and deletes that a plain index open would ignore: open the directory with Index, compact it, or set OpenOptions::allow_log")]
    HasLog {
        /// The log file.
        path: PathBuf,
        /// Bytes of records in it.
        records_bytes: u64,
    },

    /// A writer whose state may no longer match the directory.
    #[error("the writer must be reopened: {0}")]
    WriterPoisoned(String),

    /// An operation on an id that conflicts with the index's contents.
    #[error("id {0} already exists: use upsert to replace it")]
    IdExists(u64),

    /// The MANIFEST says the generation has a log, and it is missing.
    #[error("{path} is missing, but the MANIFEST records that this generation has a log holding at least {min_records} records ({min_len} bytes): it was deleted or lost; restore it from a backup (opening without it would silently drop logged operations)")]
    LogMissing {
        /// The log file that should exist.
        path: PathBuf,
        /// Records the MANIFEST says it holds at least.
        min_records: u64,
        /// Bytes the MANIFEST says it holds at least.
        min_len: u64,
    },

    /// A write batch was refused before anything of it was written.
    #[error("batch refused at operation {position} (id {id}): {source}; nothing of the batch was committed")]
    BatchRejected {
        /// 0-based position of the offending operation in the batch.
        position: usize,
        /// Its id.
        id: u64,
        /// Why it was refused.
        #[source]
        source: Box<Error>,
    },

    /// A batch was committed (written to the log and applied: searches see
    /// it, a process kill does not undo it) but making it durable failed.
    #[error("the batch was committed ({operations} operations, visible to searches) but syncing the log failed: {source}; it may not survive a power cut (a retry with skip-existing / ignore-missing is safe)")]
    CommittedNotDurable {
        /// Operations the batch committed.
        operations: usize,
        /// The sync's error.
        #[source]
        source: Box<Error>,
    },

    /// An insert with skip-existing semantics met an id that holds another vector.
    #[error("id {0} already exists with a different vector: skipping existing ids skips only identical ones; use upsert to replace it")]
    IdExistsWithOtherVector(u64),

    /// An input data file could not be parsed.
    #[error("cannot read {path}: {reason}")]
    InputFormat {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A search asked for a recall target
    /// ([`SearchParams::for_recall`](crate::SearchParams::for_recall))
    /// that no stored operating point gives.
    #[error("no operating point for this search: {what}")]
    NotTuned {
        /// Why, and the `strata tune` command that would store one.
        what: String,
    },

    /// A label filter expression ([`LabelExpr`](crate::LabelExpr)) that
    /// does not parse.
    #[error("filter expression, at byte {position}: {what}")]
    FilterExpression {
        /// Byte offset into the expression of the offending token (the
        /// expression's length when it ended too early).
        position: usize,
        /// What was expected there and what was found, e.g. `expected a
        /// label number, found "x"`.
        what: String,
    },
}

fn row_suffix(row: Option<usize>) -> String {
    match row {
        Some(r) => format!(" in row {r}"),
        None => String::new(),
    }
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption error with its expected and found values rendered.
    pub(crate) fn corrupt(
        file: FileKind,
        what: impl Into<String>,
        expected: impl std::fmt::Display,
        found: impl std::fmt::Display,
    ) -> Self {
        Error::Corrupt {
            file,
            what: what.into(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}

/// Result alias used throughout strata.
pub type Result<T, E = Error> = std::result::Result<T, E>;
