//! Greedy descent and beam search over any adjacency source.
//!
//! The same code walks the graph under construction (atomics in RAM) and the
//! validated, memory-mapped file, so both give the same answers.

use super::visited::Visited;
use std::cell::Cell;
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

/// Work done by this thread's graph searches (see
/// [`crate::take_search_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchCounts {
    /// Nodes expanded: neighbour lists read by beam searches, and moves of
    /// the greedy descent through the upper levels.
    pub hops: u64,
    /// Distances computed to nodes during the graph traversal (codes or
    /// vectors; the re-ranking and rescoring of the final candidates not
    /// included).
    pub distances: u64,
    /// Distances computed on codes by k-NN searches: the traversal of a
    /// quantized index (its share of `distances`), and the second level's
    /// re-ranking of the beam's candidates (two-level codes).
    pub code_distances: u64,
    /// Full-precision (float32) distances computed by k-NN searches: the
    /// traversal of an index built with [`crate::Quantization::None`] (its
    /// share of `distances`), the rescoring of candidates (`rescored`), and
    /// exact scans (ground truth, filtered searches that scan the matches).
    pub full_distances: u64,
    /// Candidates rescored with their float32 vectors: rows read from the
    /// vectors file (or the row cache) after a quantized traversal; part of
    /// `full_distances`.
    pub rescored: u64,
    /// Nodes marked in the level-0 beam's visited set: its entry points and
    /// every neighbour seen for the first time (each is then measured, so
    /// this is at most the level-0 share of `distances` plus the entries).
    pub visited: u64,
    /// Filtered searches answered by an exact scan of the matches (few
    /// matched).
    pub filtered_exact: u64,
    /// Filtered searches answered by the graph.
    pub filtered_graph: u64,
    /// Filtered searches that began on the graph and finished with the
    /// exact scan (visit limit hit, or too few matches found).
    pub filtered_fallback: u64,
}

/// An adjacency that counts the lists read through it and the distances
/// its caller reports (for the greedy descent, which keeps no scratch).
pub(crate) struct Counting<'a, A> {
    inner: &'a A,
    hops: Cell<u64>,
    distances: Cell<u64>,
}

impl<'a, A: Adjacency> Counting<'a, A> {
    pub(crate) fn new(inner: &'a A) -> Self {
        Counting {
            inner,
            hops: Cell::new(0),
            distances: Cell::new(0),
        }
    }

    /// Counts one distance computation.
    #[inline]
    pub(crate) fn distance(&self) {
        self.distances.set(self.distances.get() + 1);
    }

    /// Adds what was counted to `counts`.
    pub(crate) fn add_to(&self, counts: &mut SearchCounts) {
        counts.hops += self.hops.get();
        counts.distances += self.distances.get();
    }
}

impl<A: Adjacency> Adjacency for Counting<'_, A> {
    #[inline]
    fn for_each_neighbor(&self, level: usize, node: u32, f: impl FnMut(u32)) {
        self.hops.set(self.hops.get() + 1);
        self.inner.for_each_neighbor(level, node, f);
    }

    #[inline]
    fn prefetch_links(&self, level: usize, node: u32) {
        self.inner.prefetch_links(level, node);
    }
}

/// Per-thread search buffers, reused across searches.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Work done by the searches that used these buffers.
    pub counts: SearchCounts,
    /// A beam stops after computing this many distances (`None`: no
    /// limit), and says so in `limit_hit`.
    pub visit_limit: Option<u64>,
    /// Whether the last beam stopped at `visit_limit`.
    pub limit_hit: bool,
    /// A node the searches treat as absent (never scored on the upper
    /// levels' descent, never visited on level 0): a held-out row of the
    /// index searched for as a query (`Generation::search_leaving_out`).
    pub skip: Option<u32>,
    pub visited: Visited,
    pub(super) candidates: BinaryHeap<Reverse<Cand>>,
    pub(super) top: BinaryHeap<Cand>,
    /// Results of the last beam search, closest first.
    pub found: Vec<Cand>,
    /// Unvisited neighbours of the node being expanded.
    pub(super) fresh: Vec<u32>,
    /// The prepared (padded, normalised) query of a reader search.
    pub query: Vec<f32>,
    /// Per-query weights of quantized distances.
    pub weights: Vec<f32>,
    /// The weights quantized to i8 for the integer kernel.
    pub weights_i8: Vec<i8>,
    /// A second i8 term of the weights (two-level codes).
    pub weights_i8b: Vec<i8>,
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

/// How many neighbours ahead of the one being measured [`beam`] prefetches.
/// Prefetching all of an expanded node's neighbours at once (up to 32
/// codes of 6 cache lines) fills the core's miss buffers, and the
/// prefetches themselves stall: on npm-minilm (int8, ef 32, one thread)
/// `perf annotate` put 25 % of `beam`'s cycles on the instructions after
/// them. A window of 4 gave 28.5-29.3k QPS against 25.5-27.2k for all at
/// once (1: 25.1-26.2k, 2: 26.6-27.7k, 8: 28.5-28.7k).
pub(super) const PREFETCH_AHEAD: usize = 4;

/// Beam search with width `ef` on one level from `entries`; leaves the
/// closest (at most `ef`) nodes in `scratch.found`, closest first. Each node
/// is expanded at most once (visited set of `n` nodes), so it terminates on
/// any graph, including cyclic or hostile ones. The unvisited neighbours of
/// each expanded node are passed to `prefetch` (which should hint the
/// CPU to load their distance data) [`PREFETCH_AHEAD`] before they are
/// measured. Nodes for which
/// `accept` is false (deleted ones) are traversed but never kept as results.
/// With `scratch.visit_limit`, the beam stops once it has computed that
/// many distances and sets `scratch.limit_hit` (its results are then
/// incomplete).
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
        counts,
        visit_limit,
        limit_hit,
        skip,
        ..
    } = scratch;
    let limit = visit_limit.map_or(u64::MAX, |l| counts.distances.saturating_add(l));
    *limit_hit = false;
    visited.reset(n);
    if let Some(o) = *skip {
        visited.insert(o);
    }
    candidates.clear();
    top.clear();
    for e in entries {
        if visited.insert(e.id) {
            counts.visited += 1;
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
        counts.hops += 1;
        counts.distances += fresh.len() as u64;
        counts.visited += fresh.len() as u64;
        if counts.distances > limit {
            *limit_hit = true;
            break;
        }
        for &nb in fresh.iter().take(PREFETCH_AHEAD) {
            prefetch(nb);
        }
        for (j, &nb) in fresh.iter().enumerate() {
            if let Some(&next) = fresh.get(j + PREFETCH_AHEAD) {
                prefetch(next);
            }
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

/// The counts of this thread's searches since the last call, reset to zero.
pub(crate) fn take_counts() -> SearchCounts {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => std::mem::take(&mut s.counts),
        Err(_) => SearchCounts::default(),
    })
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

#[cfg(test)]
mod tests {
    //! T4 and T5 of format-spec/validation.md: on any adjacency (cycles,
    //! self-loops, duplicate links, ids out of range, unreachable nodes) a
    //! beam search scores each node at most once and expands each node at
    //! most once, and greedy descent visits no node twice.
    use super::*;
    use std::cell::{Cell, RefCell};

    /// Adjacency straight from lists, passing hostile ids through unchecked
    /// (as a file reader's would be before its own range checks), and
    /// counting how often each node is expanded.
    struct Lists {
        links: Vec<Vec<u32>>,
        expanded: RefCell<Vec<u32>>,
    }

    impl Adjacency for Lists {
        fn for_each_neighbor(&self, _level: usize, node: u32, mut f: impl FnMut(u32)) {
            self.expanded.borrow_mut()[node as usize] += 1;
            self.links[node as usize].iter().for_each(|&nb| f(nb));
        }
    }

    const N: u32 = 60;

    fn hostile_graphs() -> Vec<(&'static str, Vec<Vec<u32>>)> {
        let n = N;
        vec![
            // Every node links to every node, itself, duplicates and ids
            // past the end: the worst case for revisits.
            (
                "complete with self-loops, duplicates and out-of-range ids",
                (0..n)
                    .map(|i| {
                        (0..n)
                            .chain(0..n)
                            .chain([i, i, n, n + 7, u32::MAX])
                            .collect()
                    })
                    .collect(),
            ),
            (
                "one long cycle",
                (0..n).map(|i| vec![(i + 1) % n]).collect(),
            ),
            ("self-loops only", (0..n).map(|i| vec![i; 8]).collect()),
            (
                "two cliques, the second unreachable",
                (0..n)
                    .map(|i| {
                        let half = n / 2;
                        let base = if i < half { 0 } else { half };
                        (base..base + half).collect()
                    })
                    .collect(),
            ),
            ("no links at all", vec![Vec::new(); n as usize]),
        ]
    }

    type Dist = Box<dyn Fn(u32) -> f32>;

    /// Distance functions: ordinary, all equal, NaN, and pseudo-random.
    fn distances() -> Vec<(&'static str, Dist)> {
        vec![
            ("by id", Box::new(|id| id as f32)),
            ("reversed", Box::new(|id| (N - id) as f32)),
            ("all equal", Box::new(|_| 1.0)),
            ("NaN", Box::new(|_| f32::NAN)),
            (
                "hashed",
                Box::new(|id| (id.wrapping_mul(0x9E37_79B1) >> 8) as f32),
            ),
        ]
    }

    #[test]
    fn beam_scores_and_expands_each_node_at_most_once_on_hostile_graphs() {
        for (graph_name, links) in hostile_graphs() {
            for (dist_name, dist) in distances() {
                for ef in [1, 4, 1000] {
                    let case = format!("{graph_name} / {dist_name} / ef {ef}");
                    let g = Lists {
                        links: links.clone(),
                        expanded: RefCell::new(vec![0; N as usize]),
                    };
                    let scored = RefCell::new(vec![0u32; N as usize]);
                    let out_of_range = Cell::new(0);
                    let mut scratch = Scratch::default();
                    let entry = Cand { d: dist(0), id: 0 };
                    beam(
                        &g,
                        0,
                        N as usize,
                        &[entry, entry],
                        ef,
                        &mut scratch,
                        |id| {
                            match scored.borrow_mut().get_mut(id as usize) {
                                Some(c) => *c += 1,
                                None => out_of_range.set(out_of_range.get() + 1),
                            }
                            dist(id)
                        },
                        |_| {},
                        |_| true,
                    );
                    assert_eq!(out_of_range.get(), 0, "{case}: scored an id >= n");
                    let scored = scored.into_inner();
                    let expanded = g.expanded.into_inner();
                    assert!(scored.iter().all(|&c| c <= 1), "{case}: {scored:?}");
                    assert!(expanded.iter().all(|&c| c <= 1), "{case}: {expanded:?}");
                    // Scored nodes plus the entry bound the expansions.
                    let total_scored: u32 = scored.iter().sum();
                    assert!(expanded.iter().sum::<u32>() <= total_scored + 1, "{case}");
                    assert!(!scratch.found.is_empty(), "{case}");
                    assert!(scratch.found.len() <= ef, "{case}");
                    assert!(scratch.found.iter().all(|c| c.id < N), "{case}");
                    if graph_name.starts_with("two cliques") {
                        assert!(scored[(N / 2) as usize..].iter().all(|&c| c == 0), "{case}");
                    }
                }
            }
        }
    }

    #[test]
    fn beam_counts_each_expansion_and_each_new_distance() {
        // A complete graph with ef above n: every node is expanded once
        // and every node but the entry is measured once.
        let g = Lists {
            links: (0..N).map(|_| (0..N).collect()).collect(),
            expanded: RefCell::new(vec![0; N as usize]),
        };
        let mut scratch = Scratch::default();
        let entry = Cand { d: 0.0, id: 0 };
        let measured = Cell::new(0u64);
        let dist = |id: u32| {
            measured.set(measured.get() + 1);
            id as f32
        };
        beam(
            &g,
            0,
            N as usize,
            &[entry],
            1000,
            &mut scratch,
            dist,
            |_| {},
            |_| true,
        );
        assert_eq!(scratch.counts.hops, N as u64);
        assert_eq!(scratch.counts.distances, N as u64 - 1);
        assert_eq!(scratch.counts.distances, measured.get());
        // Every node was marked visited once: the entry and the N - 1 others.
        assert_eq!(scratch.counts.visited, N as u64);
        // The greedy descent's counter sees one list per step.
        let line = Lists {
            links: (0..N).map(|i| vec![i.saturating_sub(1)]).collect(),
            expanded: RefCell::new(vec![0; N as usize]),
        };
        let counting = Counting::new(&line);
        let start = Cand {
            d: (N - 1) as f32,
            id: N - 1,
        };
        let end = greedy(&counting, 1, start, |id| {
            counting.distance();
            id as f32
        });
        assert_eq!(end.id, 0);
        let mut c = SearchCounts::default();
        counting.add_to(&mut c);
        // N − 1 moves, then the list of node 0 shows no closer node.
        assert_eq!(c.hops, N as u64);
        assert_eq!(c.distances, N as u64);
    }

    #[test]
    fn greedy_never_revisits_a_node() {
        for (graph_name, links) in hostile_graphs() {
            // Ids past the end are the reader's to skip (T2); this list
            // adjacency passes them through, so keep them out here.
            let links: Vec<Vec<u32>> = links
                .into_iter()
                .map(|l| l.into_iter().filter(|&id| id < N).collect())
                .collect();
            for (dist_name, dist) in distances() {
                let case = format!("{graph_name} / {dist_name}");
                let g = Lists {
                    links: links.clone(),
                    expanded: RefCell::new(vec![0; N as usize]),
                };
                let start = Cand {
                    d: dist(N - 1),
                    id: N - 1,
                };
                let end = greedy(&g, 1, start, &dist);
                let expanded = g.expanded.into_inner();
                assert!(expanded.iter().all(|&c| c <= 1), "{case}: {expanded:?}");
                assert!(end.id < N, "{case}");
                if dist_name == "NaN" || dist_name == "all equal" {
                    assert_eq!(end.id, start.id, "{case}: moved without getting closer");
                }
            }
        }
    }
}
