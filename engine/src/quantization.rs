//! The kinds of traversal codes: a header field of the graph file and a
//! build parameter. A leaf (the byte layer reads the kind; the quantizers
//! in [`crate::quant`] implement each one).

use crate::error::{Error, Result};

/// The quantizer used for graph traversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantization {
    /// No codes: traversal reads the float32 vectors file directly.
    None,
    /// Per-dimension int8 scalar quantization (u8 codes, one byte per
    /// dimension) with float32 rescoring of the final candidates.
    Int8,
    /// Product quantization: `m` one-byte codes per vector (see
    /// [`BuildParams::pq_m`](crate::BuildParams::pq_m)), asymmetric distances.
    Pq,
    /// One bit per dimension with a per-vector correction factor.
    Binary,
    /// Locally-adaptive 8-bit codes (LVQ-8): the dataset mean removed, then
    /// one range per vector (`lo`, `step`, 8 bytes beside the one byte per
    /// dimension), with float32 rescoring of the final candidates. Files
    /// with these codes are format version 5.
    Lvq8,
    /// Two-level LVQ (LVQ-4x8): 4-bit codes on each vector's own range
    /// for traversal (half a byte per dimension), and an 8-bit code of what
    /// they miss, also resident, that re-ranks the beam's candidates before
    /// the optional float32 rescoring. Format version 5.
    Lvq4x8,
}

impl Quantization {
    /// The code stored in the graph file header.
    pub fn code(self) -> u32 {
        match self {
            Quantization::None => 0,
            Quantization::Int8 => 1,
            Quantization::Pq => 2,
            Quantization::Binary => 3,
            Quantization::Lvq8 => 4,
            Quantization::Lvq4x8 => 5,
        }
    }

    /// The quantization for a header code, if known.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Quantization::None),
            1 => Some(Quantization::Int8),
            2 => Some(Quantization::Pq),
            3 => Some(Quantization::Binary),
            4 => Some(Quantization::Lvq8),
            5 => Some(Quantization::Lvq4x8),
            _ => None,
        }
    }

    /// The command-line name (`none`, `int8`).
    pub fn name(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Int8 => "int8",
            Quantization::Pq => "pq",
            Quantization::Binary => "binary",
            Quantization::Lvq8 => "lvq8",
            Quantization::Lvq4x8 => "lvq4x8",
        }
    }

    /// The format version of the files a build with these codes under
    /// `metric` writes: the oldest that can hold them (2 for the layouts of
    /// version 2, so that readers of version 2 still read those files; 5
    /// for the LVQ kinds, and for int8 under inner product or cosine,
    /// which from version 5 leaves out the `‖x̂‖²` only L2 reads).
    pub fn format_version(self, metric: crate::Metric) -> u32 {
        match self {
            Quantization::Lvq8 | Quantization::Lvq4x8 => 5,
            Quantization::Int8 if metric != crate::Metric::L2 => 5,
            _ => 2,
        }
    }
}

/// What a kind's graph file holds, stated once: the byte layer validates
/// files against it (`format/layout.rs`, I10) and the builder writes it
/// (`quant/trained.rs`). Specified in `format-spec/graph-file.md`.
impl Quantization {
    /// Code bytes per vector at padded dimension `padded` (`pq_m`: PQ's
    /// `m`, the header's `quant_param`).
    pub(crate) fn code_stride(self, padded: usize, pq_m: usize) -> usize {
        match self {
            Quantization::None => 0,
            Quantization::Int8 | Quantization::Lvq8 => padded,
            Quantization::Pq => crate::limits::pq_code_stride(pq_m),
            Quantization::Binary => crate::limits::binary_code_stride(padded),
            Quantization::Lvq4x8 => padded / 2,
        }
    }

    /// Whether a file of format `version` under `metric` has a
    /// `code_norms` section (`‖x̂‖²`): int8 and LVQ under L2, the only
    /// metric that reads it, and int8 under every metric before version 5.
    pub(crate) fn has_norms(self, metric: crate::Metric, version: u32) -> bool {
        match self {
            Quantization::Int8 => version < 5 || metric == crate::Metric::L2,
            Quantization::Lvq8 | Quantization::Lvq4x8 => metric == crate::Metric::L2,
            Quantization::None | Quantization::Pq | Quantization::Binary => false,
        }
    }

    /// Whether the file has a `binary_factors` section: binary's `(α,
    /// ‖x‖²)` or LVQ's `(lo, step)`.
    pub(crate) fn has_factors(self) -> bool {
        matches!(
            self,
            Quantization::Binary | Quantization::Lvq8 | Quantization::Lvq4x8
        )
    }

    /// Whether the file has a `residual_codes` section (LVQ-4x8).
    pub(crate) fn has_residual(self) -> bool {
        self == Quantization::Lvq4x8
    }

    /// Floats in the `quant_params` section (0: no section): int8's
    /// ranges `lo` and `scale`, PQ's codebooks, binary's centre or LVQ's
    /// mean.
    pub(crate) fn param_floats(self, dim: usize, padded: usize) -> Option<usize> {
        match self {
            Quantization::None => Some(0),
            Quantization::Int8 => padded.checked_mul(2),
            Quantization::Pq => dim.checked_mul(crate::limits::PQ_CENTROIDS),
            Quantization::Binary | Quantization::Lvq8 | Quantization::Lvq4x8 => Some(padded),
        }
    }

    /// The `quant_params` floats that must not be negative (int8's
    /// per-dimension steps); every float must be finite.
    pub(crate) fn nonnegative_params(self, padded: usize) -> std::ops::Range<usize> {
        match self {
            Quantization::Int8 => padded..2 * padded,
            _ => 0..0,
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "f32" | "float32" => Ok(Quantization::None),
            "int8" | "sq8" | "i8" => Ok(Quantization::Int8),
            "pq" => Ok(Quantization::Pq),
            "binary" | "1bit" | "bq" => Ok(Quantization::Binary),
            "lvq8" | "lvq" => Ok(Quantization::Lvq8),
            "lvq4x8" => Ok(Quantization::Lvq4x8),
            _ => Err(Error::InvalidParameter {
                name: "quantization",
                reason: format!(
                    "unknown quantization {s:?}; use none, int8, pq, binary, lvq8 or lvq4x8"
                ),
            }),
        }
    }
}
