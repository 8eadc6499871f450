//! Quantizers: compact codes traversed instead of full-precision vectors.
//!
//! The kind is a header field of the graph file and each kind has its own code
//! stride, so kinds slot in beside each other without changing the
//! container. Every kind implements one interface (`scorer.rs`): a
//! quantizer that trains, encodes and turns its parameters to and from the
//! file's `quant_params` floats, and a per-query scorer that the search,
//! the build's code-guided insertion and the log's overlay all call. Which
//! sections a kind's file holds is stated once, in [`Quantization`].

pub mod binary;
pub mod int8;
pub mod kmeans;
pub mod lvq;
pub mod pq;
pub(crate) mod scorer;
pub(crate) mod trained;

pub use binary::BinaryQuantizer;
pub use int8::Int8Quantizer;
pub use lvq::LvqQuantizer;
pub use pq::ProductQuantizer;

pub use crate::quantization::Quantization;
