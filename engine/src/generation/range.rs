//! Range (radius) search of one generation: every vector within a radius,
//! nearest first, at most [`SearchParams::max_results`].
//!
//! The traversal is `graph/range.rs`'s (a beam, then widened until its
//! frontier is past the threshold) over the codes; the threshold is the
//! radius plus a margin for the codes' error, measured per query on the
//! beam's own candidates; the candidates within it are rescored in float32
//! and those within the radius kept (see [`Generation::search_range`]).

use super::{give_buffers, take_buffers, Generation};
use crate::distance::prefetch;
use crate::error::{Error, Result};
use crate::filter::{OrdinalSet, DEFAULT_EXACT_BELOW, VISIT_FACTOR};
use crate::format::layout::GraphView;
use crate::graph::range::{range_beam, range_widen, with_range_buffers, RangeBuffers, RangeEnd};
use crate::graph::search::{greedy, with_scratch, Cand, Counting, Scratch};
use crate::metric::{prepare_vector, Metric};
use crate::params::{RangeHits, SearchParams};
use crate::quant::scorer::{AnyScorer, Scorer, ScorerTask};
use std::collections::BinaryHeap;

/// With rescoring, a range search keeps up to this many times
/// [`SearchParams::max_results`] candidates (and at least `max_results +
/// ef`) within the radius plus the codes' margin before the walk narrows
/// to the nearest of them: a candidate's code distance may place it inside
/// the threshold while its exact distance is outside the radius, so the
/// nearest `max_results` by exact distance need some more candidates.
pub(crate) const KEEP_FACTOR: usize = 2;

/// The codes' margin is this many times the largest difference between
/// code and exact distance seen on the first beam's candidates (see
/// [`Generation::search_range`]).
pub(crate) const MARGIN_FACTOR: f32 = 1.0;

/// Checks a range search's radius and cap for `metric`; returns the cap.
pub(crate) fn check_range(metric: Metric, radius: f32, max_results: usize) -> Result<usize> {
    if !radius.is_finite() {
        return Err(Error::InvalidParameter {
            name: "radius",
            reason: format!("{radius} is not a finite number: give a finite distance"),
        });
    }
    if radius < 0.0 && metric != Metric::InnerProduct {
        return Err(Error::InvalidParameter {
            name: "radius",
            reason: format!(
                "{radius} is negative, and {} distances never are: give a radius of at least 0",
                metric.name()
            ),
        });
    }
    if max_results == 0 {
        return Err(Error::InvalidParameter {
            name: "max_results",
            reason: "must be at least 1 (default strata::DEFAULT_MAX_RESULTS)".into(),
        });
    }
    Ok(max_results)
}

/// [`check_range`] for a range search's `params`, which must not ask for
/// a recall target (a range search's answer is the ball, not a top k).
pub(crate) fn check_range_params(
    metric: Metric,
    radius: f32,
    params: &SearchParams,
) -> Result<usize> {
    if params.recall.is_some() {
        return Err(Error::InvalidParameter {
            name: "recall",
            reason: "a recall target (SearchParams::for_recall) applies to k-nearest searches, not to range searches".into(),
        });
    }
    check_range(metric, radius, params.max_results)
}

/// `found` (closest first or not) as range hits: those within `radius`,
/// sorted, at most `cap`; truncated if there were more or the walk had
/// dropped some (`overflowed`).
fn finish(found: &mut Vec<Cand>, radius: f32, cap: usize, overflowed: bool) -> bool {
    found.retain(|c| c.d <= radius);
    found.sort_unstable();
    let truncated = overflowed || found.len() > cap;
    found.truncate(cap);
    truncated
}

/// What the range walk left in the scratch's `found`.
struct Walked {
    end: RangeEnd,
    /// The distances in `found` are final (no codes, or
    /// [`SearchParams::rescore`] false); else code distances to rescore.
    final_distances: bool,
    /// Exact distances already read for the margin, by ordinal.
    calibrated: Vec<(u32, f32)>,
}

impl Generation {
    /// Every vector within `radius` of `query` (distance `<= radius`, in
    /// the units [`Neighbor::distance`](crate::Neighbor::distance) uses:
    /// `1 − cos` under cosine, `1 − ⟨q, x⟩` under inner product, squared
    /// Euclidean under L2; see [`Metric`]), nearest first, at most
    /// [`SearchParams::max_results`] of them: with more,
    /// [`RangeHits::truncated`] is set and the nearest are returned.
    /// [`SearchParams::filter`] applies as in [`Generation::search`]
    /// (planned the same way: an exact scan of few matches, else the
    /// graph with a visit limit).
    ///
    /// **Algorithm.** The upper levels are descended greedily and level 0
    /// beam-searched with the width a 1-nearest search uses
    /// ([`SearchParams::ef_for`]`(1)`), on the codes. The beam's candidates
    /// are rescored, and the largest difference between a code distance and
    /// its exact distance among them is the query's margin `m` (the codes'
    /// worst-case bound, [`OpenOptions::rescore_cut`](crate::OpenOptions::rescore_cut)'s
    /// `e`, is looser, and does not hold for clipped int8 components). The
    /// beam is then widened, reusing its visited set: every node whose code
    /// distance is within `radius + m` is expanded, best first, until the
    /// frontier is past it; every one within it is a candidate, at most
    /// `max(2 · max_results, max_results + ef)` (past that the walk keeps
    /// the nearest, as a beam of that width would). The candidates are
    /// rescored with the float32 vectors and those within `radius` kept.
    /// Without codes the distances are exact and `m = 0`; with
    /// [`SearchParams::rescore`] false the codes' estimates are the answer
    /// (no margin, no rescoring). [`SearchParams::oversample`] is ignored.
    ///
    /// Cost: a `k`-nearest search's for a ball of fewer than `ef` vectors;
    /// beyond, about the distances a beam as wide as the ball would
    /// compute, and one row read per candidate (the ball, the margin's
    /// shell, and the first beam's). Errors: those of
    /// [`Generation::search`] for the query, and
    /// [`Error::InvalidParameter`] for a radius that is NaN or infinite,
    /// negative under a metric whose distances cannot be (L2, cosine), or
    /// `max_results = 0`.
    ///
    /// ```
    /// use strata::{dataset, BuildParams, Generation, IndexBuilder, Metric, SearchParams};
    /// let data = dataset::clustered(2_000, 16, 8, 0.1, 7);
    /// let mut b = IndexBuilder::new(16, BuildParams { metric: Metric::L2, seed: Some(7), ..Default::default() })?;
    /// b.add_rows(&data.data)?;
    /// let dir = tempfile::tempdir().unwrap();
    /// b.build()?.write(dir.path())?;
    /// let index = Generation::open(dir.path())?;
    ///
    /// // The 20th nearest neighbour's distance as the radius: about 20 hits.
    /// let radius = index.exact_search(data.row(42), 20)?[19].distance;
    /// let hits = index.search_range(data.row(42), radius, &SearchParams::default())?;
    /// assert_eq!(hits.neighbors[0].id, 42);
    /// assert!(hits.neighbors.len() >= 18 && !hits.truncated);
    /// assert!(hits.neighbors.iter().all(|n| n.distance <= radius));
    ///
    /// // At most `max_results`, the nearest, and the answer says so.
    /// let capped = SearchParams { max_results: 5, ..Default::default() };
    /// let few = index.search_range(data.row(42), radius, &capped)?;
    /// assert_eq!(few.neighbors.len(), 5);
    /// assert!(few.truncated);
    /// assert_eq!(few.neighbors[..], hits.neighbors[..5]);
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn search_range(
        &self,
        query: &[f32],
        radius: f32,
        params: &SearchParams,
    ) -> Result<RangeHits> {
        check_range_params(self.layout.metric, radius, params)?;
        match params.filter {
            Some(f) => {
                self.search_range_filtered(query, radius, params, &*self.resolve(f, 0, |_| false)?)
            }
            None => self.search_range_accepting(query, radius, params, |_| true),
        }
    }

    /// Every vector within `radius` by brute force over the vectors file
    /// (the ground truth `eval --radius` uses), nearest first, at most
    /// `max_results` (`truncated` if there were more). Cost: one distance
    /// per stored vector. Errors as [`Generation::search_range`].
    pub fn exact_search_range(
        &self,
        query: &[f32],
        radius: f32,
        max_results: usize,
    ) -> Result<RangeHits> {
        self.exact_search_range_accepting(query, radius, max_results, |_| true)
    }

    /// [`Generation::exact_search_range`] over the ordinals `accept`s.
    pub(crate) fn exact_search_range_accepting(
        &self,
        query: &[f32],
        radius: f32,
        max_results: usize,
        accept: impl Fn(u32) -> bool,
    ) -> Result<RangeHits> {
        let n = self.layout.n as u32;
        self.exact_range_over(query, radius, max_results, (0..n).filter(|&o| accept(o)))
    }

    /// The vectors within `radius` among `ordinals` (each below `n`), by
    /// exact distance.
    fn exact_range_over(
        &self,
        query: &[f32],
        radius: f32,
        max_results: usize,
        ordinals: impl Iterator<Item = u32>,
    ) -> Result<RangeHits> {
        let l = &self.layout;
        let cap = check_range(l.metric, radius, max_results)?;
        let v = self.view();
        let mut q = vec![0f32; l.padded];
        prepare_vector(l.metric, l.dim, query, None, &mut q)?;
        let mut top: BinaryHeap<Cand> = BinaryHeap::new();
        let mut truncated = false;
        for o in ordinals {
            let c = Cand {
                d: l.metric.distance(self.kernels, &q, v.vector(o)),
                id: o,
            };
            if c.d > radius {
                continue;
            }
            if top.len() < cap {
                top.push(c);
            } else {
                truncated = true;
                if top.peek().is_some_and(|t| c < *t) {
                    top.pop();
                    top.push(c);
                }
            }
        }
        Ok(RangeHits {
            neighbors: self.neighbors(&top.into_sorted_vec()),
            truncated,
        })
    }

    /// [`Generation::search_range`] returning only ordinals `accept`
    /// accepts (the others are still traversed).
    pub(crate) fn search_range_accepting(
        &self,
        query: &[f32],
        radius: f32,
        params: &SearchParams,
        accept: impl Fn(u32) -> bool,
    ) -> Result<RangeHits> {
        let found = self.range_limited(query, radius, params, &accept, None)?;
        Ok(found.unwrap_or_default())
    }

    /// The vectors within `radius` among the ordinals in `allowed` (a
    /// resolved [`crate::Filter`]), planned as [`crate::filter`] describes
    /// for `k`-nearest searches: an exact scan when few match, else the
    /// graph with a visit limit of [`VISIT_FACTOR`] distances per match,
    /// finished by the scan if it is hit.
    pub(crate) fn search_range_filtered(
        &self,
        query: &[f32],
        radius: f32,
        params: &SearchParams,
        allowed: &OrdinalSet,
    ) -> Result<RangeHits> {
        let cap = check_range(self.layout.metric, radius, params.max_results)?;
        let matches = allowed.len();
        if matches <= params.exact_below.unwrap_or(DEFAULT_EXACT_BELOW) {
            with_scratch(|s| s.counts.filtered_exact += 1);
            return self.exact_range_over(query, radius, cap, allowed.iter());
        }
        let accept = |o: u32| allowed.contains(o);
        let limit = (matches as u64).saturating_mul(VISIT_FACTOR);
        match self.range_limited(query, radius, params, &accept, Some(limit))? {
            Some(hits) => {
                with_scratch(|s| s.counts.filtered_graph += 1);
                Ok(hits)
            }
            None => {
                with_scratch(|s| s.counts.filtered_fallback += 1);
                self.exact_range_over(query, radius, cap, allowed.iter())
            }
        }
    }

    /// The range search of [`Generation::search_range_accepting`], whose
    /// walk stops after `limit` distances: `None` if it did.
    fn range_limited(
        &self,
        query: &[f32],
        radius: f32,
        params: &SearchParams,
        accept: &impl Fn(u32) -> bool,
        limit: Option<u64>,
    ) -> Result<Option<RangeHits>> {
        let cap = check_range(self.layout.metric, radius, params.max_results)?;
        with_scratch(|s| {
            with_range_buffers(|b| {
                s.visit_limit = limit;
                let walked = self.walk_range(query, radius, params, accept, s, b);
                s.visit_limit = None;
                let walked = walked?;
                if walked.end.limit_hit {
                    return Ok(None);
                }
                if !walked.final_distances {
                    self.rescore_found(s, &walked.calibrated)?;
                }
                let truncated = finish(&mut s.found, radius, cap, walked.end.overflowed);
                Ok(Some(RangeHits {
                    neighbors: self.neighbors(&s.found),
                    truncated,
                }))
            })
        })
    }

    /// Replaces the code distances in `s.found` by exact ones: from
    /// `calibrated` (sorted by ordinal) where known, else read.
    fn rescore_found(&self, s: &mut Scratch, calibrated: &[(u32, f32)]) -> Result<()> {
        let known = |o: u32| {
            calibrated
                .binary_search_by_key(&o, |c| c.0)
                .ok()
                .map(|i| calibrated[i].1)
        };
        let Scratch { query, found, .. } = s;
        let mut unread = Vec::with_capacity(found.len());
        for (i, c) in found.iter_mut().enumerate() {
            match known(c.id) {
                Some(d) => c.d = d,
                None => unread.push(i),
            }
        }
        let v = self.view();
        let (metric, kernels) = (self.layout.metric, self.kernels);
        let ids: Vec<u32> = unread.iter().map(|&i| found[i].id).collect();
        self.rows.for_rows(
            &self.vectors,
            ids.len(),
            |j| ids[j],
            |o| v.vector(o),
            |j, row| found[unread[j]].d = metric.distance(kernels, query, row),
        )
    }

    /// Validates and prepares `query` into `s.query`, and walks the graph
    /// (`graph/range.rs`), leaving the candidates in `s.found`.
    fn walk_range(
        &self,
        query: &[f32],
        radius: f32,
        params: &SearchParams,
        accept: &impl Fn(u32) -> bool,
        s: &mut Scratch,
        b: &mut RangeBuffers,
    ) -> Result<Walked> {
        let cap = params.max_results;
        let ef = params.ef_for(1);
        let v = self.view();
        let l = &self.layout;
        let mut q = std::mem::take(&mut s.query);
        q.resize(l.padded, 0.0);
        let walked = prepare_vector(l.metric, l.dim, query, None, &mut q).and_then(|()| {
            let ctx = self.query_context(&v);
            let buffers = take_buffers(s);
            match AnyScorer::new(l.quant, &ctx, &q, buffers) {
                None => {
                    let k8 = self.kernels;
                    let dist = |o: u32| l.metric.distance(k8, &q, v.vector(o));
                    let fetch = |o: u32| prefetch(v.vector(o));
                    let entry = self.descend(&v, dist, s);
                    let mut end = RangeEnd {
                        limit_hit: range_beam(&v, 0, l.n, &[entry], ef, s, b, dist, fetch, accept),
                        ..Default::default()
                    };
                    if !end.limit_hit {
                        end = range_widen(&v, 0, radius, cap, s, b, dist, fetch, accept);
                    }
                    Ok(Walked {
                        end,
                        final_distances: true,
                        calibrated: Vec::new(),
                    })
                }
                Some(scorer) => {
                    let walked = scorer.run(RangeCodes {
                        generation: self,
                        view: &v,
                        query: &q,
                        radius,
                        ef,
                        cap,
                        rescore: params.rescore,
                        scratch: s,
                        buffers: b,
                        accept,
                    });
                    let bufs = scorer.into_buffers();
                    give_buffers(s, bufs);
                    walked
                }
            }
        });
        s.query = q;
        walked
    }

    /// Descends the upper levels greedily by `dist` from the entry point.
    fn descend(&self, v: &GraphView<'_>, dist: impl Fn(u32) -> f32, s: &mut Scratch) -> Cand {
        let l = &self.layout;
        let upper = Counting::new(v);
        let counted = |o: u32| {
            upper.distance();
            dist(o)
        };
        let mut cur = Cand {
            d: counted(l.entry),
            id: l.entry,
        };
        for level in (1..=l.max_level).rev() {
            cur = greedy(&upper, level, cur, counted);
        }
        upper.add_to(&mut s.counts);
        cur
    }

    /// The margin for the codes' error and the exact distances it was
    /// measured on (sorted by ordinal): [`MARGIN_FACTOR`] times the largest
    /// `|code − exact|` over `found` (the first beam's candidates).
    fn margin(&self, q: &[f32], found: &[Cand]) -> Result<(f32, Vec<(u32, f32)>)> {
        let v = self.view();
        let (metric, kernels) = (self.layout.metric, self.kernels);
        let mut exact: Vec<(u32, f32)> = found.iter().map(|c| (c.id, c.d)).collect();
        self.rows.for_rows(
            &self.vectors,
            exact.len(),
            |i| found[i].id,
            |o| v.vector(o),
            |i, row| exact[i].1 = metric.distance(kernels, q, row),
        )?;
        let worst = found
            .iter()
            .zip(&exact)
            .map(|(c, e)| (c.d - e.1).abs())
            .fold(0f32, f32::max);
        exact.sort_unstable_by_key(|e| e.0);
        Ok((MARGIN_FACTOR * worst, exact))
    }
}

/// The range walk over one kind of codes, monomorphised per kind by
/// [`AnyScorer::run`]: on [`Scorer::distance`] in the metric's units, the
/// first beam, its margin, then the widened walk.
struct RangeCodes<'a, 'v, A> {
    generation: &'a Generation,
    view: &'a GraphView<'v>,
    /// The prepared query.
    query: &'a [f32],
    radius: f32,
    ef: usize,
    cap: usize,
    rescore: bool,
    scratch: &'a mut Scratch,
    buffers: &'a mut RangeBuffers,
    accept: &'a A,
}

impl<A: Fn(u32) -> bool> ScorerTask for RangeCodes<'_, '_, A> {
    type Output = Result<Walked>;

    fn run<S: Scorer>(self, scorer: &S) -> Result<Walked> {
        let RangeCodes {
            generation,
            view: v,
            query,
            radius,
            ef,
            cap,
            rescore,
            scratch: s,
            buffers: b,
            accept,
        } = self;
        let n = generation.layout.n;
        let dist = |o: u32| scorer.to_metric_units(scorer.distance(v, o));
        let fetch = |o: u32| prefetch(v.code(o));
        let entry = generation.descend(v, dist, s);
        if range_beam(v, 0, n, &[entry], ef, s, b, dist, fetch, accept) {
            return Ok(Walked {
                end: RangeEnd {
                    limit_hit: true,
                    ..Default::default()
                },
                final_distances: true,
                calibrated: Vec::new(),
            });
        }
        let (margin, calibrated, keep) = if rescore {
            let (m, cal) = generation.margin(query, &s.found)?;
            let keep = cap.saturating_mul(KEEP_FACTOR).max(cap.saturating_add(ef));
            (m, cal, keep)
        } else {
            (0.0, Vec::new(), cap)
        };
        let end = range_widen(v, 0, radius + margin, keep, s, b, dist, fetch, accept);
        Ok(Walked {
            end,
            final_distances: !rescore,
            calibrated,
        })
    }
}
