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
//!
//! **LVQ-4x8**, two levels on the same range: 4-bit codes
//! `c4_j = round((r_j − lo) / s4)`, `s4 = (max − lo) / 15`, packed two per
//! byte in the nibble layout of [`crate::distance::scalar::dot_u4_i8`]
//! (the `codes` section, `P / 2` bytes), traverse the graph; what they miss,
//! `e_j = r_j − lo − s4 · c4_j ∈ [−s4/2, s4/2]`, is coded in 8 bits,
//! `c8_j = round((e_j + s4/2) · 255 / s4)` (the `residual_codes` section),
//! so that `x̂ = μ + lo − s4/2 + s4 · c4 + (s4/255) · c8`, about 12 bits per
//! component. The beam runs on the 4-bit codes (an eighth of the bytes of a
//! float32 row); every candidate it keeps is re-ranked on both
//! levels before the optional float32 rescoring. The re-ranking quantizes
//! the query in two i8 terms, `q ≈ s_q · w8 + (s_q / 254) · w8b` (the
//! second codes what the first rounds off), so that the query's own
//! rounding does not cap the codes' precision: four exact integer dots per
//! candidate.

use super::int8::{ip_distance, quantize_weights};
use super::scorer::{CodeSource, Quantizer, QueryContext, Scorer, ScorerBuffers};
use super::trained::{Side, TrainSpec};
use super::Quantization;
use crate::distance::Kernels;
use crate::metric::Metric;

/// The trained part of the LVQ kinds: the dataset mean.
#[derive(Debug, Clone, PartialEq)]
pub struct LvqQuantizer {
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

impl LvqQuantizer {
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
        LvqQuantizer { mean }
    }

    /// The smallest and largest component of `v − μ` (all padded
    /// components; `(0, 0)` if not finite).
    fn range(&self, v: &[f32]) -> (f32, f32) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for (x, m) in v.iter().zip(&self.mean) {
            let r = x - m;
            lo = lo.min(r);
            hi = hi.max(r);
        }
        if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 0.0)
        }
    }

    /// Encodes one padded vector (the first `dim` components meaningful)
    /// into `out` (same length) and returns its side values.
    pub fn encode(&self, v: &[f32], dim: usize, out: &mut [u8]) -> Lvq8Side {
        let residual = |j: usize| v[j] - self.mean[j];
        let (lo, hi) = self.range(v);
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

    /// Encodes one padded vector (the first `dim` components meaningful)
    /// for LVQ-4x8: 4-bit codes into `primary` (`P / 2` bytes, nibble
    /// layout), residual codes into `residual` (`P` bytes); returns
    /// `(lo, s4)` and `‖x̂‖²` of the two-level reconstruction.
    pub fn encode4x8(
        &self,
        v: &[f32],
        dim: usize,
        primary: &mut [u8],
        residual: &mut [u8],
    ) -> Lvq8Side {
        self.encode4x8_into(v, dim, primary, Some(residual))
    }

    /// [`LvqQuantizer::encode4x8`], keeping the residual codes only if
    /// asked (the side values depend on them, the `codes` section not).
    pub(crate) fn encode4x8_into(
        &self,
        v: &[f32],
        dim: usize,
        primary: &mut [u8],
        mut residual: Option<&mut [u8]>,
    ) -> Lvq8Side {
        let residual_of = |j: usize| v[j] - self.mean[j];
        let (lo, hi) = self.range(v);
        let s4 = if hi > lo { (hi - lo) / 15.0 } else { 0.0 };
        primary.iter_mut().for_each(|b| *b = 0);
        let mut norm = 0f64;
        for j in 0..v.len() {
            let r = residual_of(j);
            let c4 = if s4 > 0.0 {
                ((r - lo) / s4).round().clamp(0.0, 15.0) as u8
            } else {
                0
            };
            let (byte, high) = nibble_slot(j, primary.len());
            primary[byte] |= if high { c4 << 4 } else { c4 };
            let e = r - (lo + s4 * c4 as f32);
            let c8 = if s4 > 0.0 {
                ((e + 0.5 * s4) * 255.0 / s4).round().clamp(0.0, 255.0) as u8
            } else {
                0
            };
            if let Some(out) = residual.as_deref_mut() {
                out[j] = c8;
            }
            if j < dim {
                let rec = reconstruct4x8(self.mean[j], lo, s4, c4, c8);
                norm += rec as f64 * rec as f64;
            }
        }
        Lvq8Side {
            factors: [lo, s4],
            norm: norm as f32,
        }
    }

    /// Reconstructs LVQ-4x8 codes into floats (for tests and diagnostics).
    pub fn decode4x8(&self, primary: &[u8], residual: &[u8], factors: [f32; 2], out: &mut [f32]) {
        let [lo, s4] = factors;
        for (j, x) in out.iter_mut().enumerate() {
            let (byte, high) = nibble_slot(j, primary.len());
            let c4 = if high {
                primary[byte] >> 4
            } else {
                primary[byte] & 15
            };
            *x = reconstruct4x8(self.mean[j], lo, s4, c4, residual[j]);
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

/// Component `j`'s place in packed 4-bit codes of `len` bytes: its byte,
/// and whether it is the high nibble ([`crate::distance::NIBBLE_CHUNK`]
/// layout, see [`crate::distance::scalar::dot_u4_i8`]).
#[inline]
pub(crate) fn nibble_slot(j: usize, len: usize) -> (usize, bool) {
    let chunk = crate::distance::NIBBLE_CHUNK;
    let b = j / (2 * chunk) * chunk;
    let r = len.saturating_sub(b).min(chunk);
    let local = j - 2 * b;
    if local < r {
        (b + local, false)
    } else {
        (b + local - r, true)
    }
}

/// `⟨q, μ⟩` and `Σ_j q_j` (f64 sums, rounded to f32), the per-query
/// constants of every LVQ distance.
fn mean_terms(mean: &[f32], q: &[f32]) -> (f32, f32) {
    let (mut qmu, mut qsum) = (0f64, 0f64);
    for (x, m) in q.iter().zip(mean) {
        qmu += *x as f64 * *m as f64;
        qsum += *x as f64;
    }
    (qmu as f32, qsum as f32)
}

#[inline]
fn reconstruct4x8(mean: f32, lo: f32, s4: f32, c4: u8, c8: u8) -> f32 {
    mean + lo - 0.5 * s4 + s4 * c4 as f32 + s4 / 255.0 * c8 as f32
}

/// A float32 query prepared against LVQ-4x8 codes: the traversal's 4-bit
/// distance and the two-level re-ranking distance.
pub(crate) struct Lvq4x8Scorer {
    /// `s_q · w8 + s_q2 · w8b ≈ q`.
    w8: Vec<i8>,
    w8b: Vec<i8>,
    step: f32,
    step2: f32,
    qmu: f32,
    qsum: f32,
    q2: f32,
    metric: Metric,
    kernels: &'static Kernels,
}

impl Lvq4x8Scorer {
    /// Prepares the padded query `q` against the mean `mean`.
    pub(crate) fn new(
        mean: &[f32],
        q: &[f32],
        metric: Metric,
        kernels: &'static Kernels,
        buffers: ScorerBuffers,
    ) -> Self {
        let ScorerBuffers {
            i8s: mut w8,
            i8s_b: mut w8b,
            ..
        } = buffers;
        let step = quantize_weights(q, &mut w8);
        let step2 = step / 254.0;
        w8b.clear();
        w8b.extend(q.iter().zip(&w8).map(|(x, w)| {
            ((x - step * *w as f32) / step2)
                .round()
                .clamp(-127.0, 127.0) as i8
        }));
        let (qmu, qsum) = mean_terms(mean, q);
        Lvq4x8Scorer {
            w8,
            w8b,
            step,
            step2,
            qmu,
            qsum,
            q2: (kernels.dot)(q, q),
            metric,
            kernels,
        }
    }

    /// The traversal distance, from the 4-bit codes alone
    /// (`x̂4 = μ + lo + s4 · c4`; under L2 with the two-level `‖x̂‖²`).
    #[inline]
    pub(crate) fn distance4(
        &self,
        primary: &[u8],
        factors: [f32; 2],
        norm: impl FnOnce() -> f32,
    ) -> f32 {
        let [lo, s4] = factors;
        let dot = (self.kernels.dot_u4_i8)(primary, &self.w8) as f32;
        let ip = self.qmu + lo * self.qsum + s4 * self.step * dot;
        ip_distance(self.metric, self.q2, ip, norm)
    }

    /// The re-ranking distance, from both levels.
    #[inline]
    pub(crate) fn distance4x8(
        &self,
        primary: &[u8],
        residual: &[u8],
        factors: [f32; 2],
        norm: impl FnOnce() -> f32,
    ) -> f32 {
        let [lo, s4] = factors;
        let k = self.kernels;
        let d4 = self.step * (k.dot_u4_i8)(primary, &self.w8) as f32
            + self.step2 * (k.dot_u4_i8)(primary, &self.w8b) as f32;
        let d8 = self.step * (k.dot_u8_i8)(residual, &self.w8) as f32
            + self.step2 * (k.dot_u8_i8)(residual, &self.w8b) as f32;
        let ip = self.qmu + (lo - 0.5 * s4) * self.qsum + s4 * d4 + s4 / 255.0 * d8;
        ip_distance(self.metric, self.q2, ip, norm)
    }
}

impl Scorer for Lvq4x8Scorer {
    #[inline]
    fn distance(&self, src: &impl CodeSource, o: u32) -> f32 {
        self.distance4(src.code(o), src.factors(o), || src.norm(o))
    }

    const REFINES: bool = true;

    #[inline]
    fn refine(&self, src: &impl CodeSource, o: u32) -> f32 {
        self.distance4x8(src.code(o), src.residual(o), src.factors(o), || src.norm(o))
    }

    fn into_buffers(self) -> ScorerBuffers {
        ScorerBuffers {
            f32s: Vec::new(),
            i8s: self.w8,
            i8s_b: self.w8b,
        }
    }
}

/// A float32 query prepared against LVQ-8 codes.
pub(crate) struct Lvq8Scorer {
    w8: Vec<i8>,
    /// `s_q`: `q ≈ s_q · w8`.
    step: f32,
    /// `⟨q, μ⟩`.
    qmu: f32,
    /// `Σ_j q_j`.
    qsum: f32,
    /// `‖q‖²` (L2).
    q2: f32,
    metric: Metric,
    kernels: &'static Kernels,
}

impl Lvq8Scorer {
    /// Prepares the padded query `q` against the mean `mean`.
    pub(crate) fn new(
        mean: &[f32],
        q: &[f32],
        metric: Metric,
        kernels: &'static Kernels,
        buffers: ScorerBuffers,
    ) -> Self {
        let mut w8 = buffers.i8s;
        let step = quantize_weights(q, &mut w8);
        let (qmu, qsum) = mean_terms(mean, q);
        Lvq8Scorer {
            w8,
            step,
            qmu,
            qsum,
            q2: (kernels.dot)(q, q),
            metric,
            kernels,
        }
    }

    /// The distance to the vector with `code`, `factors` and `‖x̂‖²` =
    /// `norm()` (read under L2 only), on the metric's scale.
    #[inline]
    pub(crate) fn distance_to(
        &self,
        code: &[u8],
        factors: [f32; 2],
        norm: impl FnOnce() -> f32,
    ) -> f32 {
        let [lo, step] = factors;
        let dot = (self.kernels.dot_u8_i8)(code, &self.w8) as f32;
        let ip = self.qmu + lo * self.qsum + step * self.step * dot;
        ip_distance(self.metric, self.q2, ip, norm)
    }
}

impl Scorer for Lvq8Scorer {
    #[inline]
    fn distance(&self, src: &impl CodeSource, o: u32) -> f32 {
        self.distance_to(src.code(o), src.factors(o), || src.norm(o))
    }

    fn into_buffers(self) -> ScorerBuffers {
        ScorerBuffers {
            i8s: self.w8,
            ..ScorerBuffers::default()
        }
    }
}

/// The part of [`Quantizer`] both LVQ kinds share: training and the
/// `quant_params` floats are the dataset mean.
macro_rules! lvq_mean_params {
    ($kind:ident) => {
        fn train(_: &TrainSpec, rows: &[f32], dim: usize, padded: usize) -> Self {
            $kind(LvqQuantizer::train(rows, dim, padded))
        }

        /// The mean.
        fn params(&self) -> Vec<f32> {
            self.0.mean.clone()
        }

        fn from_params(params: &[f32], _dim: usize, _padded: usize, _quant_param: usize) -> Self {
            $kind(LvqQuantizer {
                mean: params.to_vec(),
            })
        }
    };
}

/// The LVQ-8 kind: [`LvqQuantizer`]'s one-level codes.
pub(crate) struct Lvq8Quantizer(pub LvqQuantizer);

/// The LVQ-4x8 kind: [`LvqQuantizer`]'s two-level codes.
pub(crate) struct Lvq4x8Quantizer(pub LvqQuantizer);

impl Quantizer for Lvq8Quantizer {
    const KIND: Quantization = Quantization::Lvq8;
    type Scorer = Lvq8Scorer;

    lvq_mean_params!(Lvq8Quantizer);

    fn encode(&self, row: &[f32], dim: usize, code: &mut [u8], _: Option<&mut [u8]>) -> Side {
        Side::Lvq8(self.0.encode(row, dim, code))
    }

    fn scorer(ctx: &QueryContext<'_>, q: &[f32], buffers: ScorerBuffers) -> Lvq8Scorer {
        Lvq8Scorer::new(ctx.params, q, ctx.metric, ctx.kernels, buffers)
    }
}

impl Quantizer for Lvq4x8Quantizer {
    const KIND: Quantization = Quantization::Lvq4x8;
    type Scorer = Lvq4x8Scorer;

    lvq_mean_params!(Lvq4x8Quantizer);

    fn encode(
        &self,
        row: &[f32],
        dim: usize,
        code: &mut [u8],
        residual: Option<&mut [u8]>,
    ) -> Side {
        Side::Lvq8(self.0.encode4x8_into(row, dim, code, residual))
    }

    fn scorer(ctx: &QueryContext<'_>, q: &[f32], buffers: ScorerBuffers) -> Lvq4x8Scorer {
        Lvq4x8Scorer::new(ctx.params, q, ctx.metric, ctx.kernels, buffers)
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
        let q = LvqQuantizer::train(&data, dim, padded);
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
        let q = LvqQuantizer::train(&data, dim, padded);
        let k = Kernels::detect();
        let query = &data[..padded];
        let new = |metric| Lvq8Scorer::new(&q.mean, query, metric, k, ScorerBuffers::default());
        let (by_ip, by_l2) = (new(Metric::InnerProduct), new(Metric::L2));
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
            let got_ip = 1.0 - by_ip.distance_to(&code, side.factors, || side.norm);
            assert!((got_ip - ip).abs() < tol, "ip {got_ip} vs {ip}");
            let got_l2 = by_l2.distance_to(&code, side.factors, || side.norm);
            assert!((got_l2 - l2).abs() < 2.0 * tol, "l2 {got_l2} vs {l2}");
        }
    }

    #[test]
    fn two_levels_reconstruct_within_a_residual_step_and_rank_like_it() {
        let (dim, padded) = (200, 208);
        let data = rows(300, dim, padded);
        let q = LvqQuantizer::train(&data, dim, padded);
        let k = Kernels::detect();
        let (mut c4, mut c8) = (vec![0u8; padded / 2], vec![0u8; padded]);
        let mut back = vec![0f32; padded];
        let query = &data[..padded];
        let pq = Lvq4x8Scorer::new(
            &q.mean,
            query,
            Metric::InnerProduct,
            k,
            ScorerBuffers::default(),
        );
        for r in data.chunks_exact(padded).skip(1) {
            let side = q.encode4x8(r, dim, &mut c4, &mut c8);
            q.decode4x8(&c4, &c8, side.factors, &mut back);
            let s4 = side.factors[1];
            for j in 0..dim {
                // Half a residual step, and float rounding.
                assert!((back[j] - r[j]).abs() <= 0.5 * s4 / 255.0 + 1e-5, "{j}");
            }
            back[dim..].iter_mut().for_each(|x| *x = 0.0);
            let ip: f32 = query.iter().zip(&back).map(|(a, b)| a * b).sum();
            let fine = 1.0 - pq.distance4x8(&c4, &c8, side.factors, || 0.0);
            // Two i8 terms: the query's rounding is far below the codes'.
            assert!(
                (fine - ip).abs() < 1e-3 * ip.abs().max(1.0),
                "{fine} vs {ip}"
            );
            let coarse = 1.0 - pq.distance4(&c4, side.factors, || 0.0);
            let err4: f32 = 0.5 * s4 * query.iter().map(|x| x.abs()).sum::<f32>();
            assert!((coarse - ip).abs() <= err4 + 0.05, "{coarse} vs {ip}");
        }
    }

    #[test]
    fn nibble_slots_cover_every_nibble_once() {
        for padded in [16, 48, 128, 208, 384, 400] {
            let len = padded / 2;
            let mut seen = vec![0u8; len * 2];
            for j in 0..padded {
                let (b, high) = nibble_slot(j, len);
                seen[2 * b + high as usize] += 1;
            }
            assert!(seen.iter().all(|s| *s == 1), "{padded}");
        }
    }

    #[test]
    fn a_constant_or_non_finite_vector_encodes_without_panicking() {
        let q = LvqQuantizer {
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
