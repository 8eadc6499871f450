//! Insert throughput of a writer, per durability mode, one operation at a
//! time (`Writer::insert`) or in batches (`Writer::insert_batch`), graph
//! insertion included: an insert returns once the chunk it completed is
//! linked into the overlay's graph (only the last, partial chunk of 63 rows
//! at most is left to the exact scan). Builds an index from the first
//! `--initial` rows once, copies it for every mode, inserts the next
//! `--ops` rows with automatic compaction off, and prints vectors/s. It ends
//! with recall@10 of the last state at ef 32 against exact brute force over
//! the live vectors (`exact_search`), so that a faster insert that built a
//! worse graph shows.
//!
//! ```sh
//! cargo bench -p strata-benches --bench insert_rate -- \
//!     --base ../shared/datasets/npm-minilm/npm-minilm_base.fvecs \
//!     [--initial 25000] [--ops 25000] [--batch 0] [--modes every-op,group,none]
//! ```

#[path = "bench_args.rs"]
mod bench_args;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata::dataset;
use strata::{
    BatchOptions, BuildParams, Durability, IndexBuilder, Metric, SearchParams, Writer,
    WriterOptions,
};

struct Args {
    base: PathBuf,
    initial: usize,
    ops: usize,
    batch: usize,
    modes: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        base: PathBuf::new(),
        initial: 25_000,
        ops: 25_000,
        batch: 0,
        modes: vec!["every-op".into(), "group".into(), "none".into()],
    };
    bench_args::parse(|flag, v| {
        match flag {
            "--base" => a.base = v.into(),
            "--initial" => a.initial = bench_args::num(flag, v),
            "--ops" => a.ops = bench_args::num(flag, v),
            "--batch" => a.batch = bench_args::num(flag, v),
            "--modes" => a.modes = v.split(',').map(str::to_string).collect(),
            _ => return false,
        }
        true
    });
    if a.base.as_os_str().is_empty() {
        eprintln!("--base FILE (.fvecs/.npy) is required");
        std::process::exit(2)
    }
    a
}

fn durability(mode: &str) -> Durability {
    match mode {
        "every-op" => Durability::EveryOp,
        "group" => Durability::Group {
            max_ops: 256,
            max_delay: Duration::from_millis(5),
        },
        "none" => Durability::None,
        other => {
            eprintln!("unknown mode {other} (every-op, group, none)");
            std::process::exit(2)
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn main() {
    let a = args();
    let base = dataset::read_vectors(&a.base).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let (dim, n) = (base.dim, a.initial + a.ops);
    if base.len() < n {
        eprintln!("{} rows, {n} needed", base.len());
        std::process::exit(2)
    }
    let work = tempfile::tempdir_in(".").unwrap();
    let built = work.path().join("built");
    let t = Instant::now();
    let mut b = IndexBuilder::new(
        dim,
        BuildParams {
            metric: Metric::Cosine,
            seed: Some(7),
            ..Default::default()
        },
    )
    .unwrap();
    b.add_rows(&base.data[..a.initial * dim]).unwrap();
    b.build().unwrap().write(&built).unwrap();
    println!(
        "built {} rows of dimension {dim} in {:.1} s; inserting {} more, {}, {} rayon threads",
        a.initial,
        t.elapsed().as_secs_f64(),
        a.ops,
        if a.batch == 0 {
            "one operation at a time".to_string()
        } else {
            format!("in batches of {}", a.batch)
        },
        rayon_threads(),
    );
    let rows = &base.data[a.initial * dim..n * dim];
    let mut last = None;
    for mode in &a.modes {
        let dir = work.path().join(mode);
        copy_dir(&built, &dir);
        let options = WriterOptions {
            auto_compact: None,
            ..WriterOptions::new(durability(mode))
        };
        let w = Writer::open_with(&dir, &options).unwrap();
        let t = Instant::now();
        if a.batch == 0 {
            for (i, r) in rows.chunks_exact(dim).enumerate() {
                w.insert((a.initial + i) as u64, r).unwrap();
            }
        } else {
            let ids: Vec<u64> = (a.initial as u64..n as u64).collect();
            for (ids, rows) in ids.chunks(a.batch).zip(rows.chunks(a.batch * dim)) {
                w.insert_batch(ids, rows, BatchOptions::default()).unwrap();
            }
        }
        w.flush().unwrap();
        w.wait_for_linking();
        let s = t.elapsed().as_secs_f64();
        println!(
            "  {mode:9} {:>8.0} vectors/s  ({} in {s:.2} s)",
            a.ops as f64 / s,
            a.ops
        );
        last = Some(w);
    }
    if let Some(w) = last {
        let live = w.live();
        let p = SearchParams::with_ef(32);
        let (mut hit, mut total) = (0usize, 0usize);
        // Queries: 200 rows of the inserted half, perturbed (a row is its
        // own nearest neighbour otherwise).
        for i in (0..a.ops).step_by((a.ops / 200).max(1)).take(200) {
            let mut q = rows[i * dim..(i + 1) * dim].to_vec();
            for (j, x) in q.iter_mut().enumerate() {
                *x += 0.02 * (((i * 31 + j * 17) % 13) as f32 / 13.0 - 0.5);
            }
            let exact = live.exact_search(&q, 10).unwrap();
            let got = live.search(&q, 10, &p).unwrap();
            total += exact.len();
            hit += got
                .iter()
                .filter(|h| exact.iter().any(|e| e.id == h.id))
                .count();
        }
        println!(
            "recall@10 at ef 32 of the last state (200 perturbed inserted rows, exact truth): {:.4}",
            hit as f64 / total.max(1) as f64
        );
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
