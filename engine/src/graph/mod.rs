//! The HNSW graph: construction in RAM ([`build`]), the final reachability
//! repair ([`repair`]), the beam search shared by construction and by the
//! memory-mapped reader ([`search`]), its widening into a range (radius)
//! traversal ([`range`]), and reachability walks ([`reach`]).

pub(crate) mod build;
mod links;
pub(crate) mod overlay;
pub(crate) mod range;
pub(crate) mod reach;
mod repair;
pub(crate) mod search;
mod select;
pub(crate) mod visited;
