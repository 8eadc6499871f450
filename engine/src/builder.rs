//! Building an index from vectors: validation, graph construction,
//! quantizer training, and assembly of the two files.

use crate::distance::padded_dim;
use crate::error::{Error, Result};
use crate::format::graph_header::GraphHeader;
use crate::format::sections::SectionKind;
use crate::format::writer::{assemble_graph, assemble_vectors};
use crate::format::{manifest, ELEMENT_F32, FORMAT_VERSION};
use crate::graph::build::{build_graph, BuiltGraph, GraphInput};
use crate::index::Index;
use crate::metric::prepare_vector;
use crate::params::BuildParams;
use crate::quant::pq;
use crate::quant::trained::{TrainSpec, Trained};
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::Path;

/// Which part of a build is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildStage {
    /// Inserting nodes into the graph (`done` of `total` nodes).
    Insert,
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

    /// Encodes with `quantizer` instead of training a new one.
    pub(crate) fn reuse_quantizer(&mut self, quantizer: Trained) {
        self.reuse = Some(quantizer);
    }

    /// Builds the index in memory.
    pub fn build(self) -> Result<BuiltIndex> {
        self.build_with_progress(&|_| {})
    }

    /// Builds the index, reporting progress through `progress`.
    pub fn build_with_progress(
        mut self,
        progress: &(dyn Fn(BuildProgress) + Sync),
    ) -> Result<BuiltIndex> {
        let n = self.ids.len();
        if n == 0 {
            return Err(Error::EmptyInput);
        }
        let p = &self.params;
        let seed = p.seed.unwrap_or_else(|| rand::thread_rng().gen());
        let input = GraphInput {
            vectors: &self.data,
            padded: self.padded,
            metric: p.metric,
            m: p.m,
            ef_construction: p.ef_construction,
            seed,
        };
        let report = |done| {
            progress(BuildProgress {
                stage: BuildStage::Insert,
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
        progress(BuildProgress {
            stage: BuildStage::Quantize,
            done: 0,
            total: n,
        });
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
        progress(BuildProgress {
            stage: BuildStage::Assemble,
            done: 0,
            total: 1,
        });
        let built = self.assemble(&graph, &quantizer, seed);
        progress(BuildProgress {
            stage: BuildStage::Assemble,
            done: 1,
            total: 1,
        });
        Ok(built)
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
        let mix = seed ^ ((h.finalize() as u64) << 29);
        rand_chacha::ChaCha8Rng::seed_from_u64(mix).gen()
    }

    fn assemble(&self, g: &BuiltGraph, quantizer: &Trained, seed: u64) -> BuiltIndex {
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
        let block = |level: usize, node: u32, cap: usize, out: &mut Vec<u32>| {
            let links = g.neighbors(level, node);
            out.push(links.len() as u32);
            out.extend(links.iter().map(|&x| ord_of[x as usize]));
            out.extend(std::iter::repeat_n(u32::MAX, cap - links.len()));
        };
        let mut l0 = Vec::with_capacity(n * (1 + m0));
        for &i in &order {
            block(0, i, m0, &mut l0);
        }
        let mut upper = Vec::new();
        for (l, &count) in level_counts.iter().enumerate().skip(1) {
            for &i in &order[..count as usize] {
                block(l, i, m, &mut upper);
            }
        }
        let ord_to_id: Vec<u64> = order.iter().map(|&i| self.ids[i as usize]).collect();
        let mut id_to_ord: Vec<[u64; 2]> = ord_to_id
            .iter()
            .enumerate()
            .map(|(o, &id)| [id, o as u64])
            .collect();
        id_to_ord.sort_unstable();
        let p = self.padded;
        let mut vectors = Vec::with_capacity(n * p);
        for &i in &order {
            vectors.extend_from_slice(&self.data[i as usize * p..(i as usize + 1) * p]);
        }
        let enc = quantizer.encode_all(&vectors, self.dim, p);
        let coded = enc.stride > 0;
        let build_id = self.build_id(seed);
        let header = GraphHeader {
            version: FORMAT_VERSION,
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
            code_stride: enc.stride as u32,
            quant_param: enc.quant_param,
            section_count: 0,
            seed,
            build_id,
            file_len: 0,
        };
        let mut sections: Vec<(SectionKind, &[u8])> = Vec::new();
        if coded {
            sections.push((SectionKind::QuantParams, bytemuck::cast_slice(&enc.params)));
        }
        if !enc.norms.is_empty() {
            sections.push((SectionKind::CodeNorms, bytemuck::cast_slice(&enc.norms)));
        }
        if !enc.factors.is_empty() {
            sections.push((
                SectionKind::BinaryFactors,
                bytemuck::cast_slice(&enc.factors),
            ));
        }
        sections.push((
            SectionKind::LevelCounts,
            bytemuck::cast_slice(&level_counts),
        ));
        sections.push((SectionKind::LinksUpper, bytemuck::cast_slice(&upper)));
        if coded {
            sections.push((SectionKind::Codes, &enc.codes));
        }
        sections.push((SectionKind::LinksLevel0, bytemuck::cast_slice(&l0)));
        sections.push((SectionKind::OrdinalToId, bytemuck::cast_slice(&ord_to_id)));
        sections.push((SectionKind::IdToOrdinal, bytemuck::cast_slice(&id_to_ord)));
        let graph = assemble_graph(header, &sections);
        let vectors = assemble_vectors(
            self.dim as u32,
            p as u32,
            n as u64,
            build_id,
            bytemuck::cast_slice(&vectors),
        );
        BuiltIndex {
            graph,
            vectors,
            build_id,
            repaired: g.repaired.clone(),
        }
    }
}

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
        manifest::publish(dir.as_ref(), self.build_id, &self.graph, &self.vectors).map(|_| ())
    }

    /// Opens the in-memory bytes as a searchable [`Index`] (validated like a file).
    pub fn into_index(self) -> Result<Index> {
        Index::from_bytes(&self.graph, &self.vectors)
    }

    /// The build id shared by both files.
    pub fn build_id(&self) -> u128 {
        self.build_id
    }

    /// Per level, how many nodes the build's final passes linked in: on
    /// level 0 those a search for their own vector missed or no path from
    /// the entry point reached, above it those no path reached. Every node
    /// of a built index is reachable (see [`Index::reachability`]).
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
