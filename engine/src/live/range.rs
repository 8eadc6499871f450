//! Range (radius) search of a live index: the generation's range search
//! (deleted and superseded ordinals traversed, never returned) merged with
//! the logged inserts within the radius, by exact distance.

use super::state::View;
use crate::error::Result;
use crate::generation::range::check_range_params;
use crate::params::{RangeHits, SearchParams};

impl View {
    /// [`Index::search_range`](crate::Index::search_range) on this
    /// snapshot.
    pub(super) fn search_range(
        &self,
        query: &[f32],
        radius: f32,
        params: &SearchParams,
    ) -> Result<RangeHits> {
        let index = &self.gen.index;
        check_range_params(index.metric(), radius, params)?;
        let base = match params.filter {
            Some(f) => {
                let allowed = index.resolve(f, self.stamp, |o| self.is_deleted(o))?;
                index.search_range_filtered(query, radius, params, &allowed)?
            }
            None if self.deleted_count == 0 => {
                index.search_range_accepting(query, radius, params, |_| true)?
            }
            None => index.search_range_accepting(query, radius, params, |o| !self.is_deleted(o))?,
        };
        let ov = &self.overlay;
        let allows = |node: u32| {
            params
                .filter
                .is_none_or(|f| f.allows(ov.id(node), ov.labels(node)))
        };
        self.merge_range(query, radius, params.max_results, base, allows)
    }

    /// [`Index::exact_search_range`](crate::Index::exact_search_range) on
    /// this snapshot.
    pub(super) fn exact_search_range(
        &self,
        query: &[f32],
        radius: f32,
        max_results: usize,
    ) -> Result<RangeHits> {
        let index = &self.gen.index;
        let base = if self.deleted_count == 0 {
            index.exact_search_range(query, radius, max_results)?
        } else {
            index
                .exact_search_range_accepting(query, radius, max_results, |o| !self.is_deleted(o))?
        };
        self.merge_range(query, radius, max_results, base, |_| true)
    }

    /// `base` (the generation's hits) merged with the live logged inserts
    /// `accept` accepts within `radius`, the nearest `cap` of both.
    fn merge_range(
        &self,
        query: &[f32],
        radius: f32,
        cap: usize,
        base: RangeHits,
        accept: impl Fn(u32) -> bool,
    ) -> Result<RangeHits> {
        let mut logged_more = false;
        let mut neighbors = self.merge_with(query, cap.saturating_add(1), base.neighbors, |q| {
            let (found, more) = self.overlay.scan_within(q, radius, cap, accept);
            logged_more = more;
            found
        })?;
        let truncated = base.truncated || logged_more || neighbors.len() > cap;
        neighbors.truncate(cap);
        Ok(RangeHits {
            neighbors,
            truncated,
        })
    }
}
