//! `strata build`: vectors file in, index directory out.

use super::{human_bytes, CliResult};
use crate::progress::BuildBar;
use std::path::Path;
use std::path::PathBuf;
use std::time::Instant;
use strata::{BuildParams, Generation, IndexBuilder, InsertOrder, Metric, Quantization, Writer};

#[derive(clap::Args)]
pub struct Args {
    /// Input vectors (.fvecs, .bvecs, or .npy float32 2-D; `-` reads .fvecs or .npy from stdin); ids are row numbers.
    #[arg(long)]
    pub input: PathBuf,
    /// Output index directory: created, or empty, or an index (replaced
    /// atomically). A directory holding other files, or an index a writer
    /// has locked, is refused before anything is built.
    #[arg(long)]
    pub out: PathBuf,
    /// Distance metric: cosine, l2 or ip (the default is the library's,
    /// `BuildParams::default()`).
    #[arg(long, default_value = "cosine")]
    pub metric: Metric,
    /// Links per node on upper levels (level 0 keeps 2*M).
    #[arg(long, default_value_t = 16)]
    pub m: usize,
    /// Beam width while inserting.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: usize,
    /// Traversal codes: none (float32), int8, lvq8, pq or binary.
    #[arg(long, default_value = "int8")]
    pub quantization: Quantization,
    /// Insertion threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seed; with --threads 1 the files are byte-identical run to run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of values clipped at each end of every dimension's int8 range.
    #[arg(long, default_value_t = strata::quant::int8::DEFAULT_CLIP)]
    pub int8_clip: f32,
    /// Product quantization: code bytes per vector (default: about dim/4).
    #[arg(long)]
    pub pq_m: Option<usize>,
    /// Product quantization: rows sampled to train the codebooks.
    #[arg(long, default_value_t = strata::quant::pq::DEFAULT_TRAIN_SIZE)]
    pub pq_train_size: usize,
    /// Insertion order: auto (locality from 100,000 rows on), input, or
    /// locality (rows grouped by k-means so insertions stay in cache).
    #[arg(long, default_value = "auto")]
    pub insert_order: InsertOrder,
    /// After inserting, re-select every node's level-0 neighbours in the
    /// finished graph, Vamana's second pass (npm-minilm: +0.01-0.02
    /// recall@10 at ef 16-32, 2.4-2.8x the build time; see
    /// `BuildParams::refine`).
    #[arg(long)]
    pub refine: bool,
    /// Labels of the rows, for `--filter`: a text file with one line per
    /// input row, its labels as integers separated by spaces or commas (an
    /// empty line: none); `-` reads it from stdin.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Print the report as one JSON object on stdout (no progress bar).
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    strata::check_threads(a.threads)?;
    crate::input::one_stdin(&[("--input", Some(&a.input)), ("--labels", a.labels.as_ref())])?;
    check_out(&a.out)?;
    let t0 = Instant::now();
    let data = crate::input::read_vectors(&a.input)?;
    let labels = a
        .labels
        .as_deref()
        .map(|p| read_row_labels(p, data.data.len() / data.dim.max(1)))
        .transpose()?;
    let read_s = t0.elapsed().as_secs_f64();
    let params = BuildParams {
        metric: a.metric,
        m: a.m,
        ef_construction: a.ef_construction,
        quantization: a.quantization,
        seed: a.seed,
        threads: a.threads,
        int8_clip: a.int8_clip,
        pq_m: a.pq_m,
        pq_train_size: a.pq_train_size,
        insert_order: a.insert_order,
        refine: a.refine,
    };
    let mut builder = IndexBuilder::new(data.dim, params)?;
    // By value: the builder prepares the rows in place, no second copy.
    builder.add_rows_vec(data.data)?;
    for (row, l) in labels.iter().flatten().enumerate() {
        builder.set_labels(row, l)?;
    }
    let n = builder.len();
    let bar = BuildBar::new(n, a.quiet || a.json);
    let t1 = Instant::now();
    // Streamed into the directory: the files are never held in memory.
    let built = builder.build_into(&a.out, &|p| bar.update(p))?;
    let total_s = t1.elapsed().as_secs_f64();
    bar.finish();
    let info = Generation::open(&a.out)?.info();
    let repaired: usize = built.repaired.iter().sum();
    if a.json {
        let generation = strata::Index::open(&a.out)?.stats().generation;
        println!(
            "{}",
            serde_json::json!({
                "out": a.out.display().to_string(),
                "generation": generation,
                "build_id": format!("{:032x}", built.build_id),
                "vectors": info.count,
                "dim": info.dim,
                "metric": info.metric.name(),
                "quantization": info.quantization.name(),
                "code_bytes": info.code_bytes,
                "pq_m": info.pq_m,
                "m": info.m,
                "ef_construction": info.ef_construction,
                "labels": info.labels,
                "read_seconds": read_s,
                "build_seconds": total_s,
                "graph_file_bytes": info.graph_file_bytes,
                "vectors_file_bytes": info.vectors_file_bytes,
                "resident_bytes": info.resident_bytes,
                "repaired": repaired,
                "repaired_per_level": built.repaired,
                "kernels": info.kernels,
            })
        );
        return Ok(());
    }
    println!(
        "built {} vectors of dim {} ({}, {}{}, {} code bytes, M={}, ef_construction={})",
        info.count,
        info.dim,
        info.metric.name(),
        info.quantization.name(),
        if info.pq_m > 0 {
            format!(" m={}", info.pq_m)
        } else {
            String::new()
        },
        info.code_bytes,
        info.m,
        info.ef_construction
    );
    println!("  read input     {read_s:8.2} s");
    println!("  build + write  {total_s:8.2} s");
    println!(
        "  graph file     {:>10}  ({:.0} B/vector)",
        human_bytes(info.graph_file_bytes),
        info.graph_file_bytes as f64 / n as f64
    );
    println!(
        "  vectors file   {:>10}  ({:.0} B/vector)",
        human_bytes(info.vectors_file_bytes),
        info.vectors_file_bytes as f64 / n as f64
    );
    println!(
        "  RAM-resident   {:>10}  ({:.0} B/vector; the vectors file is read only to rescore)",
        human_bytes(info.resident_bytes),
        info.resident_bytes as f64 / n as f64
    );
    println!(
        "  reachability   every node reachable from the entry point ({repaired} nodes linked in by the repair passes, per level {:?})",
        built.repaired
    );
    println!("  written to {}", a.out.display());
    Ok(())
}

/// Refuses an output that cannot or should not receive an index, before
/// the (possibly long) build: a file, a directory holding files that are
/// not an index, or an index whose writer lock is held.
pub fn check_out(out: &Path) -> CliResult {
    let meta = match std::fs::metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("--out {}: {e}", out.display()).into()),
    };
    if !meta.is_dir() {
        return Err(format!("--out {} exists and is not a directory", out.display()).into());
    }
    let mut names = Vec::new();
    for e in std::fs::read_dir(out).map_err(|e| format!("--out {}: {e}", out.display()))? {
        let e = e.map_err(|e| format!("--out {}: {e}", out.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        // Temporary files of a build that died (the build streams into the
        // directory) do not make it "not empty"; the next build removes none
        // of them, a writer opening the index does.
        if !(name.starts_with('.') && name.contains(".tmp-")) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    if !names.iter().any(|n| n == "MANIFEST") {
        names.sort();
        let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        return Err(format!(
            "--out {} is not empty and holds no strata index ({}{}): refusing to write into it; choose a new or empty directory",
            out.display(),
            shown.join(", "),
            if names.len() > 3 { ", ..." } else { "" }
        )
        .into());
    }
    // An index: it is replaced atomically, unless a writer holds its lock.
    if Writer::is_locked(out).unwrap_or(false) {
        return Err(format!(
            "--out {} is an index locked by a running writer (insert, delete or compact): refusing to replace it",
            out.display()
        )
        .into());
    }
    Ok(())
}

/// The labels file `path` (`-`: standard input), which must have one line
/// per row of `rows`.
pub fn read_row_labels(path: &Path, rows: usize) -> Result<Vec<Vec<u32>>, String> {
    let labels = if crate::input::is_stdio(path) {
        let text = crate::input::read_stdin_text()?;
        strata::dataset::parse_labels(&text, Path::new("<stdin>"))
    } else {
        strata::dataset::read_labels(path)
    }
    .map_err(|e| e.to_string())?;
    if labels.len() != rows {
        return Err(format!(
            "--labels {}: {} lines for {rows} input rows (one line per row, empty for none)",
            path.display(),
            labels.len()
        ));
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        build: Args,
    }

    /// The CLI builds what the library builds when no option is given.
    #[test]
    fn defaults_are_the_librarys() {
        let cli = Cli::try_parse_from(["build", "--input", "x.fvecs", "--out", "idx"]).unwrap();
        let lib = strata::BuildParams::default();
        assert_eq!(cli.build.metric, lib.metric);
        assert_eq!(cli.build.quantization, lib.quantization);
        assert_eq!(cli.build.m, lib.m);
        assert_eq!(cli.build.ef_construction, lib.ef_construction);
        assert_eq!(cli.build.insert_order, lib.insert_order);
        assert_eq!(cli.build.refine, lib.refine);
    }
}
