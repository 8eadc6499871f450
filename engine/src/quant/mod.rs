//! Quantizers: compact codes traversed instead of full-precision vectors.
//!
//! The kind is a header field of the graph file and each kind has its own code
//! stride, so later kinds (product quantization, binary codes) slot in beside
//! these without changing the container.

pub mod binary;
pub mod int8;
pub mod kmeans;
pub mod lvq;
pub mod pq;
pub(crate) mod trained;

pub use binary::BinaryQuantizer;
pub use int8::Int8Quantizer;
pub use lvq::LvqQuantizer;
pub use pq::ProductQuantizer;

pub use crate::quantization::Quantization;
