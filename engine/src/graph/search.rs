//! Greedy descent and beam search over any adjacency source.
//!
//! The same code walks the graph under construction (atomics in RAM) and the
//! validated, memory-mapped file, so both give the same answers.

use super::visited::Visited;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// A node with its distance to the query; ordered by distance, then id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub d: f32,
    pub id: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.d.total_cmp(&o.d).then(self.id.cmp(&o.id))
    }
}

/// Where neighbour lists come from.
pub(crate) trait Adjacency {
    /// Calls `f` with each neighbour of `node` on `level`. Implementations
    /// over untrusted bytes skip ids that are out of range for the level.
    fn for_each_neighbor(&self, level: usize, node: u32, f: impl FnMut(u32));

    /// Hints the CPU to load `node`'s links on `level` (default: nothing).
    fn prefetch_links(&self, _level: usize, _node: u32) {}
}

/// Per-thread search buffers, reused across searches.
#[derive(Default)]
pub(crate) struct Scratch {
    pub visited: Visited,
    candidates: BinaryHeap<Reverse<Cand>>,
    top: BinaryHeap<Cand>,
    /// Results of the last beam search, closest first.
    pub found: Vec<Cand>,
    /// Unvisited neighbours of the node being expanded.
    fresh: Vec<u32>,
    /// The prepared (padded, normalised) query of a reader search.
    pub query: Vec<f32>,
    /// Per-query weights of quantized distances.
    pub weights: Vec<f32>,
    /// The weights quantized to i8 for the integer kernel.
    pub weights_i8: Vec<i8>,
}

/// Greedy descent on one level: moves to a strictly closer neighbour until
/// none is closer. Terminates because distance strictly decreases.
pub(crate) fn greedy<A: Adjacency>(
    graph: &A,
    level: usize,
    mut cur: Cand,
    dist: impl Fn(u32) -> f32,
) -> Cand {
    loop {
        let mut best = cur;
        graph.for_each_neighbor(level, cur.id, |nb| {
            let d = dist(nb);
            if d < best.d {
                best = Cand { d, id: nb };
            }
        });
        if best.id == cur.id {
            return cur;
        }
        cur = best;
    }
}

/// Beam search with width `ef` on one level from `entries`; leaves the
/// closest (at most `ef`) nodes in `scratch.found`, closest first. Each node
/// is expanded at most once (visited set of `n` nodes), so it terminates on
/// any graph, including cyclic or hostile ones. The unvisited neighbours of
/// each expanded node are first passed to `prefetch` (which should hint the
/// CPU to load their distance data), then measured. Nodes for which
/// `accept` is false (deleted ones) are traversed but never kept as results.
#[allow(clippy::too_many_arguments)]
pub(crate) fn beam<A: Adjacency>(
    graph: &A,
    level: usize,
    n: usize,
    entries: &[Cand],
    ef: usize,
    scratch: &mut Scratch,
    dist: impl Fn(u32) -> f32,
    prefetch: impl Fn(u32),
    accept: impl Fn(u32) -> bool,
) {
    let ef = ef.max(1);
    let Scratch {
        visited,
        candidates,
        top,
        found,
        fresh,
        ..
    } = scratch;
    visited.reset(n);
    candidates.clear();
    top.clear();
    for e in entries {
        if visited.insert(e.id) {
            candidates.push(Reverse(*e));
            if accept(e.id) {
                top.push(*e);
            }
        }
    }
    while top.len() > ef {
        top.pop();
    }
    let mut bound = top.peek().map_or(f32::INFINITY, |c| c.d);
    while let Some(Reverse(c)) = candidates.pop() {
        if c.d > bound && top.len() >= ef {
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
        for &nb in fresh.iter() {
            prefetch(nb);
        }
        for &nb in fresh.iter() {
            let d = dist(nb);
            if top.len() < ef || d < bound {
                candidates.push(Reverse(Cand { d, id: nb }));
                if accept(nb) {
                    top.push(Cand { d, id: nb });
                    if top.len() > ef {
                        top.pop();
                    }
                    bound = top.peek().map_or(f32::INFINITY, |c| c.d);
                }
            }
        }
    }
    found.clear();
    found.extend(top.drain());
    found.sort_unstable();
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's reusable scratch buffers (no allocation per
/// search once they have grown to the index size).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        // Re-entered from inside a search (a progress callback that searches):
        // fall back to fresh buffers rather than panic.
        Err(_) => f(&mut Scratch::default()),
    })
}
