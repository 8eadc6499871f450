//! `strata tune`: sweeps ef × oversample (and answering from the codes
//! alone) against exact ground truth, prints the Pareto frontier of
//! recall@k against single-thread QPS, picks for each recall target the
//! fastest setting whose recall on held-out queries still meets it, and
//! stores those operating points with the index
//! ([`strata::Index::store_tuning`]), for `--recall` and
//! `SearchParams::for_recall`.

use super::CliResult;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use strata::{Index, Quantization, SearchParams, Tuning, TuningPoint, TuningSource};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub index: super::args::IndexDir,
    /// Tune on these queries (.fvecs, .bvecs or .npy; `-` reads stdin)
    /// instead of rows sampled from the index.
    #[arg(long, conflicts_with = "sample")]
    pub queries: Option<PathBuf>,
    /// With --queries: skip the first N queries (e.g. those kept for `eval`).
    #[arg(long, default_value_t = 0, requires = "queries")]
    pub skip: usize,
    /// With --queries: use at most N queries (after --skip).
    #[arg(long, requires = "queries")]
    pub limit: Option<usize>,
    /// Tune on this many rows sampled from the index, each searched for
    /// as if it were not in it (never returned, never traversed) against
    /// its exact neighbours other than itself; half choose the settings,
    /// half check them.
    #[arg(long, default_value_t = 1_000)]
    pub sample: usize,
    /// Recall@k targets to store a point for.
    #[arg(long, value_delimiter = ',', default_value = "0.9,0.95,0.99")]
    pub target: Vec<f32>,
    /// Neighbours per query (the k of recall@k).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Stop sweeping after this many seconds (ground truth included); the
    /// points are chosen from what was measured by then.
    #[arg(long, default_value_t = 300.0)]
    pub budget: f64,
    /// Beam widths to sweep (ascending).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,12,14,16,20,24,28,32,40,48,56,64,80,96,112,128,160,192,256,320,384,512"
    )]
    pub ef: Vec<usize>,
    /// Oversampling factors to sweep, `none` = rescore the whole beam
    /// (ignored without codes).
    #[arg(long, value_delimiter = ',', default_value = "none,1,1.5,2,3,4")]
    pub oversample: Vec<String>,
    /// Do not sweep answering from the codes alone (`--no-rescore`).
    #[arg(long)]
    pub no_codes_only: bool,
    /// Timed passes per setting (its QPS is the best of them).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Measure and print, but do not store the points.
    #[arg(long)]
    pub dry_run: bool,
    /// Seed of the sample and of the split into halves.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Threads for the ground truth (0 = all cores); searches are timed on one.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// One JSON object (settings, frontier, points) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Draw recall@k against single-thread QPS (one curve per oversample
    /// and for codes only, the frontier highlighted, the targets marked)
    /// to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// One measured setting of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub ef: usize,
    pub oversample: Option<f32>,
    pub rescore: bool,
    /// Recall@k on the half that chooses.
    pub recall: f64,
    /// Single-thread queries per second (best of the timed passes).
    pub qps: f64,
    /// On the Pareto frontier of (recall, QPS).
    pub frontier: bool,
}

impl Setting {
    fn params(&self) -> SearchParams<'static> {
        SearchParams {
            ef: self.ef,
            oversample: self.oversample,
            rescore: self.rescore,
            ..Default::default()
        }
    }

    /// The curve this setting belongs to.
    pub fn series(&self) -> String {
        match (self.rescore, self.oversample) {
            (false, _) => "codes only".into(),
            (true, None) => "rescore all".into(),
            (true, Some(o)) => format!("oversample {o}"),
        }
    }
}

/// The queries and their exact answers.
struct Workload {
    /// Query rows, row-major.
    rows: Vec<f32>,
    dim: usize,
    /// Per query: its own id when it is a row of the index (excluded from
    /// its ground truth and from its answers).
    own: Vec<Option<u64>>,
    truth: Vec<HashSet<u64>>,
}

impl Workload {
    fn query(&self, i: usize) -> &[f32] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// Mean recall@k of `p` over the queries `which`.
    fn recall(
        &self,
        index: &Index,
        k: usize,
        p: &SearchParams,
        which: &[usize],
    ) -> strata::Result<f64> {
        let mut hits = 0usize;
        let mut wanted = 0usize;
        for &i in which {
            let got = self.answer(index, k, p, i)?;
            hits += got.iter().filter(|id| self.truth[i].contains(id)).count();
            wanted += self.truth[i].len();
        }
        Ok(hits as f64 / wanted.max(1) as f64)
    }

    /// The ids `p` answers for query `i`; a row of the index is searched
    /// for as if it were not in it (`Generation::search_leaving_out`:
    /// neither returned nor traversed), so that it is as hard a query as
    /// a new vector, not one whose neighbour list already holds the
    /// answer.
    fn answer(
        &self,
        index: &Index,
        k: usize,
        p: &SearchParams,
        i: usize,
    ) -> strata::Result<Vec<u64>> {
        let q = self.query(i);
        let hits = match self.own[i] {
            None => index.search(q, k, p)?,
            Some(own) => index.with_generation(|g| g.search_leaving_out(q, k, p, own))?,
        };
        Ok(hits.into_iter().map(|n| n.id).collect())
    }
}

/// Single-thread QPS of `p` over the queries `which` (best of `repeats`
/// passes).
fn qps(
    w: &Workload,
    index: &Index,
    k: usize,
    p: &SearchParams,
    which: &[usize],
    repeats: usize,
) -> strata::Result<f64> {
    let mut best = 0f64;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        for &i in which {
            std::hint::black_box(index.search(w.query(i), k, p)?);
        }
        best = best.max(which.len() as f64 / t.elapsed().as_secs_f64().max(1e-9));
    }
    Ok(best)
}

/// Indices of the settings no other beats on both recall and QPS.
fn mark_frontier(settings: &mut [Setting]) {
    let n = settings.len();
    for i in 0..n {
        let (r, q) = (settings[i].recall, settings[i].qps);
        settings[i].frontier = !(0..n).any(|j| {
            let (rj, qj) = (settings[j].recall, settings[j].qps);
            j != i && rj >= r && qj >= q && (rj > r || qj > q)
        });
    }
}

fn parse_oversample(list: &[String]) -> Result<Vec<Option<f32>>, String> {
    list.iter()
        .map(|s| match s.trim() {
            "none" | "all" => Ok(None),
            t => match t.parse::<f32>() {
                Ok(o) if o.is_finite() && o >= 1.0 => Ok(Some(o)),
                _ => Err(format!(
                    "--oversample {t:?}: give `none` or a number of at least 1"
                )),
            },
        })
        .collect()
}

fn check(a: &Args) -> Result<(), String> {
    if a.k == 0 {
        return Err("--k must be at least 1".into());
    }
    if a.target.is_empty() || a.target.len() > strata::MAX_TUNING_POINTS {
        return Err(format!(
            "--target: give 1 to {} recall targets",
            strata::MAX_TUNING_POINTS
        ));
    }
    if let Some(t) = a
        .target
        .iter()
        .find(|t| !(t.is_finite() && **t > 0.0 && **t <= 1.0))
    {
        return Err(format!("--target {t}: a recall target is in (0, 1]"));
    }
    if a.ef.is_empty() || a.ef.contains(&0) {
        return Err("--ef: give beam widths of at least 1".into());
    }
    if !(a.budget.is_finite() && a.budget > 0.0) {
        return Err("--budget: give a positive number of seconds".into());
    }
    if let Some(p) = &a.plot {
        crate::plot::check_path(p)?;
    }
    if a.queries.is_none() && a.sample < 2 {
        return Err("--sample: at least 2 rows (half choose, half check)".into());
    }
    Ok(())
}

/// Draws `n` live rows of the index (by a seeded shuffle of its ids).
fn sample_rows(index: &Index, n: usize, seed: u64) -> (Vec<f32>, Vec<Option<u64>>) {
    let mut ids: Vec<u64> = index.with_generation(|g| g.ids().collect());
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    ids.shuffle(&mut rng);
    let mut rows = Vec::new();
    let mut own = Vec::new();
    for id in ids {
        if own.len() == n {
            break;
        }
        if !index.contains(id) {
            continue; // deleted through the log
        }
        if let Ok(v) = index.with_generation(|g| g.get(id)) {
            rows.extend_from_slice(&v);
            own.push(Some(id));
        }
    }
    (rows, own)
}

pub fn run(a: Args) -> CliResult {
    check(&a)?;
    strata::check_threads(a.threads)?;
    let start = Instant::now();
    let index = Index::open(&a.index.dir)?;
    let dim = index.dim();
    let info = index.with_generation(|g| g.info());
    let mut targets = a.target.clone();
    targets.sort_by(f32::total_cmp);
    targets.dedup();
    let (rows, own, source) = match &a.queries {
        Some(p) => {
            let mut q = crate::input::read_vectors(p)?;
            crate::input::check_query_dim(p, &q, dim)?;
            let from = a.skip.min(q.len());
            let to = a
                .limit
                .map_or(q.len(), |l| from.saturating_add(l).min(q.len()));
            q.data = q.data[from * dim..to * dim].to_vec();
            if q.len() < 2 {
                return Err(format!(
                    "{}: at least 2 queries (half choose, half check)",
                    p.display()
                )
                .into());
            }
            let own = vec![None; q.len()];
            (q.data, own, TuningSource::QueryFile)
        }
        None => {
            let (rows, own) = sample_rows(&index, a.sample, a.seed);
            if own.len() < 2 {
                return Err("the index holds fewer than 2 live rows to tune on".into());
            }
            (rows, own, TuningSource::SampledRows)
        }
    };
    let n = own.len();
    let quiet = a.quiet || a.json;

    // Exact ground truth, on every core.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()?;
    let gt_bar = crate::progress::count_bar(n as u64, "ground truth", quiet);
    let truth: Vec<HashSet<u64>> = pool.install(|| {
        (0..n)
            .into_par_iter()
            .map(|i| {
                let q = &rows[i * dim..(i + 1) * dim];
                // A sampled row: its exact neighbours in the generation
                // other than itself (what its leave-one-out search sees).
                let exact = match own[i] {
                    None => index.exact_search(q, a.k)?,
                    Some(_) => index.with_generation(|g| g.exact_search(q, a.k + 1))?,
                };
                gt_bar.inc(1);
                let mut ids: Vec<u64> = exact
                    .into_iter()
                    .map(|h| h.id)
                    .filter(|&id| Some(id) != own[i])
                    .collect();
                ids.truncate(a.k);
                Ok(ids.into_iter().collect())
            })
            .collect::<strata::Result<_>>()
    })?;
    gt_bar.finish_and_clear();
    let w = Workload {
        rows,
        dim,
        own,
        truth,
    };

    // The halves: a seeded split.
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(a.seed ^ 0x5eed));
    let (choose, check_half) = order.split_at(n / 2);
    let (choose, check_half) = (choose.to_vec(), check_half.to_vec());

    // The curves to sweep.
    let has_codes = info.quantization != Quantization::None;
    let mut series: Vec<(Option<f32>, bool)> = if has_codes {
        parse_oversample(&a.oversample)?
            .into_iter()
            .map(|o| (o, true))
            .collect()
    } else {
        vec![(None, true)]
    };
    if has_codes && !a.no_codes_only {
        series.push((None, false));
    }
    // Widths below k search as k: one setting.
    let mut efs: Vec<usize> = a.ef.iter().map(|&e| e.max(a.k)).collect();
    efs.sort_unstable();
    efs.dedup();
    let highest = *targets.last().expect("at least one target") as f64;
    let sweep_budget = a.budget * 0.85;
    let sweep_bar =
        crate::progress::count_bar((series.len() * efs.len()) as u64, "sweeping", quiet);
    let mut settings: Vec<Setting> = Vec::new();
    let mut cut_short = false;
    'series: for &(oversample, rescore) in &series {
        let mut last = f64::NEG_INFINITY;
        let mut flat = 0;
        for (j, &ef) in efs.iter().enumerate() {
            if start.elapsed().as_secs_f64() > sweep_budget {
                cut_short = true;
                break 'series;
            }
            let mut s = Setting {
                ef,
                oversample,
                rescore,
                recall: 0.0,
                qps: 0.0,
                frontier: false,
            };
            let p = s.params();
            // The recall pass is also the timed passes' warm-up.
            s.recall = w.recall(&index, a.k, &p, &choose)?;
            s.qps = qps(&w, &index, a.k, &p, &choose, a.repeats)?;
            sweep_bar.inc(1);
            let gained = s.recall - last;
            last = s.recall;
            settings.push(s);
            // Past the highest target (with a margin), or from the codes
            // alone on a plateau (their ceiling), wider beams only cost.
            flat = if gained < 0.0005 { flat + 1 } else { 0 };
            if last >= highest + (0.01f64).min((1.0 - highest) / 2.0) || (!rescore && flat >= 3) {
                sweep_bar.inc((efs.len() - j - 1) as u64);
                break;
            }
        }
    }
    sweep_bar.finish_and_clear();
    if settings.is_empty() {
        return Err(format!(
            "--budget {} s ran out before the first setting was measured",
            a.budget
        )
        .into());
    }
    mark_frontier(&mut settings);

    // For each target: the fastest settings that meet it on the choosing
    // half, re-timed side by side, the first of which meets it on the
    // held-out half too.
    let mut points: Vec<TuningPoint> = Vec::new();
    let mut unmet: Vec<f32> = Vec::new();
    for &target in &targets {
        let mut cands: Vec<&Setting> = settings
            .iter()
            .filter(|s| s.recall >= target as f64)
            .collect();
        cands.sort_by(|x, y| y.qps.total_cmp(&x.qps));
        // Re-time the few fastest interleaved, so that one noisy pass
        // does not decide; the slower ones follow in the sweep's order.
        let mut timed: Vec<(f64, &Setting)> = cands.iter().map(|s| (s.qps, *s)).collect();
        let retimed = timed.len().min(4);
        for _ in 0..a.repeats.max(1) {
            for t in timed[..retimed].iter_mut() {
                let q = qps(&w, &index, a.k, &t.1.params(), &choose, 1)?;
                t.0 = t.0.max(q);
            }
        }
        timed[..retimed].sort_by(|x, y| y.0.total_cmp(&x.0));
        let mut chosen = None;
        for (q, s) in timed {
            let held = w.recall(&index, a.k, &s.params(), &check_half)?;
            if held >= target as f64 {
                chosen = Some(TuningPoint {
                    target,
                    ef: s.ef,
                    oversample: s.oversample,
                    rescore: s.rescore,
                    recall: s.recall as f32,
                    held_out_recall: held as f32,
                    qps: q as f32,
                });
                break;
            }
        }
        match chosen {
            Some(p) => points.push(p),
            None => unmet.push(target),
        }
    }

    let tuning = Tuning {
        measured_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        k: a.k,
        queries: n,
        held_out: check_half.len(),
        source,
        live_count: index.len() as u64,
        stale: false,
        measured_build_id: info.build_id,
        points: points.clone(),
    };
    let generation_before = index.stats().generation;
    let stored = !a.dry_run && !points.is_empty();
    if stored {
        index.store_tuning(&tuning)?;
    }
    let moved = index.stats().generation != generation_before;
    if let Some(path) = &a.plot {
        draw(path, &a, &info, n, &settings, &targets)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "dir": a.index.dir,
                "quantization": info.quantization.name(),
                "k": a.k,
                "queries": n,
                "held_out": check_half.len(),
                "source": source_name(source),
                "settings": settings,
                "points": points.iter().map(point_json).collect::<Vec<_>>(),
                "unmet_targets": unmet,
                "stored": stored,
                "budget_reached": cut_short,
                "seconds": elapsed,
            })
        );
    } else {
        print_report(
            &a,
            &info,
            n,
            check_half.len(),
            source,
            &settings,
            &points,
            &unmet,
            cut_short,
            elapsed,
        );
        if stored {
            println!(
                "stored {} operating points in {} (strata search/eval --recall T)",
                points.len(),
                a.index.dir.display()
            );
        } else if a.dry_run {
            println!("--dry-run: nothing stored");
        }
    }
    if moved {
        eprintln!(
            "warning: the index was compacted while tuning: the points stay with generation {generation_before}, no longer current; run tune again"
        );
    }
    if points.is_empty() {
        return Err(format!(
            "no setting met any target {targets:?} on both halves: widen --ef (up to {})",
            efs.last().copied().unwrap_or(0)
        )
        .into());
    }
    Ok(())
}

/// The sweep as an SVG plot: a curve per series, the frontier tune
/// found, the targets.
fn draw(
    path: &std::path::Path,
    a: &Args,
    info: &strata::IndexInfo,
    n: usize,
    settings: &[Setting],
    targets: &[f32],
) -> Result<(), String> {
    let quant = info.quantization.name();
    let mut series: Vec<crate::plot::Series> = Vec::new();
    for s in settings {
        let name = format!("{quant}, {}", s.series());
        let point = (s.recall, s.qps, format!("ef {}", s.ef));
        match series.iter_mut().find(|c| c.name == name) {
            Some(c) => c.points.push(point),
            None => series.push(crate::plot::Series {
                name,
                points: vec![point],
            }),
        }
    }
    let mut front: Vec<(f64, f64)> = settings
        .iter()
        .filter(|s| s.frontier)
        .map(|s| (s.recall, s.qps))
        .collect();
    front.sort_by(|x, y| x.0.total_cmp(&y.0));
    let dir = a.index.dir.file_name().map_or_else(
        || a.index.dir.display().to_string(),
        |d| d.to_string_lossy().into_owned(),
    );
    let title = format!(
        "strata tune {dir}: {} vectors, dim {}, {}, {quant}; {n} queries",
        info.count,
        info.dim,
        info.metric.name()
    );
    // As typed (0.95, not 0.949999988079071: the f32's nearest f64).
    let targets: Vec<f64> = targets
        .iter()
        .map(|&t| (t as f64 * 1e6).round() / 1e6)
        .collect();
    crate::plot::recall_qps_svg(path, &title, a.k, &series, Some(&front), &targets)
        .map_err(|e| format!("--plot {}: {e}", path.display()))
}

/// Where the tuning queries came from, in words (`tune` and `inspect`).
pub fn source_name(s: TuningSource) -> &'static str {
    match s {
        TuningSource::SampledRows => "rows sampled from the index",
        TuningSource::QueryFile => "the query file",
    }
}

fn point_json(p: &TuningPoint) -> serde_json::Value {
    serde_json::json!({
        "target": p.target,
        "ef": p.ef,
        "oversample": p.oversample,
        "rescore": p.rescore,
        "recall": p.recall,
        "held_out_recall": p.held_out_recall,
        "qps": p.qps,
    })
}

/// The table of stored points `inspect` and `tune` print, each line
/// after `indent`.
pub fn print_points(indent: &str, points: &[TuningPoint]) {
    println!(
        "{indent}{:>7} {:>6} {:>11} {:>8} {:>9} {:>9} {:>10}",
        "target", "ef", "oversample", "rescore", "recall", "held-out", "QPS"
    );
    for p in points {
        println!(
            "{indent}{:>7} {:>6} {:>11} {:>8} {:>9.4} {:>9.4} {:>10.0}",
            p.target,
            p.ef,
            p.oversample.map_or("none".into(), |o| o.to_string()),
            p.rescore,
            p.recall,
            p.held_out_recall,
            p.qps
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn print_report(
    a: &Args,
    info: &strata::IndexInfo,
    n: usize,
    held_out: usize,
    source: TuningSource,
    settings: &[Setting],
    points: &[TuningPoint],
    unmet: &[f32],
    cut_short: bool,
    elapsed: f64,
) {
    let from = source_name(source);
    println!(
        "{}: {} vectors, dim {}, {}, {}; {n} queries from {from} ({} choose, {held_out} check); k = {}; {:.1} s{}",
        a.index.dir.display(),
        info.count,
        info.dim,
        info.metric.name(),
        info.quantization.name(),
        n - held_out,
        a.k,
        elapsed,
        if cut_short { " (budget reached: sweep cut short)" } else { "" }
    );
    println!(
        "Pareto frontier (recall@{} against one-thread QPS; {} settings measured):",
        a.k,
        settings.len()
    );
    println!("{:>14} {:>6} {:>9} {:>10}", "curve", "ef", "recall", "QPS");
    let mut front: Vec<&Setting> = settings.iter().filter(|s| s.frontier).collect();
    front.sort_by(|x, y| x.recall.total_cmp(&y.recall));
    for s in front {
        println!(
            "{:>14} {:>6} {:>9.4} {:>10.0}",
            s.series(),
            s.ef,
            s.recall,
            s.qps
        );
    }
    println!("operating points (fastest meeting the target on both halves):");
    print_points("", points);
    for t in unmet {
        println!("{t:>7}  not met by any setting swept (widen --ef, or add oversampling)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(recall: f64, qps: f64) -> Setting {
        Setting {
            ef: 1,
            oversample: None,
            rescore: true,
            recall,
            qps,
            frontier: false,
        }
    }

    #[test]
    fn the_frontier_keeps_exactly_the_undominated() {
        let mut v = vec![
            s(0.9, 100.0),
            s(0.95, 80.0),
            s(0.93, 70.0),
            s(0.99, 20.0),
            s(0.9, 90.0),
        ];
        mark_frontier(&mut v);
        let f: Vec<bool> = v.iter().map(|s| s.frontier).collect();
        assert_eq!(f, [true, true, false, true, false]);
    }

    #[test]
    fn oversample_lists_parse_and_reject_nonsense() {
        let l = |v: &[&str]| parse_oversample(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            l(&["none", "2", "1.5"]).unwrap(),
            [None, Some(2.0), Some(1.5)]
        );
        assert!(l(&["0.5"]).is_err() && l(&["x"]).is_err() && l(&["inf"]).is_err());
    }
}
