//! Distance metrics and the distance convention returned to users.

use crate::distance::Kernels;
use crate::error::{Error, Result};

/// How vectors are compared. Every metric returns a distance where smaller is closer.
///
/// | metric | distance returned |
/// | --- | --- |
/// | [`Metric::L2`] | squared Euclidean distance `Σ (qᵢ − xᵢ)²` |
/// | [`Metric::InnerProduct`] | `1 − ⟨q, x⟩` (hnswlib's convention; may be negative) |
/// | [`Metric::Cosine`] | `1 − cos(q, x)`, in `[0, 2]`; vectors are normalised once at build, queries at search |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// One minus the inner product.
    InnerProduct,
    /// One minus the cosine similarity.
    Cosine,
}

impl Metric {
    /// The code stored in the graph file header.
    pub fn code(self) -> u32 {
        match self {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
        }
    }

    /// The metric for a header code, if known.
    pub fn from_code(code: u32) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::InnerProduct),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The short name used by the command line (`l2`, `ip`, `cosine`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// Whether vectors and queries are normalised to unit length.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// The distance of two (padded, and for cosine normalised) vectors.
    #[inline]
    pub(crate) fn distance(self, k: &Kernels, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => (k.l2)(a, b),
            Metric::InnerProduct | Metric::Cosine => 1.0 - (k.dot)(a, b),
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner_product" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "cos" | "angular" => Ok(Metric::Cosine),
            _ => Err(Error::InvalidParameter {
                name: "metric",
                reason: format!("unknown metric {s:?}; use l2, ip or cosine"),
            }),
        }
    }
}

/// Checks one input vector and writes it, zero-padded (and normalised for
/// cosine), into `out` (whose length is the padded dimension).
pub(crate) fn prepare_vector(
    metric: Metric,
    dim: usize,
    v: &[f32],
    row: Option<usize>,
    out: &mut [f32],
) -> Result<()> {
    if v.len() != dim {
        return Err(Error::DimensionMismatch {
            expected: dim,
            found: v.len(),
            row,
        });
    }
    if let Some(component) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite { row, component });
    }
    out.fill(0.0);
    out[..dim].copy_from_slice(v);
    if metric.normalizes() {
        let norm = v
            .iter()
            .map(|x| (*x as f64) * (*x as f64))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(Error::ZeroVector { row });
        }
        for x in &mut out[..dim] {
            *x = (*x as f64 / norm) as f32;
        }
    } else if !out[..dim].iter().map(|x| x * x).sum::<f32>().is_finite() {
        // Finite components whose squares overflow would poison every distance.
        return Err(Error::InvalidParameter {
            name: "vector",
            reason: format!(
                "{}components so large that distances overflow f32",
                row.map(|r| format!("row {r} has ")).unwrap_or_default()
            ),
        });
    }
    Ok(())
}
