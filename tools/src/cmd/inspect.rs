//! `strata inspect`: header, sections, levels, degrees and memory of an index.

use super::{human_bytes, CliResult};
use strata::{Generation, Index, OpenOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub index: super::args::IndexDir,
    /// Verify every checksum.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Walk every node's links for degree statistics even on a large index
    /// (by default only up to 50M vectors: the walk reads the whole level-0
    /// adjacency, and a hostile file can claim far more than it holds).
    #[arg(long)]
    pub degrees: bool,
}

/// Largest index whose degree statistics are computed without `--degrees`.
const DEGREE_WALK_LIMIT: usize = 50_000_000;

pub fn run(a: Args) -> CliResult {
    let index = Generation::open_with(
        &a.index.dir,
        &OpenOptions {
            verify: a.verify,
            allow_log: true,
            ..Default::default()
        },
    )?;
    let i = index.info();
    let walk = a.degrees || i.count <= DEGREE_WALK_LIMIT;
    let d = walk.then(|| index.degree_stats());
    let r = walk.then(|| index.reachability());
    let log = Index::open(&a.index.dir)?.stats();
    let tuning = index.tuning();
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
                "degree": d.map(|d| serde_json::json!({"min": d.min, "max": d.max, "mean": d.mean, "isolated": d.isolated})),
                "in_degree": r.as_ref().map(|r| serde_json::json!({"min": r.in_min, "max": r.in_max, "mean": r.in_mean, "no_in_links": r.no_in_links})),
                "reachability": r.as_ref().map(|r| serde_json::json!({"nodes": r.nodes, "unreachable": r.unreachable, "unreachable_ids": r.unreachable_ids})),
                "graph_file_bytes": i.graph_file_bytes, "vectors_file_bytes": i.vectors_file_bytes,
                "resident_bytes": i.resident_bytes, "verified": a.verify,
                "generation": log.generation, "log": {"records": log.log_records, "bytes": log.log_bytes,
                    "inserted": log.inserted, "deleted": log.deleted, "torn_bytes": log.torn_bytes}, "live": log.live,
                "tuning": tuning_json(&tuning),
            })
        );
        return Ok(());
    }
    println!("index {}", a.index.dir.display());
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
    if i.labels > 0 {
        println!(
            "  labels           {} distinct, {} (vector, label) pairs",
            i.labels, i.label_postings
        );
    }
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
    match d {
        Some(d) => println!(
            "level-0 out-degree: min {}, mean {:.2}, max {}, isolated {}",
            d.min, d.mean, d.max, d.isolated
        ),
        None => println!(
            "level-0 out-degree: not computed for {} vectors (over {DEGREE_WALK_LIMIT}; --degrees walks every link)",
            i.count
        ),
    }
    if let Some(r) = &r {
        println!(
            "level-0 in-degree:  min {}, mean {:.2}, max {}, no in-links {}",
            r.in_min, r.in_mean, r.in_max, r.no_in_links
        );
        let lost: usize = r.unreachable.iter().sum();
        if lost == 0 {
            println!("reachability: every node reachable from the entry point on every level");
        } else {
            println!(
                "warning: nodes unreachable from the entry point (no search can return them):"
            );
            for (l, (&u, &c)) in r.unreachable.iter().zip(&r.nodes).enumerate() {
                if u > 0 {
                    println!("  level {l:>2}: {u} of {c}");
                }
            }
            println!("  level-0 ids: {:?}", r.unreachable_ids);
        }
    }
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
    print_tuning(&tuning);
    if a.verify {
        println!("checksums: all sections and vector data verified");
    }
    Ok(())
}

/// The stored operating points as JSON (`null` without any, the error's
/// text if the file is damaged).
fn tuning_json(t: &strata::Result<Option<strata::Tuning>>) -> serde_json::Value {
    match t {
        Err(e) => serde_json::json!({ "error": e.to_string() }),
        Ok(None) => serde_json::Value::Null,
        Ok(Some(t)) => serde_json::json!({
            "measured_at": t.measured_at, "measured_at_utc": crate::time::utc(t.measured_at),
            "k": t.k, "queries": t.queries, "held_out": t.held_out, "source": super::tune::source_name(t.source),
            "live_count": t.live_count, "stale": t.stale,
            "measured_build_id": format!("{:032x}", t.measured_build_id),
            "points": t.points.iter().map(|p| serde_json::json!({
                "target": p.target, "ef": p.ef, "oversample": p.oversample, "rescore": p.rescore,
                "recall": p.recall, "held_out_recall": p.held_out_recall, "qps": p.qps,
            })).collect::<Vec<_>>(),
        }),
    }
}

fn print_tuning(t: &strata::Result<Option<strata::Tuning>>) {
    match t {
        Err(e) => {
            println!("operating points: the tuning file is unusable ({e}); run `strata tune` again")
        }
        Ok(None) => {
            println!("operating points: none stored (`strata tune` measures and stores them)")
        }
        Ok(Some(t)) => {
            println!(
                "operating points (recall@{}), measured {} on {} queries from {} ({} held out), {} live vectors{}:",
                t.k,
                crate::time::utc(t.measured_at),
                t.queries,
                super::tune::source_name(t.source),
                t.held_out,
                t.live_count,
                if t.stale {
                    "; STALE: carried through a compaction, run `strata tune` again"
                } else {
                    ""
                }
            );
            super::tune::print_points("  ", &t.points);
        }
    }
}
