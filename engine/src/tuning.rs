//! Stored operating points: for each recall target, the fastest search
//! setting `strata tune` measured to meet it on held-out queries, kept
//! with the generation it was measured on (`gNNNNNNNN.tuning`,
//! `format-spec/tuning-file.md`) and used by [`SearchParams::for_recall`].
//!
//! Plain data and the choice of a point; the bytes are
//! `format/tuning.rs`'s, the file the directory layer's.

use crate::error::{Error, Result};
use crate::params::SearchParams;

/// The most points one tuning file holds.
pub const MAX_TUNING_POINTS: usize = 64;

/// Where the tuning queries came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuningSource {
    /// Rows sampled from the index itself, each excluded from its own
    /// ground truth.
    SampledRows,
    /// A query file the user gave.
    QueryFile,
}

/// One stored operating point: the setting chosen for a recall target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuningPoint {
    /// The recall@k this point was chosen to meet.
    pub target: f32,
    /// Beam width ([`SearchParams::ef`]).
    pub ef: usize,
    /// [`SearchParams::oversample`].
    pub oversample: Option<f32>,
    /// [`SearchParams::rescore`].
    pub rescore: bool,
    /// Recall@k measured on the half of the queries the sweep chose on.
    pub recall: f32,
    /// Recall@k on the other, held-out half (at least `target` when the
    /// point was stored).
    pub held_out_recall: f32,
    /// Single-thread queries per second measured for this setting.
    pub qps: f32,
}

/// The operating points of one generation, and how they were measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// When they were measured, in seconds since the Unix epoch.
    pub measured_at: u64,
    /// The `k` the recall is of.
    pub k: usize,
    /// How many queries the sweep used (both halves).
    pub queries: usize,
    /// How many of them were held out to check the chosen points.
    pub held_out: usize,
    /// Where the queries came from.
    pub source: TuningSource,
    /// Live vectors when measured.
    pub live_count: u64,
    /// Carried through a compaction: measured on an earlier generation
    /// of this index (`measured_build_id`), still used, but the data
    /// have changed since; re-run `strata tune` to refresh it.
    pub stale: bool,
    /// The build id of the generation the points were measured on.
    pub measured_build_id: u128,
    /// The points, by ascending target (at most [`MAX_TUNING_POINTS`]).
    pub points: Vec<TuningPoint>,
}

/// The error for a search that asks for a recall no stored point gives.
fn not_tuned(what: String) -> Error {
    Error::NotTuned { what }
}

impl Tuning {
    /// The point for `target` at `k`: the one of the smallest stored
    /// target at least `target`.
    ///
    /// Errors: [`Error::InvalidParameter`] for a target outside `(0, 1]`,
    /// and [`Error::NotTuned`] if every stored target is lower, or `k` is
    /// above the `k` tuned for (recall at a larger `k` needs a wider
    /// beam than the points were measured with).
    ///
    /// ```
    /// use strata::{Tuning, TuningPoint, TuningSource};
    /// let p = |target, ef| TuningPoint { target, ef, oversample: None, rescore: true,
    ///     recall: target, held_out_recall: target, qps: 1e4 };
    /// let t = Tuning { measured_at: 0, k: 10, queries: 400, held_out: 200,
    ///     source: TuningSource::SampledRows, live_count: 1000, stale: false,
    ///     measured_build_id: 1, points: vec![p(0.9, 16), p(0.95, 32), p(0.99, 96)] };
    /// assert_eq!(t.point_for(0.95, 10)?.ef, 32);
    /// assert_eq!(t.point_for(0.96, 5)?.ef, 96); // the next stronger point
    /// assert!(t.point_for(0.995, 10).is_err()); // nothing reaches it
    /// assert!(t.point_for(0.9, 100).is_err()); // tuned for k = 10
    /// # Ok::<(), strata::Error>(())
    /// ```
    pub fn point_for(&self, target: f32, k: usize) -> Result<&TuningPoint> {
        check_target(target)?;
        if k > self.k {
            return Err(not_tuned(format!(
                "the stored points were tuned for k = {}, not k = {k}: run `strata tune DIR --k {k}`",
                self.k
            )));
        }
        self.points
            .iter()
            .find(|p| p.target >= target)
            .ok_or_else(|| {
                let highest = self.points.last().map_or(0.0, |p| p.target);
                not_tuned(format!(
                    "no stored point reaches recall {target} (the highest tuned is {highest}): \
                     run `strata tune DIR --target {target}`"
                ))
            })
    }
}

/// Checks a recall target: finite, in `(0, 1]`.
pub(crate) fn check_target(target: f32) -> Result<()> {
    if target.is_finite() && target > 0.0 && target <= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter {
            name: "recall",
            reason: format!("{target} is not a recall: give a number in (0, 1], e.g. 0.95"),
        })
    }
}

/// `params` with its recall target replaced by the setting `tuning`
/// stores for it (filter and other fields kept); `params` itself when it
/// names no target.
pub(crate) fn resolve<'f>(
    tuning: Option<&Tuning>,
    k: usize,
    params: &SearchParams<'f>,
) -> Result<SearchParams<'f>> {
    let Some(target) = params.recall else {
        return Ok(*params);
    };
    check_target(target)?;
    let Some(tuning) = tuning else {
        return Err(not_tuned(
            "this index has no stored operating points: run `strata tune DIR` once to measure them"
                .into(),
        ));
    };
    let p = tuning.point_for(target, k)?;
    Ok(SearchParams {
        ef: p.ef,
        oversample: p.oversample,
        rescore: p.rescore,
        auto_ef: None,
        recall: None,
        ..*params
    })
}
