//! The HNSW graph: construction in RAM ([`build`]) and the beam search shared
//! by construction and by the memory-mapped reader ([`search`]).

pub(crate) mod build;
pub(crate) mod search;
pub(crate) mod visited;
