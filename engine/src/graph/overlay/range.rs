//! Range (radius) search of the logged inserts.
//!
//! Their rows are in memory and exact, so they are scanned: one float32
//! distance per logged row, which compaction keeps few (below
//! [`super::SCAN_BELOW`] rows the overlay's own `k`-nearest searches scan
//! as well). The generation's part of a range search walks its own graph
//! (`graph/range.rs`), which an attached overlay leaves intact.

use super::Overlay;
use crate::graph::search::Cand;
use std::collections::BinaryHeap;

impl Overlay {
    /// The live nodes `accept` accepts within `radius` of the prepared
    /// query `q` (exact distances), nearest first, at most `cap` of them;
    /// `true` if more were within it.
    pub(crate) fn scan_within(
        &self,
        q: &[f32],
        radius: f32,
        cap: usize,
        accept: impl Fn(u32) -> bool,
    ) -> (Vec<Cand>, bool) {
        let mut top: BinaryHeap<Cand> = BinaryHeap::new();
        let mut more = false;
        if self.live == 0 {
            return (Vec::new(), false);
        }
        for node in 0..self.nodes() as u32 {
            if self.is_dead(node) || !accept(node) {
                continue;
            }
            let c = Cand {
                d: self.dist(q, node),
                id: node,
            };
            if c.d > radius {
                continue;
            }
            if top.len() < cap {
                top.push(c);
            } else {
                more = true;
                if top.peek().is_some_and(|t| c < *t) {
                    top.pop();
                    top.push(c);
                }
            }
        }
        (top.into_sorted_vec(), more)
    }
}
