//! Logged rows linked into the generation's graph: one level-0 graph over
//! the union of both, as if the rows had been in the build.
//!
//! **Ids.** Generation ordinals keep theirs, `0..G`; overlay node `i` is
//! `G + i`. An attached overlay's nodes are on level 0 only: a search and a
//! link descend the generation's upper levels, then run one beam over the
//! union's level 0. An overlay node's level-0 list holds union ids, chosen
//! from the union by the build's neighbour selection; a generation node
//! that gets a back-link gets its list replaced in memory
//! (`overrides.rs`), so that both kinds reach each other as a fresh build's
//! nodes do.
//!
//! **Why.** Two graphs searched side by side each take a full beam (a 25k
//! generation with 25k logged rows answered at 0.47-0.49 × the QPS of a
//! fresh 50k build at recall@10 0.95, npm-minilm, one thread); one beam
//! over both graphs without links between them lost recall (0.57-0.94,
//! `live/state.rs`), and an overlay graph of its own with a few side links
//! into the generation reached 0.54-0.58 ×, still paying for the overlay's
//! own descent and half-density lists. Here the union looks like one
//! build's graph: one descent, one beam, lists of the usual density.
//!
//! Attachment needs the generation's int8 codes (both sides are compared by
//! one [`Int8Scorer`]); otherwise the overlay keeps a graph of its own.

use super::Overlay;
use crate::distance::prefetch;
use crate::graph::links::{for_each_in, LinkBlocks};
use crate::graph::search::{beam, greedy, with_scratch, Adjacency, Cand, Scratch};
use crate::graph::select::select_robust;
use crate::quant::int8::Int8Scorer;
use crate::quant::scorer::CodeSource;
use std::sync::atomic::AtomicU32;
use std::sync::Mutex;

/// The generation an attached overlay links into, as the graph code needs
/// it: its adjacency (level 0 as stored in the file; the upper levels),
/// entry, int8 codes and prepared float32 rows.
/// Its codes (int8, the overlay's quantizer's layout, with `‖x̂‖²` under
/// L2) come through [`CodeSource`], as every scorer reads them.
pub(crate) trait Base: Adjacency + CodeSource + Sync {
    /// Nodes (`G`).
    fn len(&self) -> usize;
    /// The entry node and the top level.
    fn entry(&self) -> (u32, usize);
    /// The prepared float32 row of node `o`.
    fn row(&self, o: u32) -> &[f32];
}

/// An attached link's beam width (over codes; every node it finds is
/// re-ranked in float32), at most the generation's `ef_construction`.
/// Measured with [`ATTACHED_ALPHA`] on npm-minilm (25k built at
/// ef_construction 200, 25k logged, int8, `strata insert` then `strata
/// eval` one thread, two interleaved rounds against a fresh 50k build):
/// 64 gave 0.72 × the fresh build's QPS at recall@10 0.95 at 21.0-22.4k
/// linked rows/s (2 threads); 80 with the closest 48 re-ranked 0.76 × at
/// 20.0-20.4k; 100 with 48 re-ranked and factor 1 alone (the standalone
/// overlay's setting) 0.69-0.73 × at 19.6k.
const ATTACHED_EF_CONSTRUCTION: usize = 64;

/// The second factor of an attached link's robust prune (`select_robust`
/// with factors 1, then this): logged rows join a finished graph and get
/// back-links only from rows logged after them, so with the diversity
/// heuristic alone (factor 1) they kept a mean level-0 degree of 11.9
/// against the generation's 23.4, and the union needed ef 42 for recall@10
/// 0.95 where a fresh build needs 32. Factor 1.2 fills their lists to a
/// mean of 19.3: ef 36-38, at 9 % fewer linked rows/s (same setup as
/// [`ATTACHED_EF_CONSTRUCTION`]). 1.4 or 24 links gave no more recall.
const ATTACHED_ALPHA: f32 = 1.2;

/// No generation: for an overlay that is not attached (tests).
#[cfg(test)]
pub(crate) struct NoBase;

#[cfg(test)]
impl Adjacency for NoBase {
    fn for_each_neighbor(&self, _level: usize, _node: u32, _f: impl FnMut(u32)) {}
}

#[cfg(test)]
impl Base for NoBase {
    fn len(&self) -> usize {
        0
    }
    fn entry(&self) -> (u32, usize) {
        (0, 0)
    }
    fn row(&self, _o: u32) -> &[f32] {
        &[]
    }
}

#[cfg(test)]
impl CodeSource for NoBase {
    fn code(&self, _o: u32) -> &[u8] {
        &[]
    }
    fn norm(&self, _o: u32) -> f32 {
        0.0
    }
    fn factors(&self, _o: u32) -> [f32; 2] {
        [0.0, 0.0]
    }
    fn residual(&self, _o: u32) -> &[u8] {
        &[]
    }
}

/// A generation and the overlay attached to it, as one graph in union ids.
struct Union<'a, B> {
    base: &'a B,
    ov: &'a Overlay,
    /// `G`.
    g: u32,
    /// `G` + the overlay nodes this view holds: links at or past it are
    /// skipped.
    held: u32,
}

impl<'a, B: Base> Union<'a, B> {
    fn new(base: &'a B, ov: &'a Overlay) -> Self {
        let g = base.len() as u32;
        Union {
            base,
            ov,
            g,
            held: g + ov.sealed() as u32,
        }
    }

    #[inline]
    fn code_dist(&self, cq: &Int8Scorer, u: u32) -> f32 {
        if u < self.g {
            cq.distance_to(self.base.code(u), || self.base.norm(u))
        } else {
            self.ov.code_dist(cq, u - self.g)
        }
    }

    #[inline]
    fn prefetch_code(&self, u: u32) {
        if u < self.g {
            prefetch(self.base.code(u))
        } else {
            prefetch(self.ov.code(u - self.g).0)
        }
    }

    #[inline]
    fn row(&self, u: u32) -> &[f32] {
        if u < self.g {
            self.base.row(u)
        } else {
            self.ov.row(u - self.g)
        }
    }

    /// The float32 distance of two union nodes.
    #[inline]
    fn between(&self, a: u32, b: u32) -> f32 {
        let c = &self.ov.common;
        c.metric.distance(c.kernels, self.row(a), self.row(b))
    }

    fn overrides(&self) -> &super::overrides::Overrides {
        self.ov
            .common
            .attached
            .as_ref()
            .expect("a union is made for an attached overlay only")
    }

    /// Descends the generation's upper levels greedily towards `cq`.
    fn descend(&self, cq: &Int8Scorer) -> Cand {
        let (ep, top) = self.base.entry();
        let mut cur = Cand {
            d: self.code_dist(cq, ep),
            id: ep,
        };
        for l in (1..=top).rev() {
            cur = greedy(self.base, l, cur, |i| self.code_dist(cq, i));
        }
        cur
    }

    /// A level-0 beam of width `ef` from `entry` over the codes; the result
    /// is left in `s.found`.
    fn beam(
        &self,
        entry: Cand,
        ef: usize,
        cq: &Int8Scorer,
        s: &mut Scratch,
        accept: impl Fn(u32) -> bool,
    ) {
        beam(
            self,
            0,
            self.held as usize,
            &[entry],
            ef,
            s,
            |u| self.code_dist(cq, u),
            |u| self.prefetch_code(u),
            accept,
        );
    }
}

impl<B: Base> Adjacency for Union<'_, B> {
    #[inline]
    fn for_each_neighbor(&self, level: usize, node: u32, mut f: impl FnMut(u32)) {
        if level > 0 {
            // Only generation nodes are on upper levels.
            if node < self.g {
                self.base.for_each_neighbor(level, node, f);
            }
            return;
        }
        let held = self.held;
        let block = if node < self.g {
            match self.overrides().get(node) {
                Some(b) => b,
                None => return self.base.for_each_neighbor(0, node, f),
            }
        } else {
            self.ov.block(0, node - self.g)
        };
        for_each_in(block, |x| {
            if x < held {
                f(x)
            }
        })
    }

    #[inline]
    fn prefetch_links(&self, level: usize, node: u32) {
        if level == 0 && node >= self.g {
            prefetch(self.ov.block(0, node - self.g));
        } else if let Some(b) = (level == 0).then(|| self.overrides().get(node)).flatten() {
            prefetch(b);
        } else {
            self.base.prefetch_links(level, node);
        }
    }
}

impl<B: Base> LinkBlocks for Union<'_, B> {
    fn cap(&self, _level: usize) -> usize {
        self.ov.common.m0
    }

    /// Level 0 only. A generation node's block is made from its file list
    /// on first use: callers hold its lock (`write_own` and `link_back`
    /// do, and only they reach a generation node's block here).
    fn block(&self, level: usize, node: u32) -> &[AtomicU32] {
        debug_assert_eq!(level, 0, "an attached overlay links level 0 only");
        if node < self.g {
            self.overrides()
                .get_or_copy(node, |f| self.base.for_each_neighbor(0, node, f))
        } else {
            self.ov.block(0, node - self.g)
        }
    }

    fn node_lock(&self, node: u32) -> &Mutex<()> {
        if node < self.g {
            self.overrides().lock(node)
        } else {
            self.ov.node_lock(node - self.g)
        }
    }
}

impl Overlay {
    /// Whether this overlay links into a generation (see the module docs).
    pub(crate) fn is_attached(&self) -> bool {
        self.common.attached.is_some()
    }

    /// Links overlay node `q` into the union with `base` (as the build
    /// inserts a node on level 0: a beam of `ef_construction` over the
    /// codes, the closest by code re-ranked in float32, the diversity
    /// heuristic, back-links with pruning).
    pub(super) fn link_attached<B: Base>(&self, q: u32, base: &B) {
        let u = Union::new(base, self);
        debug_assert_eq!(
            u.overrides().len(),
            base.len(),
            "the generation attached to"
        );
        let me = u.g + q;
        let row = self.row(q);
        let Some(cq) = self.prepare(row) else {
            return;
        };
        let entry = u.descend(&cq);
        let c = &self.common;
        let ef = c.ef_construction.min(ATTACHED_EF_CONSTRUCTION);
        let mut found = with_scratch(|s| {
            u.beam(entry, ef, &cq, s, |i| i != me);
            std::mem::take(&mut s.found)
        });
        for f in &found {
            prefetch(u.row(f.id));
        }
        for f in &mut found {
            f.d = c.metric.distance(c.kernels, row, u.row(f.id));
        }
        found.sort_unstable();
        let between = |a: u32, b: u32| u.between(a, b);
        let mut chosen = Vec::with_capacity(c.m);
        select_robust(&found, c.m, &[1.0, ATTACHED_ALPHA], &mut chosen, between);
        let mut theirs = Vec::with_capacity(c.m0 + 1);
        u.write_own(0, me, &chosen, &mut theirs, between);
        u.link_back(0, me, &chosen, between);
    }

    /// The union's candidates for prepared query `cq`: a descent of the
    /// generation's upper levels, then one level-0 beam of width `ef` over
    /// both kinds of node, by code distance, left in `s.found` (closest
    /// first; union ids). Returned are generation nodes `accept_base`
    /// accepts and overlay nodes linked in this view and alive; the others
    /// are traversed. The overlay's pending nodes are not among them (see
    /// [`Overlay::scan_pending`]).
    pub(crate) fn union_candidates<B: Base>(
        &self,
        base: &B,
        cq: &Int8Scorer,
        ef: usize,
        s: &mut Scratch,
        accept_base: impl Fn(u32) -> bool,
        accept_node: impl Fn(u32) -> bool,
    ) {
        let u = Union::new(base, self);
        let (g, linked) = (u.g, self.linked() as u32);
        let entry = u.descend(cq);
        u.beam(entry, ef, cq, s, |i| {
            if i < g {
                accept_base(i)
            } else {
                i - g < linked && !self.is_dead(i - g) && accept_node(i - g)
            }
        });
    }

    /// The `k` nearest live overlay nodes `accept` accepts, by exact
    /// distance, among those a graph search does not return (not linked
    /// yet in this view, and the tail), closest first.
    pub(crate) fn scan_pending(
        &self,
        q: &[f32],
        k: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Cand> {
        self.scan_from(q, k, self.linked(), accept)
    }

    /// A prepared query for the codes, if the overlay has codes.
    pub(crate) fn code_query(&self, q: &[f32]) -> Option<Int8Scorer> {
        self.prepare(q)
    }
}
