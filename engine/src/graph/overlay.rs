//! A mutable in-memory HNSW over the vectors inserted through the log,
//! readable through immutable snapshots.
//!
//! Nodes are appended as operations are applied (by the writer, and by log
//! replay at open or refresh) and never removed: a node whose id was deleted
//! or upserted again is marked dead, still traversed, never returned. It
//! holds the float32 prepared rows, so the distances it returns are exact
//! and merge directly with the generation's rescored answers.
//!
//! **Snapshots.** An [`Overlay`] value is a view: searches run on a clone
//! (a few `Arc`s) that no later change alters, without any lock. Its parts:
//! - *Sealed chunks* of [`CHUNK`] nodes, immutable once sealed (rows, int8
//!   codes, ids, levels), plus what stays mutable through `&self`: link
//!   blocks (atomics, `links.rs`) and the sequence number at which each node
//!   was killed. A view holds the list of chunks that existed when it was
//!   taken; a new chunk makes a new list (the old one is shared by older
//!   views), one `Arc` clone per chunk every [`CHUNK`] inserts.
//! - The *tail*: the nodes pushed since the last seal, at most
//!   `CHUNK − 1`, copied on write (one `Arc` per row) and found by an exact
//!   scan.
//! - A sequence number: a kill is stamped with the number of the change
//!   that made it, and a view sees only kills up to its own, so a batch of
//!   deletes and inserts becomes visible all at once, when the state
//!   publishes the view that includes it.
//!
//! **Linking.** Sealed nodes are linked into the graph through `&self`
//! (searches go on): by the writer once it applied an operation or batch,
//! by a reader's replay at open or refresh, by a background thread for a
//! writer's replay. Linking runs in parallel (see [`Overlay::link_some`]
//! for which threads), like the generation's build: link lists are written
//! under a per-node mutex and read optimistically, nodes that raise the top
//! level hold the entry lock for their insertion. Nodes `0..linked` are
//! fully linked; a search returns only those from the graph and scans the
//! others (and the tail), so a node is never missed nor returned twice
//! while linking goes on; links to nodes a view does not hold are skipped.
//! On one thread linking is sequential and deterministic (levels come from
//! a seeded RNG drawn once per node, in log order; dead nodes are linked
//! like live ones), so the graph depends only on the rows pushed; on more,
//! on the schedule too, as in the build. It uses the beam search, greedy
//! descent, neighbour selection and back-link pruning of the build:
//! O(log n · ef_construction) distances per insert, at most
//! [`EF_CONSTRUCTION_MAX`]. Below [`SCAN_BELOW`] nodes a search scans the
//! rows exactly instead.
//!
//! **Attached.** Over an int8 generation the overlay does not keep a graph
//! of its own: its nodes are linked into the generation's level 0 and
//! searched with it (`overlay/attach.rs`, which says why); `link` and
//! `graph_search` below are for the other generations.
//!
//! With the generation's int8 quantizer (and not under inner product, as in
//! the build), sealed nodes also keep int8 codes: beams, at insertion and at
//! search, run over the codes (a quarter of the memory traffic of float32
//! rows), float32 re-ranks what they find, selects neighbours and gives the
//! distances returned.

mod attach;
mod overrides;
mod range;

pub(crate) use attach::Base;
#[cfg(test)]
pub(crate) use attach::NoBase;

use super::build::{lock, MAX_LEVEL};
use super::links::{for_each_in, LinkBlocks};
use super::search::{beam, greedy, with_scratch, Adjacency, Cand};
use super::select::select_diverse;
use crate::distance::{prefetch, Kernels};
use crate::metric::Metric;
use crate::quant::int8::Int8Scorer;
use crate::quant::scorer::ScorerBuffers;
use crate::quant::Int8Quantizer;
use rand::{Rng, SeedableRng};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Nodes per sealed chunk. A smaller tail costs less per search (it is
/// scanned: 64 rows of dimension 384 are ~2 µs) and per insert (its copy),
/// a larger chunk fewer list copies; linking waits for a chunk to fill, so
/// at most this many nodes are found by the scan instead of the graph.
pub(crate) const CHUNK: usize = 64;

/// Overlays with fewer nodes than this are searched by an exact scan: at
/// dimension 384 (int8 codes, ef 32, uniform random unit rows, the graph's
/// worst case) a scan took 3-4 µs at 64 nodes, 10-17 at 256, 35-48 at 512
/// and 50-58 at 1024 against the graph's 14, 28-31, 39-45 and 46-49 µs
/// (`tests::scan_threshold`): below 512 the scan is as fast, and exact.
pub(crate) const SCAN_BELOW: usize = 512;

/// Nodes linked per [`Overlay::link_some`] call, so that a caller can
/// interleave other work (the writer's next operation) between chunks.
pub(crate) const LINK_CHUNK: usize = 2048;

/// What [`Overlay::link_some`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linking {
    /// Every sealed node is linked.
    Done,
    /// It linked a chunk; more nodes are pending.
    More,
    /// Another thread is linking (it links what is pending).
    Busy,
}

/// The overlay's `ef_construction`: the generation's, at most this. On
/// npm-minilm (25k built at ef_construction 200, 25k more through the log,
/// int8, one search thread, a loaded 2-core machine) the overlay linked at
/// ef_construction 200, 128, 100 and 64 gave recall@10 0.9612, 0.9593,
/// 0.9552 and 0.9499 at search ef 32 (a fresh build of all 50k: 0.9516),
/// inserting the 25k in 6.3, 3.7, 3.1 and 2.9 s: 100 keeps recall ≥ 0.95
/// at the fresh build's ef for half the linking cost; 64 needs ef 40.
pub(crate) const EF_CONSTRUCTION_MAX: usize = 100;

/// A link's beam (over int8 codes) finds `ef_construction` candidates;
/// only this many times `m` of them, the closest by code distance, are
/// re-ranked by float32 distance and offered to neighbour selection. The
/// re-ranking and the selection's float32 distances were half the cost of
/// a link: on npm-minilm (25k built, 25k inserted in one batch, 2 threads,
/// `benches/insert_rate.rs --batch 25000`) all 100 gave 12,872 vectors/s,
/// 48 (3 m) 17,408 and 32 (2 m) 18,572, at recall@10 (ef 32, exact
/// truth) 0.9740, 0.9750 and 0.9725: selection rarely keeps a candidate
/// from further down. Code-based ranking applies only with codes.
const LINK_RERANK_PER_M: usize = 3;

/// The threads that link in parallel: a pool of their own, as many as the
/// global pool, whose threads only ever run linking jobs (so a thread
/// waiting inside a link never picks up a job that needs a lock the linker
/// holds).
/// `None` if its threads could not be spawned: then linking is sequential.
fn link_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .thread_name(|i| format!("strata-link-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// No entry yet, in [`Common::published`].
const NO_ENTRY: u64 = u64::MAX;

/// The kill stamp of a node that is alive.
const ALIVE: u64 = u64::MAX;

/// What every view of one overlay shares: parameters, and the linking
/// state.
struct Common {
    padded: usize,
    metric: Metric,
    kernels: &'static Kernels,
    m: usize,
    m0: usize,
    ef_construction: usize,
    /// The generation's int8 quantizer, if beams run over codes.
    quantizer: Option<Int8Quantizer>,
    /// Attached to a generation (`attach.rs`): its nodes' replaced
    /// level-0 lists.
    attached: Option<overrides::Overrides>,
    /// Nodes `0..linked` are linked into the graph; the others are found by
    /// an exact scan.
    linked: AtomicUsize,
    /// Entry node and the top level, as linking changes them (held for a
    /// whole insertion by a node that raises the top level).
    entry: Mutex<Option<(u32, usize)>>,
    /// The entry for searches, `node << 8 | level` ([`NO_ENTRY`]: none),
    /// set once the node is linked: a search never waits on `entry`.
    published: AtomicU64,
    /// Held by the one thread linking.
    linking: Mutex<()>,
}

/// [`CHUNK`] sealed nodes.
struct Chunk {
    /// Prepared rows, `padded` floats each.
    rows: Box<[f32]>,
    /// Int8 codes, `padded` bytes each (empty without a quantizer).
    codes: Box<[u8]>,
    /// `‖x̂‖²` per node (L2 with codes only).
    norms: Box<[f32]>,
    ids: Box<[u64]>,
    /// Node `i`'s labels are `labels[label_starts[i]..label_starts[i + 1]]`.
    label_starts: Box<[u32]>,
    labels: Box<[u32]>,
    levels: Box<[u8]>,
    /// The sequence number of the change that killed each node ([`ALIVE`]).
    killed: Box<[AtomicU64]>,
    /// Level-0 blocks at a fixed stride; upper levels of node `i` from
    /// `upper_start[i]`.
    l0: Box<[AtomicU32]>,
    upper_start: Box<[u32]>,
    upper: Box<[AtomicU32]>,
    locks: Box<[Mutex<()>]>,
}

/// A node pushed since the last seal.
#[derive(Clone)]
struct TailNode {
    id: u64,
    row: Arc<[f32]>,
    labels: Arc<[u32]>,
    level: u8,
    /// As [`Chunk::killed`].
    killed: u64,
}

/// The graph of logged inserts, as one snapshot sees it (see the module
/// docs); [`Overlay::push`] and [`Overlay::kill`] change this value only,
/// never a clone taken before.
#[derive(Clone)]
pub(crate) struct Overlay {
    common: Arc<Common>,
    chunks: Arc<Vec<Arc<Chunk>>>,
    tail: Arc<Vec<TailNode>>,
    live: usize,
    /// Kills stamped with this number or a lower one are seen.
    seq: u64,
    rng: rand_chacha::ChaCha8Rng,
}

impl Adjacency for Overlay {
    #[inline]
    fn for_each_neighbor(&self, level: usize, node: u32, mut f: impl FnMut(u32)) {
        let held = self.sealed() as u32;
        for_each_in(self.block(level, node), |x| {
            // Linked after this view was taken, in a chunk it does not hold.
            if x < held {
                f(x)
            }
        })
    }

    #[inline]
    fn prefetch_links(&self, level: usize, node: u32) {
        prefetch(self.block(level, node));
    }
}

impl LinkBlocks for Overlay {
    fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.common.m0
        } else {
            self.common.m
        }
    }

    #[inline]
    fn block(&self, level: usize, node: u32) -> &[AtomicU32] {
        let (c, i) = self.chunk(node);
        if level == 0 {
            let s = 1 + self.common.m0;
            &c.l0[i * s..(i + 1) * s]
        } else {
            let s = 1 + self.common.m;
            let b = c.upper_start[i] as usize + level - 1;
            &c.upper[b * s..(b + 1) * s]
        }
    }

    fn node_lock(&self, node: u32) -> &Mutex<()> {
        let (c, i) = self.chunk(node);
        &c.locks[i]
    }
}

impl Overlay {
    /// An empty overlay for prepared rows of `padded` floats, linked like
    /// the generation's graph (`m`, `ef_construction`); `seed` seeds levels.
    /// With `int8` (the generation's quantizer), beams run over int8 codes;
    /// with `attach_to` as well (the generation's node count), the overlay
    /// links into the generation's graph (`attach.rs`), whose level-0
    /// capacity must be `2 m`.
    pub(crate) fn new(
        padded: usize,
        metric: Metric,
        m: usize,
        ef_construction: usize,
        seed: u64,
        int8: Option<Int8Quantizer>,
        attach_to: Option<usize>,
    ) -> Overlay {
        let quantizer = int8.filter(|q| metric != Metric::InnerProduct && q.lo.len() == padded);
        let m = m.max(2);
        let attached = attach_to
            .filter(|&g| g > 0 && quantizer.is_some())
            .map(|g| overrides::Overrides::new(g, 2 * m));
        Overlay {
            common: Arc::new(Common {
                padded,
                metric,
                kernels: Kernels::detect(),
                m,
                m0: 2 * m,
                ef_construction: ef_construction.min(EF_CONSTRUCTION_MAX).max(m),
                quantizer,
                attached,
                linked: AtomicUsize::new(0),
                entry: Mutex::new(None),
                published: AtomicU64::new(NO_ENTRY),
                linking: Mutex::new(()),
            }),
            chunks: Arc::new(Vec::new()),
            tail: Arc::new(Vec::new()),
            live: 0,
            seq: 0,
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Nodes, dead ones included.
    pub(crate) fn nodes(&self) -> usize {
        self.sealed() + self.tail.len()
    }

    /// Nodes in sealed chunks (the ones that can be linked).
    pub(crate) fn sealed(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    /// Live nodes.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// This view as a snapshot, and the start of the next change: kills
    /// from now on are stamped with a number the snapshot does not see.
    pub(crate) fn publish(&mut self) -> Overlay {
        let snapshot = self.clone();
        self.seq += 1;
        snapshot
    }

    #[inline]
    fn chunk(&self, node: u32) -> (&Chunk, usize) {
        let node = node as usize;
        (&self.chunks[node / CHUNK], node % CHUNK)
    }

    /// The prepared row of `node`.
    #[inline]
    pub(crate) fn row(&self, node: u32) -> &[f32] {
        let p = self.common.padded;
        if (node as usize) < self.sealed() {
            let (c, i) = self.chunk(node);
            &c.rows[i * p..(i + 1) * p]
        } else {
            &self.tail[node as usize - self.sealed()].row
        }
    }

    /// The external id of `node`.
    pub(crate) fn id(&self, node: u32) -> u64 {
        if (node as usize) < self.sealed() {
            let (c, i) = self.chunk(node);
            c.ids[i]
        } else {
            self.tail[node as usize - self.sealed()].id
        }
    }

    /// The labels of `node` (sorted, distinct; carried for filters).
    pub(crate) fn labels(&self, node: u32) -> &[u32] {
        if (node as usize) < self.sealed() {
            let (c, i) = self.chunk(node);
            &c.labels[c.label_starts[i] as usize..c.label_starts[i + 1] as usize]
        } else {
            &self.tail[node as usize - self.sealed()].labels
        }
    }

    /// Whether `node` is dead (deleted or superseded) in this view.
    #[inline]
    pub(crate) fn is_dead(&self, node: u32) -> bool {
        self.killed(node) <= self.seq
    }

    fn killed(&self, node: u32) -> u64 {
        if (node as usize) < self.sealed() {
            let (c, i) = self.chunk(node);
            c.killed[i].load(Ordering::Acquire)
        } else {
            self.tail[node as usize - self.sealed()].killed
        }
    }

    /// Live nodes in node order, with their ids.
    pub(crate) fn live_nodes(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        (0..self.nodes() as u32)
            .filter(|&n| !self.is_dead(n))
            .map(|n| (n, self.id(n)))
    }

    /// Marks `node` dead: still traversed, never returned. Views published
    /// before see it alive.
    pub(crate) fn kill(&mut self, node: u32) {
        if self.is_dead(node) {
            return;
        }
        if (node as usize) < self.sealed() {
            let (c, i) = self.chunk(node);
            c.killed[i].store(self.seq, Ordering::Release);
        } else {
            let at = node as usize - self.sealed();
            Arc::make_mut(&mut self.tail)[at].killed = self.seq;
        }
        self.live -= 1;
    }

    /// A level with multiplier `1 / ln(m)`, the distribution of the
    /// generation's build (`build::draw_levels`).
    fn draw_level(&mut self) -> usize {
        let mult = 1.0 / (self.common.m as f64).ln();
        let u: f64 = 1.0 - self.rng.gen::<f64>(); // (0, 1]
        ((-u.ln() * mult) as usize).min(MAX_LEVEL)
    }

    /// Appends `row` as a new live node for `id`, not linked yet (found
    /// by an exact scan until it is linked); returns the node.
    #[cfg(test)]
    pub(crate) fn push(&mut self, id: u64, row: &[f32]) -> u32 {
        self.push_labelled(id, row, &[])
    }

    /// [`Overlay::push`] of a node carrying `labels`.
    pub(crate) fn push_labelled(&mut self, id: u64, row: &[f32], labels: &[u32]) -> u32 {
        assert_eq!(row.len(), self.common.padded, "a prepared row");
        let q = self.nodes() as u32;
        // An attached overlay's nodes are on level 0 only (`attach.rs`).
        let level = if self.is_attached() {
            0
        } else {
            self.draw_level() as u8
        };
        Arc::make_mut(&mut self.tail).push(TailNode {
            id,
            row: row.into(),
            labels: labels.into(),
            level,
            killed: ALIVE,
        });
        self.live += 1;
        if self.tail.len() == CHUNK {
            self.seal();
        }
        q
    }

    /// Moves the full tail into a new chunk (a new chunk list: views
    /// taken before keep theirs).
    fn seal(&mut self) {
        let (p, m, m0) = (self.common.padded, self.common.m, self.common.m0);
        let tail = std::mem::take(Arc::make_mut(&mut self.tail));
        let mut rows = Vec::with_capacity(tail.len() * p);
        let mut upper_start = Vec::with_capacity(tail.len());
        let mut total_upper = 0u32;
        for t in &tail {
            rows.extend_from_slice(&t.row);
            upper_start.push(total_upper);
            total_upper += t.level as u32;
        }
        let (mut codes, mut norms) = (Vec::new(), Vec::new());
        if let Some(q) = &self.common.quantizer {
            codes = vec![0u8; rows.len()];
            norms = rows
                .chunks_exact(p)
                .zip(codes.chunks_exact_mut(p))
                .map(|(r, c)| q.encode(r, c))
                .collect();
        }
        let zeros = |len: usize| (0..len).map(|_| AtomicU32::new(0)).collect();
        let chunk = Chunk {
            rows: rows.into(),
            codes: codes.into(),
            norms: norms.into(),
            ids: tail.iter().map(|t| t.id).collect(),
            label_starts: std::iter::once(0)
                .chain(tail.iter().scan(0u32, |end, t| {
                    *end += t.labels.len() as u32;
                    Some(*end)
                }))
                .collect(),
            labels: tail.iter().flat_map(|t| t.labels.iter().copied()).collect(),
            levels: tail.iter().map(|t| t.level).collect(),
            killed: tail.iter().map(|t| AtomicU64::new(t.killed)).collect(),
            l0: zeros(tail.len() * (1 + m0)),
            upper_start: upper_start.into(),
            upper: zeros(total_upper as usize * (1 + m)),
            locks: tail.iter().map(|_| Mutex::new(())).collect(),
        };
        Arc::make_mut(&mut self.chunks).push(Arc::new(chunk));
    }

    fn level(&self, node: u32) -> usize {
        let (c, i) = self.chunk(node);
        c.levels[i] as usize
    }

    #[inline]
    fn dist(&self, a: &[f32], b: u32) -> f32 {
        self.common
            .metric
            .distance(self.common.kernels, a, self.row(b))
    }

    /// The int8 code of sealed `node`, and its `‖x̂‖²` (0 off L2).
    #[inline]
    fn code(&self, node: u32) -> (&[u8], f32) {
        let p = self.common.padded;
        let (c, i) = self.chunk(node);
        (
            &c.codes[i * p..(i + 1) * p],
            c.norms.get(i).copied().unwrap_or(0.0),
        )
    }

    /// The distance of a prepared query to sealed node `i`'s code.
    #[inline]
    fn code_dist(&self, q: &Int8Scorer, i: u32) -> f32 {
        let (code, norm) = self.code(i);
        q.distance_to(code, || norm)
    }

    /// A beam of width `ef` on `level` from `entry` towards the prepared
    /// `qv`, over the codes if any; returns what it found re-ranked by
    /// float32 distance, closest first (`cq`: `qv` prepared for the codes),
    /// at most the `rerank` closest by code distance.
    #[allow(clippy::too_many_arguments)]
    fn beam_exact(
        &self,
        level: usize,
        entry: Cand,
        ef: usize,
        qv: &[f32],
        cq: Option<&Int8Scorer>,
        accept: impl Fn(u32) -> bool,
        rerank: usize,
    ) -> Vec<Cand> {
        let n = self.sealed();
        match cq {
            Some(cq) => {
                let mut found = with_scratch(|s| {
                    beam(
                        self,
                        level,
                        n,
                        &[entry],
                        ef,
                        s,
                        |i| self.code_dist(cq, i),
                        |i| prefetch(self.code(i).0),
                        accept,
                    );
                    s.found.clone()
                });
                if found.len() > rerank {
                    found.sort_unstable();
                    found.truncate(rerank);
                }
                for f in &found {
                    prefetch(self.row(f.id));
                }
                for f in &mut found {
                    f.d = self.dist(qv, f.id);
                }
                found.sort_unstable();
                found
            }
            None => with_scratch(|s| {
                beam(
                    self,
                    level,
                    n,
                    &[entry],
                    ef,
                    s,
                    |i| self.dist(qv, i),
                    |i| prefetch(self.row(i)),
                    accept,
                );
                s.found.clone()
            }),
        }
    }

    /// Traversal distance from `qv` (`cq` over the codes if any) to `i`.
    #[inline]
    fn tdist(&self, qv: &[f32], cq: Option<&Int8Scorer>, i: u32) -> f32 {
        match cq {
            Some(cq) => self.code_dist(cq, i),
            None => self.dist(qv, i),
        }
    }

    fn prepare(&self, qv: &[f32]) -> Option<Int8Scorer> {
        self.common.quantizer.as_ref().map(|q| {
            let c = &self.common;
            Int8Scorer::new(
                &q.lo,
                &q.scale,
                qv,
                c.metric,
                c.kernels,
                ScorerBuffers::default(),
            )
        })
    }

    fn select(&self, sorted: &[Cand], max: usize, out: &mut Vec<u32>) {
        select_diverse(sorted, max, out, |c, r| self.between(c, r));
    }

    /// The float32 distance of two nodes.
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        self.dist(self.row(a), b)
    }

    /// Nodes `0..linked()` of this view are linked into the graph.
    pub(crate) fn linked(&self) -> usize {
        self.common
            .linked
            .load(Ordering::Acquire)
            .min(self.sealed())
    }

    /// Whether some sealed nodes of this view are not linked yet.
    pub(crate) fn has_pending(&self) -> bool {
        self.linked() < self.sealed()
    }

    /// Links up to `max` pending nodes of this view (the next ones in node
    /// order), unless another thread is linking ([`Linking::Busy`]: it
    /// links them, as far as its view goes). Only `&self`: searches run
    /// meanwhile. In parallel on `link_pool` when called from outside any
    /// rayon pool; from a pool's thread (`pool.install`, a `par_iter` that
    /// writes), sequentially on that thread: a pool thread waiting for
    /// other jobs runs whatever is queued in its pool, and one that holds
    /// the writer's lock (as the writer does while it links) and runs a
    /// queued write would deadlock. On one thread linking is sequential
    /// and deterministic. With `parallel` false, sequentially on the
    /// calling thread anyway. An attached overlay links into `base`, the
    /// generation it was made for; another ignores it ([`NoBase`]).
    pub(crate) fn link_some<B: Base>(&self, max: usize, parallel: bool, base: &B) -> Linking {
        let Ok(_one) = self.common.linking.try_lock() else {
            return Linking::Busy;
        };
        let from = self.common.linked.load(Ordering::Acquire);
        if from >= self.sealed() {
            return Linking::Done;
        }
        let to = self.sealed().min(from.saturating_add(max.max(1)));
        let pool = link_pool().filter(|_| parallel && rayon::current_thread_index().is_none());
        let link = |q: u32| {
            if self.is_attached() {
                self.link_attached(q, base)
            } else {
                self.link(q)
            }
        };
        if let (Some(pool), true) = (pool, to - from > 1) {
            use rayon::prelude::*;
            pool.install(|| (from as u32..to as u32).into_par_iter().for_each(link));
        } else {
            (from as u32..to as u32).for_each(link);
        }
        self.common.linked.store(to, Ordering::Release);
        if to < self.sealed() {
            Linking::More
        } else {
            Linking::Done
        }
    }

    /// Waits until no thread is linking.
    pub(crate) fn wait_linking(&self) {
        drop(lock(&self.common.linking));
    }

    /// Links every sealed node of this view ([`Overlay::link_some`] until
    /// done; waits for another linking thread if there is one).
    pub(crate) fn link_all<B: Base>(&self, base: &B) {
        while self.has_pending() {
            if self.link_some(usize::MAX, true, base) == Linking::Busy {
                self.wait_linking();
            }
        }
    }

    /// Links node `q` into the graph (as `build.rs` inserts a node).
    fn link(&self, q: u32) {
        let level = self.level(q);
        let mut guard = lock_entry(&self.common.entry);
        let Some((ep, max_level)) = *guard else {
            *guard = Some((q, level));
            self.publish_entry(q, level);
            return;
        };
        let held = if level > max_level {
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let row = self.row(q);
        let cq = self.prepare(row);
        let cq = cq.as_ref();
        let mut cur = Cand {
            d: self.tdist(row, cq, ep),
            id: ep,
        };
        for l in (level + 1..=max_level).rev() {
            cur = greedy(self, l, cur, |i| self.tdist(row, cq, i));
        }
        let mut chosen = Vec::with_capacity(self.common.m0);
        let mut theirs = Vec::with_capacity(self.common.m0 + 1);
        let between = |a: u32, b: u32| self.between(a, b);
        for l in (0..=level.min(max_level)).rev() {
            // A concurrent insertion may already have linked `q` on this
            // level, so the beam can meet `q` itself: never link to self.
            let found = self.beam_exact(
                l,
                cur,
                self.common.ef_construction,
                row,
                cq,
                |i| i != q,
                LINK_RERANK_PER_M * self.common.m,
            );
            self.select(&found, self.common.m, &mut chosen);
            self.write_own(l, q, &chosen, &mut theirs, between);
            self.link_back(l, q, &chosen, between);
            if let Some(best) = found.first() {
                cur = Cand {
                    d: self.tdist(row, cq, best.id),
                    id: best.id,
                };
            }
        }
        if let Some(mut g) = held {
            *g = Some((q, level));
            self.publish_entry(q, level);
        }
    }

    fn publish_entry(&self, node: u32, level: usize) {
        self.common
            .published
            .store((node as u64) << 8 | level as u64, Ordering::Release);
    }

    /// The entry for a search, if a node this view holds is linked.
    fn entry_point(&self) -> Option<(u32, usize)> {
        let e = self.common.published.load(Ordering::Acquire);
        let (node, level) = ((e >> 8) as u32, (e & 0xff) as usize);
        (e != NO_ENTRY && (node as usize) < self.sealed()).then_some((node, level))
    }

    /// The `k` nearest live nodes to the prepared query `q`, closest first,
    /// by exact distance: a beam of width `max(ef, k)` over the graph, or
    /// an exact scan below [`SCAN_BELOW`] nodes (or if `exact`).
    pub(crate) fn search(&self, q: &[f32], k: usize, ef: usize, exact: bool) -> Vec<Cand> {
        if self.live == 0 || k == 0 {
            return Vec::new();
        }
        // An attached overlay is searched with its generation
        // (`union_candidates`); alone, only by a scan.
        if exact || self.nodes() < SCAN_BELOW || self.linked() == 0 || self.is_attached() {
            return self.scan(q, k, 0);
        }
        self.graph_search(q, k, ef)
    }

    /// The graph part of [`Overlay::search`]: nodes `0..linked` from the
    /// graph (later ones, being linked, traversed but not returned), the
    /// others and the tail scanned.
    fn graph_search(&self, q: &[f32], k: usize, ef: usize) -> Vec<Cand> {
        let linked = self.linked();
        // The entry is a node linked after this view was taken: scan
        // (rare, and exact; never panic).
        let Some((ep, max_level)) = self.entry_point() else {
            return self.scan(q, k, 0);
        };
        let cq = self.prepare(q);
        let cq = cq.as_ref();
        let mut cur = Cand {
            d: self.tdist(q, cq, ep),
            id: ep,
        };
        for l in (1..=max_level).rev() {
            cur = greedy(self, l, cur, |i| self.tdist(q, cq, i));
        }
        let mut found = self.beam_exact(
            0,
            cur,
            ef.max(k),
            q,
            cq,
            |i| (i as usize) < linked && !self.is_dead(i),
            usize::MAX,
        );
        if linked < self.nodes() {
            found.extend(self.scan(q, k, linked));
            found.sort_unstable();
        }
        found.truncate(k);
        found
    }

    /// The `k` nearest live nodes from `from` on, by brute force.
    fn scan(&self, q: &[f32], k: usize, from: usize) -> Vec<Cand> {
        self.scan_from(q, k, from, |_| true)
    }

    /// The `k` nearest live nodes for which `accept` is true, by exact
    /// distance (a scan of every node), closest first.
    pub(crate) fn scan_accepting(
        &self,
        q: &[f32],
        k: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Cand> {
        self.scan_from(q, k, 0, accept)
    }

    /// [`Overlay::scan_accepting`] over the nodes from `from` on.
    pub(super) fn scan_from(
        &self,
        q: &[f32],
        k: usize,
        from: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Cand> {
        let mut top: BinaryHeap<Cand> = BinaryHeap::with_capacity(k.min(self.live) + 1);
        for node in from as u32..self.nodes() as u32 {
            if !accept(node) || self.is_dead(node) {
                continue;
            }
            let c = Cand {
                d: self.dist(q, node),
                id: node,
            };
            if top.len() < k {
                top.push(c);
            } else if top.peek().is_some_and(|t| c < *t) {
                top.pop();
                top.push(c);
            }
        }
        top.into_sorted_vec()
    }
}

fn lock_entry(m: &Mutex<Option<(u32, usize)>>) -> std::sync::MutexGuard<'_, Option<(u32, usize)>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, padded: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out: Vec<f32> = (0..n * padded).map(|_| rng.gen::<f32>() - 0.5).collect();
        for r in out.chunks_exact_mut(padded) {
            let norm = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            r.iter_mut().for_each(|x| *x /= norm);
        }
        out
    }

    fn int8(rows: &[f32], padded: usize) -> Int8Quantizer {
        Int8Quantizer::train(rows, padded, padded, 1e-4)
    }

    fn overlay(padded: usize, q: Option<Int8Quantizer>) -> Overlay {
        Overlay::new(padded, Metric::Cosine, 8, 40, 7, q, None)
    }

    /// Every link list, node by node and level by level.
    fn lists(o: &Overlay) -> Vec<Vec<u32>> {
        let mut out = Vec::new();
        for n in 0..o.sealed() as u32 {
            for l in 0..=o.level(n) {
                let mut v = Vec::new();
                o.read(l, n, &mut v);
                out.push(v);
            }
        }
        out
    }

    /// Linking chunk by chunk (the writer) and all at once (a replay) build
    /// the same graph, dead nodes included, on one thread (linking is
    /// sequential and deterministic there).
    #[test]
    fn linking_late_builds_the_same_graph() {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool")
            .install(linking_late_on_this_pool);
    }

    fn linking_late_on_this_pool() {
        let p = 16;
        let data = rows(700, p, 1);
        for codes in [false, true] {
            let q = codes.then(|| int8(&data, p));
            let (mut eager, mut late) = (overlay(p, q.clone()), overlay(p, q));
            for (i, r) in data.chunks_exact(p).enumerate() {
                eager.push(i as u64, r);
                eager.link_all(&NoBase);
                late.push(i as u64, r);
                if i % 3 == 0 {
                    eager.kill(i as u32 / 2);
                    late.kill(i as u32 / 2);
                }
            }
            assert!(late.has_pending());
            late.link_all(&NoBase);
            assert!(!late.has_pending());
            assert_eq!(lists(&eager), lists(&late));
            assert_eq!(eager.entry_point(), late.entry_point());
            for r in data.chunks_exact(p).take(50) {
                assert_eq!(
                    eager.search(r, 10, 32, false),
                    late.search(r, 10, 32, false)
                );
            }
        }
    }

    /// Pending nodes (sealed but not linked, and the tail) are found by
    /// the scan before they are linked.
    #[test]
    fn pending_nodes_are_found() {
        let p = 16;
        let data = rows(600, p, 2);
        let mut o = overlay(p, None);
        for (i, r) in data.chunks_exact(p).enumerate().take(400) {
            o.push(i as u64, r);
        }
        // Sequential linking: the same graph every run (parallel linking
        // made a linked row's self-search at ef 16 miss now and then).
        while o.link_some(usize::MAX, false, &NoBase) == Linking::More {}
        for (i, r) in data.chunks_exact(p).enumerate().skip(400) {
            o.push(i as u64, r);
        }
        assert!(o.has_pending() && !o.tail.is_empty());
        for (i, r) in data.chunks_exact(p).enumerate() {
            assert_eq!(o.search(r, 1, 32, false)[0].id, i as u32);
        }
    }

    /// A published view does not change: later pushes, kills and linking
    /// (into chunks it does not hold) leave its answers as they were.
    #[test]
    fn a_published_view_is_a_snapshot() {
        let p = 16;
        let data = rows(1500, p, 4);
        let mut o = overlay(p, Some(int8(&data, p)));
        for (i, r) in data.chunks_exact(p).enumerate().take(700) {
            o.push(i as u64, r);
        }
        o.link_all(&NoBase);
        let snap = o.publish();
        let before: Vec<Vec<Cand>> = data
            .chunks_exact(p)
            .take(100)
            .map(|r| snap.search(r, 5, 32, false))
            .collect();
        for n in 0..100 {
            o.kill(n);
        }
        for (i, r) in data.chunks_exact(p).enumerate().skip(700) {
            o.push(i as u64, r);
        }
        o.link_all(&NoBase);
        assert_eq!(snap.live(), 700);
        assert_eq!(snap.nodes(), 700);
        for (i, r) in data.chunks_exact(p).take(100).enumerate() {
            let now = snap.search(r, 5, 32, false);
            assert!(now.iter().all(|c| (c.id as usize) < 700));
            // Its own row is still its nearest live node.
            assert_eq!(now[0].id, i as u32);
            assert_eq!(now[0], before[i][0]);
        }
        // The current view sees the kills and the new rows.
        let cur = o.publish();
        assert_eq!(cur.live(), 1400);
        for (i, r) in data.chunks_exact(p).enumerate().take(100) {
            assert!(
                cur.search(r, 5, 32, false).iter().all(|c| c.id >= 100),
                "{i}"
            );
        }
    }

    /// Times an exact scan against the graph search (with int8 codes) at
    /// dimension 384, to choose [`SCAN_BELOW`]:
    /// `cargo test --release -p strata --lib scan_threshold -- --ignored --nocapture`.
    #[test]
    #[ignore = "a timing, not a test"]
    fn scan_threshold() {
        let p = 384;
        for n in [64, 128, 256, 512, 1024, 2048] {
            let data = rows(n + 200, p, 3);
            let mut o = Overlay::new(p, Metric::Cosine, 16, 200, 7, Some(int8(&data, p)), None);
            for (i, r) in data.chunks_exact(p).take(n).enumerate() {
                o.push(i as u64, r);
            }
            o.link_all(&NoBase);
            let queries: Vec<&[f32]> = data.chunks_exact(p).skip(n).collect();
            let time = |f: &dyn Fn(&[f32]) -> Vec<Cand>| {
                let t = std::time::Instant::now();
                for _ in 0..5 {
                    for q in &queries {
                        std::hint::black_box(f(q));
                    }
                }
                t.elapsed().as_secs_f64() * 1e6 / (5 * queries.len()) as f64
            };
            let scan = time(&|q| o.scan(q, 10, 0));
            let graph = time(&|q| o.graph_search(q, 10, 32));
            eprintln!("n {n:>5}: scan {scan:>7.1} us, graph (ef 32) {graph:>7.1} us");
        }
    }
}
