//! `strata search`: k nearest neighbours of each query, as JSON lines or .ivecs.

use super::CliResult;
use rayon::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use strata::{dataset, Index, SearchParams};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub index: super::args::IndexDir,
    #[command(flatten)]
    pub queries: super::args::QueryFile,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Beam width (raised to k if smaller).
    #[arg(long, default_value_t = 64)]
    pub ef: usize,
    /// Choose ef from k (`strata::AutoEf::default()`: clamp(2k, 48, 1024)) instead of --ef.
    #[arg(long)]
    pub auto_ef: bool,
    /// Rescore ceil(k * oversample) candidates (default: all max(k, ef)).
    #[arg(long)]
    pub oversample: Option<f32>,
    /// Answer from the codes alone: the vectors file is never read, and
    /// distances are the codes' estimates (see `SearchParams::rescore`).
    #[arg(long)]
    pub no_rescore: bool,
    /// Write results here: `.ivecs` for ids only, anything else for JSON lines (default or `-`: stdout).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Range search instead of k nearest: every vector within this
    /// distance (the units `search` prints: 1 - cos under cosine, squared
    /// L2 under l2), nearest first; JSON lines with `truncated`.
    #[arg(long, conflicts_with_all = ["k", "auto_ef"])]
    pub radius: Option<f32>,
    /// With --radius, return at most this many (the nearest).
    #[arg(long, default_value_t = strata::DEFAULT_MAX_RESULTS, requires = "radius")]
    pub max_results: usize,
    /// Search with the operating point `strata tune` stored for this
    /// recall@k target (replaces --ef, --oversample, --no-rescore, --auto-ef).
    #[arg(long, value_name = "TARGET", conflicts_with_all = ["ef", "oversample", "no_rescore", "auto_ef", "radius"])]
    pub recall: Option<f32>,
    /// Threads searching the queries in parallel, k nearest or --radius
    /// (0 = all cores; the results do not depend on it).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    #[command(flatten)]
    pub read: super::IoArgs,
    #[command(flatten)]
    pub filter: super::FilterArgs,
}

pub fn run(a: Args) -> CliResult {
    strata::check_threads(a.threads)?;
    crate::input::one_stdin(&[
        ("--query", Some(&a.queries.query)),
        ("--filter-ids", a.filter.filter_ids.as_ref()),
    ])?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()?;
    let index = Index::open_with(&a.index.dir, &a.read.open_options()?)?;
    let queries = crate::input::read_vectors(&a.queries.query)?;
    crate::input::check_query_dim(&a.queries.query, &queries, index.dim())?;
    let filter = a.filter.filter()?;
    let params = SearchParams {
        ef: a.ef,
        oversample: a.oversample,
        rescore: !a.no_rescore,
        filter: filter.as_ref(),
        exact_below: a.filter.exact_below,
        auto_ef: a.auto_ef.then(strata::AutoEf::default),
        max_results: a.max_results,
        recall: a.recall,
    };
    if let Some(radius) = a.radius {
        return range(&a, &index, &queries, radius, &params, &pool);
    }
    // On the pool of --threads: the batch, and the per-thread counts.
    let results = pool.install(|| -> strata::Result<_> {
        strata::take_search_counts();
        rayon::broadcast(|_| strata::take_search_counts());
        let results = index.search_batch(&queries, a.k, &params)?;
        if filter.is_some() {
            // Which plan answered: the counts of every worker thread.
            let (mut exact, mut graph, mut fallback) = (0, 0, 0);
            let here = strata::take_search_counts();
            for c in rayon::broadcast(|_| strata::take_search_counts())
                .into_iter()
                .chain([here])
            {
                exact += c.filtered_exact;
                graph += c.filtered_graph;
                fallback += c.filtered_fallback;
            }
            eprintln!(
                "filtered search of {} queries: {exact} by an exact scan of the matches, {graph} by the graph, {fallback} by the graph then an exact scan",
                queries.len()
            );
        }
        Ok(results)
    })?;
    let output = a.output.as_ref().filter(|p| !crate::input::is_stdio(p));
    match output {
        Some(p)
            if p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("ivecs")) =>
        {
            let rows: Result<Vec<Vec<u32>>, String> = results
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|n| {
                            u32::try_from(n.id).map_err(|_| {
                                format!("id {} does not fit in .ivecs (i32); use JSON output", n.id)
                            })
                        })
                        .collect()
                })
                .collect();
            dataset::write_ivecs(p, &rows?)?;
        }
        out => {
            let mut w: Box<dyn Write> = match out {
                Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            for (qi, r) in results.iter().enumerate() {
                let ids: Vec<u64> = r.iter().map(|n| n.id).collect();
                let dists: Vec<f32> = r.iter().map(|n| n.distance).collect();
                writeln!(
                    w,
                    "{}",
                    serde_json::json!({ "query": qi, "ids": ids, "distances": dists })
                )?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// `--radius`: one range search per query, as JSON lines.
fn range(
    a: &Args,
    index: &Index,
    queries: &dataset::Vectors,
    radius: f32,
    params: &SearchParams,
    pool: &rayon::ThreadPool,
) -> CliResult {
    let out = a.output.as_ref().filter(|p| !crate::input::is_stdio(p));
    if out.is_some_and(|p| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ivecs"))
    }) {
        return Err("--radius writes JSON lines (hit counts vary per query), not .ivecs".into());
    }
    let mut w: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    // In parallel on the pool of --threads, a chunk of queries at a time,
    // written in query order: memory holds one chunk's hits.
    const CHUNK: usize = 256;
    let rows: Vec<&[f32]> = queries.rows().collect();
    for (c, chunk) in rows.chunks(CHUNK).enumerate() {
        let found: Vec<strata::RangeHits> = pool.install(|| {
            chunk
                .par_iter()
                .map(|q| index.search_range(q, radius, params))
                .collect::<strata::Result<_>>()
        })?;
        for (i, hits) in found.iter().enumerate() {
            let ids: Vec<u64> = hits.neighbors.iter().map(|n| n.id).collect();
            let dists: Vec<f32> = hits.neighbors.iter().map(|n| n.distance).collect();
            writeln!(
                w,
                "{}",
                serde_json::json!({ "query": c * CHUNK + i, "ids": ids, "distances": dists, "truncated": hits.truncated })
            )?;
        }
    }
    w.flush()?;
    Ok(())
}
