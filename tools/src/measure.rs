//! Recall, throughput and latency measurement shared by `eval` and `demo`.

use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;
use std::time::Instant;
use strata::{Generation, Index, Neighbor, SearchParams};

/// What `eval` and `demo` measure: a plain index, or one with its log.
pub trait Searcher: Sync {
    /// Dimension of the vectors.
    fn dim(&self) -> usize;
    /// Number of (live) vectors: no search can return more.
    fn len(&self) -> usize;
    /// Approximate search.
    fn search(&self, q: &[f32], k: usize, p: &SearchParams) -> strata::Result<Vec<Neighbor>>;
    /// Approximate search of many queries (rows of `qs`) on the current
    /// rayon pool, pipelined.
    fn search_batch(
        &self,
        qs: &[f32],
        k: usize,
        p: &SearchParams,
    ) -> strata::Result<Vec<Vec<Neighbor>>>;
    /// Exact search (ground truth).
    fn exact(&self, q: &[f32], k: usize) -> strata::Result<Vec<Neighbor>>;
}

impl Searcher for Generation {
    fn dim(&self) -> usize {
        Generation::dim(self)
    }
    fn len(&self) -> usize {
        Generation::len(self)
    }
    fn search(&self, q: &[f32], k: usize, p: &SearchParams) -> strata::Result<Vec<Neighbor>> {
        Generation::search(self, q, k, p)
    }
    fn search_batch(
        &self,
        qs: &[f32],
        k: usize,
        p: &SearchParams,
    ) -> strata::Result<Vec<Vec<Neighbor>>> {
        Generation::search_batch(self, strata::Queries::new(qs, self.dim())?, k, p)
    }
    fn exact(&self, q: &[f32], k: usize) -> strata::Result<Vec<Neighbor>> {
        Generation::exact_search(self, q, k)
    }
}

impl Searcher for Index {
    fn dim(&self) -> usize {
        Index::dim(self)
    }
    fn len(&self) -> usize {
        Index::len(self)
    }
    fn search(&self, q: &[f32], k: usize, p: &SearchParams) -> strata::Result<Vec<Neighbor>> {
        Index::search(self, q, k, p)
    }
    fn search_batch(
        &self,
        qs: &[f32],
        k: usize,
        p: &SearchParams,
    ) -> strata::Result<Vec<Vec<Neighbor>>> {
        Index::search_batch(self, strata::Queries::new(qs, self.dim())?, k, p)
    }
    fn exact(&self, q: &[f32], k: usize) -> strata::Result<Vec<Neighbor>> {
        Index::exact_search(self, q, k)
    }
}

/// One row of an evaluation sweep.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRow {
    pub k: usize,
    pub ef: usize,
    pub oversample: Option<f32>,
    /// False: answered from the codes alone (`--no-rescore`).
    pub rescore: bool,
    pub recall: f64,
    /// Queries one at a time, one thread (per-query latency measured).
    pub qps_1t: f64,
    /// `search_batch` on one thread (rescoring reads pipelined).
    pub qps_batch_1t: f64,
    /// `search_batch` on `threads_mt` threads (the last of the thread
    /// counts measured, see `qps_threads`).
    pub qps_mt: f64,
    pub threads_mt: usize,
    /// `search_batch` QPS on each thread count measured, in the order given.
    pub qps_threads: Vec<ThreadsQps>,
    /// Latency percentiles of the single-thread, one-at-a-time pass (µs).
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub queries: usize,
    /// Rows read by direct reads per query in the single-thread pass.
    pub direct_reads_per_query: f64,
    /// Direct row reads per second in the single-thread pass.
    pub direct_reads_per_s_1t: f64,
    /// Rows read through the mapping per query in the single-thread pass.
    pub mapped_rows_per_query: f64,
    /// Rows served by the row cache per query in the single-thread pass.
    pub cached_rows_per_query: f64,
    /// Direct row reads per second in the one-thread batch pass.
    pub direct_reads_per_s_batch_1t: f64,
    /// Direct row reads per second in the multi-thread pass.
    pub direct_reads_per_s_mt: f64,
    /// Whether the batch passes returned the same answers as the
    /// query-at-a-time pass.
    pub batch_matches: bool,
    /// The beam width the searches used (the automatic one with
    /// `--auto-ef`, and never below k).
    pub ef_used: usize,
    /// Nodes expanded per query in the single-thread pass
    /// ([`strata::take_search_counts`]).
    pub hops_per_query: f64,
    /// Distances computed per query in the single-thread pass's graph
    /// traversal (codes or vectors).
    pub distances_per_query: f64,
    /// Distances on codes per query in the single-thread pass: the
    /// traversal of a quantized index and the second level's re-ranking
    /// ([`strata::SearchCounts::code_distances`]).
    pub code_distances_per_query: f64,
    /// Full-precision (float32) distances per query in the single-thread
    /// pass: rescoring, the traversal of a `--quantization none` index, and
    /// exact scans ([`strata::SearchCounts::full_distances`]).
    pub full_distances_per_query: f64,
    /// Candidates rescored with their float32 rows per query (part of
    /// `full_distances_per_query`).
    pub rescored_per_query: f64,
    /// Nodes marked visited by the level-0 beam per query
    /// ([`strata::SearchCounts::visited`]).
    pub visited_per_query: f64,
    /// With a filter, the fraction of the single-thread pass's queries
    /// answered by an exact scan of the matches, by the graph, and by the
    /// graph finished with the scan (see `strata::filter`).
    pub filtered_paths: [f64; 3],
}

/// Throughput of `search_batch` on one thread count.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadsQps {
    /// Threads of the pool (0 on the command line resolved to all cores).
    pub threads: usize,
    /// Queries per second.
    pub qps: f64,
    /// Direct row reads per second.
    pub direct_reads_per_s: f64,
}

/// Recall@k of `results` against ground-truth ids (first `k` of each row).
/// Callers pass `k = min(k, n)` for an index of `n` vectors: no search can
/// return more than `n` neighbours.
pub fn recall(results: &[Vec<Neighbor>], truth: &[Vec<u64>], k: usize) -> f64 {
    let mut hit = 0usize;
    for (r, t) in results.iter().zip(truth) {
        let want: HashSet<u64> = t.iter().take(k).copied().collect();
        hit += r.iter().take(k).filter(|n| want.contains(&n.id)).count();
    }
    hit as f64 / (results.len() * k).max(1) as f64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Measures one setting: a warm-up pass, a timed single-thread pass
/// (per-query latency), a timed `search_batch` on one thread and one on
/// `pool`.
pub fn measure<S: Searcher>(
    index: &S,
    queries: &[f32],
    truth: &[Vec<u64>],
    k: usize,
    params: &SearchParams,
    pool: &rayon::ThreadPool,
    warm_up: bool,
) -> strata::Result<EvalRow> {
    measure_threads(
        index,
        queries,
        truth,
        k,
        params,
        std::slice::from_ref(pool),
        warm_up,
    )
}

/// [`measure`] with one timed `search_batch` pass per pool of `pools`
/// (`EvalRow::qps_threads`, in order; `qps_mt` and `threads_mt` are the
/// last pool's; a one-thread pool reuses the one-thread batch pass).
/// Errors if `pools` is empty.
pub fn measure_threads<S: Searcher>(
    index: &S,
    queries: &[f32],
    truth: &[Vec<u64>],
    k: usize,
    params: &SearchParams,
    pools: &[rayon::ThreadPool],
    warm_up: bool,
) -> strata::Result<EvalRow> {
    if pools.is_empty() {
        return Err(strata::Error::InvalidParameter {
            name: "threads",
            reason: "no thread count to measure: give at least one".into(),
        });
    }
    let dim = index.dim();
    let nq = queries.len() / dim;
    if nq == 0 {
        return Err(strata::Error::InvalidParameter {
            name: "queries",
            reason: "no queries to measure (QPS and recall of zero queries are meaningless)".into(),
        });
    }
    if warm_up {
        for q in queries.chunks_exact(dim) {
            index.search(q, k, params)?;
        }
    }
    let io0 = strata::io::io_stats();
    strata::take_search_counts();
    let mut lat = Vec::with_capacity(nq);
    let mut results = Vec::with_capacity(nq);
    let start = Instant::now();
    for q in queries.chunks_exact(dim) {
        let t = Instant::now();
        let r = index.search(q, k, params)?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        results.push(r);
    }
    let single = start.elapsed().as_secs_f64();
    let io1 = strata::io::io_stats();
    let counts = strata::take_search_counts();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| strata::Error::InvalidParameter {
            name: "threads",
            reason: format!("cannot start a search thread: {e}"),
        })?;
    let start = Instant::now();
    let batch_1t = one.install(|| index.search_batch(queries, k, params))?;
    let batch_single = start.elapsed().as_secs_f64();
    let io2 = strata::io::io_stats();
    let mut batch_matches = batch_1t == results;
    let mut qps_threads = Vec::with_capacity(pools.len());
    for pool in pools {
        if pool.current_num_threads() == 1 {
            // The one-thread batch pass above measured this already.
            qps_threads.push(ThreadsQps {
                threads: 1,
                qps: nq as f64 / batch_single,
                direct_reads_per_s: (io2.direct_rows - io1.direct_rows) as f64 / batch_single,
            });
            continue;
        }
        let io_before = strata::io::io_stats();
        let start = Instant::now();
        let batch = pool.install(|| index.search_batch(queries, k, params))?;
        let secs = start.elapsed().as_secs_f64();
        let io_after = strata::io::io_stats();
        batch_matches &= batch == results;
        qps_threads.push(ThreadsQps {
            threads: pool.current_num_threads(),
            qps: nq as f64 / secs,
            direct_reads_per_s: (io_after.direct_rows - io_before.direct_rows) as f64 / secs,
        });
    }
    let last = qps_threads[qps_threads.len() - 1].clone();
    lat.sort_by(f64::total_cmp);
    let per_query = |n: u64| n as f64 / nq as f64;
    let direct_1t = (io1.direct_rows - io0.direct_rows) as f64;
    Ok(EvalRow {
        k,
        ef: params.ef,
        oversample: params.oversample,
        rescore: params.rescore,
        recall: recall(&results, truth, k.min(index.len())),
        qps_1t: nq as f64 / single,
        qps_batch_1t: nq as f64 / batch_single,
        qps_mt: last.qps,
        threads_mt: last.threads,
        qps_threads,
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        p999_us: percentile(&lat, 0.999),
        queries: nq,
        direct_reads_per_query: direct_1t / nq as f64,
        direct_reads_per_s_1t: direct_1t / single,
        mapped_rows_per_query: (io1.mapped_rows - io0.mapped_rows) as f64 / nq as f64,
        cached_rows_per_query: (io1.cached_rows - io0.cached_rows) as f64 / nq as f64,
        direct_reads_per_s_batch_1t: (io2.direct_rows - io1.direct_rows) as f64 / batch_single,
        direct_reads_per_s_mt: last.direct_reads_per_s,
        batch_matches,
        ef_used: params.ef_for(k),
        hops_per_query: per_query(counts.hops),
        distances_per_query: per_query(counts.distances),
        code_distances_per_query: per_query(counts.code_distances),
        full_distances_per_query: per_query(counts.full_distances),
        rescored_per_query: per_query(counts.rescored),
        visited_per_query: per_query(counts.visited),
        filtered_paths: [
            counts.filtered_exact as f64 / nq as f64,
            counts.filtered_graph as f64 / nq as f64,
            counts.filtered_fallback as f64 / nq as f64,
        ],
    })
}

/// One cell of the table and CSV.
enum Cell {
    Int(usize),
    /// A value and the decimals the table shows (CSV shows all).
    Float(f64, usize),
    Text(String),
}

/// A column of the table and CSV: header, and the cell of a row.
type Column = (String, Box<dyn Fn(&EvalRow) -> Cell>);

/// The `oversample` column: `codes` without rescoring, `-` for the
/// default (rescore all max(k, ef) candidates), else the factor.
fn oversample_label(r: &EvalRow) -> String {
    match (r.rescore, r.oversample) {
        (false, _) => "codes".to_string(),
        (true, o) => o.map_or("-".to_string(), |o| format!("{o}")),
    }
}

/// The columns of `rows` (thread counts from the first row: a sweep
/// measures the same ones for every setting).
fn columns(rows: &[EvalRow]) -> Vec<Column> {
    let mut cols: Vec<Column> = vec![
        ("k".into(), Box::new(|r| Cell::Int(r.k))),
        ("ef".into(), Box::new(|r| Cell::Int(r.ef_used))),
        (
            "oversample".into(),
            Box::new(|r| Cell::Text(oversample_label(r))),
        ),
        ("recall".into(), Box::new(|r| Cell::Float(r.recall, 4))),
        ("qps_1t".into(), Box::new(|r| Cell::Float(r.qps_1t, 0))),
        (
            "qps_batch_1t".into(),
            Box::new(|r| Cell::Float(r.qps_batch_1t, 0)),
        ),
    ];
    let threads: Vec<usize> = rows
        .first()
        .map(|r| r.qps_threads.iter().map(|t| t.threads).collect())
        .unwrap_or_default();
    for (i, t) in threads.into_iter().enumerate() {
        if t == 1 {
            // That is `qps_batch_1t`.
            continue;
        }
        cols.push((
            format!("qps_batch_{t}t"),
            Box::new(move |r| Cell::Float(r.qps_threads.get(i).map_or(f64::NAN, |t| t.qps), 0)),
        ));
    }
    let rest: Vec<Column> = vec![
        ("p50_us".into(), Box::new(|r| Cell::Float(r.p50_us, 1))),
        ("p99_us".into(), Box::new(|r| Cell::Float(r.p99_us, 1))),
        ("p999_us".into(), Box::new(|r| Cell::Float(r.p999_us, 1))),
        (
            "hops".into(),
            Box::new(|r| Cell::Float(r.hops_per_query, 1)),
        ),
        (
            "visited".into(),
            Box::new(|r| Cell::Float(r.visited_per_query, 1)),
        ),
        (
            "code_dists".into(),
            Box::new(|r| Cell::Float(r.code_distances_per_query, 1)),
        ),
        (
            "full_dists".into(),
            Box::new(|r| Cell::Float(r.full_distances_per_query, 1)),
        ),
        (
            "rescored".into(),
            Box::new(|r| Cell::Float(r.rescored_per_query, 1)),
        ),
    ];
    cols.extend(rest);
    cols
}

/// Prints rows as an aligned table: per setting, recall, QPS (one query
/// at a time on one thread, then `search_batch` on one thread and on each
/// thread count measured), latency percentiles, and per query the hops,
/// visited nodes, code distances, full-precision distances and rescored
/// rows.
pub fn print_table(rows: &[EvalRow]) {
    let cols = columns(rows);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|(_, f)| match f(r) {
                    Cell::Int(v) => v.to_string(),
                    Cell::Float(v, d) => format!("{v:.d$}"),
                    Cell::Text(t) => t,
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let parts: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:>w$}"))
            .collect();
        println!("{}", parts.join(" "));
    };
    line(cols.iter().map(|(h, _)| h.as_str()).collect());
    for row in &cells {
        line(row.iter().map(String::as_str).collect());
    }
    // With a filter: which plan answered (the share of queries per path).
    if let Some(r) = rows
        .iter()
        .find(|r| r.filtered_paths.iter().any(|&p| p > 0.0))
    {
        let [exact, graph, fallback] = r.filtered_paths;
        println!(
            "filtered paths (ef {}): exact scan {:.0} %, graph {:.0} %, graph then exact {:.0} %",
            r.ef_used,
            100.0 * exact,
            100.0 * graph,
            100.0 * fallback
        );
    }
}

/// `rows` as CSV: a header row, then one row per setting (the table's
/// columns at full precision, `oversample` empty for the default and
/// `codes` without rescoring, plus `rescore`, `queries` and the traversal's
/// `distances`), `quantization` first on every row.
pub fn write_csv(
    out: &mut impl std::io::Write,
    quantization: &str,
    rows: &[EvalRow],
) -> std::io::Result<()> {
    let mut cols = columns(rows);
    cols.push((
        "rescore".into(),
        Box::new(|r| Cell::Text(r.rescore.to_string())),
    ));
    cols.push(("queries".into(), Box::new(|r| Cell::Int(r.queries))));
    cols.push((
        "distances".into(),
        Box::new(|r| Cell::Float(r.distances_per_query, 1)),
    ));
    let header: Vec<&str> = cols.iter().map(|(h, _)| h.as_str()).collect();
    writeln!(out, "quantization,{}", header.join(","))?;
    for r in rows {
        let cells: Vec<String> = cols
            .iter()
            .map(|(name, f)| match f(r) {
                Cell::Int(v) => v.to_string(),
                Cell::Float(v, _) => format!("{v}"),
                Cell::Text(t) if name == "oversample" && t == "-" => String::new(),
                Cell::Text(t) => t,
            })
            .collect();
        writeln!(out, "{},{}", csv_field(quantization), cells.join(","))?;
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Exact ground truth (ids) by brute force over the index's own vectors file.
pub fn exact_truth<S: Searcher>(
    index: &S,
    queries: &[f32],
    k: usize,
) -> strata::Result<Vec<Vec<u64>>> {
    queries
        .par_chunks_exact(index.dim())
        .map(|q| Ok(index.exact(q, k)?.into_iter().map(|n| n.id).collect()))
        .collect()
}

/// `(memory.limit_in_bytes, memory.usage_in_bytes)` of this process's
/// cgroup-v1 memory controller; zeros where unavailable.
pub fn cgroup_memory() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/self/cgroup") else {
        return (0, 0);
    };
    let Some(path) = s.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrl, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    }) else {
        return (0, 0);
    };
    let read = |name: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/memory{path}/{name}"))
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (read("memory.limit_in_bytes"), read("memory.usage_in_bytes"))
}

/// Resident memory of this process from /proc/self/status, in KiB:
/// `(VmRSS, RssAnon, RssFile)`; zeros where unavailable.
pub fn rss_kb() -> (u64, u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0, 0);
    };
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

/// Resident KiB of this process's mappings of files whose names end with
/// `suffix` (from /proc/self/smaps); 0 where unavailable.
pub fn mapped_rss_kb(suffix: &str) -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut total = 0;
    let mut inside = false;
    for line in s.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line
                .split_whitespace()
                .nth(5)
                .is_some_and(|p| p.ends_with(suffix));
        } else if inside && first == "Rss:" {
            total += parts
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}
