//! Range (radius) traversal over any adjacency source: every node within a
//! distance threshold of the query, found by widening a beam search until
//! its frontier is past the threshold.
//!
//! Two phases on one visited set, so nothing is scored twice:
//!
//! 1. [`range_beam`]: the beam search of [`super::search::beam`] (width
//!    `ef`) from the descent's entry, to reach the query's neighbourhood
//!    however small the radius. It also records every accepted node it
//!    scores and the nodes it scored but did not queue (beyond the beam's
//!    bound), which a plain beam forgets. Its `ef` best are left in
//!    `found`, for the caller to calibrate the threshold on (e.g. by the
//!    codes' error against exact distances).
//! 2. [`range_widen`]: with the threshold `t` known, the beam is widened
//!    without bound on `ef`: every node within `t` (queued, or deferred by
//!    phase 1) is expanded, best first, and every accepted node within `t`
//!    is kept. A node is expanded only if it is within `t`, so the walk
//!    ends once the frontier is past it. With more than `keep` accepted
//!    nodes within `t`, the threshold shrinks to the `keep`-th best (a
//!    beam of width `keep` from then on), so the walk costs what a
//!    `keep`-nearest search would, and the `keep` nearest are kept.
//!
//! Widening by expanding everything within the threshold (rather than
//! doubling `ef` and searching again, or resuming a beam whose pruned
//! candidates are lost) needs no restart and no guess of how many nodes the
//! ball holds; the best-first order only matters when `keep` cuts it.
//! faiss's HNSW range search instead runs one beam of the configured width
//! and keeps the hits within the radius, so a ball larger than `ef` is
//! cut short; hnswlib has no range search.

use super::search::{Adjacency, Cand, Scratch, PREFETCH_AHEAD};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a range walk keeps besides the beam's [`Scratch`], reused across
/// searches by each thread.
#[derive(Default)]
pub(crate) struct RangeBuffers {
    /// Accepted nodes phase 1 scored (each once), with their distances.
    scored: Vec<Cand>,
    /// Nodes phase 1 scored but did not queue (beyond its bound).
    deferred: Vec<Cand>,
    /// The accepted nodes within the threshold kept so far (at most
    /// `keep`), worst on top.
    within: BinaryHeap<Cand>,
    /// The distance count at which the walk stops (`u64::MAX`: never).
    limit: u64,
}

/// How a range walk ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RangeEnd {
    /// More than `keep` accepted nodes were within the threshold: some
    /// were dropped (those kept are the nearest the walk found).
    pub overflowed: bool,
    /// The walk stopped at `scratch.visit_limit` distances: its result
    /// is incomplete.
    pub limit_hit: bool,
}

thread_local! {
    static BUFFERS: std::cell::RefCell<RangeBuffers> = std::cell::RefCell::new(RangeBuffers::default());
}

/// Runs `f` with this thread's reusable range buffers.
pub(crate) fn with_range_buffers<R>(f: impl FnOnce(&mut RangeBuffers) -> R) -> R {
    BUFFERS.with(|b| match b.try_borrow_mut() {
        Ok(mut b) => f(&mut b),
        Err(_) => f(&mut RangeBuffers::default()),
    })
}

/// Phase 1: a beam of width `ef` on `level` from `entries` over nodes
/// `0..n`, exactly as [`super::search::beam`] walks (each node scored and
/// expanded at most once; `accept` false: traversed, never kept), leaving
/// the closest `ef` accepted nodes in `scratch.found`, closest first, and
/// in `buf` what [`range_widen`] continues from. With
/// `scratch.visit_limit`, both phases together stop after that many
/// distances (`true` returned: the limit was hit).
#[allow(clippy::too_many_arguments)]
pub(crate) fn range_beam<A: Adjacency>(
    graph: &A,
    level: usize,
    n: usize,
    entries: &[Cand],
    ef: usize,
    scratch: &mut Scratch,
    buf: &mut RangeBuffers,
    dist: impl Fn(u32) -> f32,
    prefetch: impl Fn(u32),
    accept: impl Fn(u32) -> bool,
) -> bool {
    let ef = ef.max(1);
    let Scratch {
        visited,
        candidates,
        top,
        found,
        fresh,
        counts,
        visit_limit,
        ..
    } = scratch;
    buf.scored.clear();
    buf.deferred.clear();
    buf.within.clear();
    buf.limit = visit_limit.map_or(u64::MAX, |l| counts.distances.saturating_add(l));
    visited.reset(n);
    candidates.clear();
    top.clear();
    for e in entries {
        if visited.insert(e.id) {
            candidates.push(Reverse(*e));
            if accept(e.id) {
                top.push(*e);
                buf.scored.push(*e);
            }
        }
    }
    while top.len() > ef {
        top.pop();
    }
    let mut bound = top.peek().map_or(f32::INFINITY, |c| c.d);
    let mut limit_hit = false;
    while let Some(Reverse(c)) = candidates.pop() {
        if c.d > bound && top.len() >= ef {
            // Not expanded: phase 2 may still expand it.
            candidates.push(Reverse(c));
            break;
        }
        if let Some(Reverse(next)) = candidates.peek() {
            graph.prefetch_links(level, next.id);
        }
        fresh.clear();
        graph.for_each_neighbor(level, c.id, |nb| {
            if visited.insert(nb) {
                fresh.push(nb);
            }
        });
        counts.hops += 1;
        counts.distances += fresh.len() as u64;
        if counts.distances > buf.limit {
            limit_hit = true;
            break;
        }
        for &nb in fresh.iter().take(PREFETCH_AHEAD) {
            prefetch(nb);
        }
        for (j, &nb) in fresh.iter().enumerate() {
            if let Some(&next) = fresh.get(j + PREFETCH_AHEAD) {
                prefetch(next);
            }
            let cand = Cand {
                d: dist(nb),
                id: nb,
            };
            let accepted = accept(nb);
            if accepted {
                buf.scored.push(cand);
            }
            if top.len() < ef || cand.d < bound {
                candidates.push(Reverse(cand));
                if accepted {
                    top.push(cand);
                    if top.len() > ef {
                        top.pop();
                    }
                    bound = top.peek().map_or(f32::INFINITY, |c| c.d);
                }
            } else {
                buf.deferred.push(cand);
            }
        }
    }
    found.clear();
    found.extend(top.iter().copied());
    found.sort_unstable();
    limit_hit
}

/// Phase 2: continues [`range_beam`]'s walk (same graph, `level`, `dist`,
/// `accept`) with no bound on its width, expanding every node within
/// `threshold`, best first; leaves in `scratch.found`, closest first, the
/// accepted nodes within `threshold` it scored, at most `keep` (the
/// nearest: with more, the threshold shrinks to the `keep`-th, see the
/// module docs). Nodes beyond the threshold are never expanded, so the
/// walk ends; each node is still scored at most once.
#[allow(clippy::too_many_arguments)]
pub(crate) fn range_widen<A: Adjacency>(
    graph: &A,
    level: usize,
    threshold: f32,
    keep: usize,
    scratch: &mut Scratch,
    buf: &mut RangeBuffers,
    dist: impl Fn(u32) -> f32,
    prefetch: impl Fn(u32),
    accept: impl Fn(u32) -> bool,
) -> RangeEnd {
    let keep = keep.max(1);
    let Scratch {
        visited,
        candidates,
        found,
        fresh,
        counts,
        ..
    } = scratch;
    let RangeBuffers {
        scored,
        deferred,
        within,
        limit,
    } = buf;
    let mut end = RangeEnd::default();
    // The current threshold: `threshold`, or the `keep`-th best kept.
    let mut t = threshold;
    let mut offer = |c: Cand, t: &mut f32, end: &mut RangeEnd| {
        if within.len() < keep {
            within.push(c);
        } else {
            end.overflowed = true;
            if within.peek().is_some_and(|w| c < *w) {
                within.pop();
                within.push(c);
            }
        }
        if within.len() >= keep {
            *t = t.min(within.peek().map_or(*t, |w| w.d));
        }
    };
    for c in scored.drain(..) {
        if c.d <= threshold {
            offer(c, &mut t, &mut end);
        }
    }
    for c in deferred.drain(..) {
        if c.d <= t {
            candidates.push(Reverse(c));
        }
    }
    while let Some(Reverse(c)) = candidates.pop() {
        if c.d > t {
            break;
        }
        if let Some(Reverse(next)) = candidates.peek() {
            graph.prefetch_links(level, next.id);
        }
        fresh.clear();
        graph.for_each_neighbor(level, c.id, |nb| {
            if visited.insert(nb) {
                fresh.push(nb);
            }
        });
        counts.hops += 1;
        counts.distances += fresh.len() as u64;
        if counts.distances > *limit {
            end.limit_hit = true;
            break;
        }
        for &nb in fresh.iter().take(PREFETCH_AHEAD) {
            prefetch(nb);
        }
        for (j, &nb) in fresh.iter().enumerate() {
            if let Some(&next) = fresh.get(j + PREFETCH_AHEAD) {
                prefetch(next);
            }
            let cand = Cand {
                d: dist(nb),
                id: nb,
            };
            if cand.d <= t {
                candidates.push(Reverse(cand));
                if accept(nb) {
                    offer(cand, &mut t, &mut end);
                }
            } else if cand.d <= threshold && accept(nb) {
                // Within the threshold but past the `keep`-th kept: dropped.
                end.overflowed = true;
            }
        }
    }
    found.clear();
    found.extend(within.drain());
    found.sort_unstable();
    end
}

#[cfg(test)]
mod tests {
    //! The walk on small explicit graphs: it finds every node within the
    //! threshold that is connected through nodes within it (however many
    //! more than `ef`), scores each node at most once, and with `keep`
    //! keeps the nearest.
    use super::*;
    use std::cell::RefCell;

    /// A path 0 - 1 - 2 - ... - (n−1); node `i` at distance `i`.
    struct Path {
        n: u32,
        scored: RefCell<Vec<u32>>,
    }

    impl Adjacency for Path {
        fn for_each_neighbor(&self, _level: usize, node: u32, mut f: impl FnMut(u32)) {
            if node > 0 {
                f(node - 1);
            }
            if node + 1 < self.n {
                f(node + 1);
            }
        }
    }

    fn walk(
        n: u32,
        ef: usize,
        t: f32,
        keep: usize,
        accept: impl Fn(u32) -> bool,
    ) -> (Vec<u32>, RangeEnd, Vec<u32>) {
        let g = Path {
            n,
            scored: RefCell::new(vec![0; n as usize]),
        };
        let dist = |i: u32| {
            g.scored.borrow_mut()[i as usize] += 1;
            i as f32
        };
        let mut s = Scratch::default();
        let mut b = RangeBuffers::default();
        let entry = [Cand { d: 0.0, id: 0 }];
        assert!(!range_beam(
            &g,
            0,
            n as usize,
            &entry,
            ef,
            &mut s,
            &mut b,
            dist,
            |_| {},
            &accept
        ));
        assert!(s.found.len() <= ef);
        let end = range_widen(&g, 0, t, keep, &mut s, &mut b, dist, |_| {}, &accept);
        let ids = s.found.iter().map(|c| c.id).collect();
        (ids, end, g.scored.into_inner())
    }

    #[test]
    fn finds_the_whole_ball_beyond_ef_and_scores_each_node_once() {
        // ef 2 alone would stop at node 2; the ball holds 0..=40.
        let (ids, end, scored) = walk(100, 2, 40.0, usize::MAX, |_| true);
        assert_eq!(ids, (0..=40).collect::<Vec<_>>());
        assert_eq!(end, RangeEnd::default());
        assert!(scored.iter().all(|&c| c <= 1), "{scored:?}");
        // Nothing past the ball's first outside node was scored.
        assert!(scored[42..].iter().all(|&c| c == 0));
    }

    #[test]
    fn a_threshold_inside_the_beam_keeps_only_the_ball() {
        let (ids, end, _) = walk(100, 16, 3.5, usize::MAX, |_| true);
        assert_eq!(ids, [0, 1, 2, 3]);
        assert!(!end.overflowed);
    }

    #[test]
    fn keep_bounds_the_result_to_the_nearest_and_says_so() {
        let (ids, end, scored) = walk(1000, 4, 500.0, 10, |_| true);
        assert_eq!(ids, (0..10).collect::<Vec<_>>());
        assert!(end.overflowed);
        // The shrunk threshold stopped the walk near the 10th node.
        assert!(
            scored.iter().sum::<u32>() < 20,
            "{}",
            scored.iter().sum::<u32>()
        );
    }

    #[test]
    fn rejected_nodes_are_traversed_not_kept() {
        let (ids, _, _) = walk(100, 2, 20.0, usize::MAX, |i| i % 3 == 0);
        assert_eq!(ids, (0..=20).filter(|i| i % 3 == 0).collect::<Vec<_>>());
    }
}
