//! The searchable state of a live index: one generation, the bitset of its
//! deleted ordinals, and the logged inserts in an in-memory graph.
//!
//! [`State`] is the one copy that operations change (the writer's, or a
//! reader's replay, under a mutex that searches never take); [`View`] is
//! what searches use, a snapshot that [`State::publish`] makes after every
//! change (a few `Arc` clones) and that no later change alters.

use super::deleted::DeletedBits;
use super::{check_bound, log_header, missing_log, OpenGeneration};
use crate::dir::open::paths;
use crate::distance::padded_dim;
use crate::error::{Error, FileKind, Result};
use crate::format::manifest::Manifest;
use crate::generation::OpenOptions;
use crate::graph::overlay::{Overlay, SCAN_BELOW};
use crate::log::replay::{replay_file, replay_file_after, ReplayReport, Replayed};
use crate::log::Op;
use crate::metric::prepare_vector;
use crate::params::{Neighbor, SearchParams};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// What one search sees: a generation, its deletions, and logged inserts.
#[derive(Clone)]
pub(super) struct View {
    pub(super) gen: Arc<OpenGeneration>,
    /// The generation's ordinals deleted or superseded.
    pub(super) deleted: DeletedBits,
    pub(super) deleted_count: usize,
    /// Logged inserts: a graph over their prepared (padded, normalised)
    /// rows.
    pub(super) overlay: Overlay,
    /// How much of the log this view reflects.
    pub(super) log: ReplayReport,
    /// Unique per published view (the key of a resolved filter).
    pub(super) stamp: u64,
}

/// The state that operations change, and publish as [`View`]s.
pub(super) struct State {
    pub(super) view: View,
    /// The overlay node of each live logged id.
    pub(super) slot_of: HashMap<u64, u32>,
    /// A refresh failed part-way: the next one reloads from scratch.
    pub(super) needs_reload: bool,
}

impl State {
    pub(super) fn new(gen: Arc<OpenGeneration>) -> State {
        let index = &gen.index;
        let params = index.build_params();
        let overlay = Overlay::new(
            padded_dim(index.dim()),
            index.metric(),
            params.m,
            params.ef_construction,
            params.seed.unwrap_or(0),
            match index.trained_quantizer() {
                crate::quant::trained::Trained::Int8(q) => Some(q),
                _ => None,
            },
            index.attach_point(),
        );
        State {
            view: View {
                gen,
                // Grown by `remove` as ordinals are deleted: a file's claimed
                // count is not trusted to size anything at open.
                deleted: DeletedBits::default(),
                deleted_count: 0,
                overlay,
                log: ReplayReport::default(),
                stamp: crate::filter::UNSTAMPED,
            },
            slot_of: HashMap::new(),
            needs_reload: false,
        }
    }

    /// Opens the generation `manifest` names and replays its log (once:
    /// [`Index::load`] retries across a switch); with `link`, links every
    /// sealed replayed row before returning (else a linker does).
    pub(super) fn load(
        dir: &Path,
        manifest: &Manifest,
        options: &OpenOptions,
        link: bool,
    ) -> Result<State> {
        let mut state = State::new(OpenGeneration::open(dir, manifest, options)?);
        let path = paths(dir, manifest).log;
        match state.replay(&path)? {
            Some(report) => check_bound(manifest, &path, &report)?,
            None => missing_log(manifest, &path)?,
        }
        if link {
            state.view.gen.index.link_overlay_all(&state.view.overlay);
        }
        Ok(state)
    }

    /// A snapshot of this state for searches; changes from now on are
    /// not seen by it.
    pub(super) fn publish(&mut self) -> Arc<View> {
        let mut view = self.view.clone();
        view.overlay = self.view.overlay.publish();
        view.stamp = crate::filter::next_stamp();
        Arc::new(view)
    }

    pub(super) fn gen(&self) -> &Arc<OpenGeneration> {
        &self.view.gen
    }

    pub(super) fn padded(&self) -> usize {
        self.view.padded()
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.slot_of.contains_key(&id) || self.view.live_ordinal(id).is_some()
    }

    /// Checks that `op` can apply (ids exist or not, vector valid) and
    /// returns its prepared vector, without changing anything.
    pub(super) fn check(&self, op: &Op) -> Result<Option<Vec<f32>>> {
        let prepare = |v: &[f32]| {
            let mut out = vec![0f32; self.padded()];
            prepare_vector(
                self.view.gen.index.metric(),
                self.view.gen.index.dim(),
                v,
                None,
                &mut out,
            )
            .map(|()| out)
        };
        if op.labels().len() > crate::limits::MAX_LABELS_PER_VECTOR
            || !op.labels().windows(2).all(|w| w[0] < w[1])
        {
            return Err(Error::InvalidParameter {
                name: "labels",
                reason: format!(
                    "{} labels, which must ascend without duplicates, at most {}",
                    op.labels().len(),
                    crate::limits::MAX_LABELS_PER_VECTOR
                ),
            });
        }
        match op {
            Op::Insert { id, vector, .. } => {
                if self.contains(*id) {
                    return Err(Error::IdExists(*id));
                }
                prepare(vector).map(Some)
            }
            Op::Delete { id } => {
                if !self.contains(*id) {
                    return Err(Error::UnknownId(*id));
                }
                Ok(None)
            }
            Op::Upsert { vector, .. } => prepare(vector).map(Some),
        }
    }

    /// Applies a checked operation. An inserted row is pushed into the
    /// overlay (searches scan it) but not linked: the linker
    /// (`linker.rs`) links it once its chunk is sealed.
    pub(super) fn apply(&mut self, op: &Op, prepared: Option<Vec<f32>>) {
        let id = op.id();
        if matches!(op, Op::Delete { .. } | Op::Upsert { .. }) {
            self.remove(id);
        }
        if let Some(row) = prepared {
            let node = self.view.overlay.push_labelled(id, &row, op.labels());
            self.slot_of.insert(id, node);
        }
    }

    pub(super) fn remove(&mut self, id: u64) {
        if let Some(node) = self.slot_of.remove(&id) {
            self.view.overlay.kill(node);
        } else if let Some(o) = self.view.live_ordinal(id) {
            if self.view.deleted.insert(o) {
                self.view.deleted_count += 1;
            }
        }
    }

    /// Applies one replayed operation (the record at `offset`): one that
    /// is not valid at its point of the log is corruption (L10).
    pub(super) fn replay_op(&mut self, op: &Op, offset: u64) -> Result<()> {
        let prepared = self.check(op).map_err(|e| {
            Error::corrupt(
                FileKind::Log,
                format!("record at offset {offset}"),
                "an operation valid at its point in the log",
                e,
            )
        })?;
        self.apply(op, prepared);
        Ok(())
    }

    /// Replays the generation's whole log at `path` onto this state
    /// (`None`: there is no log).
    pub(super) fn replay(&mut self, path: &Path) -> Result<Option<ReplayReport>> {
        let header = log_header(&self.view.gen);
        let report = replay_file(path, &header, |_, op, offset| self.replay_op(&op, offset))?;
        if let Some(report) = report {
            self.view.log = report;
        }
        Ok(report)
    }

    /// Replays what follows the records this state has replayed so far.
    pub(super) fn replay_more(&mut self, path: &Path) -> Result<Replayed> {
        let (header, after) = (log_header(&self.view.gen), self.view.log);
        let replayed = replay_file_after(path, &header, &after, |_, op, offset| {
            self.replay_op(&op, offset)
        })?;
        if let Replayed::Applied(report) = replayed {
            self.view.log = report;
        }
        Ok(replayed)
    }
}

impl View {
    pub(super) fn padded(&self) -> usize {
        padded_dim(self.gen.index.dim())
    }

    #[inline]
    pub(super) fn is_deleted(&self, ord: u32) -> bool {
        self.deleted.contains(ord)
    }

    pub(super) fn live_ordinal(&self, id: u64) -> Option<u32> {
        self.gen.index.ordinal(id).filter(|&o| !self.is_deleted(o))
    }

    pub(super) fn len(&self) -> usize {
        self.gen.index.len() - self.deleted_count + self.overlay.live()
    }

    pub(super) fn search(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        exact: bool,
    ) -> Result<Vec<Neighbor>> {
        let index = &self.gen.index;
        let params = &index.tuned(k, params)?;
        let accept = |o: u32| !self.is_deleted(o);
        if let (Some(filter), false) = (params.filter, exact) {
            let allowed = index.resolve(filter, self.stamp, |o| self.is_deleted(o))?;
            return self.search_filtered(query, k, params, filter, &allowed);
        }
        if self.attached_search(exact) {
            return index.search_attached(query, k, params, accept, &self.overlay);
        }
        let base = match (exact, self.deleted_count) {
            (false, 0) => index.search(query, k, params)?,
            (false, _) => index.search_accepting(query, k, params, accept)?,
            (true, 0) => index.exact_search(query, k)?,
            (true, _) => index.exact_search_accepting(query, k, accept)?,
        };
        self.merge_logged(query, k, params.ef_for(k), exact, base)
    }

    /// [`State::search`] (approximate) of every row of `data`: the
    /// generation's pipelined batch search, each answer merged with the
    /// logged inserts.
    pub(super) fn search_batch(
        &self,
        data: &[f32],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Neighbor>>> {
        use rayon::prelude::*;
        let index = &self.gen.index;
        let params = &index.tuned(k, params)?;
        let accept = |o: u32| !self.is_deleted(o);
        if let Some(filter) = params.filter {
            let allowed = index.resolve(filter, self.stamp, |o| self.is_deleted(o))?;
            return data
                .par_chunks_exact(index.dim())
                .map(|q| self.search_filtered(q, k, params, filter, &allowed))
                .collect();
        }
        if self.attached_search(false) {
            return data
                .par_chunks_exact(index.dim())
                .map(|q| index.search_attached(q, k, params, accept, &self.overlay))
                .collect();
        }
        let base = if self.deleted_count == 0 {
            index.search_batch_accepting(data, k, params, &|_| true)?
        } else {
            index.search_batch_accepting(data, k, params, &accept)?
        };
        if self.overlay.live() == 0 {
            return Ok(base);
        }
        data.par_chunks_exact(index.dim())
            .zip(base)
            .map(|(q, b)| self.merge_logged(q, k, params.ef_for(k), false, b))
            .collect()
    }

    /// A filtered search: the generation's allowed live ordinals
    /// (`allowed`, resolved from `filter`) planned as [`crate::filter`]
    /// describes, and the logged inserts the filter allows, scanned exactly
    /// (their rows are in memory), merged by exact distance.
    fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        filter: &crate::Filter,
        allowed: &crate::filter::OrdinalSet,
    ) -> Result<Vec<Neighbor>> {
        let index = &self.gen.index;
        let ov = &self.overlay;
        let logged_ok = |node: u32| filter.allows(ov.id(node), ov.labels(node));
        if self.attached_search(false) {
            let tried = match self.search_filtered_union(query, k, params, allowed, &logged_ok)? {
                Union::Found(found) => return Ok(found),
                Union::Few => false,
                Union::GaveUp => true,
            };
            // Few matches, or the beam gave up: both sides exactly.
            let exact = SearchParams {
                exact_below: Some(usize::MAX),
                ..*params
            };
            let base = index.search_filtered(query, k, &exact, allowed)?;
            if tried {
                // Counted once, as the graph finished exactly.
                crate::graph::search::with_scratch(|s| {
                    s.counts.filtered_exact -= 1;
                    s.counts.filtered_fallback += 1;
                });
            }
            return self.merge_with(query, k, base, |q| ov.scan_accepting(q, k, logged_ok));
        }
        let base = index.search_filtered(query, k, params, allowed)?;
        self.merge_with(query, k, base, |q| ov.scan_accepting(q, k, logged_ok))
    }

    /// A filtered search of a large attached overlay and its generation
    /// as one graph: one beam over the union, returning only the
    /// generation's `allowed` ordinals and the logged nodes `logged_ok`
    /// accepts, with a visit limit of [`VISIT_FACTOR`](crate::filter::VISIT_FACTOR)
    /// distances per (estimated) match. [`Union::Few`] when the matches
    /// are too few for a graph search (estimated as the generation's share
    /// of matches applied to the live logged nodes, so the overlay is
    /// never scanned to count them), [`Union::GaveUp`] when the beam hits
    /// its limit or finds fewer than `k`: the caller then scans both
    /// exactly, so the answer still holds `min(k, matches)`.
    fn search_filtered_union(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        allowed: &crate::filter::OrdinalSet,
        logged_ok: &impl Fn(u32) -> bool,
    ) -> Result<Union> {
        use crate::filter::{DEFAULT_EXACT_BELOW, VISIT_FACTOR};
        use crate::graph::search::with_scratch;
        let index = &self.gen.index;
        let gen_live = (index.len() - self.deleted_count).max(1);
        let share = allowed.len() as f64 / gen_live as f64;
        let matches = allowed.len() + (share * self.overlay.live() as f64) as usize;
        let exact_below = params.exact_below.unwrap_or(DEFAULT_EXACT_BELOW).max(k);
        if matches <= exact_below {
            return Ok(Union::Few);
        }
        let limit = (matches as u64).saturating_mul(VISIT_FACTOR);
        let found = index.search_attached_limited(
            query,
            k,
            params,
            |o| allowed.contains(o),
            logged_ok,
            &self.overlay,
            Some(limit),
        )?;
        Ok(match found {
            Some(found) if found.len() >= k => {
                with_scratch(|s| s.counts.filtered_graph += 1);
                Union::Found(found)
            }
            _ => Union::GaveUp,
        })
    }

    /// Whether an approximate search runs over the union of the generation
    /// and the overlay attached to it (`graph/overlay/attach.rs`): when the
    /// overlay is attached and too large for its exact scan to be as fast
    /// ([`SCAN_BELOW`]: below, the generation's answer is merged with the
    /// scan, as for an overlay of its own).
    fn attached_search(&self, exact: bool) -> bool {
        !exact
            && self.overlay.is_attached()
            && self.overlay.live() > 0
            && self.overlay.nodes() >= SCAN_BELOW
    }

    /// `base` (answers from the generation) merged with the `k` nearest
    /// logged inserts to `query` (by the overlay's beam of width `ef`, or
    /// exactly), both by exact float32 distance.
    ///
    /// Each graph gets a beam of the full `ef`. One beam of width `ef` over
    /// the union of both graphs (entered from each one's descent, both on
    /// the generation's int8 codes) was measured and is worse: on
    /// npm-minilm (25k built + 25k logged, one thread) it reached recall@10
    /// 0.57 at ef 32 and 0.63 at ef 48, because the first graph's
    /// neighbourhood fills the beam and the other's entry never gets
    /// expanded; descending level 0 greedily in both first gave 0.74 and
    /// 0.79, and seeding it with a beam of 16 in each gave 0.90 at ef 16 and
    /// 0.94 at ef 64, no better than two beams of 16 (0.90) or 32 (0.95). A
    /// shared budget needs links between the graphs, not a shared beam:
    /// that is the attached overlay (`graph/overlay/attach.rs`), used
    /// where the generation's codes allow it ([`View::attached_search`]);
    /// this merge is for the others (no codes, product or binary codes,
    /// inner product) and for small overlays.
    pub(super) fn merge_logged(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        exact: bool,
        base: Vec<Neighbor>,
    ) -> Result<Vec<Neighbor>> {
        self.merge_with(query, k, base, |q| self.overlay.search(q, k, ef, exact))
    }

    /// `base` merged with the logged inserts `logged` finds for the
    /// prepared query, by exact distance, the `k` closest.
    pub(super) fn merge_with(
        &self,
        query: &[f32],
        k: usize,
        mut base: Vec<Neighbor>,
        logged: impl FnOnce(&[f32]) -> Vec<crate::graph::search::Cand>,
    ) -> Result<Vec<Neighbor>> {
        let index = &self.gen.index;
        if self.overlay.live() == 0 {
            return Ok(base);
        }
        let mut q = vec![0f32; self.padded()];
        prepare_vector(index.metric(), index.dim(), query, None, &mut q)?;
        let logged = logged(&q);
        base.extend(logged.into_iter().map(|c| Neighbor {
            id: self.overlay.id(c.id),
            distance: c.d,
        }));
        base.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        base.truncate(k);
        Ok(base)
    }
}

/// What a filtered search of the union of an attached overlay and its
/// generation came to.
enum Union {
    Found(Vec<Neighbor>),
    /// Too few matches for a graph search.
    Few,
    /// The beam hit its visit limit or found fewer than `k`.
    GaveUp,
}
