//! Building an index from vectors: validation, graph construction,
//! quantizer training, and assembly of the two files.

use crate::dir::names;
use crate::distance::padded_dim;
use crate::error::{Error, Result};
use crate::format::graph_header::GraphHeader;
use crate::format::manifest::Manifest;
use crate::format::sections::SectionKind;
use crate::format::writer::{GraphWriter, VectorsWriter};
use crate::format::ELEMENT_F32;
use crate::fsio::{sync_dir, temp_path, TempFile};
use crate::generation::Generation;
use crate::graph::build::{build_graph, BuiltGraph, GraphInput, GuideCodes, Pass};
use crate::metric::prepare_vector;
use crate::params::BuildParams;
use crate::quant::pq;
use crate::quant::trained::{TrainSpec, Trained};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Cursor, Seek, Write};
use std::path::Path;

/// Which part of a build is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStage {
    /// Inserting nodes into the graph (`done` of `total` nodes).
    Insert,
    /// Re-selecting level-0 neighbours in the finished graph
    /// ([`BuildParams::refine`](crate::BuildParams::refine); `done` of `total` nodes).
    Refine,
    /// Training the quantizer and encoding codes.
    Quantize,
    /// Laying out the files.
    Assemble,
}

/// Progress of a build, passed to the callback of
/// [`IndexBuilder::build_with_progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildProgress {
    /// The stage running.
    pub stage: BuildStage,
    /// Units done in this stage.
    pub done: usize,
    /// Units in this stage.
    pub total: usize,
}

/// Collects vectors with their external ids, then builds an index.
///
/// Every vector is validated as it is added (dimension, finiteness, zero
/// vectors under cosine, duplicate ids); a rejected call leaves the builder
/// as it was, and nothing is written until [`BuiltIndex::write`].
///
/// ```
/// use strata::{IndexBuilder, BuildParams, Metric, SearchParams};
/// let params = BuildParams { metric: Metric::L2, seed: Some(1), ..Default::default() };
/// let mut b = IndexBuilder::new(2, params)?;
/// for i in 0..100u64 {
///     b.add(i, &[i as f32, (i % 7) as f32])?;
/// }
/// let index = b.build()?.into_index()?;
/// let hits = index.search(&[10.2, 3.0], 1, &SearchParams::default())?;
/// assert_eq!(hits[0].id, 10);
/// # Ok::<(), strata::Error>(())
/// ```
pub struct IndexBuilder {
    /// A quantizer to encode with instead of training one (compaction).
    reuse: Option<Trained>,
    dim: usize,
    padded: usize,
    params: BuildParams,
    data: Vec<f32>,
    ids: Vec<u64>,
    rows_by_id: HashMap<u64, usize>,
    /// Each row's labels, sorted and distinct; empty until a row gets one
    /// (then as long as `ids`).
    labels: Vec<Box<[u32]>>,
}

impl IndexBuilder {
    /// A builder for `dim`-dimensional vectors.
    pub fn new(dim: usize, params: BuildParams) -> Result<Self> {
        params.validate(dim)?;
        Ok(IndexBuilder {
            reuse: None,
            dim,
            padded: padded_dim(dim),
            params,
            data: Vec::new(),
            ids: Vec::new(),
            rows_by_id: HashMap::new(),
            labels: Vec::new(),
        })
    }

    /// Number of vectors added.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether no vector was added yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Adds one vector under external id `id`.
    pub fn add(&mut self, id: u64, vector: &[f32]) -> Result<()> {
        let row = self.ids.len();
        if let Some(&first_row) = self.rows_by_id.get(&id) {
            return Err(Error::DuplicateId { id, first_row, row });
        }
        if self.ids.len() >= u32::MAX as usize - 1 {
            return Err(Error::InvalidParameter {
                name: "count",
                reason: "an index holds at most 4294967294 vectors".into(),
            });
        }
        let start = self.data.len();
        self.data.resize(start + self.padded, 0.0);
        if let Err(e) = prepare_vector(
            self.params.metric,
            self.dim,
            vector,
            Some(row),
            &mut self.data[start..],
        ) {
            self.data.truncate(start);
            return Err(e);
        }
        self.ids.push(id);
        self.rows_by_id.insert(id, row);
        Ok(())
    }

    /// [`add`](Self::add) with the vector's labels (any order, duplicates
    /// ignored, at most [`MAX_LABELS_PER_VECTOR`](crate::format::MAX_LABELS_PER_VECTOR)),
    /// which [label filters](crate::Filter::labels) select by.
    ///
    /// ```
    /// use strata::{BuildParams, Filter, IndexBuilder, SearchParams};
    /// let mut b = IndexBuilder::new(2, BuildParams { seed: Some(1), ..Default::default() })?;
    /// for i in 0..200u64 {
    ///     b.add_with_labels(i, &[i as f32, 1.0], &[(i % 4) as u32])?;
    /// }
    /// let index = b.build()?.into_index()?;
    /// let twos = Filter::labels("label = 2")?;
    /// let hits = index.search(&[10.0, 1.0], 5, &SearchParams { filter: Some(&twos), ..Default::default() })?;
    /// assert!(hits.iter().all(|h| h.id % 4 == 2));
    /// assert_eq!(index.labels(hits[0].id)?, [2]);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn add_with_labels(&mut self, id: u64, vector: &[f32], labels: &[u32]) -> Result<()> {
        let labels = normalized_labels(labels)?;
        self.add(id, vector)?;
        self.set_row_labels(self.ids.len() - 1, labels);
        Ok(())
    }

    /// Gives the vector added as row `row` (0 for the first added) these
    /// labels, replacing any it had; for rows added in bulk
    /// ([`add_rows_vec`](Self::add_rows_vec)).
    pub fn set_labels(&mut self, row: usize, labels: &[u32]) -> Result<()> {
        if row >= self.ids.len() {
            return Err(Error::InvalidParameter {
                name: "row",
                reason: format!("row {row} of a builder holding {} vectors", self.ids.len()),
            });
        }
        let labels = normalized_labels(labels)?;
        self.set_row_labels(row, labels);
        Ok(())
    }

    fn set_row_labels(&mut self, row: usize, labels: Box<[u32]>) {
        if labels.is_empty() && self.labels.is_empty() {
            return;
        }
        if self.labels.len() < self.ids.len() {
            self.labels.resize(self.ids.len(), Box::default());
        }
        self.labels[row] = labels;
    }

    /// The labels of row `row` (empty if it has none).
    fn row_labels(&self, row: usize) -> &[u32] {
        self.labels.get(row).map_or(&[], |l| &l[..])
    }

    /// Adds row-major vectors with ids equal to their row numbers
    /// (continuing from the vectors already added). All or nothing.
    pub fn add_rows(&mut self, rows: &[f32]) -> Result<()> {
        if !rows.len().is_multiple_of(self.dim) {
            return Err(Error::DimensionMismatch {
                expected: self.dim,
                found: rows.len() % self.dim,
                row: Some(self.ids.len() + rows.len() / self.dim),
            });
        }
        let before = self.ids.len();
        for v in rows.chunks_exact(self.dim) {
            let id = self.ids.len() as u64;
            if let Err(e) = self.add(id, v) {
                for id in self.ids.drain(before..) {
                    self.rows_by_id.remove(&id);
                }
                self.data.truncate(before * self.padded);
                return Err(e);
            }
        }
        Ok(())
    }

    /// [`add_rows`](Self::add_rows) taking the rows by value: into an empty
    /// builder they are prepared in place (widened to the padded stride,
    /// normalised under cosine) instead of copied, so adding them needs no
    /// second copy of the input. On error the builder is left as it was
    /// (the rows are dropped).
    pub fn add_rows_vec(&mut self, mut rows: Vec<f32>) -> Result<()> {
        if !self.ids.is_empty() || !rows.len().is_multiple_of(self.dim) {
            return self.add_rows(&rows);
        }
        let (dim, p) = (self.dim, self.padded);
        let n = rows.len() / dim;
        if n >= u32::MAX as usize - 1 {
            return Err(Error::InvalidParameter {
                name: "count",
                reason: "an index holds at most 4294967294 vectors".into(),
            });
        }
        if p != dim {
            // Widen in place from the last row down, so no row is
            // overwritten before it moved.
            rows.resize(n * p, 0.0);
            for i in (0..n).rev() {
                rows.copy_within(i * dim..(i + 1) * dim, i * p);
                rows[i * p + dim..(i + 1) * p].fill(0.0);
            }
        }
        let mut scratch = vec![0f32; dim];
        for (i, row) in rows.chunks_exact_mut(p).enumerate() {
            scratch.copy_from_slice(&row[..dim]);
            prepare_vector(self.params.metric, dim, &scratch, Some(i), row)?;
        }
        self.data = rows;
        self.ids = (0..n as u64).collect();
        self.rows_by_id = self.ids.iter().map(|&id| (id, id as usize)).collect();
        Ok(())
    }

    /// Takes rows already at the padded stride, with their ids, into an
    /// empty builder without copying them (compaction: its snapshot of the
    /// live vectors becomes the builder's rows). Each row is prepared in
    /// place as [`add`](Self::add) would prepare it.
    pub(crate) fn take_padded_rows(&mut self, mut rows: Vec<f32>, ids: Vec<u64>) -> Result<()> {
        let (dim, p) = (self.dim, self.padded);
        if !self.ids.is_empty() || rows.len() != ids.len() * p {
            return Err(Error::InvalidParameter {
                name: "rows",
                reason: format!(
                    "{} floats for {} ids at stride {p}, into a builder holding {}",
                    rows.len(),
                    ids.len(),
                    self.ids.len()
                ),
            });
        }
        if ids.len() >= u32::MAX as usize - 1 {
            return Err(Error::InvalidParameter {
                name: "count",
                reason: "an index holds at most 4294967294 vectors".into(),
            });
        }
        let mut rows_by_id = HashMap::with_capacity(ids.len());
        for (row, &id) in ids.iter().enumerate() {
            if let Some(first_row) = rows_by_id.insert(id, row) {
                return Err(Error::DuplicateId { id, first_row, row });
            }
        }
        let mut scratch = vec![0f32; dim];
        for (i, row) in rows.chunks_exact_mut(p).enumerate() {
            scratch.copy_from_slice(&row[..dim]);
            row[dim..].fill(0.0);
            prepare_vector(self.params.metric, dim, &scratch, Some(i), row)?;
        }
        self.data = rows;
        self.ids = ids;
        self.rows_by_id = rows_by_id;
        Ok(())
    }

    /// Encodes with `quantizer` instead of training a new one.
    pub(crate) fn reuse_quantizer(&mut self, quantizer: Trained) {
        self.reuse = Some(quantizer);
    }

    /// Builds the index in memory.
    pub fn build(self) -> Result<BuiltIndex> {
        self.build_with_progress(&|_| {})
    }

    /// Builds the index in memory, reporting progress through `progress`.
    pub fn build_with_progress(
        self,
        progress: &(dyn Fn(BuildProgress) + Sync),
    ) -> Result<BuiltIndex> {
        let (b, graph, quantizer, seed) = self.construct(progress)?;
        let (build_id, g, v) = b
            .emit(
                &graph,
                &quantizer,
                seed,
                Cursor::new(Vec::new()),
                Cursor::new(Vec::new()),
            )
            .expect("writes to memory do not fail");
        assembled(progress);
        Ok(BuiltIndex {
            graph: g.into_inner(),
            vectors: v.into_inner(),
            build_id,
            repaired: graph.repaired,
        })
    }

    /// Builds the index and writes it into `dir` (created if missing),
    /// streaming: each section goes to disk as it is produced, so memory
    /// holds the vectors, the graph and one chunk of output, never the
    /// files. The files are written under temporary names, fsynced,
    /// renamed, then the manifest is swapped, as [`BuiltIndex::write`] does;
    /// the directory's writer lock is held from the start, so no writer
    /// opens the index mid-build.
    pub fn build_into(
        self,
        dir: impl AsRef<Path>,
        progress: &(dyn Fn(BuildProgress) + Sync),
    ) -> Result<BuildReport> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let _lock = crate::dir::lock::lock(dir)?;
        let staged = self.build_staged(dir, progress)?;
        let report = BuildReport {
            build_id: staged.build_id,
            repaired: staged.repaired.clone(),
        };
        crate::dir::publish::publish_locked(dir, staged.build_id, |dir, m| {
            staged.publish_files(dir, m)
        })?;
        Ok(report)
    }

    /// Builds the index into temporary files in `dir` (which must exist),
    /// removed again unless [`Staged::publish_files`] renames them.
    pub(crate) fn build_staged(
        self,
        dir: &Path,
        progress: &(dyn Fn(BuildProgress) + Sync),
    ) -> Result<Staged> {
        let (b, graph, quantizer, seed) = self.construct(progress)?;
        let create = |name: &str| -> Result<(TempFile, BufWriter<File>)> {
            let path = temp_path(dir, name);
            let f = File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            Ok((TempFile(Some(path)), BufWriter::with_capacity(1 << 20, f)))
        };
        let (gt, gw) = create("staged.graph")?;
        let (vt, vw) = create("staged.vectors")?;
        let path = |t: &TempFile| t.0.clone().unwrap_or_default();
        let (build_id, gw, vw) = b
            .emit(&graph, &quantizer, seed, gw, vw)
            .map_err(|e| Error::io(path(&gt), e))?;
        for (t, w) in [(&gt, gw), (&vt, vw)] {
            let f = w
                .into_inner()
                .map_err(|e| Error::io(path(t), e.into_error()))?;
            f.sync_all().map_err(|e| Error::io(path(t), e))?;
        }
        assembled(progress);
        Ok(Staged {
            graph: gt,
            vectors: vt,
            build_id,
            repaired: graph.repaired,
        })
    }

    /// Inserts every vector into the graph and trains the quantizer.
    fn construct(
        mut self,
        progress: &(dyn Fn(BuildProgress) + Sync),
    ) -> Result<(Self, BuiltGraph, Trained, u64)> {
        let n = self.ids.len();
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        crate::hugepages::advise(&self.data);
        // Only `add` needs the id lookup: free it for the build (16 MB at
        // 500k vectors). Ids are still unique.
        self.rows_by_id = HashMap::new();
        let p = &self.params;
        let seed = p.seed.unwrap_or_else(|| rand::thread_rng().gen());
        // The quantizer depends only on the rows and the seed, so it is
        // trained first: with int8 codes the insertions search over them.
        let spec = TrainSpec {
            kind: p.quantization,
            int8_clip: p.int8_clip,
            pq_m: p.pq_m.unwrap_or_else(|| pq::default_m(self.dim)),
            pq_train_size: p.pq_train_size,
            seed,
        };
        let quantizer = match self.reuse.take() {
            Some(q) => q,
            None => Trained::train(&spec, &self.data, self.dim, self.padded),
        };
        let (dim, padded) = (self.dim, self.padded);
        // Rows grouped by locality are moved into that order (ids with
        // them) before encoding: a cluster's codes, rows and links are then
        // contiguous, which is what keeps insertions in cache (the CPU time
        // of a 500k build fell by 44 % with the rows moved, by 10 % with
        // only the insertion order changed; see `locality.rs`).
        let order = if p.insert_order.groups(n) {
            let grouped = crate::locality::locality_order(&self.data, padded, n, seed);
            crate::locality::permute_rows(&mut self.data, padded, &mut self.ids, &grouped);
            if !self.labels.is_empty() {
                self.labels.resize(n, Box::default());
                let mut old = std::mem::take(&mut self.labels);
                self.labels = grouped
                    .iter()
                    .map(|&src| std::mem::take(&mut old[src as usize]))
                    .collect();
            }
            Some(crate::locality::insertion_order(n, seed))
        } else {
            None
        };
        let p = &self.params;
        // Under inner product the codes' error is large against the small
        // differences between candidates (unnormalised rows): an 8-thread
        // build of the near-duplicate set in tests/reachability.rs fell to
        // recall@10 0.911 at ef 64 with code-guided insertion, so inner
        // product inserts on float32 as before.
        let code_guided = p.metric != crate::metric::Metric::InnerProduct;
        // LVQ-4x8 inserts on float32: guided by its 4-bit codes, the
        // npm-minilm build (2 threads, seed 1) lost 0.005-0.006 recall@10
        // from the codes alone at every ef from 24 to 128 (0.9462 against
        // 0.9516 at ef 32), for no faster a build on the loaded machine.
        let guided = code_guided && matches!(quantizer, Trained::Int8(_) | Trained::Lvq8(_));
        let (mut codes, mut norms, mut factors) = (Vec::new(), Vec::new(), Vec::new());
        if guided {
            codes = vec![0u8; n * padded];
            crate::hugepages::advise(&codes);
            let sides = quantizer.encode_rows(
                n,
                |i| &self.data[i * padded..(i + 1) * padded],
                dim,
                padded,
                &mut codes,
            );
            for side in sides {
                norms.push(side.norm().unwrap_or(0.0));
                factors.extend(side.factors());
            }
        }
        let guide_params = if guided {
            quantizer.layout(padded).params
        } else {
            Vec::new()
        };
        let guide_codes = guided.then(|| GuideCodes {
            kind: quantizer.kind(),
            params: &guide_params,
            dim,
            codes: &codes,
            stride: padded,
            norms: &norms,
            factors: &factors,
        });
        let (insert_order, barrier) = order.as_ref().map_or((&[][..], 0), |(o, s)| (&o[..], *s));
        let input = GraphInput {
            vectors: &self.data,
            padded: self.padded,
            metric: p.metric,
            m: p.m,
            ef_construction: p.ef_construction,
            seed,
            codes: guide_codes,
            order: insert_order,
            order_barrier: barrier,
            refine: p.refine,
        };
        let report = |pass, done| {
            let stage = match pass {
                Pass::Insert => BuildStage::Insert,
                Pass::Refine => BuildStage::Refine,
            };
            progress(BuildProgress {
                stage,
                done,
                total: n,
            })
        };
        let graph = match p.threads {
            0 => build_graph(&input, true, &report),
            1 => build_graph(&input, false, &report),
            t => rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .map_err(|e| Error::InvalidParameter {
                    name: "threads",
                    reason: e.to_string(),
                })?
                .install(|| build_graph(&input, true, &report)),
        };
        // Row-order codes are not kept: the writer encodes in ordinal order.
        drop((codes, norms));
        progress(BuildProgress {
            stage: BuildStage::Quantize,
            done: n,
            total: n,
        });
        progress(BuildProgress {
            stage: BuildStage::Assemble,
            done: 0,
            total: 1,
        });
        Ok((self, graph, quantizer, seed))
    }

    /// The build id: derived from seed, parameters and input for a seeded
    /// single-thread build (the one build whose graph the inputs determine,
    /// so its files are byte-identical run to run), random otherwise: a
    /// multi-thread build's graph depends on scheduling, so two of them
    /// from the same inputs are different builds and must not share an id.
    fn build_id(&self, seed: u64) -> u128 {
        if self.params.seed.is_none() || self.params.threads != 1 {
            return rand::thread_rng().gen();
        }
        let mut h = crc32fast::Hasher::new();
        h.update(bytemuck::cast_slice(&self.data));
        h.update(bytemuck::cast_slice(&self.ids));
        h.update(&(self.params.m as u64).to_le_bytes());
        h.update(&(self.params.ef_construction as u64).to_le_bytes());
        h.update(&[
            self.params.metric.code() as u8,
            self.params.quantization.code() as u8,
        ]);
        h.update(&(self.params.pq_m.unwrap_or(0) as u64).to_le_bytes());
        h.update(&(self.params.pq_train_size as u64).to_le_bytes());
        h.update(&self.params.int8_clip.to_le_bytes());
        // Choices that change the graph of the same rows change the id;
        // each is hashed only when it is not the default's graph, so that
        // ids of earlier builds (and the golden files) stay as they were.
        if self.params.insert_order.groups(self.ids.len()) {
            h.update(b"insert order: locality");
        }
        if self.params.refine {
            h.update(b"refine");
        }
        if self.labels.iter().any(|l| !l.is_empty()) {
            h.update(b"labels");
            for l in &self.labels {
                h.update(&(l.len() as u32).to_le_bytes());
                h.update(bytemuck::cast_slice(l));
            }
        }
        let mix = seed ^ ((h.finalize() as u64) << 29);
        rand_chacha::ChaCha8Rng::seed_from_u64(mix).gen()
    }

    /// Writes both files into `graph` and `vectors`, streaming: sections
    /// are produced in file order through buffers of at most
    /// [`CHUNK_ROWS`] rows, never as a copy of all vectors or codes.
    fn emit<G: Write + Seek, V: Write + Seek>(
        &self,
        g: &BuiltGraph,
        quantizer: &Trained,
        seed: u64,
        graph: G,
        vectors: V,
    ) -> std::io::Result<(u128, G, V)> {
        let n = self.ids.len();
        let (m, m0, max_level) = (g.m, g.m0, g.max_level);
        // Ordinals: the entry point first, then by level descending (stable),
        // so the nodes of level l are exactly ordinals 0..level_count[l].
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(g.levels[i as usize]), i != g.entry, i));
        let mut ord_of = vec![0u32; n];
        for (o, &i) in order.iter().enumerate() {
            ord_of[i as usize] = o as u32;
        }
        let mut level_counts = vec![0u32; max_level + 1];
        for &l in &g.levels {
            for c in &mut level_counts[..=l as usize] {
                *c += 1;
            }
        }
        let p = self.padded;
        let row = |o: usize| {
            let i = order[o] as usize;
            &self.data[i * p..(i + 1) * p]
        };
        let layout = quantizer.layout(p);
        let stride = layout.stride;
        let build_id = self.build_id(seed);
        let labelled = self.labels.iter().any(|l| !l.is_empty());
        let version = match self.params.quantization.format_version(self.params.metric) {
            // The labels section is version 6.
            _ if labelled => 6,
            v => v,
        };
        let header = GraphHeader {
            version,
            flags: 0,
            dim: self.dim as u32,
            padded_dim: p as u32,
            metric: self.params.metric.code(),
            element: ELEMENT_F32,
            count: n as u64,
            m: m as u32,
            m0: m0 as u32,
            ef_construction: self.params.ef_construction as u32,
            max_level: max_level as u32,
            entry: ord_of[g.entry as usize],
            quant: self.params.quantization.code(),
            code_stride: stride as u32,
            quant_param: layout.quant_param,
            section_count: 0,
            seed,
            build_id,
            file_len: 0,
        };
        // Side values (int8 norms, binary factors) precede the codes in the
        // file: a first pass computes them (4 or 8 bytes per vector), the
        // codes are encoded again chunk by chunk as they are written.
        let mut codes = vec![0u8; CHUNK_ROWS.min(n) * stride];
        let metric = self.params.metric;
        let (norms_section, factors_section) =
            (quantizer.writes_norms(metric), quantizer.has_factors());
        let mut sides = Vec::new();
        if norms_section || factors_section {
            sides.reserve(n);
            for s in (0..n).step_by(CHUNK_ROWS) {
                let c = CHUNK_ROWS.min(n - s);
                sides.extend(quantizer.encode_rows(
                    c,
                    |i| row(s + i),
                    self.dim,
                    stride,
                    &mut codes,
                ));
            }
        }
        let mut w = GraphWriter::new(graph)?;
        if stride > 0 {
            w.section(
                SectionKind::QuantParams,
                bytemuck::cast_slice(&layout.params),
            )?;
        }
        if norms_section {
            w.begin(SectionKind::CodeNorms);
            for side in &sides {
                w.write(&side.norm().unwrap_or(0.0).to_le_bytes())?;
            }
            w.end()?;
        }
        if factors_section {
            w.begin(SectionKind::BinaryFactors);
            for side in &sides {
                let [a, b] = side.factors().unwrap_or([0.0; 2]);
                w.write(&a.to_le_bytes())?;
                w.write(&b.to_le_bytes())?;
            }
            w.end()?;
        }
        drop(sides);
        w.section(
            SectionKind::LevelCounts,
            bytemuck::cast_slice(&level_counts),
        )?;
        let mut buf: Vec<u32> = Vec::with_capacity(LINK_BUF);
        let block = |w: &mut GraphWriter<G>, buf: &mut Vec<u32>, level, node, cap| {
            let links = g.neighbors(level, node);
            buf.push(links.len() as u32);
            buf.extend(links.iter().map(|&x| ord_of[x as usize]));
            buf.extend(std::iter::repeat_n(u32::MAX, cap - links.len()));
            if buf.len() + 1 + cap > LINK_BUF {
                w.write(bytemuck::cast_slice(buf))?;
                buf.clear();
            }
            std::io::Result::Ok(())
        };
        w.begin(SectionKind::LinksUpper);
        for (l, &count) in level_counts.iter().enumerate().skip(1) {
            for &i in &order[..count as usize] {
                block(&mut w, &mut buf, l, i, m)?;
            }
        }
        w.write(bytemuck::cast_slice(&buf))?;
        buf.clear();
        w.end()?;
        if stride > 0 {
            w.begin(SectionKind::Codes);
            for s in (0..n).step_by(CHUNK_ROWS) {
                let c = CHUNK_ROWS.min(n - s);
                quantizer.encode_rows(c, |i| row(s + i), self.dim, stride, &mut codes);
                w.write(&codes[..c * stride])?;
            }
            w.end()?;
        }
        drop(codes);
        if let Trained::Lvq4x8(_) = quantizer {
            let mut residuals = vec![0u8; CHUNK_ROWS.min(n) * p];
            w.begin(SectionKind::ResidualCodes);
            for s in (0..n).step_by(CHUNK_ROWS) {
                let c = CHUNK_ROWS.min(n - s);
                quantizer.encode_residual_rows(c, |i| row(s + i), self.dim, p, &mut residuals);
                w.write(&residuals[..c * p])?;
            }
            w.end()?;
        }
        w.begin(SectionKind::LinksLevel0);
        for &i in &order {
            block(&mut w, &mut buf, 0, i, m0)?;
        }
        w.write(bytemuck::cast_slice(&buf))?;
        w.end()?;
        w.begin(SectionKind::OrdinalToId);
        for &i in &order {
            w.write(&self.ids[i as usize].to_le_bytes())?;
        }
        w.end()?;
        let mut id_to_ord: Vec<[u64; 2]> = order
            .iter()
            .enumerate()
            .map(|(o, &i)| [self.ids[i as usize], o as u64])
            .collect();
        id_to_ord.sort_unstable();
        w.section(SectionKind::IdToOrdinal, bytemuck::cast_slice(&id_to_ord))?;
        drop(id_to_ord);
        if labelled {
            let bytes = crate::format::labels::encode(n, |o| self.row_labels(order[o] as usize));
            w.section(SectionKind::Labels, &bytes)?;
        }
        let graph = w.finish(header)?;
        let mut v = VectorsWriter::new(vectors)?;
        for o in 0..n {
            v.write(bytemuck::cast_slice(row(o)))?;
        }
        let vectors = v.finish(version, self.dim as u32, p as u32, n as u64, build_id)?;
        Ok((build_id, graph, vectors))
    }
}

fn assembled(progress: &(dyn Fn(BuildProgress) + Sync)) {
    progress(BuildProgress {
        stage: BuildStage::Assemble,
        done: 1,
        total: 1,
    });
}

/// What [`IndexBuilder::build_into`] reports about the index it wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// The build id shared by both files.
    pub build_id: u128,
    /// Per level, how many nodes the build's final passes linked in (see
    /// [`BuiltIndex::repaired`]).
    pub repaired: Vec<usize>,
}

/// Both files of a build, complete and fsynced under temporary names in
/// the index directory; removed when dropped unless published.
pub(crate) struct Staged {
    graph: TempFile,
    vectors: TempFile,
    pub(crate) build_id: u128,
    pub(crate) repaired: Vec<usize>,
}

impl Staged {
    /// Renames both files to generation `m`'s names and fsyncs `dir`. They
    /// are not current until the manifest names them.
    pub(crate) fn publish_files(self, dir: &Path, m: &Manifest) -> Result<()> {
        for (t, name) in [
            (self.graph, names::graph(m.generation)),
            (self.vectors, names::vectors(m.generation)),
        ] {
            let fin = dir.join(name);
            let from = t.0.clone().expect("a staged file has a path");
            fs::rename(&from, &fin).map_err(|e| Error::io(&fin, e))?;
            t.keep();
        }
        sync_dir(dir)
    }
}

/// Rows encoded per chunk while writing codes.
const CHUNK_ROWS: usize = 4096;
/// Link words buffered before a write.
const LINK_BUF: usize = 1 << 16;

/// A finished index held in memory: write it to a directory, or search it
/// directly.
pub struct BuiltIndex {
    graph: Vec<u8>,
    vectors: Vec<u8>,
    build_id: u128,
    repaired: Vec<usize>,
}

impl BuiltIndex {
    /// Writes the index into `dir` (created if missing) crash-safely: both
    /// files under temporary names, fsync, rename, then the manifest swap.
    /// An index already in `dir` is replaced atomically.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        crate::dir::publish::publish(dir.as_ref(), self.build_id, &self.graph, &self.vectors)
            .map(|_| ())
    }

    /// Opens the in-memory bytes as a searchable [`Generation`] (validated like a file).
    pub fn into_index(self) -> Result<Generation> {
        Generation::from_bytes(&self.graph, &self.vectors)
    }

    /// The build id shared by both files.
    pub fn build_id(&self) -> u128 {
        self.build_id
    }

    /// Per level, how many nodes the build's final passes linked in: on
    /// level 0 those a search for their own vector missed or no path from
    /// the entry point reached, above it those no path reached. Every node
    /// of a built index is reachable (see [`Generation::reachability`]).
    pub fn repaired(&self) -> &[usize] {
        &self.repaired
    }

    /// The graph file's bytes.
    pub fn graph_bytes(&self) -> &[u8] {
        &self.graph
    }

    /// The vectors file's bytes.
    pub fn vectors_bytes(&self) -> &[u8] {
        &self.vectors
    }
}

/// `labels` sorted and without duplicates, if there are not too many.
pub(crate) fn normalized_labels(labels: &[u32]) -> Result<Box<[u32]>> {
    let mut v = labels.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.len() > crate::limits::MAX_LABELS_PER_VECTOR {
        return Err(Error::InvalidParameter {
            name: "labels",
            reason: format!(
                "{} distinct labels, at most {} per vector",
                v.len(),
                crate::limits::MAX_LABELS_PER_VECTOR
            ),
        });
    }
    Ok(v.into())
}
