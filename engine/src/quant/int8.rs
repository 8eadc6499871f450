//! Int8 scalar quantization with per-dimension ranges and outlier clipping.
//!
//! Component `j` of a vector is stored as the code
//! `c_j = round((x_j − lo_j) / scale_j)` clamped to `0..=255`, so it
//! reconstructs as `x̂_j = lo_j + scale_j · c_j`. `lo_j` and `hi_j` are the
//! `clip` and `1 − clip` quantiles of dimension `j` over a training sample, so
//! a few outliers do not stretch the range for everyone (as Lucene's
//! confidence interval does).
//!
//! Search is asymmetric: the query stays in float32. With `w = q ∘ scale` and
//! `b = ⟨q, lo⟩`, the inner product is `⟨q, x̂⟩ = b + ⟨w, c⟩`, one
//! f32-by-u8 kernel call per candidate; for L2 the stored `‖x̂‖²` completes
//! `‖q − x̂‖² = ‖q‖² − 2⟨q, x̂⟩ + ‖x̂‖²`.

use super::scorer::{CodeSource, Quantizer, QueryContext, Scorer, ScorerBuffers};
use super::trained::{Side, TrainSpec};
use super::Quantization;
use crate::distance::Kernels;
use crate::metric::Metric;

/// Per-dimension ranges of int8 codes (arrays of the padded dimension;
/// padding components have `lo = scale = 0`).
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Quantizer {
    /// Lower end of each dimension's range.
    pub lo: Vec<f32>,
    /// Step between adjacent codes of each dimension.
    pub scale: Vec<f32>,
}

/// Default fraction of values clipped at each end of every dimension's range.
pub const DEFAULT_CLIP: f32 = 1e-4;

/// Training uses at most this many rows, spread evenly over the input.
pub const MAX_TRAINING_ROWS: usize = 100_000;

impl Int8Quantizer {
    /// Trains ranges on `rows` (row-major, `padded` floats per row, the first
    /// `dim` meaningful), clipping a `clip` fraction of values at each end.
    pub fn train(rows: &[f32], dim: usize, padded: usize, clip: f32) -> Self {
        let n = rows.len() / padded.max(1);
        let take = n.min(MAX_TRAINING_ROWS);
        let sample: Vec<usize> = (0..take).map(|i| i * n / take.max(1)).collect();
        let mut lo = vec![0f32; padded];
        let mut scale = vec![0f32; padded];
        let mut column = Vec::with_capacity(take);
        let clip = clip.clamp(0.0, 0.49) as f64;
        for j in 0..dim {
            column.clear();
            column.extend(sample.iter().map(|&r| rows[r * padded + j]));
            if column.is_empty() {
                break;
            }
            let last = column.len() - 1;
            let lo_at = ((clip * last as f64).floor() as usize).min(last);
            let hi_at = (((1.0 - clip) * last as f64).ceil() as usize).min(last);
            let (_, l, _) = column.select_nth_unstable_by(lo_at, f32::total_cmp);
            let l = *l;
            let (_, h, _) = column.select_nth_unstable_by(hi_at, f32::total_cmp);
            let h = *h;
            lo[j] = l;
            scale[j] = if h > l { (h - l) / 255.0 } else { 0.0 };
        }
        Int8Quantizer { lo, scale }
    }

    /// Encodes one padded vector into `out` (same length) and returns `‖x̂‖²`,
    /// the squared norm of its reconstruction.
    pub fn encode(&self, v: &[f32], out: &mut [u8]) -> f32 {
        let mut norm2 = 0f64;
        for (j, (x, c)) in v.iter().zip(out.iter_mut()).enumerate() {
            let (lo, s) = (self.lo[j], self.scale[j]);
            *c = if s > 0.0 {
                ((x - lo) / s).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            let rec = lo as f64 + s as f64 * *c as f64;
            norm2 += rec * rec;
        }
        norm2 as f32
    }

    /// Reconstructs a code into floats (for tests and diagnostics).
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        for (j, (c, x)) in code.iter().zip(out.iter_mut()).enumerate() {
            *x = self.lo[j] + self.scale[j] * *c as f32;
        }
    }

    /// Prepares a padded query: writes `q ∘ scale` into `weights` and returns `⟨q, lo⟩`.
    pub fn prepare_query(&self, q: &[f32], weights: &mut [f32]) -> f32 {
        prepare_query(&self.lo, &self.scale, q, weights)
    }
}

/// Quantizes per-query weights to i8 with one step (`max |w| / 127`), so
/// that distances over the codes come from the exact integer kernel;
/// fills `w8` and returns the step (`w ≈ step · w8`).
pub(crate) fn quantize_weights(w: &[f32], w8: &mut Vec<i8>) -> f32 {
    let wmax = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    let step = if wmax > 0.0 { wmax / 127.0 } else { 1.0 };
    w8.clear();
    w8.extend(
        w.iter()
            .map(|x| (x / step).round().clamp(-127.0, 127.0) as i8),
    );
    step
}

/// A float32 query prepared against int8 codes: `⟨q, x̂⟩ = bias + step ·
/// Σ code · w8`, the weights `q ∘ scale` quantized to i8 with one step per
/// query (the exact integer kernel).
pub(crate) struct Int8Scorer {
    /// `q ∘ scale` (kept for the error bound).
    w: Vec<f32>,
    w8: Vec<i8>,
    bias: f32,
    step: f32,
    /// `‖q‖²` (L2).
    q2: f32,
    metric: Metric,
    kernels: &'static Kernels,
}

impl Int8Scorer {
    /// Prepares the padded query `q` against the ranges `lo`, `scale`.
    pub(crate) fn new(
        lo: &[f32],
        scale: &[f32],
        q: &[f32],
        metric: Metric,
        kernels: &'static Kernels,
        buffers: ScorerBuffers,
    ) -> Self {
        let ScorerBuffers {
            f32s: mut w,
            i8s: mut w8,
            ..
        } = buffers;
        w.clear();
        w.resize(q.len(), 0.0);
        let bias = prepare_query(lo, scale, q, &mut w);
        let step = quantize_weights(&w, &mut w8);
        Int8Scorer {
            w,
            w8,
            bias,
            step,
            q2: (kernels.dot)(q, q),
            metric,
            kernels,
        }
    }

    /// The distance to the row with `code` and `‖x̂‖²` = `norm` (read
    /// under L2 only), on the metric's scale.
    #[inline]
    pub(crate) fn distance_to(&self, code: &[u8], norm: impl FnOnce() -> f32) -> f32 {
        let ip = self.bias + self.step * (self.kernels.dot_u8_i8)(code, &self.w8) as f32;
        ip_distance(self.metric, self.q2, ip, norm)
    }
}

impl Scorer for Int8Scorer {
    #[inline]
    fn distance(&self, src: &impl CodeSource, o: u32) -> f32 {
        self.distance_to(src.code(o), || src.norm(o))
    }

    /// `e = Σ_j ½|w_j| + 255 |step · w8_j − w_j|`: half a code step per
    /// component, plus what the weights' own rounding can add over codes
    /// of at most 255. Under L2 the distance also adds `‖x̂‖² − ‖x‖²`,
    /// which no per-query bound covers: none.
    fn error_bound(&self) -> Option<f32> {
        if self.metric == Metric::L2 {
            return None;
        }
        Some(
            self.w
                .iter()
                .zip(&self.w8)
                .map(|(x, &c)| 0.5 * x.abs() + 255.0 * (self.step * c as f32 - x).abs())
                .sum(),
        )
    }

    fn into_buffers(self) -> ScorerBuffers {
        ScorerBuffers {
            f32s: self.w,
            i8s: self.w8,
            i8s_b: Vec::new(),
        }
    }
}

impl Quantizer for Int8Quantizer {
    const KIND: Quantization = Quantization::Int8;
    type Scorer = Int8Scorer;

    fn train(spec: &TrainSpec, rows: &[f32], dim: usize, padded: usize) -> Self {
        Int8Quantizer::train(rows, dim, padded, spec.int8_clip)
    }

    /// `lo`, then `scale`.
    fn params(&self) -> Vec<f32> {
        let mut params = self.lo.clone();
        params.extend_from_slice(&self.scale);
        params
    }

    fn from_params(params: &[f32], _dim: usize, padded: usize, _quant_param: usize) -> Self {
        let (lo, scale) = params.split_at(padded.min(params.len()));
        Int8Quantizer {
            lo: lo.to_vec(),
            scale: scale.to_vec(),
        }
    }

    fn encode(&self, row: &[f32], _dim: usize, code: &mut [u8], _: Option<&mut [u8]>) -> Side {
        Side::Norm(Int8Quantizer::encode(self, row, code))
    }

    fn scorer(ctx: &QueryContext<'_>, q: &[f32], buffers: ScorerBuffers) -> Int8Scorer {
        let (lo, scale) = ctx.params.split_at(q.len().min(ctx.params.len()));
        Int8Scorer::new(lo, scale, q, ctx.metric, ctx.kernels, buffers)
    }
}

/// A distance on `metric`'s scale from an estimate `ip` of `⟨q, x⟩`:
/// `‖q‖² − 2 ip + ‖x̂‖²` (L2, `q2` and `norm()` the squared norms, the
/// latter read under L2 only), else `1 − ip`. Shared by the
/// integer-kernel codes (int8, LVQ).
#[inline]
pub(crate) fn ip_distance(metric: Metric, q2: f32, ip: f32, norm: impl FnOnce() -> f32) -> f32 {
    match metric {
        Metric::L2 => q2 - 2.0 * ip + norm(),
        Metric::InnerProduct | Metric::Cosine => 1.0 - ip,
    }
}

/// [`Int8Quantizer::prepare_query`] over ranges as stored in the file
/// (`lo`, `scale`): writes `q ∘ scale` into `weights`, returns `⟨q, lo⟩`.
pub fn prepare_query(lo: &[f32], scale: &[f32], q: &[f32], weights: &mut [f32]) -> f32 {
    let mut bias = 0f64;
    for (((x, w), s), l) in q.iter().zip(weights.iter_mut()).zip(scale).zip(lo) {
        *w = x * s;
        bias += *x as f64 * *l as f64;
    }
    bias as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Kernels;

    #[test]
    fn reconstruction_error_is_within_half_a_step() {
        let padded = 16;
        let rows: Vec<f32> = (0..1000 * padded)
            .map(|i| {
                if i % padded < 10 {
                    ((i * 37 % 101) as f32) / 50.0 - 1.0
                } else {
                    0.0
                }
            })
            .collect();
        let q = Int8Quantizer::train(&rows, 10, padded, 0.0);
        let mut code = vec![0u8; padded];
        let mut back = vec![0f32; padded];
        for r in rows.chunks_exact(padded) {
            q.encode(r, &mut code);
            q.decode(&code, &mut back);
            for j in 0..10 {
                assert!((r[j] - back[j]).abs() <= q.scale[j] * 0.5 + 1e-6);
            }
            assert!(back[10..].iter().all(|x| *x == 0.0));
        }
    }

    #[test]
    fn clipping_ignores_outliers() {
        let padded = 16;
        let mut rows = vec![0f32; 10_000 * padded];
        for (i, r) in rows.chunks_exact_mut(padded).enumerate() {
            r[0] = (i % 100) as f32 / 100.0;
        }
        rows[0] = 1000.0; // one outlier
        let q = Int8Quantizer::train(&rows, 1, padded, 1e-3);
        assert!(q.lo[0] >= 0.0 && q.lo[0] + 255.0 * q.scale[0] < 1.0 + 1e-6);
    }

    #[test]
    fn asymmetric_dot_matches_reconstruction() {
        let padded = 32;
        let rows: Vec<f32> = (0..200 * padded)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let qz = Int8Quantizer::train(&rows, padded, padded, 0.0);
        let k = Kernels::SCALAR;
        let query: Vec<f32> = (0..padded).map(|i| (i as f32 * 0.1).sin()).collect();
        let mut w = vec![0f32; padded];
        let bias = qz.prepare_query(&query, &mut w);
        let mut code = vec![0u8; padded];
        let mut back = vec![0f32; padded];
        for r in rows.chunks_exact(padded) {
            qz.encode(r, &mut code);
            qz.decode(&code, &mut back);
            let direct = (k.dot)(&query, &back);
            let asym = bias + (k.dot_u8)(&w, &code);
            assert!((direct - asym).abs() < 1e-4, "{direct} vs {asym}");
        }
    }
}
