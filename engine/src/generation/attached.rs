//! A generation with the log's overlay attached to its graph
//! (`graph/overlay/attach.rs`): linking logged rows into it, and searching
//! both as one graph.

use super::Generation;
use crate::error::Result;
use crate::format::layout::GraphView;
use crate::graph::overlay::{Base, Linking, Overlay};
use crate::graph::search::{with_scratch, Cand};
use crate::metric::{prepare_vector, Metric};
use crate::params::{Neighbor, SearchParams};
use crate::quant::Quantization;

impl Base for GraphView<'_> {
    fn len(&self) -> usize {
        self.l.n
    }

    fn entry(&self) -> (u32, usize) {
        (self.l.entry, self.l.max_level)
    }

    #[inline]
    fn row(&self, o: u32) -> &[f32] {
        self.vector(o)
    }
}

impl Generation {
    /// The node count to give [`Overlay::new`] for the log's overlay to
    /// link into this generation's graph, if it can: int8 codes at the
    /// padded stride (the overlay's code layout), not under inner product
    /// (whose codes do not guide a build either), level-0 capacity `2 m`.
    pub(crate) fn attach_point(&self) -> Option<usize> {
        let l = &self.layout;
        let fits = l.quant == Quantization::Int8
            && l.metric != Metric::InnerProduct
            && l.stride == l.padded
            && l.m0 == 2 * l.m.max(2)
            && l.n > 0;
        fits.then_some(l.n)
    }

    /// [`Overlay::link_some`] with this generation as the base an attached
    /// overlay links into.
    pub(crate) fn link_overlay(&self, ov: &Overlay, max: usize, parallel: bool) -> Linking {
        ov.link_some(max, parallel, &self.view())
    }

    /// [`Overlay::link_all`] with this generation as the base.
    pub(crate) fn link_overlay_all(&self, ov: &Overlay) {
        ov.link_all(&self.view())
    }

    /// The `k` nearest neighbours of `query` among this generation's
    /// ordinals `accept` accepts and `ov`'s live nodes, with `ov` attached
    /// to this generation ([`Generation::attach_point`]): one descent and
    /// one beam of width `max(ef, k, rescored)` over both, on the codes;
    /// the best [`SearchParams::oversample`] selects rescored in float32
    /// (this generation's rows through its row reader, the overlay's from
    /// memory), unless [`SearchParams::rescore`] is false; the overlay's
    /// rows not linked yet found by an exact scan. Results carry external
    /// ids (the overlay's ids for its nodes).
    pub(crate) fn search_attached(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        accept: impl Fn(u32) -> bool,
        ov: &Overlay,
    ) -> Result<Vec<Neighbor>> {
        let found = self.search_attached_limited(query, k, params, accept, |_| true, ov, None)?;
        Ok(found.unwrap_or_default())
    }

    /// [`Generation::search_attached`] returning only the overlay nodes
    /// `accept_node` accepts (all are traversed), whose beam stops after
    /// `limit` distances: `None` if it did (a filtered search then scans).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn search_attached_limited(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        accept: impl Fn(u32) -> bool,
        accept_node: impl Fn(u32) -> bool,
        ov: &Overlay,
        limit: Option<u64>,
    ) -> Result<Option<Vec<Neighbor>>> {
        let (rescore, ef) = self.widths(k, params)?;
        let l = &self.layout;
        let v = self.view();
        let g = l.n as u32;
        with_scratch(|s| {
            let mut q = std::mem::take(&mut s.query);
            q.resize(l.padded, 0.0);
            let prepared = prepare_vector(l.metric, l.dim, query, None, &mut q);
            let result = prepared.and_then(|()| {
                let cq = ov
                    .code_query(&q)
                    .expect("an attached overlay has the generation's codes");
                s.visit_limit = limit;
                let before = s.counts.distances;
                ov.union_candidates(&v, &cq, ef, s, &accept, &accept_node);
                s.counts.code_distances += s.counts.distances - before;
                s.visit_limit = None;
                if std::mem::take(&mut s.limit_hit) {
                    return Ok(None);
                }
                let found = &mut s.found;
                found.truncate(if params.rescore { rescore } else { k });
                if params.rescore {
                    s.counts.rescored += found.len() as u64;
                    s.counts.full_distances += found.len() as u64;
                    let ords: Vec<u32> = found.iter().map(|c| c.id).filter(|&u| u < g).collect();
                    let mut exact = vec![f32::INFINITY; ords.len()];
                    self.rows.for_rows(
                        &self.vectors,
                        ords.len(),
                        |i| ords[i],
                        |o| v.vector(o),
                        |i, row| exact[i] = l.metric.distance(self.kernels, &q, row),
                    )?;
                    let mut exact = exact.into_iter();
                    for c in found.iter_mut() {
                        c.d = if c.id < g {
                            exact.next().unwrap_or(f32::INFINITY)
                        } else {
                            l.metric.distance(self.kernels, &q, ov.row(c.id - g))
                        };
                    }
                }
                found.extend(
                    ov.scan_pending(&q, k, &accept_node)
                        .into_iter()
                        .map(|c| Cand {
                            d: c.d,
                            id: c.id + g,
                        }),
                );
                Self::keep_best(found, k);
                Ok(Some(
                    found
                        .iter()
                        .map(|c| Neighbor {
                            id: if c.id < g {
                                v.id(c.id)
                            } else {
                                ov.id(c.id - g)
                            },
                            distance: c.d,
                        })
                        .collect(),
                ))
            });
            s.query = q;
            result
        })
    }
}
