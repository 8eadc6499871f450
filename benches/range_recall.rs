//! Range (radius) search on prebuilt indexes: for radii whose exact balls
//! hold about 10, 100 and 1,000 vectors, the recall of the returned set
//! against the exact set within the radius (computed here by brute force in
//! f64 over `--base`, not by the engine), how many came back, and
//! single-thread QPS of `Index::search_range` against the engine's own exact
//! scan (`Index::exact_search_range`) in the same run, interleaved over
//! `--rounds`.
//!
//! ```sh
//! strata build --input ../shared/datasets/npm-minilm/npm-minilm_base.fvecs \
//!     --output /tmp/npm-int8 --metric cosine --quantization int8
//! cargo bench -p strata-benches --bench range_recall -- \
//!     --base ../shared/datasets/npm-minilm/npm-minilm_base.fvecs \
//!     --queries ../shared/datasets/npm-minilm/npm-minilm_query.fvecs \
//!     --index /tmp/npm-int8 [--index DIR ...] [--sizes 10,100,1000] \
//!     [--n-queries 200] [--rounds 3] [--max-results 10000]
//! ```
//!
//! The radius for a size `s` is the median, over the queries, of each
//! query's `s`-th smallest exact distance, so about half the balls hold
//! more than `s` and half fewer (`exact` and `returned` are means, which
//! the few queries in dense regions pull far above `s`; `median` is the
//! median returned). The indexes must have been built from
//! `--base` with row numbers as ids (the CLI's default).

#[path = "bench_args.rs"]
mod bench_args;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;
use strata::dataset::{self, Vectors};
use strata::{Index, Metric, SearchParams};

struct Args {
    base: PathBuf,
    queries: PathBuf,
    indexes: Vec<PathBuf>,
    sizes: Vec<usize>,
    n_queries: usize,
    rounds: usize,
    max_results: usize,
}

fn list(flag: &str, s: &str) -> Vec<usize> {
    s.split(',')
        .map(|x| bench_args::num(flag, x.trim()))
        .collect()
}

fn args() -> Args {
    let mut a = Args {
        base: PathBuf::new(),
        queries: PathBuf::new(),
        indexes: Vec::new(),
        sizes: vec![10, 100, 1_000],
        n_queries: 200,
        rounds: 3,
        max_results: strata::DEFAULT_MAX_RESULTS,
    };
    bench_args::parse(|flag, v| {
        match flag {
            "--base" => a.base = v.into(),
            "--queries" => a.queries = v.into(),
            "--index" => a.indexes.push(v.into()),
            "--sizes" => a.sizes = list(flag, v),
            "--n-queries" => a.n_queries = bench_args::num(flag, v),
            "--rounds" => a.rounds = bench_args::num(flag, v),
            "--max-results" => a.max_results = bench_args::num(flag, v),
            _ => return false,
        }
        true
    });
    a
}

/// The metric's distance in f64, in the units `search` returns.
fn distance(metric: Metric, q: &[f32], x: &[f32]) -> f64 {
    let dot: f64 = q.iter().zip(x).map(|(a, b)| *a as f64 * *b as f64).sum();
    match metric {
        Metric::L2 => q
            .iter()
            .zip(x)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum(),
        Metric::InnerProduct => 1.0 - dot,
        Metric::Cosine => {
            let nq: f64 = q.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            let nx: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>().sqrt();
            if nq == 0.0 || nx == 0.0 {
                1.0
            } else {
                1.0 - dot / (nq * nx)
            }
        }
    }
}

/// Every query's exact distances to every base row, ascending, with ids.
fn exact_sorted(metric: Metric, base: &Vectors, queries: &Vectors) -> Vec<Vec<(f64, u64)>> {
    queries
        .rows()
        .map(|q| {
            let mut d: Vec<(f64, u64)> = base
                .rows()
                .enumerate()
                .map(|(i, x)| (distance(metric, q, x), i as u64))
                .collect();
            d.sort_by(|a, b| a.0.total_cmp(&b.0));
            d
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Queries per second of `f` over every query, one thread.
fn qps(queries: &Vectors, mut f: impl FnMut(&[f32])) -> f64 {
    let t = Instant::now();
    for q in queries.rows() {
        f(q);
    }
    queries.len() as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let a = args();
    if a.base.as_os_str().is_empty() || a.indexes.is_empty() {
        eprintln!(
            "usage: --base FILE --queries FILE --index DIR [--index DIR ...] \
             [--sizes 10,100,1000] [--n-queries 200] [--rounds 3] [--max-results N]"
        );
        return; // `cargo bench` without arguments: nothing to measure
    }
    let base = dataset::read_vectors(&a.base).expect("read --base");
    let mut queries = dataset::read_vectors(&a.queries).expect("read --queries");
    queries.data.truncate(a.n_queries * queries.dim);
    let indexes: Vec<(String, Index)> = a
        .indexes
        .iter()
        .map(|d| {
            (
                d.display().to_string(),
                Index::open(d).expect("open --index"),
            )
        })
        .collect();
    let metric = indexes[0].1.with_generation(|g| g.info().metric);
    let exact = exact_sorted(metric, &base, &queries);
    let params = SearchParams {
        max_results: a.max_results,
        ..Default::default()
    };
    println!(
        "{} base rows, {} queries, {metric:?}; radius = median s-th exact distance; one thread; \
         QPS best of {} interleaved rounds",
        base.len(),
        queries.len(),
        a.rounds
    );
    println!(
        "{:<24} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6} {:>10} {:>10} {:>7}",
        "index",
        "size",
        "radius",
        "exact",
        "returned",
        "median",
        "recall",
        "trunc",
        "range QPS",
        "exact QPS",
        "ratio"
    );
    for &size in &a.sizes {
        let size = size.min(base.len());
        let radius = median(exact.iter().map(|d| d[size - 1].0).collect());
        let truth: Vec<HashSet<u64>> = exact
            .iter()
            .map(|d| {
                d.iter()
                    .take_while(|(x, _)| *x <= radius)
                    .map(|(_, id)| *id)
                    .collect()
            })
            .collect();
        let wanted: usize = truth.iter().map(|t| t.len().min(a.max_results)).sum();
        let r32 = radius as f32;
        for (name, index) in &indexes {
            let (mut hits, mut returned, mut truncated) = (0usize, 0usize, 0usize);
            let mut counts = Vec::with_capacity(queries.len());
            for (qi, q) in queries.rows().enumerate() {
                let got = index.search_range(q, r32, &params).expect("search_range");
                returned += got.neighbors.len();
                counts.push(got.neighbors.len() as f64);
                truncated += got.truncated as usize;
                hits += got
                    .neighbors
                    .iter()
                    .filter(|n| truth[qi].contains(&n.id))
                    .count();
            }
            let (mut best_range, mut best_exact) = (0f64, 0f64);
            for _ in 0..a.rounds {
                best_range = best_range.max(qps(&queries, |q| {
                    std::hint::black_box(index.search_range(q, r32, &params).ok());
                }));
                best_exact = best_exact.max(qps(&queries, |q| {
                    std::hint::black_box(index.exact_search_range(q, r32, a.max_results).ok());
                }));
            }
            println!(
                "{:<24} {:>6} {:>9.5} {:>9.1} {:>9.1} {:>8.0} {:>8.4} {:>6} {:>10.0} {:>10.0} {:>6.1}x",
                name,
                size,
                radius,
                wanted as f64 / queries.len() as f64,
                returned as f64 / queries.len() as f64,
                median(counts),
                hits as f64 / wanted.max(1) as f64,
                truncated,
                best_range,
                best_exact,
                best_range / best_exact
            );
        }
    }
}
