//! Format maxima and code strides: plain numbers that the byte layer
//! (`format`, `log`) and the algorithms (`graph`, `quant`, `distance`)
//! must agree on. A leaf: it imports nothing from the crate, so any layer
//! may use it without tying itself to another.

/// Vectors and codes are padded with zeros to a multiple of this many components.
pub const LANES: usize = 16;

/// Rounds a dimension up to the padded length used in files and kernels.
pub fn padded_dim(dim: usize) -> usize {
    dim.div_ceil(LANES) * LANES
}

/// Largest dimension accepted (bounds per-query buffers).
pub const MAX_DIM: u32 = 65_536;
/// Largest `m` accepted (bounds per-node link blocks).
pub const MAX_M: u32 = 2048;
/// The highest level a node can be drawn on (the graph file's level cap).
pub(crate) const MAX_LEVEL: usize = 31;

/// The most labels one vector may carry (a build, a log record and full
/// verification of a `labels` section refuse more).
pub const MAX_LABELS_PER_VECTOR: usize = 1024;

/// Centroids per product-quantization sub-vector codebook (codes are one byte).
pub const PQ_CENTROIDS: usize = 256;

/// Product-quantization code bytes per vector: `m` rounded up to the
/// kernel's 16 lanes.
pub fn pq_code_stride(m: usize) -> usize {
    m.div_ceil(16) * 16
}

/// Binary code bytes per vector for a padded dimension: one bit per
/// component, rounded up to the kernel's 16 lanes.
pub fn binary_code_stride(padded: usize) -> usize {
    padded.div_ceil(8).div_ceil(16) * 16
}

/// Bytes of an append log's header; records start here.
pub(crate) const LOG_HEADER: usize = 64;
