//! The on-disk format (graph and vectors files version [`FORMAT_VERSION`],
//! directory version [`DIRECTORY_VERSION`]; versions from
//! [`OLDEST_SUPPORTED_VERSION`] are read): the only module that knows byte
//! offsets of those files.
//!
//! `format-spec/` is the source of truth; the names here match its tables.
//! Parsing works on plain byte slices (no filesystem), so fuzz targets can
//! feed it arbitrary bytes.

pub(crate) mod bytes;
pub(crate) mod graph_header;
pub(crate) mod labels;
pub(crate) mod layout;
pub(crate) mod manifest;
pub(crate) mod sections;
pub(crate) mod tuning;
pub(crate) mod vectors_header;
pub(crate) mod writer;

/// Every section starts at a multiple of this many bytes (the page size), so
/// it can be cast in place and given its own `madvise`.
pub const PAGE: usize = 4096;

/// Magic bytes at offset 0 of a graph file.
pub const GRAPH_MAGIC: [u8; 8] = *b"STRATAGF";
/// Magic bytes at offset 0 of a vectors file.
pub const VECTORS_MAGIC: [u8; 8] = *b"STRATAVF";
/// Magic bytes at offset 0 of a manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"STRATAMF";

/// The newest version of the graph and vectors file layouts this build
/// reads and writes (2: product and binary codes; 5: LVQ codes, and int8
/// without `code_norms` under ip and cosine; 3 and 4 were directory
/// versions, `format-spec/versions.md`). A build writes the oldest version
/// that holds its layout
/// ([`Quantization::format_version`](crate::Quantization::format_version)),
/// so every other file stays version 2; 6: the `labels` section, written
/// only by builds whose vectors carry labels.
pub const FORMAT_VERSION: u32 = 6;
/// The version of the index directory this build writes, carried by the
/// MANIFEST and the append log (3: a generation may have an append log, so
/// a reader that does not replay logs must refuse the directory; 4: the
/// MANIFEST bounds the log from below, log records carry a length check,
/// and batches are atomic begin/commit units; 6: insert and upsert records
/// may carry labels, record kinds 6 and 7).
pub const DIRECTORY_VERSION: u32 = 6;
/// The oldest format version this build reads.
pub const OLDEST_SUPPORTED_VERSION: u32 = 1;
/// The oldest version of the append log (it first appeared in directory version 3).
pub const OLDEST_LOG_VERSION: u32 = 3;

/// Element type code for float32 components (the only one defined).
pub const ELEMENT_F32: u32 = 0;

pub use crate::limits::{MAX_DIM, MAX_LABELS_PER_VECTOR, MAX_M};
pub use tuning::{TUNING_MAGIC, TUNING_VERSION};

/// Parses and fully validates the bytes of a tuning file
/// (`format-spec/tuning-file.md`) that must belong to the generation of
/// build `build_id`: what [`Generation::tuning`](crate::Generation::tuning)
/// does with the file, for tools and fuzzing.
///
/// ```
/// use strata::format::{decode_tuning, encode_tuning};
/// use strata::{Tuning, TuningSource};
/// let t = Tuning { measured_at: 0, k: 10, queries: 2, held_out: 1, source: TuningSource::QueryFile,
///     live_count: 5, stale: false, measured_build_id: 9, points: vec![] };
/// let bytes = encode_tuning(&t, 9)?;
/// assert_eq!(decode_tuning(&bytes, 9)?, t);
/// assert!(decode_tuning(&bytes, 8).is_err()); // another build's
/// # Ok::<(), strata::Error>(())
/// ```
pub fn decode_tuning(bytes: &[u8], build_id: u128) -> crate::Result<crate::Tuning> {
    tuning::decode(bytes, build_id)
}

/// The bytes of `t` as the tuning file of the generation of build
/// `build_id` ([`decode_tuning`] reads them back exactly);
/// [`Error::InvalidParameter`](crate::Error::InvalidParameter) if `t`
/// breaks a rule of the format.
pub fn encode_tuning(t: &crate::Tuning, build_id: u128) -> crate::Result<Vec<u8>> {
    tuning::encode(t, build_id)
}

pub(crate) fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
pub(crate) fn rd_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
pub(crate) fn rd_u128(b: &[u8], off: usize) -> u128 {
    u128::from_le_bytes(b[off..off + 16].try_into().expect("16 bytes"))
}
pub(crate) fn wr_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn wr_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn wr_u128(b: &mut [u8], off: usize, v: u128) {
    b[off..off + 16].copy_from_slice(&v.to_le_bytes());
}

/// Rounds `x` up to the next multiple of [`PAGE`], or `None` on overflow.
pub(crate) fn page_align(x: u64) -> Option<u64> {
    x.checked_add(PAGE as u64 - 1)
        .map(|v| v / PAGE as u64 * PAGE as u64)
}
