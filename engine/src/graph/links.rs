//! Link lists being built: blocks of atomics, one fixed-stride block
//! `[count, id × cap]` per node and level, written under the node's mutex
//! (count published last with `Release`) and read optimistically (count
//! loaded with `Acquire`, never locking), as in hnswlib. Every stored id is
//! a valid node, so a reader that races a writer sees a slightly stale but
//! valid list.
//!
//! [`LinkBlocks`] is where the blocks are and what the insertion does with
//! them (merge its own list, add back-links with pruning); [`Links`] keeps
//! them in flat arrays for the generation's build, the log overlay in its
//! chunks (`overlay.rs`).

use super::build::lock;
use super::search::{Adjacency, Cand};
use super::select::select_diverse;
use crate::distance::prefetch;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Where the link blocks of a graph under construction live, and the
/// insertion's updates of them.
pub(super) trait LinkBlocks {
    /// Link capacity of a node on `level`.
    fn cap(&self, level: usize) -> usize;

    /// The block `[count, id × cap(level)]` of `node` on `level`.
    fn block(&self, level: usize, node: u32) -> &[AtomicU32];

    /// The mutex held to write `node`'s blocks.
    fn node_lock(&self, node: u32) -> &Mutex<()>;

    /// `node`'s list on `level` into `out`.
    fn read(&self, level: usize, node: u32, out: &mut Vec<u32>) {
        let b = self.block(level, node);
        let count = (b[0].load(Ordering::Acquire) as usize).min(b.len() - 1);
        out.clear();
        out.extend(b[1..=count].iter().map(|x| x.load(Ordering::Relaxed)));
    }

    /// Replaces `node`'s list on `level`. Caller holds the node's lock.
    fn write(&self, level: usize, node: u32, ids: &[u32]) {
        let b = self.block(level, node);
        let count = ids.len().min(b.len() - 1);
        for (slot, id) in b[1..].iter().zip(&ids[..count]) {
            slot.store(*id, Ordering::Relaxed);
        }
        b[0].store(count as u32, Ordering::Release);
    }

    /// Writes `q`'s own list on `level`. A concurrent insertion can reach
    /// `q` before this (through `q`'s links on the level above, which make
    /// `q` the entry of its beam on this level) and add its back-link to
    /// `q`'s still empty list; overwriting that list would leave the other
    /// node without the in-link its insertion counted on (the cause of
    /// unreachable nodes in parallel builds). So links already present are
    /// merged with `chosen`, pruned by the diversity heuristic when over
    /// capacity. `between` is the float32 distance of two nodes.
    fn write_own(
        &self,
        level: usize,
        q: u32,
        chosen: &[u32],
        scratch: &mut Vec<u32>,
        between: impl Fn(u32, u32) -> f32,
    ) {
        let _g = lock(self.node_lock(q));
        self.read(level, q, scratch);
        scratch.retain(|x| *x != q && !chosen.contains(x));
        if scratch.is_empty() {
            self.write(level, q, chosen);
            return;
        }
        let cap = self.cap(level);
        if chosen.len() + scratch.len() <= cap {
            scratch.extend_from_slice(chosen);
            self.write(level, q, scratch);
            return;
        }
        let mut cands: Vec<Cand> = chosen
            .iter()
            .chain(scratch.iter())
            .map(|&id| Cand {
                d: between(q, id),
                id,
            })
            .collect();
        cands.sort_unstable();
        let mut kept = Vec::with_capacity(cap);
        select_diverse(&cands, cap, &mut kept, &between);
        self.write(level, q, &kept);
    }

    /// Adds the back-link `nb → q` on `level` for every `nb` of `chosen`
    /// (each under its node's lock): into a free slot, or by re-selecting
    /// `nb`'s list with the diversity heuristic when it is full.
    fn link_back(&self, level: usize, q: u32, chosen: &[u32], between: impl Fn(u32, u32) -> f32) {
        let cap = self.cap(level);
        let mut theirs = Vec::with_capacity(cap + 1);
        let mut cands = Vec::with_capacity(cap + 1);
        let mut kept = Vec::with_capacity(cap);
        for &nb in chosen {
            let _g = lock(self.node_lock(nb));
            self.read(level, nb, &mut theirs);
            if theirs.contains(&q) {
                continue;
            }
            if theirs.len() < cap {
                theirs.push(q);
                self.write(level, nb, &theirs);
            } else {
                cands.clear();
                cands.extend(theirs.iter().map(|&id| Cand {
                    d: between(nb, id),
                    id,
                }));
                cands.push(Cand {
                    d: between(nb, q),
                    id: q,
                });
                cands.sort_unstable();
                select_diverse(&cands, cap, &mut kept, &between);
                self.write(level, nb, &kept);
            }
        }
    }
}

/// The link blocks of the generation's build: flat arrays for all nodes,
/// allocated once (level 0 at a fixed stride; the upper levels of node
/// `i` from `upper_start[i]`), and one mutex per node.
pub(super) struct Links {
    pub(super) m: usize,
    pub(super) m0: usize,
    pub(super) l0: Vec<AtomicU32>,
    upper_start: Vec<u32>,
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
}

impl Links {
    /// Empty lists for nodes of these levels.
    pub(super) fn new(m: usize, m0: usize, levels: &[u8]) -> Links {
        let mut upper_start = Vec::with_capacity(levels.len());
        let mut total_upper = 0u32;
        for &l in levels {
            upper_start.push(total_upper);
            total_upper += l as u32;
        }
        let zeros = |len: usize| (0..len).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        Links {
            m,
            m0,
            l0: zeros(levels.len() * (1 + m0)),
            upper_start,
            upper: zeros(total_upper as usize * (1 + m)),
            locks: (0..levels.len()).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl LinkBlocks for Links {
    fn cap(&self, level: usize) -> usize {
        if level == 0 {
            self.m0
        } else {
            self.m
        }
    }

    #[inline]
    fn block(&self, level: usize, node: u32) -> &[AtomicU32] {
        let node = node as usize;
        if level == 0 {
            let s = 1 + self.m0;
            &self.l0[node * s..(node + 1) * s]
        } else {
            let s = 1 + self.m;
            let b = self.upper_start[node] as usize + level - 1;
            &self.upper[b * s..(b + 1) * s]
        }
    }

    fn node_lock(&self, node: u32) -> &Mutex<()> {
        &self.locks[node as usize]
    }
}

/// Calls `f` with each id of a block (the count clamped to the block).
#[inline]
pub(super) fn for_each_in(block: &[AtomicU32], mut f: impl FnMut(u32)) {
    let count = (block[0].load(Ordering::Acquire) as usize).min(block.len() - 1);
    for x in &block[1..=count] {
        f(x.load(Ordering::Relaxed));
    }
}

impl Adjacency for Links {
    #[inline]
    fn for_each_neighbor(&self, level: usize, node: u32, f: impl FnMut(u32)) {
        for_each_in(self.block(level, node), f)
    }

    #[inline]
    fn prefetch_links(&self, level: usize, node: u32) {
        prefetch(self.block(level, node));
    }
}
