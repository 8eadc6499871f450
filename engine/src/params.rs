//! Build and search parameters.

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::limits::{MAX_DIM, MAX_M};
use crate::metric::Metric;
use crate::quant::{int8::DEFAULT_CLIP, pq, Quantization};

/// Parameters of an index build. `Default` gives M = 16,
/// ef_construction = 200, cosine, int8 codes, a random seed and all cores.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildParams {
    /// Distance metric.
    pub metric: Metric,
    /// Links per node on upper levels; level 0 keeps `2 * m`.
    pub m: usize,
    /// Beam width while inserting.
    pub ef_construction: usize,
    /// Codes used for traversal.
    pub quantization: Quantization,
    /// Seed for level assignment and the build id. With a seed and
    /// `threads = 1` the written files are byte-identical run to run.
    pub seed: Option<u64>,
    /// Insertion threads; `0` means all cores (the current rayon pool).
    pub threads: usize,
    /// Fraction of values clipped at each end of each dimension's int8 range.
    pub int8_clip: f32,
    /// Product quantization: code bytes (sub-vectors) per vector, `1..=dim`;
    /// `None` picks about `dim / 4`. Validated for every quantizer, used by PQ only.
    pub pq_m: Option<usize>,
    /// Product quantization: rows sampled to train the codebooks.
    pub pq_train_size: usize,
    /// The order rows are inserted in (and nodes laid out in the file).
    pub insert_order: InsertOrder,
    /// After every row is inserted, re-select each node's level-0
    /// neighbours in the finished graph, as the second pass of Vamana's
    /// construction does: a beam of `ef_construction` from the entry point,
    /// the closest `2 · ef_construction` nodes it evaluated plus the
    /// current neighbours, Vamana's robust prune with factors 1 then 1.2,
    /// and back-links. Nodes inserted early chose their neighbours in a
    /// small graph; this lets every node choose in the whole one, keeping
    /// some longer edges. On npm-minilm (int8 codes, one search thread,
    /// two builds of seeds 1 and 2) recall@10 at ef 16 / 24 / 32 / 48 rose
    /// from 0.888 / 0.924 / 0.947 / 0.967 to 0.913 / 0.941-0.943 / 0.957-0.960
    /// / 0.974-0.976, while QPS at equal ef fell 5-10 % (mean level-0
    /// degree 21 → 26.5). A third build (seed 3, interleaved) reached
    /// recall 0.95 at ef 28 instead of 40: 34-35k QPS against 30-32k from
    /// the codes alone (+12 %), and 0.99 rescored at ef 96 instead of 128
    /// (10.8-11.7k against 9.6-10.0k, +15 %). The build takes 2.4-2.8× as
    /// long (13.8 s against 5.5 s at 50k, 2 threads). Re-applying
    /// the insertion's own heuristic (factor 1 only) instead lost recall
    /// on clustered data. Off by default. The files do not record it:
    /// compaction applies it only with `CompactOptions::refine`.
    pub refine: bool,
}

/// The order a build inserts its rows in.
///
/// With [`InsertOrder::Locality`] the rows are grouped by a two-level
/// k-means and, after a random tenth inserted first, inserted group by
/// group, so consecutive insertions search the same part of the graph while
/// it is in cache; the nodes of each level are laid out in the same order
/// in the file, so neighbours sit close together for searches too. Rows
/// keep their ids either way; only the graph and the file layout differ.
///
/// ```
/// use strata::{BuildParams, InsertOrder};
/// let params = BuildParams { insert_order: InsertOrder::Locality, ..Default::default() };
/// assert_eq!(BuildParams::default().insert_order, InsertOrder::Auto);
/// # let _ = params;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InsertOrder {
    /// [`InsertOrder::Locality`] from [`InsertOrder::AUTO_MIN_ROWS`] rows
    /// on, where the rows no longer fit in the caches; input order below.
    #[default]
    Auto,
    /// Input order.
    Input,
    /// Grouped by locality (see the type's documentation).
    Locality,
}

impl InsertOrder {
    /// Rows from which [`InsertOrder::Auto`] groups by locality.
    pub const AUTO_MIN_ROWS: usize = 100_000;

    /// Whether a build of `rows` rows groups them by locality.
    pub fn groups(self, rows: usize) -> bool {
        match self {
            InsertOrder::Auto => rows >= Self::AUTO_MIN_ROWS,
            InsertOrder::Input => false,
            InsertOrder::Locality => rows > 1,
        }
    }

    /// Parses `auto`, `input` or `locality`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(InsertOrder::Auto),
            "input" => Ok(InsertOrder::Input),
            "locality" => Ok(InsertOrder::Locality),
            _ => Err(Error::InvalidParameter {
                name: "insert_order",
                reason: format!("{s:?} is not one of auto, input, locality"),
            }),
        }
    }
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            metric: Metric::Cosine,
            m: 16,
            ef_construction: 200,
            quantization: Quantization::Int8,
            seed: None,
            threads: 0,
            int8_clip: DEFAULT_CLIP,
            pq_m: None,
            pq_train_size: pq::DEFAULT_TRAIN_SIZE,
            insert_order: InsertOrder::Auto,
            refine: false,
        }
    }
}

/// The most threads a build (or any strata thread pool) may ask for: eight
/// per core, and at least 64. More only adds scheduling cost, and a typo
/// such as `--threads 100000` would otherwise spawn that many OS threads.
pub fn max_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    cores.saturating_mul(8).max(64)
}

/// Checks a thread count against [`max_threads`] (0, all cores, is valid).
pub fn check_threads(threads: usize) -> Result<()> {
    let max = max_threads();
    if threads > max {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        return Err(Error::InvalidParameter {
            name: "threads",
            reason: format!(
                "{threads} is above the limit of {max} ({cores} cores here; 0 uses all cores)"
            ),
        });
    }
    Ok(())
}

impl BuildParams {
    pub(crate) fn validate(&self, dim: usize) -> Result<()> {
        let bad = |name, reason: String| Err(Error::InvalidParameter { name, reason });
        check_threads(self.threads)?;
        if dim == 0 || dim > MAX_DIM as usize {
            return bad("dim", format!("{dim} is outside 1..={MAX_DIM}"));
        }
        if self.m < 2 || self.m > MAX_M as usize {
            return bad("m", format!("{} is outside 2..={MAX_M}", self.m));
        }
        if self.ef_construction == 0 {
            return bad("ef_construction", "must be at least 1".into());
        }
        if let Some(m) = self.pq_m {
            if m == 0 || m > dim {
                return bad("pq_m", format!("{m} is outside 1..={dim} (the dimension)"));
            }
        }
        if self.pq_train_size == 0 {
            return bad("pq_train_size", "must be at least 1".into());
        }
        if !(0.0..0.5).contains(&self.int8_clip) {
            return bad(
                "int8_clip",
                format!("{} is outside [0, 0.5)", self.int8_clip),
            );
        }
        Ok(())
    }
}

impl std::str::FromStr for InsertOrder {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        InsertOrder::parse(s)
    }
}

/// Parameters of one search.
///
/// ```
/// use strata::{dataset, BuildParams, Generation, IndexBuilder, SearchParams};
/// let data = dataset::clustered(1_000, 32, 8, 0.05, 2);
/// let mut b = IndexBuilder::new(32, BuildParams { seed: Some(2), ..Default::default() })?;
/// b.add_rows(&data.data)?;
/// let dir = tempfile::tempdir().unwrap();
/// b.build()?.write(dir.path())?;
/// let index = Generation::open(dir.path())?;
/// // Rescored by the float32 vectors (exact distances) ...
/// let exact = index.search(data.row(3), 5, &SearchParams { ef: 32, oversample: Some(2.0), ..Default::default() })?;
/// // ... or from the int8 codes alone: the vectors file is never read.
/// let codes = index.search(data.row(3), 5, &SearchParams { ef: 32, rescore: false, ..Default::default() })?;
/// assert_eq!((exact[0].id, codes[0].id), (3, 3));
/// assert!((codes[0].distance - exact[0].distance).abs() < 0.01);
/// # Ok::<(), strata::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SearchParams<'f> {
    /// Beam width on level 0. Values below `k` are raised to `k`
    /// (as hnswlib does); `0` therefore means "`k`".
    pub ef: usize,
    /// How many candidates to rescore with full-precision vectors, as a
    /// multiple of `k` (`ceil(k * oversample)`, and the beam is widened to at
    /// least that). `None` rescores all `max(k, ef)` beam results. Ignored
    /// when the index has no codes (its distances are already exact), and
    /// when [`SearchParams::rescore`] is false.
    pub oversample: Option<f32>,
    /// Whether the beam's candidates are re-ranked by full-precision
    /// distance, read from the vectors file (the default, `true`). `false`
    /// answers from the codes alone: the `k` best by code distance, with
    /// the codes' estimate of the metric's distance (not exact), and the
    /// vectors file is never read, so nothing of it needs to be cached and
    /// no disk read is made however little RAM there is. Recall is then
    /// what the codes give: on npm-minilm int8 codes lose about 0.004
    /// recall@10 at ef 32 (0.9466 against 0.9508 with `oversample` 2, see
    /// README), product quantization and one-bit codes far more (0.85 and
    /// 0.72). Ignored without codes (distances are exact). Through an
    /// [`Index`](crate::Index) with logged inserts, those are still
    /// ranked by exact distance (their rows are in memory).
    pub rescore: bool,
    /// Only vectors the filter allows are returned, `min(k, matches)` of
    /// them (see [`crate::filter`] for how the search is planned: an exact
    /// scan of the matches when they are few, else the graph with a visit
    /// limit, finished exactly if it is hit). `None`: every vector.
    pub filter: Option<&'f Filter>,
    /// With a filter, scan the matching rows exactly (instead of the
    /// graph) when at most this many match; `None`:
    /// [`DEFAULT_EXACT_BELOW`](crate::filter::DEFAULT_EXACT_BELOW). At
    /// most `k` matches are always scanned. Ignored without a filter.
    pub exact_below: Option<usize>,
    /// Choose the beam width from `k` instead of [`SearchParams::ef`]
    /// (Weaviate's dynamic ef), so that a caller who changes `k` need not
    /// retune: `Some(AutoEf::default())` is the measured rule.
    pub auto_ef: Option<AutoEf>,
    /// The most results a range search
    /// ([`Generation::search_range`](crate::Generation::search_range),
    /// [`Index::search_range`](crate::Index::search_range)) returns: the
    /// nearest this many within the radius, with
    /// [`RangeHits::truncated`] set when there were more. At least 1;
    /// default [`DEFAULT_MAX_RESULTS`]. Ignored by k-nearest searches.
    pub max_results: usize,
    /// Search with the setting stored for this recall target instead of
    /// `ef`, `oversample`, `rescore` and `auto_ef`: the operating point
    /// `strata tune` measured for the smallest stored target at least
    /// this one (see [`SearchParams::for_recall`], [`crate::Tuning`]).
    /// `None` (the default): the fields as given.
    pub recall: Option<f32>,
}

/// The default [`SearchParams::max_results`]: enough for any radius a
/// caller means as "the near ones", small enough that a radius covering
/// the whole index cannot make a search rescore and return all of it.
pub const DEFAULT_MAX_RESULTS: usize = 10_000;

/// A beam width that follows `k`: `clamp(ceil(factor · k), min, max)`.
///
/// The default (factor 2, min 48, max 1,024) was measured on npm-minilm
/// (int8, rescored, one thread; recall@k / QPS of a batch): k = 1 gets ef
/// 48, 0.972 / 9.8k (ef 32 reaches 0.955 / 16.2k); k = 10 ef 48, 0.970 /
/// 13.4k (ef 32: 0.950 / 16.5k); k = 100 ef 200, 0.984 / 3.2k (ef 128:
/// 0.965 / 4.6k). Weaviate's 8 / 100 / 500 gives 0.991, 0.989 and 0.997
/// at 1.7-2.3 × less QPS. It aims a little above recall 0.95 on one data
/// set: other data may need a larger `min` (`strata eval` sweeps ef).
///
/// ```
/// use strata::AutoEf;
/// let auto = AutoEf::default();
/// assert_eq!((auto.ef(1), auto.ef(10), auto.ef(100), auto.ef(600)), (48, 48, 200, 1_024));
/// assert_eq!(auto.ef(5_000), 5_000); // never below k
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoEf {
    /// Beam width per requested neighbour.
    pub factor: f32,
    /// The smallest beam width.
    pub min: usize,
    /// The largest beam width (still raised to `k` if smaller).
    pub max: usize,
}

impl Default for AutoEf {
    fn default() -> Self {
        AutoEf {
            factor: 2.0,
            min: 48,
            max: 1_024,
        }
    }
}

impl AutoEf {
    /// The beam width for `k` neighbours.
    pub fn ef(&self, k: usize) -> usize {
        let scaled = (self.factor.max(0.0) as f64 * k as f64).ceil();
        let scaled = if scaled.is_finite() && scaled < usize::MAX as f64 {
            scaled as usize
        } else {
            usize::MAX
        };
        scaled.clamp(self.min.min(self.max), self.max).max(k)
    }
}

impl PartialEq for SearchParams<'_> {
    /// Equal settings, and the same filter object (by address).
    fn eq(&self, o: &Self) -> bool {
        self.ef == o.ef
            && self.oversample == o.oversample
            && self.rescore == o.rescore
            && self.exact_below == o.exact_below
            && self.auto_ef == o.auto_ef
            && self.max_results == o.max_results
            && self.recall == o.recall
            && match (self.filter, o.filter) {
                (None, None) => true,
                (Some(a), Some(b)) => std::ptr::eq(a, b),
                _ => false,
            }
    }
}

impl Default for SearchParams<'_> {
    fn default() -> Self {
        SearchParams {
            ef: 64,
            oversample: None,
            rescore: true,
            filter: None,
            exact_below: None,
            auto_ef: None,
            max_results: DEFAULT_MAX_RESULTS,
            recall: None,
        }
    }
}

impl SearchParams<'_> {
    /// The beam width of a search for `k` neighbours: [`SearchParams::ef`],
    /// or the one [`SearchParams::auto_ef`] chooses (at least `k` either
    /// way).
    ///
    /// ```
    /// use strata::{dataset, AutoEf, BuildParams, IndexBuilder, SearchParams};
    /// let data = dataset::clustered(2_000, 16, 8, 0.3, 1);
    /// let mut b = IndexBuilder::new(16, BuildParams { seed: Some(1), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let index = b.build()?.into_index()?;
    /// let auto = SearchParams { auto_ef: Some(AutoEf::default()), ..SearchParams::with_ef(1) };
    /// assert_eq!((auto.ef_for(10), auto.ef_for(100)), (48, 200));
    /// // The search runs with the chosen width, not with `ef`: the same
    /// // work as a fixed ef of 48 and more than one of 10.
    /// let hops = |p: &SearchParams| -> strata::Result<u64> {
    ///     strata::take_search_counts();
    ///     index.search(data.row(7), 10, p)?;
    ///     Ok(strata::take_search_counts().hops)
    /// };
    /// assert_eq!(hops(&auto)?, hops(&SearchParams::with_ef(48))?);
    /// assert!(hops(&auto)? > hops(&SearchParams::with_ef(10))?);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn ef_for(&self, k: usize) -> usize {
        match self.auto_ef {
            Some(auto) => auto.ef(k),
            None => self.ef.max(k),
        }
    }

    /// Search parameters with beam width `ef` and default rescoring.
    pub fn with_ef(ef: usize) -> Self {
        SearchParams {
            ef,
            ..Default::default()
        }
    }

    /// Search parameters that use the index's stored operating point for
    /// recall@k `target` (measured by `strata tune`, stored with the
    /// generation): the fastest setting whose recall on held-out queries
    /// met the smallest stored target at least `target`. A search with
    /// them fails with [`Error::NotTuned`](crate::Error::NotTuned) when
    /// the index has no stored points, none reaches `target`, or `k` is
    /// above the `k` they were tuned for; with
    /// [`Error::InvalidParameter`](crate::Error::InvalidParameter) for a
    /// target outside `(0, 1]`. A filter or `max_results` may be set on
    /// the result as usual.
    ///
    /// ```
    /// use strata::{dataset, BuildParams, Error, Generation, IndexBuilder, SearchParams};
    /// let data = dataset::clustered(500, 8, 4, 0.1, 1);
    /// let mut b = IndexBuilder::new(8, BuildParams { seed: Some(1), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let dir = tempfile::tempdir().unwrap();
    /// b.build()?.write(dir.path())?;
    /// let index = Generation::open(dir.path())?;
    /// // Not tuned yet: a typed error that says to run `strata tune`.
    /// let e = index.search(data.row(0), 10, &SearchParams::for_recall(0.95)).unwrap_err();
    /// assert!(matches!(e, Error::NotTuned { .. }) && e.to_string().contains("strata tune"));
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn for_recall(target: f32) -> Self {
        SearchParams {
            recall: Some(target),
            ..Default::default()
        }
    }
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The external id given at build.
    pub id: u64,
    /// Distance to the query under the index's metric (see [`Metric`]).
    pub distance: f32,
}

/// The answer of a range search: every vector within the radius, nearest
/// first, at most [`SearchParams::max_results`] of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RangeHits {
    /// The vectors found within the radius, by ascending distance (in the
    /// units [`Neighbor::distance`] uses).
    pub neighbors: Vec<Neighbor>,
    /// The search found more vectors within the radius than
    /// [`SearchParams::max_results`] (or more candidates than it could
    /// keep for them): `neighbors` holds the nearest `max_results` it
    /// found, and others within the radius were left out.
    pub truncated: bool,
}
