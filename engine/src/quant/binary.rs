//! One-bit codes: the sign of each component after centring on the data
//! mean, with a per-vector correction factor (in the spirit of RaBitQ).
//!
//! With centre `c`, residual `r = x − c` and signs `b ∈ {±1}^d`, the inner
//! product is estimated as `⟨q, x⟩ ≈ ⟨q, c⟩ + α·⟨q, b⟩` with
//! `α = ‖r‖² / Σ|r_j|`, the factor that makes the estimate exact for the
//! query `q = r`. `⟨q, b⟩` is a table sum: for each code byte, a table of
//! the 256 possible `±q` sums of its 8 components (the `adc` kernel, as for
//! product quantization). Each vector stores `α` and `‖x‖²` (for L2).

use super::scorer::{CodeSource, Quantizer, QueryContext, Scorer, ScorerBuffers};
use super::trained::{Side, TrainSpec};
use super::Quantization;
use crate::distance::Kernels;
use crate::metric::Metric;

/// A trained binary quantizer: the centre subtracted before taking signs.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryQuantizer {
    /// The mean of the training data (padded; padding components are zero).
    pub centre: Vec<f32>,
}

/// Code bytes per vector for a padded dimension: one bit per component,
/// rounded up to the kernel's 16 lanes.
pub use crate::limits::binary_code_stride as code_stride;

impl BinaryQuantizer {
    /// The centre is the mean of all rows (row-major, `padded` floats each).
    pub fn train(rows: &[f32], padded: usize) -> Self {
        let n = rows.len() / padded.max(1);
        let mut sum = vec![0f64; padded];
        for r in rows.chunks_exact(padded) {
            for (s, x) in sum.iter_mut().zip(r) {
                *s += *x as f64;
            }
        }
        BinaryQuantizer {
            centre: sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect(),
        }
    }

    /// Encodes a padded vector: sign bits into `out` (bit `j % 8` of byte
    /// `j / 8` set when `x_j ≥ c_j`, for the first `dim` components; other
    /// bits zero) and returns `(α, ‖x‖²)`.
    pub fn encode(&self, v: &[f32], dim: usize, out: &mut [u8]) -> [f32; 2] {
        out.fill(0);
        let (mut r2, mut r1, mut x2) = (0f64, 0f64, 0f64);
        for j in 0..dim {
            let r = (v[j] - self.centre[j]) as f64;
            if r >= 0.0 {
                out[j / 8] |= 1 << (j % 8);
            }
            r2 += r * r;
            r1 += r.abs();
            x2 += (v[j] as f64) * (v[j] as f64);
        }
        let alpha = if r1 > 0.0 { r2 / r1 } else { 0.0 };
        [alpha as f32, x2 as f32]
    }

    /// Fills the table of `±q` byte sums and returns `⟨q, c⟩`; see [`query_table`].
    pub fn query_table(&self, q: &[f32], dim: usize, table: &mut Vec<f32>) -> f32 {
        query_table(&self.centre, q, dim, table)
    }
}

/// Fills the table of `±q` byte sums for centre `centre` (padded, as stored
/// in the file): `table[b * 256 + v]` is
/// `Σ_{i<8} (bit i of v ? +q : −q)[8b + i]`, so that the table sum over a
/// code is `⟨q, b⟩`; components past `dim` count as zero. Returns `⟨q, c⟩`.
pub fn query_table(centre: &[f32], q: &[f32], dim: usize, table: &mut Vec<f32>) -> f32 {
    let stride = code_stride(centre.len());
    table.clear();
    table.resize(stride * 256, 0.0);
    let comp = |j: usize| {
        if j < dim {
            q.get(j).copied().unwrap_or(0.0)
        } else {
            0.0
        }
    };
    for b in 0..stride {
        let row = &mut table[b * 256..(b + 1) * 256];
        row[0] = -(0..8).map(|i| comp(8 * b + i)).sum::<f32>();
        // Doubling: entries with bit i set are those without it plus 2·q_i,
        // a vectorisable copy-and-add per bit.
        for i in 0..8 {
            let (low, high) = row.split_at_mut(1 << i);
            let add = 2.0 * comp(8 * b + i);
            for (h, l) in high[..1 << i].iter_mut().zip(low.iter()) {
                *h = l + add;
            }
        }
    }
    q.iter()
        .zip(centre)
        .take(dim)
        .map(|(a, c)| (*a as f64) * (*c as f64))
        .sum::<f64>() as f32
}

/// A query prepared against binary codes: `⟨q, x⟩ ≈ ⟨q, c⟩ + α · ⟨q, b⟩`,
/// the second term a table sum over the code's bytes.
pub(crate) struct BinaryScorer {
    table: Vec<f32>,
    /// `⟨q, c⟩`.
    qc: f32,
    /// `‖q‖²` (L2).
    q2: f32,
    metric: Metric,
    kernels: &'static Kernels,
}

impl Scorer for BinaryScorer {
    #[inline]
    fn distance(&self, src: &impl CodeSource, o: u32) -> f32 {
        let [alpha, x2] = src.factors(o);
        let ip = self.qc + alpha * (self.kernels.adc)(&self.table, src.code(o));
        match self.metric {
            Metric::L2 => self.q2 - 2.0 * ip + x2,
            Metric::InnerProduct | Metric::Cosine => 1.0 - ip,
        }
    }

    fn into_buffers(self) -> ScorerBuffers {
        ScorerBuffers {
            f32s: self.table,
            ..ScorerBuffers::default()
        }
    }
}

impl Quantizer for BinaryQuantizer {
    const KIND: Quantization = Quantization::Binary;
    type Scorer = BinaryScorer;

    fn train(_: &TrainSpec, rows: &[f32], _dim: usize, padded: usize) -> Self {
        BinaryQuantizer::train(rows, padded)
    }

    /// The centre.
    fn params(&self) -> Vec<f32> {
        self.centre.clone()
    }

    fn from_params(params: &[f32], _dim: usize, _padded: usize, _quant_param: usize) -> Self {
        BinaryQuantizer {
            centre: params.to_vec(),
        }
    }

    fn encode(&self, row: &[f32], dim: usize, code: &mut [u8], _: Option<&mut [u8]>) -> Side {
        Side::Factors(BinaryQuantizer::encode(self, row, dim, code))
    }

    fn scorer(ctx: &QueryContext<'_>, q: &[f32], buffers: ScorerBuffers) -> BinaryScorer {
        let mut table = buffers.f32s;
        let qc = query_table(ctx.params, q, ctx.dim, &mut table);
        BinaryScorer {
            table,
            qc,
            q2: (ctx.kernels.dot)(q, q),
            metric: ctx.metric,
            kernels: ctx.kernels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Kernels;

    #[test]
    fn table_sum_is_the_signed_dot_product() {
        let (dim, padded) = (21, 32);
        let rows: Vec<f32> = (0..50 * padded)
            .map(|i| {
                if i % padded < dim {
                    ((i * 37) % 17) as f32 - 8.0
                } else {
                    0.0
                }
            })
            .collect();
        let bq = BinaryQuantizer::train(&rows, padded);
        let q: Vec<f32> = (0..padded)
            .map(|i| if i < dim { (i as f32).sin() } else { 0.0 })
            .collect();
        let mut table = Vec::new();
        let qc = bq.query_table(&q, dim, &mut table);
        let mut code = vec![0u8; code_stride(padded)];
        for r in rows.chunks_exact(padded) {
            let [alpha, x2] = bq.encode(r, dim, &mut code);
            let signed: f32 = (0..dim)
                .map(|j| if r[j] >= bq.centre[j] { q[j] } else { -q[j] })
                .sum();
            let got = (Kernels::SCALAR.adc)(&table, &code);
            assert!((signed - got).abs() < 1e-4, "{signed} vs {got}");
            assert!(alpha >= 0.0 && x2 >= 0.0);
        }
        let want_qc: f32 = (0..dim).map(|j| q[j] * bq.centre[j]).sum();
        assert!((qc - want_qc).abs() < 1e-4);
    }

    #[test]
    fn estimate_is_exact_for_the_residual_itself() {
        let (dim, padded) = (16, 16);
        let rows: Vec<f32> = (0..40 * padded)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let bq = BinaryQuantizer::train(&rows, padded);
        let x = &rows[5 * padded..6 * padded];
        let r: Vec<f32> = x.iter().zip(&bq.centre).map(|(a, c)| a - c).collect();
        let mut code = vec![0u8; code_stride(padded)];
        let [alpha, _] = bq.encode(x, dim, &mut code);
        let mut table = Vec::new();
        bq.query_table(&r, dim, &mut table);
        let est = alpha * (Kernels::SCALAR.adc)(&table, &code);
        let exact: f32 = r.iter().map(|v| v * v).sum();
        assert!((est - exact).abs() < 1e-3 * exact, "{est} vs {exact}");
    }
}
