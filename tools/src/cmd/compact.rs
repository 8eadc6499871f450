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
}

pub fn run(a: Args) -> CliResult {
    strata::check_threads(a.threads)?;
    // This command compacts itself: no background one on top.
    let options = WriterOptions {
        auto_compact: None,
        ..WriterOptions::new(Durability::EveryOp)
    };
    let writer = Writer::open_with(&a.index.dir, &options)?;
    let before = writer.live().stats();
    if before.log_records == 0 && !a.force {
        println!(
            "nothing to compact: the log of generation {} holds no records (--force rebuilds anyway)",
            before.generation
        );
        return Ok(());
    }
    let t = Instant::now();
    let r = writer.compact(CompactOptions {
        retrain: a.retrain,
        threads: a.threads,
        refine: a.refine,
    })?;
    println!(
        "compacted generation {} ({} base, {} deleted, {} inserted, {} log records) into generation {}: {} vectors in {:.2} s",
        before.generation,
        before.base_count,
        before.deleted,
        before.inserted,
        r.folded_records,
        r.generation,
        r.vectors,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
