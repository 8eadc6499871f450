//! `strata eval`: recall@k, QPS and latency swept over ef and oversampling.

use super::CliResult;
use crate::measure::{exact_truth, mapped_rss_kb, measure_threads, print_table, rss_kb, EvalRow};
use crate::plot::{recall_qps_svg, Series};
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata::{dataset, Generation, Index, OpenOptions, SearchParams};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub index: super::args::IndexDir,
    #[command(flatten)]
    pub queries: super::args::QueryFile,
    /// Ground truth (.ivecs of ids, best first); computed exactly if absent.
    #[arg(long)]
    pub groundtruth: Option<PathBuf>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Beam widths to sweep.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    pub ef: Vec<usize>,
    /// Evaluate the automatic ef (`strata::AutoEf::default()`, chosen from
    /// k) instead of sweeping --ef.
    #[arg(long)]
    pub auto_ef: bool,
    /// Oversampling factors to sweep (default: rescore all max(k, ef) candidates).
    #[arg(long, value_delimiter = ',')]
    pub oversample: Vec<f32>,
    /// Answer from the codes alone: the vectors file is never read, and
    /// distances are the codes' estimates (see `SearchParams::rescore`).
    #[arg(long)]
    pub no_rescore: bool,
    /// Evaluate the operating point `strata tune` stored for this recall@k
    /// target (replaces --ef, --oversample, --no-rescore and --auto-ef).
    #[arg(long, value_name = "TARGET", conflicts_with_all = ["ef", "oversample", "no_rescore", "auto_ef"])]
    pub recall: Option<f32>,
    /// Thread counts for the `search_batch` passes, one pass each
    /// (e.g. `1,2`; 0 = all cores).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub threads: Vec<usize>,
    /// Use only the first N queries.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Output: an aligned table, one JSON record per setting, or CSV
    /// (a header row, then one row per setting).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Also draw recall@k against single-thread QPS (log scale) into this
    /// SVG file: one curve per oversampling setting, the Pareto frontier
    /// highlighted.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Target recalls marked on the plot (e.g. `0.95,0.99`), each in (0, 1].
    #[arg(long, value_delimiter = ',', requires = "plot")]
    pub target: Vec<f64>,
    /// Also report open time and resident memory (one more JSON line with --json).
    #[arg(long)]
    pub report_memory: bool,
    /// Verify all checksums at open.
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub read: super::IoArgs,
    /// With a filter, the ground truth (computed if absent: an exact scan
    /// of the matches) must be the filtered one.
    #[command(flatten)]
    pub filter: super::FilterArgs,
    /// Skip the untimed warm-up pass before each setting: the first setting
    /// then measures a cold start (e.g. after dropping the page cache).
    #[arg(long)]
    pub no_warmup: bool,
    /// No progress bar (it counts settings, on stderr, between timed passes).
    #[arg(long)]
    pub quiet: bool,
}

/// How `eval` prints its results.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// One JSON record per setting (and one for `--report-memory`).
    Json,
    /// A header row, then one row per setting.
    Csv,
}

pub fn run(a: Args) -> CliResult {
    let format = match (a.json, a.format) {
        (false, f) => f,
        (true, Format::Table | Format::Json) => Format::Json,
        (true, Format::Csv) => {
            return Err("--json is --format json: give --json or --format csv, not both".into())
        }
    };
    if let Some(t) = a
        .target
        .iter()
        .find(|t| !(t.is_finite() && **t > 0.0 && **t <= 1.0))
    {
        return Err(format!("--target {t}: a target recall must be in (0, 1]").into());
    }
    if let Some(p) = &a.plot {
        crate::plot::check_path(p)?;
    }
    if a.limit == Some(0) {
        return Err("--limit 0 leaves no queries to evaluate: give at least 1".into());
    }
    if a.k == 0 {
        return Err("--k must be at least 1".into());
    }
    if a.threads.is_empty() {
        return Err("--threads needs at least one thread count".into());
    }
    for &t in &a.threads {
        strata::check_threads(t)?;
    }
    let t = Instant::now();
    if a.verify {
        Generation::open_with(
            &a.index.dir,
            &OpenOptions {
                verify: true,
                allow_log: true,
                ..Default::default()
            },
        )?;
    }
    let index = Index::open_with(&a.index.dir, &a.read.open_options()?)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_open = rss_kb();
    let mut queries = crate::input::read_vectors(&a.queries.query)?;
    crate::input::check_query_dim(&a.queries.query, &queries, index.dim())?;
    if let Some(n) = a.limit {
        queries.data.truncate(n * queries.dim);
    }
    let filter = a.filter.filter()?;
    let auto_ef = a.auto_ef.then(strata::AutoEf::default);
    let tuned = match a.recall {
        Some(t) => Some(stored_point(&index, &queries, a.k, t, filter.as_ref())?),
        None => None,
    };
    let rescore = tuned.map_or(!a.no_rescore, |p| p.rescore);
    let truth: Vec<Vec<u64>> = match &a.groundtruth {
        Some(p) => {
            let gt = dataset::read_ivecs(p)?;
            if gt.len() < queries.len() {
                return Err(format!(
                    "ground truth has {} rows for {} queries",
                    gt.len(),
                    queries.len()
                )
                .into());
            }
            if gt.first().is_some_and(|r| r.len() < a.k) {
                return Err(format!(
                    "ground truth rows hold {} ids, fewer than k = {}",
                    gt[0].len(),
                    a.k
                )
                .into());
            }
            let truth: Vec<Vec<u64>> = gt
                .into_iter()
                .take(queries.len())
                .map(|r| r.into_iter().map(u64::from).collect())
                .collect();
            warn_unknown_truth(&index, &truth, a.k, p);
            truth
        }
        None => match &filter {
            None => exact_truth(&index, &queries.data, a.k)?,
            // An exact scan of the matches: the filtered ground truth.
            Some(f) => {
                let exact = SearchParams {
                    filter: Some(f),
                    exact_below: Some(usize::MAX),
                    ..Default::default()
                };
                index
                    .search_batch(&queries, a.k, &exact)?
                    .into_iter()
                    .map(|r| r.into_iter().map(|n| n.id).collect())
                    .collect()
            }
        },
    };
    let pools = a
        .threads
        .iter()
        .map(|&t| rayon::ThreadPoolBuilder::new().num_threads(t).build())
        .collect::<Result<Vec<_>, _>>()?;
    let oversamples: Vec<Option<f32>> = if let Some(p) = tuned {
        vec![p.oversample]
    } else if a.oversample.is_empty() {
        vec![None]
    } else {
        a.oversample.iter().map(|o| Some(*o)).collect()
    };
    // With --report-memory, memory is read after exactly one pass over the
    // queries (at the first setting), before the sweep touches more pages.
    let mut memory_after_pass = None;
    if a.report_memory {
        let params = SearchParams {
            ef: tuned.map_or(a.ef.first().copied().unwrap_or(64), |p| p.ef),
            oversample: oversamples[0],
            rescore,
            filter: filter.as_ref(),
            exact_below: a.filter.exact_below,
            auto_ef,
            ..Default::default()
        };
        for q in queries.rows() {
            index.search(q, a.k, &params)?;
        }
        memory_after_pass = Some((
            rss_kb(),
            mapped_rss_kb(".graph"),
            mapped_rss_kb(".vectors"),
            strata::io::io_stats(),
            index.with_generation(|i| i.row_cache_bytes().1),
        ));
    }
    let mut rows = Vec::new();
    let tuned_ef = tuned.map(|p| [p.ef]);
    let efs = match &tuned_ef {
        Some(ef) => &ef[..],
        None if a.auto_ef => &[0][..],
        None => &a.ef[..],
    };
    let bar =
        crate::progress::count_bar((efs.len() * oversamples.len()) as u64, "settings", a.quiet);
    for &ef in efs {
        for &oversample in &oversamples {
            let row = measure_threads(
                &index,
                &queries.data,
                &truth,
                a.k,
                &SearchParams {
                    ef,
                    oversample,
                    rescore,
                    filter: filter.as_ref(),
                    exact_below: a.filter.exact_below,
                    auto_ef,
                    ..Default::default()
                },
                &pools,
                !a.no_warmup,
            )?;
            if !row.batch_matches {
                eprintln!(
                    "warning: ef {ef}: search_batch answered differently from one-at-a-time search"
                );
            }
            if format == Format::Json {
                println!("{}", serde_json::to_string(&row)?);
            }
            rows.push(row);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let info = index.with_generation(|i| i.info());
    let cache = index.with_generation(|i| i.row_cache_bytes());
    let log = index.stats();
    if format == Format::Csv {
        let mut out = std::io::stdout().lock();
        crate::measure::write_csv(&mut out, info.quantization.name(), &rows)?;
    }
    if let Some(path) = &a.plot {
        let name = a.index.dir.file_name().map_or_else(
            || a.index.dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let title = format!(
            "{name}: {} vectors, dim {}, {}, {}; {} queries",
            info.count,
            info.dim,
            info.metric.name(),
            info.quantization.name(),
            queries.len()
        );
        plot_rows(
            path,
            &title,
            info.quantization.name(),
            a.k,
            &rows,
            &a.target,
        )?;
    }
    if format == Format::Table {
        println!(
            "{}: {} vectors, dim {}, {}, {}, kernels {}; {} queries",
            a.index.dir.display(),
            info.count,
            info.dim,
            info.metric.name(),
            info.quantization.name(),
            info.kernels,
            queries.len()
        );
        if log.log_records > 0 {
            println!(
                "log: {} records ({} inserted, {} deleted) searched with the graph; {} live vectors",
                log.log_records, log.inserted, log.deleted, log.live
            );
        }
        print_table(&rows);
    }
    if let Some(((rss, anon, file), graph_map, vectors_map, io, cache_after_pass)) =
        memory_after_pass
    {
        let cgroup = crate::measure::cgroup_memory();
        let mem = serde_json::json!({
            "open_ms": open_ms,
            "rss_after_open_kb": rss_open.0,
            "queries_before_memory": queries.len(),
            "rss_after_queries_kb": rss,
            "rss_anon_after_queries_kb": anon,
            "rss_file_after_queries_kb": file,
            "rss_graph_map_kb": graph_map,
            "rss_vectors_map_kb": vectors_map,
            "graph_file_bytes": info.graph_file_bytes,
            "vectors_file_bytes": info.vectors_file_bytes,
            "resident_bytes": info.resident_bytes,
            "io": a.read.io.name(),
            "lock_graph": a.read.lock_graph,
            "direct_rows": io.direct_rows,
            "direct_bytes": io.direct_bytes,
            "mapped_rows": io.mapped_rows,
            "cached_rows": io.cached_rows,
            "row_cache_capacity_bytes": cache.0,
            "row_cache_resident_bytes": cache.1,
            "row_cache_resident_after_queries_bytes": cache_after_pass,
            "rss_anon_after_sweep_kb": rss_kb().1,
            "rss_graph_map_after_sweep_kb": mapped_rss_kb(".graph"),
            "rss_vectors_map_after_sweep_kb": mapped_rss_kb(".vectors"),
            "cgroup_memory_limit_bytes": cgroup.0,
            "cgroup_memory_usage_bytes": cgroup.1,
        });
        if format == Format::Json {
            println!("{mem}");
        } else if format == Format::Csv {
            // Standard output is the CSV: the memory report goes beside it.
            eprintln!("{mem}");
        } else {
            println!(
                "open {open_ms:.2} ms; RSS after open {} KiB; after {} queries {rss} KiB (anon {anon}, file-backed {file}: graph map {graph_map} KiB, vectors map {vectors_map} KiB); graph file {} B, vectors file {} B",
                rss_open.0,
                queries.len(),
                info.graph_file_bytes,
                info.vectors_file_bytes
            );
            println!(
                "io {}: {} direct row reads ({} B), {} mapped rows, {} rows from the row cache in that pass; row cache {} of {} B; after the sweep: graph map {} KiB, vectors map {} KiB resident; cgroup limit {} B, usage {} B",
                a.read.io,
                io.direct_rows,
                io.direct_bytes,
                io.mapped_rows,
                io.cached_rows,
                cache.1,
                cache.0,
                mapped_rss_kb(".graph"),
                mapped_rss_kb(".vectors"),
                cgroup.0,
                cgroup.1
            );
        }
    }
    Ok(())
}

/// The series of a sweep: one per oversampling setting (or codes only),
/// named with the index's quantization, its points in ef order.
pub fn sweep_series(quantization: &str, rows: &[EvalRow]) -> Vec<Series> {
    let mut series: Vec<(String, Series)> = Vec::new();
    for r in rows {
        let key = match (r.rescore, r.oversample) {
            (false, _) => format!("{quantization}, codes only (no rescore)"),
            (true, None) => format!("{quantization}, rescore max(k, ef)"),
            (true, Some(o)) => format!("{quantization}, oversample {o}"),
        };
        let point = (r.recall, r.qps_1t, format!("ef {}", r.ef_used));
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, s)) => s.points.push(point),
            None => series.push((
                key.clone(),
                Series {
                    name: key,
                    points: vec![point],
                },
            )),
        }
    }
    series.into_iter().map(|(_, s)| s).collect()
}

/// Draws `rows` (recall@k against single-thread QPS) into the SVG at
/// `path`, with `targets` marked.
fn plot_rows(
    path: &Path,
    title: &str,
    quantization: &str,
    k: usize,
    rows: &[EvalRow],
    targets: &[f64],
) -> CliResult {
    let series = sweep_series(quantization, rows);
    recall_qps_svg(path, title, k, &series, None, targets)?;
    eprintln!("plot: {}", path.display());
    Ok(())
}

/// The operating point `--recall target` names: the search's own
/// resolution (so a missing, damaged or insufficient tuning is the
/// library's typed error), reported on stderr.
fn stored_point(
    index: &Index,
    queries: &dataset::Vectors,
    k: usize,
    target: f32,
    filter: Option<&strata::Filter>,
) -> Result<strata::TuningPoint, Box<dyn std::error::Error>> {
    if queries.is_empty() {
        return Err("--recall: the query file holds no queries".into());
    }
    let probe = SearchParams {
        filter,
        ..SearchParams::for_recall(target)
    };
    index.search(queries.row(0), k, &probe)?;
    let tuning = index
        .tuning()?
        .ok_or("the index lost its operating points while eval ran")?;
    let p = *tuning.point_for(target, k)?;
    eprintln!(
        "--recall {target}: the point stored for target {}: ef {}, oversample {}, {} (tuned recall {:.4}, held-out {:.4}, {:.0} QPS{})",
        p.target,
        p.ef,
        p.oversample.map_or("none".into(), |o| o.to_string()),
        if p.rescore { "rescored" } else { "codes only" },
        p.recall,
        p.held_out_recall,
        p.qps,
        if tuning.stale { "; stale: measured before a compaction" } else { "" }
    );
    Ok(p)
}

/// Warns when ground-truth ids (the first `k` of each row) are not in the
/// index: recall then cannot reach 1, and the file likely belongs to
/// another index or id scheme.
fn warn_unknown_truth(index: &Index, truth: &[Vec<u64>], k: usize, path: &std::path::Path) {
    let (mut missing, mut total, mut example) = (0usize, 0usize, None);
    for id in truth.iter().flat_map(|r| r.iter().take(k)) {
        total += 1;
        if !index.contains(*id) {
            missing += 1;
            example.get_or_insert(*id);
        }
    }
    if let Some(id) = example {
        eprintln!(
            "warning: {missing} of {total} ground-truth ids in {} (first {k} per row) are not in the index (e.g. id {id}); recall cannot reach 1",
            path.display()
        );
    }
}
