//! Parallel HNSW construction (Malkov & Yashunin) in RAM.
//!
//! Links live in flat arrays of atomics written under per-node mutexes and
//! read optimistically (`links.rs`). Nodes that raise the top level hold the
//! global entry lock for their whole insertion, so the entry point only ever
//! moves up.

use super::links::{LinkBlocks, Links};
use super::search::{beam, greedy, with_scratch, Cand};
use super::select::{select_diverse, select_robust};
use crate::distance::{prefetch, Kernels};
use crate::metric::Metric;
use crate::quant::scorer::{AnyScorer, CodeSource, QueryContext, Scorer, ScorerBuffers};
use crate::quantization::Quantization;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Levels are capped so a level fits in a byte and the header stays small.
pub(crate) use crate::limits::MAX_LEVEL;

/// [`Builder::refine`]'s second factor of the robust prune. Vamana uses
/// 1.2 with L2; on npm-minilm (cosine) and on clustered L2 data 1.2 gained
/// recall where 1.0 (the insertion's own heuristic, applied again) lost it
/// on the clustered data: a factor above 1 keeps the longer edges that
/// nodes inserted early hold.
pub(crate) const REFINE_ALPHA: f32 = 1.2;

/// [`Builder::refine`] selects among this many times `ef_construction` of
/// the nodes its beam evaluated (closest first). On npm-minilm 2 gained
/// about 0.002 recall@10 at ef 32-48 over 1, for 15 % more build time.
pub(crate) const REFINE_POOL: usize = 2;

/// Inputs of a graph build.
pub(crate) struct GraphInput<'a> {
    pub vectors: &'a [f32],
    pub padded: usize,
    pub metric: Metric,
    pub m: usize,
    pub ef_construction: usize,
    pub seed: u64,
    /// Codes of the rows: when present, the candidate search of each
    /// insertion runs on them, float32 only re-ranks what it found and
    /// selects neighbours.
    pub codes: Option<GuideCodes<'a>>,
    /// The rows in the order they are inserted; empty: row order. The first
    /// is the initial entry point, and the rows before `order_barrier` are
    /// all inserted before any after it (a skeleton phase).
    pub order: &'a [u32],
    pub order_barrier: usize,
    /// Run [`Builder::refine`] over every node after the insertions.
    pub refine: bool,
}

/// The passes of a graph build, as its progress reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Inserting the rows.
    Insert,
    /// Re-selecting every node's level-0 list in the finished graph.
    Refine,
}

/// Codes of every row (row order) with what distances over them need:
/// the insertions' candidate searches score them through the kind's
/// [`Scorer`] (int8 and LVQ-8 today, see `builder.rs`).
pub(crate) struct GuideCodes<'a> {
    pub kind: Quantization,
    /// The quantizer's `quant_params` floats.
    pub params: &'a [f32],
    pub dim: usize,
    pub codes: &'a [u8],
    pub stride: usize,
    /// `‖x̂‖²` per row (L2 only; else empty).
    pub norms: &'a [f32],
    /// The `binary_factors` pair per row (the kinds with one; else empty).
    pub factors: &'a [[f32; 2]],
}

impl CodeSource for GuideCodes<'_> {
    #[inline]
    fn code(&self, i: u32) -> &[u8] {
        let s = self.stride;
        &self.codes[i as usize * s..(i as usize + 1) * s]
    }
    #[inline]
    fn norm(&self, i: u32) -> f32 {
        self.norms[i as usize]
    }
    #[inline]
    fn factors(&self, i: u32) -> [f32; 2] {
        self.factors[i as usize]
    }
    #[inline]
    fn residual(&self, _: u32) -> &[u8] {
        &[]
    }
}

/// The finished graph in insertion order.
pub(crate) struct BuiltGraph {
    pub levels: Vec<u8>,
    pub entry: u32,
    pub max_level: usize,
    pub m: usize,
    pub m0: usize,
    /// Per level, the nodes that were unreachable from the entry point after
    /// insertion and that the repair pass linked in.
    pub repaired: Vec<usize>,
    links: Links,
}

impl BuiltGraph {
    /// Neighbours of `node` on `level` (for the writer and tests).
    pub(crate) fn neighbors(&self, level: usize, node: u32) -> Vec<u32> {
        let mut v = Vec::new();
        self.links.read(level, node, &mut v);
        v
    }
}

/// Draws each node's level with multiplier `1 / ln(m)` from a seeded RNG, so
/// levels do not depend on the thread count.
pub(crate) fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let mult = 1.0 / (m.max(2) as f64).ln();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
            ((-u.ln() * mult) as usize).min(MAX_LEVEL) as u8
        })
        .collect()
}

/// Distances from one query vector, see [`Builder::traversal`].
pub(super) struct Traversal<'s> {
    builder: &'s Builder<'s>,
    qv: &'s [f32],
    codes: Option<(&'s GuideCodes<'s>, AnyScorer)>,
}

impl Traversal<'_> {
    #[inline]
    pub(super) fn dist(&self, i: u32) -> f32 {
        match &self.codes {
            Some((c, scorer)) => scorer.distance(*c, i),
            None => self.builder.dist(self.qv, i),
        }
    }

    #[inline]
    pub(super) fn prefetch(&self, i: u32) {
        match &self.codes {
            Some((c, _)) => prefetch(c.code(i)),
            None => prefetch(self.builder.vector(i)),
        }
    }

    /// Whether distances are over codes (approximate) rather than float32.
    pub(super) fn on_codes(&self) -> bool {
        self.codes.is_some()
    }
}

pub(super) struct Builder<'a> {
    pub(super) input: &'a GraphInput<'a>,
    pub(super) kernels: &'static Kernels,
    pub(super) n: usize,
    pub(super) links: Links,
    pub(super) levels: Vec<u8>,
    pub(super) entry: Mutex<(u32, usize)>,
    /// `(level, node)` of every link list the repair passes rewrote, in
    /// order (see `repair.rs`: a findability check is redone only for nodes
    /// whose last search read a list rewritten since).
    pub(super) rewritten: Mutex<Vec<(u8, u32)>>,
}

pub(super) fn lock(m: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    // A poisoned lock only means another insertion panicked; links are
    // always left valid, so carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Builder<'_> {
    #[inline]
    pub(super) fn vector(&self, i: u32) -> &[f32] {
        let p = self.input.padded;
        &self.input.vectors[i as usize * p..(i as usize + 1) * p]
    }

    /// Distances from `qv` for traversing the graph: over the codes
    /// when there are codes (a quarter of the memory traffic of float32
    /// rows, and what a search of the written index measures), else float32.
    pub(super) fn traversal<'s>(&'s self, qv: &'s [f32]) -> Traversal<'s> {
        let codes = self.input.codes.as_ref().and_then(|c| {
            let ctx = QueryContext {
                metric: self.input.metric,
                dim: c.dim,
                pq_m: 0,
                params: c.params,
                kernels: self.kernels,
            };
            AnyScorer::new(c.kind, &ctx, qv, ScorerBuffers::default()).map(|q| (c, q))
        });
        Traversal {
            builder: self,
            qv,
            codes,
        }
    }

    #[inline]
    pub(super) fn dist(&self, a: &[f32], b: u32) -> f32 {
        self.input.metric.distance(self.kernels, a, self.vector(b))
    }

    /// The diverse-neighbour heuristic (HNSW paper, Algorithm 4, as hnswlib
    /// applies it): take candidates closest first, keep one only if it is
    /// closer to the base than to every neighbour already kept.
    pub(super) fn select(&self, sorted: &[Cand], max: usize, out: &mut Vec<u32>) {
        select_diverse(sorted, max, out, |c, r| self.dist(self.vector(c), r));
    }

    /// Link capacity of a node on `level`.
    pub(super) fn cap(&self, level: usize) -> usize {
        self.links.cap(level)
    }

    /// Re-selects `q`'s level-0 list in the finished graph (see
    /// `BuildParams::refine`), as the second pass of Vamana's construction
    /// does: a beam of `ef_construction` from the entry point records
    /// every node it evaluates; the [`REFINE_POOL`] × `ef_construction`
    /// closest of them (by the traversal's distance) and `q`'s current
    /// neighbours are re-ranked by float32 distance and selected by
    /// [`select_robust`] with factors 1 then [`REFINE_ALPHA`], up to the
    /// level's capacity. The list is replaced and back-links are added
    /// (pruned as during insertion); a node left without in-links is
    /// linked back in by the repair pass that follows.
    fn refine(&self, q: u32) {
        let (ep, max_level) = *self.entry.lock().unwrap_or_else(|e| e.into_inner());
        let qv = self.vector(q);
        let t = self.traversal(qv);
        let tdist = |i: u32| t.dist(i);
        let mut cur = Cand {
            d: tdist(ep),
            id: ep,
        };
        for l in (1..=max_level).rev() {
            cur = greedy(&self.links, l, cur, tdist);
        }
        let seen = std::cell::RefCell::new(Vec::<Cand>::new());
        let recorded = |i: u32| {
            let d = tdist(i);
            seen.borrow_mut().push(Cand { d, id: i });
            d
        };
        with_scratch(|s| {
            beam(
                &self.links,
                0,
                self.n,
                &[cur],
                self.input.ef_construction,
                s,
                recorded,
                |i| t.prefetch(i),
                |_| true,
            );
        });
        let mut pool = seen.into_inner();
        let keep = REFINE_POOL * self.input.ef_construction;
        if pool.len() > keep {
            // The closest `keep`, in no order (all are re-ranked below).
            pool.select_nth_unstable(keep);
            pool.truncate(keep);
        }
        let mut ids: Vec<u32> = pool.iter().map(|c| c.id).collect();
        let mut mine = Vec::with_capacity(self.links.m0);
        self.links.read(0, q, &mut mine);
        ids.extend(mine);
        ids.sort_unstable();
        ids.dedup();
        ids.retain(|&i| i != q);
        for &i in &ids {
            prefetch(self.vector(i));
        }
        let mut exact: Vec<Cand> = ids
            .iter()
            .map(|&id| Cand {
                d: self.dist(qv, id),
                id,
            })
            .collect();
        exact.sort_unstable();
        let cap = self.links.cap(0);
        let mut chosen = Vec::with_capacity(cap);
        let between = |a: u32, b: u32| self.dist(self.vector(a), b);
        select_robust(&exact, cap, &[1.0, REFINE_ALPHA], &mut chosen, between);
        {
            let _g = lock(self.links.node_lock(q));
            self.links.write(0, q, &chosen);
        }
        self.links.link_back(0, q, &chosen, between);
    }

    fn insert(&self, q: u32) {
        let level = self.levels[q as usize] as usize;
        let guard = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        let (ep, max_level) = *guard;
        let raises_top = level > max_level;
        let held = if raises_top {
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let qv = self.vector(q);
        let t = self.traversal(qv);
        let tdist = |i: u32| t.dist(i);
        let tprefetch = |i: u32| t.prefetch(i);
        let mut cur = Cand {
            d: tdist(ep),
            id: ep,
        };
        for l in (level + 1..=max_level).rev() {
            cur = greedy(&self.links, l, cur, tdist);
        }
        let ef = self.input.ef_construction;
        let mut chosen = Vec::with_capacity(self.links.m0);
        let mut theirs = Vec::with_capacity(self.links.m0 + 1);
        for l in (0..=level.min(max_level)).rev() {
            let found = with_scratch(|s| {
                beam(
                    &self.links,
                    l,
                    self.n,
                    &[cur],
                    ef,
                    s,
                    tdist,
                    tprefetch,
                    |_| true,
                );
                s.found.clone()
            });
            // Neighbour selection is on float32: re-rank what the beam found.
            let found = if t.on_codes() {
                for c in &found {
                    prefetch(self.vector(c.id));
                }
                let mut exact: Vec<Cand> = found
                    .iter()
                    .map(|c| Cand {
                        d: self.dist(qv, c.id),
                        id: c.id,
                    })
                    .collect();
                exact.sort_unstable();
                exact
            } else {
                found
            };
            // A concurrent insertion may already have linked `q` on this
            // level, so the beam can meet `q` itself: never link to self.
            let found: Vec<Cand> = found.into_iter().filter(|c| c.id != q).collect();
            self.select(&found, self.input.m, &mut chosen);
            let between = |a: u32, b: u32| self.dist(self.vector(a), b);
            self.links.write_own(l, q, &chosen, &mut theirs, between);
            self.links.link_back(l, q, &chosen, between);
            if let Some(best) = found.first() {
                cur = Cand {
                    d: tdist(best.id),
                    id: best.id,
                };
            }
        }
        if let Some(mut g) = held {
            *g = (q, level);
        }
    }
}

/// Builds the graph over all rows of `input`, inserting in row order on the
/// current rayon pool (one thread: sequential and deterministic), then
/// refining every node if `input.refine`. `progress` is called with the
/// pass and the number of nodes it has done so far.
pub(crate) fn build_graph(
    input: &GraphInput<'_>,
    parallel: bool,
    progress: &(dyn Fn(Pass, usize) + Sync),
) -> BuiltGraph {
    let n = input.vectors.len() / input.padded;
    let m = input.m;
    let m0 = 2 * m;
    let levels = draw_levels(n, m, input.seed);
    let links = Links::new(m, m0, &levels);
    crate::hugepages::advise(&links.l0);
    let at = |pos: usize| -> u32 {
        match input.order.get(pos) {
            Some(&row) => row,
            None => pos as u32,
        }
    };
    let first = if n == 0 { 0 } else { at(0) };
    let builder = Builder {
        input,
        kernels: Kernels::detect(),
        n,
        links,
        entry: Mutex::new((
            first,
            levels.get(first as usize).copied().unwrap_or(0) as usize,
        )),
        levels,
        rewritten: Mutex::new(Vec::new()),
    };
    let done = AtomicUsize::new(1);
    let counted = |pass: Pass| {
        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
        if d.is_multiple_of(1024) || d == n {
            progress(pass, d);
        }
    };
    let run = |range: std::ops::Range<usize>, f: &(dyn Fn(usize) + Sync)| {
        if parallel {
            use rayon::prelude::*;
            range.into_par_iter().for_each(f);
        } else {
            range.for_each(f);
        }
    };
    let barrier = input.order_barrier.clamp(1, n.max(1));
    for phase in [1..barrier, barrier..n] {
        run(phase, &|pos| {
            builder.insert(at(pos));
            counted(Pass::Insert);
        });
    }
    if input.refine {
        done.store(0, Ordering::Relaxed);
        // In insertion order, so that one thread refines deterministically.
        run(0..n, &|pos| {
            builder.refine(at(pos));
            counted(Pass::Refine);
        });
    }
    let repaired = builder.repair(parallel);
    let (entry, max_level) = *builder.entry.lock().unwrap_or_else(|e| e.into_inner());
    BuiltGraph {
        levels: builder.levels,
        entry,
        max_level,
        m,
        m0,
        repaired,
        links: builder.links,
    }
}
