//! Reachability and in-degree of one level of a graph: what a search that
//! starts at the entry point can ever return.
//!
//! A node with out-links but no path to it from the entry point is invisible
//! to every search at every `ef`; out-degree statistics do not show it. The
//! builder uses these walks to repair such nodes and `inspect` to report
//! them.

use super::search::Adjacency;

/// One bit per node: the set of nodes a walk has reached.
pub(crate) struct NodeSet {
    words: Vec<u64>,
}

impl NodeSet {
    /// An empty set over nodes `0..n`.
    pub(crate) fn new(n: usize) -> NodeSet {
        NodeSet {
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// Whether `node` is in the set (ids past the end are not).
    #[inline]
    pub(crate) fn contains(&self, node: u32) -> bool {
        self.words
            .get(node as usize / 64)
            .is_some_and(|w| w >> (node % 64) & 1 == 1)
    }

    /// The number of nodes in the set.
    pub(crate) fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Adds every node of `other` (a set over the same nodes).
    pub(crate) fn union(&mut self, other: &NodeSet) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    /// Adds `node`; true if it was not in the set. Ids past the end are
    /// never added.
    #[inline]
    pub(crate) fn insert(&mut self, node: u32) -> bool {
        match self.words.get_mut(node as usize / 64) {
            Some(w) if *w >> (node % 64) & 1 == 0 => {
                *w |= 1 << (node % 64);
                true
            }
            _ => false,
        }
    }
}

/// Adds to `reached` every node of `level` reachable from `start` through
/// links between nodes `< n` (hostile ids are skipped), `start` included.
/// Nodes already in `reached` are not walked again, so the walk can extend
/// an earlier one. Returns the number of nodes added.
pub(crate) fn extend_reachable<A: Adjacency>(
    graph: &A,
    level: usize,
    n: usize,
    start: u32,
    reached: &mut NodeSet,
) -> usize {
    if start as usize >= n || !reached.insert(start) {
        return 0;
    }
    let mut added = 1;
    let mut stack = vec![start];
    while let Some(node) = stack.pop() {
        graph.for_each_neighbor(level, node, |nb| {
            if (nb as usize) < n && reached.insert(nb) {
                added += 1;
                stack.push(nb);
            }
        });
    }
    added
}

/// The nodes of `level` reachable from `entry`.
pub(crate) fn reachable<A: Adjacency>(graph: &A, level: usize, n: usize, entry: u32) -> NodeSet {
    let mut reached = NodeSet::new(n);
    extend_reachable(graph, level, n, entry, &mut reached);
    reached
}

/// In-degree on `level` of every node `< n`, counting the links of the
/// nodes `sources` yields (ids past the end are skipped; a repeated link
/// counts each time).
pub(crate) fn in_degrees<A: Adjacency>(
    graph: &A,
    level: usize,
    n: usize,
    sources: impl Iterator<Item = u32>,
) -> Vec<u32> {
    let mut deg = vec![0u32; n];
    for s in sources {
        graph.for_each_neighbor(level, s, |nb| {
            if let Some(d) = deg.get_mut(nb as usize) {
                *d += 1;
            }
        });
    }
    deg
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lists(Vec<Vec<u32>>);

    impl Adjacency for Lists {
        fn for_each_neighbor(&self, _level: usize, node: u32, mut f: impl FnMut(u32)) {
            self.0[node as usize].iter().for_each(|&x| f(x));
        }
    }

    #[test]
    fn walks_cycles_skips_hostile_ids_and_finds_the_unreachable() {
        // 0 → 1 → 2 → 0, 2 → 99 (hostile), 3 → 0 (3 has no in-link), 4 alone.
        let g = Lists(vec![vec![1], vec![2], vec![0, 99, 2], vec![0], vec![]]);
        let r = reachable(&g, 0, 5, 0);
        let got: Vec<u32> = (0..5).filter(|&i| r.contains(i)).collect();
        assert_eq!(got, [0, 1, 2]);
        assert!(!r.contains(99));
        let deg = in_degrees(&g, 0, 5, 0..5);
        assert_eq!(deg, [2, 1, 2, 0, 0]);
        let mut r = r;
        assert_eq!(extend_reachable(&g, 0, 5, 3, &mut r), 1);
        assert_eq!(extend_reachable(&g, 0, 5, 3, &mut r), 0);
        assert!(r.contains(3) && !r.contains(4));
        assert!(!reachable(&g, 0, 5, 7).contains(7));
    }
}
