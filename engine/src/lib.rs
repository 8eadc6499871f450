//! # strata
//!
//! A disk-backed, memory-mapped HNSW vector index traversed on compact codes
//! (int8, product or binary quantization, or none) with full-precision
//! rescoring, and an append log for inserts, deletes and upserts.
//!
//! * [`IndexBuilder`] validates vectors and builds the HNSW graph in
//!   parallel (Malkov & Yashunin, with the diverse-neighbour heuristic).
//! * [`BuiltIndex::write`] writes a directory holding a graph file
//!   (header, section table, codes, fixed-stride adjacency, id maps)
//!   and a separate float32 vectors file, crash-safely.
//! * [`Index::open`] opens a directory: it maps the current generation's
//!   two files, validates them in constant time and replays the log, if
//!   any; searches traverse the mapped bytes in place (no load step, no
//!   per-node allocation) on the codes, rescore the best candidates with
//!   the float32 vectors, and merge the logged inserts (an in-memory graph)
//!   by exact distance. Searches never lock: they run on a snapshot.
//! * [`Writer`] appends inserts, deletes and upserts to the directory's log
//!   and folds it into a new generation ([`Writer::compact`]), on its own
//!   by policy ([`AutoCompact`]); [`Writer::live`] is an [`Index`] that
//!   sees each operation at once.
//! * [`LabelExpr`] parses label filter expressions
//!   (`label in (3, 4) and not label = 9`) and evaluates them on one
//!   vector's labels or, from inverted lists, to a bitmap of ordinals.
//! * [`Generation`] is one generation's files alone (no log), for tools and
//!   verification ([`Generation::verify`], [`Generation::reachability`]).
//!
//! The byte-level format is specified in `format-spec/` at the repository
//! root; [`mod@format`] implements it.
//!
//! ```
//! use strata::{dataset, BuildParams, IndexBuilder, Metric, SearchParams};
//! let data = dataset::clustered(1_000, 16, 8, 0.05, 1);
//! let params = BuildParams { metric: Metric::Cosine, seed: Some(1), ..Default::default() };
//! let mut builder = IndexBuilder::new(16, params)?;
//! builder.add_rows(&data.data)?;
//! let index = builder.build()?.into_index()?;
//! let hits = index.search(data.row(3), 10, &SearchParams::with_ef(64))?;
//! assert_eq!(hits[0].id, 3);
//! # Ok::<(), strata::Error>(())
//! ```
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod builder;
pub mod dataset;
mod dir;
pub mod distance;
pub mod error;
pub mod filter;
pub mod format;
mod fsio;
mod generation;
mod graph;
mod hugepages;
pub mod io;
pub mod label_expr;
mod limits;
mod live;
mod locality;
pub mod log;
pub mod metric;
mod params;
pub mod quant;
mod quantization;
mod queries;
mod regular;
mod tuning;

pub use builder::{BuildProgress, BuildReport, BuildStage, BuiltIndex, IndexBuilder};
pub use error::{Error, FileKind, Result};
pub use filter::Filter;
pub use generation::{
    DegreeStats, Generation, IndexInfo, OpenOptions, Reachability, PIPELINE_DEPTH, PIPELINE_READS,
};
pub use io::IoMode;
pub use label_expr::LabelExpr;
pub use live::{
    AutoCompact, AutoCompactStats, BatchOptions, BatchReport, CompactOptions, CompactReport,
    Durability, Index, IndexStats, Writer, WriterOptions,
};
pub use metric::Metric;
pub use params::{
    check_threads, max_threads, AutoEf, BuildParams, InsertOrder, Neighbor, RangeHits,
    SearchParams, DEFAULT_MAX_RESULTS,
};
pub use quant::Quantization;
pub use queries::Queries;
pub use tuning::{Tuning, TuningPoint, TuningSource, MAX_TUNING_POINTS};

pub use graph::search::SearchCounts;

/// The hops, visited nodes and distance computations (on codes and at full
/// precision, see [`SearchCounts`]) of the searches this thread
/// ran since the last call (or since it started), and resets them: how
/// much work a setting costs per query, independent of the machine's
/// speed (hnswlib's `metric_hops` and `metric_distance_computations`).
/// Searches on other threads (e.g. [`Index::search_batch`]'s pool) count
/// on those threads.
///
/// ```
/// use strata::{dataset, BuildParams, IndexBuilder, SearchParams};
/// let data = dataset::clustered(500, 8, 4, 0.1, 1);
/// let mut b = IndexBuilder::new(8, BuildParams { seed: Some(1), ..Default::default() })?;
/// b.add_rows(&data.data)?;
/// let index = b.build()?.into_index()?;
/// strata::take_search_counts();
/// index.search(data.row(0), 10, &SearchParams::with_ef(32))?;
/// let c = strata::take_search_counts();
/// assert!(c.hops > 0 && c.distances >= c.hops);
/// // int8 codes (the default): the traversal is on codes, and the beam's
/// // max(ef, k) = 32 candidates are rescored at full precision.
/// assert_eq!(c.code_distances, c.distances);
/// assert_eq!((c.rescored, c.full_distances), (32, 32));
/// assert!(c.visited > 0 && c.visited <= c.distances + 1);
/// assert_eq!(strata::take_search_counts(), strata::SearchCounts::default());
///
/// // A float32 index: every distance is full precision, none rescored.
/// let params = BuildParams { seed: Some(1), quantization: strata::Quantization::None, ..Default::default() };
/// let mut b = IndexBuilder::new(8, params)?;
/// b.add_rows(&data.data)?;
/// let index = b.build()?.into_index()?;
/// strata::take_search_counts();
/// index.search(data.row(0), 10, &SearchParams::with_ef(32))?;
/// let c = strata::take_search_counts();
/// assert_eq!((c.code_distances, c.rescored), (0, 0));
/// assert_eq!(c.full_distances, c.distances);
/// # Ok::<(), strata::Error>(())
/// ```
pub fn take_search_counts() -> SearchCounts {
    graph::search::take_counts()
}

/// The README's Rust example, compiled and run as a doc test.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
