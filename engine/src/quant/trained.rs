//! A quantizer trained for one build, and the sections it encodes into.

use super::lvq::{Lvq4x8Quantizer, Lvq8Quantizer, Lvq8Side};
use super::scorer::Quantizer;
use super::{BinaryQuantizer, Int8Quantizer, ProductQuantizer, Quantization};
use rayon::prelude::*;

/// The trained quantizer of a build, of whichever kind: each arm is a
/// [`Quantizer`], and every method here delegates to it.
pub(crate) enum Trained {
    None,
    Int8(Int8Quantizer),
    Pq(ProductQuantizer),
    Binary(BinaryQuantizer),
    Lvq8(Lvq8Quantizer),
    Lvq4x8(Lvq4x8Quantizer),
}

/// Evaluates `$body` with `$q` bound to the quantizer of `$t` (a
/// [`Quantizer`]), or `$none` without codes.
macro_rules! each_quantizer {
    ($t:expr, $q:ident => $body:expr, None => $none:expr) => {
        match $t {
            Trained::None => $none,
            Trained::Int8($q) => $body,
            Trained::Pq($q) => $body,
            Trained::Binary($q) => $body,
            Trained::Lvq8($q) => $body,
            Trained::Lvq4x8($q) => $body,
        }
    };
}

/// What a quantizer contributes to the graph file besides the codes and
/// their per-vector side values.
pub(crate) struct Layout {
    /// Code bytes per vector (0 without codes).
    pub stride: usize,
    /// The header's quantizer parameter (PQ's m, else 0).
    pub quant_param: u32,
    /// The `quant_params` section's floats.
    pub params: Vec<f32>,
}

/// Per-vector values stored beside a code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Side {
    /// None (no codes, product quantization).
    None,
    /// Int8: `‖x̂‖²` of the reconstruction.
    Norm(f32),
    /// Binary: `(α, ‖x‖²)`.
    Factors([f32; 2]),
    /// LVQ-8: `(lo, step)` and `‖x̂‖²`.
    Lvq8(Lvq8Side),
}

impl Side {
    /// `‖x̂‖²`, for the kinds that have one (int8, LVQ).
    pub(crate) fn norm(&self) -> Option<f32> {
        match self {
            Side::Norm(x) => Some(*x),
            Side::Lvq8(l) => Some(l.norm),
            Side::None | Side::Factors(_) => None,
        }
    }

    /// The pair stored in `binary_factors` (binary, LVQ).
    pub(crate) fn factors(&self) -> Option<[f32; 2]> {
        match self {
            Side::Factors(f) => Some(*f),
            Side::Lvq8(l) => Some(l.factors),
            Side::None | Side::Norm(_) => None,
        }
    }
}

/// Training inputs beyond the rows.
pub(crate) struct TrainSpec {
    pub kind: Quantization,
    pub int8_clip: f32,
    pub pq_m: usize,
    pub pq_train_size: usize,
    pub seed: u64,
}

impl Trained {
    /// Trains on `rows` (row-major, `padded` floats each, `dim` meaningful).
    pub(crate) fn train(spec: &TrainSpec, rows: &[f32], dim: usize, padded: usize) -> Trained {
        fn train<Q: Quantizer>(spec: &TrainSpec, rows: &[f32], dim: usize, padded: usize) -> Q {
            Q::train(spec, rows, dim, padded)
        }
        match spec.kind {
            Quantization::None => Trained::None,
            Quantization::Int8 => Trained::Int8(train(spec, rows, dim, padded)),
            Quantization::Pq => Trained::Pq(train(spec, rows, dim, padded)),
            Quantization::Binary => Trained::Binary(train(spec, rows, dim, padded)),
            Quantization::Lvq8 => Trained::Lvq8(train(spec, rows, dim, padded)),
            Quantization::Lvq4x8 => Trained::Lvq4x8(train(spec, rows, dim, padded)),
        }
    }

    /// The quantizer a file stores: `params` its validated `quant_params`
    /// floats, `quant_param` the header's.
    pub(crate) fn from_params(
        kind: Quantization,
        params: &[f32],
        dim: usize,
        padded: usize,
        quant_param: usize,
    ) -> Trained {
        fn from<Q: Quantizer>(params: &[f32], dim: usize, padded: usize, qp: usize) -> Q {
            Q::from_params(params, dim, padded, qp)
        }
        let (p, d, pd, qp) = (params, dim, padded, quant_param);
        match kind {
            Quantization::None => Trained::None,
            Quantization::Int8 => Trained::Int8(from(p, d, pd, qp)),
            Quantization::Pq => Trained::Pq(from(p, d, pd, qp)),
            Quantization::Binary => Trained::Binary(from(p, d, pd, qp)),
            Quantization::Lvq8 => Trained::Lvq8(from(p, d, pd, qp)),
            Quantization::Lvq4x8 => Trained::Lvq4x8(from(p, d, pd, qp)),
        }
    }

    /// The kind.
    pub(crate) fn kind(&self) -> Quantization {
        fn kind<Q: Quantizer>(_: &Q) -> Quantization {
            Q::KIND
        }
        each_quantizer!(self, q => kind(q), None => Quantization::None)
    }

    /// Whether the file written under `metric` has a `code_norms` section
    /// (at the version [`Quantization::format_version`] gives it).
    pub(crate) fn writes_norms(&self, metric: crate::Metric) -> bool {
        let kind = self.kind();
        kind.has_norms(metric, kind.format_version(metric))
    }

    /// Whether the file has a `binary_factors` section (binary, LVQ).
    pub(crate) fn has_factors(&self) -> bool {
        self.kind().has_factors()
    }

    /// Code stride, header parameter and parameter section.
    pub(crate) fn layout(&self, padded: usize) -> Layout {
        let (quant_param, params) =
            each_quantizer!(self, q => (q.quant_param(), q.params()), None => (0, Vec::new()));
        Layout {
            stride: self.kind().code_stride(padded, quant_param as usize),
            quant_param,
            params,
        }
    }

    /// Encodes one row (`padded` floats, `dim` meaningful) into `out`
    /// (`layout().stride` bytes) and returns its side value.
    pub(crate) fn encode_row(&self, row: &[f32], dim: usize, out: &mut [u8]) -> Side {
        each_quantizer!(self, q => Quantizer::encode(q, row, dim, out, None), None => Side::None)
    }

    /// Encodes the residual codes of rows `row(0..count)` (`padded` bytes
    /// each; the kinds with a `residual_codes` section) in parallel into
    /// `out`. Other kinds have none.
    pub(crate) fn encode_residual_rows<'a>(
        &self,
        count: usize,
        row: impl Fn(usize) -> &'a [f32] + Sync,
        dim: usize,
        padded: usize,
        out: &mut [u8],
    ) {
        if !self.kind().has_residual() {
            return;
        }
        let stride = self.kind().code_stride(padded, 0);
        out[..count * padded]
            .par_chunks_exact_mut(padded)
            .enumerate()
            .for_each_init(
                || vec![0u8; stride],
                |primary, (i, r)| {
                    each_quantizer!(self, q => Quantizer::encode(q, row(i), dim, primary, Some(r)), None => Side::None);
                },
            );
    }

    /// Encodes rows `row(0..count)` in parallel into `codes` (`count ×
    /// stride` bytes) and returns their side values.
    pub(crate) fn encode_rows<'a>(
        &self,
        count: usize,
        row: impl Fn(usize) -> &'a [f32] + Sync,
        dim: usize,
        stride: usize,
        codes: &mut [u8],
    ) -> Vec<Side> {
        if stride == 0 {
            return vec![Side::None; count];
        }
        codes[..count * stride]
            .par_chunks_exact_mut(stride)
            .enumerate()
            .map(|(i, c)| self.encode_row(row(i), dim, c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::Kernels;
    use crate::quant::scorer::{AnyScorer, CodeSource, QueryContext, Scorer, ScorerBuffers};
    use crate::Metric;

    const KINDS: [Quantization; 5] = [
        Quantization::Int8,
        Quantization::Pq,
        Quantization::Binary,
        Quantization::Lvq8,
        Quantization::Lvq4x8,
    ];

    /// Rows encoded by one quantizer, as a file would hold them.
    struct Encoded {
        codes: Vec<u8>,
        residual: Vec<u8>,
        sides: Vec<Side>,
        stride: usize,
        padded: usize,
    }

    impl CodeSource for Encoded {
        fn code(&self, o: u32) -> &[u8] {
            &self.codes[o as usize * self.stride..(o as usize + 1) * self.stride]
        }
        fn norm(&self, o: u32) -> f32 {
            self.sides[o as usize].norm().unwrap_or(f32::INFINITY)
        }
        fn factors(&self, o: u32) -> [f32; 2] {
            self.sides[o as usize]
                .factors()
                .unwrap_or([0.0, f32::INFINITY])
        }
        fn residual(&self, o: u32) -> &[u8] {
            let p = self.padded;
            self.residual
                .get(o as usize * p..(o as usize + 1) * p)
                .unwrap_or(&[])
        }
    }

    fn encode(t: &Trained, rows: &[f32], n: usize, dim: usize, padded: usize) -> Encoded {
        let stride = t.layout(padded).stride;
        let mut codes = vec![0u8; n * stride];
        let row = |i: usize| &rows[i * padded..(i + 1) * padded];
        let sides = t.encode_rows(n, row, dim, stride, &mut codes);
        let mut residual = vec![
            0u8;
            if t.kind().has_residual() {
                n * padded
            } else {
                0
            }
        ];
        t.encode_residual_rows(n, row, dim, padded, &mut residual);
        Encoded {
            codes,
            residual,
            sides,
            stride,
            padded,
        }
    }

    /// Every kind through the one interface: the parameters a file stores
    /// give back a quantizer that encodes identically, the stride and
    /// sections match what the reader expects, and the scorer ranks the
    /// rows close to their exact order.
    #[test]
    fn every_kind_round_trips_its_parameters_and_scores_close_to_exact() {
        let (n, dim) = (400, 40);
        let padded = crate::limits::padded_dim(dim);
        let data = crate::dataset::clustered(n, dim, 8, 0.2, 7);
        let mut rows = vec![0f32; n * padded];
        for i in 0..n {
            rows[i * padded..i * padded + dim].copy_from_slice(data.row(i));
        }
        let kernels = Kernels::detect();
        for kind in KINDS {
            let spec = TrainSpec {
                kind,
                int8_clip: 0.0,
                pq_m: 10,
                pq_train_size: n,
                seed: 3,
            };
            let trained = Trained::train(&spec, &rows, dim, padded);
            assert_eq!(trained.kind(), kind);
            let layout = trained.layout(padded);
            assert_eq!(
                Some(layout.params.len()),
                kind.param_floats(dim, padded),
                "{kind:?}"
            );
            assert_eq!(
                layout.stride,
                kind.code_stride(padded, layout.quant_param as usize)
            );
            let back = Trained::from_params(
                kind,
                &layout.params,
                dim,
                padded,
                layout.quant_param as usize,
            );
            assert_eq!(back.layout(padded).params, layout.params, "{kind:?}");
            let (a, b) = (
                encode(&trained, &rows, n, dim, padded),
                encode(&back, &rows, n, dim, padded),
            );
            assert_eq!(a.codes, b.codes, "{kind:?}");
            assert_eq!(a.residual, b.residual, "{kind:?}");
            assert_eq!(a.sides, b.sides, "{kind:?}");
            for metric in [Metric::L2, Metric::InnerProduct] {
                let ctx = QueryContext {
                    metric,
                    dim,
                    pq_m: layout.quant_param as usize,
                    params: &layout.params,
                    kernels,
                };
                let q = &rows[5 * padded..6 * padded];
                let scorer = AnyScorer::new(kind, &ctx, q, ScorerBuffers::default()).unwrap();
                // Exact and estimated distances of every row; the row the
                // query is must be among the estimate's nearest few.
                let exact: Vec<f32> = (0..n)
                    .map(|i| metric.distance(kernels, q, &rows[i * padded..(i + 1) * padded]))
                    .collect();
                let est: Vec<f32> = (0..n as u32).map(|o| scorer.refine(&a, o)).collect();
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&x, &y| est[x].total_cmp(&est[y]));
                let best_exact = (0..n)
                    .min_by(|&x, &y| exact[x].total_cmp(&exact[y]))
                    .unwrap();
                let rank = order.iter().position(|&i| i == best_exact).unwrap();
                let within = if kind == Quantization::Binary { 40 } else { 5 };
                assert!(
                    rank < within,
                    "{kind:?} {metric:?}: exact best ranked {rank}"
                );
            }
        }
    }
}
