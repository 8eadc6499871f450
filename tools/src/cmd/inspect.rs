//! `strata inspect`: header, sections, levels, degrees and memory of an index.

use super::{human_bytes, CliResult};
use std::path::PathBuf;
use strata::{Index, LiveIndex, OpenOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Index directory.
    pub dir: PathBuf,
    /// Verify every checksum.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let index = Index::open_with(
        &a.dir,
        &OpenOptions {
            verify: a.verify,
            allow_log: true,
        },
    )?;
    let i = index.info();
    let d = index.degree_stats();
    let log = LiveIndex::open(&a.dir)?.stats();
    let n = i.count as f64;
    if a.json {
        let sections: Vec<_> = i
            .sections
            .iter()
            .map(|(name, off, len, crc)| serde_json::json!({"name": name, "offset": off, "length": len, "crc32": format!("{crc:08x}")}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "format_version": i.format_version, "metric": i.metric.name(), "quantization": i.quantization.name(), "code_bytes": i.code_bytes, "pq_m": i.pq_m,
                "dim": i.dim, "count": i.count, "m": i.m, "m0": i.m0, "ef_construction": i.ef_construction,
                "max_level": i.max_level, "entry_point": i.entry_point, "seed": i.seed,
                "build_id": format!("{:032x}", i.build_id), "level_counts": i.level_counts, "sections": sections,
                "degree": {"min": d.min, "max": d.max, "mean": d.mean, "isolated": d.isolated},
                "graph_file_bytes": i.graph_file_bytes, "vectors_file_bytes": i.vectors_file_bytes,
                "resident_bytes": i.resident_bytes, "verified": a.verify,
                "generation": log.generation, "log": {"records": log.log_records, "bytes": log.log_bytes,
                    "inserted": log.inserted, "deleted": log.deleted, "torn_bytes": log.torn_bytes}, "live": log.live,
            })
        );
        return Ok(());
    }
    println!("index {}", a.dir.display());
    println!("  format version   {}", i.format_version);
    println!("  build id         {:032x}", i.build_id);
    println!("  metric           {}", i.metric.name());
    println!("  quantization     {}", i.quantization.name());
    println!(
        "  code bytes       {}{}",
        i.code_bytes,
        if i.pq_m > 0 {
            format!(" (pq m = {})", i.pq_m)
        } else {
            String::new()
        }
    );
    println!("  dim              {}", i.dim);
    println!("  vectors          {}", i.count);
    println!("  M / M0           {} / {}", i.m, i.m0);
    println!("  ef_construction  {}", i.ef_construction);
    println!("  seed             {}", i.seed);
    println!(
        "  max level        {} (entry point ordinal {})",
        i.max_level, i.entry_point
    );
    println!("  kernels          {}", i.kernels);
    println!("sections of the graph file:");
    println!(
        "  {:<15} {:>12} {:>12} {:>10}",
        "name", "offset", "length", "crc32"
    );
    for (name, off, len, crc) in &i.sections {
        println!("  {name:<15} {off:>12} {len:>12} {crc:>10x}");
    }
    println!("levels (nodes on each level):");
    for (l, c) in i.level_counts.iter().enumerate() {
        println!("  level {l:>2}: {c:>10}");
    }
    println!(
        "level-0 out-degree: min {}, mean {:.2}, max {}, isolated {}",
        d.min, d.mean, d.max, d.isolated
    );
    println!("memory:");
    println!(
        "  graph file      {:>10}  {:>7.1} B/vector",
        human_bytes(i.graph_file_bytes),
        i.graph_file_bytes as f64 / n
    );
    println!(
        "  vectors file    {:>10}  {:>7.1} B/vector",
        human_bytes(i.vectors_file_bytes),
        i.vectors_file_bytes as f64 / n
    );
    println!(
        "  RAM-resident    {:>10}  {:>7.1} B/vector (traversal; vectors are read only to rescore)",
        human_bytes(i.resident_bytes),
        i.resident_bytes as f64 / n
    );
    println!("append log (generation {}):", log.generation);
    println!(
        "  records {}, {} bytes; {} inserted, {} deleted; {} live vectors",
        log.log_records, log.log_bytes, log.inserted, log.deleted, log.live
    );
    if log.torn_bytes > 0 {
        println!("  torn tail of {} bytes after the last committed record (a crash mid-append, or a batch without its commit: dropped whole; a writer truncates it when it opens)", log.torn_bytes);
    }
    if a.verify {
        println!("checksums: all sections and vector data verified");
    }
    Ok(())
}
