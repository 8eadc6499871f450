//! Locally-adaptive 8-bit codes (LVQ-8, Aguerrebere et al., "Similarity
//! search in the blink of an eye with compressed indices", VLDB 2023): the
//! dataset mean is removed, then each vector is scaled by its own range.
//!
//! With the mean `μ` (trained once, stored in the `quant_params` section)
//! and `r = x − μ`, a vector stores `lo = min_j r_j`, `step = (max_j r_j −
//! lo) / 255` (the `factors` section, 8 bytes per vector) and the codes
//! `c_j = round((r_j − lo) / step)`, one byte per padded component, so it
//! reconstructs as `x̂ = μ + lo + step · c`. Where int8 spends one range per
//! dimension for all vectors (`int8.rs`), a vector here uses all 256 levels
//! over its own spread.
//!
//! Search: with `q` quantized once per query to `q ≈ s_q · w8` (one step,
//! the exact integer kernel),
//! `⟨q, x̂⟩ = ⟨q, μ⟩ + lo · Σ_j q_j + step · s_q · Σ_j c_j w8_j`:
//! two per-query constants, two per-vector ones and one `dot_u8_i8` per
//! candidate. For L2 the stored `‖x̂‖²` (the `code_norms` section, under L2
//! only) completes `‖q − x̂‖² = ‖q‖² − 2⟨q, x̂⟩ + ‖x̂‖²`.

use super::int8::quantize_weights;
use crate::distance::Kernels;
use crate::metric::Metric;

/// The trained part of LVQ-8: the dataset mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Lvq8Quantizer {
    /// Mean of each padded component (zero on padding).
    pub mean: Vec<f32>,
}

/// What one vector stores beside its code: `lo`, `step`, and `‖x̂‖²`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lvq8Side {
    /// `[lo, step]` of the vector's own range.
    pub factors: [f32; 2],
    /// `‖x̂‖²` of the reconstruction (over the meaningful components).
    pub norm: f32,
}

impl Lvq8Quantizer {
    /// The mean of `rows` (row-major, `padded` floats per row, the first
    /// `dim` meaningful; padding components keep a zero mean), over at most
    /// [`super::int8::MAX_TRAINING_ROWS`] rows spread evenly.
    pub fn train(rows: &[f32], dim: usize, padded: usize) -> Self {
        let n = rows.len() / padded.max(1);
        let take = n.min(super::int8::MAX_TRAINING_ROWS);
        let mut sum = vec![0f64; dim];
        for i in 0..take {
            let r = i * n / take.max(1);
            for (s, x) in sum.iter_mut().zip(&rows[r * padded..r * padded + dim]) {
                *s += *x as f64;
            }
        }
        let mut mean = vec![0f32; padded];
        for (m, s) in mean.iter_mut().zip(&sum) {
            *m = (*s / take.max(1) as f64) as f32;
        }
        Lvq8Quantizer { mean }
    }

    /// Encodes one padded vector (the first `dim` components meaningful)
    /// into `out` (same length) and returns its side values.
    pub fn encode(&self, v: &[f32], dim: usize, out: &mut [u8]) -> Lvq8Side {
        let residual = |j: usize| v[j] - self.mean[j];
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for j in 0..v.len() {
            let r = residual(j);
            lo = lo.min(r);
            hi = hi.max(r);
        }
        if !(lo.is_finite() && hi.is_finite()) {
            (lo, hi) = (0.0, 0.0);
        }
        let step = if hi > lo { (hi - lo) / 255.0 } else { 0.0 };
        let mut norm = 0f64;
        for (j, c) in out.iter_mut().enumerate().take(v.len()) {
            *c = if step > 0.0 {
                ((residual(j) - lo) / step).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            if j < dim {
                let rec = self.mean[j] as f64 + lo as f64 + step as f64 * *c as f64;
                norm += rec * rec;
            }
        }
        Lvq8Side {
            factors: [lo, step],
            norm: norm as f32,
        }
    }

    /// Reconstructs a code into floats (for tests and diagnostics).
    pub fn decode(&self, code: &[u8], factors: [f32; 2], out: &mut [f32]) {
        let [lo, step] = factors;
        for ((x, c), m) in out.iter_mut().zip(code).zip(&self.mean) {
            *x = m + lo + step * *c as f32;
        }
    }
}

/// A float32 query prepared against LVQ-8 codes.
pub(crate) struct Lvq8Query {
    w8: Vec<i8>,
    /// `s_q`: `q ≈ s_q · w8`.
    step: f32,
    /// `⟨q, μ⟩`.
    qmu: f32,
    /// `Σ_j q_j`.
    qsum: f32,
    /// `‖q‖²` (L2).
    q2: f32,
}

impl Lvq8Query {
    /// Prepares the padded query `q` against the mean `mean`, reusing `w8`'s
    /// allocation.
    pub(crate) fn new(mean: &[f32], q: &[f32], kernels: &Kernels, mut w8: Vec<i8>) -> Self {
        let step = quantize_weights(q, &mut w8);
        let (mut qmu, mut qsum) = (0f64, 0f64);
        for (x, m) in q.iter().zip(mean) {
            qmu += *x as f64 * *m as f64;
            qsum += *x as f64;
        }
        Lvq8Query {
            w8,
            step,
            qmu: qmu as f32,
            qsum: qsum as f32,
            q2: (kernels.dot)(q, q),
        }
    }

    /// Gives back the buffer of quantized weights.
    pub(crate) fn into_weights(self) -> Vec<i8> {
        self.w8
    }

    /// The distance to the vector with `code`, `factors` and `‖x̂‖²` =
    /// `norm` (used under L2 only), on `metric`'s scale.
    #[inline]
    pub(crate) fn distance(
        &self,
        kernels: &Kernels,
        metric: Metric,
        code: &[u8],
        factors: [f32; 2],
        norm: f32,
    ) -> f32 {
        let [lo, step] = factors;
        let dot = (kernels.dot_u8_i8)(code, &self.w8) as f32;
        let ip = self.qmu + lo * self.qsum + step * self.step * dot;
        match metric {
            Metric::L2 => self.q2 - 2.0 * ip + norm,
            Metric::InnerProduct | Metric::Cosine => 1.0 - ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn rows(n: usize, dim: usize, padded: usize) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut out = vec![0f32; n * padded];
        for r in out.chunks_exact_mut(padded) {
            // An offset shared by all rows (what the mean removes) and a
            // per-row spread that differs tenfold between rows.
            let spread = 0.1 + rng.gen::<f32>();
            for (j, x) in r.iter_mut().take(dim).enumerate() {
                *x = 3.0 + j as f32 * 0.01 + spread * (rng.gen::<f32>() - 0.5);
            }
        }
        out
    }

    #[test]
    fn a_code_reconstructs_within_half_a_step_of_its_own_range() {
        let (dim, padded) = (40, 48);
        let data = rows(300, dim, padded);
        let q = Lvq8Quantizer::train(&data, dim, padded);
        assert!(q.mean[dim..].iter().all(|m| *m == 0.0));
        let mut code = vec![0u8; padded];
        let mut back = vec![0f32; padded];
        for r in data.chunks_exact(padded) {
            let side = q.encode(r, dim, &mut code);
            q.decode(&code, side.factors, &mut back);
            let step = side.factors[1];
            for j in 0..dim {
                assert!((back[j] - r[j]).abs() <= 0.5 * step + 1e-5, "{j}");
            }
            let norm: f32 = back[..dim].iter().map(|x| x * x).sum();
            assert!((norm - side.norm).abs() <= 1e-3 * norm.max(1.0));
        }
    }

    #[test]
    fn the_prepared_query_matches_the_reconstruction() {
        let (dim, padded) = (40, 48);
        let data = rows(200, dim, padded);
        let q = Lvq8Quantizer::train(&data, dim, padded);
        let k = Kernels::detect();
        let query = &data[..padded];
        let pq = Lvq8Query::new(&q.mean, query, k, Vec::new());
        let (mut code, mut back) = (vec![0u8; padded], vec![0f32; padded]);
        for r in data.chunks_exact(padded).skip(1) {
            let side = q.encode(r, dim, &mut code);
            q.decode(&code, side.factors, &mut back);
            back[dim..].iter_mut().for_each(|x| *x = 0.0);
            let ip: f32 = query.iter().zip(&back).map(|(a, b)| a * b).sum();
            let l2: f32 = query
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b) * (a - b))
                .sum();
            let qn: f32 = query.iter().map(|x| x * x).sum();
            // The query's own quantization (7 bits) bounds the error.
            let tol = 2e-2 * qn.max(1.0);
            let got_ip = 1.0 - pq.distance(k, Metric::InnerProduct, &code, side.factors, side.norm);
            assert!((got_ip - ip).abs() < tol, "ip {got_ip} vs {ip}");
            let got_l2 = pq.distance(k, Metric::L2, &code, side.factors, side.norm);
            assert!((got_l2 - l2).abs() < 2.0 * tol, "l2 {got_l2} vs {l2}");
        }
    }

    #[test]
    fn a_constant_or_non_finite_vector_encodes_without_panicking() {
        let q = Lvq8Quantizer {
            mean: vec![0.0; 16],
        };
        let mut code = vec![7u8; 16];
        let side = q.encode(&[1.0; 16], 16, &mut code);
        assert_eq!(side.factors, [1.0, 0.0]);
        assert!(code.iter().all(|c| *c == 0));
        let mut bad = [0.0f32; 16];
        bad[3] = f32::NAN;
        q.encode(&bad, 16, &mut code);
    }
}
