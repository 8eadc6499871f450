//! Product quantization: `m` sub-vectors, each coded by one byte into a
//! codebook of 256 centroids trained with k-means.
//!
//! A dimension that `m` does not divide is split into sub-vectors whose
//! widths differ by at most one: the first `dim % m` are one wider. Search
//! uses asymmetric distance computation: per query, one table of 256
//! partial distances per sub-vector, then a table sum per candidate (the
//! `adc` kernel).

use super::kmeans::{argmin, kmeans};
use super::scorer::{CodeSource, Quantizer, QueryContext, Scorer, ScorerBuffers};
use super::trained::{Side, TrainSpec};
use super::Quantization;
use crate::distance::Kernels;
use crate::metric::Metric;
use rayon::prelude::*;

/// Centroids per sub-vector codebook (codes are one byte).
pub const CENTROIDS: usize = crate::limits::PQ_CENTROIDS;
/// Default number of training rows.
pub const DEFAULT_TRAIN_SIZE: usize = 25_000;
/// Lloyd iterations per codebook.
pub const KMEANS_ITERATIONS: usize = 20;

/// A trained product quantizer.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuantizer {
    /// Number of sub-vectors (code bytes per vector).
    pub m: usize,
    /// Vector dimension (unpadded).
    pub dim: usize,
    /// Codebooks, dimension-major: for each component `j` of the vector,
    /// the 256 centroid values of its sub-vector's codebook at `j`
    /// (`codebooks[256·j + c]`), so tables are built 256 lanes at a time.
    pub codebooks: Vec<f32>,
}

/// Start component and width of sub-vector `s` of `dim` split into `m`.
pub fn subspace(dim: usize, m: usize, s: usize) -> (usize, usize) {
    let (base, extra) = (dim / m, dim % m);
    let width = base + (s < extra) as usize;
    let start = s * base + s.min(extra);
    (start, width)
}

/// Code bytes per vector: `m` rounded up to the kernel's 16 lanes.
pub use crate::limits::pq_code_stride as code_stride;

/// The default `m` for a dimension: codes of about `dim / 4` bytes.
pub fn default_m(dim: usize) -> usize {
    dim.div_ceil(4).max(1)
}

impl ProductQuantizer {
    /// Trains codebooks on up to `train_size` rows spread evenly over
    /// `rows` (row-major, `padded` floats each), one k-means per sub-vector,
    /// in parallel. Requires `1 <= m <= dim`.
    pub fn train(
        rows: &[f32],
        dim: usize,
        padded: usize,
        m: usize,
        train_size: usize,
        seed: u64,
    ) -> Self {
        let n = rows.len() / padded.max(1);
        let take = n.min(train_size.max(1));
        let sample: Vec<usize> = (0..take).map(|i| i * n / take.max(1)).collect();
        let books: Vec<Vec<f32>> = (0..m)
            .into_par_iter()
            .map(|s| {
                let (start, width) = subspace(dim, m, s);
                let mut points = Vec::with_capacity(take * width);
                for &r in &sample {
                    points.extend_from_slice(&rows[r * padded + start..r * padded + start + width]);
                }
                let centroids = kmeans(
                    &points,
                    width,
                    CENTROIDS,
                    KMEANS_ITERATIONS,
                    seed ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                // Transpose centroid-major k-means output to dimension-major.
                let mut book = vec![0f32; width * CENTROIDS];
                for (c, centre) in centroids.chunks_exact(width).enumerate() {
                    for (j, x) in centre.iter().enumerate() {
                        book[j * CENTROIDS + c] = *x;
                    }
                }
                book
            })
            .collect();
        ProductQuantizer {
            m,
            dim,
            codebooks: books.concat(),
        }
    }

    /// Encodes one vector (at least `dim` floats) into `out` (`code_stride(m)`
    /// bytes; bytes past `m` are zero): each sub-vector's nearest centroid.
    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        out.fill(0);
        let mut dist = [0f32; CENTROIDS];
        for (s, code) in out.iter_mut().enumerate().take(self.m) {
            let (start, width) = subspace(self.dim, self.m, s);
            dist.fill(0.0);
            let books = self.codebooks[start * CENTROIDS..(start + width) * CENTROIDS]
                .chunks_exact(CENTROIDS);
            for (x, book) in v[start..start + width].iter().zip(books) {
                for (d, b) in dist.iter_mut().zip(book) {
                    *d += (x - b) * (x - b);
                }
            }
            *code = argmin(&dist) as u8;
        }
    }

    /// Reconstructs a code (for tests and diagnostics).
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        for (s, &c) in code.iter().enumerate().take(self.m) {
            let (start, width) = subspace(self.dim, self.m, s);
            let books = self.codebooks[start * CENTROIDS..(start + width) * CENTROIDS]
                .chunks_exact(CENTROIDS);
            for (x, book) in out[start..start + width].iter_mut().zip(books) {
                *x = book[c as usize];
            }
        }
    }

    /// Fills the ADC table for a query; see [`query_table`].
    pub fn query_table(&self, metric: Metric, q: &[f32], table: &mut Vec<f32>) {
        query_table(self.dim, self.m, &self.codebooks, metric, q, table);
    }
}

/// Fills the ADC table for a (padded, normalised under cosine) query from
/// codebooks laid out as [`ProductQuantizer::codebooks`] (`256 · dim` floats,
/// dimension-major, as stored in the file): `table[s * 256 + c]` is `‖q_s − centroid‖²` under
/// L2 and `⟨q_s, centroid⟩` otherwise; rows past `m` (up to
/// `code_stride(m)`) are zero. The distance to a code is then
/// `Σ_s table[s][code[s]]` (L2), or one minus it (inner product, cosine).
/// A codebook slice shorter than `256 · dim` leaves the missing rows zero.
pub fn query_table(
    dim: usize,
    m: usize,
    codebooks: &[f32],
    metric: Metric,
    q: &[f32],
    table: &mut Vec<f32>,
) {
    table.clear();
    table.resize(code_stride(m) * CENTROIDS, 0.0);
    for s in 0..m {
        let (start, width) = subspace(dim, m, s);
        let row = &mut table[s * CENTROIDS..(s + 1) * CENTROIDS];
        for j in start..start + width {
            let (Some(book), Some(&x)) =
                (codebooks.get(j * CENTROIDS..(j + 1) * CENTROIDS), q.get(j))
            else {
                return;
            };
            // 256 lanes at a time over the centroids (vectorises).
            match metric {
                Metric::L2 => {
                    for (t, b) in row.iter_mut().zip(book) {
                        *t += (x - b) * (x - b);
                    }
                }
                Metric::InnerProduct | Metric::Cosine => {
                    for (t, b) in row.iter_mut().zip(book) {
                        *t += x * b;
                    }
                }
            }
        }
    }
}

/// A query prepared against product-quantized codes: one table of 256
/// partial distances per sub-vector, then a table sum per code.
pub(crate) struct PqScorer {
    table: Vec<f32>,
    /// Ranks by `‖q − x̂‖²` (L2 and cosine), else by `1 − ⟨q, x̂⟩`.
    by_l2: bool,
    /// Cosine: `‖q − x̂‖²` is twice the cosine distance of unit vectors.
    halve: bool,
    kernels: &'static Kernels,
}

impl Scorer for PqScorer {
    #[inline]
    fn distance(&self, src: &impl CodeSource, o: u32) -> f32 {
        let sum = (self.kernels.adc)(&self.table, src.code(o));
        if self.by_l2 {
            sum
        } else {
            1.0 - sum
        }
    }

    fn to_metric_units(&self, d: f32) -> f32 {
        if self.halve {
            0.5 * d
        } else {
            d
        }
    }

    fn into_buffers(self) -> ScorerBuffers {
        ScorerBuffers {
            f32s: self.table,
            ..ScorerBuffers::default()
        }
    }
}

impl Quantizer for ProductQuantizer {
    const KIND: Quantization = Quantization::Pq;
    type Scorer = PqScorer;

    fn train(spec: &TrainSpec, rows: &[f32], dim: usize, padded: usize) -> Self {
        ProductQuantizer::train(rows, dim, padded, spec.pq_m, spec.pq_train_size, spec.seed)
    }

    /// The codebooks, dimension-major.
    fn params(&self) -> Vec<f32> {
        self.codebooks.clone()
    }

    fn quant_param(&self) -> u32 {
        self.m as u32
    }

    fn from_params(params: &[f32], dim: usize, _padded: usize, quant_param: usize) -> Self {
        ProductQuantizer {
            m: quant_param,
            dim,
            codebooks: params.to_vec(),
        }
    }

    fn encode(&self, row: &[f32], _dim: usize, code: &mut [u8], _: Option<&mut [u8]>) -> Side {
        ProductQuantizer::encode(self, row, code);
        Side::None
    }

    /// Cosine ranks by `‖q − x̂‖²` (unit vectors: the same order as
    /// cosine, and unlike `⟨q, x̂⟩` not biased by the reconstruction's
    /// norm); inner product by `⟨q, x̂⟩`.
    fn scorer(ctx: &QueryContext<'_>, q: &[f32], buffers: ScorerBuffers) -> PqScorer {
        let by_l2 = ctx.metric != Metric::InnerProduct;
        let table_metric = if by_l2 {
            Metric::L2
        } else {
            Metric::InnerProduct
        };
        let mut table = buffers.f32s;
        query_table(ctx.dim, ctx.pq_m, ctx.params, table_metric, q, &mut table);
        PqScorer {
            table,
            by_l2,
            halve: ctx.metric == Metric::Cosine,
            kernels: ctx.kernels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Kernels;

    #[test]
    fn subspaces_cover_the_dimension_once() {
        for (dim, m) in [(384, 96), (10, 3), (7, 7), (100, 1), (17, 16)] {
            let mut next = 0;
            for s in 0..m {
                let (start, width) = subspace(dim, m, s);
                assert_eq!(start, next);
                assert!(width == dim / m || width == dim / m + 1);
                next += width;
            }
            assert_eq!(next, dim);
        }
    }

    #[test]
    fn adc_matches_distance_to_the_reconstruction() {
        let (dim, padded, m) = (30, 32, 7); // 30 = 4*2 + 5*... widths 5,5,4,4,4,4,4
        let rows: Vec<f32> = (0..600 * padded)
            .map(|i| {
                if i % padded < dim {
                    ((i * 7919) % 1000) as f32 / 500.0 - 1.0
                } else {
                    0.0
                }
            })
            .collect();
        let pq = ProductQuantizer::train(&rows, dim, padded, m, 600, 1);
        let k = Kernels::SCALAR;
        let q: Vec<f32> = (0..padded)
            .map(|i| if i < dim { (i as f32 * 0.3).cos() } else { 0.0 })
            .collect();
        let mut code = vec![0u8; code_stride(m)];
        let mut back = vec![0f32; padded];
        for metric in [Metric::L2, Metric::InnerProduct] {
            let mut table = Vec::new();
            pq.query_table(metric, &q, &mut table);
            for r in rows.chunks_exact(padded).take(50) {
                pq.encode(r, &mut code);
                back.fill(0.0);
                pq.decode(&code, &mut back);
                let want = match metric {
                    Metric::L2 => (k.l2)(&q, &back),
                    _ => (k.dot)(&q, &back),
                };
                let got = (k.adc)(&table, &code);
                assert!(
                    (want - got).abs() < 1e-3 * want.abs().max(1.0),
                    "{metric:?}: {want} vs {got}"
                );
            }
        }
    }

    #[test]
    fn reconstruction_beats_a_single_centroid() {
        let (dim, padded, m) = (16, 16, 4);
        let rows: Vec<f32> = (0..2000 * padded)
            .map(|i| ((i * 2654435761usize) % 1000) as f32 / 1000.0)
            .collect();
        let pq = ProductQuantizer::train(&rows, dim, padded, m, 2000, 2);
        let mut code = vec![0u8; code_stride(m)];
        let mut back = vec![0f32; padded];
        let (mut err, mut var) = (0f64, 0f64);
        let mean: Vec<f64> = (0..dim)
            .map(|j| rows.chunks_exact(padded).map(|r| r[j] as f64).sum::<f64>() / 2000.0)
            .collect();
        for r in rows.chunks_exact(padded) {
            pq.encode(r, &mut code);
            pq.decode(&code, &mut back);
            for j in 0..dim {
                err += ((r[j] - back[j]) as f64).powi(2);
                var += (r[j] as f64 - mean[j]).powi(2);
            }
        }
        assert!(
            err < 0.2 * var,
            "quantization error {err} vs variance {var}"
        );
    }
}
