//! A quantizer trained for one build, and the sections it encodes into.

use super::lvq::{Lvq8Side, LvqQuantizer};
use super::{binary, pq, BinaryQuantizer, Int8Quantizer, ProductQuantizer, Quantization};
use rayon::prelude::*;

/// The trained quantizer of a build.
pub(crate) enum Trained {
    None,
    Int8(Int8Quantizer),
    Pq(ProductQuantizer),
    Binary(BinaryQuantizer),
    Lvq8(LvqQuantizer),
    Lvq4x8(LvqQuantizer),
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
        match spec.kind {
            Quantization::None => Trained::None,
            Quantization::Int8 => {
                Trained::Int8(Int8Quantizer::train(rows, dim, padded, spec.int8_clip))
            }
            Quantization::Pq => Trained::Pq(ProductQuantizer::train(
                rows,
                dim,
                padded,
                spec.pq_m,
                spec.pq_train_size,
                spec.seed,
            )),
            Quantization::Binary => Trained::Binary(BinaryQuantizer::train(rows, padded)),
            Quantization::Lvq8 => Trained::Lvq8(LvqQuantizer::train(rows, dim, padded)),
            Quantization::Lvq4x8 => Trained::Lvq4x8(LvqQuantizer::train(rows, dim, padded)),
        }
    }

    /// Whether the file has a `code_norms` section: int8 and LVQ under L2,
    /// the only metric that reads `‖x̂‖²` (format version 5;
    /// `Quantization::format_version`).
    pub(crate) fn writes_norms(&self, metric: crate::Metric) -> bool {
        metric == crate::Metric::L2
            && matches!(
                self,
                Trained::Int8(_) | Trained::Lvq8(_) | Trained::Lvq4x8(_)
            )
    }

    /// Whether the file has a `binary_factors` section (binary, LVQ).
    pub(crate) fn has_factors(&self) -> bool {
        matches!(
            self,
            Trained::Binary(_) | Trained::Lvq8(_) | Trained::Lvq4x8(_)
        )
    }

    /// Code stride, header parameter and parameter section.
    pub(crate) fn layout(&self, padded: usize) -> Layout {
        match self {
            Trained::None => Layout {
                stride: 0,
                quant_param: 0,
                params: Vec::new(),
            },
            Trained::Int8(q) => {
                let mut params = q.lo.clone();
                params.extend_from_slice(&q.scale);
                Layout {
                    stride: padded,
                    quant_param: 0,
                    params,
                }
            }
            Trained::Pq(q) => Layout {
                stride: pq::code_stride(q.m),
                quant_param: q.m as u32,
                params: q.codebooks.clone(),
            },
            Trained::Binary(q) => Layout {
                stride: binary::code_stride(padded),
                quant_param: 0,
                params: q.centre.clone(),
            },
            Trained::Lvq8(q) => Layout {
                stride: padded,
                quant_param: 0,
                params: q.mean.clone(),
            },
            Trained::Lvq4x8(q) => Layout {
                stride: padded / 2,
                quant_param: 0,
                params: q.mean.clone(),
            },
        }
    }

    /// Encodes one row (`padded` floats, `dim` meaningful) into `out`
    /// (`layout().stride` bytes) and returns its side value.
    pub(crate) fn encode_row(&self, row: &[f32], dim: usize, out: &mut [u8]) -> Side {
        match self {
            Trained::None => Side::None,
            Trained::Int8(q) => Side::Norm(q.encode(row, out)),
            Trained::Pq(q) => {
                q.encode(row, out);
                Side::None
            }
            Trained::Binary(q) => Side::Factors(q.encode(row, dim, out)),
            Trained::Lvq8(q) => Side::Lvq8(q.encode(row, dim, out)),
            Trained::Lvq4x8(q) => Side::Lvq8(q.encode4x8_into(row, dim, out, None)),
        }
    }

    /// Encodes the residual codes of rows `row(0..count)` (LVQ-4x8 only;
    /// `padded` bytes each) in parallel into `out`. Other kinds have none.
    pub(crate) fn encode_residual_rows<'a>(
        &self,
        count: usize,
        row: impl Fn(usize) -> &'a [f32] + Sync,
        dim: usize,
        padded: usize,
        out: &mut [u8],
    ) {
        let Trained::Lvq4x8(q) = self else {
            return;
        };
        out[..count * padded]
            .par_chunks_exact_mut(padded)
            .enumerate()
            .for_each_init(
                || vec![0u8; padded / 2],
                |primary, (i, r)| {
                    q.encode4x8_into(row(i), dim, primary, Some(r));
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
