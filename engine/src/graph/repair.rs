//! The final passes of a build: every node is found by a search for its own
//! vector, and reachable from the entry point on every level it is on.
//!
//! Insertion alone guarantees neither. Back-link pruning may drop the last
//! in-link of a node (in any build), and before the fix in
//! `Links::write_own` (in `build.rs`) a race between two parallel insertions could
//! overwrite one. A node nothing links to is never returned by any search,
//! at any `ef`; a node linked only from far away is missed by searches that
//! start where its neighbours are. So the builder
//!
//! 1. searches for every node's own vector at [`FIND_EF`] (in parallel; the
//!    graph does not change meanwhile; over the int8 codes when the build
//!    has them, as a search of the written index does) and links each node
//!    the search misses from the closest nodes that search ended at (L2 and
//!    cosine, where a vector is its own nearest neighbour; not inner
//!    product); later passes search again only the nodes whose last search
//!    read a list a repair rewrote since;
//! 2. walks each level from the entry point and links every node the walk
//!    does not reach from its nearest reachable neighbours.
//!
//! Links go into free slots, or replace the farthest link of a full node
//! whose target has another in-link: degree bounds hold. The linking is
//! sequential and in node order, so the result is deterministic and a
//! seeded single-thread build stays byte-identical.

use super::build::{lock, Builder};
use super::links::LinkBlocks;
use super::reach::{extend_reachable, in_degrees, reachable, NodeSet};
use super::search::{beam, greedy, with_scratch, Adjacency, Cand};
use crate::distance::prefetch;
use crate::metric::Metric;

/// How many reachable neighbours a repaired node is linked from, when that
/// many have room or a link they can spare (two in-links make the node
/// findable from both sides of its neighbourhood, not just one).
const IN_LINKS: usize = 2;

/// Walks of one level before the last-resort scan takes over. Each walk
/// links every node the previous one found unreachable; a later walk only
/// finds nodes a displaced link cut off, which is rare.
const ROUNDS: usize = 8;

/// Full findability checks at most (each one search per node): the second
/// catches nodes whose searches the first one's repairs redirected.
const FULL_PASSES: usize = 3;

/// The beam width of the findability check: a node that a search for its
/// own vector at this width misses is linked from where that search ended.
const FIND_EF: usize = 32;

/// What a findability check of some nodes found: the misses with where
/// their searches ended, then per run of [`CHUNK`] nodes the greedy walks
/// of the others and the length of each node's walk (0 for nodes the walk
/// did not find), in node order.
type Checked = (Vec<(u32, Vec<Cand>)>, Vec<(Vec<u32>, Vec<u32>)>);

/// Per node, the level-0 lists read by the greedy walk of its last
/// findability check that found it (empty: the walk did not find it).
///
/// Kept as the check produced it, one part per run of [`CHUNK`] nodes (a
/// check of every node is one run per chunk, in node order), so that the
/// walks are never merged into a second copy: they are the repair's
/// largest buffer. Later checks of a few nodes override those nodes' walks.
#[derive(Default)]
struct Trail {
    /// Part `c` holds the walks of nodes `c·CHUNK ..`: offsets (one more
    /// than its nodes) into its paths.
    parts: Vec<(Vec<u32>, Vec<u32>)>,
    overrides: std::collections::HashMap<u32, Vec<u32>>,
}

/// Nodes per run of a findability check (and per part of a [`Trail`]).
const CHUNK: usize = 256;

impl Trail {
    fn path(&self, v: u32) -> &[u32] {
        if let Some(p) = self.overrides.get(&v) {
            return p;
        }
        let (c, i) = (v as usize / CHUNK, v as usize % CHUNK);
        let Some((offsets, paths)) = self.parts.get(c) else {
            return &[];
        };
        match (offsets.get(i), offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => paths.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Records the walks of a check of `checked` (ascending; `None`: every
    /// node), given as the check's parts (`paths`, `lens` per run of
    /// [`CHUNK`] nodes).
    fn update(&mut self, checked: Option<&[u32]>, parts: Vec<(Vec<u32>, Vec<u32>)>) {
        let Some(checked) = checked else {
            // Every node checked, in node order: the parts are the trail.
            self.overrides.clear();
            self.parts = parts
                .into_iter()
                .map(|(paths, lens)| {
                    let mut at = 0u32;
                    let offsets = std::iter::once(0)
                        .chain(lens.iter().map(|&l| {
                            at = at.saturating_add(l);
                            at
                        }))
                        .collect();
                    (offsets, paths)
                })
                .collect();
            return;
        };
        let mut nodes = checked.iter();
        for (paths, lens) in parts {
            let mut at = 0usize;
            for &len in &lens {
                let Some(&v) = nodes.next() else {
                    return;
                };
                let len = len as usize;
                self.overrides
                    .insert(v, paths.get(at..at + len).unwrap_or(&[]).to_vec());
                at += len;
            }
        }
    }
}

impl Builder<'_> {
    /// Links every level-0 node that a search for its own vector misses
    /// (in parallel when `parallel`), then every node unreachable from the
    /// entry point, level by level; returns the number of nodes linked on
    /// each level.
    pub(super) fn repair(&self, parallel: bool) -> Vec<usize> {
        let (entry, max_level) = *self.entry.lock().unwrap_or_else(|e| e.into_inner());
        // Under inner product a vector need not be its own nearest neighbour
        // (a longer one in the same direction scores higher), so a search
        // for it may rightly end elsewhere and "missed" means nothing: only
        // the reachability walk applies.
        let findable = self.input.metric != Metric::InnerProduct;
        let mut repaired = NodeSet::new(self.n);
        let mut displaced = Vec::new();
        let mut trail = Trail::default();
        if findable {
            self.repair_findability(
                None,
                parallel,
                entry,
                max_level,
                &mut repaired,
                Some(&mut trail),
            );
        }
        let mut linked: Vec<usize> = (0..=max_level)
            .map(|level| {
                let sink = if level == 0 {
                    Some(&mut displaced)
                } else {
                    None
                };
                self.repair_level(level, entry, max_level, &mut repaired, sink)
            })
            .collect();
        // Every added link also changes where other searches go: a search
        // that found its node before the repairs may end elsewhere after
        // them. So while a pass repaired anything, check every node again
        // (at most FULL_PASSES checks in all), then walk level 0 once more.
        if findable {
            //
            // A node need not be searched again when the level-0 greedy walk
            // that found it read only lists no repair has rewritten since
            // (and no upper-level list changed): the walk is then the same,
            // so it finds the node again. Only the other nodes are searched,
            // with the same outcome as searching them all.
            let mut last = repaired.len();
            for pass in 1..FULL_PASSES {
                if last == 0 && displaced.is_empty() {
                    break;
                }
                displaced.clear();
                let nodes = self.to_recheck(&trail);
                let mut again = NodeSet::new(self.n);
                let keep = (pass + 1 < FULL_PASSES).then_some(&mut trail);
                self.repair_findability(
                    nodes.as_deref(),
                    parallel,
                    entry,
                    max_level,
                    &mut again,
                    keep,
                );
                last = again.len();
                repaired.union(&again);
            }
            self.repair_level(0, entry, max_level, &mut repaired, None);
        }
        linked[0] = repaired.len();
        linked
    }

    /// Searches for the own vector of each of `nodes` at [`FIND_EF`]; a node
    /// the search misses (reachable, but not from where the descent leads:
    /// a pocket whose in-links were pruned in favour of closer nodes, or one
    /// that parallel insertions never linked to each other) is linked from
    /// the closest nodes the search ended at, so the same search then finds
    /// it. Repaired nodes and nodes whose link a repair displaced are
    /// checked again, for up to [`ROUNDS`] rounds.
    #[allow(clippy::too_many_arguments)]
    fn repair_findability(
        &self,
        nodes: Option<&[u32]>,
        parallel: bool,
        entry: u32,
        max_level: usize,
        repaired: &mut NodeSet,
        trail: Option<&mut Trail>,
    ) {
        // The outcome for `u`: `Ok(())` when the level-0 greedy walk finds
        // it (the nodes whose lists the walk read are left in `path`),
        // `Err(None)` when only the beam does, `Err(Some(found))` when
        // neither does.
        let check_one = |u: u32, path: &mut Vec<u32>| -> Result<(), Option<Vec<Cand>>> {
            // Most nodes a greedy walk on level 0 already reaches (a beam
            // from the same start expands that walk's path): only the rest
            // pay for the beam, which makes the check about 5x cheaper.
            //
            // The search runs as a search of the written index does: over
            // the int8 codes when the build has them (a quarter of the
            // memory traffic of float32), else over float32.
            let uv = self.vector(u);
            let t = self.traversal(uv);
            let mut start = Cand {
                d: t.dist(entry),
                id: entry,
            };
            for l in (1..=max_level).rev() {
                start = greedy(&self.links, l, start, |i| t.dist(i));
            }
            // `greedy` on level 0, recording the walk.
            let mut cur = start;
            loop {
                path.push(cur.id);
                let mut best = cur;
                self.links.for_each_neighbor(0, cur.id, |nb| {
                    let d = t.dist(nb);
                    if d < best.d {
                        best = Cand { d, id: nb };
                    }
                });
                if best.id == cur.id {
                    break;
                }
                cur = best;
            }
            if cur.id == u {
                return Ok(());
            }
            let mut found = with_scratch(|s| {
                beam(
                    &self.links,
                    0,
                    self.n,
                    &[start],
                    FIND_EF,
                    s,
                    |i| t.dist(i),
                    |i| t.prefetch(i),
                    |_| true,
                );
                s.found.clone()
            });
            if found.iter().any(|c| c.id == u) {
                return Err(None);
            }
            // Linked from the closest by float32, as the other repairs are.
            if t.on_codes() {
                for c in &mut found {
                    c.d = self.dist(uv, c.id);
                }
                found.sort_unstable();
            }
            Err(Some(found))
        };
        // Checks a run of nodes: their misses, and (for the trail) the
        // greedy path of each, empty when the greedy walk did not find it.
        let run = |chunk: &mut dyn ExactSizeIterator<Item = u32>| {
            let (mut misses, mut paths, mut lens) =
                (Vec::new(), Vec::new(), Vec::with_capacity(chunk.len()));
            let mut path = Vec::new();
            for u in chunk {
                path.clear();
                match check_one(u, &mut path) {
                    Ok(()) => {
                        paths.extend_from_slice(&path);
                        lens.push(path.len() as u32);
                    }
                    Err(miss) => {
                        lens.push(0);
                        if let Some(found) = miss {
                            misses.push((u, found));
                        }
                    }
                }
            }
            paths.shrink_to_fit();
            (misses, (paths, lens))
        };
        // `None`: every node (no list of them is made).
        let n = self.n;
        let check = |nodes: Option<&[u32]>| -> Checked {
            use rayon::prelude::*;
            let parts: Vec<_> = match (nodes, parallel) {
                (Some(nodes), true) => nodes
                    .par_chunks(CHUNK)
                    .map(|c| run(&mut c.iter().copied()))
                    .collect(),
                (Some(nodes), false) => nodes
                    .chunks(CHUNK)
                    .map(|c| run(&mut c.iter().copied()))
                    .collect(),
                (None, _) => {
                    let range = |c: usize| (c * CHUNK) as u32..((c + 1) * CHUNK).min(n) as u32;
                    if parallel {
                        (0..n.div_ceil(CHUNK))
                            .into_par_iter()
                            .map(|c| run(&mut range(c)))
                            .collect()
                    } else {
                        (0..n.div_ceil(CHUNK)).map(|c| run(&mut range(c))).collect()
                    }
                }
            };
            let mut misses = Vec::new();
            let walks = parts
                .into_iter()
                .map(|(m, w)| {
                    misses.extend(m);
                    w
                })
                .collect();
            (misses, walks)
        };
        let (mut misses, walks) = check(nodes);
        // Rewrites from here on are the ones the next pass must look at.
        self.take_rewritten();
        if let Some(trail) = trail {
            trail.update(nodes, walks);
        }
        let check = |nodes: &[u32]| check(Some(nodes)).0;
        for _ in 0..ROUNDS {
            if misses.is_empty() {
                break;
            }
            let mut indeg = in_degrees(&self.links, 0, self.n, 0..self.n as u32);
            let mut again = Vec::new();
            for (u, found) in misses {
                if self.link_from(0, u, &found, &mut indeg, Some(&mut again)) > 0 {
                    repaired.insert(u);
                }
                again.push(u);
            }
            again.sort_unstable();
            again.dedup();
            misses = check(&again);
        }
    }

    fn take_rewritten(&self) -> Vec<(u8, u32)> {
        std::mem::take(&mut *self.rewritten.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The nodes (ascending) whose findability check the lists rewritten
    /// since the last check could change: those whose greedy walk read a
    /// rewritten level-0 list, or that the walk did not find; every node
    /// when an upper-level list changed (the descent itself may differ).
    /// `None`: every node.
    fn to_recheck(&self, trail: &Trail) -> Option<Vec<u32>> {
        let rewritten = self.take_rewritten();
        if rewritten.iter().any(|&(level, _)| level > 0) {
            return None;
        }
        let mut changed = NodeSet::new(self.n);
        for &(_, node) in &rewritten {
            changed.insert(node);
        }
        Some(
            (0..self.n as u32)
                .filter(|&v| {
                    let path = trail.path(v);
                    path.is_empty() || path.iter().any(|&p| changed.contains(p))
                })
                .collect(),
        )
    }

    fn on_level(&self, level: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.n as u32).filter(move |&i| self.levels[i as usize] as usize >= level)
    }

    /// Links every node of `level` that no path from the entry point
    /// reaches; returns how many it linked. Level-0 repairs are added to
    /// `repaired`; nodes whose link was displaced go to `displaced`.
    fn repair_level(
        &self,
        level: usize,
        entry: u32,
        max_level: usize,
        repaired: &mut NodeSet,
        mut displaced: Option<&mut Vec<u32>>,
    ) -> usize {
        let mut linked = 0;
        for round in 0..=ROUNDS {
            let mut reached = reachable(&self.links, level, self.n, entry);
            let lost: Vec<u32> = self
                .on_level(level)
                .filter(|&i| !reached.contains(i))
                .collect();
            if lost.is_empty() {
                break;
            }
            let mut indeg = in_degrees(&self.links, level, self.n, self.on_level(level));
            for u in lost {
                if reached.contains(u) {
                    continue; // linked in through a node repaired before it
                }
                let near = if round < ROUNDS {
                    let ef = self.input.ef_construction;
                    self.search_for(u, level, entry, max_level, ef, |i| {
                        i != u && reached.contains(i)
                    })
                } else {
                    self.scan_reachable(u, level, &reached)
                };
                if self.link_from(level, u, &near, &mut indeg, displaced.as_deref_mut()) > 0 {
                    extend_reachable(&self.links, level, self.n, u, &mut reached);
                    linked += 1;
                    if level == 0 {
                        repaired.insert(u);
                    }
                }
            }
        }
        linked
    }

    /// The nodes of `level` closest to `u` that `accept` takes, closest
    /// first, found the way a search does (greedy descent from the entry,
    /// then a beam of width `ef`): what a search for `u` meets on its way.
    fn search_for(
        &self,
        u: u32,
        level: usize,
        entry: u32,
        max_level: usize,
        ef: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Cand> {
        let start = self.descend(u, level, entry, max_level);
        self.beam_from(u, level, start, ef, accept)
    }

    /// Greedy descent for `u`'s vector from the entry point down to the
    /// level above `level`.
    fn descend(&self, u: u32, level: usize, entry: u32, max_level: usize) -> Cand {
        let uv = self.vector(u);
        let mut cur = Cand {
            d: self.dist(uv, entry),
            id: entry,
        };
        for l in (level + 1..=max_level).rev() {
            cur = greedy(&self.links, l, cur, |i| self.dist(uv, i));
        }
        cur
    }

    fn beam_from(
        &self,
        u: u32,
        level: usize,
        start: Cand,
        ef: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Vec<Cand> {
        let uv = self.vector(u);
        with_scratch(|s| {
            beam(
                &self.links,
                level,
                self.n,
                &[start],
                ef,
                s,
                |i| self.dist(uv, i),
                |i| prefetch(self.vector(i)),
                accept,
            );
            s.found.clone()
        })
    }

    /// Every reachable node of `level` by distance to `u`: the last resort
    /// when links displaced by earlier repairs keep cutting nodes off.
    fn scan_reachable(&self, u: u32, level: usize, reached: &NodeSet) -> Vec<Cand> {
        let uv = self.vector(u);
        let mut all: Vec<Cand> = self
            .on_level(level)
            .filter(|&i| i != u && reached.contains(i))
            .map(|id| Cand {
                d: self.dist(uv, id),
                id,
            })
            .collect();
        all.sort_unstable();
        all
    }

    /// Links `u` from up to [`IN_LINKS`] of `near` (closest first, `u`
    /// itself skipped) that have a free slot; only if none has, from the
    /// closest one that can spare a link. Displacing links is the last
    /// resort: under inner product the closest nodes are the same few hubs
    /// for many repaired nodes, and displacing their links would cost
    /// everyone else's navigation. Returns the number of links added.
    fn link_from(
        &self,
        level: usize,
        u: u32,
        near: &[Cand],
        indeg: &mut [u32],
        mut displaced: Option<&mut Vec<u32>>,
    ) -> usize {
        let mut links = 0;
        for displace in [false, true] {
            for c in near.iter().filter(|c| c.id != u) {
                if links == IN_LINKS || (displace && links > 0) {
                    return links;
                }
                let sink = if displace {
                    displaced.as_deref_mut()
                } else {
                    None
                };
                if self.link_into(level, c.id, u, indeg, sink) {
                    links += 1;
                }
            }
        }
        links
    }

    /// Adds the link `c → u` on `level`: into a free slot, or (given a
    /// `displaced` list, which receives the node that lost the link) in
    /// place of `c`'s farthest neighbour that has another in-link (so no
    /// node loses its only one). False if `c` already links `u` or has no
    /// slot to give.
    fn link_into(
        &self,
        level: usize,
        c: u32,
        u: u32,
        indeg: &mut [u32],
        displaced: Option<&mut Vec<u32>>,
    ) -> bool {
        let _g = lock(self.links.node_lock(c));
        let mut list = Vec::with_capacity(self.cap(level));
        self.links.read(level, c, &mut list);
        if list.contains(&u) {
            return false;
        }
        if list.len() < self.cap(level) {
            list.push(u);
        } else if let Some(displaced) = displaced {
            let cv = self.vector(c);
            let victim = list
                .iter()
                .enumerate()
                .filter(|(_, &x)| indeg[x as usize] > 1)
                .map(|(slot, &x)| (self.dist(cv, x), slot))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let Some((_, slot)) = victim else {
                return false;
            };
            indeg[list[slot] as usize] -= 1;
            displaced.push(list[slot]);
            list[slot] = u;
        } else {
            return false;
        }
        indeg[u as usize] += 1;
        self.links.write(level, c, &list);
        self.rewritten
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((level as u8, c));
        true
    }
}
