//! A quantizer trained for one build, and the sections it encodes into.

use super::{binary, pq, BinaryQuantizer, Int8Quantizer, ProductQuantizer, Quantization};
use rayon::prelude::*;

/// The trained quantizer of a build.
pub(crate) enum Trained {
    None,
    Int8(Int8Quantizer),
    Pq(ProductQuantizer),
    Binary(BinaryQuantizer),
}

/// Everything a quantizer contributes to the graph file.
#[derive(Default)]
pub(crate) struct Encoded {
    /// Code bytes per vector (0 without codes).
    pub stride: usize,
    /// The header's quantizer parameter (PQ's m, else 0).
    pub quant_param: u32,
    /// The `quant_params` section's floats.
    pub params: Vec<f32>,
    /// `count × stride` code bytes in ordinal order.
    pub codes: Vec<u8>,
    /// Int8: `‖x̂‖²` per vector.
    pub norms: Vec<f32>,
    /// Binary: `(α, ‖x‖²)` per vector.
    pub factors: Vec<[f32; 2]>,
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
        }
    }

    /// Encodes every row (in parallel) into the file's sections.
    pub(crate) fn encode_all(&self, rows: &[f32], dim: usize, padded: usize) -> Encoded {
        let n = rows.len() / padded;
        match self {
            Trained::None => Encoded::default(),
            Trained::Int8(q) => {
                let mut codes = vec![0u8; n * padded];
                let norms = codes
                    .par_chunks_exact_mut(padded)
                    .zip(rows.par_chunks_exact(padded))
                    .map(|(c, r)| q.encode(r, c))
                    .collect();
                let mut params = q.lo.clone();
                params.extend_from_slice(&q.scale);
                Encoded {
                    stride: padded,
                    quant_param: 0,
                    params,
                    codes,
                    norms,
                    factors: Vec::new(),
                }
            }
            Trained::Pq(q) => {
                let stride = pq::code_stride(q.m);
                let mut codes = vec![0u8; n * stride];
                codes
                    .par_chunks_exact_mut(stride)
                    .zip(rows.par_chunks_exact(padded))
                    .for_each(|(c, r)| q.encode(r, c));
                Encoded {
                    stride,
                    quant_param: q.m as u32,
                    params: q.codebooks.clone(),
                    codes,
                    ..Encoded::default()
                }
            }
            Trained::Binary(q) => {
                let stride = binary::code_stride(padded);
                let mut codes = vec![0u8; n * stride];
                let factors = codes
                    .par_chunks_exact_mut(stride)
                    .zip(rows.par_chunks_exact(padded))
                    .map(|(c, r)| q.encode(r, dim, c))
                    .collect();
                Encoded {
                    stride,
                    quant_param: 0,
                    params: q.centre.clone(),
                    codes,
                    norms: Vec::new(),
                    factors,
                }
            }
        }
    }
}
