//! A visited set that resets in O(1) by bumping an epoch, sized by what a
//! search reaches rather than by what a file claims.
//!
//! Up to [`DENSE_MAX`] nodes it is a dense bitset (one bit a node, allocated
//! once per thread and reused: 62.5 KiB at 500k nodes, so it stays in L2
//! where an array of two-byte epoch marks, 1 MiB, did not), cleared after
//! each search through the list of words the search set. Above that, a file's claimed
//! node count is not trusted to size anything: a crafted file of a few
//! kilobytes (sparse, or with holes) can claim hundreds of millions of
//! vectors, and a dense array would cost gigabytes per search thread. Such
//! searches use an open-addressing hash set that grows with the nodes
//! actually visited, so memory is proportional to the work done.

/// Largest node count served by the dense bitset (2 MiB of bits).
pub(crate) const DENSE_MAX: usize = 1 << 24;

/// Marks nodes seen by one search; reused across searches.
#[derive(Default)]
pub(crate) struct Visited {
    bits: Vec<u64>,
    /// Indices of the words of `bits` this search made non-zero.
    touched: Vec<u32>,
    /// Nodes of the current search: ids at or above it are never followed.
    n: usize,
    dense: bool,
    sparse: Sparse,
}

impl Visited {
    /// Starts a new search over `n` nodes.
    pub(crate) fn reset(&mut self, n: usize) {
        self.n = n;
        self.dense = n <= DENSE_MAX;
        if !self.dense {
            self.sparse.clear();
            return;
        }
        for w in self.touched.drain(..) {
            self.bits[w as usize] = 0;
        }
        let words = n.div_ceil(64);
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
    }

    /// Marks `node`; true if it was not yet marked in this search.
    /// Nodes at or beyond the size given to `reset` count as already
    /// visited, so a hostile neighbour id is never followed.
    #[inline]
    pub(crate) fn insert(&mut self, node: u32) -> bool {
        if node as usize >= self.n {
            return false;
        }
        if !self.dense {
            return self.sparse.insert(node);
        }
        let w = node as usize / 64;
        let bit = 1u64 << (node % 64);
        match self.bits.get_mut(w) {
            Some(word) if *word & bit == 0 => {
                if *word == 0 {
                    self.touched.push(w as u32);
                }
                *word |= bit;
                true
            }
            _ => false,
        }
    }

    /// Bytes held by the set (for tests).
    #[cfg(test)]
    fn footprint(&self) -> usize {
        8 * self.bits.capacity() + 4 * (self.touched.capacity() + self.sparse.keys.capacity())
    }
}

/// Open addressing with linear probing over `u32` keys; `EMPTY` marks a
/// free slot (node ids are below the count, itself below `u32::MAX`).
#[derive(Default)]
struct Sparse {
    keys: Vec<u32>,
    len: usize,
}

const EMPTY: u32 = u32::MAX;

impl Sparse {
    fn clear(&mut self) {
        if self.len > 0 {
            self.keys.fill(EMPTY);
            self.len = 0;
        }
    }

    #[inline]
    fn slot(key: u32, mask: usize) -> usize {
        (key.wrapping_mul(0x9E37_79B1) as usize) & mask
    }

    fn insert(&mut self, key: u32) -> bool {
        if key == EMPTY {
            return false;
        }
        if 2 * (self.len + 1) > self.keys.len() {
            self.grow();
        }
        let mask = self.keys.len() - 1;
        let mut i = Self::slot(key, mask);
        loop {
            match self.keys[i] {
                EMPTY => {
                    self.keys[i] = key;
                    self.len += 1;
                    return true;
                }
                k if k == key => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let cap = (self.keys.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.keys, vec![EMPTY; cap]);
        let mask = cap - 1;
        for k in old.into_iter().filter(|&k| k != EMPTY) {
            let mut i = Self::slot(k, mask);
            while self.keys[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.keys[i] = k;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_once_per_epoch_and_rejects_out_of_range() {
        let mut v = Visited::default();
        v.reset(4);
        assert!(v.insert(2));
        assert!(!v.insert(2));
        assert!(!v.insert(9));
        v.reset(4);
        assert!(v.insert(2));
        for _ in 0..70_000 {
            v.reset(4);
        }
        assert!(v.insert(3));
        // A smaller search after a larger one: ids past its n are refused.
        v.reset(100);
        v.reset(4);
        assert!(!v.insert(50));
    }

    #[test]
    fn huge_claimed_counts_cost_only_what_is_visited() {
        let n = 400_000_000;
        let mut v = Visited::default();
        for round in 0..3 {
            v.reset(n);
            for i in 0..10_000u32 {
                let node = i.wrapping_mul(40_009) % n as u32;
                assert!(v.insert(node), "round {round}, node {node}");
                assert!(!v.insert(node));
            }
            assert!(!v.insert(n as u32));
            assert!(!v.insert(u32::MAX));
        }
        assert!(v.footprint() < 1 << 20, "{} bytes", v.footprint());
    }
}
