//! One generation of an index directory: its graph and vectors files,
//! validated and memory-mapped (or owned), searchable alone (no log).

mod attached;
pub(crate) mod range;

use crate::dir::open::{logged_bytes, map, open_current, paths};
use crate::distance::{prefetch, Kernels};
use crate::error::{Error, Result};
use crate::filter::{next_stamp, Filter, OrdinalSet, DEFAULT_EXACT_BELOW, UNSTAMPED, VISIT_FACTOR};
use crate::format::bytes::Bytes;
use crate::format::layout::{GraphView, Layout};
use crate::format::manifest::Manifest;
use crate::format::sections::SectionKind;
use crate::graph::search::{beam, greedy, with_scratch, Adjacency, Cand, Counting, Scratch};
use crate::io::{IoMode, ReadFault, RowPipeline, RowReader};
use crate::metric::{prepare_vector, Metric};
use crate::params::{Neighbor, SearchParams};
use crate::quant::scorer::{
    AnyScorer, CodeSource, QueryContext, Scorer, ScorerBuffers, ScorerTask,
};
use crate::quant::Quantization;
use crate::queries::Queries;
use crate::tuning::Tuning;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// At most this many queries per thread have rescoring reads in flight in
/// [`Generation::search_batch`] (see [`PIPELINE_READS`]).
pub const PIPELINE_DEPTH: usize = 16;

/// [`Generation::search_batch`] begins another query's reads while fewer than
/// this many disk reads of the thread's earlier queries are in flight (and
/// fewer than [`PIPELINE_DEPTH`] queries): enough to keep an SSD's queue
/// deep (`benches/beyond_ram.py`), whatever the reads per query.
pub const PIPELINE_READS: usize = 64;

/// Options for [`Generation::open_with`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenOptions {
    /// Verify the CRC32 of every section and of the vector data at open
    /// (reads both files once). Without it, open validates the header,
    /// section table and small sections only, in constant time.
    pub verify: bool,
    /// Open the generation's files even when the directory's append log
    /// holds records. Searches then ignore the logged inserts and deletes
    /// (a deleted id can be returned); without this flag such a directory
    /// is an [`Error::HasLog`]. [`Index`](crate::Index) replays the log.
    pub allow_log: bool,
    /// How rescoring reads full-precision rows ([`IoMode`]; default
    /// [`IoMode::Auto`]). Results are the same in every mode.
    pub io: IoMode,
    /// Lock the graph file's pages in RAM at open (`mlock`; reads the whole
    /// graph file once, so open is no longer constant time). Keeps links
    /// and codes resident under memory pressure; an [`Error::Io`] if the
    /// kernel refuses the lock (e.g. `RLIMIT_MEMLOCK`).
    pub lock_graph: bool,
    /// Int8 codes under cosine or inner product only: rescore only the candidates whose quantized distance
    /// is within `2 · z · e` of the `k`-th best quantized distance, where `e`
    /// is the query's worst-case bound on the quantized distance's error
    /// (see [`Generation::search`]); `None` (the default) rescores every
    /// candidate [`SearchParams::oversample`] selects. With `z = 1` and an
    /// index built without clipping (`int8_clip = 0`) the results equal
    /// full rescoring exactly; smaller `z` reads fewer rows at a measured
    /// recall cost (`benches/beyond_ram.py`). Must be finite and positive.
    pub rescore_cut: Option<f32>,
    /// Bytes of RAM for a cache of rows read directly
    /// ([`IoMode::Uring`], [`IoMode::Pread`], [`IoMode::Auto`] while it
    /// reads directly): rows read from disk are kept, with CLOCK
    /// replacement, and served from memory when rescored again. Direct
    /// reads bypass the page cache, so without it (the default, 0) every
    /// rescored row is a disk read however much RAM is free; give it the
    /// RAM the process may use beyond the graph file. Mapped reads ignore
    /// it (the page cache serves them). [`Generation::row_cache_bytes`] reports
    /// its use.
    pub row_cache_bytes: usize,
    /// Fault injection into direct reads, for tests (not a stable API).
    #[doc(hidden)]
    pub read_fault: Option<ReadFault>,
}

/// One generation's files, open and immutable: what [`Index`](crate::Index)
/// searches under its log, and what tools inspect ([`Generation::verify`],
/// [`Generation::reachability`], [`Generation::info`]). Opening a directory
/// whose log holds records is an [`Error::HasLog`] (the log would be
/// ignored) unless [`OpenOptions::allow_log`]: most users want
/// [`Index::open`](crate::Index::open). `Send + Sync`: any number of
/// threads can search it at once without locks; each thread reuses its own
/// scratch buffers (visited set, heaps, query buffers).
///
/// ```
/// use strata::{dataset, BuildParams, Generation, IndexBuilder, Metric, SearchParams};
/// let data = dataset::clustered(2_000, 32, 10, 0.1, 7);
/// let mut b = IndexBuilder::new(32, BuildParams { metric: Metric::L2, seed: Some(7), ..Default::default() })?;
/// b.add_rows(&data.data)?;
/// let dir = tempfile::tempdir().unwrap();
/// b.build()?.write(dir.path())?;
///
/// let index = Generation::open(dir.path())?;
/// let hits = index.search(data.row(42), 5, &SearchParams::with_ef(32))?;
/// assert_eq!(hits[0].id, 42);
/// assert_eq!(hits.len(), 5);
/// # Ok::<(), strata::Error>(())
/// ```
pub struct Generation {
    graph: Bytes,
    vectors: Bytes,
    layout: Layout,
    kernels: &'static Kernels,
    dir: Option<PathBuf>,
    rows: RowReader,
    options: OpenOptions,
    /// Unique per opened generation: with a snapshot's stamp, the key of
    /// a resolved [`Filter`] ([`Filter`] caches the last one).
    stamp: u64,
    /// The generation's number in its directory (0 without one).
    number: u64,
    /// Its stored operating points, read at open or stored since.
    tuning: RwLock<TuningSlot>,
}

/// What a generation knows of its tuning file.
#[derive(Clone)]
enum TuningSlot {
    None,
    Loaded(Arc<Tuning>),
    /// Unreadable or damaged at open: searches that need it read it
    /// again, for the error (or for the points, if it has been replaced).
    Damaged,
}

/// Header fields and file layout of an index, for tools.
#[derive(Debug, Clone)]
pub struct IndexInfo {
    /// Format version of the files.
    pub format_version: u32,
    /// Metric.
    pub metric: Metric,
    /// Traversal codes.
    pub quantization: Quantization,
    /// Code bytes per vector (0 without codes).
    pub code_bytes: usize,
    /// Product quantization's sub-vector count (0 for other kinds).
    pub pq_m: usize,
    /// Dimension of the vectors.
    pub dim: usize,
    /// Number of vectors.
    pub count: usize,
    /// Links per node on upper levels.
    pub m: usize,
    /// Links per node on level 0.
    pub m0: usize,
    /// Beam width used while building.
    pub ef_construction: usize,
    /// Top level.
    pub max_level: usize,
    /// Ordinal of the entry point.
    pub entry_point: u32,
    /// The build's seed.
    pub seed: u64,
    /// The build id shared by both files.
    pub build_id: u128,
    /// Number of nodes on each level.
    pub level_counts: Vec<u32>,
    /// `(name, offset, length, crc32)` of each graph file section.
    pub sections: Vec<(&'static str, u64, u64, u32)>,
    /// Size of the graph file in bytes.
    pub graph_file_bytes: u64,
    /// Size of the vectors file in bytes.
    pub vectors_file_bytes: u64,
    /// Bytes that traversal touches and that should stay in RAM: the graph
    /// file, plus the vectors file when there are no codes.
    pub resident_bytes: u64,
    /// Name of the distance kernels in use.
    pub kernels: &'static str,
    /// Distinct labels the vectors carry (0 without a `labels` section).
    pub labels: usize,
    /// (vector, label) pairs: the length of all inverted lists together.
    pub label_postings: usize,
}

/// Level-0 out-degree statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DegreeStats {
    /// Smallest out-degree.
    pub min: usize,
    /// Largest out-degree.
    pub max: usize,
    /// Mean out-degree.
    pub mean: f64,
    /// Nodes with no links at all.
    pub isolated: usize,
}

impl Generation {
    /// Opens the current generation of the index in `dir` (see
    /// [`OpenOptions`] for what is checked). Cost: reads the manifest, maps
    /// both files and validates page 0 and the small sections; no per-node
    /// work, no allocation proportional to the index.
    pub fn open(dir: impl AsRef<Path>) -> Result<Generation> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// Opens with options.
    pub fn open_with(dir: impl AsRef<Path>, options: &OpenOptions) -> Result<Generation> {
        let dir = dir.as_ref();
        // A publish may replace the generation while its files are opened
        // (the old files are then gone): the directory layer retries.
        open_current(dir, |m| Self::open_generation(dir, m, options)).map(|(index, _)| index)
    }

    fn check_options(options: &OpenOptions) -> Result<()> {
        if let Some(z) = options.rescore_cut {
            if !(z.is_finite() && z > 0.0) {
                return Err(Error::InvalidParameter {
                    name: "rescore_cut",
                    reason: format!("{z} must be finite and positive"),
                });
            }
        }
        Ok(())
    }

    /// Opens the generation `manifest` names, once (no retry: see
    /// [`open_current`]).
    pub(crate) fn open_generation(
        dir: &Path,
        manifest: &Manifest,
        options: &OpenOptions,
    ) -> Result<Generation> {
        Self::check_options(options)?;
        let files = paths(dir, manifest);
        if !options.allow_log {
            let records_bytes = logged_bytes(&files);
            if records_bytes > 0 {
                return Err(Error::HasLog {
                    path: files.log,
                    records_bytes,
                });
            }
        }
        let graph = map(&files.graph)?;
        let vectors = map(&files.vectors)?;
        let layout = Layout::validate(&graph, &vectors, options.verify)?;
        if layout.header.build_id != manifest.build_id {
            return Err(Error::corrupt(
                crate::FileKind::Manifest,
                "build id",
                format!("{:032x} (the graph file's)", layout.header.build_id),
                format!("{:032x}", manifest.build_id),
            ));
        }
        vectors.advise_random();
        if options.lock_graph {
            graph.lock().map_err(|e| Error::io(&files.graph, e))?;
        }
        let rows = RowReader::open(
            options.io,
            Some(&files.vectors),
            layout.vectors_range.start,
            layout.padded * 4,
            options.row_cache_bytes,
            options.read_fault,
        )?;
        let tuning = match crate::dir::tuning::read(dir, manifest.generation, manifest.build_id) {
            Ok(None) => TuningSlot::None,
            Ok(Some(t)) => TuningSlot::Loaded(Arc::new(t)),
            Err(e) if options.verify => return Err(e),
            Err(_) => TuningSlot::Damaged,
        };
        Ok(Generation {
            graph,
            vectors,
            layout,
            kernels: Kernels::detect(),
            dir: Some(dir.to_path_buf()),
            rows,
            options: options.clone(),
            stamp: next_stamp(),
            number: manifest.generation,
            tuning: RwLock::new(tuning),
        })
    }

    /// Opens an index from the bytes of its two files (copied into aligned
    /// buffers), validated exactly as [`Generation::open`] does, with full CRC
    /// verification. Needs no filesystem: fuzz targets and in-memory use.
    pub fn from_bytes(graph: &[u8], vectors: &[u8]) -> Result<Generation> {
        let graph = Bytes::copy_from(graph);
        let vectors = Bytes::copy_from(vectors);
        let layout = Layout::validate(&graph, &vectors, true)?;
        let rows = RowReader::open(
            IoMode::Mmap,
            None,
            layout.vectors_range.start,
            layout.padded * 4,
            0,
            None,
        )?;
        Ok(Generation {
            graph,
            vectors,
            layout,
            kernels: Kernels::detect(),
            dir: None,
            rows,
            options: OpenOptions {
                verify: true,
                io: IoMode::Mmap,
                ..Default::default()
            },
            stamp: next_stamp(),
            number: 0,
            tuning: RwLock::new(TuningSlot::None),
        })
    }

    /// Checks the CRC32 of every section and of the vector data, and the
    /// generation's tuning file if it has one.
    pub fn verify(&self) -> Result<()> {
        self.layout.verify(&self.graph, &self.vectors)?;
        self.tuning().map(|_| ())
    }

    /// The operating points stored with this generation (by `strata
    /// tune`, [`Generation::store_tuning`]), if any: what
    /// [`SearchParams::for_recall`] searches with. Errors: a damaged or
    /// foreign tuning file ([`Error::Corrupt`], [`Error::ChecksumMismatch`],
    /// ... of [`FileKind::Tuning`](crate::FileKind::Tuning)), named at use
    /// and by [`Generation::verify`], never at a plain open (the index
    /// serves every other search).
    pub fn tuning(&self) -> Result<Option<Tuning>> {
        Ok(self.tuning_arc()?.map(|t| (*t).clone()))
    }

    fn tuning_arc(&self) -> Result<Option<Arc<Tuning>>> {
        let slot = self
            .tuning
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match (slot, &self.dir) {
            (TuningSlot::None, _) | (TuningSlot::Damaged, None) => Ok(None),
            (TuningSlot::Loaded(t), _) => Ok(Some(t)),
            (TuningSlot::Damaged, Some(dir)) => {
                let t = crate::dir::tuning::read(dir, self.number, self.layout.header.build_id)?;
                let t = t.map(Arc::new);
                *self.tuning.write().unwrap_or_else(|e| e.into_inner()) = match &t {
                    Some(t) => TuningSlot::Loaded(t.clone()),
                    None => TuningSlot::None,
                };
                Ok(t)
            }
        }
    }

    /// Stores `tuning` as this generation's operating points, replacing
    /// any, crash-safely (`gNNNNNNNN.tuning`, `format-spec/tuning-file.md`);
    /// searches of this handle use them at once, other processes from
    /// their next open. A compaction carries them to the next generation
    /// marked [`Tuning::stale`]. Errors: [`Error::InvalidParameter`] for
    /// points the format cannot hold (more than
    /// [`MAX_TUNING_POINTS`](crate::MAX_TUNING_POINTS), targets not
    /// ascending, values out of range) or an index opened from bytes (it
    /// has no directory), and I/O errors.
    ///
    /// ```
    /// use strata::{dataset, BuildParams, Generation, IndexBuilder, SearchParams, Tuning, TuningPoint, TuningSource};
    /// let data = dataset::clustered(500, 8, 4, 0.1, 1);
    /// let mut b = IndexBuilder::new(8, BuildParams { seed: Some(1), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let dir = tempfile::tempdir().unwrap();
    /// b.build()?.write(dir.path())?;
    /// let index = Generation::open(dir.path())?;
    /// let point = TuningPoint { target: 0.95, ef: 24, oversample: Some(2.0), rescore: true,
    ///     recall: 0.97, held_out_recall: 0.96, qps: 1e4 };
    /// index.store_tuning(&Tuning { measured_at: 0, k: 10, queries: 200, held_out: 100,
    ///     source: TuningSource::SampledRows, live_count: 500, stale: false,
    ///     measured_build_id: index.info().build_id, points: vec![point] })?;
    /// let hits = index.search(data.row(3), 10, &SearchParams::for_recall(0.9))?;
    /// assert_eq!(hits[0].id, 3);
    /// assert_eq!(Generation::open(dir.path())?.tuning()?.unwrap().points, vec![point]);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn store_tuning(&self, tuning: &Tuning) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Err(Error::InvalidParameter {
                name: "tuning",
                reason: "an index opened from bytes has no directory to store points in".into(),
            });
        };
        crate::dir::tuning::write(dir, self.number, self.layout.header.build_id, tuning)?;
        *self.tuning.write().unwrap_or_else(|e| e.into_inner()) =
            TuningSlot::Loaded(Arc::new(tuning.clone()));
        Ok(())
    }

    /// `params` with a recall target ([`SearchParams::recall`]) replaced
    /// by the stored setting for it (see [`SearchParams::for_recall`]).
    pub(crate) fn tuned<'f>(
        &self,
        k: usize,
        params: &SearchParams<'f>,
    ) -> Result<SearchParams<'f>> {
        if params.recall.is_none() {
            return Ok(*params);
        }
        let t = self.tuning_arc()?;
        crate::tuning::resolve(t.as_deref(), k, params)
    }

    /// Stores this generation's points with the next generation of its
    /// directory, `next` of build `next_build`, before a compaction makes
    /// it current: marked [`Tuning::stale`] (the data changed; the points
    /// are likely still close). None stored, or a damaged file (no search
    /// could use it either), is nothing to carry; failing to write is an
    /// error.
    pub(crate) fn carry_tuning(&self, next: u64, next_build: u128) -> Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        // From the file, not this handle's copy: another process (`strata
        // tune`) may have stored points since this generation was opened.
        let Ok(Some(t)) = crate::dir::tuning::read(dir, self.number, self.layout.header.build_id)
        else {
            // Nor may a file left under `next`'s name by an earlier,
            // failed compaction be paired with the new generation.
            return crate::dir::tuning::remove(dir, next);
        };
        let stale = Tuning { stale: true, ..t };
        crate::dir::tuning::write(dir, next, next_build, &stale)
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.layout.n
    }

    /// Always false: an index holds at least one vector.
    pub fn is_empty(&self) -> bool {
        self.layout.n == 0
    }

    /// Dimension of the vectors.
    pub fn dim(&self) -> usize {
        self.layout.dim
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.layout.metric
    }

    /// The traversal codes.
    pub fn quantization(&self) -> Quantization {
        self.layout.quant
    }

    /// The options the index was opened with (an index from
    /// [`Generation::from_bytes`] reports [`IoMode::Mmap`]: its rows are in memory).
    pub fn open_options(&self) -> &OpenOptions {
        &self.options
    }

    /// The row cache's capacity and the bytes of rows it holds now (zeros
    /// without one; see [`OpenOptions::row_cache_bytes`]).
    pub fn row_cache_bytes(&self) -> (usize, usize) {
        self.rows.cache_bytes()
    }

    /// The directory the index was opened from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn view(&self) -> GraphView<'_> {
        self.layout.view(&self.graph, &self.vectors)
    }

    /// Whether the index holds external id `id` (binary search, no allocation).
    pub fn contains(&self, id: u64) -> bool {
        self.view().ordinal(id).is_some()
    }

    /// The external ids, in ordinal order (the order of the vectors
    /// file's rows): every id [`Generation::get`] and
    /// [`Generation::contains`] know, each once.
    ///
    /// ```
    /// use strata::{dataset, BuildParams, IndexBuilder};
    /// let data = dataset::clustered(100, 8, 2, 0.1, 1);
    /// let mut b = IndexBuilder::new(8, BuildParams::default())?;
    /// for i in 0..100 {
    ///     b.add(1_000 + i as u64, data.row(i))?;
    /// }
    /// let index = b.build()?.into_index()?;
    /// let mut ids: Vec<u64> = index.ids().collect();
    /// ids.sort_unstable();
    /// assert_eq!(ids, (1_000..1_100).collect::<Vec<u64>>());
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn ids(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        let v = self.view();
        (0..self.layout.n as u32).map(move |o| v.id(o))
    }

    /// The stored full-precision vector of `id` (normalised under cosine).
    pub fn get(&self, id: u64) -> Result<Vec<f32>> {
        let v = self.view();
        let ord = v.ordinal(id).ok_or(Error::UnknownId(id))?;
        Ok(v.vector(ord)[..self.layout.dim].to_vec())
    }

    fn check_k(k: usize) -> Result<()> {
        if k == 0 {
            return Err(Error::InvalidParameter {
                name: "k",
                reason: "k must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The `k` nearest neighbours of `query`, closest first.
    ///
    /// Descends the upper levels greedily and beam-searches level 0 with
    /// width `max(ef, k)` on the codes; then rescores the best candidates
    /// (see [`SearchParams::oversample`]) with the float32 vectors and
    /// returns the `k` best by exact distance. Returns fewer than `k` only
    /// when fewer than `k` vectors are reachable: the index holds fewer, or
    /// a damaged graph disconnects them. Errors: `k = 0`, wrong
    /// dimension, non-finite components, a zero query under cosine, an
    /// oversampling factor that is not finite and at least 1.
    ///
    /// **Rescoring bound (int8).** The code of component `j` is
    /// `c_j = round((x_j − lo_j) / s_j)`, so an unclipped component is
    /// reconstructed within `s_j / 2`; the search computes
    /// `⟨q, x⟩ ≈ ⟨q, lo⟩ + step · Σ c_j w8_j` with `w_j = q_j s_j` rounded to
    /// `w8_j = round(w_j / step)`. Hence
    /// `|ip_quant − ip_exact| ≤ e = Σ |w_j| / 2 + 255 · Σ |step · w8_j − w_j|`
    /// (up to float rounding; cosine and inner product only: l2's
    /// quantized distance also differs by `‖x̂‖² − ‖x‖²`, bounded only per
    /// vector, so l2 always rescores every candidate). The `k`-th
    /// exact distance is at most `d_k + e` (`d_k` the `k`-th quantized
    /// distance), and a candidate of quantized distance `d` has exact
    /// distance at least `d − e`: beyond `d_k + 2e` it cannot enter the top
    /// `k`. [`OpenOptions::rescore_cut`] `= Some(z)` skips reading those
    /// beyond `d_k + 2 z e`.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Neighbor>> {
        let params = &self.tuned(k, params)?;
        match params.filter {
            Some(f) => self.search_filtered(query, k, params, &*self.resolve(f, 0, |_| false)?),
            None => self.search_accepting(query, k, params, |_| true),
        }
    }

    /// [`Generation::search`] as if `id` were not in the index: it is never
    /// returned, and the traversal never visits it (its links are not
    /// followed), so that a row of the index searched for as a query
    /// behaves like a new vector, not like a node whose neighbour list
    /// already holds its answer. For evaluating an index on its own rows
    /// (`strata tune` samples them when given no queries): recall against
    /// the exact neighbours of the row other than itself.
    ///
    /// Errors: those of [`Generation::search`], [`Error::UnknownId`] if
    /// `id` is not in the generation, and [`Error::InvalidParameter`]
    /// with a filter (a filtered search may scan the matches, which holds
    /// nothing out).
    ///
    /// ```
    /// use strata::{dataset, BuildParams, IndexBuilder, SearchParams};
    /// let data = dataset::clustered(2_000, 16, 8, 0.2, 1);
    /// let mut b = IndexBuilder::new(16, BuildParams { seed: Some(1), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let index = b.build()?.into_index()?;
    /// let p = SearchParams::with_ef(64);
    /// let hits = index.search_leaving_out(data.row(5), 10, &p, 5)?;
    /// assert_eq!(hits.len(), 10);
    /// assert!(hits.iter().all(|h| h.id != 5));
    /// let exact = index.exact_search(data.row(5), 11)?; // itself, then ten others
    /// assert_eq!(exact[1].id, hits[0].id);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn search_leaving_out(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        id: u64,
    ) -> Result<Vec<Neighbor>> {
        if params.filter.is_some() {
            return Err(Error::InvalidParameter {
                name: "filter",
                reason: "search_leaving_out takes no filter".into(),
            });
        }
        let params = &self.tuned(k, params)?;
        let o = self.view().ordinal(id).ok_or(Error::UnknownId(id))?;
        /// Clears the held-out node however the search ends.
        struct Held;
        impl Drop for Held {
            fn drop(&mut self) {
                with_scratch(|s| s.skip = None);
            }
        }
        with_scratch(|s| s.skip = Some(o));
        let _held = Held;
        self.search_accepting(query, k, params, |x| x != o)
    }

    /// [`Generation::search`] returning only ordinals for which `accept` is true
    /// (the others are still traversed, so the graph stays navigable).
    pub(crate) fn search_accepting(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Vec<Neighbor>> {
        let found = self.search_limited(query, k, params, &accept, None)?;
        Ok(found.unwrap_or_default())
    }

    /// [`Generation::search_accepting`] whose beam stops after `limit`
    /// distances: `None` if it did (see [`Scratch::visit_limit`]).
    fn search_limited(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        accept: &impl Fn(u32) -> bool,
        limit: Option<u64>,
    ) -> Result<Option<Vec<Neighbor>>> {
        with_scratch(|s| {
            s.visit_limit = limit;
            let traversed = self.traverse_query(query, k, params, accept, s);
            s.visit_limit = None;
            if std::mem::take(&mut s.limit_hit) {
                return traversed.map(|_| None);
            }
            if traversed? {
                let Scratch {
                    query,
                    found,
                    counts,
                    ..
                } = s;
                let ids: Vec<u32> = found.iter().map(|c| c.id).collect();
                counts.rescored += ids.len() as u64;
                counts.full_distances += ids.len() as u64;
                let v = self.view();
                self.rows.for_rows(
                    &self.vectors,
                    ids.len(),
                    |i| ids[i],
                    |o| v.vector(o),
                    |i, row| found[i].d = self.layout.metric.distance(self.kernels, query, row),
                )?;
                Self::keep_best(found, k);
            }
            Ok(Some(self.neighbors(&s.found)))
        })
    }

    /// The `k` nearest of the ordinals in `allowed` (a resolved
    /// [`crate::Filter`]), planned as [`crate::filter`] describes.
    pub(crate) fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        allowed: &OrdinalSet,
    ) -> Result<Vec<Neighbor>> {
        Self::check_k(k)?;
        let matches = allowed.len();
        let exact_below = params.exact_below.unwrap_or(DEFAULT_EXACT_BELOW).max(k);
        if matches <= exact_below {
            with_scratch(|s| s.counts.filtered_exact += 1);
            return self.exact_over(query, k, allowed.iter());
        }
        let accept = |o: u32| allowed.contains(o);
        let limit = (matches as u64).saturating_mul(VISIT_FACTOR);
        match self.search_limited(query, k, params, &accept, Some(limit))? {
            Some(found) if found.len() >= k.min(matches) => {
                with_scratch(|s| s.counts.filtered_graph += 1);
                Ok(found)
            }
            _ => {
                with_scratch(|s| s.counts.filtered_fallback += 1);
                self.exact_over(query, k, allowed.iter())
            }
        }
    }

    /// Resolves `filter` over this generation's ordinals, without those
    /// `deleted` says are gone: `snapshot` names the deleted set (0 for
    /// none, [`UNSTAMPED`] for one that may still change: not cached), and the filter reuses its last resolution for the same
    /// generation and snapshot.
    pub(crate) fn resolve(
        &self,
        filter: &Filter,
        snapshot: u64,
        deleted: impl Fn(u32) -> bool,
    ) -> Result<std::sync::Arc<OrdinalSet>> {
        let v = self.view();
        let labels = self.layout.labels(&self.graph)?;
        let n = self.layout.n;
        let mut postings = |label: u32, words: &mut [u64]| -> Result<()> {
            for &o in labels.postings(label)? {
                // Ordinals past the count (a damaged list) are left out.
                if (o as usize) < n {
                    if let Some(w) = words.get_mut(o as usize / 64) {
                        *w |= 1 << (o % 64);
                    }
                }
            }
            Ok(())
        };
        let make = || filter.resolve(n, |o| v.id(o), |id| v.ordinal(id), deleted, &mut postings);
        if snapshot == UNSTAMPED {
            return make().map(std::sync::Arc::new);
        }
        filter.resolve_cached((self.stamp, snapshot), make)
    }

    /// The labels of `id`, ascending ([`Error::UnknownId`] if the
    /// generation does not hold it; empty if it has none).
    pub fn labels(&self, id: u64) -> Result<Vec<u32>> {
        let o = self.view().ordinal(id).ok_or(Error::UnknownId(id))?;
        self.labels_of_ordinal(o)
    }

    /// The labels of ordinal `o`, ascending: one binary search per label
    /// of the index (the section has no per-vector list), so for tools and
    /// single lookups; [`Generation::labels_per_ordinal`] for all of them.
    fn labels_of_ordinal(&self, o: u32) -> Result<Vec<u32>> {
        let labels = self.layout.labels(&self.graph)?;
        let mut out = Vec::new();
        for i in 0..labels.label_count() {
            let (label, list) = labels.list_at(i)?;
            if list.binary_search(&o).is_ok() {
                out.push(label);
            }
        }
        Ok(out)
    }

    /// Every ordinal's labels, `(starts, labels)`: those of ordinal `o`
    /// are `labels[starts[o]..starts[o + 1]]` (compaction carries them over).
    pub(crate) fn labels_per_ordinal(&self) -> Result<(Vec<usize>, Vec<u32>)> {
        self.layout.labels(&self.graph)?.per_ordinal(self.layout.n)
    }

    /// Whether any vector of the generation has a label.
    pub(crate) fn has_labels(&self) -> bool {
        self.layout
            .range(crate::format::sections::SectionKind::Labels)
            .is_some()
    }

    /// The closest `k` of `found` (by exact distance) in order.
    fn keep_best(found: &mut Vec<Cand>, k: usize) {
        found.sort_unstable();
        found.truncate(k);
    }

    /// `found` as neighbours (external ids).
    fn neighbors(&self, found: &[Cand]) -> Vec<Neighbor> {
        let v = self.view();
        found
            .iter()
            .map(|c| Neighbor {
                id: v.id(c.id),
                distance: c.d,
            })
            .collect()
    }

    /// Validates `query`, prepares it into `s.query` and traverses the
    /// graph. `Ok(false)`: `s.found` holds the final answer (no codes, so
    /// distances are exact; or [`SearchParams::rescore`] false, so they are
    /// the codes' estimates). `Ok(true)`: `s.found` holds the candidates to
    /// rescore (their rows still to be read), closest first by
    /// approximate distance.
    fn traverse_query(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        accept: &impl Fn(u32) -> bool,
        s: &mut Scratch,
    ) -> Result<bool> {
        let (rescore, ef) = self.widths(k, params)?;
        let v = self.view();
        let l = &self.layout;
        let mut q = std::mem::take(&mut s.query);
        q.resize(l.padded, 0.0);
        let prepared = prepare_vector(l.metric, l.dim, query, None, &mut q);
        let entry = Cand {
            d: 0.0,
            id: l.entry,
        };
        let before = s.counts.distances;
        let traversed = prepared.map(|()| {
            let ctx = self.query_context(&v);
            let buffers = take_buffers(s);
            match AnyScorer::new(l.quant, &ctx, &q, buffers) {
                None => {
                    let k8 = self.kernels;
                    let dist = |o: u32| l.metric.distance(k8, &q, v.vector(o));
                    self.traverse(&v, entry, ef, s, dist, |o| prefetch(v.vector(o)), accept);
                    s.counts.full_distances += s.counts.distances - before;
                    s.found.truncate(k);
                    false
                }
                Some(scorer) => {
                    scorer.run(TraverseCodes {
                        generation: self,
                        view: &v,
                        entry,
                        ef,
                        rescore,
                        k,
                        answer: !params.rescore,
                        scratch: s,
                        accept,
                    });
                    let b = scorer.into_buffers();
                    give_buffers(s, b);
                    params.rescore
                }
            }
        });
        s.query = q;
        traversed
    }

    /// What a scorer needs of this generation to prepare a query.
    pub(crate) fn query_context<'v>(&self, v: &GraphView<'v>) -> QueryContext<'v> {
        let l = &self.layout;
        QueryContext {
            metric: l.metric,
            dim: l.dim,
            pq_m: l.pq_m,
            params: v.quant_params,
            kernels: self.kernels,
        }
    }

    /// Keeps in `s.found` the candidates to rescore: the best `rescore`,
    /// and with `cut` only those whose approximate distance exceeds the
    /// `k`-th one's by at most `cut` (see [`Generation::search`]).
    fn select_for_rescore(s: &mut Scratch, rescore: usize, k: usize, cut: Option<f32>) {
        s.found.truncate(rescore);
        if let (Some(cut), Some(kth)) = (cut, s.found.get(k.saturating_sub(1))) {
            // `found` is sorted by approximate distance: a prefix stays.
            let limit = kth.d + cut;
            let keep = k + s.found[k..].partition_point(|c| c.d <= limit);
            s.found.truncate(keep);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn traverse(
        &self,
        v: &GraphView<'_>,
        entry: Cand,
        ef: usize,
        s: &mut Scratch,
        dist: impl Fn(u32) -> f32,
        prefetch: impl Fn(u32),
        accept: impl Fn(u32) -> bool,
    ) {
        let l = &self.layout;
        let upper = Counting::new(v);
        let skip = s.skip;
        let counted = |o: u32| {
            upper.distance();
            // A held-out node is never moved to (and moved away from if
            // it is the entry point); `beam` never visits it.
            if Some(o) == skip {
                f32::INFINITY
            } else {
                dist(o)
            }
        };
        let mut cur = Cand {
            d: counted(entry.id),
            id: entry.id,
        };
        for level in (1..=l.max_level).rev() {
            cur = greedy(&upper, level, cur, counted);
        }
        upper.add_to(&mut s.counts);
        beam(v, 0, l.n, &[cur], ef, s, &dist, prefetch, accept);
    }

    /// Checks `k` and `params`; returns how many candidates to rescore and
    /// the beam's width (at least `k`, and the rescored count when
    /// rescoring).
    fn widths(&self, k: usize, params: &SearchParams) -> Result<(usize, usize)> {
        Self::check_k(k)?;
        let rescore = self.rescore_count(k, params)?;
        let ef = if params.rescore {
            params.ef_for(k).max(rescore)
        } else {
            params.ef_for(k)
        };
        Ok((rescore, ef))
    }

    fn rescore_count(&self, k: usize, params: &SearchParams) -> Result<usize> {
        Ok(match params.oversample {
            None => params.ef_for(k),
            Some(f) if f.is_finite() && f >= 1.0 => ((k as f64 * f as f64).ceil() as usize).max(k),
            Some(f) => {
                return Err(Error::InvalidParameter {
                    name: "oversample",
                    reason: format!("{f} must be finite and at least 1"),
                });
            }
        })
    }

    /// Searches many queries in parallel on the current rayon pool; the
    /// answers are those of [`Generation::search`], query by query.
    /// [`Error::DimensionMismatch`] (naming both dimensions) if the
    /// queries' dimension is not the index's.
    ///
    /// When rescoring reads rows directly ([`IoMode::Uring`],
    /// [`IoMode::Pread`], [`IoMode::Auto`]) or advises them
    /// ([`IoMode::Willneed`]), each thread pipelines its queries: it begins
    /// the row reads of one query and traverses the next ones while those
    /// reads are in flight, keeping about [`PIPELINE_READS`] reads (of at
    /// most [`PIPELINE_DEPTH`] queries) at the disk, so that the disk's
    /// parallelism is used even by one thread.
    ///
    /// ```
    /// use strata::{dataset, BuildParams, Generation, IndexBuilder, IoMode, OpenOptions, Queries, SearchParams};
    /// let data = dataset::clustered(500, 16, 4, 0.05, 3);
    /// let mut b = IndexBuilder::new(16, BuildParams { seed: Some(3), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let dir = tempfile::tempdir().unwrap();
    /// b.build()?.write(dir.path())?;
    /// let index = Generation::open_with(dir.path(), &OpenOptions { io: IoMode::Pread, ..Default::default() })?;
    /// let params = SearchParams::with_ef(32);
    /// let rows = &data.data[..10 * 16];
    /// let batch = index.search_batch(Queries::new(rows, 16)?, 5, &params)?;
    /// for (q, hits) in rows.chunks(16).zip(&batch) {
    ///     assert_eq!(hits, &index.search(q, 5, &params)?);
    /// }
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn search_batch<'q>(
        &self,
        queries: impl Into<Queries<'q>>,
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let queries = queries.into();
        queries.check(self.layout.dim)?;
        let params = &self.tuned(k, params)?;
        if let Some(f) = params.filter {
            use rayon::prelude::*;
            let allowed = self.resolve(f, 0, |_| false)?;
            return queries
                .data()
                .par_chunks_exact(self.layout.dim)
                .map(|q| self.search_filtered(q, k, params, &allowed))
                .collect();
        }
        self.search_batch_accepting(queries.data(), k, params, &|_| true)
    }

    /// [`Generation::search_batch`] over rows of `data` (dimension already
    /// checked) returning only ordinals for which `accept` is true.
    pub(crate) fn search_batch_accepting(
        &self,
        data: &[f32],
        k: usize,
        params: &SearchParams,
        accept: &(impl Fn(u32) -> bool + Sync),
    ) -> Result<Vec<Vec<Neighbor>>> {
        use rayon::prelude::*;
        let dim = self.layout.dim;
        if !self.rows.pipelines() || self.layout.quant == Quantization::None {
            return data
                .par_chunks_exact(dim)
                .map(|q| self.search_accepting(q, k, params, accept))
                .collect();
        }
        // A few chunks per thread (for balance), each long enough that the
        // pipeline's fill and drain are a small part of it.
        let n = data.len() / dim;
        let threads = rayon::current_num_threads().max(1);
        let chunk = n.div_ceil(threads * 4).clamp(4 * PIPELINE_DEPTH, 256);
        let parts: Vec<Vec<Vec<Neighbor>>> = data
            .par_chunks(chunk * dim)
            .map(|c| self.search_pipelined(c, k, params, accept))
            .collect::<Result<_>>()?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// The queries of `data`, in order, on this thread, with about
    /// [`PIPELINE_READS`] row reads in flight.
    fn search_pipelined(
        &self,
        data: &[f32],
        k: usize,
        params: &SearchParams,
        accept: &impl Fn(u32) -> bool,
    ) -> Result<Vec<Vec<Neighbor>>> {
        /// A query whose rows are being read.
        #[derive(Default)]
        struct Pending {
            query: usize,
            q: Vec<f32>,
            found: Vec<Cand>,
            ids: Vec<u32>,
        }
        let dim = self.layout.dim;
        let mut out = vec![Vec::new(); data.len() / dim];
        let mut pipe = self.rows.pipeline(&self.vectors, PIPELINE_DEPTH);
        let mut pending: Vec<Pending> = (0..pipe.depth()).map(|_| Pending::default()).collect();
        let mut free: Vec<usize> = (0..pipe.depth()).rev().collect();
        let mut order = std::collections::VecDeque::with_capacity(pipe.depth());
        let v = self.view();
        let (metric, kernels) = (self.layout.metric, self.kernels);
        let mut finish = |pipe: &mut RowPipeline<'_>, slot: usize, p: &mut Pending| {
            let Pending { q, found, ids, .. } = p;
            pipe.finish(
                slot,
                |i| ids[i],
                |o| v.vector(o),
                |i, row| found[i].d = metric.distance(kernels, q, row),
            )?;
            Self::keep_best(found, k);
            out[p.query] = self.neighbors(found);
            Ok::<(), Error>(())
        };
        let mut done = Vec::new();
        // Disk reads in flight, per slot and in all.
        let mut reads = vec![0usize; pipe.depth()];
        let mut in_flight = 0;
        for (i, query) in data.chunks_exact(dim).enumerate() {
            while free.is_empty() || in_flight >= PIPELINE_READS {
                let slot = order.pop_front().ok_or_else(|| Error::InvalidParameter {
                    name: "pipeline",
                    reason: "no slot free and none in flight".into(),
                })?;
                finish(&mut pipe, slot, &mut pending[slot])?;
                in_flight -= std::mem::take(&mut reads[slot]);
                free.push(slot);
            }
            let slot = free.pop().ok_or_else(|| Error::InvalidParameter {
                name: "pipeline",
                reason: "no slot free after finishing the oldest".into(),
            })?;
            let p = &mut pending[slot];
            let rescore = with_scratch(|s| {
                if !self.traverse_query(query, k, params, accept, s)? {
                    done.push((i, self.neighbors(&s.found)));
                    return Ok::<bool, Error>(false);
                }
                p.query = i;
                p.q.clear();
                p.q.extend_from_slice(&s.query);
                p.found.clear();
                p.found.extend_from_slice(&s.found);
                p.ids.clear();
                p.ids.extend(s.found.iter().map(|c| c.id));
                s.counts.rescored += p.ids.len() as u64;
                s.counts.full_distances += p.ids.len() as u64;
                Ok(true)
            })?;
            if rescore {
                let ids = &p.ids;
                reads[slot] = pipe.begin(slot, ids.len(), |j| ids[j])?;
                in_flight += reads[slot];
                order.push_back(slot);
            } else {
                free.push(slot);
            }
        }
        while let Some(slot) = order.pop_front() {
            finish(&mut pipe, slot, &mut pending[slot])?;
        }
        for (i, r) in done {
            out[i] = r;
        }
        Ok(out)
    }

    /// The exact `k` nearest neighbours by brute force over the vectors file
    /// (the ground truth `eval` uses when none is given). Cost: one distance
    /// per stored vector.
    pub fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>> {
        self.exact_search_accepting(query, k, |_| true)
    }

    /// [`Generation::exact_search`] over the ordinals for which `accept` is true.
    pub(crate) fn exact_search_accepting(
        &self,
        query: &[f32],
        k: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Result<Vec<Neighbor>> {
        let n = self.layout.n as u32;
        self.exact_over(query, k, (0..n).filter(|&o| accept(o)))
    }

    /// The exact `k` nearest among `ordinals` (each below `n`).
    fn exact_over(
        &self,
        query: &[f32],
        k: usize,
        ordinals: impl Iterator<Item = u32>,
    ) -> Result<Vec<Neighbor>> {
        Self::check_k(k)?;
        let l = &self.layout;
        let v = self.view();
        let mut q = vec![0f32; l.padded];
        prepare_vector(l.metric, l.dim, query, None, &mut q)?;
        let mut top: BinaryHeap<Cand> = BinaryHeap::with_capacity(k.min(l.n) + 1);
        let mut scanned = 0u64;
        for o in ordinals {
            scanned += 1;
            let d = l.metric.distance(self.kernels, &q, v.vector(o));
            if top.len() < k {
                top.push(Cand { d, id: o });
            } else if top.peek().is_some_and(|t| Cand { d, id: o } < *t) {
                top.pop();
                top.push(Cand { d, id: o });
            }
        }
        with_scratch(|s| s.counts.full_distances += scanned);
        Ok(top
            .into_sorted_vec()
            .into_iter()
            .map(|c| Neighbor {
                id: v.id(c.id),
                distance: c.d,
            })
            .collect())
    }

    /// [`Generation::exact_search`] over many queries in parallel (dimension
    /// checked as in [`Generation::search_batch`]).
    pub fn exact_search_batch<'q>(
        &self,
        queries: impl Into<Queries<'q>>,
        k: usize,
    ) -> Result<Vec<Vec<Neighbor>>> {
        use rayon::prelude::*;
        let queries = queries.into();
        queries.check(self.layout.dim)?;
        queries
            .data()
            .par_chunks_exact(self.layout.dim)
            .map(|q| self.exact_search(q, k))
            .collect()
    }

    /// Header fields and layout.
    pub fn info(&self) -> IndexInfo {
        let l = &self.layout;
        let h = &l.header;
        let sections = l
            .sections
            .iter()
            .map(|s| {
                (
                    SectionKind::from_code(s.kind).map_or("unknown", |k| k.name()),
                    s.offset,
                    s.len,
                    s.crc,
                )
            })
            .collect();
        let graph_file_bytes = self.graph.len() as u64;
        let vectors_file_bytes = self.vectors.len() as u64;
        // Validated at open: parsing again cannot fail.
        let labels = l.labels(&self.graph).unwrap_or_default();
        IndexInfo {
            format_version: h.version,
            metric: l.metric,
            quantization: l.quant,
            code_bytes: l.stride,
            pq_m: l.pq_m,
            dim: l.dim,
            count: l.n,
            m: l.m,
            m0: l.m0,
            ef_construction: h.ef_construction as usize,
            max_level: l.max_level,
            entry_point: l.entry,
            seed: h.seed,
            build_id: h.build_id,
            level_counts: l.level_counts.clone(),
            sections,
            graph_file_bytes,
            vectors_file_bytes,
            resident_bytes: match l.quant {
                Quantization::None => graph_file_bytes + vectors_file_bytes,
                _ => graph_file_bytes,
            },
            kernels: self.kernels.name,
            labels: labels.label_count(),
            label_postings: labels.posting_count(),
        }
    }

    /// Out-degree statistics on level 0 (reads every node's link count: O(n)).
    pub fn degree_stats(&self) -> DegreeStats {
        let v = self.view();
        let (mut min, mut max, mut sum, mut isolated) = (usize::MAX, 0, 0usize, 0);
        for o in 0..self.layout.n as u32 {
            let d = v.links(0, o).len();
            min = min.min(d);
            max = max.max(d);
            sum += d;
            isolated += (d == 0) as usize;
        }
        DegreeStats {
            min,
            max,
            mean: sum as f64 / self.layout.n as f64,
            isolated,
        }
    }
}

/// A traversal over one kind of codes, monomorphised per kind by
/// [`AnyScorer::run`]: the descent and beam on [`Scorer::distance`], the
/// second level's re-ranking where the kind has one, then either the
/// candidates to rescore or (`answer`) the `k` best in the metric's units.
struct TraverseCodes<'a, 'v, A> {
    generation: &'a Generation,
    view: &'a GraphView<'v>,
    entry: Cand,
    ef: usize,
    rescore: usize,
    k: usize,
    answer: bool,
    scratch: &'a mut Scratch,
    accept: &'a A,
}

impl<A: Fn(u32) -> bool> ScorerTask for TraverseCodes<'_, '_, A> {
    type Output = ();

    fn run<S: Scorer>(self, scorer: &S) {
        let TraverseCodes {
            generation,
            view: v,
            entry,
            ef,
            rescore,
            k,
            answer,
            scratch: s,
            accept,
        } = self;
        let dist = |o: u32| scorer.distance(v, o);
        let before = s.counts.distances;
        generation.traverse(v, entry, ef, s, dist, |o| prefetch(v.code(o)), accept);
        s.counts.code_distances += s.counts.distances - before;
        if S::REFINES {
            s.counts.code_distances += s.found.len() as u64;
            for c in s.found.iter() {
                prefetch(v.residual(c.id));
            }
            for c in s.found.iter_mut() {
                c.d = scorer.refine(v, c.id);
            }
            s.found.sort_unstable();
        }
        let cut = generation
            .options
            .rescore_cut
            .zip(scorer.error_bound())
            .map(|(z, e)| 2.0 * z * e);
        Generation::select_for_rescore(s, rescore, k, cut);
        if answer {
            // The codes' estimates are the answer (`SearchParams::rescore`
            // false).
            s.found.truncate(k);
            for c in &mut s.found {
                c.d = scorer.to_metric_units(c.d);
            }
        }
    }
}

/// The scorers read codes and the values beside them straight from the
/// mapped file.
impl CodeSource for GraphView<'_> {
    #[inline]
    fn code(&self, o: u32) -> &[u8] {
        GraphView::code(self, o)
    }
    #[inline]
    fn norm(&self, o: u32) -> f32 {
        self.norm_of(o)
    }
    #[inline]
    fn factors(&self, o: u32) -> [f32; 2] {
        self.factors_of(o)
    }
    #[inline]
    fn residual(&self, o: u32) -> &[u8] {
        GraphView::residual(self, o)
    }
}

/// The graph search walks the mapped adjacency in place: this is the one
/// place that sees both the byte views (`format`) and the algorithm
/// (`graph`). Ids out of range for their level are skipped (links are not
/// checked at open, see [`crate::format::layout`]).
impl Adjacency for GraphView<'_> {
    #[inline]
    fn prefetch_links(&self, level: usize, node: u32) {
        prefetch(self.block(level, node));
    }

    #[inline]
    fn for_each_neighbor(&self, level: usize, node: u32, mut f: impl FnMut(u32)) {
        let limit = self.level_limit(level);
        for &nb in self.links(level, node) {
            if nb < limit {
                f(nb);
            }
        }
    }
}

/// Crate-internal access used by the live (logged) index and compaction.
impl Generation {
    /// The ordinal of an external id.
    pub(crate) fn ordinal(&self, id: u64) -> Option<u32> {
        self.view().ordinal(id)
    }

    /// External id and stored vector (at the padded stride) of every
    /// ordinal `accept`s, in ordinal order, with room for `extra_rows` more.
    pub(crate) fn rows_accepting(
        &self,
        accept: impl Fn(u32) -> bool,
        extra_rows: usize,
    ) -> (Vec<u64>, Vec<f32>) {
        let v = self.view();
        let n = self.layout.n as u32;
        let p = crate::limits::padded_dim(self.layout.dim);
        let count = (0..n).filter(|&o| accept(o)).count();
        // Exact capacities: the snapshot of a compaction is the largest
        // allocation it makes, and growing it by doubling would need up
        // to twice the vectors for a moment.
        let mut ids = Vec::with_capacity(count + extra_rows);
        let mut rows = Vec::with_capacity((count + extra_rows) * p);
        for o in (0..n).filter(|&o| accept(o)) {
            ids.push(v.id(o));
            let row = v.vector(o);
            rows.extend_from_slice(&row[..self.layout.dim]);
            rows.resize(rows.len() + p - self.layout.dim, 0.0);
        }
        (ids, rows)
    }

    /// Build parameters that reproduce this index's graph and codes.
    pub(crate) fn build_params(&self) -> crate::BuildParams {
        let l = &self.layout;
        crate::BuildParams {
            metric: l.metric,
            m: l.m,
            ef_construction: l.header.ef_construction as usize,
            quantization: l.quant,
            seed: Some(l.header.seed),
            pq_m: (l.pq_m > 0).then_some(l.pq_m),
            ..Default::default()
        }
    }

    /// The quantizer stored in this index, to encode new vectors with it.
    pub(crate) fn trained_quantizer(&self) -> crate::quant::trained::Trained {
        let l = &self.layout;
        let params = self.view().quant_params;
        crate::quant::trained::Trained::from_params(l.quant, params, l.dim, l.padded, l.pq_m)
    }

    /// The largest external id (the last of the sorted id pairs).
    pub(crate) fn max_id(&self) -> Option<u64> {
        let pairs: &[[u64; 2]] = bytemuck::try_cast_slice(self.view().id_to_ord).ok()?;
        pairs.last().map(|p| p[0])
    }

    /// The build id shared by the index's files.
    pub(crate) fn build_id(&self) -> u128 {
        self.layout.header.build_id
    }
}

/// Which nodes a search can reach: per level, the nodes on it and those no
/// path from the entry point leads to, and level-0 in-degrees. A node with
/// out-links but no in-link is invisible to every search, which out-degree
/// statistics do not show.
#[derive(Debug, Clone, PartialEq)]
pub struct Reachability {
    /// Nodes on each level.
    pub nodes: Vec<usize>,
    /// Nodes on each level that are not reachable from the entry point.
    pub unreachable: Vec<usize>,
    /// External ids of up to 16 unreachable level-0 nodes.
    pub unreachable_ids: Vec<u64>,
    /// Smallest level-0 in-degree.
    pub in_min: usize,
    /// Largest level-0 in-degree.
    pub in_max: usize,
    /// Mean level-0 in-degree.
    pub in_mean: f64,
    /// Level-0 nodes other than the entry point that no link points to.
    pub no_in_links: usize,
}

impl Generation {
    /// Walks every level from the entry point and counts in-degrees on
    /// level 0: reads every link once, O(n · M) time and O(n) memory.
    /// A well-built index has no unreachable node (the builder repairs
    /// them); a nonzero count means searches can never return those nodes.
    pub fn reachability(&self) -> Reachability {
        use crate::graph::reach::{in_degrees, reachable};
        let v = self.view();
        let l = &self.layout;
        let counts: Vec<usize> = (0..=l.max_level)
            .map(|lv| l.level_counts.get(lv).map_or(0, |&c| c as usize))
            .collect();
        let mut unreachable = Vec::with_capacity(counts.len());
        let mut unreachable_ids = Vec::new();
        for (lv, &count) in counts.iter().enumerate() {
            let reached = reachable(&v, lv, count, l.entry);
            let lost = (0..count as u32).filter(|&o| !reached.contains(o));
            if lv == 0 {
                let lost: Vec<u32> = lost.collect();
                unreachable_ids = lost.iter().take(16).map(|&o| v.id(o)).collect();
                unreachable.push(lost.len());
            } else {
                unreachable.push(lost.count());
            }
        }
        let deg = in_degrees(&v, 0, l.n, 0..l.n as u32);
        let (mut in_min, mut in_max, mut sum, mut no_in_links) = (usize::MAX, 0, 0usize, 0);
        for (o, &d) in deg.iter().enumerate() {
            let d = d as usize;
            in_min = in_min.min(d);
            in_max = in_max.max(d);
            sum += d;
            no_in_links += (d == 0 && o as u32 != l.entry) as usize;
        }
        Reachability {
            nodes: counts,
            unreachable,
            unreachable_ids,
            in_min: if deg.is_empty() { 0 } else { in_min },
            in_max,
            in_mean: sum as f64 / l.n.max(1) as f64,
            no_in_links,
        }
    }
}

/// The thread's per-query scorer buffers, taken out of its scratch for a
/// scorer (given back with [`give_buffers`], so that nothing is
/// allocated once they have grown).
pub(crate) fn take_buffers(s: &mut Scratch) -> ScorerBuffers {
    ScorerBuffers {
        f32s: std::mem::take(&mut s.weights),
        i8s: std::mem::take(&mut s.weights_i8),
        i8s_b: std::mem::take(&mut s.weights_i8b),
    }
}

/// Gives a scorer's buffers back to the scratch they came from.
pub(crate) fn give_buffers(s: &mut Scratch, b: ScorerBuffers) {
    (s.weights, s.weights_i8, s.weights_i8b) = (b.f32s, b.i8s, b.i8s_b);
}
