//! Reachability and self-search of built graphs: how many nodes no search can
//! reach, and how many rows a search for their own vector misses, per thread
//! count and seed, with build time. Also measures indexes built elsewhere
//! (e.g. by an older strata) for a before/after comparison.
//!
//! ```sh
//! cargo bench -p strata-benches --bench reachability -- \
//!     --base ../shared/datasets/npm-minilm/npm-minilm_base.fvecs \
//!     --threads 1,2 --seeds 1,2,3 [--n 20000] [--index DIR ...]
//! ```
//!
//! Every row is a query; a row is "missed" at `ef` when a search for it
//! (k = 10) does not return its own id. Distances are exact (rescored), so a
//! row whose vector another row repeats exactly could tie: the count of such
//! exact-duplicate rows is printed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;
use strata::dataset::{self, Vectors};
use strata::{BuildParams, Generation, IndexBuilder, Metric, Quantization, SearchParams};

const EFS: [usize; 4] = [16, 32, 64, 128];

struct Args {
    base: PathBuf,
    n: Option<usize>,
    threads: Vec<usize>,
    seeds: Vec<u64>,
    indexes: Vec<PathBuf>,
    metric: Metric,
}

fn list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',').filter_map(|x| x.trim().parse().ok()).collect()
}

fn args() -> Args {
    let mut a = Args {
        base: PathBuf::new(),
        n: None,
        threads: vec![1, 2],
        seeds: vec![1],
        indexes: Vec::new(),
        metric: Metric::Cosine,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--base" => a.base = val().into(),
            "--n" => a.n = val().parse().ok(),
            "--threads" => a.threads = list(&val()),
            "--seeds" => a.seeds = list(&val()),
            "--index" => a.indexes.push(val().into()),
            "--metric" => {
                a.metric = match val().as_str() {
                    "l2" => Metric::L2,
                    "ip" => Metric::InnerProduct,
                    _ => Metric::Cosine,
                }
            }
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn report(
    label: &str,
    build_s: Option<f64>,
    repaired: Option<usize>,
    index: &Generation,
    data: &Vectors,
) {
    let r = index.reachability();
    let unreachable: usize = r.unreachable.iter().sum();
    let misses: Vec<usize> = EFS
        .iter()
        .map(|&ef| {
            let sp = SearchParams::with_ef(ef);
            (0..data.len())
                .filter(|&i| {
                    let hits = index.search(data.row(i), 10, &sp).unwrap_or_default();
                    !hits.iter().any(|h| h.id == i as u64)
                })
                .count()
        })
        .collect();
    println!(
        "{label:<28} {:>8} {:>9} {:>11} {:>9} {}",
        build_s.map_or("-".into(), |s| format!("{s:.2}")),
        repaired.map_or("-".into(), |r| r.to_string()),
        unreachable,
        r.no_in_links,
        misses.iter().map(|m| format!("{m:>7}")).collect::<String>()
    );
}

fn main() {
    let a = args();
    if a.base.as_os_str().is_empty() {
        eprintln!(
            "usage: --base FILE.fvecs [--n N] [--threads 1,2] [--seeds 1,2,3] [--index DIR ...]"
        );
        return; // `cargo bench` without arguments: nothing to measure
    }
    let mut data = dataset::read_vectors(&a.base).expect("read --base");
    if let Some(n) = a.n {
        data.data.truncate(n * data.dim);
    }
    let distinct: HashSet<Vec<u32>> = data
        .rows()
        .map(|r| r.iter().map(|x| x.to_bits()).collect())
        .collect();
    println!(
        "{} rows of dim {} ({} exact-duplicate rows); misses = rows a search for themselves does not return (k = 10)",
        data.len(),
        data.dim,
        data.len() - distinct.len()
    );
    println!(
        "{:<28} {:>8} {:>9} {:>11} {:>9} {}",
        "index",
        "build s",
        "repaired",
        "unreachable",
        "no in-ln",
        EFS.iter()
            .map(|ef| format!("{:>7}", format!("ef{ef}")))
            .collect::<String>()
    );
    for dir in &a.indexes {
        let index = Generation::open(dir).expect("open --index");
        report(&dir.display().to_string(), None, None, &index, &data);
    }
    for &seed in &a.seeds {
        for &threads in &a.threads {
            let params = BuildParams {
                metric: a.metric,
                quantization: Quantization::Int8,
                seed: Some(seed),
                threads,
                ..Default::default()
            };
            let mut b = IndexBuilder::new(data.dim, params).expect("params");
            b.add_rows(&data.data).expect("rows");
            let t = Instant::now();
            let built = b.build().expect("build");
            let secs = t.elapsed().as_secs_f64();
            let repaired = built.repaired().iter().sum();
            let index = built.into_index().expect("index");
            report(
                &format!("built t{threads} seed {seed}"),
                Some(secs),
                Some(repaired),
                &index,
                &data,
            );
        }
    }
}
