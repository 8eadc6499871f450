//! `strata demo`: the main job end to end on generated data.

use super::{human_bytes, CliResult};
use crate::measure::{exact_truth, measure, print_table};
use crate::progress::BuildBar;
use std::path::PathBuf;
use std::time::Instant;
use strata::{dataset, BuildParams, Generation, IndexBuilder, Metric, Quantization, SearchParams};

#[derive(clap::Args)]
pub struct Args {
    /// Number of generated base vectors.
    #[arg(long, default_value_t = 200_000)]
    pub n: usize,
    /// Dimension of the generated vectors.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Number of queries (drawn from the same distribution, not in the base).
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// Beam widths to evaluate.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128")]
    pub ef: Vec<usize>,
    /// Where to write the index (default: a temporary directory, removed after).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Build threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

pub fn run(a: Args) -> CliResult {
    let k = 10;
    if a.queries == 0 {
        return Err("--queries 0 leaves nothing to measure: give at least 1".into());
    }
    if a.n == 0 {
        return Err("--n 0: an index needs at least one vector".into());
    }
    strata::check_threads(a.threads)?;
    if let Some(out) = &a.out {
        super::build::check_out(out)?;
    }
    println!("strata demo: {} clustered vectors of dim {} (cosine), {} queries, M=16, ef_construction=200, int8 codes", a.n, a.dim, a.queries);
    let t = Instant::now();
    let all = dataset::clustered(a.n + a.queries, a.dim, (a.n / 500).max(8), 0.35, 2026);
    let (base, queries) = all.data.split_at(a.n * a.dim);
    println!("generated data in {:.2} s", t.elapsed().as_secs_f64());
    let params = BuildParams {
        metric: Metric::Cosine,
        quantization: Quantization::Int8,
        threads: a.threads,
        seed: Some(2026),
        ..Default::default()
    };
    let mut builder = IndexBuilder::new(a.dim, params)?;
    builder.add_rows(base)?;
    let bar = BuildBar::new(a.n, false);
    let t = Instant::now();
    let built = builder.build_with_progress(&|p| bar.update(p))?;
    bar.finish();
    let build_s = t.elapsed().as_secs_f64();
    let tmp;
    let dir = match &a.out {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    built.write(&dir)?;
    drop(built);
    let t = Instant::now();
    let index = Generation::open(&dir)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let info = index.info();
    println!(
        "built in {build_s:.2} s on {} threads; opened in {open_ms:.2} ms",
        rayon::current_num_threads().min(if a.threads == 0 {
            usize::MAX
        } else {
            a.threads
        })
    );
    println!(
        "graph file {} ({:.0} B/vector, RAM-resident), vectors file {} (read only to rescore)",
        human_bytes(info.graph_file_bytes),
        info.graph_file_bytes as f64 / a.n as f64,
        human_bytes(info.vectors_file_bytes)
    );
    let t = Instant::now();
    let truth = exact_truth(&index, queries, k)?;
    println!(
        "exact ground truth by brute force in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let pool = rayon::ThreadPoolBuilder::new().build()?;
    let mut rows = Vec::new();
    for &ef in &a.ef {
        rows.push(measure(
            &index,
            queries,
            &truth,
            k,
            &SearchParams::with_ef(ef),
            &pool,
            true,
        )?);
    }
    print_table(&rows);
    if let Some(best) = rows.iter().find(|r| r.recall >= 0.95) {
        println!(
            "recall@10 >= 0.95 at ef={} with {:.0} queries/s on one thread",
            best.ef, best.qps_1t
        );
    }
    Ok(())
}
