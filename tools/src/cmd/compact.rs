//! `strata compact`: folds the append log into a new generation.

use super::CliResult;
use std::time::Instant;
use strata::{CompactOptions, Durability, Writer, WriterOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub index: super::args::IndexDir,
    /// Train a new quantizer on the live vectors instead of reusing the current one.
    #[arg(long)]
    pub retrain: bool,
    /// Build threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Build the new generation with `build --refine`'s second pass (the
    /// files do not record a refined build: give it at every compaction).
    #[arg(long)]
    pub refine: bool,
    /// Rebuild even when the log holds no records.
    #[arg(long)]
    pub force: bool,
    /// No progress spinner.
    #[arg(long)]
    pub quiet: bool,
    /// Print the report as one JSON object on stdout (no spinner); an
    /// error is printed as `{"compacted": false, "error": ...}` too.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> CliResult {
    let json = a.json;
    compact(a).inspect_err(|e| {
        if json {
            println!(
                "{}",
                serde_json::json!({ "compacted": false, "error": e.to_string() })
            );
        }
    })
}

fn compact(a: Args) -> CliResult {
    strata::check_threads(a.threads)?;
    let dir = &a.index.dir;
    // This command compacts itself: no background one on top.
    let options = WriterOptions {
        auto_compact: None,
        ..WriterOptions::new(Durability::EveryOp)
    };
    let writer = Writer::open_with(dir, &options)?;
    let before = writer.live().stats();
    if before.log_records == 0 && !a.force {
        if a.json {
            println!(
                "{}",
                serde_json::json!({
                    "compacted": false,
                    "dir": dir.display().to_string(),
                    "generation": before.generation,
                    "vectors": before.live,
                    "log_records": 0,
                    "reason": "the log holds no records (--force rebuilds anyway)",
                })
            );
            return Ok(());
        }
        println!(
            "nothing to compact: the log of generation {} holds no records (--force rebuilds anyway)",
            before.generation
        );
        return Ok(());
    }
    let t = Instant::now();
    let spinner = crate::progress::spinner("compacting", a.quiet || a.json);
    let r = writer.compact(CompactOptions {
        retrain: a.retrain,
        threads: a.threads,
        refine: a.refine,
    });
    spinner.finish_and_clear();
    let r = r?;
    let seconds = t.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "compacted": true,
                "dir": dir.display().to_string(),
                "generation_before": before.generation,
                "generation": r.generation,
                "base_before": before.base_count,
                "deleted": before.deleted,
                "inserted": before.inserted,
                "vectors": r.vectors,
                "folded_records": r.folded_records,
                "carried_records": r.carried_records,
                "retrained": a.retrain,
                "refined": a.refine,
                "seconds": seconds,
            })
        );
        return Ok(());
    }
    println!(
        "compacted generation {} ({} base, {} deleted, {} inserted, {} log records) into generation {}: {} vectors in {:.2} s",
        before.generation,
        before.base_count,
        before.deleted,
        before.inserted,
        r.folded_records,
        r.generation,
        r.vectors,
        seconds
    );
    Ok(())
}
