//! `strata groundtruth`: the exact top k of each query, by brute force, as
//! `.ivecs` (the file `eval --groundtruth` reads).

use super::args::QueryFile;
use super::CliResult;
use crate::input::{check_query_dim, is_stdio, read_vectors};
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use strata::dataset::{self, Vectors};
use strata::{Index, Metric};

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["base", "index"])))]
pub struct Args {
    /// Base vectors to scan (.fvecs, .bvecs or .npy; `-` reads .fvecs or
    /// .npy from stdin); the ids written are row numbers, as `build` gives.
    #[arg(long, value_name = "FILE")]
    pub base: Option<PathBuf>,
    /// Or an index directory: its live vectors (the generation and its
    /// append log), by their ids, exactly (`Index::exact_search`).
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    #[command(flatten)]
    pub queries: QueryFile,
    /// Neighbours per query (fewer if the base holds fewer vectors).
    #[arg(long, default_value_t = 100)]
    pub k: usize,
    /// Where to write the ids, nearest first, in the .ivecs layout; `-`
    /// writes them to stdout.
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,
    /// Distance metric: cosine, l2 or ip. With --base it defaults to
    /// cosine (as `build` does); with --index it is the index's own, and
    /// another one is refused.
    #[arg(long)]
    pub metric: Option<Metric>,
    /// Threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Queries per step of the progress bar.
const CHUNK: usize = 256;

pub fn run(a: Args) -> CliResult {
    if a.k == 0 {
        return Err("--k must be at least 1".into());
    }
    strata::check_threads(a.threads)?;
    let query_path = &a.queries.query;
    if a.base.as_deref().is_some_and(is_stdio) && is_stdio(query_path) {
        return Err("--base and --query cannot both read stdin: give one of them as a file".into());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build()?;
    let t = Instant::now();
    let (rows, source, metric, n) = if let Some(dir) = &a.index {
        let index = Index::open(dir)?;
        let metric = index.with_generation(|g| g.metric());
        if let Some(m) = a.metric.filter(|&m| m != metric) {
            return Err(format!(
                "--metric {} but the index in {} was built with {}: its ground truth is by its own metric (leave --metric out)",
                m.name(),
                dir.display(),
                metric.name()
            )
            .into());
        }
        let queries = read_vectors(query_path)?;
        check_query_dim(query_path, &queries, index.dim())?;
        check_not_empty(query_path, &queries)?;
        let n = index.len();
        if n == 0 {
            return Err(format!(
                "--index {} holds no live vectors: there is no ground truth to compute",
                dir.display()
            )
            .into());
        }
        let rows = pool.install(|| by_index(&index, &queries, a.k.min(n), a.quiet))?;
        (rows, dir.display().to_string(), metric, n)
    } else {
        let base_path = a.base.as_deref().expect("clap requires --base or --index");
        let metric = a.metric.unwrap_or(Metric::Cosine);
        let base = read_vectors(base_path)?;
        let queries = read_vectors(query_path)?;
        check_query_dim(query_path, &queries, base.dim)?;
        check_not_empty(query_path, &queries)?;
        if i32::try_from(base.len().saturating_sub(1)).is_err() {
            return Err(format!(
                "--base {} holds {} rows: row numbers above {} do not fit .ivecs",
                base_path.display(),
                base.len(),
                i32::MAX
            )
            .into());
        }
        let n = base.len();
        let rows = pool.install(|| by_scan(&base, &queries, a.k.min(n), metric, a.quiet));
        (rows, base_path.display().to_string(), metric, n)
    };
    let depth = rows.first().map_or(0, Vec::len);
    if depth < a.k {
        eprintln!(
            "warning: --k {} but {source} holds {n} vectors: rows hold {depth} ids",
            a.k
        );
    }
    write(&a.output, &rows)?;
    eprintln!(
        "ground truth of {} queries, top {depth} by {} over {n} vectors of {source}, in {:.2} s; written to {}",
        rows.len(),
        metric.name(),
        t.elapsed().as_secs_f64(),
        if is_stdio(&a.output) {
            "stdout".to_string()
        } else {
            a.output.display().to_string()
        }
    );
    Ok(())
}

fn check_not_empty(path: &Path, queries: &Vectors) -> Result<(), String> {
    if queries.is_empty() {
        return Err(format!("--query {} holds no queries", path.display()));
    }
    Ok(())
}

/// Every query against every base row (`brute_force_knn`, exact distances
/// accumulated in f64), a chunk of queries at a time for the bar.
fn by_scan(
    base: &Vectors,
    queries: &Vectors,
    k: usize,
    metric: Metric,
    quiet: bool,
) -> Vec<Vec<u32>> {
    let distance = match metric {
        Metric::L2 => l2_f64,
        Metric::InnerProduct => ip_f64,
        Metric::Cosine => cos_f64,
    };
    let bar = crate::progress::count_bar(queries.len() as u64, "queries", quiet);
    let mut rows = Vec::with_capacity(queries.len());
    for chunk in queries.data.chunks(CHUNK * queries.dim) {
        let chunk = Vectors {
            dim: queries.dim,
            data: chunk.to_vec(),
        };
        rows.extend(dataset::brute_force_knn(base, &chunk, k, distance));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    rows
}

/// Every query by the index's exact search over its live vectors.
fn by_index(
    index: &Index,
    queries: &Vectors,
    k: usize,
    quiet: bool,
) -> Result<Vec<Vec<u32>>, String> {
    let bar = crate::progress::count_bar(queries.len() as u64, "queries", quiet);
    let mut rows = Vec::with_capacity(queries.len());
    for chunk in queries.data.chunks(CHUNK * queries.dim) {
        let found: Result<Vec<Vec<u32>>, String> = chunk
            .par_chunks(queries.dim)
            .map(|q| {
                let hits = index.exact_search(q, k).map_err(|e| e.to_string())?;
                hits.iter()
                    .map(|n| {
                        u32::try_from(n.id)
                            .ok()
                            .filter(|&id| i32::try_from(id).is_ok())
                            .ok_or_else(|| {
                                format!("id {} does not fit .ivecs (at most {})", n.id, i32::MAX)
                            })
                    })
                    .collect()
            })
            .collect();
        rows.extend(found?);
        bar.inc((chunk.len() / queries.dim) as u64);
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// `rows` as .ivecs into `path`, or to stdout for `-`.
fn write(path: &Path, rows: &[Vec<u32>]) -> CliResult {
    if is_stdio(path) {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        dataset::write_ivecs_to(&mut out, rows, Path::new("<stdout>"))?;
        out.flush().map_err(|e| format!("<stdout>: {e}"))?;
    } else {
        dataset::write_ivecs(path, rows)?;
    }
    Ok(())
}

/// Squared Euclidean distance, accumulated in f64 (the engine's `l2`).
fn l2_f64(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>() as f32
}

/// `1 - <a, b>`, accumulated in f64 (the engine's `ip`).
fn ip_f64(a: &[f32], b: &[f32]) -> f32 {
    (1.0 - a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum::<f64>()) as f32
}

/// `1 - cos(a, b)`, accumulated in f64 (the engine's `cosine`; a zero
/// vector's distance is NaN, which ranks last).
fn cos_f64(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    (1.0 - dot / (na.sqrt() * nb.sqrt())) as f32
}
