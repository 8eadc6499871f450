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
    /// `search_batch` on `threads_mt` threads.
    pub qps_mt: f64,
    pub threads_mt: usize,
    pub p50_us: f64,
    pub p99_us: f64,
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
    /// Distances computed per query in the single-thread pass.
    pub distances_per_query: f64,
    /// With a filter, the fraction of the single-thread pass's queries
    /// answered by an exact scan of the matches, by the graph, and by the
    /// graph finished with the scan (see `strata::filter`).
    pub filtered_paths: [f64; 3],
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
    let start = Instant::now();
    let batch_mt = pool.install(|| index.search_batch(queries, k, params))?;
    let multi = start.elapsed().as_secs_f64();
    let io3 = strata::io::io_stats();
    lat.sort_by(f64::total_cmp);
    let direct_1t = (io1.direct_rows - io0.direct_rows) as f64;
    Ok(EvalRow {
        k,
        ef: params.ef,
        oversample: params.oversample,
        rescore: params.rescore,
        recall: recall(&results, truth, k.min(index.len())),
        qps_1t: nq as f64 / single,
        qps_batch_1t: nq as f64 / batch_single,
        qps_mt: nq as f64 / multi,
        threads_mt: pool.current_num_threads(),
        p50_us: percentile(&lat, 0.5),
        p99_us: percentile(&lat, 0.99),
        queries: nq,
        direct_reads_per_query: direct_1t / nq as f64,
        direct_reads_per_s_1t: direct_1t / single,
        mapped_rows_per_query: (io1.mapped_rows - io0.mapped_rows) as f64 / nq as f64,
        cached_rows_per_query: (io1.cached_rows - io0.cached_rows) as f64 / nq as f64,
        direct_reads_per_s_batch_1t: (io2.direct_rows - io1.direct_rows) as f64 / batch_single,
        direct_reads_per_s_mt: (io3.direct_rows - io2.direct_rows) as f64 / multi,
        batch_matches: batch_1t == results && batch_mt == results,
        ef_used: params.ef_for(k),
        hops_per_query: counts.hops as f64 / nq as f64,
        distances_per_query: counts.distances as f64 / nq as f64,
        filtered_paths: [
            counts.filtered_exact as f64 / nq as f64,
            counts.filtered_graph as f64 / nq as f64,
            counts.filtered_fallback as f64 / nq as f64,
        ],
    })
}

/// Prints rows as an aligned table.
pub fn print_table(rows: &[EvalRow]) {
    println!(
        "{:>5} {:>6} {:>10} {:>9} {:>10} {:>12} {:>10} {:>9} {:>9} {:>7} {:>7}",
        "k",
        "ef",
        "oversample",
        "recall",
        "qps_1t",
        "qps_batch_1t",
        "qps_mt",
        "p50_us",
        "p99_us",
        "hops",
        "dists"
    );
    for r in rows {
        let os = match (r.rescore, r.oversample) {
            (false, _) => "codes".to_string(),
            (true, o) => o.map_or("-".to_string(), |o| format!("{o}")),
        };
        println!(
            "{:>5} {:>6} {:>10} {:>9.4} {:>10.0} {:>12.0} {:>10.0} {:>9.1} {:>9.1} {:>7.1} {:>7.1}",
            r.k,
            r.ef_used,
            os,
            r.recall,
            r.qps_1t,
            r.qps_batch_1t,
            r.qps_mt,
            r.p50_us,
            r.p99_us,
            r.hops_per_query,
            r.distances_per_query
        );
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
