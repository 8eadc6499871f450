//! The one interface every quantizer implements ([`Quantizer`]: train,
//! encode, parameters to and from the `quant_params` floats) and the
//! per-query half of it ([`Scorer`]: a query prepared once, then one
//! distance per node), after qdrant's `EncodedVectors` (`encode_query` /
//! `score_point`).
//!
//! A scorer reads a node's code and the values stored beside it through
//! [`CodeSource`], which the file reader, the build's in-memory codes and
//! the log's overlay implement; it never sees a file. Which sections a
//! kind's file holds is stated once, in [`Quantization`]'s layout methods.
//!
//! Adding a kind: one file under `quant/` with its quantizer and scorer,
//! one arm in [`AnyScorer`] and in [`super::trained::Trained`], and its
//! layout in [`Quantization`] and `format-spec/`.

use super::trained::{Side, TrainSpec};
use super::Quantization;
use crate::distance::Kernels;
use crate::metric::Metric;

/// Where a scorer finds node `o`'s code and the values stored beside it.
pub(crate) trait CodeSource {
    /// The code (`Quantization::code_stride` bytes).
    fn code(&self, o: u32) -> &[u8];
    /// `‖x̂‖²` of the reconstruction (the `code_norms` section; read only
    /// by the kinds that have one, under L2).
    fn norm(&self, o: u32) -> f32;
    /// The pair of the `binary_factors` section (binary, LVQ).
    fn factors(&self, o: u32) -> [f32; 2];
    /// The `residual_codes` row (LVQ-4x8; empty otherwise).
    fn residual(&self, o: u32) -> &[u8];
}

/// What a scorer is prepared with besides the query.
#[derive(Clone, Copy)]
pub(crate) struct QueryContext<'a> {
    pub metric: Metric,
    /// Meaningful components of the (padded) query.
    pub dim: usize,
    /// Product quantization's `m` (0 for other kinds).
    pub pq_m: usize,
    /// The `quant_params` floats (validated: finite, of the kind's size).
    pub params: &'a [f32],
    pub kernels: &'static Kernels,
}

/// Per-query buffers a scorer takes and gives back, so that a thread's
/// searches allocate nothing once they have grown.
#[derive(Default)]
pub(crate) struct ScorerBuffers {
    pub f32s: Vec<f32>,
    pub i8s: Vec<i8>,
    pub i8s_b: Vec<i8>,
}

/// A query prepared against one kind of codes.
pub(crate) trait Scorer {
    /// The traversal's estimate of the distance to node `o`, on the
    /// metric's scale (see [`Scorer::to_metric_units`]).
    fn distance(&self, src: &impl CodeSource, o: u32) -> f32;

    /// Whether [`Scorer::refine`] is a finer estimate than
    /// [`Scorer::distance`] (LVQ-4x8's second level), worth re-ranking
    /// the beam's candidates with before rescoring.
    const REFINES: bool = false;

    /// The finer estimate (default: the traversal's).
    fn refine(&self, src: &impl CodeSource, o: u32) -> f32 {
        self.distance(src, o)
    }

    /// A bound `e` on how far [`Scorer::distance`] can be from the exact
    /// distance for this query, if the kind has one (int8 under inner
    /// product or cosine): the rescore cut's unit.
    fn error_bound(&self) -> Option<f32> {
        None
    }

    /// A code distance in the metric's units, for answers from the codes
    /// alone. Only product quantization under cosine ranks by another
    /// quantity, `‖q − x̂‖² = 2 (1 − cos)` for unit vectors: halved.
    fn to_metric_units(&self, d: f32) -> f32 {
        d
    }

    /// Gives back the buffers the scorer was prepared in.
    fn into_buffers(self) -> ScorerBuffers;
}

/// The build-time half of a kind: training, codes, and its parameters as
/// the `quant_params` floats of the file.
pub(crate) trait Quantizer: Sized {
    /// The kind.
    const KIND: Quantization;
    /// Its per-query scorer.
    type Scorer: Scorer;

    /// Trains on `rows` (row-major, `padded` floats each, `dim` meaningful).
    fn train(spec: &TrainSpec, rows: &[f32], dim: usize, padded: usize) -> Self;

    /// The `quant_params` floats (to bytes).
    fn params(&self) -> Vec<f32>;

    /// The header's `quant_param` (PQ's `m`, else 0).
    fn quant_param(&self) -> u32 {
        0
    }

    /// The quantizer stored as `params` (validated by the reader) with
    /// `quant_param` (from bytes).
    fn from_params(params: &[f32], dim: usize, padded: usize, quant_param: usize) -> Self;

    /// Encodes one padded row into `code` (`code_stride` bytes) and, for
    /// the kinds that have one, `residual` (`padded` bytes) if given;
    /// returns the values stored beside the code.
    fn encode(&self, row: &[f32], dim: usize, code: &mut [u8], residual: Option<&mut [u8]>)
        -> Side;

    /// Prepares the padded (normalised under cosine) query `q`.
    fn scorer(ctx: &QueryContext<'_>, q: &[f32], buffers: ScorerBuffers) -> Self::Scorer;
}

/// A scorer of any kind, for callers that choose the kind per call (the
/// build's code-guided insertion, the log's overlay). The search's hot
/// path instead runs one monomorphised traversal per kind
/// ([`AnyScorer::run`]).
pub(crate) enum AnyScorer {
    Int8(super::int8::Int8Scorer),
    Pq(super::pq::PqScorer),
    Binary(super::binary::BinaryScorer),
    Lvq8(super::lvq::Lvq8Scorer),
    Lvq4x8(super::lvq::Lvq4x8Scorer),
}

/// Calls `$body` with `$s` bound to the scorer inside `$any`.
macro_rules! each_scorer {
    ($any:expr, $s:ident => $body:expr) => {
        match $any {
            AnyScorer::Int8($s) => $body,
            AnyScorer::Pq($s) => $body,
            AnyScorer::Binary($s) => $body,
            AnyScorer::Lvq8($s) => $body,
            AnyScorer::Lvq4x8($s) => $body,
        }
    };
}

impl AnyScorer {
    /// Prepares `q` for codes of `kind`; `None` for a kind without codes.
    pub(crate) fn new(
        kind: Quantization,
        ctx: &QueryContext<'_>,
        q: &[f32],
        buffers: ScorerBuffers,
    ) -> Option<AnyScorer> {
        use super::lvq;
        Some(match kind {
            Quantization::None => return None,
            Quantization::Int8 => {
                AnyScorer::Int8(<super::Int8Quantizer as Quantizer>::scorer(ctx, q, buffers))
            }
            Quantization::Pq => AnyScorer::Pq(<super::ProductQuantizer as Quantizer>::scorer(
                ctx, q, buffers,
            )),
            Quantization::Binary => AnyScorer::Binary(
                <super::BinaryQuantizer as Quantizer>::scorer(ctx, q, buffers),
            ),
            Quantization::Lvq8 => AnyScorer::Lvq8(lvq::Lvq8Quantizer::scorer(ctx, q, buffers)),
            Quantization::Lvq4x8 => {
                AnyScorer::Lvq4x8(lvq::Lvq4x8Quantizer::scorer(ctx, q, buffers))
            }
        })
    }

    /// Runs `task` on the concrete scorer (one monomorphised copy per kind).
    pub(crate) fn run<T: ScorerTask>(&self, task: T) -> T::Output {
        each_scorer!(self, s => task.run(s))
    }
}

impl Scorer for AnyScorer {
    #[inline]
    fn distance(&self, src: &impl CodeSource, o: u32) -> f32 {
        each_scorer!(self, s => s.distance(src, o))
    }

    const REFINES: bool = true;

    #[inline]
    fn refine(&self, src: &impl CodeSource, o: u32) -> f32 {
        each_scorer!(self, s => s.refine(src, o))
    }

    fn error_bound(&self) -> Option<f32> {
        each_scorer!(self, s => s.error_bound())
    }

    fn to_metric_units(&self, d: f32) -> f32 {
        each_scorer!(self, s => s.to_metric_units(d))
    }

    fn into_buffers(self) -> ScorerBuffers {
        each_scorer!(self, s => s.into_buffers())
    }
}

/// Work generic over the scorer's concrete type, run by
/// [`AnyScorer::run`] (Rust has no generic closures).
pub(crate) trait ScorerTask {
    type Output;
    fn run<S: Scorer>(self, scorer: &S) -> Self::Output;
}
